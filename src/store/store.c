/*
 * covct store (include/covct/store.h, docs/internals/store.md): received
 * instances as Part 10 files under DIR/instances, their index in SQLite,
 * the write-ahead journal that makes a put durable with one synchronous
 * write (journal.c), the committer thread that writes index rows for
 * concurrent puts together, the stager threads that write the files, and
 * the checkpointer thread that retires journal generations.
 *
 * Order of a put, and why: the received bytes go to a record of DIR/journal
 * and are made durable there (one direct, synchronous overwrite of
 * preallocated blocks) while the committer writes the index rows into an
 * open transaction.  Only when the record is durable does the committer
 * commit (synchronous=NORMAL) and the put return; a stager then writes
 * the file to DIR/tmp and renames it into place, none of it synced.  So a
 * file under its final name, or a committed row, always has a durable
 * source: its record, or, once a checkpoint has synced the file system,
 * itself.  After a power failure the next open replays the journal: it
 * rewrites the files whose content was lost and indexes again the
 * instances whose rows were lost.  A checkpoint (syncfs of the data
 * folder) makes a whole generation of the journal durable in place, after
 * which its records are never replayed and its half of the journal is
 * reused.
 *
 * Instances too big for the journal (over a quarter of a half) take the
 * old way: a synced temporary file written by the putter, renamed into
 * place, indexed, then a syncfs before the put returns.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "covct/dicom.h"
#include "store/journal.h"
#include "store/store_int.h"

/* PS3.5 9.1: a UID is at most 64 characters. */
#define UID_MAX 64
/* Longest path the store builds under DIR:
 * "instances/" + "ss/" + 3 UIDs with separators + ".dcm" is 211 bytes,
 * "duplicates/UID.N.dcm" 90; 256 leaves room. */
#define REL_MAX 256
/* DIR may be at most this long, so that DIR/rel always fits in PATH_MAX. */
#define DIR_MAX (PATH_MAX - REL_MAX - 2)
/* Recovery commits its index rows in transactions of this many files, so
 * that a huge rescan neither holds one giant transaction nor pays one
 * sync per file. */
#define RECOVERY_TXN_FILES 1000
/* Seconds between recovery progress lines. */
#define RECOVERY_LOG_EVERY 5.0
/* Copies of one instance kept under duplicates/ (SOP.1.dcm ...). */
#define DUPLICATES_MAX 10000
/* A journal generation that has records and has seen no new put for this
 * long is checkpointed, so that an idle store has nothing to replay. */
#define CHECKPOINT_IDLE_S 5.0
/* Threads that write acknowledged puts' files (stager_main).  Two
 * measured a little faster than four at four associations: the files'
 * writes share the device with the records' (docs/internals/store.md). */
#define STAGERS 2u
/* Acknowledged instances whose files are not yet written hold at most
 * this much memory; further puts wait. */
#define PENDING_MAX_BYTES ((size_t)64 << 20)

/* ---- what the index keeps of an instance --------------------------------- */

/* Text attributes, stored UTF-8 and trimmed; NULL when absent. */
enum {
    T_PATIENT_ID,
    T_PATIENT_NAME,
    T_BIRTH_DATE,
    T_SEX,
    T_STUDY_DATE,
    T_STUDY_TIME,
    T_ACCESSION,
    T_STUDY_ID,
    T_STUDY_DESC,
    T_REFERRING,
    T_MODALITY,
    T_SERIES_DESC,
    T_BODY_PART,
    T_FRAME_OF_REF,
    T_COUNT
};

static const uint32_t text_tags[T_COUNT] = {
    [T_PATIENT_ID] = COVCT_TAG(0x0010, 0x0020),
    [T_PATIENT_NAME] = COVCT_TAG(0x0010, 0x0010),
    [T_BIRTH_DATE] = COVCT_TAG(0x0010, 0x0030),
    [T_SEX] = COVCT_TAG(0x0010, 0x0040),
    [T_STUDY_DATE] = COVCT_TAG(0x0008, 0x0020),
    [T_STUDY_TIME] = COVCT_TAG(0x0008, 0x0030),
    [T_ACCESSION] = COVCT_TAG(0x0008, 0x0050),
    [T_STUDY_ID] = COVCT_TAG(0x0020, 0x0010),
    [T_STUDY_DESC] = COVCT_TAG(0x0008, 0x1030),
    [T_REFERRING] = COVCT_TAG(0x0008, 0x0090),
    [T_MODALITY] = COVCT_TAG(0x0008, 0x0060),
    [T_SERIES_DESC] = COVCT_TAG(0x0008, 0x103E),
    [T_BODY_PART] = COVCT_TAG(0x0018, 0x0015),
    [T_FRAME_OF_REF] = COVCT_TAG(0x0020, 0x0052),
};

typedef struct meta {
    char sop[UID_MAX + 1];
    char study[UID_MAX + 1];
    char series[UID_MAX + 1];
    char sop_class[UID_MAX + 1]; /* may be empty */
    char ts[UID_MAX + 1];
    char source_ae[17];          /* (0002,0016), for recovery */
    char *text[T_COUNT];         /* text[T_PATIENT_ID] is never NULL */
    bool has_series_number, has_instance_number;
    int64_t series_number, instance_number;
} meta;

/* ---- the store ----------------------------------------------------------- */

enum {
    ST_FIND,       /* stored copy of a SOP instance */
    ST_FIND_DUP,   /* duplicates of a SOP instance with a given size */
    ST_PATIENT,
    ST_STUDY,
    ST_SERIES,
    ST_INSTANCE,
    ST_DUPLICATE,
    ST_HAS_PATH,   /* recovery: is this instance file indexed? */
    ST_HAS_DUP,    /* recovery, duplicates/ names: is this file indexed? */
    ST_JPOS,       /* replay: the row a journal record created */
    ST_COUNT
};

