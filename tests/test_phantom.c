/*
 * The synthetic chest CT phantom: its ground truth checked against itself
 * and against geometry the generator does not compute (label containment,
 * partitions, connected components, a sphere's analytic volume), its HU
 * against the designed ranges, its DICOM series read back through the
 * ordinary series loader and validated by dicom3tools' dciodvfy, its
 * truth files read back, determinism, and allocation failures.
 *
 * dciodvfy missing: the check fails under CI=true and the test is skipped
 * (exit 77, after the other checks pass) otherwise.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "covct/analysis.h"
#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/phantom.h"
#include "covct/volume.h"
#include "test.h"

static char tmpdir[1024];

static const char *tpath(const char *name)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 4096, "%s/%s", tmpdir, name);
    return b;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char p[4096];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            remove_tree(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The small phantom most checks use: default anatomy and lesions on a
 * 2 x 2 x 5 mm grid (179 x 179 x 60), quick under the sanitizers. */
static void small_params(covct_phantom_params *p)
{
    covct_phantom_params_default(p);
    p->pixel_mm = 2.0;
    p->slice_mm = 5.0;
}

static int16_t hu_at(const covct_volume *v, size_t i)
{
    return ((const int16_t *)v->data)[i];
}

static int is_left_lobe(int l)
{
    return l == COVCT_LOBE_LUL || l == COVCT_LOBE_LLL;
}

/* ---- truth self-consistency ------------------------------------------- */

static void check_labels(const covct_volume *ct, const covct_seg *s,
                         const covct_phantom_truth *t)
{
    size_t n = covct_volume_voxels(ct);
    uint64_t bad_lung = 0, bad_partition = 0, bad_side = 0, lung_out_body = 0,
             lung_airway = 0, airway_out_body = 0, lesion_out_lung = 0;
    uint64_t lobe_n[COVCT_N_LOBES + 1] = {0}, right = 0, left = 0, ggo = 0,
             cons = 0, airway = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t lu = s->lungs[i], lo = s->lobes[i], le = s->lesions[i];
        if (lu > 2)
            bad_lung++;
        if ((lu != 0) != (lo != 0) || lo > COVCT_N_LOBES)
            bad_partition++;
        if (lu && lo <= COVCT_N_LOBES &&
            is_left_lobe(lo) != (lu == COVCT_LUNG_LEFT))
            bad_side++;
        if (lu && !s->body[i])
            lung_out_body++;
        if (lu && s->airways[i])
            lung_airway++;
        if (s->airways[i] && !s->body[i])
            airway_out_body++;
        if (le && !lu)
            lesion_out_lung++;
        if (lo <= COVCT_N_LOBES)
            lobe_n[lo]++;
        right += lu == COVCT_LUNG_RIGHT;
        left += lu == COVCT_LUNG_LEFT;
        ggo += le == COVCT_LESION_GGO;
        cons += le == COVCT_LESION_CONSOLIDATION;
        airway += s->airways[i] != 0;
    }
    CHECK(bad_lung == 0);
    CHECKF(bad_partition == 0, "%llu lung voxels without a lobe or lobe "
           "voxels outside the lungs", (unsigned long long)bad_partition);
    CHECKF(bad_side == 0, "%llu voxels whose lobe is in the other lung",
           (unsigned long long)bad_side);
    CHECK(lung_out_body == 0);
    CHECK(lung_airway == 0);
    CHECK(airway_out_body == 0);
    CHECK(lesion_out_lung == 0);
    CHECK(airway > 0);

    /* Volumes are exact counts times the voxel volume. */
    double vml = ct->spacing[0] * ct->spacing[1] * ct->spacing[2] / 1000;
    CHECK(fabs(t->voxel_ml - vml) < 1e-12);
    CHECK(fabs(t->right_ml - right * vml) < 1e-9);
    CHECK(fabs(t->left_ml - left * vml) < 1e-9);
    CHECK(fabs(t->lungs_ml - (right + left) * vml) < 1e-9);
    CHECK(fabs(t->ggo_ml - ggo * vml) < 1e-9);
    CHECK(fabs(t->consolidation_ml - cons * vml) < 1e-9);
    CHECK(fabs(t->airway_ml - airway * vml) < 1e-9);
    double lobes_sum = 0;
    for (int l = 1; l <= COVCT_N_LOBES; l++) {
        CHECKF(fabs(t->lobe_ml[l] - lobe_n[l] * vml) < 1e-9, "lobe %s",
               covct_lobe_name(l));
        CHECKF(lobe_n[l] > 0, "lobe %s is empty", covct_lobe_name(l));
        lobes_sum += lobe_n[l] * vml;
    }
    CHECK(fabs(lobes_sum - t->lungs_ml) < 1e-6);
    /* Plausible adult lungs: 3 to 7 litres, each lung 40-60 %. */
    CHECKF(t->lungs_ml > 3000 && t->lungs_ml < 7000, "lungs %.0f ml",
           t->lungs_ml);
    CHECK(t->right_ml > 0.4 * t->lungs_ml && t->left_ml > 0.4 * t->lungs_ml);

    /* Per-lesion records add up to the class totals. */
    double sum_cls[3] = {0, 0, 0};
    for (int i = 0; i < t->n_lesions; i++) {
        const covct_phantom_lesion *l = &t->lesion[i];
        CHECK(l->cls == COVCT_LESION_GGO || l->cls == COVCT_LESION_CONSOLIDATION);
        CHECK(l->lobe >= 1 && l->lobe <= COVCT_N_LOBES);
        CHECK(fabs(l->volume_ml - l->voxels * vml) < 1e-9);
        if (l->cls >= 1 && l->cls <= 2)
            sum_cls[l->cls] += l->volume_ml;
    }
    CHECK(fabs(sum_cls[1] - t->ggo_ml) < 1e-6);
    CHECK(fabs(sum_cls[2] - t->consolidation_ml) < 1e-6);
}

