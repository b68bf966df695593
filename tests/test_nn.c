/* nn module: every operation's backward against central finite
 * differences of its forward (reference backend), the losses' gradients
 * the same way, errors on bad graphs, and allocation failures.  Parity
 * with PyTorch is tests/test_nn_torch.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/nn.h"
#include "test.h"

static uint64_t rng = 12345;

static double urand(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void fill(covct_tensor *t, double lo, double hi)
{
    for (size_t i = 0; i < covct_tensor_size(t); i++)
        t->data[i] = (float)(lo + (hi - lo) * urand());
}

/* Loss = sum(out * r), r fixed: d loss / d out = r. */
static double loss_of(covct_nn_graph *g, const covct_tensor *x, int out,
                      const covct_tensor *r)
{
    covct_error err = {0};
    if (covct_nn_forward(g, x, &err) != COVCT_OK) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return NAN;
    }
    const covct_tensor *y = covct_nn_value(g, out);
    double s = 0;
    for (size_t i = 0; i < covct_tensor_size(y); i++)
        s += (double)y->data[i] * r->data[i];
    return s;
}

/* Compare the analytic gradient of the input and of every trained
 * parameter with central differences; returns the worst relative error. */
static double grad_check(covct_nn_graph *g, covct_tensor *x, int out,
                         double h)
{
    covct_error err = {0};
    if (covct_nn_forward(g, x, &err) != COVCT_OK)
        return INFINITY;
    const covct_tensor *y = covct_nn_value(g, out);
    covct_tensor r = {0};
    covct_tensor_alloc(&r, y->n, y->c, y->h, y->w, NULL);
    fill(&r, -1, 1);
    covct_nn_zero_grad(g);
    if (covct_nn_backward(g, out, &r, &err) != COVCT_OK) {
        fprintf(stderr, "backward: %s\n", err.msg);
        covct_tensor_free(&r);
        return INFINITY;
    }
    covct_tensor gx = {0};
    const covct_tensor *ig = covct_nn_input_grad(g);
    covct_tensor_alloc(&gx, x->n, x->c, x->h, x->w, NULL);
    if (ig)
        memcpy(gx.data, ig->data, covct_tensor_size(x) * sizeof(float));
    double worst = 0;
    /* Input. */
    for (size_t i = 0; i < covct_tensor_size(x); i++) {
        float keep = x->data[i];
        x->data[i] = keep + (float)h;
        double lp = loss_of(g, x, out, &r);
        x->data[i] = keep - (float)h;
        double lm = loss_of(g, x, out, &r);
        x->data[i] = keep;
        double num = (lp - lm) / (2 * h);
        double e = fabs(num - gx.data[i]) / (1e-2 + fabs(num));
        if (e > worst)
            worst = e;
    }
    /* Parameters (the running statistics are not trained). */
    size_t np = covct_nn_param_count(g);
    for (size_t p = 0; p < np; p++) {
        covct_tensor *pt = covct_nn_param(g, p), *pg = covct_nn_param_grad(g, p);
        if (!pg)
            continue;
        covct_tensor ga = {0};
        covct_tensor_alloc(&ga, pt->n, pt->c, pt->h, pt->w, NULL);
        memcpy(ga.data, pg->data, covct_tensor_size(pt) * sizeof(float));
        for (size_t i = 0; i < covct_tensor_size(pt); i++) {
            float keep = pt->data[i];
            pt->data[i] = keep + (float)h;
            double lp = loss_of(g, x, out, &r);
            pt->data[i] = keep - (float)h;
            double lm = loss_of(g, x, out, &r);
            pt->data[i] = keep;
            double num = (lp - lm) / (2 * h);
            double e = fabs(num - ga.data[i]) / (1e-2 + fabs(num));
            if (e > worst)
                worst = e;
        }
        covct_tensor_free(&ga);
    }
    covct_tensor_free(&r);
    covct_tensor_free(&gx);
    return worst;
}

/* Values spread evenly over -1..1 in random order: no two within 2/n of
 * each other and none near 0, so a finite difference of 1e-2 never
 * crosses a kink of ReLU or a tie of max pooling (n <= 96). */