static const char *const st_sql[ST_COUNT] = {
    [ST_FIND] = "SELECT path, size FROM instances WHERE sop_uid = ?1",
    [ST_FIND_DUP] = "SELECT path FROM duplicates WHERE sop_uid = ?1 "
                    "AND size BETWEEN ?2 - 256 AND ?2 + 256",
    /* An instance joins the series, study and patient already indexed
     * under its Series Instance UID: the first instance's attributes win,
     * and a sender's inconsistency leaves no orphan patient or study. */
    [ST_PATIENT] = "INSERT OR IGNORE INTO patients "
                   "(patient_id, patient_name, birth_date, sex) "
                   "SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS "
                   "(SELECT 1 FROM series WHERE series_uid = ?5) "
                   "AND NOT EXISTS "
                   "(SELECT 1 FROM studies WHERE study_uid = ?6)",
    [ST_STUDY] = "INSERT OR IGNORE INTO studies (study_uid, patient_id, "
                 "study_date, study_time, accession_number, study_id, "
                 "study_description, referring_physician) "
                 "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE NOT EXISTS "
                 "(SELECT 1 FROM series WHERE series_uid = ?9)",
    [ST_SERIES] = "INSERT INTO series (series_uid, study_uid, modality, "
                  "series_number, series_description, body_part, "
                  "frame_of_reference_uid, first_received, last_received, "
                  "instance_count) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1) "
                  "ON CONFLICT (series_uid) DO UPDATE SET "
                  "last_received = max(last_received, "
                  "excluded.last_received), "
                  "instance_count = instance_count + 1",
    [ST_INSTANCE] = "INSERT INTO instances (sop_uid, series_uid, "
                    "sop_class_uid, transfer_syntax_uid, instance_number, "
                    "path, size, source_ae, received, journal_gen, "
                    "journal_seq) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_DUPLICATE] = "INSERT INTO duplicates (sop_uid, path, size, "
                     "source_ae, received, journal_gen, journal_seq) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_HAS_PATH] = "SELECT 1 FROM instances WHERE path = ?1",
    [ST_HAS_DUP] = "SELECT 1 FROM duplicates WHERE path = ?1",
    [ST_JPOS] = "SELECT path FROM instances WHERE sop_uid = ?1 "
                "AND journal_gen = ?2 AND journal_seq = ?3 "
                "UNION ALL SELECT path FROM duplicates WHERE sop_uid = ?1 "
                "AND journal_gen = ?2 AND journal_seq = ?3",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS patients ("
    " patient_id TEXT PRIMARY KEY,"
    " patient_name TEXT, birth_date TEXT, sex TEXT);"
    "CREATE TABLE IF NOT EXISTS studies ("
    " study_uid TEXT PRIMARY KEY,"
    " patient_id TEXT NOT NULL REFERENCES patients (patient_id),"
    " study_date TEXT, study_time TEXT, accession_number TEXT,"
    " study_id TEXT, study_description TEXT, referring_physician TEXT);"
    "CREATE INDEX IF NOT EXISTS studies_patient ON studies (patient_id);"
    "CREATE TABLE IF NOT EXISTS series ("
    " series_uid TEXT PRIMARY KEY,"
    " study_uid TEXT NOT NULL REFERENCES studies (study_uid),"
    " modality TEXT, series_number INTEGER, series_description TEXT,"
    " body_part TEXT, frame_of_reference_uid TEXT,"
    " first_received REAL NOT NULL, last_received REAL NOT NULL,"
    " instance_count INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS series_study ON series (study_uid);"
    "CREATE TABLE IF NOT EXISTS instances ("
    " sop_uid TEXT PRIMARY KEY,"
    " series_uid TEXT NOT NULL REFERENCES series (series_uid),"
    " sop_class_uid TEXT, transfer_syntax_uid TEXT,"
    " instance_number INTEGER, path TEXT NOT NULL UNIQUE,"
    " size INTEGER NOT NULL, source_ae TEXT, received REAL NOT NULL,"
    " journal_gen INTEGER, journal_seq INTEGER);"
    "CREATE INDEX IF NOT EXISTS instances_series ON instances (series_uid);"
    "CREATE TABLE IF NOT EXISTS duplicates ("
    " id INTEGER PRIMARY KEY, sop_uid TEXT NOT NULL,"
    " path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,"
    " source_ae TEXT, received REAL NOT NULL,"
    " journal_gen INTEGER, journal_seq INTEGER);"
    "CREATE INDEX IF NOT EXISTS duplicates_sop ON duplicates (sop_uid);"
    "PRAGMA user_version = 2;";

/* Version 1 (before the journal) to 2: where in the journal each row's
 * record was (salt of its generation, sequence number); NULL for rows
 * written before, by recovery's scan, or for instances too big for the
 * journal. */
static const char migrate_1_sql[] =
    "ALTER TABLE instances ADD COLUMN journal_gen INTEGER;"
    "ALTER TABLE instances ADD COLUMN journal_seq INTEGER;"
    "ALTER TABLE duplicates ADD COLUMN journal_gen INTEGER;"
    "ALTER TABLE duplicates ADD COLUMN journal_seq INTEGER;"
    "PRAGMA user_version = 2;";

#define SCHEMA_VERSION 2

/* One put, from the caller's thread to the committer and back. */
typedef struct entry {
    struct entry *next;
    covct_dcm_file *f; /* owns the bytes */
    const uint8_t *bytes;
    size_t len;
    meta m;
    const char *source_ae; /* NULL when none */
    char ae_buf[JOURNAL_AE_MAX + 1]; /* source_ae of a replayed record */
    double received;       /* unix time */
    /* Journaled: its record is in the journal at (jsalt, jseq), and jhalf
     * counts it in flight until the committer is done with it (-1 when
     * not counted).  Otherwise its bytes are in DIR/tmp (tmp_live). */
    bool journaled;
    int jhalf;
    uint64_t joff, jsalt, jseq;
    journal_buf rec;       /* the encoded record; its payload is aligned */
    /* Written by a stager after the put is acknowledged (its record is
     * durable and its rows committed, file_pending): the stager writes
     * the file from rec and renames it into place.  refs (under the
     * store's lock) counts the putter and the stager; the last one frees
     * the entry.  pending_no orders covct_store_flush(). */
    bool file_async;
    bool file_pending;
    unsigned refs;
    uint64_t pending_no;
    struct entry *snext;   /* the stagers' queue */
    struct batch *batch;   /* the committer's batch it is in (under lock) */
    struct entry *pnext, *pprev; /* the pending list */
    bool cond_ok, meta_ok;
    bool tmp_live;         /* DIR/tmp/... exists and is ours */
    char tmp[REL_MAX];
    char rel[REL_MAX];     /* where it was placed, relative to DIR */
    /* The putter writes the record after queueing the put, so that the
     * committer's work overlaps the sync; `synced` (under the store's
     * lock) says the record is durable (sync_rc OK) or failed (werr). */
    bool synced;
    covct_rc sync_rc;
    covct_error werr;
    /* Decided by the committer. */
    covct_store_result result;
    bool staged;           /* rel chosen, the bytes are in tmp */
    bool placed;           /* file renamed to rel */
    bool indexed;          /* its rows are in the current transaction */
    struct entry *same_as; /* identical earlier put of the same batch */
    /* Reported back under the store's lock. */
    bool done;
    covct_rc rc;
    covct_error err;
    pthread_cond_t cond;
} entry;

/* The journal as the store uses it, under covct_store.lock. */
typedef struct jstate {
    covct_store_journal f;
    journal_header h;      /* the header last written */
    uint64_t off[2];       /* next free byte of each half */
    uint64_t next_seq;     /* in h.cur */
    uint64_t records[2];   /* records reserved in each half's generation */
    unsigned inflight[2];  /* ... and not yet through the committer */
    uint64_t max_record;   /* bigger records bypass the journal */
    double last_reserve;   /* covct_now() of the last reservation */
    unsigned space_waiters; /* putters waiting for a half to be free */
    bool switching;        /* h.cur is changing: no reservations */
    bool hdr_busy;         /* a header write (switch or retire) runs */
    bool failed;           /* a header write or a checkpoint failed */
    char failed_msg[COVCT_ERROR_MSG_MAX];
} jstate;

struct covct_store {
    char *dir;
    int dir_fd;           /* for syncfs() */
    char *index_path;
    char *marker_path;
    int marker_fd;
    bool unclean;         /* the marker was there when we opened */
    sqlite3 *db;          /* writer: open, recovery, then the committer */
    sqlite3_stmt *st[ST_COUNT];
    sqlite3 *rdb;         /* readers: covct_store_count, _instance_path */
    sqlite3_stmt *rd_count, *rd_path;
    pthread_mutex_t rd_lock;
    bool rd_lock_ok;
    pthread_mutex_t lock; /* the queue, flags and statistics */
    pthread_cond_t work;  /* something queued, hold released, stopping */
    bool sync_ok;
    entry *head, *tail;
    bool stopping, hold;
    bool thread_started;
    pthread_t thread;
    bool dirty;           /* a file was placed but not indexed */
    /* Stager threads: write acknowledged puts' files (under lock). */
    entry *shead, *stail;
    entry *pending;        /* every entry whose file is not yet in place */
    size_t pending_bytes;
    uint64_t pending_seq;  /* pending_no of the last entry handed over */
    pthread_cond_t swork;  /* something queued for the stagers */
    pthread_cond_t placed; /* a pending file is in place */
    bool swork_ok;
    bool sstop;
    unsigned n_stagers;
    struct stager *stagers;
    bool direct_io;        /* unless COVCT_STORE_NO_DIRECT_IO is set */
    atomic_uint tmp_counter;
    covct_store_stats stats;
    jstate j;
    bool journal_open;
    pthread_cond_t jcond;  /* journal space or state changed */
    pthread_cond_t synced; /* a queued put's record is durable */
    pthread_cond_t ckcond; /* wakes the checkpointer (monotonic clock) */
    bool jcond_ok;
    bool ck_started, ck_stop;
    pthread_t ck_thread;
    double idle_s;         /* CHECKPOINT_IDLE_S, or the test hook's */
};

/* Test hooks (store_int.h): journal size and idle time for stores opened
 * from now on; 0 for the defaults. */
static _Atomic uint64_t g_journal_size;
static _Atomic double g_idle_s;

/* ---- small helpers ------------------------------------------------------- */

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* DIR/rel into buf (PATH_MAX bytes).  covct_store_open() refused a DIR
 * longer than DIR_MAX and every rel is shorter than REL_MAX, so it fits. */
static void path_of(const covct_store *s, const char *rel, char *buf)
{
    int n = snprintf(buf, PATH_MAX, "%s/%s", s->dir, rel);
    if (n < 0 || n >= PATH_MAX)
        buf[0] = '\0';
}

static void copy_trunc(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Hostile values in error messages: at most 64 bytes, non-printable ones
 * as \xHH. */
static void printable(const uint8_t *v, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < 64 && o + 5 < cap; i++) {
        if (v[i] >= 0x20 && v[i] < 0x7F && v[i] != '\'') {
            out[o++] = (char)v[i];
        } else {
            snprintf(out + o, cap - o, "\\x%02X", v[i]);
            o += 4;
        }
    }
    if (n > 64 && o + 4 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* FNV-1a (32 bit): spreads the study folders over 256 parent folders. */
static unsigned study_bucket(const char *uid)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)uid; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h & 0xFFu;
}

static void instance_rel(const meta *m, char *rel)
{
    snprintf(rel, REL_MAX, "instances/%02x/%s/%s/%s.dcm",
             study_bucket(m->study), m->study, m->series, m->sop);
}

static covct_rc fsync_dir(const char *path, covct_error *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot open folder %s: %s",
                         path, strerror(errno));
    covct_rc rc = COVCT_OK;
    if (fsync(fd) != 0)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot sync folder %s: %s", path,
                       strerror(errno));
    close(fd);
    return rc;
}

/* mkdir that accepts an existing folder; *created says which it was. */
static covct_rc make_dir(const char *path, bool *created, covct_error *err)
{
    *created = false;
    if (mkdir(path, 0777) == 0) {
        *created = true;
        return COVCT_OK;
    }
    if (errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return COVCT_OK;
        return COVCT_ERR(err, COVCT_ERR_IO, "%s exists and is not a folder",
                         path);
    }
    return COVCT_ERR(err, COVCT_ERR_IO, "cannot create folder %s: %s", path,
                     strerror(errno));
}

static covct_rc make_dirs(const char *path, covct_error *err)
{
    char buf[PATH_MAX];
    copy_trunc(buf, sizeof buf, path);
    for (char *p = buf; *p; p++) {
        if (*p != '/' || p == buf)
            continue;
        *p = '\0';
        bool created;
        covct_rc rc = make_dir(buf, &created, err);
        *p = '/';
        if (rc)
            return rc;
    }
    bool created;
    return make_dir(buf, &created, err);
}

/* Where the data set of a Part 10 file starts (after its meta
 * information); 0 when the file has none (the whole file is compared). */
static size_t dataset_offset(const uint8_t *p, size_t len)
{
    char cls[65], inst[65], ts[65];
    size_t off = 0;
    return covct_dcm_meta_peek(p, len, cls, inst, ts, &off, NULL) ? 0 : off;
}

/* Whether two Part 10 files hold the same data set.  The file meta
 * information is not compared: it names the sender ((0002,0016) Source AE
 * Title), so the same instance resent by another AE is the same. */
static bool same_dataset(const uint8_t *a, size_t alen, const uint8_t *b,
                         size_t blen)
{
    size_t oa = dataset_offset(a, alen), ob = dataset_offset(b, blen);
    return alen - oa == blen - ob && !memcmp(a + oa, b + ob, alen - oa);
}

/* Whether the file DIR/rel holds the same data set as p[0..len).  A
 * missing file is reported as different, with *missing set. */
static covct_rc file_same(const covct_store *s, const char *rel,
                          const uint8_t *p, size_t len, bool *same,
                          bool *missing, covct_error *err)
{
    char path[PATH_MAX];
    path_of(s, rel, path);
    *same = false;
    *missing = false;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) {
            *missing = true;
            return COVCT_OK;
        }
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot stat %s: %s", path,
                         strerror(errno));
    }
    /* Meta information differs by a few dozen bytes at most. */
    uint64_t diff = (uint64_t)st.st_size > len ? (uint64_t)st.st_size - len
                                               : len - (uint64_t)st.st_size;
    if (diff > 256)
        return COVCT_OK;
    uint8_t *data = NULL;
    size_t n = 0;
    covct_rc rc = covct_file_read(path, &data, &n, err);
    if (rc)
        return rc;
    *same = same_dataset(data, n, p, len);
    covct_free(data);
    return COVCT_OK;
}

/* ---- reading what the index needs from a data set ------------------------ */

static const char *tag_name(uint32_t tag)
{
    const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
    return d ? d->keyword : "element";
}

/* A UID that becomes a path component: 1-64 characters, digits and dots
 * (PS3.5 9.1), starting with a digit so that it is never "." or "..".
 * Trailing NUL padding (PS3.5 6.2) and stray trailing spaces are dropped.
 * Nothing else is accepted: the value names files. */
static covct_rc get_uid(const covct_dcm_dataset *ds, uint32_t tag,
                        char out[UID_MAX + 1], covct_error *err)
{
    out[0] = '\0';
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    if (!e)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "(%04X,%04X) %s is missing",
                         COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag),
                         tag_name(tag));
    size_t n = 0;
    const uint8_t *v = NULL;
    if (covct_dcm_element_vr(e) != COVCT_VR('S', 'Q'))
        v = covct_dcm_element_value(e, &n);
    if (!v)
        n = 0;
    while (n > 0 && (v[n - 1] == '\0' || v[n - 1] == ' '))
        n--;
    if (n == 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "(%04X,%04X) %s is empty",
                         COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag),
                         tag_name(tag));
    bool ok = n <= UID_MAX && v[0] >= '0' && v[0] <= '9';
    for (size_t i = 0; ok && i < n; i++)
        ok = (v[i] >= '0' && v[i] <= '9') || v[i] == '.';
    if (!ok) {
        char shown[300];
        printable(v, n, shown, sizeof shown);
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "(%04X,%04X) %s '%s' (%zu characters) is not a "
                         "valid UID (1-64 digits and dots, PS3.5 9.1)",
                         COVCT_TAG_GROUP(tag), COVCT_TAG_ELEM(tag),
                         tag_name(tag), shown, n);
    }
    memcpy(out, v, n);
    out[n] = '\0';
    return COVCT_OK;
}

static void trim(char *s)
{
    size_t n = strlen(s), a = 0;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
        n--;
    while (a < n && s[a] == ' ')
        a++;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
}

/* A text attribute in UTF-8 (NULL when absent).  A value whose character
 * set covct cannot convert is kept with its non-ASCII bytes as '?' rather
 * than refusing the instance: the index is for finding, the file keeps
 * the original. */
static covct_rc get_text(const covct_dcm_dataset *ds, uint32_t tag,
                         char **out, covct_error *err)
{
    *out = NULL;
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    if (!e || !covct_dcm_vr_is_string(covct_dcm_element_vr(e)))
        return COVCT_OK;
    char *s = NULL;
    covct_error cerr = {0};
    covct_rc rc = covct_dcm_get_utf8(ds, tag, &s, &cerr);
    if (rc == COVCT_ERR_NOMEM)
        return COVCT_ERR(err, rc, "out of memory");
    if (rc) {
        size_t n = 0;
        const uint8_t *v = covct_dcm_element_value(e, &n);
        if (!v)
            n = 0;
        s = covct_malloc(n + 1);
        if (!s)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
            s[i] = v[i] >= 0x20 && v[i] < 0x7F ? (char)v[i] : '?';
        s[n] = '\0';
    }
    trim(s);
    *out = s;
    return COVCT_OK;
}

static void meta_free(meta *m)
{
    for (int i = 0; i < T_COUNT; i++)
        COVCT_FREE(m->text[i]);
}

static covct_rc read_meta(covct_dcm_file *f, meta *m, covct_error *err)
{
    memset(m, 0, sizeof *m);
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    const covct_dcm_dataset *fmi = covct_dcm_file_meta(f);
    covct_rc rc = get_uid(ds, COVCT_TAG(0x0008, 0x0018), m->sop, err);
    if (rc)
        return rc;
    if ((rc = get_uid(ds, COVCT_TAG(0x0020, 0x000D), m->study, err)) ||
        (rc = get_uid(ds, COVCT_TAG(0x0020, 0x000E), m->series, err)))
        goto fail;
    char buf[UID_MAX + 2];
    if (covct_dcm_get_string(fmi, COVCT_TAG(0x0002, 0x0010), 0, buf,
                             sizeof buf, NULL) ||
        !buf[0]) {
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "not a Part 10 file: the file meta information has "
                       "no (0002,0010) Transfer Syntax UID");
        goto fail;
    }
    copy_trunc(m->ts, sizeof m->ts, buf);
    /* The class is not a path component: kept as found, (0002,0002) when
     * the data set lacks it. */
    if (covct_dcm_get_string(ds, COVCT_TAG(0x0008, 0x0016), 0, buf,
                             sizeof buf, NULL) ||
        !buf[0])
        covct_dcm_get_string(fmi, COVCT_TAG(0x0002, 0x0002), 0, buf,
                             sizeof buf, NULL);
    copy_trunc(m->sop_class, sizeof m->sop_class, buf);
    covct_dcm_get_string(fmi, COVCT_TAG(0x0002, 0x0016), 0, m->source_ae,
                         sizeof m->source_ae, NULL);
    for (int i = 0; i < T_COUNT; i++)
        if ((rc = get_text(ds, text_tags[i], &m->text[i], err)))
            goto fail;
    if (!m->text[T_PATIENT_ID] && !(m->text[T_PATIENT_ID] = covct_strdup(""))) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->has_series_number = covct_dcm_get_int(ds, COVCT_TAG(0x0020, 0x0011),
                                             0, &m->series_number,
                                             NULL) == COVCT_OK;
    m->has_instance_number = covct_dcm_get_int(ds, COVCT_TAG(0x0020, 0x0013),
                                               0, &m->instance_number,
                                               NULL) == COVCT_OK;
    return COVCT_OK;
