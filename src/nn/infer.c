/*
 * Inference plans: a graph compiled once for one input shape into a list
 * of oneDNN primitives (docs/internals/nn.md, "Inference plans").
 *
 * What the graph's forward pass does op by op on plain NCHW buffers, a
 * plan does in the layouts oneDNN picks for its JIT kernels (nChw16c on
 * AVX-512), without going back to plain in between:
 *  - a batch norm that follows a convolution (or a transposed one) is
 *    folded into its weights and bias: w' = w g / sqrt(v + eps),
 *    b' = (b - m) g / sqrt(v + eps) + beta, per output channel;
 *  - a ReLU or leaky ReLU after that runs as the convolution's post-op;
 *  - weights are reordered into the kernel's layout once, here;
 *  - pooling, upsampling, concatenation, addition, sigmoid and softmax run
 *    as oneDNN primitives on the blocked tensors;
 *  - a reorder is inserted only where a consumer wants another layout
 *    than its producer wrote.
 * The plan copies (folds) the parameters: it is a snapshot of the graph
 * and does not see later training steps.
 *
 * Thread compatibility: one plan is run by one thread at a time; oneDNN
 * runs each primitive on its OpenMP threads.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "covct/nn.h"
#include "nn/nn_int.h"

#define MAX_STEP_ARGS 5

typedef struct step {
    dnnl_primitive_t prim; /* NULL: the depth-to-space copy below */
    int nargs;
    dnnl_exec_arg_t args[MAX_STEP_ARGS];
    /* depth to space: args[0] the 1x1 convolution's output z (n, 4o, h,
     * w), args[1] the result (n, o, 2h, 2w), both nChw16c */
    int n, o, h, w;
} step;

struct covct_nn_plan {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    step *steps;
    size_t nsteps, steps_cap;
    dnnl_memory_t *mems; /* every memory the plan owns */
    void **bufs;         /* their data, allocated here (see mem_new) */
    /* oneDNN's scratch space, given by the plan (user scratchpad mode):
     * its library mode keeps a buffer per thread that outlives worker
     * threads.  One buffer, shared by the steps (they run one after the
     * other), seen through one memory per step. */
    dnnl_primitive_attr_t attr; /* user scratchpad mode, no post-ops */
    dnnl_memory_t *scratch;
    size_t nscratch, scratch_cap, scratch_size;
    void *scratch_buf;
    size_t nmems, mems_cap;
    dnnl_memory_t *slot; /* per graph slot: where its value lives */
    dnnl_memory_desc_t *slot_md;
    unsigned char *moved; /* per slot: its memory now points into a
                           * concatenation's buffer */
    dnnl_memory_t in_user, out_user; /* plain NCHW, caller's buffers */
    int n, in_c, h, w;
    int out_c, out_h, out_w;
};

static covct_rc dnnl_fail(dnnl_status_t st, size_t op, covct_nn_op_kind k,
                          const char *what, covct_error *err)
{
    covct_rc rc = st == dnnl_out_of_memory   ? COVCT_ERR_NOMEM
                  : st == dnnl_unimplemented ? COVCT_ERR_UNSUPPORTED
                                             : COVCT_ERR_INTERNAL;
    return COVCT_ERR(err, rc, "nn plan: operation %zu (%s): oneDNN %s: %s",
                     op, nn_op_name(k), what, dnnl_status2str(st));
}

/* ---- owned memories and steps ---------------------------------------------- */

/* A memory of the plan.  With DNNL_MEMORY_ALLOCATE its data is allocated
 * here rather than by oneDNN: a memory whose data handle is later moved
 * (concat_in_place) would otherwise keep oneDNN's buffer allocated to the
 * end, unreachable; this one is freed by buf_release. */
static dnnl_status_t mem_new(covct_nn_plan *p, const dnnl_memory_desc_t *md,
                             void *handle, dnnl_memory_t *out)
{
    if (p->nmems == p->mems_cap) {
        size_t cap = p->mems_cap ? 2 * p->mems_cap : 64;
        dnnl_memory_t *m = covct_realloc(p->mems, cap * sizeof *m);
        void **b = m ? covct_realloc(p->bufs, cap * sizeof *b) : NULL;
        if (m)
            p->mems = m;
        if (!b)
            return dnnl_out_of_memory;
        p->bufs = b;
        p->mems_cap = cap;
    }
    void *buf = NULL;
    if (handle == DNNL_MEMORY_ALLOCATE) {
        size_t size = dnnl_memory_desc_get_size(md);
        if (posix_memalign(&buf, 64, size ? size : 64))
            return dnnl_out_of_memory;
        handle = buf;
    }
    dnnl_status_t st = dnnl_memory_create(out, md, p->eng, handle);
    if (st) {
        free(buf);
        return st;
    }
    p->bufs[p->nmems] = buf;
    p->mems[p->nmems++] = *out;
    return st;
}

