# DICOM network (src/net, issue 5): PDU and command encoding, a live
# server on loopback driven by covct's own requestor (refusals, cap,
# garbage PDUs, ARTIM).  Interoperability with dcmtk: net_dcmtk.
covct_add_test(test_net ${CMAKE_CURRENT_SOURCE_DIR}/test_net.c)
covct_add_script_test(net_dcmtk ${CMAKE_CURRENT_SOURCE_DIR}/net_dcmtk.sh)
set_tests_properties(net_dcmtk PROPERTIES TIMEOUT 300)
