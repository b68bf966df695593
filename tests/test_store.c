/*
 * Tests of the store (src/store/store.c, docs/internals/store.md), in a
 * temporary folder: new instances and their index rows (read with an
 * independent SQLite connection, as C-FIND will), the duplicate policy,
 * refused UIDs and files, concurrent puts and group commit, a second open,
 * crash recovery after a process is killed with the store open, and the
 * journal: replay after lost files and rows, old generations and torn
 * records ignored, a small journal wrapping under concurrent puts,
 * instances too big for it, the idle checkpoint, and the schema
 * migration from version 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "covct/store.h"
#include "store/store_int.h"
#include "test.h"

#define CT_CLASS "1.2.840.10008.5.1.4.1.1.2"
#define ROOT "1.2.826.0.1.3680043.10.999"

static char g_root[256]; /* the mkdtemp folder */
static char g_dir[512];  /* the store inside it (created by open) */

/* ---- building instances -------------------------------------------------- */

typedef struct spec {
    const char *sop, *study, *series; /* NULL: element absent */
    const char *patient_id;           /* NULL: absent */
    const char *patient_name;
    const char *charset;              /* (0008,0005) */
    const char *modality;
    int instance_number;
    const char *body;                 /* varies the content */
    size_t pixels;                    /* bytes of (7FE0,0010), 0: none */
} spec;

static void set(covct_dcm_dataset *ds, uint16_t g, uint16_t e, char a,
                char b, const char *v)
{
    covct_error err = {0};
    if (v && covct_dcm_dataset_set_string(ds, COVCT_TAG(g, e), COVCT_VR(a, b),
                                          v, &err)) {
        fprintf(stderr, "set (%04X,%04X): %s\n", g, e, err.msg);
        exit(2);
    }
}

/* A Part 10 file (allocated with covct_malloc, as put wants it). */
static uint8_t *make_file(const spec *sp, size_t *len)
{
    covct_dcm_dataset *ds = covct_dcm_dataset_new();
    char num[16];
    snprintf(num, sizeof num, "%d", sp->instance_number);
    set(ds, 0x0008, 0x0005, 'C', 'S', sp->charset);
    set(ds, 0x0008, 0x0016, 'U', 'I', CT_CLASS);
    set(ds, 0x0008, 0x0018, 'U', 'I', sp->sop);
    set(ds, 0x0008, 0x0020, 'D', 'A', "20200315");
    set(ds, 0x0008, 0x0050, 'S', 'H', "ACC42");
    set(ds, 0x0008, 0x0060, 'C', 'S', sp->modality ? sp->modality : "CT");
    set(ds, 0x0008, 0x1030, 'L', 'O', "CHEST CT ");
    set(ds, 0x0008, 0x103E, 'L', 'O', sp->body ? sp->body : "axial 1mm");
    set(ds, 0x0010, 0x0010, 'P', 'N', sp->patient_name);
    set(ds, 0x0010, 0x0020, 'L', 'O', sp->patient_id);
    set(ds, 0x0010, 0x0040, 'C', 'S', "F");
    set(ds, 0x0020, 0x000D, 'U', 'I', sp->study);
    set(ds, 0x0020, 0x000E, 'U', 'I', sp->series);
    set(ds, 0x0020, 0x0011, 'I', 'S', "3");
    set(ds, 0x0020, 0x0013, 'I', 'S', num);
    covct_error err = {0};
    if (sp->pixels) {
        uint8_t *px = covct_malloc(sp->pixels);
        for (size_t i = 0; i < sp->pixels; i++)
            px[i] = (uint8_t)(i * 31 + (size_t)sp->instance_number);
        if (covct_dcm_dataset_set(ds, COVCT_TAG(0x7FE0, 0x0010),
                                  COVCT_VR('O', 'B'), px, sp->pixels, &err)) {
            fprintf(stderr, "set pixels: %s\n", err.msg);
            exit(2);
        }
        covct_free(px);
    }
    covct_buf b = {0};
    if (covct_dcm_write_buffer(ds, &b, &err)) {
        fprintf(stderr, "write_buffer: %s\n", err.msg);
        exit(2);
    }
    covct_dcm_dataset_free(ds);
    *len = b.len;
    return b.data;
}

static uint8_t *copy_bytes(const uint8_t *p, size_t n)
{
    uint8_t *c = covct_malloc(n);
    memcpy(c, p, n);
    return c;
}

static covct_rc put_spec(covct_store *s, const spec *sp,
                         covct_store_result *res, covct_store_info *info,
                         covct_error *err)
{
    size_t len;
    uint8_t *f = make_file(sp, &len);
    return covct_store_put(s, f, len, "MODALITY1", res, info, err);
}

/* ---- looking at the result ----------------------------------------------- */

static sqlite3 *q_open(covct_store *s)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(covct_store_index_path(s), &db, SQLITE_OPEN_READONLY,
                        NULL) != SQLITE_OK) {
        fprintf(stderr, "cannot open %s\n", covct_store_index_path(s));
        exit(2);
    }
    return db;
}

/* First column of the first row as an integer (-1 when no row). */
static int64_t q_int(covct_store *s, const char *sql, const char *arg)
{
    sqlite3 *db = q_open(s);
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        exit(2);
    }
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* ... as text ("<null>" for NULL, "<none>" when no row). */
static const char *q_text(covct_store *s, const char *sql, const char *arg)
{
    static char buf[4][512];
    static int next;
    char *out = buf[next++ % 4];
    sqlite3 *db = q_open(s);
    sqlite3_stmt *st;
    snprintf(out, 512, "<none>");
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
        exit(2);
    }
    if (arg)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, 512, "%s", t ? (const char *)t : "<null>");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* The store open_store() last opened, until close_store(): the helpers
 * below look at files on disk, which a put writes just after its
 * acknowledgement, so they first wait for pending files as every reader
 * by path does (covct_store_flush). */
static covct_store *g_store;

static void settle(void)
{
    if (g_store)
        covct_store_flush(g_store);
}

/* Files (not starting with '.') in DIR/sub and its folders (the
 * stagers' DIR/tmp/sN), -1 if DIR/sub cannot be read. */
static int count_in(const char *path, int depth)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[900];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        if (depth < 1 && stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            n += count_in(p, depth + 1);
        else
            n++;
    }
    closedir(d);
    return n;
}

static int count_files(const char *sub)
{
    settle();
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_dir, sub);
    return count_in(path, 0);
}

static bool exists(const char *sub)
{
    settle();
    char path[600];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", g_dir, sub);
    return stat(path, &st) == 0;
}

static bool file_is(const char *path, const uint8_t *p, size_t n)
{
    settle();
    uint8_t *data;
    size_t len;
    covct_error err = {0};
    if (covct_file_read(path, &data, &len, &err))
        return false;
    bool same = len == n && !memcmp(data, p, n);
    covct_free(data);
    return same;
}

static uint64_t count(covct_store *s)
{
    uint64_t n = 0;
    covct_error err = {0};
    CHECKF(covct_store_count(s, &n, &err) == COVCT_OK, "%s", err.msg);
    return n;
}

static covct_store *open_store(void)
{
    covct_store *s = NULL;
    covct_error err = {0};
    covct_rc rc = covct_store_open(g_dir, &s, &err);
    CHECKF(rc == COVCT_OK && s, "open: %s", err.msg);
    if (!s)
        exit(1);
    g_store = s;
    return s;
}

