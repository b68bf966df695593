/*
 * The nn module against PyTorch: the network, losses and AdamW of
 * tests/nn_torch_ref.py, rebuilt with the nn.h API, with the recorded
 * parameters copied in, on both backends (reference loops and oneDNN).
 * Checked: training-mode forward (logits, sigmoid, softmax), every
 * parameter gradient and the input gradient after backward from the
 * logits, the running statistics, the input gradients of separate backward
 * passes from the softmax and the sigmoid, the inference-mode forward,
 * cross-entropy, Dice and infection Dice losses (value and gradient), three AdamW steps
 * with two settings.  Acceptance: max abs error <= 1e-4 (fp32) for every
 * tensor; the error of each is printed so the log shows the margin.  Also
 * checked: PyTorch's default initialisation (bounds of the uniform
 * weights and biases, batch-norm defaults) before the parameters are
 * overwritten.
 *
 * Usage: test_nn_torch REFERENCE_FILE (written by nn_torch_ref.py; its
 * docstring documents the format and the records).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/nn.h"
#include "test.h"

#define TOL 1e-4

/* ---- the reference file ------------------------------------------------- */

typedef struct record {
    char name[64];
    int n, c, h, w;
    float *data;
} record;

static record *recs;
static size_t nrecs;

static int read_u32(FILE *f, uint32_t *v)
{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4)
        return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
         (uint32_t)b[3] << 24;
    return 0;
}

static int load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char magic[4];
    uint32_t count;
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "CVTT", 4) ||
        read_u32(f, &count) || count > 100000) {
        fprintf(stderr, "%s: not a CVTT file\n", path);
        fclose(f);
        return -1;
    }
    recs = calloc(count, sizeof *recs);
    if (!recs) {
        fclose(f);
        return -1;
    }
    for (uint32_t i = 0; i < count; i++) {
        record *r = &recs[i];
        uint32_t len, dims[4];
        if (read_u32(f, &len) || len == 0 || len >= sizeof r->name ||
            fread(r->name, 1, len, f) != len)
            goto bad;
        r->name[len] = 0;
        size_t size = 1;
        for (int d = 0; d < 4; d++) {
            if (read_u32(f, &dims[d]) || dims[d] == 0 || dims[d] > 4096)
                goto bad;
            size *= dims[d];
        }
        if (size > (1u << 24))
            goto bad;
        r->n = (int)dims[0];
        r->c = (int)dims[1];
        r->h = (int)dims[2];
        r->w = (int)dims[3];
        r->data = malloc(size * sizeof(float));
        if (!r->data)
            goto bad;
        nrecs = i + 1;
        for (size_t k = 0; k < size; k++) {
            uint32_t u;
            if (read_u32(f, &u))
                goto bad;
            memcpy(&r->data[k], &u, 4);
        }
    }
    fclose(f);
    return 0;
bad:
    fprintf(stderr, "%s: truncated or malformed record %zu\n", path, nrecs);
    fclose(f);
    return -1;
}

static void unload(void)
{
    for (size_t i = 0; i < nrecs; i++)
        free(recs[i].data);
    free(recs);
}

static const record *find(const char *name)
{
    for (size_t i = 0; i < nrecs; i++)
        if (!strcmp(recs[i].name, name))
            return &recs[i];
    return NULL;
}

