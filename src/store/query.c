/*
 * C-FIND matching over the store's index (PS3.4 C.2.2.2 and C.6): the
 * identifier's keys become one SQL statement with bound values on a
 * read-only connection of its own (WAL: never blocks the committer).
 *
 * Matching supported: universal (empty value), single value, wildcard
 * ('*', '?'; person names case-insensitive), range (DA, TM: 'A-B', '-B',
 * 'A-'), UID list ('U1\U2'), and list matching of Modalities in Study.
 * Sequence keys are not matched and not returned.
 */
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/store.h"
#include "store/store_int.h"

enum { L_PATIENT, L_STUDY, L_SERIES, L_IMAGE };

typedef enum kind {
    K_UI,     /* UID, UID list */
    K_PN,     /* person name: case-insensitive, wildcards */
    K_DA,     /* date: ranges */
    K_TM,     /* time: ranges */
    K_STR,    /* other text: exact or wildcard (case-sensitive) */
    K_INT,    /* integer string */
    K_COUNT,  /* computed, returned only */
    K_MODS    /* Modalities in Study: list of CS */
} kind;

typedef struct qkey {
    uint32_t tag;
    int level;
    kind k;
    const char *col;
} qkey;

static const qkey keys[] = {
    {0x00100010, L_PATIENT, K_PN, "p.patient_name"},
    {0x00100020, L_PATIENT, K_STR, "p.patient_id"},
    {0x00100030, L_PATIENT, K_DA, "p.birth_date"},
    {0x00100040, L_PATIENT, K_STR, "p.sex"},
    {0x00201200, L_PATIENT, K_COUNT,
     "(SELECT count(*) FROM studies x WHERE x.patient_id = p.patient_id)"},
    {0x00201202, L_PATIENT, K_COUNT,
     "(SELECT count(*) FROM series x JOIN studies y ON x.study_uid = "
     "y.study_uid WHERE y.patient_id = p.patient_id)"},
    {0x00201204, L_PATIENT, K_COUNT,
     "(SELECT count(*) FROM instances x JOIN series y ON x.series_uid = "
     "y.series_uid JOIN studies z ON y.study_uid = z.study_uid WHERE "
     "z.patient_id = p.patient_id)"},
    {0x0020000D, L_STUDY, K_UI, "s.study_uid"},
    {0x00080020, L_STUDY, K_DA, "s.study_date"},
    {0x00080030, L_STUDY, K_TM, "s.study_time"},
    {0x00080050, L_STUDY, K_STR, "s.accession_number"},
    {0x00200010, L_STUDY, K_STR, "s.study_id"},
    {0x00081030, L_STUDY, K_STR, "s.study_description"},
    {0x00080090, L_STUDY, K_PN, "s.referring_physician"},
    {0x00080061, L_STUDY, K_MODS,
     "(SELECT replace(group_concat(DISTINCT x.modality), ',', '\\') FROM "
     "series x WHERE x.study_uid = s.study_uid)"},
    {0x00201206, L_STUDY, K_COUNT,
     "(SELECT count(*) FROM series x WHERE x.study_uid = s.study_uid)"},
    {0x00201208, L_STUDY, K_COUNT,
     "(SELECT count(*) FROM instances x JOIN series y ON x.series_uid = "
     "y.series_uid WHERE y.study_uid = s.study_uid)"},
    {0x0020000E, L_SERIES, K_UI, "se.series_uid"},
    {0x00080060, L_SERIES, K_STR, "se.modality"},
    {0x00200011, L_SERIES, K_INT, "se.series_number"},
    {0x0008103E, L_SERIES, K_STR, "se.series_description"},
    {0x00180015, L_SERIES, K_STR, "se.body_part"},
    {0x00201209, L_SERIES, K_COUNT,
     "(SELECT count(*) FROM instances x WHERE x.series_uid = "
     "se.series_uid)"},
    {0x00080018, L_IMAGE, K_UI, "i.sop_uid"},
    {0x00080016, L_IMAGE, K_UI, "i.sop_class_uid"},
    {0x00200013, L_IMAGE, K_INT, "i.instance_number"},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const qkey *find_key(uint32_t tag)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].tag == tag)
            return &keys[i];
    return NULL;
}

