/* What the study page and the labelling tools read and write
 * (docs/internals/pages-api.md): the CT volume, label versions as
 * volumes, new label versions, the readers' agreement, clinical labels.
 *
 * Blind reading: outside adjudication a user sees the AI's drafts, final
 * and imported labels and his own versions, never another reader's; the
 * adjudication view (?adjudicate=1) needs label.adjudicate and is refused
 * to the readers of that series. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/volume.h"
#include "http/http_int.h"

#define PATH_CAP 4200


static int kind_max(const char *kind)
{
    return !strcmp(kind, "lesions") ? 2
           : !strcmp(kind, "lobes") ? 5
           : !strcmp(kind, "lungs") ? 2
                                    : -1;
}

static const char *store_dir(const http_req *rq)
{
    return rq->srv->cfg.store ? covct_store_dir(rq->srv->cfg.store)
                              : rq->srv->data_dir;
}

/* The folder of a series' files in the store. */
static covct_rc series_dir(http_req *rq, const char *uid, char *out,
                           size_t cap, covct_error *err)
{
    covct_db *db = NULL;
    covct_rc rc = http_index(rq->srv, &db, err);
    covct_db_result *r = NULL;
    if (!rc)
        rc = covct_db_query(db,
                            "SELECT path FROM instances WHERE series_uid = $1"
                            " LIMIT 1",
                            (covct_db_param[]){ COVCT_DB_TEXT(uid) }, 1, &r,
                            err);
    if (!rc && !covct_db_rows(r))
        rc = COVCT_ERR(err, COVCT_ERR_NOT_FOUND, "no series %s", uid);
    if (!rc) {
        snprintf(out, cap, "%s/%s", store_dir(rq), covct_db_get(r, 0, 0));
        char *slash = strrchr(out, '/');
        if (slash)
            *slash = 0;
    }
    covct_db_result_free(r);
    return rc;
}

/* ---- the volume, cached as raw int16 under DIR/cache/ ------------------- */
typedef struct vol_meta {
    uint32_t nx, ny, nz;
    double sp[3];
    double affine[4][4]; /* voxel -> LPS mm, for the masks readers save */
} vol_meta;

static void cache_paths(http_req *rq, const char *uid, char raw[PATH_CAP],
                        char meta[PATH_CAP])
{
    snprintf(raw, PATH_CAP, "%s/cache/volumes/%s.i16", store_dir(rq), uid);
    snprintf(meta, PATH_CAP, "%s/cache/volumes/%s.txt", store_dir(rq), uid);
}

static bool read_meta(const char *path, vol_meta *m)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[1024] = "";
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    char *p = line, *end;
    unsigned long v[3];
    for (int i = 0; ok && i < 3; i++) {
        v[i] = strtoul(p, &end, 10);
        ok = end != p && v[i] > 0 && v[i] < 65536;
        p = end;
    }
    for (int i = 0; ok && i < 3; i++) {
        m->sp[i] = strtod(p, &end);
        ok = end != p && m->sp[i] > 0;
        p = end;
    }
    /* then the affine, row by row (a cache written without it is
     * rebuilt) */
    for (int i = 0; ok && i < 16; i++) {
        m->affine[i / 4][i % 4] = strtod(p, &end);
        ok = end != p;
        p = end;
    }
    if (ok) {
        m->nx = (uint32_t)v[0];
        m->ny = (uint32_t)v[1];
        m->nz = (uint32_t)v[2];
    }
    return ok;
}