static void close_store(covct_store *s)
{
    if (s == g_store)
        g_store = NULL;
    covct_store_close(s);
}

/* ---- the tests ----------------------------------------------------------- */

#define STUDY1 ROOT ".1"
#define SERIES1 ROOT ".1.1"
#define SOP1 ROOT ".1.1.1"
#define SOP2 ROOT ".1.1.2"

static void test_new(covct_store *s)
{
    CHECK(exists("instances") && exists("duplicates") && exists("tmp"));
    CHECK(exists(".open"));
    CHECK(count(s) == 0);

    /* Latin-1 "Müller^Anna" under ISO_IR 100 must reach the index as
     * UTF-8. */
    spec a = {.sop = SOP1, .study = STUDY1, .series = SERIES1,
              .patient_id = "PID001", .patient_name = "M\xFCller^Anna",
              .charset = "ISO_IR 100", .instance_number = 1};
    size_t len;
    uint8_t *f = make_file(&a, &len);
    uint8_t *keep = copy_bytes(f, len);
    covct_store_result res = COVCT_STORE_DUPLICATE;
    covct_store_info info;
    covct_error err = {0};
    covct_rc rc = covct_store_put(s, f, len, "SCANNER1", &res, &info, &err);
    CHECKF(rc == COVCT_OK, "put: %s", err.msg);
    CHECK(res == COVCT_STORE_NEW);
    CHECK(!strcmp(info.sop_instance_uid, SOP1));
    CHECK(!strcmp(info.series_uid, SERIES1));
    CHECK(!strcmp(info.study_uid, STUDY1));
    CHECK(!strcmp(info.patient_id, "PID001"));
    CHECK(!strcmp(info.modality, "CT"));
    CHECK(!strcmp(info.sop_class_uid, CT_CLASS));
    CHECK(count(s) == 1);

    char path[4096];
    rc = covct_store_instance_path(s, SOP1, path, sizeof path, &err);
    CHECKF(rc == COVCT_OK, "instance_path: %s", err.msg);
    const char *rel = q_text(s, "SELECT path FROM instances WHERE sop_uid=?",
                             SOP1);
    char want[4096];
    snprintf(want, sizeof want, "%s/%s", g_dir, rel);
    CHECKF(!strcmp(path, want), "%s vs %s", path, want);
    /* instances/SS/STUDY/SERIES/SOP.dcm, SS two hex digits. */
    CHECKF(strlen(rel) == strlen("instances/xx/" STUDY1 "/" SERIES1 "/" SOP1
                                 ".dcm") &&
               !strncmp(rel, "instances/", 10) &&
               !strcmp(rel + 13, STUDY1 "/" SERIES1 "/" SOP1 ".dcm"),
           "path %s", rel);
    CHECK(file_is(path, keep, len));
    char small[8];
    CHECK(covct_store_instance_path(s, SOP1, small, sizeof small, NULL) ==
          COVCT_ERR_LIMIT);
    covct_error_clear(&err);
    CHECK(covct_store_instance_path(s, "1.2.3.4", path, sizeof path, &err) ==
          COVCT_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "1.2.3.4") != NULL);

    /* The rows. */
    CHECK(!strcmp(q_text(s, "SELECT patient_name FROM patients WHERE "
                            "patient_id=?", "PID001"),
                  "M\xC3\xBCller^Anna"));
    CHECK(!strcmp(q_text(s, "SELECT sex FROM patients WHERE patient_id=?",
                         "PID001"), "F"));
    CHECK(!strcmp(q_text(s, "SELECT patient_id FROM studies WHERE "
                            "study_uid=?", STUDY1), "PID001"));
    CHECK(!strcmp(q_text(s, "SELECT study_date FROM studies WHERE "
                            "study_uid=?", STUDY1), "20200315"));
    CHECK(!strcmp(q_text(s, "SELECT study_description FROM studies WHERE "
                            "study_uid=?", STUDY1), "CHEST CT"));
    CHECK(!strcmp(q_text(s, "SELECT accession_number FROM studies WHERE "
                            "study_uid=?", STUDY1), "ACC42"));
    CHECK(!strcmp(q_text(s, "SELECT study_uid FROM series WHERE "
                            "series_uid=?", SERIES1), STUDY1));
    CHECK(!strcmp(q_text(s, "SELECT modality FROM series WHERE "
                            "series_uid=?", SERIES1), "CT"));
    CHECK(q_int(s, "SELECT series_number FROM series WHERE series_uid=?",
                SERIES1) == 3);
    CHECK(q_int(s, "SELECT instance_count FROM series WHERE series_uid=?",
                SERIES1) == 1);
    CHECK(q_int(s, "SELECT size FROM instances WHERE sop_uid=?", SOP1) ==
          (int64_t)len);
    CHECK(q_int(s, "SELECT instance_number FROM instances WHERE sop_uid=?",
                SOP1) == 1);
    CHECK(!strcmp(q_text(s, "SELECT source_ae FROM instances WHERE "
                            "sop_uid=?", SOP1), "SCANNER1"));
    CHECK(!strcmp(q_text(s, "SELECT transfer_syntax_uid FROM instances "
                            "WHERE sop_uid=?", SOP1), COVCT_TS_EXPLICIT_LE));
    CHECK(!strcmp(q_text(s, "SELECT series_uid FROM instances WHERE "
                            "sop_uid=?", SOP1), SERIES1));
    CHECK(q_int(s, "PRAGMA user_version", NULL) == 2);
    CHECK(exists("journal"));
    /* The row names the journal record it came from. */
    CHECK(q_int(s, "SELECT journal_gen > 0 AND journal_seq > 0 FROM "
                   "instances WHERE sop_uid=?", SOP1) == 1);
    CHECK(!strcmp(q_text(s, "PRAGMA journal_mode", NULL), "wal"));
    int64_t now = (int64_t)time(NULL);
    int64_t recv = q_int(s, "SELECT CAST(received AS INTEGER) FROM instances "
                            "WHERE sop_uid=?", SOP1);
    CHECKF(recv >= now - 60 && recv <= now + 1, "received %lld now %lld",
           (long long)recv, (long long)now);

    /* A second instance of the series. */
    spec b = a;
    b.sop = SOP2;
    b.instance_number = 2;
    rc = put_spec(s, &b, &res, NULL, &err);
    CHECKF(rc == COVCT_OK && res == COVCT_STORE_NEW, "%s", err.msg);
    CHECK(count(s) == 2);
    CHECK(q_int(s, "SELECT instance_count FROM series WHERE series_uid=?",
                SERIES1) == 2);
    CHECK(q_int(s, "SELECT last_received >= first_received FROM series "
                   "WHERE series_uid=?", SERIES1) == 1);
    CHECK(q_int(s, "SELECT count(*) FROM patients", NULL) == 1);
    CHECK(q_int(s, "SELECT count(*) FROM studies", NULL) == 1);

    /* No Patient ID: indexed under "". */
    spec c = {.sop = ROOT ".2.1.1", .study = ROOT ".2", .series = ROOT ".2.1",
              .patient_name = "Anon", .instance_number = 1};
    rc = put_spec(s, &c, &res, &info, &err);
    CHECKF(rc == COVCT_OK && res == COVCT_STORE_NEW, "%s", err.msg);
    CHECK(info.patient_id[0] == '\0');
    CHECK(!strcmp(q_text(s, "SELECT patient_name FROM patients WHERE "
                            "patient_id=?", ""), "Anon"));
    CHECK(count_files("tmp") == 0);
    covct_free(keep);
}