static void fill_spread(covct_tensor *t)
{
    size_t n = covct_tensor_size(t);
    for (size_t i = 0; i < n; i++)
        t->data[i] = (float)(-1.0 + 2.0 * ((double)i + 0.5) / (double)n);
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)(urand() * (double)(i + 1));
        float v = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = v;
    }
}

typedef int (*build_fn)(covct_nn_graph *g, covct_error *err);

static int b_conv(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_conv2d(g, 0, 3, 3, 1, 1, 1, 1, e);
}
static int b_conv_s2_d2(covct_nn_graph *g, covct_error *e)
{
    int a = covct_nn_conv2d(g, 0, 2, 3, 2, 2, 2, 0, e);
    return covct_nn_conv2d(g, a, 3, 1, 1, 0, 1, 1, e);
}
static int b_convt(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_convt2d(g, 0, 3, 2, 2, 0, 1, e);
}
static int b_convt_k3(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_convt2d(g, 0, 2, 3, 2, 1, 0, e);
}
static int b_bn(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_batchnorm(g, 0, e);
}
static int b_leaky(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_leakyrelu(g, 0, 0.1f, e);
}
static int b_relu(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_relu(g, 0, e);
}
static int b_maxpool(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_maxpool(g, 0, 2, e);
}
static int b_avgpool(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_avgpool(g, 0, 2, e);
}
static int b_up(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_upsample2x(g, 0, e);
}
static int b_concat_add(covct_nn_graph *g, covct_error *e)
{
    int a = covct_nn_conv2d(g, 0, 2, 1, 1, 0, 1, 1, e);
    int b = covct_nn_concat(g, a, 0, e); /* 2 + 2 channels */
    int c = covct_nn_conv2d(g, b, 2, 3, 1, 1, 1, 0, e);
    return covct_nn_add(g, c, 0, e);     /* input used three times */
}
static int b_sigmoid(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_sigmoid(g, 0, e);
}
static int b_softmax(covct_nn_graph *g, covct_error *e)
{
    return covct_nn_softmax(g, 0, e);
}

static void op_case(const char *name, build_fn build, int n, int c, int h,
                    int w, double tol)
{
    covct_nn_graph *g = NULL;
    covct_error err = {0};
    CHECK(covct_nn_graph_new(&g, &err) == COVCT_OK);
    if (!g)
        return;
    covct_nn_set_input_channels(g, c);
    covct_nn_set_backend(g, COVCT_NN_REFERENCE); /* the loops are checked here */
    covct_nn_seed(g, 7);
    int out = build(g, &err);
    CHECKF(out > 0, "%s: build failed: %s", name, err.msg);
    covct_tensor x = {0};
    covct_tensor_alloc(&x, n, c, h, w, NULL);
    fill_spread(&x);
    double e = out > 0 ? grad_check(g, &x, out, 1e-2) : INFINITY;
    printf("%-22s worst relative gradient error %.2e\n", name, e);
    CHECKF(e <= tol, "%s: gradient error %.3g > %.3g", name, e, tol);
    covct_tensor_free(&x);
    covct_nn_graph_free(g);
}

/* Loss gradients by central differences on the logits. */
typedef covct_rc (*loss_fn)(const covct_tensor *, const uint8_t *,
                           covct_tensor *, double *, covct_error *);

