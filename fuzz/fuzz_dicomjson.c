/* libFuzzer target: the DICOM JSON Model encoder (src/http/dicomjson.c).
 * Parses the input as a DICOM file, encodes its data set inline and with
 * bulk data URIs, and checks that the output is JSON that cJSON reads back
 * as one object, and that it is valid UTF-8 (RFC 8259 8.1). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "covct/dicom.h"
#include "http/dicomweb_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t bad = 0;
    covct_buf b = {0};
    int ok = dicomjson_escape(&b, (const char *)s, n, &bad, NULL) == COVCT_OK;
    covct_buf_free(&b);
    return ok && bad == 0;
}

static void check(const covct_dcm_dataset *ds, const dicomjson_opts *o)
{
    covct_buf out = {0};
    covct_error err = {0};
    if (dicomjson_encode(ds, o, &out, &err) == COVCT_OK) {
        cJSON *j = cJSON_ParseWithLength((const char *)out.data, out.len);
        if (!j || !cJSON_IsObject(j) || !utf8_ok(out.data, out.len))
            abort(); /* the encoder wrote something that is not JSON */
        cJSON_Delete(j);
    } else if (out.len != 0) {
        abort(); /* a failed encode must leave the buffer as it was */
    }
    covct_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = covct_malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    covct_dcm_file *f = NULL;
    covct_error err = {0};
    if (covct_dcm_file_parse(copy, size, NULL, &f, &err) != COVCT_OK)
        return 0;
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    check(ds, NULL);
    dicomjson_opts o = {.bulk_uri_prefix = "b/", .bulk_threshold = 8,
                        .include_group_0002 = true};
    check(ds, &o);
    covct_dcm_file_free(f);
    return 0;
}
