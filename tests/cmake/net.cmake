# DICOM network (src/net, issue 5): PDU and command encoding, a live
# server on loopback driven by covct's own requestor (refusals, cap,
# garbage PDUs, ARTIM).  Interoperability with dcmtk: net_dcmtk.
covct_add_test(test_net ${CMAKE_CURRENT_SOURCE_DIR}/test_net.c)
covct_add_script_test(net_dcmtk ${CMAKE_CURRENT_SOURCE_DIR}/net_dcmtk.sh)
set_tests_properties(net_dcmtk PROPERTIES TIMEOUT 300)
# Its C-FIND/C-MOVE/C-GET audit entries with the case database on
# PostgreSQL.
covct_add_pg_twin(net_dcmtk bash ${CMAKE_CURRENT_SOURCE_DIR}/net_dcmtk.sh)
set_tests_properties(net_dcmtk_pg PROPERTIES TIMEOUT 300)
# Issue 5's acceptance test: 2,000 instances over 8 concurrent storescu
# associations, then the same with kill -9 of the server in the middle and
# a restart: every instance acknowledged with Success is there, intact
# (about 40 s on 2 cores; needs dcmtk, sqlite3).
covct_add_script_test(net_crash ${CMAKE_CURRENT_SOURCE_DIR}/net_crash.sh)
set_tests_properties(net_crash PROPERTIES TIMEOUT 600)
# Automatic analysis in covct serve: jobs, results stored and sent to a
# dcmtk storescp standing in for the PACS, restart after kill -9.
covct_add_script_test(net_jobs ${CMAKE_CURRENT_SOURCE_DIR}/net_jobs.sh)
set_tests_properties(net_jobs PROPERTIES TIMEOUT 600)
# The same with the case database on a throw-away PostgreSQL (the AI's
# label versions and the service's audit entries land there).
covct_add_pg_twin(net_jobs bash ${CMAKE_CURRENT_SOURCE_DIR}/net_jobs.sh)
set_tests_properties(net_jobs_pg PROPERTIES TIMEOUT 600)
# The round trip with Orthanc as the PACS: P001 in, SEG/SR/key images back,
# dciodvfy and dsrdump on what Orthanc received (about 1 min).
covct_add_script_test(net_orthanc ${CMAKE_CURRENT_SOURCE_DIR}/net_orthanc.sh)
set_tests_properties(net_orthanc PROPERTIES TIMEOUT 900)
# DICOM over TLS with certificates made by openssl, against dcmtk +tls.
covct_add_script_test(net_tls ${CMAKE_CURRENT_SOURCE_DIR}/net_tls.sh)
set_tests_properties(net_tls PROPERTIES TIMEOUT 300)
