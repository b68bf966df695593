/* GET /api/worklist: the studies in triage order, searched and paged from
 * an in-memory copy of the index (docs/internals/pages-api.md, "The
 * worklist").
 *
 * Every open worklist page asks every few seconds, and each asks its own
 * question (search text, dates, page), so the answers are not shared
 * between clients.  Ordering 10,000 studies by severity and scanning them
 * for a substring cost SQLite 5-15 ms a request; here the studies are
 * read once into an array kept in triage order, and a request is a scan
 * of that array.  The copy is rebuilt when the index has changed:
 * PRAGMA data_version on a connection of its own says whether any other
 * connection (the store, the job runner) committed since the last look.
 * While one thread rebuilds, the others answer from the previous copy. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"

/* One study; strings are offsets into the snapshot's text (NUL-ended). */
typedef struct wl_row {
    size_t uid, patient_id, name, date, desc, acc, category, series_uid;
    size_t hay;           /* lower-case "name\1id\1accession\1description" */
    int64_t n_series;
    int64_t n_instances;  /* -1: no series (null in the answer) */
    int severity;         /* -1: not analysed */
    const char *ai_status;
} wl_row;

typedef struct wl_snap {
    wl_row *rows;
    size_t n;
    covct_buf text;
    unsigned refs;
} wl_snap;

struct http_worklist {
    pthread_mutex_t lock;
    covct_db *watch;   /* asked for PRAGMA data_version only */
    int64_t version;   /* of the current snapshot */
    wl_snap *snap;
    bool building;
};

static void snap_unref(http_worklist *wl, wl_snap *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&wl->lock);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&wl->lock);
    if (last) {
        covct_free(s->rows);
        covct_buf_free(&s->text);
        covct_free(s);
    }
}

/* Append a string to the snapshot's text; returns its offset (SIZE_MAX
 * for NULL: answered as null, compared as ""). */
static size_t put_text(wl_snap *s, const char *v, covct_error *err,
                       covct_rc *rc)
{
    size_t at = s->text.len;
    if (!v)
        return SIZE_MAX;
    if (!*rc)
        *rc = covct_buf_append(&s->text, v, strlen(v) + 1, err);
    return at;
}

static const char *text(const wl_snap *s, size_t off)
{
    return off == SIZE_MAX ? "" : (const char *)s->text.data + off;
}

/* Triage order: analysed studies first, most severe first; then the
 * newest study date (none last); then the UID, so pages are stable. */
static int row_cmp(const void *pa, const void *pb, void *ps)
{
    const wl_row *a = pa, *b = pb;
    const wl_snap *s = ps;
    if ((a->severity < 0) != (b->severity < 0))
        return a->severity < 0 ? 1 : -1;
    if (a->severity != b->severity)
        return a->severity > b->severity ? -1 : 1;
    int c = strcmp(text(s, b->date), text(s, a->date));
    if (c)
        return c;
    return strcmp(text(s, a->uid), text(s, b->uid));
}

/* The AI state of a study from its jobs' states, in this order of
 * precedence (as the pages show it). */
enum { ST_DONE = 1, ST_RUNNING = 2, ST_QUEUED = 4, ST_FAILED = 8,
       ST_OTHER = 16 };

static const char *ai_status(unsigned states)
{
    return !states                ? "waiting"
           : states & ST_DONE     ? "analysed"
           : states & ST_RUNNING  ? "running"
           : states & ST_QUEUED   ? "queued"
           : states & ST_FAILED   ? "failed"
                                  : "not a chest CT";
}

static unsigned state_bit(const char *st)
{
    return !st                        ? 0
           : !strcmp(st, "done")      ? ST_DONE
           : !strcmp(st, "running")   ? ST_RUNNING
           : !strcmp(st, "queued")    ? ST_QUEUED
           : !strcmp(st, "failed")    ? ST_FAILED
                                      : ST_OTHER;
}

/* Read every study (one pass, ordered by UID) and its jobs (ordered the
 * same way, merged in) into a new snapshot. */