/* A record that must be there (a missing one is a failure). */
static const record *need(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static const record *need(const char *fmt, ...)
{
    char name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const record *r = find(name);
    CHECKF(r != NULL, "record %s missing from the reference file", name);
    return r;
}

static size_t rec_size(const record *r)
{
    return (size_t)r->n * (size_t)r->c * (size_t)r->h * (size_t)r->w;
}

static covct_tensor rec_tensor(const record *r)
{
    covct_tensor t = {r->n, r->c, r->h, r->w, r->data};
    return t;
}

/* ---- comparisons ---------------------------------------------------------- */

/* Largest error per class of tensor, for the summary. */
enum { E_FWD, E_PGRAD, E_XGRAD, E_STATS, E_EVAL, E_LOSS, E_ADAM, E_N };
static const char *eclass[E_N] = {
    "training forward", "parameter gradients", "input gradients",
    "running statistics", "inference forward", "losses (value, gradient)",
    "AdamW parameters"};
static double emax[2][E_N];
static int cur_backend;

static int same_shape(const covct_tensor *t, const record *r)
{
    return t && t->n == r->n && t->c == r->c && t->h == r->h && t->w == r->w;
}

/* Compare t with record r; NaN counts as infinite error. */
static void compare(const char *what, int cls, const covct_tensor *t,
                    const record *r)
{
    if (!r)
        return;
    if (!t || !t->data) {
        CHECKF(0, "%s: no tensor", what);
        return;
    }
    if (!same_shape(t, r)) {
        CHECKF(0, "%s: shape %dx%dx%dx%d, PyTorch %dx%dx%dx%d", what, t->n,
               t->c, t->h, t->w, r->n, r->c, r->h, r->w);
        return;
    }
    double err = 0, ref = 0;
    size_t at = 0;
    for (size_t i = 0; i < rec_size(r); i++) {
        double d = fabs((double)t->data[i] - (double)r->data[i]);
        if (!(d <= err)) { /* also takes NaN */
            err = isnan(d) ? INFINITY : d;
            at = i;
        }
        if (fabs(r->data[i]) > ref)
            ref = fabs(r->data[i]);
    }
    printf("  %-28s max abs err %.3e  (max |ref| %.3g, %zu values)\n", what,
           err, ref, rec_size(r));
    if (err > emax[cur_backend][cls])
        emax[cur_backend][cls] = err;
    CHECKF(err <= TOL, "%s: max abs err %.3e > %.0e at index %zu (got %.7g, "
           "PyTorch %.7g)", what, err, TOL, at, (double)t->data[at],
           (double)r->data[at]);
}

static void compare_scalar(const char *what, double got, const record *r)
{
    if (!r)
        return;
    double err = fabs(got - (double)r->data[0]);
    if (isnan(err))
        err = INFINITY;
    printf("  %-28s max abs err %.3e  (%.7g vs PyTorch %.7g)\n", what, err,
           got, (double)r->data[0]);
    if (err > emax[cur_backend][E_LOSS])
        emax[cur_backend][E_LOSS] = err;
    CHECKF(err <= TOL, "%s: %.7g, PyTorch %.7g", what, got,
           (double)r->data[0]);
}

/* ---- parameters -------------------------------------------------------------- */

/* Largest |value| of a tensor. */
static double max_abs(const covct_tensor *t)
{
    double m = 0;
    for (size_t k = 0; k < covct_tensor_size(t); k++)
        if (fabs(t->data[k]) > m)
            m = fabs(t->data[k]);
    return m;
}

/* PyTorch's default initialisation, checked before the reference values
 * replace it.  `layout` lists the parameterised operations in order: "W"
 * a weight, "B" its bias, "N" a batch norm (4 parameters).  Weights and
 * biases are uniform in +-1/sqrt(fan_in) (Kaiming uniform with a = sqrt(5)
 * gives that bound for the weights), fan_in = weight.size(1) * k * k (for
 * a transposed conv that is its output channels: PyTorch's convention);
 * with >= 200 values the largest must also come within 10 % of the bound
 * (else the bound is too small).  Batch norm starts at 1, 0, 0, 1. */
static void check_init(covct_nn_graph *g, const char *layout)
{
    size_t i = 0, np = covct_nn_param_count(g);
    int fan_in = 0;
    for (const char *l = layout; *l; l++) {
        if (i + (*l == 'N' ? 4 : 1) > np) {
            CHECKF(0, "init: fewer parameters than expected (%zu)", np);
            return;
        }
        const covct_tensor *p = covct_nn_param(g, i);
        if (!p || !p->data) {
            CHECKF(0, "init: parameter %zu has no data", i);
            return;
        }
        if (*l == 'N') {
            static const float want[4] = {1, 0, 0, 1};
            for (int j = 0; j < 4; j++) {
                const covct_tensor *q = covct_nn_param(g, i + (size_t)j);
                int ok = q && q->data;
                for (size_t k = 0; ok && k < covct_tensor_size(q); k++)
                    ok = q->data[k] == want[j];
                CHECKF(ok, "batch norm parameter %zu should start at %g "
                       "(PyTorch default)", i + (size_t)j, (double)want[j]);
            }
            i += 4;
            continue;
        }
        if (*l == 'W')
            fan_in = p->c * p->h * p->w;
        double bound = 1.0 / sqrt((double)fan_in), m = max_abs(p);
        size_t sz = covct_tensor_size(p);
        CHECKF(m <= bound * (1 + 1e-6) && m > 0 &&
                   (sz < 200 || m >= 0.9 * bound),
               "init of parameter %zu (%s %dx%dx%dx%d): max |value| %.4f, "
               "PyTorch's bound 1/sqrt(%d) = %.4f", i,
               *l == 'W' ? "weight" : "bias", p->n, p->c, p->h, p->w, m,
               fan_in, bound);
        i++;
    }
    CHECKF(i == np, "init: %zu parameters, expected %zu", np, i);
}

/* Copy the recorded parameters prefix.NN into the graph; the count, every
 * shape and which are buffers must match. */
static int set_params(covct_nn_graph *g, const char *prefix)
{
    size_t np = covct_nn_param_count(g), nrec = 0;
    char name[64];
    for (;; nrec++) {
        snprintf(name, sizeof name, "%s.%02zu", prefix, nrec);
        if (!find(name))
            break;
    }
    CHECKF(np == nrec, "graph has %zu parameters, PyTorch %zu (%s.*)", np,
           nrec, prefix);
    if (np != nrec)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < np; i++) {
        snprintf(name, sizeof name, "%s.%02zu", prefix, i);
        const record *r = find(name);
        covct_tensor *p = covct_nn_param(g, i);
        if (!same_shape(p, r) || !p->data) {
            CHECKF(0, "parameter %zu: shape %dx%dx%dx%d, PyTorch %dx%dx%dx%d",
                   i, p ? p->n : 0, p ? p->c : 0, p ? p->h : 0, p ? p->w : 0,
                   r->n, r->c, r->h, r->w);
            ok = 0;
            continue;
        }
        memcpy(p->data, r->data, rec_size(r) * sizeof(float));
    }
    return ok ? 0 : -1;
}

