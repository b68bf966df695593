/* The metadata route's cold path (WADO-RS .../metadata, PS3.18 10.4.1.1.2):
 * read each instance's header only, and build the DICOM JSON array of a
 * selection on a few threads.  Private to src/http. */
#ifndef COVCT_HTTP_META_H
#define COVCT_HTTP_META_H

#include <stddef.h>

#include "covct/core.h"
#include "covct/dicom.h"

/* Threads that build one metadata answer.  The work is I/O-bound when
 * the series is not in the page cache (the store writes with direct I/O).
 * 600 phantom slices from disk, header prefixes without readahead: 32 ms
 * on 2 threads, 25 ms on 4, 17-24 ms on 8; with the prefixes requested
 * up front (meta.c), 15-18 ms on 2, 4 or 8; from the page cache 4-8 ms
 * on 2, 4 or 8 (2-core VM, 2026-11-27).  4 keeps reads in flight without
 * crowding libmicrohttpd's 4 workers. */
#define META_THREADS 4
/* Below this many instances more threads cost more than they save
 * (about 10-40 us per instance read, parsed and encoded; starting a
 * thread about 50 us). */
#define META_PARALLEL_MIN 16
/* First read of a file: the bytes before Pixel Data of a CT slice are
 * 1-10 KiB (vendor private groups included); a header that does not fit
 * is read again with META_PREFIX_GROW, then whole. */
#define META_PREFIX (16u * 1024u)
#define META_PREFIX_GROW (256u * 1024u)

/* Read and parse `path` up to its Pixel Data, as covct_dcm_file_read()
 * with stop_before_pixels does, but reading only a prefix of the file
 * when the prefix provably holds every element before (7FE0,0010): the
 * result is the same data set.  On failure *out is NULL and err says why
 * (the same message covct_dcm_file_read() gives). */
covct_rc meta_header_read(const char *path, covct_dcm_file **out,
                          covct_error *err);

/* The DICOM JSON array (PS3.18 F.2) of the instances in paths[0..n), in
 * that order, appended to out; binary values over 1 KiB as BulkDataURIs
 * under base + "/dicom-web/studies/S/series/S/instances/I/bulk/".  Uses up
 * to META_THREADS threads.  On failure out is as it was, and err holds
 * the error of the first instance (in order) that failed. */
covct_rc meta_series_json(char *const *paths, size_t n, const char *base,
                          covct_buf *out, covct_error *err);

#endif
