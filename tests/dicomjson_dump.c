/*
 * Test helper for tests/dicomweb_json.sh: prints the DICOM JSON Model
 * (PS3.18 F.2) of DICOM files, as src/http/dicomjson.c writes it.
 *
 *   dicomjson_dump [--bulk PREFIX] [--threshold N] FILE      one object
 *   dicomjson_dump [--bulk PREFIX] --array FILE...           one array
 *   dicomjson_dump --time [--headers] FILE...   time parse + encode of all
 *                                               files into one array
 *
 * --stats prints the encoder's counters on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "http/dicomweb_int.h"

static int usage(void)
{
    fprintf(stderr, "usage: dicomjson_dump [--bulk PREFIX] [--threshold N] "
                    "[--array] [--time] [--headers] [--stats] FILE...\n");
    return 2;
}

int main(int argc, char **argv)
{
    dicomjson_opts opts = {0};
    dicomjson_stats st = {0};
    opts.stats = &st;
    int array = 0, timing = 0, stats = 0, headers = 0, i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (!strcmp(argv[i], "--bulk") && i + 1 < argc) {
            opts.bulk_uri_prefix = argv[++i];
        } else if (!strcmp(argv[i], "--threshold") && i + 1 < argc) {
            char *end;
            opts.bulk_threshold = strtoul(argv[++i], &end, 10);
            if (*end)
                return usage();
        } else if (!strcmp(argv[i], "--array")) {
            array = 1;
        } else if (!strcmp(argv[i], "--time")) {
            timing = array = 1;
        } else if (!strcmp(argv[i], "--headers")) {
            headers = 1;
        } else if (!strcmp(argv[i], "--stats")) {
            stats = 1;
        } else {
            return usage();
        }
    }
    if (i >= argc || (!array && argc - i != 1))
        return usage();

    covct_dcm_read_opts ro = {.stop_before_pixels = headers != 0};
    size_t nfiles = (size_t)(argc - i);
    covct_dcm_file **files = calloc(nfiles, sizeof *files);
    if (!files)
        return 1;
    covct_error err = {0};
    double t0 = covct_now();
    for (size_t k = 0; k < nfiles; k++) {
        if (covct_dcm_file_read(argv[i + (int)k], &ro, &files[k], &err)) {
            fprintf(stderr, "dicomjson_dump: %s: %s\n", argv[i + (int)k],
                    err.msg);
            return 1;
        }
    }
    double t1 = covct_now();
    covct_buf out = {0};
    int rc = 0;
    if (array) {
        dicomjson_array a;
        rc |= dicomjson_array_begin(&a, &out, &err) != COVCT_OK;
        for (size_t k = 0; k < nfiles && !rc; k++)
            rc |= dicomjson_array_append(
                      &a, covct_dcm_file_dataset_const(files[k]), &opts,
                      &err) != COVCT_OK;
        rc |= !rc && dicomjson_array_end(&a, &err) != COVCT_OK;
    } else {
        rc = dicomjson_encode(covct_dcm_file_dataset_const(files[0]), &opts,
                              &out, &err) != COVCT_OK;
    }
    double t2 = covct_now();
    if (rc) {
        fprintf(stderr, "dicomjson_dump: %s\n", err.msg);
    } else if (timing) {
        printf("%zu files: read+parse %.1f ms, encode %.1f ms, "
               "%zu bytes of JSON\n",
               nfiles, (t1 - t0) * 1e3, (t2 - t1) * 1e3, out.len);
    } else {
        fwrite(out.data, 1, out.len, stdout);
        fputc('\n', stdout);
    }
    if (stats)
        fprintf(stderr,
                "stats: invalid_utf8=%zu invalid_numbers=%zu nonfinite=%zu "
                "bulk_omitted=%zu odd_lengths=%zu\n",
                st.invalid_utf8, st.invalid_numbers, st.nonfinite,
                st.bulk_omitted, st.odd_lengths);
    covct_buf_free(&out);
    for (size_t k = 0; k < nfiles; k++)
        covct_dcm_file_free(files[k]);
    free(files);
    return rc;
}
