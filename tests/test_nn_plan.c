/*
 * Inference plans (src/nn/infer.c) against the graph's forward pass on the
 * reference kernels, in inference mode: a U-Net whose batch norms carry
 * non-trivial running statistics (so that folding them is tested, not
 * just the identity), and graphs with every other operation a plan
 * compiles: leaky ReLU, stride, dilation, padding, average pooling on
 * sizes that do not divide, upsampling, addition, a transposed convolution
 * followed by batch norm, channel counts that are no multiple of oneDNN's
 * blocks, sigmoid and softmax.  Also: a plan is a snapshot (training the
 * graph afterwards does not change it), a batch norm that follows no
 * convolution is refused, and covct_nn_segment_slice gives the same maps
 * through the plan as through the graph.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "covct/image.h"
#include "nn/nn_int.h"
#include "test.h"

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static float urand(void) /* splitmix64, uniform in [-1, 1) */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1u << 23) - 1.0);
}

/* Running statistics far from 0 / 1 and scale/shift far from 1 / 0, so
 * that a plan that skipped or misapplied the folding would differ. */
static void randomise_bn(covct_nn_graph *g)
{
    size_t np = covct_nn_param_count(g);
    for (size_t i = 0; i + 3 < np; i++) {
        if (!covct_nn_param_is_buffer(g, i + 2) ||
            !covct_nn_param_is_buffer(g, i + 3) ||
            covct_nn_param_is_buffer(g, i))
            continue;
        covct_tensor *gam = covct_nn_param(g, i), *bet = covct_nn_param(g, i + 1);
        covct_tensor *mean = covct_nn_param(g, i + 2),
                     *var = covct_nn_param(g, i + 3);
        for (size_t c = 0; c < covct_tensor_size(gam); c++) {
            gam->data[c] = 1.0f + 0.5f * urand();
            bet->data[c] = 0.3f * urand();
            mean->data[c] = 0.2f * urand();
            var->data[c] = 0.5f + 0.4f * (urand() + 1.0f);
        }
        i += 3;
    }
}

/* Largest |plan - graph| / (1 + |graph|) of the output slot. */
static double compare(covct_nn_graph *g, int out, int n, int h, int w,
                      const char *what)
{
    covct_error err = {0};
    covct_tensor x = {0};
    if (covct_tensor_alloc(&x, n, g->in_channels, h, w, &err))
        return INFINITY;
    for (size_t i = 0; i < covct_tensor_size(&x); i++)
        x.data[i] = urand();
    covct_nn_set_training(g, 0);
    covct_nn_set_backend(g, COVCT_NN_REFERENCE);
    double worst = INFINITY;
    covct_nn_plan *p = NULL;
    if (covct_nn_forward(g, &x, &err)) {
        fprintf(stderr, "%s: graph: %s\n", what, err.msg);
        goto out;
    }
    const covct_tensor *ref = covct_nn_value(g, out);
    if (covct_nn_plan_new(g, out, n, h, w, &p, &err)) {
        fprintf(stderr, "%s: plan: %s\n", what, err.msg);
        goto out;
    }
    int oc, oh, ow;
    covct_nn_plan_shape(p, NULL, NULL, NULL, &oc, &oh, &ow);
    if (oc != ref->c || oh != ref->h || ow != ref->w) {
        fprintf(stderr, "%s: plan output %dx%dx%d, graph %dx%dx%d\n", what, oc,
                oh, ow, ref->c, ref->h, ref->w);
        goto out;
    }
    size_t cnt = covct_tensor_size(ref);
    float *y = malloc(cnt * sizeof *y);
    for (int rep = 0; y && rep < 2; rep++) { /* twice: no state kept */
        memset(y, 0xff, cnt * sizeof *y);
        if (covct_nn_plan_run(p, x.data, y, &err)) {
            fprintf(stderr, "%s: run: %s\n", what, err.msg);
            worst = INFINITY;
            break;
        }
        double e = 0;
        for (size_t i = 0; i < cnt; i++) {
            double d = fabs((double)y[i] - ref->data[i]) /
                       (1 + fabs(ref->data[i]));
            if (!(d <= e))
                e = isnan(d) ? INFINITY : d;
        }
        worst = rep ? (e > worst ? e : worst) : e;
    }
    free(y);
    printf("%-44s max error %.2e\n", what, worst);
out:
    covct_nn_plan_free(p);
    covct_tensor_free(&x);
    return worst;
}

