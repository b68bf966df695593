/*
 * oneDNN convolutions and transposed convolutions of the nn module, with
 * the contracts of the reference kernels (nn_int.h): plain NCHW
 * activations, OIHW weights for convolutions and IOHW ones (PyTorch's
 * in x out x k x k) for transposed convolutions, backward overwriting dx
 * and accumulating into dw and db.
 *
 * The primitives are created with format_tag_any so that oneDNN picks
 * its blocked layouts (nChw16c, OIhw16i16o, ...) and its JIT kernels;
 * plain buffers are reordered into and out of those layouts around each
 * call.  Forcing the plain layouts makes oneDNN fall back to its gemm
 * kernels: on a 32-channel 128x128 3x3 layer (AVX-512, 2 cores) forward
 * took 1.5 times and backward 4 to 5 times as long, reorders included.
 * Weight and bias gradients come out of a reorder with a sum post-op
 * (dst = reorder(src) + dst), which is the accumulation the contract asks
 * for; backward weights itself accepts no post-ops.
 *
 * Transposed convolutions use oneDNN's deconvolution primitives.  Their
 * weights have the logical dimensions (output channels, input channels,
 * k, k) of the deconvolution; PyTorch stores input channels first, which
 * is oneDNN's iohw tag (dnnl_bacd) on those dimensions.  No kernel flip:
 * both compute y[o][iy*s - p + ky][ix*s - p + kx] += x[c][iy][ix] *
 * w[c][o][ky][kx].  The bias gradient of a transposed convolution is
 * summed here in double rather than by oneDNN in float (which drifts by
 * 1e-5 already on small images, as the graph code notes for convolutions).
 *
 * Creating a primitive costs far more than running it on a small tensor,
 * so the primitives are kept per shape and kind (convolution or
 * transposed) in a small LRU cache.  The blocked copies of the tensors
 * live in scratch buffers shared by all shapes and grown on demand, so
 * the cache holds no tensor-sized memory.
 *
 * Thread compatibility: the engine, the stream, the cache and the scratch
 * buffers are process-wide and unlocked, so these functions must be
 * called by one thread at a time (oneDNN itself runs each primitive on
 * its OpenMP threads).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "nn/nn_int.h"

/* Enough for the distinct convolutions of a U-Net at a few input sizes
 * (forward and backward of every level, encoder and decoder). */
#define CACHE_SIZE 32
/* Arguments of one convolution: src, weights, dst, bias. */
#define MAX_ARGS 4
/* Cache-line alignment for the blocked copies, as oneDNN allocates its own. */
#define SCRATCH_ALIGN 64
/* Room for a shape as written by shape_str. */
#define SHAPE_LEN 160

/* How an argument flows: read, written, or accumulated (+=) into. */
enum { ARG_IN, ARG_OUT, ARG_ACC };

/* What a cache entry computes: a convolution or a transposed one. */
enum { KIND_CONV, KIND_CONVT, NKINDS };

/* Per kind: names for messages and the caller's weight layout. */
static const struct kind_info {
    const char *fwd, *bwd, *bwd_data, *bwd_w;
    dnnl_format_tag_t wtag; /* on the dims (o, c, k, k) */
} KINDS[NKINDS] = {
    {"convolution forward", "convolution backward",
     "convolution backward data", "convolution backward weights", dnnl_oihw},
    {"transposed convolution forward", "transposed convolution backward",
     "transposed convolution backward data",
     "transposed convolution backward weights", dnnl_iohw},
};

typedef struct conv_arg {
    int id;                   /* DNNL_ARG_* */
    int flow;                 /* ARG_IN, ARG_OUT, ARG_ACC */
    dnnl_memory_t user;       /* the caller's plain buffer */
    dnnl_memory_t inner;      /* in the primitive's layout; NULL: use user */
    dnnl_primitive_t reorder; /* user -> inner (in), inner -> user (out) */
    size_t bytes;             /* size of inner */
} conv_arg;

typedef struct conv_op {
    dnnl_primitive_t prim; /* NULL until first used */
    int nargs;
    conv_arg args[MAX_ARGS];
} conv_op;

