/*
 * covct dicom: DICOM Part 10 files (PS3.10), data sets and their encoding
 * (PS3.5), the data dictionary (PS3.6), character sets and pixel decoding.
 *
 * Ownership: a covct_dcm_file owns everything reachable from it (data sets,
 * elements, value bytes).  Pointers returned by accessors stay valid until
 * covct_dcm_file_free() or until the element is replaced.  Values of parsed
 * elements point into the file's buffer in the file's byte order; use the
 * typed accessors, which swap as needed.
 */
#ifndef COVCT_DICOM_H
#define COVCT_DICOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COVCT_TAG(g, e) ((uint32_t)(((uint32_t)(g) << 16) | (uint16_t)(e)))
#define COVCT_TAG_GROUP(t) ((uint16_t)((t) >> 16))
#define COVCT_TAG_ELEM(t) ((uint16_t)((t)&0xFFFFu))

/* Two ASCII letters packed big-endian: COVCT_VR('O','B'). */
#define COVCT_VR(a, b) ((uint16_t)(((uint16_t)(a) << 8) | (uint16_t)(b)))
#define COVCT_VR_NONE 0

#define COVCT_UNDEFINED_LENGTH 0xFFFFFFFFu

/* Transfer syntax UIDs (PS3.5 Section 10, PS3.6 Annex A). */
#define COVCT_TS_IMPLICIT_LE "1.2.840.10008.1.2"
#define COVCT_TS_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define COVCT_TS_DEFLATED_LE "1.2.840.10008.1.2.1.99"
#define COVCT_TS_EXPLICIT_BE "1.2.840.10008.1.2.2"
#define COVCT_TS_JPEG_BASELINE "1.2.840.10008.1.2.4.50"
#define COVCT_TS_JPEG_EXTENDED "1.2.840.10008.1.2.4.51"
#define COVCT_TS_JPEG_LOSSLESS "1.2.840.10008.1.2.4.57"
#define COVCT_TS_JPEG_LOSSLESS_SV1 "1.2.840.10008.1.2.4.70"
#define COVCT_TS_JPEGLS_LOSSLESS "1.2.840.10008.1.2.4.80"
#define COVCT_TS_JPEGLS_NEAR "1.2.840.10008.1.2.4.81"
#define COVCT_TS_J2K_LOSSLESS "1.2.840.10008.1.2.4.90"
#define COVCT_TS_J2K "1.2.840.10008.1.2.4.91"
#define COVCT_TS_RLE "1.2.840.10008.1.2.5"
#define COVCT_TS_DEFLATED_IMAGE "1.2.840.10008.1.2.8.1"

typedef struct covct_dcm_file covct_dcm_file;
typedef struct covct_dcm_dataset covct_dcm_dataset;
typedef struct covct_dcm_element covct_dcm_element;

/* ---- data dictionary (generated from dcmtk's dicom.dic) ---------------- */
typedef struct covct_dcm_dict_entry {
    uint32_t tag;       /* for ranges: the lowest tag */
    uint32_t tag_mask;  /* bits that must match; 0xFFFFFFFF for plain tags */
    uint16_t vr;        /* VR; OW for OB-or-OW, COVCT_VR('x','s') for
                           US-or-SS (decided by Pixel Representation) */
    const char *keyword;
    const char *vm;
} covct_dcm_dict_entry;

/* NULL when the tag is unknown (private tags, retired ones not listed). */
const covct_dcm_dict_entry *covct_dcm_dict_lookup(uint32_t tag);
/* Tag for a keyword such as "PatientName"; 0 when unknown. */
uint32_t covct_dcm_dict_tag(const char *keyword);
const char *covct_dcm_vr_str(uint16_t vr, char buf[3]);
bool covct_dcm_vr_is_known(uint16_t vr);
/* Whether values of this VR are character strings (AE ... UT). */
bool covct_dcm_vr_is_string(uint16_t vr);

/* Name of a transfer syntax UID, or NULL if covct does not know it. */
const char *covct_dcm_ts_name(const char *uid);
/* Whether covct can decode pixel data in this transfer syntax. */
bool covct_dcm_ts_decodable(const char *uid);

/* ---- reading ----------------------------------------------------------- */
typedef struct covct_dcm_read_opts {
    /* Stop before (7FE0,0010) and later top-level elements: header-only
     * parsing for indexing and series grouping. */
    bool stop_before_pixels;
} covct_dcm_read_opts;

