/* covct train: train the lesion segmentation U-Net on labelled 2-D slices,
 * with k-fold cross-validation, checkpoints and resumption. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "covct/image.h"
#include "covct/nn.h"

int covct_cmd_train(int argc, char **argv);

static const char help[] =
    "Usage: covct train --data DIR -o MODEL.covctnn [OPTIONS]\n"
    "\n"
    "Train the network that finds ground glass and consolidation on CT\n"
    "slices (the one 'covct segment' and 'covct analyze' use), from slices\n"
    "with masks drawn by radiologists.\n"
    "\n"
    "DIR holds Imgs/STEM.jpg|png (8-bit slices) and GT/STEM.png (masks:\n"
    "palette or grey values 0 background, 1 ground glass, 2 consolidation),\n"
    "as in COVID-SemiSeg's MultiClassInfection-Train folder.\n"
    "\n"
    "Modes:\n"
    "  (default)          train on all slices; MODEL.covctnn is written\n"
    "                     after every epoch (a checkpoint: with\n"
    "                     MODEL.covctnn.adam, the optimiser state)\n"
    "  --fold I           train on all folds but I (1..K), validate on I\n"
    "  --cv               cross-validation: every fold in turn, from\n"
    "                     scratch; prints the validation Dice per fold and\n"
    "                     their mean and spread, writes MODEL.cv.json\n"
    "  --resume           continue from MODEL.covctnn and its .adam file\n"
    "                     (the same options as the interrupted run)\n"
    "\n"
    "Options:\n"
    "  --folds K          number of folds (default 5)\n"
    "  --epochs N         passes over the training slices (default 100)\n"
    "  --size PX          training square, slices fitted into it (352)\n"
    "  --depth L          U-Net levels (4)\n"
    "  --base C           channels of the first level (16)\n"
    "  --batch B          slices per step (4)\n"
    "  --lr X             AdamW learning rate (0.002), decayed to 0 along a\n"
    "                     half cosine over the epochs\n"
    "  --constant-lr      keep the learning rate constant instead\n"
    "  --no-augment       train on the slices as they are (diagnostics)\n"
    "  --augment-strength S  multiply every augmentation range (rotation,\n"
    "                     zoom, elastic displacement, gamma, contrast,\n"
    "                     brightness, noise) by S; flips stay (0.5)\n"
    "  --stop-after N     stop after epoch N, as an interrupted run (to\n"
    "                     train in time slots: continue with --resume)\n"
    "  --wd X             AdamW weight decay (0.0001)\n"
    "  --infection-dice W add W x the soft Dice of infection (any lesion\n"
    "                     class against background) to the loss (0)\n"
    "  --seed N           fold split, initial weights, augmentation (1)\n"
    "  --card FILE.json   model card fields to store in the model (data,\n"
    "                     licence, metrics...)\n"
    "  -q, --quiet        no progress lines\n"
    "  -h, --help         this text\n"
    "\n"
    "The defaults are the recipe of the model that ships in models/.\n"
    "The same data, options and seed give the same model; an interrupted\n"
    "run resumed with --resume ends with the same model as one that was\n"
    "not interrupted.  Design and results: docs/internals/training.md.\n";

typedef struct dataset {
    covct_image *img, *gt;
    covct_nn_sample *s;
    char **names;
    size_t n;
} dataset;

static void dataset_free(dataset *d)
{
    for (size_t i = 0; i < d->n; i++) {
        covct_image_free(&d->img[i]);
        covct_image_free(&d->gt[i]);
        free(d->names[i]);
    }
    free(d->img);
    free(d->gt);
    free(d->s);
    free(d->names);
    memset(d, 0, sizeof *d);
}

static int cmp_str(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    /* Numeric stems in numeric order (COVID-SemiSeg: 0.jpg .. 99.jpg). */
    char *ex, *ey;
    long nx = strtol(x, &ex, 10), ny = strtol(y, &ey, 10);
    if (ex != x && ey != y && nx != ny)
        return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

