/* libFuzzer target: the multipart/related parser (src/http/multipart.c).
 * The first line of the input is the Content-Type header and the rest the
 * body; the body is also parsed under a few fixed headers, and once with
 * small limits so that the limit paths are reached. */
#include <stdint.h>
#include <string.h>

#include "covct/core.h"
#include "http/dicomweb_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static covct_rc touch(const multipart_part *p, void *user, covct_error *err)
{
    size_t *sum = user;
    (void)err;
    /* Read every byte the parser hands out, so ASan checks the spans. */
    for (size_t i = 0; i < p->body_len; i++)
        *sum += p->body[i];
    for (size_t i = 0; i < p->n_headers; i++)
        *sum += strlen(p->headers[i].name) + strlen(p->headers[i].value);
    *sum += strlen(p->content_type) + strlen(p->content_location) +
            strlen(p->content_id) + strlen(p->content_length) +
            strlen(p->content_transfer_encoding);
    if (multipart_part_header(p, "content-type"))
        (*sum)++;
    return COVCT_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const fixed[] = {
        "multipart/related; type=\"application/dicom\"; boundary=B",
        "multipart/related; boundary=\"--==x y==\"",
        "multipart/related;boundary=covct-7a1f",
    };
    size_t sum = 0;
    covct_error err = {0};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        covct_error_clear(&err);
        multipart_parse(data, size, fixed[i], touch, &sum, &err);
    }
    const uint8_t *nl = memchr(data, '\n', size < 512 ? size : 512);
    if (nl) {
        size_t hl = (size_t)(nl - data);
        char header[513];
        memcpy(header, data, hl);
        header[hl] = '\0';
        covct_error_clear(&err);
        multipart_parse(nl + 1, size - hl - 1, header, touch, &sum, &err);
        multipart_limits lim = {.max_parts = 3, .max_header_bytes = 64,
                                .max_headers = 2};
        covct_error_clear(&err);
        multipart_parse_ex(nl + 1, size - hl - 1, header, &lim, touch, &sum,
                           &err);
    }
    return 0;
}