/* Connected components (6-neighbourhood) of each lesion class: each lies
 * in one lobe, and per (class, lobe) the component voxels add up to the
 * recorded lesions of that class and lobe.  Also: some consolidation
 * touches non-lung body tissue (the chest wall). */
static void check_lesion_components(const covct_volume *ct, const covct_seg *s,
                                    const covct_phantom_truth *t)
{
    size_t nx = ct->nx, ny = ct->ny, nz = ct->nz, n = nx * ny * nz;
    uint8_t *seen = calloc(n, 1);
    size_t *stack = malloc(n * sizeof *stack);
    if (!seen || !stack) {
        CHECK(!"out of memory");
        free(seen);
        free(stack);
        return;
    }
    double comp_vox[3][COVCT_N_LOBES + 1] = {{0}};
    int n_comp = 0, multi_lobe = 0, cons_touch_wall = 0;
    for (size_t start = 0; start < n; start++) {
        if (!s->lesions[start] || seen[start])
            continue;
        int cls = s->lesions[start], lobe = s->lobes[start];
        size_t sp = 0, count = 0;
        stack[sp++] = start;
        seen[start] = 1;
        while (sp) {
            size_t i = stack[--sp];
            count++;
            if (s->lobes[i] != lobe)
                multi_lobe++;
            size_t x = i % nx, y = (i / nx) % ny, z = i / (nx * ny);
            size_t nb[6];
            int nn = 0;
            if (x > 0) nb[nn++] = i - 1;
            if (x + 1 < nx) nb[nn++] = i + 1;
            if (y > 0) nb[nn++] = i - nx;
            if (y + 1 < ny) nb[nn++] = i + nx;
            if (z > 0) nb[nn++] = i - nx * ny;
            if (z + 1 < nz) nb[nn++] = i + nx * ny;
            for (int q = 0; q < nn; q++) {
                size_t j = nb[q];
                if (cls == COVCT_LESION_CONSOLIDATION && !s->lungs[j] &&
                    s->body[j] && !s->airways[j])
                    cons_touch_wall = 1;
                if (s->lesions[j] == cls && !seen[j]) {
                    seen[j] = 1;
                    stack[sp++] = j;
                }
            }
        }
        n_comp++;
        if (lobe <= COVCT_N_LOBES)
            comp_vox[cls][lobe] += (double)count;
    }
    CHECKF(multi_lobe == 0, "%d lesion voxels in another lobe than the rest "
           "of their lesion", multi_lobe);
    CHECK(n_comp >= t->n_lesions);
    double rec[3][COVCT_N_LOBES + 1] = {{0}};
    for (int i = 0; i < t->n_lesions; i++)
        rec[t->lesion[i].cls][t->lesion[i].lobe] += (double)t->lesion[i].voxels;
    for (int c = 1; c <= 2; c++)
        for (int l = 1; l <= COVCT_N_LOBES; l++)
            CHECKF(comp_vox[c][l] == rec[c][l],
                   "class %d lobe %s: %g voxels in the mask, %g recorded", c,
                   covct_lobe_name(l), comp_vox[c][l], rec[c][l]);
    CHECKF(cons_touch_wall, "no consolidation touches the chest wall");
    free(seen);
    free(stack);
}

