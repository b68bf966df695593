# DICOM results of covct analyze --dicom (SEG, TID 1500 SR, Secondary
# Capture key images) checked by dciodvfy, dcmdump, dsrdump and pydicom.
covct_add_script_test(dicom_results ${CMAKE_CURRENT_SOURCE_DIR}/dicom_results.sh)
set_tests_properties(dicom_results PROPERTIES TIMEOUT 600)
# The writer itself on a tiny phantom series: read back, refusals, the
# banner, allocation failures.
covct_add_test(test_report_dicom ${CMAKE_CURRENT_SOURCE_DIR}/test_report_dicom.c)
set_tests_properties(test_report_dicom PROPERTIES TIMEOUT 600)
# The same peers on COVID-CT-MD P001 (shared data; skipped when missing).
covct_add_script_test(dicom_results_p001
    ${CMAKE_CURRENT_SOURCE_DIR}/dicom_results.sh p001)
set_tests_properties(dicom_results_p001 PROPERTIES TIMEOUT 900)
