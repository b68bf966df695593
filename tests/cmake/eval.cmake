# covct eval (issue 4): segmentation metrics and the Inf-Net protocol
# against an independent peer (tests/eval_peer.py: scikit-learn, numpy),
# on synthetic maps and the covid-semiseg-train masks, and its errors.
covct_add_script_test(eval ${CMAKE_CURRENT_SOURCE_DIR}/eval.sh)
set_tests_properties(eval PROPERTIES TIMEOUT 300)
