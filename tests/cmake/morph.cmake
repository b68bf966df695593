# Morphology of the analysis stages (src/analysis/morph.c): the 3-D ball
# closing against its brute-force definition and hand-made shapes.
covct_add_test(test_morph ${CMAKE_CURRENT_SOURCE_DIR}/test_morph.c)
