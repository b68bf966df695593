# nn module against PyTorch: tests/nn_torch_ref.py writes the reference
# values (PyTorch runs at test time only, never a dependency of the
# library), test_nn_torch compares.  The executable is not a ctest test of
# its own (it needs the reference file); the script test runs both.
add_executable(test_nn_torch ${CMAKE_CURRENT_SOURCE_DIR}/test_nn_torch.c)
target_link_libraries(test_nn_torch PRIVATE covctlib)
target_include_directories(test_nn_torch PRIVATE ${CMAKE_SOURCE_DIR}/src
                           ${CMAKE_SOURCE_DIR}/tests)
covct_add_script_test(nn_torch ${CMAKE_CURRENT_SOURCE_DIR}/nn_torch.sh
                      $<TARGET_FILE:test_nn_torch>)
set_tests_properties(nn_torch PROPERTIES TIMEOUT 300)
