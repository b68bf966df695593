/*
 * The nn graph: slots, operations, parameters, forward and backward
 * dispatch, losses and the AdamW optimiser.  Kernels live in ops-ref.c
 * (reference) and ops-dnnl.c (oneDNN).  Design: docs/internals/nn.md.
 */
#include <math.h>
#include <string.h>

#include "covct/nn.h"
#include "nn/nn_int.h"

#define BN_MOMENTUM 0.1f

/* ---- tensors -------------------------------------------------------------- */

covct_rc covct_tensor_alloc(covct_tensor *t, int n, int c, int h, int w,
                            covct_error *err)
{
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return COVCT_ERR(err, COVCT_ERR_ARG, "tensor shape %dx%dx%dx%d", n, c,
                         h, w);
    size_t count = (size_t)n * (size_t)c * (size_t)h * (size_t)w;
    if (t->data && covct_tensor_size(t) == count) {
        t->n = n, t->c = c, t->h = h, t->w = w;
        memset(t->data, 0, count * sizeof *t->data);
        return COVCT_OK;
    }
    covct_free(t->data);
    t->data = covct_calloc(count, sizeof *t->data);
    if (!t->data) {
        t->n = t->c = t->h = t->w = 0;
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "cannot allocate a %dx%dx%dx%d tensor", n, c, h, w);
    }
    t->n = n, t->c = c, t->h = h, t->w = w;
    return COVCT_OK;
}

void covct_tensor_free(covct_tensor *t)
{
    if (!t)
        return;
    covct_free(t->data);
    memset(t, 0, sizeof *t);
}

/* Shape a slot's tensor without clearing it when the size is unchanged
 * (forward overwrites every element anyway). */
static covct_rc shape(covct_tensor *t, int n, int c, int h, int w,
                      covct_error *err)
{
    size_t count = (size_t)n * (size_t)c * (size_t)h * (size_t)w;
    if (t->data && covct_tensor_size(t) == count) {
        t->n = n, t->c = c, t->h = h, t->w = w;
        return COVCT_OK;
    }
    return covct_tensor_alloc(t, n, c, h, w, err);
}

/* ---- graph building --------------------------------------------------------- */

covct_rc covct_nn_graph_new(covct_nn_graph **out, covct_error *err)
{
    covct_nn_graph *g = covct_calloc(1, sizeof *g);
    if (!g)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate a network");
    g->slot_c = covct_calloc(1, sizeof *g->slot_c);
    if (!g->slot_c) {
        covct_free(g);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate a network");
    }
    g->nslots = 1;
    g->in_channels = 1;
    g->slot_c[0] = 1;
    g->rng = 0x9E3779B97F4A7C15ull;
    g->training = 1;
    g->backend = COVCT_NN_FAST; /* the reference loops are the tests' yardstick */
    *out = g;
    return COVCT_OK;
}

void covct_nn_graph_free(covct_nn_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nops; i++) {
        covct_tensor_free(&g->ops[i].xhat);
        covct_tensor_free(&g->ops[i].invstd);
        covct_free(g->ops[i].argmax);
    }
    if (g->val)
        for (int s = 0; s < g->nslots; s++) {
            covct_tensor_free(&g->val[s]);
            covct_tensor_free(&g->grad[s]);
        }
    for (size_t i = 0; i < g->npar; i++) {
        covct_tensor_free(&g->par[i]);
        covct_tensor_free(&g->pgrad[i]);
    }
    covct_tensor_free(&g->scratch);
    covct_free(g->ops);
    covct_free(g->slot_c);
    covct_free(g->val);
    covct_free(g->grad);
    covct_free(g->has_grad);
    covct_free(g->par);
    covct_free(g->pgrad);
    covct_free(g->buffer);
    covct_free(g);
}

int covct_nn_input(const covct_nn_graph *g)
{
    (void)g;
    return 0;
}

void covct_nn_set_input_channels(covct_nn_graph *g, int channels)
{
    g->in_channels = channels;
    g->slot_c[0] = channels;
}

void covct_nn_seed(covct_nn_graph *g, uint64_t seed)
{
    g->rng = seed ^ 0x9E3779B97F4A7C15ull;
}

void covct_nn_set_backend(covct_nn_graph *g, covct_nn_backend b)
{
    g->backend = b;
}

void covct_nn_set_training(covct_nn_graph *g, int training)
{
    g->training = training != 0;
}

/* splitmix64, then a float in [-bound, bound). */
static float uniform(covct_nn_graph *g, double bound)
{
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = (double)(z >> 11) * (1.0 / 9007199254740992.0);
    return (float)((2 * u - 1) * bound);
}

/* Append a parameter of shape n x c x h x w; `fill` < 0: uniform in
 * +-bound; otherwise the constant `fill`. */
