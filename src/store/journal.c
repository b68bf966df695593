/*
 * The store's write-ahead journal: file format and I/O (store/journal.h,
 * docs/internals/store.md).  The policy (when to switch generations, when
 * to checkpoint, what a record means) lives in store.c.
 *
 * Why a preallocated, pre-written file: overwriting blocks that are
 * already allocated and initialised changes no file system metadata, so
 * a synchronous direct write (or a buffered one and fdatasync()) writes
 * the record's pages and flushes the disk cache, and ext4 commits no
 * journal transaction.  A new file, or an fallocate()d
 * one (unwritten extents), needs a metadata commit per sync: about four
 * times slower.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
/* XXH3_state_t on the stack (documented static-allocation use). */
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <zlib.h>

#include "store/journal.h"

static const char header_magic[8] = {'C', 'O', 'V', 'C', 'T', 'J', 'H', '1'};
static const char record_magic[8] = {'C', 'O', 'V', 'C', 'T', 'J', 'R', '2'};
static const char record_magic_v1[8] = {'C', 'O', 'V', 'C', 'T', 'J', 'R',
                                        '1'};
#define HEADER_VERSION 1u
/* Bytes of a header slot that carry fields; the CRC covers [0, 124). */
#define HEADER_USED 128u

/* ---- little-endian fields ------------------------------------------------ */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* zlib's crc32 takes a 32-bit length. */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n)
{
    uLong c = crc;
    while (n) {
        size_t k = n > (1u << 30) ? (1u << 30) : n;
        c = crc32(c, p, (uInt)k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

/* ---- I/O helpers --------------------------------------------------------- */

/* pwritev until every byte is written (short writes resume where they
 * stopped). */
static covct_rc pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off,
                            const char *path, covct_error *err)
{
    while (cnt > 0) {
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s: %s", path,
                             strerror(errno));
        off += (uint64_t)w;
        size_t left = (size_t)w;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return COVCT_OK;
}

static covct_rc sync_fd(int fd, const char *path, covct_error *err)
{
    if (fdatasync(fd) != 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot sync %s: %s", path,
                         strerror(errno));
    return COVCT_OK;
}

/* ---- geometry -------------------------------------------------------------- */

static uint64_t half_size_of(uint64_t size)
{
    return ((size - JOURNAL_HEADER_BYTES) / 2) & ~(uint64_t)(JOURNAL_BLOCK - 1);
}

uint64_t covct_store_journal_half_start(const covct_store_journal *j,
                                        unsigned half)
{
    return JOURNAL_HEADER_BYTES + (uint64_t)half * j->half_size;
}

uint64_t covct_store_journal_half_end(const covct_store_journal *j,
                                      unsigned half)
{
    return covct_store_journal_half_start(j, half) + j->half_size;
}

/* A record of `head` header bytes and `len` payload bytes, padded to
 * whole blocks; 0 if that overflows. */
static uint64_t record_size_with(size_t len, uint64_t head)
{
    uint64_t n = (uint64_t)len + head;
    if (n < len || n > UINT64_MAX - JOURNAL_BLOCK)
        return 0;
    return (n + JOURNAL_BLOCK - 1) & ~(uint64_t)(JOURNAL_BLOCK - 1);
}

uint64_t covct_store_journal_record_size(size_t len)
{
    return record_size_with(len, JOURNAL_BLOCK);
}

uint64_t covct_store_journal_salt(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        /* No entropy yet (early boot): the clock and the process still
         * make a collision with an old generation's salt unlikely. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 40);
        v *= 0x9E3779B97F4A7C15u;
    }
    v &= (uint64_t)INT64_MAX;
    return v ? v : 1;
}

/* ---- header ---------------------------------------------------------------- */

static void encode_gen(uint8_t *p, const journal_gen *g)
{
    put64(p, g->gen);
    put64(p + 8, g->salt);
    put32(p + 16, g->half);
}

static void decode_gen(const uint8_t *p, journal_gen *g)
{
    g->gen = get64(p);
    g->salt = get64(p + 8);
    g->half = get32(p + 16);
}

/* Slot layout: magic 0, version 8, flags 12 (bit 0: clean, bit 1: prev
 * pending), hv 16, size 24, cur 32..51, prev 56..75, CRC 124. */
static void encode_header(uint8_t *slot, const journal_header *h)
{
    memset(slot, 0, JOURNAL_BLOCK);
    memcpy(slot, header_magic, 8);
    put32(slot + 8, HEADER_VERSION);
    put32(slot + 12, (h->clean ? 1u : 0u) | (h->prev_pending ? 2u : 0u));
    put64(slot + 16, h->hv);
    put64(slot + 24, h->size);
    encode_gen(slot + 32, &h->cur);
    encode_gen(slot + 56, &h->prev);
    put32(slot + 124, crc_update(0, slot, 124));
}

static bool decode_header(const uint8_t *slot, journal_header *h)
{
    if (memcmp(slot, header_magic, 8) != 0 ||
        get32(slot + 8) != HEADER_VERSION ||
        get32(slot + 124) != crc_update(0, slot, 124))
        return false;
    uint32_t flags = get32(slot + 12);
    h->clean = flags & 1u;
    h->prev_pending = (flags & 2u) != 0;
    h->hv = get64(slot + 16);
    h->size = get64(slot + 24);
    decode_gen(slot + 32, &h->cur);
    decode_gen(slot + 56, &h->prev);
    return h->cur.half <= 1 && h->prev.half <= 1 && h->cur.salt != 0 &&
           (!h->prev_pending ||
            (h->prev.salt != 0 && h->prev.half != h->cur.half));
}

covct_rc covct_store_journal_write_header(covct_store_journal *j,
                                          const journal_header *h,
                                          covct_error *err)
{
    uint8_t slot[JOURNAL_BLOCK];
    encode_header(slot, h);
    struct iovec iov = {slot, sizeof slot};
    covct_rc rc = pwritev_all(j->fd, &iov, 1, (h->hv % 2) * JOURNAL_BLOCK,
                              j->path, err);
    return rc ? rc : sync_fd(j->fd, j->path, err);
}

/* ---- open ------------------------------------------------------------------ */

/* DIR/journal.new: zeros to the full size, first header, synced, then
 * renamed to DIR/journal and DIR synced, so that DIR/journal always has a
 * valid header. */
static covct_rc create_journal(covct_store_journal *j, const char *dir,
                               uint64_t size, journal_header *h,
                               covct_error *err)
{
    char tmp[PATH_MAX], dpath[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.new", j->path);
    snprintf(dpath, sizeof dpath, "%s", dir);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", tmp,
                         strerror(errno));
    covct_rc rc = COVCT_OK;
    enum { CHUNK = 1 << 20 };
    uint8_t *zeros = covct_calloc(1, CHUNK);
    if (!zeros) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* Written, not fallocate()d: see the top of this file. */
    for (uint64_t off = 0; off < size && !rc;) {
        size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        struct iovec iov = {zeros, n};
        rc = pwritev_all(fd, &iov, 1, off, tmp, err);
        off += n;
    }
    if (rc)
        goto out;
    *h = (journal_header){.hv = 1, .size = size,
                          .cur = {.gen = 1,
                                  .salt = covct_store_journal_salt(),
                                  .half = 0}};
    int keep = j->fd;
    j->fd = fd;
    rc = covct_store_journal_write_header(j, h, err);
    j->fd = keep;
    if (rc)
        goto out;
    if (fsync(fd) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot sync %s: %s", tmp,
                       strerror(errno));
        goto out;
    }
    if (rename(tmp, j->path) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot rename %s to %s: %s", tmp,
                       j->path, strerror(errno));
        goto out;
    }
    int dfd = open(dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot sync folder %s: %s", dpath,
                       strerror(errno));
    if (dfd >= 0)
        close(dfd);
out:
    covct_free(zeros);
    if (rc) {
        close(fd);
        unlink(tmp);
        return rc;
    }
    j->fd = fd;
    return COVCT_OK;
}

/* Records are written with direct I/O and O_DSYNC where the file system
 * allows it: one write whose completion means durable (the kernel
 * follows it with a cache flush), and no copy into the page cache, which
 * on a busy server costs as much CPU as receiving the instance.  The
 * journal's blocks are allocated and initialised (written with zeros at
 * creation), so such a write changes no metadata.  Header slots keep
 * the buffered descriptor; the kernel keeps the two coherent (a direct
 * write invalidates the cached pages it covers). */
static void open_direct(covct_store_journal *j)
{
    if (getenv("COVCT_STORE_NO_DIRECT_IO")) /* tests of the fallback */
        return;
    j->dfd = open(j->path, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
}

covct_rc covct_store_journal_open(const char *dir, uint64_t create_size,
                                  covct_store_journal *j, journal_header *h,
                                  bool *created, covct_error *err)
{
    *created = false;
    j->fd = j->dfd = -1;
    j->pool_n = 0;
    pthread_mutex_init(&j->pool_mu, NULL);
    j->size = j->half_size = 0;
    size_t n = strlen(dir) + sizeof "/journal.new";
    if (!(j->path = covct_malloc(n)))
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    snprintf(j->path, n, "%s/journal", dir);
    if (create_size < JOURNAL_MIN_SIZE)
        create_size = JOURNAL_MIN_SIZE;
    create_size &= ~(uint64_t)(JOURNAL_BLOCK - 1);

    covct_rc rc;
    j->fd = open(j->path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0 && errno == ENOENT) {
        /* A journal.new is what a crash during creation left: unused. */
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s.new", j->path);
        unlink(tmp);
        if ((rc = create_journal(j, dir, create_size, h, err)))
            goto fail;
        *created = true;
        j->size = create_size;
        j->half_size = half_size_of(create_size);
        open_direct(j);
        return COVCT_OK;
    }
    if (j->fd < 0) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot open %s: %s", j->path,
                       strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(j->fd, &st) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot stat %s: %s", j->path,
                       strerror(errno));
        goto fail;
    }
    uint8_t slots[JOURNAL_HEADER_BYTES];
    if ((uint64_t)st.st_size < JOURNAL_MIN_SIZE) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "%s is %lld bytes, too short for a journal; move it "
                       "away to open the store without replaying it",
                       j->path, (long long)st.st_size);
        goto fail;
    }
    if ((rc = covct_fd_pread_all(j->fd, slots, sizeof slots, 0, j->path, err)))
        goto fail;
    journal_header a, b;
    bool va = decode_header(slots, &a);
    bool vb = decode_header(slots + JOURNAL_BLOCK, &b);
    if (!va && !vb) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "%s has no valid header (both slots fail their "
                       "check); move it away to open the store without "
                       "replaying it",
                       j->path);
        goto fail;
    }
    *h = va && (!vb || a.hv > b.hv) ? a : b;
    if (h->size < JOURNAL_MIN_SIZE || h->size > (uint64_t)st.st_size) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "%s: its header says %llu bytes, the file has %lld",
                       j->path, (unsigned long long)h->size,
                       (long long)st.st_size);
        goto fail;
    }
    j->size = h->size;
    j->half_size = half_size_of(h->size);
    open_direct(j);
    return COVCT_OK;