static void test_unet(void)
{
    covct_unet_config cfg = {.in_channels = 1, .classes = 3, .depth = 4,
                             .base = 8};
    covct_nn_graph *g = NULL;
    int out = -1;
    covct_error err = {0};
    CHECK(covct_nn_unet(&cfg, 7, &g, &out, &err) == COVCT_OK);
    if (!g)
        return;
    randomise_bn(g);
    CHECK(compare(g, out, 1, 32, 48, "U-Net 4x8, 1x32x48") < 1e-4);
    CHECK(compare(g, out, 2, 24, 24, "U-Net 4x8, batch 2, 24x24") < 1e-4);
    covct_nn_graph_free(g);
    /* Base 16, the shipped width: channel counts that are multiples of 16
     * take the Winograd convolutions and the in-place concatenations. */
    cfg.base = 16;
    g = NULL;
    CHECK(covct_nn_unet(&cfg, 8, &g, &out, &err) == COVCT_OK);
    if (!g)
        return;
    randomise_bn(g);
    CHECK(compare(g, out, 1, 64, 48, "U-Net 4x16, 1x64x48") < 1e-4);
    CHECK(compare(g, out, 2, 32, 32, "U-Net 4x16, batch 2, 32x32") < 1e-4);
    covct_nn_graph_free(g);
}

/* Every other operation and odd shapes. */
static void test_mixed(void)
{
    covct_error err = {0};
    covct_nn_graph *g = NULL;
    CHECK(covct_nn_graph_new(&g, &err) == COVCT_OK);
    if (!g)
        return;
    covct_nn_set_input_channels(g, 3);
    covct_nn_seed(g, 3);
    int x = covct_nn_input(g);
    /* conv with bias, stride 2, padding 2, dilation 2 -> leaky ReLU (fused,
     * no batch norm) */
    int a = covct_nn_conv2d(g, x, 5, 3, 2, 2, 2, 1, &err);
    a = covct_nn_leakyrelu(g, a, 0.1f, &err);
    /* conv without bias -> batch norm -> ReLU */
    int b = covct_nn_conv2d(g, a, 7, 3, 1, 1, 1, 0, &err);
    b = covct_nn_batchnorm(g, b, &err);
    int b_act = covct_nn_relu(g, b, &err);
    /* a second reader of the batch norm output: the ReLU cannot be fused
     * into its convolution (the value before it is needed) */
    int side = covct_nn_sigmoid(g, b, &err);
    int s = covct_nn_add(g, b_act, side, &err);
    int p = covct_nn_avgpool(g, s, 3, &err);
    int m = covct_nn_maxpool(g, s, 2, &err);
    /* transposed conv -> batch norm (folded) -> leaky ReLU */
    int u = covct_nn_convt2d(g, p, 4, 3, 3, 0, 1, &err);
    u = covct_nn_batchnorm(g, u, &err);
    u = covct_nn_leakyrelu(g, u, 0.2f, &err);
    int up = covct_nn_upsample2x(g, m, &err);
    (void)up;
    int cat = covct_nn_concat(g, u, u, &err);
    int y = covct_nn_conv2d(g, cat, 3, 1, 1, 0, 1, 1, &err);
    y = covct_nn_softmax(g, y, &err);
    CHECKF(y > 0, "%s", err.msg);
    if (y > 0) {
        randomise_bn(g);
        /* 29x35: stride-2 output 15x18, average pooling 3 drops a row */
        CHECK(compare(g, y, 1, 29, 35, "mixed operations, 3x29x35") < 1e-4);
        CHECK(compare(g, up, 2, 20, 22, "upsampling branch, batch 2") < 1e-4);
    }
    covct_nn_graph_free(g);
}

