/* The U-Net and its model file: shapes, a write/read round trip that gives
 * the same outputs, and every kind of damaged file refused with a message
 * that says what is wrong. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "covct/nn.h"
#include "test.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Recompute the trailing CRC-32 of a model file image. */
static void fix_crc(uint8_t *b, size_t len)
{
    put32(b + len - 4,
          (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)(len - 4)));
}

/* Read buffer b; expect failure with `want` in the message. */
static void refused(const char *what, const uint8_t *b, size_t len,
                    const char *want)
{
    covct_nn_model m;
    covct_error err = {0};
    covct_rc rc = covct_nn_model_read_buffer(b, len, &m, &err);
    CHECKF(rc != COVCT_OK && strstr(err.msg, want),
           "%s: rc %d, message '%s' (want '%s')", what, rc, err.msg, want);
    printf("%-28s -> %s\n", what, err.msg);
}

/* A copy of file image b with the JSON header replaced (lengths and CRC
 * updated). */
static uint8_t *with_header(const uint8_t *b, size_t len, const char *json,
                            size_t *out_len)
{
    uint32_t hlen = get32(b + 12);
    size_t rest = len - 16 - hlen, nl = strlen(json);
    uint8_t *o = malloc(16 + nl + rest);
    memcpy(o, b, 16);
    put32(o + 12, (uint32_t)nl);
    memcpy(o + 16, json, nl);
    memcpy(o + 16 + nl, b + 16 + hlen, rest);
    *out_len = 16 + nl + rest;
    fix_crc(o, *out_len);
    return o;
}

