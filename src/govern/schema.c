/* The case database's schema (issue 6; docs/internals/casedb.md), one SQL
 * text for SQLite and PostgreSQL (the rules are in include/covct/db.h).
 * Migrations are append-only: a released version is never edited, a
 * change is a new entry at the end. */
#include "govern/site_int.h"

static const char schema_v1[] =
    /* people who log in (issue 7) or are named as readers; the role
     * decides what they may do (src/govern/roles.c) */
    "CREATE TABLE users ("
    " id {{id}}, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL,"
    " password_hash TEXT, created_at TEXT NOT NULL,"
    " disabled BIGINT NOT NULL DEFAULT 0);"
    /* patients as the site knows them: identifiable, never exported */
    "CREATE TABLE patients ("
    " id {{id}}, site_patient_id TEXT NOT NULL UNIQUE, name TEXT,"
    " birth_date TEXT, sex TEXT, created_at TEXT NOT NULL);"
    /* one patient's episode: the first CT and its follow-ups */
    "CREATE TABLE cases ("
    " id {{id}}, patient_id BIGINT NOT NULL REFERENCES patients(id),"
    " title TEXT, created_at TEXT NOT NULL);"
    "CREATE INDEX cases_patient ON cases(patient_id);"
    "CREATE TABLE studies ("
    " id {{id}}, case_id BIGINT REFERENCES cases(id),"
    " patient_id BIGINT NOT NULL REFERENCES patients(id),"
    " study_uid TEXT NOT NULL UNIQUE, study_date TEXT, description TEXT,"
    " created_at TEXT NOT NULL);"
    "CREATE INDEX studies_case ON studies(case_id);"
    /* a series: DICOM instances in the store, or a NIfTI volume */
    "CREATE TABLE series ("
    " id {{id}}, study_id BIGINT NOT NULL REFERENCES studies(id),"
    " series_uid TEXT NOT NULL UNIQUE, modality TEXT, description TEXT,"
    " volume_path TEXT, volume_sha256 TEXT, created_at TEXT NOT NULL);"
    "CREATE INDEX series_study ON series(study_id);"
    "CREATE TABLE instances ("
    " id {{id}}, series_id BIGINT NOT NULL REFERENCES series(id),"
    " sop_uid TEXT NOT NULL UNIQUE, path TEXT NOT NULL,"
    " sha256 TEXT NOT NULL);"
    "CREATE INDEX instances_series ON instances(series_id);"
    /* clinical labels per case, versioned: a new row per change, pointing
     * at the version it replaces */
    "CREATE TABLE clinical_labels ("
    " id {{id}}, case_id BIGINT NOT NULL REFERENCES cases(id),"
    " parent_id BIGINT REFERENCES clinical_labels(id),"
    " diagnosis TEXT NOT NULL, severity BIGINT, outcome TEXT,"
    " category TEXT, comment TEXT, status TEXT NOT NULL,"
    " author TEXT NOT NULL, created_at TEXT NOT NULL);"
    "CREATE INDEX clinical_labels_case ON clinical_labels(case_id);"
    /* image labels (masks) per series, versioned with provenance */
    "CREATE TABLE image_labels ("
    " id {{id}}, series_id BIGINT NOT NULL REFERENCES series(id),"
    " parent_id BIGINT REFERENCES image_labels(id),"
    " kind TEXT NOT NULL, status TEXT NOT NULL,"
    " source_kind TEXT NOT NULL, source TEXT NOT NULL,"
    " path TEXT NOT NULL, sha256 TEXT NOT NULL,"
    " created_at TEXT NOT NULL);"
    "CREATE INDEX image_labels_series ON image_labels(series_id);"
    /* research projects and what allows them */
    "CREATE TABLE projects ("
    " id {{id}}, name TEXT NOT NULL UNIQUE, title TEXT, purpose TEXT,"
    " investigator TEXT, created_at TEXT NOT NULL);"
    "CREATE TABLE approvals ("
    " id {{id}}, project_id BIGINT NOT NULL REFERENCES projects(id),"
    " committee TEXT NOT NULL, number TEXT NOT NULL,"
    " granted_on TEXT NOT NULL, expires_on TEXT NOT NULL,"
    " purposes TEXT NOT NULL, data_scope TEXT NOT NULL,"
    " recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL,"
    " revoked_at TEXT);"
    "CREATE TABLE agreements ("
    " id {{id}}, project_id BIGINT NOT NULL REFERENCES projects(id),"
    " party TEXT NOT NULL, signed_on TEXT NOT NULL, expires_on TEXT,"
    " terms TEXT, recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL);"
    /* which patients a project includes; the pseudonym is the project's
     * keyed hash of the patient (docs/internals/deid.md) */
    "CREATE TABLE project_patients ("
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " patient_id BIGINT NOT NULL REFERENCES patients(id),"
    " added_at TEXT NOT NULL, PRIMARY KEY (project_id, patient_id));"
    /* consent history: the newest row per patient and project counts */
    "CREATE TABLE consents ("
    " id {{id}}, patient_id BIGINT NOT NULL REFERENCES patients(id),"
    " project_id BIGINT NOT NULL REFERENCES projects(id),"
    " status TEXT NOT NULL CHECK (status IN"
    " ('given', 'withdrawn', 'waived')),"
    " reference TEXT, recorded_by TEXT NOT NULL,"
    " recorded_at TEXT NOT NULL);"
    "CREATE INDEX consents_patient ON consents(patient_id, project_id);"
    "CREATE TABLE exports ("
    " id {{id}}, project_id BIGINT NOT NULL REFERENCES projects(id),"
    " requested_by TEXT NOT NULL, started_at TEXT NOT NULL,"
    " finished_at TEXT, status TEXT NOT NULL, out_dir TEXT,"
    " patients BIGINT, excluded BIGINT, manifest_sha256 TEXT);"
    /* the audit log: a hash chain signed with the site key
     * (src/govern/audit.c); audit_head holds the newest entry, signed, so
     * that deleting entries at the end is detected too */
    "CREATE TABLE audit_log ("
    " seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,"
    " role TEXT NOT NULL, action TEXT NOT NULL, object TEXT NOT NULL,"
    " detail TEXT NOT NULL, key_id TEXT NOT NULL,"
    " prev_hash TEXT NOT NULL, hash TEXT NOT NULL, sig TEXT NOT NULL);"
    "CREATE TABLE audit_head ("
    " id BIGINT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL,"
    " key_id TEXT NOT NULL, sig TEXT NOT NULL);";

/* API tokens for scripts (issue 7): only the SHA-256 of a token is
 * kept, so a copy of the database does not give anyone access. */
static const char schema_v2[] =
    "CREATE TABLE api_tokens ("
    " id {{id}}, user_id BIGINT NOT NULL REFERENCES users(id),"
    " token_sha256 TEXT NOT NULL UNIQUE, label TEXT,"
    " created_at TEXT NOT NULL, revoked_at TEXT, last_used_at TEXT);";

static const covct_db_migration migrations[] = {
    { 1, "case database, governance and audit log", schema_v1 },
    { 2, "API tokens", schema_v2 },
};

covct_rc govern_migrate(covct_db *db, covct_error *err)
{
    return covct_db_migrate(db, "govern", migrations,
                            sizeof migrations / sizeof migrations[0], err);
}
