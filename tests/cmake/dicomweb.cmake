# DICOMweb building blocks (issue 7, PS3.18): the DICOM JSON Model encoder
# and the multipart/related parser and writer in src/http (compiled into
# covctlib by the COVCT_HTTP_SRC glob of the top-level CMakeLists.txt).
covct_add_test(test_dicomjson ${CMAKE_CURRENT_SOURCE_DIR}/test_dicomjson.c)
covct_add_test(test_multipart ${CMAKE_CURRENT_SOURCE_DIR}/test_multipart.c)

# Prints the JSON of files for the peer comparison with dcm2json/pydicom
# and times a series (a test helper, not a covct command).
add_executable(dicomjson_dump ${CMAKE_CURRENT_SOURCE_DIR}/dicomjson_dump.c)
target_link_libraries(dicomjson_dump PRIVATE covctlib)
target_include_directories(dicomjson_dump PRIVATE ${CMAKE_SOURCE_DIR}/src)

covct_add_script_test(dicomweb_json ${CMAKE_CURRENT_SOURCE_DIR}/dicomweb_json.sh
                      $<TARGET_FILE:dicomjson_dump>)
set_tests_properties(dicomweb_json PROPERTIES TIMEOUT 600)
