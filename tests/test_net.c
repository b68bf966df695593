/*
 * net module tests (PS3.8 upper layer, PS3.7 DIMSE), in process:
 *  - A-ASSOCIATE-RQ/AC and command sets survive encode/decode, and every
 *    truncation of them is refused with a message (never a crash);
 *  - byte layouts checked against PS3.8 9.3 (fixed offsets of the PDU
 *    fields, A-ABORT / A-ASSOCIATE-RJ bytes);
 *  - a server on a free loopback port: C-ECHO and C-STORE from covct's own
 *    requestor (the instance arrives byte for byte), called AE and
 *    allow-list refusals with their PS3.8 reasons, the association cap,
 *    a garbage PDU answered with A-ABORT while the server keeps serving.
 * Interoperability with dcmtk's tools is in tests/net_dcmtk.sh.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "covct/dicom.h"
#include "covct/net.h"
#include "net/net_int.h"
#include "test.h"

#define CT_IMAGE "1.2.840.10008.5.1.4.1.1.2"

static void test_pdu_roundtrip(void)
{
    net_assoc_pdu *a = calloc(3, sizeof *a);
    net_assoc_pdu *b = a + 1, *c = a + 2;
    snprintf(a->called, 17, "COVCT");
    snprintf(a->calling, 17, "STORESCU");
    a->max_pdu = 16384;
    a->n_pc = 2;
    a->pc[0].id = 1;
    snprintf(a->pc[0].abstract, 65, "%s", NET_VERIFICATION);
    a->pc[0].n_ts = 1;
    snprintf(a->pc[0].ts[0], 65, "%s", COVCT_TS_IMPLICIT_LE);
    a->pc[1].id = 3;
    snprintf(a->pc[1].abstract, 65, "%s", CT_IMAGE);
    a->pc[1].n_ts = 2;
    snprintf(a->pc[1].ts[0], 65, "%s", COVCT_TS_EXPLICIT_LE);
    snprintf(a->pc[1].ts[1], 65, "%s", COVCT_TS_JPEG_LOSSLESS_SV1);
    covct_buf buf = {0};
    covct_error err = {0};
    CHECK(net_assoc_encode(a, false, &buf, &err) == COVCT_OK);
    /* PS3.8 9.3.2: type 01, length at 2..5, version 1 at 6..7, called AE
     * at 10..25, calling AE at 26..41, items from 74. */
    CHECK(buf.len > 74 && buf.data[0] == 0x01);
    uint32_t len = ((uint32_t)buf.data[2] << 24) | (buf.data[3] << 16) |
                   (buf.data[4] << 8) | buf.data[5];
    CHECK(len == buf.len - 6);
    CHECK(buf.data[6] == 0 && buf.data[7] == 1);
    CHECK(!memcmp(buf.data + 10, "COVCT           ", 16));
    CHECK(!memcmp(buf.data + 26, "STORESCU        ", 16));
    CHECK(buf.data[74] == 0x10); /* application context item first */
    int reason;
    CHECK(net_assoc_decode(buf.data + 6, buf.len - 6, false, b, &reason,
                           &err) == COVCT_OK);
    CHECK(!strcmp(b->called, "COVCT") && !strcmp(b->calling, "STORESCU"));
    CHECK(!strcmp(b->app_context, NET_APP_CONTEXT));
    CHECK(b->n_pc == 2 && b->pc[1].id == 3 && b->pc[1].n_ts == 2);
    CHECK(!strcmp(b->pc[1].ts[1], COVCT_TS_JPEG_LOSSLESS_SV1));
    CHECK(b->max_pdu == 16384);
    CHECK(!strcmp(b->impl_class, COVCT_IMPL_CLASS_UID));
    /* Every truncation is refused with a message. */
    int refused = 0;
    for (size_t n = 0; n < buf.len - 6; n++) {
        covct_error_clear(&err);
        if (net_assoc_decode(buf.data + 6, n, false, c, &reason, &err) &&
            err.msg[0])
            refused++;
    }
    CHECKF(refused == (int)(buf.len - 6), "%d of %zu truncations refused",
           refused, buf.len - 6);
    /* A hostile item length. */
    buf.data[6 + 68 + 2] = 0xFF;
    buf.data[6 + 68 + 3] = 0xFF;
    covct_error_clear(&err);
    CHECK(net_assoc_decode(buf.data + 6, buf.len - 6, false, c, &reason,
                           &err) == COVCT_ERR_CORRUPT);
    CHECKF(strstr(err.msg, "past the end") != NULL, "%s", err.msg);
    /* An even context ID. */
    a->pc[0].id = 2;
    buf.len = 0;
    CHECK(net_assoc_encode(a, false, &buf, &err) == COVCT_OK);
    covct_error_clear(&err);
    CHECK(net_assoc_decode(buf.data + 6, buf.len - 6, false, c, &reason,
                           &err) == COVCT_ERR_CORRUPT);
    CHECKF(strstr(err.msg, "even") != NULL, "%s", err.msg);
    covct_buf_free(&buf);

    /* A-ABORT and A-ASSOCIATE-RJ layouts (PS3.8 9.3.4, 9.3.8). */
    uint8_t p[10];
    net_abort_encode(p, 2, 6);
    static const uint8_t want_abort[10] = {7, 0, 0, 0, 0, 4, 0, 0, 2, 6};
    CHECK(!memcmp(p, want_abort, 10));
    net_rj_encode(p, 1, 1, 7);
    static const uint8_t want_rj[10] = {3, 0, 0, 0, 0, 4, 0, 1, 1, 7};
    CHECK(!memcmp(p, want_rj, 10));
    free(a);
}

