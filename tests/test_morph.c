/*
 * 3-D closing by a ball (covct_morph_close_ball, src/analysis/morph.c)
 * against its definition, computed the slow way: dilation sets a voxel
 * with a set voxel within r mm, erosion keeps a voxel only if every grid
 * point within r mm is set (points beyond the grid count as unset).
 *  - random masks, anisotropic spacing, several radii: voxel for voxel
 *    equal to the brute force;
 *  - hand-made cases: a gap narrower than the ball's diameter between two
 *    slabs is filled, a wider one is not; a ball and a box (convex) come
 *    out unchanged; a dent in a slab's face narrower than the ball is
 *    filled, a wider one stays open.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/analysis_int.h"
#include "test.h"

static int idx(int x, int y, int z, const int n[3])
{
    return (z * n[1] + y) * n[0] + x;
}

/* Brute-force dilation (grow) or erosion of m by the ball, into out. */
static void brute(const uint8_t *m, uint8_t *out, const int n[3],
                  const double sp[3], double r, int grow)
{
    int rx = (int)floor(r / sp[0]), ry = (int)floor(r / sp[1]),
        rz = (int)floor(r / sp[2]);
    for (int z = 0; z < n[2]; z++)
        for (int y = 0; y < n[1]; y++)
            for (int x = 0; x < n[0]; x++) {
                int hit = 0; /* grow: a set voxel in reach; erode: an unset one */
                for (int dz = -rz; dz <= rz && !hit; dz++)
                    for (int dy = -ry; dy <= ry && !hit; dy++)
                        for (int dx = -rx; dx <= rx && !hit; dx++) {
                            double d2 = (dx * sp[0]) * (dx * sp[0]) +
                                        (dy * sp[1]) * (dy * sp[1]) +
                                        (dz * sp[2]) * (dz * sp[2]);
                            if (d2 > r * r)
                                continue;
                            int q[3] = {x + dx, y + dy, z + dz};
                            int in = q[0] >= 0 && q[0] < n[0] && q[1] >= 0 &&
                                     q[1] < n[1] && q[2] >= 0 && q[2] < n[2];
                            int set = in && m[idx(q[0], q[1], q[2], n)];
                            hit = grow ? set : !set;
                        }
                out[idx(x, y, z, n)] = grow ? (uint8_t)hit : (uint8_t)!hit;
            }
}

static void brute_close(const uint8_t *m, uint8_t *out, const int n[3],
                        const double sp[3], double r)
{
    size_t nv = (size_t)n[0] * n[1] * n[2];
    uint8_t *t = malloc(nv);
    brute(m, t, n, sp, r, 1);
    brute(t, out, n, sp, r, 0);
    free(t);
}

static size_t closed_diff(uint8_t *m, const int n[3], const double sp[3],
                          double r)
{
    size_t nv = (size_t)n[0] * n[1] * n[2], diff = 0;
    uint8_t *ref = malloc(nv);
    covct_error err = {0};
    brute_close(m, ref, n, sp, r);
    covct_rc rc = covct_morph_close_ball(m, (uint32_t)n[0], (uint32_t)n[1],
                                         (uint32_t)n[2], sp, r, &err);
    CHECKF(rc == COVCT_OK, "closing failed: %s", err.msg);
    for (size_t i = 0; i < nv; i++)
        diff += m[i] != ref[i];
    free(ref);
    return diff;
}

static void random_masks(void)
{
    const int n[3] = {23, 19, 11};
    const double sps[3][3] = {{1, 1, 1}, {0.7, 0.9, 2.0}, {1.4, 1.4, 2.5}};
    const double radii[3] = {1.5, 3.0, 4.5};
    size_t nv = (size_t)n[0] * n[1] * n[2];
    uint8_t *m = malloc(nv), *m0 = malloc(nv);
    uint32_t s = 12345;
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++)
            for (int dens = 0; dens < 2; dens++) {
                size_t set = 0, after = 0, lost = 0;
                for (size_t i = 0; i < nv; i++) {
                    s = s * 1664525u + 1013904223u;
                    m[i] = (s >> 24) < (dens ? 150u : 60u);
                    set += m[i];
                }
                memcpy(m0, m, nv);
                size_t d = closed_diff(m, n, sps[t], radii[k]);
                for (size_t i = 0; i < nv; i++) {
                    after += m[i];
                    /* Farther than r from beyond the grid, a closing only
                     * adds. */
                    int q[3] = {(int)(i % n[0]), (int)(i / n[0] % n[1]),
                                (int)(i / n[0] / n[1])}, inner = 1;
                    for (int a = 0; a < 3; a++)
                        inner &= (q[a] + 1) * sps[t][a] > radii[k] &&
                                 (n[a] - q[a]) * sps[t][a] > radii[k];
                    lost += inner && m0[i] && !m[i];
                }
                printf("random %.1fx%.1fx%.1f mm, r %.1f mm: %zu -> %zu set, "
                       "%zu differ from the brute force\n", sps[t][0],
                       sps[t][1], sps[t][2], radii[k], set, after, d);
                CHECKF(d == 0, "%zu voxels differ", d);
                CHECKF(lost == 0, "closing lost %zu inner voxels", lost);
            }
    free(m);
    free(m0);
}

