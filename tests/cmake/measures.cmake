covct_add_test(test_measures ${CMAKE_CURRENT_SOURCE_DIR}/test_measures.c)
