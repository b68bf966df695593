covct_add_test(test_nn_conv ${CMAKE_CURRENT_SOURCE_DIR}/test_nn_conv.c)
# OpenMP threads that spin while waiting make this test of ~2000 tiny
# oneDNN calls several times slower when ctest runs tests in parallel on
# few cores; sleeping waits keep it at a few seconds.
set_property(TEST test_nn_conv APPEND PROPERTY ENVIRONMENT
             "OMP_WAIT_POLICY=PASSIVE")