static void test_duplicates(covct_store *s)
{
    spec a = {.sop = SOP1, .study = STUDY1, .series = SERIES1,
              .patient_id = "PID001", .patient_name = "M\xFCller^Anna",
              .charset = "ISO_IR 100", .instance_number = 1};
    covct_store_result res = COVCT_STORE_NEW;
    covct_error err = {0};
    char path[4096];
    covct_store_instance_path(s, SOP1, path, sizeof path, NULL);
    size_t len;
    uint8_t *orig = make_file(&a, &len);

    /* Byte-identical: accepted, nothing changes. */
    covct_rc rc = covct_store_put(s, copy_bytes(orig, len), len, "X", &res,
                                  NULL, &err);
    CHECKF(rc == COVCT_OK && res == COVCT_STORE_ALREADY, "%s", err.msg);
    CHECK(count(s) == 3);
    CHECK(count_files("duplicates") == 0);
    CHECK(q_int(s, "SELECT instance_count FROM series WHERE series_uid=?",
                SERIES1) == 2);

    /* Different content, same UID: kept under duplicates/, the stored one
     * untouched. */
    spec d = a;
    d.body = "axial 1mm (resent)";
    size_t dlen;
    uint8_t *dup = make_file(&d, &dlen);
    res = COVCT_STORE_NEW;
    rc = covct_store_put(s, copy_bytes(dup, dlen), dlen, "OTHER", &res, NULL,
                         &err);
    CHECKF(rc == COVCT_OK && res == COVCT_STORE_DUPLICATE, "%s", err.msg);
    CHECK(count(s) == 3);
    CHECK(file_is(path, orig, len));
    CHECK(exists("duplicates/" SOP1 ".1.dcm"));
    char dpath[600];
    snprintf(dpath, sizeof dpath, "%s/duplicates/" SOP1 ".1.dcm", g_dir);
    CHECK(file_is(dpath, dup, dlen));
    CHECK(q_int(s, "SELECT count(*) FROM duplicates WHERE sop_uid=?", SOP1) ==
          1);
    CHECK(!strcmp(q_text(s, "SELECT path FROM duplicates WHERE sop_uid=?",
                         SOP1), "duplicates/" SOP1 ".1.dcm"));
    CHECK(!strcmp(q_text(s, "SELECT source_ae FROM duplicates WHERE "
                            "sop_uid=?", SOP1), "OTHER"));
    CHECK(q_int(s, "SELECT size FROM duplicates WHERE sop_uid=?", SOP1) ==
          (int64_t)dlen);

    /* The same different copy again: DUPLICATE, but not saved twice. */
    rc = covct_store_put(s, copy_bytes(dup, dlen), dlen, "OTHER", &res, NULL,
                         &err);
    CHECKF(rc == COVCT_OK && res == COVCT_STORE_DUPLICATE, "%s", err.msg);
    CHECK(count_files("duplicates") == 1);

    /* A third version: SOP.2.dcm. */
    spec e = a;
    e.body = "third";
    rc = put_spec(s, &e, &res, NULL, &err);
    CHECKF(rc == COVCT_OK && res == COVCT_STORE_DUPLICATE, "%s", err.msg);
    CHECK(exists("duplicates/" SOP1 ".2.dcm"));
    CHECK(q_int(s, "SELECT count(*) FROM duplicates", NULL) == 2);
    CHECK(count_files("tmp") == 0);
    covct_free(orig);
    covct_free(dup);
}

static void refused(covct_store *s, const spec *sp, const char *want)
{
    covct_error err = {0};
    covct_store_result res;
    uint64_t before = count(s);
    covct_rc rc = put_spec(s, sp, &res, NULL, &err);
    CHECKF(rc == COVCT_ERR_CORRUPT, "rc %d (%s) for %s", rc, err.msg, want);
    CHECKF(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg,
           want);
    CHECK(count(s) == before);
    CHECK(count_files("tmp") == 0);
}

static void test_refused(covct_store *s)
{
    char long_uid[80];
    memset(long_uid, '1', 65);
    long_uid[65] = '\0';
    spec ok = {.sop = ROOT ".9.9.9", .study = ROOT ".9", .series = ROOT ".9.9",
               .patient_id = "P9", .instance_number = 1};
    spec sp = ok;
    sp.sop = "../x";
    refused(s, &sp, "(0008,0018) SOPInstanceUID '../x'");
    sp.sop = "..";
    refused(s, &sp, "not a valid UID");
    sp = ok;
    sp.series = "1.2/3";
    refused(s, &sp, "instance " ROOT ".9.9.9: (0020,000E) SeriesInstanceUID "
                    "'1.2/3'");
    sp = ok;
    sp.study = long_uid;
    refused(s, &sp, "(0020,000D) StudyInstanceUID '1111");
    sp = ok;
    sp.series = "";
    refused(s, &sp, "(0020,000E) SeriesInstanceUID is empty");
    sp = ok;
    sp.series = NULL;
    refused(s, &sp, "instance " ROOT ".9.9.9: (0020,000E) SeriesInstanceUID "
                    "is missing");
    sp = ok;
    sp.study = "1.2.3\\4.5";
    refused(s, &sp, "not a valid UID");
    /* 64 characters is the limit, not an error. */
    sp = ok;
    long_uid[64] = '\0';
    sp.study = long_uid;
    covct_error err = {0};
    covct_store_result res;
    covct_rc rc = put_spec(s, &sp, &res, NULL, &err);
    CHECKF(rc == COVCT_OK && res == COVCT_STORE_NEW, "64-char UID: %s",
           err.msg);

    /* Not DICOM at all. */
    static const char junk[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n"
                               "this is not a DICOM file, not even close....";
    uint64_t before = count(s);
    covct_error_clear(&err);
    rc = covct_store_put(s, copy_bytes((const uint8_t *)junk, sizeof junk),
                         sizeof junk, NULL, &res, NULL, &err);
    CHECKF(rc == COVCT_ERR_CORRUPT, "junk: rc %d: %s", rc, err.msg);
    CHECK(err.msg[0] != '\0');
    /* A valid file cut in half. */
    size_t len;
    uint8_t *f = make_file(&ok, &len);
    covct_error_clear(&err);
    rc = covct_store_put(s, f, len / 2, NULL, &res, NULL, &err);
    CHECKF(rc != COVCT_OK, "half a file accepted");
    CHECK(count(s) == before);
    CHECK(count_files("tmp") == 0);
}

/* Every allocation of a put failing in turn: the put fails cleanly (no
 * leak under AddressSanitizer, nothing left in tmp/) or succeeds. */
static void test_alloc_failures(covct_store *s)
{
    int ok = 0, failed = 0, bad = 0;
    uint64_t before = count(s);
    for (uint64_t n = 1; n <= 400; n++) {
        char sop[64];
        snprintf(sop, sizeof sop, ROOT ".4.1.%llu", (unsigned long long)n);
        spec sp = {.sop = sop, .study = ROOT ".4", .series = ROOT ".4.1",
                   .patient_id = "P4", .patient_name = "Oom^Test",
                   .charset = "ISO_IR 100", .instance_number = (int)n};
        size_t len;
        uint8_t *f = make_file(&sp, &len);
        covct_error err = {0};
        covct_store_result res;
        covct_alloc_fail_at(n);
        covct_rc rc = covct_store_put(s, f, len, NULL, &res, NULL, &err);
        uint64_t reached = covct_alloc_count();
        covct_alloc_fail_at(0);
        if (rc == COVCT_OK) {
            ok++;
            if (reached < n)
                break; /* every allocation of a put has been failed once */
        } else {
            failed++;
            bad += rc != COVCT_ERR_NOMEM;
            if (rc != COVCT_ERR_NOMEM)
                fprintf(stderr, "allocation %llu: rc %d: %s\n",
                        (unsigned long long)n, rc, err.msg);
        }
    }
    printf("allocation failures: %d puts failed, then one succeeded\n",
           failed);
    CHECKF(failed > 0 && bad == 0, "%d failed, %d not as out of memory",
           failed, bad);
    CHECK(count(s) == before + (uint64_t)ok);
    CHECK(count_files("tmp") == 0);
}

/* ---- concurrency --------------------------------------------------------- */

typedef struct worker {
    covct_store *s;
    int id, n;
    const char *root;     /* UIDs: ROOT.5 when NULL */
    const uint8_t *bytes; /* when set: put exactly these */
    size_t len;
    int failed;
    covct_store_result res;
    char msg[COVCT_ERROR_MSG_MAX];
} worker;

/* Instance i (0-based) of worker `id`: study ROOT, series ROOT.id. */
static spec work_spec(const char *root, int id, int i, char series[64],
                      char sop[64])
{
    snprintf(series, 64, "%s.%d", root, id);
    snprintf(sop, 64, "%s.%d.%d", root, id, i + 1);
    return (spec){.sop = sop, .study = root, .series = series,
                  .patient_id = "P5", .instance_number = i + 1};
}

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        covct_error err = {0};
        covct_rc rc;
        if (w->bytes) {
            rc = covct_store_put(w->s, copy_bytes(w->bytes, w->len), w->len,
                                 "W", &w->res, NULL, &err);
        } else {
            char sop[64], series[64];
            spec sp = work_spec(w->root ? w->root : ROOT ".5", w->id, i,
                                series, sop);
            rc = put_spec(w->s, &sp, &w->res, NULL, &err);
            if (!rc && w->res != COVCT_STORE_NEW)
                rc = COVCT_ERR_INTERNAL;
        }
        if (rc) {
            w->failed++;
            snprintf(w->msg, sizeof w->msg, "%s", err.msg);
        }
    }
    return NULL;
}

