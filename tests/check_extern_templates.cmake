# cmake -DNM=<nm> -DOBJECTS=<a.o;b.o;...> -P check_extern_templates.cmake
# The explicit instantiations that liblorapp compiles once must not be compiled again in a
# translation unit that uses them: each object below must reference (as undefined symbols) the
# heavy members it calls and define none of them. Fails, naming the symbols, otherwise.
set(heavy "lora::Layer<(float|double)>::(Layer\\(long|resize|keepDirections|merge|unmerge|spectrum|forwardCompiled|backwardCompiled|backwardInputCompiled)"
          "lora::linalg::FactoredSVD<(float|double)>::computeFromFactors"
          "lora::linalg::PartialSVD<(float|double)>::computeStored"
          "lora::detail::randomizedSVDStored<(float|double)>"
          "lora::init::(Pissa|Milora|Olora|LoraGa|PeftOrthogonal|Eva|SvdBased)::initialize<(float|double)>")
list(JOIN heavy "|" pattern)
set(referenced "")
foreach(object IN LISTS OBJECTS)
  execute_process(COMMAND ${NM} -C --defined-only ${object} OUTPUT_VARIABLE defined
                  RESULT_VARIABLE rc1)
  execute_process(COMMAND ${NM} -C --undefined-only ${object} OUTPUT_VARIABLE undefined
                  RESULT_VARIABLE rc2)
  if(NOT rc1 EQUAL 0 OR NOT rc2 EQUAL 0)
    message(FATAL_ERROR "check_extern_templates: expected '${NM}' to read ${object}, it failed")
  endif()
  string(REGEX MATCHALL "[^\n]*(${pattern})[^\n]*" again "${defined}")
  if(again)
    list(JOIN again "\n" shown)
    message(FATAL_ERROR "check_extern_templates: expected ${object} to define none of the "
                        "explicitly instantiated members, got:\n${shown}")
  endif()
  string(REGEX MATCHALL "(${pattern})" used "${undefined}")
  list(APPEND referenced ${used})
endforeach()
# Without references the check above would prove nothing: the objects must call into all five.
foreach(family "Layer<" "FactoredSVD<" "PartialSVD<" "randomizedSVDStored<" "::initialize<")
  string(FIND "${referenced}" "${family}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "check_extern_templates: expected the objects to reference ${family}..., "
                        "got no reference (the test objects changed: pick ones that use it)")
  endif()
endforeach()
list(REMOVE_DUPLICATES referenced)
list(LENGTH referenced count)
message(STATUS "check_extern_templates: ${count} explicitly instantiated members referenced, none defined")