static void test_cmd_roundtrip(void)
{
    net_cmd c, d;
    memset(&c, 0, sizeof c);
    c.field = DIMSE_C_STORE_RQ;
    c.has_message_id = true;
    c.message_id = 7;
    c.dataset_type = 0;
    snprintf(c.sop_class, sizeof c.sop_class, "%s", CT_IMAGE);
    snprintf(c.sop_instance, sizeof c.sop_instance, "1.2.3.4.5");
    snprintf(c.move_originator, sizeof c.move_originator, "MOVER");
    c.move_originator_id = 3;
    covct_buf b = {0};
    covct_error err = {0};
    CHECK(net_cmd_encode(&c, &b, &err) == COVCT_OK);
    /* (0000,0000) UL group length first, value = bytes after it. */
    CHECK(b.len > 12 && b.data[0] == 0 && b.data[2] == 0 && b.data[4] == 4);
    uint32_t gl = b.data[8] | (b.data[9] << 8) | (b.data[10] << 16);
    CHECK(gl == b.len - 12);
    CHECK(net_cmd_decode(b.data, b.len, &d, &err) == COVCT_OK);
    CHECK(d.field == DIMSE_C_STORE_RQ && d.message_id == 7 &&
          d.has_dataset_type && d.dataset_type == 0);
    CHECK(!strcmp(d.sop_class, CT_IMAGE) &&
          !strcmp(d.sop_instance, "1.2.3.4.5"));
    CHECK(!strcmp(d.move_originator, "MOVER") && d.move_originator_id == 3);
    int refused = 0;
    for (size_t n = 0; n < b.len; n++) {
        covct_error_clear(&err);
        refused += net_cmd_decode(b.data, n, &d, &err) != COVCT_OK;
    }
    CHECKF(refused == (int)b.len, "%d of %zu truncations refused", refused,
           b.len);
    covct_buf_free(&b);
    covct_net_peer peer;
    CHECK(covct_net_peer_parse("PACS@10.0.0.5:104", &peer, &err) == 0 &&
          !strcmp(peer.ae, "PACS") && !strcmp(peer.host, "10.0.0.5") &&
          peer.port == 104);
    CHECK(covct_net_peer_parse("PACS@[::1]:11112", &peer, &err) == 0 &&
          !strcmp(peer.host, "::1"));
    covct_error_clear(&err);
    CHECK(covct_net_peer_parse("PACS:104", &peer, &err) == COVCT_ERR_ARG);
    covct_error_clear(&err);
    CHECK(covct_net_peer_parse("ABCDEFGHIJKLMNOPQ@h:1", &peer, &err));
    covct_error_clear(&err);
    CHECK(covct_net_peer_parse("PACS@h:70000", &peer, &err));
    CHECK(net_is_storage(CT_IMAGE) && net_is_storage("1.2.840.10008.5.1.4.1.1.66.4"));
    CHECK(!net_is_storage("1.2.840.10008.5.1.4.1.2.2.1")); /* Q/R FIND */
    CHECK(!net_is_storage(NET_VERIFICATION));
}

/* ---- a live server ------------------------------------------------------ */
typedef struct sink {
    pthread_mutex_t lock;
    int count;
    uint8_t *last;
    size_t last_len;
    char last_ae[17];
} sink;

static uint16_t on_store(void *user, covct_net_store_request *rq,
                         char *comment, size_t n)
{
    (void)comment;
    (void)n;
    sink *s = user;
    pthread_mutex_lock(&s->lock);
    s->count++;
    covct_free(s->last);
    s->last = rq->file;
    s->last_len = rq->len;
    snprintf(s->last_ae, sizeof s->last_ae, "%s", rq->assoc->calling_ae);
    pthread_mutex_unlock(&s->lock);
    return COVCT_DIMSE_SUCCESS;
}

