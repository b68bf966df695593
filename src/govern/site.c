/* A site's data folder and case database, and who is acting in it. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "govern/site_int.h"

covct_rc covct_site_open(const char *dir, covct_site **out, covct_error *err)
{
    *out = NULL;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return COVCT_ERR(err, COVCT_ERR_IO,
                         "cannot create the data folder %s: %s", dir,
                         strerror(errno));
    covct_site *s = covct_calloc(1, sizeof *s);
    if (!s || !(s->dir = covct_strdup(dir))) {
        covct_free(s);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    char *url = covct_db_url_for_dir(dir);
    covct_rc rc = url ? covct_db_open(url, &s->db, err)
                      : COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    covct_free(url);
    if (!rc)
        rc = govern_migrate(s->db, err);
    if (rc) {
        covct_site_close(s);
        return rc;
    }
    struct passwd pw, *p = NULL;
    char buf[1024];
    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &p) == 0 && p)
        snprintf(s->actor, sizeof s->actor, "os:%s", p->pw_name);
    else
        snprintf(s->actor, sizeof s->actor, "os:uid%u", (unsigned)geteuid());
    snprintf(s->role, sizeof s->role, "administrator");
    *out = s;
    return COVCT_OK;
}

void covct_site_close(covct_site *site)
{
    if (!site)
        return;
    covct_db_close(site->db);
    EVP_PKEY_free(site->key);
    covct_free(site->dir);
    covct_free(site);
}

covct_db *covct_site_db(covct_site *site) { return site->db; }
const char *covct_site_dir(const covct_site *site) { return site->dir; }
const char *covct_site_actor(const covct_site *site) { return site->actor; }
const char *covct_site_role(const covct_site *site) { return site->role; }

covct_rc covct_site_act_as(covct_site *site, const char *user,
                           covct_error *err)
{
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        site->db, "SELECT role, disabled FROM users WHERE name = $1",
        (covct_db_param[]){ COVCT_DB_TEXT(user) }, 1, &r, err);
    if (rc)
        return rc;
    if (!covct_db_rows(r) || covct_db_get_int(r, 0, 1, 1) != 0 ||
        !covct_role_valid(covct_db_get(r, 0, 0))) {
        covct_db_result_free(r);
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                         "no active user '%s' in %s", user,
                         covct_db_describe(site->db));
    }
    snprintf(site->actor, sizeof site->actor, "user:%s", user);
    snprintf(site->role, sizeof site->role, "%s", covct_db_get(r, 0, 0));
    covct_db_result_free(r);
    return COVCT_OK;
}

void covct_site_set_actor(covct_site *site, const char *actor,
                          const char *role)
{
    snprintf(site->actor, sizeof site->actor, "%s", actor);
    snprintf(site->role, sizeof site->role, "%s", role);
}

covct_rc covct_site_require(covct_site *site, const char *action,
                            const char *object, covct_error *err)
{
    if (covct_role_may(site->role, action))
        return COVCT_OK;
    char detail[256];
    snprintf(detail, sizeof detail, "{\"asked\":\"%s\"}", action);
    covct_error aerr = { 0 };
    if (covct_audit(site, "denied", object, detail, &aerr))
        covct_log(COVCT_LOG_ERROR, "could not record a refusal: %s",
                  aerr.msg);
    return COVCT_ERR(err, COVCT_ERR_ARG,
                     "%s (role %s) may not %s (%s): refused and recorded in "
                     "the audit log",
                     site->actor, site->role, action, object);
}

/* Begin a write: permission, then the transaction that also holds the
 * audit chain's lock. */
covct_rc site_begin_write(covct_site *site, const char *action,
                            const char *object, covct_error *err)
{
    covct_rc rc = covct_site_require(site, action, object, err);
    return rc ? rc : covct_db_begin(site->db, "audit_head", err);
}

covct_rc site_end_write(covct_site *site, covct_rc rc, const char *action,
                          const char *object, const char *detail,
                          covct_error *err)
{
    if (!rc)
        rc = covct_audit_in_tx(site, action, object, detail, err);
    if (!rc)
        rc = covct_db_commit(site->db, err);
    if (rc && site->db)
        covct_db_rollback(site->db);
    return rc;
}