fail:
    covct_error_prefix(err, "instance %s: ", m->sop);
    meta_free(m);
    return rc;
}

/* ---- index writes -------------------------------------------------------- */

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC)
             : sqlite3_bind_null(st, i);
}

static int bind_opt_int(sqlite3_stmt *st, int i, bool has, int64_t v)
{
    return has ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

/* Where a row's journal record is: salts are 1..INT64_MAX, 0 = none. */
typedef struct jpos {
    uint64_t salt, seq;
} jpos;

static void bind_jpos(sqlite3_stmt *st, int i, jpos p)
{
    bind_opt_int(st, i, p.salt != 0, (int64_t)p.salt);
    bind_opt_int(st, i + 1, p.salt != 0, (int64_t)p.seq);
}

/* Step a statement that returns no row, and make it reusable. */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static covct_rc exec(covct_store *s, const char *sql, covct_error *err)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return COVCT_ERR(err, COVCT_ERR_IO, "index %s: %s: %s",
                         s->index_path, sql, sqlite3_errmsg(s->db));
    return COVCT_OK;
}

static covct_rc index_fail(covct_store *s, covct_error *err)
{
    return COVCT_ERR(err, COVCT_ERR_IO, "cannot index it in %s: %s",
                     s->index_path, sqlite3_errmsg(s->db));
}

/* Rows of a new instance, inside the caller's transaction, in a savepoint
 * so that a failure takes back only this instance's rows. */
static covct_rc index_new(covct_store *s, const meta *m, const char *rel,
                          size_t size, const char *source_ae,
                          double received, jpos jp, covct_error *err)
{
    covct_rc rc = exec(s, "SAVEPOINT put", err);
    if (rc)
        return rc;
    char *const *t = m->text;
    sqlite3_stmt *st = s->st[ST_PATIENT];
    bind_text(st, 1, t[T_PATIENT_ID]);
    bind_text(st, 2, t[T_PATIENT_NAME]);
    bind_text(st, 3, t[T_BIRTH_DATE]);
    bind_text(st, 4, t[T_SEX]);
    bind_text(st, 5, m->series);
    bind_text(st, 6, m->study);
    if (run(st) != SQLITE_OK)
        goto fail;
    st = s->st[ST_STUDY];
    bind_text(st, 1, m->study);
    bind_text(st, 2, t[T_PATIENT_ID]);
    bind_text(st, 3, t[T_STUDY_DATE]);
    bind_text(st, 4, t[T_STUDY_TIME]);
    bind_text(st, 5, t[T_ACCESSION]);
    bind_text(st, 6, t[T_STUDY_ID]);
    bind_text(st, 7, t[T_STUDY_DESC]);
    bind_text(st, 8, t[T_REFERRING]);
    bind_text(st, 9, m->series);
    if (run(st) != SQLITE_OK)
        goto fail;
    st = s->st[ST_SERIES];
    bind_text(st, 1, m->series);
    bind_text(st, 2, m->study);
    bind_text(st, 3, t[T_MODALITY]);
    bind_opt_int(st, 4, m->has_series_number, m->series_number);
    bind_text(st, 5, t[T_SERIES_DESC]);
    bind_text(st, 6, t[T_BODY_PART]);
    bind_text(st, 7, t[T_FRAME_OF_REF]);
    sqlite3_bind_double(st, 8, received);
    if (run(st) != SQLITE_OK)
        goto fail;
    st = s->st[ST_INSTANCE];
    bind_text(st, 1, m->sop);
    bind_text(st, 2, m->series);
    bind_text(st, 3, m->sop_class[0] ? m->sop_class : NULL);
    bind_text(st, 4, m->ts);
    bind_opt_int(st, 5, m->has_instance_number, m->instance_number);
    bind_text(st, 6, rel);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)size);
    bind_text(st, 8, source_ae);
    sqlite3_bind_double(st, 9, received);
    bind_jpos(st, 10, jp);
    if (run(st) != SQLITE_OK)
        goto fail;
    return exec(s, "RELEASE put", err);
fail:
    rc = index_fail(s, err);
    sqlite3_exec(s->db, "ROLLBACK TO put; RELEASE put", NULL, NULL, NULL);
    return rc;
}

static covct_rc index_dup(covct_store *s, const char *sop, const char *rel,
                          size_t size, const char *source_ae,
                          double received, jpos jp, covct_error *err)
{
    sqlite3_stmt *st = s->st[ST_DUPLICATE];
    bind_text(st, 1, sop);
    bind_text(st, 2, rel);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
    bind_text(st, 4, source_ae);
    sqlite3_bind_double(st, 5, received);
    bind_jpos(st, 6, jp);
    if (run(st) != SQLITE_OK)
        return index_fail(s, err);
    return COVCT_OK;
}

/* ---- syncing ------------------------------------------------------------- */

/* Make everything written under DIR so far durable: instance files, new
 * folders and names, the index (WAL and database), the journal.  One
 * syncfs() writes back the file system's dirty data and commits its
 * journal once, where fsync per file and folder would commit it once per
 * call.  It also flushes unrelated dirty data of the same file system,
 * which only makes it take longer. */
static covct_rc sync_all(const covct_store *s, covct_error *err)
{
    if (syncfs(s->dir_fd) != 0)
        return COVCT_ERR(err, COVCT_ERR_IO,
                         "cannot sync the file system of %s: %s", s->dir,
                         strerror(errno));
    return COVCT_OK;
}

/* Whether an index row names `rel` (which: ST_HAS_PATH, ST_HAS_DUP). */
static covct_rc path_indexed(covct_store *s, int which, const char *rel,
                             bool *found, covct_error *err)
{
    sqlite3_stmt *st = s->st[which];
    bind_text(st, 1, rel);
    int r = sqlite3_step(st);
    *found = r == SQLITE_ROW;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot query %s: %s",
                         s->index_path, sqlite3_errmsg(s->db));
    return COVCT_OK;
}

/* ---- the journal's generations --------------------------------------------
 * Generation g writes records into one half of the journal.  When a record
 * does not fit (or the store has been idle), a putter or the checkpointer
 * switches: the header now names g+1 in the other half and g as pending,
 * and puts go on there at once.  The checkpointer retires g (syncs the
 * file system, then writes a header without g: g's half is free, its
 * records are never replayed) once the committer is done with g's last
 * record and either g+1's half is half full, or the store is idle, or it
 * closes, or a put waits for space.  Retiring late keeps the syncs out of
 * a burst of puts: a sync of the file system writes the files of a whole
 * half, and each journal fdatasync that runs meanwhile waits for it (on
 * the test machine, one record's fdatasync took 50-65 ms instead of
 * 0.25 ms).  A burst up to one and a half halves has no such stall.
 * All of it runs under s->lock, except the header writes and the sync,
 * which hdr_busy keeps to one at a time. */

/* Refuse further puts: the journal's state on disk is no longer known.
 * Close then leaves DIR/.open so that the next open replays it. */
static void journal_fail(covct_store *s, const covct_error *why)
{
    jstate *j = &s->j;
    if (!j->failed) {
        j->failed = true;
        snprintf(j->failed_msg, sizeof j->failed_msg, "%s", why->msg);
        covct_log(COVCT_LOG_ERROR,
                  "store %s: journal: %s; puts are refused until the store "
                  "is opened again",
                  s->dir, why->msg);
    }
    pthread_cond_broadcast(&s->jcond);
    pthread_cond_signal(&s->ckcond);
}

/* Write header h (after a syncfs of DIR when sync_first) with the lock
 * released and hdr_busy set; once it is durable, h is the journal's
 * header.  A failure fails the journal (false).  Lock held on entry and
 * on return. */
static bool install_header(covct_store *s, const journal_header *h,
                           bool sync_first)
{
    jstate *j = &s->j;
    j->hdr_busy = true;
    pthread_mutex_unlock(&s->lock);
    covct_error err = {0};
    covct_rc rc = sync_first ? sync_all(s, &err) : COVCT_OK;
    if (!rc)
        rc = covct_store_journal_write_header(&j->f, h, &err);
    pthread_mutex_lock(&s->lock);
    j->hdr_busy = false;
    if (rc) {
        journal_fail(s, &err);
        return false;
    }
    j->h = *h;
    return true;
}

/* Start generation g+1 in the other half.  Lock held, !hdr_busy,
 * !prev_pending (the other half is free). */
static void journal_switch(covct_store *s)
{
    jstate *j = &s->j;
    journal_header h = j->h;
    h.hv++;
    h.clean = false;
    h.prev = h.cur;
    h.prev_pending = true;
    h.cur = (journal_gen){.gen = h.prev.gen + 1,
                          .salt = covct_store_journal_salt(),
                          .half = 1u - h.prev.half};
    /* No record of g+1 may be acknowledged before this header is durable:
     * reservations wait for `switching` to clear. */
    j->switching = true;
    bool ok = install_header(s, &h, false);
    j->switching = false;
    if (!ok)
        return;
    j->off[h.cur.half] = covct_store_journal_half_start(&j->f, h.cur.half);
    j->records[h.cur.half] = 0;
    j->next_seq = 1;
    pthread_cond_broadcast(&s->jcond);
    pthread_cond_signal(&s->ckcond);
}

/* The checkpoint: everything the committer wrote for generation h.prev is
 * made durable in place, then the header drops it.  Lock held,
 * !hdr_busy, prev_pending, and no record of h.prev in flight. */
static void journal_retire(covct_store *s)
{
    jstate *j = &s->j;
    journal_header h = j->h;
    h.hv++;
    h.prev_pending = false;
    uint64_t records = j->records[h.prev.half];
    double t0 = covct_now();
    if (!install_header(s, &h, true))
        return;
    double dt = covct_now() - t0;
    s->stats.checkpoints++;
    pthread_cond_broadcast(&s->jcond);
    covct_log(COVCT_LOG_DEBUG,
              "store %s: checkpoint of journal generation %llu (%llu "
              "records): %.3f s",
              s->dir, (unsigned long long)h.prev.gen,
              (unsigned long long)records, dt);
}

/* The committer is done with e's record (or the put failed before it got
 * there).  Lock held. */
static void journal_release(covct_store *s, entry *e)
{
    if (e->jhalf < 0)
        return;
    unsigned half = (unsigned)e->jhalf;
    e->jhalf = -1;
    if (--s->j.inflight[half] == 0 && s->j.h.prev_pending &&
        s->j.h.prev.half == half)
        pthread_cond_signal(&s->ckcond);
}

/* Reserve `need` bytes for e's record in the current generation: its
 * offset and sequence number. */
