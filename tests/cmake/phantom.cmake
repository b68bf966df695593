# Synthetic chest CT phantom: truth self-consistency, analytic sphere
# volume, DICOM round trip and dciodvfy (dicom3tools), truth files.
covct_add_test(test_phantom ${CMAKE_CURRENT_SOURCE_DIR}/test_phantom.c)
covct_add_script_test(phantom_e2e ${CMAKE_CURRENT_SOURCE_DIR}/phantom_e2e.sh)
set_tests_properties(phantom_e2e PROPERTIES TIMEOUT 600)
