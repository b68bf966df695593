/* libFuzzer target: de-identification (PS3.15 Annex E) of one input file:
 * parse it as DICOM, de-identify it under a fixed key with the default
 * options and with the Basic Profile alone, write the result to a buffer
 * and parse that again (the output of covct deid must always be DICOM). */
#include <stdint.h>
#include <string.h>

#include "covct/dicom.h"
#include "covct/govern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const uint8_t *data, size_t size, const covct_deid_key *key,
                const covct_deid_opts *opts)
{
    covct_buf out = {0};
    if (covct_deid_buffer(data, size, key, opts, &out, NULL) == COVCT_OK) {
        uint8_t *copy = covct_malloc(out.len ? out.len : 1);
        if (copy) {
            memcpy(copy, out.data, out.len);
            covct_dcm_file *f = NULL;
            if (covct_dcm_file_parse(copy, out.len, NULL, &f, NULL) !=
                COVCT_OK)
                __builtin_trap(); /* covct wrote something it cannot read */
            covct_dcm_file_free(f);
        }
    }
    covct_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static covct_deid_key *key;
    if (!key) {
        uint8_t secret[32];
        for (int i = 0; i < 32; i++)
            secret[i] = (uint8_t)(i * 7 + 1);
        if (covct_deid_key_from_bytes(secret, sizeof secret, &key, NULL))
            return 0;
    }
    covct_deid_opts o;
    covct_deid_opts_default(&o);
    o.project = "fuzz";
    one(data, size, key, &o);
    memset(&o, 0, sizeof o);
    o.keep_device_id = o.keep_institution_id = true;
    one(data, size, key, &o);
    return 0;
}