static void loss_case(int kind)
{
    static const loss_fn fns[] = {covct_nn_loss_ce, covct_nn_loss_dice,
                                  covct_nn_loss_dice_infection};
    static const char *names[] = {"cross-entropy", "Dice loss",
                                  "infection Dice loss"};
    const loss_fn fn = fns[kind];
    covct_tensor z = {0}, gr = {0}, tmp = {0};
    covct_tensor_alloc(&z, 2, 3, 4, 5, NULL);
    fill(&z, -2, 2);
    uint8_t lab[2 * 4 * 5];
    for (size_t i = 0; i < sizeof lab; i++)
        lab[i] = (uint8_t)(urand() * 3);
    double loss = 0, lp, lm, worst = 0;
    covct_error err = {0};
    covct_rc rc = fn(&z, lab, &gr, &loss, &err);
    CHECKF(rc == COVCT_OK, "loss: %s", err.msg);
    for (size_t i = 0; i < covct_tensor_size(&z); i++) {
        float keep = z.data[i];
        z.data[i] = keep + 1e-2f;
        rc = fn(&z, lab, &tmp, &lp, NULL);
        z.data[i] = keep - 1e-2f;
        rc = fn(&z, lab, &tmp, &lm, NULL);
        z.data[i] = keep;
        double num = (lp - lm) / 2e-2;
        double e = fabs(num - gr.data[i]) / (1e-3 + fabs(num));
        if (e > worst)
            worst = e;
    }
    printf("%-22s loss %.5f, worst relative gradient error %.2e\n",
           names[kind], loss, worst);
    CHECKF(worst < 2e-2, "%s gradient error %.3g", names[kind], worst);
    /* Perfect prediction: CE near 0, Dice near 0. */
    for (int b = 0; b < 2; b++)
        for (int p = 0; p < 20; p++)
            for (int k = 0; k < 3; k++)
                z.data[(b * 3 + k) * 20 + p] = k == lab[b * 20 + p] ? 30.0f : -30.0f;
    rc = fn(&z, lab, &tmp, &loss, NULL);
    CHECKF(rc == COVCT_OK && loss < 1e-6, "perfect prediction: loss %g", loss);
    /* A label out of range is refused with its position. */
    lab[7] = 3;
    covct_error_clear(&err);
    rc = fn(&z, lab, &tmp, &loss, &err);
    CHECKF(rc == COVCT_ERR_ARG && strstr(err.msg, "pixel 7"),
           "bad label: %s", err.msg);
    covct_tensor_free(&z);
    covct_tensor_free(&gr);
    covct_tensor_free(&tmp);
}

/* Hand-computable values. */
static void known_values(void)
{
    covct_nn_graph *g = NULL;
    covct_nn_graph_new(&g, NULL);
    covct_nn_set_input_channels(g, 1);
    int c = covct_nn_conv2d(g, 0, 1, 3, 1, 1, 1, 1, NULL);
    int m = covct_nn_maxpool(g, c, 2, NULL);
    covct_tensor *w = covct_nn_param(g, 0), *b = covct_nn_param(g, 1);
    for (int i = 0; i < 9; i++)
        w->data[i] = 0;
    w->data[4] = 2; /* centre tap: y = 2 x + 1 */
    b->data[0] = 1;
    covct_tensor x = {0};
    covct_tensor_alloc(&x, 1, 1, 2, 2, NULL);
    x.data[0] = 1, x.data[1] = -3, x.data[2] = 5, x.data[3] = 0;
    CHECK(covct_nn_forward(g, &x, NULL) == COVCT_OK);
    const covct_tensor *y = covct_nn_value(g, c), *p = covct_nn_value(g, m);
    CHECK(y && y->h == 2 && y->w == 2 && y->data[0] == 3 && y->data[1] == -5 &&
          y->data[2] == 11 && y->data[3] == 1);
    CHECK(p && p->h == 1 && p->w == 1 && p->data[0] == 11);
    covct_tensor_free(&x);
    covct_nn_graph_free(g);
}

static void bad_graphs(void)
{
    covct_nn_graph *g = NULL;
    covct_error err = {0};
    covct_nn_graph_new(&g, NULL);
    covct_nn_set_input_channels(g, 2);
    int a = covct_nn_conv2d(g, 0, 3, 3, 1, 1, 1, 1, &err);
    CHECK(a > 0);
    covct_error_clear(&err);
    CHECK(covct_nn_add(g, a, 0, &err) < 0 && strstr(err.msg, "3 and 2"));
    covct_error_clear(&err);
    CHECK(covct_nn_relu(g, 99, &err) < 0 && strstr(err.msg, "99"));
    covct_error_clear(&err);
    CHECK(covct_nn_conv2d(g, a, 3, 0, 1, 1, 1, 1, &err) < 0);
    int p = covct_nn_maxpool(g, a, 4, &err);
    covct_tensor x = {0};
    covct_tensor_alloc(&x, 1, 1, 8, 8, NULL);
    covct_error_clear(&err);
    CHECK(covct_nn_forward(g, &x, &err) == COVCT_ERR_ARG &&
          strstr(err.msg, "1 channels, the network takes 2"));
    covct_tensor_free(&x);
    covct_tensor_alloc(&x, 1, 2, 3, 3, NULL);
    covct_error_clear(&err);
    CHECKF(covct_nn_forward(g, &x, &err) == COVCT_ERR_ARG &&
               strstr(err.msg, "max pooling"),
           "pooling too small: %s", err.msg);
    covct_error_clear(&err);
    covct_tensor r = {0};
    covct_tensor_alloc(&r, 1, 1, 1, 1, NULL);
    CHECK(covct_nn_backward(g, p, &r, &err) == COVCT_ERR_ARG);
    covct_tensor_free(&r);
    covct_tensor_free(&x);
    covct_nn_graph_free(g);
}