/* Free the data allocated for memory m (its handle is moved elsewhere). */
static void buf_release(covct_nn_plan *p, dnnl_memory_t m)
{
    for (size_t i = 0; i < p->nmems; i++)
        if (p->mems[i] == m) {
            free(p->bufs[i]);
            p->bufs[i] = NULL;
        }
}

/* Append a step; takes ownership of prim (destroyed on failure too). */
static dnnl_status_t step_add(covct_nn_plan *p, dnnl_primitive_t prim,
                              int nargs, const int *ids,
                              const dnnl_memory_t *mems)
{
    if (p->nsteps == p->steps_cap) {
        size_t cap = p->steps_cap ? 2 * p->steps_cap : 64;
        step *s = covct_realloc(p->steps, cap * sizeof *s);
        if (!s) {
            dnnl_primitive_destroy(prim);
            return dnnl_out_of_memory;
        }
        p->steps = s;
        p->steps_cap = cap;
    }
    step *s = &p->steps[p->nsteps++];
    s->prim = prim;
    s->nargs = nargs;
    for (int i = 0; i < nargs; i++) {
        s->args[i].arg = ids[i];
        s->args[i].memory = mems[i];
    }
    return dnnl_success;
}

/* Create the primitive of pd (destroyed here) and append it as a step,
 * with a scratchpad argument when it wants one. */
static dnnl_status_t prim_step(covct_nn_plan *p, dnnl_primitive_desc_t pd,
                               int nargs, const int *ids,
                               const dnnl_memory_t *mems)
{
    int all_ids[MAX_STEP_ARGS];
    dnnl_memory_t all[MAX_STEP_ARGS];
    memcpy(all_ids, ids, (size_t)nargs * sizeof *ids);
    memcpy(all, mems, (size_t)nargs * sizeof *mems);
    dnnl_status_t st = dnnl_success;
    const dnnl_memory_desc_t *smd =
        dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (need > 0 && nargs < MAX_STEP_ARGS) {
        if (p->nscratch == p->scratch_cap) {
            size_t cap = p->scratch_cap ? 2 * p->scratch_cap : 32;
            dnnl_memory_t *m = covct_realloc(p->scratch, cap * sizeof *m);
            if (!m)
                st = dnnl_out_of_memory;
            else
                p->scratch = m, p->scratch_cap = cap;
        }
        if (!st)
            st = mem_new(p, smd, DNNL_MEMORY_NONE, &all[nargs]);
        if (!st) {
            p->scratch[p->nscratch++] = all[nargs];
            all_ids[nargs++] = DNNL_ARG_SCRATCHPAD;
            if (need > p->scratch_size)
                p->scratch_size = need;
        }
    } else if (need > 0) {
        st = dnnl_runtime_error; /* no room for the argument */
    }
    dnnl_primitive_t prim = NULL;
    if (!st)
        st = dnnl_primitive_create(&prim, pd);
    dnnl_primitive_desc_destroy(pd);
    return st ? st : step_add(p, prim, nargs, all_ids, all);
}

static dnnl_status_t reorder_step(covct_nn_plan *p, dnnl_memory_t from,
                                  const dnnl_memory_desc_t *from_md,
                                  dnnl_memory_t to,
                                  const dnnl_memory_desc_t *to_md)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(
        &pd, from_md, p->eng, to_md, p->eng, p->attr);
    if (st)
        return st;
    static const int ids[] = {DNNL_ARG_FROM, DNNL_ARG_TO};
    dnnl_memory_t m[] = {from, to};
    return prim_step(p, pd, 2, ids, m);
}

/* The value of `slot` in layout `want`: the slot's own memory, or a new
 * one filled by a reorder step. */
static dnnl_status_t slot_as(covct_nn_plan *p, int slot,
                             const dnnl_memory_desc_t *want,
                             dnnl_memory_t *out)
{
    if (dnnl_memory_desc_equal(&p->slot_md[slot], want)) {
        *out = p->slot[slot];
        return dnnl_success;
    }
    dnnl_status_t st = mem_new(p, want, DNNL_MEMORY_ALLOCATE, out);
    return st ? st : reorder_step(p, p->slot[slot], &p->slot_md[slot], *out,
                                  want);
}

/* Constant data (weights, bias) from a plain buffer into a new memory in
 * layout `want`, reordered now. */
static dnnl_status_t const_mem(covct_nn_plan *p, const dnnl_memory_desc_t *plain,
                               float *data, const dnnl_memory_desc_t *want,
                               dnnl_memory_t *out)
{
    dnnl_memory_t src = NULL, sp = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t r = NULL;
    void *spbuf = NULL;
    dnnl_status_t st = mem_new(p, want, DNNL_MEMORY_ALLOCATE, out);
    if (!st)
        st = dnnl_memory_create(&src, plain, p->eng, data);
    if (!st)
        st = dnnl_reorder_primitive_desc_create(&pd, plain, p->eng, want,
                                                p->eng, p->attr);
    if (!st)
        st = dnnl_primitive_create(&r, pd);
    const dnnl_memory_desc_t *smd =
        pd ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0)
           : NULL;
    size_t need = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (!st && need > 0) {
        if (posix_memalign(&spbuf, 64, need))
            st = dnnl_out_of_memory;
        else
            st = dnnl_memory_create(&sp, smd, p->eng, spbuf);
    }
    if (!st) {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, src},
                                   {DNNL_ARG_TO, *out},
                                   {DNNL_ARG_SCRATCHPAD, sp}};
        st = dnnl_primitive_execute(r, p->stream, sp ? 3 : 2, args);
    }
    if (!st)
        st = dnnl_stream_wait(p->stream);
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(src);
    dnnl_memory_destroy(sp);
    free(spbuf);
    return st;
}

