/* covct-bench-nn: time the U-Net's forward pass (inference mode, oneDNN
 * backend) on one SIZE x SIZE slice, for bench/run.sh's comparison with
 * PyTorch (bench/nn_torch.py runs the same network, weights and input).
 *
 *   covct-bench-nn [--graph] MODEL.covctnn SIZE N [LOGITS.f32]
 *       load MODEL, run one warm-up forward then N timed ones on the input
 *       below (1 x 1 x SIZE x SIZE), print "best B median M" (seconds per
 *       forward) on stdout; LOGITS.f32 gets the warm-up run's logits
 *       (1 x classes x SIZE x SIZE, NCHW, raw little-endian float32).
 *       The forward pass is the inference plan (covct_nn_plan_run: batch
 *       norm folded, ReLU fused, blocked layouts), the path of covct
 *       segment and covct analyze; with --graph, the graph's op-by-op
 *       forward (covct_nn_forward, as training runs it), for comparison.
 *   covct-bench-nn --init OUT.covctnn
 *       write an untrained U-Net (depth 4, base 16, 3 classes, input_size
 *       352: the shipped network's architecture) for machines without
 *       models/lesions-unet.covctnn; see init_model() for why its
 *       batch-norm statistics are calibrated rather than left at 0 / 1.
 *
 * The input (nn_torch.py builds the same; keep the two in step): pixel
 * (x, y), u = (x + 0.5) / SIZE, v = (y + 0.5) / SIZE, value
 *   0.5 + 0.25 sin(2 pi 3 u) cos(2 pi 2 v) + 0.2 (u - v)
 * computed in double and rounded to float: a smooth pattern in
 * [0.05, 0.95], the range of slices entering the network as v / 255.
 *
 * Threads: oneDNN runs its primitives on OpenMP threads, so
 * OMP_NUM_THREADS sets the thread count (with --graph, the operations
 * other than convolutions are plain loops on the calling thread).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/nn.h"

#define TWO_PI 6.283185307179586

static void make_input(float *x, int size)
{
    for (int y = 0; y < size; y++)
        for (int i = 0; i < size; i++) {
            double u = (i + 0.5) / size, v = (y + 0.5) / size;
            x[(size_t)y * size + i] =
                (float)(0.5 + 0.25 * sin(TWO_PI * 3 * u) * cos(TWO_PI * 2 * v) +
                        0.2 * (u - v));
        }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int fail(const covct_error *err, const char *what)
{
    fprintf(stderr, "covct-bench-nn: %s: %s\n", what, err->msg);
    return 1;
}

/* An untrained U-Net with the shipped architecture.  Left at PyTorch's
 * defaults (running mean 0, variance 1, scale 1, shift 0), eval-mode batch
 * norm would pass the activations through unnormalised: each conv shrinks
 * them about threefold (Kaiming uniform, a = sqrt(5)), and after the 18
 * convolutions the logits are little more than the last bias, so a parity
 * check against PyTorch would compare near-constants.  Instead the running
 * statistics are calibrated: 60 training-mode forwards on a fixed batch
 * (momentum 0.1: the statistics end within 0.9^60 = 0.2 % of that batch's)
 * make inference normalise each channel as training would; then scale and
 * shift get deterministic, non-trivial values (1 + 0.2 sin k, 0.1 cos k
 * over the batch-norm channels k). */
static int init_model(const char *path)
{
    covct_error err = {0};
    covct_unet_config cfg = {.in_channels = 1, .classes = 3, .depth = 4,
                             .base = 16};
    covct_nn_model m = {.cfg = cfg, .input_size = 352};
    static char card[] =
        "{\"name\": \"untrained U-Net for bench/run.sh (covct-bench-nn "
        "--init)\", \"training\": \"none: Kaiming-uniform weights (seed 1), "
        "batch-norm statistics calibrated on a synthetic batch\"}";
    m.card_json = card;
    if (covct_nn_unet(&cfg, 1, &m.graph, &m.out_slot, &err))
        return fail(&err, "building the U-Net");
    covct_nn_set_backend(m.graph, COVCT_NN_FAST);
    covct_nn_set_training(m.graph, 1);

    /* The calibration batch: the benchmark pattern at 96 x 96 and the same
     * with deterministic noise (a 32-bit LCG, +-0.1). */
    const int n = 2, s = 96;
    covct_tensor x = {0};
    if (covct_tensor_alloc(&x, n, 1, s, s, &err))
        return fail(&err, "calibration batch");
    make_input(x.data, s);
    uint32_t lcg = 12345;
    for (size_t i = 0; i < (size_t)s * s; i++) {
        lcg = lcg * 1664525u + 1013904223u;
        x.data[(size_t)s * s + i] =
            x.data[i] + 0.2f * ((float)(lcg >> 8) / 16777216.0f - 0.5f);
    }
    for (int it = 0; it < 60; it++)
        if (covct_nn_forward(m.graph, &x, &err)) {
            covct_tensor_free(&x);
            covct_nn_graph_free(m.graph);
            return fail(&err, "calibration forward");
        }
    covct_tensor_free(&x);

    /* Batch norm parameters come in fours: scale, shift, mean, variance
     * (the last two are the buffers). */
    size_t np = covct_nn_param_count(m.graph), k = 0;
    for (size_t i = 0; i + 3 < np; i++) {
        if (covct_nn_param_is_buffer(m.graph, i) ||
            !covct_nn_param_is_buffer(m.graph, i + 2))
            continue;
        covct_tensor *gamma = covct_nn_param(m.graph, i);
        covct_tensor *beta = covct_nn_param(m.graph, i + 1);
        for (size_t c = 0; c < covct_tensor_size(gamma); c++, k++) {
            gamma->data[c] = (float)(1.0 + 0.2 * sin((double)k));
            beta->data[c] = (float)(0.1 * cos((double)k));
        }
        i += 3;
    }
    covct_nn_set_training(m.graph, 0);
    covct_rc rc = covct_nn_model_write(path, &m, &err);
    covct_nn_graph_free(m.graph);
    if (rc)
        return fail(&err, "writing the model");
    fprintf(stderr, "covct-bench-nn: untrained U-Net (%zu parameter "
                    "tensors, %zu batch-norm channels) written to %s\n",
            np, k, path);
    return 0;
}

