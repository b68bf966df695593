/* covct core: errors, capped allocation, buffers, file reading, logging. */
#define _POSIX_C_SOURCE 200809L
#include "covct/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "covct/limits.h"

const char *covct_rc_str(covct_rc rc)
{
    switch (rc) {
    case COVCT_OK: return "ok";
    case COVCT_ERR_NOMEM: return "out of memory";
    case COVCT_ERR_IO: return "input/output error";
    case COVCT_ERR_CORRUPT: return "corrupt input";
    case COVCT_ERR_UNSUPPORTED: return "unsupported";
    case COVCT_ERR_LIMIT: return "limit exceeded";
    case COVCT_ERR_NOT_FOUND: return "not found";
    case COVCT_ERR_ARG: return "invalid argument";
    case COVCT_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

void covct_error_clear(covct_error *err)
{
    if (!err)
        return;
    err->rc = COVCT_OK;
    err->src_file = NULL;
    err->src_line = 0;
    err->msg[0] = '\0';
}

covct_rc covct_error_set(covct_error *err, covct_rc rc, const char *src_file,
                         int src_line, const char *fmt, ...)
{
    if (!err || err->rc != COVCT_OK)
        return rc;
    err->rc = rc;
    err->src_file = src_file;
    err->src_line = src_line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return rc;
}

void covct_error_prefix(covct_error *err, const char *fmt, ...)
{
    if (!err || err->rc == COVCT_OK)
        return;
    char pre[COVCT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    /* Shift the message right and put the prefix in front, truncating. */
    size_t plen = (size_t)n < sizeof err->msg - 1 ? (size_t)n
                                                   : sizeof err->msg - 1;
    size_t mlen = strnlen(err->msg, sizeof err->msg - 1);
    if (plen + mlen > sizeof err->msg - 1)
        mlen = sizeof err->msg - 1 - plen;
    memmove(err->msg + plen, err->msg, mlen);
    memcpy(err->msg, pre, plen);
    err->msg[plen + mlen] = '\0';
}

/* ---- allocation ---------------------------------------------------------- */

/* The fail-at counter is process-global on purpose: it is a test hook, used
 * by single-threaded tests only. */
static uint64_t alloc_count;
static uint64_t alloc_fail_at;

void covct_alloc_fail_at(uint64_t n)
{
    alloc_fail_at = n;
    alloc_count = 0;
}

uint64_t covct_alloc_count(void) { return alloc_count; }

static int alloc_should_fail(size_t n)
{
    if (n > COVCT_LIMIT_ALLOC_MAX)
        return 1;
    if (alloc_fail_at) {
        alloc_count++;
        if (alloc_count == alloc_fail_at)
            return 1;
    }
    return 0;
}

void *covct_malloc(size_t n)
{
    if (alloc_should_fail(n))
        return NULL;
    return malloc(n ? n : 1);
}

void *covct_calloc(size_t count, size_t size)
{
    size_t n;
    if (!covct_mul_size(count, size, &n) || alloc_should_fail(n))
        return NULL;
    return calloc(n ? count : 1, n ? size : 1);
}

void *covct_realloc(void *p, size_t n)
{
    if (alloc_should_fail(n))
        return NULL;
    return realloc(p, n ? n : 1);
}

char *covct_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = covct_malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *covct_strdup(const char *s) { return covct_strndup(s, SIZE_MAX - 1); }

void covct_free(void *p) { free(p); }

/* ---- buffers ------------------------------------------------------------- */

covct_rc covct_buf_reserve(covct_buf *b, size_t extra, covct_error *err)
{
    size_t need;
    if (!covct_add_size(b->len, extra, &need))
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "buffer size overflow");
    if (need <= b->cap)
        return COVCT_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *p = covct_realloc(b->data, cap);
    if (!p)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "cannot grow buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return COVCT_OK;
}

covct_rc covct_buf_append(covct_buf *b, const void *p, size_t n,
                          covct_error *err)
{
    if (n == 0)
        return COVCT_OK;
    covct_rc rc = covct_buf_reserve(b, n, err);
    if (rc)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return COVCT_OK;
}

covct_rc covct_buf_vappendf(covct_buf *b, covct_error *err, const char *fmt,
                            va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "bad format '%s'", fmt);
    covct_rc rc = covct_buf_reserve(b, (size_t)n + 1, err);
    if (rc)
        return rc;
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return COVCT_OK;
}

covct_rc covct_buf_appendf(covct_buf *b, covct_error *err, const char *fmt,
                           ...)
{
    va_list ap;
    va_start(ap, fmt);
    covct_rc rc = covct_buf_vappendf(b, err, fmt, ap);
    va_end(ap);
    return rc;
}

void covct_buf_free(covct_buf *b)
{
    if (!b)
        return;
    COVCT_FREE(b->data);
    b->len = b->cap = 0;
}

/* ---- files --------------------------------------------------------------- */

covct_rc covct_file_read(const char *path, uint8_t **data, size_t *len,
                         covct_error *err)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    covct_rc rc = COVCT_OK;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot stat: %s", path,
                       strerror(errno));
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: is a folder, not a file", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > COVCT_LIMIT_FILE_MAX) {
        rc = COVCT_ERR(err, COVCT_ERR_LIMIT,
                       "%s: %lld bytes exceeds the %zu byte file limit", path,
                       (long long)st.st_size, (size_t)COVCT_LIMIT_FILE_MAX);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    buf = covct_malloc(size);
    if (!buf) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "%s: cannot allocate %zu bytes",
                       path, size);
        goto out;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: read failed at byte %zu: %s",
                           path, got, strerror(errno));
            goto out;
        }
        if (r == 0)
            break; /* file shrank while reading: keep what we have */
        got += (size_t)r;
    }
    *data = buf;
    *len = got;
    buf = NULL;