static dnnl_status_t md_any(dnnl_memory_desc_t *md, int n, int c, int h,
                            int w)
{
    dnnl_dims_t d = {n, c, h, w};
    return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32,
                                        dnnl_format_tag_any);
}

/* The output of pd (queried md) becomes slot's memory. */
static dnnl_status_t slot_set(covct_nn_plan *p, int slot,
                              const_dnnl_primitive_desc_t pd,
                              dnnl_memory_t *out)
{
    const dnnl_memory_desc_t *md =
        dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    if (!md)
        return dnnl_runtime_error;
    p->slot_md[slot] = *md;
    dnnl_status_t st = mem_new(p, md, DNNL_MEMORY_ALLOCATE, out);
    if (!st)
        p->slot[slot] = *out;
    return st;
}

/* ---- convolutions with folded batch norm and fused activation ------------- */

/* A 2 x 2 transposed convolution of stride 2 is a 1 x 1 convolution to 4o
 * channels (output channel (2 ky + kx) o + oc holds output pixel (2 iy +
 * ky, 2 ix + kx) of channel oc) followed by this rearrangement, in
 * nChw16c with o a multiple of 16: 16-float vectors moved whole.
 * oneDNN's deconvolution kernel for this shape took a fifth of the
 * U-Net's time. */
static void depth_to_space(const step *sp, const float *z, float *y)
{
    const int n = sp->n, ob = sp->o / 16, h = sp->h, w = sp->w;
    const size_t plane_z = (size_t)h * w * 16, plane_y = 4 * plane_z;
    for (int b = 0; b < n; b++)
        for (int s = 0; s < 4; s++)
            for (int cb = 0; cb < ob; cb++) {
                const float *src = z + ((size_t)b * 4 * ob + (size_t)s * ob +
                                        (size_t)cb) * plane_z;
                float *dst = y + ((size_t)b * ob + (size_t)cb) * plane_y +
                             ((size_t)(s >> 1) * 2 * w + (size_t)(s & 1)) * 16;
                for (int iy = 0; iy < h; iy++)
                    for (int ix = 0; ix < w; ix++)
                        memcpy(dst + ((size_t)iy * 4 * w + (size_t)ix * 2) * 16,
                               src + ((size_t)iy * w + (size_t)ix) * 16,
                               16 * sizeof *dst);
            }
}

static dnnl_status_t d2s_step(covct_nn_plan *p, dnnl_memory_t z,
                              dnnl_memory_t y, int n, int o, int h, int w)
{
    dnnl_memory_t m[] = {z, y};
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    dnnl_status_t st = step_add(p, NULL, 2, ids, m);
    if (!st) {
        step *sp = &p->steps[p->nsteps - 1];
        sp->n = n, sp->o = o, sp->h = h, sp->w = w;
    }
    return st;
}

/* Compile ops[i] (a convolution or transposed one) and what folds into
 * it; *used gets the number of graph operations consumed. */
