/* libFuzzer target: the image reader (JPEG through libjpeg-turbo, PNG
 * through libpng), each input in both modes; a decoded image is encoded
 * back to PNG and must decode to the same pixels. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "covct/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const covct_image *img)
{
    covct_buf b = {0};
    if (covct_image_encode_png(img, &b, NULL) == COVCT_OK) {
        covct_image back;
        if (covct_image_decode(b.data, b.len, COVCT_IMAGE_INDEX, &back,
                               NULL) != COVCT_OK ||
            back.width != img->width || back.height != img->height ||
            memcmp(back.pixels, img->pixels,
                   (size_t)img->width * img->height) != 0)
            abort(); /* covct cannot read its own PNG back */
        covct_image_free(&back);
    }
    covct_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int modes[2] = {COVCT_IMAGE_GRAY, COVCT_IMAGE_INDEX};
    for (int i = 0; i < 2; i++) {
        covct_image img;
        if (covct_image_decode(data, size, modes[i], &img, NULL) == COVCT_OK) {
            /* Encoding is slow for big images; keep the fuzzer fast. */
            if ((size_t)img.width * img.height <= 65536)
                round_trip(&img);
            covct_image_free(&img);
        }
    }
    return 0;
}