/* A plan keeps the weights it was made with. */
static void test_snapshot(void)
{
    covct_error err = {0};
    covct_nn_graph *g = NULL;
    covct_nn_graph_new(&g, &err);
    int x = covct_nn_input(g);
    int y = covct_nn_conv2d(g, x, 2, 3, 1, 1, 1, 1, &err);
    covct_nn_plan *p = NULL;
    CHECK(covct_nn_plan_new(g, y, 1, 8, 8, &p, &err) == COVCT_OK);
    if (!p) {
        covct_nn_graph_free(g);
        return;
    }
    float in[64], before[128], after[128];
    for (int i = 0; i < 64; i++)
        in[i] = urand();
    CHECK(covct_nn_plan_run(p, in, before, &err) == COVCT_OK);
    covct_nn_param(g, 0)->data[0] += 1.0f;
    CHECK(covct_nn_plan_run(p, in, after, &err) == COVCT_OK);
    CHECK(!memcmp(before, after, sizeof before));
    covct_nn_plan_free(p);
    covct_nn_graph_free(g);
}

static void test_refused(void)
{
    covct_error err = {0};
    covct_nn_graph *g = NULL;
    covct_nn_graph_new(&g, &err);
    int x = covct_nn_input(g);
    int y = covct_nn_batchnorm(g, x, &err);
    covct_nn_plan *p = NULL;
    CHECK(covct_nn_plan_new(g, y, 1, 8, 8, &p, &err) ==
          COVCT_ERR_UNSUPPORTED);
    CHECK(!p);
    CHECKF(strstr(err.msg, "batch norm") != NULL, "%s", err.msg);
    CHECK(covct_nn_plan_new(g, 99, 1, 8, 8, &p, &err) == COVCT_ERR_ARG);
    CHECK(covct_nn_plan_new(g, y, 0, 8, 8, &p, &err) == COVCT_ERR_ARG);
    covct_nn_graph_free(g);
}

/* covct_nn_segment_slice: plan (fast backend) and graph (reference) give
 * the same bytes but for rounding at the .5 boundaries. */
