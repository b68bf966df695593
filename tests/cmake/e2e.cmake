# The pages (web/) end to end: covct serve with an analysed synthetic CT,
# Playwright (tests/e2e/package-lock.json, installed by `npm ci` into the
# build folder's e2e-node/) driving Debian's Chromium through login,
# worklist (date filter, person names), viewer (coronal view, overlays,
# opacity), labelling (brush, eraser, fill, undo) as two blind readers,
# adjudication, the case form (saved, reloaded) and governance.
# Screenshots: <build>/tests/e2e-artifacts (or $COVCT_E2E_ARTIFACTS).
# Needs chromium, node, npm, curl (skipped without them outside CI).
# About 70 s on 2 cores.
covct_add_script_test(e2e_pages ${CMAKE_CURRENT_SOURCE_DIR}/e2e/run.sh)
set_tests_properties(e2e_pages PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE)
