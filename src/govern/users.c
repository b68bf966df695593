/* Users of the case database and their roles; passwords as Argon2id
 * hashes (libsodium's crypto_pwhash_str).  docs/internals/casedb.md. */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "govern/site_int.h"

/* Passwords longer than this are refused: a hash costs the same, but a
 * megabyte "password" is an attack, not a secret. */
#define PASSWORD_MAX 1024

static covct_rc check_name(const char *name, covct_error *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > 64)
        return COVCT_ERR(err, COVCT_ERR_ARG, "a user name is 1-64 characters");
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "user name '%s': use letters, digits, '.', '_' "
                             "and '-' only",
                             name);
    return COVCT_OK;
}

static covct_rc hash_password(const char *password, char out[128],
                              covct_error *err)
{
    size_t n = strlen(password);
    if (n < 8)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "a password has at least 8 characters");
    if (n > PASSWORD_MAX)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "a password has at most %d characters",
                         PASSWORD_MAX);
    if (sodium_init() < 0)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "libsodium did not start");
    if (crypto_pwhash_str(out, password, n,
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "out of memory hashing the password");
    return COVCT_OK;
}

covct_rc covct_user_add(covct_site *site, const char *name, const char *role,
                        const char *password, covct_error *err)
{
    covct_rc rc;
    char hash[crypto_pwhash_STRBYTES > 128 ? crypto_pwhash_STRBYTES : 128];
    if ((rc = check_name(name, err)))
        return rc;
    if (!covct_role_valid(role)) {
        char list[200] = "";
        for (size_t i = 0; i < covct_role_count; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     i ? ", " : "", covct_roles[i]);
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "unknown role '%s' (one of: %s)", role ? role : "",
                         list);
    }
    if (password && (rc = hash_password(password, hash, err)))
        return rc;
    char obj[96], now[COVCT_DB_TIME_LEN], detail[96];
    snprintf(obj, sizeof obj, "user:%s", name);
    if ((rc = site_begin_write(site, "user.manage", obj, err)))
        return rc;
    int64_t n = 0;
    rc = covct_db_query_int(site->db, "SELECT COUNT(*) FROM users WHERE"
                                      " name = $1",
                            (covct_db_param[]){ COVCT_DB_TEXT(name) }, 1, &n,
                            err);
    if (!rc && n)
        rc = COVCT_ERR(err, COVCT_ERR_ARG, "user '%s' already exists", name);
    covct_db_now(now);
    if (!rc)
        rc = covct_db_query(
            site->db,
            "INSERT INTO users (name, role, password_hash, created_at)"
            " VALUES ($1, $2, $3, $4)",
            (covct_db_param[]){ COVCT_DB_TEXT(name), COVCT_DB_TEXT(role),
                                COVCT_DB_TEXT(password ? hash : NULL),
                                COVCT_DB_TEXT(now) },
            4, NULL, err);
    snprintf(detail, sizeof detail, "{\"role\":\"%s\",\"password\":%s}", role,
             password ? "true" : "false");
    sodium_memzero(hash, sizeof hash);
    return site_end_write(site, rc, "user.add", obj, detail, err);
}

static covct_rc update_user(covct_site *site, const char *name,
                            const char *sql, covct_db_param value,
                            const char *action, covct_error *err)
{
    char obj[96];
    snprintf(obj, sizeof obj, "user:%s", name);
    covct_rc rc = site_begin_write(site, "user.manage", obj, err);
    if (rc)
        return rc;
    int64_t id = 0;
    rc = covct_db_query_int(site->db, sql,
                            (covct_db_param[]){ value, COVCT_DB_TEXT(name) },
                            2, &id, err);
    if (rc == COVCT_ERR_NOT_FOUND) {
        covct_error_clear(err);
        rc = COVCT_ERR(err, rc, "no user '%s'", name);
    }
    return site_end_write(site, rc, action, obj, NULL, err);
}

covct_rc covct_user_set_password(covct_site *site, const char *name,
                                 const char *password, covct_error *err)
{
    char hash[crypto_pwhash_STRBYTES > 128 ? crypto_pwhash_STRBYTES : 128];
    covct_rc rc = hash_password(password ? password : "", hash, err);
    if (!rc)
        rc = update_user(site, name,
                         "UPDATE users SET password_hash = $1 WHERE name = $2"
                         " RETURNING id",
                         COVCT_DB_TEXT(hash), "user.password", err);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

covct_rc covct_user_set_disabled(covct_site *site, const char *name,
                                 bool disabled, covct_error *err)
{
    return update_user(site, name,
                       "UPDATE users SET disabled = $1 WHERE name = $2"
                       " RETURNING id",
                       COVCT_DB_INT(disabled ? 1 : 0),
                       disabled ? "user.disable" : "user.enable", err);
}

bool covct_user_check_password(covct_site *site, const char *name,
                               const char *password)
{
    /* a fixed hash for unknown users, so that their answer takes as long
     * as a real check */
    static char dummy[crypto_pwhash_STRBYTES];
    covct_db_result *r = NULL;
    covct_error err = { 0 };
    if (sodium_init() < 0 || !password || strlen(password) > PASSWORD_MAX)
        return false;
    if (!dummy[0] &&
        crypto_pwhash_str(dummy, "covct-dummy-password", 20,
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return false;
    const char *hash = dummy;
    bool usable = false;
    if (!covct_db_query(site->db,
                        "SELECT password_hash, disabled FROM users WHERE"
                        " name = $1",
                        (covct_db_param[]){ COVCT_DB_TEXT(name) }, 1, &r,
                        &err) &&
        covct_db_rows(r) == 1 && covct_db_get(r, 0, 0) &&
        covct_db_get_int(r, 0, 1, 1) == 0) {
        hash = covct_db_get(r, 0, 0);
        usable = true;
    }
    bool ok = crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
    covct_db_result_free(r);
    return ok && usable;
}
