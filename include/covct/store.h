/*
 * covct store: the DICOM instances a covct server has received, as Part 10
 * files under a data folder, and their index in SQLite (WAL mode).
 *
 * Layout of the data folder (docs/internals/store.md):
 *   DIR/index.sqlite              the index (patients, studies, series,
 *                                 instances, duplicates)
 *   DIR/instances/SS/STUDY/SERIES/SOP.dcm
 *                                 one file per instance; SS is two hex
 *                                 digits of a hash of STUDY (spreads the
 *                                 study folders), the rest are the UIDs
 *   DIR/duplicates/SOP.N.dcm      a second, different copy of an instance
 *                                 already stored (policy below)
 *   DIR/journal                   the write-ahead journal (512 MiB,
 *                                 preallocated)
 *   DIR/tmp/                      files being staged (removed at open)
 *
 * Durability: covct_store_put() returns only when the instance is on
 * stable storage and its index rows are committed.  The bytes as received
 * go to a record of the write-ahead journal DIR/journal (an overwrite of
 * preallocated blocks, fdatasync'd); the file under DIR/instances and the
 * rows are written without a sync (SQLite synchronous=NORMAL) and become
 * durable in place at the next checkpoint (syncfs of the data folder:
 * when half the journal is used, after 5 s without puts, at close).
 * After a power failure or kill -9 at any moment, the next open replays
 * the journal, so every acknowledged instance is there, its file byte for
 * byte and its rows.  Concurrent callers are committed together by one
 * committer thread (group commit): N instances arriving at once cost one
 * index transaction, and their journal syncs overlap.  An instance too
 * big for the journal (over a quarter of half of it: 64 MiB with the
 * default 512 MiB; COVCT_STORE_JOURNAL_MB sets the size of a new journal)
 * is instead synced as a file (fdatasync, rename, syncfs) before the call
 * returns.  docs/internals/store.md.
 *
 * Duplicates (same SOP Instance UID): a copy whose data set is
 * byte-identical (the meta information, which names the sender, is not
 * compared) is accepted
 * and changes nothing (COVCT_STORE_ALREADY); a different copy keeps the
 * stored one as it is and saves the newcomer under DIR/duplicates/,
 * listed in the duplicates table (COVCT_STORE_DUPLICATE): nothing received
 * is lost and nothing stored changes behind a reader's back.
 *
 * Crash safety: a marker file DIR/.open exists while a store is open.  If
 * covct_store_open() finds it (the last process was killed or the
 * machine lost power), it replays the journal (rewrites files whose
 * content was lost, indexes again instances whose rows were lost),
 * indexes every instance file that has no index row (files renamed into place
 * whose transaction never committed; they were never acknowledged, but
 * they are kept) and empties DIR/tmp.
 *
 * Thread safety: a covct_store may be used from any number of threads.
 */
#ifndef COVCT_STORE_H
#define COVCT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/dicom.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct covct_store covct_store;

/* Open (creating if needed) the store in `dir`. */
covct_rc covct_store_open(const char *dir, covct_store **out,
                          covct_error *err);
/* Stop the committer, close the index, remove the DIR/.open marker. */
void covct_store_close(covct_store *s);

typedef enum covct_store_result {
    COVCT_STORE_NEW = 0,      /* stored and indexed */
    COVCT_STORE_ALREADY,      /* identical copy was already stored */
    COVCT_STORE_DUPLICATE     /* different copy kept under duplicates/ */
} covct_store_result;

/* What the store learnt about a stored instance (for logs and the caller's
 * own bookkeeping, e.g. series completion). */
typedef struct covct_store_info {
    char sop_class_uid[65];
    char sop_instance_uid[65];
    char series_uid[65];
    char study_uid[65];
    char patient_id[65];
    char modality[17];
} covct_store_info;

/* Store one instance.  `file` is a complete Part 10 file (preamble, file
 * meta information with (0002,0010) Transfer Syntax UID, data set), e.g.
 * as the DICOM server assembles it.  The store takes ownership of `file`
 * (allocated with covct_malloc) on success and on failure.  `source_ae` is
 * the calling AE title (may be NULL or empty).
 *
 * Refused with COVCT_ERR_CORRUPT and a message naming the problem: a file
 * that does not parse, and a data set without a valid (0008,0018) SOP
 * Instance UID, (0020,000D) Study Instance UID or (0020,000E) Series
 * Instance UID (UIDs: 1-64 characters, digits and dots, PS3.5 9.1).
 * COVCT_ERR_IO: the disk failed (full, read-only...); nothing is indexed.
 * `info` (may be NULL) is filled on success. */
