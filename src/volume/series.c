/*
 * DICOM series to volume: scan files, group them into series, order the
 * slices along the slice normal, check the geometry and stack the decoded
 * frames into a Hounsfield-unit volume.
 *
 * Geometry follows PS3.3 C.7.6.2 (Image Plane Module): Image Orientation
 * (Patient) gives the row and column direction cosines, Image Position
 * (Patient) the centre of the first voxel, both in LPS millimetres.  Slices
 * are ordered by the projection of their position on the normal (row x
 * column), never by file name or Instance Number, which scanners and PACS
 * do not keep consistent.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/dicom.h"
#include "covct/limits.h"
#include "covct/volume.h"

#define T(g, e) COVCT_TAG(g, e)

/* One image plane: a single-frame file, or one frame of a multi-frame. */
typedef struct slice {
    char *path;
    uint32_t frame;
    char series_uid[65], study_uid[65], modality[17], description[65];
    char ts[65], sop_uid[65], frame_of_ref[65], sop_class[65];
    char patient_name[130], patient_id[65], study_date[17], series_number[13];
    uint32_t rows, cols;
    bool has_ipp, has_iop;
    double ipp[3], iop[6];
    double spacing[2]; /* row spacing, column spacing */
    double slope, intercept;
    int bits_stored, pixel_rep;
    double thickness, tilt;
    uint32_t n_frames; /* frames in the file (1: single-frame) */
    int64_t instance;
    bool has_instance;
    bool has_padding;
    int64_t padding, padding_hi;
    bool localizer;
    double pos; /* projection on the normal, filled when grouping */
} slice;

struct covct_series {
    slice **slices; /* sorted along the normal, duplicates removed */
    size_t n, cap;
    size_t n_files;
    double normal[3];
    double median_step; /* mm between neighbouring slices (n >= 2) */
    double tilt_deg;    /* stacking direction vs normal (n >= 2) */
    covct_buf problems;
};

struct covct_series_set {
    slice *all;
    size_t n_all, cap_all;
    covct_series **series;
    size_t n_series;
    size_t skipped;
    covct_buf skipped_report;
};

/* ---- reading slice headers ---------------------------------------------- */

static void get_str(const covct_dcm_dataset *ds, uint32_t tag, char *buf,
                    size_t cap)
{
    if (covct_dcm_get_string(ds, tag, 0, buf, cap, NULL) != COVCT_OK)
        buf[0] = '\0';
}

static bool get_doubles(const covct_dcm_dataset *ds, uint32_t tag, double *out,
                        unsigned n)
{
    if (!ds)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (covct_dcm_get_double(ds, tag, i, &out[i], NULL) != COVCT_OK)
            return false;
    return true;
}

/* First item of sequence `seq` in functional group item `fg`. */
static const covct_dcm_dataset *fg_item(const covct_dcm_dataset *fg,
                                        uint32_t seq)
{
    if (!fg)
        return NULL;
    const covct_dcm_element *e = covct_dcm_dataset_get(fg, seq);
    return e && covct_dcm_element_item_count(e) > 0
               ? covct_dcm_element_item(e, 0)
               : NULL;
}

/* Look a functional group macro up in the per-frame item, then in the
 * shared one (PS3.3 C.7.6.16). */
static const covct_dcm_dataset *macro(const covct_dcm_dataset *per_frame,
                                      const covct_dcm_dataset *shared,
                                      uint32_t seq)
{
    const covct_dcm_dataset *d = fg_item(per_frame, seq);
    return d ? d : fg_item(shared, seq);
}

static covct_rc set_add(covct_series_set *s, const slice *sl, covct_error *err)
{
    if (s->n_all >= COVCT_LIMIT_SLICES * 10u)
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "more than %u images",
                         COVCT_LIMIT_SLICES * 10u);
    if (s->n_all == s->cap_all) {
        size_t cap = s->cap_all ? s->cap_all * 2 : 256;
        slice *n = covct_realloc(s->all, cap * sizeof *n);
        if (!n)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        s->all = n;
        s->cap_all = cap;
    }
    s->all[s->n_all++] = *sl;
    return COVCT_OK;
}

