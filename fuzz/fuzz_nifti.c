/* libFuzzer target: the NIfTI-1 reader (header checks, gzip, data types,
 * scaling and geometry). */
#include <stdint.h>

#include "covct/volume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    covct_volume *v = NULL;
    if (covct_nifti_parse(data, size, &v, NULL) == COVCT_OK)
        covct_volume_free(v);
    return 0;
}
