/*
 * De-identification keys and the keyed hashes built on them: HMAC-SHA256
 * (RFC 2104, FIPS 198-1) under a per-project secret.  A keyed hash, not a
 * plain one, because patient IDs and UIDs have little entropy: anyone could
 * hash every plausible ID and match the outputs, unless the hash needs a
 * secret they do not have.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "govern/govern_int.h"

struct covct_deid_key {
    uint8_t *secret;
    size_t len;
};

covct_rc covct_deid_key_from_bytes(const uint8_t *secret, size_t len,
                                   covct_deid_key **out, covct_error *err)
{
    *out = NULL;
    if (len < COVCT_DEID_KEY_MIN)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "key has %zu bytes of secret; at least %d are "
                         "needed (64 hex digits)",
                         len, COVCT_DEID_KEY_MIN);
    covct_deid_key *k = covct_calloc(1, sizeof *k);
    uint8_t *s = covct_malloc(len);
    if (!k || !s) {
        covct_free(k);
        covct_free(s);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    memcpy(s, secret, len);
    k->secret = s;
    k->len = len;
    *out = k;
    return COVCT_OK;
}

void covct_deid_key_free(covct_deid_key *key)
{
    if (!key)
        return;
    OPENSSL_cleanse(key->secret, key->len);
    covct_free(key->secret);
    covct_free(key);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

covct_rc covct_deid_key_load(const char *path, covct_deid_key **out,
                             covct_error *err)
{
    *out = NULL;
    uint8_t buf[COVCT_DEID_KEY_FILE_MAX + 1];
    uint8_t secret[COVCT_DEID_KEY_FILE_MAX / 2 + 1];
    covct_rc rc = COVCT_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot open key file: %s",
                         path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = COVCT_ERR(err, COVCT_ERR_ARG, "%s: key file is not a regular "
                       "file", path);
        goto out;
    }
    /* Like ssh with private keys: a secret others can read is no longer
     * a secret, so refuse rather than silently use it.  A group-readable
     * key is a legitimate deployment (a service group), hence a warning. */
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        rc = COVCT_ERR(err, COVCT_ERR_ARG,
                       "%s: key file is accessible by other users (mode "
                       "%03o); run: chmod 600 %s",
                       path, (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    if (st.st_mode & S_IRGRP)
        covct_log(COVCT_LOG_WARN,
                  "%s: key file is readable by its group (mode %03o)", path,
                  (unsigned)(st.st_mode & 0777));
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot read: %s", path,
                           strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == sizeof buf) {
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "%s: key file larger than %d bytes; is it the "
                           "right file?",
                           path, COVCT_DEID_KEY_FILE_MAX);
            goto out;
        }
    }
    /* Hex text if every byte is a hex digit or white space; otherwise the
     * bytes themselves are the secret. */
    bool hex = n > 0;
    size_t digits = 0;
    for (size_t i = 0; i < n && hex; i++) {
        if (hexval(buf[i]) >= 0)
            digits++;
        else if (!is_space(buf[i]))
            hex = false;
    }
    size_t slen = 0;
    if (hex) {
        if (digits % 2) {
            rc = COVCT_ERR(err, COVCT_ERR_ARG,
                           "%s: odd number of hex digits (%zu)", path, digits);
            goto out;
        }
        int hi = -1;
        for (size_t i = 0; i < n; i++) {
            int v = hexval(buf[i]);
            if (v < 0)
                continue;
            if (hi < 0) {
                hi = v;
            } else {
                secret[slen++] = (uint8_t)(hi << 4 | v);
                hi = -1;
            }
        }
    } else {
        memcpy(secret, buf, n);
        slen = n;
    }
    if (slen < COVCT_DEID_KEY_MIN) {
        rc = COVCT_ERR(err, COVCT_ERR_ARG,
                       "%s: key too short: %zu bytes of secret, at least %d "
                       "needed (64 hex digits); make one with covct deid "
                       "--new-key",
                       path, slen, COVCT_DEID_KEY_MIN);
        goto out;
    }
    rc = covct_deid_key_from_bytes(secret, slen, out, err);
out:
    OPENSSL_cleanse(buf, sizeof buf);
    OPENSSL_cleanse(secret, sizeof secret);
    close(fd);
    return rc;
}

