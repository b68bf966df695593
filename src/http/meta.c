/* WADO-RS metadata, the cold path (docs/internals/http.md, "DICOMweb"):
 * header-only reads of a series' files and the DICOM JSON array built on
 * META_THREADS threads.
 *
 * A CT slice is about 2 KiB of header before 128-512 KiB of pixel data;
 * reading whole files made the first metadata request of a 600-slice
 * series read 80-300 MB.  Here a file is read as a prefix (META_PREFIX)
 * and parsed with stop_before_pixels; the prefix is accepted only when it
 * provably holds every top-level element before Pixel Data, else it is
 * read again larger, then whole, so the data set (and the JSON) is the one
 * a whole-file read gives.  Each thread first asks the kernel for all its
 * files' prefixes (POSIX_FADV_WILLNEED), then reads them. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/limits.h"
#include "http/dicomweb_int.h"
#include "http/meta.h"

/* PS3.5 7.1.2: these explicit VRs have 2 reserved bytes and a 32-bit
 * length; unknown VRs too (PS3.5 6.2), as the parser reads them. */
static bool long_header(uint8_t a, uint8_t b)
{
    static const char *const vr[] = { "OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                      "SV", "UC", "UN", "UR", "UT", "UV" };
    for (size_t i = 0; i < sizeof vr / sizeof vr[0]; i++)
        if (a == (uint8_t)vr[i][0] && b == (uint8_t)vr[i][1])
            return true;
    return !covct_dcm_vr_is_known(COVCT_VR(a, b));
}

static uint16_t rd16(const uint8_t *p, bool be)
{
    return be ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

/* Whether the parse of buf[0..len) (a prefix of the file) stopped at the
 * Pixel Data tag rather than at the end of the prefix: the last top-level
 * element has a defined length, and (7FE0,0010) follows right after it,
 * with a whole element header in the prefix.  The parser reads elements in
 * sequence, so it read that tag next and stopped there (stop_before_pixels
 * stops at the first top-level tag >= (7FE0,0010)); everything before it
 * was within the prefix and parses the same from the whole file.  A last
 * element of undefined length (a sequence) is not followed here: such a
 * file is read whole. */
static bool stopped_at_pixels(const covct_dcm_file *f, const uint8_t *buf,
                              size_t len)
{
    const char *ts = covct_dcm_file_ts(f);
    /* a deflated data set is parsed from its inflated copy */
    if (!strcmp(ts, COVCT_TS_DEFLATED_LE) ||
        !strcmp(ts, "1.2.840.10008.1.2.4.95"))
        return false;
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    size_t n = covct_dcm_dataset_count(ds);
    if (!n)
        return false;
    /* the element parsed last: the one with the highest offset (the data
     * set may have been sorted) */
    const covct_dcm_element *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const covct_dcm_element *e = covct_dcm_dataset_at(ds, i);
        if (!last ||
            covct_dcm_element_offset(e) > covct_dcm_element_offset(last))
            last = e;
    }
    uint32_t vlen = covct_dcm_element_length(last);
    size_t off = covct_dcm_element_offset(last);
    if (vlen == COVCT_UNDEFINED_LENGTH || off > len || len - off < 8)
        return false;
    bool be = covct_dcm_dataset_big_endian(ds);
    bool explicit_vr = strcmp(ts, COVCT_TS_IMPLICIT_LE) != 0;
    const uint8_t *p = buf + off;
    size_t hdr = 8;
    bool letters = p[4] >= 'A' && p[4] <= 'Z' && p[5] >= 'A' && p[5] <= 'Z';
    if (explicit_vr && letters && long_header(p[4], p[5]))
        hdr = 12;
    if (len - off < hdr || len - off - hdr < vlen ||
        len - off - hdr - vlen < 8)
        return false;
    const uint8_t *q = p + hdr + vlen;
    return rd16(q, be) == 0x7FE0 && rd16(q + 2, be) == 0x0010;
}

covct_rc meta_header_read(const char *path, covct_dcm_file **out,
                          covct_error *err)
{
    static const covct_dcm_read_opts ro = { .stop_before_pixels = true };
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t)st.st_size > COVCT_LIMIT_FILE_MAX) {
        /* the whole-file reader says what is wrong, in its words */
        if (fd >= 0)
            close(fd);
        return covct_dcm_file_read(path, &ro, out, err);
    }
    /* No readahead: the store writes instances with direct I/O, so a
     * series that just arrived is not in the page cache, and the default
     * readahead (128 KiB and more) would read its pixel data from disk
     * for nothing: 600 slices of a phantom from disk took 57 ms with it,
     * 32 ms without (2 threads; the file is read by its size after). */
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    size_t size = (size_t)st.st_size, want = META_PREFIX;
    covct_rc rc = COVCT_OK;
    for (;;) {
        /* each try reads from the start: the parse owns the buffer it is
         * given, and a longer try is rare (headers over 16 KiB) and reads
         * the first bytes from the page cache */
        bool whole = want >= size;
        size_t n = whole ? size : want;
        uint8_t *buf = covct_malloc(n ? n : 1);
        if (!buf) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            break;
        }
        if ((rc = covct_fd_pread_all(fd, buf, n, 0, path, err))) {
            covct_free(buf);
            break;
        }
        /* a prefix's parse error says nothing about the file: its own
         * error text, discarded */
        covct_error scratch = { 0 };
        covct_dcm_file *f = NULL;
        rc = covct_dcm_file_parse(buf, n, &ro, &f, whole ? err : &scratch);
        if (whole) {
            if (rc)
                covct_error_prefix(err, "%s: ", path);
            else
                *out = f;
            break;
        }
        if (!rc && stopped_at_pixels(f, buf, n)) {
            *out = f;
            break;
        }
        covct_dcm_file_free(f);
        rc = COVCT_OK;
        want = want < META_PREFIX_GROW ? META_PREFIX_GROW : size;
    }
    close(fd);
    return rc;
}

