/* The web service end to end over real sockets, on SQLite or (under
 * tests/with-postgres.sh) PostgreSQL:
 *  - the router table walked: every protected route answers 401 without
 *    credentials and 403 with a role that lacks its permission; its /api/
 *    routes are docs/openapi.yaml's operations (method and path); the
 *    CORS preflight offers only the methods the routes serve;
 *  - login with a session cookie, CSRF on changes, logout, throttling of
 *    failed logins (429), Bearer tokens, revoked tokens;
 *  - STOW-RS of real CT slices, then WADO-RS of each back byte for byte;
 *    QIDO-RS matching, limit/offset, includefield; series metadata;
 *  - STOW-RS with bad parts (202, 409, Failure Reasons of PS3.18 Annex I)
 *    and with another study's instance; QIDO-RS date ranges and
 *    fuzzymatching on instances rewritten by dcmtk's dcmodify; series
 *    WADO-RS byte for byte; study metadata, one object per instance;
 *  - oversized bodies refused (413), slow clients cut off, static files
 *    never outside the web folder, and the reads audited. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "covct/http.h"
#include "covct/site.h"
#include "covct/store.h"
#include "test.h"

/* The first value of attribute `tag` in the first object of a DICOM JSON
 * array (QIDO-RS answer), as text; "" when absent. */
static void dj_first(const cJSON *arr, const char *tag, char *out, size_t cap)
{
    const char *v = cJSON_GetStringValue(cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), tag),
                            "Value"),
        0));
    snprintf(out, cap, "%s", v ? v : "");
}

static uint16_t port;

typedef struct reply {
    int status;
    char *head; /* status line and headers */
    uint8_t *body;
    size_t len;
} reply;

static void reply_free(reply *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int connect_local(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { 0 };
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* One request, Connection: close, the whole answer read. */
static reply req(const char *method, const char *path, const char *headers,
                 const void *body, size_t len)
{
    reply r = { 0 };
    int fd = connect_local();
    if (fd < 0)
        return r;
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: localhost\r\n"
                     "Connection: close\r\nContent-Length: %zu\r\n%s\r\n",
                     method, path, len, headers ? headers : "");
    if (!send_all(fd, head, (size_t)n) || (len && !send_all(fd, body, len))) {
        close(fd);
        return r;
    }
    size_t cap = 65536, have = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (have == cap)
            buf = realloc(buf, cap *= 2);
        ssize_t got = recv(fd, buf + have, cap - have, 0);
        if (got <= 0)
            break;
        have += (size_t)got;
    }
    close(fd);
    uint8_t *end = memmem(buf, have, "\r\n\r\n", 4);
    if (!end) {
        free(buf);
        return r;
    }
    size_t hl = (size_t)(end - buf);
    r.head = strndup((char *)buf, hl);
    r.status = atoi(r.head + 9);
    r.len = have - hl - 4;
    r.body = malloc(r.len + 1);
    memcpy(r.body, end + 4, r.len);
    r.body[r.len] = 0;
    free(buf);
    /* chunked answers: join the chunks */
    if (strcasestr(r.head, "Transfer-Encoding: chunked")) {
        uint8_t *out = malloc(r.len + 1), *p = r.body, *e = r.body + r.len;
        size_t o = 0;
        while (p < e) {
            char *nl;
            size_t sz = strtoul((char *)p, &nl, 16);
            p = (uint8_t *)strstr(nl, "\r\n") + 2;
            if (!sz)
                break;
            memcpy(out + o, p, sz);
            o += sz;
            p += sz + 2;
        }
        free(r.body);
        r.body = out;
        r.len = o;
        r.body[o] = 0;
    }
    return r;
}

static const char *header_of(const reply *r, const char *name, char *buf,
                             size_t cap)
{
    buf[0] = 0;
    if (!r->head)
        return buf;
    const char *p = strcasestr(r->head, name);
    if (!p)
        return buf;
    p += strlen(name);
    while (*p == ':' || *p == ' ')
        p++;
    size_t n = strcspn(p, "\r\n");
    snprintf(buf, cap, "%.*s", (int)n, p);
    return buf;
}

static char tokens[8][80];  /* one per role, in covct_roles order */
static char admin_token[80];

static const char *auth_for(const char *token, char *buf, size_t cap)
{
    snprintf(buf, cap, "Authorization: Bearer %.79s\r\n", token);
    return buf;
}

