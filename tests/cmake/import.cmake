# covct import (issue 6): the CSV parser of clinical label files, and the
# command end to end -- DICOM folders into the store and the case
# database, NIfTI volumes with masks, CSV clinical labels, refusals with
# their line numbers -- on SQLite and on a throw-away PostgreSQL.
covct_add_test(test_csv ${CMAKE_CURRENT_SOURCE_DIR}/test_csv.c)
covct_add_script_test(import ${CMAKE_CURRENT_SOURCE_DIR}/import.sh)
set_tests_properties(import PROPERTIES TIMEOUT 300)
covct_add_pg_twin(import bash ${CMAKE_CURRENT_SOURCE_DIR}/import.sh)
set_tests_properties(import_pg PROPERTIES TIMEOUT 300)
