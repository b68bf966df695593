covct_add_test(test_nn_plan ${CMAKE_CURRENT_SOURCE_DIR}/test_nn_plan.c)
set_property(TEST test_nn_plan APPEND PROPERTY ENVIRONMENT
             "OMP_WAIT_POLICY=PASSIVE")
