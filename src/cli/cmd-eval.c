/* covct eval: score predicted infection maps against ground-truth masks,
 * with plain fixed-threshold metrics and with the evaluation protocol of
 * the COVID-SemiSeg / Inf-Net paper (Fan et al., IEEE TMI 2020), so that
 * a segmentation can be compared with the published numbers.
 *
 * Everything per image is derived from two 256-bin histograms of the
 * prediction's values, one over the ground-truth positive pixels and one
 * over the negative ones; all pixel counting is exact integer arithmetic.
 * docs/internals/eval.md explains the choices and the authors' code. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "covct/image.h"

/* Declared here as well as in cli.h, which registers it. */
int covct_cmd_eval(int argc, char **argv);

#define EVAL_SCHEMA "covct-eval/1"
#define N_THR 256             /* thresholds 255/255, 254/255, ..., 0/255 */
#define FIXED_THR 128         /* fixed binarisation: prediction >= 128 */
#define DEFAULT_RESAMPLES 2000
#define MAX_RESAMPLES 100000
#define DEFAULT_SEED 1
#define MAX_LISTED 12 /* names listed in one error message */

static const char help[] =
    "Usage: covct eval PRED_DIR GT_DIR [OPTIONS]\n"
    "\n"
    "Score predicted infection maps (for example the output of 'covct\n"
    "segment') against ground-truth masks drawn by a radiologist, the way\n"
    "the COVID-SemiSeg / Inf-Net paper (Fan et al., IEEE TMI 2020) scores\n"
    "its models, so the result can be compared with the published numbers.\n"
    "\n"
    "Files are paired by name without extension: PRED_DIR/12.png goes with\n"
    "GT_DIR/12.png or GT_DIR/12.jpg.  Only .png, .jpg and .jpeg files are\n"
    "used; a prediction without ground truth, or a mask without prediction,\n"
    "is an error.  A prediction and its mask must have the same size.\n"
    "  prediction   8-bit grey picture: 0..255 infection probability, or a\n"
    "               0/255 mask (colour is converted to grey)\n"
    "  ground truth any value > 0 is infection (see --gt-threshold); with\n"
    "               --class K, a label PNG (palette or grey) whose value K\n"
    "               is infection, for example 1 = ground glass or\n"
    "               2 = consolidation in COVID-SemiSeg's multi-class masks\n"
    "\n"
    "Metrics, per image and averaged over images:\n"
    "  Fixed threshold: the prediction is infection where its value >= 128.\n"
    "    Dice 2TP/(2TP+FP+FN), sensitivity TP/(TP+FN), specificity\n"
    "    TN/(TN+FP), precision TP/(TP+FP), IoU TP/(TP+FP+FN); TP, FP, FN, TN\n"
    "    are pixel counts.\n"
    "  Inf-Net protocol (the authors' EvaluationTool/main.m): each map is\n"
    "    min-max normalised to 0..1 and binarised at 256 thresholds, 1,\n"
    "    254/255, ..., 0 (infection where normalised value >= threshold);\n"
    "    Dice, sensitivity and specificity are computed per image and\n"
    "    threshold, averaged over the images for each threshold, and\n"
    "    'mean Dice' is the mean of that curve over the thresholds, 'max\n"
    "    Dice' its highest point; mean sensitivity / specificity likewise.\n"
    "    The published scores of the paper are these means.  A 0/255 mask\n"
    "    scores about its plain Dice in both, so compare a mask by max Dice.\n"
    "\n";

/* Two strings: C11 only promises 4095 characters in one literal. */
static const char help_more[] =
    "Edge cases (the same in the text and in the JSON):\n"
    "  - Images whose mask is empty are listed apart and left out of every\n"
    "    average and confidence interval, as the authors left them out.\n"
    "    Their sensitivity is undefined (null), their Dice and IoU are 1\n"
    "    when the prediction is empty too, else 0.\n"
    "  - Precision with no predicted pixel is 0 (a missed lesion).\n"
    "  - Specificity when the mask covers the whole image is 1 (no pixel\n"
    "    could be a false positive).\n"
    "  - Inf-Net protocol, as the authors' Fmeasure_calu.m: at a threshold\n"
    "    where no infected pixel is found (TP = 0), Dice, sensitivity and\n"
    "    specificity all count 0, even specificity.  A map whose pixels\n"
    "    are all equal is not normalised (value/255, as MATLAB's mapminmax\n"
    "    leaves a constant row), so a constant 0 map is empty at every\n"
    "    threshold but 0 and a constant 255 map is full at all.  Ties\n"
    "    between a normalised value and a threshold are decided exactly\n"
    "    (covct compares integers; MATLAB's floating point decides a few\n"
    "    ties the other way).\n"
    "\n"
    "95 % confidence intervals: percentile bootstrap over images (the\n"
    "images with infection, in the order listed, resampled with\n"
    "replacement; every metric from the same resamples), the 2.5th and\n"
    "97.5th percentiles of the resampled averages with linear\n"
    "interpolation (numpy.percentile's default).  Random numbers:\n"
    "splitmix64 (Steele, Lea and Flood 2014) started at the seed; the\n"
    "image drawn is the next number modulo the image count.\n"
    "\n"
    "Options:\n"
    "  --json FILE        write every number (per image, averages, curves,\n"
    "                     intervals, protocol, counts) as JSON\n"
    "  --bootstrap N      resamples for the intervals (default 2000; 0 for\n"
    "                     no intervals; at most 100000)\n"
    "  --seed S           seed of the resampling (default 1)\n"
    "  --class K          the mask is a label image; value K is infection\n"
    "  --gt-threshold T   mask pixels above T are infection (default 0; the\n"
    "                     Inf-Net tool uses 128, which only matters for\n"
    "                     masks that are not 0/255, such as JPEG masks)\n"
    "  --pred-suffix S    use only predictions named STEM+S (for example\n"
    "                     _ggo for covct segment's 12_ggo.png), paired with\n"
    "                     GT_DIR/STEM; other files in PRED_DIR are ignored\n"
    "  -v, --verbose      also print the metrics of every image\n"
    "  -h, --help         this text\n"
    "\n"
    "Images are listed in natural name order (2 before 10).\n"
    "Exit status: 0 scored, 1 a file is missing, unreadable or of the wrong\n"
    "size, or no mask has infection, 2 wrong command line.\n";