typedef struct conv_entry {
    int valid;
    uint64_t stamp; /* last use, for LRU eviction; 0 when free */
    int kind;       /* KIND_CONV, KIND_CONVT; part of the key */
    nn_conv_shape key;
    /* Backward descriptors need a forward one as a hint. */
    dnnl_primitive_desc_t hint;
    conv_op fwd[2];   /* without, with bias */
    conv_op bwd_data;
    conv_op bwd_w[2]; /* without, with bias gradient (convolutions only) */
} conv_entry;

static struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    uint64_t clock;
    conv_entry cache[CACHE_SIZE];
    void *scratch_raw[MAX_ARGS];
    void *scratch[MAX_ARGS]; /* scratch_raw aligned to SCRATCH_ALIGN */
    size_t scratch_cap[MAX_ARGS];
} G;

/* Memory descriptors and geometry of one convolution shape. */
typedef struct conv_geom {
    dnnl_memory_desc_t x, w, y;    /* format_tag_any */
    dnnl_memory_desc_t px, pw, py; /* plain NCHW, OIHW or IOHW, NCHW */
    dnnl_memory_desc_t b;          /* bias, plain in every layout */
    dnnl_dims_t strides, dilates, pad;
} conv_geom;

/* "1x16x32x32 -> 8 (k2 s2 p0)", with " d1" for convolutions. */
static const char *shape_str(char *buf, int kind, const nn_conv_shape *s)
{
    int len = snprintf(buf, SHAPE_LEN, "%dx%dx%dx%d -> %d (k%d s%d p%d",
                       s->n, s->c, s->h, s->w, s->o, s->k, s->stride, s->pad);
    if (len < 0 || len >= SHAPE_LEN)
        return buf;
    if (kind == KIND_CONV)
        snprintf(buf + len, (size_t)(SHAPE_LEN - len), " d%d)", s->dil);
    else
        snprintf(buf + len, (size_t)(SHAPE_LEN - len), ")");
    return buf;
}

static covct_rc rc_of(dnnl_status_t st)
{
    switch (st) {
    case dnnl_out_of_memory: return COVCT_ERR_NOMEM;
    case dnnl_unimplemented: return COVCT_ERR_UNSUPPORTED;
    case dnnl_invalid_arguments: return COVCT_ERR_ARG;
    default: return COVCT_ERR_INTERNAL;
    }
}

static covct_rc fail(dnnl_status_t st, int kind, const char *what,
                     const nn_conv_shape *s, covct_error *err)
{
    char buf[SHAPE_LEN];
    return COVCT_ERR(err, rc_of(st), "oneDNN %s %s: %s", what,
                     shape_str(buf, kind, s), dnnl_status2str(st));
}

static dnnl_status_t geom_init(conv_geom *g, int kind, const nn_conv_shape *s)
{
    dnnl_dims_t dx = {s->n, s->c, s->h, s->w};
    dnnl_dims_t dw = {s->o, s->c, s->k, s->k};
    dnnl_dims_t dy = {s->n, s->o, s->oh, s->ow};
    dnnl_dims_t db = {s->o};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&g->x, 4, dx, dnnl_f32,
                                           dnnl_format_tag_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&g->w, 4, dw, dnnl_f32,
                                           dnnl_format_tag_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&g->y, 4, dy, dnnl_f32,
                                           dnnl_format_tag_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&g->px, 4, dx, dnnl_f32,
                                           dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(&g->pw, 4, dw, dnnl_f32,
                                           KINDS[kind].wtag)) ||
        (st = dnnl_memory_desc_init_by_tag(&g->py, 4, dy, dnnl_f32,
                                           dnnl_nchw)) ||
        (st = dnnl_memory_desc_init_by_tag(&g->b, 1, db, dnnl_f32, dnnl_x)))
        return st;
    /* oneDNN counts dilation from 0 (no gaps), PyTorch from 1; transposed
     * convolutions have none (the reference ignores s->dil). */
    for (int i = 0; i < 2; i++) {
        g->strides[i] = s->stride;
        g->dilates[i] = kind == KIND_CONV ? s->dil - 1 : 0;
        g->pad[i] = s->pad;
    }
    return dnnl_success;
}

