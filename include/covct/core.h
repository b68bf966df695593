/*
 * covct core: result codes, error context, capped allocation, checked
 * arithmetic and logging.  Every other module builds on this header.
 *
 * Errors: every fallible function returns a covct_rc and, on failure,
 * records a human-readable message in the caller's covct_error.  The first
 * error recorded wins; later calls to covct_error_set() on an error that is
 * already set are ignored, so the innermost (most precise) message survives.
 * Callers may add context in front with covct_error_prefix().
 *
 * Library code never prints.  Diagnostics go through the log callback set
 * with covct_log_set_handler(); the default handler writes to stderr.
 */
#ifndef COVCT_CORE_H
#define COVCT_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum covct_rc {
    COVCT_OK = 0,
    COVCT_ERR_NOMEM,        /* allocation failed or exceeded its cap */
    COVCT_ERR_IO,           /* open/read/write failed */
    COVCT_ERR_CORRUPT,      /* input violates its format */
    COVCT_ERR_UNSUPPORTED,  /* valid input covct cannot handle (yet) */
    COVCT_ERR_LIMIT,        /* input exceeds a cap in limits.h */
    COVCT_ERR_NOT_FOUND,    /* requested element/file/series absent */
    COVCT_ERR_ARG,          /* caller passed an invalid argument */
    COVCT_ERR_INTERNAL      /* a bug in covct */
} covct_rc;

#define COVCT_ERROR_MSG_MAX 768

typedef struct covct_error {
    covct_rc rc;
    const char *src_file; /* covct source file that detected the error */
    int src_line;         /* ... and its line, for bug reports */
    char msg[COVCT_ERROR_MSG_MAX];
} covct_error;

/* Short English name of a result code ("corrupt input", ...). */
const char *covct_rc_str(covct_rc rc);

void covct_error_clear(covct_error *err);

/* Record an error (first one wins) and return rc.  err may be NULL. */
covct_rc covct_error_set(covct_error *err, covct_rc rc, const char *src_file,
                         int src_line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Put context such as a file name in front of an already recorded message:
 * "P001/1.dcm: " + "(7FE0,0010) length ... ". No effect if no error. */
void covct_error_prefix(covct_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define COVCT_ERR(err, rc, ...) \
    covct_error_set((err), (rc), __FILE__, __LINE__, __VA_ARGS__)

/* ---- allocation --------------------------------------------------------
 * All module code allocates through these.  One allocation is capped at
 * COVCT_LIMIT_ALLOC_MAX bytes; a test hook makes the Nth call fail so tests
 * can prove that every failure path cleans up. */
void *covct_malloc(size_t n);
void *covct_calloc(size_t count, size_t size);
void *covct_realloc(void *p, size_t n);
char *covct_strdup(const char *s);
char *covct_strndup(const char *s, size_t n);
void covct_free(void *p);
#define COVCT_FREE(p) do { covct_free(p); (p) = NULL; } while (0)

/* Make allocation number `n` (counted from now, 1-based) fail; 0 disables. */
void covct_alloc_fail_at(uint64_t n);
/* Number of allocations since the last covct_alloc_fail_at(). */
uint64_t covct_alloc_count(void);

/* ---- checked arithmetic -------------------------------------------------
 * Return 1 and store the result if it fits, else return 0. */
static inline int covct_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int covct_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* ---- growable byte buffer ---------------------------------------------- */
typedef struct covct_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} covct_buf;

covct_rc covct_buf_reserve(covct_buf *b, size_t extra, covct_error *err);
covct_rc covct_buf_append(covct_buf *b, const void *p, size_t n,
                          covct_error *err);
/* Append printf-formatted text of any length.  The bytes stay a C string:
 * a NUL is kept after `len` (not counted in it). */
covct_rc covct_buf_appendf(covct_buf *b, covct_error *err, const char *fmt,
                           ...) __attribute__((format(printf, 3, 4)));
covct_rc covct_buf_vappendf(covct_buf *b, covct_error *err, const char *fmt,
                            va_list ap) __attribute__((format(printf, 3, 0)));
void covct_buf_free(covct_buf *b);

/* ---- files --------------------------------------------------------------
 * Read a whole file into memory (refuses files over COVCT_LIMIT_FILE_MAX). */
covct_rc covct_file_read(const char *path, uint8_t **data, size_t *len,
                         covct_error *err);

/* Read exactly n bytes at offset `off` of fd (retrying short reads and
 * EINTR); a file that ends before is an error.  `path` names the file in
 * the error. */
covct_rc covct_fd_pread_all(int fd, void *buf, size_t n, uint64_t off,
                            const char *path, covct_error *err);

/* Write all n bytes to fd (retrying short writes and EINTR); `what` names
 * the file in the error. */
covct_rc covct_fd_write_all(int fd, const void *p, size_t n, const char *what,
                            covct_error *err);

/* Create `path` atomically: `fill` writes the content to a new temporary
 * file beside it, which is then fsync'd and renamed over `path`, so that
 * a reader or a crash never sees a half-written file. */
typedef covct_rc (*covct_fill_fn)(int fd, const char *tmp_path, void *user,
                                  covct_error *err);
covct_rc covct_file_write_atomic(const char *path, covct_fill_fn fill,
                                 void *user, covct_error *err);
/* The same for n bytes already in memory. */
covct_rc covct_file_write_bytes(const char *path, const void *p, size_t n,
                                covct_error *err);

/* mkdir -p: create the folder `path` and every missing folder above it
 * with `mode` (before the umask).  Fails with COVCT_ERR_IO naming the
 * folder that could not be made, or a path that exists and is not a
 * folder. */
covct_rc covct_mkdirs(const char *path, unsigned mode, covct_error *err);

/* ---- logging ------------------------------------------------------------ */
typedef enum covct_log_level {
    COVCT_LOG_DEBUG = 0,
    COVCT_LOG_INFO,
    COVCT_LOG_WARN,
    COVCT_LOG_ERROR
} covct_log_level;

typedef void (*covct_log_fn)(covct_log_level level, const char *msg,
                             void *user);

/* Replace the log handler (NULL restores the stderr default). */
void covct_log_set_handler(covct_log_fn fn, void *user);
void covct_log_set_level(covct_log_level min_level);
/* Debug timing: logs "STAGE: STEP took X s" at COVCT_LOG_DEBUG (shown with
 * COVCT_DEBUG=1) for the time since `since`, and returns the time now. */
double covct_debug_time(const char *stage, const char *step, double since);
void covct_log(covct_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Monotonic clock in seconds, for progress and benchmarks. */
double covct_now(void);

#ifdef __cplusplus
}
#endif
#endif
