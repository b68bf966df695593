/* Shared pieces of the analysis module: names, axes, segmentation storage,
 * the lobe score. */
#include <math.h>
#include <string.h>

#include "covct/analysis.h"
#include "analysis/analysis_int.h"

const char *covct_lobe_name(int lobe)
{
    static const char *const names[] = {"none", "LUL", "LLL", "RUL", "RML",
                                        "RLL"};
    return lobe >= 0 && lobe <= COVCT_N_LOBES ? names[lobe] : "none";
}

const char *covct_category_name(covct_category c)
{
    switch (c) {
    case COVCT_CAT_NEGATIVE: return "negative";
    case COVCT_CAT_TYPICAL: return "typical";
    case COVCT_CAT_INDETERMINATE: return "indeterminate";
    case COVCT_CAT_ATYPICAL: return "atypical";
    }
    return "indeterminate";
}

void covct_volume_axes(const covct_volume *v, covct_axes *out)
{
    /* For each patient axis pick the voxel axis whose direction (a column
     * of the affine) has the largest component along it; voxel axes are
     * used once each. */
    bool used[3] = {false, false, false};
    for (int a = 0; a < 3; a++) {
        out->axis[a] = -1;
        out->sign[a] = 1;
    }
    for (int round = 0; round < 3; round++) {
        double best = -1;
        int ba = 0, bv = 0;
        for (int a = 0; a < 3; a++) {
            if (out->axis[a] >= 0)
                continue;
            for (int vx = 0; vx < 3; vx++) {
                if (used[vx])
                    continue;
                double len = sqrt(v->affine[0][vx] * v->affine[0][vx] +
                                  v->affine[1][vx] * v->affine[1][vx] +
                                  v->affine[2][vx] * v->affine[2][vx]);
                double c = len > 0 ? fabs(v->affine[a][vx]) / len : 0;
                if (c > best) {
                    best = c;
                    ba = a;
                    bv = vx;
                }
            }
        }
        out->axis[ba] = bv;
        out->sign[ba] = v->affine[ba][bv] < 0 ? -1 : 1;
        used[bv] = true;
    }
}

covct_rc covct_seg_new(const covct_volume *ct, covct_seg **out,
                       covct_error *err)
{
    *out = NULL;
    covct_seg *s = covct_calloc(1, sizeof *s);
    if (!s)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    s->nx = ct->nx;
    s->ny = ct->ny;
    s->nz = ct->nz;
    size_t n = covct_volume_voxels(ct);
    s->body = covct_calloc(n, 1);
    s->airways = covct_calloc(n, 1);
    s->lungs = covct_calloc(n, 1);
    s->lobes = covct_calloc(n, 1);
    s->lesions = covct_calloc(n, 1);
    if (!s->body || !s->airways || !s->lungs || !s->lobes || !s->lesions) {
        covct_seg_free(s);
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "cannot allocate label volumes of %zu voxels", n);
    }
    *out = s;
    return COVCT_OK;
}

covct_rc covct_seg_transpose_xy(covct_seg *s, covct_error *err)
{
    uint8_t **arr[] = {&s->body,  &s->airways, &s->lungs,       &s->lobes,
                       &s->lesions, &s->vessels, &s->dense_behind};
    enum { NA = sizeof arr / sizeof arr[0] };
    const size_t n = (size_t)s->nx * s->ny * s->nz;
    uint8_t *t[NA] = {0};
    for (int a = 0; a < NA; a++)
        if (*arr[a] && !(t[a] = covct_malloc(n))) {
            for (int b = 0; b < a; b++)
                covct_free(t[b]);
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "out of memory transposing the masks");
        }
    for (int a = 0; a < NA; a++) {
        if (!*arr[a])
            continue;
        covct_planes_transpose(*arr[a], t[a], s->nx, s->ny, s->nz, 1);
        covct_free(*arr[a]);
        *arr[a] = t[a];
    }
    uint32_t x = s->nx;
    s->nx = s->ny;
    s->ny = x;
    return COVCT_OK;
}

void covct_seg_free(covct_seg *s)
{
    if (!s)
        return;
    covct_free(s->body);
    covct_free(s->airways);
    covct_free(s->lungs);
    covct_free(s->lobes);
    covct_free(s->lesions);
    covct_free(s->vessels);
    covct_free(s->dense_behind);
    covct_free(s);
}

int covct_lobe_score(double pct)
{
    /* Pan et al., Radiology 2020;295:715-721: 0 none, 1 <5 %, 2 5-25 %,
     * 3 26-50 %, 4 51-75 %, 5 >75 %. Boundaries between the published
     * integer ranges go to the lower score (25.5 % is still 2). */
    if (!(pct > 0))
        return 0;
    if (pct < 5)
        return 1;
    if (pct <= 25.5)
        return 2;
    if (pct <= 50.5)
        return 3;
    if (pct <= 75.5)
        return 4;
    return 5;
}

bool covct_mask_box(const uint8_t *mask, size_t nx, size_t ny, size_t nz,
                    const double spacing[3], double pad_mm, covct_box *b)
{
    const size_t plane = nx * ny;
    size_t lo[3] = {nx, ny, nz}, hi[3] = {0, 0, 0};
    bool any = false;
    for (size_t z = 0; z < nz; z++)
        for (size_t y = 0; y < ny; y++) {
            const uint8_t *row = mask + z * plane + y * nx;
            size_t first = 0, last = nx;
            while (first < nx && !row[first])
                first++;
            if (first == nx)
                continue;
            while (!row[last - 1])
                last--;
            any = true;
            if (first < lo[0]) lo[0] = first;
            if (last - 1 > hi[0]) hi[0] = last - 1;
            if (y < lo[1]) lo[1] = y;
            if (y > hi[1]) hi[1] = y;
            if (z < lo[2]) lo[2] = z;
            if (z > hi[2]) hi[2] = z;
        }
    if (!any)
        return false;
    const size_t dim[3] = {nx, ny, nz};
    size_t *b0[3] = {&b->x0, &b->y0, &b->z0}, *bn[3] = {&b->nx, &b->ny, &b->nz};
    for (int a = 0; a < 3; a++) {
        size_t pad = (size_t)ceil(pad_mm / spacing[a]);
        size_t s = lo[a] > pad ? lo[a] - pad : 0;
        size_t e = hi[a] + pad < dim[a] ? hi[a] + pad : dim[a] - 1;
        *b0[a] = s;
        *bn[a] = e - s + 1;
    }
    b->n = b->nx * b->ny * b->nz;
    return true;
}
