/* The audit log: an append-only hash chain in the case database, every
 * entry and the chain's head signed with the site key
 * (docs/internals/audit.md).
 *
 * Entry n's hash is SHA-256 over a length-prefixed encoding of its fields
 * (seq, at, actor, role, action, object, detail, key_id) and entry n-1's
 * hash, so editing any field, deleting an entry or swapping two breaks
 * the chain at that entry; the signature means the chain cannot simply be
 * recomputed after an edit without the site's private key; the signed
 * head (newest seq and hash) catches entries cut off at the end. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "govern/site_int.h"

#define GENESIS \
    "0000000000000000000000000000000000000000000000000000000000000000"
/* entries read per query while verifying */
#define VERIFY_PAGE 2000

typedef struct entry {
    int64_t seq;
    const char *at, *actor, *role, *action, *object, *detail, *key_id,
        *prev_hash, *hash, *sig;
} entry;

static void feed(EVP_MD_CTX *c, const char *s)
{
    char len[24];
    int n = snprintf(len, sizeof len, "%zu:", strlen(s));
    EVP_DigestUpdate(c, len, (size_t)n);
    EVP_DigestUpdate(c, s, strlen(s));
    EVP_DigestUpdate(c, "\n", 1);
}

static covct_rc entry_hash(const entry *e, char out[65], covct_error *err)
{
    char seq[24];
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    snprintf(seq, sizeof seq, "%" PRId64, e->seq);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot start SHA-256");
    }
    EVP_DigestUpdate(c, "covct-audit-1\n", 14);
    feed(c, seq);
    feed(c, e->at);
    feed(c, e->actor);
    feed(c, e->role);
    feed(c, e->action);
    feed(c, e->object);
    feed(c, e->detail);
    feed(c, e->key_id);
    feed(c, e->prev_hash);
    EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    site_hex(md, mdlen, out);
    return COVCT_OK;
}

static void head_message(int64_t seq, const char *hash, const char *key_id,
                         char out[160])
{
    snprintf(out, 160, "covct-audit-head-1:%" PRId64 ":%s:%s", seq, hash,
             key_id);
}

covct_rc covct_audit_in_tx(covct_site *site, const char *action,
                           const char *object, const char *detail_json,
                           covct_error *err)
{
    covct_db *db = site->db;
    covct_rc rc;
    const char *detail = detail_json && *detail_json ? detail_json : "{}";
    cJSON *j = cJSON_Parse(detail);
    bool is_obj = j && cJSON_IsObject(j);
    cJSON_Delete(j);
    if (!is_obj)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                         "audit detail for '%s' is not a JSON object: %s",
                         action, detail);
    if ((rc = site_key_load(site, true, err)))
        return rc;
    covct_db_result *r = NULL;
    if ((rc = covct_db_query(db, "SELECT seq, hash FROM audit_head"
                                 " WHERE id = 1",
                             NULL, 0, &r, err)))
        return rc;
    int64_t seq = covct_db_rows(r) ? covct_db_get_int(r, 0, 0, 0) + 1 : 1;
    char prev[65];
    snprintf(prev, sizeof prev, "%s",
             covct_db_rows(r) && covct_db_get(r, 0, 1) ? covct_db_get(r, 0, 1)
                                                       : GENESIS);
    covct_db_result_free(r);

    char at[COVCT_DB_TIME_LEN], hash[65], sig[129], head_sig[129],
        msg[160];
    covct_db_now(at);
    entry e = { seq,    at,     site->actor,  site->role,
                action, object, detail, site->key_id,
                prev,   NULL,   NULL };
    if ((rc = entry_hash(&e, hash, err)))
        return rc;
    head_message(seq, hash, site->key_id, msg);
    if ((rc = site_sign(site->key, hash, 64, sig, err)) ||
        (rc = site_sign(site->key, msg, strlen(msg), head_sig, err)))
        return rc;
    if ((rc = covct_db_query(
             db,
             "INSERT INTO audit_log (seq, at, actor, role, action, object,"
             " detail, key_id, prev_hash, hash, sig) VALUES"
             " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
             (covct_db_param[]){ COVCT_DB_INT(seq), COVCT_DB_TEXT(at),
                                 COVCT_DB_TEXT(site->actor),
                                 COVCT_DB_TEXT(site->role),
                                 COVCT_DB_TEXT(action),
                                 COVCT_DB_TEXT(object),
                                 COVCT_DB_TEXT(detail),
                                 COVCT_DB_TEXT(site->key_id),
                                 COVCT_DB_TEXT(prev), COVCT_DB_TEXT(hash),
                                 COVCT_DB_TEXT(sig) },
             11, NULL, err)))
        return rc;
    if (seq == 1)
        rc = covct_db_query(
            db,
            "INSERT INTO audit_head (id, seq, hash, key_id, sig)"
            " VALUES (1, $1, $2, $3, $4)",
            (covct_db_param[]){ COVCT_DB_INT(seq), COVCT_DB_TEXT(hash),
                                COVCT_DB_TEXT(site->key_id),
                                COVCT_DB_TEXT(head_sig) },
            4, NULL, err);
    else
        rc = covct_db_query(
            db,
            "UPDATE audit_head SET seq = $1, hash = $2, key_id = $3,"
            " sig = $4 WHERE id = 1",
            (covct_db_param[]){ COVCT_DB_INT(seq), COVCT_DB_TEXT(hash),
                                COVCT_DB_TEXT(site->key_id),
                                COVCT_DB_TEXT(head_sig) },
            4, NULL, err);
    return rc;
}

