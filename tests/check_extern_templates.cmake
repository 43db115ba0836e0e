# cmake -DNM=<nm> -DOBJECTS=<a.o;b.o;...> -P check_extern_templates.cmake   (needs grep)
# The explicit instantiations that liblorapp compiles once must not be compiled again in a
# translation unit that uses them: each object below must reference (as undefined symbols) the
# heavy members it calls and define none of them. Fails, naming the symbols, otherwise.
set(heavy "lora::Layer<(float|double)>::(Layer\\(long|resize|keepDirections|merge|unmerge|spectrum|forwardRef|adapterForwardRef|backwardRef|backwardInputRef|gradients|factorGradients)"
          "lora::init::EvaCollector<(float|double)>::updateBatch"
          "lora::linalg::FactoredSVD<(float|double)>::computeFromFactors"
          "lora::linalg::PartialSVD<(float|double)>::computeStored"
          "lora::detail::randomizedSVDStored<(float|double)>"
          "lora::init::(Pissa|Milora|Olora|LoraGa|PeftOrthogonal|Eva|SvdBased)::initialize<(float|double)>"
          # Eigen's product kernels (lora/detail/eigen.hpp, src/detail/eigen_kernels.cpp)
          "Eigen::internal::(gebp_kernel<|gemm_pack_lhs<|general_matrix_vector_product<long, |triangular_solve_matrix<|product_triangular_matrix_matrix<|triangular_matrix_vector_product<long, [0-9]+, )(float|double)"
          "Eigen::internal::gemm_pack_rhs<(float|double), long, Eigen::internal::const_blas_data_mapper<(float|double), long, [01]>"
          # (the GEMM driver's name also appears inside parallelize_gemm's, which stays inline)
          "Eigen::internal::general_matrix_matrix_product<long, (float|double), [01], false, (float|double), [01], false, 0, 1>::run"
          # LoRA++'s product driver (lora/detail/gemm.hpp)
          "lora::detail::gemmStrided<(float|double)>")
list(JOIN heavy "|" pattern)
set(referenced "")
foreach(object IN LISTS OBJECTS)
  if(NOT EXISTS "${object}")
    message(FATAL_ERROR "check_extern_templates: expected the object ${object}, got none")
  endif()
  # grep filters nm's output (CMake's own regex is far too slow on the tens of megabytes an -O0
  # object lists); grep exits 1 when nothing matches, which is the good case for `defined`.
  execute_process(COMMAND ${NM} -C --defined-only ${object} COMMAND grep -E "${pattern}"
                  OUTPUT_VARIABLE again RESULTS_VARIABLE rcs1)
  execute_process(COMMAND ${NM} -C --undefined-only ${object} COMMAND grep -oE "${pattern}"
                  OUTPUT_VARIABLE used RESULTS_VARIABLE rcs2)
  list(GET rcs1 0 nm1)
  list(GET rcs2 0 nm2)
  if(NOT nm1 EQUAL 0 OR NOT nm2 EQUAL 0)
    message(FATAL_ERROR "check_extern_templates: expected '${NM}' to read ${object}, it failed")
  endif()
  if(NOT again STREQUAL "")
    message(FATAL_ERROR "check_extern_templates: expected ${object} to define none of the "
                        "explicitly instantiated members, got:\n${again}")
  endif()
  string(REPLACE "\n" ";" used "${used}")
  list(APPEND referenced ${used})
endforeach()
# Without references the check above would prove nothing: the objects must call into each family.
foreach(family "Layer<" "FactoredSVD<" "PartialSVD<" "randomizedSVDStored<" "::initialize<"
               "EvaCollector<" "general_matrix_matrix_product<"
               "general_matrix_vector_product<")
  string(FIND "${referenced}" "${family}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "check_extern_templates: expected the objects to reference ${family}..., "
                        "got no reference (the test objects changed: pick ones that use it)")
  endif()
endforeach()
list(REMOVE_DUPLICATES referenced)
list(LENGTH referenced count)
message(STATUS "check_extern_templates: ${count} explicitly instantiated members referenced, none defined")
