/* The case database: patients, cases, studies, series, instances and
 * label versions (docs/internals/casedb.md).  Every change checks the
 * actor's role and is committed together with its audit entry. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "govern/site_int.h"

/* The id of the row `sql` (with one text parameter) finds, or 0. */
static covct_rc find_id(covct_site *site, const char *sql, const char *key,
                        int64_t *id, covct_error *err)
{
    covct_error e2 = { 0 };
    covct_rc rc = covct_db_query_int(
        site->db, sql, (covct_db_param[]){ COVCT_DB_TEXT(key) }, 1, id, &e2);
    if (rc == COVCT_ERR_NOT_FOUND) {
        *id = 0;
        return COVCT_OK;
    }
    if (rc)
        return COVCT_ERR(err, rc, "%s", e2.msg);
    return COVCT_OK;
}

static covct_rc check_text(const char *what, const char *v, size_t max,
                           covct_error *err)
{
    if (!v || !*v)
        return COVCT_ERR(err, COVCT_ERR_ARG, "%s is empty", what);
    if (strlen(v) > max)
        return COVCT_ERR(err, COVCT_ERR_ARG, "%s is longer than %zu "
                         "characters",
                         what, max);
    return COVCT_OK;
}

covct_rc covct_case_patient(covct_site *site, const char *site_patient_id,
                            const char *name, const char *birth_date,
                            const char *sex, int64_t *patient_id,
                            covct_error *err)
{
    covct_rc rc;
    if ((rc = check_text("patient ID", site_patient_id, 64, err)) ||
        (rc = find_id(site, "SELECT id FROM patients WHERE site_patient_id"
                            " = $1",
                      site_patient_id, patient_id, err)) ||
        *patient_id)
        return rc;
    if ((rc = site_begin_write(site, "import", "patients", err)))
        return rc;
    char now[COVCT_DB_TIME_LEN], obj[48];
    covct_db_now(now);
    rc = covct_db_query_int(
        site->db,
        "INSERT INTO patients (site_patient_id, name, birth_date, sex,"
        " created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        (covct_db_param[]){ COVCT_DB_TEXT(site_patient_id),
                            COVCT_DB_TEXT(name), COVCT_DB_TEXT(birth_date),
                            COVCT_DB_TEXT(sex), COVCT_DB_TEXT(now) },
        5, patient_id, err);
    snprintf(obj, sizeof obj, "patient:%" PRId64, *patient_id);
    return site_end_write(site, rc, "patient.add", obj, NULL, err);
}

