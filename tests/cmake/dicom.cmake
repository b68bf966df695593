covct_add_test(test_dicom ${CMAKE_CURRENT_SOURCE_DIR}/test_dicom.c)
covct_add_script_test(conformance_info ${CMAKE_CURRENT_SOURCE_DIR}/conformance_info.sh)
set_tests_properties(conformance_info PROPERTIES TIMEOUT 900)
add_test(NAME checksrc COMMAND sh ${CMAKE_SOURCE_DIR}/scripts/checksrc.sh)
