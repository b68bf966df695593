/*
 * Which dense tissue behind the lungs is lung (covct_lungs_dense_lung,
 * src/analysis/lungs-behind.c), on a hand-made volume whose answer
 * follows from the rule: a 3-D region of the dense-tissue mask holding at
 * least 0.2 ml of air bronchograms (air below -300 HU, 4-connected in its
 * slice, at most 80 mm2, every in-plane neighbour tissue of that region)
 * joins the lung it touches most; the rest stays measured apart.
 *
 * 1 x 1 x 2 mm voxels (2 mm3).  Two lungs (-850 HU) and behind each a
 * block of +30 HU tissue marked as dense tissue:
 *  - behind the right lung, block A holds two 3 x 4 air pockets on each of
 *    its 6 slices: 144 voxels, 0.288 ml, enough;
 *  - behind the left lung, block B holds a 3 x 4 pocket open to the lung
 *    (so part of the lung's air, not enclosed) and a 10 x 10 pocket
 *    (100 mm2, too large) on each slice: no bronchograms;
 *  - block C, like A but with one 3 x 4 pocket on 4 slices (48 voxels,
 *    0.096 ml): too little.
 * Expected: A and its pockets join the right lung (its volume, counted
 * here, is the added right_ml), B and C stay in the mask, nothing joins
 * the left lung, bronchi_ml is A's and C's pockets.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/analysis.h"
#include "test.h"

enum { NX = 96, NY = 80, NZ = 8 };

static size_t at(int x, int y, int z)
{
    return ((size_t)z * NY + (size_t)y) * NX + (size_t)x;
}

static void fill(covct_volume *ct, uint8_t *lab, uint8_t v, int16_t hu,
                 int x0, int x1, int y0, int y1, int z0, int z1)
{
    int16_t *d = ct->data;
    for (int z = z0; z < z1; z++)
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                d[at(x, y, z)] = hu;
                if (lab)
                    lab[at(x, y, z)] = v;
            }
}

int main(void)
{
    covct_error err = {0};
    covct_volume *ct = NULL;
    covct_seg *seg = NULL;
    if (covct_volume_new(NX, NY, NZ, COVCT_DTYPE_INT16, &ct, &err) ||
        covct_seg_new(ct, &seg, &err)) {
        CHECKF(0, "%s", err.msg);
        return test_report();
    }
    const double sp[3] = {1, 1, 2};
    for (int a = 0; a < 3; a++) {
        ct->spacing[a] = sp[a];
        ct->affine[a][a] = sp[a];
    }
    size_t n = covct_volume_voxels(ct);
    uint8_t *found = calloc(n, 1);
    CHECK(found != NULL);
    if (!found)
        return test_report();
    int16_t *d = ct->data;
    for (size_t i = 0; i < n; i++)
        d[i] = 40; /* soft tissue everywhere else */
    memset(seg->body, 1, n);
    /* Lungs: rows y 5..29; right x 5..39, left x 50..89. */
    fill(ct, seg->lungs, COVCT_LUNG_RIGHT, -850, 5, 40, 5, 30, 0, NZ);
    fill(ct, seg->lungs, COVCT_LUNG_LEFT, -850, 50, 90, 5, 30, 0, NZ);
    /* A: behind the right lung, x 5..24, y 30..49, slices 1..6. */
    fill(ct, found, 1, 30, 5, 25, 30, 50, 1, 7);
    /* C: behind the right lung too, x 28..39, y 30..49, slices 1..6
     * (apart from A: column x 25..27 is left out). */
    fill(ct, found, 1, 30, 28, 40, 30, 50, 1, 7);
    /* B: behind the left lung, x 50..89, y 30..59, slices 1..6. */
    fill(ct, found, 1, 30, 50, 90, 30, 60, 1, 7);
    size_t a_vox = 20 * 20 * 6;
    for (int z = 1; z < 7; z++) {
        /* A's pockets (3 x 4 each), enclosed by A. */
        fill(ct, found, 0, -950, 8, 11, 36, 40, z, z + 1);
        fill(ct, found, 0, -950, 16, 19, 40, 44, z, z + 1);
        /* B: a pocket open to the lung (rows 30..33 touch row 29), and a
         * 10 x 10 one. */
        fill(ct, found, 0, -950, 60, 63, 30, 34, z, z + 1);
        fill(ct, found, 0, -950, 70, 80, 40, 50, z, z + 1);
        /* C: one pocket on slices 1..4. */
        if (z <= 4)
            fill(ct, found, 0, -950, 32, 35, 40, 44, z, z + 1);
    }
    a_vox -= 2 * 12 * 6; /* the pockets were cleared from the mask */
    covct_dense_lung dl;
    covct_rc rc = covct_lungs_dense_lung(ct, seg, found, &dl, &err);
    CHECKF(rc == COVCT_OK, "%s", err.msg);
    const double vml = 2.0 / 1000.0;
    double want_right = (double)(a_vox + 144) * vml;
    double want_bronchi = (144.0 + 48.0) * vml;
    printf("added right %.3f ml (expected %.3f), left %.3f; bronchograms "
           "%.3f ml (expected %.3f); %zu region(s)\n",
           dl.right_ml, want_right, dl.left_ml, dl.bronchi_ml, want_bronchi,
           dl.regions);
    CHECK(fabs(dl.right_ml - want_right) < 1e-6);
    CHECK(dl.left_ml == 0 && dl.regions == 1);
    CHECK(fabs(dl.bronchi_ml - want_bronchi) < 1e-6);
    /* A and its pockets are right lung and out of the mask; B and C stay. */
    size_t a_right = 0, a_found = 0, b_found = 0, c_found = 0, b_lung = 0;
    for (int z = 1; z < 7; z++)
        for (int y = 30; y < 60; y++)
            for (int x = 5; x < 90; x++) {
                size_t i = at(x, y, z);
                if (x < 25 && y < 50) {
                    a_right += seg->lungs[i] == COVCT_LUNG_RIGHT;
                    a_found += found[i];
                } else if (x >= 28 && x < 40 && y < 50) {
                    c_found += found[i];
                } else if (x >= 50) {
                    b_found += found[i];
                    b_lung += seg->lungs[i] != 0;
                }
            }
    CHECKF(a_right == 20 * 20 * 6 && a_found == 0,
           "A: %zu right-lung voxels of %d, %zu still in the mask", a_right,
           20 * 20 * 6, a_found);
    CHECKF(c_found == 12 * 20 * 6 - 48, "C: %zu voxels in the mask", c_found);
    CHECKF(b_found == 40 * 30 * 6 - 6 * (12 + 100) && b_lung == 0,
           "B: %zu voxels in the mask, %zu lung", b_found, b_lung);

    /* An empty mask changes nothing. */
    memset(found, 0, n);
    rc = covct_lungs_dense_lung(ct, seg, found, &dl, &err);
    CHECK(rc == COVCT_OK && dl.regions == 0 && dl.right_ml == 0 &&
          dl.bronchi_ml == 0);
    free(found);
    covct_seg_free(seg);
    covct_volume_free(ct);
    return test_report();
}