covct_rc covct_case_study(covct_site *site, int64_t patient_id,
                          const char *study_uid, const char *study_date,
                          const char *description, int64_t *study_id,
                          int64_t *case_id, covct_error *err)
{
    covct_rc rc;
    int64_t cid = 0;
    if ((rc = check_text("Study Instance UID", study_uid, 64, err)) ||
        (rc = find_id(site, "SELECT id FROM studies WHERE study_uid = $1",
                      study_uid, study_id, err)))
        return rc;
    if (*study_id) {
        /* the same UID under another patient is an error in the data
         * (or a collision), never a reason to move the study */
        int64_t owner = 0;
        if ((rc = find_id(site, "SELECT patient_id FROM studies WHERE"
                                " study_uid = $1",
                          study_uid, &owner, err)))
            return rc;
        if (owner != patient_id)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "study %s is already recorded for another "
                             "patient (#%" PRId64 ", not #%" PRId64 "): "
                             "conflicting Patient IDs in the data",
                             study_uid, owner, patient_id);
        if (case_id)
            rc = find_id(site, "SELECT case_id FROM studies WHERE"
                               " study_uid = $1",
                         study_uid, case_id, err);
        return rc;
    }
    if ((rc = site_begin_write(site, "import", "studies", err)))
        return rc;
    char now[COVCT_DB_TIME_LEN], obj[48], detail[96];
    covct_db_now(now);
    covct_error e2 = { 0 };
    rc = covct_db_query_int(site->db,
                            "SELECT MAX(id) FROM cases WHERE patient_id = $1",
                            (covct_db_param[]){ COVCT_DB_INT(patient_id) }, 1,
                            &cid, &e2);
    bool new_case = rc == COVCT_ERR_NOT_FOUND;
    if (new_case)
        rc = covct_db_query_int(
            site->db,
            "INSERT INTO cases (patient_id, created_at) VALUES ($1, $2)"
            " RETURNING id",
            (covct_db_param[]){ COVCT_DB_INT(patient_id),
                                COVCT_DB_TEXT(now) },
            2, &cid, err);
    else if (rc)
        COVCT_ERR(err, rc, "%s", e2.msg);
    if (!rc)
        rc = covct_db_query_int(
            site->db,
            "INSERT INTO studies (case_id, patient_id, study_uid,"
            " study_date, description, created_at) VALUES"
            " ($1, $2, $3, $4, $5, $6) RETURNING id",
            (covct_db_param[]){ COVCT_DB_INT(cid), COVCT_DB_INT(patient_id),
                                COVCT_DB_TEXT(study_uid),
                                COVCT_DB_TEXT(study_date),
                                COVCT_DB_TEXT(description),
                                COVCT_DB_TEXT(now) },
            6, study_id, err);
    snprintf(obj, sizeof obj, "study:%" PRId64, *study_id);
    snprintf(detail, sizeof detail,
             "{\"patient\":%" PRId64 ",\"case\":%" PRId64 ",\"new_case\":%s}",
             patient_id, cid, new_case ? "true" : "false");
    rc = site_end_write(site, rc, "study.add", obj, detail, err);
    if (!rc && case_id)
        *case_id = cid;
    return rc;
}

covct_rc covct_case_series(covct_site *site, int64_t study_id,
                           const char *series_uid, const char *modality,
                           const char *description, const char *volume_path,
                           const char *volume_sha256, int64_t *series_id,
                           covct_error *err)
{
    covct_rc rc;
    if ((rc = check_text("Series Instance UID", series_uid, 64, err)) ||
        (rc = find_id(site, "SELECT id FROM series WHERE series_uid = $1",
                      series_uid, series_id, err)))
        return rc;
    if (*series_id) {
        int64_t owner = 0;
        if ((rc = find_id(site, "SELECT study_id FROM series WHERE"
                                " series_uid = $1",
                          series_uid, &owner, err)))
            return rc;
        if (owner != study_id)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "series %s is already recorded in another "
                             "study: conflicting Study Instance UIDs in the "
                             "data",
                             series_uid);
        return COVCT_OK;
    }
    if ((rc = site_begin_write(site, "import", "series", err)))
        return rc;
    char now[COVCT_DB_TIME_LEN], obj[48], detail[96];
    covct_db_now(now);
    rc = covct_db_query_int(
        site->db,
        "INSERT INTO series (study_id, series_uid, modality, description,"
        " volume_path, volume_sha256, created_at) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        (covct_db_param[]){ COVCT_DB_INT(study_id), COVCT_DB_TEXT(series_uid),
                            COVCT_DB_TEXT(modality),
                            COVCT_DB_TEXT(description),
                            COVCT_DB_TEXT(volume_path),
                            COVCT_DB_TEXT(volume_sha256),
                            COVCT_DB_TEXT(now) },
        7, series_id, err);
    snprintf(obj, sizeof obj, "series:%" PRId64, *series_id);
    snprintf(detail, sizeof detail, "{\"study\":%" PRId64 ",\"volume\":%s}",
             study_id, volume_path ? "true" : "false");
    return site_end_write(site, rc, "series.add", obj, detail, err);
}

