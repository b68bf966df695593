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
/* Check that the current actor may do `action` on `object`.  A refusal is
 * written to the audit log ("denied", with the action asked for) and
 * returned as COVCT_ERR_ARG with a message naming role and action. */
covct_rc covct_site_require(covct_site *site, const char *action,
                            const char *object, covct_error *err);

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

#ifdef __cplusplus
}
#endif

#endif
