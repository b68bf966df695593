/*
 * covct_report_write_dicom() on a tiny phantom series (37 x 37 pixels, an
 * odd number, so that 1-bit SEG frames straddle bytes; 12 slices), with the
 * phantom's exact truth as the segmentation:
 *
 *   - the objects are written and read back by covct's own parser: SOP
 *     classes, new 2.25 UIDs, every SEG frame's source reference and bits
 *     against the truth masks;
 *   - the refusals: no series, no lungs, a mismatched series, a source
 *     image without Study Instance UID or Frame of Reference UID;
 *   - a Latin-1 patient name comes out as UTF-8 with ISO_IR 192, an ASCII
 *     one without Specific Character Set;
 *   - the banner wraps on a narrow image;
 *   - allocation failures are reported and leak nothing (sanitizer build).
 *
 * The independent peers (dciodvfy, dcmtk, pydicom) check the objects of a
 * real covct analyze run in tests/dicom_results.sh.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/analysis.h"
#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/phantom.h"
#include "covct/report.h"
#include "covct/volume.h"
#include "report/report_int.h"
#include "test.h"

#define T(g, e) COVCT_TAG(g, e)

static char tmpdir[1024];

static const char *tpath(const char *rel)
{
    static char bufs[8][1400];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, rel);
    return b;
}

typedef struct fixture {
    covct_seg *truth;
    covct_series_set *set;
    const covct_series *s;
    covct_volume *ct;
    covct_lung_info li;
    covct_measures m;
    covct_report_input in;
} fixture;

static void release(fixture *f)
{
    covct_measures_free(&f->m);
    covct_seg_free(f->truth);
    covct_volume_free(f->ct);
    covct_series_set_free(f->set);
    memset(f, 0, sizeof *f);
}

/* Write the phantom's DICOM series into `dir` once (the truth kept in
 * *truth when not NULL). */
static int make_series(const char *dir, covct_seg **truth)
{
    covct_phantom_params p;
    covct_phantom_params_default(&p);
    p.nx = p.ny = 37;
    p.nz = 12;
    p.pixel_mm = 9.7;
    p.slice_mm = 25;
    covct_volume *ct = NULL;
    covct_seg *t = NULL;
    covct_error err = {0};
    covct_rc rc = covct_phantom_make(&p, &ct, &t, NULL, &err);
    if (!rc)
        rc = covct_phantom_write_dicom(ct, dir, &err);
    CHECKF(rc == COVCT_OK, "phantom: %s", err.msg);
    covct_volume_free(ct);
    if (truth)
        *truth = t;
    else
        covct_seg_free(t);
    return rc == COVCT_OK;
}

/* Load `dir` as the analysis would, with `truth` as its segmentation (the
 * fixture owns it from now on, also when loading fails). */
static int load(fixture *f, const char *dir, covct_seg *truth)
{
    memset(f, 0, sizeof *f);
    covct_error err = {0};
    f->truth = truth;
    covct_rc rc = covct_series_scan(dir, &f->set, &err);
    if (!rc) {
        f->s = covct_series_set_best(f->set);
        rc = f->s ? covct_series_load(f->s, 1, NULL, NULL, &f->ct, &err)
                  : COVCT_ERR_NOT_FOUND;
    }
    if (!rc)
        rc = covct_measures_compute(f->ct, f->truth, NULL, &f->m, &err);
    CHECKF(rc == COVCT_OK, "load %s: %s", dir, err.msg);
    if (rc) {
        release(f);
        return 0;
    }
    f->li.is_chest = true;
    f->li.right_ml = f->m.right_ml;
    f->li.left_ml = f->m.left_ml;
    f->in.source = dir;
    f->in.ct = f->ct;
    f->in.seg = f->truth;
    f->in.lungs = &f->li;
    f->in.m = &f->m;
    f->in.lesion_method = "density";
    return 1;
}

static covct_seg *copy_seg(const covct_seg *s)
{
    covct_seg *c = covct_calloc(1, sizeof *c);
    size_t n = (size_t)s->nx * s->ny * s->nz;
    c->nx = s->nx;
    c->ny = s->ny;
    c->nz = s->nz;
    c->body = covct_malloc(n);
    c->airways = covct_malloc(n);
    c->lungs = covct_malloc(n);
    c->lobes = covct_malloc(n);
    c->lesions = covct_malloc(n);
    memcpy(c->body, s->body, n);
    memcpy(c->airways, s->airways, n);
    memcpy(c->lungs, s->lungs, n);
    memcpy(c->lobes, s->lobes, n);
    memcpy(c->lesions, s->lesions, n);
    return c;
}

