/*
 * covct nn: a small neural-network engine for 2-D segmentation networks,
 * forward and backward, in fp32, NCHW layout.  Design: docs/internals/nn.md.
 *
 * A network is a static graph built once (covct_nn_graph): tensors are
 * numbered slots, operations read slots and write one slot, in the order
 * they were added (a topological order by construction).  Parameters
 * (weights, biases, batch-norm scale/shift) are tensors owned by the graph
 * with a gradient each.  covct_nn_forward() runs the operations in order;
 * covct_nn_backward() runs them in reverse and accumulates gradients.
 *
 * Every operation has a plain reference implementation (loops, the
 * yardstick); convolutions also have a fast path on oneDNN.  Which one runs
 * is a property of the graph (covct_nn_set_backend), so a test can run the
 * same graph both ways and compare.
 */
#ifndef COVCT_NN_H
#define COVCT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tensors ---------------------------------------------------------- */

/* A 4-D fp32 tensor, NCHW, contiguous (w fastest).  Parameters use the
 * PyTorch shapes: conv weight (out, in, kh, kw) as n, c, h, w; transposed
 * conv weight (in, out, kh, kw); vectors (bias, scale) as (1, C, 1, 1). */
typedef struct covct_tensor {
    int n, c, h, w;
    float *data; /* owned; NULL until allocated */
} covct_tensor;

static inline size_t covct_tensor_size(const covct_tensor *t)
{
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}

/* Allocate (zeroed) data for shape n, c, h, w; frees what was there. */
covct_rc covct_tensor_alloc(covct_tensor *t, int n, int c, int h, int w,
                            covct_error *err);
void covct_tensor_free(covct_tensor *t);

/* ---- operations -------------------------------------------------------- */

typedef enum covct_nn_op_kind {
    COVCT_NN_CONV2D,      /* weight (O, I, K, K), optional bias (1, O, 1, 1);
                           * stride, pad, dilation */
    COVCT_NN_CONVT2D,     /* transposed conv, weight (I, O, K, K), optional
                           * bias; stride, pad (output = (H-1)s - 2p + K) */
    COVCT_NN_BATCHNORM,   /* per channel; training: batch statistics, running
                           * averages updated with momentum; inference: the
                           * running statistics */
    COVCT_NN_RELU,
    COVCT_NN_LEAKYRELU,   /* slope in `alpha` */
    COVCT_NN_MAXPOOL2D,   /* kernel = stride = `k`, no padding */
    COVCT_NN_AVGPOOL2D,   /* kernel = stride = `k`, no padding */
    COVCT_NN_UPSAMPLE2X,  /* nearest neighbour, factor 2 */
    COVCT_NN_CONCAT,      /* along channels, two inputs */
    COVCT_NN_ADD,         /* elementwise, two inputs of the same shape */
    COVCT_NN_SIGMOID,
    COVCT_NN_SOFTMAX      /* over channels, per pixel */
} covct_nn_op_kind;

typedef struct covct_nn_graph covct_nn_graph;
typedef struct covct_nn_plan covct_nn_plan; /* see "inference plans" */

typedef enum covct_nn_backend {
    COVCT_NN_REFERENCE = 0, /* plain loops, the yardstick */
    COVCT_NN_FAST = 1       /* oneDNN where it has the operation; default */
} covct_nn_backend;

/* New graph with one input slot (returned by covct_nn_input()). */
covct_rc covct_nn_graph_new(covct_nn_graph **g, covct_error *err);
void covct_nn_graph_free(covct_nn_graph *g);

/* Slot of the graph's input tensor (always 0). */
int covct_nn_input(const covct_nn_graph *g);

/* Add operations; each returns the output slot (>= 1) or -1 with err set.
 * Channel counts are fixed here; spatial size and batch follow the input
 * at forward time.  Weights are created with PyTorch's default
 * initialisation (Kaiming uniform, a = sqrt(5)), seeded by
 * covct_nn_seed(); batch norm starts at scale 1, shift 0, running mean 0,
 * running variance 1, momentum 0.1, eps 1e-5 (PyTorch defaults). */
int covct_nn_conv2d(covct_nn_graph *g, int in, int out_channels, int k,
                    int stride, int pad, int dilation, int bias,
                    covct_error *err);
int covct_nn_convt2d(covct_nn_graph *g, int in, int out_channels, int k,
                     int stride, int pad, int bias, covct_error *err);