/* ---- options ------------------------------------------------------------ */

typedef struct eval_opts {
    const char *pred_dir, *gt_dir, *json, *pred_suffix;
    uint64_t resamples, seed;
    int cls;          /* -1: binary mask read as grey */
    int gt_threshold; /* grey masks: value > gt_threshold is infection */
    bool verbose;
} eval_opts;

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

/* ---- file lists --------------------------------------------------------- */

typedef struct file_ent {
    char *stem; /* name without extension (and without --pred-suffix) */
    char *name; /* name in its folder */
    char *path;
} file_ent;

typedef struct file_list {
    file_ent *v;
    size_t n, cap;
    size_t ignored; /* files that are not .png/.jpg/.jpeg */
} file_list;

static void file_list_free(file_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].stem);
        free(l->v[i].name);
        free(l->v[i].path);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool ext_is_image(const char *ext)
{
    return !strcasecmp(ext, "png") || !strcasecmp(ext, "jpg") ||
           !strcasecmp(ext, "jpeg");
}

/* Natural order: runs of digits compare as numbers, so 2 < 10. */
static int natural_cmp(const char *a, const char *b)
{
    const char *p = a, *q = b;
    while (*p && *q) {
        if (*p >= '0' && *p <= '9' && *q >= '0' && *q <= '9') {
            while (*p == '0')
                p++;
            while (*q == '0')
                q++;
            size_t lp = 0, lq = 0;
            while (p[lp] >= '0' && p[lp] <= '9')
                lp++;
            while (q[lq] >= '0' && q[lq] <= '9')
                lq++;
            if (lp != lq)
                return lp < lq ? -1 : 1;
            int c = memcmp(p, q, lp);
            if (c)
                return c;
            p += lp;
            q += lq;
        } else {
            if (*p != *q)
                return (unsigned char)*p < (unsigned char)*q ? -1 : 1;
            p++;
            q++;
        }
    }
    if (*p || *q)
        return *p ? 1 : -1;
    return strcmp(a, b);
}

static int ent_cmp(const void *x, const void *y)
{
    const file_ent *a = x, *b = y;
    int c = natural_cmp(a->stem, b->stem);
    return c ? c : strcmp(a->name, b->name);
}

/* The image files of a folder (not recursive, hidden files skipped),
 * sorted by stem.  With a suffix, only stems ending in it are kept and the
 * suffix is cut off.  Returns false after printing an error. */
static bool list_folder(const char *dir, const char *suffix, const char *role,
                        file_list *out)
{
    DIR *d = opendir(dir);
    if (!d) {
        covct_cli_error("eval: cannot open the %s folder %s: %s", role, dir,
                        strerror(errno));
        return false;
    }
    size_t suf_len = suffix ? strlen(suffix) : 0;
    bool ok = true;
    struct dirent *de;
    while (ok && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.')
            continue;
        size_t plen = strlen(dir) + 1 + strlen(nm) + 1;
        char *path = malloc(plen);
        if (!path) {
            ok = false;
            break;
        }
        snprintf(path, plen, "%s/%s", dir, nm);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        const char *dot = strrchr(nm, '.');
        if (!dot || dot == nm || !ext_is_image(dot + 1)) {
            out->ignored++;
            free(path);
            continue;
        }
        size_t stem_len = (size_t)(dot - nm);
        if (suf_len) {
            if (stem_len <= suf_len ||
                memcmp(nm + stem_len - suf_len, suffix, suf_len) != 0) {
                out->ignored++;
                free(path);
                continue;
            }
            stem_len -= suf_len;
        }
        if (out->n == out->cap) {
            size_t nc = out->cap ? 2 * out->cap : 64;
            file_ent *nv = realloc(out->v, nc * sizeof *nv);
            if (!nv) {
                free(path);
                ok = false;
                break;
            }
            out->v = nv;
            out->cap = nc;
        }
        file_ent *e = &out->v[out->n];
        e->stem = strndup(nm, stem_len);
        e->name = strdup(nm);
        e->path = path;
        out->n++;
        if (!e->stem || !e->name)
            ok = false;
    }
    closedir(d);
    if (!ok) {
        covct_cli_error("eval: out of memory listing %s", dir);
        return false;
    }
    if (out->n == 0) {
        if (suf_len)
            covct_cli_error("eval: the %s folder %s has no PNG or JPEG file "
                            "whose name ends in '%s' before the extension "
                            "(%zu other files)",
                            role, dir, suffix, out->ignored);
        else
            covct_cli_error("eval: the %s folder %s has no PNG or JPEG file "
                            "(.png, .jpg, .jpeg)%s",
                            role, dir,
                            out->ignored ? "; it holds only other files" : "");
        return false;
    }
    qsort(out->v, out->n, sizeof *out->v, ent_cmp);
    for (size_t i = 1; i < out->n; i++) {
        if (!strcmp(out->v[i - 1].stem, out->v[i].stem)) {
            covct_cli_error("eval: the %s folder %s has two files for image "
                            "'%s': %s and %s; keep one",
                            role, dir, out->v[i].stem, out->v[i - 1].name,
                            out->v[i].name);
            ok = false;
        }
    }
    return ok;
}