static int is_uid(const char *u)
{
    size_t n = strlen(u);
    if (n < 6 || n > 64 || strncmp(u, "2.25.", 5))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(u[i] == '.' || (u[i] >= '0' && u[i] <= '9')))
            return 0;
    return 1;
}

static const covct_dcm_dataset *first_item(const covct_dcm_dataset *ds,
                                           uint32_t tag)
{
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    return e && covct_dcm_element_item_count(e)
               ? covct_dcm_element_item(e, 0)
               : NULL;
}

static void str_of(const covct_dcm_dataset *ds, uint32_t tag, char *buf,
                   size_t cap)
{
    if (!ds || covct_dcm_get_string(ds, tag, 0, buf, cap, NULL))
        buf[0] = '\0';
}

/* The SEG read back: every frame against the truth slice it names. */
static void check_seg(const fixture *f, const char *path)
{
    covct_dcm_file *file = NULL;
    covct_error err = {0};
    CHECKF(covct_dcm_file_read(path, NULL, &file, &err) == COVCT_OK, "%s",
           err.msg);
    if (!file)
        return;
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(file);
    char buf[128];
    str_of(ds, T(0x0008, 0x0016), buf, sizeof buf);
    CHECK(!strcmp(buf, "1.2.840.10008.5.1.4.1.1.66.4"));
    str_of(ds, T(0x0008, 0x0018), buf, sizeof buf);
    CHECK(is_uid(buf));
    /* ASCII patient name: no Specific Character Set. */
    CHECK(covct_dcm_dataset_get(ds, T(0x0008, 0x0005)) == NULL);
    covct_series_slice_ref r0;
    covct_series_slice_ref_get(f->s, 0, &r0);
    str_of(ds, T(0x0020, 0x0052), buf, sizeof buf);
    CHECK(!strcmp(buf, r0.frame_of_ref_uid));
    int64_t frames = 0, rows = 0, cols = 0;
    covct_dcm_get_int(ds, T(0x0028, 0x0008), 0, &frames, NULL);
    covct_dcm_get_int(ds, T(0x0028, 0x0010), 0, &rows, NULL);
    covct_dcm_get_int(ds, T(0x0028, 0x0011), 0, &cols, NULL);
    CHECK(rows == f->ct->ny && cols == f->ct->nx && frames > 0);
    const covct_dcm_element *pf = covct_dcm_dataset_get(ds, T(0x5200, 0x9230));
    const covct_dcm_element *pd = covct_dcm_dataset_get(ds, T(0x7FE0, 0x0010));
    size_t plen = 0;
    const uint8_t *bits = pd ? covct_dcm_element_value(pd, &plen) : NULL;
    size_t plane = (size_t)rows * (size_t)cols;
    CHECK(pf && covct_dcm_element_item_count(pf) == (size_t)frames);
    CHECK(bits && plen == (((size_t)frames * plane + 7) / 8 + 1) / 2 * 2);
    if (!pf || !bits || covct_dcm_element_item_count(pf) != (size_t)frames) {
        covct_dcm_file_free(file);
        return;
    }
    /* Segment number -> (label array, value), from the labels. */
    const covct_dcm_element *sq = covct_dcm_dataset_get(ds, T(0x0062, 0x0002));
    const uint8_t *mask[16] = {0};
    int value[16] = {0};
    size_t nseg = sq ? covct_dcm_element_item_count(sq) : 0;
    CHECK(nseg == 9);
    for (size_t i = 0; i < nseg && i < 15; i++) {
        const covct_dcm_dataset *it = covct_dcm_element_item(sq, i);
        int64_t no = 0;
        covct_dcm_get_int(it, T(0x0062, 0x0004), 0, &no, NULL);
        CHECK(no == (int64_t)i + 1);
        str_of(it, T(0x0062, 0x0005), buf, sizeof buf);
        static const struct {
            const char *label;
            int which, v;
        } map[] = {{"Right lung", 0, 1},       {"Left lung", 0, 2},
                   {"Left upper lobe", 1, 1},  {"Left lower lobe", 1, 2},
                   {"Right upper lobe", 1, 3}, {"Right middle lobe", 1, 4},
                   {"Right lower lobe", 1, 5}, {"Ground glass opacity", 2, 1},
                   {"Consolidation", 2, 2}};
        for (size_t j = 0; j < sizeof map / sizeof map[0]; j++)
            if (!strcmp(buf, map[j].label)) {
                mask[i + 1] = map[j].which == 0   ? f->truth->lungs
                              : map[j].which == 1 ? f->truth->lobes
                                                  : f->truth->lesions;
                value[i + 1] = map[j].v;
            }
        CHECKF(mask[i + 1] != NULL, "unknown segment %s", buf);
    }
    size_t counted[16] = {0}, wrong_bits = 0, wrong_refs = 0;
    for (int64_t fi = 0; fi < frames; fi++) {
        const covct_dcm_dataset *it = covct_dcm_element_item(pf, (size_t)fi);
        int64_t segno = 0, kk = 0;
        covct_dcm_get_int(first_item(it, T(0x0062, 0x000A)),
                          T(0x0062, 0x000B), 0, &segno, NULL);
        covct_dcm_get_int(first_item(it, T(0x0020, 0x9111)),
                          T(0x0020, 0x9157), 1, &kk, NULL);
        if (segno < 1 || segno > 9 || kk < 1 || kk > f->ct->nz) {
            wrong_refs++;
            continue;
        }
        uint32_t k = (uint32_t)kk - 1;
        const covct_dcm_dataset *src = first_item(
            first_item(it, T(0x0008, 0x9124)), T(0x0008, 0x2112));
        covct_series_slice_ref r;
        covct_series_slice_ref_get(f->s, k, &r);
        str_of(src, T(0x0008, 0x1155), buf, sizeof buf);
        if (strcmp(buf, r.sop_instance_uid))
            wrong_refs++;
        const uint8_t *lab = mask[segno] + plane * k;
        for (size_t i = 0; i < plane; i++) {
            size_t off = (size_t)fi * plane + i;
            int bit = (bits[off >> 3] >> (off & 7)) & 1;
            if (bit != (lab[i] == value[segno]))
                wrong_bits++;
            counted[segno] += (size_t)bit;
        }
    }
    CHECKF(wrong_refs == 0, "%zu frames with a wrong source", wrong_refs);
    CHECKF(wrong_bits == 0, "%zu pixels differ from the truth", wrong_bits);
    size_t n = covct_volume_voxels(f->ct);
    for (size_t q = 1; q <= nseg && q < 16; q++) {
        size_t want = 0;
        for (size_t i = 0; i < n; i++)
            want += mask[q][i] == value[q];
        CHECKF(counted[q] == want, "segment %zu: %zu voxels, truth %zu", q,
               counted[q], want);
    }
    covct_dcm_file_free(file);
}

