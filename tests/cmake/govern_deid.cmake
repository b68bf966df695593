# De-identification (PS3.15 Annex E, issue 6): the HMAC wrapper against
# RFC 4231, the Table E.1-1 actions, key files, a whole data set.
covct_add_test(test_deid ${CMAKE_CURRENT_SOURCE_DIR}/test_deid.c)
# covct deid on real files, checked with dcmtk's dcmdump, pydicom and
# dciodvfy: nothing identifying left, pixels unchanged, runs repeatable,
# keys distinct, a SEG still pointing at its de-identified images.
covct_add_script_test(govern_deid ${CMAKE_CURRENT_SOURCE_DIR}/govern_deid.sh)
set_tests_properties(govern_deid PROPERTIES TIMEOUT 900)
# Every row of Table E.1-1 on one object pydicom writes, each checked with
# dcmdump against its action; deid-table.c regenerated from its text.
covct_add_script_test(govern_deid_table ${CMAKE_CURRENT_SOURCE_DIR}/govern_deid_table.sh)