static covct_rc build_cache(http_req *rq, const char *uid, vol_meta *m,
                            covct_error *err)
{
    char dir[PATH_CAP], raw[PATH_CAP], meta[PATH_CAP], sub[PATH_CAP];
    covct_rc rc = series_dir(rq, uid, dir, sizeof dir, err);
    if (rc)
        return rc;
    covct_store_flush(rq->srv->cfg.store);
    covct_volume *v = NULL;
    if ((rc = covct_volume_load_path(dir, 2, &v, err)))
        return rc;
    size_t n = covct_volume_voxels(v);
    int16_t *data = covct_malloc(n * sizeof *data);
    if (!data) {
        covct_volume_free(v);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        double x = v->dtype == COVCT_DTYPE_INT16 ? ((int16_t *)v->data)[i]
                                                 : ((float *)v->data)[i];
        data[i] = (int16_t)(x < -32768 ? -32768 : x > 32767 ? 32767 : lround(x));
    }
    m->nx = v->nx;
    m->ny = v->ny;
    m->nz = v->nz;
    memcpy(m->sp, v->spacing, sizeof m->sp);
    memcpy(m->affine, v->affine, sizeof m->affine);
    covct_volume_free(v);
    /* a folder that cannot be made fails the writes below, which say so */
    snprintf(sub, sizeof sub, "%s/cache/volumes", store_dir(rq));
    covct_mkdirs(sub, 0750, NULL);
    cache_paths(rq, uid, raw, meta);
    char text[1024];
    int tl = snprintf(text, sizeof text, "%u %u %u %.6f %.6f %.6f", m->nx,
                      m->ny, m->nz, m->sp[0], m->sp[1], m->sp[2]);
    for (int i = 0; i < 16; i++)
        tl += snprintf(text + tl, sizeof text - (size_t)tl, " %.17g",
                       m->affine[i / 4][i % 4]);
    tl += snprintf(text + tl, sizeof text - (size_t)tl, "\n");
    rc = covct_file_write_bytes(raw, data, n * sizeof *data, err);
    if (!rc)
        rc = covct_file_write_bytes(meta, text, (size_t)tl, err);
    covct_free(data);
    return rc;
}

static void dims_headers(http_resp *rs, const vol_meta *m)
{
    char h[200];
    snprintf(h, sizeof h, "%u,%u,%u", m->nx, m->ny, m->nz);
    http_header(rs, "X-Covct-Dims", h);
    snprintf(h, sizeof h, "%.6f,%.6f,%.6f", m->sp[0], m->sp[1], m->sp[2]);
    http_header(rs, "X-Covct-Spacing", h);
}

static covct_rc volume_meta(http_req *rq, const char *uid, vol_meta *m,
                            covct_error *err)
{
    char raw[PATH_CAP], meta[PATH_CAP];
    cache_paths(rq, uid, raw, meta);
    if (read_meta(meta, m) && access(raw, R_OK) == 0)
        return COVCT_OK;
    return build_cache(rq, uid, m, err);
}

int api_volume(http_req *rq, http_resp *rs)
{
    char uid[80], raw[PATH_CAP], meta[PATH_CAP];
    http_param(rq, 0, uid, sizeof uid);
    if (!http_uid_ok(uid))
        return http_error(rs, 400, "'%s' is not a UID", uid);
    vol_meta m;
    covct_error err = { 0 };
    covct_rc rc = volume_meta(rq, uid, &m, &err);
    if (rc)
        return http_error(rs, rc == COVCT_ERR_NOT_FOUND ? 404 : 500, "%s",
                          err.msg);
    cache_paths(rq, uid, raw, meta);
    rs->file = covct_strdup(raw);
    rs->type = "application/octet-stream";
    rs->status = 200;
    dims_headers(rs, &m);
    return 0;
}

/* ---- label versions --------------------------------------------------------- */
static covct_rc case_series(http_req *rq, const char *uid, int64_t *id,
                            covct_error *err)
{
    covct_rc rc = covct_db_query_int(
        covct_site_db(rq->site), "SELECT id FROM series WHERE series_uid = $1",
        (covct_db_param[]){ COVCT_DB_TEXT(uid) }, 1, id, err);
    if (rc == COVCT_ERR_NOT_FOUND) {
        covct_error_clear(err);
        rc = COVCT_ERR(err, rc,
                       "series %s is not in the case database yet (it is "
                       "recorded when its analysis is done)",
                       uid);
    }
    return rc;
}

/* Whether this request may see every reader's versions of the series:
 * asked with ?adjudicate=1, allowed to adjudicate, and not one of its
 * readers.  -1: asked but refused (a message is set). */
