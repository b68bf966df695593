covct_add_test(test_nn ${CMAKE_CURRENT_SOURCE_DIR}/test_nn.c)
covct_add_test(test_nn_model ${CMAKE_CURRENT_SOURCE_DIR}/test_nn_model.c)
covct_add_script_test(segment ${CMAKE_CURRENT_SOURCE_DIR}/segment.sh)
covct_add_test(test_nn_augment ${CMAKE_CURRENT_SOURCE_DIR}/test_nn_augment.c)
