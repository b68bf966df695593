# Core helpers (src/core).
covct_add_test(test_core ${CMAKE_CURRENT_SOURCE_DIR}/test_core.c)
