/*
 * covct site: a site's data folder as the governance code sees it: the
 * case database (DIR/covct.db, or PostgreSQL named by $COVCT_DB), who is
 * acting and in which role, what each role may do, and the audit log, a
 * hash chain signed with the site key (docs/internals/audit.md).
 *
 * Part of the govern module (include/covct/govern.h has the
 * de-identification).
 */
#ifndef COVCT_SITE_H
#define COVCT_SITE_H

#include <stdbool.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/db.h"
#include "covct/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct covct_site covct_site;

/* Open (creating if needed) the site folder DIR and its case database,
 * migrating the schema.  The actor is the operating-system account
 * ("os:LOGIN") in the administrator role: whoever runs covct on the
 * server with access to DIR holds its data anyway; roles are enforced for
 * the named users of the web service and of covct_site_act_as(). */
covct_rc covct_site_open(const char *dir, covct_site **out,
                         covct_error *err);
void covct_site_close(covct_site *site);
covct_db *covct_site_db(covct_site *site);
const char *covct_site_dir(const covct_site *site);
const char *covct_site_actor(const covct_site *site);
const char *covct_site_role(const covct_site *site);

/* ---- roles and permissions (src/govern/roles.c: the one table) -------- */
/* The roles, in the order of the table: "administrator", "radiologist",
 * "annotator", "researcher", "ethics-officer", "site-it". */
extern const char *const covct_roles[];
extern const size_t covct_role_count;
bool covct_role_valid(const char *role);
/* Whether `role` may perform `action` (e.g. "export.run"); unknown
 * actions are refused. */
bool covct_role_may(const char *role, const char *action);
/* Act as the named user of the users table from now on (their role). */
covct_rc covct_site_act_as(covct_site *site, const char *user,
                           covct_error *err);
/* Set the actor directly, for services acting for a remote system, e.g.
 * the DICOM node recording a peer's query as "dicom:AE@HOST" in the role
 * "dicom-peer" (the node's AE allow-list is its access control). */
void covct_site_set_actor(covct_site *site, const char *actor,
                          const char *role);
/* Add a user with a role (user.manage).  `password` may be NULL (a user
 * who only appears as a reader, or logs in later once one is set); it is
 * stored as an Argon2id hash (libsodium, interactive limits), never as
 * given.  Names: 1-64 letters, digits, '.', '_', '-'. */
covct_rc covct_user_add(covct_site *site, const char *name, const char *role,
                        const char *password, covct_error *err);
/* Set or change a user's password, or disable / enable the user. */
covct_rc covct_user_set_password(covct_site *site, const char *name,
                                 const char *password, covct_error *err);
covct_rc covct_user_set_disabled(covct_site *site, const char *name,
                                 bool disabled, covct_error *err);
/* Whether `password` is the user's (false for unknown, disabled or
 * password-less users; the time taken does not say which). */
bool covct_user_check_password(covct_site *site, const char *name,
                               const char *password);
/* API tokens for scripts: a new random token for a user (printed once by
 * `covct token create`; the database keeps only its SHA-256), and the
 * user and role a token stands for (COVCT_ERR_NOT_FOUND for an unknown,
 * revoked or disabled one). */
#define COVCT_TOKEN_LEN 48 /* "covct_" + 42 base64url characters */
covct_rc covct_token_create(covct_site *site, const char *user,
                            const char *label, char token[80],
                            covct_error *err);
covct_rc covct_token_check(covct_site *site, const char *token,
                           char user[65], char role[32], covct_error *err);
covct_rc covct_token_revoke(covct_site *site, const char *user,
                            covct_error *err);
/* Check that the current actor may do `action` on `object`.  A refusal is
 * written to the audit log ("denied", with the action asked for) and
 * returned as COVCT_ERR_ARG with a message naming role and action. */
covct_rc covct_site_require(covct_site *site, const char *action,
                            const char *object, covct_error *err);

/* ---- research projects, approvals, consent (src/govern/project.c) ------
 * A project names who may use which data for what.  An export needs an
 * approval that is in force (recorded, not revoked, granted on or before
 * today and expiring on or after today); it contains only the kinds of data
 * the approval's data scope lists, and only patients whose newest consent
 * for the project is "given" or "waived" (by the committee). */
covct_rc covct_project_create(covct_site *site, const char *name,
                              const char *title, const char *purpose,
                              const char *investigator, int64_t *project_id,
                              covct_error *err);
/* COVCT_ERR_NOT_FOUND with a message naming the project when absent. */
covct_rc covct_project_find(covct_site *site, const char *name,
                            int64_t *project_id, covct_error *err);