int covct_nn_batchnorm(covct_nn_graph *g, int in, covct_error *err);
int covct_nn_relu(covct_nn_graph *g, int in, covct_error *err);
int covct_nn_leakyrelu(covct_nn_graph *g, int in, float alpha,
                       covct_error *err);
int covct_nn_maxpool(covct_nn_graph *g, int in, int k, covct_error *err);
int covct_nn_avgpool(covct_nn_graph *g, int in, int k, covct_error *err);
int covct_nn_upsample2x(covct_nn_graph *g, int in, covct_error *err);
int covct_nn_concat(covct_nn_graph *g, int a, int b, covct_error *err);
int covct_nn_add(covct_nn_graph *g, int a, int b, covct_error *err);
int covct_nn_sigmoid(covct_nn_graph *g, int in, covct_error *err);
int covct_nn_softmax(covct_nn_graph *g, int in, covct_error *err);

/* Input channel count of the graph (set before adding operations). */
void covct_nn_set_input_channels(covct_nn_graph *g, int channels);
void covct_nn_seed(covct_nn_graph *g, uint64_t seed);
void covct_nn_set_backend(covct_nn_graph *g, covct_nn_backend b);
/* Training mode: batch norm uses batch statistics and keeps what backward
 * needs.  Inference mode: running statistics, nothing kept. */
void covct_nn_set_training(covct_nn_graph *g, int training);

/* ---- parameters ---------------------------------------------------------
 * In the order the operations were added; per operation: conv/convt weight
 * then bias (if any); batch norm scale (gamma), shift (beta), then the
 * running mean and variance (buffers: no gradient, not trained). */
size_t covct_nn_param_count(const covct_nn_graph *g);
covct_tensor *covct_nn_param(covct_nn_graph *g, size_t i);
/* Gradient of parameter i (same shape); NULL for buffers. */
covct_tensor *covct_nn_param_grad(covct_nn_graph *g, size_t i);
/* Whether parameter i is a buffer (running statistics). */
int covct_nn_param_is_buffer(const covct_nn_graph *g, size_t i);

/* ---- running ------------------------------------------------------------ */

/* Run the graph on `input` (N, C, H, W).  The value of every slot stays
 * available through covct_nn_value() until the next forward. */
covct_rc covct_nn_forward(covct_nn_graph *g, const covct_tensor *input,
                          covct_error *err);
const covct_tensor *covct_nn_value(const covct_nn_graph *g, int slot);

/* Backward from d(loss)/d(output slot) = grad (same shape as the slot's
 * value).  Parameter gradients are accumulated (+=): zero them with
 * covct_nn_zero_grad() before each step.  The gradient of the input is
 * available through covct_nn_input_grad() afterwards. */
covct_rc covct_nn_backward(covct_nn_graph *g, int slot,
                           const covct_tensor *grad, covct_error *err);
void covct_nn_zero_grad(covct_nn_graph *g);
const covct_tensor *covct_nn_input_grad(const covct_nn_graph *g);

/* ---- losses ---------------------------------------------------------------
 * Both take logits (N, K, H, W) and integer labels (N, H, W) in 0..K-1,
 * return the loss and write d(loss)/d(logits) into grad (allocated to the
 * logits' shape). */

/* Softmax cross-entropy, mean over all pixels (K >= 2). */
covct_rc covct_nn_loss_ce(const covct_tensor *logits, const uint8_t *labels,
                          covct_tensor *grad, double *loss, covct_error *err);
/* Soft Dice loss on the softmax probabilities: 1 - mean over classes
 * 1..K-1 of (2 sum(p y) + eps) / (sum(p) + sum(y) + eps), eps = 1, sums
 * over the whole batch. */
covct_rc covct_nn_loss_dice(const covct_tensor *logits,
                            const uint8_t *labels, covct_tensor *grad,
                            double *loss, covct_error *err);
/* Soft Dice of infection, any class against background: 1 - (2 sum(q y) +
 * eps) / (sum(q) + sum(y) + eps) with q = 1 - p(background), y = label >
 * 0, eps = 1, sums over the whole batch (the quantity covct segment's
 * infection map is scored by). */
covct_rc covct_nn_loss_dice_infection(const covct_tensor *logits,
                                      const uint8_t *labels,
                                      covct_tensor *grad, double *loss,
                                      covct_error *err);