static covct_rc add_file(covct_series_set *s, const char *path,
                         covct_error *err)
{
    covct_error ferr = {0};
    covct_dcm_file *f = NULL;
    covct_dcm_read_opts opts = {.stop_before_pixels = true};
    if (covct_dcm_file_read(path, &opts, &f, &ferr) != COVCT_OK) {
        s->skipped++;
        if (s->skipped <= 50)
            covct_buf_appendf(&s->skipped_report, NULL, "%s\n", ferr.msg);
        return ferr.rc == COVCT_ERR_NOMEM
                   ? COVCT_ERR(err, ferr.rc, "%s", ferr.msg)
                   : COVCT_OK;
    }
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    covct_rc rc = COVCT_OK;
    slice base;
    memset(&base, 0, sizeof base);
    int64_t v;
    if (covct_dcm_get_int(ds, T(0x0028, 0x0010), 0, &v, NULL) || v <= 0 ||
        !(covct_dcm_dataset_get(ds, T(0x7FE0, 0x0010)) ||
          covct_dcm_dataset_get(ds, T(0x0028, 0x0011)))) {
        /* No image: a DICOMDIR, SR, presentation state... */
        s->skipped++;
        if (s->skipped <= 50)
            covct_buf_appendf(&s->skipped_report, NULL,
                              "%s: not an image (no Rows)\n", path);
        goto out;
    }
    base.rows = (uint32_t)v;
    if (covct_dcm_get_int(ds, T(0x0028, 0x0011), 0, &v, NULL) || v <= 0) {
        s->skipped++;
        if (s->skipped <= 50)
            covct_buf_appendf(&s->skipped_report, NULL,
                              "%s: no valid Columns\n", path);
        goto out;
    }
    base.cols = (uint32_t)v;
    get_str(ds, T(0x0020, 0x000E), base.series_uid, sizeof base.series_uid);
    get_str(ds, T(0x0020, 0x000D), base.study_uid, sizeof base.study_uid);
    get_str(ds, T(0x0008, 0x0060), base.modality, sizeof base.modality);
    get_str(ds, T(0x0008, 0x103E), base.description, sizeof base.description);
    get_str(ds, T(0x0008, 0x0018), base.sop_uid, sizeof base.sop_uid);
    get_str(ds, T(0x0008, 0x0016), base.sop_class, sizeof base.sop_class);
    get_str(ds, T(0x0020, 0x0052), base.frame_of_ref, sizeof base.frame_of_ref);
    get_str(ds, T(0x0010, 0x0020), base.patient_id, sizeof base.patient_id);
    get_str(ds, T(0x0008, 0x0020), base.study_date, sizeof base.study_date);
    get_str(ds, T(0x0020, 0x0011), base.series_number,
            sizeof base.series_number);
    char *pn = NULL;
    if (covct_dcm_get_utf8(ds, T(0x0010, 0x0010), &pn, NULL) == COVCT_OK && pn)
        snprintf(base.patient_name, sizeof base.patient_name, "%s", pn);
    covct_free(pn);
    snprintf(base.ts, sizeof base.ts, "%s", covct_dcm_file_ts(f));
    base.slope = 1.0;
    base.intercept = 0.0;
    int64_t bs = 16, prep = 0;
    covct_dcm_get_int(ds, T(0x0028, 0x0101), 0, &bs, NULL);
    covct_dcm_get_int(ds, T(0x0028, 0x0103), 0, &prep, NULL);
    base.bits_stored = bs >= 1 && bs <= 32 ? (int)bs : 16;
    base.pixel_rep = prep == 1;
    covct_dcm_get_double(ds, T(0x0028, 0x1053), 0, &base.slope, NULL);
    covct_dcm_get_double(ds, T(0x0028, 0x1052), 0, &base.intercept, NULL);
    if (!(base.slope != 0.0 && isfinite(base.slope)))
        base.slope = 1.0;
    covct_dcm_get_double(ds, T(0x0018, 0x0050), 0, &base.thickness, NULL);
    covct_dcm_get_double(ds, T(0x0018, 0x1120), 0, &base.tilt, NULL);
    base.instance = 0;
    base.has_instance = covct_dcm_get_int(ds, T(0x0020, 0x0013), 0,
                                          &base.instance, NULL) == COVCT_OK;
    if (covct_dcm_get_int(ds, T(0x0028, 0x0120), 0, &base.padding, NULL) ==
        COVCT_OK) {
        base.has_padding = true;
        base.padding_hi = base.padding;
        covct_dcm_get_int(ds, T(0x0028, 0x0121), 0, &base.padding_hi, NULL);
        /* US/SS: the VR decides the sign; the accessor already applied it
         * for SS.  For US with Pixel Representation 1, reinterpret. */
        int64_t rep = 0;
        covct_dcm_get_int(ds, T(0x0028, 0x0103), 0, &rep, NULL);
        if (rep == 1) {
            if (base.padding > 32767)
                base.padding -= 65536;
            if (base.padding_hi > 32767)
                base.padding_hi -= 65536;
        }
        if (base.padding_hi < base.padding) {
            int64_t t = base.padding;
            base.padding = base.padding_hi;
            base.padding_hi = t;
        }
    }
    char itype[128];
    itype[0] = '\0';
    const covct_dcm_element *it = covct_dcm_dataset_get(ds, T(0x0008, 0x0008));
    if (it) {
        size_t n;
        const uint8_t *p = covct_dcm_element_value(it, &n);
        if (p) {
            if (n >= sizeof itype)
                n = sizeof itype - 1;
            memcpy(itype, p, n);
            itype[n] = '\0';
        }
    }
    base.localizer = strstr(itype, "LOCALIZER") != NULL;
    base.has_ipp = get_doubles(ds, T(0x0020, 0x0032), base.ipp, 3);
    base.has_iop = get_doubles(ds, T(0x0020, 0x0037), base.iop, 6);
    if (!get_doubles(ds, T(0x0028, 0x0030), base.spacing, 2) &&
        !get_doubles(ds, T(0x0018, 0x1164), base.spacing, 2)) {
        base.spacing[0] = base.spacing[1] = 1.0;
    }

    int64_t frames = 1;
    covct_dcm_get_int(ds, T(0x0028, 0x0008), 0, &frames, NULL);
    if (frames < 1)
        frames = 1;
    if (frames > COVCT_LIMIT_FRAMES)
        frames = COVCT_LIMIT_FRAMES;
    base.n_frames = (uint32_t)frames;
    const covct_dcm_element *pf = covct_dcm_dataset_get(ds, T(0x5200, 0x9230));
    const covct_dcm_element *sh = covct_dcm_dataset_get(ds, T(0x5200, 0x9229));
    const covct_dcm_dataset *shared =
        sh && covct_dcm_element_item_count(sh) ? covct_dcm_element_item(sh, 0)
                                               : NULL;
    for (int64_t k = 0; k < frames; k++) {
        slice sl = base;
        sl.frame = (uint32_t)k;
        const covct_dcm_dataset *per =
            pf && (size_t)k < covct_dcm_element_item_count(pf)
                ? covct_dcm_element_item(pf, (size_t)k)
                : NULL;
        if (per || shared) {
            /* Enhanced multi-frame (PS3.3 C.7.6.16.2): Plane Position,
             * Plane Orientation, Pixel Measures, Pixel Value
             * Transformation functional groups. */
            const covct_dcm_dataset *d;
            if ((d = macro(per, shared, T(0x0020, 0x9113))))
                sl.has_ipp = get_doubles(d, T(0x0020, 0x0032), sl.ipp, 3);
            if ((d = macro(per, shared, T(0x0020, 0x9116))))
                sl.has_iop = get_doubles(d, T(0x0020, 0x0037), sl.iop, 6);
            if ((d = macro(per, shared, T(0x0028, 0x9110)))) {
                get_doubles(d, T(0x0028, 0x0030), sl.spacing, 2);
                covct_dcm_get_double(d, T(0x0018, 0x0050), 0, &sl.thickness,
                                     NULL);
            }
            if ((d = macro(per, shared, T(0x0028, 0x9145)))) {
                covct_dcm_get_double(d, T(0x0028, 0x1053), 0, &sl.slope, NULL);
                covct_dcm_get_double(d, T(0x0028, 0x1052), 0, &sl.intercept,
                                     NULL);
            }
        } else if (frames > 1 && sl.has_ipp && sl.has_iop) {
            /* Classic multi-frame with one position: frames stacked along
             * the normal at Spacing Between Slices (or Slice Thickness). */
            double step = 0;
            if (covct_dcm_get_double(ds, T(0x0018, 0x0088), 0, &step, NULL))
                step = sl.thickness;
            double n[3] = {sl.iop[1] * sl.iop[5] - sl.iop[2] * sl.iop[4],
                           sl.iop[2] * sl.iop[3] - sl.iop[0] * sl.iop[5],
                           sl.iop[0] * sl.iop[4] - sl.iop[1] * sl.iop[3]};
            for (int a = 0; a < 3; a++)
                sl.ipp[a] += n[a] * step * (double)k;
        }
        sl.path = covct_strdup(path);
        if (!sl.path) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            goto out;
        }
        if ((rc = set_add(s, &sl, err))) {
            covct_free(sl.path);
            goto out;
        }
    }
