# The store (src/store/store.c): puts, index rows, duplicates, refused UIDs,
# concurrent puts and group commit, crash recovery, in a folder under /tmp.
covct_add_test(test_store ${CMAKE_CURRENT_SOURCE_DIR}/test_store.c)
# C-FIND matching rules over the index (src/store/query.c).
covct_add_test(test_query ${CMAKE_CURRENT_SOURCE_DIR}/test_query.c)