static void op_free(conv_op *op)
{
    for (int i = 0; i < op->nargs; i++) {
        conv_arg *a = &op->args[i];
        dnnl_primitive_destroy(a->reorder);
        dnnl_memory_destroy(a->inner);
        dnnl_memory_destroy(a->user);
    }
    dnnl_primitive_destroy(op->prim);
    memset(op, 0, sizeof *op);
}

/* A reorder between the plain and the primitive's layout; for ARG_ACC
 * with a sum post-op so that the destination is added to, not replaced. */
static dnnl_status_t reorder_create(conv_arg *a, const dnnl_memory_desc_t *pl,
                                    const dnnl_memory_desc_t *md)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_success;
    if (a->flow == ARG_ACC &&
        ((st = dnnl_primitive_attr_create(&attr)) ||
         (st = dnnl_post_ops_create(&po)) ||
         (st = dnnl_post_ops_append_sum(po, 1.0f)) ||
         (st = dnnl_primitive_attr_set_post_ops(attr, po))))
        goto done;
    if (a->flow == ARG_IN)
        st = dnnl_reorder_primitive_desc_create(&pd, pl, G.engine, md,
                                                G.engine, attr);
    else
        st = dnnl_reorder_primitive_desc_create(&pd, md, G.engine, pl,
                                                G.engine, attr);
    if (!st)
        st = dnnl_primitive_create(&a->reorder, pd);
done:
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Create op (one of e's) for `desc` and, per argument, the caller-side
 * memory (plain layout pl[i]) and, when the primitive wants another
 * layout or the argument accumulates, the inner memory and its reorder. */
static covct_rc op_init(const conv_entry *e, conv_op *op,
                        const_dnnl_op_desc_t desc,
                        const_dnnl_primitive_desc_t hint, int nargs,
                        const int *ids, const int *flows,
                        const dnnl_memory_desc_t *const *pl, const char *what,
                        covct_error *err)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, desc, NULL, G.engine,
                                                  hint);
    if (!st)
        st = dnnl_primitive_create(&op->prim, pd);
    for (int i = 0; !st && i < nargs; i++) {
        conv_arg *a = &op->args[i];
        const dnnl_memory_desc_t *md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, ids[i]);
        op->nargs = i + 1;
        a->id = ids[i];
        a->flow = flows[i];
        if (!md) {
            st = dnnl_runtime_error;
            break;
        }
        st = dnnl_memory_create(&a->user, pl[i], G.engine, DNNL_MEMORY_NONE);
        if (st || (a->flow != ARG_ACC && dnnl_memory_desc_equal(md, pl[i])))
            continue;
        a->bytes = dnnl_memory_desc_get_size(md);
        st = dnnl_memory_create(&a->inner, md, G.engine, DNNL_MEMORY_NONE);
        if (!st)
            st = reorder_create(a, pl[i], md);
    }
    if (!st) {
        const char *impl = NULL;
        char buf[SHAPE_LEN];
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        covct_log(COVCT_LOG_DEBUG, "oneDNN %s %s: %s", what,
                  shape_str(buf, e->kind, &e->key), impl ? impl : "?");
    }
    dnnl_primitive_desc_destroy(pd);
    if (st) {
        op_free(op);
        return fail(st, e->kind, what, &e->key, err);
    }
    return COVCT_OK;
}

/* A scratch buffer of at least `bytes` for argument slot i. */
static void *scratch_get(int i, size_t bytes)
{
    if (G.scratch_cap[i] < bytes) {
        COVCT_FREE(G.scratch_raw[i]);
        G.scratch[i] = NULL;
        G.scratch_cap[i] = 0;
        if (bytes > SIZE_MAX - SCRATCH_ALIGN)
            return NULL;
        G.scratch_raw[i] = covct_malloc(bytes + SCRATCH_ALIGN - 1);
        if (!G.scratch_raw[i])
            return NULL;
        G.scratch[i] = (void *)(((uintptr_t)G.scratch_raw[i] +
                                 SCRATCH_ALIGN - 1) &
                                ~(uintptr_t)(SCRATCH_ALIGN - 1));
        G.scratch_cap[i] = bytes;
    }
    return G.scratch[i];
}

