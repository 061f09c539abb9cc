# Renders one scdoc page: cmake -DSCDOC=scdoc -DINPUT=page.scd -DOUTPUT=page -P scdoc.cmake
# (execute_process instead of a shell redirection, so paths need no quoting). The page is
# written under a temporary name and renamed, so a failed run leaves no half page.
execute_process(COMMAND ${SCDOC} INPUT_FILE ${INPUT} OUTPUT_FILE ${OUTPUT}.tmp
                RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  file(REMOVE ${OUTPUT}.tmp)
  message(FATAL_ERROR "scdoc failed on ${INPUT}: ${result}")
endif()
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