/* Bound values of the statement being built. */
#define MAX_BINDS 2048
typedef struct query {
    covct_buf sql;
    char *bind[MAX_BINDS];
    int n_bind;
    covct_error *err;
    covct_rc rc;
} query;

static void q_sql(query *q, const char *s)
{
    if (!q->rc)
        q->rc = covct_buf_append(&q->sql, s, strlen(s), q->err);
}

/* Add a bound value (copied); appends "?" to the SQL. */
static void q_bind(query *q, const char *v, size_t n)
{
    if (q->rc)
        return;
    if (q->n_bind == MAX_BINDS) {
        q->rc = COVCT_ERR(q->err, COVCT_ERR_LIMIT,
                          "query has more than %d values", MAX_BINDS);
        return;
    }
    char *c = covct_strndup(v, n);
    if (!c) {
        q->rc = COVCT_ERR(q->err, COVCT_ERR_NOMEM, "out of memory");
        return;
    }
    q->bind[q->n_bind++] = c;
    q_sql(q, "?");
}

static bool has_wild(const char *v)
{
    return strpbrk(v, "*?") != NULL;
}

/* '*' '?' into a LIKE pattern with '\' as escape. */
static char *like_pattern(const char *v)
{
    size_t n = strlen(v);
    char *p = covct_malloc(2 * n + 1);
    if (!p)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (c == '%' || c == '_' || c == '\\')
            p[j++] = '\\', p[j++] = c;
        else if (c == '*')
            p[j++] = '%';
        else if (c == '?')
            p[j++] = '_';
        else
            p[j++] = c;
    }
    p[j] = '\0';
    return p;
}

/* GLOB pattern: '[' is the only other special character; escape it. */
static char *glob_pattern(const char *v)
{
    size_t n = strlen(v);
    char *p = covct_malloc(3 * n + 1);
    if (!p)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '[') {
            memcpy(p + j, "[[]", 3);
            j += 3;
        } else {
            p[j++] = v[i];
        }
    }
    p[j] = '\0';
    return p;
}

/* "(?,?,...)" with one bound value per item of a '\'-separated list. */
static void q_bind_list(query *q, const char *v)
{
    q_sql(q, "(");
    for (const char *s = v;; q_sql(q, ",")) {
        const char *e = strchr(s, '\\');
        q_bind(q, s, e ? (size_t)(e - s) : strlen(s));
        if (!e)
            break;
        s = e + 1;
    }
    q_sql(q, ")");
}

/* " AND col <op> ?" where col is the column, or its first n characters
 * (n > 0: comparing at the precision of the query, PS3.4 C.2.2.2.5). */
static void q_cmp(query *q, const char *col, size_t n, const char *op,
                  const char *v, size_t nv)
{
    q_sql(q, " AND ");
    if (n) {
        char len[24];
        snprintf(len, sizeof len, "%zu", n);
        q_sql(q, "substr(");
        q_sql(q, col);
        q_sql(q, ", 1, ");
        q_sql(q, len);
        q_sql(q, ")");
    } else {
        q_sql(q, col);
    }
    q_sql(q, op);
    q_bind(q, v, nv);
}

/* " AND col <op> pattern(v)" (LIKE or GLOB, with the pattern made by
 * make from the DICOM wildcards). */
static void q_pattern(query *q, const char *col, const char *op,
                      char *(*make)(const char *), const char *v)
{
    char *p = make(v);
    if (!p) {
        q->rc = COVCT_ERR(q->err, COVCT_ERR_NOMEM, "out of memory");
        return;
    }
    q_cmp(q, col, 0, op, p, strlen(p));
    covct_free(p);
}

