# The web service (src/http): router table walked for 401/403, sessions,
# CSRF, throttling, tokens, STOW-RS -> WADO-RS byte for byte, QIDO-RS,
# metadata, 413, slow clients, static files; on SQLite and PostgreSQL.
covct_add_test(test_http ${CMAKE_CURRENT_SOURCE_DIR}/test_http.c)
covct_add_pg_twin(test_http)