covct_rc covct_audit(covct_site *site, const char *action,
                     const char *object, const char *detail_json,
                     covct_error *err)
{
    covct_rc rc;
    /* the key first: creating it must not happen inside the transaction's
     * error path */
    if ((rc = site_key_load(site, true, err)) ||
        (rc = covct_db_begin(site->db, "audit_head", err)))
        return rc;
    if ((rc = covct_audit_in_tx(site, action, object, detail_json, err)) ||
        (rc = covct_db_commit(site->db, err))) {
        covct_db_rollback(site->db);
        covct_error_prefix(err, "audit log: ");
        return rc;
    }
    return COVCT_OK;
}

/* ---- verification -------------------------------------------------------- */
static void bad(covct_audit_result *res, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bad(covct_audit_result *res, int64_t seq, const char *fmt, ...)
{
    if (res->bad_seq)
        return;
    res->bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->problem, sizeof res->problem, fmt, ap);
    va_end(ap);
}

static entry row_entry(const covct_db_result *r, size_t i)
{
    entry e;
    e.seq = covct_db_get_int(r, i, 0, -1);
#define COL(k) (covct_db_get(r, i, (k)) ? covct_db_get(r, i, (k)) : "")
    e.at = COL(1);
    e.actor = COL(2);
    e.role = COL(3);
    e.action = COL(4);
    e.object = COL(5);
    e.detail = COL(6);
    e.key_id = COL(7);
    e.prev_hash = COL(8);
    e.hash = COL(9);
    e.sig = COL(10);
#undef COL
    return e;
}

