/* Who is asking: session cookies for the pages (login with the case
 * database's Argon2id passwords), Bearer tokens for scripts, CSRF tokens
 * for changes made from a page, and login throttling
 * (docs/internals/http.md, "Authentication"). */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http/http_int.h"

#define SESSION_IDLE_S (30 * 60)        /* logged out after 30 min idle */
#define SESSION_MAX_S (12 * 60 * 60)    /* and after 12 h in any case */
#define MAX_SESSIONS 4096
#define FAIL_WINDOW_S (15 * 60)         /* 5 failed logins in 15 min ... */
#define FAIL_MAX 5
#define BLOCK_S (15 * 60)               /* ... block that name/address 15 min */
#define THROTTLE_SLOTS 1024

typedef struct session {
    char id_sha[65]; /* SHA-256 of the cookie value: a memory dump does
                        not give sessions away */
    char csrf[48];
    char user[65];
    char role[32];
    time_t created, last;
} session;

typedef struct throttle {
    char key[96]; /* "ip:ADDR" or "user:NAME" */
    time_t window_start, blocked_until;
    unsigned fails;
} throttle;

struct http_auth {
    pthread_mutex_t lock;
    session *s;
    size_t n;
    throttle t[THROTTLE_SLOTS];
};

struct http_auth *http_auth_new(void)
{
    struct http_auth *a = covct_calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->s = covct_calloc(MAX_SESSIONS, sizeof *a->s);
    if (!a->s) {
        covct_free(a);
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

void http_auth_free(struct http_auth *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    memset(a->s, 0, MAX_SESSIONS * sizeof *a->s);
    covct_free(a->s);
    covct_free(a);
}

static void random_token(char *out, size_t bytes)
{
    static const char al[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[48];
    if (bytes > sizeof raw)
        bytes = sizeof raw;
    if (RAND_bytes(raw, (int)bytes) != 1)
        memset(raw, 0, sizeof raw); /* never happens on Linux; then no
                                       session will match anything */
    for (size_t i = 0; i < bytes; i++)
        out[i] = al[raw[i] & 63];
    out[bytes] = 0;
}

/* ---- throttling -------------------------------------------------------- */
static throttle *slot(struct http_auth *a, const char *key, time_t now)
{
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    throttle *t = &a->t[h % THROTTLE_SLOTS];
    if (strcmp(t->key, key) ||
        (now - t->window_start > FAIL_WINDOW_S && now > t->blocked_until)) {
        /* a new key, or the old window is over: start afresh (a collision
         * evicts, which can only make the throttle more lenient) */
        memset(t, 0, sizeof *t);
        /* the callers' keys fit (96 bytes, as here); the precision says
         * so to the compiler */
        snprintf(t->key, sizeof t->key, "%.*s", (int)sizeof t->key - 1,
                 key);
        t->window_start = now;
    }
    return t;
}

/* Seconds the caller must still wait, 0 when it may try. */
static long blocked(struct http_auth *a, const char *ip, const char *user,
                    time_t now)
{
    char k1[96], k2[96];
    snprintf(k1, sizeof k1, "ip:%s", ip);
    snprintf(k2, sizeof k2, "user:%.80s", user);
    pthread_mutex_lock(&a->lock);
    long w1 = (long)(slot(a, k1, now)->blocked_until - now),
         w2 = (long)(slot(a, k2, now)->blocked_until - now);
    pthread_mutex_unlock(&a->lock);
    long w = w1 > w2 ? w1 : w2;
    return w > 0 ? w : 0;
}

static void failed(struct http_auth *a, const char *ip, const char *user,
                   time_t now)
{
    char keys[2][96];
    snprintf(keys[0], sizeof keys[0], "ip:%s", ip);
    snprintf(keys[1], sizeof keys[1], "user:%.80s", user);
    pthread_mutex_lock(&a->lock);
    for (int i = 0; i < 2; i++) {
        throttle *t = slot(a, keys[i], now);
        if (++t->fails >= FAIL_MAX)
            t->blocked_until = now + BLOCK_S;
    }
    pthread_mutex_unlock(&a->lock);
}

/* ---- sessions ------------------------------------------------------------ */
static session *find_session(struct http_auth *a, const char *cookie,
                             time_t now)
{
    char sha[65];
    covct_sha256_hex(cookie, strlen(cookie), sha);
    for (size_t i = 0; i < MAX_SESSIONS; i++) {
        session *s = &a->s[i];
        if (!s->id_sha[0] || strcmp(s->id_sha, sha))
            continue;
        if (now - s->last > SESSION_IDLE_S || now - s->created > SESSION_MAX_S) {
            memset(s, 0, sizeof *s);
            return NULL;
        }
        s->last = now;
        return s;
    }
    return NULL;
}

bool http_authenticate(http_req *rq)
{
    const char *auth = http_header_in(rq, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && !strncasecmp(auth, "Bearer ", 7)) {
        covct_error err = { 0 };
        covct_site *site = http_site(rq->srv, &err);
        if (!site || covct_token_check(site, auth + 7, rq->user, rq->role,
                                       &err))
            return false;
        rq->authed = true;
        return true;
    }
    const char *cookie =
        MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND,
                                    "covct_session");
    if (!cookie)
        return false;
    struct http_auth *a = rq->srv->auth;
    pthread_mutex_lock(&a->lock);
    session *s = find_session(a, cookie, time(NULL));
    if (s) {
        snprintf(rq->user, sizeof rq->user, "%s", s->user);
        snprintf(rq->role, sizeof rq->role, "%s", s->role);
        rq->authed = rq->via_session = true;
    }
    pthread_mutex_unlock(&a->lock);
    return rq->authed;
}

bool http_csrf_ok(http_req *rq)
{
    if (!rq->via_session || !strcmp(rq->method, "GET") ||
        !strcmp(rq->method, "HEAD"))
        return true;
    const char *given = http_header_in(rq, "X-CSRF-Token");
    const char *cookie =
        MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND,
                                    "covct_session");
    if (!given || !cookie)
        return false;
    struct http_auth *a = rq->srv->auth;
    bool ok = false;
    pthread_mutex_lock(&a->lock);
    session *s = find_session(a, cookie, time(NULL));
    if (s && strlen(given) == strlen(s->csrf))
        ok = CRYPTO_memcmp(given, s->csrf, strlen(given)) == 0;
    pthread_mutex_unlock(&a->lock);
    return ok;
}

static void cookie_header(http_req *rq, http_resp *rs, const char *value,
                          long max_age)
{
    char h[256];
    snprintf(h, sizeof h,
             "covct_session=%s; Path=/; HttpOnly; SameSite=Strict; "
             "Max-Age=%ld%s",
             value, max_age, rq->srv->cfg.tls_cert ? "; Secure" : "");
    http_header(rs, MHD_HTTP_HEADER_SET_COOKIE, h);
}

int api_login(http_req *rq, http_resp *rs)
{
    cJSON *in = cJSON_ParseWithLength((const char *)rq->body, rq->body_len);
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItem(in, "user"));
    const char *pw =
        cJSON_GetStringValue(cJSON_GetObjectItem(in, "password"));
    if (!user || !pw) {
        cJSON_Delete(in);
        return http_error(rs, 400, "send {\"user\": ..., \"password\": ...}");
    }
    time_t now = time(NULL);
    struct http_auth *a = rq->srv->auth;
    long wait = blocked(a, rq->remote, user, now);
    if (wait) {
        char ra[24];
        snprintf(ra, sizeof ra, "%ld", wait);
        http_header(rs, MHD_HTTP_HEADER_RETRY_AFTER, ra);
        cJSON_Delete(in);
        return http_error(rs, 429,
                          "too many failed logins: try again in %ld s", wait);
    }
    covct_error err = { 0 };
    covct_site *site = http_site(rq->srv, &err);
    if (!site) {
        cJSON_Delete(in);
        return http_error(rs, 503, "case database: %s", err.msg);
    }
    char name[65];
    snprintf(name, sizeof name, "%s", user);
    bool ok = covct_user_check_password(site, user, pw);
    cJSON_Delete(in);
    char role[32] = "";
    if (ok) {
        covct_db_result *r = NULL;
        if (!covct_db_query(covct_site_db(site),
                            "SELECT role FROM users WHERE name = $1",
                            (covct_db_param[]){ COVCT_DB_TEXT(name) }, 1, &r,
                            &err) &&
            covct_db_rows(r) == 1)
            snprintf(role, sizeof role, "%s", covct_db_get(r, 0, 0));
        covct_db_result_free(r);
        ok = role[0] != 0;
    }
    /* both outcomes are on record, in the name tried */
    snprintf(rq->user, sizeof rq->user, "%s", name);
    snprintf(rq->role, sizeof rq->role, "%s", ok ? role : "none");
    char detail[96];
    snprintf(detail, sizeof detail, "{\"from\":\"%s\"}", rq->remote);
    http_audit(rq, ok ? "login" : "login.failed", "session", detail);
    if (!ok) {
        failed(a, rq->remote, name, now);
        return http_error(rs, 401, "wrong user name or password");
    }
    char id[48], csrf[48];
    random_token(id, 43);
    random_token(csrf, 43);
    pthread_mutex_lock(&a->lock);
    session *s = NULL;
    for (size_t i = 0; i < MAX_SESSIONS && !s; i++)
        if (!a->s[i].id_sha[0] || now - a->s[i].last > SESSION_IDLE_S ||
            now - a->s[i].created > SESSION_MAX_S)
            s = &a->s[i];
    if (s) {
        memset(s, 0, sizeof *s);
        covct_sha256_hex(id, strlen(id), s->id_sha);
        snprintf(s->csrf, sizeof s->csrf, "%s", csrf);
        snprintf(s->user, sizeof s->user, "%s", name);
        snprintf(s->role, sizeof s->role, "%s", role);
        s->created = s->last = now;
    }
    pthread_mutex_unlock(&a->lock);
    if (!s)
        return http_error(rs, 503, "too many sessions open");
    cookie_header(rq, rs, id, SESSION_MAX_S);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "user", name);
    cJSON_AddStringToObject(o, "role", role);
    cJSON_AddStringToObject(o, "csrf", csrf);
    return http_json(rs, 200, o);
}