out:
    covct_free(buf);
    close(fd);
    return rc;
}

covct_rc covct_fd_pread_all(int fd, void *buf, size_t n, uint64_t off,
                            const char *path, covct_error *err)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return COVCT_ERR(err, COVCT_ERR_IO, "cannot read %s: %s", path,
                             strerror(errno));
        if (r == 0)
            return COVCT_ERR(err, COVCT_ERR_IO,
                             "cannot read %s: it ends before byte %llu",
                             path, (unsigned long long)off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return COVCT_OK;
}

covct_rc covct_fd_write_all(int fd, const void *p, size_t n, const char *what,
                            covct_error *err)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return COVCT_ERR(err, COVCT_ERR_IO, "%s: write failed: %s", what,
                             strerror(errno));
        }
        b += w;
        n -= (size_t)w;
    }
    return COVCT_OK;
}

typedef struct bytes_out {
    const void *p;
    size_t n;
} bytes_out;

static covct_rc fill_bytes(int fd, const char *tmp_path, void *user,
                           covct_error *err)
{
    const bytes_out *b = user;
    return covct_fd_write_all(fd, b->p, b->n, tmp_path, err);
}

covct_rc covct_file_write_bytes(const char *path, const void *p, size_t n,
                                covct_error *err)
{
    bytes_out b = {p, n};
    return covct_file_write_atomic(path, fill_bytes, &b, err);
}

covct_rc covct_file_write_atomic(const char *path, covct_fill_fn fill,
                                 void *user, covct_error *err)
{
    static atomic_uint counter;
    size_t tlen = strlen(path) + 48;
    char *tmp = covct_malloc(tlen);
    if (!tmp)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate a file name");
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, tlen, "%s.tmp-%ld-%u", path, (long)getpid(),
                 atomic_fetch_add(&counter, 1));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        covct_rc rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot create: %s",
                                tmp, strerror(errno));
        covct_free(tmp);
        return rc;
    }
    covct_rc rc = fill(fd, tmp, user, err);
    /* Make the data durable before the rename publishes it; otherwise a
     * power cut can leave the new name on an empty file. */
    if (!rc && fsync(fd) != 0)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: fsync failed: %s", tmp,
                       strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: close failed: %s", tmp,
                       strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s: cannot rename to %s: %s", tmp,
                       path, strerror(errno));
    if (rc)
        unlink(tmp);
    covct_free(tmp);
    return rc;
}

/* ---- logging ------------------------------------------------------------- */

static covct_log_fn log_fn;
static void *log_user;
static covct_log_level log_min = COVCT_LOG_INFO;

void covct_log_set_handler(covct_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void covct_log_set_level(covct_log_level min_level) { log_min = min_level; }

double covct_debug_time(const char *stage, const char *step, double since)
{
    double now = covct_now();
    covct_log(COVCT_LOG_DEBUG, "%s: %s took %.3f s", stage, step, now - since);
    return now;
}

void covct_log(covct_log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(level, msg, log_user);
        return;
    }
    static const char *names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "covct: %s: %s\n", names[level], msg);
}

double covct_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

covct_rc covct_mkdirs(const char *path, unsigned mode, covct_error *err)
{
    if (!path || !*path)
        return COVCT_ERR(err, COVCT_ERR_ARG, "no folder name given");
    char *p = covct_strdup(path);
    if (!p)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    covct_rc rc = COVCT_OK;
    for (size_t i = 1;; i++) {
        char c = p[i];
        if (c != '/' && c != '\0')
            continue;
        p[i] = '\0';
        if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
            rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot create the folder %s: %s",
                           p, strerror(errno));
            break;
        }
        p[i] = c;
        if (!c)
            break;
    }
    struct stat st;
    if (!rc && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = COVCT_ERR(err, COVCT_ERR_IO, "%s exists and is not a folder",
                       path);
    covct_free(p);
    return rc;
}