static int adjudicating(http_req *rq, http_resp *rs, int64_t series_id)
{
    const char *a = http_query(rq, "adjudicate");
    if (!a || strcmp(a, "1"))
        return 0;
    if (!covct_role_may(rq->role, "label.adjudicate")) {
        http_error(rs, 403, "%s (role %s) may not adjudicate", rq->user,
                   rq->role);
        return -1;
    }
    char me[96];
    snprintf(me, sizeof me, "user:%s", rq->user);
    int64_t n = 0;
    covct_error err = { 0 };
    if (covct_db_query_int(covct_site_db(rq->site),
                           "SELECT COUNT(*) FROM image_labels WHERE"
                           " series_id = $1 AND source = $2 AND status IN"
                           " ('reader-1', 'reader-2')",
                           (covct_db_param[]){ COVCT_DB_INT(series_id),
                                               COVCT_DB_TEXT(me) },
                           2, &n, &err) ||
        n) {
        http_error(rs, 403,
                   "%s read this series: a reader cannot adjudicate his own "
                   "reading",
                   rq->user);
        return -1;
    }
    return 1;
}

/* The SQL condition of the versions this request may see ($2: the
 * user's "user:NAME"). */
static const char *visible(int adjudicate)
{
    return adjudicate ? "1 = 1"
                      : "(status IN ('ai-draft', 'final', 'imported') OR"
                        " source = $2)";
}

