/*
 * Every cap covct applies to outside input, in one place, each with the
 * reason for its number.  A fuzz build (COVCT_FUZZ) lowers the memory caps
 * so that the fuzzer explores logic rather than the allocator.
 */
#ifndef COVCT_LIMITS_H
#define COVCT_LIMITS_H

#ifdef COVCT_FUZZ
/* libFuzzer's default RSS limit is 2 GiB; stay far below it. */
#define COVCT_LIMIT_ALLOC_MAX ((size_t)256 << 20)
#define COVCT_LIMIT_FILE_MAX ((size_t)64 << 20)
#else
/* The largest single object covct builds is a CT volume as float32:
 * 1024 x 1024 x 2000 slices x 4 bytes = 8 GiB would be absurd on a 2-core
 * hospital server; 4 GiB covers a 512 x 512 x 4000 thin-slice scan. */
#define COVCT_LIMIT_ALLOC_MAX ((size_t)4 << 30)
/* Enhanced multi-frame CT files reach a few hundred MiB; 2 GiB also keeps
 * every offset inside a 32-bit DICOM length. */
#define COVCT_LIMIT_FILE_MAX ((size_t)2 << 30)
#endif

/* Nested sequences deeper than this are refused.  Real objects (SR trees,
 * RT plans) nest well under 20 levels; recursion depth must stay bounded
 * so a hostile file cannot exhaust the stack. */
#define COVCT_LIMIT_SQ_DEPTH 64

/* Elements in one data set, counted across all nesting levels.  A 3000-frame
 * enhanced CT has roughly 100 elements per frame in its functional groups:
 * 300k; a 4x margin. */
#define COVCT_LIMIT_ELEMENTS 1200000

/* Rows and Columns are US (at most 65535) by definition; frames are IS. A
 * frame count above this is a corrupt or hostile header. */
#define COVCT_LIMIT_FRAMES 100000

/* Fragments of encapsulated pixel data: one per frame plus splits. */
#define COVCT_LIMIT_FRAGMENTS 1000000

/* Files in one folder scanned by the volume module. */
#define COVCT_LIMIT_DIR_FILES 200000

/* Slices in one volume. */
#define COVCT_LIMIT_SLICES 20000

/* Output of inflating a deflated data set or frame: the file cap again. */
#define COVCT_LIMIT_INFLATE_MAX COVCT_LIMIT_FILE_MAX

/* CSV files (covct import --labels; src/govern/csv.c).  A spreadsheet
 * cell holds at most 32767 characters (Excel), up to 3 bytes each in
 * UTF-8: about 96 KiB; 128 KiB leaves a margin.  Clinical label files
 * have a handful of columns; Excel's 16384 columns are far beyond any
 * real one, 1024 is plenty and keeps one hostile line cheap. */
#define COVCT_LIMIT_CSV_FIELD (128 * 1024)
#define COVCT_LIMIT_CSV_FIELDS 1024

/* multipart/related bodies (STOW-RS requests, src/http/multipart.c).  A
 * STOW-RS request of a thin-slice CT series carries one part per instance:
 * 4000 slices is a large series, and a study may be sent at once, so 100000
 * parts leave a wide margin; the parser keeps 16 bytes per part.  A part's
 * headers are a handful of short lines (Content-Type, Content-Location,
 * Content-ID); 16 KiB is twice the 8 KiB header line limit of Apache
 * (LimitRequestFieldSize) and nginx (large_client_header_buffers), and 64
 * lines is far above what any client sends. */
#define COVCT_LIMIT_MULTIPART_PARTS 100000
#define COVCT_LIMIT_MULTIPART_HEADER_BYTES (16 * 1024)
#define COVCT_LIMIT_MULTIPART_HEADERS 64

#endif
