/*
 * Frames in encapsulated pixel data (PS3.5 A.4): the same compressed
 * frames laid out every way the standard allows must decode to the same
 * samples as the original file:
 *   - one fragment per frame, empty Basic Offset Table;
 *   - frames split over several fragments, with a Basic Offset Table;
 *   - frames split over fragments, empty BOT, Extended Offset Table
 *     (7FE0,0001) with lengths (7FE0,0002);
 *   - frames split over fragments and no table at all (frame starts found
 *     from the code stream markers).
 * The re-laid files are also read by dcmtk (dcmdump, and dcmdjpls for
 * JPEG-LS), which checks covct's writer of encapsulated data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/dicom.h"
#include "test.h"

#define PDD "dicom-conformance/pydicom-data/data_store/data/"

typedef enum { ONE_PER_FRAME, SPLIT_BOT, SPLIT_EOT, SPLIT_NONE } layout;
static const char *const layout_name[] = {"one fragment per frame",
                                          "split frames + BOT",
                                          "split frames + EOT",
                                          "split frames, no table"};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static int decode_frames(covct_dcm_file *f, uint8_t **out, size_t *len,
                         covct_error *err)
{
    covct_dcm_pixel_info pi;
    if (covct_dcm_pixel_info_get(f, &pi, err))
        return -1;
    *len = pi.frame_bytes * pi.frames;
    *out = malloc(*len);
    for (uint32_t i = 0; i < pi.frames; i++)
        if (covct_dcm_pixel_decode_frame(f, &pi, i, *out + i * pi.frame_bytes,
                                         pi.frame_bytes, err))
            return -1;
    return 0;
}

static void relayout(const char *rel, const char *ts, layout how,
                     const char *dir)
{
    covct_error err = {0};
    covct_dcm_file *f;
    const char *path = test_data(rel);
    if (covct_dcm_file_read(path, NULL, &f, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    uint8_t *ref;
    size_t ref_len;
    CHECKF(decode_frames(f, &ref, &ref_len, &err) == 0, "%s: %s", rel,
           err.msg);
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    const covct_dcm_element *pe =
        covct_dcm_dataset_get(ds, COVCT_TAG(0x7FE0, 0x0010));
    size_t nfr = covct_dcm_element_fragment_count(pe) - 1;

    /* Fragments of the new layout: frame k's stream cut in `parts`. */
    int parts = how == ONE_PER_FRAME ? 1 : how == SPLIT_BOT ? 3 : 2;
    size_t n = 1 + nfr * (size_t)parts;
    const uint8_t **fp = calloc(n, sizeof *fp);
    size_t *fl = calloc(n, sizeof *fl);
    uint8_t *bot = calloc(nfr, 4);
    uint8_t *eot = calloc(nfr, 8), *eotl = calloc(nfr, 8);
    size_t k = 1, offset = 0;
    for (size_t fr = 0; fr < nfr; fr++) {
        size_t len;
        const uint8_t *p = covct_dcm_element_fragment(pe, fr + 1, &len);
        put32(bot + 4 * fr, (uint32_t)offset);
        put64(eot + 8 * fr, offset);
        put64(eotl + 8 * fr, len);
        /* Cut at even positions so no item needs padding. */
        size_t cut = (len / (size_t)parts) & ~(size_t)1;
        for (int q = 0; q < parts; q++) {
            fp[k] = p + (size_t)q * cut;
            fl[k] = q == parts - 1 ? len - (size_t)q * cut : cut;
            offset += 8 + fl[k];
            k++;
        }
    }
    fp[0] = bot;
    fl[0] = how == SPLIT_BOT ? 4 * nfr : 0;

    covct_dcm_dataset *out = covct_dcm_dataset_new();
    CHECK(!covct_dcm_dataset_copy_into(out, ds, &err));
    CHECK(!covct_dcm_dataset_set_encapsulated(out, fp, fl, n, &err));
    if (how == SPLIT_EOT) {
        CHECK(!covct_dcm_dataset_set(out, COVCT_TAG(0x7FE0, 0x0001),
                                     COVCT_VR('O', 'V'), eot, 8 * nfr, &err));
        CHECK(!covct_dcm_dataset_set(out, COVCT_TAG(0x7FE0, 0x0002),
                                     COVCT_VR('O', 'V'), eotl, 8 * nfr, &err));
    }
    covct_buf b = {0};
    covct_rc rc = covct_dcm_write_buffer_ts(out, ts, &b, &err);
    CHECKF(rc == COVCT_OK, "write %s: %s", layout_name[how], err.msg);

    char file[700], cmd[1600];
    snprintf(file, sizeof file, "%s/%d.dcm", dir, (int)how);
    FILE *w = fopen(file, "wb");
    fwrite(b.data, 1, b.len, w);
    fclose(w);

    covct_dcm_file *g;
    uint8_t *copy = covct_malloc(b.len);
    memcpy(copy, b.data, b.len);
    rc = covct_dcm_file_parse(copy, b.len, NULL, &g, &err);
    CHECKF(rc == COVCT_OK, "%s %s: parse: %s", rel, layout_name[how],
           err.msg);
    if (rc == COVCT_OK) {
        uint8_t *got;
        size_t got_len;
        int ok = decode_frames(g, &got, &got_len, &err) == 0;
        CHECKF(ok, "%s %s: decode: %s", rel, layout_name[how], err.msg);
        CHECKF(ok && got_len == ref_len && !memcmp(got, ref, ref_len),
               "%s, %s: frames equal the original's", rel, layout_name[how]);
        /* The tables were used, not the marker-scanning fallback. */
        CHECKF(!strstr(covct_dcm_file_warnings(g), "offset table"),
               "%s, %s: no offset table warning: %s", rel, layout_name[how],
               covct_dcm_file_warnings(g));
        free(got);
        covct_dcm_file_free(g);
    }
    /* dcmtk reads the file (the writer's encapsulation is right); for
     * JPEG-LS it also decodes it (it needs an offset table or one fragment
     * per frame, so only for those layouts) to the same bytes' length. */
    snprintf(cmd, sizeof cmd, "dcmdump -q '%s' >/dev/null 2>&1", file);
    CHECKF(system(cmd) == 0, "dcmdump reads %s (%s)", file, layout_name[how]);
    if (strstr(ts, ".4.80") && how != SPLIT_NONE && how != SPLIT_EOT) {
        snprintf(cmd, sizeof cmd, "dcmdjpls '%s' '%s.raw.dcm' 2>&1", file,
                 file);
        CHECKF(system(cmd) == 0, "dcmdjpls decodes %s (%s)", file,
               layout_name[how]);
    }
    covct_buf_free(&b);
    covct_dcm_dataset_free(out);
    covct_dcm_file_free(f);
    free(ref);
    free(fp);
    free(fl);
    free(bot);
    free(eot);
    free(eotl);
}

int main(void)
{
    char dir[] = "/tmp/covct-frames-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    static const struct {
        const char *file, *ts;
    } src[] = {
        {PDD "emri_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"},
        {PDD "emri_small_jpeg_2k_lossless.dcm", "1.2.840.10008.1.2.4.90"},
    };
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++)
        for (int how = ONE_PER_FRAME; how <= SPLIT_NONE; how++) {
            char sub[600];
            snprintf(sub, sizeof sub, "%s/%zu", dir, i);
            mkdir(sub, 0700);
            relayout(src[i].file, src[i].ts, (layout)how, sub);
        }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return test_report();
}
