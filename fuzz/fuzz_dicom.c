/* libFuzzer target: the PS3.10 parser, the data element accessors, the
 * character set conversion and every pixel decoder, on one input file. */
#include <stdint.h>
#include <string.h>

#include "covct/dicom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const covct_dcm_dataset *ds, unsigned depth)
{
    char buf[128];
    for (size_t i = 0; i < covct_dcm_dataset_count(ds); i++) {
        const covct_dcm_element *e = covct_dcm_dataset_at(ds, i);
        uint32_t vm = covct_dcm_element_vm(e);
        for (uint32_t k = 0; k < vm && k < 4; k++) {
            int64_t iv;
            double dv;
            covct_dcm_element_get_string(e, k, buf, sizeof buf, NULL);
            covct_dcm_element_get_int(e, k, &iv, NULL);
            covct_dcm_element_get_double(e, k, &dv, NULL);
        }
        if (covct_dcm_vr_is_string(covct_dcm_element_vr(e))) {
            char *s = NULL;
            covct_dcm_get_utf8(ds, covct_dcm_element_tag(e), &s, NULL);
            covct_free(s);
        }
        for (size_t k = 0; k < covct_dcm_element_item_count(e) && depth < 8;
             k++)
            walk(covct_dcm_element_item(e, k), depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = covct_malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    covct_dcm_file *f = NULL;
    covct_error err = {0};
    if (covct_dcm_file_parse(copy, size, NULL, &f, &err) != COVCT_OK)
        return 0;
    walk(covct_dcm_file_dataset_const(f), 0);
    covct_dcm_pixel_info pi;
    if (covct_dcm_pixel_info_get(f, &pi, NULL) == COVCT_OK &&
        pi.frame_bytes <= ((size_t)16 << 20)) {
        void *buf = covct_malloc(pi.frame_bytes);
        for (uint32_t fr = 0; buf && fr < pi.frames && fr < 4; fr++)
            covct_dcm_pixel_decode_frame(f, &pi, fr, buf, pi.frame_bytes,
                                         NULL);
        covct_free(buf);
    }
    covct_buf out = {0};
    covct_dcm_write_buffer(covct_dcm_file_dataset_const(f), &out, NULL);
    covct_buf_free(&out);
    covct_dcm_file_free(f);
    return 0;
}