static covct_rc journal_reserve(covct_store *s, entry *e, uint64_t need,
                                covct_error *err)
{
    jstate *j = &s->j;
    covct_rc rc = COVCT_OK;
    bool waited = false;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (j->failed) {
            rc = COVCT_ERR(err, COVCT_ERR_IO, "the store's journal failed: %s",
                           j->failed_msg);
            break;
        }
        if (s->stopping) {
            rc = COVCT_ERR(err, COVCT_ERR_ARG, "the store is closing");
            break;
        }
        unsigned half = j->h.cur.half;
        if (!j->switching &&
            need <= covct_store_journal_half_end(&j->f, half) - j->off[half]) {
            e->jhalf = (int)half;
            e->joff = j->off[half];
            e->jsalt = j->h.cur.salt;
            e->jseq = j->next_seq++;
            uint64_t mid = covct_store_journal_half_start(&j->f, half) +
                           j->f.half_size / 2;
            if (j->h.prev_pending && j->off[half] < mid &&
                j->off[half] + need >= mid)
                pthread_cond_signal(&s->ckcond); /* time to retire prev */
            j->off[half] += need;
            j->records[half]++;
            j->inflight[half]++;
            j->last_reserve = covct_now();
            break;
        }
        /* The half is full (need <= max_record fits in an empty one). */
        if (!j->hdr_busy && !j->h.prev_pending) {
            journal_switch(s);
            continue;
        }
        /* The other half's checkpoint has not finished: the disk is
         * slower than the senders. */
        if (!waited)
            s->stats.journal_waits++;
        waited = true;
        j->space_waiters++;
        pthread_cond_signal(&s->ckcond);
        pthread_cond_wait(&s->jcond, &s->lock);
        j->space_waiters--;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Retires the pending generation when it is due (see above), and
 * checkpoints a generation that has been idle for idle_s.  Putters signal
 * ckcond when the current half passes its middle or when they wait for
 * space, journal_release when the pending generation's last record is
 * through the committer. */
static void *checkpointer(void *arg)
{
    covct_store *s = arg;
    jstate *j = &s->j;
    pthread_mutex_lock(&s->lock);
    while (!j->failed) {
        double wait_s = 1.0;
        double idle = covct_now() - j->last_reserve;
        bool idle_now = idle >= s->idle_s;
        if (j->hdr_busy) {
            /* a putter's switch; it signals when done */
        } else if (j->h.prev_pending) {
            unsigned cur = j->h.cur.half;
            bool due = s->ck_stop || idle_now || j->space_waiters > 0 ||
                       j->off[cur] - covct_store_journal_half_start(
                                         &j->f, cur) >=
                           j->f.half_size / 2;
            if (due && j->inflight[j->h.prev.half] == 0) {
                journal_retire(s);
                continue;
            }
            if (!due)
                wait_s = s->idle_s - idle;
        } else if (s->ck_stop) {
            break;
        } else if (j->records[j->h.cur.half] > 0) {
            if (idle_now) {
                journal_switch(s);
                continue;
            }
            wait_s = s->idle_s - idle;
        }
        if (wait_s < 0.01)
            wait_s = 0.01;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double end = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + wait_s;
        ts.tv_sec = (time_t)end;
        ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&s->ckcond, &s->lock, &ts);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- the committer ------------------------------------------------------- */

/* Record an entry's failure: message prefixed with the instance, its
 * temporary file removed. */
static void entry_fail(entry *e, covct_rc rc)
{
    if (e->rc)
        return;
    e->rc = rc;
    if (e->err.rc == COVCT_OK)
        COVCT_ERR(&e->err, rc, "%s", covct_rc_str(rc));
    covct_error_prefix(&e->err, "instance %s: ", e->m.sop);
}

static void entry_drop_tmp(const covct_store *s, entry *e)
{
    if (e->tmp_live) {
        char path[PATH_MAX];
        path_of(s, e->tmp, path);
        unlink(path);
        e->tmp_live = false;
    }
}

/* Write a new file's bytes in pieces of WRITE_CHUNK.  The kernel sizes
 * the page cache folios of a new file by the length of each write: one
 * write of 512 KiB gets large folios (order > 3), which come from the
 * buddy allocator rather than the per-CPU lists of recently freed pages.
 * In a virtual machine that hands free memory back to its host, those
 * pages are touched for the first time and fault in the host: on the
 * test machine a 512 KiB file took 1.2 ms to write in one call and 0.16 ms
 * in 32 KiB calls (order-3 folios), the same as writing it in 4 KiB calls
 * costs no more than the extra system calls. */
#define WRITE_CHUNK ((size_t)32 << 10)

static covct_rc write_chunked(int fd, const uint8_t *p, size_t n,
                              const char *path, covct_error *err)
{
    covct_rc rc = COVCT_OK;
    for (size_t off = 0; off < n && !rc; off += WRITE_CHUNK)
        rc = covct_fd_write_all(fd, p + off,
                                n - off < WRITE_CHUNK ? n - off : WRITE_CHUNK,
                                path, err);
    return rc;
}

/* Write n bytes from page-aligned memory (zero-padded to a whole page)
 * to the empty file fd: the whole pages with direct I/O, the last partial
 * page through the page cache.  Direct I/O keeps the instance out of the
 * page cache, so a put copies it once (into the journal record's buffer)
 * instead of once more into cache pages it may never read again; on the
 * virtual machines measured, filling fresh cache pages cost more CPU than
 * receiving the instance (docs/internals/store.md).  Where the file
 * system refuses direct I/O (tmpfs), everything goes through the cache. */
static covct_rc write_aligned(int fd, const uint8_t *p, size_t n, bool direct,
                              const char *path, covct_error *err)
{
    size_t head = n & ~(size_t)(JOURNAL_BLOCK - 1), done = 0;
    int fl = direct ? fcntl(fd, F_GETFL) : -1;
    if (head && fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0) {
        while (done < head) {
            ssize_t w = pwrite(fd, p + done, head - done, (off_t)done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0 || (size_t)w % JOURNAL_BLOCK)
                break; /* an error, or a short write: the rest buffered */
            done += (size_t)w;
        }
        fcntl(fd, F_SETFL, fl);
    }
    while (done < n) {
        size_t k = n - done < WRITE_CHUNK ? n - done : WRITE_CHUNK;
        ssize_t w = pwrite(fd, p + done, k, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s: %s", path,
                             w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w;
    }
    return COVCT_OK;
}

/* Write n bytes to a new (or truncated) file, not synced: the journal
 * record they come from stays durable until a checkpoint has synced the
 * file.  A failed write leaves no file. */
static covct_rc write_file(const char *path, const uint8_t *p, size_t n,
                           covct_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", path,
                         strerror(errno));
    covct_rc rc = write_chunked(fd, p, n, path, err);
    if (close(fd) != 0 && !rc)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s: %s", path,
                       strerror(errno));
    if (rc)
        unlink(path);
    return rc;
}

/* A new empty file in DIR/tmp (puts too big for the journal, files the
 * committer writes itself in a journal replay) or in a stager's
 * DIR/tmp/sN: its name (relative to DIR) in rel.  Every open empties
 * DIR/tmp and its folders. */
static int create_tmp(covct_store *s, unsigned stager_id, char rel[REL_MAX],
                      covct_error *err)
{
    char path[PATH_MAX];
    char sub[16] = "";
    if (stager_id != UINT_MAX)
        snprintf(sub, sizeof sub, "s%u/", stager_id);
    for (int attempt = 0;; attempt++) {
        unsigned n = atomic_fetch_add(&s->tmp_counter, 1);
        snprintf(rel, REL_MAX, "tmp/%s%ld-%u.part", sub, (long)getpid(), n);
        path_of(s, rel, path);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST || attempt >= 100) {
            COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", path,
                      strerror(errno));
            return -1;
        }
    }
}

/* A stager thread (stager_main) and its staging folder, DIR/tmp/sN.
 * One folder per stager: creating a file holds its folder's lock, and
 * after a mass delete ext4 without a journal may spend a millisecond
 * in a create skipping recently freed inodes; with one shared folder
 * the other stagers' creates and renames spun on that lock (10 % of the
 * CPU at four associations, perf). */
typedef struct stager {
    covct_store *s;
    pthread_t thread;
    unsigned id;
} stager;

/* Write e's bytes to a new staging file (e->tmp), synced or not, in
 * DIR/tmp or in stager g's folder. */
static covct_rc write_tmp(covct_store *s, entry *e, bool sync,
                          const stager *g, covct_error *err)
{
    char path[PATH_MAX];
    int fd = create_tmp(s, g ? g->id : UINT_MAX, e->tmp, err);
    if (fd < 0)
        return COVCT_ERR_IO;
    path_of(s, e->tmp, path);
    e->tmp_live = true;
    covct_rc rc = e->rec.p ? write_aligned(fd, e->rec.p + JOURNAL_BLOCK,
                                           e->len, s->direct_io, path, err)
                           : write_chunked(fd, e->bytes, e->len, path, err);
    if (!rc && sync && fdatasync(fd) != 0)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot sync %s: %s", path,
                       strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s: %s", path,
                       strerror(errno));
    return rc;
}

static covct_rc publish(covct_store *s, entry *e, covct_error *err);

/* Free an entry: its record buffer, staging file, metadata, bytes.  The
 * caller has released its journal count (journal_release). */
static void entry_free(covct_store *s, entry *e)
{
    if (s->journal_open)
        covct_store_journal_buf_release(&s->j.f, &e->rec);
    entry_drop_tmp(s, e);
    if (e->cond_ok)
        pthread_cond_destroy(&e->cond);
    if (e->meta_ok)
        meta_free(&e->m);
    covct_dcm_file_free(e->f);
    covct_free(e);
}

static void pending_remove(covct_store *s, entry *e)
{
    if (e->pprev)
        e->pprev->pnext = e->pnext;
    else
        s->pending = e->pnext;
    if (e->pnext)
        e->pnext->pprev = e->pprev;
    e->pnext = e->pprev = NULL;
    e->file_pending = false;
    s->pending_bytes -= e->rec.cap;
}

/* An acknowledged put's file, written after the acknowledgement: its
 * bytes are durable in the journal and its rows are committed, so the
 * file is only where they will live.  Writing it (direct I/O, 0.3 ms for a
 * 512 KiB slice) after the response takes it off the sender's path: the
 * sender's next instance arrives while it is written.  Readers in this
 * process wait for pending files (covct_store_flush); the journal
 * generation is not retired before its files are in place.  A file that
 * cannot be written stops the store (puts refused, no checkpoint): the
 * record stays in the journal and the next open writes the file. */
static void *stager_main(void *arg)
{
    stager *g = arg;
    covct_store *s = g->s;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->shead && !s->sstop)
            pthread_cond_wait(&s->swork, &s->lock);
        entry *e = s->shead;
        if (!e)
            break; /* stopping, and nothing queued */
        if (!(s->shead = e->snext))
            s->stail = NULL;
        pthread_mutex_unlock(&s->lock);
        covct_error werr = {0};
        covct_rc rc = write_tmp(s, e, false, g, &werr);
        if (!rc)
            rc = publish(s, e, &werr);
        if (rc)
            entry_drop_tmp(s, e);
        pthread_mutex_lock(&s->lock);
        if (rc) {
            covct_log(COVCT_LOG_ERROR,
                      "store %s: instance %s is in the journal but its file "
                      "could not be written: %s",
                      s->dir, e->m.sop, werr.msg);
            journal_fail(s, &werr);
        }
        pending_remove(s, e);
        journal_release(s, e);
        pthread_cond_broadcast(&s->placed);
        if (--e->refs == 0) {
            pthread_mutex_unlock(&s->lock);
            entry_free(s, e);
            pthread_mutex_lock(&s->lock);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Is an instance whose file is still pending identical to e (same SOP
 * Instance UID, same result, same data set)?  *found: there is a pending
 * copy of e's SOP instance with that result. */
static bool pending_same(covct_store *s, const entry *e,
                         covct_store_result result, bool *found)
{
    bool same = false;
    *found = false;
    pthread_mutex_lock(&s->lock);
    for (entry *p = s->pending; p && !same; p = p->pnext) {
        if (p->result != result || strcmp(p->m.sop, e->m.sop) != 0)
            continue;
        *found = true;
        same = same_dataset(p->bytes, p->len, e->bytes, e->len);
    }
    pthread_mutex_unlock(&s->lock);
    return same;
}

/* Stage a journaled put the committer writes itself (journal replay):
 * its bytes to DIR/tmp, not synced.  A stager writes the others' files
 * after the acknowledgement; a put too big for the journal arrives with
 * its synced temporary file. */
static covct_rc stage(covct_store *s, entry *e, covct_error *err)
{
    if (e->journaled && !e->file_async) {
        covct_rc rc = write_tmp(s, e, false, NULL, err);
        if (rc)
            return rc;
    }
    e->staged = true;
    return COVCT_OK;
}

/* Create DIR/instances/SS/STUDY/SERIES as needed and stage the file.
 * Only this thread writes under DIR/instances, and decide() found no
 * index row for the instance. */
static covct_rc place_new(covct_store *s, entry *e, covct_error *err)
{
    instance_rel(&e->m, e->rel);
    char path[PATH_MAX];
    path_of(s, e->rel, path);
    /* Folder levels after DIR/instances: SS, STUDY, SERIES. */
    char *slash = path + strlen(s->dir) + sizeof "/instances" - 1;
    for (int level = 0; level < 3; level++) {
        slash = strchr(slash + 1, '/');
        if (!slash)
            return COVCT_ERR(err, COVCT_ERR_INTERNAL, "bad path %s", path);
        *slash = '\0';
        bool created;
        covct_rc rc = make_dir(path, &created, err);
        *slash = '/';
        if (rc)
            return rc;
    }
    return stage(s, e, err);
}

/* The first duplicates/SOP.N.dcm that no index row and no earlier put of
 * this batch names.  A file there without a row is replaced (see
 * publish()): replay after a power failure must be able to rewrite the
 * duplicate its record made, whose row was lost. */
static covct_rc place_dup(covct_store *s, entry *batch, entry *e,
                          covct_error *err)
{
    for (unsigned n = 1; n <= DUPLICATES_MAX; n++) {
        snprintf(e->rel, sizeof e->rel, "duplicates/%s.%u.dcm", e->m.sop, n);
        bool taken = false;
        covct_rc rc = path_indexed(s, ST_HAS_DUP, e->rel, &taken, err);
        if (rc)
            return rc;
        for (entry *o = batch; !taken && o != e; o = o->next)
            taken = o->staged && !strcmp(o->rel, e->rel);
        if (!taken)
            return stage(s, e, err);
    }
    return COVCT_ERR(err, COVCT_ERR_LIMIT,
                     "%d different copies are already kept under %s/"
                     "duplicates",
                     DUPLICATES_MAX, s->dir);
}

/* Rename a staged file to its final name.  No index row names that name:
 * a file already there was never acknowledged (an index write that
 * failed, or a crash before the commit; replay stores such an instance
 * again from its record), so replacing it is right. */
static covct_rc publish(covct_store *s, entry *e, covct_error *err)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    path_of(s, e->tmp, tmp);
    path_of(s, e->rel, path);
    if (rename(tmp, path) != 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot move %s to %s: %s", tmp,
                         path, strerror(errno));
    e->tmp_live = false;
    e->placed = true;
    return COVCT_OK;
}