static dnnl_status_t reorder_run(dnnl_primitive_t r, dnnl_memory_t from,
                                 dnnl_memory_t to)
{
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return dnnl_primitive_execute(r, G.stream, 2, args);
}

/* Run op (one of e's) on the caller's buffers ptr[i] (one per argument,
 * in the order of op_init).  A NULL pointer is allowed for an accumulated
 * argument: the primitive still computes it, the result is dropped. */
static covct_rc op_run(const conv_entry *e, conv_op *op, void *const *ptr,
                       const char *what, covct_error *err)
{
    dnnl_exec_arg_t args[MAX_ARGS];
    dnnl_status_t st = dnnl_success;
    for (int i = 0; !st && i < op->nargs; i++) {
        conv_arg *a = &op->args[i];
        args[i].arg = a->id;
        args[i].memory = a->inner ? a->inner : a->user;
        if (ptr[i])
            st = dnnl_memory_set_data_handle(a->user, ptr[i]);
        if (st || !a->inner)
            continue;
        void *buf = scratch_get(i, a->bytes);
        if (!buf) {
            char sbuf[SHAPE_LEN];
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "oneDNN %s %s: no memory for a %zu-byte "
                             "scratch buffer", what,
                             shape_str(sbuf, e->kind, &e->key), a->bytes);
        }
        st = dnnl_memory_set_data_handle(a->inner, buf);
        if (!st && a->flow == ARG_IN)
            st = reorder_run(a->reorder, a->user, a->inner);
    }
    if (!st)
        st = dnnl_primitive_execute(op->prim, G.stream, op->nargs, args);
    for (int i = 0; !st && i < op->nargs; i++) {
        conv_arg *a = &op->args[i];
        if (a->flow != ARG_IN && a->inner && ptr[i])
            st = reorder_run(a->reorder, a->inner, a->user);
    }
    if (!st)
        st = dnnl_stream_wait(G.stream);
    return st ? fail(st, e->kind, what, &e->key, err) : COVCT_OK;
}

static void entry_free(conv_entry *e)
{
    for (int i = 0; i < 2; i++) {
        op_free(&e->fwd[i]);
        op_free(&e->bwd_w[i]);
    }
    op_free(&e->bwd_data);
    dnnl_primitive_desc_destroy(e->hint);
    memset(e, 0, sizeof *e);
}

static int shape_eq(const nn_conv_shape *a, const nn_conv_shape *b)
{
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w &&
           a->o == b->o && a->oh == b->oh && a->ow == b->ow &&
           a->k == b->k && a->stride == b->stride && a->pad == b->pad &&
           a->dil == b->dil;
}

/* The cache entry of (kind, s), evicting the least recently used one when
 * it is new; creates the engine and stream on first use. */
static covct_rc entry_get(int kind, const nn_conv_shape *s, conv_entry **out,
                          covct_error *err)
{
    dnnl_status_t st = dnnl_success;
    if (!G.engine)
        st = dnnl_engine_create(&G.engine, dnnl_cpu, 0);
    if (!st && !G.stream)
        st = dnnl_stream_create(&G.stream, G.engine,
                                dnnl_stream_default_flags);
    if (st)
        return COVCT_ERR(err, rc_of(st), "oneDNN CPU engine: %s",
                         dnnl_status2str(st));
    conv_entry *victim = &G.cache[0];
    for (int i = 0; i < CACHE_SIZE; i++) {
        conv_entry *e = &G.cache[i];
        if (e->valid && e->kind == kind && shape_eq(&e->key, s)) {
            e->stamp = ++G.clock;
            *out = e;
            return COVCT_OK;
        }
        if (e->stamp < victim->stamp)
            victim = e;
    }
    entry_free(victim);
    victim->valid = 1;
    victim->kind = kind;
    victim->key = *s;
    victim->stamp = ++G.clock;
    *out = victim;
    return COVCT_OK;
}