/* Mean HU of interior lesion voxels (the whole 3 x 3 in-plane
 * neighbourhood has the same class, so the 1-2-1 blur leaves them
 * unchanged) is within the class's designed range +- 3 sigma / sqrt(n). */
static void check_lesion_hu(const covct_volume *ct, const covct_seg *s,
                            double sigma)
{
    size_t nx = ct->nx, ny = ct->ny, nz = ct->nz;
    double sum[3] = {0, 0, 0};
    double cnt[3] = {0, 0, 0};
    for (size_t z = 0; z < nz; z++)
        for (size_t y = 1; y + 1 < ny; y++)
            for (size_t x = 1; x + 1 < nx; x++) {
                size_t i = (z * ny + y) * nx + x;
                int c = s->lesions[i];
                if (!c)
                    continue;
                int interior = 1;
                for (int dy = -1; dy <= 1 && interior; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                        if (s->lesions[i + (size_t)((long)dy * (long)nx + dx)] !=
                            c)
                            interior = 0;
                if (!interior)
                    continue;
                sum[c] += hu_at(ct, i);
                cnt[c]++;
            }
    const double lo[3] = {0, COVCT_PHANTOM_GGO_HU_MIN, COVCT_PHANTOM_CONS_HU_MIN};
    const double hi[3] = {0, COVCT_PHANTOM_GGO_HU_MAX, COVCT_PHANTOM_CONS_HU_MAX};
    for (int c = 1; c <= 2; c++) {
        CHECKF(cnt[c] >= 20, "class %d: only %g interior voxels", c, cnt[c]);
        if (cnt[c] < 1)
            continue;
        double mean = sum[c] / cnt[c], tol = 3 * sigma / sqrt(cnt[c]);
        CHECKF(mean >= lo[c] - tol && mean <= hi[c] + tol,
               "class %d mean %.1f HU over %g voxels, designed %g..%g", c,
               mean, cnt[c], lo[c], hi[c]);
    }
}

static void check_anatomy_hu(const covct_volume *ct, const covct_seg *s)
{
    size_t n = covct_volume_voxels(ct);
    double lung_sum = 0, lung_n = 0;
    uint64_t pad_bad = 0, pad_n = 0;
    for (size_t i = 0; i < n; i++) {
        int16_t v = hu_at(ct, i);
        if (ct->outside[i]) {
            pad_n++;
            pad_bad += v != COVCT_PHANTOM_PADDING_HU;
            continue;
        }
        pad_bad += v == COVCT_PHANTOM_PADDING_HU;
        if (s->lungs[i] && !s->lesions[i]) {
            lung_sum += v;
            lung_n++;
        }
    }
    CHECK(pad_bad == 0);
    /* The corners of a 358 mm square lie outside the 450 mm circle. */
    CHECK(pad_n > 0 && ct->outside[0] && hu_at(ct, 0) == -3024);
    double mean = lung_n ? lung_sum / lung_n : 0;
    /* Parenchyma about -850 HU, raised by vessels and fissures. */
    CHECKF(mean > -880 && mean < -700, "lung mean %.0f HU", mean);
}

/* ---- the standard phantom --------------------------------------------- */

static int dciodvfy_missing;

static int count_error_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Error", 5)) {
            n++;
            fprintf(stderr, "dciodvfy: %s", line);
        }
    fclose(f);
    return n;
}

