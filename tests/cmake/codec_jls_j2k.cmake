covct_add_test(test_codec_jls_j2k ${CMAKE_CURRENT_SOURCE_DIR}/test_codec_jls_j2k.c)
