/* DICOMweb (PS3.18): QIDO-RS over the store's C-FIND matching, WADO-RS
 * from the stored files (multipart/related DICOM, DICOM JSON metadata
 * with a per-series cache, frames), STOW-RS into the store
 * (docs/internals/http.md, "DICOMweb"). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <jpeglib.h>

#include "covct/dicom.h"
#include "covct/image.h"
#include "covct/limits.h"
#include "http/dicomweb_int.h"
#include "http/http_int.h"
#include "http/meta.h"

#define QIDO_LIMIT_DEFAULT 1000
#define QIDO_LIMIT_MAX 10000
#define MAX_INCLUDE 64

/* Path parameter i up to its '/', into buf ("" when absent or not a
 * UID-like value). */
static const char *uid_param(const http_req *rq, size_t i, char *buf,
                             size_t cap)
{
    buf[0] = 0;
    if (i >= rq->n_params)
        return buf;
    size_t n = strcspn(rq->params[i], "/?");
    if (n >= cap || n > 64 || strspn(rq->params[i], "0123456789.") < n)
        return buf;
    memcpy(buf, rq->params[i], n);
    buf[n] = 0;
    return buf;
}

/* ---- QIDO-RS --------------------------------------------------------------- */
static const char *const study_keys[] = {
    "StudyDate",        "StudyTime",          "AccessionNumber",
    "ModalitiesInStudy", "ReferringPhysicianName", "PatientName",
    "PatientID",        "PatientBirthDate",   "PatientSex",
    "StudyInstanceUID", "StudyID",            "StudyDescription",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", NULL
};
static const char *const series_keys[] = {
    "Modality",          "SeriesDescription", "SeriesNumber",
    "SeriesInstanceUID", "NumberOfSeriesRelatedInstances",
    "StudyInstanceUID",  "BodyPartExamined",  NULL
};
static const char *const instance_keys[] = {
    "SOPClassUID", "SOPInstanceUID", "InstanceNumber", "StudyInstanceUID",
    "SeriesInstanceUID", "Rows", "Columns", "NumberOfFrames", NULL
};

/* A key of the identifier: its dictionary VR, the value given (may be
 * ""). */
static covct_rc add_key(covct_dcm_dataset *id, uint32_t tag,
                        const char *value, covct_error *err)
{
    const covct_dcm_dict_entry *e = covct_dcm_dict_lookup(tag);
    uint16_t vr = e ? e->vr : COVCT_VR('L', 'O');
    if (e && e->vr == COVCT_VR('x', 's'))
        vr = COVCT_VR('U', 'S');
    if (vr == COVCT_VR('S', 'Q'))
        return COVCT_OK; /* sequence matching: not offered */
    return covct_dcm_dataset_set_string(id, tag, vr, value ? value : "",
                                        err);
}

/* A query parameter name as a tag: a keyword ("PatientName") or 8 hex
 * digits ("00100010"); 0 when it is neither. */
static uint32_t key_tag(const char *name)
{
    size_t n = strlen(name);
    if (n == 8 && strspn(name, "0123456789abcdefABCDEF") == 8)
        return (uint32_t)strtoul(name, NULL, 16);
    return covct_dcm_dict_tag(name);
}

typedef struct qido_state {
    dicomjson_array arr;
    long offset, limit, seen, sent;
} qido_state;

static covct_rc qido_match(void *user, covct_dcm_dataset *m, covct_error *err)
{
    qido_state *q = user;
    covct_rc rc = COVCT_OK;
    if (q->seen++ >= q->offset) {
        if (q->sent >= q->limit)
            rc = COVCT_ERR(err, COVCT_ERR_NOT_FOUND, "limit reached");
        else if (!(rc = dicomjson_array_append(&q->arr, m, NULL, err)))
            q->sent++;
    }
    covct_dcm_dataset_free(m);
    return rc;
}

typedef struct query_args {
    const char *key[64], *value[64];
    size_t n;
} query_args;

static enum MHD_Result arg_cb(void *cls, enum MHD_ValueKind kind,
                              const char *key, const char *value)
{
    (void)kind;
    query_args *a = cls;
    if (a->n < 64) {
        a->key[a->n] = key;
        a->value[a->n++] = value ? value : "";
    }
    return MHD_YES;
}

static bool reserved_arg(const char *k)
{
    static const char *const r[] = { "includefield", "limit", "offset",
                                     "fuzzymatching", "access_token", NULL };
    for (size_t i = 0; r[i]; i++)
        if (!strcmp(k, r[i]))
            return true;
    return false;
}