/* Run n workers (w[i] filled in) on threads of their own: the number of
 * puts that failed, each worker's last error on stderr. */
static int run_workers(worker *w, int n)
{
    pthread_t t[8];
    int started = 0, failed = 0;
    for (int i = 0; i < n && i < 8; i++, started++)
        if (pthread_create(&t[i], NULL, work, &w[i]) != 0)
            break;
    CHECK(started == n);
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        failed += w[i].failed;
        if (w[i].failed)
            fprintf(stderr, "worker %d: %s\n", i, w[i].msg);
    }
    return failed;
}

static void test_concurrent(covct_store *s)
{
    enum { THREADS = 8, PUTS = 50 };
    worker w[THREADS];
    uint64_t before = count(s);
    covct_store_stats st0, st1;
    covct_store_debug_stats(s, &st0);
    double t0 = covct_now();
    for (int i = 0; i < THREADS; i++)
        w[i] = (worker){.s = s, .id = i + 1, .n = PUTS};
    int failed = run_workers(w, THREADS);
    double dt = covct_now() - t0;
    CHECK(failed == 0);
    CHECK(count(s) == before + THREADS * PUTS);
    covct_store_debug_stats(s, &st1);
    uint64_t batches = st1.batches - st0.batches;
    uint64_t entries = st1.entries - st0.entries;
    CHECK(entries == THREADS * PUTS);
    printf("concurrent: %d puts in %.2f s, %llu batches (largest %llu)\n",
           THREADS * PUTS, dt, (unsigned long long)batches,
           (unsigned long long)st1.max_batch);
    /* With 8 writers, puts queue up while a batch syncs. */
    CHECKF(batches < entries, "%llu batches for %llu puts",
           (unsigned long long)batches, (unsigned long long)entries);
    for (int i = 1; i <= THREADS; i++) {
        char series[64];
        snprintf(series, sizeof series, ROOT ".5.%d", i);
        CHECK(q_int(s, "SELECT instance_count FROM series WHERE "
                       "series_uid=?", series) == PUTS);
        CHECK(q_int(s, "SELECT count(*) FROM instances WHERE series_uid=?",
                    series) == PUTS);
    }
    CHECK(q_int(s, "SELECT count(*) FROM studies WHERE study_uid=?",
                ROOT ".5") == 1);
    CHECK(count_files("tmp") == 0);
}

static void wait_queued(covct_store *s, size_t n)
{
    for (int i = 0; i < 2000 && covct_store_debug_queued(s) < n; i++)
        usleep(5000);
}

/* Held committer: one batch with new instances, an identical pair and a
 * differing third copy of one SOP. */
static void test_one_batch(covct_store *s)
{
    enum { N = 6 };
    spec a = {.sop = ROOT ".6.1.1", .study = ROOT ".6", .series = ROOT ".6.1",
              .patient_id = "P6", .instance_number = 1};
    spec b = a;
    b.body = "different";
    spec c = a;
    c.sop = ROOT ".6.1.2";
    size_t la, lb, lc;
    uint8_t *fa = make_file(&a, &la), *fb = make_file(&b, &lb),
            *fc = make_file(&c, &lc);
    /* Queue order: a, c, a again, b, a again, b again. */
    const uint8_t *bytes[N] = {fa, fc, fa, fb, fa, fb};
    const size_t lens[N] = {la, lc, la, lb, la, lb};
    worker w[N];
    pthread_t t[N];
    covct_store_stats st0, st1;
    covct_store_debug_stats(s, &st0);
    int dups_before = count_files("duplicates");
    uint64_t before = count(s);
    covct_store_debug_hold(s, true);
    for (int i = 0; i < N; i++) {
        w[i] = (worker){.s = s, .n = 1, .bytes = bytes[i], .len = lens[i]};
        CHECK(pthread_create(&t[i], NULL, work, &w[i]) == 0);
        wait_queued(s, (size_t)i + 1); /* keep the queue order */
    }
    CHECK(covct_store_debug_queued(s) == N);
    covct_store_debug_hold(s, false);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECKF(w[i].failed == 0, "put %d: %s", i, w[i].msg);
    }
    covct_store_debug_stats(s, &st1);
    CHECKF(st1.batches == st0.batches + 1, "%llu batches",
           (unsigned long long)(st1.batches - st0.batches));
    CHECK(st1.max_batch >= N);
    CHECK(w[0].res == COVCT_STORE_NEW);
    CHECK(w[1].res == COVCT_STORE_NEW);
    CHECK(w[2].res == COVCT_STORE_ALREADY);
    CHECK(w[3].res == COVCT_STORE_DUPLICATE);
    CHECK(w[4].res == COVCT_STORE_ALREADY);
    CHECK(w[5].res == COVCT_STORE_DUPLICATE);
    CHECK(count(s) == before + 2);
    CHECK(count_files("duplicates") == dups_before + 1);
    CHECK(q_int(s, "SELECT count(*) FROM duplicates WHERE sop_uid=?",
                ROOT ".6.1.1") == 1);
    CHECK(q_int(s, "SELECT instance_count FROM series WHERE series_uid=?",
                ROOT ".6.1") == 2);
    char path[4096];
    covct_store_instance_path(s, ROOT ".6.1.1", path, sizeof path, NULL);
    CHECK(file_is(path, fa, la));
    CHECK(count_files("tmp") == 0);
    covct_free(fa);
    covct_free(fb);
    covct_free(fc);
}

