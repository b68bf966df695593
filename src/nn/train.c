/*
 * Training loop for the segmentation U-Net: augmented mini-batches,
 * cross-entropy + soft Dice, AdamW, validation Dice after every epoch,
 * and the optimiser state file for checkpoints.  docs/internals/training.md.
 */
#include <math.h>
#include <string.h>
#include <zlib.h>

#include "covct/nn.h"
#include "nn/nn_int.h"

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

covct_rc covct_nn_validate(covct_nn_model *m, const covct_nn_sample *val,
                           size_t n_val, double *dice, size_t *counted,
                           covct_error *err)
{
    covct_nn_model_forget_plan(m); /* the weights may have changed */
    double sum = 0;
    size_t used = 0;
    for (size_t i = 0; i < n_val; i++) {
        const covct_nn_sample *s = &val[i];
        size_t n = (size_t)s->width * s->height, gt = 0;
        for (size_t k = 0; k < n; k++)
            gt += s->labels[k] != 0;
        if (!gt)
            continue; /* as the Inf-Net evaluation: empty truth excluded */
        uint8_t *map = covct_malloc(n);
        if (!map)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "validation: out of memory");
        covct_rc rc = covct_nn_segment_slice(m, s->pixels, s->width,
                                             s->height, map, NULL, NULL, err);
        if (rc != COVCT_OK) {
            covct_free(map);
            covct_nn_model_forget_plan(m);
            covct_error_prefix(err, "validation %s: ",
                               s->name ? s->name : "slice");
            return rc;
        }
        size_t tp = 0, pp = 0;
        for (size_t k = 0; k < n; k++) {
            int p = map[k] >= 128;
            pp += p;
            tp += p && s->labels[k];
        }
        covct_free(map);
        sum += 2.0 * (double)tp / (double)(pp + gt);
        used++;
    }
    covct_nn_model_forget_plan(m); /* training goes on: no stale copy */
    *dice = used ? sum / (double)used : -1;
    if (counted)
        *counted = used;
    return COVCT_OK;
}