/* includefield values (repeated, or comma lists) as return keys. */
static int include_fields(http_req *rq, http_resp *rs, covct_dcm_dataset *id,
                          covct_error *err)
{
    const char *inc[MAX_INCLUDE];
    size_t ninc = http_query_all(rq, "includefield", inc, MAX_INCLUDE);
    for (size_t i = 0; i < ninc; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", inc[i]);
        for (char *tok = buf, *next; tok && *tok; tok = next) {
            next = strchr(tok, ',');
            if (next)
                *next++ = 0;
            if (!strcmp(tok, "all"))
                continue;
            uint32_t t = key_tag(tok);
            if (!t) {
                http_error(rs, 400, "includefield: unknown attribute '%s'",
                           tok);
                return -1;
            }
            if (!covct_dcm_dataset_get(id, t) && add_key(id, t, "", err)) {
                http_error(rs, 500, "%s", err->msg);
                return -1;
            }
        }
    }
    return 0;
}

static int qido(http_req *rq, http_resp *rs, const char *level,
                const char *const *defaults)
{
    covct_store *store = rq->srv->cfg.store;
    if (!store)
        return http_error(rs, 404, "no DICOM store on this server");
    covct_error err = { 0 };
    covct_dcm_dataset *id = covct_dcm_dataset_new();
    if (!id)
        return http_error(rs, 500, "out of memory");
    char study[80], series[80];
    uid_param(rq, 0, study, sizeof study);
    uid_param(rq, 1, series, sizeof series);
    covct_rc rc = covct_dcm_dataset_set_string(
        id, 0x00080052, COVCT_VR('C', 'S'), level, &err);
    for (size_t i = 0; !rc && defaults[i]; i++)
        rc = add_key(id, covct_dcm_dict_tag(defaults[i]), "", &err);
    if (!rc && study[0])
        rc = add_key(id, 0x0020000D, study, &err);
    if (!rc && series[0])
        rc = add_key(id, 0x0020000E, series, &err);
    if (rc) {
        covct_dcm_dataset_free(id);
        return http_error(rs, 500, "%s", err.msg);
    }
    if (include_fields(rq, rs, id, &err)) {
        covct_dcm_dataset_free(id);
        return 0;
    }
    /* attribute matching: every other query parameter is a key; fuzzy
     * matching makes a person name a prefix (PS3.18 8.3.4.2: "may" match
     * more) */
    const char *fz = http_query(rq, "fuzzymatching");
    bool fuzzy = fz && !strcmp(fz, "true");
    query_args args = { 0 };
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, arg_cb,
                              &args);
    for (size_t i = 0; i < args.n && !rc; i++) {
        if (reserved_arg(args.key[i]))
            continue;
        uint32_t t = key_tag(args.key[i]);
        if (!t) {
            covct_dcm_dataset_free(id);
            return http_error(rs, 400, "unknown attribute '%s' in the query",
                              args.key[i]);
        }
        const covct_dcm_dict_entry *e = covct_dcm_dict_lookup(t);
        char v[256];
        snprintf(v, sizeof v, "%s", args.value[i]);
        size_t vl = strlen(v);
        if (fuzzy && e && e->vr == COVCT_VR('P', 'N') && !strchr(v, '*') &&
            vl < sizeof v - 1) {
            v[vl] = '*';
            v[vl + 1] = 0;
        }
        rc = add_key(id, t, v, &err);
    }
    long limit = QIDO_LIMIT_DEFAULT, offset = 0;
    const char *l = http_query(rq, "limit"), *o = http_query(rq, "offset");
    if (l)
        limit = strtol(l, NULL, 10);
    if (o)
        offset = strtol(o, NULL, 10);
    if (limit <= 0 || limit > QIDO_LIMIT_MAX)
        limit = QIDO_LIMIT_MAX;
    if (offset < 0)
        offset = 0;
    if (rc) {
        covct_dcm_dataset_free(id);
        return http_error(rs, 400, "%s", err.msg);
    }
    qido_state q = { .offset = offset, .limit = limit };
    rc = dicomjson_array_begin(&q.arr, &rs->body, &err);
    if (!rc)
        rc = covct_store_find(store, false, id, qido_match, &q, &err);
    covct_dcm_dataset_free(id);
    if (rc && rc != COVCT_ERR_NOT_FOUND) {
        rs->body.len = 0;
        return http_error(rs, rc == COVCT_ERR_ARG ? 400 : 500, "%s",
                          err.msg);
    }
    covct_error_clear(&err);
    dicomjson_array_end(&q.arr, &err);
    rs->status = 200;
    rs->type = "application/dicom+json";
    return 0;
}

int dw_qido_studies(http_req *rq, http_resp *rs)
{
    return qido(rq, rs, "STUDY", study_keys);
}

int dw_qido_series(http_req *rq, http_resp *rs)
{
    return qido(rq, rs, "SERIES", series_keys);
}