/* Append " AND <condition>" for key k with value v (non-empty). */
static void add_filter(query *q, const qkey *k, const char *v)
{
    const char *dash = strchr(v, '-');
    switch (k->k) {
    case K_UI:
        q_sql(q, " AND ");
        q_sql(q, k->col);
        q_sql(q, " IN ");
        q_bind_list(q, v);
        break;
    case K_PN:
        q_pattern(q, k->col, " LIKE ", like_pattern, v);
        q_sql(q, " ESCAPE '\\'");
        break;
    case K_DA:
    case K_TM:
        if (!dash) {
            k = &(qkey){k->tag, k->level, K_STR, k->col};
            add_filter(q, k, v); /* single value or wildcard */
            break;
        }
        if (dash > v)
            q_cmp(q, k->col, (size_t)(dash - v), " >= ", v,
                  (size_t)(dash - v));
        if (dash[1])
            q_cmp(q, k->col, strlen(dash + 1), " <= ", dash + 1,
                  strlen(dash + 1));
        break;
    case K_INT:
        q_sql(q, " AND CAST(");
        q_sql(q, k->col);
        q_sql(q, " AS TEXT) = ");
        q_bind(q, v, strlen(v));
        break;
    case K_MODS:
        q_sql(q, " AND EXISTS (SELECT 1 FROM series m WHERE m.study_uid = "
                 "s.study_uid AND m.modality IN ");
        q_bind_list(q, v);
        q_sql(q, ")");
        break;
    case K_STR:
        if (has_wild(v))
            q_pattern(q, k->col, " GLOB ", glob_pattern, v);
        else
            q_cmp(q, k->col, 0, " = ", v, strlen(v));
        break;
    case K_COUNT:
        break;
    }
}

static int parse_level(const covct_dcm_dataset *id, bool patient_root,
                       covct_error *err)
{
    char lv[20] = "";
    if (covct_dcm_get_string(id, COVCT_TAG(0x0008, 0x0052), 0, lv, sizeof lv,
                             NULL) ||
        !lv[0]) {
        COVCT_ERR(err, COVCT_ERR_ARG,
                  "the identifier has no (0008,0052) Query/Retrieve Level");
        return -1;
    }
    if (!strcmp(lv, "PATIENT") && patient_root)
        return L_PATIENT;
    if (!strcmp(lv, "STUDY"))
        return L_STUDY;
    if (!strcmp(lv, "SERIES"))
        return L_SERIES;
    if (!strcmp(lv, "IMAGE"))
        return L_IMAGE;
    COVCT_ERR(err, COVCT_ERR_ARG,
              "Query/Retrieve Level '%s' is not one of %sSTUDY, SERIES, "
              "IMAGE",
              lv, patient_root ? "PATIENT, " : "");
    return -1;
}

static const char *from_clause(int level)
{
    static const char *const f[] = {
        " FROM patients p",
        " FROM studies s JOIN patients p ON p.patient_id = s.patient_id",
        " FROM series se JOIN studies s ON s.study_uid = se.study_uid "
        "JOIN patients p ON p.patient_id = s.patient_id",
        " FROM instances i JOIN series se ON se.series_uid = i.series_uid "
        "JOIN studies s ON s.study_uid = se.study_uid JOIN patients p ON "
        "p.patient_id = s.patient_id",
    };
    return f[level];
}