fail:
    covct_store_journal_close(j);
    return rc;
}

void covct_store_journal_close(covct_store_journal *j)
{
    if (j->fd >= 0)
        close(j->fd);
    if (j->dfd >= 0)
        close(j->dfd);
    j->fd = j->dfd = -1;
    for (unsigned i = 0; i < j->pool_n; i++)
        free(j->pool[i]);
    j->pool_n = 0;
    pthread_mutex_destroy(&j->pool_mu);
    COVCT_FREE(j->path);
}

/* ---- records --------------------------------------------------------------- */

/* Format 2's checksum: XXH3 (64 bits) of the payload, then header bytes
 * 0..119 (payload first, so that a record received in pieces can be
 * hashed as it arrives, before its length is known).  XXH3 reads at
 * memory speed, about eight times zlib's CRC-32 here, where a CRC would
 * cost a tenth of a put's CPU time. */
static uint64_t record_hash(const uint8_t *hdr, const uint8_t *p, size_t len)
{
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, p, len);
    XXH3_64bits_update(&st, hdr, 120);
    return (uint64_t)XXH3_64bits_digest(&st);
}

static void encode_record(uint8_t *hdr, uint64_t salt, uint64_t seq,
                          const uint8_t *p, size_t len, double received,
                          const char *source_ae)
{
    memset(hdr, 0, JOURNAL_REC_HDR);
    memcpy(hdr, record_magic, 8);
    put64(hdr + 8, salt);
    put64(hdr + 16, seq);
    put64(hdr + 24, len);
    put64(hdr + 32, (uint64_t)(int64_t)(received * 1e6));
    if (source_ae) {
        size_t n = strnlen(source_ae, JOURNAL_AE_MAX);
        memcpy(hdr + 40, source_ae, n);
    }
    put64(hdr + 120, record_hash(hdr, p, len));
}