static covct_rc compile_conv(covct_nn_plan *p, const covct_nn_graph *g,
                             size_t i, const int *uses, size_t *used,
                             covct_error *err)
{
    const nn_op *op = &g->ops[i];
    const bool convt = op->kind == COVCT_NN_CONVT2D;
    const dnnl_memory_desc_t *xmd = &p->slot_md[op->in0];
    const int n = (int)xmd->dims[0], c = (int)xmd->dims[1];
    const int h = (int)xmd->dims[2], w = (int)xmd->dims[3];
    const int o = g->slot_c[op->out], k = op->k;
    int oh, ow;
    if (convt) {
        oh = nn_convt_out(h, k, op->stride, op->pad);
        ow = nn_convt_out(w, k, op->stride, op->pad);
    } else {
        oh = nn_conv_out(h, k, op->stride, op->pad, op->dil);
        ow = nn_conv_out(w, k, op->stride, op->pad, op->dil);
    }
    if (oh <= 0 || ow <= 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "nn plan: operation %zu (%s) of a %dx%d input "
                         "gives no output",
                         i, nn_op_name(op->kind), h, w);
    /* What folds in: a batch norm reading only this output, then a ReLU
     * reading only the batch norm's. */
    size_t j = i + 1;
    int final = op->out;
    const nn_op *bn = NULL, *act = NULL;
    if (j < g->nops && g->ops[j].kind == COVCT_NN_BATCHNORM &&
        g->ops[j].in0 == final && uses[final] == 1) {
        bn = &g->ops[j++];
        final = bn->out;
    }
    if (j < g->nops &&
        (g->ops[j].kind == COVCT_NN_RELU ||
         g->ops[j].kind == COVCT_NN_LEAKYRELU) &&
        g->ops[j].in0 == final && uses[final] == 1) {
        act = &g->ops[j++];
        final = act->out;
    }
    *used = j - i;

    /* Folded weights and bias, in the graph's plain layout. */
    const covct_tensor *wt = &g->par[op->p0];
    size_t wn = covct_tensor_size(wt);
    const bool has_bias = op->bias || bn;
    float *wf = covct_malloc(wn * sizeof *wf);
    float *bf = covct_calloc((size_t)o, sizeof *bf);
    if (!wf || !bf) {
        covct_free(wf);
        covct_free(bf);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "nn plan: out of memory");
    }
    memcpy(wf, wt->data, wn * sizeof *wf);
    if (op->bias)
        memcpy(bf, g->par[op->p0 + 1].data, (size_t)o * sizeof *bf);
    if (bn) {
        const float *gam = g->par[bn->p0].data, *bet = g->par[bn->p0 + 1].data;
        const float *mean = g->par[bn->p0 + 2].data;
        const float *var = g->par[bn->p0 + 3].data;
        size_t kk = (size_t)k * k;
        for (int oc = 0; oc < o; oc++) {
            double s = gam[oc] / sqrt((double)var[oc] + BN_EPS);
            bf[oc] = (float)(((double)bf[oc] - mean[oc]) * s + bet[oc]);
            /* conv weight (o, c, k, k); transposed (c, o, k, k) */
            for (int ic = 0; ic < c; ic++) {
                float *q = wf + (convt ? ((size_t)ic * o + oc) * kk
                                       : ((size_t)oc * c + ic) * kk);
                for (size_t t = 0; t < kk; t++)
                    q[t] = (float)(q[t] * s);
            }
        }
    }

    /* 2 x 2 stride-2 transposed convolutions as a 1 x 1 convolution to 4o
     * channels and depth_to_space (o a multiple of 16 for the blocks). */
    const bool d2s = convt && k == 2 && op->stride == 2 && op->pad == 0 &&
                     o % 16 == 0;
    if (d2s) {
        float *w1 = covct_malloc((size_t)4 * o * c * sizeof *w1);
        float *b1 = covct_malloc((size_t)4 * o * sizeof *b1);
        if (!w1 || !b1) {
            covct_free(w1);
            covct_free(b1);
            covct_free(wf);
            covct_free(bf);
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "nn plan: out of memory");
        }
        for (int sq = 0; sq < 4; sq++)
            for (int oc = 0; oc < o; oc++) {
                b1[sq * o + oc] = bf[oc];
                for (int ic = 0; ic < c; ic++)
                    w1[((size_t)sq * o + oc) * c + ic] =
                        wf[((size_t)ic * o + oc) * 4 + sq];
            }
        covct_free(wf);
        covct_free(bf);
        wf = w1;
        bf = b1;
    }
    const bool as_conv = !convt || d2s;
    const int ko = d2s ? 4 * o : o, kk = d2s ? 1 : k;
    const int koh = d2s ? h : oh, kow = d2s ? w : ow;

    dnnl_status_t st;
    const char *what = "creating the kernel";
    dnnl_memory_desc_t x_any, w_any, y_any, b_md, w_plain;
    dnnl_dims_t wd = {ko, c, kk, kk}, bd = {ko};
    dnnl_dims_t strides = {d2s ? 1 : op->stride, d2s ? 1 : op->stride};
    dnnl_dims_t dil = {convt ? 0 : op->dil - 1, convt ? 0 : op->dil - 1};
    dnnl_dims_t pad = {d2s ? 0 : op->pad, d2s ? 0 : op->pad};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_convolution_desc_t cd;
    if ((st = md_any(&x_any, n, c, h, w)) ||
        (st = d2s || (c < 16 && ko % 16 == 0)
                  ? dnnl_memory_desc_init_by_tag(
                        &y_any, 4, (dnnl_dims_t){n, ko, koh, kow}, dnnl_f32,
                        dnnl_aBcd16b)
                  : md_any(&y_any, n, ko, koh, kow)) ||
        (st = dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32,
                                           dnnl_format_tag_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&w_plain, 4, wd, dnnl_f32,
                                           as_conv ? dnnl_oihw : dnnl_iohw)) ||
        (st = dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x)))
        goto fail;
    st = dnnl_primitive_attr_create(&attr);
    if (!st)
        st = dnnl_primitive_attr_set_scratchpad_mode(attr,
                                                     dnnl_scratchpad_mode_user);
    if (!st && act) {
        float alpha = act->kind == COVCT_NN_RELU ? 0.0f : act->alpha;
        if (!(st = dnnl_post_ops_create(&po)) &&
            !(st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu,
                                                alpha, 0.0f)))
            st = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    /* 3 x 3 convolutions by Winograd's minimal filtering (oneDNN's
     * F(4x4, 3x3) on AVX-512) where oneDNN has it: 2.25 times fewer
     * multiplications, and it writes nChw16c, which lets concatenations
     * happen in place; otherwise, and for everything else, direct.  Not
     * for a first layer of one or a few input channels: Winograd pads
     * them to 16, and the direct kernel takes 0.3 ms where Winograd took
     * 2.9 ms (1 -> 16 channels at 352 x 352, one thread). */
    bool wino = !convt && k == 3 && op->stride == 1 && op->dil == 1 &&
                c >= 16;
    for (int attempt = wino ? 0 : 1; !st && attempt < 2; attempt++) {
        if (!as_conv)
            st = dnnl_dilated_deconvolution_forward_desc_init(
                &cd, dnnl_forward_inference, dnnl_deconvolution_direct,
                &x_any, &w_any, has_bias ? &b_md : NULL, &y_any, strides, dil,
                pad, pad);
        else
            st = dnnl_dilated_convolution_forward_desc_init(
                &cd, dnnl_forward_inference,
                attempt ? dnnl_convolution_direct : dnnl_convolution_winograd,
                &x_any, &w_any, has_bias ? &b_md : NULL, &y_any, strides,
                dil, pad, pad);
        if (!st)
            st = dnnl_primitive_desc_create(&pd, &cd, attr, p->eng, NULL);
        if (st == dnnl_unimplemented && attempt == 0)
            st = dnnl_success; /* no Winograd kernel here: direct */
        else
            break;
    }
    if (st)
        goto fail;
    {
        const dnnl_memory_desc_t *src_md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *w_md =
            dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *b_want =
            dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
        dnnl_memory_t mx, mw, mb = NULL, my;
        what = "preparing the weights";
        if (!src_md || !w_md || (has_bias && !b_want)) {
            st = dnnl_runtime_error;
            goto fail;
        }
        if ((st = slot_as(p, op->in0, src_md, &mx)) ||
            (st = const_mem(p, &w_plain, wf, w_md, &mw)) ||
            (has_bias && (st = const_mem(p, &b_md, bf, b_want, &mb))))
            goto fail;
        if (d2s) { /* z for the convolution, then the final value */
            dnnl_memory_desc_t ymd;
            dnnl_memory_t my2;
            what = "preparing the upsampling";
            if ((st = mem_new(p, &y_any, DNNL_MEMORY_ALLOCATE, &my)) ||
                (st = dnnl_memory_desc_init_by_tag(
                     &ymd, 4, (dnnl_dims_t){n, o, oh, ow}, dnnl_f32,
                     dnnl_aBcd16b)) ||
                (st = mem_new(p, &ymd, DNNL_MEMORY_ALLOCATE, &my2)))
                goto fail;
            p->slot[final] = my2;
            p->slot_md[final] = ymd;
        } else if ((st = slot_set(p, final, pd, &my))) {
            goto fail;
        }
        int ids[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST,
                     DNNL_ARG_BIAS};
        dnnl_memory_t mems[] = {mx, mw, my, mb};
        st = prim_step(p, pd, has_bias ? 4 : 3, ids, mems);
        pd = NULL;
        if (!st && d2s)
            st = d2s_step(p, my, p->slot[final], n, o, h, w);
    }