covct_rc covct_store_put(covct_store *s, uint8_t *file, size_t len,
                         const char *source_ae, covct_store_result *result,
                         covct_store_info *info, covct_error *err);

/* Wait until the files of all instances acknowledged so far are in
 * place under DIR/instances or DIR/duplicates.  A put returns once its
 * instance is durable (in the journal) and indexed; its file is written
 * just after, so a reader that opens stored files by path (C-MOVE,
 * C-GET, analysis jobs) calls this first.  covct_store_instance_path()
 * does. */
void covct_store_flush(covct_store *s);

/* Number of instances in the index (for tests and status lines). */
covct_rc covct_store_count(covct_store *s, uint64_t *instances,
                           covct_error *err);

/* Path of the stored file of an instance, into buf (NOT_FOUND if the
 * instance is not indexed). */
covct_rc covct_store_instance_path(covct_store *s, const char *sop_uid,
                                   char *buf, size_t size, covct_error *err);

/* The index database file, for read-only queries by other components
 * (C-FIND, the web API).  Readers open their own SQLite connection. */
const char *covct_store_index_path(const covct_store *s);

/* The data folder (paths in the index are relative to it). */
const char *covct_store_dir(const covct_store *s);

/* ---- queries (src/store/query.c) -----------------------------------------
 * C-FIND matching (PS3.4 C.2.2.2) over the index: the query level is the
 * identifier's (0008,0052) Query/Retrieve Level (PATIENT, STUDY, SERIES,
 * IMAGE; PATIENT only with the patient root model); each key with a value
 * filters (single value, '*' and '?' wildcards, case-insensitive for person
 * names, date and time ranges 'A-B', '-B', 'A-', UID lists 'U1\U2'); every
 * key of the identifier at or above the level is returned (empty when
 * covct does not index it).  Results are UTF-8, Specific Character Set
 * ISO_IR 192.
 *
 * `fn` receives each match (owned by the callee, who frees it with
 * covct_dcm_dataset_free); a non-OK return stops the query and is
 * returned.  COVCT_ERR_ARG with a message when the identifier has no or a
 * bad level. */
typedef covct_rc (*covct_store_match_fn)(void *user, covct_dcm_dataset *match,
                                         covct_error *err);
covct_rc covct_store_find(covct_store *s, bool patient_root,
                          const covct_dcm_dataset *identifier,
                          covct_store_match_fn fn, void *user,
                          covct_error *err);

/* The instances a C-MOVE / C-GET identifier selects (same matching, at its
 * level; every instance below each match): `fn` gets each instance's
 * absolute file path, SOP Class and SOP Instance UID. */
typedef covct_rc (*covct_store_instance_fn)(void *user, const char *path,
                                            const char *sop_class,
                                            const char *sop_uid,
                                            covct_error *err);
covct_rc covct_store_select(covct_store *s, bool patient_root,
                            const covct_dcm_dataset *identifier,
                            covct_store_instance_fn fn, void *user,
                            covct_error *err);

/* ---- analysis jobs (src/store/jobs.c, docs/internals/jobs.md) ----------
 * A persistent job table in the index database. */
typedef struct covct_job {
    int64_t id;
    char series_uid[65];
    char study_uid[65];
    char series_dir[4096];   /* the folder holding the series' files */
    unsigned attempts;       /* including the one just taken */
} covct_job;

/* Queue every series that has received nothing for settle_s seconds and
 * has no job yet (or received more since its job ended).  Series that are
 * not CT, or have fewer than min_instances CT images, get a 'skipped' job
 * with the reason. */
covct_rc covct_jobs_scan(covct_store *s, double settle_s,
                         unsigned min_instances, unsigned *queued,
                         unsigned *skipped, covct_error *err);
/* Take the oldest due queued job (state 'running'); *got false if none. */
covct_rc covct_jobs_take(covct_store *s, covct_job *job, bool *got,
                         covct_error *err);
/* End an attempt.  A failure is retried after retry_base_s x 4^(attempts-1)
 * seconds until max_attempts, then the job is 'failed' with its reason. */
covct_rc covct_jobs_finish(covct_store *s, const covct_job *job, bool ok,
                           const char *reason, const char *result_dir,
                           unsigned max_attempts, double retry_base_s,
                           bool *will_retry, covct_error *err);
/* Record a finished analysis' CT severity score (0-25, -1 when none) and
 * RSNA category, which the web worklist sorts by. */
covct_rc covct_jobs_set_result(covct_store *s, int64_t job_id, int severity,
                               const char *category, covct_error *err);
/* At start: jobs left 'running' by a stopped or killed server are queued
 * again. */
covct_rc covct_jobs_recover(covct_store *s, unsigned *requeued,
                            covct_error *err);

#ifdef __cplusplus
}
#endif

#endif
