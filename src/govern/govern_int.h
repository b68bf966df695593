/* Internals of the govern module; included only by the files in
 * src/govern. */
#ifndef COVCT_GOVERN_INT_H
#define COVCT_GOVERN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "covct/govern.h"

/* The Basic Profile column of PS3.15 Table E.1-1, compound actions kept
 * as printed so that their resolution lives in one place (deid.c). */
enum {
    DEID_K, DEID_D, DEID_Z, DEID_X, DEID_U, DEID_C,
    DEID_XZ, DEID_XD, DEID_ZD, DEID_XZD, DEID_XZU
};

typedef struct covct_deid_rule {
    uint32_t tag;  /* repeating-group rows: 'x' nibbles are zero */
    uint32_t mask; /* bits of a tag that must equal `tag` */
    uint8_t basic; /* DEID_* */
    /* Option columns: 0 (not listed), 'K' or 'C'. */
    char uids, dev, inst, pat, dates, desc;
} covct_deid_rule;

/* deid-table.c: plain rows sorted by tag, then the repeating-group rows. */
extern const covct_deid_rule covct_deid_table[];
extern const size_t covct_deid_table_len;
extern const size_t covct_deid_table_plain;

/* The table row for `tag`, or NULL. */
const covct_deid_rule *covct_deid_rule_find(uint32_t tag);

#endif