/* A concrete path for a pattern: {x} -> a UID. */
static void concrete(const char *pattern, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 16 < cap;) {
        if (*p == '{') {
            o += (size_t)snprintf(out + o, cap - o, "1.2.3");
            p = strchr(p, '}') + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
}

/* The operations of docs/openapi.yaml as "METHOD /path": under `paths:`,
 * a path is a key indented by two spaces, its operations (OpenAPI 3.0
 * Path Item: get, put, post, delete, options, head, patch, trace) keys
 * indented by four. */
static size_t openapi_ops(const uint8_t *yaml, size_t len, char ops[][300],
                          size_t max)
{
    static const char *const verbs[] = { "get",  "put",  "post",
                                         "delete", "options", "head",
                                         "patch", "trace" };
    char *text = strndup((const char *)yaml, len);
    char *p = text ? strstr(text, "\npaths:\n") : NULL;
    char path[256] = "";
    size_t n = 0;
    for (p = p ? p + 8 : NULL; p && *p && n < max;) {
        char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        if (ll && p[0] != ' ' && p[0] != '#')
            break; /* the next top-level key */
        if (ll > 3 && !strncmp(p, "  /", 3)) {
            snprintf(path, sizeof path, "%.*s", (int)strcspn(p + 2, ":"),
                     p + 2);
        } else if (ll > 5 && !strncmp(p, "    ", 4) && p[4] != ' ') {
            size_t kl = strcspn(p + 4, ":");
            for (size_t v = 0; v < sizeof verbs / sizeof *verbs; v++) {
                if (kl != strlen(verbs[v]) || strncmp(p + 4, verbs[v], kl))
                    continue;
                int o = snprintf(ops[n], 300, "%s %s", verbs[v], path);
                for (int c = 0; c < o && ops[n][c] != ' '; c++)
                    ops[n][c] = (char)(ops[n][c] - 'a' + 'A');
                n++;
            }
        }
        p = nl ? nl + 1 : NULL;
    }
    free(text);
    return n;
}

static void test_router_table(void)
{
    size_t n = covct_http_route_count(), checked = 0;
    for (size_t i = 0; i < n; i++) {
        const covct_http_route_info *ri = covct_http_route_at(i);
        if (!ri->permission)
            continue;
        char path[512], hdr[200];
        concrete(ri->pattern, path, sizeof path);
        reply r = req(ri->method, path, NULL, NULL, 0);
        CHECKF(r.status == 401, "%s %s without credentials: %d", ri->method,
               path, r.status);
        reply_free(&r);
        r = req(ri->method, path, "Authorization: Bearer covct_forged\r\n",
                NULL, 0);
        CHECKF(r.status == 401, "%s %s with a forged token: %d", ri->method,
               path, r.status);
        reply_free(&r);
        /* a role without the permission: 403; one with it: neither */
        for (size_t k = 0; k < covct_role_count; k++) {
            bool may = covct_role_may(covct_roles[k], ri->permission);
            r = req(ri->method, path,
                    auth_for(tokens[k], hdr, sizeof hdr), "", 0);
            if (may)
                CHECKF(r.status != 401 && r.status != 403,
                       "%s %s as %s: %d", ri->method, path, covct_roles[k],
                       r.status);
            else
                CHECKF(r.status == 403, "%s %s as %s: %d, not 403",
                       ri->method, path, covct_roles[k], r.status);
            reply_free(&r);
        }
        checked++;
    }
    CHECK(checked >= 20); /* the table is the whole API */
    /* every /api/ route is an operation of docs/openapi.yaml, method and
     * path, and every operation there is a route */
    char yaml_path[4200];
    const char *src = getenv("COVCT_SOURCE_DIR");
    snprintf(yaml_path, sizeof yaml_path, "%s/docs/openapi.yaml",
             src ? src : "..");
    uint8_t *yaml = NULL;
    size_t ylen = 0;
    covct_error err = { 0 };
    CHECK(covct_file_read(yaml_path, &yaml, &ylen, &err) == COVCT_OK);
    static char ops[128][300];
    size_t nops = yaml ? openapi_ops(yaml, ylen, ops, 128) : 0;
    CHECK(nops >= 20);
    bool used[128] = { false };
    for (size_t i = 0; i < n; i++) {
        const covct_http_route_info *ri = covct_http_route_at(i);
        if (strncmp(ri->pattern, "/api/", 5))
            continue;
        char key[300];
        snprintf(key, sizeof key, "%s %s", ri->method, ri->pattern);
        bool found = false;
        for (size_t k = 0; k < nops && !found; k++)
            if (!strcmp(ops[k], key))
                found = used[k] = true;
        CHECKF(found, "%s is not in docs/openapi.yaml", key);
    }
    for (size_t k = 0; k < nops; k++)
        CHECKF(used[k], "docs/openapi.yaml: %s is no route", ops[k]);
    covct_free(yaml);
}

static void test_sessions(void)
{
    const char *wrong = "{\"user\":\"rad\",\"password\":\"wrong-pass\"}";
    reply r = req("POST", "/api/login", "Content-Type: application/json\r\n",
                  wrong, strlen(wrong));
    CHECK(r.status == 401);
    reply_free(&r);
    const char *good = "{\"user\":\"rad\",\"password\":\"rad-pass-1\"}";
    r = req("POST", "/api/login", "Content-Type: application/json\r\n", good,
            strlen(good));
    CHECKF(r.status == 200, "login: %d %s", r.status, r.body);
    char cookie[200], hdr[600];
    header_of(&r, "Set-Cookie", cookie, sizeof cookie);
    CHECKF(strstr(cookie, "HttpOnly") && strstr(cookie, "SameSite=Strict"),
           "%s", cookie);
    cJSON *j = cJSON_Parse((char *)r.body);
    char csrf[64];
    snprintf(csrf, sizeof csrf, "%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(j, "csrf")) ?: "");
    cJSON_Delete(j);
    reply_free(&r);
    char sess[120];
    snprintf(sess, sizeof sess, "%.*s", (int)strcspn(cookie, ";"), cookie);
    snprintf(hdr, sizeof hdr, "Cookie: %s\r\n", sess);
    r = req("GET", "/api/me", hdr, NULL, 0);
    CHECKF(r.status == 200 && strstr((char *)r.body, "\"radiologist\""),
           "me: %d %s", r.status, r.body);
    reply_free(&r);
    /* a change made with a session needs the session's CSRF token */
    const char *it = "{\"user\":\"itu\",\"password\":\"itu-pass-1\"}";
    reply li = req("POST", "/api/login", NULL, it, strlen(it));
    char icookie[200], ihdr[600];
    header_of(&li, "Set-Cookie", icookie, sizeof icookie);
    cJSON *ij = cJSON_Parse((char *)li.body);
    const char *icsrf =
        cJSON_GetStringValue(cJSON_GetObjectItem(ij, "csrf"));
    snprintf(ihdr, sizeof ihdr, "Cookie: %.*s\r\n",
             (int)strcspn(icookie, ";"), icookie);
    r = req("POST", "/dicom-web/studies", ihdr, NULL, 0);
    CHECKF(r.status == 403 && strstr((char *)r.body, "CSRF"), "%d %s",
           r.status, r.body);
    reply_free(&r);
    snprintf(ihdr + strlen(ihdr), sizeof ihdr - strlen(ihdr),
             "X-CSRF-Token: %s\r\n", icsrf ? icsrf : "");
    r = req("POST", "/dicom-web/studies", ihdr, NULL, 0);
    CHECKF(r.status == 415, "with the CSRF token: %d %s", r.status, r.body);
    reply_free(&r);
    cJSON_Delete(ij);
    reply_free(&li);
    r = req("POST", "/api/logout", hdr, NULL, 0);
    CHECK(r.status == 200);
    reply_free(&r);
    r = req("GET", "/api/me", hdr, NULL, 0);
    CHECK(r.status == 401); /* logged out */
    reply_free(&r);
    (void)csrf;

    /* throttling: five failures (per name and per address: the wrong
     * password for rad above counts for this address) block for a while */
    for (int i = 0; i < 5; i++) {
        const char *bad = "{\"user\":\"ann\",\"password\":\"nope-nope\"}";
        r = req("POST", "/api/login", NULL, bad, strlen(bad));
        CHECKF(r.status == (i < 4 ? 401 : 429), "failure %d: %d", i + 1,
               r.status);
        reply_free(&r);
    }
    const char *right = "{\"user\":\"ann\",\"password\":\"ann-pass-1\"}";
    r = req("POST", "/api/login", NULL, right, strlen(right));
    char ra[32];
    CHECKF(r.status == 429 && atoi(header_of(&r, "Retry-After", ra,
                                             sizeof ra)) > 0,
           "after 5 failures: %d", r.status);
    reply_free(&r);
}

/* ---- DICOMweb -------------------------------------------------------------- */
typedef struct file {
    char path[4200];
    uint8_t *data;
    size_t len;
} file;

static size_t load_slices(file *f, size_t max)
{
    const char *dir = test_data("covid-ct-md/P001");
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    while (d && (e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(f[n].path, sizeof f[n].path, "%s/%s", dir, e->d_name);
        covct_error err = { 0 };
        if (!covct_file_read(f[n].path, &f[n].data, &f[n].len, &err))
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

static char g_study[80], g_series[80];
static covct_site *g_site;
static char g_dir[64];

/* Frame 1 of an instance equals dcmtk's decoding of the file (dcmdjpeg
 * writes native pixel data last: the file's final rows*cols*2 bytes);
 * the rendered PNG has the image's size. */
static void check_frames(const char *url, const char *src, const char *auth)
{
    char path[600], cmd[9000], out[] = "/tmp/covct-test-frame.XXXXXX";
    int fd = mkstemp(out);
    if (fd >= 0)
        close(fd);
    snprintf(cmd, sizeof cmd, "dcmdjpeg '%s' '%s'", src, out);
    CHECK(system(cmd) == 0);
    uint8_t *ref = NULL;
    size_t rlen = 0;
    covct_error err = { 0 };
    CHECK(covct_file_read(out, &ref, &rlen, &err) == COVCT_OK);
    unlink(out);
    snprintf(path, sizeof path, "%s/frames/1", url);
    reply r = req("GET", path, auth, NULL, 0);
    size_t fb = 512u * 512 * 2;
    uint8_t *start = r.body ? memmem(r.body, r.len, "\r\n\r\n", 4) : NULL;
    CHECKF(r.status == 200 && start && ref && rlen > fb &&
               (size_t)(r.body + r.len - start) > fb + 4 &&
               !memcmp(start + 4, ref + rlen - fb, fb),
           "frames: %d, not dcmdjpeg's pixels", r.status);
    reply_free(&r);
    covct_free(ref);
    /* bulk data of an element by tag (the route the metadata's
     * BulkDataURIs name): here SOP Class UID, CT Image Storage */
    snprintf(path, sizeof path, "%s/bulk/00080016", url);
    r = req("GET", path, auth, NULL, 0);
    CHECKF(r.status == 200 && memmem(r.body, r.len,
                                     "1.2.840.10008.5.1.4.1.1.2", 25),
           "bulk: %d", r.status);
    reply_free(&r);
    snprintf(path, sizeof path, "%s/bulk/00991234", url);
    r = req("GET", path, auth, NULL, 0);
    CHECK(r.status == 404);
    reply_free(&r);
    snprintf(path, sizeof path, "%s/frames/2", url);
    r = req("GET", path, auth, NULL, 0);
    CHECK(r.status == 404); /* one frame only */
    reply_free(&r);
    snprintf(path, sizeof path, "%s/rendered?window=-600,1500", url);
    r = req("GET", path, auth, NULL, 0);
    char ct[64];
    CHECKF(r.status == 200 && r.len > 24 && !memcmp(r.body, "\x89PNG", 4) &&
               !strcmp(header_of(&r, "Content-Type", ct, sizeof ct),
                       "image/png") &&
               r.body[18] == 2 && r.body[19] == 0 && /* width 512 */
               r.body[22] == 2 && r.body[23] == 0,   /* height 512 */
           "rendered: %d", r.status);
    reply_free(&r);
    /* the same as JPEG when that is all the client takes; Pillow reads it */
    char jh[300];
    snprintf(jh, sizeof jh, "%sAccept: image/jpeg\r\n", auth);
    r = req("GET", path, jh, NULL, 0);
    CHECK(r.status == 200 && r.len > 4 && r.body[0] == 0xFF &&
          r.body[1] == 0xD8);
    char jpg[] = "/tmp/covct-test-rendered.XXXXXX";
    int jfd = mkstemp(jpg);
    if (jfd >= 0) {
        CHECK(write(jfd, r.body, r.len) == (ssize_t)r.len);
        close(jfd);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c 'import sys; from PIL import Image; "
                 "i = Image.open(sys.argv[1]); sys.exit(0 if i.size == "
                 "(512, 512) and i.mode == \"L\" else 1)' %s",
                 jpg);
        CHECK(system(cmd) == 0);
        unlink(jpg);
    }
    reply_free(&r);
}

static void test_dicomweb(void)
{
    file f[4];
    size_t n = load_slices(f, 4);
    CHECK(n == 4);
    /* STOW-RS: one request, four instances */
    const char *b = "covct-test-boundary-7f3a";
    size_t cap = 1 << 20, len = 0;
    for (size_t i = 0; i < n; i++)
        cap += f[i].len;
    uint8_t *body = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf((char *)body + len, cap - len,
                                "--%s\r\nContent-Type: application/dicom\r\n"
                                "\r\n",
                                b);
        memcpy(body + len, f[i].data, f[i].len);
        len += f[i].len;
        len += (size_t)snprintf((char *)body + len, cap - len, "\r\n");
    }
    len += (size_t)snprintf((char *)body + len, cap - len, "--%s--\r\n", b);
    char hdr[600], auth[200];
    auth_for(admin_token, auth, sizeof auth);
    snprintf(hdr, sizeof hdr,
             "%sContent-Type: multipart/related; "
             "type=\"application/dicom\"; boundary=%s\r\n"
             "Accept: application/dicom+json\r\n",
             auth, b);
    reply r = req("POST", "/dicom-web/studies", hdr, body, len);
    CHECKF(r.status == 200, "STOW-RS: %d %s", r.status, r.body);
    cJSON *j = cJSON_Parse((char *)r.body);
    cJSON *seq = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "00081199"),
                                     "Value");
    CHECKF(cJSON_GetArraySize(seq) == (int)n, "%s", r.body);
    /* each stored instance back by its RetrieveURL, byte for byte */
    for (int i = 0; i < cJSON_GetArraySize(seq); i++) {
        cJSON *it = cJSON_GetArrayItem(seq, i);
        const char *url = cJSON_GetStringValue(cJSON_GetArrayItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(it, "00081190"),
                                "Value"),
            0));
        CHECK(url != NULL);
        if (!url)
            continue;
        reply w = req("GET", url, auth, NULL, 0);
        char ct[300];
        header_of(&w, "Content-Type", ct, sizeof ct);
        CHECKF(w.status == 200 && strstr(ct, "multipart/related"), "%d %s",
               w.status, ct);
        /* the part's body: after the first blank line, up to the CRLF
         * before the closing delimiter */
        uint8_t *start = memmem(w.body, w.len, "\r\n\r\n", 4);
        const char *bnd = strstr(ct, "boundary=");
        bool same = false;
        if (start && bnd) {
            start += 4;
            char delim[120];
            int dl = snprintf(delim, sizeof delim, "\r\n--%s",
                              bnd + 9 + (bnd[9] == '"'));
            if (delim[dl - 1] == '"')
                delim[--dl] = 0;
            uint8_t *stop = memmem(start, w.len - (size_t)(start - w.body),
                                   delim, (size_t)dl);
            for (size_t k = 0; stop && k < n && !same; k++) {
                same = (size_t)(stop - start) == f[k].len &&
                       !memcmp(start, f[k].data, f[k].len);
                if (same && i == 0)
                    check_frames(url, f[k].path, auth);
            }
        }
        CHECKF(same, "WADO-RS of %s: not the bytes sent", url);
        reply_free(&w);
    }
    cJSON_Delete(j);
    reply_free(&r);
    free(body);

    /* QIDO-RS */
    r = req("GET", "/dicom-web/studies?PatientID=98C14734-ASSH", auth, NULL,
            0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 && cJSON_GetArraySize(j) == 1, "%d %s", r.status,
           r.body);
    char study_uid[80];
    dj_first(j, "0020000D", study_uid, sizeof study_uid);
    cJSON_Delete(j);
    reply_free(&r);
    r = req("GET", "/api/worklist?q=98C14734", auth, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    cJSON *ws = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "studies"), 0);
    CHECKF(r.status == 200 &&
               !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                           ws, "study_uid")) ?: "",
                       study_uid) &&
               !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(
                           ws, "ai_status")) ?: "",
                       "waiting") &&
               cJSON_GetNumberValue(cJSON_GetObjectItem(ws, "instances")) ==
                   (double)n,
           "worklist: %d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = req("GET", "/api/worklist?q=nobody-at-all", auth, NULL, 0);
    CHECK(r.status == 200 && strstr((char *)r.body, "\"studies\":[]"));
    reply_free(&r);
    r = req("GET", "/dicom-web/studies?PatientID=nobody", auth, NULL, 0);
    CHECKF(r.status == 200 && !strcmp((char *)r.body, "[]"), "%s", r.body);
    reply_free(&r);
    r = req("GET", "/dicom-web/studies?PatientName=*&includefield=00081030",
            auth, NULL, 0);
    CHECK(r.status == 200 && strstr((char *)r.body, "\"00081030\""));
    reply_free(&r);
    r = req("GET", "/dicom-web/studies?NoSuchAttribute=1", auth, NULL, 0);
    CHECK(r.status == 400 && strstr((char *)r.body, "NoSuchAttribute"));
    reply_free(&r);
    char path[400];
    snprintf(path, sizeof path,
             "/dicom-web/studies/%s/series?Modality=CT", study_uid);
    r = req("GET", path, auth, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 && cJSON_GetArraySize(j) == 1, "%s", r.body);
    char series_uid[80];
    dj_first(j, "0020000E", series_uid, sizeof series_uid);
    cJSON_Delete(j);
    reply_free(&r);
    snprintf(path, sizeof path,
             "/dicom-web/studies/%s/series/%s/instances?limit=2&offset=1",
             study_uid, series_uid);
    r = req("GET", path, auth, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 && cJSON_GetArraySize(j) == 2, "%s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
    /* series metadata: one object per instance; the same bytes again */
    snprintf(path, sizeof path, "/dicom-web/studies/%s/series/%s/metadata",
             study_uid, series_uid);
    r = req("GET", path, auth, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 && cJSON_GetArraySize(j) == (int)n, "%d",
           r.status);
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "00280010") != NULL);
    cJSON_Delete(j);
    reply r2 = req("GET", path, auth, NULL, 0);
    CHECK(r2.len == r.len && !memcmp(r2.body, r.body, r.len));
    reply_free(&r);
    reply_free(&r2);
    for (size_t i = 0; i < n; i++)
        free(f[i].data);
    snprintf(g_study, sizeof g_study, "%s", study_uid);
    snprintf(g_series, sizeof g_series, "%s", series_uid);
}

