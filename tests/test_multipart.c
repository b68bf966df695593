/*
 * multipart/related parser and writer (src/http/multipart.c; RFC 2046
 * 5.1, RFC 2387, PS3.18 8.6/8.7): writer -> parser round trips with binary
 * bodies, hand-written bodies after the RFCs' examples, bodies written by
 * Python's email package (a peer implementation), malformed bodies with
 * their error messages, limits and allocation failures.
 */
#include <stdint.h>
#include <unistd.h>

#include "covct/core.h"
#include "http/dicomweb_int.h"
#include "test.h"

#define MAXP 8
typedef struct got {
    size_t n;
    size_t len[MAXP];
    uint8_t *body[MAXP];
    char type[MAXP][128], loc[MAXP][128], id[MAXP][128], cte[MAXP][64];
    char start[256], mtype[128];
} got;

static covct_rc collect(const multipart_part *p, void *user, covct_error *err)
{
    got *g = user;
    (void)err;
    if (g->n >= MAXP)
        return COVCT_OK;
    size_t i = g->n++;
    g->len[i] = p->body_len;
    g->body[i] = malloc(p->body_len + 1);
    memcpy(g->body[i], p->body, p->body_len);
    snprintf(g->type[i], sizeof g->type[i], "%s", p->content_type);
    snprintf(g->loc[i], sizeof g->loc[i], "%s", p->content_location);
    snprintf(g->id[i], sizeof g->id[i], "%s", p->content_id);
    snprintf(g->cte[i], sizeof g->cte[i], "%s",
             p->content_transfer_encoding);
    snprintf(g->start, sizeof g->start, "%s", p->message->start);
    snprintf(g->mtype, sizeof g->mtype, "%s", p->message->type);
    return COVCT_OK;
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n && i < MAXP; i++)
        free(g->body[i]);
    memset(g, 0, sizeof *g);
}

static covct_rc parse_str(const char *body, const char *ct, got *g,
                          covct_error *err)
{
    memset(g, 0, sizeof *g);
    return multipart_parse((const uint8_t *)body, strlen(body), ct, collect,
                           g, err);
}

/* Parse and expect failure with a message containing `want`. */
static void expect_error(const char *body, size_t len, const char *ct,
                         const multipart_limits *lim, covct_rc rc,
                         const char *want)
{
    got g = {0};
    covct_error err = {0};
    covct_rc r = multipart_parse_ex((const uint8_t *)body, len, ct, lim,
                                    collect, &g, &err);
    CHECKF(r == rc && strstr(err.msg, want) != NULL,
           "rc %d (want %d), message '%s' (want '%s')", r, rc, err.msg, want);
    CHECKF(g.n == 0, "%zu parts delivered from a bad body", g.n);
    got_free(&g);
}

