# The image module (src/image/image.c): synthetic images, refused inputs
# and the covid-semiseg-train slices and masks (test_image), and every
# pixel of those against Pillow (image_pil: tests/image_pil.py writes
# Pillow's pixels, test_image --expect compares).
covct_add_test(test_image ${CMAKE_CURRENT_SOURCE_DIR}/test_image.c)
covct_add_script_test(image_pil ${CMAKE_CURRENT_SOURCE_DIR}/image_pil.sh
                      $<TARGET_FILE:test_image>)
set_tests_properties(image_pil PROPERTIES TIMEOUT 300)