static covct_rc add_param(covct_nn_graph *g, int n, int c, int h, int w,
                          double bound, double fill, int is_buffer,
                          covct_error *err)
{
    if (g->npar == g->par_cap) {
        size_t cap = g->par_cap ? 2 * g->par_cap : 16;
        covct_tensor *p = covct_realloc(g->par, cap * sizeof *p);
        if (!p)
            goto nomem;
        g->par = p;
        covct_tensor *q = covct_realloc(g->pgrad, cap * sizeof *q);
        if (!q)
            goto nomem;
        g->pgrad = q;
        unsigned char *b = covct_realloc(g->buffer, cap);
        if (!b)
            goto nomem;
        g->buffer = b;
        g->par_cap = cap;
    }
    covct_tensor *t = &g->par[g->npar], *gt = &g->pgrad[g->npar];
    memset(t, 0, sizeof *t);
    memset(gt, 0, sizeof *gt);
    if (covct_tensor_alloc(t, n, c, h, w, err) != COVCT_OK)
        return COVCT_ERR_NOMEM;
    if (!is_buffer && covct_tensor_alloc(gt, n, c, h, w, err) != COVCT_OK) {
        covct_tensor_free(t);
        return COVCT_ERR_NOMEM;
    }
    size_t count = covct_tensor_size(t);
    for (size_t i = 0; i < count; i++)
        t->data[i] = fill < 0 ? uniform(g, bound) : (float)fill;
    g->buffer[g->npar] = (unsigned char)(is_buffer != 0);
    g->npar++;
    return COVCT_OK;
nomem:
    return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate the parameters");
}

/* Remove the parameters from index p0 on (an operation that failed to be
 * added). */
static void drop_params(covct_nn_graph *g, size_t p0)
{
    while (g->npar > p0) {
        g->npar--;
        covct_tensor_free(&g->par[g->npar]);
        covct_tensor_free(&g->pgrad[g->npar]);
    }
}

/* Append an operation writing a new slot of `channels` channels. */
static nn_op *add_op(covct_nn_graph *g, covct_nn_op_kind kind, int in0,
                     int in1, int channels, covct_error *err)
{
    if (in0 < 0 || in0 >= g->nslots || (in1 >= g->nslots)) {
        COVCT_ERR(err, COVCT_ERR_ARG, "nn: operation on unknown slot %d",
                  in0 < 0 || in0 >= g->nslots ? in0 : in1);
        return NULL;
    }
    if (channels <= 0) {
        COVCT_ERR(err, COVCT_ERR_ARG, "nn: %d output channels", channels);
        return NULL;
    }
    if (g->nops == g->ops_cap) {
        size_t cap = g->ops_cap ? 2 * g->ops_cap : 16;
        nn_op *o = covct_realloc(g->ops, cap * sizeof *o);
        if (!o)
            goto nomem;
        g->ops = o;
        g->ops_cap = cap;
    }
    int *sc = covct_realloc(g->slot_c, (size_t)(g->nslots + 1) * sizeof *sc);
    if (!sc)
        goto nomem;
    g->slot_c = sc;
    nn_op *op = &g->ops[g->nops];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->in0 = in0;
    op->in1 = in1;
    op->out = g->nslots;
    op->p0 = g->npar;
    op->k = op->stride = op->dil = 1;
    g->slot_c[g->nslots] = channels;
    return op;
nomem:
    COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate the network");
    return NULL;
}

/* Make the operation (filled by add_op) part of the graph. */
static int commit(covct_nn_graph *g, nn_op *op)
{
    g->nops++;
    g->nslots++;
    return op->out;
}

int covct_nn_conv2d(covct_nn_graph *g, int in, int out_channels, int k,
                    int stride, int pad, int dilation, int bias,
                    covct_error *err)
{
    if (k <= 0 || stride <= 0 || pad < 0 || dilation <= 0) {
        COVCT_ERR(err, COVCT_ERR_ARG,
                  "nn: convolution k %d stride %d pad %d dilation %d", k,
                  stride, pad, dilation);
        return -1;
    }
    nn_op *op = add_op(g, COVCT_NN_CONV2D, in, -1, out_channels, err);
    if (!op)
        return -1;
    op->k = k, op->stride = stride, op->pad = pad, op->dil = dilation;
    op->bias = bias != 0;
    int cin = g->slot_c[in];
    double bound = 1.0 / sqrt((double)cin * k * k);
    size_t p0 = g->npar;
    if (add_param(g, out_channels, cin, k, k, bound, -1, 0, err) ||
        (op->bias && add_param(g, 1, out_channels, 1, 1, bound, -1, 0, err))) {
        drop_params(g, p0);
        return -1;
    }
    return commit(g, op);
}

int covct_nn_convt2d(covct_nn_graph *g, int in, int out_channels, int k,
                     int stride, int pad, int bias, covct_error *err)
{
    if (k <= 0 || stride <= 0 || pad < 0) {
        COVCT_ERR(err, COVCT_ERR_ARG,
                  "nn: transposed convolution k %d stride %d pad %d", k,
                  stride, pad);
        return -1;
    }
    nn_op *op = add_op(g, COVCT_NN_CONVT2D, in, -1, out_channels, err);
    if (!op)
        return -1;
    op->k = k, op->stride = stride, op->pad = pad;
    op->bias = bias != 0;
    int cin = g->slot_c[in];
    /* PyTorch takes the fan-in of a transposed convolution from the
     * weight's second dimension (its output channels). */
    double bound = 1.0 / sqrt((double)out_channels * k * k);
    size_t p0 = g->npar;
    if (add_param(g, cin, out_channels, k, k, bound, -1, 0, err) ||
        (op->bias && add_param(g, 1, out_channels, 1, 1, bound, -1, 0, err))) {
        drop_params(g, p0);
        return -1;
    }
    return commit(g, op);
}

