/* The web service end to end over real sockets, on SQLite or (under
 * tests/with-postgres.sh) PostgreSQL:
 *  - the router table walked: every protected route answers 401 without
 *    credentials and 403 with a role that lacks its permission;
 *  - login with a session cookie, CSRF on changes, logout, throttling of
 *    failed logins (429), Bearer tokens, revoked tokens;
 *  - STOW-RS of real CT slices, then WADO-RS of each back byte for byte;
 *    QIDO-RS matching, limit/offset, includefield; series metadata;
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
    /* every /api/ route is described in docs/openapi.yaml */
    char yaml_path[4200];
    const char *src = getenv("COVCT_SOURCE_DIR");
    snprintf(yaml_path, sizeof yaml_path, "%s/docs/openapi.yaml",
             src ? src : "..");
    uint8_t *yaml = NULL;
    size_t ylen = 0;
    covct_error err = { 0 };
    CHECK(covct_file_read(yaml_path, &yaml, &ylen, &err) == COVCT_OK);
    for (size_t i = 0; yaml && i < n; i++) {
        const covct_http_route_info *ri = covct_http_route_at(i);
        if (strncmp(ri->pattern, "/api/", 5))
            continue;
        char key[300];
        snprintf(key, sizeof key, "\n  %s:", ri->pattern);
        CHECKF(memmem(yaml, ylen, key, strlen(key)) != NULL,
               "%s is not in docs/openapi.yaml", ri->pattern);
    }
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

/* The study page's routes: volume, masks with blind reading, saving a
 * version, agreement, adjudication, clinical labels. */
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
    char a_eth[200];
    for (size_t k = 0; k < covct_role_count; k++)
        if (!strcmp(covct_roles[k], "ethics-officer"))
            auth_for(tokens[k], a_eth, sizeof a_eth);
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