fail:
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    covct_free(wf);
    covct_free(bf);
    return st ? dnnl_fail(st, i, op->kind, what, err) : COVCT_OK;
}

/* ---- the other operations -------------------------------------------------- */

/* A concatenation without copying, where the layout allows: for one image
 * in nChw16c with both channel counts multiples of 16, the result is the
 * two tensors one after the other in memory, so both producers are made
 * to write into one buffer (their memory objects re-pointed; the steps
 * find the data through them at run time) and the concatenation is that
 * buffer.  *out stays NULL where it does not apply (the caller then adds
 * a concat primitive). */
static dnnl_status_t concat_in_place(covct_nn_plan *p, const nn_op *op,
                                     dnnl_memory_t *out)
{
    *out = NULL;
    const dnnl_memory_desc_t *a = &p->slot_md[op->in0];
    const dnnl_memory_desc_t *b = &p->slot_md[op->in1];
    dnnl_memory_t ma = p->slot[op->in0], mb = p->slot[op->in1];
    if (a->dims[0] != 1 || a->dims[1] % 16 || b->dims[1] % 16 || ma == mb ||
        ma == p->in_user || mb == p->in_user || p->moved[op->in0] ||
        p->moved[op->in1])
        return dnnl_success;
    dnnl_memory_desc_t wa, wb, wo;
    dnnl_dims_t dout = {1, a->dims[1] + b->dims[1], a->dims[2], a->dims[3]};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&wa, 4, a->dims, dnnl_f32,
                                           dnnl_aBcd16b)) ||
        (st = dnnl_memory_desc_init_by_tag(&wb, 4, b->dims, dnnl_f32,
                                           dnnl_aBcd16b)) ||
        (st = dnnl_memory_desc_init_by_tag(&wo, 4, dout, dnnl_f32,
                                           dnnl_aBcd16b)))
        return st;
    if (!dnnl_memory_desc_equal(a, &wa) || !dnnl_memory_desc_equal(b, &wb))
        return dnnl_success;
    dnnl_memory_t mo;
    void *buf = NULL;
    if ((st = mem_new(p, &wo, DNNL_MEMORY_ALLOCATE, &mo)) ||
        (st = dnnl_memory_get_data_handle(mo, &buf)))
        return st;
    buf_release(p, ma);
    buf_release(p, mb);
    if ((st = dnnl_memory_set_data_handle(ma, buf)) ||
        (st = dnnl_memory_set_data_handle(
             mb, (char *)buf + dnnl_memory_desc_get_size(a))))
        return st;
    p->moved[op->in0] = p->moved[op->in1] = 1;
    p->slot[op->out] = mo;
    p->slot_md[op->out] = wo;
    *out = mo;
    return dnnl_success;
}