static void test_segment(void)
{
    covct_error err = {0};
    covct_nn_model m;
    memset(&m, 0, sizeof m);
    m.cfg = (covct_unet_config){.in_channels = 1, .classes = 3, .depth = 3,
                                .base = 8};
    m.input_size = 40;
    CHECK(covct_nn_unet(&m.cfg, 11, &m.graph, &m.out_slot, &err) == COVCT_OK);
    if (!m.graph)
        return;
    randomise_bn(m.graph);
    enum { W = 57, H = 43 };
    uint8_t img[W * H], a[3][W * H], b[3][W * H];
    for (int i = 0; i < W * H; i++)
        img[i] = (uint8_t)((i % W) * 255 / (W - 1) / 2 + (i / W) * 127 / (H - 1));
    covct_nn_set_backend(m.graph, COVCT_NN_FAST);
    CHECK(covct_nn_segment_slice(&m, img, W, H, a[0], a[1], a[2], &err) ==
          COVCT_OK);
    CHECK(m.plan != NULL);
    covct_nn_set_backend(m.graph, COVCT_NN_REFERENCE);
    CHECK(covct_nn_segment_slice(&m, img, W, H, b[0], b[1], b[2], &err) ==
          COVCT_OK);
    int worst = 0;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < W * H; i++) {
            int d = abs((int)a[c][i] - (int)b[c][i]);
            worst = d > worst ? d : worst;
        }
    CHECKF(worst <= 1, "maps differ by %d levels", worst);
    covct_nn_model_forget_plan(&m);
    CHECK(m.plan == NULL);

    /* Moving the infection cut: map >= 128 afterwards is map >= level
     * before (pixels within a level of the cut may round either way).  A
     * one-layer network whose map follows the intensity, so the cut
     * falls inside a real spread of values. */
    covct_nn_model c;
    memset(&c, 0, sizeof c);
    c.cfg = (covct_unet_config){.in_channels = 1, .classes = 3, .depth = 1,
                                .base = 1};
    c.input_size = 40;
    CHECK(covct_nn_graph_new(&c.graph, &err) == COVCT_OK);
    c.out_slot = covct_nn_conv2d(c.graph, covct_nn_input(c.graph), 3, 1, 1,
                                 0, 1, 1, &err);
    CHECK(c.out_slot > 0);
    const float cw[3] = {-8.0f, 0.5f, 0.0f}, cb[3] = {3.0f, 0.0f, -1.0f};
    memcpy(covct_nn_param(c.graph, 0)->data, cw, sizeof cw);
    memcpy(covct_nn_param(c.graph, 1)->data, cb, sizeof cb);
    covct_nn_set_backend(c.graph, COVCT_NN_FAST);
    /* 40 x 40, the model's input size: no resampling, whose bilinear
     * weights do not commute with the shift near the cut. */
    enum { S = 40 };
    uint8_t gimg[S * S];
    for (int i = 0; i < S * S; i++)
        gimg[i] = (uint8_t)((i % S) * 255 / (S - 1));
    double total = 0;
    for (int level = 40; level <= 220; level += 60) {
        covct_nn_param(c.graph, 1)->data[0] = cb[0];
        covct_nn_model_forget_plan(&c);
        CHECK(covct_nn_segment_slice(&c, gimg, S, S, a[0], NULL, NULL, &err) ==
              COVCT_OK);
        double d = 0;
        CHECK(covct_nn_model_shift_infection_cut(&c, level, &d, &err) ==
              COVCT_OK);
        CHECKF(fabs(d - log((255.0 - level) / level)) < 1e-12, "offset %g", d);
        total += d;
        CHECK(c.plan == NULL); /* the old plan had the old bias */
        CHECK(covct_nn_segment_slice(&c, gimg, S, S, b[0], NULL, NULL, &err) ==
              COVCT_OK);
        int wrong = 0, near = 0, above = 0;
        for (int i = 0; i < S * S; i++) {
            above += a[0][i] >= level;
            if (abs((int)a[0][i] - level) <= 1) {
                near++;
                continue;
            }
            wrong += (b[0][i] >= 128) != (a[0][i] >= level);
        }
        CHECKF(wrong == 0, "cut %d: %d pixels on the wrong side", level,
               wrong);
        CHECKF(above > S * S / 10 && above < S * S * 9 / 10,
               "cut %d: %d of %d pixels above (no spread to test)", level,
               above, S * S);
        printf("infection cut %3d: offset %+.4f, %d of %d pixels above, %d "
               "within a level\n",
               level, d, above, S * S, near);
    }
    /* Two cuts in a row add their offsets. */
    covct_nn_param(c.graph, 1)->data[0] = cb[0];
    double d1 = 0, d2 = 0;
    CHECK(covct_nn_model_shift_infection_cut(&c, 60, &d1, &err) == COVCT_OK);
    CHECK(covct_nn_model_shift_infection_cut(&c, 180, &d2, &err) == COVCT_OK);
    total = d1 + d2;
    CHECKF(fabs(covct_nn_param(c.graph, 1)->data[0] - (3.0 - total)) < 1e-5,
           "background bias %g after offsets summing to %g",
           covct_nn_param(c.graph, 1)->data[0], total);
    covct_nn_model_free(&c);
    CHECK(covct_nn_model_shift_infection_cut(&m, 0, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECK(covct_nn_model_shift_infection_cut(&m, 255, NULL, &err) ==
          COVCT_ERR_ARG);
    covct_nn_model_free(&m);
}

/* Flip test-time augmentation: the map of the mirrored slice is the
 * mirror of the slice's map (a random network alone is not symmetric),
 * and each map is the mean of the plain pass and the mirrored-back pass
 * of the mirrored slice; on the square grid and on the padded one. */
static void test_segment_flip(void)
{
    enum { W = 57, H = 43, N = W * H };
    for (int fixed = 0; fixed < 2; fixed++) {
        covct_error err = {0};
        covct_nn_model m;
        memset(&m, 0, sizeof m);
        m.cfg = (covct_unet_config){.in_channels = 1, .classes = 3,
                                    .depth = 3, .base = 8};
        m.input_size = fixed ? 40 : 0;
        CHECK(covct_nn_unet(&m.cfg, 12, &m.graph, &m.out_slot, &err) ==
              COVCT_OK);
        if (!m.graph)
            return;
        randomise_bn(m.graph);
        covct_nn_set_backend(m.graph, COVCT_NN_FAST);
        static uint8_t img[N], mir[N], plain[3][N], plain_m[3][N], t[3][N],
            t_m[3][N];
        for (int i = 0; i < N; i++)
            img[i] = (uint8_t)(((i % W) * 7 + (i / W) * 3 + (i * i) % 23) & 255);
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                mir[y * W + x] = img[y * W + (W - 1 - x)];
        CHECK(covct_nn_segment_slice_tta(&m, img, W, H, 0, plain[0],
                                         plain[1], plain[2], &err) == COVCT_OK);
        CHECK(covct_nn_segment_slice_tta(&m, mir, W, H, 0, plain_m[0],
                                         plain_m[1], plain_m[2],
                                         &err) == COVCT_OK);
        CHECK(covct_nn_segment_slice_tta(&m, img, W, H, COVCT_NN_TTA_FLIP,
                                         t[0], t[1], t[2], &err) == COVCT_OK);
        CHECK(covct_nn_segment_slice_tta(&m, mir, W, H, COVCT_NN_TTA_FLIP,
                                         t_m[0], t_m[1], t_m[2],
                                         &err) == COVCT_OK);
        int asym = 0, worst_sym = 0, worst_mean = 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int i = y * W + x, j = y * W + (W - 1 - x);
                    int d = abs((int)plain[c][i] - (int)plain_m[c][j]);
                    asym = d > asym ? d : asym;
                    d = abs((int)t[c][i] - (int)t_m[c][j]);
                    worst_sym = d > worst_sym ? d : worst_sym;
                    /* the byte maps are rounded, so the mean of two
                     * rounded maps is within a level of the TTA map */
                    double mean = 0.5 * (plain[c][i] + plain_m[c][j]);
                    d = (int)ceil(fabs(t[c][i] - mean) - 1e-9);
                    worst_mean = d > worst_mean ? d : worst_mean;
                }
        CHECKF(asym > 2, "fixed %d: the plain maps are already symmetric "
                         "(%d): the test would prove nothing", fixed, asym);
        CHECKF(worst_sym <= 1, "fixed %d: flip TTA map of the mirror is not "
                               "the mirror (%d levels)", fixed, worst_sym);
        CHECKF(worst_mean <= 1, "fixed %d: flip TTA map is not the mean of "
                                "the two passes (%d levels)", fixed,
               worst_mean);
        CHECK(covct_nn_segment_slice_tta(&m, img, W, H, 4u, t[0], NULL, NULL,
                                         &err) == COVCT_ERR_ARG);
        covct_nn_model_free(&m);
    }
}

