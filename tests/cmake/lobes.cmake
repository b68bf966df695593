# Lobes (src/analysis/lobes.c): synthetic lungs, the three covid-ct-md
# cases with a crude lung mask built in the test, agreement with the
# covid-ct-md per-slice lobe labels.  About 30 s under sanitizers.
covct_add_test(test_lobes ${CMAKE_CURRENT_SOURCE_DIR}/test_lobes.c)
set_tests_properties(test_lobes PROPERTIES TIMEOUT 600)