out:
    covct_dcm_file_free(f);
    return rc;
}

/* ---- walking folders ---------------------------------------------------- */

typedef struct path_list {
    char **p;
    size_t n, cap;
} path_list;

static covct_rc list_add(path_list *l, const char *p, covct_error *err)
{
    if (l->n >= COVCT_LIMIT_DIR_FILES)
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "more than %d files under the "
                                              "folder",
                         COVCT_LIMIT_DIR_FILES);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **n = covct_realloc(l->p, cap * sizeof *n);
        if (!n)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        l->p = n;
        l->cap = cap;
    }
    if (!(l->p[l->n] = covct_strdup(p)))
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    l->n++;
    return COVCT_OK;
}

static covct_rc walk(const char *dir, path_list *l, unsigned depth,
                     covct_error *err)
{
    if (depth > 32)
        return COVCT_OK; /* symlink loops or absurd trees */
    DIR *d = opendir(dir);
    if (!d)
        return COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot open folder: %s", dir,
                         strerror(errno));
    covct_rc rc = COVCT_OK;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue; /* ., .., hidden files */
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >=
            sizeof path)
            continue;
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc = walk(path, l, depth + 1, err);
        else if (S_ISREG(st.st_mode))
            rc = list_add(l, path, err);
        if (rc)
            break;
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- grouping and ordering ---------------------------------------------- */

