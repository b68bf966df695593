/*
 * Measures against cases computed by hand: small label volumes whose
 * volumes, involvement, scores and distribution follow from counting.
 */
#include <math.h>
#include <string.h>

#include "covct/analysis.h"
#include "test.h"

#define NX 20
#define NY 10
#define NZ 4

/* Voxels 1 x 1 x 2 mm = 2 mm3 = 0.002 ml; pixel 1 mm2. */
static covct_volume *make_ct(void)
{
    covct_volume *v;
    if (covct_volume_new(NX, NY, NZ, COVCT_DTYPE_INT16, &v, NULL))
        return NULL;
    v->spacing[0] = 1;
    v->spacing[1] = 1;
    v->spacing[2] = 2;
    memset(v->affine, 0, sizeof v->affine);
    v->affine[0][0] = 1;
    v->affine[1][1] = 1;
    v->affine[2][2] = 2;
    v->affine[2][3] = -100; /* slice k at z = -100 + 2k */
    v->affine[3][3] = 1;
    int16_t *d = v->data;
    for (size_t i = 0; i < covct_volume_voxels(v); i++)
        d[i] = -850;
    return v;
}

#define IDX(x, y, z) ((size_t)(z) * NX * NY + (size_t)(y) * NX + (x))

static void near(double got, double want, double tol, const char *what)
{
    CHECKF(fabs(got - want) <= tol, "%s: got %.6f, want %.6f", what, got, want);
}

static void test_scores(void)
{
    /* Pan et al. bands. */
    CHECK(covct_lobe_score(0) == 0);
    CHECK(covct_lobe_score(0.01) == 1);
    CHECK(covct_lobe_score(4.99) == 1);
    CHECK(covct_lobe_score(5.0) == 2);
    CHECK(covct_lobe_score(25.0) == 2);
    CHECK(covct_lobe_score(26.0) == 3);
    CHECK(covct_lobe_score(50.0) == 3);
    CHECK(covct_lobe_score(51.0) == 4);
    CHECK(covct_lobe_score(75.0) == 4);
    CHECK(covct_lobe_score(76.0) == 5);
    CHECK(covct_lobe_score(100.0) == 5);
    CHECK(!strcmp(covct_lobe_name(COVCT_LOBE_RML), "RML"));
    CHECK(!strcmp(covct_category_name(COVCT_CAT_TYPICAL), "typical"));
}

/* Right lung: x 0..9 (x < 10 is patient right in LPS: smaller x), left
 * lung: x 10..19.  Lobes by rows: right y 0..2 RUL, 3..4 RML, 5..9 RLL;
 * left y 0..4 LUL, 5..9 LLL.  Per slice: RUL 30, RML 20, RLL 50, LUL 50,
 * LLL 50 voxels; x 4 slices. */
static covct_seg *make_seg(const covct_volume *ct)
{
    covct_seg *s;
    if (covct_seg_new(ct, &s, NULL))
        return NULL;
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) {
                size_t i = IDX(x, y, z);
                s->body[i] = 1;
                if (x < 10) {
                    s->lungs[i] = COVCT_LUNG_RIGHT;
                    s->lobes[i] = y < 3 ? COVCT_LOBE_RUL
                                        : y < 5 ? COVCT_LOBE_RML
                                                : COVCT_LOBE_RLL;
                } else {
                    s->lungs[i] = COVCT_LUNG_LEFT;
                    s->lobes[i] = y < 5 ? COVCT_LOBE_LUL : COVCT_LOBE_LLL;
                }
            }
    return s;
}