covct_rc covct_nn_train(covct_nn_model *m, covct_nn_adam *opt,
                        const covct_nn_train_config *cfg, int first_epoch,
                        const covct_nn_sample *train, size_t n_train,
                        const covct_nn_sample *val, size_t n_val,
                        covct_nn_epoch_fn on_epoch, void *user,
                        covct_error *err)
{
    if (!m || !m->graph || !opt || !cfg || !train || !n_train ||
        cfg->batch < 1 || cfg->epochs < 1 || cfg->input_size < 1)
        return COVCT_ERR(err, COVCT_ERR_ARG, "train: missing data or bad "
                                             "configuration");
    int mult = 1 << (m->cfg.depth - 1);
    if (cfg->input_size % mult)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "train: input size %d is not a multiple of %d",
                         cfg->input_size, mult);
    for (size_t i = 0; i < n_train; i++) {
        size_t n = (size_t)train[i].width * train[i].height;
        for (size_t k = 0; k < n; k++)
            if (train[i].labels[k] >= m->cfg.classes)
                return COVCT_ERR(err, COVCT_ERR_ARG,
                                 "train: %s has label %u at pixel %zu; the "
                                 "network has %d classes",
                                 train[i].name ? train[i].name : "a slice",
                                 train[i].labels[k], k, m->cfg.classes);
    }
    m->input_size = cfg->input_size;
    int S = cfg->input_size, B = cfg->batch;
    size_t px = (size_t)S * S;
    covct_tensor x = {0}, g_ce = {0}, g_dice = {0}, g_inf = {0};
    uint8_t *lab = covct_malloc((size_t)B * px);
    size_t *order = covct_malloc(n_train * sizeof *order);
    covct_rc rc = COVCT_OK;
    if (!lab || !order) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "train: out of memory");
        goto done;
    }
    double t0 = covct_now();
    for (int ep = first_epoch; ep < cfg->epochs; ep++) {
        /* Epoch order: a Fisher-Yates shuffle seeded by (seed, epoch). */
        uint64_t rs = mix(cfg->seed, (uint64_t)ep);
        for (size_t i = 0; i < n_train; i++)
            order[i] = i;
        for (size_t i = n_train; i-- > 1;) {
            rs = mix(rs, i);
            size_t j = (size_t)(rs % (i + 1));
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        covct_nn_set_training(m->graph, 1);
        opt->lr = cfg->cosine
                      ? cfg->lr * 0.5 * (1.0 + cos(M_PI * ep / cfg->epochs))
                      : cfg->lr;
        double loss_sum = 0;
        int steps = 0;
        for (size_t b0 = 0; b0 < n_train; b0 += (size_t)B) {
            int nb = (int)(n_train - b0 < (size_t)B ? n_train - b0 : (size_t)B);
            if ((rc = covct_tensor_alloc(&x, nb, 1, S, S, err)) != COVCT_OK)
                goto done;
            for (int k = 0; k < nb; k++) {
                const covct_nn_sample *s = &train[order[b0 + (size_t)k]];
                uint64_t seed = mix(mix(cfg->seed, (uint64_t)ep),
                                    order[b0 + (size_t)k] + 1);
                rc = covct_nn_augment_sample(&cfg->augment, seed, s->pixels,
                                             s->labels, s->width, s->height,
                                             S, x.data + (size_t)k * px,
                                             lab + (size_t)k * px, err);
                if (rc != COVCT_OK)
                    goto done;
            }
            if ((rc = covct_nn_forward(m->graph, &x, err)) != COVCT_OK)
                goto done;
            const covct_tensor *z = covct_nn_value(m->graph, m->out_slot);
            double ce = 0, dl = 0;
            if ((rc = covct_nn_loss_ce(z, lab, &g_ce, &ce, err)) ||
                (rc = covct_nn_loss_dice(z, lab, &g_dice, &dl, err)))
                goto done;
            size_t nz = covct_tensor_size(&g_ce);
            for (size_t i = 0; i < nz; i++)
                g_ce.data[i] += g_dice.data[i];
            if (cfg->infection_dice > 0) {
                double li = 0;
                if ((rc = covct_nn_loss_dice_infection(z, lab, &g_inf, &li,
                                                       err)))
                    goto done;
                const float wi = (float)cfg->infection_dice;
                for (size_t i = 0; i < nz; i++)
                    g_ce.data[i] += wi * g_inf.data[i];
                dl += cfg->infection_dice * li;
            }
            covct_nn_zero_grad(m->graph);
            if ((rc = covct_nn_backward(m->graph, m->out_slot, &g_ce, err)) ||
                (rc = covct_nn_adam_step(opt, m->graph, err)))
                goto done;
            if (!isfinite(ce + dl)) {
                rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                               "train: loss is not finite at epoch %d (lower "
                               "the learning rate)",
                               ep + 1);
                goto done;
            }
            loss_sum += ce + dl;
            steps++;
        }
        covct_nn_epoch_report r = {.epoch = ep + 1, .epochs = cfg->epochs,
                                   .loss = loss_sum / steps, .val_dice = -1};
        if (val && n_val &&
            (rc = covct_nn_validate(m, val, n_val, &r.val_dice, NULL, err)))
            goto done;
        r.seconds = covct_now() - t0;
        if (on_epoch && on_epoch(&r, m, opt, user))
            break;
    }
done:
    covct_nn_set_training(m->graph, 0);
    covct_tensor_free(&x);
    covct_tensor_free(&g_ce);
    covct_tensor_free(&g_dice);
    covct_tensor_free(&g_inf);
    covct_free(lab);
    covct_free(order);
    return rc;
}

/* ---- optimiser state file ----------------------------------------------------
 * "COVCTADM" | uint32 version 1 | uint64 step | uint64 floats per table
 * (sum of the trained parameters' sizes) | m floats | v floats | CRC-32. */

static uint64_t trained_floats(const covct_nn_adam *a)
{
    uint64_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        n += a->m[i].data ? covct_tensor_size(&a->m[i]) : 0;
    return n;
}

typedef struct adam_out {
    const covct_nn_adam *a;
} adam_out;