/* ---- DICOMweb: failures, matching, retrieval (issue 7 coverage) ----------- */

/* The bodies of a multipart/related answer (RFC 2046 5.1.1): after each
 * "--boundary" line and the part's headers, up to the CRLF before the
 * next delimiter; pointers into r->body.  Returns how many. */
static size_t mp_parts(const reply *r, const uint8_t **body, size_t *len,
                       size_t max)
{
    char ct[300], delim[160];
    header_of(r, "Content-Type", ct, sizeof ct);
    const char *b = strcasestr(ct, "boundary=");
    if (!b || !r->body)
        return 0;
    b += 9;
    bool q = *b == '"';
    b += q;
    int bl = (int)(q ? strcspn(b, "\"") : strcspn(b, "; "));
    int dl = snprintf(delim, sizeof delim, "\r\n--%.*s", bl, b);
    const uint8_t *end = r->body + r->len;
    const uint8_t *d = memmem(r->body, r->len, delim + 2, (size_t)dl - 2);
    size_t n = 0;
    while (d && n < max) {
        const uint8_t *after = d + dl - 2;
        if (end - after >= 2 && after[0] == '-' && after[1] == '-')
            break; /* the close delimiter */
        const uint8_t *he = memmem(after, (size_t)(end - after), "\r\n\r\n", 4);
        if (!he)
            break;
        const uint8_t *start = he + 4;
        const uint8_t *next = memmem(start, (size_t)(end - start), delim,
                                     (size_t)dl);
        if (!next)
            break;
        body[n] = start;
        len[n++] = (size_t)(next - start);
        d = next + 2;
    }
    return n;
}

typedef struct part {
    const uint8_t *data;
    size_t len;
    const char *type;
} part;

/* STOW-RS of `n` parts to `path` as the administrator. */
static reply stow(const char *path, const part *p, size_t n)
{
    const char *b = "covct-test-stow-5e1d";
    size_t cap = 4096, len = 0;
    for (size_t i = 0; i < n; i++)
        cap += p[i].len + 200;
    uint8_t *body = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf((char *)body + len, cap - len,
                                "--%s\r\nContent-Type: %s\r\n\r\n", b,
                                p[i].type ? p[i].type : "application/dicom");
        if (p[i].len)
            memcpy(body + len, p[i].data, p[i].len);
        len += p[i].len;
        len += (size_t)snprintf((char *)body + len, cap - len, "\r\n");
    }
    len += (size_t)snprintf((char *)body + len, cap - len, "--%s--\r\n", b);
    char hdr[600], auth[200];
    snprintf(hdr, sizeof hdr,
             "%sContent-Type: multipart/related; "
             "type=\"application/dicom\"; boundary=%s\r\n"
             "Accept: application/dicom+json\r\n",
             auth_for(admin_token, auth, sizeof auth), b);
    reply r = req("POST", path, hdr, body, len);
    free(body);
    return r;
}

/* "Value" of attribute `tag` of a DICOM JSON object. */
static cJSON *dj_value(const cJSON *o, const char *tag)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(o, tag), "Value");
}

static const char *dj_str(const cJSON *o, const char *tag)
{
    return cJSON_GetStringValue(cJSON_GetArrayItem(dj_value(o, tag), 0));
}

/* A copy of a CT slice with the identity given, written by dcmtk's
 * dcmodify (a writer independent of covct; it also updates the File Meta
 * Information's Media Storage SOP Instance UID). */