/* ---- the network ------------------------------------------------------------ */

typedef struct net {
    covct_nn_graph *g;
    int logits, sig, soft;
} net;

/* The network of nn_torch_ref.py, in the same order. */
static int build(net *m, covct_nn_backend backend, covct_error *err)
{
    covct_nn_graph *g;
    if (covct_nn_graph_new(&g, err))
        return -1;
    m->g = g;
    covct_nn_set_input_channels(g, 1);
    covct_nn_set_backend(g, backend);
    covct_nn_seed(g, 1);
    int x = covct_nn_input(g);
    CHECK(x == 0);
    int h = covct_nn_conv2d(g, x, 8, 3, 1, 1, 1, 1, err);
    h = covct_nn_batchnorm(g, h, err);
    h = covct_nn_relu(g, h, err);
    h = covct_nn_conv2d(g, h, 8, 3, 1, 2, 2, 0, err);
    h = covct_nn_batchnorm(g, h, err);
    int e1 = covct_nn_leakyrelu(g, h, 0.1f, err);
    h = covct_nn_maxpool(g, e1, 2, err);
    h = covct_nn_conv2d(g, h, 16, 3, 1, 1, 1, 0, err);
    h = covct_nn_batchnorm(g, h, err);
    int e2 = covct_nn_relu(g, h, err);
    h = covct_nn_avgpool(g, e2, 2, err);
    h = covct_nn_conv2d(g, h, 16, 1, 1, 0, 1, 1, err);
    int e3 = covct_nn_relu(g, h, err);
    h = covct_nn_upsample2x(g, e3, err);
    int u2 = covct_nn_conv2d(g, h, 16, 3, 1, 1, 1, 1, err);
    h = covct_nn_add(g, u2, e2, err);
    int u1 = covct_nn_convt2d(g, h, 8, 2, 2, 0, 1, err);
    h = covct_nn_concat(g, u1, e1, err);
    h = covct_nn_conv2d(g, h, 8, 3, 1, 1, 1, 1, err);
    h = covct_nn_relu(g, h, err);
    h = covct_nn_conv2d(g, h, 8, 3, 2, 1, 1, 0, err);
    h = covct_nn_convt2d(g, h, 8, 2, 2, 0, 0, err);
    m->logits = covct_nn_conv2d(g, h, 3, 1, 1, 0, 1, 1, err);
    m->sig = covct_nn_sigmoid(g, m->logits, err);
    m->soft = covct_nn_softmax(g, m->logits, err);
    /* Every add returns -1 on failure and the first error is kept; a -1
     * passed on makes the next add fail too, so the last ones tell. */
    return m->logits < 0 || m->sig < 0 || m->soft < 0 ? -1 : 0;
}

static void backward_from(net *m, int slot, const char *gname,
                          covct_error *err)
{
    const record *r = need("G.%s", gname);
    if (!r)
        return;
    covct_tensor gr = rec_tensor(r);
    covct_nn_zero_grad(m->g);
    covct_rc rc = covct_nn_backward(m->g, slot, &gr, err);
    CHECKF(rc == COVCT_OK, "backward from %s: %s", gname, err->msg);
}