static void test_roundtrip(void)
{
    /* Binary bodies with everything that could confuse a parser: CRLF,
     * bare LF and CR, "--", the boundary without its line start, NULs. */
    static const char bd[] = "covct-7a1f";
    uint8_t b1[300];
    for (size_t i = 0; i < sizeof b1; i++)
        b1[i] = (uint8_t)(i * 37);
    const char b2[] = "\r\n--\r\nx--covct-7a1f--\r\n\n\r-covct-7a1f\r\n"
                      "--covct-7a1";
    covct_buf out = {0};
    covct_error err = {0};
    multipart_writer w;
    CHECK(multipart_writer_init(&w, &out, bd, &err) == COVCT_OK);
    const char *h1[] = {"Content-Location: /studies/1/series/2/instances/3",
                        "Content-ID: <a@covct>", NULL};
    CHECK(multipart_writer_begin_part(&w, "application/dicom", h1, &err) == 0);
    CHECK(multipart_writer_append(&w, b1, 100, &err) == 0);
    CHECK(multipart_writer_append(&w, b1 + 100, 200, &err) == 0);
    CHECK(multipart_writer_begin_part(&w, "application/octet-stream", NULL,
                                      &err) == 0);
    /* b2 has the boundary inside lines and a prefix of it at a line
     * start; the whole delimiter at a line start may not occur in data
     * (RFC 2046 5.1.1). */
    CHECK(multipart_writer_append(&w, b2, sizeof b2 - 1, &err) == 0);
    CHECK(multipart_writer_begin_part(&w, NULL, NULL, &err) == 0); /* empty */
    CHECK(multipart_writer_finish(&w, &err) == 0);
    CHECK(multipart_writer_append(&w, "x", 1, &err) == COVCT_ERR_ARG);
    char ct[160];
    snprintf(ct, sizeof ct,
             "multipart/related; type=\"application/dicom\"; boundary=%s", bd);
    got g = {0};
    covct_error e2 = {0};
    CHECKF(multipart_parse(out.data, out.len, ct, collect, &g, &e2) == 0,
           "%s", e2.msg);
    CHECK(g.n == 3);
    CHECK(g.len[0] == 300 && !memcmp(g.body[0], b1, 300));
    CHECK(!strcmp(g.type[0], "application/dicom"));
    CHECK(!strcmp(g.loc[0], "/studies/1/series/2/instances/3"));
    CHECK(!strcmp(g.id[0], "<a@covct>"));
    CHECK(!strcmp(g.mtype, "application/dicom"));
    CHECK(g.len[1] == sizeof b2 - 1 && !memcmp(g.body[1], b2, g.len[1]));
    CHECK(g.len[2] == 0 && g.type[2][0] == '\0');
    got_free(&g);

    /* Random boundaries differ and are accepted by the writer. */
    char r1[33], r2[33];
    CHECK(multipart_boundary_random(r1, &err) == 0);
    CHECK(multipart_boundary_random(r2, &err) == 0);
    CHECK(strlen(r1) == 32 && strcmp(r1, r2) != 0);
    out.len = 0;
    CHECK(multipart_writer_init(&w, &out, r1, &err) == 0);
    /* Writer refusals: header injection, bad boundaries, empty message. */
    const char *inj[] = {"X-A: 1\r\nX-B: 2", NULL};
    CHECK(multipart_writer_begin_part(&w, "a/b", inj, &err) == COVCT_ERR_ARG);
    CHECK(multipart_writer_begin_part(&w, "a/b\r\n", NULL, &err) ==
          COVCT_ERR_ARG);
    CHECK(multipart_writer_finish(&w, &err) == COVCT_ERR_ARG);
    CHECK(multipart_writer_init(&w, &out, "", &err) == COVCT_ERR_ARG);
    CHECK(multipart_writer_init(&w, &out, "a\"b", &err) == COVCT_ERR_ARG);
    CHECK(multipart_writer_init(&w, &out, "ab ", &err) == COVCT_ERR_ARG);
    char longb[80];
    memset(longb, 'a', 71);
    longb[71] = 0;
    CHECK(multipart_writer_init(&w, &out, longb, &err) == COVCT_ERR_ARG);
    covct_buf_free(&out);
}

