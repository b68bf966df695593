/* API tokens: random secrets for scripts, stored as SHA-256. */
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "govern/site_int.h"

static void b64url(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                            "0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = 0;
}

covct_rc covct_token_create(covct_site *site, const char *user,
                            const char *label, char token[80],
                            covct_error *err)
{
    uint8_t raw[32];
    char obj[96], now[COVCT_DB_TIME_LEN], sha[65];
    int64_t uid = 0;
    covct_error e2 = { 0 };
    covct_rc rc = covct_db_query_int(
        site->db, "SELECT id FROM users WHERE name = $1 AND disabled = 0",
        (covct_db_param[]){ COVCT_DB_TEXT(user) }, 1, &uid, &e2);
    if (rc == COVCT_ERR_NOT_FOUND)
        return COVCT_ERR(err, rc, "no active user '%s'", user);
    if (rc)
        return COVCT_ERR(err, rc, "%s", e2.msg);
    if (RAND_bytes(raw, sizeof raw) != 1)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                         "no random numbers from OpenSSL");
    memcpy(token, "covct_", 6);
    b64url(raw, 31, token + 6); /* 31 bytes: 42 characters, no padding */
    covct_sha256_hex(token, strlen(token), sha);
    snprintf(obj, sizeof obj, "user:%s", user);
    if ((rc = site_begin_write(site, "user.manage", obj, err)))
        return rc;
    covct_db_now(now);
    rc = covct_db_query(
        site->db,
        "INSERT INTO api_tokens (user_id, token_sha256, label, created_at)"
        " VALUES ($1, $2, $3, $4)",
        (covct_db_param[]){ COVCT_DB_INT(uid), COVCT_DB_TEXT(sha),
                            COVCT_DB_TEXT(label), COVCT_DB_TEXT(now) },
        4, NULL, err);
    return site_end_write(site, rc, "token.create", obj, NULL, err);
}

covct_rc covct_token_check(covct_site *site, const char *token,
                           char user[65], char role[32], covct_error *err)
{
    if (!token || strlen(token) != COVCT_TOKEN_LEN ||
        strncmp(token, "covct_", 6))
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND, "not a covct token");
    char sha[65];
    covct_sha256_hex(token, strlen(token), sha);
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        site->db,
        "SELECT u.name, u.role FROM api_tokens t JOIN users u ON u.id ="
        " t.user_id WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND"
        " u.disabled = 0",
        (covct_db_param[]){ COVCT_DB_TEXT(sha) }, 1, &r, err);
    if (rc)
        return rc;
    if (covct_db_rows(r) != 1) {
        covct_db_result_free(r);
        return COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                         "unknown or revoked token");
    }
    snprintf(user, 65, "%s", covct_db_get(r, 0, 0));
    snprintf(role, 32, "%s", covct_db_get(r, 0, 1));
    covct_db_result_free(r);
    return COVCT_OK;
}

covct_rc covct_token_revoke(covct_site *site, const char *user,
                            covct_error *err)
{
    char obj[96], now[COVCT_DB_TIME_LEN];
    snprintf(obj, sizeof obj, "user:%s", user);
    covct_rc rc = site_begin_write(site, "user.manage", obj, err);
    if (rc)
        return rc;
    covct_db_now(now);
    rc = covct_db_query(
        site->db,
        "UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND"
        " user_id = (SELECT id FROM users WHERE name = $2)",
        (covct_db_param[]){ COVCT_DB_TEXT(now), COVCT_DB_TEXT(user) }, 2, NULL,
        err);
    return site_end_write(site, rc, "token.revoke", obj, NULL, err);
}