/* Two slabs x < 10 and x >= 10 + gap (voxels of 1 mm) over the whole
 * y-z extent; the gap is filled by a ball of radius r when gap < 2r. */
static void gap(int g, double r, int want_filled)
{
    const int n[3] = {40, 30, 30};
    const double sp[3] = {1, 1, 1};
    size_t nv = (size_t)n[0] * n[1] * n[2];
    uint8_t *m = calloc(nv, 1);
    for (int z = 0; z < n[2]; z++)
        for (int y = 0; y < n[1]; y++)
            for (int x = 0; x < n[0]; x++)
                m[idx(x, y, z, n)] = x < 10 || x >= 10 + g;
    covct_error err = {0};
    covct_morph_close_ball(m, n[0], n[1], n[2], sp, r, &err);
    /* The gap's middle, away from the grid's faces (which count as
     * unset and open the closing there). */
    int filled = m[idx(10 + g / 2, 15, 15, n)];
    printf("gap of %d mm, ball radius %.1f mm: %s\n", g, r,
           filled ? "filled" : "open");
    CHECKF(filled == want_filled, "gap %d, r %.1f", g, r);
    free(m);
}

/* Convex shapes come out as they went in (away from the grid faces). */
static void convex(void)
{
    const int n[3] = {48, 48, 24};
    const double sp[3] = {0.75, 0.75, 1.5};
    size_t nv = (size_t)n[0] * n[1] * n[2], changed = 0;
    uint8_t *m = calloc(nv, 1), *m0 = malloc(nv);
    for (int z = 0; z < n[2]; z++)
        for (int y = 0; y < n[1]; y++)
            for (int x = 0; x < n[0]; x++) {
                double dx = (x - 24) * sp[0], dy = (y - 24) * sp[1],
                       dz = (z - 12) * sp[2];
                m[idx(x, y, z, n)] = dx * dx + dy * dy + dz * dz <= 12 * 12;
            }
    memcpy(m0, m, nv);
    covct_error err = {0};
    covct_morph_close_ball(m, n[0], n[1], n[2], sp, 5.0, &err);
    for (size_t i = 0; i < nv; i++)
        changed += m[i] != m0[i];
    printf("ball of 12 mm closed by 5 mm: %zu voxels changed\n", changed);
    CHECKF(changed == 0, "a ball changed by %zu voxels", changed);
    free(m);
    free(m0);
}

/* A slab (z < 12) with a square dent of side w mm and depth 4 mm in its
 * top face: closed by a ball of radius 6 mm, a dent narrower than the
 * ball is filled, a much wider one stays open in its middle. */
static void dent(int w, int want_filled)
{
    const int n[3] = {60, 60, 24};
    const double sp[3] = {1, 1, 1};
    size_t nv = (size_t)n[0] * n[1] * n[2];
    uint8_t *m = calloc(nv, 1);
    for (int z = 0; z < n[2]; z++)
        for (int y = 0; y < n[1]; y++)
            for (int x = 0; x < n[0]; x++) {
                int in_dent = abs(x - 30) * 2 < w && abs(y - 30) * 2 < w &&
                              z >= 8;
                m[idx(x, y, z, n)] = z < 12 && !in_dent;
            }
    covct_error err = {0};
    covct_morph_close_ball(m, n[0], n[1], n[2], sp, 6.0, &err);
    int filled = m[idx(30, 30, 10, n)];
    printf("dent %d mm wide, 4 mm deep, ball 6 mm: %s\n", w,
           filled ? "filled" : "open");
    CHECKF(filled == want_filled, "dent %d", w);
    free(m);
}

int main(void)
{
    random_masks();
    gap(4, 3.0, 1);  /* 4 < 6 */
    gap(8, 3.0, 0);  /* 8 > 6: a ball of 3 mm fits in the gap */
    gap(11, 6.0, 1);
    gap(14, 6.0, 0);
    convex();
    dent(6, 1);
    dent(30, 0);
    return test_report();
}