/* The WHERE clause from the identifier's keys at or above `level`. */
static void add_where(query *q, const covct_dcm_dataset *id, int level)
{
    q_sql(q, " WHERE 1");
    size_t n = covct_dcm_dataset_count(id);
    for (size_t i = 0; i < n && !q->rc; i++) {
        const covct_dcm_element *e = covct_dcm_dataset_at(id, i);
        const qkey *k = find_key(covct_dcm_element_tag(e));
        if (!k || k->level > level || k->k == K_COUNT ||
            covct_dcm_element_length(e) == 0)
            continue;
        char *v = NULL;
        covct_error e2 = {0};
        if (k->k == K_PN || k->k == K_STR) {
            if (covct_dcm_get_utf8(id, k->tag, &v, &e2)) {
                covct_free(v);
                continue;
            }
        } else {
            char buf[8192];
            if (covct_dcm_element_get_string(e, 0, buf, sizeof buf, &e2))
                continue;
            /* Multi-valued (UID lists): the raw value with its '\'. */
            uint32_t vm = covct_dcm_element_vm(e);
            for (uint32_t j = 1; j < vm; j++) {
                size_t l = strlen(buf);
                if (l + 2 >= sizeof buf)
                    break;
                buf[l] = '\\';
                covct_dcm_element_get_string(e, j, buf + l + 1,
                                             sizeof buf - l - 1, NULL);
            }
            v = covct_strdup(buf);
        }
        if (!v) {
            q->rc = COVCT_ERR(q->err, COVCT_ERR_NOMEM, "out of memory");
            return;
        }
        /* A lone '*' is universal matching too. */
        if (v[0] && strcmp(v, "*") != 0)
            add_filter(q, k, v);
        covct_free(v);
    }
}

static covct_rc prepare(sqlite3 *db, query *q, sqlite3_stmt **st,
                        covct_error *err)
{
    if (q->rc)
        return q->rc;
    if (sqlite3_prepare_v2(db, (const char *)q->sql.data, (int)q->sql.len, st,
                           NULL) != SQLITE_OK)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "query: %s",
                         sqlite3_errmsg(db));
    for (int i = 0; i < q->n_bind; i++)
        sqlite3_bind_text(*st, i + 1, q->bind[i], -1, SQLITE_STATIC);
    return COVCT_OK;
}

static void q_free(query *q)
{
    covct_buf_free(&q->sql);
    for (int i = 0; i < q->n_bind; i++)
        covct_free(q->bind[i]);
}

static const char *level_name(int level)
{
    static const char *const n[] = {"PATIENT", "STUDY", "SERIES", "IMAGE"};
    return n[level];
}

covct_rc covct_store_find(covct_store *s, bool patient_root,
                          const covct_dcm_dataset *id,
                          covct_store_match_fn fn, void *user,
                          covct_error *err)
{
    int level = parse_level(id, patient_root, err);
    if (level < 0)
        return COVCT_ERR_ARG;
    /* Columns: every known key of the identifier at or above the level,
     * in identifier order; unknown keys come back empty. */
    size_t n = covct_dcm_dataset_count(id);
    const qkey **cols = covct_calloc(n ? n : 1, sizeof *cols);
    if (!cols)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    query q = {.err = err};
    q_sql(&q, "SELECT 0");
    for (size_t i = 0; i < n; i++) {
        const qkey *k =
            find_key(covct_dcm_element_tag(covct_dcm_dataset_at(id, i)));
        if (k && k->level <= level) {
            cols[i] = k;
            q_sql(&q, ", ");
            q_sql(&q, k->col);
        }
    }
    q_sql(&q, from_clause(level));
    add_where(&q, id, level);
    static const char *const order[] = {
        " ORDER BY p.patient_id",
        " ORDER BY s.study_date, s.study_time, s.study_uid",
        " ORDER BY CAST(se.series_number AS INTEGER), se.series_uid",
        " ORDER BY CAST(i.instance_number AS INTEGER), i.sop_uid"};
    q_sql(&q, order[level]);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    covct_rc rc = q.rc;
    if (!rc)
        rc = covct_store_db_open(s, false, &db, err);
    if (!rc)
        rc = prepare(db, &q, &st, err);
    while (!rc) {
        int r = sqlite3_step(st);
        if (r == SQLITE_DONE)
            break;
        if (r != SQLITE_ROW) {
            rc = COVCT_ERR(err, COVCT_ERR_IO, "query: %s",
                           sqlite3_errmsg(db));
            break;
        }
        covct_dcm_dataset *m = covct_dcm_dataset_new();
        if (!m) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            break;
        }
        rc = covct_dcm_dataset_set_string(m, COVCT_TAG(0x0008, 0x0005),
                                          COVCT_VR('C', 'S'), "ISO_IR 192",
                                          err);
        if (!rc)
            rc = covct_dcm_dataset_set_string(
                m, COVCT_TAG(0x0008, 0x0052), COVCT_VR('C', 'S'),
                level_name(level), err);
        int col = 1;
        for (size_t i = 0; i < n && !rc; i++) {
            const covct_dcm_element *e = covct_dcm_dataset_at(id, i);
            uint32_t tag = covct_dcm_element_tag(e);
            uint16_t vr = covct_dcm_element_vr(e);
            if (COVCT_TAG_GROUP(tag) <= 0x0002 ||
                tag == COVCT_TAG(0x0008, 0x0005) ||
                tag == COVCT_TAG(0x0008, 0x0052) ||
                vr == COVCT_VR('S', 'Q'))
                continue;
            const qkey *k = find_key(tag);
            if (k && k->level > level)
                continue; /* below the level: not a key here */
            const char *v = "";
            if (cols[i]) {
                const unsigned char *t = sqlite3_column_text(st, col++);
                if (t)
                    v = (const char *)t;
            }
            if (vr == COVCT_VR_NONE) {
                const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
                vr = d ? d->vr : COVCT_VR('U', 'N');
            }
            rc = covct_dcm_dataset_set_string(m, tag, vr, v, err);
        }
        if (rc) {
            covct_dcm_dataset_free(m);
            break;
        }
        rc = fn(user, m, err);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    q_free(&q);
    covct_free(cols);
    return rc;
}