covct_rc covct_case_instance(covct_site *site, int64_t series_id,
                             const char *sop_uid, const char *path,
                             const char *sha256, covct_error *err)
{
    covct_rc rc;
    int64_t id = 0;
    if ((rc = check_text("SOP Instance UID", sop_uid, 64, err)) ||
        (rc = find_id(site, "SELECT id FROM instances WHERE sop_uid = $1",
                      sop_uid, &id, err)) ||
        id)
        return rc;
    /* instances are many: no audit entry each (the series' import has
     * one); the role is still checked */
    if ((rc = covct_site_require(site, "import", "instances", err)))
        return rc;
    return covct_db_query(
        site->db,
        "INSERT INTO instances (series_id, sop_uid, path, sha256) VALUES"
        " ($1, $2, $3, $4)",
        (covct_db_param[]){ COVCT_DB_INT(series_id), COVCT_DB_TEXT(sop_uid),
                            COVCT_DB_TEXT(path), COVCT_DB_TEXT(sha256) },
        4, NULL, err);
}

/* ---- labels ------------------------------------------------------------ */
static const char *const statuses[] = { COVCT_LABEL_AI_DRAFT,
                                        COVCT_LABEL_READER1,
                                        COVCT_LABEL_READER2,
                                        COVCT_LABEL_FINAL,
                                        COVCT_LABEL_IMPORTED };

static bool in_list(const char *v, const char *const *list, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        if (!strcmp(v, list[i]))
            return true;
    return false;
}

bool covct_label_status_valid(const char *status)
{
    return in_list(status, statuses, sizeof statuses / sizeof *statuses);
}

bool covct_diagnosis_valid(const char *d)
{
    static const char *const list[] = { "covid-19-confirmed",
                                        "covid-19-clinical",
                                        "other-pneumonia", "normal",
                                        "other" };
    return in_list(d, list, sizeof list / sizeof *list);
}

bool covct_category_valid(const char *c)
{
    static const char *const list[] = { "typical", "indeterminate",
                                        "atypical", "negative" };
    return in_list(c, list, sizeof list / sizeof *list);
}

/* Which permission a new version with this status and source needs. */
/* The other reader's status of a reader's version (reader 1 <-> reader
 * 2), NULL for other statuses: the two readers must be different people. */
static const char *other_reader(const char *status)
{
    return !strcmp(status, COVCT_LABEL_READER1)   ? COVCT_LABEL_READER2
           : !strcmp(status, COVCT_LABEL_READER2) ? COVCT_LABEL_READER1
                                                  : NULL;
}

static const char *label_action(const char *status, const char *source_kind)
{
    if (!strcmp(status, COVCT_LABEL_FINAL))
        return "label.adjudicate";
    if (!strcmp(status, COVCT_LABEL_IMPORTED) ||
        !strcmp(source_kind, "import"))
        return "import";
    if (!strcmp(status, COVCT_LABEL_AI_DRAFT))
        return "study.analyze";
    return "label.write";
}

/* Status and source must agree: the AI drafts, readers read, imports are
 * imported. */
static covct_rc check_status(const char *status, const char *source_kind,
                             covct_error *err)
{
    if (!covct_label_status_valid(status))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "unknown label status '%s' (ai-draft, reader-1, "
                         "reader-2, final, imported)",
                         status ? status : "");
    bool model = !strcmp(source_kind, "model"),
         import = !strcmp(source_kind, "import"),
         reader = !strcmp(source_kind, "reader");
    if (!model && !import && !reader)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "unknown label source '%s' (model, reader, "
                         "import)",
                         source_kind);
    if (model != !strcmp(status, COVCT_LABEL_AI_DRAFT) ||
        import != !strcmp(status, COVCT_LABEL_IMPORTED))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "a '%s' label cannot come from a %s", status,
                         source_kind);
    return COVCT_OK;
}