static covct_buf make_instance(const char *uid)
{
    covct_dcm_dataset *ds = covct_dcm_dataset_new();
    covct_error err = {0};
    covct_dcm_dataset_set_string(ds, COVCT_TAG(0x0008, 0x0016),
                                 COVCT_VR('U', 'I'), CT_IMAGE, &err);
    covct_dcm_dataset_set_string(ds, COVCT_TAG(0x0008, 0x0018),
                                 COVCT_VR('U', 'I'), uid, &err);
    covct_dcm_dataset_set_string(ds, COVCT_TAG(0x0010, 0x0010),
                                 COVCT_VR('P', 'N'), "SYNTHETIC^TEST", &err);
    uint8_t px[64];
    for (int i = 0; i < 64; i++)
        px[i] = (uint8_t)i;
    covct_dcm_dataset_set(ds, COVCT_TAG(0x7FE0, 0x0010), COVCT_VR('O', 'W'),
                          px, sizeof px, &err);
    covct_buf b = {0};
    CHECK(covct_dcm_write_buffer(ds, &b, &err) == COVCT_OK);
    covct_dcm_dataset_free(ds);
    return b;
}

/* Byte offset of the data set in a Part 10 buffer. */
static size_t dataset_offset(const uint8_t *f, size_t len)
{
    char a[65], b[65], c[65];
    size_t off = 0;
    covct_error err = {0};
    if (covct_dcm_meta_peek(f, len, a, b, c, &off, &err))
        return 0;
    return off;
}

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Until the server's association threads have all ended (a refused
 * association still counts against the cap until its thread exits). */
static void wait_idle(covct_net_server *srv)
{
    for (int i = 0; i < 500; i++) {
        unsigned open = 0;
        uint64_t total = 0;
        covct_net_server_counts(srv, &open, &total);
        if (open == 0)
            return;
        usleep(10000);
    }
}