static void test_volumes_and_scores(void)
{
    covct_volume *ct = make_ct();
    covct_seg *s = make_seg(ct);
    /* Lesions: RLL 60 of its 200 voxels GGO (30 %, score 3) on slices 0-1
     * (30 per slice: y 5..7, x 0..9); LLL 2 voxels consolidation (1 %,
     * score 1) on slice 3; nothing elsewhere. */
    for (int z = 0; z < 2; z++)
        for (int y = 5; y < 8; y++)
            for (int x = 0; x < 10; x++)
                s->lesions[IDX(x, y, z)] = COVCT_LESION_GGO;
    s->lesions[IDX(15, 9, 3)] = COVCT_LESION_CONSOLIDATION;
    s->lesions[IDX(16, 9, 3)] = COVCT_LESION_CONSOLIDATION;
    /* HU: 100 lung voxels at -1000 (not well aerated), the rest -850. */
    int16_t *d = ct->data;
    for (int x = 0; x < 10; x++)
        for (int y = 0; y < 10; y++)
            d[IDX(x + 10, y, 2)] = -1000;
    int64_t inst[NZ] = {7, 6, 5, -1};
    covct_measures m;
    covct_error err = {0};
    CHECK(covct_measures_compute(ct, s, inst, &m, &err) == COVCT_OK);
    near(m.right_ml, 400 * 0.002, 1e-9, "right lung ml");
    near(m.left_ml, 400 * 0.002, 1e-9, "left lung ml");
    near(m.lobe[COVCT_LOBE_RUL].volume_ml, 120 * 0.002, 1e-9, "RUL ml");
    near(m.lobe[COVCT_LOBE_RML].volume_ml, 80 * 0.002, 1e-9, "RML ml");
    near(m.lobe[COVCT_LOBE_RLL].volume_ml, 200 * 0.002, 1e-9, "RLL ml");
    near(m.lobe[COVCT_LOBE_RLL].ggo_ml, 60 * 0.002, 1e-9, "RLL GGO ml");
    near(m.lobe[COVCT_LOBE_RLL].involvement_pct, 30.0, 1e-9, "RLL %");
    CHECK(m.lobe[COVCT_LOBE_RLL].score == 3);
    near(m.lobe[COVCT_LOBE_LLL].involvement_pct, 1.0, 1e-9, "LLL %");
    CHECK(m.lobe[COVCT_LOBE_LLL].score == 1);
    CHECK(m.lobe[COVCT_LOBE_RUL].score == 0);
    CHECK(m.ct_severity_score == 4);
    CHECK(m.lobes_involved == 2);
    near(m.ggo_ml, 0.12, 1e-9, "GGO ml");
    near(m.consolidation_ml, 0.004, 1e-9, "consolidation ml");
    near(m.involvement_pct, 100.0 * 62 / 800, 1e-9, "involvement %");
    near(m.well_aerated_pct, 100.0 * 700 / 800, 1e-9, "well aerated %");
    near(m.lower_pct, 100.0, 1e-9, "lower-lobe %");
    near(m.right_pct, 100.0 * 60 / 62, 1e-9, "right %");
    /* Per slice: z, instance numbers, areas in mm2 (pixel 1 mm2). */
    CHECK(m.n_slices == NZ);
    near(m.slices[0].z_mm, -100, 1e-9, "slice 0 z");
    near(m.slices[3].z_mm, -94, 1e-9, "slice 3 z");
    CHECK(m.slices[0].instance_number == 7 && m.slices[3].instance_number == -1);
    near(m.slices[0].lung_mm2, 200, 1e-9, "slice 0 lung mm2");
    near(m.slices[0].lesion_mm2, 30, 1e-9, "slice 0 lesion mm2");
    near(m.slices[0].lobe_lesion_mm2[COVCT_LOBE_RLL], 30, 1e-9, "slice 0 RLL");
    near(m.slices[2].lesion_mm2, 0, 1e-9, "slice 2 lesion");
    near(m.slices[3].lobe_lesion_mm2[COVCT_LOBE_LLL], 2, 1e-9, "slice 3 LLL");
    /* 62 lesion voxels = 0.124 ml, 7.75 % of this tiny lung: pneumonia. */
    CHECK(m.category != COVCT_CAT_NEGATIVE);
    CHECK(m.n_reasons >= 3);
    covct_measures_free(&m);
    covct_seg_free(s);
    covct_volume_free(ct);
}