typedef struct covct_approval {
    const char *committee;  /* e.g. "Ethics Committee of X Hospital" */
    const char *number;     /* the committee's approval number */
    const char *granted_on; /* YYYY-MM-DD */
    const char *expires_on; /* YYYY-MM-DD */
    const char *purposes;   /* comma list, e.g. "research,algorithm-development" */
    const char *data_scope; /* comma list of: images, labels, clinical */
} covct_approval;
covct_rc covct_project_approve(covct_site *site, int64_t project_id,
                               const covct_approval *a, int64_t *approval_id,
                               covct_error *err);
/* Revoke the approval with that number (it stops counting at once). */
covct_rc covct_project_revoke(covct_site *site, int64_t project_id,
                              const char *number, covct_error *err);
covct_rc covct_project_agreement(covct_site *site, int64_t project_id,
                                 const char *party, const char *signed_on,
                                 const char *expires_on, const char *terms,
                                 covct_error *err);
/* The approval in force on `today` (YYYY-MM-DD; NULL: today in UTC):
 * *approval_id 0 when none, and `why` says why not (no approval, expired
 * on..., revoked, not yet valid).  `scope` (may be NULL, 128 bytes)
 * receives its data scope. */
covct_rc covct_project_approval_in_force(covct_site *site, int64_t project_id,
                                         const char *today,
                                         int64_t *approval_id, char *scope,
                                         char why[256], covct_error *err);
/* Include a patient (by the site's patient ID) in a project. */
covct_rc covct_project_add_patient(covct_site *site, int64_t project_id,
                                   const char *site_patient_id,
                                   covct_error *err);
/* Record consent: status "given", "withdrawn" or "waived"; `reference`
 * names the signed form or the committee's waiver (may be NULL).  History
 * is kept; the newest record counts. */
covct_rc covct_consent_record(covct_site *site, const char *site_patient_id,
                              int64_t project_id, const char *status,
                              const char *reference, covct_error *err);
/* The newest consent status of a patient (by id) for a project: "given",
 * "withdrawn", "waived" or "none". */
covct_rc covct_consent_status(covct_site *site, int64_t patient_id,
                              int64_t project_id, char status[16],
                              covct_error *err);
/* Today's date in UTC as YYYY-MM-DD. */
void covct_today(char out[11]);
/* Where `today` lies against a period from `from` to `to`, both
 * inclusive (YYYY-MM-DD; `to` NULL or empty: open-ended), e.g. a data use
 * agreement's: -1 not yet begun, 0 in force, 1 over. */
int covct_date_window(const char *today, const char *from, const char *to);

/* ---- research export (src/govern/export.c) ----------------------------
 * A project's data set for research: de-identified NIfTI volumes and
 * final masks, a CSV of clinical labels, a patient-level split, a
 * datasheet and a SHA-256 manifest (docs/internals/export.md).  Refused
 * (and audited) without an approval in force; patients without consent
 * are left out and counted. */
typedef struct covct_export_opts {
    const char *key_path; /* the project's pseudonym key; NULL:
                             DIR/keys/project-NAME.key */
    unsigned split[3];    /* train / validation / test percentages
                             (0,0,0: 70/15/15) */
    const char *seed;     /* mixes the split; NULL: "covct" */
    bool dicom;           /* also de-identified DICOM instances */
    const char *today;    /* YYYY-MM-DD to judge the approval (NULL: today,
                             UTC); for tests */
    int64_t request_id;   /* the request this export answers (0: none):
                             its row is completed instead of a new one */
} covct_export_opts;

typedef struct covct_export_result {
    size_t patients;           /* included */
    size_t withdrawn;          /* left out: consent withdrawn */
    size_t no_consent;         /* left out: no consent on record */
    size_t series;             /* volumes written */
    size_t masks;              /* masks written */
    size_t files;              /* files in the manifest */
    char manifest_sha256[65];  /* of manifest.sha256 */
    char refused[256];         /* why, when the export was refused */
} covct_export_result;

/* A researcher's request for an export (export.request), recorded and
 * audited; someone who may run exports (export.run) answers it with
 * covct_export and opts.request_id. */
covct_rc covct_export_request(covct_site *site, const char *project,
                              int64_t *request_id, covct_error *err);

covct_rc covct_export(covct_site *site, const char *project,
                      const char *out_dir, const covct_export_opts *opts,
                      covct_export_result *res, covct_progress_fn progress,
                      void *user, covct_error *err);