covct_rc covct_store_select(covct_store *s, bool patient_root,
                            const covct_dcm_dataset *id,
                            covct_store_instance_fn fn, void *user,
                            covct_error *err)
{
    int level = parse_level(id, patient_root, err);
    if (level < 0)
        return COVCT_ERR_ARG;
    /* A retrieve names what it wants by the unique key of its level. */
    static const uint32_t unique[] = {0x00100020, 0x0020000D, 0x0020000E,
                                      0x00080018};
    char u[8];
    if (covct_dcm_get_string(id, unique[level], 0, u, sizeof u, NULL) ||
        !u[0])
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "a %s level retrieve needs (%04X,%04X) with a value",
                         level_name(level), unique[level] >> 16,
                         unique[level] & 0xFFFF);
    query q = {.err = err};
    q_sql(&q, "SELECT i.path, i.sop_class_uid, i.sop_uid");
    q_sql(&q, from_clause(L_IMAGE));
    add_where(&q, id, level);
    q_sql(&q, " ORDER BY se.series_uid, CAST(i.instance_number AS INTEGER)");
    covct_store_flush(s); /* the files of instances just acknowledged */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    covct_rc rc = q.rc;
    if (!rc)
        rc = covct_store_db_open(s, false, &db, err);
    if (!rc)
        rc = prepare(db, &q, &st, err);
    char path[PATH_MAX];
    while (!rc) {
        int r = sqlite3_step(st);
        if (r == SQLITE_DONE)
            break;
        if (r != SQLITE_ROW) {
            rc = COVCT_ERR(err, COVCT_ERR_IO, "query: %s",
                           sqlite3_errmsg(db));
            break;
        }
        const char *rel = (const char *)sqlite3_column_text(st, 0);
        const char *cls = (const char *)sqlite3_column_text(st, 1);
        const char *sop = (const char *)sqlite3_column_text(st, 2);
        snprintf(path, sizeof path, "%s/%s", covct_store_dir(s),
                 rel ? rel : "");
        rc = fn(user, path, cls ? cls : "", sop ? sop : "", err);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    q_free(&q);
    return rc;
}