int covct_nn_batchnorm(covct_nn_graph *g, int in, covct_error *err)
{
    if (in < 0 || in >= g->nslots) {
        COVCT_ERR(err, COVCT_ERR_ARG, "nn: operation on unknown slot %d", in);
        return -1;
    }
    int c = g->slot_c[in];
    nn_op *op = add_op(g, COVCT_NN_BATCHNORM, in, -1, c, err);
    if (!op)
        return -1;
    size_t p0 = g->npar;
    if (add_param(g, 1, c, 1, 1, 0, 1, 0, err) ||
        add_param(g, 1, c, 1, 1, 0, 0, 0, err) ||
        add_param(g, 1, c, 1, 1, 0, 0, 1, err) ||
        add_param(g, 1, c, 1, 1, 0, 1, 1, err)) {
        drop_params(g, p0);
        return -1;
    }
    return commit(g, op);
}

static int simple(covct_nn_graph *g, covct_nn_op_kind kind, int in,
                  covct_error *err)
{
    if (in < 0 || in >= g->nslots) {
        COVCT_ERR(err, COVCT_ERR_ARG, "nn: operation on unknown slot %d", in);
        return -1;
    }
    nn_op *op = add_op(g, kind, in, -1, g->slot_c[in], err);
    return op ? commit(g, op) : -1;
}

int covct_nn_relu(covct_nn_graph *g, int in, covct_error *err)
{
    return simple(g, COVCT_NN_RELU, in, err);
}

int covct_nn_leakyrelu(covct_nn_graph *g, int in, float alpha,
                       covct_error *err)
{
    int s = simple(g, COVCT_NN_LEAKYRELU, in, err);
    if (s > 0)
        g->ops[g->nops - 1].alpha = alpha;
    return s;
}

static int pool(covct_nn_graph *g, covct_nn_op_kind kind, int in, int k,
                covct_error *err)
{
    if (k <= 0) {
        COVCT_ERR(err, COVCT_ERR_ARG, "nn: pooling kernel %d", k);
        return -1;
    }
    int s = simple(g, kind, in, err);
    if (s > 0)
        g->ops[g->nops - 1].k = k;
    return s;
}

int covct_nn_maxpool(covct_nn_graph *g, int in, int k, covct_error *err)
{
    return pool(g, COVCT_NN_MAXPOOL2D, in, k, err);
}

int covct_nn_avgpool(covct_nn_graph *g, int in, int k, covct_error *err)
{
    return pool(g, COVCT_NN_AVGPOOL2D, in, k, err);
}

int covct_nn_upsample2x(covct_nn_graph *g, int in, covct_error *err)
{
    return simple(g, COVCT_NN_UPSAMPLE2X, in, err);
}

int covct_nn_sigmoid(covct_nn_graph *g, int in, covct_error *err)
{
    return simple(g, COVCT_NN_SIGMOID, in, err);
}

int covct_nn_softmax(covct_nn_graph *g, int in, covct_error *err)
{
    return simple(g, COVCT_NN_SOFTMAX, in, err);
}

static int binary(covct_nn_graph *g, covct_nn_op_kind kind, int a, int b,
                  covct_error *err)
{
    if (a < 0 || b < 0 || a >= g->nslots || b >= g->nslots) {
        COVCT_ERR(err, COVCT_ERR_ARG, "nn: operation on unknown slot %d",
                  a < 0 || a >= g->nslots ? a : b);
        return -1;
    }
    if (kind == COVCT_NN_ADD && g->slot_c[a] != g->slot_c[b]) {
        COVCT_ERR(err, COVCT_ERR_ARG,
                  "nn: adding slots of %d and %d channels", g->slot_c[a],
                  g->slot_c[b]);
        return -1;
    }
    int c = kind == COVCT_NN_ADD ? g->slot_c[a] : g->slot_c[a] + g->slot_c[b];
    nn_op *op = add_op(g, kind, a, b, c, err);
    return op ? commit(g, op) : -1;
}

int covct_nn_concat(covct_nn_graph *g, int a, int b, covct_error *err)
{
    return binary(g, COVCT_NN_CONCAT, a, b, err);
}

int covct_nn_add(covct_nn_graph *g, int a, int b, covct_error *err)
{
    return binary(g, COVCT_NN_ADD, a, b, err);
}

/* ---- parameters ---------------------------------------------------------------- */

size_t covct_nn_param_count(const covct_nn_graph *g)
{
    return g->npar;
}

covct_tensor *covct_nn_param(covct_nn_graph *g, size_t i)
{
    return i < g->npar ? &g->par[i] : NULL;
}

covct_tensor *covct_nn_param_grad(covct_nn_graph *g, size_t i)
{
    return i < g->npar && !g->buffer[i] ? &g->pgrad[i] : NULL;
}

int covct_nn_param_is_buffer(const covct_nn_graph *g, size_t i)
{
    return i < g->npar && g->buffer[i];
}

void covct_nn_zero_grad(covct_nn_graph *g)
{
    for (size_t i = 0; i < g->npar; i++)
        if (!g->buffer[i])
            memset(g->pgrad[i].data, 0,
                   covct_tensor_size(&g->pgrad[i]) * sizeof(float));
}

/* ---- forward ---------------------------------------------------------------------- */