/* ---- optimiser ------------------------------------------------------------
 * Adam with decoupled weight decay (AdamW, Loshchilov & Hutter), step for
 * step as PyTorch's torch.optim.AdamW (amsgrad off): p *= 1 - lr wd;
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps).
 * Defaults b1 0.9, b2 0.999, eps 1e-8.  Buffers are not touched. */
typedef struct covct_nn_adam {
    double lr, beta1, beta2, eps, weight_decay;
    uint64_t t;
    size_t n;
    covct_tensor *m, *v; /* one per parameter, allocated on first step */
} covct_nn_adam;

void covct_nn_adam_init(covct_nn_adam *a, double lr, double weight_decay);
covct_rc covct_nn_adam_step(covct_nn_adam *a, covct_nn_graph *g,
                            covct_error *err);
void covct_nn_adam_free(covct_nn_adam *a);

/* ---- the segmentation model ----------------------------------------------
 * A U-Net (Ronneberger et al. 2015) with batch norm: per level two
 * 3x3 conv -> batch norm -> ReLU, max pooling 2 down, transposed conv 2/2
 * up, skip by concatenation, a 1x1 conv to `classes` logits.  Level l has
 * base x 2^l channels.  Inputs must be a multiple of 2^(depth-1) in both
 * directions (callers pad). */
typedef struct covct_unet_config {
    int in_channels; /* 1..8 */
    int classes;     /* 2..16 */
    int depth;       /* levels, 1..7 */
    int base;        /* channels of the first level, 1..256 */
} covct_unet_config;

/* Build the U-Net; *out_slot is the logits slot. */
covct_rc covct_nn_unet(const covct_unet_config *cfg, uint64_t seed,
                       covct_nn_graph **g, int *out_slot, covct_error *err);

/* A trained model: the network, its output slot, and its model card
 * (JSON object text: training data, licence, metrics...). */
typedef struct covct_nn_model {
    covct_unet_config cfg;
    covct_nn_graph *graph;
    int out_slot;
    /* Preprocessing: slices are scaled so their longer side is input_size
     * pixels and padded to input_size x input_size (0: run at the slice's
     * own size, padded to the network's stride). */
    int input_size;
    char *card_json;
    /* Inference plan of the last input shape, made and used by
     * covct_nn_segment_slice(); freed by covct_nn_model_free().  Call
     * covct_nn_model_forget_plan() after changing the weights. */
    covct_nn_plan *plan;
} covct_nn_model;

/* Model file (docs/internals/model-format.md): magic, version, a JSON
 * header (architecture, parameter shapes, model card), the parameters as
 * little-endian float32, a CRC-32 of everything before it.  Reading
 * refuses anything that does not check out, naming what and where. */
covct_rc covct_nn_model_write(const char *path, const covct_nn_model *m,
                              covct_error *err);
covct_rc covct_nn_model_read_buffer(const uint8_t *buf, size_t len,
                                    covct_nn_model *m, covct_error *err);
covct_rc covct_nn_model_read(const char *path, covct_nn_model *m,
                             covct_error *err);
void covct_nn_model_free(covct_nn_model *m);
void covct_nn_model_forget_plan(covct_nn_model *m);
/* Move the model's infection decision (the threshold chosen by
 * cross-validation, built into the model): afterwards its infection map
 * reaches 0.5 (128 of 255) where it reached level / 255 before.  The
 * final convolution's background bias is lowered by ln((255 - level) /
 * level), written to *offset (may be NULL); every map stays a softmax
 * output.  Refused unless the output is a convolution with a bias. */
covct_rc covct_nn_model_shift_infection_cut(covct_nn_model *m, int level,
                                            double *offset, covct_error *err);

/* ---- augmentation ------------------------------------------------------------
 * One training sample: the slice (w x h bytes) and its label map are
 * mapped into a size x size square (the longer side fits it, aspect kept,
 * the rest black / background), with a random flip, rotation, scale and
 * smooth elastic displacement shared by both, then the image's intensity
 * v / 255 gets a random gamma, contrast, brightness and Gaussian noise.
 * All ranges are +-; an all-zero covct_nn_augment is the identity, which
 * is exactly the preprocessing covct_nn_segment_slice uses for models with
 * an input_size.  Deterministic for a given seed. */
