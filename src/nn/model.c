/*
 * The segmentation network (a U-Net) and its model file.  Format:
 * docs/internals/model-format.md.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "covct/nn.h"
#include "nn/nn_int.h"

/* 7 letters and the terminating NUL: 8 bytes. */
#define MODEL_MAGIC "COVCTNN"
#define MODEL_MAGIC_LEN 8
#define MODEL_VERSION 1u
/* The JSON header is small (shapes and a model card); a cap keeps a
 * hostile length from allocating much. */
#define MODEL_HEADER_MAX ((uint32_t)1 << 20)

/* ---- the U-Net ------------------------------------------------------------ */

static int conv_bn_relu(covct_nn_graph *g, int in, int ch, covct_error *err)
{
    int a = covct_nn_conv2d(g, in, ch, 3, 1, 1, 1, 0, err);
    int b = a > 0 ? covct_nn_batchnorm(g, a, err) : -1;
    return b > 0 ? covct_nn_relu(g, b, err) : -1;
}

static covct_rc check_cfg(const covct_unet_config *c, covct_error *err)
{
    if (c->in_channels < 1 || c->in_channels > 8 || c->classes < 2 ||
        c->classes > 16 || c->depth < 1 || c->depth > 7 || c->base < 1 ||
        c->base > 256)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "U-Net: unsupported configuration (in %d, classes "
                         "%d, depth %d, base %d)",
                         c->in_channels, c->classes, c->depth, c->base);
    return COVCT_OK;
}

covct_rc covct_nn_unet(const covct_unet_config *cfg, uint64_t seed,
                       covct_nn_graph **out, int *out_slot, covct_error *err)
{
    covct_rc rc = check_cfg(cfg, err);
    if (rc != COVCT_OK)
        return rc;
    covct_nn_graph *g = NULL;
    if ((rc = covct_nn_graph_new(&g, err)) != COVCT_OK)
        return rc;
    covct_nn_set_input_channels(g, cfg->in_channels);
    covct_nn_seed(g, seed);
    int skip[8], x = covct_nn_input(g);
    for (int l = 0; l < cfg->depth && x >= 0; l++) {
        int ch = cfg->base << l;
        x = conv_bn_relu(g, x, ch, err);
        x = x > 0 ? conv_bn_relu(g, x, ch, err) : -1;
        skip[l] = x;
        if (x > 0 && l + 1 < cfg->depth)
            x = covct_nn_maxpool(g, x, 2, err);
    }
    for (int l = cfg->depth - 2; l >= 0 && x > 0; l--) {
        int ch = cfg->base << l;
        x = covct_nn_convt2d(g, x, ch, 2, 2, 0, 1, err);
        x = x > 0 ? covct_nn_concat(g, x, skip[l], err) : -1;
        x = x > 0 ? conv_bn_relu(g, x, ch, err) : -1;
        x = x > 0 ? conv_bn_relu(g, x, ch, err) : -1;
    }
    if (x > 0)
        x = covct_nn_conv2d(g, x, cfg->classes, 1, 1, 0, 1, 1, err);
    if (x <= 0) {
        covct_nn_graph_free(g);
        return err && err->rc ? err->rc : COVCT_ERR_INTERNAL;
    }
    *out = g;
    *out_slot = x;
    return COVCT_OK;
}

/* Number of floats of the U-Net's parameters (running statistics
 * included), computed without building it: a header cannot make the
 * reader allocate more than the file holds. */
static uint64_t unet_floats(const covct_unet_config *c)
{
    uint64_t n = 0, prev = (uint64_t)c->in_channels;
    for (int l = 0; l < c->depth; l++) {
        uint64_t ch = (uint64_t)c->base << l;
        n += ch * prev * 9 + 4 * ch + ch * ch * 9 + 4 * ch;
        prev = ch;
    }
    for (int l = c->depth - 2; l >= 0; l--) {
        uint64_t ch = (uint64_t)c->base << l, up = ch * 2;
        n += up * ch * 4 + ch;                 /* transposed conv + bias */
        n += 2 * ch * ch * 9 + 4 * ch + ch * ch * 9 + 4 * ch;
    }
    return n + (uint64_t)c->classes * c->base + (uint64_t)c->classes;
}

/* ---- writing ---------------------------------------------------------------- */