static covct_rc slots_ready(covct_nn_graph *g, covct_error *err)
{
    if (g->val)
        return COVCT_OK;
    g->val = covct_calloc((size_t)g->nslots, sizeof *g->val);
    g->grad = covct_calloc((size_t)g->nslots, sizeof *g->grad);
    g->has_grad = covct_calloc((size_t)g->nslots, 1);
    if (!g->val || !g->grad || !g->has_grad) {
        covct_free(g->val);
        covct_free(g->grad);
        covct_free(g->has_grad);
        g->val = g->grad = NULL;
        g->has_grad = NULL;
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate the network");
    }
    return COVCT_OK;
}

const char *nn_op_name(covct_nn_op_kind k)
{
    static const char *names[] = {"convolution", "transposed convolution",
                                  "batch norm", "ReLU", "leaky ReLU",
                                  "max pooling", "average pooling",
                                  "upsampling", "concatenation", "addition",
                                  "sigmoid", "softmax"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static covct_rc forward_op(covct_nn_graph *g, nn_op *op, covct_error *err)
{
    const covct_tensor *x = &g->val[op->in0];
    covct_tensor *y = &g->val[op->out];
    const covct_tensor *par = &g->par[op->p0];
    int n = x->n, c = x->c, h = x->h, w = x->w;
    size_t count = covct_tensor_size(x);
    covct_rc rc;
    switch (op->kind) {
    case COVCT_NN_CONV2D:
    case COVCT_NN_CONVT2D: {
        nn_conv_shape s = {.n = n, .c = c, .h = h, .w = w,
                           .o = g->slot_c[op->out], .k = op->k,
                           .stride = op->stride, .pad = op->pad,
                           .dil = op->dil};
        if (op->kind == COVCT_NN_CONV2D) {
            s.oh = nn_conv_out(h, op->k, op->stride, op->pad, op->dil);
            s.ow = nn_conv_out(w, op->k, op->stride, op->pad, op->dil);
        } else {
            s.oh = nn_convt_out(h, op->k, op->stride, op->pad);
            s.ow = nn_convt_out(w, op->k, op->stride, op->pad);
        }
        if (s.oh <= 0 || s.ow <= 0)
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "nn: %s of a %dx%d input gives no output",
                             nn_op_name(op->kind), h, w);
        if ((rc = shape(y, n, s.o, s.oh, s.ow, err)) != COVCT_OK)
            return rc;
        const float *b = op->bias ? par[1].data : NULL;
        if (op->kind == COVCT_NN_CONVT2D && g->backend == COVCT_NN_FAST)
            return nn_dnnl_convt_fwd(&s, x->data, par[0].data, b, y->data,
                                     err);
        if (op->kind == COVCT_NN_CONVT2D)
            nn_ref_convt_fwd(&s, x->data, par[0].data, b, y->data);
        else if (g->backend == COVCT_NN_FAST)
            return nn_dnnl_conv_fwd(&s, x->data, par[0].data, b, y->data, err);
        else
            nn_ref_conv_fwd(&s, x->data, par[0].data, b, y->data);
        return COVCT_OK;
    }
    case COVCT_NN_BATCHNORM:
        if ((rc = shape(y, n, c, h, w, err)) != COVCT_OK)
            return rc;
        if (g->training) {
            if ((rc = shape(&op->xhat, n, c, h, w, err)) != COVCT_OK ||
                (rc = shape(&op->invstd, 1, c, 1, 1, err)) != COVCT_OK)
                return rc;
            nn_ref_bn_fwd_train(n, c, h * w, x->data, par[0].data,
                                par[1].data, BN_EPS, BN_MOMENTUM,
                                par[2].data, par[3].data, y->data,
                                op->xhat.data, op->invstd.data);
        } else {
            nn_ref_bn_fwd_infer(n, c, h * w, x->data, par[0].data,
                                par[1].data, BN_EPS, par[2].data,
                                par[3].data, y->data);
        }
        return COVCT_OK;
    case COVCT_NN_RELU:
    case COVCT_NN_LEAKYRELU: {
        if ((rc = shape(y, n, c, h, w, err)) != COVCT_OK)
            return rc;
        float a = op->kind == COVCT_NN_RELU ? 0.0f : op->alpha;
        for (size_t i = 0; i < count; i++)
            y->data[i] = x->data[i] > 0 ? x->data[i] : a * x->data[i];
        return COVCT_OK;
    }
    case COVCT_NN_MAXPOOL2D:
    case COVCT_NN_AVGPOOL2D:
        if (h < op->k || w < op->k)
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "nn: %s %d of a %dx%d input", nn_op_name(op->kind),
                             op->k, h, w);
        if ((rc = shape(y, n, c, h / op->k, w / op->k, err)) != COVCT_OK)
            return rc;
        if (op->kind == COVCT_NN_AVGPOOL2D) {
            nn_ref_avgpool_fwd(n, c, h, w, op->k, x->data, y->data);
            return COVCT_OK;
        }
        if (covct_tensor_size(y) > op->argmax_cap) {
            covct_free(op->argmax);
            op->argmax_cap = 0;
            op->argmax = covct_malloc(covct_tensor_size(y) * sizeof(int32_t));
            if (!op->argmax)
                return COVCT_ERR(err, COVCT_ERR_NOMEM,
                                 "nn: cannot allocate max pooling indices");
            op->argmax_cap = covct_tensor_size(y);
        }
        nn_ref_maxpool_fwd(n, c, h, w, op->k, x->data, y->data, op->argmax);
        return COVCT_OK;
    case COVCT_NN_UPSAMPLE2X:
        if ((rc = shape(y, n, c, 2 * h, 2 * w, err)) != COVCT_OK)
            return rc;
        nn_ref_upsample2x_fwd(n, c, h, w, x->data, y->data);
        return COVCT_OK;
    case COVCT_NN_CONCAT:
    case COVCT_NN_ADD: {
        const covct_tensor *b = &g->val[op->in1];
        if (b->n != n || b->h != h || b->w != w)
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "nn: %s of %dx%dx%dx%d and %dx%dx%dx%d",
                             nn_op_name(op->kind), n, c, h, w, b->n, b->c, b->h,
                             b->w);
        if (op->kind == COVCT_NN_ADD) {
            if ((rc = shape(y, n, c, h, w, err)) != COVCT_OK)
                return rc;
            for (size_t i = 0; i < count; i++)
                y->data[i] = x->data[i] + b->data[i];
            return COVCT_OK;
        }
        if ((rc = shape(y, n, c + b->c, h, w, err)) != COVCT_OK)
            return rc;
        size_t pa = (size_t)c * h * w, pb = (size_t)b->c * h * w;
        for (int i = 0; i < n; i++) {
            memcpy(y->data + (size_t)i * (pa + pb), x->data + (size_t)i * pa,
                   pa * sizeof(float));
            memcpy(y->data + (size_t)i * (pa + pb) + pa,
                   b->data + (size_t)i * pb, pb * sizeof(float));
        }
        return COVCT_OK;
    }
    case COVCT_NN_SIGMOID:
        if ((rc = shape(y, n, c, h, w, err)) != COVCT_OK)
            return rc;
        for (size_t i = 0; i < count; i++)
            y->data[i] = 1.0f / (1.0f + expf(-x->data[i]));
        return COVCT_OK;
    case COVCT_NN_SOFTMAX: {
        if ((rc = shape(y, n, c, h, w, err)) != COVCT_OK)
            return rc;
        size_t hw = (size_t)h * w;
        for (int b = 0; b < n; b++)
            for (size_t p = 0; p < hw; p++) {
                const float *xi = x->data + (size_t)b * c * hw + p;
                float *yi = y->data + (size_t)b * c * hw + p;
                float mx = xi[0];
                for (int k = 1; k < c; k++)
                    if (xi[k * hw] > mx)
                        mx = xi[k * hw];
                double sum = 0;
                for (int k = 0; k < c; k++)
                    sum += exp((double)xi[k * hw] - mx);
                for (int k = 0; k < c; k++)
                    yi[k * hw] = (float)(exp((double)xi[k * hw] - mx) / sum);
            }
        return COVCT_OK;
    }
    }
    return COVCT_ERR(err, COVCT_ERR_INTERNAL, "nn: unknown operation %d",
                     (int)op->kind);
}