typedef struct covct_nn_augment {
    int flip;                /* mirror left-right half of the time */
    double rotate_deg;       /* rotation, uniform in +-rotate_deg */
    double scale;            /* zoom 1 +- scale */
    double elastic_px;       /* RMS displacement, output pixels */
    double elastic_sigma_px; /* smoothness of the displacement */
    double gamma;            /* v^exp(+-gamma) */
    double contrast;         /* (v - 0.5)(1 +- contrast) + 0.5 */
    double brightness;       /* + (+-brightness) */
    double noise;            /* Gaussian noise, standard deviation */
} covct_nn_augment;

/* The ranges covct train uses (docs/internals/training.md). */
void covct_nn_augment_default(covct_nn_augment *a);
/* out_img: size x size floats; out_lab: size x size bytes (or NULL; lab
 * may be NULL, giving background). */
covct_rc covct_nn_augment_sample(const covct_nn_augment *a, uint64_t seed,
                                 const uint8_t *img, const uint8_t *lab,
                                 uint32_t w, uint32_t h, int size,
                                 float *out_img, uint8_t *out_lab,
                                 covct_error *err);

/* ---- training ------------------------------------------------------------------
 * Supervised training of a U-Net on 2-D slices with label maps (0
 * background, 1..classes-1 lesion classes).  Loss: softmax cross-entropy +
 * soft Dice; AdamW; augmentation per sample (covct_nn_augment_default);
 * every random choice derives from (seed, epoch, sample), so a run resumed
 * from a checkpoint continues exactly as an uninterrupted one.
 * Validation after every epoch: per-image Dice of infection (any lesion
 * class; map >= 128, as covct segment thresholds it) on the validation
 * slices whose ground truth is not empty, averaged. */
typedef struct covct_nn_sample {
    const char *name;
    uint32_t width, height;
    const uint8_t *pixels; /* 8-bit slice */
    const uint8_t *labels; /* class per pixel */
} covct_nn_sample;

typedef struct covct_nn_train_config {
    covct_unet_config net;
    int input_size;   /* training square, also the model's input_size */
    int epochs;
    int batch;
    double lr, weight_decay;
    int cosine;       /* learning rate lr (1 + cos(pi e / epochs)) / 2 in
                       * epoch e (0-based); else constant */
    double infection_dice; /* weight of the infection soft Dice in the loss
                            * (covct_nn_loss_dice_infection); 0: off */
    uint64_t seed;
    covct_nn_augment augment;
} covct_nn_train_config;

typedef struct covct_nn_epoch_report {
    int epoch, epochs;
    double loss;      /* mean training loss of the epoch */
    double val_dice;  /* mean validation Dice, or -1 without validation */
    double seconds;   /* since training started */
} covct_nn_epoch_report;

/* Called after every epoch; return nonzero to stop (the model so far is
 * kept).  `m` is the model after the epoch (save a checkpoint from it). */
typedef int (*covct_nn_epoch_fn)(const covct_nn_epoch_report *r,
                                 covct_nn_model *m, covct_nn_adam *opt,
                                 void *user);

/* Train m (already built: covct_nn_unet or a loaded checkpoint; opt may
 * hold a checkpoint's optimiser state) from epoch `first_epoch` (0 for a
 * fresh run).  val may be NULL / n_val 0. */
covct_rc covct_nn_train(covct_nn_model *m, covct_nn_adam *opt,
                        const covct_nn_train_config *cfg, int first_epoch,
                        const covct_nn_sample *train, size_t n_train,
                        const covct_nn_sample *val, size_t n_val,
                        covct_nn_epoch_fn on_epoch, void *user,
                        covct_error *err);

/* Mean per-image infection Dice of m on the samples (skipping empty
 * ground truth); *counted gets the number of images used. */
covct_rc covct_nn_validate(covct_nn_model *m, const covct_nn_sample *val,
                           size_t n_val, double *dice, size_t *counted,
                           covct_error *err);

/* Optimiser state beside a model file (checkpoints): PATH written
 * atomically with step count, m and v, CRC-32. */
covct_rc covct_nn_adam_write(const char *path, const covct_nn_adam *a,
                             covct_error *err);
covct_rc covct_nn_adam_read(const char *path, covct_nn_adam *a,
                            covct_nn_graph *g, covct_error *err);

