# cmake -DMODE=find_package|subdirectory -DSOURCE_DIR=... -DMAIN_BUILD_DIR=... -DWORK_DIR=...
#       [-DPREBUILT=liblorapp.a -DNATIVE=ON|OFF -DOPENMP=.. -DLAPACK=.. -DBLAS=..] -P run.cmake
# Builds and runs the consumer project; any failing step fails the test.
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(generator)
if(GENERATOR)
  set(generator -G "${GENERATOR}")
endif()
set(build "${WORK_DIR}/build")
if(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  step(${CMAKE_COMMAND} --install "${MAIN_BUILD_DIR}" --prefix "${prefix}")
  step(${CMAKE_COMMAND} ${generator} -S "${SOURCE_DIR}/tests/consumer" -B "${build}" -DLORA_CONSUMER_MODE=find_package
       "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=Release)
else()
  # The source tree is configured and compiled again here, at -O0 without debug information:
  # this proves that add_subdirectory works (targets, include paths, definitions, compiling the
  # sources as a subproject, linking), not how fast the code runs; the light sources compile in
  # unity batches (LORA_UNITY_BUILD, on by default). The explicit instantiations
  # (minutes of compile time even at -O0) come from the main build's archive (PREBUILT, built
  # with the same -march as NATIVE says) through the LORA_PREBUILT_INSTANCES hook.
  step(${CMAKE_COMMAND} ${generator} -S "${SOURCE_DIR}/tests/consumer" -B "${build}" -DLORA_CONSUMER_MODE=subdirectory
       "-DLORA_SOURCE_DIR=${SOURCE_DIR}" -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O0"
       "-DLORA_PREBUILT_INSTANCES=${PREBUILT}" "-DLORA_NATIVE_ARCH=${NATIVE}"
       "-DLORA_OPENMP=${OPENMP}" "-DLORA_LAPACK=${LAPACK}" "-DLORA_BLAS=${BLAS}")
endif()
step(${CMAKE_COMMAND} --build "${build}" --parallel 2)
step("${build}/consumer")