covct_rc covct_label_image_add(covct_site *site, int64_t series_id,
                               const char *kind, const char *status,
                               const char *source_kind, const char *source,
                               const char *path, const char *sha256,
                               int64_t parent_id, int64_t *label_id,
                               covct_error *err)
{
    static const char *const kinds[] = { "lesions", "lobes", "lungs" };
    covct_rc rc;
    if (!in_list(kind, kinds, 3))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "unknown label kind '%s' (lesions, lobes, lungs)",
                         kind ? kind : "");
    if ((rc = check_status(status, source_kind, err)) ||
        (rc = check_text("mask path", path, 1024, err)))
        return rc;
    if (!sha256 || strlen(sha256) != 64 ||
        strspn(sha256, "0123456789abcdef") != 64)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "mask SHA-256 '%s' is not 64 lower-case hex digits",
                         sha256 ? sha256 : "");
    bool reader = !strcmp(source_kind, "reader");
    /* a reader's version is in the reader's own name */
    const char *src = reader ? site->actor : source;
    if ((rc = check_text("label source", src, 200, err)))
        return rc;
    char obj[48];
    snprintf(obj, sizeof obj, "series:%" PRId64, series_id);
    if ((rc = site_begin_write(site, label_action(status, source_kind), obj, err)))
        return rc;
    int64_t n = 0;
    const char *other = other_reader(status);
    if (other) {
        /* two independent readers: the second reader cannot be the first */
        rc = covct_db_query_int(
            site->db,
            "SELECT COUNT(*) FROM image_labels WHERE series_id = $1 AND"
            " kind = $2 AND status = $3 AND source = $4",
            (covct_db_param[]){ COVCT_DB_INT(series_id), COVCT_DB_TEXT(kind),
                                COVCT_DB_TEXT(other), COVCT_DB_TEXT(src) },
            4, &n, err);
        if (!rc && n)
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "%s already read series %" PRId64 " (%s) as %s: "
                           "the two readers must be different people",
                           src, series_id, kind, other);
    }
    if (!rc && parent_id) {
        rc = covct_db_query_int(
            site->db,
            "SELECT COUNT(*) FROM image_labels WHERE id = $1 AND"
            " series_id = $2 AND kind = $3",
            (covct_db_param[]){ COVCT_DB_INT(parent_id),
                                COVCT_DB_INT(series_id), COVCT_DB_TEXT(kind) },
            3, &n, err);
        if (!rc && !n)
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "label version %" PRId64 " is not a %s label of "
                           "series %" PRId64,
                           parent_id, kind, series_id);
    }
    char now[COVCT_DB_TIME_LEN], detail[512];
    covct_db_now(now);
    if (!rc)
        rc = covct_db_query_int(
            site->db,
            "INSERT INTO image_labels (series_id, parent_id, kind, status,"
            " source_kind, source, path, sha256, created_at) VALUES"
            " ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            (covct_db_param[]){ COVCT_DB_INT(series_id),
                                parent_id ? COVCT_DB_INT(parent_id)
                                          : COVCT_DB_NULL,
                                COVCT_DB_TEXT(kind), COVCT_DB_TEXT(status),
                                COVCT_DB_TEXT(source_kind), COVCT_DB_TEXT(src),
                                COVCT_DB_TEXT(path), COVCT_DB_TEXT(sha256),
                                COVCT_DB_TEXT(now) },
            9, label_id, err);
    snprintf(detail, sizeof detail,
             "{\"label\":%" PRId64 ",\"kind\":\"%s\",\"status\":\"%s\","
             "\"parent\":%" PRId64 ",\"sha256\":\"%.64s\"}",
             rc ? 0 : *label_id, kind, status, parent_id, sha256);
    return site_end_write(site, rc, "label.save", obj, detail, err);
}