/* Print "N what: a, b, c and M more" for the unpaired files. */
static void list_unpaired(const char *msg, const file_list *l,
                          const bool *paired)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += !paired[i];
    if (!n)
        return;
    fprintf(stderr, "covct: error: eval: %s (%zu): ", msg, n);
    size_t shown = 0;
    for (size_t i = 0; i < l->n && shown < MAX_LISTED; i++) {
        if (paired[i])
            continue;
        fprintf(stderr, "%s%s", shown ? ", " : "", l->v[i].name);
        shown++;
    }
    if (n > shown)
        fprintf(stderr, " and %zu more", n - shown);
    fputc('\n', stderr);
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* ---- per-image metrics -------------------------------------------------- */

enum {
    M_DICE, M_SEN, M_SPE, M_PREC, M_IOU,           /* fixed threshold */
    M_PMEAN_DICE, M_PMAX_DICE, M_PMEAN_SEN, M_PMEAN_SPE, /* protocol */
    N_METRICS
};

static const char *const metric_key[N_METRICS] = {
    "dice", "sensitivity", "specificity", "precision", "iou",
    "mean_dice", "max_dice", "mean_sensitivity", "mean_specificity"};

static const char *const metric_label[N_METRICS] = {
    "Dice", "sensitivity", "specificity", "precision", "IoU",
    "mean Dice", "max Dice", "mean sensitivity", "mean specificity"};

typedef struct img_res {
    const file_ent *pred, *gt;
    uint32_t width, height;
    uint64_t tp, fp, fn, tn; /* fixed threshold */
    uint8_t pred_min, pred_max;
    bool empty_gt;
    /* Per image.  M_PMAX_DICE here is this image's own best Dice over the
     * thresholds; the averaged max Dice is the top of the averaged curve.
     * NAN where undefined (sensitivity and protocol of an empty mask). */
    double m[N_METRICS];
} img_res;

static double ratio(uint64_t a, uint64_t b)
{
    return (double)a / (double)b;
}

/* Is a pixel of value v infection at protocol threshold j/255, for a map
 * whose values span lo..hi?  The authors normalise x = (v-lo)/(hi-lo) and
 * test x >= j/255; exactly: 255 (v-lo) >= j (hi-lo).  A constant map is
 * left as v/255 (MATLAB's mapminmax passes a constant row through). */
static bool proto_positive(unsigned v, unsigned j, unsigned lo, unsigned hi)
{
    if (hi > lo)
        return 255u * (v - lo) >= j * (hi - lo);
    return v >= j;
}

/* Per-threshold values of one image (k = 0..255, threshold (255-k)/255),
 * as the authors' Fmeasure_calu.m: all 0 when nothing infected is found. */
static void proto_curves(const uint64_t hp[256], const uint64_t hn[256],
                         unsigned lo, unsigned hi, double *dice, double *sen,
                         double *spe)
{
    uint64_t g = 0, neg = 0;
    for (int v = 0; v < 256; v++) {
        g += hp[v];
        neg += hn[v];
    }
    for (unsigned k = 0; k < N_THR; k++) {
        unsigned j = 255 - k;
        uint64_t tp = 0, fp = 0;
        for (unsigned v = lo; v <= hi; v++) {
            if (proto_positive(v, j, lo, hi)) {
                tp += hp[v];
                fp += hn[v];
            }
        }
        if (tp == 0) {
            dice[k] = sen[k] = spe[k] = 0.0;
        } else {
            dice[k] = ratio(2 * tp, g + tp + fp);
            sen[k] = ratio(tp, g);
            spe[k] = neg ? ratio(neg - fp, neg) : 1.0;
        }
    }
}

static void fixed_metrics(img_res *r)
{
    uint64_t tp = r->tp, fp = r->fp, fn = r->fn, tn = r->tn;
    r->m[M_DICE] = (tp + fp + fn) ? ratio(2 * tp, 2 * tp + fp + fn) : 1.0;
    r->m[M_IOU] = (tp + fp + fn) ? ratio(tp, tp + fp + fn) : 1.0;
    r->m[M_SEN] = (tp + fn) ? ratio(tp, tp + fn) : NAN;
    r->m[M_PREC] = (tp + fp) ? ratio(tp, tp + fp) : 0.0;
    r->m[M_SPE] = (tn + fp) ? ratio(tn, tn + fp) : 1.0;
}

/* Warnings gathered over all images, printed once. */
typedef struct warn_state {
    size_t gt_nonbinary, pred_01;
    const char *gt_nonbinary_eg, *pred_01_eg;
    uint64_t gt_nonbinary_px;
} warn_state;

/* Read one pair and fill r; returns false after printing an error.  The
 * dice/sen/spe curves (N_THR each) are filled unless the mask is empty. */