static dnnl_status_t fwd_desc(dnnl_convolution_desc_t *cd, int kind,
                              const conv_geom *g, int bias)
{
    const dnnl_memory_desc_t *b = bias ? &g->b : NULL;
    if (kind == KIND_CONVT)
        return dnnl_dilated_deconvolution_forward_desc_init(
            cd, dnnl_forward_training, dnnl_deconvolution_direct, &g->x,
            &g->w, b, &g->y, g->strides, g->dilates, g->pad, g->pad);
    return dnnl_dilated_convolution_forward_desc_init(
        cd, dnnl_forward_training, dnnl_convolution_direct, &g->x, &g->w, b,
        &g->y, g->strides, g->dilates, g->pad, g->pad);
}

static covct_rc any_fwd(int kind, const nn_conv_shape *s, const float *x,
                        const float *w, const float *b, float *y,
                        covct_error *err)
{
    const char *what = KINDS[kind].fwd;
    conv_entry *e;
    covct_rc rc = entry_get(kind, s, &e, err);
    if (rc)
        return rc;
    conv_op *op = &e->fwd[b != NULL];
    if (!op->prim) {
        conv_geom g;
        dnnl_convolution_desc_t cd;
        dnnl_status_t st = geom_init(&g, kind, s);
        if (!st)
            st = fwd_desc(&cd, kind, &g, b != NULL);
        if (st)
            return fail(st, kind, what, s, err);
        static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS,
                                  DNNL_ARG_DST, DNNL_ARG_BIAS};
        static const int flows[] = {ARG_IN, ARG_IN, ARG_OUT, ARG_IN};
        const dnnl_memory_desc_t *pl[] = {&g.px, &g.pw, &g.py, &g.b};
        rc = op_init(e, op, &cd, NULL, b ? 4 : 3, ids, flows, pl, what,
                     err);
        if (rc)
            return rc;
    }
    void *ptr[] = {(void *)x, (void *)w, y, (void *)b};
    return op_run(e, op, ptr, what, err);
}

static covct_rc bwd_data_init(conv_entry *e, const conv_geom *g,
                              covct_error *err)
{
    const char *what = KINDS[e->kind].bwd_data;
    dnnl_convolution_desc_t cd;
    dnnl_status_t st =
        e->kind == KIND_CONVT
            ? dnnl_dilated_deconvolution_backward_data_desc_init(
                  &cd, dnnl_deconvolution_direct, &g->x, &g->w, &g->y,
                  g->strides, g->dilates, g->pad, g->pad)
            : dnnl_dilated_convolution_backward_data_desc_init(
                  &cd, dnnl_convolution_direct, &g->x, &g->w, &g->y,
                  g->strides, g->dilates, g->pad, g->pad);
    if (st)
        return fail(st, e->kind, what, &e->key, err);
    static const int ids[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS,
                              DNNL_ARG_DIFF_SRC};
    static const int flows[] = {ARG_IN, ARG_IN, ARG_OUT};
    const dnnl_memory_desc_t *pl[] = {&g->py, &g->pw, &g->px};
    return op_init(e, &e->bwd_data, &cd, e->hint, 3, ids, flows, pl, what,
                   err);
}

static covct_rc bwd_w_init(conv_entry *e, const conv_geom *g, int bias,
                           covct_error *err)
{
    const char *what = KINDS[e->kind].bwd_w;
    const dnnl_memory_desc_t *b = bias ? &g->b : NULL;
    dnnl_convolution_desc_t cd;
    dnnl_status_t st =
        e->kind == KIND_CONVT
            ? dnnl_dilated_deconvolution_backward_weights_desc_init(
                  &cd, dnnl_deconvolution_direct, &g->x, &g->w, b, &g->y,
                  g->strides, g->dilates, g->pad, g->pad)
            : dnnl_dilated_convolution_backward_weights_desc_init(
                  &cd, dnnl_convolution_direct, &g->x, &g->w, b, &g->y,
                  g->strides, g->dilates, g->pad, g->pad);
    if (st)
        return fail(st, e->kind, what, &e->key, err);
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST,
                              DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    static const int flows[] = {ARG_IN, ARG_IN, ARG_ACC, ARG_ACC};
    const dnnl_memory_desc_t *pl[] = {&g->px, &g->py, &g->pw, &g->b};
    return op_init(e, &e->bwd_w[bias], &cd, e->hint, bias ? 4 : 3, ids,
                   flows, pl, what, err);
}