static void test_handwritten(void)
{
    got g;
    covct_error err = {0};
    /* RFC 2387 3.x style: quoted boundary, start and type, a preamble,
     * transport padding after the delimiters, an epilogue. */
    const char *ct = "Multipart/Related; boundary=\"example 98766\"; "
                     "type=\"application/dicom+xml\"; start=\"<950118.AEB0@XIson.com>\"";
    const char *body =
        "This is the preamble.\r\n"
        "--example 98766  \t\r\n"
        "Content-Type: application/dicom+xml\r\n"
        "Content-ID: <950118.AEB0@XIson.com>\r\n"
        "\r\n"
        "<NativeDicomModel/>\r\n"
        "--example 98766\r\n"
        "content-type: application/octet-stream\r\n"
        "Content-Location: http://example.com/bulk/1\r\n"
        "Content-Length: 4\r\n"
        "\r\n"
        "\x00\x01\r\n"
        "\r\n"
        "--example 98766-- \r\n"
        "This is the epilogue.\r\n--example 98766\r\n";
    memset(&g, 0, sizeof g);
    /* strlen stops at the NUL: pass the length explicitly. */
    size_t blen = 0;
    {
        const char *p = body;
        blen = strlen(p);
        p += blen + 1;
        blen += 1 + strlen(p);
    }
    CHECKF(multipart_parse((const uint8_t *)body, blen, ct, collect, &g,
                           &err) == COVCT_OK, "%s", err.msg);
    CHECK(g.n == 2);
    CHECK(!strcmp(g.start, "<950118.AEB0@XIson.com>"));
    CHECK(!strcmp(g.mtype, "application/dicom+xml"));
    CHECK(g.len[0] == 19 && !memcmp(g.body[0], "<NativeDicomModel/>", 19));
    CHECK(!strcmp(g.id[0], "<950118.AEB0@XIson.com>"));
    CHECK(!strcmp(g.type[1], "application/octet-stream"));
    CHECK(!strcmp(g.loc[1], "http://example.com/bulk/1"));
    CHECK(g.len[1] == 4 && !memcmp(g.body[1], "\x00\x01\r\n", 4));
    got_free(&g);

    /* Bare LF line ends (curl scripts, hand-made tests), no preamble,
     * folded header, a boundary-like line that goes on ("--bXYZ"). */
    CHECKF(parse_str("--b\n"
                     "Content-Type: application/dicom;\n"
                     "\ttransfer-syntax=1.2.840.10008.1.2.1\n"
                     "\n"
                     "line1\n--bXYZ\nline3\r\n"
                     "--b--",
                     "multipart/related; boundary=b", &g, &err) == COVCT_OK,
           "%s", err.msg);
    CHECK(g.n == 1);
    CHECK(!strcmp(g.type[0],
                  "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"));
    /* LF message: the CR before the last LF is data. */
    CHECK(g.len[0] == 19 && !memcmp(g.body[0], "line1\n--bXYZ\nline3\r", 19));
    got_free(&g);

    /* Part without headers: default type, body after the empty line. */
    CHECK(parse_str("--b\r\n\r\nbody\r\n--b--\r\n",
                    "multipart/related;boundary=b", &g, &err) == COVCT_OK);
    CHECK(g.n == 1 && g.len[0] == 4 && g.type[0][0] == '\0');
    got_free(&g);
}