static void normal_of(const double iop[6], double n[3])
{
    n[0] = iop[1] * iop[5] - iop[2] * iop[4];
    n[1] = iop[2] * iop[3] - iop[0] * iop[5];
    n[2] = iop[0] * iop[4] - iop[1] * iop[3];
}

/* Two slices belong to one volume when they share the series UID, the
 * orientation (within 1e-3, about 0.06 degrees) and the image size. */
static bool same_group(const slice *a, const slice *b)
{
    if (strcmp(a->series_uid, b->series_uid) || a->rows != b->rows ||
        a->cols != b->cols || a->has_iop != b->has_iop ||
        a->localizer != b->localizer)
        return false;
    for (int i = 0; i < 6 && a->has_iop; i++)
        if (fabs(a->iop[i] - b->iop[i]) > 1e-3)
            return false;
    return true;
}

static int cmp_slice_pos(const void *a, const void *b)
{
    const slice *x = *(slice *const *)a, *y = *(slice *const *)b;
    if (x->pos != y->pos)
        return x->pos < y->pos ? -1 : 1;
    if (x->instance != y->instance)
        return x->instance < y->instance ? -1 : 1;
    return strcmp(x->path, y->path) ? strcmp(x->path, y->path)
                                    : (int)x->frame - (int)y->frame;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static covct_rc series_push(covct_series *se, slice *sl, covct_error *err)
{
    if (se->n == se->cap) {
        size_t cap = se->cap ? se->cap * 2 : 64;
        slice **n = covct_realloc(se->slices, cap * sizeof *n);
        if (!n)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        se->slices = n;
        se->cap = cap;
    }
    se->slices[se->n++] = sl;
    return COVCT_OK;
}

static void series_free(covct_series *se)
{
    if (!se)
        return;
    covct_free(se->slices);
    covct_buf_free(&se->problems);
    covct_free(se);
}

/* Order the slices, drop duplicates and describe what is odd. */
static covct_rc finish_series(covct_series *se)
{
    slice *first = se->slices[0];
    se->n_files = se->n;
    if (first->has_iop)
        normal_of(first->iop, se->normal);
    else
        se->normal[0] = se->normal[1] = 0, se->normal[2] = 1;
    for (size_t i = 0; i < se->n; i++)
        se->slices[i]->pos = se->slices[i]->has_ipp
                                 ? se->slices[i]->ipp[0] * se->normal[0] +
                                       se->slices[i]->ipp[1] * se->normal[1] +
                                       se->slices[i]->ipp[2] * se->normal[2]
                                 : (double)se->slices[i]->instance;
    qsort(se->slices, se->n, sizeof *se->slices, cmp_slice_pos);
    bool any_missing_ipp = false;
    for (size_t i = 0; i < se->n; i++)
        any_missing_ipp |= !se->slices[i]->has_ipp;
    if (any_missing_ipp && se->n > 1)
        covct_buf_appendf(&se->problems, NULL,
                          "some images lack Image Position (Patient); "
                          "ordered by Instance Number\n");

    /* Duplicates: two images at the same position (0.01 mm).  Keep the
     * first in (position, Instance Number, file name) order. */
    size_t w = 0, dups = 0;
    for (size_t i = 0; i < se->n; i++) {
        if (w > 0 && se->slices[i]->has_ipp &&
            fabs(se->slices[i]->pos - se->slices[w - 1]->pos) < 0.01) {
            if (++dups <= 5)
                covct_buf_appendf(&se->problems, NULL,
                                  "duplicate image at position %.2f mm: %s "
                                  "(frame %u) ignored, %s kept\n",
                                  se->slices[i]->pos, se->slices[i]->path,
                                  se->slices[i]->frame + 1,
                                  se->slices[w - 1]->path);
            continue;
        }
        se->slices[w++] = se->slices[i];
    }
    if (dups > 5)
        covct_buf_appendf(&se->problems, NULL,
                          "%zu duplicate images in all\n", dups);
    se->n = w;
    if (se->n < 2)
        return COVCT_OK;

    /* Gantry tilt: the stacking direction is not the slice normal. */
    slice *a = se->slices[0], *b = se->slices[se->n - 1];
    if (a->has_ipp && b->has_ipp && a->has_iop) {
        double st[3] = {b->ipp[0] - a->ipp[0], b->ipp[1] - a->ipp[1],
                        b->ipp[2] - a->ipp[2]};
        double len = sqrt(st[0] * st[0] + st[1] * st[1] + st[2] * st[2]);
        if (len > 0) {
            double c = fabs(st[0] * se->normal[0] + st[1] * se->normal[1] +
                            st[2] * se->normal[2]) /
                       len;
            se->tilt_deg = acos(c > 1 ? 1 : c) * 180.0 / M_PI;
        }
    }

    /* Spacing: median of the steps; gaps are steps over 1.5 medians. */
    size_t nd = se->n - 1;
    double *d = covct_malloc(nd * sizeof *d);
    double *sorted = covct_malloc(nd * sizeof *sorted);
    if (!d || !sorted) {
        covct_free(d);
        covct_free(sorted);
        return COVCT_ERR_NOMEM;
    }
    for (size_t i = 0; i < nd; i++)
        d[i] = se->slices[i + 1]->pos - se->slices[i]->pos;
    memcpy(sorted, d, nd * sizeof *d);
    qsort(sorted, nd, sizeof *sorted, cmp_double);
    double med = se->median_step = sorted[nd / 2];
    size_t gaps = 0;
    bool varying = false;
    for (size_t i = 0; se->n >= 3 && i < nd; i++) {
        if (d[i] > 1.5 * med) {
            if (++gaps <= 5)
                covct_buf_appendf(&se->problems, NULL,
                                  "gap: %.2f mm between slices at %.2f and "
                                  "%.2f mm (usual spacing %.2f mm; about "
                                  "%.0f slice(s) missing)\n",
                                  d[i], se->slices[i]->pos,
                                  se->slices[i + 1]->pos, med,
                                  d[i] / med - 1);
        } else if (fabs(d[i] - med) > 0.01 * med + 1e-3) {
            varying = true;
        }
    }
    if (gaps > 5)
        covct_buf_appendf(&se->problems, NULL, "%zu gaps in all\n", gaps);
    if (varying)
        covct_buf_appendf(&se->problems, NULL,
                          "varying slice spacing: %.3f to %.3f mm (median "
                          "%.3f)\n",
                          sorted[0], sorted[nd - 1], med);
    covct_free(d);
    covct_free(sorted);
    if (se->n >= 3 && se->tilt_deg > 0.01)
        covct_buf_appendf(&se->problems, NULL,
                          "gantry tilt: slices are stacked %.2f degrees off "
                          "their normal (kept as a sheared affine)\n",
                          se->tilt_deg);
    return COVCT_OK;
}

static covct_rc group(covct_series_set *s, covct_error *err)
{
    size_t cap = 8;
    s->series = covct_calloc(cap, sizeof *s->series);
    if (!s->series)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n_all; i++) {
        slice *sl = &s->all[i];
        covct_series *se = NULL;
        for (size_t k = 0; k < s->n_series && !se; k++)
            if (same_group(s->series[k]->slices[0], sl))
                se = s->series[k];
        if (!se) {
            if (s->n_series == cap) {
                covct_series **n =
                    covct_realloc(s->series, cap * 2 * sizeof *n);
                if (!n)
                    return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
                s->series = n;
                cap *= 2;
            }
            se = covct_calloc(1, sizeof *se);
            if (!se)
                return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            s->series[s->n_series++] = se;
        }
        covct_rc rc = series_push(se, sl, err);
        if (rc)
            return rc;
    }
    for (size_t k = 0; k < s->n_series; k++) {
        if (finish_series(s->series[k]) != COVCT_OK)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    /* Same Series Instance UID split by size or orientation: say so. */
    for (size_t k = 0; k < s->n_series; k++)
        for (size_t j = 0; j < k; j++) {
            slice *a = s->series[j]->slices[0], *b = s->series[k]->slices[0];
            if (a->series_uid[0] && !strcmp(a->series_uid, b->series_uid)) {
                const char *why = a->rows != b->rows || a->cols != b->cols
                                      ? "mixed image sizes"
                                      : "mixed orientations";
                covct_buf_appendf(&s->series[k]->problems, NULL,
                                  "series UID shared with another group (%s: "
                                  "%ux%u vs %ux%u); split into separate "
                                  "volumes\n",
                                  why, a->cols, a->rows, b->cols, b->rows);
            }
        }
    return COVCT_OK;
}

covct_rc covct_series_scan(const char *path, covct_series_set **out,
                           covct_error *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "%s: %s", path, strerror(errno));
    covct_series_set *s = covct_calloc(1, sizeof *s);
    if (!s)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    path_list l = {0};
    covct_rc rc;
    if (S_ISDIR(st.st_mode)) {
        /* "dir/" and "dir" name the same files: no "dir//file" in reports. */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        size_t dl = strlen(dir);
        while (dl > 1 && dir[dl - 1] == '/')
            dir[--dl] = '\0';
        rc = walk(dir, &l, 0, err);
        if (!rc)
            qsort(l.p, l.n, sizeof *l.p, cmp_str);
    } else {
        rc = list_add(&l, path, err);
    }
    for (size_t i = 0; !rc && i < l.n; i++)
        rc = add_file(s, l.p[i], err);
    for (size_t i = 0; i < l.n; i++)
        covct_free(l.p[i]);
    covct_free(l.p);
    if (!rc)
        rc = group(s, err);
    if (rc) {
        covct_series_set_free(s);
        return rc;
    }
    *out = s;
    return COVCT_OK;
}