static covct_rc adam_fill(int fd, const char *tmp, void *user,
                          covct_error *err)
{
    const covct_nn_adam *a = ((const adam_out *)user)->a;
    uint8_t head[28];
    uint64_t nf = trained_floats(a);
    memcpy(head, "COVCTADM", 8);
    nn_put32(head + 8, 1);
    nn_put32(head + 12, (uint32_t)a->t);
    nn_put32(head + 16, (uint32_t)(a->t >> 32));
    nn_put32(head + 20, (uint32_t)nf);
    nn_put32(head + 24, (uint32_t)(nf >> 32));
    uLong crc = crc32(crc32(0L, Z_NULL, 0), head, sizeof head);
    covct_rc rc = covct_fd_write_all(fd, head, sizeof head, tmp, err);
    uint8_t buf[4096];
    size_t nb = 0;
    for (int table = 0; table < 2 && !rc; table++)
        for (size_t i = 0; i < a->n && !rc; i++) {
            const covct_tensor *t = table ? &a->v[i] : &a->m[i];
            if (!t->data)
                continue;
            for (size_t j = 0; j < covct_tensor_size(t) && !rc; j++) {
                uint32_t bits;
                memcpy(&bits, &t->data[j], 4);
                nn_put32(buf + nb, bits);
                nb += 4;
                if (nb == sizeof buf) {
                    crc = crc32(crc, buf, (uInt)nb);
                    rc = covct_fd_write_all(fd, buf, nb, tmp, err);
                    nb = 0;
                }
            }
        }
    if (rc)
        return rc;
    crc = crc32(crc, buf, (uInt)nb);
    nn_put32(buf + nb, (uint32_t)crc);
    return covct_fd_write_all(fd, buf, nb + 4, tmp, err);
}

covct_rc covct_nn_adam_write(const char *path, const covct_nn_adam *a,
                             covct_error *err)
{
    if (!a->m)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "optimiser has no state yet (no step taken)");
    adam_out o = {a};
    return covct_file_write_atomic(path, adam_fill, &o, err);
}

covct_rc covct_nn_adam_read(const char *path, covct_nn_adam *a,
                            covct_nn_graph *g, covct_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    covct_rc rc = covct_file_read(path, &buf, &len, err);
    if (rc != COVCT_OK)
        return rc;
    uint64_t need = 0;
    size_t np = covct_nn_param_count(g);
    for (size_t i = 0; i < np; i++)
        if (!covct_nn_param_is_buffer(g, i))
            need += covct_tensor_size(covct_nn_param(g, i));
    if (len < 32 || memcmp(buf, "COVCTADM", 8) || nn_get32(buf + 8) != 1) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "%s: not a covct optimiser state file", path);
        goto done;
    }
    uint64_t nf = (uint64_t)nn_get32(buf + 20) | (uint64_t)nn_get32(buf + 24) << 32;
    if (nf != need || len != 28 + 8 * nf + 4) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "%s: optimiser state for %llu values, the network "
                       "has %llu (or the file is truncated)",
                       path, (unsigned long long)nf, (unsigned long long)need);
        goto done;
    }
    if ((uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(len - 4)) !=
        nn_get32(buf + len - 4)) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "%s: checksum mismatch: the file is damaged", path);
        goto done;
    }
    covct_nn_adam_free(a);
    a->m = covct_calloc(np ? np : 1, sizeof *a->m);
    a->v = covct_calloc(np ? np : 1, sizeof *a->v);
    if (!a->m || !a->v) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto done;
    }
    a->n = np;
    a->t = (uint64_t)nn_get32(buf + 12) | (uint64_t)nn_get32(buf + 16) << 32;
    const uint8_t *p = buf + 28;
    for (int table = 0; table < 2; table++)
        for (size_t i = 0; i < np; i++) {
            if (covct_nn_param_is_buffer(g, i))
                continue;
            const covct_tensor *pt = covct_nn_param(g, i);
            covct_tensor *t = table ? &a->v[i] : &a->m[i];
            if ((rc = covct_tensor_alloc(t, pt->n, pt->c, pt->h, pt->w, err)))
                goto done;
            for (size_t j = 0; j < covct_tensor_size(t); j++, p += 4) {
                uint32_t bits = nn_get32(p);
                memcpy(&t->data[j], &bits, 4);
            }
        }
done:
    if (rc != COVCT_OK)
        covct_nn_adam_free(a);
    covct_free(buf);
    return rc;
}