static void *pool_take(covct_store_journal *j, size_t n, size_t *cap)
{
    pthread_mutex_lock(&j->pool_mu);
    for (unsigned i = 0; i < j->pool_n; i++) {
        if (j->pool_cap[i] >= n) {
            void *b = j->pool[i];
            *cap = j->pool_cap[i];
            j->pool_n--;
            j->pool[i] = j->pool[j->pool_n];
            j->pool_cap[i] = j->pool_cap[j->pool_n];
            pthread_mutex_unlock(&j->pool_mu);
            return b;
        }
    }
    pthread_mutex_unlock(&j->pool_mu);
    void *b = NULL;
    *cap = n;
    return posix_memalign(&b, JOURNAL_BLOCK, n) == 0 ? b : NULL;
}

/* Keeps the biggest JOURNAL_POOL buffers. */
static void pool_give(covct_store_journal *j, void *b, size_t n)
{
    pthread_mutex_lock(&j->pool_mu);
    if (j->pool_n < JOURNAL_POOL) {
        j->pool[j->pool_n] = b;
        j->pool_cap[j->pool_n++] = n;
        b = NULL;
    } else {
        unsigned min = 0;
        for (unsigned i = 1; i < j->pool_n; i++)
            if (j->pool_cap[i] < j->pool_cap[min])
                min = i;
        if (j->pool_cap[min] < n) {
            void *old = j->pool[min];
            j->pool[min] = b;
            j->pool_cap[min] = n;
            b = old;
        }
    }
    pthread_mutex_unlock(&j->pool_mu);
    free(b);
}