covct_rc covct_nn_forward(covct_nn_graph *g, const covct_tensor *input,
                          covct_error *err)
{
    if (!input || !input->data)
        return COVCT_ERR(err, COVCT_ERR_ARG, "nn: no input");
    if (input->c != g->in_channels)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "nn: input has %d channels, the network takes %d",
                         input->c, g->in_channels);
    covct_rc rc = slots_ready(g, err);
    if (rc != COVCT_OK)
        return rc;
    if ((rc = shape(&g->val[0], input->n, input->c, input->h, input->w,
                    err)) != COVCT_OK)
        return rc;
    memcpy(g->val[0].data, input->data,
           covct_tensor_size(input) * sizeof(float));
    for (size_t i = 0; i < g->nops; i++) {
        rc = forward_op(g, &g->ops[i], err);
        if (rc != COVCT_OK) {
            covct_error_prefix(err, "operation %zu (%s): ", i,
                               nn_op_name(g->ops[i].kind));
            return rc;
        }
    }
    return COVCT_OK;
}

const covct_tensor *covct_nn_value(const covct_nn_graph *g, int slot)
{
    if (!g->val || slot < 0 || slot >= g->nslots)
        return NULL;
    return &g->val[slot];
}

/* ---- backward ------------------------------------------------------------------------ */

/* Add the scratch gradient (shape of slot s's value) into slot s. */
static covct_rc accumulate(covct_nn_graph *g, int s, covct_error *err)
{
    covct_tensor *gs = &g->grad[s];
    const covct_tensor *v = &g->val[s];
    if (!g->has_grad[s]) {
        covct_rc rc = covct_tensor_alloc(gs, v->n, v->c, v->h, v->w, err);
        if (rc != COVCT_OK)
            return rc;
        g->has_grad[s] = 1;
    }
    size_t count = covct_tensor_size(v);
    for (size_t i = 0; i < count; i++)
        gs->data[i] += g->scratch.data[i];
    return COVCT_OK;
}