static covct_rc build(covct_db *db, wl_snap **out, covct_error *err)
{
    covct_db_result *st = NULL, *jb = NULL;
    covct_rc rc = covct_db_query(
        db,
        "SELECT st.study_uid, st.patient_id, p.patient_name, st.study_date,"
        " st.study_description, st.accession_number,"
        " COUNT(se.series_uid), SUM(se.instance_count)"
        " FROM studies st JOIN patients p ON p.patient_id = st.patient_id"
        " LEFT JOIN series se ON se.study_uid = st.study_uid"
        " GROUP BY st.study_uid ORDER BY st.study_uid",
        NULL, 0, &st, err);
    if (!rc && http_index_has_jobs(db))
        rc = covct_db_query(
            db,
            "SELECT se.study_uid, j.state, j.severity, j.category,"
            " j.series_uid FROM jobs j JOIN series se ON"
            " se.series_uid = j.series_uid ORDER BY se.study_uid, j.id",
            NULL, 0, &jb, err);
    wl_snap *s = NULL;
    size_t n = rc ? 0 : covct_db_rows(st);
    if (!rc && !(s = covct_calloc(1, sizeof *s)))
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "worklist: out of memory");
    if (!rc && n && !(s->rows = covct_calloc(n, sizeof *s->rows)))
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "worklist: out of memory for %zu studies", n);
    size_t j = 0, nj = covct_db_rows(jb);
    for (size_t i = 0; i < n && !rc; i++) {
        wl_row *w = &s->rows[i];
        const char *uid = covct_db_get(st, i, 0);
        w->uid = put_text(s, uid, err, &rc);
        w->patient_id = put_text(s, covct_db_get(st, i, 1), err, &rc);
        w->name = put_text(s, covct_db_get(st, i, 2), err, &rc);
        w->date = put_text(s, covct_db_get(st, i, 3), err, &rc);
        w->desc = put_text(s, covct_db_get(st, i, 4), err, &rc);
        w->acc = put_text(s, covct_db_get(st, i, 5), err, &rc);
        w->n_series = covct_db_get_int(st, i, 6, 0);
        w->n_instances =
            covct_db_get(st, i, 7) ? covct_db_get_int(st, i, 7, 0) : -1;
        /* the search text: the four searched fields, lower case, apart */
        w->hay = s->text.len;
        static const int searched[] = { 2, 1, 5, 4 };
        for (int f = 0; f < 4 && !rc; f++) {
            const char *v = covct_db_get(st, i, searched[f]);
            for (size_t k = 0; v && v[k] && !rc; k++) {
                char c = (char)tolower((unsigned char)v[k]);
                rc = covct_buf_append(&s->text, &c, 1, err);
            }
            if (!rc)
                rc = covct_buf_append(&s->text, f < 3 ? "\1" : "", 1, err);
        }
        /* its jobs: the state of each, and the most severe finished one */
        while (j < nj && strcmp(covct_db_get(jb, j, 0), uid) < 0)
            j++;
        unsigned states = 0;
        int best = -1;
        const char *cat = NULL, *ser = NULL;
        for (; j < nj && !strcmp(covct_db_get(jb, j, 0), uid); j++) {
            const char *state = covct_db_get(jb, j, 1);
            states |= state_bit(state);
            if (state && !strcmp(state, "done") && covct_db_get(jb, j, 2)) {
                int sev = (int)covct_db_get_int(jb, j, 2, -1);
                if (sev > best) {
                    best = sev;
                    cat = covct_db_get(jb, j, 3);
                    ser = covct_db_get(jb, j, 4);
                }
            }
        }
        w->severity = best;
        w->category = put_text(s, cat, err, &rc);
        w->series_uid = put_text(s, ser, err, &rc);
        w->ai_status = ai_status(states);
    }
    covct_db_result_free(st);
    covct_db_result_free(jb);
    if (rc) {
        if (s) {
            covct_free(s->rows);
            covct_buf_free(&s->text);
            covct_free(s);
        }
        return rc;
    }
    s->n = n;
    s->refs = 1;
    if (n)
        qsort_r(s->rows, n, sizeof *s->rows, row_cmp, s);
    *out = s;
    return COVCT_OK;
}

/* The current snapshot with a reference held, rebuilt first if the index
 * changed (or, while another thread rebuilds it, the previous one). */