static void check_dicom(const covct_volume *ct, const char *dir)
{
    covct_error err = {0};
    /* Read back through the ordinary series path. */
    covct_volume *rv = NULL;
    covct_rc rc = covct_volume_load_path(dir, 1, &rv, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    if (rv) {
        CHECK(rv->nx == ct->nx && rv->ny == ct->ny && rv->nz == ct->nz);
        CHECK(rv->dtype == COVCT_DTYPE_INT16);
        if (rv->nx == ct->nx && rv->ny == ct->ny && rv->nz == ct->nz &&
            rv->dtype == COVCT_DTYPE_INT16) {
            CHECK(!memcmp(rv->data, ct->data, covct_volume_voxels(ct) * 2));
            CHECK(rv->outside &&
                  !memcmp(rv->outside, ct->outside, covct_volume_voxels(ct)));
        }
        double worst = 0;
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++)
                worst = fmax(worst, fabs(rv->affine[r][c] - ct->affine[r][c]));
        CHECKF(worst < 1e-4, "affine differs by %g", worst);
        covct_volume_free(rv);
    }
    /* Labelled as synthetic; Instance Number 1 is the top slice. */
    covct_series_set *set = NULL;
    err = (covct_error){0};
    rc = covct_series_scan(dir, &set, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    covct_series *se = set ? covct_series_set_best(set) : NULL;
    CHECK(se != NULL);
    if (se) {
        covct_series_summary sum;
        covct_series_get_summary(se, &sum);
        CHECK(!strcmp(sum.patient_name, "SYNTHETIC^PHANTOM"));
        CHECK(!strcmp(sum.patient_id, "SYNTH-PHANTOM"));
        CHECK(strstr(sum.description, "SYNTHETIC PHANTOM - NOT PATIENT DATA"));
        CHECK(!strcmp(sum.modality, "CT"));
        CHECK(!strncmp(sum.series_uid, "2.25.", 5));
        size_t ns = covct_series_slice_count(se);
        CHECK(ns == ct->nz);
        int64_t *inst = malloc(ns * sizeof *inst);
        if (inst && ns == ct->nz) {
            covct_series_instance_numbers(se, inst);
            int ok = 1;
            for (size_t k = 0; k < ns; k++)
                ok &= inst[k] == (int64_t)(ns - k);
            CHECKF(ok, "instance numbers are not nz..1 from feet to head");
        }
        free(inst);
    }
    covct_series_set_free(set);
    /* File names are not in slice order: the instance numbers of
     * IM00001, IM00002, ... neither rise nor fall throughout. */
    int rises = 0, falls = 0;
    int64_t prev = -1;
    for (uint32_t f = 1; f <= ct->nz; f++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/IM%05u.dcm", dir, f);
        covct_dcm_read_opts o = {.stop_before_pixels = true};
        covct_dcm_file *df = NULL;
        err = (covct_error){0};
        if (covct_dcm_file_read(p, &o, &df, &err)) {
            CHECKF(0, "%s", err.msg);
            break;
        }
        int64_t in = -1;
        covct_dcm_get_int(covct_dcm_file_dataset_const(df),
                          COVCT_TAG(0x0020, 0x0013), 0, &in, &err);
        covct_dcm_file_free(df);
        if (prev >= 0) {
            rises += in > prev;
            falls += in < prev;
        }
        prev = in;
    }
    CHECK(rises > 0 && falls > 0);

    /* dciodvfy (dicom3tools): no "Error" lines for one slice. */
    if (system("command -v dciodvfy >/dev/null 2>&1") != 0) {
        dciodvfy_missing = 1;
        return;
    }
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "dciodvfy '%s/IM00001.dcm' > '%s' 2>&1", dir,
             tpath("dciodvfy.txt"));
    int st = system(cmd);
    (void)st;
    int nerr = count_error_lines(tpath("dciodvfy.txt"));
    CHECKF(nerr == 0, "dciodvfy reported %d errors", nerr);
}