/* A one-input primitive described by desc: created, its output becomes
 * op->out's memory, appended as a step. */
static dnnl_status_t unary_step(covct_nn_plan *p, const nn_op *op,
                                const_dnnl_op_desc_t desc)
{
    static const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_t my = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, desc, p->attr, p->eng,
                                                  NULL);
    if (!st)
        st = slot_set(p, op->out, pd, &my);
    if (st) {
        dnnl_primitive_desc_destroy(pd);
        return st;
    }
    dnnl_memory_t m[] = {p->slot[op->in0], my};
    return prim_step(p, pd, 2, ids, m);
}

static covct_rc compile_other(covct_nn_plan *p, const covct_nn_graph *g,
                              size_t i, covct_error *err)
{
    const nn_op *op = &g->ops[i];
    const dnnl_memory_desc_t *xmd = &p->slot_md[op->in0];
    const int n = (int)xmd->dims[0], c = (int)xmd->dims[1];
    const int h = (int)xmd->dims[2], w = (int)xmd->dims[3];
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_success;
    dnnl_memory_t my = NULL;
    dnnl_memory_desc_t y_any;
    union {
        dnnl_pooling_desc_t pool;
        dnnl_resampling_desc_t resample;
        dnnl_eltwise_desc_t eltwise;
        dnnl_softmax_desc_t softmax;
    } d;
    switch (op->kind) {
    case COVCT_NN_MAXPOOL2D:
    case COVCT_NN_AVGPOOL2D: {
        int kk = op->k;
        if (h < kk || w < kk)
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "nn plan: operation %zu (%s %d) of a %dx%d input",
                             i, nn_op_name(op->kind), kk, h, w);
        dnnl_dims_t ks = {kk, kk}, zero = {0, 0};
        /* floor(h / k) outputs: the last rows that do not fill a window are
         * dropped, as the reference does. */
        dnnl_dims_t pr = {(h / kk) * kk - h, (w / kk) * kk - w};
        if (!(st = md_any(&y_any, n, c, h / kk, w / kk)) &&
            !(st = dnnl_pooling_forward_desc_init(
                 &d.pool, dnnl_forward_inference,
                 op->kind == COVCT_NN_MAXPOOL2D
                     ? dnnl_pooling_max
                     : dnnl_pooling_avg_exclude_padding,
                 xmd, &y_any, ks, ks, zero, pr)))
            st = unary_step(p, op, &d.pool);
        break;
    }
    case COVCT_NN_UPSAMPLE2X:
        if (!(st = md_any(&y_any, n, c, 2 * h, 2 * w)) &&
            !(st = dnnl_resampling_forward_desc_init(
                 &d.resample, dnnl_forward_inference, dnnl_resampling_nearest,
                 NULL, xmd, &y_any)))
            st = unary_step(p, op, &d.resample);
        break;
    case COVCT_NN_RELU:
    case COVCT_NN_LEAKYRELU:
    case COVCT_NN_SIGMOID:
        if (!(st = dnnl_eltwise_forward_desc_init(
                 &d.eltwise, dnnl_forward_inference,
                 op->kind == COVCT_NN_SIGMOID ? dnnl_eltwise_logistic
                                              : dnnl_eltwise_relu,
                 xmd, op->kind == COVCT_NN_LEAKYRELU ? op->alpha : 0.0f,
                 0.0f)))
            st = unary_step(p, op, &d.eltwise);
        break;
    case COVCT_NN_SOFTMAX:
        if (!(st = dnnl_softmax_forward_desc_init(
                 &d.softmax, dnnl_forward_inference, xmd, 1)))
            st = unary_step(p, op, &d.softmax);
        break;
    case COVCT_NN_CONCAT:
    case COVCT_NN_ADD: {
        const dnnl_memory_desc_t *bmd = &p->slot_md[op->in1];
        if (bmd->dims[0] != n || bmd->dims[2] != h || bmd->dims[3] != w ||
            (op->kind == COVCT_NN_ADD && bmd->dims[1] != c))
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "nn plan: operation %zu (%s) of %dx%dx%dx%d and "
                             "%dx%dx%dx%d",
                             i, nn_op_name(op->kind), n, c, h, w,
                             (int)bmd->dims[0], (int)bmd->dims[1],
                             (int)bmd->dims[2], (int)bmd->dims[3]);
        if (op->kind == COVCT_NN_CONCAT) {
            if ((st = concat_in_place(p, op, &my)) == dnnl_success && my)
                break;
            dnnl_memory_desc_t srcs[2] = {*xmd, *bmd};
            if ((st = dnnl_concat_primitive_desc_create(&pd, NULL, 2, 1, srcs,
                                                        p->attr, p->eng)) ||
                (st = slot_set(p, op->out, pd, &my)))
                break;
            static const int ids[] = {DNNL_ARG_MULTIPLE_SRC,
                                      DNNL_ARG_MULTIPLE_SRC + 1, DNNL_ARG_DST};
            dnnl_memory_t m[] = {p->slot[op->in0], p->slot[op->in1], my};
            st = prim_step(p, pd, 3, ids, m);
            pd = NULL;
            break;
        }
        dnnl_binary_desc_t bd;
        dnnl_memory_t mb;
        if ((st = slot_as(p, op->in1, xmd, &mb)) ||
            (st = dnnl_binary_desc_init(&bd, dnnl_binary_add, xmd, xmd,
                                        xmd)) ||
            (st = dnnl_primitive_desc_create(&pd, &bd, p->attr, p->eng,
                                             NULL)) ||
            (st = slot_set(p, op->out, pd, &my)))
            break;
        static const int ids[] = {DNNL_ARG_SRC_0, DNNL_ARG_SRC_1,
                                  DNNL_ARG_DST};
        dnnl_memory_t m[] = {p->slot[op->in0], mb, my};
        st = prim_step(p, pd, 3, ids, m);
        pd = NULL;
        break;
    }
    case COVCT_NN_BATCHNORM:
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "nn plan: operation %zu: a batch norm that does not "
                         "follow a convolution cannot be folded (run the "
                         "graph instead)",
                         i);
    case COVCT_NN_CONV2D:
    case COVCT_NN_CONVT2D:
        break;
    }
    dnnl_primitive_desc_destroy(pd);
    return st ? dnnl_fail(st, i, op->kind, "creating the kernel", err)
              : COVCT_OK;
}