static void test_write(fixture *f)
{
    covct_error err = {0};
    covct_dicom_results res;
    covct_rc rc = covct_report_write_dicom(tpath("out"), &f->in, f->s, &res,
                                           &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    if (rc)
        return;
    uint32_t ks[COVCT_REPORT_MAX_KEY];
    int nk = covct_report_pick_slices(&f->in, ks);
    CHECKF(res.n == (size_t)nk + 3, "%zu objects for %d key slices", res.n,
           nk);
    int segs = 0, srs = 0, scs = 0;
    for (size_t i = 0; i < res.n; i++) {
        struct stat st;
        CHECK(stat(res.r[i].path, &st) == 0 && st.st_size > 0);
        CHECK(is_uid(res.r[i].sop_instance_uid));
        CHECK(is_uid(res.r[i].series_uid));
        segs += !strcmp(res.r[i].kind, "SEG");
        srs += !strcmp(res.r[i].kind, "SR");
        scs += !strcmp(res.r[i].kind, "SC");
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(res.r[i].sop_instance_uid,
                         res.r[j].sop_instance_uid));
    }
    CHECK(segs == 1 && srs == 1 && scs == nk + 1);
    /* Key images share a series; the others each have their own. */
    CHECK(res.n >= 4 &&
          !strcmp(res.r[2].series_uid, res.r[3].series_uid) &&
          strcmp(res.r[0].series_uid, res.r[1].series_uid) &&
          strcmp(res.r[0].series_uid, res.r[2].series_uid));
    check_seg(f, tpath("out/seg.dcm"));
    covct_dicom_results_free(&res);
    CHECK(res.n == 0 && res.r == NULL);
    covct_dicom_results_free(NULL);
}

/* A copy of the series' folder. */
static int copy_dir(const char *from, const char *to)
{
    mkdir(to, 0777);
    DIR *d = opendir(from);
    if (!d)
        return 0;
    struct dirent *de;
    int ok = 1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char a[2048], b[2048];
        snprintf(a, sizeof a, "%s/%s", from, de->d_name);
        snprintf(b, sizeof b, "%s/%s", to, de->d_name);
        uint8_t *data = NULL;
        size_t len = 0;
        if (covct_file_read(a, &data, &len, NULL) ||
            covct_file_write_bytes(b, data, len, NULL))
            ok = 0;
        covct_free(data);
    }
    closedir(d);
    return ok;
}

