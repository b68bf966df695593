/*
 * store internals shared with the tests: group commit statistics and a way
 * to hold the committer so that a test can build a batch on purpose.
 * Only src/store/ and tests/ include this header.
 */
#ifndef COVCT_STORE_INT_H
#define COVCT_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/store.h"

typedef struct covct_store_stats {
    uint64_t batches;   /* committer rounds (each one index transaction) */
    uint64_t entries;   /* puts those rounds handled */
    uint64_t max_batch; /* most puts handled in one round */
    uint64_t recovered; /* files indexed by crash recovery at open */
} covct_store_stats;

void covct_store_debug_stats(covct_store *s, covct_store_stats *st);

/* While held, the committer leaves the queue alone (puts wait); releasing
 * it commits everything queued as one batch.  Closing ignores the hold. */
void covct_store_debug_hold(covct_store *s, bool hold);

/* Puts queued and not yet taken by the committer. */
size_t covct_store_debug_queued(covct_store *s);

#endif