/* Read and parse a file.  On failure *out is NULL and err names the file
 * offset and element.  Files without the Part 10 preamble or meta header
 * are accepted; the transfer syntax is then inferred from the first bytes. */
covct_rc covct_dcm_file_read(const char *path, const covct_dcm_read_opts *opts,
                             covct_dcm_file **out, covct_error *err);

/* Parse a buffer.  The file takes ownership of `data` (allocated with
 * covct_malloc) on success and on failure. */
covct_rc covct_dcm_file_parse(uint8_t *data, size_t len,
                              const covct_dcm_read_opts *opts,
                              covct_dcm_file **out, covct_error *err);

void covct_dcm_file_free(covct_dcm_file *f);

/* Peek at a Part 10 file's meta information without parsing the rest:
 * the SOP Class, SOP Instance and Transfer Syntax UIDs (each up to 64
 * characters + NUL) and the offset of the data set; `len` may cover only
 * the file's start. */
covct_rc covct_dcm_meta_peek(const uint8_t *file, size_t len,
                             char *sop_class, char *sop_inst, char *ts,
                             size_t *data_off, covct_error *err);

/* The bytes the file was parsed from (as given to covct_dcm_file_parse or
 * read from disk). */
const uint8_t *covct_dcm_file_bytes(const covct_dcm_file *f, size_t *len);

/* File meta information (group 0002); an empty data set if absent. */
const covct_dcm_dataset *covct_dcm_file_meta(const covct_dcm_file *f);
covct_dcm_dataset *covct_dcm_file_dataset(covct_dcm_file *f);
const covct_dcm_dataset *covct_dcm_file_dataset_const(const covct_dcm_file *f);
/* Transfer syntax UID the data set was encoded in (never NULL). */
const char *covct_dcm_file_ts(const covct_dcm_file *f);
/* Whether the file had a 128-byte preamble + "DICM". */
bool covct_dcm_file_has_preamble(const covct_dcm_file *f);
/* Non-fatal oddities noticed while parsing (one per line), or "". */
const char *covct_dcm_file_warnings(const covct_dcm_file *f);

/* ---- data sets and elements -------------------------------------------- */
size_t covct_dcm_dataset_count(const covct_dcm_dataset *ds);
/* i-th element in ascending tag order. */
const covct_dcm_element *covct_dcm_dataset_at(const covct_dcm_dataset *ds,
                                              size_t i);
const covct_dcm_element *covct_dcm_dataset_get(const covct_dcm_dataset *ds,
                                               uint32_t tag);
/* Whether values are big endian (explicit VR big endian transfer syntax). */
bool covct_dcm_dataset_big_endian(const covct_dcm_dataset *ds);

uint32_t covct_dcm_element_tag(const covct_dcm_element *e);
uint16_t covct_dcm_element_vr(const covct_dcm_element *e);
/* Value length as declared in the file (COVCT_UNDEFINED_LENGTH possible). */
uint32_t covct_dcm_element_length(const covct_dcm_element *e);
/* Offset of the element's tag in the parsed byte stream. */
size_t covct_dcm_element_offset(const covct_dcm_element *e);
/* Raw value bytes (not for SQ or encapsulated pixel data). */
const uint8_t *covct_dcm_element_value(const covct_dcm_element *e,
                                       size_t *len);
/* Value multiplicity as stored (strings: backslash-separated parts). */
uint32_t covct_dcm_element_vm(const covct_dcm_element *e);

/* SQ items. */
size_t covct_dcm_element_item_count(const covct_dcm_element *e);
const covct_dcm_dataset *covct_dcm_element_item(const covct_dcm_element *e,
                                                size_t i);

/* Encapsulated pixel data: fragment 0 is the Basic Offset Table item. */
bool covct_dcm_element_encapsulated(const covct_dcm_element *e);
size_t covct_dcm_element_fragment_count(const covct_dcm_element *e);
const uint8_t *covct_dcm_element_fragment(const covct_dcm_element *e,
                                          size_t i, size_t *len);

/* Typed access.  `index` selects one value of a multi-valued element.
 * Strings are returned without padding; the result is truncated to cap-1
 * bytes and always NUL-terminated. */
covct_rc covct_dcm_element_get_string(const covct_dcm_element *e,
                                      uint32_t index, char *buf, size_t cap,
                                      covct_error *err);