/* Rewrite one file with `tag` set to `value` (and the character set). */
static int rewrite(const char *path, uint32_t tag, const char *vr,
                   const char *value, const char *charset)
{
    covct_dcm_file *f = NULL;
    covct_error err = {0};
    covct_rc rc = covct_dcm_file_read(path, NULL, &f, &err);
    covct_dcm_dataset *ds = f ? covct_dcm_file_dataset(f) : NULL;
    covct_dcm_dataset *copy = covct_dcm_dataset_new();
    if (!rc)
        rc = covct_dcm_dataset_copy_into(copy, ds, &err);
    if (!rc)
        rc = covct_dcm_dataset_set_string(copy, tag, COVCT_VR(vr[0], vr[1]),
                                          value, &err);
    if (!rc && charset)
        rc = covct_dcm_dataset_set_string(copy, T(0x0008, 0x0005),
                                          COVCT_VR('C', 'S'), charset, &err);
    if (!rc)
        rc = covct_dcm_write_file(path, copy, &err);
    CHECKF(rc == COVCT_OK, "rewrite %s: %s", path, err.msg);
    covct_dcm_dataset_free(copy);
    covct_dcm_file_free(f);
    return rc == COVCT_OK;
}

/* A variant of the series: one value changed in every file; the write
 * must succeed or fail with `want_rc` naming `want_msg`. */
static void variant(const char *name, uint32_t tag, const char *vr,
                    const char *value, const char *charset,
                    const covct_seg *truth, covct_rc want_rc,
                    const char *want_msg)
{
    char dir[1400], out[1500];
    snprintf(dir, sizeof dir, "%s", tpath(name));
    snprintf(out, sizeof out, "%s-out", dir);
    if (!copy_dir(tpath("series"), dir))
        return;
    /* Every file, as a real series would have it. */
    DIR *d = opendir(dir);
    struct dirent *de;
    int ok = d != NULL;
    while (ok && (de = readdir(d)) != NULL) {
        char p[1700];
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        ok = rewrite(p, tag, vr, value, charset);
    }
    if (d)
        closedir(d);
    if (!ok)
        return;
    fixture f;
    if (!load(&f, dir, copy_seg(truth)))
        return;
    covct_error err = {0};
    covct_rc rc = covct_report_write_dicom(out, &f.in, f.s, NULL, &err);
    CHECKF(rc == want_rc, "%s: rc %d (%s), want %d", name, (int)rc, err.msg,
           (int)want_rc);
    if (want_msg)
        CHECKF(strstr(err.msg, want_msg) != NULL, "%s: message '%s'", name,
               err.msg);
    if (want_rc) {
        char seg[1600];
        snprintf(seg, sizeof seg, "%s/seg.dcm", out);
        struct stat st;
        CHECKF(stat(seg, &st) != 0, "%s: seg.dcm written anyway", name);
    } else {
        /* The Latin-1 name, now UTF-8 under ISO_IR 192. */
        char seg[1600], buf[128];
        snprintf(seg, sizeof seg, "%s/seg.dcm", out);
        covct_dcm_file *file = NULL;
        if (covct_dcm_file_read(seg, NULL, &file, &err) == COVCT_OK) {
            const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(file);
            str_of(ds, T(0x0008, 0x0005), buf, sizeof buf);
            CHECK(!strcmp(buf, "ISO_IR 192"));
            str_of(ds, T(0x0010, 0x0010), buf, sizeof buf);
            CHECKF(!strcmp(buf, "M\xC3\xBCller^J\xC3\xBCrgen"), "name '%s'",
                   buf);
        }
        CHECK(file != NULL);
        covct_dcm_file_free(file);
    }
    release(&f);
}