int dw_qido_instances(http_req *rq, http_resp *rs)
{
    /* /studies/{study}/instances has the study as its only parameter:
     * qido() reads parameter 1 as the series, empty here */
    return qido(rq, rs, "IMAGE", instance_keys);
}

/* ---- WADO-RS: the instances a path selects -------------------------------- */
typedef struct pick {
    char **paths;
    char **sops;
    size_t n, cap;
} pick;

static covct_rc pick_add(void *user, const char *path, const char *sop_class,
                         const char *sop_uid, covct_error *err)
{
    (void)sop_class;
    pick *p = user;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        char **a = covct_realloc(p->paths, cap * sizeof *a),
             **b = a ? covct_realloc(p->sops, cap * sizeof *b) : NULL;
        if (a)
            p->paths = a;
        if (b)
            p->sops = b;
        if (!a || !b)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        p->cap = cap;
    }
    if (!(p->paths[p->n] = covct_strdup(path)) ||
        !(p->sops[p->n] = covct_strdup(sop_uid))) {
        covct_free(p->paths[p->n]);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    p->n++;
    return COVCT_OK;
}

static void pick_free(pick *p)
{
    for (size_t i = 0; i < p->n; i++) {
        covct_free(p->paths[i]);
        covct_free(p->sops[i]);
    }
    covct_free(p->paths);
    covct_free(p->sops);
}

/* Select by the path's study / series / instance UIDs. */
static int select_path(http_req *rq, http_resp *rs, pick *p)
{
    covct_store *store = rq->srv->cfg.store;
    if (!store) {
        http_error(rs, 404, "no DICOM store on this server");
        return -1;
    }
    char uid[3][80];
    for (size_t i = 0; i < 3; i++)
        uid_param(rq, i, uid[i], sizeof uid[i]);
    for (size_t i = 0; i < rq->n_params && i < 3; i++)
        if (!uid[i][0]) {
            http_error(rs, 400, "not a UID in the path: %.80s",
                       rq->params[i]);
            return -1;
        }
    const char *level = uid[2][0] ? "IMAGE" : uid[1][0] ? "SERIES" : "STUDY";
    covct_error err = { 0 };
    covct_dcm_dataset *id = covct_dcm_dataset_new();
    covct_rc rc = id ? covct_dcm_dataset_set_string(
                           id, 0x00080052, COVCT_VR('C', 'S'), level, &err)
                     : COVCT_ERR_NOMEM;
    static const uint32_t tags[3] = { 0x0020000D, 0x0020000E, 0x00080018 };
    for (size_t i = 0; i < 3 && !rc; i++)
        if (uid[i][0])
            rc = covct_dcm_dataset_set_string(id, tags[i],
                                              COVCT_VR('U', 'I'), uid[i],
                                              &err);
    covct_store_flush(store); /* files of instances just acknowledged */
    if (!rc)
        rc = covct_store_select(store, false, id, pick_add, p, &err);
    covct_dcm_dataset_free(id);
    if (rc) {
        http_error(rs, 500, "%s", err.msg);
        return -1;
    }
    if (!p->n) {
        http_error(rs, 404, "nothing stored under %s", rq->path);
        return -1;
    }
    return 0;
}

/* Instances as multipart/related; type="application/dicom", as stored
 * (transfer syntax unchanged: the Accept header's transfer-syntax=* is
 * what covct offers; PS3.18 8.7.3.5). */
static int wado_files(http_req *rq, http_resp *rs)
{
    const char *accept = http_header_in(rq, MHD_HTTP_HEADER_ACCEPT);
    if (accept && !strstr(accept, "application/dicom") &&
        !strstr(accept, "*/*") && !strstr(accept, "multipart/related;") &&
        strcmp(accept, "multipart/related"))
        return http_error(rs, 406,
                          "instances are offered as multipart/related; "
                          "type=\"application/dicom\", not %s",
                          accept);
    if (accept && strstr(accept, "transfer-syntax=") &&
        !strstr(accept, "transfer-syntax=*"))
        return http_error(rs, 406,
                          "covct sends instances in their stored transfer "
                          "syntax: ask with transfer-syntax=*");
    pick p = { 0 };
    if (select_path(rq, rs, &p)) {
        pick_free(&p);
        return 0;
    }
    covct_error err = { 0 };
    char boundary[33];
    multipart_writer w;
    covct_rc rc = multipart_boundary_random(boundary, &err);
    if (!rc)
        rc = multipart_writer_init(&w, &rs->body, boundary, &err);
    for (size_t i = 0; i < p.n && !rc; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        if (!(rc = covct_file_read(p.paths[i], &data, &len, &err)) &&
            !(rc = multipart_writer_begin_part(&w, "application/dicom", NULL,
                                               &err)))
            rc = multipart_writer_append(&w, data, len, &err);
        covct_free(data);
    }
    if (!rc)
        rc = multipart_writer_finish(&w, &err);
    pick_free(&p);
    if (rc) {
        rs->body.len = 0;
        return http_error(rs, 500, "%s", err.msg);
    }
    snprintf(rs->type_buf, sizeof rs->type_buf,
             "multipart/related; type=\"application/dicom\"; boundary=%s",
             boundary);
    rs->type = rs->type_buf;
    rs->status = 200;
    return 0;
}