/* Backward of either kind; a non-NULL db has oneDNN compute the bias
 * gradient along with dw (nn_dnnl_convt_bwd sums it itself instead). */
static covct_rc any_bwd(int kind, const nn_conv_shape *s, const float *x,
                        const float *w, const float *dy, float *dx,
                        float *dw, float *db, covct_error *err)
{
    conv_entry *e;
    covct_rc rc = entry_get(kind, s, &e, err);
    if (rc)
        return rc;
    int bias = db != NULL;
    if ((dx && !e->bwd_data.prim) || ((dw || db) && !e->bwd_w[bias].prim)) {
        conv_geom g;
        dnnl_convolution_desc_t cd;
        dnnl_status_t st = geom_init(&g, kind, s);
        if (!st && !e->hint) {
            st = fwd_desc(&cd, kind, &g, 1);
            if (!st)
                st = dnnl_primitive_desc_create(&e->hint, &cd, NULL,
                                                G.engine, NULL);
        }
        if (st)
            return fail(st, kind, KINDS[kind].bwd, s, err);
        if (dx && !e->bwd_data.prim && (rc = bwd_data_init(e, &g, err)))
            return rc;
        if ((dw || db) && !e->bwd_w[bias].prim &&
            (rc = bwd_w_init(e, &g, bias, err)))
            return rc;
    }
    if (dx) {
        void *ptr[] = {(void *)dy, (void *)w, dx};
        if ((rc = op_run(e, &e->bwd_data, ptr, KINDS[kind].bwd_data, err)))
            return rc;
    }
    if (dw || db) {
        void *ptr[] = {(void *)x, (void *)dy, dw, db};
        return op_run(e, &e->bwd_w[bias], ptr, KINDS[kind].bwd_w, err);
    }
    return COVCT_OK;
}

covct_rc nn_dnnl_conv_fwd(const nn_conv_shape *s, const float *x,
                          const float *w, const float *b, float *y,
                          covct_error *err)
{
    return any_fwd(KIND_CONV, s, x, w, b, y, err);
}

covct_rc nn_dnnl_conv_bwd(const nn_conv_shape *s, const float *x,
                          const float *w, const float *dy, float *dx,
                          float *dw, float *db, covct_error *err)
{
    return any_bwd(KIND_CONV, s, x, w, dy, dx, dw, db, err);
}

covct_rc nn_dnnl_convt_fwd(const nn_conv_shape *s, const float *x,
                           const float *w, const float *b, float *y,
                           covct_error *err)
{
    return any_fwd(KIND_CONVT, s, x, w, b, y, err);
}

covct_rc nn_dnnl_convt_bwd(const nn_conv_shape *s, const float *x,
                           const float *w, const float *dy, float *dx,
                           float *dw, float *db, covct_error *err)
{
    /* dx and dw from oneDNN; with neither asked for no primitive is
     * needed (nor the engine). */
    if (dx || dw) {
        covct_rc rc = any_bwd(KIND_CONVT, s, x, w, dy, dx, dw, NULL, err);
        if (rc)
            return rc;
    }
    /* db += sum of dy over batch and pixels, in double. */
    if (db)
        nn_bias_grad(s->n, s->o, (size_t)s->oh * s->ow, dy, db);
    return COVCT_OK;
}

void nn_dnnl_release(void)
{
    for (int i = 0; i < CACHE_SIZE; i++)
        entry_free(&G.cache[i]);
    for (int i = 0; i < MAX_ARGS; i++)
        covct_free(G.scratch_raw[i]);
    if (G.stream)
        dnnl_stream_destroy(G.stream);
    if (G.engine)
        dnnl_engine_destroy(G.engine);
    memset(&G, 0, sizeof G);
}