static covct_rc backward_op(covct_nn_graph *g, nn_op *op, covct_error *err)
{
    const covct_tensor *x = &g->val[op->in0];
    const covct_tensor *y = &g->val[op->out];
    const float *dy = g->grad[op->out].data;
    covct_tensor *par = &g->par[op->p0], *pg = &g->pgrad[op->p0];
    int n = x->n, c = x->c, h = x->h, w = x->w;
    size_t count = covct_tensor_size(x);
    covct_rc rc;
    if (op->kind == COVCT_NN_CONCAT || op->kind == COVCT_NN_ADD) {
        const covct_tensor *b = &g->val[op->in1];
        size_t pa = (size_t)c * h * w, pb = (size_t)b->c * h * w;
        if ((rc = shape(&g->scratch, n, c, h, w, err)) != COVCT_OK)
            return rc;
        for (int i = 0; i < n; i++)
            memcpy(g->scratch.data + (size_t)i * pa,
                   dy + (size_t)i * (op->kind == COVCT_NN_ADD ? pa : pa + pb),
                   pa * sizeof(float));
        if ((rc = accumulate(g, op->in0, err)) != COVCT_OK)
            return rc;
        if ((rc = shape(&g->scratch, n, b->c, h, w, err)) != COVCT_OK)
            return rc;
        for (int i = 0; i < n; i++)
            memcpy(g->scratch.data + (size_t)i * pb,
                   dy + (size_t)i * (op->kind == COVCT_NN_ADD ? pa : pa + pb) +
                       (op->kind == COVCT_NN_ADD ? 0 : pa),
                   pb * sizeof(float));
        return accumulate(g, op->in1, err);
    }
    if ((rc = shape(&g->scratch, n, c, h, w, err)) != COVCT_OK)
        return rc;
    float *dx = g->scratch.data;
    switch (op->kind) {
    case COVCT_NN_CONV2D:
    case COVCT_NN_CONVT2D: {
        nn_conv_shape s = {.n = n, .c = c, .h = h, .w = w, .o = y->c,
                           .oh = y->h, .ow = y->w, .k = op->k,
                           .stride = op->stride, .pad = op->pad,
                           .dil = op->dil};
        float *db = op->bias ? pg[1].data : NULL;
        if (op->kind == COVCT_NN_CONVT2D && g->backend == COVCT_NN_FAST) {
            if ((rc = nn_dnnl_convt_bwd(&s, x->data, par[0].data, dy, dx,
                                        pg[0].data, db, err)) != COVCT_OK)
                return rc;
        } else if (op->kind == COVCT_NN_CONVT2D)
            nn_ref_convt_bwd(&s, x->data, par[0].data, dy, dx, pg[0].data,
                             db);
        else if (g->backend == COVCT_NN_FAST) {
            if ((rc = nn_dnnl_conv_bwd(&s, x->data, par[0].data, dy, dx,
                                       pg[0].data, NULL, err)) != COVCT_OK)
                return rc;
            /* The bias gradient sums N x H x W terms: in double here,
             * oneDNN's fp32 sum drifts by 1e-5 already on small images. */
            if (db)
                nn_bias_grad(s.n, s.o, (size_t)s.oh * s.ow, dy, db);
        } else
            nn_ref_conv_bwd(&s, x->data, par[0].data, dy, dx, pg[0].data, db);
        break;
    }
    case COVCT_NN_BATCHNORM:
        if (g->training) {
            nn_ref_bn_bwd(n, c, h * w, dy, op->xhat.data, op->invstd.data,
                          par[0].data, dx, pg[0].data, pg[1].data);
        } else {
            /* Inference: a fixed affine map per channel. */
            size_t hw = (size_t)h * w;
            for (int ch = 0; ch < c; ch++) {
                double is = 1.0 / sqrt((double)par[3].data[ch] + BN_EPS);
                double sg = 0, sb = 0;
                for (int b = 0; b < n; b++)
                    for (size_t i = 0; i < hw; i++) {
                        size_t j = ((size_t)b * c + ch) * hw + i;
                        double xh = (x->data[j] - par[2].data[ch]) * is;
                        sg += dy[j] * xh;
                        sb += dy[j];
                        dx[j] = (float)(dy[j] * par[0].data[ch] * is);
                    }
                pg[0].data[ch] += (float)sg;
                pg[1].data[ch] += (float)sb;
            }
        }
        break;
    case COVCT_NN_RELU:
    case COVCT_NN_LEAKYRELU: {
        float a = op->kind == COVCT_NN_RELU ? 0.0f : op->alpha;
        for (size_t i = 0; i < count; i++)
            dx[i] = x->data[i] > 0 ? dy[i] : a * dy[i];
        break;
    }
    case COVCT_NN_MAXPOOL2D:
        nn_ref_maxpool_bwd(n, c, h, w, op->k, dy, op->argmax, dx);
        break;
    case COVCT_NN_AVGPOOL2D:
        nn_ref_avgpool_bwd(n, c, h, w, op->k, dy, dx);
        break;
    case COVCT_NN_UPSAMPLE2X:
        nn_ref_upsample2x_bwd(n, c, h, w, dy, dx);
        break;
    case COVCT_NN_SIGMOID:
        for (size_t i = 0; i < count; i++)
            dx[i] = dy[i] * y->data[i] * (1.0f - y->data[i]);
        break;
    case COVCT_NN_SOFTMAX: {
        size_t hw = (size_t)h * w;
        for (int b = 0; b < n; b++)
            for (size_t p = 0; p < hw; p++) {
                size_t o = (size_t)b * c * hw + p;
                double dot = 0;
                for (int k = 0; k < c; k++)
                    dot += (double)dy[o + k * hw] * y->data[o + k * hw];
                for (int k = 0; k < c; k++)
                    dx[o + k * hw] =
                        (float)(y->data[o + k * hw] * (dy[o + k * hw] - dot));
            }
        break;
    }
    default:
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "nn: unknown operation %d",
                         (int)op->kind);
    }
    return accumulate(g, op->in0, err);
}