int dw_wado_study(http_req *rq, http_resp *rs) { return wado_files(rq, rs); }
int dw_wado_series(http_req *rq, http_resp *rs) { return wado_files(rq, rs); }
int dw_wado_instance(http_req *rq, http_resp *rs)
{
    return wado_files(rq, rs);
}

/* ---- metadata, cached per series ------------------------------------------ */
/* OHIF asks for a series' metadata first and often: the JSON of the last
 * series is kept, keyed by the selection (path) and the files' count and
 * newest modification, so a series still arriving is never served stale. */
#define META_CACHE 16

static struct {
    pthread_mutex_t lock;
    struct meta_entry {
        char key[600];
        size_t n_files;
        time_t newest;
        uint8_t *json;
        size_t len;
        time_t used;
    } e[META_CACHE];
} meta_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void files_stamp(const pick *p, time_t *newest)
{
    *newest = 0;
    for (size_t i = 0; i < p->n; i++) {
        struct stat st;
        if (stat(p->paths[i], &st) == 0 && st.st_mtime > *newest)
            *newest = st.st_mtime;
    }
}

static bool cache_get(const char *key, const pick *p, time_t newest,
                      covct_buf *out)
{
    bool hit = false;
    pthread_mutex_lock(&meta_cache.lock);
    for (size_t i = 0; i < META_CACHE && !hit; i++) {
        struct meta_entry *e = &meta_cache.e[i];
        if (e->json && !strcmp(e->key, key) && e->n_files == p->n &&
            e->newest == newest) {
            covct_error err = { 0 };
            hit = !covct_buf_append(out, e->json, e->len, &err);
            e->used = time(NULL);
        }
    }
    pthread_mutex_unlock(&meta_cache.lock);
    return hit;
}

static void cache_put(const char *key, const pick *p, time_t newest,
                      const covct_buf *json)
{
    uint8_t *copy = covct_malloc(json->len);
    if (!copy)
        return;
    memcpy(copy, json->data, json->len);
    pthread_mutex_lock(&meta_cache.lock);
    struct meta_entry *victim = &meta_cache.e[0];
    for (size_t i = 0; i < META_CACHE; i++) {
        struct meta_entry *e = &meta_cache.e[i];
        if (!strcmp(e->key, key) || !e->json) {
            victim = e;
            break;
        }
        if (e->used < victim->used)
            victim = e;
    }
    covct_free(victim->json);
    snprintf(victim->key, sizeof victim->key, "%s", key);
    victim->n_files = p->n;
    victim->newest = newest;
    victim->json = copy;
    victim->len = json->len;
    victim->used = time(NULL);
    pthread_mutex_unlock(&meta_cache.lock);
}

int dw_wado_metadata(http_req *rq, http_resp *rs)
{
    pick p = { 0 };
    if (select_path(rq, rs, &p)) {
        pick_free(&p);
        return 0;
    }
    time_t newest;
    files_stamp(&p, &newest);
    /* bulk data URIs are absolute: the cached JSON is per host name */
    const char *host = http_header_in(rq, "Host");
    char base[300], key[600];
    snprintf(base, sizeof base, "%s://%s", rq->srv->cfg.tls_cert ? "https"
                                                                  : "http",
             host && !strpbrk(host, "\"\\ /") ? host : "localhost");
    snprintf(key, sizeof key, "%s|%s", base, rq->path);
    rs->status = 200;
    rs->type = "application/dicom+json";
    if (cache_get(key, &p, newest, &rs->body)) {
        pick_free(&p);
        return 0;
    }
    /* not cached: each file's header only, on META_THREADS threads
     * (src/http/meta.c) */
    covct_error err = { 0 };
    covct_rc rc = meta_series_json(p.paths, p.n, base, &rs->body, &err);
    if (rc) {
        pick_free(&p);
        rs->body.len = 0;
        return http_error(rs, 500, "%s", err.msg);
    }
    cache_put(key, &p, newest, &rs->body);
    pick_free(&p);
    return 0;
}

/* Bulk data (PS3.18 8.4.1.5): the value of the element a BulkDataURI of
 * the metadata names, "TAG" or "TAG/ITEM/TAG/..." (0-based items), as
 * multipart/related; type="application/octet-stream". */
static covct_dcm_file *one_instance(http_req *rq, http_resp *rs);

