/*
 * store internals shared with the tests: group commit and journal
 * statistics, a way to hold the committer so that a test can build a batch
 * on purpose, and a smaller journal.  Only src/store/ and tests/ include
 * this header.
 */
#ifndef COVCT_STORE_INT_H
#define COVCT_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "covct/store.h"

/* A connection of its own to the store's index (read-only or not), with
 * the store's busy timeout: for the queries (query.c) and the job table
 * (jobs.c).  The caller closes it with sqlite3_close. */
covct_rc covct_store_db_open(const covct_store *s, bool rw, sqlite3 **db,
                             covct_error *err);

typedef struct covct_store_stats {
    uint64_t batches;   /* committer rounds (each one index transaction) */
    uint64_t entries;   /* puts those rounds handled */
    uint64_t max_batch; /* most puts handled in one round */
    uint64_t recovered; /* instances indexed by crash recovery at open:
                           journal records replayed without a row, and
                           files without a row found by the scan */
    /* Journal replay at open (docs/internals/store.md, "Open, close,
     * crash recovery"). */
    uint64_t journal_records; /* valid records of pending generations */
    uint64_t replayed;  /* records no row named: stored and indexed again */
    uint64_t restored;  /* files a row named, rewritten from the record */
    uint64_t torn;      /* blocks with a pending salt and a bad CRC */
    /* Since open. */
    uint64_t checkpoints;   /* journal generations retired */
    uint64_t journal_waits; /* puts that waited for journal space */
    uint64_t direct;        /* puts too big for the journal */
} covct_store_stats;

void covct_store_debug_stats(covct_store *s, covct_store_stats *st);

/* While held, the committer leaves the queue alone (puts wait); releasing
 * it commits everything queued as one batch.  Closing ignores the hold. */
void covct_store_debug_hold(covct_store *s, bool hold);

/* Puts queued and not yet taken by the committer. */
size_t covct_store_debug_queued(covct_store *s);

/* Stores opened from now on (in this process) create a journal of `size`
 * bytes if they have none (at least 64 KiB; records over a quarter of a
 * half then bypass the journal), and checkpoint a generation idle for
 * idle_s seconds.  0 restores each default (512 MiB, 5 s). */
void covct_store_debug_journal(uint64_t size, double idle_s);

#endif
