/* libFuzzer target: the pixel codecs on raw compressed frames.  The first
 * 8 bytes choose the codec and describe the frame (so the fuzzer explores
 * size mismatches too); the rest is the code stream. */
#include <stdint.h>
#include <string.h>

#include "covct/core.h"
#include "dicom/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    static const uint16_t bits[] = {8, 16, 16, 32, 1, 8, 16, 12};
    covct_codec_frame f;
    memset(&f, 0, sizeof f);
    unsigned codec = data[0] & 3;
    f.rows = 1u + (data[1] | ((data[2] & 1u) << 8)); /* 1..512 */
    f.cols = 1u + (data[3] | ((data[4] & 1u) << 8));
    f.samples = (data[5] & 1) ? 3 : 1;
    f.bits_alloc = bits[data[6] & 7];
    if (f.bits_alloc == 12)
        f.bits_alloc = 16;
    f.bits_stored = (uint16_t)(1u + (data[7] % f.bits_alloc));
    f.pixel_rep = (data[5] >> 1) & 1;
    f.out_bytes = f.bits_alloc <= 8 ? 1 : f.bits_alloc <= 16 ? 2 : 4;
    f.photometric = (data[5] & 4) ? "YBR_FULL_422" : "MONOCHROME2";
    size_t n = (size_t)f.rows * f.cols * f.samples * f.out_bytes;
    uint8_t *dst = covct_malloc(n);
    if (!dst)
        return 0;
    const uint8_t *s = data + 8;
    size_t len = size - 8;
    switch (codec) {
    case 0: covct_codec_rle_decode(s, len, &f, dst, NULL); break;
    case 1: covct_codec_jpeg_decode(s, len, &f, dst, NULL); break;
    case 2: covct_codec_jpegls_decode(s, len, &f, dst, NULL); break;
    default: covct_codec_j2k_decode(s, len, &f, dst, NULL); break;
    }
    covct_free(dst);
    return 0;
}