covct_rc covct_nn_backward(covct_nn_graph *g, int slot,
                           const covct_tensor *grad, covct_error *err)
{
    if (!g->val || slot < 0 || slot >= g->nslots || !g->val[slot].data)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "nn: backward from slot %d before a forward pass",
                         slot);
    const covct_tensor *v = &g->val[slot];
    if (!grad || grad->n != v->n || grad->c != v->c || grad->h != v->h ||
        grad->w != v->w)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "nn: gradient shape does not match slot %d "
                         "(%dx%dx%dx%d)",
                         slot, v->n, v->c, v->h, v->w);
    memset(g->has_grad, 0, (size_t)g->nslots);
    covct_rc rc = covct_tensor_alloc(&g->grad[slot], v->n, v->c, v->h, v->w,
                                     err);
    if (rc != COVCT_OK)
        return rc;
    memcpy(g->grad[slot].data, grad->data,
           covct_tensor_size(v) * sizeof(float));
    g->has_grad[slot] = 1;
    for (size_t i = g->nops; i-- > 0;) {
        nn_op *op = &g->ops[i];
        if (!g->has_grad[op->out])
            continue;
        rc = backward_op(g, op, err);
        if (rc != COVCT_OK) {
            covct_error_prefix(err, "operation %zu (%s), backward: ", i,
                               nn_op_name(op->kind));
            return rc;
        }
    }
    return COVCT_OK;
}

const covct_tensor *covct_nn_input_grad(const covct_nn_graph *g)
{
    if (!g->has_grad || !g->has_grad[0])
        return NULL;
    return &g->grad[0];
}

/* ---- losses ---------------------------------------------------------------------------- */

#define NN_MAX_CLASSES 64

static covct_rc loss_check(const covct_tensor *logits, const uint8_t *labels,
                           covct_tensor *grad, covct_error *err)
{
    if (!logits || !logits->data || !labels || !grad)
        return COVCT_ERR(err, COVCT_ERR_ARG, "nn loss: missing input");
    if (logits->c < 2 || logits->c > NN_MAX_CLASSES)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "nn loss: %d classes (2 to %d)", logits->c,
                         NN_MAX_CLASSES);
    size_t np = (size_t)logits->n * logits->h * logits->w;
    for (size_t i = 0; i < np; i++)
        if (labels[i] >= logits->c)
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "nn loss: label %u at pixel %zu, only %d classes",
                             labels[i], i, logits->c);
    return covct_tensor_alloc(grad, logits->n, logits->c, logits->h,
                              logits->w, err);
}

/* Softmax of pixel p of image b into prob (stride hw). */
static void softmax_px(const covct_tensor *t, int b, size_t p, double *prob)
{
    size_t hw = (size_t)t->h * t->w;
    const float *x = t->data + (size_t)b * t->c * hw + p;
    double mx = x[0], sum = 0;
    for (int k = 1; k < t->c; k++)
        if (x[k * hw] > mx)
            mx = x[k * hw];
    for (int k = 0; k < t->c; k++)
        sum += prob[k] = exp(x[k * hw] - mx);
    for (int k = 0; k < t->c; k++)
        prob[k] /= sum;
}

covct_rc covct_nn_loss_ce(const covct_tensor *logits, const uint8_t *labels,
                          covct_tensor *grad, double *loss, covct_error *err)
{
    covct_rc rc = loss_check(logits, labels, grad, err);
    if (rc != COVCT_OK)
        return rc;
    size_t hw = (size_t)logits->h * logits->w;
    double m = (double)logits->n * hw, total = 0, prob[NN_MAX_CLASSES];
    for (int b = 0; b < logits->n; b++)
        for (size_t p = 0; p < hw; p++) {
            softmax_px(logits, b, p, prob);
            int y = labels[(size_t)b * hw + p];
            total -= log(prob[y] > 1e-300 ? prob[y] : 1e-300);
            float *gp = grad->data + (size_t)b * logits->c * hw + p;
            for (int k = 0; k < logits->c; k++)
                gp[k * hw] = (float)((prob[k] - (k == y)) / m);
        }
    *loss = total / m;
    return COVCT_OK;
}

covct_rc covct_nn_loss_dice(const covct_tensor *logits,
                            const uint8_t *labels, covct_tensor *grad,
                            double *loss, covct_error *err)
{
    covct_rc rc = loss_check(logits, labels, grad, err);
    if (rc != COVCT_OK)
        return rc;
    int K = logits->c;
    size_t hw = (size_t)logits->h * logits->w;
    const double eps = 1.0;
    double inter[NN_MAX_CLASSES] = {0}, sum[NN_MAX_CLASSES] = {0};
    double prob[NN_MAX_CLASSES];
    for (int b = 0; b < logits->n; b++)
        for (size_t p = 0; p < hw; p++) {
            softmax_px(logits, b, p, prob);
            int y = labels[(size_t)b * hw + p];
            for (int k = 1; k < K; k++) {
                inter[k] += prob[k] * (k == y);
                sum[k] += prob[k] + (k == y);
            }
        }
    double dsum = 0;
    for (int k = 1; k < K; k++)
        dsum += (2 * inter[k] + eps) / (sum[k] + eps);
    *loss = 1.0 - dsum / (K - 1);
    /* dL/dp_k = -(2 y_k (S_k + eps) - (2 I_k + eps)) / ((K-1)(S_k + eps)^2),
     * then through the softmax: dz_c = p_c (dp_c - sum_j p_j dp_j). */
    double dp[NN_MAX_CLASSES];
    for (int b = 0; b < logits->n; b++)
        for (size_t p = 0; p < hw; p++) {
            softmax_px(logits, b, p, prob);
            int y = labels[(size_t)b * hw + p];
            double dot = 0;
            dp[0] = 0;
            for (int k = 1; k < K; k++) {
                double s = sum[k] + eps;
                dp[k] = -(2.0 * (k == y) * s - (2 * inter[k] + eps)) /
                        ((K - 1) * s * s);
                dot += prob[k] * dp[k];
            }
            float *gp = grad->data + (size_t)b * K * hw + p;
            for (int k = 0; k < K; k++)
                gp[k * hw] = (float)(prob[k] * (dp[k] - dot));
        }
    return COVCT_OK;
}