static void run_network(covct_nn_backend backend)
{
    covct_error err;
    covct_error_clear(&err);
    net m = {0};
    const char *bn = backend == COVCT_NN_REFERENCE ? "reference" : "fast";
    printf("[%s backend] network\n", bn);
    if (build(&m, backend, &err)) {
        CHECKF(0, "building the network: %s", err.msg);
        covct_nn_graph_free(m.g);
        return;
    }
    /* c1 b1 c2 b2 c3 b3 c4 c5 t1 c6 c7 t2 c8, as nn_torch_ref.py. */
    check_init(m.g, "WBNWNWNWBWBWBWBWWWB");
    size_t np = covct_nn_param_count(m.g);
    /* Buffers are exactly the parameters with recorded running stats. */
    for (size_t i = 0; i < np; i++) {
        char name[32];
        snprintf(name, sizeof name, "stats.%02zu", i);
        int buf = find(name) != NULL;
        CHECKF(covct_nn_param_is_buffer(m.g, i) == buf,
               "parameter %zu: is_buffer %d, PyTorch %d", i,
               covct_nn_param_is_buffer(m.g, i), buf);
        CHECKF((covct_nn_param_grad(m.g, i) == NULL) == buf,
               "parameter %zu: gradient tensor %s for a %s", i,
               covct_nn_param_grad(m.g, i) ? "present" : "NULL",
               buf ? "buffer" : "trainable parameter");
    }
    if (set_params(m.g, "param"))
        goto out;

    const record *in = need("input");
    if (!in)
        goto out;
    covct_tensor x = rec_tensor(in);
    covct_nn_set_training(m.g, 1);
    if (covct_nn_forward(m.g, &x, &err)) {
        CHECKF(0, "training forward: %s", err.msg);
        goto out;
    }
    compare("train.logits", E_FWD, covct_nn_value(m.g, m.logits),
            need("train.logits"));
    compare("train.sigmoid", E_FWD, covct_nn_value(m.g, m.sig),
            need("train.sigmoid"));
    compare("train.softmax", E_FWD, covct_nn_value(m.g, m.soft),
            need("train.softmax"));
    for (size_t i = 0; i < np; i++) {
        char name[32];
        snprintf(name, sizeof name, "stats.%02zu", i);
        if (find(name))
            compare(name, E_STATS, covct_nn_param(m.g, i), find(name));
    }

    /* Backward from the logits: every parameter gradient, the input's. */
    backward_from(&m, m.logits, "logits", &err);
    for (size_t i = 0; i < np; i++) {
        char name[32];
        snprintf(name, sizeof name, "grad.%02zu", i);
        if (!covct_nn_param_is_buffer(m.g, i))
            compare(name, E_PGRAD, covct_nn_param_grad(m.g, i),
                    need("%s", name));
    }
    compare("input_grad.logits", E_XGRAD, covct_nn_input_grad(m.g),
            need("input_grad.logits"));
    /* Separate passes from the softmax and from the sigmoid. */
    backward_from(&m, m.soft, "softmax", &err);
    compare("input_grad.softmax", E_XGRAD, covct_nn_input_grad(m.g),
            need("input_grad.softmax"));
    backward_from(&m, m.sig, "sigmoid", &err);
    compare("input_grad.sigmoid", E_XGRAD, covct_nn_input_grad(m.g),
            need("input_grad.sigmoid"));

    /* Inference: the running statistics, which it must leave alone. */
    covct_nn_set_training(m.g, 0);
    if (covct_nn_forward(m.g, &x, &err)) {
        CHECKF(0, "inference forward: %s", err.msg);
        goto out;
    }
    compare("eval.logits", E_EVAL, covct_nn_value(m.g, m.logits),
            need("eval.logits"));
    for (size_t i = 0; i < np; i++) {
        char name[64];
        snprintf(name, sizeof name, "stats.%02zu", i);
        const record *r = find(name);
        snprintf(name, sizeof name, "stats.%02zu after inference", i);
        if (r)
            compare(name, E_STATS, covct_nn_param(m.g, i), r);
    }
out:
    covct_nn_graph_free(m.g);
}

/* ---- losses -------------------------------------------------------------------- */