int api_logout(http_req *rq, http_resp *rs)
{
    const char *cookie =
        MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND,
                                    "covct_session");
    if (cookie) {
        struct http_auth *a = rq->srv->auth;
        pthread_mutex_lock(&a->lock);
        session *s = find_session(a, cookie, time(NULL));
        if (s)
            memset(s, 0, sizeof *s);
        pthread_mutex_unlock(&a->lock);
    }
    cookie_header(rq, rs, "", 0);
    return http_json(rs, 200, cJSON_CreateObject());
}

int api_me(http_req *rq, http_resp *rs)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "user", rq->user);
    cJSON_AddStringToObject(o, "role", rq->role);
    if (rq->via_session) {
        const char *cookie = MHD_lookup_connection_value(
            rq->conn, MHD_COOKIE_KIND, "covct_session");
        struct http_auth *a = rq->srv->auth;
        pthread_mutex_lock(&a->lock);
        session *s = cookie ? find_session(a, cookie, time(NULL)) : NULL;
        if (s)
            cJSON_AddStringToObject(o, "csrf", s->csrf);
        pthread_mutex_unlock(&a->lock);
    }
    cJSON *perms = cJSON_AddArrayToObject(o, "may");
    static const char *const actions[] = {
        "read.identifiable", "read.deidentified", "label.write",
        "label.adjudicate",  "case.clinical",     "project.manage",
        "approval.record",   "consent.record",    "export.request",
        "export.run",        "audit.read",        "user.manage"
    };
    for (size_t i = 0; i < sizeof actions / sizeof *actions; i++)
        if (covct_role_may(rq->role, actions[i]))
            cJSON_AddItemToArray(perms, cJSON_CreateString(actions[i]));
    return http_json(rs, 200, o);
}