static void test_ctype(void)
{
    multipart_ctype c;
    covct_error err = {0};
    CHECK(multipart_ctype_parse("multipart/related; BOUNDARY=\"a\\\"b\";"
                                "type=application/dicom;", &c, &err) == 0);
    CHECK(!strcmp(c.boundary, "a\"b") && !strcmp(c.type, "application/dicom"));
    CHECK(!strcmp(c.media, "multipart/related"));
    static const struct {
        const char *h, *want;
    } bad[] = {
        {"application/dicom; boundary=x", "is not a multipart type"},
        {"multipart/related; type=a", "no boundary"},
        {"multipart/related; boundary=", "empty boundary"},
        {"multipart/related; boundary=\"abc", "unterminated quoted string"},
        {"multipart/related; boundary=a; boundary=b", "second boundary"},
        {"multipart/related; boundary a", "parameter without '=' at byte 19"},
        {"multipart/related boundary=a", "expected ';' at byte 18"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        covct_error e = {0};
        covct_rc rc = multipart_ctype_parse(bad[i].h, &c, &e);
        CHECKF(rc == COVCT_ERR_CORRUPT && strstr(e.msg, bad[i].want),
               "%s: '%s'", bad[i].h, e.msg);
    }
    char h[400];
    memset(h, 0, sizeof h);
    memcpy(h, "multipart/related; boundary=", 28);
    memset(h + 28, 'x', 201);
    covct_error e = {0};
    CHECK(multipart_ctype_parse(h, &c, &e) == COVCT_ERR_CORRUPT &&
          strstr(e.msg, "value too long"));
}

static void test_malformed(void)
{
    const char *ct = "multipart/related; type=\"application/dicom\"; boundary=B";
#define E(body, rc, want) expect_error(body, strlen(body), ct, NULL, rc, want)
    E("no delimiter here\r\n", COVCT_ERR_CORRUPT,
      "boundary '--B' not found at the start of any line in 19 bytes");
    E("--B--\r\n", COVCT_ERR_CORRUPT, "close delimiter at byte 0 before any part");
    /* Missing close delimiter, and a body cut in the middle of a part. */
    E("--B\r\nContent-Type: a/b\r\n\r\ndata\r\n--B\r\n\r\nmore\r\n",
      COVCT_ERR_CORRUPT, "part 2 starting at byte 37 has no delimiter after it");
    E("--B\r\nContent-Type: a/b\r\n\r\ntrunc", COVCT_ERR_CORRUPT,
      "part 1 starting at byte 5 has no delimiter after it (no close "
      "delimiter '--B--'; body truncated at 31 bytes?)");
    /* Headers: no ':' / no empty line / a wrong Content-Length. */
    E("--B\r\nbogus line\r\n\r\nx\r\n--B--", COVCT_ERR_CORRUPT,
      "part 1: header line at byte 5 has no name and ':'");
    E("--B\r\nContent-Type: a/b\r\n--B--", COVCT_ERR_CORRUPT,
      "part 1 at byte 5: headers not ended by an empty line");
    E("--B\r\nContent-Length: 5\r\n\r\nabcd\r\n--B--", COVCT_ERR_CORRUPT,
      "part 1 at byte 26: Content-Length 5 but 4 bytes up to the next "
      "delimiter");
    E("--B\r\nContent-Length: 4x\r\n\r\nabcd\r\n--B--", COVCT_ERR_CORRUPT,
      "Content-Length '4x' is not a number");
    E("--B\r\n  folded first\r\n\r\nabcd\r\n--B--", COVCT_ERR_CORRUPT,
      "starts with white space");
    /* A bad part after good ones: nothing is delivered (checked in
     * expect_error). */
    E("--B\r\n\r\nok\r\n--B\r\nbad\r\n\r\n\r\n--B--", COVCT_ERR_CORRUPT,
      "part 2: header line at byte 16");
#undef E
    /* Limits. */
    multipart_limits lim;
    multipart_limits_default(&lim);
    lim.max_parts = 2;
    const char *three = "--B\r\n\r\n1\r\n--B\r\n\r\n2\r\n--B\r\n\r\n3\r\n--B--";
    expect_error(three, strlen(three), ct, &lim, COVCT_ERR_LIMIT,
                 "more than 2 parts (part 3 at byte 25)");
    multipart_limits_default(&lim);
    lim.max_header_bytes = 32;
    const char *longh = "--B\r\nContent-Location: http://example.com/a/very/"
                        "long/path\r\n\r\nx\r\n--B--";
    expect_error(longh, strlen(longh), ct, &lim, COVCT_ERR_LIMIT,
                 "part 1 at byte 5: header block longer than 32 bytes");
    multipart_limits_default(&lim);
    lim.max_headers = 1;
    const char *twoh = "--B\r\nA: 1\r\nB: 2\r\n\r\nx\r\n--B--";
    expect_error(twoh, strlen(twoh), ct, &lim, COVCT_ERR_LIMIT,
                 "more than 1 header lines");
    /* The callback's error stops the parse and is returned. */
}

static covct_rc refuse(const multipart_part *p, void *user, covct_error *err)
{
    (void)user;
    return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED, "part %zu refused",
                     p->index + 1);
}

static void test_callback_and_alloc(void)
{
    const char *body = "--B\r\n\r\n1\r\n--B\r\nX: y\r\n\r\n2\r\n--B--";
    covct_error err = {0};
    CHECK(multipart_parse((const uint8_t *)body, strlen(body),
                          "multipart/related; boundary=B", refuse, NULL,
                          &err) == COVCT_ERR_UNSUPPORTED &&
          !strcmp(err.msg, "part 1 refused"));
    for (uint64_t n = 1; n < 20; n++) {
        got g = {0};
        covct_error e = {0};
        covct_alloc_fail_at(n);
        covct_rc rc = multipart_parse((const uint8_t *)body, strlen(body),
                                      "multipart/related; boundary=B",
                                      collect, &g, &e);
        covct_alloc_fail_at(0);
        CHECKF(rc == COVCT_OK || rc == COVCT_ERR_NOMEM, "rc %d", rc);
        CHECK(rc != COVCT_OK || g.n == 2);
        CHECK(rc == COVCT_OK || g.n == 0);
        got_free(&g);
        if (rc == COVCT_OK)
            break;
    }
}