static void check_truth_files(const covct_volume *ct, const covct_seg *s,
                              const covct_phantom_truth *t)
{
    covct_error err = {0};
    covct_rc rc = covct_phantom_write_truth(s, t, ct, tmpdir, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    static const char *const names[3] = {"truth_lungs.nii.gz",
                                         "truth_lobes.nii.gz",
                                         "truth_lesions.nii.gz"};
    const uint8_t *labs[3] = {s->lungs, s->lobes, s->lesions};
    for (int f = 0; f < 3; f++) {
        covct_volume *v = NULL;
        err = (covct_error){0};
        rc = covct_nifti_read(tpath(names[f]), &v, &err);
        CHECKF(rc == COVCT_OK, "%s: %s", names[f], err.msg);
        if (!v)
            continue;
        int same = v->nx == ct->nx && v->ny == ct->ny && v->nz == ct->nz &&
                   v->dtype == COVCT_DTYPE_INT16;
        CHECKF(same, "%s: grid", names[f]);
        if (same) {
            const int16_t *d = v->data;
            size_t diff = 0, n = covct_volume_voxels(v);
            for (size_t i = 0; i < n; i++)
                diff += d[i] != labs[f][i];
            CHECKF(diff == 0, "%s: %zu voxels differ", names[f], diff);
            double worst = 0;
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < 4; c++)
                    worst = fmax(worst,
                                 fabs(v->affine[r][c] - ct->affine[r][c]));
            CHECKF(worst < 1e-3, "%s: affine differs by %g", names[f], worst);
        }
        covct_volume_free(v);
    }
    uint8_t *json = NULL;
    size_t len = 0;
    err = (covct_error){0};
    rc = covct_file_read(tpath("truth.json"), &json, &len, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    cJSON *root = json ? cJSON_ParseWithLength((const char *)json, len) : NULL;
    CHECK(root != NULL);
    if (root) {
        cJSON *les = cJSON_GetObjectItemCaseSensitive(root, "lesions");
        CHECK(cJSON_IsArray(les) && cJSON_GetArraySize(les) == t->n_lesions);
        cJSON *first = cJSON_GetArrayItem(les, 0);
        cJSON *lobe = cJSON_GetObjectItemCaseSensitive(first, "lobe");
        CHECK(t->n_lesions == 0 ||
              (cJSON_IsString(lobe) &&
               !strcmp(lobe->valuestring, covct_lobe_name(t->lesion[0].lobe))));
        cJSON *tot = cJSON_GetObjectItemCaseSensitive(root, "totals");
        cJSON *g = cJSON_GetObjectItemCaseSensitive(tot, "ground_glass_ml");
        CHECK(cJSON_IsNumber(g) && fabs(g->valuedouble - t->ggo_ml) < 1e-3);
        cJSON *lungs = cJSON_GetObjectItemCaseSensitive(root, "lungs");
        cJSON *tl = cJSON_GetObjectItemCaseSensitive(lungs, "total_ml");
        CHECK(cJSON_IsNumber(tl) && fabs(tl->valuedouble - t->lungs_ml) < 1e-3);
        cJSON *lobes = cJSON_GetObjectItemCaseSensitive(root, "lobes");
        cJSON *rll = cJSON_GetObjectItemCaseSensitive(lobes, "RLL");
        cJSON *rv = cJSON_GetObjectItemCaseSensitive(rll, "volume_ml");
        CHECK(cJSON_IsNumber(rv) &&
              fabs(rv->valuedouble - t->lobe_ml[COVCT_LOBE_RLL]) < 1e-3);
        cJSON_Delete(root);
    }
    covct_free(json);
}

static void test_standard(void)
{
    covct_phantom_params p;
    small_params(&p);
    covct_volume *ct = NULL;
    covct_seg *s = NULL;
    covct_phantom_truth t;
    covct_error err = {0};
    covct_rc rc = covct_phantom_make(&p, &ct, &s, &t, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    if (rc)
        return;
    CHECK(ct->nx == 179 && ct->ny == 179 && ct->nz == 60);
    CHECK(ct->dtype == COVCT_DTYPE_INT16 && ct->outside);
    /* LPS, axial, feet first in k. */
    CHECK(ct->affine[0][0] == 2.0 && ct->affine[1][1] == 2.0 &&
          ct->affine[2][2] == 5.0);
    check_labels(ct, s, &t);
    check_lesion_components(ct, s, &t);
    check_lesion_hu(ct, s, p.noise_hu);
    check_anatomy_hu(ct, s);

    /* The lesion set the brief promises. */
    int ggo_lower = 0, cons_lower = 0, cons_wall = 0, ggo_n = 0, cons_n = 0;
    for (int i = 0; i < t.n_lesions; i++) {
        const covct_phantom_lesion *l = &t.lesion[i];
        int lower = l->lobe == COVCT_LOBE_LLL || l->lobe == COVCT_LOBE_RLL;
        if (l->cls == COVCT_LESION_GGO) {
            ggo_n++;
            ggo_lower += lower;
        } else {
            cons_n++;
            cons_lower += lower;
            cons_wall += l->subpleural;
        }
        CHECKF(l->voxels > 0, "lesion %d is empty", i + 1);
    }
    CHECK(ggo_n >= 3 && cons_n >= 2);
    CHECK(ggo_lower >= 1 && cons_lower >= 1 && cons_wall >= 1);

    const char *dir = tpath("dicom");
    err = (covct_error){0};
    rc = covct_phantom_write_dicom(ct, dir, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    if (!rc)
        check_dicom(ct, dir);
    check_truth_files(ct, s, &t);
    covct_volume_free(ct);
    covct_seg_free(s);
}

/* ---- the analytic sphere ---------------------------------------------- */

static void test_sphere(double r, double pixel, double slice, double tol)
{
    covct_phantom_params p;
    covct_phantom_params_default(&p);
    p.pixel_mm = pixel;
    p.slice_mm = slice;
    p.noise_hu = 0;
    p.sphere_radius_mm = r;
    /* A small grid around the default sphere centre (-80, 40, -30). */
    p.nx = p.ny = (uint32_t)ceil(2 * (r + 8) / pixel);
    p.nz = (uint32_t)ceil(2 * (r + 8) / slice);
    p.centre_mm[0] = -80;
    p.centre_mm[1] = 40;
    p.centre_mm[2] = -30;
    covct_volume *ct = NULL;
    covct_seg *s = NULL;
    covct_phantom_truth t;
    covct_error err = {0};
    covct_rc rc = covct_phantom_make(&p, &ct, &s, &t, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    if (rc)
        return;
    double exact = 4.0 / 3.0 * M_PI * r * r * r / 1000.0;
    CHECK(t.n_lesions == 1);
    CHECK(t.lesion[0].cls == COVCT_LESION_CONSOLIDATION);
    CHECK(t.lesion[0].lobe == COVCT_LOBE_RLL);
    CHECKF(fabs(t.consolidation_ml - exact) <= tol * exact,
           "sphere r %g mm on %g x %g x %g: %.4f ml, exact %.4f ml", r,
           pixel, pixel, slice, t.consolidation_ml, exact);
    /* Count independently from the mask, and its centroid. */
    size_t n = covct_volume_voxels(ct), cnt = 0;
    double c[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        if (s->lesions[i] != COVCT_LESION_CONSOLIDATION)
            continue;
        cnt++;
        double ii = (double)(i % ct->nx), jj = (double)((i / ct->nx) % ct->ny),
               kk = (double)(i / ((size_t)ct->nx * ct->ny));
        for (int a = 0; a < 3; a++)
            c[a] += ct->affine[a][0] * ii + ct->affine[a][1] * jj +
                    ct->affine[a][2] * kk + ct->affine[a][3];
    }
    CHECK(fabs(cnt * t.voxel_ml - t.consolidation_ml) < 1e-9);
    if (cnt) {
        const double want[3] = {-80, 40, -30};
        for (int a = 0; a < 3; a++)
            CHECKF(fabs(c[a] / cnt - want[a]) < 0.5, "centroid axis %d %.2f",
                   a, c[a] / cnt);
    }
    covct_volume_free(ct);
    covct_seg_free(s);
}

/* ---- determinism, options, failures ----------------------------------- */

static void test_determinism(void)
{
    covct_phantom_params p;
    small_params(&p);
    p.pixel_mm = 4.0;
    covct_volume *a = NULL, *b = NULL, *c = NULL;
    covct_seg *sa = NULL, *sb = NULL;
    covct_phantom_truth ta, tb, tc;
    covct_error err = {0};
    CHECK(covct_phantom_make(&p, &a, &sa, &ta, &err) == COVCT_OK);
    CHECK(covct_phantom_make(&p, &b, &sb, &tb, &err) == COVCT_OK);
    p.seed = 2;
    CHECK(covct_phantom_make(&p, &c, NULL, &tc, &err) == COVCT_OK);
    if (a && b && c) {
        size_t n = covct_volume_voxels(a);
        CHECK(!memcmp(a->data, b->data, n * 2));
        CHECK(!memcmp(sa->lesions, sb->lesions, n));
        CHECK(!memcmp(sa->lobes, sb->lobes, n));
        CHECK(!memcmp(&ta, &tb, sizeof ta));
        CHECK(memcmp(a->data, c->data, n * 2) != 0);
        /* Same anatomy, other lesions. */
        CHECK(ta.lungs_ml == tc.lungs_ml);
        CHECK(ta.ggo_ml != tc.ggo_ml);
        /* Same phantom, same files, UIDs included. */
        covct_error e2 = {0};
        CHECK(covct_phantom_write_dicom(a, tpath("det1"), &e2) == COVCT_OK);
        CHECK(covct_phantom_write_dicom(b, tpath("det2"), &e2) == COVCT_OK);
        uint8_t *f1 = NULL, *f2 = NULL;
        size_t l1 = 0, l2 = 0;
        char p1[4096], p2[4096];
        snprintf(p1, sizeof p1, "%s/IM00007.dcm", tpath("det1"));
        snprintf(p2, sizeof p2, "%s/IM00007.dcm", tpath("det2"));
        CHECK(covct_file_read(p1, &f1, &l1, &e2) == COVCT_OK);
        CHECK(covct_file_read(p2, &f2, &l2, &e2) == COVCT_OK);
        CHECK(f1 && f2 && l1 == l2 && !memcmp(f1, f2, l1));
        covct_free(f1);
        covct_free(f2);
    }
    covct_volume_free(a);
    covct_volume_free(b);
    covct_volume_free(c);
    covct_seg_free(sa);
    covct_seg_free(sb);

    /* Lesion placement works for many seeds (placement does not depend on
     * the grid, so a tiny grid is enough). */
    covct_phantom_params q;
    covct_phantom_params_default(&q);
    q.nx = q.ny = 8;
    q.nz = 4;
    int failures = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        q.seed = seed;
        covct_volume *v = NULL;
        covct_phantom_truth tt;
        covct_error e3 = {0};
        if (covct_phantom_make(&q, &v, NULL, &tt, &e3) != COVCT_OK) {
            fprintf(stderr, "seed %llu: %s\n", (unsigned long long)seed,
                    e3.msg);
            failures++;
        }
        covct_volume_free(v);
    }
    CHECK(failures == 0);
}

static void test_options(void)
{
    covct_phantom_params p;
    small_params(&p);
    p.pixel_mm = 4.0;
    p.lesions = false;
    covct_volume *ct = NULL;
    covct_seg *s = NULL;
    covct_phantom_truth t;
    covct_error err = {0};
    CHECK(covct_phantom_make(&p, &ct, &s, &t, &err) == COVCT_OK);
    if (ct) {
        CHECK(t.n_lesions == 0 && t.lesion_ml == 0);
        size_t n = covct_volume_voxels(ct), les = 0;
        for (size_t i = 0; i < n; i++)
            les += s->lesions[i] != 0;
        CHECK(les == 0);
    }
    covct_volume_free(ct);
    covct_seg_free(s);

    /* Bad arguments. */
    covct_phantom_params_default(&p);
    p.pixel_mm = 0;
    covct_volume dummy;
    ct = &dummy; /* must be reset to NULL */
    err = (covct_error){0};
    CHECK(covct_phantom_make(&p, &ct, NULL, NULL, &err) == COVCT_ERR_ARG);
    CHECK(ct == NULL);
    covct_phantom_params_default(&p);
    p.nx = p.ny = 8;
    p.nz = 4;
    p.sphere_radius_mm = 10;
    p.sphere_centre_mm[0] = -80;
    p.sphere_centre_mm[1] = 0;
    p.sphere_centre_mm[2] = 12; /* on the right oblique fissure */
    err = (covct_error){0};
    CHECK(covct_phantom_make(&p, &ct, NULL, NULL, &err) == COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "fissure") != NULL);
    p.sphere_centre_mm[0] = 0; /* the mediastinum */
    p.sphere_centre_mm[1] = 5;
    err = (covct_error){0};
    CHECK(covct_phantom_make(&p, &ct, NULL, NULL, &err) == COVCT_ERR_ARG);
}

/* Dependent consolidation (--dependent 0.3): from the definition, on the
 * truth masks: behind the cut (the back 30 % of the lungs' front-to-back
 * extent, measured here on the lung mask; +-3 mm of undulation) every
 * lower-lobe voxel is consolidation but the small airways' lumens (air
 * bronchograms: some, at most 2 %, air on average), in front of it none;
 * the lower lobes hold nothing else; the upper and middle lobes keep
 * their standard lesions; consolidation HU as for any lesion; a fraction
 * over 0.8 is refused. */
static void test_dependent(void)
{
    covct_phantom_params p;
    small_params(&p);
    p.dependent = 0.3;
    covct_volume *ct = NULL;
    covct_seg *s = NULL;
    covct_phantom_truth t;
    covct_error err = {0};
    covct_rc rc = covct_phantom_make(&p, &ct, &s, &t, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    if (rc)
        return;
    check_labels(ct, s, &t);
    check_lesion_hu(ct, s, p.noise_hu);
    size_t nx = ct->nx, ny = ct->ny, n = covct_volume_voxels(ct);
    double ymin = 1e9, ymax = -1e9;
    for (size_t i = 0; i < n; i++)
        if (s->lungs[i]) {
            double y = ct->affine[1][1] * (double)((i / nx) % ny) +
                       ct->affine[1][3];
            ymin = y < ymin ? y : ymin;
            ymax = y > ymax ? y : ymax;
        }
    double cut = ymax - 0.3 * (ymax - ymin), tol = 3.0;
    size_t behind = 0, behind_cons = 0, front_cons = 0, lower_ggo = 0;
    double air_hu = 0; /* HU summed over the voxels behind not consolidated */
    for (size_t i = 0; i < n; i++) {
        if (s->lobes[i] != COVCT_LOBE_RLL && s->lobes[i] != COVCT_LOBE_LLL)
            continue;
        double y = ct->affine[1][1] * (double)((i / nx) % ny) +
                   ct->affine[1][3];
        bool cons = s->lesions[i] == COVCT_LESION_CONSOLIDATION;
        lower_ggo += s->lesions[i] == COVCT_LESION_GGO;
        if (y >= cut + tol) {
            behind++;
            behind_cons += cons;
            air_hu += cons ? 0 : hu_at(ct, i);
        } else if (y < cut - tol) {
            front_cons += cons;
        }
    }
    size_t open = behind - behind_cons;
    printf("dependent 0.3: cut at y %.1f mm; %zu of %zu lower-lobe voxels "
           "behind it consolidated (the rest, air bronchograms, %+.0f HU on "
           "average), %zu in front; %.1f ml of consolidation\n",
           cut, behind_cons, behind, open ? air_hu / (double)open : 0.0,
           front_cons, t.consolidation_ml);
    CHECK(behind > 1000 && open > 0 && open <= behind / 50);
    CHECK(open && air_hu / (double)open < -400);
    CHECK(front_cons == 0 && lower_ggo == 0);
    int upper = 0, dep = 0;
    for (int i = 0; i < t.n_lesions; i++) {
        int lower = t.lesion[i].lobe == COVCT_LOBE_RLL ||
                    t.lesion[i].lobe == COVCT_LOBE_LLL;
        upper += !lower;
        dep += lower && t.lesion[i].cls == COVCT_LESION_CONSOLIDATION &&
               t.lesion[i].volume_ml > 100;
    }
    CHECKF(upper == 4 && dep == 2 && t.n_lesions == 6,
           "%d upper-lobe lesions, %d dependent, %d in all", upper, dep,
           t.n_lesions);
    covct_volume_free(ct);
    covct_seg_free(s);

    p.dependent = 0.9;
    err = (covct_error){0};
    CHECK(covct_phantom_make(&p, &ct, NULL, NULL, &err) == COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "dependent") != NULL);
}

static void test_alloc_failures(void)
{
    covct_phantom_params p;
    covct_phantom_params_default(&p);
    p.nx = p.ny = 16;
    p.nz = 8;
    p.pixel_mm = 20;
    p.slice_mm = 30;
    int ok = 0, cleaned = 1;
    for (uint64_t nth = 1; nth < 200 && !ok; nth++) {
        covct_volume *ct = NULL;
        covct_seg *s = NULL;
        covct_phantom_truth t;
        covct_error err = {0};
        covct_alloc_fail_at(nth);
        covct_rc rc = covct_phantom_make(&p, &ct, &s, &t, &err);
        covct_alloc_fail_at(0);
        if (rc == COVCT_OK) {
            ok = 1;
        } else {
            if (rc != COVCT_ERR_NOMEM || ct || s)
                cleaned = 0;
        }
        covct_volume_free(ct);
        covct_seg_free(s);
    }
    CHECK(ok);
    CHECK(cleaned); /* leaks are caught by LeakSanitizer */
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/covct-phantom-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    test_standard();
    test_sphere(10.0, 0.7, 0.7, 0.03);
    test_sphere(6.0, 0.7, 0.7, 0.03);
    test_determinism();
    test_options();
    test_dependent();
    test_alloc_failures();
    remove_tree(tmpdir);
    int rc = test_report();
    if (dciodvfy_missing) {
        const char *ci = getenv("CI");
        if (ci && !strcmp(ci, "true")) {
            fprintf(stderr, "FAIL: dciodvfy (dicom3tools) is not installed\n");
            return 1;
        }
        fprintf(stderr, "SKIP: dciodvfy (dicom3tools) is not installed\n");
        return rc ? rc : TEST_SKIP_CODE;
    }
    return rc;
}
