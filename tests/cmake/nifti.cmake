# NIfTI-1 input/output against nibabel (tests/nifti_check.py, run with
# python3 or /usr/bin/python3; COVCT_PYTHON overrides).
covct_add_test(test_nifti ${CMAKE_CURRENT_SOURCE_DIR}/test_nifti.c)