covct_rc covct_dcm_element_get_int(const covct_dcm_element *e, uint32_t index,
                                   int64_t *out, covct_error *err);
covct_rc covct_dcm_element_get_double(const covct_dcm_element *e,
                                      uint32_t index, double *out,
                                      covct_error *err);

/* Shortcuts on a data set; COVCT_ERR_NOT_FOUND if the tag is absent or
 * has fewer than index+1 values. */
covct_rc covct_dcm_get_string(const covct_dcm_dataset *ds, uint32_t tag,
                              uint32_t index, char *buf, size_t cap,
                              covct_error *err);
covct_rc covct_dcm_get_int(const covct_dcm_dataset *ds, uint32_t tag,
                           uint32_t index, int64_t *out, covct_error *err);
covct_rc covct_dcm_get_double(const covct_dcm_dataset *ds, uint32_t tag,
                              uint32_t index, double *out, covct_error *err);

/* Text value converted to UTF-8 after the data set's Specific Character
 * Set (0008,0005), inherited from enclosing data sets.  *out is allocated
 * with covct_malloc; the caller frees it. */
covct_rc covct_dcm_get_utf8(const covct_dcm_dataset *ds, uint32_t tag,
                            char **out, covct_error *err);

/* ---- character sets (PS3.5 6.1, PS3.3 C.12.1.1.2) ---------------------
 * Convert `len` bytes encoded per the (0008,0005) value `charset` (may be
 * multi-valued "\ISO 2022 IR 87", empty for the default repertoire) to
 * UTF-8.  `is_pn` selects Person Name rules (ISO 2022 state resets at '^'
 * and '='); delimiters '\' reset the state in every case. */
covct_rc covct_dcm_charset_to_utf8(const char *charset, const uint8_t *in,
                                   size_t len, bool is_pn, char **out,
                                   covct_error *err);

/* ---- building and writing ---------------------------------------------- */
covct_dcm_dataset *covct_dcm_dataset_new(void);
void covct_dcm_dataset_free(covct_dcm_dataset *ds);
/* Insert or replace an element with a copy of `value` (little endian for
 * binary VRs; strings as given, padded to even length on write). */
covct_rc covct_dcm_dataset_set(covct_dcm_dataset *ds, uint32_t tag,
                               uint16_t vr, const void *value, size_t len,
                               covct_error *err);
covct_rc covct_dcm_dataset_set_string(covct_dcm_dataset *ds, uint32_t tag,
                                      uint16_t vr, const char *s,
                                      covct_error *err);
covct_rc covct_dcm_dataset_set_u16(covct_dcm_dataset *ds, uint32_t tag,
                                   uint16_t v, covct_error *err);
/* Append a new empty item to sequence `tag` (created if absent).  The item
 * is owned by the data set. */
covct_rc covct_dcm_dataset_add_item(covct_dcm_dataset *ds, uint32_t tag,
                                    covct_dcm_dataset **item,
                                    covct_error *err);
/* Remove every element with this tag (a parsed data set may hold the same
 * tag twice) with all it owns; returns how many were removed.  Pointers to
 * elements of `ds` obtained before the call are invalid after it. */
size_t covct_dcm_dataset_remove(covct_dcm_dataset *ds, uint32_t tag);
/* Item i of sequence `tag` for editing in place (the item stays owned by
 * the data set); NULL if there is no such sequence or item. */
covct_dcm_dataset *covct_dcm_dataset_item_mut(covct_dcm_dataset *ds,
                                              uint32_t tag, size_t i);
/* Deep-copy every element of `src` into `dst` (replacing equal tags). */
covct_rc covct_dcm_dataset_copy_into(covct_dcm_dataset *dst,
                                     const covct_dcm_dataset *src,
                                     covct_error *err);

/* Set Pixel Data (7FE0,0010) to encapsulated fragments (PS3.5 A.4), copied:
 * frags[0] is the Basic Offset Table (may have length 0), the others the
 * compressed fragments in order.  The data set must then be written with
 * the matching compressed transfer syntax. */
covct_rc covct_dcm_dataset_set_encapsulated(covct_dcm_dataset *ds,
                                            const uint8_t *const *frags,
                                            const size_t *lens, size_t n,
                                            covct_error *err);