/* One put of a batch fails (its series folder cannot be created: a file
 * holds the name); the other commits. */
static void test_partial_failure(covct_store *s)
{
    spec a = {.sop = ROOT ".8.1.1", .study = ROOT ".8", .series = ROOT ".8.1",
              .patient_id = "P8", .instance_number = 1};
    covct_error err = {0};
    covct_store_result res;
    CHECKF(put_spec(s, &a, &res, NULL, &err) == COVCT_OK, "%s", err.msg);
    /* instances/SS/STUDY/SERIES/SOP.dcm: block SERIES of series .8.2. */
    char blocker[4096];
    snprintf(blocker, sizeof blocker, "%s/%s", g_dir,
             q_text(s, "SELECT path FROM instances WHERE sop_uid=?",
                    ROOT ".8.1.1"));
    char *slash = strrchr(blocker, '/');
    *slash = '\0';
    slash = strrchr(blocker, '/');
    snprintf(slash + 1, sizeof blocker - (size_t)(slash + 1 - blocker),
             "%s", ROOT ".8.2");
    CHECK(covct_file_write_bytes(blocker, "x", 1, &err) == COVCT_OK);

    spec b = a;
    b.series = ROOT ".8.2";
    b.sop = ROOT ".8.2.1";
    spec c = a;
    c.sop = ROOT ".8.1.2";
    size_t lb, lc;
    uint8_t *fb = make_file(&b, &lb), *fc = make_file(&c, &lc);
    worker w[2] = {{.s = s, .n = 1, .bytes = fb, .len = lb},
                   {.s = s, .n = 1, .bytes = fc, .len = lc}};
    pthread_t t[2];
    uint64_t before = count(s);
    covct_store_debug_hold(s, true);
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&t[i], NULL, work, &w[i]) == 0);
        wait_queued(s, (size_t)i + 1);
    }
    covct_store_debug_hold(s, false);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(w[0].failed == 1);
    CHECKF(strstr(w[0].msg, "instance " ROOT ".8.2.1: ") == w[0].msg &&
               strstr(w[0].msg, "not a folder") != NULL,
           "%s", w[0].msg);
    CHECKF(w[1].failed == 0 && w[1].res == COVCT_STORE_NEW, "%s", w[1].msg);
    CHECK(count(s) == before + 1);
    CHECK(q_int(s, "SELECT count(*) FROM series WHERE series_uid=?",
                ROOT ".8.2") == 0);
    CHECK(count_files("tmp") == 0);
    unlink(blocker);
    covct_free(fb);
    covct_free(fc);
}

/* ---- open, close, recovery ----------------------------------------------- */

static void test_second_open(void)
{
    covct_store *s2 = NULL;
    covct_error err = {0};
    covct_rc rc = covct_store_open(g_dir, &s2, &err);
    CHECKF(rc == COVCT_ERR_IO && !s2, "second open: rc %d", rc);
    CHECKF(strstr(err.msg, "already open") != NULL, "%s", err.msg);
    close_store(s2);
    CHECK(exists(".open")); /* the first open's marker is untouched */
}

static void test_reopen(uint64_t expect)
{
    CHECK(!exists(".open"));
    CHECK(!exists("index.sqlite-wal")); /* checkpointed at close */
    covct_store *s = open_store();
    covct_store_stats st;
    covct_store_debug_stats(s, &st);
    CHECK(st.recovered == 0);
    CHECK(count(s) == expect);
    close_store(s);
}