void covct_series_set_free(covct_series_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_series; i++)
        series_free(s->series[i]);
    covct_free(s->series);
    for (size_t i = 0; i < s->n_all; i++)
        covct_free(s->all[i].path);
    covct_free(s->all);
    covct_buf_free(&s->skipped_report);
    covct_free(s);
}

size_t covct_series_set_count(const covct_series_set *s) { return s->n_series; }

covct_series *covct_series_set_at(const covct_series_set *s, size_t i)
{
    return i < s->n_series ? s->series[i] : NULL;
}

size_t covct_series_set_skipped(const covct_series_set *s)
{
    return s->skipped;
}

const char *covct_series_set_skipped_report(const covct_series_set *s)
{
    return s->skipped_report.len ? (const char *)s->skipped_report.data : "";
}

covct_series *covct_series_set_best(const covct_series_set *s)
{
    covct_series *best = NULL;
    int best_score = -1;
    for (size_t i = 0; i < s->n_series; i++) {
        covct_series *se = s->series[i];
        slice *f = se->slices[0];
        /* Prefer CT, then axial (normal along z), then more slices. */
        int score = (int)(se->n > 100000 ? 100000 : se->n);
        if (!strcmp(f->modality, "CT"))
            score += 1 << 22;
        if (fabs(se->normal[2]) > 0.9)
            score += 1 << 21;
        if (f->localizer)
            score -= 1 << 20;
        if (score > best_score) {
            best_score = score;
            best = se;
        }
    }
    return best;
}

