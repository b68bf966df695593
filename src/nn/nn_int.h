/*
 * Internal kernels of the nn module.  Every kernel works on plain
 * contiguous NCHW float arrays with explicit shapes; the graph code
 * (graph.c) allocates and dispatches.  ops-ref.c holds the reference
 * loops, ops-dnnl.c the oneDNN convolutions with the same signatures.
 * Backward kernels accumulate (+=) into parameter gradients (dw, db) and
 * overwrite the input gradient (dx); any of dx, dw, db may be NULL.
 */
#ifndef COVCT_NN_INT_H
#define COVCT_NN_INT_H

#include <stddef.h>

#include "covct/nn.h"

/* Shape of a 2-D convolution: input n x c x h x w, output n x o x oh x ow,
 * square kernel k, stride, padding, dilation (1 = none). */
typedef struct nn_conv_shape {
    int n, c, h, w;
    int o, oh, ow;
    int k, stride, pad, dil;
} nn_conv_shape;

/* Output size of a convolution along one axis. */
static inline int nn_conv_out(int in, int k, int stride, int pad, int dil)
{
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

/* Output size of a transposed convolution along one axis. */
static inline int nn_convt_out(int in, int k, int stride, int pad)
{
    return (in - 1) * stride - 2 * pad + k;
}

/* One operation of a graph and the graph itself (graph.c builds and runs
 * them; infer.c compiles them for inference). */
typedef struct nn_op {
    covct_nn_op_kind kind;
    int in0, in1, out;     /* slots; in1 only for concat and add */
    int k, stride, pad, dil;
    int bias;
    float alpha;
    size_t p0;             /* first parameter of this operation */
    /* kept by the forward pass for the backward pass */
    covct_tensor xhat;     /* batch norm: normalised input */
    covct_tensor invstd;   /* batch norm: 1/sqrt(var + eps) per channel */
    int32_t *argmax;       /* max pooling: chosen input per output */
    size_t argmax_cap;
} nn_op;

struct covct_nn_graph {
    int in_channels;
    nn_op *ops;
    size_t nops, ops_cap;
    int nslots;
    int *slot_c;           /* channels of each slot */
    covct_tensor *val;     /* value of each slot (forward) */
    covct_tensor *grad;    /* gradient of each slot (backward) */
    unsigned char *has_grad;
    covct_tensor scratch;  /* one input gradient before it is added */
    covct_tensor *par, *pgrad;
    unsigned char *buffer; /* parameter is a buffer (no gradient) */
    size_t npar, par_cap;
    uint64_t rng;
    covct_nn_backend backend;
    int training;
};

/* "convolution", "batch norm", ... for messages. */
const char *nn_op_name(covct_nn_op_kind k);

/* Batch norm epsilon (PyTorch default). */
#define BN_EPS 1e-5f

/* Little-endian integers of the model and optimiser files. */
static inline void nn_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t nn_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t nn_get64(const uint8_t *p)
{
    return (uint64_t)nn_get32(p) | (uint64_t)nn_get32(p + 4) << 32;
}

/* Sum of dy over batch and pixels per output channel, in double, added to
 * db (the bias gradient of both convolution kinds and both backends). */
void nn_bias_grad(int n, int o, size_t hw, const float *dy, float *db);

/* ---- reference kernels (ops-ref.c) -------------------------------------- */

/* y = conv(x, w) + b; w is o x c x k x k. */
void nn_ref_conv_fwd(const nn_conv_shape *s, const float *x, const float *w,
                     const float *b, float *y);
void nn_ref_conv_bwd(const nn_conv_shape *s, const float *x, const float *w,
                     const float *dy, float *dx, float *dw, float *db);
/* Transposed convolution: input n x c x h x w, output n x o x oh x ow with
 * oh = nn_convt_out(h, ...); w is c x o x k x k (PyTorch layout); dil 1. */
void nn_ref_convt_fwd(const nn_conv_shape *s, const float *x, const float *w,
                      const float *b, float *y);
void nn_ref_convt_bwd(const nn_conv_shape *s, const float *x, const float *w,
                      const float *dy, float *dx, float *dw, float *db);

/* Batch norm, training: batch mean/variance per channel; writes y, the
 * normalised input xhat and 1/sqrt(var + eps) per channel (for backward),
 * and updates the running statistics (unbiased variance, as PyTorch). */
void nn_ref_bn_fwd_train(int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, float eps,
                         float momentum, float *run_mean, float *run_var,
                         float *y, float *xhat, float *invstd);
void nn_ref_bn_fwd_infer(int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, float eps,
                         const float *run_mean, const float *run_var,
                         float *y);
void nn_ref_bn_bwd(int n, int c, int hw, const float *dy, const float *xhat,
                   const float *invstd, const float *gamma, float *dx,
                   float *dgamma, float *dbeta);

/* Max pooling, kernel = stride = k; argmax keeps the index of the chosen
 * input element per output element (first maximum in row-major order). */
void nn_ref_maxpool_fwd(int n, int c, int h, int w, int k, const float *x,
                        float *y, int32_t *argmax);
void nn_ref_maxpool_bwd(int n, int c, int h, int w, int k, const float *dy,
                        const int32_t *argmax, float *dx);
void nn_ref_avgpool_fwd(int n, int c, int h, int w, int k, const float *x,
                        float *y);
void nn_ref_avgpool_bwd(int n, int c, int h, int w, int k, const float *dy,
                        float *dx);
void nn_ref_upsample2x_fwd(int n, int c, int h, int w, const float *x,
                           float *y);
void nn_ref_upsample2x_bwd(int n, int c, int h, int w, const float *dy,
                           float *dx);

/* ---- oneDNN kernels (ops-dnnl.c) ------------------------------------------
 * Same contracts as the reference ones.  Return COVCT_OK, or an error when
 * oneDNN refuses (the graph then reports it; it does not fall back
 * silently). */
covct_rc nn_dnnl_conv_fwd(const nn_conv_shape *s, const float *x,
                          const float *w, const float *b, float *y,
                          covct_error *err);
covct_rc nn_dnnl_conv_bwd(const nn_conv_shape *s, const float *x,
                          const float *w, const float *dy, float *dx,
                          float *dw, float *db, covct_error *err);
/* Transposed convolution (oneDNN deconvolution), contracts of
 * nn_ref_convt_*: w is c x o x k x k (PyTorch layout), s->dil ignored. */
covct_rc nn_dnnl_convt_fwd(const nn_conv_shape *s, const float *x,
                           const float *w, const float *b, float *y,
                           covct_error *err);
covct_rc nn_dnnl_convt_bwd(const nn_conv_shape *s, const float *x,
                           const float *w, const float *dy, float *dx,
                           float *dw, float *db, covct_error *err);
/* Free the primitives cached per shape, the scratch buffers, the stream
 * and the engine (all process-wide: call the oneDNN kernels from one
 * thread at a time).  Optional, for leak checkers; a later call creates
 * them again. */
void nn_dnnl_release(void);

#endif