static bool make_instance(const file *src, file *out, const char *name,
                          const char *pid, const char *date,
                          const char *study, const char *series,
                          const char *sop)
{
    static unsigned seq;
    out->data = NULL;
    out->len = 0;
    snprintf(out->path, sizeof out->path, "%s/made-%u.dcm", g_dir, seq++);
    FILE *fp = fopen(out->path, "wb");
    if (!fp)
        return false;
    bool ok = fwrite(src->data, 1, src->len, fp) == src->len;
    fclose(fp);
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "dcmodify -q -nb -i '(0010,0010)=%s' -i '(0010,0020)=%s' "
             "-i '(0008,0020)=%s' -i '(0020,000D)=%s' -i '(0020,000E)=%s' "
             "-i '(0008,0018)=%s' '%s'",
             name, pid, date, study, series, sop, out->path);
    covct_error err = { 0 };
    ok = ok && system(cmd) == 0 &&
         covct_file_read(out->path, &out->data, &out->len, &err) == COVCT_OK;
    CHECKF(ok, "dcmodify of %s", out->path);
    return ok;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* PatientIDs starting "QIDO-" of a study-level QIDO-RS answer, sorted
 * and joined with ',' (the other studies of the store are left out). */
static void qido_ids(const char *query, char *out, size_t cap)
{
    char path[600], auth[200];
    snprintf(path, sizeof path, "/dicom-web/studies?%s", query);
    reply r = req("GET", path, auth_for(admin_token, auth, sizeof auth),
                  NULL, 0);
    cJSON *j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 && cJSON_IsArray(j), "QIDO-RS %s: %d %s", query,
           r.status, r.body);
    char ids[16][32];
    size_t n = 0;
    for (int i = 0; i < cJSON_GetArraySize(j) && n < 16; i++) {
        const char *id = dj_str(cJSON_GetArrayItem(j, i), "00100020");
        if (id && !strncmp(id, "QIDO-", 5))
            snprintf(ids[n++], sizeof ids[0], "%s", id);
    }
    qsort(ids, n, sizeof ids[0], cmp_str);
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", ids[i]);
    cJSON_Delete(j);
    reply_free(&r);
}

/* Failure Reason (0008,1197) ranges of PS3.18 Table I.2-2. */
static bool reason_in(const cJSON *item, unsigned lo, unsigned hi)
{
    const cJSON *v = cJSON_GetArrayItem(dj_value(item, "00081197"), 0);
    return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi;
}

/* PS3.18 F.2.5: an attribute without a value carries no "Value" (an
 * empty array is not the DICOM JSON of an empty attribute). */
static bool no_empty_values(const cJSON *item)
{
    for (const cJSON *a = item ? item->child : NULL; a; a = a->next) {
        const cJSON *v = cJSON_GetObjectItem(a, "Value");
        if (v && cJSON_GetArraySize(v) == 0)
            return false;
    }
    return true;
}