/* The JSON header of model m. */
static char *header_json(const covct_nn_model *m, covct_error *err)
{
    cJSON *root = cJSON_CreateObject(), *arch = NULL, *params = NULL;
    char *text = NULL;
    if (!root)
        goto nomem;
    cJSON_AddStringToObject(root, "format", "covct-model");
    cJSON_AddNumberToObject(root, "version", MODEL_VERSION);
    arch = cJSON_AddObjectToObject(root, "architecture");
    params = cJSON_AddArrayToObject(root, "parameters");
    if (!arch || !params)
        goto nomem;
    cJSON_AddStringToObject(arch, "name", "unet");
    cJSON_AddNumberToObject(arch, "in_channels", m->cfg.in_channels);
    cJSON_AddNumberToObject(arch, "classes", m->cfg.classes);
    cJSON_AddNumberToObject(arch, "depth", m->cfg.depth);
    cJSON_AddNumberToObject(arch, "base", m->cfg.base);
    for (size_t i = 0; i < covct_nn_param_count(m->graph); i++) {
        const covct_tensor *t = covct_nn_param(m->graph, i);
        int dims[4] = {t->n, t->c, t->h, t->w};
        cJSON *shape = cJSON_CreateIntArray(dims, 4);
        if (!shape || !cJSON_AddItemToArray(params, shape))
            goto nomem;
    }
    if (m->input_size) {
        cJSON *pre = cJSON_AddObjectToObject(root, "preprocessing");
        if (!pre)
            goto nomem;
        cJSON_AddNumberToObject(pre, "input_size", m->input_size);
        cJSON_AddStringToObject(pre, "intensity", "v/255");
    }
    if (m->card_json) {
        cJSON *card = cJSON_Parse(m->card_json);
        if (!card || !cJSON_IsObject(card)) {
            cJSON_Delete(card);
            cJSON_Delete(root);
            COVCT_ERR(err, COVCT_ERR_ARG, "model card is not a JSON object");
            return NULL;
        }
        cJSON_AddItemToObject(root, "card", card);
    }
    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text)
        COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot format the model header");
    return text;
nomem:
    cJSON_Delete(root);
    COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot format the model header");
    return NULL;
}

typedef struct writer {
    const covct_nn_model *m;
    const char *header;
} writer;

static covct_rc write_all(int fd, const char *tmp, void *user,
                          covct_error *err)
{
    const writer *w = user;
    covct_nn_graph *g = w->m->graph;
    uint32_t hlen = (uint32_t)strlen(w->header);
    uint64_t dlen = 0;
    for (size_t i = 0; i < covct_nn_param_count(g); i++)
        dlen += covct_tensor_size(covct_nn_param(g, i)) * 4;
    uint8_t head[MODEL_MAGIC_LEN + 8], len8[8], tail[4];
    memcpy(head, MODEL_MAGIC, MODEL_MAGIC_LEN);
    nn_put32(head + MODEL_MAGIC_LEN, MODEL_VERSION);
    nn_put32(head + MODEL_MAGIC_LEN + 4, hlen);
    nn_put32(len8, (uint32_t)dlen);
    nn_put32(len8 + 4, (uint32_t)(dlen >> 32));
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, head, sizeof head);
    crc = crc32(crc, (const Bytef *)w->header, hlen);
    crc = crc32(crc, len8, sizeof len8);
    covct_rc rc;
    if ((rc = covct_fd_write_all(fd, head, sizeof head, tmp, err)) ||
        (rc = covct_fd_write_all(fd, w->header, hlen, tmp, err)) ||
        (rc = covct_fd_write_all(fd, len8, sizeof len8, tmp, err)))
        return rc;
    uint8_t buf[4096];
    size_t nb = 0;
    for (size_t i = 0; i < covct_nn_param_count(g); i++) {
        const covct_tensor *t = covct_nn_param(g, i);
        for (size_t j = 0; j < covct_tensor_size(t); j++) {
            uint32_t bits;
            memcpy(&bits, &t->data[j], 4);
            nn_put32(buf + nb, bits);
            nb += 4;
            if (nb == sizeof buf) {
                crc = crc32(crc, buf, (uInt)nb);
                if ((rc = covct_fd_write_all(fd, buf, nb, tmp, err)))
                    return rc;
                nb = 0;
            }
        }
    }
    crc = crc32(crc, buf, (uInt)nb);
    nn_put32(tail, (uint32_t)crc);
    if ((rc = covct_fd_write_all(fd, buf, nb, tmp, err)))
        return rc;
    return covct_fd_write_all(fd, tail, sizeof tail, tmp, err);
}

covct_rc covct_nn_model_write(const char *path, const covct_nn_model *m,
                              covct_error *err)
{
    char *header = header_json(m, err);
    if (!header)
        return err && err->rc ? err->rc : COVCT_ERR_NOMEM;
    writer w = {m, header};
    covct_rc rc = covct_file_write_atomic(path, write_all, &w, err);
    cJSON_free(header);
    return rc;
}

