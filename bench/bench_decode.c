/* covct-bench-decode: parse and decode every frame of the files given,
 * in one process and one thread, and print files, bytes, seconds. */
#include <stdio.h>
#include <string.h>

#include "covct/dicom.h"

int main(int argc, char **argv)
{
    bool headers_only = argc > 1 && !strcmp(argv[1], "--headers");
    size_t files = 0, bytes = 0, failed = 0;
    double t0 = covct_now();
    for (int i = 1 + headers_only; i < argc; i++) {
        covct_error err = {0};
        covct_dcm_file *f;
        covct_dcm_read_opts o = {.stop_before_pixels = false};
        if (covct_dcm_file_read(argv[i], &o, &f, &err)) {
            failed++;
            continue;
        }
        files++;
        covct_dcm_pixel_info pi;
        if (!headers_only && !covct_dcm_pixel_info_get(f, &pi, NULL)) {
            void *buf = covct_malloc(pi.frame_bytes);
            for (uint32_t k = 0; buf && k < pi.frames; k++)
                if (covct_dcm_pixel_decode_frame(f, &pi, k, buf,
                                                 pi.frame_bytes, &err)) {
                    failed++;
                    break;
                } else {
                    bytes += pi.frame_bytes;
                }
            covct_free(buf);
        }
        covct_dcm_file_free(f);
    }
    printf("%zu %zu %.6f %zu\n", files, bytes, covct_now() - t0, failed);
    return 0;
}
