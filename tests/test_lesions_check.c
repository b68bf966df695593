/*
 * The density check of the network's lesions (src/analysis/
 * lesions-check.c) on hand-made volumes whose answer follows from the
 * three rules:
 *  - rule 1: a lesion voxel in -850 HU lung is dropped (well aerated,
 *    below -700), one in a -500 HU patch is kept; the count is reported;
 *  - rules 2 and 3: a +30 HU ball of radius 8 mm inside the lung becomes
 *    consolidation (all its voxels, nothing outside it), a +40 HU vessel
 *    of radius 3 mm does not, a ball cut by the chest wall does, and a
 *    fold of tissue in the lung mask reaching into the mediastinum does
 *    not (no point of it lies 3 mm inside the lung mask);
 *  - rule 3 alone, around a block labelled consolidation: a -300 HU layer
 *    one voxel thick beside it is added, a -500 HU one is not, a +40 HU
 *    rod leaving it is added as far as 1.5 mm of pixels reach (one step
 *    at least), and a -300 HU layer in the slice under it is not (the rim
 *    stays in the slice);
 *  - both grids: 0.75 mm pixels (the 2 x 2 coarse search) and 1.4 mm;
 *  - wrong input is refused with a message; no lung changes nothing;
 *  - the thick-slice check (covct_lesions_thick_slice_check): on 5 mm
 *    slices a column of lesion through the whole lung loses exactly its
 *    lowest and highest slice (no lung below / above them), on 2 mm
 *    slices nothing; lung that runs off the scan keeps its edge slices.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/analysis.h"
#include "test.h"

enum { W = 160, H = 160, D = 40 };

typedef struct scene {
    covct_volume *ct;
    covct_seg *seg;
    size_t nx, ny, nz;
    double sp[3];
    /* The rim block, in voxels: x0 <= x < x1, y0 <= y < y1, z0 <= z < z1;
     * the rod along x at row rod_y, from x1 + 1 for rod_n voxels. */
    size_t x0, x1, y0, y1, z0, z1, rod_y, rod_n;
} scene;

/* What a voxel of the rim structure is. */
enum {
    RIM_NONE, RIM_BLOCK, RIM_SIDE /* -300 */, RIM_FAINT /* -500 */,
    RIM_ROD, RIM_UNDER /* -300, the slice below */
};

static int rim_part(const scene *s, size_t i)
{
    size_t x = i % s->nx, y = i / s->nx % s->ny, z = i / (s->nx * s->ny);
    bool zin = z >= s->z0 && z < s->z1, yin = y >= s->y0 && y < s->y1;
    bool xin = x >= s->x0 && x < s->x1;
    if (xin && yin && zin)
        return RIM_BLOCK;
    if ((x + 1 == s->x0 || x == s->x1) && yin && zin)
        return RIM_SIDE;
    if ((y + 1 == s->y0 || y == s->y1) && xin && zin)
        return RIM_FAINT;
    if (y == s->rod_y && x > s->x1 && x <= s->x1 + s->rod_n && zin)
        return RIM_ROD;
    if (z + 1 == s->z0 && xin && yin)
        return RIM_UNDER;
    return RIM_NONE;
}

static double sq(double a) { return a * a; }

/* Patient mm of voxel i (x fastest): origin 0, axes along x, y, z. */
static void mm(const scene *s, size_t i, double p[3])
{
    p[0] = (double)(i % s->nx) * s->sp[0];
    p[1] = (double)(i / s->nx % s->ny) * s->sp[1];
    p[2] = (double)(i / (s->nx * s->ny)) * s->sp[2];
}