/* Python's email package as a peer: MIMEMultipart('related') with binary
 * parts written by BytesGenerator (HTTP policy: CRLF line ends). */
static const char peer_py[] =
    "import sys, os\n"
    "from email.mime.multipart import MIMEMultipart\n"
    "from email.mime.application import MIMEApplication\n"
    "from email.encoders import encode_noop\n"
    "from email.generator import BytesGenerator\n"
    "from email import policy\n"
    "import io\n"
    "d = sys.argv[1]\n"
    "m = MIMEMultipart('related', type='application/dicom')\n"
    /* The generator rewrites bare CR and LF in payloads to CRLF (it is a
     * mail library), so the binary part leaves them out. */
    "parts = [bytes(b for b in range(256) if b not in (10, 13)) * 3"
    " + b'\\r\\n--', b'DICM\\r\\n\\r\\n--x', b'']\n"
    "for i, p in enumerate(parts):\n"
    "    a = MIMEApplication(p, 'dicom', _encoder=encode_noop)\n"
    "    a['Content-Location'] = 'instances/%d' % i\n"
    "    m.attach(a)\n"
    "m.preamble = 'preamble text'\n"
    "m.epilogue = 'epilogue'\n"
    "b = io.BytesIO()\n"
    "BytesGenerator(b, policy=policy.HTTP).flatten(m)\n"
    "raw = b.getvalue()\n"
    "head, body = raw.split(b'\\r\\n\\r\\n', 1)\n"
    "ct = [l for l in head.decode().split('\\r\\n')\n"
    "      if l.lower().startswith('content-type:')][0].split(':', 1)[1].strip()\n"
    "open(os.path.join(d, 'body'), 'wb').write(body)\n"
    "open(os.path.join(d, 'ct'), 'w').write(ct)\n"
    "for i, p in enumerate(parts):\n"
    "    open(os.path.join(d, 'part%d' % i), 'wb').write(p)\n";

static void test_python_peer(void)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "note: /usr/bin/python3 missing: peer test skipped\n");
        return;
    }
    char dir[] = "/tmp/covct-mp-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], cmd[512];
    snprintf(path, sizeof path, "%s/gen.py", dir);
    FILE *f = fopen(path, "w");
    fputs(peer_py, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", path, dir);
    CHECK(system(cmd) == 0);
    uint8_t *body = NULL, *ctb = NULL;
    size_t blen = 0, clen = 0;
    covct_error err = {0};
    snprintf(path, sizeof path, "%s/body", dir);
    CHECK(covct_file_read(path, &body, &blen, &err) == 0);
    snprintf(path, sizeof path, "%s/ct", dir);
    CHECK(covct_file_read(path, &ctb, &clen, &err) == 0);
    char ct[512];
    snprintf(ct, sizeof ct, "%.*s", (int)clen, ctb ? (char *)ctb : "");
    got g = {0};
    CHECKF(body && multipart_parse(body, blen, ct, collect, &g, &err) == 0,
           "%s (Content-Type %s)", err.msg, ct);
    CHECK(g.n == 3);
    for (size_t i = 0; i < 3 && i < g.n; i++) {
        uint8_t *want = NULL;
        size_t wl = 0;
        snprintf(path, sizeof path, "%s/part%zu", dir, i);
        CHECK(covct_file_read(path, &want, &wl, &err) == 0);
        CHECKF(g.len[i] == wl && !memcmp(g.body[i], want, wl),
               "part %zu: %zu bytes, want %zu", i, g.len[i], wl);
        CHECK(!strcmp(g.type[i], "application/dicom"));
        char loc[32];
        snprintf(loc, sizeof loc, "instances/%zu", i);
        CHECK(!strcmp(g.loc[i], loc));
        covct_free(want);
    }
    CHECK(!strcmp(g.mtype, "application/dicom"));
    got_free(&g);
    covct_free(body);
    covct_free(ctb);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    test_roundtrip();
    test_handwritten();
    test_ctype();
    test_malformed();
    test_callback_and_alloc();
    test_python_peer();
    return test_report();
}