int dw_wado_bulk(http_req *rq, http_resp *rs)
{
    if (rq->n_params < 4)
        return http_error(rs, 400, "bulk/TAG expected");
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)strcspn(rq->params[3], "?"),
             rq->params[3]);
    covct_dcm_file *f = one_instance(rq, rs);
    if (!f)
        return 0;
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    const covct_dcm_element *e = NULL;
    char *save = NULL;
    bool bad = false;
    for (char *tok = strtok_r(path, "/", &save); tok && !bad;
         tok = strtok_r(NULL, "/", &save)) {
        if (strlen(tok) != 8 || strspn(tok, "0123456789abcdefABCDEF") != 8) {
            bad = true;
            break;
        }
        e = ds ? covct_dcm_dataset_get(ds, (uint32_t)strtoul(tok, NULL, 16))
               : NULL;
        char *item = strtok_r(NULL, "/", &save);
        if (!item)
            break;
        char *end;
        unsigned long k = strtoul(item, &end, 10);
        ds = e && !*end && k < covct_dcm_element_item_count(e)
                 ? covct_dcm_element_item(e, (size_t)k)
                 : NULL;
        e = NULL;
    }
    size_t len = 0;
    const uint8_t *v = e && !bad ? covct_dcm_element_value(e, &len) : NULL;
    if (!v || covct_dcm_element_encapsulated(e)) {
        covct_dcm_file_free(f);
        return http_error(rs, 404, "no bulk data at %s", rq->params[3]);
    }
    covct_error err = { 0 };
    char boundary[33];
    multipart_writer w;
    covct_rc rc = multipart_boundary_random(boundary, &err);
    if (!rc)
        rc = multipart_writer_init(&w, &rs->body, boundary, &err);
    if (!rc)
        rc = multipart_writer_begin_part(&w, "application/octet-stream",
                                         NULL, &err);
    if (!rc)
        rc = multipart_writer_append(&w, v, len, &err);
    if (!rc)
        rc = multipart_writer_finish(&w, &err);
    covct_dcm_file_free(f);
    if (rc) {
        rs->body.len = 0;
        return http_error(rs, 500, "%s", err.msg);
    }
    snprintf(rs->type_buf, sizeof rs->type_buf,
             "multipart/related; type=\"application/octet-stream\"; "
             "boundary=%s",
             boundary);
    rs->type = rs->type_buf;
    rs->status = 200;
    return 0;
}

/* The one instance of an instance path, parsed (with pixel data). */
static covct_dcm_file *one_instance(http_req *rq, http_resp *rs)
{
    pick p = { 0 };
    if (select_path(rq, rs, &p)) {
        pick_free(&p);
        return NULL;
    }
    covct_dcm_file *f = NULL;
    covct_error err = { 0 };
    if (covct_dcm_file_read(p.paths[0], NULL, &f, &err))
        http_error(rs, 500, "%s", err.msg);
    pick_free(&p);
    return f;
}

/* Frame numbers "1,3,5" (1-based, PS3.18 10.4.1.1.4) into out. */
static size_t frame_list(const http_req *rq, uint32_t *out, size_t cap)
{
    if (rq->n_params < 4)
        return 0;
    const char *p = rq->params[3];
    size_t n = 0;
    while (*p && *p != '/' && *p != '?' && n < cap) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || v == 0 || v > UINT32_MAX)
            return 0;
        out[n++] = (uint32_t)v;
        p = end;
        if (*p == ',')
            p++;
        else if (*p && *p != '/' && *p != '?')
            return 0;
    }
    return n;
}

/* Frames as uncompressed pixel data (little endian, interleaved samples),
 * one part each: multipart/related; type="application/octet-stream". */