/* Ensembles: two different random networks give each map the mean of
 * their own maps (within a level: the byte maps are rounded), with and
 * without flip TTA; a network with another input size is refused. */
static void test_segment_ensemble(void)
{
    enum { W = 61, H = 47, N = W * H };
    for (int fixed = 0; fixed < 2; fixed++) {
        covct_error err = {0};
        covct_nn_model m[3];
        memset(m, 0, sizeof m);
        for (int k = 0; k < 3; k++) {
            m[k].cfg = (covct_unet_config){.in_channels = 1, .classes = 3,
                                           .depth = 3, .base = 8};
            m[k].input_size = fixed ? (k == 2 ? 32 : 40) : (k == 2 ? 40 : 0);
            CHECK(covct_nn_unet(&m[k].cfg, 12 + (uint64_t)k, &m[k].graph,
                                &m[k].out_slot, &err) == COVCT_OK);
            if (!m[k].graph)
                return;
            randomise_bn(m[k].graph);
            covct_nn_set_backend(m[k].graph, COVCT_NN_FAST);
        }
        static uint8_t img[N], a[3][N], b[3][N], e[3][N];
        for (int i = 0; i < N; i++)
            img[i] = (uint8_t)(((i % W) * 5 + (i / W) * 11 + (i * i) % 29) & 255);
        covct_nn_model *pair[2] = {&m[0], &m[1]};
        for (unsigned tta = 0; tta <= COVCT_NN_TTA_FLIP; tta++) {
            CHECK(covct_nn_segment_slice_ens(&pair[0], 1, img, W, H, tta,
                                             a[0], a[1], a[2], &err) == COVCT_OK);
            CHECK(covct_nn_segment_slice_ens(&pair[1], 1, img, W, H, tta,
                                             b[0], b[1], b[2], &err) == COVCT_OK);
            CHECK(covct_nn_segment_slice_ens(pair, 2, img, W, H, tta, e[0],
                                             e[1], e[2], &err) == COVCT_OK);
            int differ = 0, worst = 0;
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < N; i++) {
                    int d = abs((int)a[c][i] - (int)b[c][i]);
                    differ = d > differ ? d : differ;
                    double mean = 0.5 * (a[c][i] + b[c][i]);
                    d = (int)ceil(fabs(e[c][i] - mean) - 1e-9);
                    worst = d > worst ? d : worst;
                }
            CHECKF(differ > 2, "fixed %d: the two networks agree (%d): the "
                               "test would prove nothing", fixed, differ);
            CHECKF(worst <= 1, "fixed %d, tta %u: the ensemble's map is not "
                               "the mean of its networks' maps (%d levels)",
                   fixed, tta, worst);
        }
        covct_nn_model *odd[2] = {&m[0], &m[2]};
        covct_error_clear(&err);
        CHECK(covct_nn_segment_slice_ens(odd, 2, img, W, H, 0, e[0], NULL,
                                         NULL, &err) == COVCT_ERR_UNSUPPORTED);
        CHECK(strstr(err.msg, "network 2 of the ensemble") != NULL);
        CHECK(covct_nn_segment_slice_ens(pair, 0, img, W, H, 0, e[0], NULL,
                                         NULL, &err) == COVCT_ERR_ARG);
        for (int k = 0; k < 3; k++)
            covct_nn_model_free(&m[k]);
    }
}