/* One forward of the input x: through the plan, or the graph. */
static int forward(covct_nn_model *m, covct_nn_plan *plan,
                   const covct_tensor *x, float *logits, covct_error *err)
{
    if (plan)
        return covct_nn_plan_run(plan, x->data, logits, err) != COVCT_OK;
    if (covct_nn_forward(m->graph, x, err))
        return 1;
    const covct_tensor *z = covct_nn_value(m->graph, m->out_slot);
    memcpy(logits, z->data, covct_tensor_size(z) * sizeof *logits);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--init"))
        return init_model(argv[2]);
    int use_graph = argc > 1 && !strcmp(argv[1], "--graph");
    argv += use_graph;
    argc -= use_graph;
    if (argc < 4 || argc > 5) {
        fputs("usage: covct-bench-nn [--graph] MODEL.covctnn SIZE N "
              "[LOGITS.f32]\n"
              "       covct-bench-nn --init OUT.covctnn\n",
              stderr);
        return 2;
    }
    int size = atoi(argv[2]), runs = atoi(argv[3]);
    if (size < 8 || size > 4096 || runs < 1 || runs > 10000) {
        fputs("covct-bench-nn: SIZE 8..4096, N 1..10000\n", stderr);
        return 2;
    }
    covct_error err = {0};
    covct_nn_model m;
    if (covct_nn_model_read(argv[1], &m, &err))
        return fail(&err, "reading the model");
    int mult = 1 << (m.cfg.depth - 1);
    if (size % mult) {
        fprintf(stderr, "covct-bench-nn: SIZE must be a multiple of %d\n",
                mult);
        covct_nn_model_free(&m);
        return 2;
    }
    covct_nn_set_backend(m.graph, COVCT_NN_FAST);
    covct_nn_set_training(m.graph, 0);
    covct_tensor x = {0};
    covct_nn_plan *plan = NULL;
    size_t nlog = (size_t)m.cfg.classes * size * size;
    double *t = malloc((size_t)runs * sizeof *t);
    float *logits = malloc(nlog * sizeof *logits);
    int rc = 1;
    if (!t || !logits ||
        covct_tensor_alloc(&x, 1, m.cfg.in_channels, size, size, &err)) {
        fputs("covct-bench-nn: out of memory\n", stderr);
        goto done;
    }
    for (int c = 0; c < m.cfg.in_channels; c++)
        make_input(x.data + (size_t)c * size * size, size);
    /* Compiling the plan is part of the warm-up, as creating the
     * primitives is for the graph and PyTorch's first call for it. */
    double tw = covct_now();
    if (!use_graph &&
        covct_nn_plan_new(m.graph, m.out_slot, 1, size, size, &plan, &err)) {
        fail(&err, "compiling the inference plan");
        goto done;
    }
    if (forward(&m, plan, &x, logits, &err)) {
        fail(&err, "forward");
        goto done;
    }
    tw = covct_now() - tw;
    if (argc == 5) {
        FILE *f = fopen(argv[4], "wb");
        if (!f || fwrite(logits, sizeof(float), nlog, f) != nlog) {
            fprintf(stderr, "covct-bench-nn: cannot write %s\n", argv[4]);
            if (f)
                fclose(f);
            goto done;
        }
        if (fclose(f)) {
            fprintf(stderr, "covct-bench-nn: cannot write %s\n", argv[4]);
            goto done;
        }
    }
    for (int r = 0; r < runs; r++) {
        double t0 = covct_now();
        if (forward(&m, plan, &x, logits, &err)) {
            fail(&err, "forward");
            goto done;
        }
        t[r] = covct_now() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    double median = runs % 2 ? t[runs / 2]
                             : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
    const char *omp = getenv("OMP_NUM_THREADS");
    fprintf(stderr, "covct-bench-nn: %s, %dx%d, warm-up %.3f s, %d runs, "
                    "OMP_NUM_THREADS=%s\n",
            plan ? "inference plan" : "graph forward", size, size, tw, runs,
            omp ? omp : "(unset)");
    printf("best %.6f median %.6f\n", t[0], median);
    rc = 0;
done:
    covct_nn_plan_free(plan);
    free(t);
    free(logits);
    covct_tensor_free(&x);
    covct_nn_model_free(&m);
    return rc;
}
