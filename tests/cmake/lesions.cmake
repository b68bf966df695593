# Lesion stage (src/analysis/lesions.c) and its filters
# (src/analysis/filters.c): synthetic chest with analytic truth, filter
# unit checks, and a sanity run on covid-ct-md P001 (and normal001 when
# staged).  About 30-60 s under sanitizers at -O0.
covct_add_test(test_lesions ${CMAKE_CURRENT_SOURCE_DIR}/test_lesions.c)
set_tests_properties(test_lesions PROPERTIES TIMEOUT 600)
# The network lesion stage's plumbing (src/analysis/lesions-nn.c) with a
# small untrained U-Net on a synthetic volume.
covct_add_test(test_lesions_nn ${CMAKE_CURRENT_SOURCE_DIR}/test_lesions_nn.c)
set_property(TEST test_lesions_nn APPEND PROPERTY ENVIRONMENT
             "OMP_WAIT_POLICY=PASSIVE")
# The density check after the network (src/analysis/lesions-check.c) on
# hand-made volumes: well-aerated voxels dropped, dense balls made
# consolidation, vessels and border tissue left alone.
covct_add_test(test_lesions_check ${CMAKE_CURRENT_SOURCE_DIR}/test_lesions_check.c)
# Thick slices (5 mm slabs of COVID-CT-MD's 2 mm series, tools/slab.py):
# normal001 stays negative, P001 keeps its opacity volume.
covct_add_script_test(thick_slices ${CMAKE_CURRENT_SOURCE_DIR}/thick_slices.sh)
set_tests_properties(thick_slices PROPERTIES TIMEOUT 900)
covct_add_script_test(noise ${CMAKE_CURRENT_SOURCE_DIR}/noise.sh)
set_tests_properties(noise PROPERTIES TIMEOUT 900)
covct_add_script_test(orientation ${CMAKE_CURRENT_SOURCE_DIR}/orientation.sh)
covct_add_script_test(dense_behind ${CMAKE_CURRENT_SOURCE_DIR}/dense_behind.sh)
set_tests_properties(dense_behind PROPERTIES TIMEOUT 900)
