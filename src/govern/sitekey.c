/* The site key: an Ed25519 key pair (OpenSSL) that signs every audit
 * entry, kept in DIR/keys/ (docs/internals/audit.md). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "govern/site_int.h"

void site_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
}

void covct_sha256_hex(const void *p, size_t n, char out[65])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    site_hex(md, len, out);
}

covct_rc covct_sha256_file(const char *path, char out[65], covct_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot read %s: %s", path,
                         strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        fclose(f);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot start SHA-256");
    }
    uint8_t buf[65536], md[EVP_MAX_MD_SIZE];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        EVP_DigestUpdate(c, buf, n);
    bool bad = ferror(f);
    fclose(f);
    unsigned int len = 0;
    EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    if (bad)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot read %s", path);
    site_hex(md, len, out);
    return COVCT_OK;
}

static void ossl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "unknown OpenSSL error");
    ERR_clear_error();
}

static covct_rc key_id_of(EVP_PKEY *key, char key_id[24], covct_error *err)
{
    uint8_t raw[64];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "the site key is not an Ed25519 key");
    char hex[65];
    covct_sha256_hex(raw, len, hex);
    memcpy(key_id, hex, 16);
    key_id[16] = 0;
    return COVCT_OK;
}

static void key_paths(const char *dir, char priv[4096], char pub[4096])
{
    snprintf(priv, 4096, "%s/keys/site-audit.key", dir);
    snprintf(pub, 4096, "%s/keys/site-audit.pub", dir);
}

/* Write `key` as PEM to a new file (never over an existing one). */
static covct_rc write_pem(const char *path, EVP_PKEY *key, bool private_part,
                          covct_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                  private_part ? 0600 : 0644);
    if (fd < 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", path,
                         strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s", path);
    }
    int ok = private_part
                 ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_PUBKEY(f, key);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s", path);
    return COVCT_OK;
}

static covct_rc create_key(covct_site *site, const char *priv,
                           const char *pub, covct_error *err)
{
    char keys[4096];
    snprintf(keys, sizeof keys, "%s/keys", site->dir);
    if (mkdir(keys, 0700) != 0 && errno != EEXIST)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", keys,
                         strerror(errno));
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!key) {
        char why[256];
        ossl_reason(why, sizeof why);
        return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                         "cannot make the site key: %s", why);
    }
    covct_rc rc;
    if ((rc = write_pem(priv, key, true, err)) ||
        (rc = write_pem(pub, key, false, err)) ||
        (rc = key_id_of(key, site->key_id, err))) {
        EVP_PKEY_free(key);
        return rc;
    }
    site->key = key;
    covct_log(COVCT_LOG_INFO,
              "made the site key %s (id %s): keep a copy in a safe place; "
              "it signs the audit log",
              priv, site->key_id);
    return COVCT_OK;
}

covct_rc site_key_load(covct_site *site, bool create, covct_error *err)
{
    if (site->key)
        return COVCT_OK;
    char priv[4096], pub[4096];
    key_paths(site->dir, priv, pub);
    FILE *f = fopen(priv, "r");
    if (!f) {
        /* a new key only for a new site: with the public half still there,
         * the private one was lost and a new key would break the chain */
        if (errno == ENOENT && create && access(pub, F_OK) != 0)
            return create_key(site, priv, pub, err);
        return COVCT_ERR(err, COVCT_ERR_IO,
                         "cannot open the site key %s: %s (the audit log "
                         "cannot be extended without it; restore it from "
                         "the site's backup)",
                         priv, strerror(errno));
    }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key) {
        char why[256];
        ossl_reason(why, sizeof why);
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "%s is not a PEM private key: %s", priv, why);
    }
    covct_rc rc = key_id_of(key, site->key_id, err);
    if (rc) {
        EVP_PKEY_free(key);
        return rc;
    }
    site->key = key;
    return COVCT_OK;
}

covct_rc site_pubkey_load(const char *dir, EVP_PKEY **out, char key_id[24],
                          covct_error *err)
{
    char priv[4096], pub[4096];
    key_paths(dir, priv, pub);
    *out = NULL;
    FILE *f = fopen(pub, "r");
    if (!f)
        return COVCT_ERR(err, COVCT_ERR_IO,
                         "cannot open the site's public key %s: %s", pub,
                         strerror(errno));
    EVP_PKEY *key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!key)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "%s is not a PEM public key", pub);
    covct_rc rc = key_id_of(key, key_id, err);
    if (rc) {
        EVP_PKEY_free(key);
        return rc;
    }
    *out = key;
    return COVCT_OK;
}

covct_rc site_sign(EVP_PKEY *key, const void *msg, size_t len,
                   char sig_hex[129], covct_error *err)
{
    uint8_t sig[64];
    size_t sl = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestSign(ctx, sig, &sl, msg, len) == 1 && sl == 64;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        char why[256];
        ossl_reason(why, sizeof why);
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "signing failed: %s", why);
    }
    site_hex(sig, sl, sig_hex);
    return COVCT_OK;
}

static int unhex(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

bool site_verify(EVP_PKEY *key, const void *msg, size_t len,
                 const char *sig_hex)
{
    uint8_t sig[64];
    if (!sig_hex || strlen(sig_hex) != 128)
        return false;
    for (int i = 0; i < 64; i++) {
        int h = unhex(sig_hex[2 * i]), l = unhex(sig_hex[2 * i + 1]);
        if (h < 0 || l < 0)
            return false;
        sig[i] = (uint8_t)(h << 4 | l);
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
              EVP_DigestVerify(ctx, sig, sizeof sig, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}
