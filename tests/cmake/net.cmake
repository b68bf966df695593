# DICOM network (src/net, issue 5): PDU and command encoding, a live
# server on loopback driven by covct's own requestor (refusals, cap,
# garbage PDUs, ARTIM).  Interoperability with dcmtk: net_dcmtk.
covct_add_test(test_net ${CMAKE_CURRENT_SOURCE_DIR}/test_net.c)
covct_add_script_test(net_dcmtk ${CMAKE_CURRENT_SOURCE_DIR}/net_dcmtk.sh)
set_tests_properties(net_dcmtk PROPERTIES TIMEOUT 300)
# Issue 5's acceptance test: 2,000 instances over 8 concurrent storescu
# associations, then the same with kill -9 of the server in the middle and
# a restart: every instance acknowledged with Success is there, intact
# (about 40 s on 2 cores; needs dcmtk, sqlite3).
covct_add_script_test(net_crash ${CMAKE_CURRENT_SOURCE_DIR}/net_crash.sh)
set_tests_properties(net_crash PROPERTIES TIMEOUT 600)