/* The tight grid (COVCT_NN_GRID_TIGHT, what covct analyze runs): the
 * band by hand, then the shipped network on COVID-SemiSeg's narrowest
 * training slices (labelled data nobody here made, body-cropped as
 * analyze crops CT slices), whose maps on the band must be those of the
 * square but for a few pixels. */
static void test_grid(void)
{
    covct_nn_model g;
    memset(&g, 0, sizeof g);
    g.cfg.depth = 4; /* cells of the deepest level: 8 px; steps of 16 */
    g.input_size = 352;
    uint32_t gw = 0, gh = 0;
    /* 370 x 505: the short side fills ceil(370 * 352 / 505) = 258 px,
     * + 2 x 24 margin = 306; 352 - 306 = 46 cut to 32 (2 steps of 16):
     * a band of 320 columns starting at 16, a whole cell. */
    covct_nn_grid(&g, 370, 505, &gw, &gh);
    CHECKF(COVCT_NN_GRID_MARGIN == 24 && gw == 320 && gh == 352,
           "370 x 505: grid %u x %u", gw, gh);
    covct_nn_grid(&g, 505, 370, &gw, &gh);
    CHECKF(gw == 352 && gh == 320, "505 x 370: grid %u x %u", gw, gh);
    /* 10 x 505: 7 + 48 = 55, 297 cut to 288: 64. */
    covct_nn_grid(&g, 10, 505, &gw, &gh);
    CHECKF(gw == 64 && gh == 352, "10 x 505: grid %u x %u", gw, gh);
    /* 380 x 400: 335 + 48 = 383, more than the square. */
    covct_nn_grid(&g, 380, 400, &gw, &gh);
    CHECKF(gw == 352 && gh == 352, "380 x 400: grid %u x %u", gw, gh);
    covct_nn_grid(&g, 400, 400, &gw, &gh);
    CHECKF(gw == 352 && gh == 352, "400 x 400: grid %u x %u", gw, gh);
    g.input_size = 0; /* padded to the stride, 8 */
    covct_nn_grid(&g, 57, 43, &gw, &gh);
    CHECKF(gw == 64 && gh == 48, "57 x 43 padded: grid %u x %u", gw, gh);

    const char *src = getenv("COVCT_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/lesions-unet.covctnn",
             src ? src : ".");
    covct_error err = {0};
    covct_nn_model m;
    memset(&m, 0, sizeof m);
    CHECKF(covct_nn_model_read(path, &m, &err) == COVCT_OK, "%s: %s", path,
           err.msg);
    if (!m.graph)
        return;
    covct_nn_set_backend(m.graph, COVCT_NN_FAST);
    const char *names[] = {"52.jpg", "23.jpg", "15.jpg"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char rel[256];
        snprintf(rel, sizeof rel,
                 "covid-semiseg-train/MultiClassInfection-Train/Imgs/%s",
                 names[k]);
        covct_image im = {0};
        CHECKF(covct_image_read(test_data(rel), COVCT_IMAGE_GRAY, &im,
                                &err) == COVCT_OK,
               "%s: %s", rel, err.msg);
        if (!im.pixels)
            continue;
        size_t n = (size_t)im.width * im.height;
        uint8_t *a = malloc(n), *b = malloc(n);
        CHECK(a && b);
        if (!a || !b) {
            free(a), free(b), covct_image_free(&im);
            continue;
        }
        covct_nn_model *mp = &m;
        CHECK(covct_nn_segment_slice_ens(&mp, 1, im.pixels, im.width,
                                         im.height, 0, a, NULL, NULL,
                                         &err) == COVCT_OK);
        CHECK(covct_nn_segment_slice_ens(&mp, 1, im.pixels, im.width,
                                         im.height, COVCT_NN_GRID_TIGHT, b,
                                         NULL, NULL, &err) == COVCT_OK);
        covct_nn_grid(&m, im.width, im.height, &gw, &gh);
        size_t flips = 0, lesion = 0;
        int worst = 0;
        for (size_t i = 0; i < n; i++) {
            int d = abs((int)a[i] - (int)b[i]);
            worst = d > worst ? d : worst;
            flips += (a[i] >= 128) != (b[i] >= 128);
            lesion += a[i] >= 128;
        }
        printf("tight grid, %s (%u x %u): band %u x %u, %zu of %zu lesion "
               "pixels flip, worst %d levels\n",
               names[k], im.width, im.height, gw, gh, flips, lesion, worst);
        CHECKF(gw < 352 || gh < 352, "%s: no band (the test proves nothing)",
               names[k]);
        CHECKF(lesion > 500, "%s: %zu lesion pixels", names[k], lesion);
        /* 0.1 % at most (measured: 1, 1 and 11; at a margin of 16 px, 27
         * of 52.jpg's 3458; off the deepest level's cells, 12 % of
         * P001's). */
        CHECKF(flips * 1000 <= lesion, "%s: %zu of %zu lesion pixels flip",
               names[k], flips, lesion);
        free(a);
        free(b);
        covct_image_free(&im);
    }
    covct_nn_model_free(&m);
}

int main(void)
{
    test_unet();
    test_mixed();
    test_snapshot();
    test_refused();
    test_segment();
    test_segment_flip();
    test_segment_ensemble();
    test_grid();
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}