covct_rc covct_nn_loss_dice_infection(const covct_tensor *logits,
                                      const uint8_t *labels,
                                      covct_tensor *grad, double *loss,
                                      covct_error *err)
{
    covct_rc rc = loss_check(logits, labels, grad, err);
    if (rc != COVCT_OK)
        return rc;
    int K = logits->c;
    size_t hw = (size_t)logits->h * logits->w;
    const double eps = 1.0;
    double inter = 0, sum = 0, prob[NN_MAX_CLASSES];
    for (int b = 0; b < logits->n; b++)
        for (size_t p = 0; p < hw; p++) {
            softmax_px(logits, b, p, prob);
            int y = labels[(size_t)b * hw + p] != 0;
            double q = 1.0 - prob[0];
            inter += q * y;
            sum += q + y;
        }
    double s = sum + eps;
    *loss = 1.0 - (2 * inter + eps) / s;
    /* dL/dq = -(2 y s - (2 I + eps)) / s^2 and q = 1 - p_0, so only dp_0 =
     * -dL/dq is non-zero; through the softmax dz_c = p_c (dp_c - p_0 dp_0). */
    for (int b = 0; b < logits->n; b++)
        for (size_t p = 0; p < hw; p++) {
            softmax_px(logits, b, p, prob);
            int y = labels[(size_t)b * hw + p] != 0;
            double dp0 = (2.0 * y * s - (2 * inter + eps)) / (s * s);
            float *gp = grad->data + (size_t)b * K * hw + p;
            for (int k = 0; k < K; k++)
                gp[k * hw] = (float)(prob[k] * ((k == 0) * dp0 - prob[0] * dp0));
        }
    return COVCT_OK;
}

/* ---- AdamW ------------------------------------------------------------------------------- */

void covct_nn_adam_init(covct_nn_adam *a, double lr, double weight_decay)
{
    memset(a, 0, sizeof *a);
    a->lr = lr;
    a->beta1 = 0.9;
    a->beta2 = 0.999;
    a->eps = 1e-8;
    a->weight_decay = weight_decay;
}

void covct_nn_adam_free(covct_nn_adam *a)
{
    for (size_t i = 0; i < a->n; i++) {
        covct_tensor_free(&a->m[i]);
        covct_tensor_free(&a->v[i]);
    }
    covct_free(a->m);
    covct_free(a->v);
    a->m = a->v = NULL;
    a->n = 0;
}

/* As torch.optim.AdamW (amsgrad off): decay first, then the Adam step. */
covct_rc covct_nn_adam_step(covct_nn_adam *a, covct_nn_graph *g,
                            covct_error *err)
{
    if (!a->m) {
        a->m = covct_calloc(g->npar ? g->npar : 1, sizeof *a->m);
        a->v = covct_calloc(g->npar ? g->npar : 1, sizeof *a->v);
        if (!a->m || !a->v) {
            covct_free(a->m);
            covct_free(a->v);
            a->m = a->v = NULL;
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "cannot allocate the optimiser state");
        }
        a->n = g->npar;
        for (size_t i = 0; i < g->npar; i++) {
            const covct_tensor *p = &g->par[i];
            if (g->buffer[i])
                continue;
            if (covct_tensor_alloc(&a->m[i], p->n, p->c, p->h, p->w, err) ||
                covct_tensor_alloc(&a->v[i], p->n, p->c, p->h, p->w, err)) {
                covct_nn_adam_free(a);
                return COVCT_ERR_NOMEM;
            }
        }
    } else if (a->n != g->npar) {
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "optimiser state is for %zu parameters, the network "
                         "has %zu",
                         a->n, g->npar);
    }
    a->t++;
    double bc1 = 1 - pow(a->beta1, (double)a->t);
    double bc2 = sqrt(1 - pow(a->beta2, (double)a->t));
    double step = a->lr / bc1;
    for (size_t i = 0; i < g->npar; i++) {
        if (g->buffer[i])
            continue;
        float *p = g->par[i].data, *gr = g->pgrad[i].data;
        float *m = a->m[i].data, *v = a->v[i].data;
        size_t count = covct_tensor_size(&g->par[i]);
        for (size_t j = 0; j < count; j++) {
            p[j] *= (float)(1 - a->lr * a->weight_decay);
            m[j] = (float)(a->beta1 * m[j] + (1 - a->beta1) * gr[j]);
            v[j] = (float)(a->beta2 * v[j] + (1 - a->beta2) * gr[j] * gr[j]);
            p[j] -= (float)(step * m[j] / (sqrt(v[j]) / bc2 + a->eps));
        }
    }
    return COVCT_OK;
}