static void test_categories(void)
{
    covct_volume *ct = make_ct();
    covct_seg *s = make_seg(ct);
    covct_measures m;
    /* No lesion: negative, score 0, with a reason. */
    CHECK(!covct_measures_compute(ct, s, NULL, &m, NULL));
    CHECK(m.category == COVCT_CAT_NEGATIVE && m.ct_severity_score == 0);
    CHECK(m.n_reasons == 1 && strstr(m.reasons[0], "below"));
    CHECK(m.slices[1].instance_number == -1);
    covct_measures_free(&m);

    /* A few scattered voxels in a big lung: measured, but negative, and
     * no lobe is scored.  Lungs 800 voxels; 4 lesion voxels = 0.5 % (<1 %)
     * and 0.008 ml (< 15 ml): negative.  RUL alone would be 4/120 = 3.3 %,
     * score 1, without the rule. */
    s->lesions[IDX(0, 0, 0)] = s->lesions[IDX(1, 0, 0)] = COVCT_LESION_GGO;
    s->lesions[IDX(0, 1, 0)] = s->lesions[IDX(1, 1, 0)] = COVCT_LESION_GGO;
    CHECK(!covct_measures_compute(ct, s, NULL, &m, NULL));
    near(m.lobe[COVCT_LOBE_RUL].involvement_pct, 100.0 * 4 / 120, 1e-9,
         "RUL % still measured");
    CHECK(m.category == COVCT_CAT_NEGATIVE && m.ct_severity_score == 0 &&
          m.lobe[COVCT_LOBE_RUL].score == 0 && m.lobes_involved == 0);
    CHECK(m.n_reasons == 2 && strstr(m.reasons[1], "also finds in normal lungs"));
    covct_measures_free(&m);
    memset(s->lesions, 0, (size_t)NX * NY * NZ);

    /* Peripheral bilateral ground glass: the outer ring of each lung, next
     * to the body surface (the body is the whole 20 x 10 image, the image
     * edge being outside): depth 1 mm, where each lung's depth on the slice
     * runs from 1 mm (edge) to 5 mm (its centre row) or 10 mm (next to the
     * other lung); the outer third is depth <= 1 + (10-1)/3 = 4 mm. */
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++)
                if (y == 0 || y == NY - 1 || x == 0 || x == NX - 1)
                    s->lesions[IDX(x, y, z)] = COVCT_LESION_GGO;
    CHECK(!covct_measures_compute(ct, s, NULL, &m, NULL));
    CHECK(m.bilateral);
    near(m.peripheral_pct, 100.0, 1e-9, "peripheral %");
    CHECK(m.category == COVCT_CAT_TYPICAL);
    covct_measures_free(&m);

    /* The same amount against the mediastinum (x 8..11, rows 3..6, deep
     * below the body surface): central, not typical. */
    memset(s->lesions, 0, (size_t)NX * NY * NZ);
    for (int z = 0; z < NZ; z++)
        for (int y = 3; y < 7; y++)
            for (int x = 8; x < 12; x++)
                s->lesions[IDX(x, y, z)] = COVCT_LESION_GGO;
    CHECK(!covct_measures_compute(ct, s, NULL, &m, NULL));
    CHECKF(m.peripheral_pct < 1e-9, "central lesion peripheral %%: %g",
           m.peripheral_pct);
    CHECK(m.bilateral && m.category == COVCT_CAT_INDETERMINATE);
    covct_measures_free(&m);

    /* Consolidation filling the RLL only: atypical (lobar consolidation). */
    memset(s->lesions, 0, (size_t)NX * NY * NZ);
    for (size_t i = 0; i < (size_t)NX * NY * NZ; i++)
        if (s->lobes[i] == COVCT_LOBE_RLL)
            s->lesions[i] = COVCT_LESION_CONSOLIDATION;
    CHECK(!covct_measures_compute(ct, s, NULL, &m, NULL));
    CHECK(m.lobe[COVCT_LOBE_RLL].score == 5 && m.ct_severity_score == 5);
    CHECK(!m.bilateral && m.lobes_involved == 1);
    CHECK(m.category == COVCT_CAT_ATYPICAL);
    covct_measures_free(&m);
    covct_seg_free(s);
    covct_volume_free(ct);
}

int main(void)
{
    test_scores();
    test_volumes_and_scores();
    test_categories();
    return test_report();
}