/* NEW, ALREADY or DUPLICATE, against the copy stored before (an earlier
 * put of this batch, or the index); for DUPLICATE, *known says that an
 * identical copy is already kept under duplicates/. */
static covct_rc decide(covct_store *s, entry *batch, entry *e, bool *known,
                       covct_error *err)
{
    *known = false;
    entry *prev = NULL;
    for (entry *o = batch; o != e; o = o->next)
        if (!o->rc && o->staged && o->result == COVCT_STORE_NEW &&
            !strcmp(o->m.sop, e->m.sop))
            prev = o;
    bool same = false, missing = false;
    if (prev) {
        same = same_dataset(prev->bytes, prev->len, e->bytes, e->len);
    } else {
        sqlite3_stmt *st = s->st[ST_FIND];
        bind_text(st, 1, e->m.sop);
        int r = sqlite3_step(st);
        char rel[REL_MAX] = "";
        int64_t size = -1;
        if (r == SQLITE_ROW) {
            const unsigned char *p = sqlite3_column_text(st, 0);
            copy_trunc(rel, sizeof rel, (const char *)p);
            size = sqlite3_column_int64(st, 1);
        }
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (r != SQLITE_ROW && r != SQLITE_DONE)
            return COVCT_ERR(err, COVCT_ERR_IO, "cannot query %s: %s",
                             s->index_path, sqlite3_errmsg(s->db));
        if (r == SQLITE_DONE) {
            e->result = COVCT_STORE_NEW;
            return COVCT_OK;
        }
        (void)size;
        bool found = false;
        same = pending_same(s, e, COVCT_STORE_NEW, &found);
        if (!found) {
            covct_rc rc = file_same(s, rel, e->bytes, e->len, &same,
                                    &missing, err);
            if (rc)
                return rc;
            if (missing)
                covct_log(COVCT_LOG_WARN,
                          "store %s: instance %s is indexed but its file %s "
                          "is missing",
                          s->dir, e->m.sop, rel);
        }
    }
    if (same) {
        e->result = COVCT_STORE_ALREADY;
        e->same_as = prev;
        return COVCT_OK;
    }
    e->result = COVCT_STORE_DUPLICATE;
    /* A sender that retries a different copy should not fill the disk. */
    for (entry *o = batch; o != e; o = o->next)
        if (!o->rc && o->staged && o->result == COVCT_STORE_DUPLICATE &&
            !strcmp(o->m.sop, e->m.sop) &&
            same_dataset(o->bytes, o->len, e->bytes, e->len)) {
            *known = true;
            e->same_as = o;
            return COVCT_OK;
        }
    bool found = false;
    if ((*known = pending_same(s, e, COVCT_STORE_DUPLICATE, &found)))
        return COVCT_OK;
    sqlite3_stmt *st = s->st[ST_FIND_DUP];
    bind_text(st, 1, e->m.sop);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)e->len);
    covct_rc rc = COVCT_OK;
    while (!*known && sqlite3_step(st) == SQLITE_ROW) {
        char rel[REL_MAX];
        copy_trunc(rel, sizeof rel, (const char *)sqlite3_column_text(st, 0));
        if ((rc = file_same(s, rel, e->bytes, e->len, known, &missing, err)))
            break;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Everything one round does with the puts it took from the queue. */
/* BEGIN, and the rows of every put of the batch that is still good and
 * staged (or, after the files moved, placed): e->indexed.  A put whose
 * rows cannot be written fails; if its file is already in place, close
 * leaves DIR/.open so that the next open indexes it. */
static void index_staged(covct_store *s, entry *batch, bool placed)
{
    covct_error berr = {0};
    bool any = false;
    for (entry *e = batch; e; e = e->next)
        any |= !e->rc && (placed ? e->placed : e->staged);
    if (!any)
        return;
    covct_rc rc = exec(s, "BEGIN IMMEDIATE", &berr);
    for (entry *e = batch; e; e = e->next) {
        if (e->rc || !(placed ? e->placed : e->staged))
            continue;
        if (!rc) {
            jpos jp = {e->journaled ? e->jsalt : 0, e->jseq};
            rc = e->result == COVCT_STORE_NEW
                     ? index_new(s, &e->m, e->rel, e->len, e->source_ae,
                                 e->received, jp, &e->err)
                     : index_dup(s, e->m.sop, e->rel, e->len, e->source_ae,
                                 e->received, jp, &e->err);
            if (!rc) {
                e->indexed = true;
                continue;
            }
            entry_fail(e, rc);
            rc = COVCT_OK; /* the savepoint took back its rows only */
        } else {
            covct_error_set(&e->err, berr.rc, berr.src_file, berr.src_line,
                            "%s", berr.msg);
            entry_fail(e, rc);
        }
        if (e->placed)
            s->dirty = true;
    }
}

/* Steps 1-2 of a batch, while its records are being written. */
static void commit_batch_start(covct_store *s, entry *batch)
{
    covct_rc rc;

    /* 1. Decide each put's fate; stage the files to keep. */
    for (entry *e = batch; e; e = e->next) {
        /* (Step 3 removes the staging files of puts not kept.) */
        bool known = false;
        if ((rc = decide(s, batch, e, &known, &e->err))) {
            entry_fail(e, rc);
            continue;
        }
        if (e->result == COVCT_STORE_ALREADY || known)
            continue;
        rc = e->result == COVCT_STORE_NEW ? place_new(s, e, &e->err)
                                          : place_dup(s, batch, e, &e->err);
        if (rc)
            entry_fail(e, rc);
    }

    /* 2. The rows of every staged put, in one transaction that is not
     * synced (synchronous=NORMAL): the journal records are durable, and
     * replay writes the rows again if a power failure loses them.  They
     * are written while the putters' syncs run, and committed after. */
    index_staged(s, batch, false);
}

/* The rest of a batch, once every record of it is durable (see
 * batch_try_end): files of puts the committer writes itself move into
 * place, COMMIT, the puts too big for the journal are synced. */
static void commit_batch_end(covct_store *s, entry *batch)
{
    covct_error berr = {0};
    covct_rc rc;
    bool redo = false;
    /* 3. Move the staged files into place: a file under its final name
     * always has a durable source. */
    for (entry *e = batch; e; e = e->next) {
        if (e->sync_rc) {
            covct_error_set(&e->err, e->werr.rc, e->werr.src_file,
                            e->werr.src_line, "%s", e->werr.msg);
            entry_fail(e, e->sync_rc);
        }
        if (!e->rc && e->staged && !e->file_async &&
            (rc = publish(s, e, &e->err)))
            entry_fail(e, rc);
        if (e->rc || !e->staged)
            entry_drop_tmp(s, e);
        if (e->rc)
            redo |= e->indexed;
    }

    /* 4. Commit.  Rows of a put that failed since are taken back by
     * writing the transaction again without them (rare: a disk error). */
    if (redo) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        for (entry *e = batch; e; e = e->next)
            e->indexed = false;
        index_staged(s, batch, true);
    }
    bool any = false;
    for (entry *e = batch; e; e = e->next)
        any |= e->indexed;
    covct_error_clear(&berr);
    if (any && (rc = exec(s, "COMMIT", &berr))) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        for (entry *e = batch; e; e = e->next)
            if (!e->rc && e->indexed) {
                covct_error_set(&e->err, berr.rc, berr.src_file,
                                berr.src_line, "%s", berr.msg);
                entry_fail(e, rc);
                e->indexed = false;
                s->dirty = true;
            }
    } else if (!any && !sqlite3_get_autocommit(s->db)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }

    /* 5. Instances too big for the journal: their renames, new folders
     * and rows become durable with one sync before they are
     * acknowledged. */
    bool direct = false;
    for (entry *e = batch; e; e = e->next)
        direct |= !e->rc && e->indexed && !e->journaled;
    covct_error_clear(&berr);
    if (direct && (rc = sync_all(s, &berr)))
        for (entry *e = batch; e; e = e->next)
            if (!e->rc && e->indexed && !e->journaled) {
                covct_error_set(&e->err, berr.rc, berr.src_file,
                                berr.src_line, "%s", berr.msg);
                entry_fail(e, rc);
            }

    /* 6. A put found identical to another of the same batch shares its
     * fate. */
    for (entry *e = batch; e; e = e->next)
        if (!e->rc && e->same_as && e->same_as->rc) {
            COVCT_ERR(&e->err, e->same_as->rc,
                      "the identical copy received at the same time could "
                      "not be stored: %s",
                      e->same_as->err.msg);
            entry_fail(e, e->same_as->rc);
        }
}

/* A committer round: its puts, and which thread ends it.  The committer
 * takes every queued put, durable or not, and runs steps 1-2 while their
 * records are being written (taking only the durable ones, so that a
 * round never waits for its slowest record, measured 7 % slower at one
 * association and no faster at four).  The rest (the COMMIT, handing the
 * files to the stagers, the answers) runs in whichever thread sees the
 * round started and every record durable: the committer, or the putter
 * whose record was the last to become durable.  At one association that
 * is the putter, which then answers its sender without waiting for two
 * thread wake-ups (about 0.1 ms a put here). */
typedef struct batch {
    entry *head;
    bool started;  /* steps 1-2 done */
    bool claimed;  /* a thread runs commit_batch_end */
    bool finished; /* every put answered */
} batch;

static bool batch_synced(const batch *b)
{
    for (const entry *e = b->head; e; e = e->next)
        if (!e->synced)
            return false;
    return true;
}

/* Under the lock, after commit_batch_end: acknowledged puts go to the
 * stagers, every waiter gets its answer. */
static void batch_finish(covct_store *s, batch *b)
{
    uint64_t n = 0;
    /* The waiter frees its entry as soon as it sees `done`, which it can
     * only do after this lock is released. */
    for (entry *e = b->head, *next; e; e = next) {
        next = e->next;
        if (e->file_async && !e->rc && e->staged && e->indexed) {
            /* Acknowledged: a stager writes the file (stager_main) and,
             * with the putter, owns the entry. */
            e->file_pending = true;
            e->refs = 2;
            e->pending_no = ++s->pending_seq;
            e->pnext = s->pending;
            if (s->pending)
                s->pending->pprev = e;
            s->pending = e;
            s->pending_bytes += e->rec.cap;
            if (s->stail)
                s->stail->snext = e;
            else
                s->shead = e;
            s->stail = e;
            pthread_cond_signal(&s->swork);
        } else {
            journal_release(s, e);
        }
        if (!e->journaled)
            s->stats.direct++;
        e->done = true;
        pthread_cond_signal(&e->cond);
        n++;
    }
    s->stats.batches++;
    s->stats.entries += n;
    if (n > s->stats.max_batch)
        s->stats.max_batch = n;
    b->finished = true;
    pthread_cond_broadcast(&s->synced);
}

/* Under the lock: end the round if it is ready, every record is durable
 * and no other thread does it.  Returns with the lock held. */
static void batch_try_end(covct_store *s, batch *b)
{
    if (!b || !b->started || b->claimed || !batch_synced(b))
        return;
    b->claimed = true;
    pthread_mutex_unlock(&s->lock);
    commit_batch_end(s, b->head);
    pthread_mutex_lock(&s->lock);
    batch_finish(s, b);
}

/* A whole round in this thread (journal replay: its puts are synced). */
static void commit_batch(covct_store *s, entry *head)
{
    commit_batch_start(s, head);
    pthread_mutex_lock(&s->lock);
    for (entry *e = head; e; e = e->next)
        while (!e->synced)
            pthread_cond_wait(&s->synced, &s->lock);
    pthread_mutex_unlock(&s->lock);
    commit_batch_end(s, head);
}