static bool eval_pair(const eval_opts *o, const file_ent *pred,
                      const file_ent *gt, img_res *r, double *cdice,
                      double *csen, double *cspe, warn_state *w)
{
    covct_image p = {0}, g = {0};
    covct_error err = {0};
    memset(r, 0, sizeof *r);
    r->pred = pred;
    r->gt = gt;
    if (covct_image_read(pred->path, COVCT_IMAGE_GRAY, &p, &err) != COVCT_OK) {
        covct_cli_error("eval: prediction %s", err.msg);
        return false;
    }
    covct_error_clear(&err);
    if (covct_image_read(gt->path, o->cls >= 0 ? COVCT_IMAGE_INDEX
                                               : COVCT_IMAGE_GRAY,
                         &g, &err) != COVCT_OK) {
        covct_cli_error("eval: ground truth %s%s", err.msg,
                        o->cls >= 0 ? " (--class reads masks as label "
                                      "values)"
                                    : "");
        covct_image_free(&p);
        return false;
    }
    if (p.width != g.width || p.height != g.height) {
        covct_cli_error("eval: %s is %u x %u pixels but its ground truth %s "
                        "is %u x %u; a prediction must have the size of its "
                        "mask (covct eval does not resize)",
                        pred->path, (unsigned)p.width, (unsigned)p.height,
                        gt->path, (unsigned)g.width, (unsigned)g.height);
        covct_image_free(&p);
        covct_image_free(&g);
        return false;
    }
    r->width = p.width;
    r->height = p.height;
    uint64_t hp[256] = {0}, hn[256] = {0}, gh[256] = {0};
    size_t n = (size_t)p.width * p.height;
    for (size_t i = 0; i < n; i++) {
        uint8_t gv = g.pixels[i];
        bool pos = o->cls >= 0 ? gv == (uint8_t)o->cls
                               : gv > (unsigned)o->gt_threshold;
        gh[gv]++;
        if (pos)
            hp[p.pixels[i]]++;
        else
            hn[p.pixels[i]]++;
    }
    covct_image_free(&p);
    covct_image_free(&g);

    unsigned lo = 255, hi = 0;
    uint64_t gpos = 0;
    for (unsigned v = 0; v < 256; v++) {
        if (hp[v] || hn[v]) {
            if (v < lo)
                lo = v;
            hi = v;
        }
        gpos += hp[v];
        if (v >= FIXED_THR) {
            r->tp += hp[v];
            r->fp += hn[v];
        } else {
            r->fn += hp[v];
            r->tn += hn[v];
        }
    }
    r->pred_min = (uint8_t)lo;
    r->pred_max = (uint8_t)hi;
    r->empty_gt = gpos == 0;
    fixed_metrics(r);

    if (o->cls < 0) {
        /* A mask with more than two values (JPEG noise, anti-aliasing):
         * say how much of it sits between 0 and its top value. */
        unsigned top = 0, kinds = 0;
        for (unsigned v = 0; v < 256; v++)
            if (gh[v]) {
                top = v;
                kinds++;
            }
        if (kinds > 2) {
            uint64_t mid = 0;
            for (unsigned v = 1; v < top; v++)
                mid += gh[v];
            if (!w->gt_nonbinary++)
                w->gt_nonbinary_eg = gt->path;
            w->gt_nonbinary_px += mid;
        }
    }
    if (hi == 1 && lo == 0) {
        if (!w->pred_01++)
            w->pred_01_eg = pred->path;
    }

    if (r->empty_gt) {
        r->m[M_PMEAN_DICE] = r->m[M_PMAX_DICE] = NAN;
        r->m[M_PMEAN_SEN] = r->m[M_PMEAN_SPE] = NAN;
        return true;
    }
    proto_curves(hp, hn, lo, hi, cdice, csen, cspe);
    double sd = 0, ss = 0, sp = 0, best = 0;
    for (int k = 0; k < N_THR; k++) {
        sd += cdice[k];
        ss += csen[k];
        sp += cspe[k];
        if (cdice[k] > best)
            best = cdice[k];
    }
    r->m[M_PMEAN_DICE] = sd / N_THR;
    r->m[M_PMAX_DICE] = best;
    r->m[M_PMEAN_SEN] = ss / N_THR;
    r->m[M_PMEAN_SPE] = sp / N_THR;
    return true;
}

/* ---- bootstrap ---------------------------------------------------------- */

/* splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
 * generators", OOPSLA 2014; constants as in Vigna's reference code). */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static int dbl_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b ? 1 : 0;
}

/* Percentile q (0..1) of sorted x[0..n-1], linear interpolation between
 * order statistics (Hyndman-Fan type 7, numpy's default). */
static double percentile_sorted(const double *x, size_t n, double q)
{
    double h = q * (double)(n - 1);
    size_t i = (size_t)floor(h);
    if (i + 1 >= n)
        return x[n - 1];
    return x[i] + (h - (double)i) * (x[i + 1] - x[i]);
}

/* Intervals of the averages over the `n` evaluated images: vals[m][i] per
 * metric, curves[i * N_THR + k] the Dice curves (for max Dice). */