static void test_server(void)
{
    sink s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    static const char *const allow[] = {"GOOD", "LOCALONLY@127.0.0.1",
                                        "ELSEWHERE@192.0.2.1"};
    covct_net_server_config cfg = {
        .ae_title = "COVCT",
        .bind_host = "127.0.0.1",
        .port = 0,
        .allowed = allow,
        .n_allowed = 3,
        .max_associations = 2,
        .artim_s = 2,
        .on_store = on_store,
        .store_user = &s,
    };
    covct_net_server *srv = NULL;
    covct_error err = {0};
    CHECK(covct_net_server_start(&cfg, &srv, &err) == COVCT_OK);
    if (!srv)
        return;
    covct_net_peer peer = {.ae = "COVCT", .host = "127.0.0.1"};
    peer.port = covct_net_server_port(srv);
    static const char *const ts[] = {COVCT_TS_EXPLICIT_LE,
                                     COVCT_TS_IMPLICIT_LE};
    covct_net_proposal props[3] = {
        {NET_VERIFICATION, ts, 2},
        {CT_IMAGE, ts, 2},
        {"1.2.840.10008.5.1.4.1.2.2.1", ts, 1}, /* C-FIND: not offered */
    };
    covct_net_assoc *a = NULL;
    CHECKF(covct_net_connect(&peer, "GOOD", props, 3, 5, &a, &err) == 0,
           "%s", err.msg);
    if (a) {
        CHECK(covct_net_accepted(a, NET_VERIFICATION, NULL));
        CHECK(covct_net_accepted(a, CT_IMAGE, COVCT_TS_EXPLICIT_LE));
        CHECK(!covct_net_accepted(a, CT_IMAGE, COVCT_TS_IMPLICIT_LE));
        CHECK(!covct_net_accepted(a, "1.2.840.10008.5.1.4.1.2.2.1", NULL));
        uint16_t st = 0xFFFF;
        CHECK(covct_net_echo(a, &st, &err) == COVCT_OK && st == 0);
        covct_buf f = make_instance("1.2.826.0.1.3680043.2.1143.1");
        st = 0xFFFF;
        CHECKF(covct_net_send_file(a, f.data, f.len, &st, &err) == 0 &&
                   st == 0,
               "%s status 0x%04X", err.msg, st);
        pthread_mutex_lock(&s.lock);
        CHECK(s.count == 1);
        CHECK(!strcmp(s.last_ae, "GOOD"));
        /* The data set arrives byte for byte behind a fresh meta header
         * naming the sender. */
        size_t o1 = dataset_offset(f.data, f.len);
        size_t o2 = s.last ? dataset_offset(s.last, s.last_len) : 0;
        CHECK(o1 && o2 && f.len - o1 == s.last_len - o2 &&
              !memcmp(f.data + o1, s.last + o2, f.len - o1));
        CHECK(s.last && memmem(s.last, o2, "GOOD", 4) != NULL);
        pthread_mutex_unlock(&s.lock);
        covct_buf_free(&f);
        CHECK(covct_net_release(a, &err) == COVCT_OK);
    }
    /* Refusals with their reasons (PS3.8 9.3.4). */
    covct_net_peer wrong = peer;
    snprintf(wrong.ae, sizeof wrong.ae, "NOTCOVCT");
    covct_error_clear(&err);
    CHECK(covct_net_connect(&wrong, "GOOD", props, 1, 5, &a, &err) != 0);
    CHECKF(strstr(err.msg, "called AE title not recognized") != NULL, "%s",
           err.msg);
    covct_error_clear(&err);
    wait_idle(srv);
    CHECK(covct_net_connect(&peer, "STRANGER", props, 1, 5, &a, &err) != 0);
    CHECKF(strstr(err.msg, "calling AE title not recognized") != NULL, "%s",
           err.msg);
    covct_error_clear(&err);
    wait_idle(srv);
    CHECK(covct_net_connect(&peer, "LOCALONLY", props, 1, 5, &a, &err) ==
          0);
    if (a)
        covct_net_release(a, &err);
    covct_error_clear(&err);
    wait_idle(srv); /* refused by the allow-list, not by the cap */
    CHECK(covct_net_connect(&peer, "ELSEWHERE", props, 1, 5, &a, &err) != 0);

    /* Garbage: an unknown PDU type gets an A-ABORT (unrecognized PDU). */
    int fd = raw_connect(peer.port);
    CHECK(fd >= 0);
    if (fd >= 0) {
        static const uint8_t junk[] = {0x09, 0, 0, 0, 0, 2, 0xAB, 0xCD};
        CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
        uint8_t r[10] = {0};
        ssize_t got = read(fd, r, sizeof r);
        CHECKF(got == 10 && r[0] == 0x07 && r[8] == 2 && r[9] == 1,
               "got %zd bytes, type 0x%02X reason %u", got, r[0], r[9]);
        close(fd);
    }
    /* A P-DATA PDU before any association: unexpected PDU. */
    fd = raw_connect(peer.port);
    if (fd >= 0) {
        static const uint8_t pdata[] = {0x04, 0, 0, 0, 0, 6,
                                        0,    0, 0, 2, 1, 3};
        CHECK(write(fd, pdata, sizeof pdata) == (ssize_t)sizeof pdata);
        uint8_t r[10] = {0};
        ssize_t got = read(fd, r, sizeof r);
        CHECK(got == 10 && r[0] == 0x07 && r[9] == 2);
        close(fd);
    }
    /* Silence: closed by the ARTIM timer (2 s here). */
    fd = raw_connect(peer.port);
    if (fd >= 0) {
        double t0 = covct_now();
        uint8_t r[10];
        ssize_t got = read(fd, r, sizeof r);
        double dt = covct_now() - t0;
        CHECKF(got == 0 && dt > 1.5 && dt < 10, "got %zd after %.1f s", got,
               dt);
        close(fd);
    }
    /* The cap (2): two open associations, the third is refused as
     * transient / local limit exceeded; the server still serves after. */
    covct_net_assoc *h1 = NULL, *h2 = NULL, *h3 = NULL;
    wait_idle(srv);
    CHECK(covct_net_connect(&peer, "GOOD", props, 1, 5, &h1, &err) == 0);
    CHECK(covct_net_connect(&peer, "GOOD", props, 1, 5, &h2, &err) == 0);
    covct_error_clear(&err);
    CHECK(covct_net_connect(&peer, "GOOD", props, 1, 5, &h3, &err) != 0);
    CHECKF(strstr(err.msg, "local limit exceeded") != NULL, "%s", err.msg);
    if (h1)
        covct_net_release(h1, &err);
    if (h2)
        covct_net_release(h2, &err);
    wait_idle(srv);
    covct_error_clear(&err);
    CHECK(covct_net_connect(&peer, "GOOD", props, 1, 5, &h3, &err) == 0);
    if (h3) {
        uint16_t st = 0xFFFF;
        CHECK(covct_net_echo(h3, &st, &err) == 0 && st == 0);
        /* Stop while h3 is open and idle: the server aborts it. */
        covct_net_server_stop(srv, 2);
        srv = NULL;
        st = 0xFFFF;
        covct_error_clear(&err);
        CHECK(covct_net_echo(h3, &st, &err) != 0);
        covct_net_abort(h3);
    }
    unsigned open = 0;
    uint64_t total = 0;
    if (srv) {
        covct_net_server_counts(srv, &open, &total);
        covct_net_server_stop(srv, 2);
    }
    covct_free(s.last);
}

int main(void)
{
    test_pdu_roundtrip();
    test_cmd_roundtrip();
    test_server();
    return test_report();
}