static covct_rc snapshot(http_req *rq, wl_snap **out, covct_error *err)
{
    http_worklist *wl = rq->srv->worklist;
    covct_db *db = NULL;
    covct_rc rc = http_index(rq->srv, &db, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&wl->lock);
    int64_t v = 0;
    if ((!wl->watch &&
         (rc = covct_db_open(covct_store_index_path(rq->srv->cfg.store),
                             &wl->watch, err))) ||
        (rc = covct_db_query_int(wl->watch, "PRAGMA data_version", NULL, 0,
                                 &v, err))) {
        pthread_mutex_unlock(&wl->lock);
        return rc;
    }
    wl_snap *cur = wl->snap;
    bool fresh = cur && v == wl->version;
    /* rebuild here unless another thread is at it and there is an older
     * copy to answer from */
    bool mine = !fresh && (!wl->building || !cur);
    if (mine)
        wl->building = true;
    else
        cur->refs++;
    pthread_mutex_unlock(&wl->lock);
    if (!mine) {
        *out = cur;
        return COVCT_OK;
    }
    wl_snap *s = NULL;
    rc = build(db, &s, err);
    pthread_mutex_lock(&wl->lock);
    wl->building = false;
    wl_snap *old = NULL;
    if (!rc) {
        old = wl->snap;
        wl->snap = s;
        /* the version seen before reading: a commit during the build
         * makes the next request build again */
        wl->version = v;
        s->refs++;
    }
    pthread_mutex_unlock(&wl->lock);
    snap_unref(wl, old);
    *out = s;
    return rc;
}

http_worklist *http_worklist_new(void)
{
    http_worklist *wl = covct_calloc(1, sizeof *wl);
    if (wl)
        pthread_mutex_init(&wl->lock, NULL);
    return wl;
}

void http_worklist_free(http_worklist *wl)
{
    if (!wl)
        return;
    snap_unref(wl, wl->snap);
    covct_db_close(wl->watch);
    pthread_mutex_destroy(&wl->lock);
    covct_free(wl);
}

static void add_text(cJSON *o, const char *k, const wl_snap *s, size_t off)
{
    if (off == SIZE_MAX)
        cJSON_AddNullToObject(o, k);
    else
        cJSON_AddStringToObject(o, k, text(s, off));
}

int api_worklist(http_req *rq, http_resp *rs)
{
    long limit = http_query_long(rq, "limit", HTTP_PAGE_DEFAULT, 1, HTTP_PAGE_MAX),
         offset = http_query_long(rq, "offset", 0, 0, 1L << 30);
    const char *q = http_query(rq, "q"), *from = http_query(rq, "from"),
               *to = http_query(rq, "to");
    /* the search text matches any of patient name, patient ID, accession
     * number and study description, as a substring, ignoring ASCII case */
    char needle[200] = "";
    size_t nl = 0;
    for (; q && q[nl] && nl < sizeof needle - 1; nl++)
        needle[nl] = (char)tolower((unsigned char)q[nl]);
    needle[nl] = 0;
    if (from && !*from)
        from = NULL;
    if (to && !*to)
        to = NULL;
    covct_error err = { 0 };
    wl_snap *s = NULL;
    if (snapshot(rq, &s, &err))
        return http_error(rs, 503, "worklist: %s", err.msg);
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "studies");
    long skipped = 0, taken = 0;
    for (size_t i = 0; i < s->n && taken < limit; i++) {
        const wl_row *w = &s->rows[i];
        const char *date = text(s, w->date);
        /* a study without a date is outside every date range */
        if ((from || to) && w->date == SIZE_MAX)
            continue;
        if ((from && strcmp(date, from) < 0) || (to && strcmp(date, to) > 0))
            continue;
        if (nl && !strstr(text(s, w->hay), needle))
            continue;
        if (skipped < offset) {
            skipped++;
            continue;
        }
        cJSON *it = cJSON_CreateObject();
        add_text(it, "study_uid", s, w->uid);
        add_text(it, "patient_id", s, w->patient_id);
        add_text(it, "patient_name", s, w->name);
        add_text(it, "study_date", s, w->date);
        add_text(it, "description", s, w->desc);
        add_text(it, "accession", s, w->acc);
        cJSON_AddNumberToObject(it, "series", (double)w->n_series);
        if (w->n_instances < 0)
            cJSON_AddNullToObject(it, "instances");
        else
            cJSON_AddNumberToObject(it, "instances", (double)w->n_instances);
        if (w->severity < 0)
            cJSON_AddNullToObject(it, "severity");
        else
            cJSON_AddNumberToObject(it, "severity", w->severity);
        add_text(it, "category", s, w->category);
        add_text(it, "analysed_series", s, w->series_uid);
        cJSON_AddStringToObject(it, "ai_status", w->ai_status);
        cJSON_AddItemToArray(items, it);
        taken++;
    }
    snap_unref(rq->srv->worklist, s);
    cJSON_AddNumberToObject(o, "limit", (double)limit);
    cJSON_AddNumberToObject(o, "offset", (double)offset);
    return http_json(rs, 200, o);
}