static bool bootstrap(const double *const vals[N_METRICS], const double *curves,
                      size_t n, uint64_t resamples, uint64_t seed,
                      double ci[N_METRICS][2])
{
    double *stat = malloc(resamples * N_METRICS * sizeof *stat);
    size_t *count = calloc(n, sizeof *count);
    double *acc = malloc(N_THR * sizeof *acc);
    if (!stat || !count || !acc) {
        free(stat);
        free(count);
        free(acc);
        return false;
    }
    uint64_t state = seed;
    for (uint64_t b = 0; b < resamples; b++) {
        memset(count, 0, n * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[splitmix64(&state) % n]++;
        double sum[N_METRICS] = {0};
        for (int k = 0; k < N_THR; k++)
            acc[k] = 0;
        for (size_t i = 0; i < n; i++) {
            if (!count[i])
                continue;
            double c = (double)count[i];
            for (int m = 0; m < N_METRICS; m++)
                if (m != M_PMAX_DICE)
                    sum[m] += c * vals[m][i];
            const double *cv = curves + i * N_THR;
            for (int k = 0; k < N_THR; k++)
                acc[k] += c * cv[k];
        }
        double best = acc[0];
        for (int k = 1; k < N_THR; k++)
            if (acc[k] > best)
                best = acc[k];
        sum[M_PMAX_DICE] = best;
        for (int m = 0; m < N_METRICS; m++)
            stat[(size_t)m * resamples + b] = sum[m] / (double)n;
    }
    for (int m = 0; m < N_METRICS; m++) {
        double *s = stat + (size_t)m * resamples;
        qsort(s, resamples, sizeof *s, dbl_cmp);
        ci[m][0] = percentile_sorted(s, resamples, 0.025);
        ci[m][1] = percentile_sorted(s, resamples, 0.975);
    }
    free(stat);
    free(count);
    free(acc);
    return true;
}

/* ---- JSON ----------------------------------------------------------------- */

typedef struct jctx {
    bool ok;
} jctx;

static cJSON *chk(jctx *c, cJSON *item)
{
    if (!item)
        c->ok = false;
    return item;
}

/* A number, or null when undefined. */
static void add_num(jctx *c, cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        chk(c, cJSON_AddNumberToObject(o, k, v));
    else
        chk(c, cJSON_AddNullToObject(o, k));
}

static void add_str(jctx *c, cJSON *o, const char *k, const char *v)
{
    chk(c, cJSON_AddStringToObject(o, k, v));
}

static void push_num(jctx *c, cJSON *arr, double v)
{
    cJSON *x = chk(c, cJSON_CreateNumber(v));
    if (x && arr && !cJSON_AddItemToArray(arr, x)) {
        cJSON_Delete(x);
        c->ok = false;
    } else if (x && !arr) {
        cJSON_Delete(x);
    }
}

typedef struct summary {
    size_t n_images, n_eval, n_empty;
    double avg[N_METRICS];
    double ci[N_METRICS][2];
    bool have_ci;
    double curve[3][N_THR]; /* averaged Dice, sensitivity, specificity */
    int best_k;             /* where the averaged Dice curve peaks */
    size_t pred_ignored;
} summary;

static cJSON *build_json(const eval_opts *o, const img_res *res,
                         const summary *s)
{
    jctx c = {true};
    cJSON *root = chk(&c, cJSON_CreateObject());
    if (!root)
        return NULL;
    add_str(&c, root, "schema", EVAL_SCHEMA);
    add_str(&c, root, "pred_dir", o->pred_dir);
    add_str(&c, root, "gt_dir", o->gt_dir);

    cJSON *pr = chk(&c, cJSON_AddObjectToObject(root, "protocol"));
    if (pr) {
        char rule[96];
        if (o->cls >= 0)
            snprintf(rule, sizeof rule, "label value == %d (read as label "
                     "indices)", o->cls);
        else
            snprintf(rule, sizeof rule, "grey value > %d", o->gt_threshold);
        add_str(&c, pr, "ground_truth_positive", rule);
        if (o->cls >= 0)
            add_num(&c, pr, "class", o->cls);
        else
            add_num(&c, pr, "gt_threshold", o->gt_threshold);
        add_num(&c, pr, "fixed_threshold", FIXED_THR);
        add_str(&c, pr, "fixed_rule", "prediction value (0..255) >= 128");
        add_str(&c, pr, "infnet",
                "min-max normalised map (a constant map is left as "
                "value/255), positive where normalised value >= t for t = "
                "1, 254/255, ..., 0 (exact comparison); per threshold as "
                "Fmeasure_calu.m (all 0 when TP = 0); curves averaged over "
                "images; mean_* = mean of a curve, max_dice = its maximum");
        add_str(&c, pr, "empty_ground_truth",
                "images whose mask is empty are excluded from every "
                "average and interval, as in the Inf-Net evaluation");
        add_str(&c, pr, "zero_division",
                "precision with no predicted pixel = 0; specificity with "
                "no negative pixel = 1; Dice and IoU with empty mask and "
                "empty prediction = 1; sensitivity with empty mask = null");
        add_str(&c, pr, "image_order", "natural order of the names");
        cJSON *bs = chk(&c, cJSON_AddObjectToObject(pr, "bootstrap"));
        if (bs) {
            add_num(&c, bs, "resamples", (double)o->resamples);
            add_num(&c, bs, "seed", (double)o->seed);
            add_str(&c, bs, "prng",
                    "splitmix64 from the seed; image index = next % n, n "
                    "draws per resample, over the evaluated images in the "
                    "order listed");
            add_str(&c, bs, "interval",
                    "percentile bootstrap, 2.5 and 97.5 percentiles with "
                    "linear interpolation (numpy default)");
        }
    }

    cJSON *cnt = chk(&c, cJSON_AddObjectToObject(root, "counts"));
    if (cnt) {
        add_num(&c, cnt, "images", (double)s->n_images);
        add_num(&c, cnt, "evaluated", (double)s->n_eval);
        add_num(&c, cnt, "empty_ground_truth", (double)s->n_empty);
        add_num(&c, cnt, "prediction_files_ignored", (double)s->pred_ignored);
    }

    cJSON *av = chk(&c, cJSON_AddObjectToObject(root, "averages"));
    cJSON *ci = s->have_ci ? chk(&c, cJSON_AddObjectToObject(root, "ci95"))
                           : chk(&c, cJSON_AddNullToObject(root, "ci95"));
    for (int m = 0; m < N_METRICS; m++) {
        if (av)
            add_num(&c, av, metric_key[m], s->avg[m]);
        if (s->have_ci && ci) {
            cJSON *a = chk(&c, cJSON_AddArrayToObject(ci, metric_key[m]));
            push_num(&c, a, s->ci[m][0]);
            push_num(&c, a, s->ci[m][1]);
        }
    }
    if (av)
        add_num(&c, av, "max_dice_threshold", (255.0 - s->best_k) / 255.0);

    cJSON *cu = chk(&c, cJSON_AddObjectToObject(root, "curves"));
    if (cu) {
        static const char *const names[3] = {"dice", "sensitivity",
                                             "specificity"};
        cJSON *t = chk(&c, cJSON_AddArrayToObject(cu, "thresholds"));
        for (int k = 0; k < N_THR; k++)
            push_num(&c, t, (255.0 - k) / 255.0);
        for (int q = 0; q < 3; q++) {
            cJSON *a = chk(&c, cJSON_AddArrayToObject(cu, names[q]));
            for (int k = 0; k < N_THR; k++)
                push_num(&c, a, s->curve[q][k]);
        }
    }

    cJSON *imgs = chk(&c, cJSON_AddArrayToObject(root, "images"));
    for (size_t i = 0; imgs && i < s->n_images; i++) {
        const img_res *r = &res[i];
        cJSON *e = chk(&c, cJSON_CreateObject());
        if (!e)
            break;
        if (!cJSON_AddItemToArray(imgs, e)) {
            cJSON_Delete(e);
            c.ok = false;
            break;
        }
        add_str(&c, e, "name", r->pred->stem);
        add_str(&c, e, "prediction", r->pred->path);
        add_str(&c, e, "ground_truth", r->gt->path);
        add_num(&c, e, "width", r->width);
        add_num(&c, e, "height", r->height);
        chk(&c, cJSON_AddBoolToObject(e, "empty_ground_truth", r->empty_gt));
        add_num(&c, e, "prediction_min", r->pred_min);
        add_num(&c, e, "prediction_max", r->pred_max);
        add_num(&c, e, "tp", (double)r->tp);
        add_num(&c, e, "fp", (double)r->fp);
        add_num(&c, e, "fn", (double)r->fn);
        add_num(&c, e, "tn", (double)r->tn);
        for (int m = 0; m < N_METRICS; m++)
            add_num(&c, e, metric_key[m], r->m[m]);
    }
    if (!c.ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- text output -------------------------------------------------------- */

static void print_val(double v)
{
    if (isfinite(v))
        printf(" %7.4f", v);
    else
        printf(" %7s", "-");
}

static void print_averages(const eval_opts *o, const summary *s);
static void print_empty(const img_res *res, const summary *s);

static void print_results(const eval_opts *o, const img_res *res,
                          const summary *s)
{
    printf("covct eval: %zu image%s, predictions %s, ground truth %s\n",
           s->n_images, s->n_images == 1 ? "" : "s", o->pred_dir, o->gt_dir);
    if (o->cls >= 0)
        printf("Infection in the ground truth: label value %d\n", o->cls);
    else
        printf("Infection in the ground truth: value > %d\n",
               o->gt_threshold);
    if (o->verbose) {
        printf("\nPer image (fixed threshold: prediction >= 128; protocol: "
               "Inf-Net, 256 thresholds):\n");
        printf("  %-16s %7s %7s %7s %7s %7s %7s %7s %7s %7s\n", "image",
               "Dice", "sens", "spec", "prec", "IoU", "mDice", "maxDice",
               "mSens", "mSpec");
        for (size_t i = 0; i < s->n_images; i++) {
            const img_res *r = &res[i];
            printf("  %-16s", r->pred->stem);
            for (int m = 0; m < N_METRICS; m++)
                print_val(r->m[m]);
            printf("%s\n", r->empty_gt ? "  (empty mask)" : "");
        }
    }
    if (s->n_eval > 0)
        print_averages(o, s);
    if (s->n_empty)
        print_empty(res, s);
}

static void print_averages(const eval_opts *o, const summary *s)
{
    printf("\nAverages over the %zu image%s with infection in the ground "
           "truth",
           s->n_eval, s->n_eval == 1 ? "" : "s");
    if (s->n_empty)
        printf(" (%zu with an empty mask left out, as in the Inf-Net "
               "evaluation)",
               s->n_empty);
    printf(":\n");
    if (s->have_ci)
        printf("  95 %% CI: percentile bootstrap over images, %llu "
               "resamples, seed %llu\n",
               (unsigned long long)o->resamples,
               (unsigned long long)o->seed);
    for (int m = 0; m < N_METRICS; m++) {
        if (m == M_DICE)
            printf("  Fixed threshold (prediction >= 128):\n");
        if (m == M_PMEAN_DICE)
            printf("  Inf-Net protocol (min-max normalised map, 256 "
                   "thresholds; the paper's scores):\n");
        printf("    %-18s %.4f", metric_label[m], s->avg[m]);
        if (s->have_ci)
            printf("   [%.4f, %.4f]", s->ci[m][0], s->ci[m][1]);
        if (m == M_PMAX_DICE)
            printf("   at threshold %d/255", 255 - s->best_k);
        printf("\n");
    }
}

static void print_empty(const img_res *res, const summary *s)
{
    printf("\nImages with an empty mask (not in the averages):\n");
    for (size_t i = 0; i < s->n_images; i++) {
        const img_res *r = &res[i];
        if (!r->empty_gt)
            continue;
        uint64_t npx = (uint64_t)r->width * r->height;
        printf("  %-16s %llu pixel%s predicted (%.2f %% of the image), "
               "specificity %.4f\n",
               r->pred->stem, (unsigned long long)r->fp,
               r->fp == 1 ? "" : "s", 100.0 * ratio(r->fp, npx),
               r->m[M_SPE]);
    }
}

/* ---- the command -------------------------------------------------------- */

static int usage_error(const char *msg, const char *arg)
{
    if (arg)
        covct_cli_error("eval: %s '%s'; run 'covct eval --help'", msg, arg);
    else
        covct_cli_error("eval: %s; run 'covct eval --help'", msg);
    return COVCT_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->resamples = DEFAULT_RESAMPLES;
    o->seed = DEFAULT_SEED;
    o->cls = -1;
    bool gt_thr_set = false;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            fputs(help_more, stdout);
            return -1;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = true;
            continue;
        }
        bool takes = !strcmp(a, "--json") || !strcmp(a, "--bootstrap") ||
                     !strcmp(a, "--seed") || !strcmp(a, "--class") ||
                     !strcmp(a, "--gt-threshold") ||
                     !strcmp(a, "--pred-suffix");
        if (!takes && a[0] == '-' && a[1])
            return usage_error("unknown option", a);
        if (!takes) {
            if (npos == 0)
                o->pred_dir = a;
            else if (npos == 1)
                o->gt_dir = a;
            else
                return usage_error("one prediction folder and one ground "
                                   "truth folder only; extra argument",
                                   a);
            npos++;
            continue;
        }
        if (i + 1 >= argc) {
            covct_cli_error("eval: %s needs a value", a);
            return COVCT_EXIT_USAGE;
        }
        const char *val = argv[++i];
        uint64_t v = 0;
        if (!strcmp(a, "--json")) {
            o->json = val;
        } else if (!strcmp(a, "--pred-suffix")) {
            o->pred_suffix = val;
        } else if (!strcmp(a, "--bootstrap")) {
            if (!parse_u64(val, MAX_RESAMPLES, &v))
                return usage_error("--bootstrap takes a whole number of "
                                   "resamples from 0 to 100000, not",
                                   val);
            o->resamples = v;
        } else if (!strcmp(a, "--seed")) {
            if (!parse_u64(val, UINT64_MAX, &v))
                return usage_error("--seed takes a whole number from 0 to "
                                   "18446744073709551615, not",
                                   val);
            o->seed = v;
        } else if (!strcmp(a, "--class")) {
            if (!parse_u64(val, 255, &v))
                return usage_error("--class takes a label value from 0 to "
                                   "255, not",
                                   val);
            o->cls = (int)v;
        } else {
            if (!parse_u64(val, 254, &v))
                return usage_error("--gt-threshold takes a value from 0 to "
                                   "254, not",
                                   val);
            o->gt_threshold = (int)v;
            gt_thr_set = true;
        }
    }
    if (npos < 2)
        return usage_error(npos ? "say the ground truth folder too: covct "
                                  "eval PRED_DIR GT_DIR"
                                : "say the prediction and ground truth "
                                  "folders: covct eval PRED_DIR GT_DIR",
                           NULL);
    if (o->cls >= 0 && gt_thr_set)
        return usage_error("--class and --gt-threshold exclude each other "
                           "(a label mask is matched by value)",
                           NULL);
    return 0;
}

/* Pair predictions and masks by stem; both lists are sorted by stem with
 * natural_cmp.  Returns the number of pairs, or (size_t)-1 after printing
 * errors. */
static size_t pair_files(const eval_opts *o, const file_list *pl,
                         const file_list *gl, size_t *pi, size_t *gi)
{
    bool *pp = calloc(pl->n, sizeof *pp), *gp = calloc(gl->n, sizeof *gp);
    if (!pp || !gp) {
        free(pp);
        free(gp);
        covct_cli_error("eval: out of memory");
        return (size_t)-1;
    }
    size_t n = 0, a = 0, b = 0;
    while (a < pl->n && b < gl->n) {
        int c = natural_cmp(pl->v[a].stem, gl->v[b].stem);
        if (c == 0) {
            pp[a] = gp[b] = true;
            pi[n] = a++;
            gi[n] = b++;
            n++;
        } else if (c < 0) {
            a++;
        } else {
            b++;
        }
    }
    bool bad = n != pl->n || n != gl->n;
    if (bad) {
        char msg[512];
        snprintf(msg, sizeof msg, "no ground truth in %s for these "
                 "predictions", o->gt_dir);
        list_unpaired(msg, pl, pp);
        snprintf(msg, sizeof msg, "no prediction in %s for these "
                 "ground-truth masks", o->pred_dir);
        list_unpaired(msg, gl, gp);
        bool seg_maps = false;
        for (size_t i = 0; i < pl->n; i++)
            if (!pp[i] && (ends_with(pl->v[i].stem, "_ggo") ||
                           ends_with(pl->v[i].stem, "_consolidation")))
                seg_maps = true;
        fprintf(stderr, "covct: files are paired by name without extension "
                "(PRED_DIR/12.png with GT_DIR/12.png or GT_DIR/12.jpg)%s\n",
                seg_maps ? "; 'covct segment' also writes STEM_ggo.png and "
                           "STEM_consolidation.png: move them to another "
                           "folder, or score one kind with --pred-suffix"
                         : "");
    }
    free(pp);
    free(gp);
    return bad ? (size_t)-1 : n;
}

static void print_warnings(const warn_state *w, const eval_opts *o)
{
    if (w->gt_nonbinary)
        fprintf(stderr,
                "covct: warning: eval: %zu ground-truth mask%s not 0/255 "
                "only (e.g. %s; %llu pixels between 0 and the top value, "
                "typical of JPEG); value > %d counts as infection; the "
                "Inf-Net evaluation uses --gt-threshold 128\n",
                w->gt_nonbinary, w->gt_nonbinary == 1 ? " is" : "s are",
                w->gt_nonbinary_eg, (unsigned long long)w->gt_nonbinary_px,
                o->gt_threshold);
    if (w->pred_01)
        fprintf(stderr,
                "covct: warning: eval: %zu prediction%s only values 0 and "
                "1 (e.g. %s): the fixed threshold 128 finds no infection "
                "there; save masks as 0/255 (the Inf-Net protocol "
                "normalises and is not affected)\n",
                w->pred_01, w->pred_01 == 1 ? " has" : "s have",
                w->pred_01_eg);
}

int covct_cmd_eval(int argc, char **argv)
{
    eval_opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc)
        return prc < 0 ? COVCT_EXIT_OK : prc;

    int rc = COVCT_EXIT_FAIL;
    file_list pl = {0}, gl = {0};
    size_t *pi = NULL, *gi = NULL;
    img_res *res = NULL;
    double *cd = NULL, *cs = NULL, *cp = NULL, *vals = NULL;
    summary *s = NULL;
    char *text = NULL;
    cJSON *root = NULL;

    bool lp = list_folder(o.pred_dir, o.pred_suffix, "prediction", &pl);
    bool lg = list_folder(o.gt_dir, NULL, "ground truth", &gl);
    if (!lp || !lg)
        goto out;
    pi = malloc(pl.n * sizeof *pi);
    gi = malloc(pl.n * sizeof *gi);
    if (!pi || !gi) {
        covct_cli_error("eval: out of memory");
        goto out;
    }
    size_t n = pair_files(&o, &pl, &gl, pi, gi);
    if (n == (size_t)-1)
        goto out;

    res = calloc(n, sizeof *res);
    cd = malloc(n * N_THR * sizeof *cd);
    cs = malloc(n * N_THR * sizeof *cs);
    cp = malloc(n * N_THR * sizeof *cp);
    s = calloc(1, sizeof *s);
    vals = malloc((size_t)N_METRICS * n * sizeof *vals);
    if (!res || !cd || !cs || !cp || !s || !vals) {
        covct_cli_error("eval: out of memory for %zu images", n);
        goto out;
    }
    warn_state w = {0};
    size_t failed = 0, ne = 0;
    for (size_t i = 0; i < n; i++) {
        /* Curves are stored compactly: only for images with infection. */
        if (!eval_pair(&o, &pl.v[pi[i]], &gl.v[gi[i]], &res[i],
                       cd + ne * N_THR, cs + ne * N_THR, cp + ne * N_THR,
                       &w)) {
            failed++;
            continue;
        }
        ne += !res[i].empty_gt;
    }
    if (failed) {
        covct_cli_error("eval: %zu of %zu image pair%s could not be scored; "
                        "nothing written",
                        failed, n, n == 1 ? "" : "s");
        goto out;
    }
    print_warnings(&w, &o);
    s->n_images = n;
    s->n_eval = ne;
    s->n_empty = n - ne;
    s->pred_ignored = pl.ignored;
    if (ne == 0) {
        print_results(&o, res, s);
        covct_cli_error("eval: no ground-truth mask has infection, so there "
                        "is nothing to average (images with an empty mask "
                        "are left out, as in the Inf-Net evaluation)");
        goto out;
    }

    /* Averages over the evaluated images; curves averaged per threshold. */
    const double *vp[N_METRICS];
    for (int m = 0; m < N_METRICS; m++) {
        double *col = vals + (size_t)m * ne;
        size_t j = 0;
        for (size_t i = 0; i < n; i++)
            if (!res[i].empty_gt)
                col[j++] = res[i].m[m];
        vp[m] = col;
    }
    for (int k = 0; k < N_THR; k++) {
        double a = 0, b = 0, c = 0;
        for (size_t j = 0; j < ne; j++) {
            a += cd[j * N_THR + k];
            b += cs[j * N_THR + k];
            c += cp[j * N_THR + k];
        }
        s->curve[0][k] = a / (double)ne;
        s->curve[1][k] = b / (double)ne;
        s->curve[2][k] = c / (double)ne;
    }
    for (int m = 0; m < N_METRICS; m++) {
        double sum = 0;
        for (size_t j = 0; j < ne; j++)
            sum += vp[m][j];
        s->avg[m] = sum / (double)ne;
    }
    /* The protocol's averages are the means of the averaged curves (the
     * same numbers as the means of the per-image means) and the peak. */
    double md = 0, msn = 0, msp = 0;
    s->best_k = 0;
    for (int k = 0; k < N_THR; k++) {
        md += s->curve[0][k];
        msn += s->curve[1][k];
        msp += s->curve[2][k];
        if (s->curve[0][k] > s->curve[0][s->best_k])
            s->best_k = k;
    }
    s->avg[M_PMEAN_DICE] = md / N_THR;
    s->avg[M_PMEAN_SEN] = msn / N_THR;
    s->avg[M_PMEAN_SPE] = msp / N_THR;
    s->avg[M_PMAX_DICE] = s->curve[0][s->best_k];

    if (o.resamples > 0) {
        if (!bootstrap(vp, cd, ne, o.resamples, o.seed, s->ci)) {
            covct_cli_error("eval: out of memory for %llu bootstrap "
                            "resamples",
                            (unsigned long long)o.resamples);
            goto out;
        }
        s->have_ci = true;
    }

    if (o.json) {
        root = build_json(&o, res, s);
        text = root ? cJSON_Print(root) : NULL;
        if (!text) {
            covct_cli_error("eval: out of memory writing %s", o.json);
            goto out;
        }
        covct_error err = {0};
        if (covct_file_write_bytes(o.json, text, strlen(text), &err) !=
            COVCT_OK) {
            covct_cli_error("eval: cannot write %s: %s", o.json, err.msg);
            goto out;
        }
    }
    print_results(&o, res, s);
    rc = COVCT_EXIT_OK;
out:
    if (text)
        cJSON_free(text);
    cJSON_Delete(root);
    free(s);
    free(vals);
    free(cd);
    free(cs);
    free(cp);
    free(res);
    free(pi);
    free(gi);
    file_list_free(&pl);
    file_list_free(&gl);
    return rc;
}
