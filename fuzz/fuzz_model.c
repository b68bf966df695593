/* libFuzzer target: the model file reader (signature, version, lengths,
 * checksum, JSON header, shapes, parameter values).  The checksum would
 * stop most mutations at the door, so a fuzzing build (COVCT_FUZZ) also
 * tries each input with its CRC-32 repaired, to reach the header checks. */
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#include "covct/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    covct_nn_model m;
    if (covct_nn_model_read_buffer(data, size, &m, NULL) == COVCT_OK)
        covct_nn_model_free(&m);
    if (size < 4 || size > ((size_t)16 << 20))
        return 0;
    uint8_t *copy = covct_malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), copy,
                                   (uInt)(size - 4));
    copy[size - 4] = (uint8_t)crc;
    copy[size - 3] = (uint8_t)(crc >> 8);
    copy[size - 2] = (uint8_t)(crc >> 16);
    copy[size - 1] = (uint8_t)(crc >> 24);
    if (covct_nn_model_read_buffer(copy, size, &m, NULL) == COVCT_OK) {
        /* A model that loads must run. */
        covct_tensor x = {0};
        int s = 1 << (m.cfg.depth - 1);
        if (covct_tensor_alloc(&x, 1, m.cfg.in_channels, s, s, NULL) ==
            COVCT_OK)
            covct_nn_forward(m.graph, &x, NULL);
        covct_tensor_free(&x);
        covct_nn_model_free(&m);
    }
    covct_free(copy);
    return 0;
}