/* ---- public ----------------------------------------------------------------- */

void covct_nn_plan_free(covct_nn_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nsteps; i++)
        dnnl_primitive_destroy(p->steps[i].prim);
    for (size_t i = 0; i < p->nmems; i++) {
        dnnl_memory_destroy(p->mems[i]);
        free(p->bufs[i]);
    }
    dnnl_stream_destroy(p->stream);
    dnnl_engine_destroy(p->eng);
    dnnl_primitive_attr_destroy(p->attr);
    covct_free(p->scratch);
    free(p->scratch_buf);
    covct_free(p->steps);
    covct_free(p->mems);
    covct_free(p->bufs);
    covct_free(p->slot);
    covct_free(p->slot_md);
    covct_free(p->moved);
    covct_free(p);
}

covct_rc covct_nn_plan_new(const covct_nn_graph *g, int out_slot, int n,
                           int h, int w, covct_nn_plan **out,
                           covct_error *err)
{
    *out = NULL;
    if (!g || out_slot <= 0 || out_slot >= g->nslots || n <= 0 || h <= 0 ||
        w <= 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "nn plan: no graph, bad output slot or shape "
                         "%dx%dx%d",
                         n, h, w);
    covct_nn_plan *p = covct_calloc(1, sizeof *p);
    int *uses = covct_calloc((size_t)g->nslots, sizeof *uses);
    if (!p || !uses ||
        !(p->slot = covct_calloc((size_t)g->nslots, sizeof *p->slot)) ||
        !(p->slot_md = covct_calloc((size_t)g->nslots, sizeof *p->slot_md)) ||
        !(p->moved = covct_calloc((size_t)g->nslots, 1))) {
        covct_free(uses);
        covct_nn_plan_free(p);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "nn plan: out of memory");
    }
    p->n = n, p->in_c = g->in_channels, p->h = h, p->w = w;
    for (size_t i = 0; i < g->nops; i++) {
        uses[g->ops[i].in0]++;
        if (g->ops[i].kind == COVCT_NN_CONCAT || g->ops[i].kind == COVCT_NN_ADD)
            uses[g->ops[i].in1]++;
    }
    uses[out_slot]++;
    covct_rc rc = COVCT_OK;
    dnnl_status_t st = dnnl_engine_create(&p->eng, dnnl_cpu, 0);
    if (!st)
        st = dnnl_stream_create(&p->stream, p->eng, dnnl_stream_default_flags);
    if (!st)
        st = dnnl_primitive_attr_create(&p->attr);
    if (!st)
        st = dnnl_primitive_attr_set_scratchpad_mode(p->attr,
                                                     dnnl_scratchpad_mode_user);
    dnnl_dims_t din = {n, g->in_channels, h, w};
    if (!st)
        st = dnnl_memory_desc_init_by_tag(&p->slot_md[0], 4, din, dnnl_f32,
                                          dnnl_nchw);
    if (!st)
        st = mem_new(p, &p->slot_md[0], DNNL_MEMORY_NONE, &p->in_user);
    if (st) {
        rc = COVCT_ERR(err, COVCT_ERR_INTERNAL, "nn plan: oneDNN engine: %s",
                       dnnl_status2str(st));
        goto done;
    }
    p->slot[0] = p->in_user;
    for (size_t i = 0; i < g->nops && rc == COVCT_OK;) {
        const nn_op *op = &g->ops[i];
        if (!p->slot[op->in0] ||
            ((op->kind == COVCT_NN_CONCAT || op->kind == COVCT_NN_ADD) &&
             !p->slot[op->in1])) {
            rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                           "nn plan: operation %zu (%s) reads a value that "
                           "was folded away",
                           i, nn_op_name(op->kind));
            break;
        }
        size_t used = 1;
        if (op->kind == COVCT_NN_CONV2D || op->kind == COVCT_NN_CONVT2D)
            rc = compile_conv(p, g, i, uses, &used, err);
        else
            rc = compile_other(p, g, i, err);
        i += used;
    }
    if (rc == COVCT_OK && !p->slot[out_slot])
        rc = COVCT_ERR(err, COVCT_ERR_ARG,
                       "nn plan: the output slot %d is not computed",
                       out_slot);
    if (rc == COVCT_OK) {
        const dnnl_memory_desc_t *omd = &p->slot_md[out_slot];
        dnnl_memory_desc_t plain;
        p->out_c = (int)omd->dims[1];
        p->out_h = (int)omd->dims[2];
        p->out_w = (int)omd->dims[3];
        if ((st = dnnl_memory_desc_init_by_tag(&plain, 4, omd->dims, dnnl_f32,
                                               dnnl_nchw)) ||
            (st = mem_new(p, &plain, DNNL_MEMORY_NONE, &p->out_user)) ||
            (st = reorder_step(p, p->slot[out_slot], omd, p->out_user,
                               &plain)))
            rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                           "nn plan: output reorder: %s", dnnl_status2str(st));
    }
    /* One scratch buffer for every step that asked for one. */
    if (rc == COVCT_OK && p->scratch_size) {
        if (posix_memalign(&p->scratch_buf, 64, p->scratch_size))
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "nn plan: no memory for %zu bytes of scratch space",
                           p->scratch_size);
        for (size_t i = 0; rc == COVCT_OK && i < p->nscratch; i++)
            if (dnnl_memory_set_data_handle(p->scratch[i], p->scratch_buf))
                rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                               "nn plan: scratch space");
    }