int api_mask_get(http_req *rq, http_resp *rs)
{
    char uid[80], kind[32], me[96];
    http_param(rq, 0, uid, sizeof uid);
    http_param(rq, 1, kind, sizeof kind);
    if (!http_uid_ok(uid) || kind_max(kind) < 0)
        return http_error(rs, 400, "use /api/series/UID/mask/lesions|lobes|"
                                   "lungs");
    covct_error err = { 0 };
    int64_t sid = 0;
    if (case_series(rq, uid, &sid, &err))
        return http_error(rs, 404, "%s", err.msg);
    int adj = adjudicating(rq, rs, sid);
    if (adj < 0)
        return 0;
    snprintf(me, sizeof me, "user:%s", rq->user);
    const char *vs = http_query(rq, "version");
    int64_t version = vs ? strtoll(vs, NULL, 10) : 0;
    char sql[600];
    snprintf(sql, sizeof sql,
             "SELECT id, path, status FROM image_labels WHERE series_id = $1"
             " AND %s AND kind = $3 AND ($4 = 0 OR id = $4) ORDER BY id DESC"
             " LIMIT 1",
             visible(adj));
    covct_db_result *r = NULL;
    if (covct_db_query(covct_site_db(rq->site), sql,
                       (covct_db_param[]){ COVCT_DB_INT(sid),
                                           COVCT_DB_TEXT(me),
                                           COVCT_DB_TEXT(kind),
                                           COVCT_DB_INT(version) },
                       4, &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    if (!covct_db_rows(r)) {
        covct_db_result_free(r);
        return http_error(rs, 404, "no %s label you may see for series %s",
                          kind, uid);
    }
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", store_dir(rq), covct_db_get(r, 0, 1));
    covct_volume *v = NULL;
    if (covct_nifti_read(path, &v, &err)) {
        covct_db_result_free(r);
        return http_error(rs, 500, "%s", err.msg);
    }
    size_t n = covct_volume_voxels(v);
    covct_rc rc = covct_buf_reserve(&rs->body, n, &err);
    for (size_t i = 0; !rc && i < n; i++) {
        double x = v->dtype == COVCT_DTYPE_INT16 ? ((int16_t *)v->data)[i]
                                                 : ((float *)v->data)[i];
        rs->body.data[i] = (uint8_t)(x <= 0 ? 0 : x >= 255 ? 255 : lround(x));
    }
    if (!rc)
        rs->body.len = n;
    vol_meta m = { v->nx, v->ny, v->nz,
                   { v->spacing[0], v->spacing[1], v->spacing[2] }, { { 0 } } };
    covct_volume_free(v);
    if (rc) {
        covct_db_result_free(r);
        return http_error(rs, 500, "%s", err.msg);
    }
    rs->status = 200;
    rs->type = "application/octet-stream";
    dims_headers(rs, &m);
    http_header(rs, "X-Covct-Label-Id", covct_db_get(r, 0, 0));
    http_header(rs, "X-Covct-Label-Status", covct_db_get(r, 0, 2));
    covct_db_result_free(r);
    return 0;
}

int api_mask_post(http_req *rq, http_resp *rs)
{
    char uid[80], kind[32];
    http_param(rq, 0, uid, sizeof uid);
    http_param(rq, 1, kind, sizeof kind);
    int max = kind_max(kind);
    if (!http_uid_ok(uid) || max < 0)
        return http_error(rs, 400, "use /api/series/UID/mask/lesions|lobes|"
                                   "lungs");
    const char *status = http_query(rq, "status");
    if (!status || (strcmp(status, COVCT_LABEL_READER1) &&
                    strcmp(status, COVCT_LABEL_READER2) &&
                    strcmp(status, COVCT_LABEL_FINAL)))
        return http_error(rs, 400, "say ?status=reader-1, reader-2 or final");
    covct_error err = { 0 };
    int64_t sid = 0;
    if (case_series(rq, uid, &sid, &err))
        return http_error(rs, 404, "%s", err.msg);
    vol_meta m;
    covct_rc rc = volume_meta(rq, uid, &m, &err);
    if (rc)
        return http_error(rs, 500, "%s", err.msg);
    size_t n = (size_t)m.nx * m.ny * m.nz;
    if (rq->body_len != n)
        return http_error(rs, 400,
                          "the mask has %zu bytes; the volume has %u x %u x "
                          "%u = %zu voxels",
                          rq->body_len, m.nx, m.ny, m.nz, n);
    for (size_t i = 0; i < n; i++)
        if (rq->body[i] > max)
            return http_error(rs, 400,
                              "voxel %zu has label %u; %s labels go up to %d",
                              i, rq->body[i], kind, max);
    /* the geometry of the source series (kept with the cached volume), so
     * the file opens in any NIfTI viewer on top of the CT */
    covct_volume *mask = NULL;
    if ((rc = covct_volume_new(m.nx, m.ny, m.nz, COVCT_DTYPE_INT16, &mask,
                               &err)))
        return http_error(rs, 500, "%s", err.msg);
    memcpy(mask->spacing, m.sp, sizeof mask->spacing);
    memcpy(mask->affine, m.affine, sizeof mask->affine);
    for (size_t i = 0; i < n; i++)
        ((int16_t *)mask->data)[i] = rq->body[i];
    char rel[PATH_CAP], path[PATH_CAP * 2], sha[65], sub[PATH_CAP];
    snprintf(sub, sizeof sub, "%s/labels/%s", store_dir(rq), uid);
    covct_mkdirs(sub, 0750, NULL); /* else the write below fails and says so */
    char stamp[COVCT_DB_TIME_LEN];
    covct_db_now(stamp);
    for (char *c = stamp; *c; c++)
        if (*c == ':' || *c == '.')
            *c = '-';
    snprintf(rel, sizeof rel, "labels/%s/%s-%s-%s.nii.gz", uid, kind, stamp,
             rq->user);
    snprintf(path, sizeof path, "%s/%s", store_dir(rq), rel);
    rc = covct_nifti_write(mask, path, &err);
    covct_volume_free(mask);
    if (!rc)
        rc = covct_sha256_file(path, sha, &err);
    const char *ps = http_query(rq, "parent");
    int64_t parent = ps ? strtoll(ps, NULL, 10) : 0, id = 0;
    if (!rc)
        rc = covct_label_image_add(rq->site, sid, kind, status, "reader",
                                   NULL, rel, sha, parent, &id, &err);
    if (rc) {
        unlink(path);
        return http_error(rs, rc == COVCT_ERR_ARG ? 409 : 500, "%s", err.msg);
    }
    return http_created(rs, id);
}

int api_agreement(http_req *rq, http_resp *rs)
{
    char uid[80];
    http_param(rq, 0, uid, sizeof uid);
    covct_error err = { 0 };
    int64_t sid = 0;
    if (case_series(rq, uid, &sid, &err))
        return http_error(rs, 404, "%s", err.msg);
    if (adjudicating(rq, rs, sid) < 0)
        return 0;
    covct_agreement a;
    if (covct_agreement_compute(rq->site, sid, &a, &err))
        return http_error(rs, 500, "%s", err.msg);
    cJSON *o = cJSON_CreateObject();
    if (a.n_masks) {
        cJSON *d = cJSON_AddArrayToObject(o, "dice");
        for (int c = 0; c < 3; c++)
            cJSON_AddItemToArray(d, isnan(a.masks[0].dice[c])
                                        ? cJSON_CreateNull()
                                        : cJSON_CreateNumber(a.masks[0].dice[c]));
        cJSON_AddNumberToObject(o, "reader1_label", (double)a.masks[0].label_a);
        cJSON_AddNumberToObject(o, "reader2_label", (double)a.masks[0].label_b);
    } else {
        cJSON_AddNullToObject(o, "dice");
    }
    covct_agreement_free(&a);
    return http_json(rs, 200, o);
}

int api_clinical_post(http_req *rq, http_resp *rs)
{
    char cid[32];
    http_param(rq, 0, cid, sizeof cid);
    int64_t case_id = strtoll(cid, NULL, 10);
    cJSON *in = cJSON_ParseWithLength((const char *)rq->body, rq->body_len);
    if (!in || case_id <= 0) {
        cJSON_Delete(in);
        return http_error(rs, 400, "send a JSON object to "
                                   "/api/cases/CASE_ID/clinical");
    }
    cJSON *sev = cJSON_GetObjectItem(in, "severity");
    covct_clinical_label l = {
        cJSON_GetStringValue(cJSON_GetObjectItem(in, "diagnosis")),
        cJSON_IsNumber(sev) ? (int)sev->valuedouble : -1,
        cJSON_GetStringValue(cJSON_GetObjectItem(in, "outcome")),
        cJSON_GetStringValue(cJSON_GetObjectItem(in, "category")),
        cJSON_GetStringValue(cJSON_GetObjectItem(in, "comment"))
    };
    const char *status =
        cJSON_GetStringValue(cJSON_GetObjectItem(in, "status"));
    cJSON *parent = cJSON_GetObjectItem(in, "parent");
    int64_t id = 0;
    covct_error err = { 0 };
    covct_rc rc = covct_label_clinical_add(
        rq->site, case_id, &l, status ? status : COVCT_LABEL_READER1,
        cJSON_IsNumber(parent) ? (int64_t)parent->valuedouble : 0, &id, &err);
    cJSON_Delete(in);
    if (rc)
        return http_error(rs, rc == COVCT_ERR_ARG ? 400 : 500, "%s", err.msg);
    return http_created(rs, id);
}

int api_labels(http_req *rq, http_resp *rs)
{
    char uid[80], me[96], sql[600];
    http_param(rq, 0, uid, sizeof uid);
    covct_error err = { 0 };
    int64_t sid = 0;
    if (case_series(rq, uid, &sid, &err)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "labels", cJSON_CreateArray());
        return http_json(rs, 200, o);
    }
    int adj = adjudicating(rq, rs, sid);
    if (adj < 0)
        return 0;
    snprintf(me, sizeof me, "user:%s", rq->user);
    snprintf(sql, sizeof sql,
             "SELECT id, kind, status, source_kind, source, parent_id,"
             " sha256, created_at FROM image_labels WHERE series_id = $1 AND"
             " %s ORDER BY id",
             visible(adj));
    covct_db_result *r = NULL;
    if (covct_db_query(covct_site_db(rq->site), sql,
                       (covct_db_param[]){ COVCT_DB_INT(sid),
                                           COVCT_DB_TEXT(me) },
                       2, &r, &err))
        return http_error(rs, 500, "%s", err.msg);
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < covct_db_rows(r); i++) {
        cJSON *it = cJSON_CreateObject();
        cJSON_AddNumberToObject(it, "id", (double)covct_db_get_int(r, i, 0, 0));
        cJSON_AddStringToObject(it, "kind", covct_db_get(r, i, 1));
        cJSON_AddStringToObject(it, "status", covct_db_get(r, i, 2));
        cJSON_AddStringToObject(it, "source_kind", covct_db_get(r, i, 3));
        cJSON_AddStringToObject(it, "source", covct_db_get(r, i, 4));
        if (covct_db_get(r, i, 5))
            cJSON_AddNumberToObject(it, "parent",
                                    (double)covct_db_get_int(r, i, 5, 0));
        else
            cJSON_AddNullToObject(it, "parent");
        cJSON_AddStringToObject(it, "sha256", covct_db_get(r, i, 6));
        cJSON_AddStringToObject(it, "created_at", covct_db_get(r, i, 7));
        cJSON_AddItemToArray(arr, it);
    }
    covct_db_result_free(r);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "labels", arr);
    return http_json(rs, 200, o);
}
