# cmake -DMODE=find_package|subdirectory -DSOURCE_DIR=... -DMAIN_BUILD_DIR=... -DWORK_DIR=... -P run.cmake
# Builds and runs the consumer project; any failing step fails the test.
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(build "${WORK_DIR}/build")
if(MODE STREQUAL "find_package")
  set(prefix "${WORK_DIR}/prefix")
  step(${CMAKE_COMMAND} --install "${MAIN_BUILD_DIR}" --prefix "${prefix}")
  step(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${build}" -DLORA_CONSUMER_MODE=find_package
       "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=Release)
else()
  step(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${build}" -DLORA_CONSUMER_MODE=subdirectory
       "-DLORA_SOURCE_DIR=${SOURCE_DIR}" -DCMAKE_BUILD_TYPE=Release)
endif()
step(${CMAKE_COMMAND} --build "${build}")
step("${build}/consumer")
