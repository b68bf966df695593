# The report module (report.json, report.html, PNG key images, NIfTI
# masks), read back by Debian's python3 (json, zlib, html.parser, nibabel)
# and pngcheck when installed; COVCT_PYTHON overrides the interpreter.
covct_add_test(test_report ${CMAKE_CURRENT_SOURCE_DIR}/test_report.c)