static void *committer(void *arg)
{
    covct_store *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stopping && (!s->head || s->hold))
            pthread_cond_wait(&s->work, &s->lock);
        if (!s->head)
            break; /* stopping, and the queue is drained */
        batch b = {.head = s->head};
        for (entry *e = b.head; e; e = e->next)
            e->batch = &b;
        s->head = s->tail = NULL;
        pthread_mutex_unlock(&s->lock);
        commit_batch_start(s, b.head);
        pthread_mutex_lock(&s->lock);
        b.started = true;
        batch_try_end(s, &b);
        while (!b.finished)
            pthread_cond_wait(&s->synced, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- put ----------------------------------------------------------------- */

covct_rc covct_store_put(covct_store *s, uint8_t *file, size_t len,
                         const char *source_ae, covct_store_result *result,
                         covct_store_info *info, covct_error *err)
{
    if (!s || !file) {
        covct_free(file);
        return COVCT_ERR(err, COVCT_ERR_ARG, "covct_store_put: %s",
                         s ? "no file" : "no store");
    }
    entry *e = covct_calloc(1, sizeof *e);
    if (!e) {
        covct_free(file);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    e->jhalf = -1;
    covct_rc rc = covct_dcm_file_parse(
        file, len, &(covct_dcm_read_opts){.stop_before_pixels = true},
        &e->f, err);
    if (rc) {
        covct_error_prefix(err, "received file: ");
        goto out;
    }
    e->bytes = covct_dcm_file_bytes(e->f, &e->len);
    if ((rc = read_meta(e->f, &e->m, err)))
        goto out;
    e->meta_ok = true;
    e->source_ae = source_ae && source_ae[0] ? source_ae : NULL;
    e->received = unix_now();
    uint64_t need = covct_store_journal_record_size(e->len);
    e->journaled = need != 0 && need <= s->j.max_record;
    if (e->journaled) {
        rc = journal_reserve(s, e, need, err);
        if (!rc)
            rc = covct_store_journal_prepare(&s->j.f, e->jsalt, e->jseq,
                                             e->bytes, e->len, e->received,
                                             e->source_ae, &e->rec, err);
        if (!rc) {
            /* From here on the record's copy is the put's only copy. */
            e->bytes = e->rec.p + JOURNAL_BLOCK;
            covct_dcm_file_free(e->f);
            e->f = NULL;
            e->file_async = s->n_stagers > 0;
        }
    } else {
        rc = write_tmp(s, e, true, NULL, err);
        e->synced = true;
    }
    if (rc) {
        covct_error_prefix(err, "instance %s: ", e->m.sop);
        goto out;
    }
    if (pthread_cond_init(&e->cond, NULL) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_INTERNAL, "pthread_cond_init failed");
        goto out;
    }
    e->cond_ok = true;

    pthread_mutex_lock(&s->lock);
    /* Files not yet written hold their record's memory: past
     * PENDING_MAX_BYTES, wait for the stagers. */
    while (e->file_async && s->pending_bytes > PENDING_MAX_BYTES &&
           !s->stopping && !s->j.failed)
        pthread_cond_wait(&s->placed, &s->lock);
    if (s->stopping || s->j.failed) {
        pthread_mutex_unlock(&s->lock);
        rc = s->stopping
                 ? COVCT_ERR(err, COVCT_ERR_ARG,
                             "instance %s: the store is closing", e->m.sop)
                 : COVCT_ERR(err, COVCT_ERR_IO,
                             "instance %s: the store stopped accepting "
                             "instances after a failed write: %s",
                             e->m.sop, s->j.failed_msg);
        goto out;
    }
    if (s->tail)
        s->tail->next = e;
    else
        s->head = e;
    s->tail = e;
    pthread_cond_signal(&s->work);
    if (e->journaled) {
        /* The record, written and synced in this thread while the
         * committer decides and indexes the put: concurrent putters'
         * syncs also overlap each other.  The committer commits only once
         * `synced` is set. */
        pthread_mutex_unlock(&s->lock);
        covct_rc wrc = covct_store_journal_write(&s->j.f, e->joff, &e->rec,
                                                 &e->werr);
        pthread_mutex_lock(&s->lock);
        e->sync_rc = wrc;
        e->synced = true;
        batch_try_end(s, e->batch); /* the last record of a started round */
    }
    while (!e->done)
        pthread_cond_wait(&e->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);

    if ((rc = e->rc)) {
        covct_error_set(err, rc, e->err.src_file, e->err.src_line, "%s",
                        e->err.msg);
        goto out;
    }
    if (result)
        *result = e->result;
    if (info) {
        memset(info, 0, sizeof *info);
        copy_trunc(info->sop_class_uid, sizeof info->sop_class_uid,
                   e->m.sop_class);
        copy_trunc(info->sop_instance_uid, sizeof info->sop_instance_uid,
                   e->m.sop);
        copy_trunc(info->series_uid, sizeof info->series_uid, e->m.series);
        copy_trunc(info->study_uid, sizeof info->study_uid, e->m.study);
        copy_trunc(info->patient_id, sizeof info->patient_id,
                   e->m.text[T_PATIENT_ID]);
        copy_trunc(info->modality, sizeof info->modality,
                   e->m.text[T_MODALITY]);
    }
out:
    pthread_mutex_lock(&s->lock);
    if (e->refs == 0)
        journal_release(s, e); /* otherwise the stager does */
    bool last = e->refs == 0 || --e->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        entry_free(s, e);
    return rc;
}

/* Wait until the file of every instance acknowledged so far is in place
 * (files are written just after the acknowledgement, stager_main). */
void covct_store_flush(covct_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    uint64_t upto = s->pending_seq;
    for (;;) {
        bool older = false;
        for (entry *p = s->pending; p && !older; p = p->pnext)
            older = p->pending_no <= upto;
        if (!older || s->n_stagers == 0)
            break;
        pthread_cond_wait(&s->placed, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
}

/* ---- open: marker, index, recovery --------------------------------------- */

/* Create and lock DIR/.open.  The lock keeps a second process (or a
 * second open in this one) out; the file's presence at open means the
 * last process did not close the store. */
static covct_rc take_marker(covct_store *s, covct_error *err)
{
    for (int attempt = 0; attempt < 10; attempt++) {
        bool created = true;
        int fd = open(s->marker_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                      0666);
        if (fd < 0 && errno == EEXIST) {
            created = false;
            fd = open(s->marker_path, O_RDWR | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT)
                continue; /* removed by a closing process: try again */
        }
        if (fd < 0)
            return COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s",
                             s->marker_path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return COVCT_ERR(err, COVCT_ERR_IO,
                                 "store %s is already open (%s is locked)",
                                 s->dir, s->marker_path);
            return COVCT_ERR(err, COVCT_ERR_IO, "cannot lock %s: %s",
                             s->marker_path, strerror(e));
        }
        /* A closing process may have removed the file between our open
         * and our lock: then our lock is on a name nobody sees. */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(s->marker_path, &b) != 0 ||
            a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        s->marker_fd = fd;
        s->unclean = !created;
        /* The marker must be on disk before any file is placed, or a crash
         * could leave unindexed files that no open would look for. */
        return created ? fsync_dir(s->dir, err) : COVCT_OK;
    }
    return COVCT_ERR(err, COVCT_ERR_IO, "cannot take %s: it keeps changing",
                     s->marker_path);
}

static covct_rc open_index(covct_store *s, covct_error *err)
{
    covct_rc rc;
    if (sqlite3_open_v2(s->index_path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot open index %s: %s",
                         s->index_path,
                         s->db ? sqlite3_errmsg(s->db) : "out of memory");
    sqlite3_busy_timeout(s->db, 10000);
    /* WAL: readers (C-FIND, the web API) never block the committer.
     * synchronous=NORMAL: COMMIT does not sync; the journal makes a put
     * durable, and a checkpoint's syncfs the index (SQLite still syncs
     * around its own WAL checkpoints, so the database is never corrupt). */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return COVCT_ERR(err, COVCT_ERR_IO, "index %s: cannot set WAL mode: %s",
                         s->index_path, sqlite3_errmsg(s->db));
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0)
        covct_log(COVCT_LOG_WARN,
                  "store %s: the index runs in journal mode %s, not WAL: "
                  "readers will block writes",
                  s->dir, mode ? mode : "?");
    sqlite3_finalize(st);
    if ((rc = exec(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON",
                   err)))
        return rc;
    int version = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0)
        return COVCT_ERR(err, COVCT_ERR_IO, "index %s: cannot read: %s",
                         s->index_path, sqlite3_errmsg(s->db));
    if (version > SCHEMA_VERSION)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "index %s has schema version %d; this covct knows "
                         "version %d",
                         s->index_path, version, SCHEMA_VERSION);
    if (version < SCHEMA_VERSION) {
        if ((rc = exec(s, "BEGIN IMMEDIATE", err)))
            return rc;
        if (version == 1)
            covct_log(COVCT_LOG_INFO,
                      "store %s: index schema version 1 -> 2 (journal "
                      "positions)",
                      s->dir);
        if ((rc = exec(s, version == 1 ? migrate_1_sql : schema_sql, err))) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if ((rc = exec(s, "COMMIT", err)))
            return rc;
    }
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, st_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &s->st[i], NULL) != SQLITE_OK)
            return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                             "index %s: cannot prepare \"%s\": %s",
                             s->index_path, st_sql[i], sqlite3_errmsg(s->db));
    return COVCT_OK;
}