int dw_wado_frames(http_req *rq, http_resp *rs)
{
    uint32_t frames[256];
    size_t nf = frame_list(rq, frames, 256);
    if (!nf)
        return http_error(rs, 400, "frames: give 1-based frame numbers, "
                                   "e.g. .../frames/1,2");
    covct_dcm_file *f = one_instance(rq, rs);
    if (!f)
        return 0;
    covct_error err = { 0 };
    covct_dcm_pixel_info pi;
    covct_rc rc = covct_dcm_pixel_info_get(f, &pi, &err);
    if (rc) {
        covct_dcm_file_free(f);
        return http_error(rs, 400, "%s", err.msg);
    }
    for (size_t i = 0; i < nf; i++)
        if (frames[i] > pi.frames) {
            covct_dcm_file_free(f);
            return http_error(rs, 404, "frame %u of an instance with %u",
                              frames[i], pi.frames);
        }
    uint8_t *buf = covct_malloc(pi.frame_bytes ? pi.frame_bytes : 1);
    char boundary[33];
    multipart_writer w;
    if (!buf)
        rc = COVCT_ERR(&err, COVCT_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = multipart_boundary_random(boundary, &err);
    if (!rc)
        rc = multipart_writer_init(&w, &rs->body, boundary, &err);
    for (size_t i = 0; i < nf && !rc; i++) {
        if (!(rc = covct_dcm_pixel_decode_frame(f, &pi, frames[i] - 1, buf,
                                                pi.frame_bytes, &err)) &&
            !(rc = multipart_writer_begin_part(
                  &w, "application/octet-stream", NULL, &err)))
            rc = multipart_writer_append(&w, buf, pi.frame_bytes, &err);
    }
    if (!rc)
        rc = multipart_writer_finish(&w, &err);
    covct_free(buf);
    covct_dcm_file_free(f);
    if (rc) {
        rs->body.len = 0;
        return http_error(rs, rc == COVCT_ERR_UNSUPPORTED ? 406 : 500, "%s",
                          err.msg);
    }
    snprintf(rs->type_buf, sizeof rs->type_buf,
             "multipart/related; type=\"application/octet-stream\"; "
             "boundary=%s",
             boundary);
    rs->type = rs->type_buf;
    rs->status = 200;
    return 0;
}

/* The window: ?window=center,width[,linear] (PS3.18 8.3.5.1.3), else
 * the file's first Window Center/Width, else the frame's range. */
static void window_of(const http_req *rq, const covct_dcm_dataset *ds,
                      const double *v, size_t n, double *lo, double *hi)
{
    const char *w = http_query(rq, "window");
    double c = 0, wd = 0;
    if (w) {
        char *end;
        c = strtod(w, &end);
        if (*end == ',')
            wd = strtod(end + 1, NULL);
    }
    if (wd <= 0) {
        covct_error e = { 0 };
        if (covct_dcm_get_double(ds, 0x00281050, 0, &c, &e) ||
            covct_dcm_get_double(ds, 0x00281051, 0, &wd, &e))
            wd = 0;
    }
    if (wd > 0) {
        *lo = c - wd / 2;
        *hi = c + wd / 2;
        return;
    }
    *lo = n ? v[0] : 0;
    *hi = *lo + 1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < *lo)
            *lo = v[i];
        if (v[i] > *hi)
            *hi = v[i];
    }
}

/* An 8-bit grey image as baseline JPEG (libjpeg-turbo), quality 90. */
static covct_rc encode_jpeg(const covct_image *img, covct_buf *out,
                            covct_error *err)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *mem = NULL;
    unsigned long size = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = img->width;
    c.image_height = img->height;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = img->pixels + (size_t)c.next_scanline * img->width;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    covct_rc rc = covct_buf_append(out, mem, size, err);
    free(mem);
    return rc;
}

/* What an Accept header (RFC 9110 12.5.1: media ranges separated by
 * commas, each with optional parameters, "q=0" meaning "not this") allows
 * of what /rendered makes: PNG through image/png, "image/star" or
 * "star/star"; JPEG through image/jpeg.  JPEG is chosen only when JPEG is
 * named and neither image/png nor "star/star" is, as before.  False when nothing covct renders is
 * acceptable. */
static bool rendered_type(const char *accept, bool *jpeg)
{
    *jpeg = false;
    if (!accept || !accept[strspn(accept, " \t")])
        return true; /* no preference: PNG */
    bool png = false, wild = false, any = false, jpg = false;
    for (const char *r = accept; *r;) {
        size_t n = strcspn(r, ",");
        char range[128];
        snprintf(range, sizeof range, "%.*s", (int)(n < 127 ? n : 127), r);
        r += n + (r[n] == ',');
        /* q=0 refuses the range; other parameters do not matter here */
        const char *q = strchr(range, ';');
        bool refused = false;
        if (q) {
            const char *qv = strstr(q, "q=");
            if (qv && strtod(qv + 2, NULL) <= 0)
                refused = true;
            range[q - range] = 0;
        }
        char *t = range + strspn(range, " \t");
        size_t tl = strlen(t);
        while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t'))
            t[--tl] = 0;
        if (refused)
            continue;
        if (!strcasecmp(t, "image/png"))
            png = true;
        else if (!strcasecmp(t, "image/jpeg"))
            jpg = true;
        else if (!strcasecmp(t, "image/*"))
            wild = true;
        else if (!strcmp(t, "*/*"))
            any = true;
    }
    *jpeg = jpg && !png && !any;
    return png || jpg || wild || any;
}

/* A frame as a grey PNG (or JPEG when the client asks only for
 * image/jpeg), rescaled (Rescale Slope/Intercept) and
 * windowed: for viewers that cannot decode DICOM. */