static void run_losses(void)
{
    printf("losses\n");
    const record *lr = need("loss.logits"), *lb = need("loss.labels");
    if (!lr || !lb)
        return;
    covct_tensor logits = rec_tensor(lr);
    size_t npix = rec_size(lb);
    uint8_t *labels = malloc(npix);
    if (!labels)
        return;
    for (size_t i = 0; i < npix; i++)
        labels[i] = (uint8_t)lb->data[i];
    static const char *names[] = {"ce", "dice", "dice_infection"};
    for (int which = 0; which < 3; which++) {
        const char *nm = names[which];
        covct_tensor grad = {0};
        double loss = NAN;
        covct_error err;
        covct_error_clear(&err);
        covct_rc rc =
            which == 2 ? covct_nn_loss_dice_infection(&logits, labels, &grad,
                                                      &loss, &err)
            : which    ? covct_nn_loss_dice(&logits, labels, &grad, &loss, &err)
                       : covct_nn_loss_ce(&logits, labels, &grad, &loss, &err);
        CHECKF(rc == COVCT_OK, "loss %s: %s", nm, err.msg);
        if (rc == COVCT_OK) {
            char name[32];
            snprintf(name, sizeof name, "loss.%s", nm);
            compare_scalar(name, loss, need("%s", name));
            snprintf(name, sizeof name, "loss.%s_grad", nm);
            compare(name, E_LOSS, &grad, need("%s", name));
        }
        covct_tensor_free(&grad);
    }
    free(labels);
}

/* ---- AdamW ---------------------------------------------------------------------- */

static void run_adam(covct_nn_backend backend, const char *tag, double lr,
                     double wd)
{
    covct_error err;
    covct_error_clear(&err);
    printf("[%s backend] AdamW %s (lr %g, weight decay %g)\n",
           backend == COVCT_NN_REFERENCE ? "reference" : "fast", tag, lr, wd);
    covct_nn_graph *g = NULL;
    if (covct_nn_graph_new(&g, &err)) {
        CHECKF(0, "graph: %s", err.msg);
        return;
    }
    covct_nn_set_input_channels(g, 2);
    covct_nn_set_backend(g, backend);
    int h = covct_nn_conv2d(g, covct_nn_input(g), 3, 3, 1, 1, 1, 1, &err);
    h = covct_nn_batchnorm(g, h, &err);
    CHECKF(h > 0, "AdamW graph: %s", err.msg);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.param", tag);
    covct_nn_adam a;
    covct_nn_adam_init(&a, lr, wd);
    CHECK(a.lr == lr && a.weight_decay == wd && a.beta1 == 0.9 &&
          a.beta2 == 0.999 && a.eps == 1e-8);
    if (h < 0 || set_params(g, prefix))
        goto out;
    size_t np = covct_nn_param_count(g);
    for (int s = 1; s <= 3; s++) {
        covct_nn_zero_grad(g);
        for (size_t i = 0; i < np; i++) {
            if (covct_nn_param_is_buffer(g, i))
                continue;
            const record *r = need("%s.grad.%d.%02zu", tag, s, i);
            covct_tensor *gt = covct_nn_param_grad(g, i);
            if (!r || !gt)
                goto out;
            if (!gt->data &&
                covct_tensor_alloc(gt, r->n, r->c, r->h, r->w, &err)) {
                CHECKF(0, "gradient %zu: %s", i, err.msg);
                goto out;
            }
            if (!same_shape(gt, r)) {
                CHECKF(0, "gradient %zu: shape differs from PyTorch's", i);
                goto out;
            }
            memcpy(gt->data, r->data, rec_size(r) * sizeof(float));
        }
        if (covct_nn_adam_step(&a, g, &err)) {
            CHECKF(0, "AdamW step %d: %s", s, err.msg);
            goto out;
        }
        CHECK(a.t == (uint64_t)s);
        for (size_t i = 0; i < np; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s.after.%d.%02zu", tag, s, i);
            compare(name, E_ADAM, covct_nn_param(g, i), need("%s", name));
        }
    }
out:
    covct_nn_adam_free(&a);
    covct_nn_graph_free(g);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_nn_torch REFERENCE_FILE "
                        "(from tests/nn_torch_ref.py)\n");
        return 2;
    }
    if (load(argv[1])) {
        unload();
        CHECKF(0, "reading %s", argv[1]);
        return test_report();
    }
    static const covct_nn_backend backends[2] = {COVCT_NN_REFERENCE,
                                                 COVCT_NN_FAST};
    for (int b = 0; b < 2; b++) {
        cur_backend = b;
        run_network(backends[b]);
        if (b == 0)
            run_losses();
        run_adam(backends[b], "adamA", 1e-3, 1e-4);
        run_adam(backends[b], "adamB", 1e-2, 0.5);
    }
    printf("largest error per class (tolerance %.0e):\n", TOL);
    for (int c = 0; c < E_N; c++)
        printf("  %-26s reference %.3e   fast %.3e\n", eclass[c], emax[0][c],
               c == E_LOSS ? emax[0][c] : emax[1][c]);
    unload();
    return test_report();
}