/* Write `ds` as a Part 10 file: preamble, a meta header built from SOP
 * Class/Instance UID in `ds`, and the data set in explicit VR little
 * endian.  covct_dcm_write_file() uses that transfer syntax; the _ts
 * variants name another one whose data set encoding is explicit VR little
 * endian (the compressed ones), for data sets with encapsulated pixel data.
 * Files are written to a temporary name, fsync'd and renamed. */
/* Append the data set alone (no preamble or meta information; group 0002
 * skipped), explicit or implicit VR little endian: a DIMSE data set or
 * query identifier (PS3.7). */
covct_rc covct_dcm_encode_dataset(const covct_dcm_dataset *ds,
                                  bool implicit_vr, covct_buf *out,
                                  covct_error *err);

/* The data set of a Part 10 file (`file`, `len` bytes, only read)
 * re-encoded in explicit (or implicit) VR little endian with decompressed
 * native pixel data (Bits Allocated, Photometric Interpretation and
 * Planar Configuration adjusted to what the decoder gives), appended to
 * out: for a peer that does not accept the file's transfer syntax. */
covct_rc covct_dcm_transcode_native(const uint8_t *file, size_t len,
                                    bool implicit_vr, covct_buf *out,
                                    covct_error *err);

/* Append a Part 10 preamble and file meta information (PS3.10 7.1) for an
 * instance whose data set follows in `ts_uid`; `source_ae` (may be NULL)
 * becomes (0002,0016) Source Application Entity Title. */
covct_rc covct_dcm_write_meta(covct_buf *out, const char *sop_class,
                              const char *sop_inst, const char *ts_uid,
                              const char *source_ae, covct_error *err);

/* A UID from a 128-bit UUID (big-endian bytes): "2.25." and its decimal
 * value (PS3.5 B.2), at most 44 characters. */
void covct_dcm_uid_from_uuid(const uint8_t uuid[16], char out[65]);

/* covct's Implementation Class UID and Version Name (PS3.7 D.3.3.2), in
 * file meta information and association requests. */
#define COVCT_IMPL_CLASS_UID "2.25.229964063386371066541234869425946419585"
#define COVCT_IMPL_VERSION "COVCT_010"

covct_rc covct_dcm_write_file(const char *path, const covct_dcm_dataset *ds,
                              covct_error *err);
covct_rc covct_dcm_write_buffer(const covct_dcm_dataset *ds, covct_buf *out,
                                covct_error *err);
covct_rc covct_dcm_write_buffer_ts(const covct_dcm_dataset *ds,
                                   const char *ts_uid, covct_buf *out,
                                   covct_error *err);

/* ---- pixel data (PS3.3 C.7.6.3, PS3.5 8 and Annex A.4) ----------------- */
typedef struct covct_dcm_pixel_info {
    uint32_t rows, cols, frames;
    uint16_t samples;      /* Samples per Pixel */
    uint16_t bits_alloc;   /* in the file */
    uint16_t bits_stored;
    uint16_t high_bit;
    uint16_t pixel_rep;    /* 0 unsigned, 1 two's complement */
    uint16_t planar;       /* Planar Configuration in the file */
    uint16_t out_bytes;    /* bytes per sample after decoding: 1, 2, 4, 8 */
    uint16_t float_bits;   /* 32 or 64 for Float / Double Float Pixel Data
                              (7FE0,0008/0009), else 0 (integers) */
    bool encapsulated;
    char photometric[20];  /* as in the file */
    char out_photometric[20]; /* after decoding (JPEG YBR → RGB) */
    size_t frame_bytes;    /* decoded bytes per frame */
} covct_dcm_pixel_info;

covct_rc covct_dcm_pixel_info_get(const covct_dcm_file *f,
                                  covct_dcm_pixel_info *pi, covct_error *err);

/* Decode one frame (0-based) into dst (pi.frame_bytes bytes): samples
 * interleaved (colour-by-pixel), native byte order, each sample in
 * out_bytes, sign-extended from Bits Stored when Pixel Representation is 1
 * and masked to Bits Stored otherwise.  An unsupported transfer syntax
 * gives COVCT_ERR_UNSUPPORTED naming the syntax. */
covct_rc covct_dcm_pixel_decode_frame(const covct_dcm_file *f,
                                      const covct_dcm_pixel_info *pi,
                                      uint32_t frame, void *dst,
                                      size_t dst_len, covct_error *err);

#ifdef __cplusplus
}
#endif
#endif