/* ---- the audit log ---------------------------------------------------- */
/* Append one entry: what the current actor did (`action`, e.g. "export"),
 * to what (`object`, e.g. "project:lung-ai"), and details as a JSON
 * object text (may be NULL for {}).  Runs in its own transaction; the
 * first entry of a site creates the site key. */
covct_rc covct_audit(covct_site *site, const char *action,
                     const char *object, const char *detail_json,
                     covct_error *err);
/* The same inside the caller's transaction, which must have been begun
 * with covct_db_begin(db, "audit_head", ...), so that the change and its
 * audit entry are committed together or not at all. */
covct_rc covct_audit_in_tx(covct_site *site, const char *action,
                           const char *object, const char *detail_json,
                           covct_error *err);

typedef struct covct_audit_result {
    int64_t entries;   /* entries checked */
    int64_t bad_seq;   /* first bad entry (0: the log is intact) */
    char problem[512]; /* what is wrong with it, for people */
} covct_audit_result;

/* Check the whole chain: sequence without gaps, each entry's hash over its
 * content and the previous hash, each signature with the site's public
 * key, and the signed head (so that entries deleted at the end are found
 * too).  Returns COVCT_OK when the check ran (look at res->bad_seq), an
 * error when it could not run. */
covct_rc covct_audit_verify(covct_site *site, covct_audit_result *res,
                            covct_error *err);

/* ---- the case database (docs/internals/casedb.md) ---------------------
 * Patients as the site knows them (identifiable), cases (one patient's
 * episode: the first CT and its follow-ups), studies, series, instances,
 * and labels in versions.  Every function that writes checks the actor's
 * role and writes its audit entry in the same transaction. */

/* Find or add a patient by the site's patient ID (DICOM PatientID). */
covct_rc covct_case_patient(covct_site *site, const char *site_patient_id,
                            const char *name, const char *birth_date,
                            const char *sex, int64_t *patient_id,
                            covct_error *err);
/* Find or add a study; a new study joins the patient's newest case (one
 * is created for the first study), so follow-ups land in the same case.
 * `case_id` (may be NULL) receives the case. */
covct_rc covct_case_study(covct_site *site, int64_t patient_id,
                          const char *study_uid, const char *study_date,
                          const char *description, int64_t *study_id,
                          int64_t *case_id, covct_error *err);
/* Find or add a series; `volume_path` (relative to DIR, may be NULL) and
 * its SHA-256 for a series imported as a NIfTI volume. */
covct_rc covct_case_series(covct_site *site, int64_t study_id,
                           const char *series_uid, const char *modality,
                           const char *description, const char *volume_path,
                           const char *volume_sha256, int64_t *series_id,
                           covct_error *err);
/* Add an instance (path relative to DIR); one already there is kept. */
covct_rc covct_case_instance(covct_site *site, int64_t series_id,
                             const char *sop_uid, const char *path,
                             const char *sha256, covct_error *err);

/* Record an analysis of a stored DICOM series (the DICOM node does after
 * each job): the series with its patient, study and instances (paths
 * relative to DIR when under it), and each mask the analysis wrote in
 * `results_dir` (lesions.nii.gz, lobes.nii.gz, lungs.nii.gz) as an
 * "ai-draft" label version from `model`, for readers to confirm or
 * correct.  A mask already recorded (same file and SHA-256) is not added
 * twice.  `series_id` (may be NULL) receives the series. */
covct_rc covct_case_record_analysis(covct_site *site, const char *series_dir,
                                    const char *results_dir,
                                    const char *model, int64_t *series_id,
                                    covct_error *err);
/* SHA-256 of a file as 64 hex digits. */
covct_rc covct_sha256_file(const char *path, char out[65], covct_error *err);
/* SHA-256 of n bytes as 64 lowercase hex digits. */
void covct_sha256_hex(const void *p, size_t n, char out[65]);

/* Label statuses, in workflow order: the AI's draft, the first reader's
 * version, the second reader's (made blind to the first), the
 * adjudicated final one; "imported" for labels made elsewhere (e.g. a
 * public data set's masks). */
#define COVCT_LABEL_AI_DRAFT "ai-draft"
#define COVCT_LABEL_READER1 "reader-1"
#define COVCT_LABEL_READER2 "reader-2"
#define COVCT_LABEL_FINAL "final"
#define COVCT_LABEL_IMPORTED "imported"
bool covct_label_status_valid(const char *status);

/* A new version of an image label (a mask file, relative to DIR, with its
 * SHA-256) of `kind` "lesions" (0 background, 1 ground glass, 2
 * consolidation), "lobes" or "lungs".  `source_kind` is "model" (source:
 * model name and version), "reader" (source: the actor) or "import"
 * (source: where from).  `parent_id` is the version it revises (0: none).
 * Readers need label.write, a final version label.adjudicate, and the
 * second reader must not be the first. */
