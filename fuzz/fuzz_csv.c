/* libFuzzer target: the CSV parser of clinical label files (RFC 4180
 * quoting, line ends, byte order mark, UTF-8 checks, caps). */
#include <stdint.h>
#include <string.h>

#include "covct/site.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touch every byte handed over, so that a field pointing past its buffer
 * is found by AddressSanitizer. */
static covct_rc touch(void *user, const covct_csv_record *r, covct_error *err)
{
    (void)err;
    size_t *sum = user;
    for (size_t i = 0; i < r->n_fields; i++) {
        if (strlen(r->fields[i]) != r->lens[i] && !r->problem)
            __builtin_trap(); /* a NUL inside a field must be a problem */
        for (size_t k = 0; k <= r->lens[i]; k++)
            *sum += (uint8_t)r->fields[i][k];
    }
    if (r->problem)
        *sum += strlen(r->problem);
    return COVCT_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t sum = 0;
    covct_error err = { 0 };
    covct_csv_parse(data, size, touch, &sum, &err);
    return 0;
}