covct_rc covct_store_journal_prepare(covct_store_journal *j, uint64_t salt,
                                     uint64_t seq, const uint8_t *p,
                                     size_t len, double received,
                                     const char *source_ae, journal_buf *b,
                                     covct_error *err)
{
    uint64_t total = covct_store_journal_record_size(len);
    b->p = total && total <= SIZE_MAX ? pool_take(j, (size_t)total, &b->cap)
                                      : NULL;
    if (!b->p) {
        b->total = b->cap = 0;
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "out of memory for a %zu-byte journal record", len);
    }
    b->total = (size_t)total;
    memcpy(b->p + JOURNAL_BLOCK, p, len);
    memset(b->p + JOURNAL_BLOCK + len, 0, b->total - JOURNAL_BLOCK - len);
    /* The checksum reads the copy while it is still in the cache. */
    encode_record(b->p, salt, seq, b->p + JOURNAL_BLOCK, len, received,
                  source_ae);
    memset(b->p + JOURNAL_REC_HDR, 0, JOURNAL_BLOCK - JOURNAL_REC_HDR);
    return COVCT_OK;
}

void covct_store_journal_buf_release(covct_store_journal *j, journal_buf *b)
{
    if (b->p)
        pool_give(j, b->p, b->cap);
    b->p = NULL;
    b->total = b->cap = 0;
}

/* One direct, synchronous write: 1 when durable, 0 on an I/O error (in
 * err), -1 when the kernel refuses direct I/O for it (the caller then
 * writes through the page cache). */