/* The scene, in mm: lung (-850 HU) is the box 10 <= x < 110, 10 <= y <
 * 110, 6 <= z < 74, tissue (+40 HU) around it (chest wall and
 * mediastinum).  Inside the lung: a ball of +30 HU, radius 8, centre (40,
 * 40, 40); a vessel of +40 HU, radius 3, along x at y = 80, z = 40; a ball
 * of radius 12 centred on the wall x = 110 at (110, 60, 40); a -500 HU
 * patch 20 <= x < 30, 80 <= y < 90, 20 <= z < 26; and in the lung mask a
 * fold of tissue 4 x 4 mm wide that runs from the wall y = 110 to the end
 * of the volume at 62 <= x < 66, 22 <= z < 26 (tissue the lung stage kept
 * in a crease of the lung's border against the mediastinum).  The rim
 * structure (rim_part) starts at x = 70, y = 20, z = 30 mm: a +30 HU
 * block 6 x 6 x 10 mm (at least 2 slices), too thin for rule 2. */
static int scene_make(scene *s, double pix, double slice)
{
    memset(s, 0, sizeof *s);
    s->sp[0] = s->sp[1] = pix;
    s->sp[2] = slice;
    s->nx = (size_t)ceil(120.0 / pix);
    s->ny = s->nx;
    s->nz = (size_t)ceil(80.0 / slice);
    covct_error err = {0};
    if (covct_volume_new((uint32_t)s->nx, (uint32_t)s->ny, (uint32_t)s->nz,
                         COVCT_DTYPE_INT16, &s->ct, &err))
        return -1;
    for (int a = 0; a < 3; a++) {
        s->ct->spacing[a] = s->sp[a];
        s->ct->affine[a][a] = s->sp[a];
    }
    if (covct_seg_new(s->ct, &s->seg, &err))
        return -1;
    s->x0 = (size_t)(70.0 / pix);
    s->x1 = s->x0 + (size_t)ceil(6.0 / pix);
    s->y0 = (size_t)(20.0 / pix);
    s->y1 = s->y0 + (size_t)ceil(6.0 / pix);
    s->z0 = (size_t)(30.0 / slice);
    s->z1 = s->z0 + (size_t)fmax(2.0, ceil(10.0 / slice));
    s->rod_y = (s->y0 + s->y1) / 2;
    s->rod_n = (size_t)ceil(10.0 / pix);
    static const int rim_hu[] = {0, 30, -300, -500, 40, -300};
    int16_t *hu = s->ct->data;
    for (size_t i = 0; i < s->nx * s->ny * s->nz; i++) {
        double p[3];
        mm(s, i, p);
        bool lung = p[0] >= 10 && p[0] < 110 && p[1] >= 10 &&
                    p[1] < 110 && p[2] >= 6 && p[2] < 74;
        bool fold = p[0] >= 62 && p[0] < 66 && p[1] >= 110 &&
                    p[2] >= 22 && p[2] < 26;
        int v = lung ? -850 : 40;
        if (lung && sq(p[0] - 40) + sq(p[1] - 40) + sq(p[2] - 40) <= 64)
            v = 30;
        if (lung && sq(p[1] - 80) + sq(p[2] - 40) <= 9)
            v = 40;
        if (lung && sq(p[0] - 110) + sq(p[1] - 60) + sq(p[2] - 40) <= 144)
            v = 30;
        if (lung && p[0] >= 20 && p[0] < 30 && p[1] >= 80 &&
            p[1] < 90 && p[2] >= 20 && p[2] < 26)
            v = -500;
        int part = rim_part(s, i);
        if (part != RIM_NONE)
            v = rim_hu[part];
        hu[i] = (int16_t)v;
        s->seg->lungs[i] = lung || fold ? (p[0] < 60 ? 1 : 2) : 0;
    }
    return 0;
}

static void scene_free(scene *s)
{
    covct_seg_free(s->seg);
    covct_volume_free(s->ct);
}

typedef struct tally {
    size_t ball, ball_cons, mid, mid_cons, wall, wall_cons, vessel_cons, fold_cons,
        other_cons;
} tally;