/* Load DIR/Imgs and DIR/GT, paired by stem. */
static int load(const char *dir, int classes, dataset *d)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/Imgs", dir);
    DIR *dp = opendir(path);
    if (!dp) {
        covct_cli_error("cannot open %s: %s (expected DIR/Imgs and DIR/GT)",
                        path, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        const char *dot = strrchr(de->d_name, '.');
        if (de->d_name[0] == '.' || !dot ||
            (strcmp(dot, ".jpg") && strcmp(dot, ".png") && strcmp(dot, ".jpeg")))
            continue;
        if (d->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(d->names, cap * sizeof *nn);
            if (!nn) {
                closedir(dp);
                return -1;
            }
            d->names = nn;
        }
        d->names[d->n++] = strdup(de->d_name);
    }
    closedir(dp);
    if (!d->n) {
        covct_cli_error("no .jpg or .png slices in %s/Imgs", dir);
        return -1;
    }
    qsort(d->names, d->n, sizeof *d->names, cmp_str);
    d->img = calloc(d->n, sizeof *d->img);
    d->gt = calloc(d->n, sizeof *d->gt);
    d->s = calloc(d->n, sizeof *d->s);
    if (!d->img || !d->gt || !d->s)
        return -1;
    for (size_t i = 0; i < d->n; i++) {
        covct_error err = {0};
        char stem[1024];
        snprintf(stem, sizeof stem, "%s", d->names[i]);
        *strrchr(stem, '.') = '\0';
        snprintf(path, sizeof path, "%s/Imgs/%s", dir, d->names[i]);
        if (covct_image_read(path, COVCT_IMAGE_GRAY, &d->img[i], &err)) {
            covct_cli_error("%s", err.msg);
            return -1;
        }
        snprintf(path, sizeof path, "%s/GT/%s.png", dir, stem);
        if (covct_image_read(path, COVCT_IMAGE_INDEX, &d->gt[i], &err)) {
            covct_cli_error("%s (the mask of %s/Imgs/%s)", err.msg, dir,
                            d->names[i]);
            return -1;
        }
        if (d->gt[i].width != d->img[i].width ||
            d->gt[i].height != d->img[i].height) {
            covct_cli_error("%s: mask is %ux%u, the slice %ux%u", path,
                            d->gt[i].width, d->gt[i].height, d->img[i].width,
                            d->img[i].height);
            return -1;
        }
        size_t n = (size_t)d->img[i].width * d->img[i].height;
        for (size_t k = 0; k < n; k++)
            if (d->gt[i].pixels[k] >= classes) {
                covct_cli_error("%s: label %u at pixel (%zu, %zu); masks "
                                "hold 0 background, 1 ground glass, 2 "
                                "consolidation",
                                path, d->gt[i].pixels[k],
                                k % d->img[i].width, k / d->img[i].width);
                return -1;
            }
        d->s[i] = (covct_nn_sample){.name = d->names[i],
                                    .width = d->img[i].width,
                                    .height = d->img[i].height,
                                    .pixels = d->img[i].pixels,
                                    .labels = d->gt[i].pixels};
    }
    return 0;
}

typedef struct run_ctx {
    const char *out;
    int quiet, fold, folds, save, stop_after;
    double best;
    int best_epoch;
    double last;
    const char *card;
    const covct_nn_train_config *cfg;
    const covct_nn_sample *val; /* this fold's validation slices */
    size_t n_val;
} run_ctx;

