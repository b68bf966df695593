# The store (src/store/store.c): puts, index rows, duplicates, refused UIDs,
# concurrent puts and group commit, crash recovery, in a folder under /tmp.
covct_add_test(test_store ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c)
# The same through the page cache: the way taken where the file system has
# no direct I/O.
add_test(NAME test_store_buffered COMMAND test_store)
set_tests_properties(test_store_buffered PROPERTIES SKIP_RETURN_CODE 77
    ENVIRONMENT "${COVCT_TEST_ENV};COVCT_STORE_NO_DIRECT_IO=1")
# C-FIND matching rules over the index (src/store/query.c).
covct_add_test(test_query ${CMAKE_CURRENT_SOURCE_DIR}/test_query.c)