/* Every allocation of building, running and training a small network
 * fails in turn: an error comes back and nothing leaks (ASan). */
static void alloc_failures(void)
{
    size_t fails = 0;
    for (uint64_t k = 1; k < 400; k++) {
        covct_alloc_fail_at(k);
        covct_nn_graph *g = NULL;
        covct_nn_adam opt;
        covct_nn_adam_init(&opt, 1e-3, 1e-4);
        covct_tensor x = {0}, gr = {0};
        uint8_t lab[16] = {0};
        double loss;
        int ok = covct_nn_graph_new(&g, NULL) == COVCT_OK;
        if (ok) {
            covct_nn_set_input_channels(g, 1);
            int a = covct_nn_conv2d(g, 0, 4, 3, 1, 1, 1, 1, NULL);
            int b = a > 0 ? covct_nn_batchnorm(g, a, NULL) : -1;
            int c = b > 0 ? covct_nn_maxpool(g, b, 2, NULL) : -1;
            int d = c > 0 ? covct_nn_upsample2x(g, c, NULL) : -1;
            int e = d > 0 ? covct_nn_concat(g, d, a, NULL) : -1;
            int f = e > 0 ? covct_nn_conv2d(g, e, 2, 1, 1, 0, 1, 1, NULL) : -1;
            ok = f > 0 && covct_tensor_alloc(&x, 1, 1, 4, 4, NULL) == COVCT_OK &&
                 covct_nn_forward(g, &x, NULL) == COVCT_OK &&
                 covct_nn_loss_ce(covct_nn_value(g, f), lab, &gr, &loss,
                                  NULL) == COVCT_OK &&
                 covct_nn_backward(g, f, &gr, NULL) == COVCT_OK &&
                 covct_nn_adam_step(&opt, g, NULL) == COVCT_OK;
        }
        uint64_t used = covct_alloc_count();
        covct_alloc_fail_at(0);
        covct_nn_adam_free(&opt);
        covct_tensor_free(&x);
        covct_tensor_free(&gr);
        covct_nn_graph_free(g);
        if (ok && used < k)
            break; /* every allocation has been failed once */
        fails += !ok;
    }
    printf("allocation failures: %zu paths failed cleanly\n", fails);
    CHECK(fails > 20);
}

int main(void)
{
    op_case("conv 3x3 bias", b_conv, 2, 2, 5, 4, 1e-2);
    op_case("conv s2 d2 + 1x1", b_conv_s2_d2, 1, 2, 7, 6, 1e-2);
    op_case("transposed conv 2/2", b_convt, 2, 2, 3, 4, 1e-2);
    op_case("transposed conv 3/2 p1", b_convt_k3, 1, 3, 3, 3, 1e-2);
    op_case("batch norm (training)", b_bn, 3, 2, 3, 3, 2e-2);
    op_case("leaky ReLU", b_leaky, 1, 2, 4, 4, 1e-2);
    op_case("ReLU", b_relu, 1, 2, 4, 4, 1e-2);
    op_case("max pooling", b_maxpool, 2, 2, 4, 6, 1e-2);
    op_case("average pooling", b_avgpool, 2, 2, 4, 6, 1e-2);
    op_case("upsampling", b_up, 1, 2, 3, 2, 1e-2);
    op_case("concat + add (shared)", b_concat_add, 2, 2, 4, 3, 1e-2);
    op_case("sigmoid", b_sigmoid, 1, 2, 3, 3, 1e-2);
    op_case("softmax", b_softmax, 2, 3, 3, 2, 1e-2);
    loss_case(0);
    loss_case(1);
    loss_case(2);
    known_values();
    bad_graphs();
    alloc_failures();
    return test_report();
}
