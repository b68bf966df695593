covct_add_test(test_lungs ${CMAKE_CURRENT_SOURCE_DIR}/test_lungs.c)
set_tests_properties(test_lungs PROPERTIES TIMEOUT 600)
covct_add_test(test_dense_lung ${CMAKE_CURRENT_SOURCE_DIR}/test_dense_lung.c)
