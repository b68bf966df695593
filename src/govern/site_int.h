/* Internals of the govern module's site, audit and case database files
 * (the de-identification's are in govern_int.h). */
#ifndef COVCT_SITE_INT_H
#define COVCT_SITE_INT_H

#include <openssl/evp.h>

#include "covct/db.h"
#include "covct/site.h"

struct covct_site {
    char *dir;
    covct_db *db;
    char actor[160]; /* "os:LOGIN" or "user:NAME" */
    char role[32];
    EVP_PKEY *key;   /* the site's Ed25519 key, loaded on first use */
    char key_id[24]; /* first 16 hex digits of SHA-256(public key) */
};

/* Apply the case database's migrations (src/govern/schema.c). */
covct_rc govern_migrate(covct_db *db, covct_error *err);

/* The site key (src/govern/sitekey.c): DIR/keys/site-audit.key (PKCS#8
 * PEM, mode 0600) and .pub beside it.  `create` makes one when there is
 * none; otherwise a missing key is an error. */
covct_rc site_key_load(covct_site *site, bool create, covct_error *err);
/* Load only the public key (for verification); `key_id` receives its id. */
covct_rc site_pubkey_load(const char *dir, EVP_PKEY **out,
                          char key_id[24], covct_error *err);
covct_rc site_sign(EVP_PKEY *key, const void *msg, size_t len,
                   char sig_hex[129], covct_error *err);
bool site_verify(EVP_PKEY *key, const void *msg, size_t len,
                 const char *sig_hex);

/* A change to the case database: check the actor may do `action`, then
 * begin the transaction (holding the audit chain's lock).  end_write adds
 * the audit entry when rc is COVCT_OK and commits, or rolls back, and
 * returns the outcome. */
covct_rc site_begin_write(covct_site *site, const char *action,
                          const char *object, covct_error *err);
covct_rc site_end_write(covct_site *site, covct_rc rc, const char *action,
                        const char *object, const char *detail,
                        covct_error *err);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void site_hex(const uint8_t *p, size_t n, char *out);

#endif