static void count(const scene *s, tally *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < s->nx * s->ny * s->nz; i++) {
        double p[3];
        mm(s, i, p);
        bool cons = s->seg->lesions[i] == COVCT_LESION_CONSOLIDATION;
        bool lung = s->seg->lungs[i] != 0;
        double rb = sq(p[0] - 40) + sq(p[1] - 40) + sq(p[2] - 40);
        double rw = sq(p[0] - 110) + sq(p[1] - 60) + sq(p[2] - 40);
        if (rim_part(s, i) != RIM_NONE) {
            continue; /* counted in test_grid */
        } else if (lung && rb <= 64) {
            t->ball++;
            t->ball_cons += cons;
            bool middle = fabs(p[2] - 40) < s->sp[2] / 2;
            t->mid += middle;
            t->mid_cons += middle && cons;
        } else if (lung && rw <= 144) {
            t->wall++;
            t->wall_cons += cons;
        } else if (cons && sq(p[1] - 80) + sq(p[2] - 40) <= 16) {
            t->vessel_cons++;
        } else if (cons && p[1] >= 100) {
            t->fold_cons++;
        } else if (cons && rb > sq(8 + s->sp[0]) &&
                   rw > sq(12 + s->sp[0])) {
            t->other_cons++; /* beyond a voxel around the balls */
        }
    }
}

/* The -500 HU patch (in x and y; the labels below are 20 <= z < 26). */
static bool in_patch(const double p[3])
{
    return p[0] >= 20 && p[0] < 30 && p[1] >= 80 && p[1] < 90;
}

/* Labelled voxels whose 3 x 3 in-plane neighbourhood is all -850 HU. */
static bool in_margin(const double p[3], double pix)
{
    return p[0] < 20 - pix || p[0] >= 30 + pix || p[1] < 80 - pix ||
           p[1] >= 90 + pix;
}

