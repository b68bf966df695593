covct_add_script_test(p001_vs_dcmtk ${CMAKE_CURRENT_SOURCE_DIR}/p001_vs_dcmtk.sh)
set_tests_properties(p001_vs_dcmtk PROPERTIES TIMEOUT 900)
covct_add_script_test(volume_series ${CMAKE_CURRENT_SOURCE_DIR}/volume_series.sh)
covct_add_script_test(cli_demo ${CMAKE_CURRENT_SOURCE_DIR}/cli_demo.sh)