static void test_recovery(uint64_t expect)
{
    /* A child process stores two instances and dies without closing. */
    spec k1 = {.sop = ROOT ".7.1.1", .study = ROOT ".7", .series = ROOT ".7.1",
               .patient_id = "P7", .patient_name = "Killed^Process",
               .instance_number = 1};
    spec k2 = k1;
    k2.sop = ROOT ".7.1.2";
    k2.instance_number = 2;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        covct_store *s = NULL;
        covct_error err = {0};
        covct_store_result res;
        if (covct_store_open(g_dir, &s, &err) ||
            put_spec(s, &k1, &res, NULL, &err) ||
            put_spec(s, &k2, &res, NULL, &err))
            _exit(3);
        _exit(0); /* killed: no close */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(exists(".open"));

    /* As if the process died between the renames and the COMMIT: take
     * k1's rows back out of the index (and the series with them), and
     * leave a half-received file in tmp/ and a duplicate without a row. */
    {
        sqlite3 *db;
        char idx[600];
        snprintf(idx, sizeof idx, "%s/index.sqlite", g_dir);
        CHECK(sqlite3_open(idx, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db,
                           "DELETE FROM instances WHERE series_uid='" ROOT
                           ".7.1';"
                           "DELETE FROM series WHERE series_uid='" ROOT
                           ".7.1';"
                           "DELETE FROM studies WHERE study_uid='" ROOT ".7';"
                           "DELETE FROM patients WHERE patient_id='P7';"
                           "DELETE FROM duplicates WHERE path='duplicates/" SOP1
                           ".2.dcm'",
                           NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
    }
    char junk[600];
    snprintf(junk, sizeof junk, "%s/tmp/12345-1.part", g_dir);
    FILE *fp = fopen(junk, "wb");
    CHECK(fp != NULL);
    if (fp) {
        fputs("half a file", fp);
        fclose(fp);
    }
    /* A file that does not parse, in an instance folder: logged, kept. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/instances/00/9.9/9.9.9", g_dir);
    covct_error err = {0};
    char mk[700];
    snprintf(mk, sizeof mk, "mkdir -p %s", bad);
    CHECK(system(mk) == 0);
    snprintf(bad, sizeof bad, "%s/instances/00/9.9/9.9.9/9.9.9.1.dcm", g_dir);
    CHECK(covct_file_write_bytes(bad, "not dicom", 9, &err) == COVCT_OK);

    covct_store *s = open_store();
    covct_store_stats st;
    covct_store_debug_stats(s, &st);
    CHECKF(st.recovered == 3, "recovered %llu",
           (unsigned long long)st.recovered);
    CHECK(count(s) == expect + 2);
    CHECK(count_files("tmp") == 0);
    CHECK(exists("instances/00/9.9/9.9.9/9.9.9.1.dcm"));
    CHECK(q_int(s, "SELECT instance_count FROM series WHERE series_uid=?",
                ROOT ".7.1") == 2);
    CHECK(!strcmp(q_text(s, "SELECT patient_name FROM patients WHERE "
                            "patient_id=?", "P7"), "Killed^Process"));
    /* The journal replay indexed k1 and k2 again, with the calling AE
     * their records kept. */
    CHECK(!strcmp(q_text(s, "SELECT source_ae FROM instances WHERE "
                            "sop_uid=?", ROOT ".7.1.1"), "MODALITY1"));
    CHECKF(st.replayed == 2 && st.journal_records == 2,
           "replayed %llu of %llu", (unsigned long long)st.replayed,
           (unsigned long long)st.journal_records);
    CHECK(q_int(s, "SELECT count(*) FROM duplicates WHERE path=?",
                "duplicates/" SOP1 ".2.dcm") == 1);
    char path[4096];
    CHECK(covct_store_instance_path(s, ROOT ".7.1.1", path, sizeof path,
                                    &err) == COVCT_OK);
    /* Putting k1 again finds the recovered copy. */
    covct_store_result res = COVCT_STORE_NEW;
    CHECK(put_spec(s, &k1, &res, NULL, &err) == COVCT_OK &&
          res == COVCT_STORE_ALREADY);
    close_store(s);
    CHECK(!exists(".open"));

    /* The next open is clean. */
    s = open_store();
    covct_store_debug_stats(s, &st);
    CHECK(st.recovered == 0);
    CHECK(count(s) == expect + 2);
    close_store(s);
}

/* ---- the journal --------------------------------------------------------- */

static void use_dir(const char *name)
{
    snprintf(g_dir, sizeof g_dir, "%s/%s", g_root, name);
}

/* SQL on the index of g_dir, with the store closed. */
static void idx_exec(const char *sql)
{
    char idx[600];
    snprintf(idx, sizeof idx, "%s/index.sqlite", g_dir);
    sqlite3 *db;
    char *msg = NULL;
    CHECK(sqlite3_open(idx, &db) == SQLITE_OK);
    CHECKF(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s",
           sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
}

/* The absolute path of an instance's file, from the index of g_dir. */
static void idx_path(const char *sop, char out[700])
{
    char idx[600];
    snprintf(idx, sizeof idx, "%s/index.sqlite", g_dir);
    sqlite3 *db;
    sqlite3_stmt *st;
    out[0] = '\0';
    CHECK(sqlite3_open(idx, &db) == SQLITE_OK);
    if (sqlite3_prepare_v2(db, "SELECT path FROM instances WHERE sop_uid=?",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, sop, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(out, 700, "%s/%s", g_dir,
                     (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    CHECKF(out[0] != '\0', "no row for %s", sop);
}

/* Offsets of the 4 KiB blocks of DIR/journal that start with a record's
 * magic (any generation). */
static int journal_magic(uint64_t *offs, int max)
{
    char path[600];
    snprintf(path, sizeof path, "%s/journal", g_dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int n = 0;
    char b[8];
    for (uint64_t off = 8192; pread(fd, b, 8, (off_t)off) == 8; off += 4096)
        if (!memcmp(b, "COVCTJR2", 8)) {
            if (n < max)
                offs[n] = off;
            n++;
        }
    close(fd);
    return n;
}

/* A child process opens the store in g_dir, puts n instances from each
 * of `threads` threads (work_spec(root, ...)) and dies without closing. */
static void crash_after_puts(const char *root, int threads, int n,
                             bool flush)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        covct_store *s = NULL;
        covct_error err = {0};
        if (covct_store_open(g_dir, &s, &err))
            _exit(3);
        worker w[8];
        for (int i = 0; i < threads && i < 8; i++)
            w[i] = (worker){.s = s, .id = i + 1, .n = n, .root = root};
        int failed = run_workers(w, threads < 8 ? threads : 8);
        /* flush: the files acknowledged puts leave are all written (the
         * test then damages some); otherwise some may still be pending,
         * and replay must write them. */
        if (flush)
            covct_store_flush(s);
        _exit(failed ? 4 : 0); /* killed: no close */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
           status);
}

/* How many instances of crash_after_puts(root, threads, n, ...) are missing
 * from the index or whose file is not byte for byte what was sent. */
static int verify_all(covct_store *s, const char *root, int threads, int n)
{
    int bad = 0;
    for (int id = 1; id <= threads; id++)
        for (int i = 0; i < n; i++) {
            char series[64], sop[64], path[4096];
            spec sp = work_spec(root, id, i, series, sop);
            size_t len;
            uint8_t *f = make_file(&sp, &len);
            if (covct_store_instance_path(s, sop, path, sizeof path, NULL) ||
                !file_is(path, f, len)) {
                fprintf(stderr, "instance %s: missing or different\n", sop);
                bad++;
            }
            covct_free(f);
        }
    return bad;
}

static covct_store_stats stats_of(covct_store *s)
{
    covct_store_stats st;
    covct_store_debug_stats(s, &st);
    return st;
}

#define R10 ROOT ".10"

/* Power failure after Success: a file lost its content, another instance
 * lost its row (and a third its file).  Replay restores all of them from
 * the journal; then a clean close retires the records for good. */
static void test_replay(void)
{
    use_dir("replay");
    covct_store_debug_journal(1 << 20, 0);
    crash_after_puts(R10, 1, 6, true);
    CHECK(exists(".open"));
    char series[64], sa[64], sb[64], sc[64];
    work_spec(R10, 1, 0, series, sa);
    work_spec(R10, 1, 1, series, sb);
    work_spec(R10, 1, 2, series, sc);
    char pa[700], pb[700], pc[700];
    idx_path(sa, pa);
    idx_path(sb, pb);
    idx_path(sc, pc);
    /* a: cut short; b: zeroed and its rows lost; c: gone. */
    CHECK(truncate(pa, 100) == 0);
    struct stat st;
    CHECK(stat(pb, &st) == 0);
    int fd = open(pb, O_WRONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        uint8_t *z = calloc(1, (size_t)st.st_size);
        CHECK(write(fd, z, (size_t)st.st_size) == (ssize_t)st.st_size);
        free(z);
        close(fd);
    }
    CHECK(unlink(pc) == 0);
    char sql[600];
    snprintf(sql, sizeof sql,
             "DELETE FROM instances WHERE sop_uid='%s';"
             "UPDATE series SET instance_count = instance_count - 1 "
             "WHERE series_uid='%s'",
             sb, series);
    idx_exec(sql);

    covct_store *s = open_store();
    covct_store_stats rs = stats_of(s);
    CHECKF(rs.journal_records == 6 && rs.restored == 2 && rs.replayed == 1 &&
               rs.torn == 0 && rs.recovered == 1,
           "records %llu restored %llu replayed %llu torn %llu recovered "
           "%llu",
           (unsigned long long)rs.journal_records,
           (unsigned long long)rs.restored, (unsigned long long)rs.replayed,
           (unsigned long long)rs.torn, (unsigned long long)rs.recovered);
    CHECK(count(s) == 6);
    CHECK(verify_all(s, R10, 1, 6) == 0);
    CHECK(q_int(s, "SELECT instance_count FROM series WHERE series_uid=?",
                series) == 6);
    CHECK(q_int(s, "SELECT journal_gen > 0 FROM instances WHERE sop_uid=?",
                sb) == 1);
    CHECK(!strcmp(q_text(s, "SELECT source_ae FROM instances WHERE "
                            "sop_uid=?", sb), "MODALITY1"));
    CHECK(q_int(s, "SELECT count(*) FROM duplicates", NULL) == 0);
    CHECK(count_files("duplicates") == 0);
    close_store(s);

    /* Records of a checkpointed generation are never replayed, even by a
     * recovery (forced here with a marker): the records are still in the
     * file, but the header no longer names their generation. */
    CHECK(!exists(".open"));
    uint64_t offs[16];
    CHECK(journal_magic(offs, 16) >= 6);
    char marker[600];
    snprintf(marker, sizeof marker, "%s/.open", g_dir);
    CHECK(covct_file_write_bytes(marker, "", 0, NULL) == COVCT_OK);
    s = open_store();
    rs = stats_of(s);
    CHECKF(rs.journal_records == 0 && rs.replayed == 0 && rs.restored == 0 &&
               rs.recovered == 0,
           "old generation: records %llu replayed %llu restored %llu",
           (unsigned long long)rs.journal_records,
           (unsigned long long)rs.replayed, (unsigned long long)rs.restored);
    CHECK(count(s) == 6);
    CHECK(q_int(s, "SELECT count(*) FROM duplicates", NULL) == 0);
    CHECK(verify_all(s, R10, 1, 6) == 0);
    close_store(s);
    CHECK(!exists(".open"));
}

#define R11 ROOT ".11"

/* In a new store `name` (1 MiB journal), a process that made three puts
 * under `root` and died: the offsets of its three records, and the
 * journal opened for writing (-1 on failure, after a failed check). */
static int three_records(const char *name, const char *root, uint64_t offs[3])
{
    use_dir(name);
    covct_store_debug_journal(1 << 20, 0);
    crash_after_puts(root, 1, 3, true);
    uint64_t all[16];
    int n = journal_magic(all, 16);
    CHECKF(n == 3, "%d records", n);
    if (n != 3)
        return -1;
    memcpy(offs, all, 3 * sizeof *offs);
    char path[600];
    snprintf(path, sizeof path, "%s/journal", g_dir);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    return fd;
}

/* Remove instance i of worker `id` of crash_after_puts(root, ...) as if
 * it had never been stored: its file, its row, its count in the series.
 * Its SOP Instance UID into sop (may be NULL). */
static void forget_instance(const char *root, int id, int i, char *sop)
{
    char series[64], uid[64], path[700], sql[600];
    work_spec(root, id, i, series, uid);
    idx_path(uid, path);
    CHECK(unlink(path) == 0);
    snprintf(sql, sizeof sql,
             "DELETE FROM instances WHERE sop_uid='%s';"
             "UPDATE series SET instance_count = instance_count - 1 "
             "WHERE series_uid='%s'",
             uid, series);
    idx_exec(sql);
    if (sop)
        snprintf(sop, 64, "%s", uid);
}

#define R14 ROOT ".14"
#define R16 ROOT ".16"

/* A file that cannot be written after its put was acknowledged (each
 * stager's folder replaced by a plain file): the instance stays in the
 * journal, later puts are refused, close leaves the marker, and the next
 * open writes the file from the journal. */
static void test_file_fail(void)
{
    use_dir("filefail");
    covct_store_debug_journal(1 << 20, 0);
    covct_store *s = open_store();
    char sub[700];
    int blocked = 0;
    for (int i = 0; i < 16; i++) {
        snprintf(sub, sizeof sub, "%s/tmp/s%d", g_dir, i);
        if (rmdir(sub) != 0)
            break;
        CHECK(covct_file_write_bytes(sub, "x", 1, NULL) == COVCT_OK);
        blocked++;
    }
    CHECK(blocked >= 1);
    spec a = {.sop = R16 ".1.1", .study = R16, .series = R16 ".1",
              .patient_id = "P16", .instance_number = 1};
    spec b = a;
    b.sop = R16 ".1.2";
    b.instance_number = 2;
    covct_store_result res;
    covct_error err = {0};
    CHECKF(put_spec(s, &a, &res, NULL, &err) == COVCT_OK &&
               res == COVCT_STORE_NEW,
           "%s", err.msg);
    covct_store_flush(s); /* the stager has failed by now */
    char pa[700];
    idx_path(a.sop, pa);
    struct stat st;
    CHECK(stat(pa, &st) != 0);
    err = (covct_error){0};
    CHECK(put_spec(s, &b, &res, NULL, &err) == COVCT_ERR_IO);
    CHECKF(strstr(err.msg, "stopped accepting") || strstr(err.msg, "journal"),
           "%s", err.msg);
    close_store(s);
    CHECK(exists(".open")); /* the next open must replay */
    for (int i = 0; i < blocked; i++) {
        snprintf(sub, sizeof sub, "%s/tmp/s%d", g_dir, i);
        CHECK(unlink(sub) == 0);
    }
    s = open_store();
    covct_store_stats rs = stats_of(s);
    CHECKF(rs.restored == 1, "restored %llu", (unsigned long long)rs.restored);
    size_t la;
    uint8_t *fa = make_file(&a, &la);
    CHECK(file_is(pa, fa, la));
    covct_free(fa);
    CHECKF(put_spec(s, &b, &res, NULL, &err) == COVCT_OK &&
               res == COVCT_STORE_NEW,
           "%s", err.msg);
    close_store(s);
    CHECK(!exists(".open"));
}

/* A record of journal format 1 (written by covct before 2026-11-27:
 * payload right after the 128-byte header, zlib CRC-32 at 124) is still
 * replayed: the last of three records is rewritten in that format, its
 * file and rows removed, and the next open stores it again. */
static void test_format1(void)
{
    uint64_t offs[3];
    int fd = three_records("format1", R14, offs);
    if (fd < 0)
        return;
    uint8_t hdr[128];
    CHECK(pread(fd, hdr, sizeof hdr, (off_t)offs[2]) == (ssize_t)sizeof hdr);
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--)
        len = (len << 8) | hdr[24 + i];
    CHECK(len > 0 && len < (1u << 20));
    uint8_t *rec = calloc(1, (size_t)len + 128 + 4096);
    CHECK(rec != NULL);
    if (fd < 0 || !rec || len == 0 || len >= (1u << 20)) {
        free(rec);
        if (fd >= 0)
            close(fd);
        return;
    }
    CHECK(pread(fd, rec + 128, (size_t)len, (off_t)offs[2] + 4096) ==
          (ssize_t)len);
    memcpy(rec, hdr, 120);
    memcpy(rec, "COVCTJR1", 8);
    uLong crc = crc32(crc32(0, rec, 124), rec + 128, (uInt)len);
    for (int i = 0; i < 4; i++)
        rec[124 + i] = (uint8_t)(crc >> (8 * i));
    size_t total = ((size_t)len + 128 + 4095) & ~(size_t)4095;
    CHECK(pwrite(fd, rec, total, (off_t)offs[2]) == (ssize_t)total);
    close(fd);
    free(rec);
    forget_instance(R14, 1, 2, NULL);

    covct_store *s = open_store();
    covct_store_stats rs = stats_of(s);
    CHECKF(rs.journal_records == 3 && rs.torn == 0 && rs.replayed == 1,
           "records %llu torn %llu replayed %llu",
           (unsigned long long)rs.journal_records,
           (unsigned long long)rs.torn, (unsigned long long)rs.replayed);
    CHECK(count(s) == 3);
    CHECK(verify_all(s, R14, 1, 3) == 0);
    close_store(s);
}

/* The process died while writing its last record: the torn record (bad
 * checksum) is skipped, the ones before it are replayed. */
static void test_torn(void)
{
    uint64_t offs[3];
    int fd = three_records("torn", R11, offs);
    if (fd < 0)
        return;
    uint8_t b = 0;
    /* A byte of its payload (which starts a page after the header). */
    CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)offs[2] + 4096 + 300) == 1);
    b ^= 0x5A;
    CHECK(pwrite(fd, &b, 1, (off_t)offs[2] + 4096 + 300) == 1);
    close(fd);
    /* Its file and rows never happened. */
    char sop[64];
    forget_instance(R11, 1, 2, sop);

    covct_store *s = open_store();
    covct_store_stats rs = stats_of(s);
    CHECKF(rs.journal_records == 2 && rs.torn == 1 && rs.replayed == 0 &&
               rs.restored == 0,
           "records %llu torn %llu replayed %llu restored %llu",
           (unsigned long long)rs.journal_records,
           (unsigned long long)rs.torn, (unsigned long long)rs.replayed,
           (unsigned long long)rs.restored);
    CHECK(count(s) == 2);
    CHECK(verify_all(s, R11, 1, 2) == 0);
    char buf[4096];
    CHECK(covct_store_instance_path(s, sop, buf, sizeof buf, NULL) ==
          COVCT_ERR_NOT_FOUND);
    close_store(s);
}

#define R12 ROOT ".12"
#define R13 ROOT ".13"

/* A 128 KiB journal (7 two-block records per half) under 8 concurrent
 * putters: it switches halves and checkpoints dozens of times; every
 * instance arrives intact.  An instance too big for it takes the
 * temporary-file way.  Then a crash while it wraps. */
static void test_wrap(void)
{
    enum { THREADS = 8, PUTS = 40 };
    use_dir("wrap");
    covct_store_debug_journal(128 << 10, 0);
    covct_store *s = open_store();
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++)
        w[i] = (worker){.s = s, .id = i + 1, .n = PUTS, .root = R12};
    CHECK(run_workers(w, THREADS) == 0);
    covct_store_stats st = stats_of(s);
    printf("wrap: %d puts, %llu checkpoints, %llu waits for journal "
           "space, %llu batches (largest %llu)\n",
           THREADS * PUTS, (unsigned long long)st.checkpoints,
           (unsigned long long)st.journal_waits,
           (unsigned long long)st.batches,
           (unsigned long long)st.max_batch);
    CHECKF(st.checkpoints >= THREADS * PUTS / 7 - 2, "%llu checkpoints",
           (unsigned long long)st.checkpoints);
    CHECK(count(s) == THREADS * PUTS);
    CHECK(verify_all(s, R12, THREADS, PUTS) == 0);

    spec big = {.sop = R12 ".99.1", .study = R12, .series = R12 ".99",
                .patient_id = "P5", .instance_number = 1, .pixels = 20000};
    size_t blen;
    uint8_t *bf = make_file(&big, &blen);
    covct_store_result res = COVCT_STORE_DUPLICATE;
    covct_error err = {0};
    CHECKF(covct_store_put(s, copy_bytes(bf, blen), blen, "BIG", &res, NULL,
                           &err) == COVCT_OK &&
               res == COVCT_STORE_NEW,
           "%s", err.msg);
    CHECK(stats_of(s).direct == 1);
    char path[4096];
    CHECK(covct_store_instance_path(s, big.sop, path, sizeof path, NULL) ==
          COVCT_OK);
    CHECK(file_is(path, bf, blen));
    CHECK(!strcmp(q_text(s, "SELECT journal_gen FROM instances WHERE "
                            "sop_uid=?", big.sop), "<null>"));
    CHECK(count_files("tmp") == 0);
    /* Resent: identical. */
    CHECK(covct_store_put(s, copy_bytes(bf, blen), blen, "BIG", &res, NULL,
                          &err) == COVCT_OK &&
          res == COVCT_STORE_ALREADY);
    covct_free(bf);
    close_store(s);

    /* 4 putters x 30 in a child that dies: every instance it was told
     * about is there after the replay. */
    crash_after_puts(R13, 4, 30, false);
    s = open_store();
    st = stats_of(s);
    printf("wrap, crash: %llu records replayed (%llu stored again, %llu "
           "files rewritten)\n",
           (unsigned long long)st.journal_records,
           (unsigned long long)st.replayed, (unsigned long long)st.restored);
    CHECK(st.torn == 0);
    CHECK(count(s) == THREADS * PUTS + 1 + 4 * 30);
    CHECK(verify_all(s, R13, 4, 30) == 0);
    CHECK(verify_all(s, R12, THREADS, PUTS) == 0);
    close_store(s);
}

/* A new store `name` (1 MiB journal, checkpointed after idle_s without
 * puts; 0: the default) holding instance a. */
static covct_store *store_with(const char *name, double idle_s, const spec *a)
{
    use_dir(name);
    covct_store_debug_journal(1 << 20, idle_s);
    covct_store *s = open_store();
    covct_store_result res;
    covct_error err = {0};
    CHECKF(put_spec(s, a, &res, NULL, &err) == COVCT_OK, "%s", err.msg);
    return s;
}

/* A generation idle for idle_s is checkpointed without a close. */
static void test_idle_checkpoint(void)
{
    spec a = {.sop = ROOT ".15.1.1", .study = ROOT ".15",
              .series = ROOT ".15.1", .patient_id = "P15",
              .instance_number = 1};
    covct_store *s = store_with("idle", 0.2, &a);
    for (int i = 0; i < 300 && stats_of(s).checkpoints == 0; i++)
        usleep(10000);
    CHECK(stats_of(s).checkpoints == 1);
    close_store(s);
}

/* An index of schema version 1 (before the journal) gains the journal
 * columns at open. */
static void test_migration(void)
{
    spec a = {.sop = ROOT ".14.1.1", .study = ROOT ".14",
              .series = ROOT ".14.1", .patient_id = "P14",
              .instance_number = 1};
    covct_store *s = store_with("v1", 0, &a);
    covct_store_result res;
    covct_error err = {0};
    close_store(s);
    idx_exec("ALTER TABLE instances DROP COLUMN journal_gen;"
             "ALTER TABLE instances DROP COLUMN journal_seq;"
             "ALTER TABLE duplicates DROP COLUMN journal_gen;"
             "ALTER TABLE duplicates DROP COLUMN journal_seq;"
             "PRAGMA user_version = 1");
    s = open_store();
    CHECK(q_int(s, "PRAGMA user_version", NULL) == 2);
    CHECK(q_int(s, "SELECT count(*) FROM instances WHERE journal_gen IS NULL",
                NULL) == 1);
    spec b = a;
    b.sop = ROOT ".14.1.2";
    b.instance_number = 2;
    CHECKF(put_spec(s, &b, &res, NULL, &err) == COVCT_OK &&
               res == COVCT_STORE_NEW,
           "%s", err.msg);
    CHECK(q_int(s, "SELECT journal_seq > 0 FROM instances WHERE sop_uid=?",
                b.sop) == 1);
    CHECK(count(s) == 2);
    close_store(s);
}

static void quiet(covct_log_level level, const char *msg, void *user)
{
    (void)user;
    if (getenv("TEST_STORE_VERBOSE") || level >= COVCT_LOG_ERROR)
        fprintf(stderr, "log: %s\n", msg);
}

int main(void)
{
    covct_log_set_handler(quiet, NULL);
    snprintf(g_root, sizeof g_root, "/tmp/covct-test-store-XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "%s/store", g_root);

    close_store(NULL);
    covct_store *s = open_store();
    test_new(s);
    test_duplicates(s);
    test_refused(s);
    test_alloc_failures(s);
    test_second_open();
    test_one_batch(s);
    test_partial_failure(s);
    test_concurrent(s);
    uint64_t n = count(s);
    close_store(s);
    test_reopen(n);
    test_recovery(n);
    test_replay();
    test_torn();
    test_format1();
    test_file_fail();
    test_wrap();
    test_idle_checkpoint();
    test_migration();
    covct_store_debug_journal(0, 0);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_root);
    return test_report();
}