static void test_dicomweb_more(void)
{
    file f[4];
    size_t n = load_slices(f, 4);
    CHECK(n == 4);
    if (n < 1)
        return;
    char auth[200], hdr[600], path[600];
    auth_for(admin_token, auth, sizeof auth);

    /* ---- STOW-RS failures: PS3.18 10.5.3 (Table 10.5.3-1: 202 when some
     * instances were stored, 409 when none) and Annex I (Failed SOP
     * Sequence (0008,1198) items with a Failure Reason (0008,1197)). */
    file a1, a2, b1, b2;
    make_instance(&f[0], &a1, "STOW^A", "STOW-A", "20200105", "2.25.70001",
                  "2.25.70001.1", "2.25.70001.1.1");
    make_instance(&f[1], &a2, "STOW^A", "STOW-A", "20200105", "2.25.70001",
                  "2.25.70001.1", "2.25.70001.1.2");
    make_instance(&f[0], &b1, "STOW^B", "STOW-B", "20200106", "2.25.70002",
                  "2.25.70002.1", "2.25.70002.1.1");
    make_instance(&f[1], &b2, "STOW^B", "STOW-B", "20200106", "2.25.70002",
                  "2.25.70002.1", "2.25.70002.1.2");
    static const char garbage[] = "this is not a DICOM Part 10 file";
    /* a file cut short inside its data set */
    size_t cut = f[2].len > 1200 ? 1200 : f[2].len / 2;
    part mixed[2] = { { a1.data, a1.len, NULL },
                      { (const uint8_t *)garbage, sizeof garbage - 1, NULL } };
    reply r = stow("/dicom-web/studies", mixed, 2);
    cJSON *j = cJSON_Parse((char *)r.body);
    cJSON *ok = dj_value(j, "00081199"), *bad = dj_value(j, "00081198");
    CHECKF(r.status == 202, "STOW-RS, one good part, one bad: %d %s",
           r.status, r.body);
    CHECKF(cJSON_GetArraySize(ok) == 1 &&
               !strcmp(dj_str(cJSON_GetArrayItem(ok, 0), "00081155") ?: "",
                       "2.25.70001.1.1"),
           "Referenced SOP Sequence: %s", r.body);
    /* Cxxx: "Error: Cannot understand" */
    CHECKF(cJSON_GetArraySize(bad) == 1 &&
               reason_in(cJSON_GetArrayItem(bad, 0), 0xC000, 0xCFFF),
           "Failed SOP Sequence: %s", r.body);
    /* issue 7 item 6 (src/http/dicomweb.c): no "Value": [] for the
     * unknown SOP Class/Instance UIDs of the part that is not DICOM */
    CHECKF(no_empty_values(cJSON_GetArrayItem(bad, 0)),
           "empty attribute with a \"Value\" (PS3.18 F.2.5): %s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
    /* nothing stored: 409 Conflict, no Referenced SOP Sequence */
    part none[2] = { { (const uint8_t *)garbage, sizeof garbage - 1, NULL },
                     { f[2].data, cut, NULL } };
    r = stow("/dicom-web/studies", none, 2);
    j = cJSON_Parse((char *)r.body);
    bad = dj_value(j, "00081198");
    CHECKF(r.status == 409 && !cJSON_GetObjectItem(j, "00081199") &&
               cJSON_GetArraySize(bad) == 2 &&
               reason_in(cJSON_GetArrayItem(bad, 0), 0xC000, 0xCFFF) &&
               reason_in(cJSON_GetArrayItem(bad, 1), 0xC000, 0xCFFF),
           "STOW-RS, all parts bad: %d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    /* an instance of another study than the path's: a failure (409 names
     * "Study Instance UID mismatch"); Table I.2-2 has no code of its own
     * for it ("additional codes may be used"), so any failure code but
     * out of resources: A9xx or Cxxx */
    part two[2] = { { a2.data, a2.len, NULL }, { b1.data, b1.len, NULL } };
    r = stow("/dicom-web/studies/2.25.70001", two, 2);
    j = cJSON_Parse((char *)r.body);
    ok = dj_value(j, "00081199");
    bad = dj_value(j, "00081198");
    const cJSON *bi = cJSON_GetArrayItem(bad, 0);
    CHECKF(r.status == 202 && cJSON_GetArraySize(ok) == 1 &&
               !strcmp(dj_str(cJSON_GetArrayItem(ok, 0), "00081155") ?: "",
                       "2.25.70001.1.2") &&
               cJSON_GetArraySize(bad) == 1 &&
               !strcmp(dj_str(bi, "00081155") ?: "", "2.25.70002.1.1") &&
               (reason_in(bi, 0xA900, 0xA9FF) ||
                reason_in(bi, 0xC000, 0xCFFF)),
           "STOW-RS to study 2.25.70001 of one of 2.25.70002: %d %s",
           r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    part other[1] = { { b2.data, b2.len, NULL } };
    r = stow("/dicom-web/studies/2.25.70001", other, 1);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 409 && !cJSON_GetObjectItem(j, "00081199") &&
               !strcmp(dj_str(cJSON_GetArrayItem(dj_value(j, "00081198"), 0),
                              "00081155") ?: "",
                       "2.25.70002.1.2"),
           "STOW-RS, only another study's instance: %d %s", r.status,
           r.body);
    cJSON_Delete(j);
    reply_free(&r);

    /* issue 7 item 6 (src/http/dicomweb.c): rendered, but the client
     * takes no image type covct makes: 406 (PS3.18 8.7.3.5.2, RFC 9110
     * 15.5.7) */
    snprintf(hdr, sizeof hdr, "%sAccept: image/gif\r\n", auth);
    r = req("GET",
            "/dicom-web/studies/2.25.70001/series/2.25.70001.1/instances/"
            "2.25.70001.1.1/rendered",
            hdr, NULL, 0);
    CHECKF(r.status == 406, "rendered for Accept: image/gif: %d", r.status);
    reply_free(&r);

    /* ---- QIDO-RS matching over HTTP (PS3.4 C.2.2.2): date ranges, open
     * at either end and inclusive; single value matching of a person
     * name; fuzzymatching=true (PS3.18 8.3.4.2) for a name's start */
    struct {
        const char *name, *pid, *date, *study;
    } q[] = { { "ZEPHYRA^ALICE", "QIDO-1", "20200101", "2.25.70011" },
              { "ZEPHYRINE^BOB", "QIDO-2", "20200301", "2.25.70012" },
              { "ZORRO^CARL", "QIDO-3", "20200302", "2.25.70013" },
              { "ZEPHYRA^DAVE", "QIDO-4", "20191231", "2.25.70014" } };
    file qf[4];
    part qp[4];
    for (size_t i = 0; i < 4; i++) {
        char series[80], sop[90];
        snprintf(series, sizeof series, "%s.1", q[i].study);
        snprintf(sop, sizeof sop, "%s.1.1", q[i].study);
        make_instance(&f[i], &qf[i], q[i].name, q[i].pid, q[i].date,
                      q[i].study, series, sop);
        qp[i] = (part){ qf[i].data, qf[i].len, NULL };
    }
    r = stow("/dicom-web/studies", qp, 4);
    CHECKF(r.status == 200, "STOW-RS of the QIDO studies: %d %s", r.status,
           r.body);
    reply_free(&r);
    char ids[200];
    qido_ids("StudyDate=20200101-20200301", ids, sizeof ids);
    CHECKF(!strcmp(ids, "QIDO-1,QIDO-2"), "20200101-20200301: %s", ids);
    qido_ids("StudyDate=-20200301", ids, sizeof ids);
    CHECKF(!strcmp(ids, "QIDO-1,QIDO-2,QIDO-4"), "-20200301: %s", ids);
    qido_ids("StudyDate=20200302-", ids, sizeof ids);
    CHECKF(!strcmp(ids, "QIDO-3"), "20200302-: %s", ids);
    qido_ids("StudyDate=20200101", ids, sizeof ids);
    CHECKF(!strcmp(ids, "QIDO-1"), "20200101: %s", ids);
    qido_ids("PatientName=ZEPHYRA%5EALICE", ids, sizeof ids);
    CHECKF(!strcmp(ids, "QIDO-1"), "PatientName=ZEPHYRA^ALICE: %s", ids);
    qido_ids("PatientName=ZEPHYR", ids, sizeof ids);
    CHECKF(!strcmp(ids, ""), "PatientName=ZEPHYR, not fuzzy: %s", ids);
    /* fuzzy matching may match more than the standard's rules, but a
     * name that does not start the same is no near match */
    qido_ids("PatientName=ZEPHYR&fuzzymatching=true", ids, sizeof ids);
    CHECKF(!strcmp(ids, "QIDO-1,QIDO-2,QIDO-4"), "ZEPHYR, fuzzy: %s", ids);
    qido_ids("PatientName=ZEPHYR&fuzzymatching=true&StudyDate=20200101-",
             ids, sizeof ids);
    CHECKF(!strcmp(ids, "QIDO-1,QIDO-2"), "ZEPHYR fuzzy from 20200101: %s",
           ids);

    /* ---- WADO-RS: a series as multipart/related, each part the bytes
     * sent (PS3.18 10.4); study metadata: one object per instance of
     * every series of the study */
    file d[3];
    const char *dser[3] = { "2.25.70004.1", "2.25.70004.1", "2.25.70004.2" };
    const char *dsop[3] = { "2.25.70004.1.1", "2.25.70004.1.2",
                            "2.25.70004.2.1" };
    part dp[3];
    for (size_t i = 0; i < 3; i++) {
        make_instance(&f[i], &d[i], "WADO^D", "WADO-D", "20200201",
                      "2.25.70004", dser[i], dsop[i]);
        dp[i] = (part){ d[i].data, d[i].len, NULL };
    }
    r = stow("/dicom-web/studies/2.25.70004", dp, 3);
    CHECKF(r.status == 200, "STOW-RS of study 2.25.70004: %d %s", r.status,
           r.body);
    reply_free(&r);
    snprintf(hdr, sizeof hdr,
             "%sAccept: multipart/related; type=\"application/dicom\"; "
             "transfer-syntax=*\r\n",
             auth);
    r = req("GET", "/dicom-web/studies/2.25.70004/series/2.25.70004.1", hdr,
            NULL, 0);
    const uint8_t *pb[8];
    size_t pl[8];
    size_t np = mp_parts(&r, pb, pl, 8);
    bool got[2] = { false, false };
    for (size_t i = 0; i < np; i++)
        for (size_t k = 0; k < 2; k++)
            if (pl[i] == d[k].len && !memcmp(pb[i], d[k].data, d[k].len))
                got[k] = true;
    CHECKF(r.status == 200 && np == 2 && got[0] && got[1],
           "series WADO-RS: %d, %zu parts, equal to the files sent: %d %d",
           r.status, np, got[0], got[1]);
    reply_free(&r);
    /* the P001 series too: four parts, the four slices */
    snprintf(path, sizeof path, "/dicom-web/studies/%s/series/%s", g_study,
             g_series);
    r = req("GET", path, hdr, NULL, 0);
    np = mp_parts(&r, pb, pl, 8);
    size_t same = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < np; i++)
            if (pl[i] == f[k].len && !memcmp(pb[i], f[k].data, f[k].len)) {
                same++;
                break;
            }
    CHECKF(r.status == 200 && np == n && same == n,
           "series WADO-RS of %s: %d, %zu parts, %zu equal", g_series,
           r.status, np, same);
    reply_free(&r);
    r = req("GET", "/dicom-web/studies/2.25.70004/metadata", auth, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    bool seen[3] = { false, false, false };
    int objs = cJSON_GetArraySize(j);
    for (int i = 0; i < objs; i++) {
        const char *sop = dj_str(cJSON_GetArrayItem(j, i), "00080018");
        for (size_t k = 0; sop && k < 3; k++)
            if (!strcmp(sop, dsop[k]))
                seen[k] = true;
    }
    CHECKF(r.status == 200 && objs == 3 && seen[0] && seen[1] && seen[2],
           "study metadata: %d, %d objects %s", r.status, objs,
           r.status == 200 ? "" : (char *)r.body);
    cJSON_Delete(j);
    reply_free(&r);

    covct_free(a1.data);
    covct_free(a2.data);
    covct_free(b1.data);
    covct_free(b2.data);
    for (size_t i = 0; i < 4; i++)
        covct_free(qf[i].data);
    for (size_t i = 0; i < 3; i++)
        covct_free(d[i].data);
    for (size_t i = 0; i < n; i++)
        free(f[i].data);
}

/* The study page's routes: volume, masks with blind reading, saving a
 * version, agreement, adjudication, clinical labels. */
/* ---- the worklist (src/http/worklist.c) ------------------------------------
 * Its contract (docs/openapi.yaml, pages-api.md): analysed studies first,
 * most severe first, then the newest study date, then the study UID; q
 * matches name, ID, accession or description as a substring ignoring
 * case; from/to bound the study date; the answer follows the index at
 * once (a study stored, a job finished). */
static void wl_ids(const char *query, char *out, size_t cap)
{
    char path[600], auth[200];
    snprintf(path, sizeof path, "/api/worklist?%s", query);
    reply r = req("GET", path, auth_for(admin_token, auth, sizeof auth),
                  NULL, 0);
    cJSON *j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 && j, "worklist %s: %d %s", query, r.status,
           r.body);
    out[0] = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "studies"))
    {
        const char *sev = "-";
        char num[16];
        cJSON *v = cJSON_GetObjectItem(it, "severity");
        if (cJSON_IsNumber(v)) {
            snprintf(num, sizeof num, "%d", (int)v->valuedouble);
            sev = num;
        }
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s:%s:%s", l ? "," : "",
                 cJSON_GetStringValue(cJSON_GetObjectItem(it, "patient_id")),
                 sev,
                 cJSON_GetStringValue(cJSON_GetObjectItem(it, "ai_status")));
    }
    cJSON_Delete(j);
    reply_free(&r);
}

