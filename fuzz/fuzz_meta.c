/* libFuzzer target: the metadata route's header reader (src/http/meta.c).
 * meta_header_read() parses a file from a prefix of it when the prefix
 * provably holds every element before Pixel Data; the input, written to a
 * file, must give exactly what the whole-file reader gives
 * (covct_dcm_file_read with stop_before_pixels): both fail, or both
 * succeed with the same DICOM JSON.  Inputs longer than the 16 KiB prefix
 * exercise the decision (libFuzzer -max_len covers it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "covct/dicom.h"
#include "http/dicomweb_int.h"
#include "http/meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void encode(const covct_dcm_file *f, covct_buf *out)
{
    covct_error err = {0};
    dicomjson_opts o = {.bulk_uri_prefix = "b/", .bulk_threshold = 1024};
    if (dicomjson_encode(covct_dcm_file_dataset_const(f), &o, out, &err))
        covct_buf_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/covct-fuzz-meta-%ld.dcm",
                 (long)getpid());
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return 0;
    size_t w = fwrite(data, 1, size, fp);
    if (fclose(fp) || w != size)
        return 0;
    covct_dcm_file *a = NULL, *b = NULL;
    covct_error ea = {0}, eb = {0};
    covct_dcm_read_opts ro = {.stop_before_pixels = true};
    covct_rc ra = meta_header_read(path, &a, &ea);
    covct_rc rb = covct_dcm_file_read(path, &ro, &b, &eb);
    if ((ra == COVCT_OK) != (rb == COVCT_OK))
        abort(); /* the prefix reader and the whole-file reader disagree */
    if (ra == COVCT_OK) {
        covct_buf ja = {0}, jb = {0};
        encode(a, &ja);
        encode(b, &jb);
        if (ja.len != jb.len || (ja.len && memcmp(ja.data, jb.data, ja.len)))
            abort(); /* the same file read two ways gave different data */
        covct_buf_free(&ja);
        covct_buf_free(&jb);
    }
    covct_dcm_file_free(a);
    covct_dcm_file_free(b);
    unlink(path);
    return 0;
}