/* ---- inference plans ----------------------------------------------------------
 * A graph compiled for inference on inputs n x C x h x w (C the graph's
 * input channels): batch norms that follow a convolution are folded into
 * it, ReLUs run as its post-op, weights are reordered once and the
 * activations stay in oneDNN's blocked layouts from the first layer to
 * the last (docs/internals/nn.md).  The plan is a snapshot: it copies the
 * parameters, so training the graph afterwards does not change it.
 * Graphs with a batch norm that follows no convolution are refused
 * (COVCT_ERR_UNSUPPORTED): run covct_nn_forward() for those.
 * covct_nn_plan_run() reads a plain NCHW input and writes the output
 * slot's value, plain NCHW, into `output` (out_c x out_h x out_w per
 * batch item, from covct_nn_plan_shape()).  One thread at a time per
 * plan. */
covct_rc covct_nn_plan_new(const covct_nn_graph *g, int out_slot, int n,
                           int h, int w, covct_nn_plan **out,
                           covct_error *err);
void covct_nn_plan_shape(const covct_nn_plan *p, int *in_n, int *in_h,
                         int *in_w, int *out_c, int *out_h, int *out_w);
covct_rc covct_nn_plan_run(covct_nn_plan *p, const float *input,
                           float *output, covct_error *err);
void covct_nn_plan_free(covct_nn_plan *p);

/* ---- segmenting 2-D slices -------------------------------------------------
 * Input pixels v (0..255) enter the network as v / 255 (training uses
 * covct_nn_pixels_to_input() too, so the two cannot drift apart).  With
 * an input_size, the slice is mapped into that square as the identity
 * augmentation does, and the probabilities are sampled back (bilinear) at
 * every input pixel; without, the slice is padded with zeros (black:
 * air) to a multiple of 2^(depth-1) on the right and bottom, run in
 * inference mode, and cropped back.
 * Outputs, one byte per pixel, size of the input: `infection` = 255 x
 * (1 - p(background)); for 3-class models `ggo` = 255 x p(class 1) and
 * `consolidation` = 255 x p(class 2) (NULL pointers are skipped). */
void covct_nn_pixels_to_input(const uint8_t *pixels, size_t n, float *out);
covct_rc covct_nn_segment_slice(covct_nn_model *m, const uint8_t *pixels,
                                uint32_t width, uint32_t height,
                                uint8_t *infection, uint8_t *ggo,
                                uint8_t *consolidation, covct_error *err);

/* Test-time augmentation: COVCT_NN_TTA_FLIP also runs the network on the
 * left-right mirror of the slice and averages the two passes' class
 * probabilities (mirrored back), at twice the cost.  tta 0 is
 * covct_nn_segment_slice(). */
#define COVCT_NN_TTA_FLIP 1u
/* COVCT_NN_GRID_TIGHT (models with an input size only): the network runs
 * on the band of its square that holds the slice (the slice's short side
 * as the square holds it plus COVCT_NN_GRID_MARGIN pixels of black on
 * either side, covct_nn_grid) instead of the whole square: the same
 * scale, less padding to compute.  The maps differ from the square's
 * only near the band's edges, through the network's zero padding. */
#define COVCT_NN_GRID_TIGHT 2u
#define COVCT_NN_GRID_MARGIN 24u
/* The network's grid (columns gw, rows gh) for a width x height slice
 * under COVCT_NN_GRID_TIGHT; without an input size, the slice padded to
 * the network's stride. */
void covct_nn_grid(const covct_nn_model *m, uint32_t width, uint32_t height,
                   uint32_t *gw, uint32_t *gh);
covct_rc covct_nn_segment_slice_tta(covct_nn_model *m, const uint8_t *pixels,
                                    uint32_t width, uint32_t height,
                                    unsigned tta, uint8_t *infection,
                                    uint8_t *ggo, uint8_t *consolidation,
                                    covct_error *err);

/* An ensemble: the class probabilities of n_models networks (each with
 * its own infection cut built in, covct_nn_model_shift_infection_cut)
 * averaged pixel by pixel, then written as covct_nn_segment_slice does.
 * The networks must take the same input (channels, input size, depth);
 * n_models 1 is covct_nn_segment_slice_tta(). */
covct_rc covct_nn_segment_slice_ens(covct_nn_model *const *models, int n_models,
                                    const uint8_t *pixels, uint32_t width,
                                    uint32_t height, unsigned tta,
                                    uint8_t *infection, uint8_t *ggo,
                                    uint8_t *consolidation, covct_error *err);

#ifdef __cplusplus
}
#endif

#endif