covct_rc covct_deid_key_generate(const char *path, covct_error *err)
{
    uint8_t r[32];
    char hex[2 * sizeof r + 2];
    static const char hx[] = "0123456789abcdef";
    if (RAND_bytes(r, (int)sizeof r) != 1)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                         "OpenSSL RAND_bytes failed: no key written");
    for (size_t i = 0; i < sizeof r; i++) {
        hex[2 * i] = hx[r[i] >> 4];
        hex[2 * i + 1] = hx[r[i] & 15];
    }
    hex[2 * sizeof r] = '\n';
    /* O_EXCL: never replace a key, since every pseudonym made with it
     * would lose its link to future exports. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    covct_rc rc = COVCT_OK;
    if (fd < 0) {
        rc = errno == EEXIST
                 ? COVCT_ERR(err, COVCT_ERR_ARG,
                             "%s already exists; covct never overwrites a "
                             "key (pseudonyms made with it would change)",
                             path)
                 : COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot create: %s",
                             path, strerror(errno));
        goto out;
    }
    rc = covct_fd_write_all(fd, hex, 2 * sizeof r + 1, path, err);
    if (!rc && fsync(fd) != 0)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: fsync: %s", path,
                       strerror(errno));
    close(fd);
    if (rc)
        unlink(path);
out:
    OPENSSL_cleanse(r, sizeof r);
    OPENSSL_cleanse(hex, sizeof hex);
    return rc;
}

covct_rc covct_deid_hmac_sha256(const uint8_t *key, size_t key_len,
                                const void *msg, size_t len, uint8_t out[32],
                                covct_error *err)
{
    unsigned int olen = 0;
    if (key_len > INT32_MAX ||
        !HMAC(EVP_sha256(), key, (int)key_len, msg, len, out, &olen) ||
        olen != 32)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "OpenSSL HMAC failed");
    return COVCT_OK;
}

/* HMAC(key, label NUL project NUL value): the label separates the uses
 * (a UID and a patient ID that happen to be equal hash differently), the
 * NULs make the concatenation unambiguous (none of the parts holds one). */
static covct_rc keyed(const covct_deid_key *key, const char *label,
                      const char *project, const char *value,
                      uint8_t out[32], covct_error *err)
{
    covct_buf m = {0};
    covct_rc rc;
    if (!project)
        project = "";
    if ((rc = covct_buf_append(&m, label, strlen(label) + 1, err)) ||
        (rc = covct_buf_append(&m, project, strlen(project) + 1, err)) ||
        (rc = covct_buf_append(&m, value, strlen(value), err)))
        goto out;
    rc = covct_deid_hmac_sha256(key->secret, key->len, m.data, m.len, out,
                                err);
out:
    covct_buf_free(&m);
    return rc;
}

covct_rc covct_deid_map_uid(const covct_deid_key *key, const char *project,
                            const char *uid, char out[65], covct_error *err)
{
    /* PS3.5 B.1: UIDs under 1.2.840.10008 name things the standard defines
     * (SOP classes, frames of reference such as the Talairach atlas,
     * coding schemes) and identify no patient. */
    if (!strncmp(uid, "1.2.840.10008.", 14) && strlen(uid) <= 64) {
        memcpy(out, uid, strlen(uid) + 1);
        return COVCT_OK;
    }
    uint8_t h[32];
    covct_rc rc = keyed(key, "uid", project, uid, h, err);
    if (rc)
        return rc;
    /* PS3.5 B.2: "2.25." and a 128-bit integer in decimal, at most 44
     * characters. */
    covct_dcm_uid_from_uuid(h, out);
    return COVCT_OK;
}

covct_rc covct_deid_pseudonym(const covct_deid_key *key, const char *project,
                              const char *patient_id, char out[14],
                              covct_error *err)
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    uint8_t h[32];
    covct_rc rc = keyed(key, "patient", project, patient_id, h, err);
    if (rc)
        return rc;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    out[0] = 'P';
    /* 12 x 5 = 60 bits: the top 60 of the first 64 bits of the MAC. */
    for (int i = 0; i < 12; i++)
        out[1 + i] = b32[(v >> (59 - 5 * i)) & 31];
    out[13] = '\0';
    return COVCT_OK;
}

covct_rc covct_deid_date_shift(const covct_deid_key *key,
                               const char *project, const char *patient_id,
                               int *days, covct_error *err)
{
    uint8_t h[32];
    covct_rc rc = keyed(key, "dates", project, patient_id, h, err);
    if (rc)
        return rc;
    uint32_t v = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
                 (uint32_t)h[2] << 8 | h[3];
    /* Always into the past and never by zero, so that no shifted date can
     * equal the original; within a year, so seasons (and the waves of the
     * pandemic) stay roughly where they were.  The modulo bias (2^32 mod
     * 365) is below 1e-7. */
    *days = -(int)(1 + v % 365);
    return COVCT_OK;
}