covct_rc covct_label_clinical_add(covct_site *site, int64_t case_id,
                                  const covct_clinical_label *l,
                                  const char *status, int64_t parent_id,
                                  int64_t *label_id, covct_error *err)
{
    covct_rc rc;
    if (!covct_diagnosis_valid(l->diagnosis))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "unknown diagnosis '%s' (covid-19-confirmed, "
                         "covid-19-clinical, other-pneumonia, normal, other)",
                         l->diagnosis ? l->diagnosis : "");
    if (l->severity < -1 || l->severity > 25)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "severity %d is outside the CT severity score's "
                         "0-25",
                         l->severity);
    if (l->category && *l->category && !covct_category_valid(l->category))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "unknown category '%s' (typical, indeterminate, "
                         "atypical, negative)",
                         l->category);
    bool imported = status && !strcmp(status, COVCT_LABEL_IMPORTED);
    if ((rc = check_status(status, imported ? "import" : "reader", err)))
        return rc;
    char obj[48], now[COVCT_DB_TIME_LEN], detail[256];
    snprintf(obj, sizeof obj, "case:%" PRId64, case_id);
    if ((rc = site_begin_write(site,
                          !strcmp(status, COVCT_LABEL_FINAL)
                              ? "label.adjudicate"
                          : imported ? "import"
                                     : "case.clinical",
                          obj, err)))
        return rc;
    int64_t n = 0;
    const char *other = other_reader(status);
    if (other) {
        /* the rule of the masks: two independent readers of a case, so
         * the second reader cannot be the first (the kappa of one person
         * with herself would say nothing) */
        rc = covct_db_query_int(
            site->db,
            "SELECT COUNT(*) FROM clinical_labels WHERE case_id = $1 AND"
            " status = $2 AND author = $3",
            (covct_db_param[]){ COVCT_DB_INT(case_id), COVCT_DB_TEXT(other),
                                COVCT_DB_TEXT(site->actor) },
            3, &n, err);
        if (!rc && n)
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "%s already labelled case %" PRId64 " as %s: the "
                           "two readers must be different people",
                           site->actor, case_id, other);
    }
    if (!rc && parent_id) {
        /* a version revises a version of the same case */
        rc = covct_db_query_int(
            site->db,
            "SELECT COUNT(*) FROM clinical_labels WHERE id = $1 AND"
            " case_id = $2",
            (covct_db_param[]){ COVCT_DB_INT(parent_id),
                                COVCT_DB_INT(case_id) },
            2, &n, err);
        if (!rc && !n)
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "clinical label version %" PRId64 " is not a "
                           "label of case %" PRId64,
                           parent_id, case_id);
    }
    covct_db_now(now);
    if (!rc)
        rc = covct_db_query_int(
            site->db,
            "INSERT INTO clinical_labels (case_id, parent_id, diagnosis,"
            " severity, outcome, category, comment, status, author,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " RETURNING id",
            (covct_db_param[]){
                COVCT_DB_INT(case_id),
                parent_id ? COVCT_DB_INT(parent_id) : COVCT_DB_NULL,
                COVCT_DB_TEXT(l->diagnosis),
                l->severity >= 0 ? COVCT_DB_INT(l->severity) : COVCT_DB_NULL,
                COVCT_DB_TEXT(l->outcome && *l->outcome ? l->outcome : NULL),
                COVCT_DB_TEXT(l->category && *l->category ? l->category
                                                          : NULL),
                COVCT_DB_TEXT(l->comment && *l->comment ? l->comment : NULL),
                COVCT_DB_TEXT(status), COVCT_DB_TEXT(site->actor),
                COVCT_DB_TEXT(now) },
            10, label_id, err);
    snprintf(detail, sizeof detail,
             "{\"label\":%" PRId64 ",\"status\":\"%s\",\"diagnosis\":\"%s\"}",
             rc ? 0 : *label_id, status, l->diagnosis);
    return site_end_write(site, rc, "clinical.save", obj, detail, err);
}

double covct_kappa(const int *a, const int *b, size_t n, int k)
{
    if (!n || k < 1)
        return NAN;
    double agree = 0, expect = 0;
    double ca[64] = { 0 }, cb[64] = { 0 };
    if (k > 64)
        return NAN;
    for (size_t i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= k || b[i] < 0 || b[i] >= k)
            return NAN;
        agree += a[i] == b[i];
        ca[a[i]]++;
        cb[b[i]]++;
    }
    double po = agree / (double)n;
    for (int c = 0; c < k; c++)
        expect += ca[c] / (double)n * cb[c] / (double)n;
    if (expect >= 1.0)
        return NAN; /* both raters used one and the same category: 0/0,
                       as scikit-learn reports it */
    return (po - expect) / (1.0 - expect);
}