/* ---- reading ------------------------------------------------------------------ */

static covct_rc json_int(const cJSON *o, const char *key, int *v,
                         covct_error *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
        fabs(it->valuedouble) > 1e6)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "model header: architecture.%s is missing or not an "
                         "integer",
                         key);
    *v = (int)it->valuedouble;
    return COVCT_OK;
}

covct_rc covct_nn_model_read_buffer(const uint8_t *buf, size_t len,
                                    covct_nn_model *m, covct_error *err)
{
    memset(m, 0, sizeof *m);
    const size_t fixed = MODEL_MAGIC_LEN + 8;
    if (len < fixed || memcmp(buf, MODEL_MAGIC, MODEL_MAGIC_LEN) != 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "not a covct model file (no 'COVCTNN' signature)");
    uint32_t version = nn_get32(buf + MODEL_MAGIC_LEN);
    if (version != MODEL_VERSION)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "model format version %u; this covct reads version "
                         "%u",
                         version, MODEL_VERSION);
    uint32_t hlen = nn_get32(buf + MODEL_MAGIC_LEN + 4);
    if (hlen > MODEL_HEADER_MAX || len - fixed < (size_t)hlen + 8 + 4)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "model file truncated or header length %u invalid "
                         "(file %zu bytes)",
                         hlen, len);
    const uint8_t *hp = buf + fixed;
    uint64_t dlen = nn_get64(hp + hlen);
    size_t doff = fixed + hlen + 8;
    if (dlen % 4 || dlen > len - doff || len - doff - dlen != 4)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "model file: %llu bytes of parameters announced at "
                         "offset %zu, %zu bytes follow (truncated or extra "
                         "data)",
                         (unsigned long long)dlen, doff - 8, len - doff);
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < len - 4;) {
        size_t n = len - 4 - off > (1u << 30) ? (1u << 30) : len - 4 - off;
        crc = crc32(crc, buf + off, (uInt)n);
        off += n;
    }
    if ((uint32_t)crc != nn_get32(buf + len - 4))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "model file checksum mismatch (CRC-32 %08x, file "
                         "says %08x): the file is damaged",
                         (unsigned)(uint32_t)crc, (unsigned)nn_get32(buf + len - 4));

    char *text = covct_strndup((const char *)hp, hlen);
    if (!text)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    cJSON *root = cJSON_Parse(text);
    covct_free(text);
    covct_rc rc = COVCT_OK;
    if (!root || !cJSON_IsObject(root)) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "model header is not a JSON object");
        goto done;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architecture");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(arch, "name");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "covct-model") ||
        !cJSON_IsObject(arch) || !cJSON_IsArray(params)) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "model header lacks format, architecture or "
                       "parameters");
        goto done;
    }
    if (!cJSON_IsString(name) || strcmp(name->valuestring, "unet")) {
        rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                       "model architecture '%s' is not known to this covct",
                       cJSON_IsString(name) ? name->valuestring : "?");
        goto done;
    }
    if ((rc = json_int(arch, "in_channels", &m->cfg.in_channels, err)) ||
        (rc = json_int(arch, "classes", &m->cfg.classes, err)) ||
        (rc = json_int(arch, "depth", &m->cfg.depth, err)) ||
        (rc = json_int(arch, "base", &m->cfg.base, err)))
        goto done;
    if (check_cfg(&m->cfg, NULL) != COVCT_OK) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "model header: U-Net configuration out of range (in "
                       "%d, classes %d, depth %d, base %d)",
                       m->cfg.in_channels, m->cfg.classes, m->cfg.depth,
                       m->cfg.base);
        goto done;
    }
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "preprocessing");
    if (pre) {
        int size = 0;
        if (!cJSON_IsObject(pre) ||
            json_int(pre, "input_size", &size, NULL) != COVCT_OK ||
            size < 0 || size > 4096 || size % (1 << (m->cfg.depth - 1))) {
            rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                           "model header: preprocessing.input_size must be "
                           "a multiple of %d up to 4096",
                           1 << (m->cfg.depth - 1));
            goto done;
        }
        m->input_size = size;
    }
    if (unet_floats(&m->cfg) * 4 != dlen) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "model file holds %llu bytes of parameters, a U-Net "
                       "(in %d, classes %d, depth %d, base %d) needs %llu",
                       (unsigned long long)dlen, m->cfg.in_channels,
                       m->cfg.classes, m->cfg.depth, m->cfg.base,
                       (unsigned long long)(unet_floats(&m->cfg) * 4));
        goto done;
    }
    if ((rc = covct_nn_unet(&m->cfg, 0, &m->graph, &m->out_slot, err)))
        goto done;
    size_t np = covct_nn_param_count(m->graph);
    if ((size_t)cJSON_GetArraySize(params) != np) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "model header lists %d parameters, the architecture "
                       "has %zu",
                       cJSON_GetArraySize(params), np);
        goto done;
    }
    uint64_t need = 0;
    for (size_t i = 0; i < np; i++) {
        covct_tensor *t = covct_nn_param(m->graph, i);
        const cJSON *sh = cJSON_GetArrayItem(params, (int)i);
        int dims[4] = {t->n, t->c, t->h, t->w};
        bool ok = cJSON_IsArray(sh) && cJSON_GetArraySize(sh) == 4;
        for (int d = 0; ok && d < 4; d++) {
            const cJSON *v = cJSON_GetArrayItem(sh, d);
            ok = cJSON_IsNumber(v) && v->valuedouble == dims[d];
        }
        if (!ok) {
            rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                           "model header: parameter %zu should have shape "
                           "%dx%dx%dx%d",
                           i, dims[0], dims[1], dims[2], dims[3]);
            goto done;
        }
        need += covct_tensor_size(t) * 4;
    }
    if (need != dlen) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "model file holds %llu bytes of parameters, the "
                       "shapes need %llu",
                       (unsigned long long)dlen, (unsigned long long)need);
        goto done;
    }
    const uint8_t *p = buf + doff;
    for (size_t i = 0; i < np; i++) {
        covct_tensor *t = covct_nn_param(m->graph, i);
        for (size_t j = 0; j < covct_tensor_size(t); j++, p += 4) {
            uint32_t bits = nn_get32(p);
            memcpy(&t->data[j], &bits, 4);
            if (!isfinite(t->data[j])) {
                rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                               "model parameter %zu element %zu is not a "
                               "finite number",
                               i, j);
                goto done;
            }
        }
    }
    const cJSON *card = cJSON_GetObjectItemCaseSensitive(root, "card");
    if (card) {
        if (!cJSON_IsObject(card)) {
            rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                           "model card is not a JSON object");
            goto done;
        }
        char *c = cJSON_PrintUnformatted(card);
        if (!c) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            goto done;
        }
        m->card_json = covct_strdup(c);
        cJSON_free(c);
        if (!m->card_json) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    covct_nn_set_training(m->graph, 0);