static void test_refusals(fixture *f)
{
    covct_error err = {0};
    CHECK(covct_report_write_dicom(tpath("r"), &f->in, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "NIfTI") != NULL);
    covct_error_clear(&err);
    CHECK(covct_report_write_dicom(NULL, &f->in, f->s, NULL, &err) ==
          COVCT_ERR_ARG);
    /* Not a chest: nothing to encode. */
    covct_report_input in = f->in;
    covct_lung_info li = f->li;
    li.is_chest = false;
    in.lungs = &li;
    covct_error_clear(&err);
    CHECK(covct_report_write_dicom(tpath("r"), &in, f->s, NULL, &err) ==
          COVCT_ERR_ARG);
    /* The volume is not that series' (one slice fewer). */
    covct_volume v = *f->ct;
    covct_seg sg = *f->truth;
    v.nz--;
    sg.nz--;
    in = f->in;
    in.ct = &v;
    in.seg = &sg;
    covct_error_clear(&err);
    CHECK(covct_report_write_dicom(tpath("r"), &in, f->s, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "not loaded from this series") != NULL);
    /* Segmentation of another size. */
    sg = *f->truth;
    sg.nx++;
    in = f->in;
    in.seg = &sg;
    covct_error_clear(&err);
    CHECK(covct_report_write_dicom(tpath("r"), &in, f->s, NULL, &err) ==
          COVCT_ERR_ARG);
    struct stat st;
    CHECK(stat(tpath("r"), &st) != 0); /* nothing created */

    variant("nostudy", T(0x0020, 0x000D), "UI", "", NULL, f->truth,
            COVCT_ERR_UNSUPPORTED, "Study Instance UID");
    variant("nofor", T(0x0020, 0x0052), "UI", "", NULL, f->truth,
            COVCT_ERR_UNSUPPORTED, "Frame of Reference UID");
    /* Latin-1 (ISO_IR 100) name: the output is UTF-8. */
    variant("latin1", T(0x0010, 0x0010), "PN", "M\xFCller^J\xFCrgen",
            "ISO_IR 100", f->truth, COVCT_OK, NULL);
}

static void test_banner(void)
{
    covct_error err = {0};
    uint32_t w = 90, h = 20;
    uint8_t *px = covct_calloc((size_t)w * h, 3);
    CHECK(covct_report_banner(&px, w, &h, "AI RESULT - TO BE CONFIRMED BY A "
                                          "RADIOLOGIST",
                              &err) == COVCT_OK);
    /* 90 pixels hold 14 characters at scale 1: four lines. */
    CHECKF(h > 20 + 3 * 11, "height %u", (unsigned)h);
    CHECK(px[0] == 150 && px[1] == 0 && px[2] == 0);
    /* Some white text, and the image below unchanged (black). */
    size_t white = 0, n = (size_t)w * h;
    for (size_t i = 0; i < n; i++)
        white += px[3 * i] == 255 && px[3 * i + 1] == 255;
    CHECK(white > 50);
    CHECK(px[3 * (n - 1)] == 0);
    covct_free(px);
    CHECK(covct_report_banner(NULL, 10, &h, "X", &err) == COVCT_ERR_ARG);
}

static void test_alloc_failures(fixture *f)
{
    covct_error err = {0};
    covct_alloc_fail_at(0);
    covct_alloc_count();
    covct_alloc_fail_at(1000000000);
    CHECK(covct_report_write_dicom(tpath("alloc"), &f->in, f->s, NULL,
                                   &err) == COVCT_OK);
    uint64_t total = covct_alloc_count();
    covct_alloc_fail_at(0);
    /* Every allocation of the first 400, then about 400 more spread over
     * the rest (each run renders the key images again). */
    uint64_t step = total > 800 ? (total - 400) / 400 : 1;
    int failed = 0, wrong = 0, runs = 0;
    for (uint64_t n = 1; n <= total; n += n < 400 ? 1 : step) {
        covct_dicom_results res;
        covct_error_clear(&err);
        covct_alloc_fail_at(n);
        covct_rc rc = covct_report_write_dicom(tpath("alloc"), &f->in, f->s,
                                               &res, &err);
        covct_alloc_fail_at(0);
        runs++;
        if (rc) {
            failed++;
            if (rc != COVCT_ERR_NOMEM || !err.msg[0] || res.n || res.r)
                wrong++;
        }
        covct_dicom_results_free(&res);
    }
    CHECKF(total > 100 && failed > 0 && wrong == 0,
           "%llu allocations, %d runs, %d failed, %d wrong codes/messages",
           (unsigned long long)total, runs, failed, wrong);
    /* No temporary file left behind. */
    DIR *d = opendir(tpath("alloc"));
    int tmp = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        tmp += strstr(de->d_name, ".tmp") != NULL;
    if (d)
        closedir(d);
    CHECKF(tmp == 0, "%d temporary files left", tmp);
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            char p[2048];
            snprintf(p, sizeof p, "%s/%s", path, de->d_name);
            rm_rf(p);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/covct-dicomres-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    test_banner();
    covct_seg *truth = NULL;
    fixture f;
    if (make_series(tpath("series"), &truth) &&
        load(&f, tpath("series"), truth)) {
        test_write(&f);
        test_refusals(&f);
        test_alloc_failures(&f);
        release(&f);
    }
    rm_rf(tmpdir);
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}