int main(void)
{
    covct_unet_config cfg = {.in_channels = 1, .classes = 3, .depth = 3,
                             .base = 4};
    covct_nn_model m = {.cfg = cfg};
    covct_error err = {0};
    CHECKF(covct_nn_unet(&cfg, 42, &m.graph, &m.out_slot, &err) == COVCT_OK,
           "unet: %s", err.msg);
    if (!m.graph)
        return test_report();
    /* 3 levels: 2 x (conv + 4 bn) per level, 2 up levels with transposed
     * conv (w, b) + 2 x (conv + 4 bn), final conv (w, b). */
    size_t want_params = 3 * 2 * 5 + 2 * (2 + 2 * 5) + 2;
    CHECKF(covct_nn_param_count(m.graph) == want_params, "%zu parameters",
           covct_nn_param_count(m.graph));
    m.card_json = covct_strdup("{\"data\":\"synthetic test\",\"licence\":\"none\"}");
    m.input_size = 32;

    /* Run it once in training mode so the running statistics move away
     * from their defaults, then compare inference outputs. */
    covct_tensor x = {0};
    covct_tensor_alloc(&x, 2, 1, 16, 12, NULL);
    for (size_t i = 0; i < covct_tensor_size(&x); i++)
        x.data[i] = (float)sin(0.37 * (double)i);
    CHECK(covct_nn_forward(m.graph, &x, &err) == COVCT_OK);
    const covct_tensor *y = covct_nn_value(m.graph, m.out_slot);
    CHECK(y && y->n == 2 && y->c == 3 && y->h == 16 && y->w == 12);
    covct_nn_set_training(m.graph, 0);
    CHECK(covct_nn_forward(m.graph, &x, &err) == COVCT_OK);
    y = covct_nn_value(m.graph, m.out_slot);
    size_t ny = covct_tensor_size(y);
    float *before = malloc(ny * sizeof *before);
    memcpy(before, y->data, ny * sizeof *before);

    char path[] = "/tmp/covct-model-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECKF(covct_nn_model_write(path, &m, &err) == COVCT_OK, "write: %s",
           err.msg);
    covct_nn_model r;
    covct_error_clear(&err);
    CHECKF(covct_nn_model_read(path, &r, &err) == COVCT_OK, "read: %s",
           err.msg);
    if (r.graph) {
        CHECK(r.cfg.depth == 3 && r.cfg.base == 4 && r.cfg.classes == 3);
        CHECK(r.input_size == 32);
        CHECK(r.card_json && strstr(r.card_json, "synthetic test"));
        CHECK(covct_nn_forward(r.graph, &x, &err) == COVCT_OK);
        const covct_tensor *z = covct_nn_value(r.graph, r.out_slot);
        double worst = 0;
        for (size_t i = 0; i < ny; i++)
            worst = fmax(worst, fabs((double)z->data[i] - before[i]));
        CHECKF(worst == 0, "outputs after reading differ by %g", worst);
    }
    covct_nn_model_free(&r);

    /* Damaged files. */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    rewind(f);
    uint8_t *b = malloc(len);
    CHECK(fread(b, 1, len, f) == len);
    fclose(f);
    unlink(path);
    refused("empty", b, 0, "not a covct model");
    refused("truncated header", b, 20, "truncated");
    refused("truncated parameters", b, len - 100, "truncated");
    refused("truncated checksum", b, len - 2, "truncated");
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    c[len / 2] ^= 0x40;
    refused("one bit flipped", c, len, "checksum mismatch");
    memcpy(c, b, len);
    c[0] = 'X';
    refused("wrong signature", c, len, "not a covct model");
    memcpy(c, b, len);
    put32(c + 8, 2);
    fix_crc(c, len);
    refused("future version", c, len, "version 2");
    memcpy(c, b, len);
    put32(c + 12, 0xFFFFFFFFu);
    fix_crc(c, len);
    refused("header length huge", c, len, "header length");
    /* A NaN parameter: the last float before the CRC. */
    memcpy(c, b, len);
    put32(c + len - 8, 0x7FC00000u);
    fix_crc(c, len);
    refused("NaN parameter", c, len, "not a finite number");
    size_t nl;
    uint8_t *h = with_header(b, len, "[1,2]", &nl);
    refused("header not an object", h, nl, "not a JSON object");
    free(h);
    h = with_header(b, len,
                    "{\"format\":\"covct-model\",\"version\":1,\"architecture\":"
                    "{\"name\":\"resnet\"},\"parameters\":[]}",
                    &nl);
    refused("unknown architecture", h, nl, "'resnet'");
    free(h);
    h = with_header(b, len,
                    "{\"format\":\"covct-model\",\"version\":1,\"architecture\":"
                    "{\"name\":\"unet\",\"in_channels\":1,\"classes\":3,"
                    "\"depth\":4,\"base\":4},\"parameters\":[]}",
                    &nl);
    refused("depth does not match data", h, nl, "needs");
    free(h);
    h = with_header(b, len,
                    "{\"format\":\"covct-model\",\"version\":1,\"architecture\":"
                    "{\"name\":\"unet\",\"in_channels\":1,\"classes\":3,"
                    "\"depth\":7,\"base\":256},\"parameters\":[]}",
                    &nl);
    refused("huge network announced", h, nl, "needs");
    free(h);
    h = with_header(b, len,
                    "{\"format\":\"covct-model\",\"version\":1,\"architecture\":"
                    "{\"name\":\"unet\",\"in_channels\":1,\"classes\":3,"
                    "\"depth\":3,\"base\":4},\"parameters\":[[1,1,1,1]]}",
                    &nl);
    refused("parameter list short", h, nl, "lists 1 parameters");
    free(h);
    h = with_header(b, len,
                    "{\"format\":\"covct-model\",\"version\":1,\"architecture\":"
                    "{\"name\":\"unet\",\"in_channels\":1,\"classes\":3,"
                    "\"depth\":3.5,\"base\":4},\"parameters\":[]}",
                    &nl);
    refused("non-integer depth", h, nl, "architecture.depth");
    free(h);
    h = with_header(b, len,
                    "{\"format\":\"covct-model\",\"version\":1,\"architecture\":"
                    "{\"name\":\"unet\",\"in_channels\":1,\"classes\":3,"
                    "\"depth\":3,\"base\":4},\"parameters\":[],"
                    "\"preprocessing\":{\"input_size\":30}}",
                    &nl);
    refused("input size not a multiple", h, nl, "preprocessing.input_size");
    free(h);
    /* Every truncation is refused (never a crash). */
    size_t accepted = 0;
    for (size_t k = 0; k < len; k += 7) {
        covct_nn_model t;
        if (covct_nn_model_read_buffer(b, k, &t, NULL) == COVCT_OK) {
            accepted++;
            covct_nn_model_free(&t);
        }
    }
    CHECKF(accepted == 0, "%zu truncated files accepted", accepted);

    /* Keep a tiny model as the fuzzing seed when asked to. */
    const char *seed = getenv("COVCT_WRITE_MODEL_SEED");
    if (seed) {
        covct_unet_config tiny = {1, 2, 2, 1};
        covct_nn_model t = {.cfg = tiny};
        covct_nn_unet(&tiny, 1, &t.graph, &t.out_slot, NULL);
        t.card_json = covct_strdup("{\"data\":\"fuzzing seed\"}");
        CHECK(covct_nn_model_write(seed, &t, NULL) == COVCT_OK);
        covct_nn_model_free(&t);
    }

    free(b);
    free(c);
    free(before);
    covct_tensor_free(&x);
    covct_nn_model_free(&m);
    return test_report();
}
