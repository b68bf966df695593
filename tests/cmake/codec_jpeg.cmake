# JPEG (ITU-T T.81): src/dicom/codec-jpeg.c and src/dicom/jpeg-t81.c.  The
# test runs dcmtk's dcmdjpeg/dcmdump/dcmcjpeg as the reference and calls
# libjpeg-turbo and zlib directly (covctlib links both publicly).  It takes
# about 15 s under sanitizers; the timeout leaves room for slow machines.
covct_add_test(test_codec_jpeg ${CMAKE_CURRENT_SOURCE_DIR}/test_codec_jpeg.c)
set_tests_properties(test_codec_jpeg PROPERTIES TIMEOUT 300)