covct_rc covct_audit_verify(covct_site *site, covct_audit_result *res,
                            covct_error *err)
{
    memset(res, 0, sizeof *res);
    covct_db *db = site->db;
    covct_db_result *r = NULL;
    covct_rc rc;
    int64_t count = 0;
    if ((rc = covct_db_query_int(db, "SELECT COUNT(*) FROM audit_log", NULL,
                                 0, &count, err)))
        return rc;
    if ((rc = covct_db_query(db, "SELECT seq, hash, key_id, sig FROM"
                                 " audit_head WHERE id = 1",
                             NULL, 0, &r, err)))
        return rc;
    bool have_head = covct_db_rows(r) == 1;
    int64_t head_seq = have_head ? covct_db_get_int(r, 0, 0, -1) : 0;
    char head_hash[65] = "", head_key[24] = "", head_sig[160] = "";
    if (have_head) {
        snprintf(head_hash, sizeof head_hash, "%s",
                 covct_db_get(r, 0, 1) ? covct_db_get(r, 0, 1) : "");
        snprintf(head_key, sizeof head_key, "%s",
                 covct_db_get(r, 0, 2) ? covct_db_get(r, 0, 2) : "");
        snprintf(head_sig, sizeof head_sig, "%s",
                 covct_db_get(r, 0, 3) ? covct_db_get(r, 0, 3) : "");
    }
    covct_db_result_free(r);
    if (count == 0 && !have_head)
        return COVCT_OK; /* an empty log is intact */

    EVP_PKEY *pub = NULL;
    char key_id[24];
    if ((rc = site_pubkey_load(site->dir, &pub, key_id, err)))
        return rc;

    char prev[65] = GENESIS, hash[65];
    int64_t expect = 1;
    for (;;) {
        if ((rc = covct_db_query(
                 db,
                 "SELECT seq, at, actor, role, action, object, detail,"
                 " key_id, prev_hash, hash, sig FROM audit_log"
                 " WHERE seq >= $1 ORDER BY seq LIMIT $2",
                 (covct_db_param[]){ COVCT_DB_INT(expect),
                                     COVCT_DB_INT(VERIFY_PAGE) },
                 2, &r, err)))
            break;
        size_t n = covct_db_rows(r);
        for (size_t i = 0; i < n && !res->bad_seq; i++) {
            entry e = row_entry(r, i);
            if (e.seq != expect) {
                bad(res, expect,
                    "entry %" PRId64 " is missing (deleted?): the entry "
                    "after %" PRId64 " is %" PRId64,
                    expect, expect - 1, e.seq);
                break;
            }
            if (strcmp(e.prev_hash, prev)) {
                bad(res, e.seq,
                    "entry %" PRId64 " (%s, %s by %s) does not follow entry "
                    "%" PRId64 ": its previous-hash differs (entries "
                    "deleted or reordered before it)",
                    e.seq, e.at, e.action, e.actor, e.seq - 1);
                break;
            }
            if ((rc = entry_hash(&e, hash, err)))
                break;
            if (strcmp(hash, e.hash)) {
                bad(res, e.seq,
                    "entry %" PRId64 " (%s, %s by %s) has been changed: "
                    "its content does not match its hash",
                    e.seq, e.at, e.action, e.actor);
                break;
            }
            if (strcmp(e.key_id, key_id)) {
                bad(res, e.seq,
                    "entry %" PRId64 " is signed with key %s, not the "
                    "site key %s",
                    e.seq, e.key_id, key_id);
                break;
            }
            if (!site_verify(pub, e.hash, 64, e.sig)) {
                bad(res, e.seq,
                    "entry %" PRId64 " (%s, %s by %s) has a signature "
                    "that the site key does not confirm (chain rewritten?)",
                    e.seq, e.at, e.action, e.actor);
                break;
            }
            memcpy(prev, e.hash, 65);
            res->entries++;
            expect++;
        }
        covct_db_result_free(r);
        r = NULL;
        if (rc || res->bad_seq || n < VERIFY_PAGE)
            break;
    }
    if (!rc && !res->bad_seq && count != expect - 1) {
        /* The walk starts at 1 and follows the numbers up, so rows that
         * sort before entry 1 (numbered 0 or below, or without a number)
         * are never read by it: compare the count of rows with the chain
         * and name a row outside it.  covct numbers from 1 without gaps;
         * such a row was written into the database directly. */
        int64_t last = expect - 1;
        if (!(rc = covct_db_query(
                  db,
                  "SELECT seq, at, action, actor FROM audit_log WHERE"
                  " seq IS NULL OR seq < 1 OR seq > $1 ORDER BY seq LIMIT 1",
                  (covct_db_param[]){ COVCT_DB_INT(last) }, 1, &r, err))) {
            char num[32] = "without a number";
            if (covct_db_rows(r) && covct_db_get(r, 0, 0))
                snprintf(num, sizeof num, "numbered %s",
                         covct_db_get(r, 0, 0));
#define COLV(k) \
    (covct_db_rows(r) && covct_db_get(r, 0, (k)) ? covct_db_get(r, 0, (k)) : "?")
            bad(res, last + 1,
                "the table audit_log has %" PRId64 " rows but the chain "
                "has %" PRId64 " entries (1 to %" PRId64 "): a row %s (%s, "
                "%s by %s) is outside the chain; covct numbers entries from "
                "1 without gaps, so it was written into the database "
                "directly",
                count, last, last, num, COLV(1), COLV(2), COLV(3));
#undef COLV
            covct_db_result_free(r);
            r = NULL;
        }
    }
    if (!rc && !res->bad_seq) {
        char msg[160];
        int64_t last = expect - 1;
        head_message(head_seq, head_hash, head_key, msg);
        if (!have_head)
            bad(res, last ? last : 1,
                "the log's signed head is missing (removed?)");
        else if (!site_verify(pub, msg, strlen(msg), head_sig))
            bad(res, head_seq,
                "the log's head (entry %" PRId64 ") has a signature that the "
                "site key does not confirm",
                head_seq);
        else if (head_seq > last)
            bad(res, last + 1,
                "entry %" PRId64 " is missing (deleted?): the log ends at "
                "entry %" PRId64 " but its signed head says %" PRId64,
                last + 1, last, head_seq);
        else if (head_seq < last || strcmp(head_hash, prev))
            bad(res, head_seq < last ? head_seq + 1 : last,
                "the log does not end where its signed head says (entry "
                "%" PRId64 "): entries after it were added without the "
                "site key, or the last one was changed",
                head_seq);
    }
    EVP_PKEY_free(pub);
    return rc;
}
