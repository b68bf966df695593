/*
 * The store's write-ahead journal (docs/internals/store.md, "The
 * journal"): one preallocated file, DIR/journal, that makes a received
 * instance durable with one overwrite and one fdatasync, so that the
 * instance file and the index row can be written without syncing.
 *
 * Layout (all integers little endian):
 *   [0, 4096)      header slot 0     \  the valid slot with the higher
 *   [4096, 8192)   header slot 1     /  header version wins
 *   [8192, ...)    two halves of equal size, multiples of 4096 bytes
 * A generation of the journal fills one half with records; the next
 * generation uses the other half, so that the checkpoint that retires a
 * generation can run while puts go on in the other half.
 *
 * A record starts at a 4096-byte boundary and is padded to the next one:
 *   0    "COVCTJR2"
 *   8    salt of its generation (random, never 0)
 *   16   sequence number in its generation (1, 2, ...)
 *   24   payload length
 *   32   received: Unix time in microseconds
 *   40   calling AE title, NUL-padded (64 bytes)
 *   104  zeros (16 bytes)
 *   120  XXH3-64 of the payload, then of bytes 0..119
 *   128  zeros to 4096
 *   4096 payload: the Part 10 file as given to covct_store_put
 * The payload starts on a page so that the record and the instance file
 * can both be written from one page-aligned buffer with direct I/O.
 * Format 1 ("COVCTJR1", still replayed) had a CRC-32 (zlib) of bytes
 * 0..123 and the payload at 124 and the payload at 128.
 *
 * Only src/store/ includes this header.
 */
#ifndef COVCT_STORE_JOURNAL_H
#define COVCT_STORE_JOURNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"

/* Records and header slots are whole 4 KiB pages: an overwrite then
 * never makes the kernel read the rest of a page first. */
#define JOURNAL_BLOCK 4096u
#define JOURNAL_HEADER_BYTES (2u * JOURNAL_BLOCK)
/* A record is a header block (the 128-byte header, then zeros) followed
 * by the payload; format 1 ("COVCTJR1") had the payload right after the
 * 128 bytes and is still read. */
#define JOURNAL_REC_HDR 128u
#define JOURNAL_AE_MAX 64u
/* 512 MiB: two halves of 256 MiB, about 500 CT slices of 512 KiB each.
 * A burst of puts syncs no instance file until the second half is half
 * full (about 760 slices: a chest CT series); longer bursts overlap the
 * checkpoint of one half with puts into the other.  A bigger journal
 * only absorbs longer bursts: sustained ingest is bounded by how fast a
 * checkpoint writes a half's files (docs/internals/store.md). */
#define JOURNAL_DEFAULT_SIZE ((uint64_t)512 << 20)
/* The test hook may go this low: 7 one-block records per half. */
#define JOURNAL_MIN_SIZE ((uint64_t)64 << 10)

/* One generation: which half it writes, and the salt its records carry. */
typedef struct journal_gen {
    uint64_t gen;  /* counts up by one per generation, for logs */
    uint64_t salt; /* random, 1..INT64_MAX (it goes into SQLite) */
    unsigned half; /* 0 or 1 */
} journal_gen;

typedef struct journal_header {
    uint64_t hv;       /* header version: +1 per header written */
    uint64_t size;     /* the file's size when it was created */
    bool clean;        /* written by a clean close: nothing to replay */
    journal_gen cur;   /* the generation puts write to */
    bool prev_pending; /* prev's records are not yet checkpointed */
    journal_gen prev;
} journal_header;

typedef struct journal_record {
    uint64_t off; /* where it starts in the file */
    uint64_t seq;
    size_t len;   /* payload bytes */
    double received;
    char source_ae[JOURNAL_AE_MAX + 1]; /* "" when none */
} journal_record;

#define JOURNAL_POOL 8

typedef struct covct_store_journal {
    int fd;
    /* The same file opened O_DIRECT | O_DSYNC for records, or -1 where
     * the file system refuses direct I/O (tmpfs): a record then goes
     * through the page cache and an fdatasync. */
    int dfd;
    /* Page-aligned bounce buffers for direct writes, reused. */
    pthread_mutex_t pool_mu;
    void *pool[JOURNAL_POOL];
    size_t pool_cap[JOURNAL_POOL];
    unsigned pool_n;
    char *path;
    uint64_t size;      /* file size */
    uint64_t half_size; /* bytes per half */
} covct_store_journal;

/* Open DIR/journal, creating it (create_size bytes of zeros, then a
 * header, synced, renamed into place) if it does not exist.  *h receives
 * the newest valid header; *created says whether the file is new.  A
 * journal without a valid header is refused (COVCT_ERR_CORRUPT): it may
 * hold acknowledged instances that nothing else has. */
covct_rc covct_store_journal_open(const char *dir, uint64_t create_size,
                                  covct_store_journal *j, journal_header *h,
                                  bool *created, covct_error *err);
void covct_store_journal_close(covct_store_journal *j);

/* First and one-past-last byte of a half. */
uint64_t covct_store_journal_half_start(const covct_store_journal *j,
                                        unsigned half);
uint64_t covct_store_journal_half_end(const covct_store_journal *j,
                                      unsigned half);

/* A fresh random salt. */
uint64_t covct_store_journal_salt(void);

/* Write h into slot h->hv % 2 and fdatasync. */
covct_rc covct_store_journal_write_header(covct_store_journal *j,
                                          const journal_header *h,
                                          covct_error *err);

/* Bytes a record of `len` payload bytes occupies (header block, payload,
 * padding); 0 if that overflows. */
uint64_t covct_store_journal_record_size(size_t len);

/* A record encoded in memory: `total` bytes at `p` (page-aligned), the
 * payload at p + JOURNAL_BLOCK (also page-aligned, zero-padded to a
 * whole page, so that the instance file can be written from it with
 * direct I/O too). */
typedef struct journal_buf {
    uint8_t *p;
    size_t total, cap;
} journal_buf;

/* Encode a record (header, CRC, payload copy) into a buffer from the
 * journal's pool.  COVCT_ERR_NOMEM when no buffer can be had. */
covct_rc covct_store_journal_prepare(covct_store_journal *j, uint64_t salt,
                                     uint64_t seq, const uint8_t *p,
                                     size_t len, double received,
                                     const char *source_ae, journal_buf *b,
                                     covct_error *err);

/* Write a prepared record at `off` (reserved by the caller); it is
 * durable when this returns COVCT_OK. */
covct_rc covct_store_journal_write(covct_store_journal *j, uint64_t off,
                                   const journal_buf *b, covct_error *err);

/* Give b's memory back to the pool (b may be empty). */
void covct_store_journal_buf_release(covct_store_journal *j, journal_buf *b);

/* Every valid record of generation g, in the order written (sequence
 * numbers increase).  A record is valid when its magic, salt and CRC
 * match; a torn or stale block is skipped, and the scan goes on to the end
 * of the half, because a record written later may be complete where an
 * earlier one is not (concurrent putters).  `fn` takes ownership of
 * `payload` (allocated with covct_malloc); a non-OK return stops the
 * scan.  *torn counts blocks that carried g's salt but failed the CRC. */
typedef covct_rc (*covct_store_journal_fn)(void *user,
                                           const journal_record *r,
                                           uint8_t *payload,
                                           covct_error *err);
covct_rc covct_store_journal_scan(covct_store_journal *j,
                                  const journal_gen *g,
                                  covct_store_journal_fn fn, void *user,
                                  size_t *torn, covct_error *err);

#endif