static void test_worklist(covct_store *store)
{
    file f[1];
    if (load_slices(f, 1) != 1)
        return;
    file a, b, c;
    make_instance(&f[0], &a, "Worklist^Alpha", "WL-A", "20210105",
                  "2.25.71001", "2.25.71001.1", "2.25.71001.1.1");
    make_instance(&f[0], &b, "WORKLIST^BRAVO", "WL-B", "20210310",
                  "2.25.71002", "2.25.71002.1", "2.25.71002.1.1");
    make_instance(&f[0], &c, "Worklist^Charlie", "WL-C", "20210310",
                  "2.25.71003", "2.25.71003.1", "2.25.71003.1.1");
    file *all[3] = { &a, &b, &c };
    char got[2000];
    covct_error err = { 0 };
    for (int i = 0; i < 3; i++) {
        covct_store_result res;
        uint8_t *copy = covct_malloc(all[i]->len);
        CHECK(copy != NULL);
        if (!copy)
            return;
        memcpy(copy, all[i]->data, all[i]->len);
        CHECKF(covct_store_put(store, copy, all[i]->len, "TEST", &res, NULL,
                               &err) == COVCT_OK,
               "%s", err.msg);
        /* each stored study is listed at once, none analysed yet: newest
         * date first, the UID between equal dates */
        wl_ids("q=wl-", got, sizeof got);
        static const char *const want[3] = {
            "WL-A:-:waiting", "WL-B:-:waiting,WL-A:-:waiting",
            "WL-B:-:waiting,WL-C:-:waiting,WL-A:-:waiting"
        };
        CHECKF(!strcmp(got, want[i]), "after %d: %s", i + 1, got);
    }
    /* case and field: "worklist^b" is in B's name, "charlie" in C's */
    wl_ids("q=WORKLIST%5Eb", got, sizeof got);
    CHECKF(!strcmp(got, "WL-B:-:waiting"), "%s", got);
    wl_ids("q=charlie", got, sizeof got);
    CHECKF(!strcmp(got, "WL-C:-:waiting"), "%s", got);
    wl_ids("q=wl-&from=20210101&to=20210131", got, sizeof got);
    CHECKF(!strcmp(got, "WL-A:-:waiting"), "%s", got);
    wl_ids("q=wl-&from=20210310", got, sizeof got);
    CHECKF(!strcmp(got, "WL-B:-:waiting,WL-C:-:waiting"), "%s", got);
    wl_ids("q=wl-&limit=1&offset=1", got, sizeof got);
    CHECKF(!strcmp(got, "WL-C:-:waiting"), "%s", got);
    wl_ids("q=wl-&limit=2&offset=3", got, sizeof got);
    CHECK(!strcmp(got, ""));

    /* jobs: C analysed with score 12, A with 3, B's analysis failed;
     * every other series of the store analysed without a score */
    unsigned queued = 0, skipped = 0;
    CHECKF(covct_jobs_scan(store, 0, 1, &queued, &skipped, &err) == COVCT_OK,
           "%s", err.msg);
    CHECK(queued >= 3);
    covct_job job;
    bool have = false, retry = false;
    while (covct_jobs_take(store, &job, &have, &err) == COVCT_OK && have) {
        bool is_b = !strcmp(job.study_uid, "2.25.71002");
        CHECK(covct_jobs_finish(store, &job, !is_b, is_b ? "test failure" : NULL,
                                NULL, 1, 60, &retry, &err) == COVCT_OK);
        int sev = !strcmp(job.study_uid, "2.25.71003")   ? 12
                  : !strcmp(job.study_uid, "2.25.71001") ? 3
                                                         : -1;
        if (sev >= 0)
            CHECK(covct_jobs_set_result(store, job.id, sev,
                                        sev > 10 ? "typical"
                                                 : "indeterminate",
                                        &err) == COVCT_OK);
    }
    wl_ids("q=wl-", got, sizeof got);
    CHECKF(!strcmp(got, "WL-C:12:analysed,WL-A:3:analysed,WL-B:-:failed"),
           "%s", got);
    /* the most severe study of the whole store comes first */
    wl_ids("limit=1", got, sizeof got);
    CHECKF(!strcmp(got, "WL-C:12:analysed"), "%s", got);
    for (int i = 0; i < 3; i++)
        covct_free(all[i]->data);
    covct_free(f[0].data);
}