done:
    covct_free(uses);
    if (rc != COVCT_OK) {
        covct_nn_plan_free(p);
        return rc;
    }
    *out = p;
    return COVCT_OK;
}

void covct_nn_plan_shape(const covct_nn_plan *p, int *in_n, int *in_h,
                         int *in_w, int *out_c, int *out_h, int *out_w)
{
    if (in_n)
        *in_n = p->n;
    if (in_h)
        *in_h = p->h;
    if (in_w)
        *in_w = p->w;
    if (out_c)
        *out_c = p->out_c;
    if (out_h)
        *out_h = p->out_h;
    if (out_w)
        *out_w = p->out_w;
}

covct_rc covct_nn_plan_run(covct_nn_plan *p, const float *input, float *output,
                           covct_error *err)
{
    dnnl_status_t st = dnnl_memory_set_data_handle(p->in_user, (void *)input);
    if (!st)
        st = dnnl_memory_set_data_handle(p->out_user, output);
    for (size_t i = 0; !st && i < p->nsteps; i++) {
        const step *sp = &p->steps[i];
        if (sp->prim) {
            st = dnnl_primitive_execute(sp->prim, p->stream, sp->nargs,
                                        sp->args);
            continue;
        }
        void *z = NULL, *y = NULL;
        if (!(st = dnnl_stream_wait(p->stream)) &&
            !(st = dnnl_memory_get_data_handle(sp->args[0].memory, &z)) &&
            !(st = dnnl_memory_get_data_handle(sp->args[1].memory, &y)))
            depth_to_space(sp, z, y);
    }
    if (!st)
        st = dnnl_stream_wait(p->stream);
    if (st)
        return COVCT_ERR(err, st == dnnl_out_of_memory ? COVCT_ERR_NOMEM
                                                       : COVCT_ERR_INTERNAL,
                         "nn plan: running: oneDNN %s", dnnl_status2str(st));
    return COVCT_OK;
}
