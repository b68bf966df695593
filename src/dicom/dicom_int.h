/* Internals of the dicom module; included only by the files in src/dicom. */
#ifndef COVCT_DICOM_INT_H
#define COVCT_DICOM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/dicom.h"

extern const covct_dcm_dict_entry covct_dcm_dict_table[];
extern const size_t covct_dcm_dict_table_len;

typedef struct covct_dcm_fragment {
    const uint8_t *data;
    size_t len;
    size_t offset; /* of the item's value in the stream */
} covct_dcm_fragment;

struct covct_dcm_element {
    uint32_t tag;
    uint16_t vr;
    bool encapsulated;
    bool big_endian;      /* value bytes are big endian */
    uint32_t length;      /* as declared in the stream */
    size_t offset;        /* of the tag in the stream */
    const uint8_t *value; /* not for SQ / encapsulated */
    size_t value_len;
    uint8_t *owned;       /* value bytes owned by the element, or NULL */
    covct_dcm_dataset **items;
    size_t n_items, cap_items;
    covct_dcm_fragment *frags;
    size_t n_frags, cap_frags;
};

struct covct_dcm_dataset {
    covct_dcm_element *elems;
    size_t n, cap;
    bool big_endian;
    bool unsorted;
    const covct_dcm_dataset *parent; /* enclosing data set, for charset */
};

struct covct_dcm_file {
    uint8_t *buf;          /* the file as read */
    size_t len;
    uint8_t *inflated;     /* deflated transfer syntax: the inflated data set */
    size_t inflated_len;
    covct_dcm_dataset *meta;
    covct_dcm_dataset *ds;
    char ts[68];
    bool preamble;
    bool ts_inferred;      /* no (0002,0010): guessed from the bytes */
    covct_buf warnings;
};

/* VRs whose explicit-VR header has 2 reserved bytes and a 32-bit length
 * (PS3.5 7.1.2, Table 7.1-1). */
bool covct_dcm_vr_long_header(uint16_t vr);
/* VR to use in implicit VR for a tag: dictionary, then rules for private
 * creators and group lengths, else UN. */
uint16_t covct_dcm_dict_vr(uint32_t tag);
/* The same, resolving US-or-SS ("xs") entries from the Pixel
 * Representation already read into `ds`. */
uint16_t covct_dcm_dict_vr_in(uint32_t tag, const covct_dcm_dataset *ds);

void covct_dcm_file_warn(covct_dcm_file *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void covct_dcm_element_clear(covct_dcm_element *e);
covct_rc covct_dcm_dataset_append(covct_dcm_dataset *ds,
                                  const covct_dcm_element *e,
                                  covct_error *err);
void covct_dcm_dataset_sort(covct_dcm_dataset *ds);

static inline uint16_t covct_rd16(const uint8_t *p, bool be)
{
    return be ? (uint16_t)((p[0] << 8) | p[1]) : (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t covct_rd32(const uint8_t *p, bool be)
{
    return be ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
                    ((uint32_t)p[2] << 8) | p[3]
              : ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) |
                    ((uint32_t)p[1] << 8) | p[0];
}

#endif