static void test_grid(double pix, double slice)
{
    scene s;
    CHECK(scene_make(&s, pix, slice) == 0);
    if (!s.seg)
        return;
    /* Network-like labels: ground glass over the -500 patch and 3 mm
     * around it (in -850 lung); consolidation on the rim block. */
    size_t patch = 0, aerated = 0;
    for (size_t i = 0; i < s.nx * s.ny * s.nz; i++) {
        double p[3];
        mm(&s, i, p);
        if (rim_part(&s, i) == RIM_BLOCK)
            s.seg->lesions[i] = COVCT_LESION_CONSOLIDATION;
        if (p[0] >= 17 && p[0] < 33 && p[1] >= 77 && p[1] < 93 &&
            p[2] >= 20 && p[2] < 26) {
            s.seg->lesions[i] = COVCT_LESION_GGO;
            patch += in_patch(p);
            aerated += in_margin(p, pix);
        }
    }
    covct_lesions_check_stats st;
    covct_error err = {0};
    CHECK(covct_lesions_density_check(s.ct, s.seg, &st, &err) == COVCT_OK);
    /* Rule 1: the -500 patch stays ground glass, the -850 margin goes
     * (its edge voxels, half patch by their 3 x 3 mean, may go either
     * way). */
    size_t kept = 0, margin_left = 0;
    for (size_t i = 0; i < s.nx * s.ny * s.nz; i++) {
        double p[3];
        mm(&s, i, p);
        if (s.seg->lesions[i] != COVCT_LESION_GGO)
            continue;
        kept += in_patch(p);
        margin_left += in_margin(p, pix);
    }
    CHECK(kept == patch);
    CHECK(margin_left == 0);
    CHECK(st.aerated_voxels >= aerated);
    tally t;
    count(&s, &t);
    fprintf(stderr,
            "grid %.2f x %.1f mm: ball %zu/%zu, wall ball %zu/%zu, vessel %zu, "
            "fold %zu, elsewhere %zu, %zu made consolidation, %zu dropped, "
            "%zu rim\n",
            pix, slice, t.ball_cons, t.ball, t.wall_cons, t.wall,
            t.vessel_cons, t.fold_cons, t.other_cons, st.dense_voxels,
            st.aerated_voxels, st.rim_voxels);
    /* The whole ball: rule 2's 5 mm balls cover it but for edge voxels
     * whose 3 x 3 mean is below -300, and rule 3 takes those (+30 HU, next
     * to the rest).  On 5 mm slices its slices above and below the middle
     * lie 5 mm from the centres, whose balls reach them only right above
     * the centres (rule 3 adds 1.5 mm around that): the middle slice
     * whole, three quarters of the ball. */
    CHECK(t.mid > 0 && t.mid_cons == t.mid);
    if (slice > COVCT_THICK_SLICE_MM)
        CHECK(t.ball_cons >= 0.75 * (double)t.ball);
    else
        CHECK(t.ball_cons == t.ball);
    /* The ball cut by the wall: centres lie 3 mm or more from the wall
     * (5 mm from aerated lung, 3 mm inside the mask); where the ball
     * meets the wall, its voxels farther than 5 mm from any centre and
     * 1.5 mm from those are not reached. */
    CHECK(t.wall_cons >= 0.80 * (double)t.wall);
    CHECK(t.vessel_cons == 0);
    CHECK(t.fold_cons == 0);
    CHECK(t.other_cons == 0);

    /* Rule 3 around the block: the -300 sides (one voxel, the first step)
     * are added, the -500 sides are not; of the rod, the voxels the steps
     * after the first reach (1.5 mm of pixels, at least one step); the
     * -300 slice under the block is not. */
    int steps = (int)floor(1.5 / pix);
    steps = steps < 1 ? 1 : steps;
    size_t want[6] = {0}, got[6] = {0};
    for (size_t i = 0; i < s.nx * s.ny * s.nz; i++) {
        int part = rim_part(&s, i);
        if (part == RIM_NONE)
            continue;
        bool cons = s.seg->lesions[i] == COVCT_LESION_CONSOLIDATION;
        got[part] += cons;
        size_t x = i % s.nx;
        switch (part) {
        case RIM_BLOCK:
        case RIM_SIDE:
            want[part]++;
            break;
        case RIM_ROD:
            want[part] += x - s.x1 < (size_t)steps;
            break;
        default:
            break;
        }
    }
    printf("grid %.2f x %.1f mm, rim: block %zu/%zu, sides %zu/%zu, "
           "faint %zu/0, rod %zu/%zu, under %zu/%zu\n",
           pix, slice, got[RIM_BLOCK], want[RIM_BLOCK], got[RIM_SIDE],
           want[RIM_SIDE], got[RIM_FAINT], got[RIM_ROD], want[RIM_ROD],
           got[RIM_UNDER], want[RIM_UNDER]);
    CHECK(want[RIM_SIDE] > 0);
    for (int k = RIM_BLOCK; k <= RIM_UNDER; k++)
        CHECKF(got[k] == want[k], "rim part %d: %zu, want %zu", k, got[k],
               want[k]);
    scene_free(&s);
}

static void test_input(void)
{
    covct_error err = {0};
    CHECK(covct_lesions_density_check(NULL, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "missing input") != NULL);
    scene a, b;
    CHECK(scene_make(&a, 1.4, 4.0) == 0);
    CHECK(scene_make(&b, 2.0, 4.0) == 0);
    if (a.seg && b.seg) {
        covct_error_clear(&err);
        CHECK(covct_lesions_density_check(a.ct, b.seg, NULL, &err) ==
              COVCT_ERR_ARG);
        CHECK(strstr(err.msg, "differ in size") != NULL);
        /* No lung: nothing changes. */
        size_t n = a.nx * a.ny * a.nz;
        memset(a.seg->lungs, 0, n);
        memset(a.seg->lesions, COVCT_LESION_GGO, n);
        covct_lesions_check_stats st;
        CHECK(covct_lesions_density_check(a.ct, a.seg, &st, &err) ==
              COVCT_OK);
        size_t ggo = 0;
        for (size_t i = 0; i < n; i++)
            ggo += a.seg->lesions[i] == COVCT_LESION_GGO;
        /* Rule 1 still applies where the labels sit in -850 lung HU. */
        CHECK(st.dense_voxels == 0);
        CHECK(ggo + st.aerated_voxels == n);
    }
    scene_free(&a);
    scene_free(&b);
}

