covct_add_test(test_charset ${CMAKE_CURRENT_SOURCE_DIR}/test_charset.c)