void covct_series_get_summary(const covct_series *s, covct_series_summary *o)
{
    memset(o, 0, sizeof *o);
    const slice *f = s->slices[0];
    snprintf(o->series_uid, sizeof o->series_uid, "%s", f->series_uid);
    snprintf(o->study_uid, sizeof o->study_uid, "%s", f->study_uid);
    snprintf(o->modality, sizeof o->modality, "%s", f->modality);
    snprintf(o->description, sizeof o->description, "%s", f->description);
    snprintf(o->transfer_syntax, sizeof o->transfer_syntax, "%s", f->ts);
    memcpy(o->patient_name, f->patient_name, sizeof o->patient_name);
    memcpy(o->patient_id, f->patient_id, sizeof o->patient_id);
    memcpy(o->study_date, f->study_date, sizeof o->study_date);
    memcpy(o->series_number, f->series_number, sizeof o->series_number);
    o->n_files = (uint32_t)s->n_files;
    o->n_slices = (uint32_t)s->n;
    o->rows = f->rows;
    o->cols = f->cols;
    o->pixel_spacing[0] = f->spacing[0];
    o->pixel_spacing[1] = f->spacing[1];
    o->slice_thickness = f->thickness;
    o->slice_spacing = s->median_step;
    o->gantry_tilt_deg = s->tilt_deg;
}

size_t covct_series_slice_count(const covct_series *s) { return s->n; }

void covct_series_instance_numbers(const covct_series *s, int64_t *out)
{
    for (size_t i = 0; i < s->n; i++)
        out[i] = s->slices[i]->has_instance ? s->slices[i]->instance : -1;
}

int covct_series_slice_ref_get(const covct_series *s, size_t k,
                               covct_series_slice_ref *out)
{
    memset(out, 0, sizeof *out);
    if (!s || k >= s->n)
        return 0;
    const slice *sl = s->slices[k];
    out->path = sl->path;
    out->frame = sl->frame;
    out->n_frames = sl->n_frames ? sl->n_frames : 1;
    out->sop_class_uid = sl->sop_class;
    out->sop_instance_uid = sl->sop_uid;
    out->series_uid = sl->series_uid;
    out->study_uid = sl->study_uid;
    out->frame_of_ref_uid = sl->frame_of_ref;
    out->has_position = sl->has_ipp;
    out->has_orientation = sl->has_iop;
    memcpy(out->position, sl->ipp, sizeof out->position);
    memcpy(out->orientation, sl->iop, sizeof out->orientation);
    memcpy(out->pixel_spacing, sl->spacing, sizeof out->pixel_spacing);
    out->thickness = sl->thickness;
    out->instance_number = sl->has_instance ? sl->instance : -1;
    return 1;
}

