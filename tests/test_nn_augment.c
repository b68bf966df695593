/* Training augmentation: the identity maps the slice into the square
 * exactly (it is the inference preprocessing), flips mirror, geometry
 * moves image and labels together, intensity changes have the asked
 * size, and the same seed gives the same sample. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/nn.h"
#include "test.h"

#define W 8
#define H 6
#define S 8

int main(void)
{
    uint8_t img[W * H], lab[W * H];
    for (int i = 0; i < W * H; i++) {
        img[i] = (uint8_t)(i * 5 + 3);
        lab[i] = (uint8_t)(i % 3);
    }
    float out[S * S];
    uint8_t ol[S * S];
    covct_nn_augment none;
    memset(&none, 0, sizeof none);
    covct_error err = {0};
    CHECK(covct_nn_augment_sample(&none, 1, img, lab, W, H, S, out, ol,
                                  &err) == COVCT_OK);
    /* 8 x 6 into 8 x 8: rows 1..6 hold the slice, rows 0 and 7 are air. */
    int exact = 1;
    for (int v = 0; v < S; v++)
        for (int u = 0; u < S; u++) {
            int y = v - 1;
            float want = y >= 0 && y < H ? img[y * W + u] / 255.0f : 0.0f;
            uint8_t wl = y >= 0 && y < H ? lab[y * W + u] : 0;
            exact &= fabsf(out[v * S + u] - want) < 1e-6f && ol[v * S + u] == wl;
        }
    CHECKF(exact, "identity augmentation is not the plain mapping");

    /* The identity's fast path gives the same bits as the general path:
     * with flips allowed, the seeds that do not flip take the general
     * path with an identity geometry; the others give the mirror image. */
    {
        static const int dims[][3] = {{37, 53, 40}, {300, 200, 352},
                                      {451, 487, 352}, {9, 9, 16}};
        int same = 0, mirrored = 0, other = 0;
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            int w = dims[d][0], h = dims[d][1], sz = dims[d][2];
            uint8_t *im = malloc((size_t)w * h), *lb = malloc((size_t)w * h);
            float *f0 = malloc((size_t)sz * sz * sizeof *f0);
            float *f1 = malloc((size_t)sz * sz * sizeof *f1);
            uint8_t *l0 = malloc((size_t)sz * sz), *l1 = malloc((size_t)sz * sz);
            uint32_t r = 12345;
            for (int i = 0; i < w * h; i++) {
                r = r * 1664525u + 1013904223u;
                im[i] = (uint8_t)(r >> 24);
                lb[i] = (uint8_t)((r >> 16) % 3);
            }
            covct_nn_augment_sample(&none, 0, im, lb, (uint32_t)w,
                                    (uint32_t)h, sz, f0, l0, NULL);
            covct_nn_augment fa = none;
            fa.flip = 1;
            for (uint64_t seed = 0; seed < 8; seed++) {
                covct_nn_augment_sample(&fa, seed, im, lb, (uint32_t)w,
                                        (uint32_t)h, sz, f1, l1, NULL);
                int eq = !memcmp(f0, f1, (size_t)sz * sz * sizeof *f0) &&
                         !memcmp(l0, l1, (size_t)sz * sz);
                int mir = 1;
                for (int v = 0; v < sz && mir; v++)
                    for (int u = 0; u < sz; u++) {
                        size_t a = (size_t)v * sz + u,
                               b = (size_t)v * sz + (sz - 1 - u);
                        if (memcmp(&f0[a], &f1[b], sizeof *f0) ||
                            l0[a] != l1[b]) {
                            mir = 0;
                            break;
                        }
                    }
                same += eq;
                mirrored += !eq && mir;
                other += !eq && !mir;
            }
            free(im), free(lb), free(f0), free(f1), free(l0), free(l1);
        }
        CHECKF(same >= 4 && mirrored >= 4 && other == 0,
               "fast identity vs general path: %d same, %d mirrored, %d "
               "different",
               same, mirrored, other);
    }

    /* Flip only: over a few seeds both orientations appear, each exact. */
    covct_nn_augment fl = none;
    fl.flip = 1;
    int flipped = 0, straight = 0;
    for (uint64_t seed = 0; seed < 16; seed++) {
        covct_nn_augment_sample(&fl, seed, img, lab, W, H, S, out, ol, NULL);
        int is_f = 1, is_s = 1;
        for (int v = 1; v <= H; v++)
            for (int u = 0; u < S; u++) {
                is_s &= ol[v * S + u] == lab[(v - 1) * W + u];
                is_f &= ol[v * S + u] == lab[(v - 1) * W + (W - 1 - u)];
            }
        flipped += is_f && !is_s;
        straight += is_s && !is_f;
    }
    CHECKF(flipped > 2 && straight > 2 && flipped + straight == 16,
           "flips: %d mirrored, %d straight of 16", flipped, straight);

    /* Geometry keeps image and labels together: a disc image whose label
     * is the disc; after rotation, zoom and elastic displacement, label
     * pixels are bright and background ones dark (but at the blurred
     * rim). */
    enum { N = 64 };
    static uint8_t di[N * N], dl[N * N];
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
            int in = (x - 40) * (x - 40) + (y - 24) * (y - 24) < 12 * 12;
            di[y * N + x] = in ? 220 : 30;
            dl[y * N + x] = (uint8_t)in;
        }
    covct_nn_augment geo;
    covct_nn_augment_default(&geo);
    geo.gamma = geo.contrast = geo.brightness = geo.noise = 0;
    static float go[N * N];
    static uint8_t gl[N * N];
    int agree = 0, total = 0, moved = 0;
    for (uint64_t seed = 0; seed < 8; seed++) {
        covct_nn_augment_sample(&geo, seed, di, dl, N, N, N, go, gl, NULL);
        for (int i = 0; i < N * N; i++) {
            if (go[i] == 0.0f)
                continue; /* air outside the slice */
            total++;
            agree += gl[i] ? go[i] > 0.5f : go[i] < 0.5f;
            moved += gl[i] != dl[i];
        }
    }
    printf("geometry: %d of %d pixels agree between image and label, %d "
           "label pixels moved\n",
           agree, total, moved);
    CHECKF(agree > 0.98 * total, "image and labels disagree: %d of %d", agree,
           total);
    CHECKF(moved > 100, "geometry did nothing (%d pixels moved)", moved);

    /* Intensity on a flat grey slice: the noise has the asked deviation,
     * brightness shifts the mean within its range. */
    static uint8_t flat[N * N];
    memset(flat, 128, sizeof flat);
    covct_nn_augment it;
    memset(&it, 0, sizeof it);
    it.noise = 0.05;
    it.brightness = 0.1;
    covct_nn_augment_sample(&it, 3, flat, NULL, N, N, N, go, NULL, NULL);
    double m = 0, s2 = 0;
    for (int i = 0; i < N * N; i++)
        m += go[i];
    m /= N * N;
    for (int i = 0; i < N * N; i++)
        s2 += (go[i] - m) * (go[i] - m);
    double sd = sqrt(s2 / (N * N - 1));
    printf("intensity: mean %.4f (slice %.4f), noise sd %.4f (asked 0.05)\n",
           m, 128 / 255.0, sd);
    CHECKF(fabs(sd - 0.05) < 0.005, "noise sd %.4f", sd);
    CHECKF(fabs(m - 128 / 255.0) <= 0.1 + 0.005, "brightness shift %.4f",
           m - 128 / 255.0);

    /* Same seed, same sample; another seed, another one. */
    covct_nn_augment all;
    covct_nn_augment_default(&all);
    static float a1[N * N], a2[N * N], a3[N * N];
    covct_nn_augment_sample(&all, 42, di, dl, N, N, N, a1, NULL, NULL);
    covct_nn_augment_sample(&all, 42, di, dl, N, N, N, a2, NULL, NULL);
    covct_nn_augment_sample(&all, 43, di, dl, N, N, N, a3, NULL, NULL);
    CHECK(memcmp(a1, a2, sizeof a1) == 0);
    CHECK(memcmp(a1, a3, sizeof a1) != 0);

    covct_error_clear(&err);
    CHECK(covct_nn_augment_sample(&all, 1, di, dl, N, N, 0, a1, NULL, &err) ==
          COVCT_ERR_ARG);
    return test_report();
}
