/* Agreement between the two readers of the case database: Dice per class
 * of their lesion masks, Cohen's kappa of their clinical categories
 * (docs/internals/casedb.md, "Readers and agreement"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "govern/site_int.h"

static covct_rc load_mask(covct_site *site, const char *rel,
                          covct_volume **out, covct_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", site->dir, rel);
    covct_rc rc = covct_nifti_read(path, out, err);
    if (rc)
        covct_error_prefix(err, "mask %s: ", path);
    return rc;
}

/* Dice 2|A and B| / (|A| + |B|) for: any label, label 1, label 2. */
static covct_rc dice(const covct_volume *a, const covct_volume *b,
                     double out[3], covct_error *err)
{
    if (a->nx != b->nx || a->ny != b->ny || a->nz != b->nz)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "the readers' masks differ in size (%ux%ux%u and "
                         "%ux%ux%u)",
                         a->nx, a->ny, a->nz, b->nx, b->ny, b->nz);
    double inter[3] = { 0 }, sa[3] = { 0 }, sb[3] = { 0 };
    size_t n = covct_volume_voxels(a);
    for (size_t i = 0; i < n; i++) {
        uint32_t x = (uint32_t)(i % a->nx), y = (uint32_t)(i / a->nx % a->ny),
                 z = (uint32_t)(i / ((size_t)a->nx * a->ny));
        int va = (int)lround(covct_volume_get(a, x, y, z)),
            vb = (int)lround(covct_volume_get(b, x, y, z));
        for (int c = 0; c < 3; c++) {
            bool ia = c == 0 ? va > 0 : va == c, ib = c == 0 ? vb > 0 : vb == c;
            inter[c] += ia && ib;
            sa[c] += ia;
            sb[c] += ib;
        }
    }
    for (int c = 0; c < 3; c++)
        out[c] = sa[c] + sb[c] > 0 ? 2.0 * inter[c] / (sa[c] + sb[c]) : NAN;
    return COVCT_OK;
}

static covct_rc masks(covct_site *site, int64_t series_id, covct_agreement *o,
                      covct_error *err)
{
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        site->db,
        "SELECT a.series_id, a.id, a.path, b.id, b.path FROM image_labels a"
        " JOIN image_labels b ON b.series_id = a.series_id AND b.kind ="
        " a.kind WHERE a.kind = 'lesions' AND a.status = 'reader-1' AND"
        " b.status = 'reader-2' AND ($1 = 0 OR a.series_id = $1) AND"
        " a.id = (SELECT MAX(id) FROM image_labels x WHERE x.series_id ="
        " a.series_id AND x.kind = 'lesions' AND x.status = 'reader-1') AND"
        " b.id = (SELECT MAX(id) FROM image_labels y WHERE y.series_id ="
        " a.series_id AND y.kind = 'lesions' AND y.status = 'reader-2')"
        " ORDER BY a.series_id",
        (covct_db_param[]){ COVCT_DB_INT(series_id) }, 1, &r, err);
    if (rc)
        return rc;
    size_t n = covct_db_rows(r);
    o->masks = covct_calloc(n ? n : 1, sizeof *o->masks);
    if (!o->masks) {
        covct_db_result_free(r);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        covct_volume *a = NULL, *b = NULL;
        covct_mask_agreement *m = &o->masks[i];
        m->series_id = covct_db_get_int(r, i, 0, 0);
        m->label_a = covct_db_get_int(r, i, 1, 0);
        m->label_b = covct_db_get_int(r, i, 3, 0);
        if (!(rc = load_mask(site, covct_db_get(r, i, 2), &a, err)) &&
            !(rc = load_mask(site, covct_db_get(r, i, 4), &b, err)))
            rc = dice(a, b, m->dice, err);
        covct_volume_free(a);
        covct_volume_free(b);
        if (!rc)
            o->n_masks++;
    }
    covct_db_result_free(r);
    return rc;
}

static int index_of(const char *v, const char *const *list, int n)
{
    for (int i = 0; v && i < n; i++)
        if (!strcmp(v, list[i]))
            return i;
    return -1;
}

static covct_rc clinical(covct_site *site, covct_agreement *o,
                         covct_error *err)
{
    static const char *const diagnoses[] = { "covid-19-confirmed",
                                             "covid-19-clinical",
                                             "other-pneumonia", "normal",
                                             "other" };
    static const char *const categories[] = { "typical", "indeterminate",
                                              "atypical", "negative" };
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        site->db,
        "SELECT a.diagnosis, b.diagnosis, a.category, b.category,"
        " a.severity, b.severity FROM clinical_labels a JOIN clinical_labels"
        " b ON b.case_id = a.case_id WHERE a.status = 'reader-1' AND"
        " b.status = 'reader-2' AND a.id = (SELECT MAX(id) FROM"
        " clinical_labels x WHERE x.case_id = a.case_id AND x.status ="
        " 'reader-1') AND b.id = (SELECT MAX(id) FROM clinical_labels y"
        " WHERE y.case_id = a.case_id AND y.status = 'reader-2')"
        " ORDER BY a.case_id",
        NULL, 0, &r, err);
    if (rc)
        return rc;
    size_t n = covct_db_rows(r), nc = 0, ns = 0;
    int *da = covct_calloc(n + 1, sizeof *da), *db = covct_calloc(n + 1, sizeof *db),
        *ca = covct_calloc(n + 1, sizeof *ca), *cb = covct_calloc(n + 1, sizeof *cb);
    double mad = 0;
    if (!da || !db || !ca || !cb) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) {
            da[i] = index_of(covct_db_get(r, i, 0), diagnoses, 5);
            db[i] = index_of(covct_db_get(r, i, 1), diagnoses, 5);
            int x = index_of(covct_db_get(r, i, 2), categories, 4),
                y = index_of(covct_db_get(r, i, 3), categories, 4);
            if (x >= 0 && y >= 0) {
                ca[nc] = x;
                cb[nc++] = y;
            }
            if (covct_db_get(r, i, 4) && covct_db_get(r, i, 5)) {
                mad += fabs((double)(covct_db_get_int(r, i, 4, 0) -
                                     covct_db_get_int(r, i, 5, 0)));
                ns++;
            }
        }
        o->n_cases = n;
        o->kappa_diagnosis = covct_kappa(da, db, n, 5);
        o->kappa_category = covct_kappa(ca, cb, nc, 4);
        o->severity_mad = ns ? mad / (double)ns : NAN;
    }
    covct_free(da);
    covct_free(db);
    covct_free(ca);
    covct_free(cb);
    covct_db_result_free(r);
    return rc;
}

covct_rc covct_agreement_compute(covct_site *site, int64_t series_id,
                                 covct_agreement *out, covct_error *err)
{
    memset(out, 0, sizeof *out);
    out->kappa_diagnosis = out->kappa_category = out->severity_mad = NAN;
    covct_rc rc = covct_site_require(site, "read.deidentified", "labels", err);
    if (!rc)
        rc = masks(site, series_id, out, err);
    if (!rc)
        rc = clinical(site, out, err);
    if (rc)
        covct_agreement_free(out);
    return rc;
}

void covct_agreement_free(covct_agreement *a)
{
    covct_free(a->masks);
    a->masks = NULL;
    a->n_masks = 0;
}