/* One thread's share: instances [from, to) as "obj,obj,...". */
typedef struct meta_part {
    char *const *paths;
    size_t from, to;
    const char *base;
    covct_buf out;
    covct_error err;
    covct_rc rc;
} meta_part;

static void *meta_part_run(void *arg)
{
    meta_part *m = arg;
    /* Ask for every header of the share at once: the kernel queues the
     * reads together instead of one at a time as the loop below reaches
     * each file.  A series not yet in the page cache (600 phantom slices,
     * 4 threads): 23-30 ms without this, 15-18 ms with it; from the cache
     * it costs nothing measurable (an open per file). */
    for (size_t i = m->from; i < m->to; i++) {
        int fd = open(m->paths[i], O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)posix_fadvise(fd, 0, META_PREFIX, POSIX_FADV_WILLNEED);
            close(fd);
        }
    }
    for (size_t i = m->from; i < m->to && !m->rc; i++) {
        covct_dcm_file *f = NULL;
        if ((m->rc = meta_header_read(m->paths[i], &f, &m->err)))
            break;
        /* binary values over 1 KiB by reference (the bulk data route);
         * pixel data is not read here: viewers take it from /frames */
        const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
        char st[65] = "", se[65] = "", in[65] = "", prefix[600];
        covct_error e2 = { 0 };
        covct_dcm_get_string(ds, 0x0020000D, 0, st, sizeof st, &e2);
        covct_dcm_get_string(ds, 0x0020000E, 0, se, sizeof se, &e2);
        covct_dcm_get_string(ds, 0x00080018, 0, in, sizeof in, &e2);
        snprintf(prefix, sizeof prefix,
                 "%s/dicom-web/studies/%s/series/%s/instances/%s/bulk/",
                 m->base, st, se, in);
        dicomjson_opts jo = { .bulk_uri_prefix = prefix,
                              .bulk_threshold = 1024 };
        if (i > m->from)
            m->rc = covct_buf_append(&m->out, ",", 1, &m->err);
        if (!m->rc)
            m->rc = dicomjson_encode(ds, &jo, &m->out, &m->err);
        covct_dcm_file_free(f);
    }
    return NULL;
}

covct_rc meta_series_json(char *const *paths, size_t n, const char *base,
                          covct_buf *out, covct_error *err)
{
    meta_part part[META_THREADS];
    pthread_t tid[META_THREADS];
    bool started[META_THREADS] = { false };
    size_t nt = n < META_PARALLEL_MIN ? 1 : META_THREADS;
    memset(part, 0, sizeof part);
    /* contiguous shares keep the order: the answer is share 0, share 1 */
    for (size_t t = 0; t < nt; t++)
        part[t] = (meta_part){ .paths = paths,
                               .from = n * t / nt,
                               .to = n * (t + 1) / nt,
                               .base = base };
    for (size_t t = 1; t < nt; t++)
        started[t] = !pthread_create(&tid[t], NULL, meta_part_run, &part[t]);
    meta_part_run(&part[0]);
    for (size_t t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            meta_part_run(&part[t]); /* no thread: do it here */
    }
    size_t start = out->len;
    covct_rc rc = covct_buf_append(out, "[", 1, err);
    bool any = false;
    for (size_t t = 0; t < nt && !rc; t++) {
        if (part[t].rc) {
            rc = part[t].rc;
            *err = part[t].err;
            break;
        }
        if (part[t].from == part[t].to)
            continue;
        if (any)
            rc = covct_buf_append(out, ",", 1, err);
        if (!rc)
            rc = covct_buf_append(out, part[t].out.data, part[t].out.len,
                                  err);
        any = true;
    }
    if (!rc)
        rc = covct_buf_append(out, "]", 1, err);
    if (rc)
        out->len = start;
    for (size_t t = 0; t < nt; t++)
        covct_buf_free(&part[t].out);
    return rc;
}
