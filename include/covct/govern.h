/*
 * covct govern: data governance.  Sections: de-identification (PS3.15
 * Annex E).  Other sections (the audit trail) follow below it.
 */
#ifndef COVCT_GOVERN_H
#define COVCT_GOVERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/dicom.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- de-identification ---------------------------------------------------
 * The Basic Application Level Confidentiality Profile of DICOM PS3.15 E.1
 * (Table E.1-1, edition current in June 2025) with the options below.
 * Identifiers are replaced by keyed hashes (HMAC-SHA256 under a secret
 * project key), so that the same patient, study or instance gets the same
 * pseudonym and UIDs in every run and every file: a follow-up CT lands on
 * the same pseudonym, and references between objects (Referenced SOP
 * Instance UID, Frame of Reference, a SEG's source images) survive.
 * Details and the choices made: docs/internals/deid.md. */

/* Bytes of secret a key must have at least (256 bits, HMAC-SHA256's
 * block-independent strength). */
#define COVCT_DEID_KEY_MIN 32
/* Larger key files are refused: a key is a secret, not a document. */
#define COVCT_DEID_KEY_FILE_MAX 4096

typedef struct covct_deid_key covct_deid_key;

/* Read a key file: hex text (at least 64 hex digits, whitespace ignored)
 * or raw binary (at least 32 bytes).  A file others may read or write
 * (mode & 007) is refused; one the group may read is accepted with a
 * warning logged.  On failure *out is NULL and err names the file. */
covct_rc covct_deid_key_load(const char *path, covct_deid_key **out,
                             covct_error *err);
/* A key from secret bytes in memory (copied; len >= COVCT_DEID_KEY_MIN). */
covct_rc covct_deid_key_from_bytes(const uint8_t *secret, size_t len,
                                   covct_deid_key **out, covct_error *err);
/* Wipes the secret; accepts NULL. */
void covct_deid_key_free(covct_deid_key *key);
/* Write a new key file of 32 random bytes (OpenSSL RAND_bytes) as 64 hex
 * digits, mode 0600.  Refuses to overwrite an existing file. */
covct_rc covct_deid_key_generate(const char *path, covct_error *err);

typedef struct covct_deid_opts {
    /* Mixed into every hash: the same patient gets unrelated pseudonyms,
     * UIDs and date shifts in two projects.  NULL means "". */
    const char *project;
    /* Retain Longitudinal Temporal Information with Modified Dates Option
     * (DCM 113107): dates shifted by a per-patient number of days, times
     * kept.  Off: dates per the Basic Profile (removed or emptied). */
    bool shift_dates;
    /* Retain Patient Characteristics Option (113108): sex, age, size,
     * weight, ethnic group, smoking and pregnancy status. */
    bool keep_patient_chars;
    /* Retain Device Identity Option (113109): station name, serial
     * numbers, detector and device identifiers. */
    bool keep_device_id;
    /* Retain Institution Identity Option (113112). */
    bool keep_institution_id;
    /* Clean Descriptors Option (113105): a description is kept when every
     * word is in covct's vocabulary of anatomy and protocol terms, else
     * handled as the Basic Profile says. */
    bool clean_descriptors;
} covct_deid_opts;

/* The defaults of `covct deid`, chosen for research exports: dates
 * shifted, patient characteristics kept, device and institution identity
 * removed, descriptors cleaned. */
void covct_deid_opts_default(covct_deid_opts *opts);

/* Actions of PS3.15 Table E.1-1 (E.1.1): */
typedef enum covct_deid_action {
    COVCT_DEID_KEEP = 0, /* K: keep (also attributes the table omits) */
    COVCT_DEID_DUMMY,    /* D: replace with a non-empty dummy of the VR */
    COVCT_DEID_ZERO,     /* Z: replace with a zero-length value */
    COVCT_DEID_REMOVE,   /* X: remove */
    COVCT_DEID_UID,      /* U: replace UIDs by their keyed mapping */
    COVCT_DEID_CLEAN,    /* C: clean (dates: shift; text: vocabulary) */
    COVCT_DEID_UID_SEQ   /* U* of X/Z/U*: keep the sequence, map the UIDs
                            inside and de-identify its items */
} covct_deid_action;

/* The action covct takes for `tag` (any group, including private and
 * repeating groups) under `opts`, before the value is looked at: an
 * option column overrides the Basic Profile; compound actions resolve as
 * docs/internals/deid.md says (D before Z before X, U* for sequences).
 * `vr` is the element's VR (it decides the resolution for sequences). */
covct_deid_action covct_deid_action_for(uint32_t tag, uint16_t vr,
                                        const covct_deid_opts *opts);
/* "K", "D", "Z", "X", "U", "C", "U*". */
const char *covct_deid_action_str(covct_deid_action a);
/* The Basic Profile column of Table E.1-1 as printed ("X/Z/D", ...), or
 * NULL when the table does not list the tag. */
const char *covct_deid_table_basic(uint32_t tag);

/* Keyed hashes.  HMAC-SHA256 (RFC 2104) of `len` bytes, exposed for the
 * RFC 4231 test vectors. */
covct_rc covct_deid_hmac_sha256(const uint8_t *key, size_t key_len,
                                const void *msg, size_t len,
                                uint8_t out[32], covct_error *err);
/* The replacement of `uid`: "2.25." and the decimal value of the first 128
 * bits of HMAC(key, "uid" NUL project NUL uid).  Well-known DICOM UIDs
 * (1.2.840.10008.*) are returned unchanged.  out holds 65 bytes. */
covct_rc covct_deid_map_uid(const covct_deid_key *key, const char *project,
                            const char *uid, char out[65], covct_error *err);
/* The patient pseudonym: "P" and 12 base32 characters (60 bits) of
 * HMAC(key, "patient" NUL project NUL patient_id).  out holds 14 bytes. */
covct_rc covct_deid_pseudonym(const covct_deid_key *key, const char *project,
                              const char *patient_id, char out[14],
                              covct_error *err);
/* The date shift of a patient, in days, between -365 and -1: from
 * HMAC(key, "dates" NUL project NUL patient_id). */
covct_rc covct_deid_date_shift(const covct_deid_key *key,
                               const char *project, const char *patient_id,
                               int *days, covct_error *err);

/* Why an object must not leave de-identified: Burned In Annotation
 * (0028,0301) YES; a Secondary Capture SOP Class or an Image Type with
 * SECONDARY or SCREEN, unless Burned In Annotation is NO.  Pixel data
 * are never inspected or masked.  Returns true and a reason in `why`
 * when the object is refused. */
bool covct_deid_burned_in(const covct_dcm_dataset *ds, char *why,
                          size_t cap);

/* De-identify a data set in place (top level: the file's data set):
 * every element gets the action of covct_deid_action_for(), recursively
 * through sequences; Patient Identity Removed, De-identification Method
 * (and its Code Sequence) and Longitudinal Temporal Information Modified
 * are written.  Pixel data and the other image attributes are kept.
 * Refuses (COVCT_ERR_UNSUPPORTED, message saying why) an object with
 * burned-in annotation, before changing anything.  On other failures the
 * data set may be half done: discard it. */
covct_rc covct_deid_dataset(covct_dcm_dataset *ds, const covct_deid_key *key,
                            const covct_deid_opts *opts, covct_error *err);

/* De-identify a parsed file and append the result to `out` as a Part 10
 * file: encapsulated pixel data keep their transfer syntax and fragments
 * byte for byte; native pixel data are written in explicit VR little
 * endian (the values unchanged).  The file's data set is modified. */
covct_rc covct_deid_file(covct_dcm_file *f, const covct_deid_key *key,
                         const covct_deid_opts *opts, covct_buf *out,
                         covct_error *err);

/* The same on a Part 10 file in memory (only read), for the server's
 * exports: `in` is parsed, de-identified and appended to `out`. */
covct_rc covct_deid_buffer(const uint8_t *in, size_t len,
                           const covct_deid_key *key,
                           const covct_deid_opts *opts, covct_buf *out,
                           covct_error *err);

#ifdef __cplusplus
}
#endif
#endif