covct_rc covct_store_db_open(const covct_store *s, bool rw, sqlite3 **db,
                             covct_error *err)
{
    *db = NULL;
    if (sqlite3_open_v2(s->index_path, db,
                        (rw ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        covct_rc rc = COVCT_ERR(err, COVCT_ERR_IO,
                                "cannot open index %s: %s", s->index_path,
                                *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    sqlite3_busy_timeout(*db, 10000);
    return COVCT_OK;
}

static covct_rc open_reader(covct_store *s, covct_error *err)
{
    covct_rc rc = covct_store_db_open(s, false, &s->rdb, err);
    if (rc)
        return rc;
    if (sqlite3_prepare_v3(s->rdb, "SELECT count(*) FROM instances", -1,
                           SQLITE_PREPARE_PERSISTENT, &s->rd_count,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(s->rdb,
                           "SELECT path FROM instances WHERE sop_uid = ?1",
                           -1, SQLITE_PREPARE_PERSISTENT, &s->rd_path,
                           NULL) != SQLITE_OK)
        return COVCT_ERR(err, COVCT_ERR_INTERNAL, "index %s: %s",
                         s->index_path, sqlite3_errmsg(s->rdb));
    return COVCT_OK;
}

/* Remove what DIR/tmp holds: files of puts that never completed. */
/* Remove the files of folder `name` under parent (a stager's folder). */
static size_t empty_folder(const covct_store *s, int parent, const char *name)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' &&
            (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            removed++;
        else
            covct_log(COVCT_LOG_WARN, "store %s: cannot remove tmp/%s/%s: %s",
                      s->dir, name, de->d_name, strerror(errno));
    }
    closedir(d);
    return removed;
}

static void empty_tmp(covct_store *s)
{
    char path[PATH_MAX];
    path_of(s, "tmp", path);
    DIR *d = opendir(path);
    if (!d)
        return;
    size_t removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' &&
            (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
            removed++;
        } else if (errno == EISDIR) {
            removed += empty_folder(s, dirfd(d), de->d_name);
        } else {
            covct_log(COVCT_LOG_WARN, "store %s: cannot remove tmp/%s: %s",
                      s->dir, de->d_name, strerror(errno));
        }
    }
    closedir(d);
    if (removed)
        covct_log(COVCT_LOG_INFO,
                  "store %s: removed %zu unfinished files from tmp/", s->dir,
                  removed);
}

typedef struct recovery {
    double start, last_log;
    size_t checked, indexed, in_txn;
} recovery;

static bool row_exists(covct_store *s, int which, const char *rel)
{
    sqlite3_stmt *st = s->st[which];
    bind_text(st, 1, rel);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return found;
}

/* Index one file found under DIR without an index row.  Files that do not
 * parse, or that are not where their UIDs say, are left alone and
 * logged: recovery never deletes what was received. */
static covct_rc recover_file(covct_store *s, recovery *r, const char *rel,
                             bool duplicate, covct_error *err)
{
    r->checked++;
    if (row_exists(s, duplicate ? ST_HAS_DUP : ST_HAS_PATH, rel))
        return COVCT_OK;
    char path[PATH_MAX];
    path_of(s, rel, path);
    covct_error ferr = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    covct_dcm_file *f = NULL;
    meta m;
    bool meta_ok = false;
    covct_rc rc = COVCT_OK;
    struct stat st;
    if (stat(path, &st) != 0 || covct_file_read(path, &data, &len, &ferr) ||
        covct_dcm_file_parse(data, len,
                             &(covct_dcm_read_opts){.stop_before_pixels = true},
                             &f, &ferr) ||
        read_meta(f, &m, &ferr)) {
        covct_log(COVCT_LOG_WARN, "store %s: recovery: %s left unindexed: %s",
                  s->dir, rel, ferr.msg[0] ? ferr.msg : strerror(errno));
        goto out;
    }
    meta_ok = true;
    double mtime =
        (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec * 1e-9;
    const char *ae = m.source_ae[0] ? m.source_ae : NULL;
    if (duplicate) {
        rc = index_dup(s, m.sop, rel, len, ae, mtime, (jpos){0, 0}, err);
    } else {
        char want[REL_MAX];
        instance_rel(&m, want);
        if (strcmp(want, rel) != 0) {
            covct_log(COVCT_LOG_WARN,
                      "store %s: recovery: %s left unindexed: it holds "
                      "instance %s, whose place is %s",
                      s->dir, rel, m.sop, want);
            goto out;
        }
        sqlite3_stmt *q = s->st[ST_FIND];
        bind_text(q, 1, m.sop);
        bool other = sqlite3_step(q) == SQLITE_ROW;
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
        if (other) {
            covct_log(COVCT_LOG_WARN,
                      "store %s: recovery: %s left unindexed: instance %s "
                      "is indexed at another path",
                      s->dir, rel, m.sop);
            goto out;
        }
        rc = index_new(s, &m, rel, len, ae, mtime, (jpos){0, 0}, err);
    }
    if (rc)
        goto out;
    r->indexed++;
    if (++r->in_txn >= RECOVERY_TXN_FILES) {
        r->in_txn = 0;
        if ((rc = exec(s, "COMMIT", err)) ||
            (rc = exec(s, "BEGIN IMMEDIATE", err)))
            goto out;
    }
out:
    if (meta_ok)
        meta_free(&m);
    covct_dcm_file_free(f);
    double now = covct_now();
    if (now - r->last_log >= RECOVERY_LOG_EVERY) {
        r->last_log = now;
        covct_log(COVCT_LOG_INFO,
                  "store %s: recovery: %zu files checked, %zu indexed "
                  "(%.0f s)",
                  s->dir, r->checked, r->indexed, now - r->start);
    }
    return rc;
}

static bool is_dot(const char *name) { return name[0] == '.'; }

/* Walk DIR/instances/SS/STUDY/SERIES/SOP.dcm (depth 0 = SS folders). */
static covct_rc scan_instances(covct_store *s, recovery *r, const char *rel,
                               int depth, covct_error *err)
{
    char path[PATH_MAX];
    path_of(s, rel, path);
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT)
            return COVCT_OK;
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot read folder %s: %s", path,
                         strerror(errno));
    }
    covct_rc rc = COVCT_OK;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (is_dot(de->d_name))
            continue;
        char sub[REL_MAX];
        int n = snprintf(sub, sizeof sub, "%s/%s", rel, de->d_name);
        if (n < 0 || (size_t)n >= sizeof sub)
            continue; /* longer than anything the store creates */
        struct stat st;
        char full[PATH_MAX];
        path_of(s, sub, full);
        if (lstat(full, &st) != 0)
            continue;
        if (depth < 3 && S_ISDIR(st.st_mode)) {
            rc = scan_instances(s, r, sub, depth + 1, err);
        } else if (depth == 3 && S_ISREG(st.st_mode)) {
            size_t nl = strlen(de->d_name);
            if (nl > 4 && !strcmp(de->d_name + nl - 4, ".dcm"))
                rc = recover_file(s, r, sub, false, err);
        }
    }
    closedir(d);
    return rc;
}

static covct_rc scan_duplicates(covct_store *s, recovery *r, covct_error *err)
{
    char path[PATH_MAX];
    path_of(s, "duplicates", path);
    DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? COVCT_OK
                               : COVCT_ERR(err, COVCT_ERR_IO,
                                           "cannot read folder %s: %s", path,
                                           strerror(errno));
    covct_rc rc = COVCT_OK;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (is_dot(de->d_name) || nl <= 4 ||
            strcmp(de->d_name + nl - 4, ".dcm") != 0)
            continue;
        char sub[REL_MAX];
        int n = snprintf(sub, sizeof sub, "duplicates/%s", de->d_name);
        if (n < 0 || (size_t)n >= sizeof sub)
            continue;
        rc = recover_file(s, r, sub, true, err);
    }
    closedir(d);
    return rc;
}

/* The last process was killed: index every file without a row (after the
 * journal replay, these are files of instances too big for the journal
 * renamed into place whose transaction never committed, and files a store
 * without a journal left). */
static covct_rc recover(covct_store *s, size_t *checked, covct_error *err)
{
    recovery r = {0};
    r.start = r.last_log = covct_now();
    covct_rc rc = exec(s, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    if ((rc = scan_instances(s, &r, "instances", 0, err)) ||
        (rc = scan_duplicates(s, &r, err)) || (rc = exec(s, "COMMIT", err))) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    s->stats.recovered += r.indexed;
    *checked = r.checked;
    return COVCT_OK;
}

/* ---- recovery: the journal --------------------------------------------- */

typedef struct replay {
    covct_store *s;
    const journal_gen *g;
    size_t records, intact, restored, replayed, already, failed;
} replay;

/* The file a row names must hold exactly the record's bytes: after a
 * power failure it may be missing, empty or short (written, never synced,
 * and the page cache lost). */
static covct_rc restore_file(covct_store *s, replay *rp, const char *rel,
                             const uint8_t *p, size_t len, covct_error *err)
{
    char path[PATH_MAX];
    path_of(s, rel, path);
    struct stat st;
    bool same = false;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == len) {
        uint8_t *data = NULL;
        size_t n = 0;
        if (covct_file_read(path, &data, &n, NULL) == COVCT_OK)
            same = n == len && !memcmp(data, p, len);
        covct_free(data);
    }
    if (same) {
        rp->intact++;
        return COVCT_OK;
    }
    char dir[PATH_MAX];
    copy_trunc(dir, sizeof dir, path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    covct_rc rc = make_dirs(dir, err);
    if (!rc)
        rc = write_file(path, p, len, err);
    if (!rc)
        rp->restored++;
    return rc;
}

/* One record of the generation being replayed: if a row names it, its
 * file is checked; otherwise it goes through the committer's logic, as
 * if it had just been received (NEW, ALREADY or DUPLICATE against the
 * index as it is now). */
static covct_rc replay_record(void *user, const journal_record *r,
                              uint8_t *payload, covct_error *err)
{
    replay *rp = user;
    covct_store *s = rp->s;
    rp->records++;
    entry *e = covct_calloc(1, sizeof *e);
    if (!e) {
        covct_free(payload);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    e->jhalf = -1;
    bool meta_ok = false;
    covct_error perr = {0};
    covct_rc rc = covct_dcm_file_parse(
        payload, r->len, &(covct_dcm_read_opts){.stop_before_pixels = true},
        &e->f, &perr);
    if (!rc && !(rc = read_meta(e->f, &e->m, &perr)))
        meta_ok = true;
    if (rc == COVCT_ERR_NOMEM) {
        rc = COVCT_ERR(err, rc, "out of memory");
        goto out;
    }
    if (rc) {
        /* It was checked before it was written: a bug, not a crash. */
        covct_log(COVCT_LOG_WARN,
                  "store %s: journal record %llu of generation %llu left "
                  "alone: %s",
                  s->dir, (unsigned long long)r->seq,
                  (unsigned long long)rp->g->gen, perr.msg);
        rp->failed++;
        rc = COVCT_OK;
        goto out;
    }
    e->bytes = covct_dcm_file_bytes(e->f, &e->len);
    copy_trunc(e->ae_buf, sizeof e->ae_buf, r->source_ae);
    e->source_ae = e->ae_buf[0] ? e->ae_buf : NULL;
    e->received = r->received;
    e->journaled = true;
    e->synced = true;
    e->jsalt = rp->g->salt;
    e->jseq = r->seq;

    sqlite3_stmt *st = s->st[ST_JPOS];
    bind_text(st, 1, e->m.sop);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)e->jsalt);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)e->jseq);
    int q = sqlite3_step(st);
    char rel[REL_MAX] = "";
    if (q == SQLITE_ROW)
        copy_trunc(rel, sizeof rel, (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (q != SQLITE_ROW && q != SQLITE_DONE) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot query %s: %s",
                       s->index_path, sqlite3_errmsg(s->db));
        goto out;
    }
    if (q == SQLITE_ROW) {
        covct_error ferr = {0};
        if (restore_file(s, rp, rel, e->bytes, e->len, &ferr)) {
            covct_log(COVCT_LOG_WARN,
                      "store %s: journal replay: instance %s: %s", s->dir,
                      e->m.sop, ferr.msg);
            rp->failed++;
        }
    } else {
        commit_batch(s, e);
        if (e->rc) {
            covct_log(COVCT_LOG_WARN, "store %s: journal replay: %s",
                      s->dir, e->err.msg);
            rp->failed++;
        } else if (e->placed) {
            rp->replayed++;
        } else {
            rp->already++;
        }
    }
out:
    if (meta_ok)
        meta_free(&e->m);
    covct_dcm_file_free(e->f);
    covct_free(e);
    return rc;
}

/* Replay the generations the header says are not checkpointed, oldest
 * first. */
static covct_rc replay_journal(covct_store *s, const journal_header *h,
                               covct_error *err)
{
    journal_gen gens[2];
    size_t n = 0;
    if (h->prev_pending)
        gens[n++] = h->prev;
    gens[n++] = h->cur;
    replay rp = {.s = s};
    size_t torn = 0;
    double t0 = covct_now();
    for (size_t i = 0; i < n; i++) {
        rp.g = &gens[i];
        size_t t = 0;
        covct_rc rc = covct_store_journal_scan(&s->j.f, &gens[i],
                                               replay_record, &rp, &t, err);
        torn += t;
        if (rc)
            return rc;
    }
    s->stats.journal_records = rp.records;
    s->stats.replayed = rp.replayed;
    s->stats.restored = rp.restored;
    s->stats.torn = torn;
    s->stats.recovered += rp.replayed;
    covct_log(COVCT_LOG_INFO,
              "store %s: journal replay (generation %llu%s): %zu records: "
              "%zu files intact, %zu files rewritten, %zu instances stored "
              "again, %zu already stored, %zu failed; %zu torn blocks "
              "skipped (%.1f s)",
              s->dir, (unsigned long long)h->cur.gen,
              h->prev_pending ? " and the one before" : "", rp.records,
              rp.intact, rp.restored, rp.replayed, rp.already, rp.failed,
              torn, covct_now() - t0);
    return COVCT_OK;
}

/* ---- open and close ------------------------------------------------------ */

/* Open (or create) DIR/journal; if the last process did not close the
 * store, replay the journal and index files without rows; then start a
 * fresh generation, everything before it being durable. */
static covct_rc open_journal(covct_store *s, covct_error *err)
{
    jstate *j = &s->j;
    uint64_t size = atomic_load(&g_journal_size);
    /* COVCT_STORE_JOURNAL_MB: the size of a new journal (8 to 65536 MiB;
     * the default suits one CT series in flight; tests use a small one). */
    const char *env = getenv("COVCT_STORE_JOURNAL_MB");
    if (!size && env && *env) {
        char *end;
        unsigned long mb = strtoul(env, &end, 10);
        if (*end || mb < 8 || mb > 65536)
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "COVCT_STORE_JOURNAL_MB=%s: give a size in MiB "
                             "from 8 to 65536",
                             env);
        size = (uint64_t)mb << 20;
    }
    journal_header h;
    bool created = false;
    covct_rc rc = covct_store_journal_open(
        s->dir, size ? size : JOURNAL_DEFAULT_SIZE, &j->f, &h, &created, err);
    if (rc)
        return rc;
    s->journal_open = true;
    /* A quarter of a half: a half always holds at least four records. */
    j->max_record = (j->f.half_size / 4) & ~(uint64_t)(JOURNAL_BLOCK - 1);
    if (j->max_record < JOURNAL_BLOCK)
        j->max_record = JOURNAL_BLOCK;
    if (s->unclean || (!created && !h.clean)) {
        covct_log(COVCT_LOG_INFO,
                  "store %s was not closed cleanly: replaying its journal "
                  "and checking its files against the index",
                  s->dir);
        double t0 = covct_now();
        if (!created && (rc = replay_journal(s, &h, err)))
            return rc;
        size_t checked = 0;
        if ((rc = recover(s, &checked, err)) || (rc = sync_all(s, err)))
            return rc;
        covct_log(COVCT_LOG_INFO,
                  "store %s: recovery done: %zu files checked, %llu indexed "
                  "(%llu from the journal, %llu files without a row); %llu "
                  "files rewritten from the journal (%.1f s)",
                  s->dir, checked, (unsigned long long)s->stats.recovered,
                  (unsigned long long)s->stats.replayed,
                  (unsigned long long)(s->stats.recovered -
                                       s->stats.replayed),
                  (unsigned long long)s->stats.restored, covct_now() - t0);
    }
    h.hv++;
    h.clean = false;
    h.prev_pending = false;
    h.prev = (journal_gen){0};
    h.cur = (journal_gen){.gen = h.cur.gen + 1,
                          .salt = covct_store_journal_salt(),
                          .half = 0};
    if ((rc = covct_store_journal_write_header(&j->f, &h, err)))
        return rc;
    j->h = h;
    for (unsigned half = 0; half < 2; half++)
        j->off[half] = covct_store_journal_half_start(&j->f, half);
    j->next_seq = 1;
    j->last_reserve = covct_now();
    return COVCT_OK;
}