const char *covct_series_problems(const covct_series *s)
{
    return s->problems.len ? (const char *)s->problems.data : "";
}

/* ---- loading ------------------------------------------------------------ */

typedef struct load_job {
    const covct_series *s;
    covct_volume *v;
    bool as_int16;
    pthread_mutex_t lock;
    size_t next;      /* next slice to decode */
    size_t done;
    covct_error err;  /* first error wins */
    covct_progress_fn progress;
    void *user;
} load_job;

static covct_rc load_slice(load_job *job, size_t z, covct_error *err)
{
    const slice *sl = job->s->slices[z];
    covct_volume *v = job->v;
    covct_dcm_file *f = NULL;
    covct_rc rc = covct_dcm_file_read(sl->path, NULL, &f, err);
    if (rc)
        return rc;
    covct_dcm_pixel_info pi;
    void *raw = NULL;
    rc = covct_dcm_pixel_info_get(f, &pi, err);
    if (!rc && (pi.rows != v->ny || pi.cols != v->nx))
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT, "image is %ux%u, series is "
                                               "%ux%u",
                       pi.cols, pi.rows, v->nx, v->ny);
    if (!rc && pi.samples != 1)
        rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                       "colour image (%u samples per pixel, %s) cannot be a "
                       "CT volume",
                       pi.samples, pi.photometric);
    if (!rc && pi.float_bits)
        rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                       "floating-point pixel data cannot be a CT volume");
    if (!rc && !(raw = covct_malloc(pi.frame_bytes)))
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = covct_dcm_pixel_decode_frame(f, &pi, sl->frame, raw,
                                          pi.frame_bytes, err);
    if (rc)
        goto out;
    size_t plane = (size_t)v->nx * v->ny;
    int16_t *o16 = job->as_int16 ? (int16_t *)v->data + plane * z : NULL;
    float *o32 = job->as_int16 ? NULL : (float *)v->data + plane * z;
    uint8_t *outside = v->outside + plane * z;
    if (o16 && pi.out_bytes == 2) {
        /* The common CT case, kept free of floating point: 16-bit stored
         * values, integral slope and intercept (as_int16 guarantees it). */
        const int32_t m = (int32_t)sl->slope, b = (int32_t)sl->intercept;
        const int32_t pad_lo = sl->has_padding ? (int32_t)sl->padding : 1,
                      pad_hi = sl->has_padding ? (int32_t)sl->padding_hi : 0;
        const uint16_t *ru = raw;
        const int16_t *rs = raw;
        for (size_t i = 0; i < plane; i++) {
            int32_t r = pi.pixel_rep ? rs[i] : ru[i];
            int32_t hu = r * m + b;
            outside[i] = (r >= pad_lo && r <= pad_hi) || hu < COVCT_OUTSIDE_HU;
            o16[i] = (int16_t)hu; /* in range: checked by as_int16 */
        }
        goto out;
    }
    for (size_t i = 0; i < plane; i++) {
        int64_t r;
        if (pi.out_bytes == 1)
            r = pi.pixel_rep ? (int64_t)(int8_t)((uint8_t *)raw)[i]
                             : (int64_t)((uint8_t *)raw)[i];
        else if (pi.out_bytes == 2)
            r = pi.pixel_rep ? (int64_t)((int16_t *)raw)[i]
                             : (int64_t)((uint16_t *)raw)[i];
        else
            r = pi.pixel_rep ? (int64_t)((int32_t *)raw)[i]
                             : (int64_t)((uint32_t *)raw)[i];
        double hu = (double)r * sl->slope + sl->intercept;
        /* Padding (PS3.3 C.7.5.1.1.2) and the out-of-field fills that
         * vendors use (-2048, -3024 HU and the like) are outside the body
         * (COVCT_OUTSIDE_HU). */
        outside[i] = (sl->has_padding && r >= sl->padding &&
                      r <= sl->padding_hi) ||
                     hu < COVCT_OUTSIDE_HU;
        if (o16)
            o16[i] = (int16_t)lrint(hu);
        else
            o32[i] = (float)hu;
    }
out:
    if (rc)
        covct_error_prefix(err, "%s: ", sl->path);
    covct_free(raw);
    covct_dcm_file_free(f);
    return rc;
}

static void *load_worker(void *arg)
{
    load_job *job = arg;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        size_t z = job->next++;
        bool stop = job->err.rc != COVCT_OK;
        pthread_mutex_unlock(&job->lock);
        if (stop || z >= job->s->n)
            break;
        covct_error e = {0};
        covct_rc rc = load_slice(job, z, &e);
        pthread_mutex_lock(&job->lock);
        if (rc && job->err.rc == COVCT_OK)
            job->err = e;
        job->done++;
        if (job->progress && !rc)
            job->progress((double)job->done / (double)job->s->n, "decoding",
                          job->user);
        pthread_mutex_unlock(&job->lock);
    }
    return NULL;
}

