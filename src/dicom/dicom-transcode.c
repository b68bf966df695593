/*
 * Transcoding for the network requestor: a Part 10 file's data set
 * re-encoded in explicit or implicit VR little endian with native
 * (decompressed) pixel data, for a peer that does not accept the file's
 * transfer syntax (PS3.5 8, A.4; the decoders of dicom-pixel.c).
 */
#include <string.h>

#include "covct/core.h"
#include "covct/dicom.h"

covct_rc covct_dcm_transcode_native(const uint8_t *file, size_t len,
                                    bool implicit_vr, covct_buf *out,
                                    covct_error *err)
{
    uint8_t *copy = covct_malloc(len ? len : 1);
    if (!copy)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    memcpy(copy, file, len);
    covct_dcm_file *f = NULL;
    covct_rc rc = covct_dcm_file_parse(copy, len, NULL, &f, err);
    if (rc)
        return rc;
    covct_dcm_dataset *ds = covct_dcm_file_dataset(f);
    uint8_t *px = NULL;
    const covct_dcm_element *pe =
        covct_dcm_dataset_get(ds, COVCT_TAG(0x7FE0, 0x0010));
    if (pe && covct_dcm_element_encapsulated(pe)) {
        covct_dcm_pixel_info pi;
        if ((rc = covct_dcm_pixel_info_get(f, &pi, err)))
            goto out;
        size_t total;
        if (!covct_mul_size(pi.frame_bytes, pi.frames, &total)) {
            rc = COVCT_ERR(err, COVCT_ERR_LIMIT, "pixel data too large");
            goto out;
        }
        px = covct_malloc(total ? total : 1);
        if (!px) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (uint32_t i = 0; i < pi.frames && !rc; i++)
            rc = covct_dcm_pixel_decode_frame(f, &pi, i,
                                              px + (size_t)i * pi.frame_bytes,
                                              pi.frame_bytes, err);
        if (rc)
            goto out;
        /* Native encoding of what the decoder gives: samples interleaved,
         * little endian, out_bytes per sample. */
        uint16_t bits = (uint16_t)(pi.out_bytes * 8);
        if ((rc = covct_dcm_dataset_set(
                 ds, COVCT_TAG(0x7FE0, 0x0010),
                 bits > 8 ? COVCT_VR('O', 'W') : COVCT_VR('O', 'B'), px,
                 total, err)) ||
            (rc = covct_dcm_dataset_set_u16(ds, COVCT_TAG(0x0028, 0x0100),
                                            bits, err)) ||
            (rc = covct_dcm_dataset_set_string(
                 ds, COVCT_TAG(0x0028, 0x0004), COVCT_VR('C', 'S'),
                 pi.out_photometric, err)))
            goto out;
        if (pi.samples > 1 &&
            (rc = covct_dcm_dataset_set_u16(ds, COVCT_TAG(0x0028, 0x0006), 0,
                                            err)))
            goto out;
    }
    rc = covct_dcm_encode_dataset(ds, implicit_vr, out, err);
out:
    covct_free(px);
    covct_dcm_file_free(f);
    return rc;
}