covct_rc covct_label_image_add(covct_site *site, int64_t series_id,
                               const char *kind, const char *status,
                               const char *source_kind, const char *source,
                               const char *path, const char *sha256,
                               int64_t parent_id, int64_t *label_id,
                               covct_error *err);

typedef struct covct_clinical_label {
    const char *diagnosis; /* covid-19-confirmed (RT-PCR), covid-19-clinical,
                              other-pneumonia, normal, other */
    int severity;          /* CT severity score 0-25, or -1 when unknown */
    const char *outcome;   /* free text or NULL: recovered, icu, died... */
    const char *category;  /* RSNA: typical, indeterminate, atypical,
                              negative, or NULL */
    const char *comment;
} covct_clinical_label;
bool covct_diagnosis_valid(const char *diagnosis);
bool covct_category_valid(const char *category);
covct_rc covct_label_clinical_add(covct_site *site, int64_t case_id,
                                  const covct_clinical_label *label,
                                  const char *status, int64_t parent_id,
                                  int64_t *label_id, covct_error *err);

/* ---- CSV files (RFC 4180; src/govern/csv.c) ---------------------------
 * For clinical labels from spreadsheets and hospital systems (covct import
 * --labels; docs/internals/import.md).  Fields are separated by commas
 * and records by CRLF, LF or a lone CR; a field in double quotes may hold
 * commas, line breaks and quotes written twice ("").  A UTF-8 byte order
 * mark at the start is skipped; lines with nothing on them are not
 * records.  The first record is the header, and every other must have as
 * many fields.  Caps: COVCT_LIMIT_CSV_FIELD, COVCT_LIMIT_CSV_FIELDS. */
typedef struct covct_csv_record {
    uint64_t index;            /* 0 for the header, then 1, 2, ... */
    uint64_t line;             /* line of the file where it starts (1-based) */
    size_t n_fields;           /* at least 1 */
    const char *const *fields; /* values, NUL-terminated, quotes undone */
    const size_t *lens;        /* their lengths in bytes */
    /* NULL, or why the record cannot be used, naming the field: wrong
     * field count, a stray quote, text after a closing quote, not UTF-8,
     * a NUL byte, over a cap, a quoted field never closed.  The fields are
     * then what could be read. */
    const char *problem;
} covct_csv_record;

/* Called for each record; the record and its strings are valid during the
 * call only.  A non-OK return stops the parse and is returned. */
typedef covct_rc (*covct_csv_record_fn)(void *user,
                                        const covct_csv_record *rec,
                                        covct_error *err);

/* Parse `len` bytes (only read) and hand each record to `fn`.  Bad
 * records are handed over with their problem and parsing goes on at the
 * next one, so the only errors are fn's and COVCT_ERR_NOMEM.  Empty input
 * gives no record. */
covct_rc covct_csv_parse(const uint8_t *data, size_t len,
                         covct_csv_record_fn fn, void *user,
                         covct_error *err);

/* ---- agreement between readers (src/govern/agreement.c) --------------- */
typedef struct covct_mask_agreement {
    int64_t series_id;
    int64_t label_a, label_b; /* the newest reader-1 and reader-2 versions */
    double dice[3]; /* any lesion (> 0), ground glass (1), consolidation
                       (2); NAN where neither reader marked that class */
} covct_mask_agreement;

typedef struct covct_agreement {
    covct_mask_agreement *masks; /* one per series read by both readers */
    size_t n_masks;
    size_t n_cases;          /* cases with both readers' clinical labels */
    double kappa_diagnosis;  /* Cohen's kappa, NAN when undefined */
    double kappa_category;   /* over cases where both gave a category */
    double severity_mad;     /* mean absolute difference of the CT severity
                                scores, NAN when none */
} covct_agreement;

/* Agreement of the two readers over the site's lesion masks and clinical
 * labels (or one series when series_id > 0).  Free with
 * covct_agreement_free. */
covct_rc covct_agreement_compute(covct_site *site, int64_t series_id,
                                 covct_agreement *out, covct_error *err);
void covct_agreement_free(covct_agreement *a);

/* Cohen's kappa of two raters over n items with categories 0..k-1
 * (unweighted); NAN when undefined (n == 0).  Expected agreement from
 * each rater's own marginals (Cohen 1960). */
double covct_kappa(const int *a, const int *b, size_t n, int k);

#ifdef __cplusplus
}
#endif

#endif