done:
    cJSON_Delete(root);
    if (rc != COVCT_OK)
        covct_nn_model_free(m);
    return rc;
}

covct_rc covct_nn_model_read(const char *path, covct_nn_model *m,
                             covct_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    memset(m, 0, sizeof *m);
    covct_rc rc = covct_file_read(path, &buf, &len, err);
    if (rc != COVCT_OK)
        return rc;
    rc = covct_nn_model_read_buffer(buf, len, m, err);
    covct_free(buf);
    if (rc != COVCT_OK)
        covct_error_prefix(err, "%s: ", path);
    return rc;
}

void covct_nn_model_free(covct_nn_model *m)
{
    if (!m)
        return;
    covct_nn_plan_free(m->plan);
    covct_nn_graph_free(m->graph);
    covct_free(m->card_json);
    memset(m, 0, sizeof *m);
}

covct_rc covct_nn_model_shift_infection_cut(covct_nn_model *m, int level,
                                            double *offset, covct_error *err)
{
    if (!m || !m->graph || level < 1 || level > 254)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "model: the infection cut is a level 1..254, not %d",
                         level);
    const nn_op *last = NULL;
    for (size_t i = 0; i < m->graph->nops; i++)
        if (m->graph->ops[i].out == m->out_slot)
            last = &m->graph->ops[i];
    if (!last || last->kind != COVCT_NN_CONV2D || !last->bias ||
        m->graph->slot_c[m->out_slot] < 2)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "model: the output does not come from a convolution "
                         "with a bias over two or more classes");
    /* infection = 1 - p0 >= t  <=>  z0 - logsumexp(z1..) <= logit(1 - t);
     * after z0 -= d the cut at 0.5 is z0 - logsumexp(z1..) <= d. */
    double t = level / 255.0, d = log((1.0 - t) / t);
    float *bias = m->graph->par[last->p0 + 1].data;
    bias[0] = (float)(bias[0] - d);
    covct_nn_model_forget_plan(m);
    if (offset)
        *offset = d;
    return COVCT_OK;
}

void covct_nn_model_forget_plan(covct_nn_model *m)
{
    if (m) {
        covct_nn_plan_free(m->plan);
        m->plan = NULL;
    }
}