/* Stop the committer (it drains the queue first), then the checkpointer
 * (it retires a pending generation first). */
static void stop_threads(covct_store *s)
{
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_signal(&s->work);
        pthread_cond_broadcast(&s->jcond); /* putters waiting for space */
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
    /* After the committer: it waits for the files they write. */
    if (s->n_stagers) {
        pthread_mutex_lock(&s->lock);
        s->sstop = true;
        pthread_cond_broadcast(&s->swork);
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < s->n_stagers; i++)
            pthread_join(s->stagers[i].thread, NULL);
        s->n_stagers = 0;
    }
    if (s->ck_started) {
        pthread_mutex_lock(&s->lock);
        s->ck_stop = true;
        pthread_cond_signal(&s->ckcond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->ck_thread, NULL);
        s->ck_started = false;
    }
}

/* At close, with the threads stopped: sync what the current generation
 * holds and write a clean header, so that the next open replays nothing.
 * Returns false if the journal may still be needed. */
static bool close_journal(covct_store *s)
{
    jstate *j = &s->j;
    if (!s->journal_open)
        return true;
    if (j->failed)
        return false;
    covct_error err = {0};
    covct_rc rc = COVCT_OK;
    if (j->records[j->h.cur.half] > 0 || j->h.prev_pending)
        rc = sync_all(s, &err);
    if (!rc) {
        journal_header h = j->h;
        h.hv++;
        h.clean = true;
        h.prev_pending = false;
        h.prev = (journal_gen){0};
        h.cur = (journal_gen){.gen = h.cur.gen + 1,
                              .salt = covct_store_journal_salt(),
                              .half = 1u - h.cur.half};
        rc = covct_store_journal_write_header(&j->f, &h, &err);
    }
    if (rc) {
        covct_log(COVCT_LOG_WARN,
                  "store %s: %s; the next open will replay the journal",
                  s->dir, err.msg);
        return false;
    }
    return true;
}

static void destroy(covct_store *s, bool remove_marker)
{
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_finalize(s->rd_count);
    sqlite3_finalize(s->rd_path);
    sqlite3_close(s->rdb);
    if (s->db) {
        /* Fold the WAL into the database so that the folder is one
         * self-contained file for backups and read-only readers. */
        if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                      NULL, NULL) != SQLITE_OK)
            covct_log(COVCT_LOG_WARN, "store %s: index checkpoint: %s",
                      s->dir, sqlite3_errmsg(s->db));
        if (sqlite3_close(s->db) != SQLITE_OK)
            covct_log(COVCT_LOG_WARN, "store %s: cannot close the index: %s",
                      s->dir, sqlite3_errmsg(s->db));
    }
    if (s->journal_open)
        covct_store_journal_close(&s->j.f);
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    if (s->marker_fd >= 0) {
        if (remove_marker)
            unlink(s->marker_path);
        close(s->marker_fd); /* releases the lock */
    }
    if (s->jcond_ok) {
        pthread_cond_destroy(&s->jcond);
        pthread_cond_destroy(&s->ckcond);
        pthread_cond_destroy(&s->synced);
    }
    if (s->sync_ok) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->work);
    }
    if (s->swork_ok) {
        pthread_cond_destroy(&s->swork);
        pthread_cond_destroy(&s->placed);
    }
    covct_free(s->stagers);
    if (s->rd_lock_ok)
        pthread_mutex_destroy(&s->rd_lock);
    covct_free(s->dir);
    covct_free(s->index_path);
    covct_free(s->marker_path);
    covct_free(s);
}

static char *join_alloc(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = covct_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* jcond, synced, and ckcond on the monotonic clock (its waits are
 * timed). */
/* Two condition variables, both or neither. */
static bool init_cond_pair(pthread_cond_t *a, pthread_cond_t *b)
{
    if (pthread_cond_init(a, NULL) != 0)
        return false;
    if (pthread_cond_init(b, NULL) != 0) {
        pthread_cond_destroy(a);
        return false;
    }
    return true;
}

static bool init_jconds(covct_store *s)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return false;
    bool ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(&s->ckcond, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (ok && pthread_cond_init(&s->jcond, NULL) != 0) {
        pthread_cond_destroy(&s->ckcond);
        ok = false;
    }
    if (ok && pthread_cond_init(&s->synced, NULL) != 0) {
        pthread_cond_destroy(&s->ckcond);
        pthread_cond_destroy(&s->jcond);
        ok = false;
    }
    return ok;
}

covct_rc covct_store_open(const char *dir, covct_store **out,
                          covct_error *err)
{
    if (out)
        *out = NULL;
    if (!dir || !dir[0] || !out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "covct_store_open: no folder");
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    if (dlen > DIR_MAX)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "store folder name is %zu bytes; at most %d",
                         dlen, DIR_MAX);
    covct_store *s = covct_calloc(1, sizeof *s);
    if (!s)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    s->marker_fd = -1;
    s->dir_fd = -1;
    /* For tests of the buffered fallback (file systems without direct
     * I/O, such as tmpfs before Linux 6.6). */
    s->direct_io = !getenv("COVCT_STORE_NO_DIRECT_IO");
    double idle = atomic_load(&g_idle_s);
    s->idle_s = idle > 0 ? idle : CHECKPOINT_IDLE_S;
    covct_rc rc = COVCT_OK;
    if (!(s->dir = covct_strndup(dir, dlen)) ||
        !(s->index_path = join_alloc(s->dir, "index.sqlite")) ||
        !(s->marker_path = join_alloc(s->dir, ".open"))) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        goto fail_sync;
    if (pthread_cond_init(&s->work, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        goto fail_sync;
    }
    s->sync_ok = true;
    if (!(s->swork_ok = init_cond_pair(&s->swork, &s->placed)))
        goto fail_sync;
    if (pthread_mutex_init(&s->rd_lock, NULL) != 0)
        goto fail_sync;
    s->rd_lock_ok = true;
    if (!init_jconds(s))
        goto fail_sync;
    s->jcond_ok = true;

    if ((rc = make_dirs(s->dir, err)))
        goto fail;
    static const char *const subdirs[] = {"instances", "duplicates", "tmp"};
    for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
        char path[PATH_MAX];
        bool created;
        path_of(s, subdirs[i], path);
        if ((rc = make_dir(path, &created, err)))
            goto fail;
    }
    if ((s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot open folder %s: %s", s->dir,
                       strerror(errno));
        goto fail;
    }
    if ((rc = take_marker(s, err)))
        goto fail;
    if ((rc = open_index(s, err)))
        goto fail;
    /* The lock is ours: nobody else is writing to DIR/tmp. */
    empty_tmp(s);
    if ((rc = open_journal(s, err)))
        goto fail;
    if ((rc = open_reader(s, err)))
        goto fail;
    if (pthread_create(&s->thread, NULL, committer, s) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                       "cannot start the store's committer thread");
        goto fail;
    }
    s->thread_started = true;
    if (!(s->stagers = covct_calloc(STAGERS, sizeof *s->stagers))) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < STAGERS; i++) {
        stager *g = &s->stagers[i];
        g->s = s;
        g->id = i;
        char sub[32], path[PATH_MAX];
        bool created;
        snprintf(sub, sizeof sub, "tmp/s%u", i);
        path_of(s, sub, path);
        if ((rc = make_dir(path, &created, err)))
            goto fail;
        if (pthread_create(&g->thread, NULL, stager_main, g) != 0) {
            rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                           "cannot start the store's stager threads");
            goto fail;
        }
        s->n_stagers++;
    }
    if (pthread_create(&s->ck_thread, NULL, checkpointer, s) != 0) {
        rc = COVCT_ERR(err, COVCT_ERR_INTERNAL,
                       "cannot start the store's checkpointer thread");
        goto fail;
    }
    s->ck_started = true;
    *out = s;
    return COVCT_OK;
fail_sync:
    rc = COVCT_ERR(err, COVCT_ERR_INTERNAL, "cannot create a mutex");
fail:
    covct_error_prefix(err, "store %s: ", s->dir ? s->dir : dir);
    stop_threads(s);
    /* A marker we found stays: the recovery it asks for has not run. */
    destroy(s, !s->unclean);
    return rc;
}

void covct_store_close(covct_store *s)
{
    if (!s)
        return;
    stop_threads(s);
    if (!close_journal(s))
        s->dirty = true;
    if (s->dirty)
        covct_log(COVCT_LOG_WARN,
                  "store %s: some received instances may not be indexed "
                  "or checkpointed; the next open will replay the journal "
                  "and index them",
                  s->dir);
    destroy(s, !s->dirty);
}

/* ---- queries ------------------------------------------------------------- */

covct_rc covct_store_count(covct_store *s, uint64_t *instances,
                           covct_error *err)
{
    if (!s || !instances)
        return COVCT_ERR(err, COVCT_ERR_ARG, "covct_store_count: no store");
    pthread_mutex_lock(&s->rd_lock);
    covct_rc rc = COVCT_OK;
    if (sqlite3_step(s->rd_count) == SQLITE_ROW)
        *instances = (uint64_t)sqlite3_column_int64(s->rd_count, 0);
    else
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot query %s: %s",
                       s->index_path, sqlite3_errmsg(s->rdb));
    sqlite3_reset(s->rd_count);
    pthread_mutex_unlock(&s->rd_lock);
    return rc;
}

covct_rc covct_store_instance_path(covct_store *s, const char *sop_uid,
                                   char *buf, size_t size, covct_error *err)
{
    if (!s || !sop_uid || !buf || !size)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "covct_store_instance_path: missing argument");
    buf[0] = '\0';
    covct_store_flush(s);
    pthread_mutex_lock(&s->rd_lock);
    covct_rc rc = COVCT_OK;
    sqlite3_stmt *st = s->rd_path;
    bind_text(st, 1, sop_uid);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        const char *rel = (const char *)sqlite3_column_text(st, 0);
        int n = snprintf(buf, size, "%s/%s", s->dir, rel ? rel : "");
        if (n < 0 || (size_t)n >= size)
            rc = COVCT_ERR(err, COVCT_ERR_LIMIT,
                           "path of instance %s needs %d bytes, buffer has "
                           "%zu",
                           sop_uid, n + 1, size);
    } else if (r == SQLITE_DONE) {
        rc = COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                       "instance %s is not in store %s", sop_uid, s->dir);
    } else {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot query %s: %s",
                       s->index_path, sqlite3_errmsg(s->rdb));
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->rd_lock);
    if (rc && rc != COVCT_ERR_NOT_FOUND)
        buf[0] = '\0';
    return rc;
}

const char *covct_store_dir(const covct_store *s)
{
    return s->dir;
}

const char *covct_store_index_path(const covct_store *s)
{
    return s ? s->index_path : NULL;
}

/* ---- test hooks (store_int.h) -------------------------------------------- */

void covct_store_debug_stats(covct_store *s, covct_store_stats *st)
{
    pthread_mutex_lock(&s->lock);
    *st = s->stats;
    pthread_mutex_unlock(&s->lock);
}

void covct_store_debug_hold(covct_store *s, bool hold)
{
    pthread_mutex_lock(&s->lock);
    s->hold = hold;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
}

size_t covct_store_debug_queued(covct_store *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    for (const entry *e = s->head; e; e = e->next)
        n++;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void covct_store_debug_journal(uint64_t size, double idle_s)
{
    atomic_store(&g_journal_size, size);
    atomic_store(&g_idle_s, idle_s);
}