int dw_wado_rendered(http_req *rq, http_resp *rs)
{
    /* PS3.18 8.7 and RFC 9110 15.5.7: an Accept header that allows no
     * media type covct renders is answered 406 Not Acceptable, before
     * anything is read */
    const char *accept = http_header_in(rq, MHD_HTTP_HEADER_ACCEPT);
    bool jpeg;
    if (!rendered_type(accept, &jpeg))
        return http_error(rs, 406,
                          "rendered instances are offered as image/png or "
                          "image/jpeg, not %.200s",
                          accept);
    covct_dcm_file *f = one_instance(rq, rs);
    if (!f)
        return 0;
    covct_error err = { 0 };
    covct_dcm_pixel_info pi;
    covct_rc rc = covct_dcm_pixel_info_get(f, &pi, &err);
    if (!rc && (pi.samples != 1 || pi.float_bits))
        rc = COVCT_ERR(&err, COVCT_ERR_UNSUPPORTED,
                       "rendering is for grey integer images (this one has "
                       "%u samples per pixel)",
                       pi.samples);
    size_t n = (size_t)pi.rows * pi.cols;
    uint8_t *raw = rc ? NULL : covct_malloc(pi.frame_bytes);
    double *v = rc ? NULL : covct_malloc(n * sizeof *v);
    covct_image img = { 0 };
    if (!rc && (!raw || !v))
        rc = COVCT_ERR(&err, COVCT_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = covct_dcm_pixel_decode_frame(f, &pi, 0, raw, pi.frame_bytes,
                                          &err);
    if (!rc) {
        const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
        double slope = 1, icpt = 0;
        covct_error e = { 0 };
        if (covct_dcm_get_double(ds, 0x00281053, 0, &slope, &e))
            slope = 1;
        if (covct_dcm_get_double(ds, 0x00281052, 0, &icpt, &e))
            icpt = 0;
        for (size_t i = 0; i < n; i++) {
            double x;
            if (pi.out_bytes == 1)
                x = pi.pixel_rep ? (double)((int8_t *)raw)[i] : raw[i];
            else if (pi.out_bytes == 2)
                x = pi.pixel_rep ? (double)((int16_t *)raw)[i]
                                 : (double)((uint16_t *)raw)[i];
            else if (pi.pixel_rep)
                x = ((int32_t *)raw)[i];
            else
                x = ((uint32_t *)raw)[i];
            v[i] = x * slope + icpt;
        }
        double lo, hi;
        window_of(rq, ds, v, n, &lo, &hi);
        img.width = pi.cols;
        img.height = pi.rows;
        img.pixels = covct_malloc(n);
        if (!img.pixels)
            rc = COVCT_ERR(&err, COVCT_ERR_NOMEM, "out of memory");
        bool invert = !strcmp(pi.out_photometric, "MONOCHROME1");
        for (size_t i = 0; !rc && i < n; i++) {
            double t = (v[i] - lo) / (hi - lo);
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            img.pixels[i] = (uint8_t)lround((invert ? 1 - t : t) * 255);
        }
    }
    if (!rc)
        rc = jpeg ? encode_jpeg(&img, &rs->body, &err)
                  : covct_image_encode_png(&img, &rs->body, &err);
    covct_image_free(&img);
    covct_free(raw);
    covct_free(v);
    covct_dcm_file_free(f);
    if (rc) {
        rs->body.len = 0;
        return http_error(rs, rc == COVCT_ERR_UNSUPPORTED ? 406 : 500, "%s",
                          err.msg);
    }
    rs->type = jpeg ? "image/jpeg" : "image/png";
    rs->status = 200;
    return 0;
}

/* ---- STOW-RS --------------------------------------------------------------- */
typedef struct stow_state {
    http_req *rq;
    const char *study; /* the path's study, "" for any */
    cJSON *ok, *failed;
    size_t n_ok, n_failed;
} stow_state;

static void stow_item(cJSON *arr, const char *cls, const char *sop,
                      int reason, const char *url)
{
    cJSON *it = cJSON_CreateObject();
    /* PS3.18 F.2.5: an attribute without a value (a part whose UIDs
     * could not be read) has its "vr" and no "Value", not "Value": [] */
    cJSON *c = cJSON_AddObjectToObject(it, "00081150");
    cJSON_AddStringToObject(c, "vr", "UI");
    if (cls[0])
        cJSON_AddItemToObject(c, "Value", cJSON_CreateStringArray(&cls, 1));
    cJSON *s = cJSON_AddObjectToObject(it, "00081155");
    cJSON_AddStringToObject(s, "vr", "UI");
    if (sop[0])
        cJSON_AddItemToObject(s, "Value", cJSON_CreateStringArray(&sop, 1));
    if (reason) {
        cJSON *r = cJSON_AddObjectToObject(it, "00081197");
        cJSON_AddStringToObject(r, "vr", "US");
        cJSON_AddItemToObject(r, "Value", cJSON_CreateIntArray(&reason, 1));
    }
    if (url) {
        cJSON *u = cJSON_AddObjectToObject(it, "00081190");
        cJSON_AddStringToObject(u, "vr", "UR");
        cJSON_AddItemToObject(u, "Value", cJSON_CreateStringArray(&url, 1));
    }
    cJSON_AddItemToArray(arr, it);
}

static covct_rc stow_part(const multipart_part *part, void *user,
                          covct_error *err)
{
    (void)err;
    stow_state *st = user;
    char cls[65] = "", sop[65] = "", study[65] = "", ts[65] = "";
    const char *ct = part->content_type;
    if (ct[0] && strncasecmp(ct, "application/dicom", 17)) {
        /* PS3.18 10.5.3: a part that is not a DICOM instance fails */
        stow_item(st->failed, "", "", 0xC000, NULL);
        st->n_failed++;
        return COVCT_OK;
    }
    covct_error e = { 0 };
    size_t data_off = 0;
    covct_dcm_meta_peek(part->body, part->body_len, cls, sop, ts, &data_off,
                        &e);
    uint8_t *copy = covct_malloc(part->body_len ? part->body_len : 1);
    if (!copy) {
        stow_item(st->failed, cls, sop, 0xA700, NULL); /* out of resources */
        st->n_failed++;
        return COVCT_OK;
    }
    memcpy(copy, part->body, part->body_len);
    covct_store_result res;
    covct_store_info info;
    covct_rc rc = covct_store_put(st->rq->srv->cfg.store, copy,
                                  part->body_len,
                                  st->rq->srv->cfg.ae_title, &res, &info,
                                  &e);
    if (!rc && st->study[0] && strcmp(info.study_uid, st->study)) {
        /* stored, but not in the study the client named: say so */
        stow_item(st->failed, info.sop_class_uid, info.sop_instance_uid,
                  0xA900, NULL);
        st->n_failed++;
        return COVCT_OK;
    }
    if (rc) {
        covct_log(COVCT_LOG_WARN, "STOW-RS from %s: part %zu refused: %s",
                  st->rq->user, part->index, e.msg);
        stow_item(st->failed, cls, sop,
                  rc == COVCT_ERR_CORRUPT ? 0xC000 : 0xA700, NULL);
        st->n_failed++;
        return COVCT_OK;
    }
    (void)study;
    char url[400];
    snprintf(url, sizeof url, "/dicom-web/studies/%s/series/%s/instances/%s",
             info.study_uid, info.series_uid, info.sop_instance_uid);
    stow_item(st->ok, info.sop_class_uid, info.sop_instance_uid, 0, url);
    st->n_ok++;
    return COVCT_OK;
}

int dw_stow(http_req *rq, http_resp *rs)
{
    if (!rq->srv->cfg.store)
        return http_error(rs, 404, "no DICOM store on this server");
    const char *ct = http_header_in(rq, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || strncasecmp(ct, "multipart/related", 17))
        return http_error(rs, 415,
                          "STOW-RS takes multipart/related; "
                          "type=\"application/dicom\"");
    char study[80];
    uid_param(rq, 0, study, sizeof study);
    stow_state st = { .rq = rq, .study = study,
                      .ok = cJSON_CreateArray(),
                      .failed = cJSON_CreateArray() };
    covct_error err = { 0 };
    covct_rc rc = multipart_parse(rq->body, rq->body_len, ct, stow_part, &st,
                                  &err);
    if (rc) {
        cJSON_Delete(st.ok);
        cJSON_Delete(st.failed);
        return http_error(rs, 400, "%s", err.msg);
    }
    /* the response data set (PS3.18 10.5.3): Referenced SOP Sequence,
     * Failed SOP Sequence */
    cJSON *o = cJSON_CreateObject();
    if (st.n_ok) {
        cJSON *seq = cJSON_AddObjectToObject(o, "00081199");
        cJSON_AddStringToObject(seq, "vr", "SQ");
        cJSON_AddItemToObject(seq, "Value", st.ok);
    } else {
        cJSON_Delete(st.ok);
    }
    if (st.n_failed) {
        cJSON *seq = cJSON_AddObjectToObject(o, "00081198");
        cJSON_AddStringToObject(seq, "vr", "SQ");
        cJSON_AddItemToObject(seq, "Value", st.failed);
    } else {
        cJSON_Delete(st.failed);
    }
    http_json(rs, !st.n_failed ? 200 : st.n_ok ? 202 : 409, o);
    rs->type = "application/dicom+json";
    char detail[128];
    snprintf(detail, sizeof detail, "{\"stored\":%zu,\"failed\":%zu}",
             st.n_ok, st.n_failed);
    http_audit(rq, "stow", study[0] ? study : "studies", detail);
    return 0;
}
