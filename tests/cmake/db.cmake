# The case database's SQL layer (src/db) on SQLite, and the same test on a
# throw-away PostgreSQL (tests/with-postgres.sh starts and stops it).
# covct_add_pg_twin(TEST [COMMAND...]): TEST_pg runs TEST's command (or the
# one given) against PostgreSQL.
function(covct_add_pg_twin name)
  if(ARGN)
    set(cmd ${ARGN})
  else()
    set(cmd $<TARGET_FILE:${name}>)
  endif()
  add_test(NAME ${name}_pg
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/with-postgres.sh ${cmd})
  set_tests_properties(${name}_pg PROPERTIES SKIP_RETURN_CODE 77
                       ENVIRONMENT "${COVCT_TEST_ENV}")
endfunction()

covct_add_test(test_db ${CMAKE_CURRENT_SOURCE_DIR}/test_db.c)
covct_add_pg_twin(test_db)

# The audit log (src/govern/audit.c): hash chain, signatures, tampering of
# every kind found and named; roles and refusals.
covct_add_test(test_audit ${CMAKE_CURRENT_SOURCE_DIR}/test_audit.c)
covct_add_pg_twin(test_audit)

# Label versions, projects, approvals, consent and the research export
# (src/govern/cases.c, project.c, export.c), on synthetic volumes.
covct_add_test(test_export ${CMAKE_CURRENT_SOURCE_DIR}/test_export.c)
covct_add_pg_twin(test_export)

# The governance "done when" through the commands: export refused without
# an approval, withdrawn patients left out, both audited; tampering with
# the audit log through sqlite3 / psql found by covct audit verify.
covct_add_script_test(governance ${CMAKE_CURRENT_SOURCE_DIR}/governance.sh)
covct_add_pg_twin(governance bash ${CMAKE_CURRENT_SOURCE_DIR}/governance.sh)