static void fmt_time(double s, char *b, size_t n)
{
    if (s < 60)
        snprintf(b, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(b, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(b, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* The model card: the user's fields plus what this run was. */
static char *make_card(const run_ctx *c, int epoch)
{
    cJSON *card = c->card ? cJSON_Parse(c->card) : cJSON_CreateObject();
    if (!card)
        return NULL;
    cJSON *tr = cJSON_CreateObject();
    cJSON_AddNumberToObject(tr, "epoch", epoch);
    cJSON_AddNumberToObject(tr, "epochs", c->cfg->epochs);
    cJSON_AddNumberToObject(tr, "batch", c->cfg->batch);
    cJSON_AddNumberToObject(tr, "lr", c->cfg->lr);
    cJSON_AddStringToObject(tr, "lr_schedule",
                            c->cfg->cosine ? "half cosine to 0" : "constant");
    cJSON_AddNumberToObject(tr, "weight_decay", c->cfg->weight_decay);
    cJSON_AddNumberToObject(tr, "seed", (double)c->cfg->seed);
    cJSON_AddNumberToObject(tr, "input_size", c->cfg->input_size);
    cJSON_AddStringToObject(tr, "loss",
                            c->cfg->infection_dice > 0
                                ? "cross-entropy + soft Dice + weighted "
                                  "infection soft Dice"
                                : "cross-entropy + soft Dice");
    if (c->cfg->infection_dice > 0)
        cJSON_AddNumberToObject(tr, "infection_dice_weight",
                                c->cfg->infection_dice);
    {
        const covct_nn_augment *g = &c->cfg->augment;
        char aug[320];
        snprintf(aug, sizeof aug,
                 "%sflip, rotation +-%.3g deg, zoom +-%.3g %%, elastic RMS "
                 "%.3g px (smoothness %.3g px), gamma exp(+-%.3g), contrast "
                 "+-%.3g %%, brightness +-%.3g, noise %.3g",
                 g->flip ? "" : "no ", g->rotate_deg, 100 * g->scale,
                 g->elastic_px, g->elastic_sigma_px, g->gamma,
                 100 * g->contrast, g->brightness, g->noise);
        cJSON_AddStringToObject(tr, "augmentation", aug);
    }
    if (c->fold) {
        /* Which slices this fold's model never saw (its validation set):
         * so that it can be scored again, e.g. by covct eval. */
        cJSON_AddNumberToObject(tr, "fold", c->fold);
        cJSON_AddNumberToObject(tr, "folds", c->folds);
        cJSON *names = cJSON_AddArrayToObject(tr, "validation_slices");
        for (size_t i = 0; names && i < c->n_val; i++)
            cJSON_AddItemToArray(names,
                                 cJSON_CreateString(c->val[i].name
                                                        ? c->val[i].name
                                                        : "?"));
    }
    cJSON_DeleteItemFromObject(card, "training");
    cJSON_AddItemToObject(card, "training", tr);
    char *s = cJSON_PrintUnformatted(card);
    cJSON_Delete(card);
    return s;
}

static int on_epoch(const covct_nn_epoch_report *r, covct_nn_model *m,
                    covct_nn_adam *opt, void *user)
{
    run_ctx *c = user;
    c->last = r->val_dice;
    if (r->val_dice > c->best) {
        c->best = r->val_dice;
        c->best_epoch = r->epoch;
    }
    if (!c->quiet) {
        char el[32], eta[32];
        fmt_time(r->seconds, el, sizeof el);
        fmt_time(r->seconds / r->epoch * (r->epochs - r->epoch), eta,
                 sizeof eta);
        char fold[32] = "";
        if (c->fold)
            snprintf(fold, sizeof fold, "[fold %d/%d] ", c->fold, c->folds);
        if (r->val_dice >= 0)
            fprintf(stderr, "%sepoch %3d/%d  loss %.4f  validation Dice "
                            "%.3f  (%s, %s left)\n",
                    fold, r->epoch, r->epochs, r->loss, r->val_dice, el, eta);
        else
            fprintf(stderr, "%sepoch %3d/%d  loss %.4f  (%s, %s left)\n", fold,
                    r->epoch, r->epochs, r->loss, el, eta);
    }
    if (c->save) {
        covct_error err = {0};
        char *card = make_card(c, r->epoch);
        covct_free(m->card_json);
        m->card_json = card ? covct_strdup(card) : NULL;
        cJSON_free(card);
        char adam[4096];
        snprintf(adam, sizeof adam, "%s.adam", c->out);
        if (covct_nn_model_write(c->out, m, &err) ||
            covct_nn_adam_write(adam, opt, &err)) {
            covct_cli_error("cannot write the checkpoint: %s", err.msg);
            return 1;
        }
    }
    if (c->stop_after && r->epoch >= c->stop_after && r->epoch < r->epochs) {
        if (!c->quiet)
            fprintf(stderr, "stopped after epoch %d as asked; continue with "
                            "--resume\n",
                    r->epoch);
        return 1;
    }
    return 0;
}

/* Train one model; fold 0 = all data.  Returns 0 or -1. */
static int run(const dataset *d, const covct_nn_train_config *cfg, int folds,
               int fold, int resume, run_ctx *c)
{
    /* Fold of slice i: position in a seeded shuffle, modulo K. */
    size_t *perm = malloc(d->n * sizeof *perm);
    covct_nn_sample *tr = malloc(d->n * sizeof *tr),
                    *va = malloc(d->n * sizeof *va);
    size_t ntr = 0, nva = 0;
    int rc = -1;
    covct_nn_model m = {0};
    covct_nn_adam opt;
    covct_nn_adam_init(&opt, cfg->lr, cfg->weight_decay);
    if (!perm || !tr || !va)
        goto done;
    uint64_t r = cfg->seed * 2654435761u + 12345;
    for (size_t i = 0; i < d->n; i++)
        perm[i] = i;
    for (size_t i = d->n; i-- > 1;) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        size_t j = (size_t)((r >> 33) % (i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < d->n; i++) {
        int f = (int)(i % (size_t)folds) + 1;
        if (fold && f == fold)
            va[nva++] = d->s[perm[i]];
        else
            tr[ntr++] = d->s[perm[i]];
    }
    c->val = va;
    c->n_val = nva;
    covct_error err = {0};
    int first = 0;
    if (resume) {
        char adam[4096];
        snprintf(adam, sizeof adam, "%s.adam", c->out);
        if (covct_nn_model_read(c->out, &m, &err) ||
            covct_nn_adam_read(adam, &opt, m.graph, &err)) {
            covct_cli_error("cannot resume: %s", err.msg);
            goto done;
        }
        cJSON *card = m.card_json ? cJSON_Parse(m.card_json) : NULL;
        cJSON *ep = cJSON_GetObjectItem(cJSON_GetObjectItem(card, "training"),
                                        "epoch");
        first = cJSON_IsNumber(ep) ? (int)ep->valuedouble : -1;
        cJSON_Delete(card);
        if (first < 0 || m.cfg.depth != cfg->net.depth ||
            m.cfg.base != cfg->net.base) {
            covct_cli_error("cannot resume from %s: it is not a checkpoint "
                            "of this configuration",
                            c->out);
            goto done;
        }
        if (!c->quiet)
            fprintf(stderr, "resuming after epoch %d\n", first);
    } else if (covct_nn_unet(&cfg->net, cfg->seed, &m.graph, &m.out_slot,
                             &err)) {
        covct_cli_error("%s", err.msg);
        goto done;
    } else {
        m.cfg = cfg->net;
    }
    covct_nn_set_backend(m.graph, COVCT_NN_FAST);
    c->best = -1;
    c->best_epoch = 0;
    c->last = -1;
    if (covct_nn_train(&m, &opt, cfg, first, tr, ntr, nva ? va : NULL, nva,
                       on_epoch, c, &err)) {
        covct_cli_error("training failed: %s", err.msg);
        goto done;
    }
    rc = 0;
done:
    covct_nn_adam_free(&opt);
    covct_nn_model_free(&m);
    free(perm);
    free(tr);
    free(va);
    c->val = NULL;
    c->n_val = 0;
    return rc;
}

static int num(const char *opt, const char *v, double lo, double hi,
               double *out)
{
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(x >= lo && x <= hi)) {
        covct_cli_error("%s needs a number from %g to %g", opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int covct_cmd_train(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *card_path = NULL;
    int folds = 5, fold = 0, cv = 0, resume = 0, quiet = 0, stop_after = 0;
    double augment_strength = 0.5;
    covct_nn_train_config cfg = {.net = {1, 3, 4, 16}, .input_size = 352,
                                 .epochs = 100, .batch = 4, .lr = 2e-3,
                                 .weight_decay = 1e-4, .cosine = 1,
                                 .seed = 1};
    covct_nn_augment_default(&cfg.augment);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "--data") && v) {
            data = v, i++;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = v, i++;
        } else if (!strcmp(a, "--card") && v) {
            card_path = v, i++;
        } else if (!strcmp(a, "--cv")) {
            cv = 1;
        } else if (!strcmp(a, "--resume")) {
            resume = 1;
        } else if (!strcmp(a, "--constant-lr")) {
            cfg.cosine = 0;
        } else if (!strcmp(a, "--no-augment")) {
            memset(&cfg.augment, 0, sizeof cfg.augment);
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--folds") || !strcmp(a, "--fold") ||
                   !strcmp(a, "--epochs") || !strcmp(a, "--size") ||
                   !strcmp(a, "--depth") || !strcmp(a, "--base") ||
                   !strcmp(a, "--batch") || !strcmp(a, "--seed") ||
                   !strcmp(a, "--stop-after")) {
            if (num(a, v, 0, 1e9, &x) || x != floor(x))
                return COVCT_EXIT_USAGE;
            i++;
            if (!strcmp(a, "--folds")) folds = (int)x;
            else if (!strcmp(a, "--fold")) fold = (int)x;
            else if (!strcmp(a, "--epochs")) cfg.epochs = (int)x;
            else if (!strcmp(a, "--size")) cfg.input_size = (int)x;
            else if (!strcmp(a, "--depth")) cfg.net.depth = (int)x;
            else if (!strcmp(a, "--base")) cfg.net.base = (int)x;
            else if (!strcmp(a, "--batch")) cfg.batch = (int)x;
            else if (!strcmp(a, "--stop-after")) stop_after = (int)x;
            else cfg.seed = (uint64_t)x;
        } else if (!strcmp(a, "--lr") || !strcmp(a, "--wd")) {
            if (num(a, v, 0, 1, &x))
                return COVCT_EXIT_USAGE;
            i++;
            if (!strcmp(a, "--lr")) cfg.lr = x;
            else cfg.weight_decay = x;
        } else if (!strcmp(a, "--augment-strength")) {
            if (num(a, v, 0, 4, &x))
                return COVCT_EXIT_USAGE;
            i++;
            augment_strength = x;
        } else if (!strcmp(a, "--infection-dice")) {
            if (num(a, v, 0, 10, &x))
                return COVCT_EXIT_USAGE;
            i++;
            cfg.infection_dice = x;
        } else {
            covct_cli_error("unknown option or missing value '%s'; run "
                            "'covct train --help'",
                            a);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!data || !out) {
        covct_cli_error("%s; run 'covct train --help'",
                        !data ? "no training data given (--data DIR)"
                              : "no output model given (-o FILE)");
        return COVCT_EXIT_USAGE;
    }
    {
        covct_nn_augment *g = &cfg.augment;
        g->rotate_deg *= augment_strength;
        g->scale *= augment_strength;
        g->elastic_px *= augment_strength;
        g->gamma *= augment_strength;
        g->contrast *= augment_strength;
        g->brightness *= augment_strength;
        g->noise *= augment_strength;
    }
    if (folds < 2 || folds > 64 || fold > folds || (cv && (fold || resume)) ||
        cfg.epochs < 1 || cfg.batch < 1 || cfg.net.depth < 1 ||
        cfg.net.depth > 7 || cfg.net.base < 1 || cfg.net.base > 256 ||
        cfg.input_size < 8 || cfg.input_size > 2048 ||
        cfg.input_size % (1 << (cfg.net.depth - 1))) {
        covct_cli_error("inconsistent options: 2 <= folds <= 64, 1 <= fold <= "
                        "folds, --cv without --fold/--resume, size a "
                        "multiple of 2^(depth-1)");
        return COVCT_EXIT_USAGE;
    }
    char *card = NULL;
    if (card_path) {
        uint8_t *b = NULL;
        size_t n = 0;
        covct_error err = {0};
        if (covct_file_read(card_path, &b, &n, &err)) {
            covct_cli_error("%s", err.msg);
            return COVCT_EXIT_FAIL;
        }
        card = covct_strndup((const char *)b, n);
        covct_free(b);
        cJSON *j = card ? cJSON_Parse(card) : NULL;
        int ok = cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!ok) {
            covct_cli_error("%s: not a JSON object", card_path);
            covct_free(card);
            return COVCT_EXIT_FAIL;
        }
    }
    dataset d = {0};
    if (load(data, cfg.net.classes, &d)) {
        dataset_free(&d);
        covct_free(card);
        return COVCT_EXIT_FAIL;
    }
    if (!quiet)
        fprintf(stderr, "%zu labelled slices from %s; U-Net depth %d, base "
                        "%d, %dx%d, %d epochs, batch %d\n",
                d.n, data, cfg.net.depth, cfg.net.base, cfg.input_size,
                cfg.input_size, cfg.epochs, cfg.batch);
    run_ctx c = {.out = out, .quiet = quiet, .folds = folds, .card = card,
                 .stop_after = stop_after, .cfg = &cfg};
    int rc = 0;
    if (!cv) {
        c.fold = fold;
        c.save = 1;
        rc = run(&d, &cfg, folds, fold, resume, &c);
        if (!rc && !quiet)
            fprintf(stderr, "model written to %s%s\n", out,
                    fold ? "" : " (trained on all slices)");
    } else {
        double dice[64];
        int best_ep[64];
        cJSON *summary = cJSON_CreateObject(), *arr = cJSON_CreateArray();
        for (int f = 1; f <= folds && !rc; f++) {
            c.fold = f;
            c.save = 0;
            rc = run(&d, &cfg, folds, f, 0, &c);
            dice[f - 1] = c.last;
            best_ep[f - 1] = c.best_epoch;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "fold", f);
            cJSON_AddNumberToObject(o, "dice_final", c.last);
            cJSON_AddNumberToObject(o, "dice_best", c.best);
            cJSON_AddNumberToObject(o, "best_epoch", c.best_epoch);
            cJSON_AddItemToArray(arr, o);
        }
        if (!rc) {
            double mean = 0, sd = 0;
            for (int f = 0; f < folds; f++)
                mean += dice[f] / folds;
            for (int f = 0; f < folds; f++)
                sd += (dice[f] - mean) * (dice[f] - mean) / (folds - 1);
            sd = sqrt(sd);
            printf("cross-validation, %d folds, %d epochs: validation Dice "
                   "(final epoch)",
                   folds, cfg.epochs);
            for (int f = 0; f < folds; f++)
                printf(" %.3f", dice[f]);
            printf("; mean %.3f, sd %.3f\n", mean, sd);
            for (int f = 0; f < folds; f++)
                printf("  fold %d: best epoch %d\n", f + 1, best_ep[f]);
            cJSON_AddItemToObject(summary, "folds", arr);
            cJSON_AddNumberToObject(summary, "dice_mean", mean);
            cJSON_AddNumberToObject(summary, "dice_sd", sd);
            cJSON_AddNumberToObject(summary, "epochs", cfg.epochs);
            cJSON_AddNumberToObject(summary, "seed", (double)cfg.seed);
            char *text = cJSON_Print(summary);
            char path[4096];
            snprintf(path, sizeof path, "%s.cv.json", out);
            FILE *fp = fopen(path, "w");
            if (!fp || !text || fputs(text, fp) < 0) {
                covct_cli_error("cannot write %s: %s", path, strerror(errno));
                rc = -1;
            }
            if (fp)
                fclose(fp);
            cJSON_free(text);
        } else {
            cJSON_Delete(arr);
        }
        cJSON_Delete(summary);
    }
    dataset_free(&d);
    covct_free(card);
    return rc ? COVCT_EXIT_FAIL : COVCT_EXIT_OK;
}