covct_rc covct_series_load(const covct_series *s, unsigned threads,
                           covct_progress_fn progress, void *user,
                           covct_volume **out, covct_error *err)
{
    *out = NULL;
    if (s->n == 0)
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND, "empty series");
    if (s->n > COVCT_LIMIT_SLICES)
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "%zu slices exceeds %d", s->n,
                         COVCT_LIMIT_SLICES);
    const slice *a = s->slices[0], *b = s->slices[s->n - 1];
    /* int16 holds HU exactly when every slice's rescale is integral and
     * the stored range maps inside int16 (true for CT: 12-16 bit raw,
     * slope 1, intercept -1024 or -8192 and the like). */
    bool as_int16 = true;
    for (size_t i = 0; i < s->n; i++) {
        const slice *sl = s->slices[i];
        double lo = sl->pixel_rep ? -ldexp(1.0, sl->bits_stored - 1) : 0.0;
        double hi = sl->pixel_rep ? ldexp(1.0, sl->bits_stored - 1) - 1
                                  : ldexp(1.0, sl->bits_stored) - 1;
        double h1 = lo * sl->slope + sl->intercept,
               h2 = hi * sl->slope + sl->intercept;
        if (sl->slope != floor(sl->slope) ||
            sl->intercept != floor(sl->intercept) || h1 < -32768 ||
            h1 > 32767 || h2 < -32768 || h2 > 32767)
            as_int16 = false;
    }
    covct_volume *v;
    covct_rc rc = covct_volume_new(a->cols, a->rows, (uint32_t)s->n,
                                   as_int16 ? COVCT_DTYPE_INT16
                                            : COVCT_DTYPE_FLOAT32,
                                   &v, err);
    if (rc)
        return rc;
    v->outside = covct_malloc(covct_volume_voxels(v));
    if (!v->outside) {
        covct_volume_free(v);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    /* Affine: columns are the row direction times column spacing, the
     * column direction times row spacing, and the step between first and
     * last slice centres (which keeps gantry tilt as a shear). */
    double iop[6] = {1, 0, 0, 0, 1, 0};
    if (a->has_iop)
        memcpy(iop, a->iop, sizeof iop);
    double k[3];
    if (s->n > 1 && a->has_ipp && b->has_ipp) {
        for (int i = 0; i < 3; i++)
            k[i] = (b->ipp[i] - a->ipp[i]) / (double)(s->n - 1);
    } else {
        double th = a->thickness > 0 ? a->thickness : 1.0;
        for (int i = 0; i < 3; i++)
            k[i] = s->normal[i] * th;
    }
    memset(v->affine, 0, sizeof v->affine);
    for (int i = 0; i < 3; i++) {
        v->affine[i][0] = iop[i] * a->spacing[1];
        v->affine[i][1] = iop[3 + i] * a->spacing[0];
        v->affine[i][2] = k[i];
        v->affine[i][3] = a->has_ipp ? a->ipp[i] : 0;
    }
    v->affine[3][3] = 1;
    v->spacing[0] = a->spacing[1];
    v->spacing[1] = a->spacing[0];
    v->spacing[2] = sqrt(k[0] * k[0] + k[1] * k[1] + k[2] * k[2]);

    load_job job;
    memset(&job, 0, sizeof job);
    job.s = s;
    job.v = v;
    job.as_int16 = as_int16;
    job.progress = progress;
    job.user = user;
    pthread_mutex_init(&job.lock, NULL);
    if (threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (unsigned)nc : 1;
    }
    if (threads > 64)
        threads = 64;
    if (threads > s->n)
        threads = (unsigned)s->n;
    pthread_t tids[64];
    unsigned started = 0;
    for (unsigned t = 1; t < threads; t++)
        if (pthread_create(&tids[started], NULL, load_worker, &job) == 0)
            started++;
    load_worker(&job);
    for (unsigned t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    pthread_mutex_destroy(&job.lock);
    if (job.err.rc) {
        covct_error_set(err, job.err.rc, job.err.src_file, job.err.src_line,
                        "%s", job.err.msg);
        covct_volume_free(v);
        return job.err.rc;
    }
    *out = v;
    return COVCT_OK;
}

covct_rc covct_volume_load_path(const char *path, unsigned threads,
                                covct_volume **out, covct_error *err)
{
    covct_series_set *set;
    *out = NULL;
    covct_rc rc = covct_series_scan(path, &set, err);
    if (rc)
        return rc;
    covct_series *best = covct_series_set_best(set);
    if (!best)
        rc = COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                       "%s: no DICOM image series found (%zu files skipped)",
                       path, covct_series_set_skipped(set));
    else
        rc = covct_series_load(best, threads, NULL, NULL, out, err);
    covct_series_set_free(set);
    return rc;
}