static void test_viewer(void)
{
    char path[400], a_rad1[200], a_rad2[200], a_admin[200], a_ann[200];
    size_t k_rad = 0, k_ann = 0;
    for (size_t k = 0; k < covct_role_count; k++) {
        if (!strcmp(covct_roles[k], "radiologist"))
            k_rad = k;
        if (!strcmp(covct_roles[k], "annotator"))
            k_ann = k;
    }
    auth_for(tokens[k_rad], a_rad1, sizeof a_rad1);
    auth_for(tokens[k_ann], a_ann, sizeof a_ann);
    auth_for(admin_token, a_admin, sizeof a_admin);
    covct_error err = { 0 };
    char rad2_token[80];
    CHECK(covct_user_add(g_site, "rad2", "radiologist", NULL, &err) ==
          COVCT_OK);
    CHECK(covct_token_create(g_site, "rad2", NULL, rad2_token, &err) ==
          COVCT_OK);
    auth_for(rad2_token, a_rad2, sizeof a_rad2);

    snprintf(path, sizeof path, "/api/series/%s/volume", g_series);
    reply r = req("GET", path, a_rad1, NULL, 0);
    char dims[64];
    header_of(&r, "X-Covct-Dims", dims, sizeof dims);
    CHECKF(r.status == 200 && !strcmp(dims, "512,512,4") &&
               r.len == 512u * 512 * 4 * 2,
           "volume: %d dims '%s' %zu bytes", r.status, dims, r.len);
    reply_free(&r);
    /* not in the case database yet: no labels */
    snprintf(path, sizeof path, "/api/series/%s/mask/lesions", g_series);
    r = req("GET", path, a_rad1, NULL, 0);
    CHECK(r.status == 404);
    reply_free(&r);
    /* recorded (as the node does after an analysis), with no AI masks */
    char sdir[4300], none[4300];
    snprintf(none, sizeof none, "%s/no-results", g_dir);
    {
        covct_db *idx = NULL;
        covct_db_result *x = NULL;
        char ipath[4300];
        snprintf(ipath, sizeof ipath, "%s/index.sqlite", g_dir);
        CHECK(covct_db_open(ipath, &idx, &err) == COVCT_OK);
        CHECK(covct_db_query(idx, "SELECT path FROM instances LIMIT 1", NULL,
                             0, &x, &err) == COVCT_OK);
        snprintf(sdir, sizeof sdir, "%s/%s", g_dir, covct_db_get(x, 0, 0));
        *strrchr(sdir, '/') = 0;
        covct_db_result_free(x);
        covct_db_close(idx);
    }
    int64_t sid = 0;
    CHECKF(covct_case_record_analysis(g_site, sdir, none, "test", &sid,
                                      &err) == COVCT_OK,
           "%s", err.msg);
    /* reader 1 saves a mask: 1 ground glass in a block */
    size_t nvox = 512u * 512 * 4;
    uint8_t *m = calloc(nvox, 1);
    for (size_t y = 100; y < 140; y++)
        for (size_t x = 100; x < 160; x++)
            m[1 * 512 * 512 + y * 512 + x] = 1;
    snprintf(path, sizeof path,
             "/api/series/%s/mask/lesions?status=reader-1", g_series);
    r = req("POST", path, a_rad1, m, nvox);
    CHECKF(r.status == 201, "save: %d %s", r.status, r.body);
    reply_free(&r);
    r = req("POST", path, a_rad1, m, nvox - 1); /* wrong size */
    CHECK(r.status == 400 && strstr((char *)r.body, "voxels"));
    reply_free(&r);
    r = req("POST", path, a_ann, m, nvox); /* an annotator may label */
    CHECK(r.status == 201);
    reply_free(&r);
    m[0] = 9; /* not a lesion class */
    r = req("POST", path, a_rad1, m, nvox);
    CHECK(r.status == 400 && strstr((char *)r.body, "label 9"));
    reply_free(&r);
    m[0] = 0;
    /* reader 1 gets his own version back, byte for byte */
    snprintf(path, sizeof path, "/api/series/%s/mask/lesions", g_series);
    char me[200];
    snprintf(me, sizeof me, "%s", a_rad1);
    r = req("GET", path, me, NULL, 0);
    CHECK(r.status == 200 && r.len == nvox && !memcmp(r.body, m, nvox));
    reply_free(&r);
    /* reader 2 is blind to it */
    r = req("GET", path, a_rad2, NULL, 0);
    CHECKF(r.status == 404, "reader 2 sees reader 1: %d", r.status);
    reply_free(&r);
    snprintf(path, sizeof path, "/api/series/%s/labels", g_series);
    r = req("GET", path, a_rad2, NULL, 0);
    CHECK(r.status == 200 && !strstr((char *)r.body, "reader-1"));
    reply_free(&r);
    /* reader 2 saves another mask: a shifted block */
    uint8_t *m2 = calloc(nvox, 1);
    for (size_t y = 110; y < 150; y++)
        for (size_t x = 100; x < 160; x++)
            m2[1 * 512 * 512 + y * 512 + x] = 1;
    snprintf(path, sizeof path,
             "/api/series/%s/mask/lesions?status=reader-2", g_series);
    r = req("POST", path, a_rad2, m2, nvox);
    CHECK(r.status == 201);
    reply_free(&r);
    /* reader 1 cannot also be reader 2 */
    r = req("POST", path, a_rad1, m2, nvox);
    CHECK(r.status == 409);
    reply_free(&r);
    /* adjudication: not by a reader of the series; by the administrator,
     * who sees both and their Dice: 2*30*60 / (40*60 + 40*60) = 0.75 */
    snprintf(path, sizeof path, "/api/series/%s/agreement?adjudicate=1",
             g_series);
    r = req("GET", path, a_rad1, NULL, 0);
    CHECK(r.status == 403);
    reply_free(&r);
    r = req("GET", path, a_admin, NULL, 0);
    cJSON *j = cJSON_Parse((char *)r.body);
    cJSON *dice = cJSON_GetObjectItem(j, "dice");
    CHECKF(r.status == 200 &&
               fabs(cJSON_GetNumberValue(cJSON_GetArrayItem(dice, 0)) -
                    0.75) < 1e-12 &&
               cJSON_IsNull(cJSON_GetArrayItem(dice, 2)),
           "%s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
    snprintf(path, sizeof path,
             "/api/series/%s/mask/lesions?status=final", g_series);
    r = req("POST", path, a_admin, m2, nvox);
    CHECK(r.status == 201);
    reply_free(&r);
    /* now everyone sees the final version */
    snprintf(path, sizeof path, "/api/series/%s/mask/lesions", g_series);
    r = req("GET", path, a_rad2, NULL, 0);
    char st[40];
    CHECK(r.status == 200 &&
          !strcmp(header_of(&r, "X-Covct-Label-Status", st, sizeof st),
                  "final"));
    reply_free(&r);
    /* an annotator opens the study de-identified, and its volume */
    snprintf(path, sizeof path, "/api/studies/%s", g_study);
    r = req("GET", path, a_ann, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 &&
               cJSON_IsNull(cJSON_GetObjectItem(j, "patient_name")) &&
               cJSON_IsNull(cJSON_GetObjectItem(j, "patient_id")) &&
               cJSON_IsTrue(cJSON_GetObjectItem(j, "deidentified")) &&
               !strstr((char *)r.body, "98C14734"),
           "annotator's study: %d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    snprintf(path, sizeof path, "/api/series/%s/volume", g_series);
    r = req("GET", path, a_ann, NULL, 0);
    CHECK(r.status == 200 && r.len == 512u * 512 * 4 * 2);
    reply_free(&r);
    /* the case form */
    snprintf(path, sizeof path, "/api/studies/%s", g_study);
    r = req("GET", path, a_rad1, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    int case_id = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "case_id"));
    CHECKF(r.status == 200 && case_id > 0, "%s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
    snprintf(path, sizeof path, "/api/cases/%d/clinical", case_id);
    const char *form = "{\"diagnosis\":\"covid-19-confirmed\",\"severity\":9,"
                       "\"category\":\"typical\",\"status\":\"reader-1\"}";
    r = req("POST", path, a_rad1, form, strlen(form));
    CHECKF(r.status == 201, "%d %s", r.status, r.body);
    reply_free(&r);
    const char *badform = "{\"diagnosis\":\"flu\"}";
    r = req("POST", path, a_rad1, badform, strlen(badform));
    CHECK(r.status == 400 && strstr((char *)r.body, "flu"));
    reply_free(&r);
    r = req("POST", path, a_ann, form, strlen(form)); /* not allowed */
    CHECK(r.status == 403);
    reply_free(&r);
    /* the study gives the form back to its author (the page fills the
     * form with it), and not to the other reader */
    snprintf(path, sizeof path, "/api/studies/%s", g_study);
    r = req("GET", path, a_rad1, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    cJSON *cl = cJSON_GetObjectItem(j, "clinical");
    CHECKF(r.status == 200 &&
               cJSON_GetNumberValue(cJSON_GetObjectItem(cl, "severity")) ==
                   9 &&
               !strcmp(cJSON_GetStringValue(
                           cJSON_GetObjectItem(cl, "category")) ?: "",
                       "typical") &&
               !strcmp(cJSON_GetStringValue(
                           cJSON_GetObjectItem(cl, "diagnosis")) ?: "",
                       "covid-19-confirmed"),
           "the saved case form: %s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = req("GET", path, a_rad2, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 &&
               cJSON_IsNull(cJSON_GetObjectItem(j, "clinical")),
           "reader 2 sees reader 1's case form: %s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
    free(m);
    free(m2);

    /* export requests: a researcher asks, site IT runs it; without an
     * approval in force it is refused */
    char a_res[200], a_it[200];
    size_t k_res = 0, k_it = 0;
    for (size_t k = 0; k < covct_role_count; k++) {
        if (!strcmp(covct_roles[k], "researcher"))
            k_res = k;
        if (!strcmp(covct_roles[k], "site-it"))
            k_it = k;
    }
    auth_for(tokens[k_res], a_res, sizeof a_res);
    auth_for(tokens[k_it], a_it, sizeof a_it);
    int64_t proj = 0;
    CHECK(covct_project_create(g_site, "web-proj", NULL, NULL, NULL, &proj,
                               &err) == COVCT_OK);
    CHECK(covct_project_add_patient(g_site, proj, "98C14734-ASSH", &err) ==
          COVCT_OK);
    CHECK(covct_consent_record(g_site, "98C14734-ASSH", proj, "given", NULL,
                               &err) == COVCT_OK);
    r = req("POST", "/api/projects/web-proj/exports", a_res, "", 0);
    j = cJSON_Parse((char *)r.body);
    int rid = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "id"));
    CHECKF(r.status == 201 && rid > 0, "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    snprintf(path, sizeof path, "/api/exports/%d/run", rid);
    r = req("POST", path, a_res, "", 0);
    CHECK(r.status == 403); /* a researcher cannot run it */
    reply_free(&r);
    r = req("POST", path, a_it, "", 0);
    CHECKF(r.status == 409 && strstr((char *)r.body, "no ethics approval"),
           "%d %s", r.status, r.body);
    reply_free(&r);
    covct_approval ap = { "EC", "EC-1", "2026-01-01", "2099-12-31",
                          "research", "images" };
    int64_t aid = 0;
    CHECK(covct_project_approve(g_site, proj, &ap, &aid, &err) == COVCT_OK);
    /* an approval is not enough: the receiver's data use agreement must
     * be in force too, recorded over the API by the ethics officer */
    char a_eth[200];
    for (size_t k = 0; k < covct_role_count; k++)
        if (!strcmp(covct_roles[k], "ethics-officer"))
            auth_for(tokens[k], a_eth, sizeof a_eth);
    r = req("POST", path, a_it, "", 0);
    CHECKF(r.status == 409 &&
               strstr((char *)r.body, "no data use agreement"),
           "%d %s", r.status, r.body);
    reply_free(&r);
    const char *dua_bad = "{\"party\":\"Uni Lab\",\"signed_on\":"
                          "\"2026-13-01\"}";
    r = req("POST", "/api/projects/web-proj/agreements", a_eth, dua_bad,
            strlen(dua_bad));
    CHECKF(r.status == 400 && strstr((char *)r.body, "2026-13-01"), "%d %s",
           r.status, r.body);
    reply_free(&r);
    r = req("POST", "/api/projects/web-proj/agreements", a_res, dua_bad,
            strlen(dua_bad));
    CHECK(r.status == 403); /* a researcher cannot record one */
    reply_free(&r);
    const char *dua_old = "{\"party\":\"Uni Lab\",\"signed_on\":"
                          "\"2020-01-01\",\"expires_on\":\"2020-12-31\"}";
    r = req("POST", "/api/projects/web-proj/agreements", a_eth, dua_old,
            strlen(dua_old));
    CHECKF(r.status == 201, "%d %s", r.status, r.body);
    reply_free(&r);
    r = req("POST", path, a_it, "", 0);
    CHECKF(r.status == 409 && strstr((char *)r.body, "expired on 2020-12-31"),
           "%d %s", r.status, r.body);
    reply_free(&r);
    const char *dua = "{\"party\":\"Uni Lab\",\"signed_on\":"
                      "\"2026-01-01\",\"expires_on\":\"\",\"terms\":\"no "
                      "re-identification\"}";
    r = req("POST", "/api/projects/web-proj/agreements", a_eth, dua,
            strlen(dua));
    CHECKF(r.status == 201, "%d %s", r.status, r.body);
    reply_free(&r);
    r = req("GET", "/api/projects/web-proj", a_res, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 &&
               cJSON_GetArraySize(cJSON_GetObjectItem(j, "agreements")) == 2,
           "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = req("POST", path, a_it, "", 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 &&
               cJSON_GetNumberValue(cJSON_GetObjectItem(j, "patients")) == 1,
           "%d %s", r.status, r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = req("POST", path, a_it, "", 0);
    CHECK(r.status == 409); /* answered already */
    reply_free(&r);
    /* projects, approvals and consent over the API (ethics officer) */
    const char *pj = "{\"name\":\"web2\",\"title\":\"T\"}";
    r = req("POST", "/api/projects", a_eth, pj, strlen(pj));
    CHECKF(r.status == 201, "%d %s", r.status, r.body);
    reply_free(&r);
    const char *bad_ap = "{\"committee\":\"EC\",\"number\":\"2\","
                         "\"granted_on\":\"2026-02-30\",\"expires_on\":"
                         "\"2099-01-01\",\"purposes\":\"research\","
                         "\"data_scope\":\"images\"}";
    r = req("POST", "/api/projects/web2/approvals", a_eth, bad_ap,
            strlen(bad_ap));
    CHECK(r.status == 400 && strstr((char *)r.body, "2026-02-30"));
    reply_free(&r);
    const char *ap2 = "{\"committee\":\"EC\",\"number\":\"2\","
                      "\"granted_on\":\"2026-01-01\",\"expires_on\":"
                      "\"2099-01-01\",\"purposes\":\"research\","
                      "\"data_scope\":\"images,labels\"}";
    r = req("POST", "/api/projects/web2/approvals", a_eth, ap2, strlen(ap2));
    CHECK(r.status == 201);
    reply_free(&r);
    const char *cs = "{\"patient_id\":\"98C14734-ASSH\",\"status\":"
                     "\"withdrawn\",\"reference\":\"letter\"}";
    r = req("POST", "/api/projects/web2/consents", a_eth, cs, strlen(cs));
    CHECKF(r.status == 201, "%d %s", r.status, r.body);
    reply_free(&r);
    r = req("GET", "/api/projects/web2", a_res, NULL, 0);
    j = cJSON_Parse((char *)r.body);
    CHECKF(r.status == 200 &&
               cJSON_GetNumberValue(cJSON_GetObjectItem(
                   cJSON_GetObjectItem(j, "consent"), "withdrawn")) == 1 &&
               cJSON_IsTrue(cJSON_GetObjectItem(j, "approval_in_force")),
           "%s", r.body);
    cJSON_Delete(j);
    reply_free(&r);
    r = req("GET", "/api/exports", a_res, NULL, 0);
    CHECK(r.status == 200 && strstr((char *)r.body, "\"status\":\"done\""));
    reply_free(&r);
}

static void test_limits(void)
{
    char auth[200];
    auth_for(admin_token, auth, sizeof auth);
    /* 413 before the body is read */
    int fd = connect_local();
    const char *h = "POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 99999999999\r\n\r\n";
    send_all(fd, h, strlen(h));
    char buf[512] = "";
    ssize_t got = recv(fd, buf, sizeof buf - 1, 0);
    CHECKF(got > 12 && !strncmp(buf + 9, "413", 3), "%s", buf);
    close(fd);
    /* a client that stops in the middle of its request is cut off */
    fd = connect_local();
    send_all(fd, "GET /api/me HTTP/1.1\r\nHost: x\r\n", 30);
    struct pollfd p = { fd, POLLIN, 0 };
    int ready = poll(&p, 1, 10000); /* the server's timeout is 2 s */
    CHECK(ready == 1 && recv(fd, buf, sizeof buf, 0) <= 0);
    close(fd);
    /* pages: served, never outside the web folder */
    reply r = req("GET", "/", NULL, NULL, 0);
    char ct[200];
    CHECK(r.status == 200 &&
          strstr(header_of(&r, "Content-Type", ct, sizeof ct), "text/html"));
    CHECK(strstr(header_of(&r, "Content-Security-Policy", ct, sizeof ct),
                 "default-src 'self'") != NULL);
    reply_free(&r);
    r = req("GET", "/../../etc/passwd", NULL, NULL, 0);
    CHECK(r.status == 404);
    reply_free(&r);
    r = req("GET", "/%2e%2e/%2e%2e/etc/passwd", NULL, NULL, 0);
    CHECK(r.status == 404);
    reply_free(&r);
    r = req("DELETE", "/api/me", auth, NULL, 0);
    CHECK(r.status == 405);
    reply_free(&r);
    r = req("GET", "/api/nothing-here", auth, NULL, 0);
    CHECK(r.status == 404 || r.status == 200); /* the pages' fallback */
    reply_free(&r);
}

int main(void)
{
    char dir[] = "/tmp/covct-test-http.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    covct_error err = { 0 };
    covct_store *store = NULL;
    covct_site *site = NULL;
    CHECKF(covct_store_open(dir, &store, &err) == COVCT_OK, "%s", err.msg);
    CHECKF(covct_site_open(dir, &site, &err) == COVCT_OK, "%s", err.msg);
    if (!store || !site)
        return test_report();
    /* one user per role, each with a token; two with passwords */
    for (size_t k = 0; k < covct_role_count; k++) {
        char name[32];
        snprintf(name, sizeof name, "u%zu", k);
        CHECK(covct_user_add(site, name, covct_roles[k], NULL, &err) ==
              COVCT_OK);
        CHECKF(covct_token_create(site, name, "test", tokens[k], &err) ==
                   COVCT_OK,
               "%s", err.msg);
        if (!strcmp(covct_roles[k], "administrator"))
            memcpy(admin_token, tokens[k], sizeof admin_token);
    }
    CHECK(covct_user_add(site, "rad", "radiologist", "rad-pass-1", &err) ==
          COVCT_OK);
    CHECK(covct_user_add(site, "ann", "annotator", "ann-pass-1", &err) ==
          COVCT_OK);
    CHECK(covct_user_add(site, "itu", "site-it", "itu-pass-1", &err) ==
          COVCT_OK);
    char web[4200];
    const char *src = getenv("COVCT_SOURCE_DIR");
    snprintf(web, sizeof web, "%s/web", src ? src : "..");
    covct_http_config cfg = { .port = 0,
                              .bind_host = "127.0.0.1",
                              .data_dir = dir,
                              .store = store,
                              .web_dir = web,
                              .max_body = 64 << 20,
                              .timeout_s = 2,
                              .ae_title = "COVCT" };
    covct_http_server *srv = NULL;
    CHECKF(covct_http_start(&cfg, &srv, &err) == COVCT_OK, "%s", err.msg);
    if (!srv)
        return test_report();
    port = covct_http_port(srv);

    test_router_table();
    test_sessions();
    g_site = site;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    test_dicomweb();
    test_viewer();
    test_dicomweb_more();
    test_worklist(store);
    test_limits();

    /* HTTPS (libmicrohttpd with GnuTLS) with a throw-away certificate,
     * checked with curl; CORS for an external viewer */
    {
        char cert[4300], key[4300], cmd[9000], out[4300];
        snprintf(cert, sizeof cert, "%s/cert.pem", dir);
        snprintf(key, sizeof key, "%s/key.pem", dir);
        snprintf(out, sizeof out, "%s/curl.out", dir);
        snprintf(cmd, sizeof cmd,
                 "openssl req -x509 -newkey rsa:2048 -nodes -subj "
                 "/CN=localhost -days 1 -keyout %s -out %s 2>/dev/null",
                 key, cert);
        CHECK(system(cmd) == 0);
        covct_http_config tcfg = cfg;
        tcfg.tls_cert = cert;
        tcfg.tls_key = key;
        tcfg.cors_origin = "https://viewer.example";
        covct_http_server *tsrv = NULL;
        CHECKF(covct_http_start(&tcfg, &tsrv, &err) == COVCT_OK, "%s",
               err.msg);
        if (tsrv) {
            snprintf(cmd, sizeof cmd,
                     "curl -sk -o /dev/null -w '%%{http_code}' -H "
                     "'Authorization: Bearer %s' https://127.0.0.1:%u/api/me "
                     ">%s",
                     admin_token, covct_http_port(tsrv), out);
            CHECK(system(cmd) == 0);
            uint8_t *o = NULL;
            size_t ol = 0;
            CHECK(covct_file_read(out, &o, &ol, &err) == COVCT_OK && ol == 3 &&
                  !memcmp(o, "200", 3));
            covct_free(o);
            /* plain HTTP to the HTTPS port gets no answer */
            snprintf(cmd, sizeof cmd,
                     "curl -s -m 5 -o /dev/null http://127.0.0.1:%u/api/me",
                     covct_http_port(tsrv));
            CHECK(system(cmd) != 0);
            snprintf(cmd, sizeof cmd,
                     "curl -sk -i -X OPTIONS -H 'Origin: "
                     "https://viewer.example' https://127.0.0.1:%u/dicom-web/"
                     "studies >%s",
                     covct_http_port(tsrv), out);
            CHECK(system(cmd) == 0);
            CHECK(covct_file_read(out, &o, &ol, &err) == COVCT_OK &&
                  memmem(o, ol, "Access-Control-Allow-Origin: "
                                "https://viewer.example", 51) &&
                  memmem(o, ol, "Authorization", 13));
            /* the preflight offers the methods the routes serve, and no
             * other (here GET and POST; the router answers HEAD as GET) */
            char methods[200] = "";
            const uint8_t *am =
                o ? memmem(o, ol, "Access-Control-Allow-Methods:", 29) : NULL;
            if (am)
                snprintf(methods, sizeof methods, "%.*s",
                         (int)strcspn((const char *)am + 29, "\r\n"),
                         (const char *)am + 29);
            size_t listed = 0;
            for (char *save = NULL, *t = strtok_r(methods, ", ", &save); t;
                 t = strtok_r(NULL, ", ", &save), listed++) {
                bool routed = !strcmp(t, "OPTIONS") || !strcmp(t, "HEAD");
                for (size_t i = 0; i < covct_http_route_count() && !routed;
                     i++)
                    routed = !strcmp(covct_http_route_at(i)->method, t);
                CHECKF(routed, "preflight offers %s, which no route serves",
                       t);
            }
            for (size_t i = 0; i < covct_http_route_count(); i++) {
                const char *m = covct_http_route_at(i)->method;
                CHECKF(am && memmem(am, ol - (size_t)(am - o), m,
                                    strlen(m)),
                       "preflight does not offer %s", m);
            }
            CHECKF(listed >= 3, "Access-Control-Allow-Methods: %zu", listed);
            covct_free(o);
            covct_http_stop(tsrv);
        }
    }

    /* a revoked token stops working at once */
    CHECK(covct_token_revoke(site, "u0", &err) == COVCT_OK);
    char auth[200];
    reply r = req("GET", "/api/me", auth_for(tokens[0], auth, sizeof auth),
                  NULL, 0);
    CHECK(r.status == 401);
    reply_free(&r);
    covct_http_stop(srv);

    /* what was read is in the audit log, and the log is intact */
    int64_t reads = 0, denied = 0;
    CHECK(covct_db_query_int(covct_site_db(site),
                             "SELECT COUNT(*) FROM audit_log WHERE action ="
                             " 'http.read'",
                             NULL, 0, &reads, &err) == COVCT_OK &&
          reads > 0);
    CHECK(covct_db_query_int(covct_site_db(site),
                             "SELECT COUNT(*) FROM audit_log WHERE action ="
                             " 'denied'",
                             NULL, 0, &denied, &err) == COVCT_OK &&
          denied > 20);
    covct_audit_result ar;
    CHECK(covct_audit_verify(site, &ar, &err) == COVCT_OK && !ar.bad_seq);
    covct_site_close(site);
    covct_store_close(store);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return test_report();
}