/* A 10 x 10 mm column of ground glass through the whole lung (z 6..74 mm
 * of the scene). */
static void test_thick(double slice)
{
    scene s;
    if (scene_make(&s, 1.4, slice) != 0) {
        CHECK(!"scene");
        scene_free(&s);
        return;
    }
    size_t per = 0, n = s.nx * s.ny * s.nz, zlo = s.nz, zhi = 0;
    for (size_t i = 0; i < n; i++) {
        double p[3];
        mm(&s, i, p);
        if (s.seg->lungs[i] && p[0] >= 20 && p[0] < 30 &&
            p[1] >= 20 && p[1] < 30) {
            size_t z = i / (s.nx * s.ny);
            s.seg->lesions[i] = COVCT_LESION_GGO;
            per += z == (size_t)ceil(40.0 / slice);
            zlo = z < zlo ? z : zlo;
            zhi = z > zhi ? z : zhi;
        }
    }
    size_t before = 0, after = 0, lo_left = 0, hi_left = 0, dropped = 9;
    for (size_t i = 0; i < n; i++)
        before += s.seg->lesions[i] != 0;
    covct_error err = {0};
    CHECK(covct_lesions_thick_slice_check(s.ct, s.seg, &dropped, &err) ==
          COVCT_OK);
    for (size_t i = 0; i < n; i++) {
        after += s.seg->lesions[i] != 0;
        size_t z = i / (s.nx * s.ny);
        lo_left += z == zlo && s.seg->lesions[i];
        hi_left += z == zhi && s.seg->lesions[i];
    }
    printf("thick-slice check, %.1f mm slices: %zu of %zu lesion voxels "
           "dropped (%zu per slice)\n", slice, dropped, before, per);
    CHECKF(after + dropped == before, "%zu + %zu != %zu", after, dropped,
           before);
    if (slice > COVCT_THICK_SLICE_MM) {
        CHECKF(dropped == 2 * per, "%.1f mm: %zu dropped, want %zu", slice,
               dropped, 2 * per);
        CHECK(lo_left == 0 && hi_left == 0);
        /* Lung that runs off the scan: its edge slice is not a surface. */
        size_t plane = s.nx * s.ny;
        for (size_t i = 0; i < plane; i++)
            if (s.seg->lungs[zlo * plane + i]) {
                for (size_t z = 0; z < zlo; z++)
                    s.seg->lungs[z * plane + i] = s.seg->lungs[zlo * plane + i];
                s.seg->lesions[i] = COVCT_LESION_GGO;
            }
        CHECK(covct_lesions_thick_slice_check(s.ct, s.seg, &dropped, &err) ==
              COVCT_OK);
        size_t first = 0;
        for (size_t i = 0; i < plane; i++)
            first += s.seg->lesions[i] != 0;
        CHECKF(first > 0 && dropped == 0,
               "first slice kept %zu, dropped %zu", first, dropped);
    } else {
        CHECKF(dropped == 0, "%.1f mm: %zu dropped", slice, dropped);
    }
    CHECK(covct_lesions_thick_slice_check(NULL, s.seg, &dropped, &err) ==
          COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "missing input") != NULL);
    scene b;
    if (scene_make(&b, 2.0, slice) == 0) {
        covct_error_clear(&err);
        CHECK(covct_lesions_thick_slice_check(s.ct, b.seg, &dropped, &err) ==
              COVCT_ERR_ARG);
        CHECK(strstr(err.msg, "differ in size") != NULL);
    }
    scene_free(&b);
    scene_free(&s);
}

int main(void)
{
    test_grid(0.75, 2.0); /* coarse 2 x 2 search */
    test_grid(1.4, 2.5);  /* the phantom's grid */
    test_grid(0.7, 5.0);  /* thick slices */
    test_input();
    test_thick(5.0);
    test_thick(2.0);
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}