static int write_direct(covct_store_journal *j, uint64_t off,
                        const journal_buf *b, covct_error *err)
{
    size_t done = 0;
    while (done < b->total) {
        ssize_t w = pwrite(j->dfd, b->p + done, b->total - done,
                           (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL && done == 0)
            return -1;
        if (w <= 0) {
            COVCT_ERR(err, COVCT_ERR_IO, "cannot write to %s: %s", j->path,
                      w < 0 ? strerror(errno) : "no progress");
            return 0;
        }
        done += (size_t)w;
    }
    return 1;
}

covct_rc covct_store_journal_write(covct_store_journal *j, uint64_t off,
                                   const journal_buf *b, covct_error *err)
{
    if (j->dfd >= 0) {
        int used = write_direct(j, off, b, err);
        if (used >= 0)
            return used ? COVCT_OK : COVCT_ERR_IO;
    }
    struct iovec iov = {b->p, b->total};
    covct_rc rc = pwritev_all(j->fd, &iov, 1, off, j->path, err);
    return rc ? rc : sync_fd(j->fd, j->path, err);
}

covct_rc covct_store_journal_scan(covct_store_journal *j,
                                  const journal_gen *g,
                                  covct_store_journal_fn fn, void *user,
                                  size_t *torn, covct_error *err)
{
    *torn = 0;
    uint64_t end = covct_store_journal_half_end(j, g->half);
    uint64_t last_seq = 0;
    covct_rc rc = COVCT_OK;
    posix_fadvise(j->fd, (off_t)covct_store_journal_half_start(j, g->half),
                  (off_t)j->half_size, POSIX_FADV_SEQUENTIAL);
    for (uint64_t off = covct_store_journal_half_start(j, g->half);
         off + JOURNAL_REC_HDR <= end;) {
        uint8_t hdr[JOURNAL_REC_HDR];
        if ((rc = covct_fd_pread_all(j->fd, hdr, sizeof hdr, off, j->path,
                                     err)))
            return rc;
        bool v1 = memcmp(hdr, record_magic_v1, 8) == 0;
        if ((!v1 && memcmp(hdr, record_magic, 8) != 0) ||
            get64(hdr + 8) != g->salt) {
            off += JOURNAL_BLOCK; /* zeros, or an older generation's */
            continue;
        }
        journal_record r = {.off = off, .seq = get64(hdr + 16)};
        uint64_t len = get64(hdr + 24);
        uint64_t at = v1 ? JOURNAL_REC_HDR : JOURNAL_BLOCK;
        uint64_t total = len > SIZE_MAX ? 0
                         : v1           ? record_size_with((size_t)len, JOURNAL_REC_HDR)
                                        : covct_store_journal_record_size(
                                              (size_t)len);
        if (len > SIZE_MAX || total == 0 || total > end - off ||
            r.seq <= last_seq) {
            ++*torn;
            off += JOURNAL_BLOCK;
            continue;
        }
        r.len = (size_t)len;
        uint8_t *payload = covct_malloc(r.len ? r.len : 1);
        if (!payload)
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "out of memory for a %zu-byte journal record",
                             r.len);
        if ((rc = covct_fd_pread_all(j->fd, payload, r.len, off + at,
                                     j->path, err))) {
            covct_free(payload);
            return rc;
        }
        bool intact =
            v1 ? crc_update(crc_update(0, hdr, 124), payload, r.len) ==
                     get32(hdr + 124)
               : record_hash(hdr, payload, r.len) == get64(hdr + 120);
        if (!intact) {
            /* Torn: its putter was never told Success. */
            covct_free(payload);
            ++*torn;
            off += JOURNAL_BLOCK;
            continue;
        }
        r.received = (double)(int64_t)get64(hdr + 32) * 1e-6;
        memcpy(r.source_ae, hdr + 40, JOURNAL_AE_MAX);
        r.source_ae[JOURNAL_AE_MAX] = '\0';
        last_seq = r.seq;
        if ((rc = fn(user, &r, payload, err)))
            return rc;
        off += total;
    }
    return COVCT_OK;
}
