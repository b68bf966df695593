/* covct import: bring images and labels made elsewhere into a site's data
 * folder -- DICOM files into the store and the case database, NIfTI
 * volumes with their label masks, CSV files of clinical labels
 * (docs/internals/import.md). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "cli/cli.h"
#include "covct/dicom.h"
#include "covct/site.h"
#include "covct/store.h"
#include "covct/volume.h"

static const char help[] =
    "Usage: covct import FILE|FOLDER... --data DIR\n"
    "       covct import --nifti VOLUME.nii.gz --patient ID [--mask KIND=FILE]...\n"
    "                    --data DIR\n"
    "       covct import --labels LABELS.csv --data DIR\n"
    "\n"
    "Bring images and labels made elsewhere (a CD, a research archive, a\n"
    "public data set, a spreadsheet) into the site's data folder DIR: the\n"
    "images are copied into DIR and everything is entered in the case\n"
    "database, under the patient it belongs to.  Every import is written\n"
    "to the site's audit log.  The three forms can be combined in one run;\n"
    "they are done in the order above.\n"
    "\n"
    "DICOM files and folders (folders are searched, subfolders too):\n"
    "  Each file is copied into the DICOM store under DIR/instances and\n"
    "  filed by patient (Patient ID), study, series and instance.  Files\n"
    "  that are not DICOM, or lack a Patient ID or a UID, are listed with\n"
    "  the reason and left out; the others go on.  An instance already\n"
    "  imported (same SOP Instance UID and content) is counted and left as\n"
    "  it is, so running the same import twice changes nothing.  A\n"
    "  different file with the UID of one already stored is kept aside\n"
    "  under DIR/duplicates (nothing is overwritten) and reported.  A\n"
    "  DICOMDIR file is skipped: the files it lists are imported.\n"
    "  While 'covct serve --data DIR' is running, it holds the store: send\n"
    "  the files to the running server instead, e.g.\n"
    "      covct send COVCT@localhost:11112 FOLDER\n"
    "  (the server's --ae and --dicom-port), or stop the server, import,\n"
    "  and start it again.\n"
    "\n"
    "NIfTI volumes (.nii or .nii.gz) and their masks:\n"
    "  --nifti FILE        a CT volume; copied as it is to\n"
    "                      DIR/volumes/SERIES-UID.nii[.gz]\n"
    "  --patient ID        the site's patient ID it belongs to (required;\n"
    "                      the patient is added if new)\n"
    "  --mask KIND=FILE    a label mask of the same size as the volume;\n"
    "                      KIND is lesions (1 ground glass, 2 consolidation),\n"
    "                      lobes (1 LUL, 2 LLL, 3 RUL, 4 RML, 5 RLL) or\n"
    "                      lungs (1 right, 2 left); once per kind.  Copied\n"
    "                      to DIR/labels/SERIES-UID/ and recorded as an\n"
    "                      'imported' label version\n"
    "  --study-uid UID     the study it belongs to; otherwise one is made\n"
    "  --series-uid UID    otherwise one is made from the file's content,\n"
    "                      so importing the same file again finds it\n"
    "  --study-date DATE   YYYYMMDD or YYYY-MM-DD (default: unknown)\n"
    "  --description TEXT  series description\n"
    "\n"
    "Clinical labels (CSV):\n"
    "  --labels FILE.csv   one row per patient: a header row naming the\n"
    "                      columns, then the values.  Columns (any order):\n"
    "        patient_id    the site's patient ID (required; the patient's\n"
    "                      images must be imported first)\n"
    "        diagnosis     covid-19-confirmed, covid-19-clinical,\n"
    "                      other-pneumonia, normal or other (required)\n"
    "        severity      CT severity score 0-25, or empty\n"
    "        outcome       free text (recovered, icu, died...), or empty\n"
    "        category      typical, indeterminate, atypical, negative, or\n"
    "                      empty\n"
    "        comment       free text\n"
    "                      Comma-separated, UTF-8 (Excel: 'CSV UTF-8');\n"
    "                      values with commas, quotes or line breaks in\n"
    "                      double quotes, a quote written twice.  Each row\n"
    "                      becomes a label version of the patient's newest\n"
    "                      case; a wrong row is reported with its line\n"
    "                      number and the others are imported.\n"
    "\n"
    "Options:\n"
    "  --data DIR   the site's data folder (as given to 'covct serve';\n"
    "               created if it does not exist)\n"
    "  -q, --quiet  no progress lines\n"
    "  -h, --help   this text\n"
    "\n"
    "Progress goes to standard error, a summary to standard output.  The\n"
    "case database is DIR/covct.db, or the PostgreSQL database named by the\n"
    "environment variable COVCT_DB.\n"
    "Exit status: 0 everything imported (or already there), 1 something\n"
    "was refused (see the messages) or could not be done, 2 usage.\n";

#define MAX_MASKS 3

typedef struct import_opts {
    const char *data;
    char **paths;
    int n_paths;
    const char *nifti, *patient, *study_uid, *series_uid, *study_date,
        *description;
    struct {
        char kind[16];
        const char *path;
    } masks[MAX_MASKS];
    int n_masks;
    const char *labels;
    bool quiet;
} import_opts;

/* ---- small helpers --------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Whether a fatal error (the disk, the database, memory) ends the run,
 * rather than refusing one input and going on. */
static bool fatal(covct_rc rc)
{
    return rc == COVCT_ERR_IO || rc == COVCT_ERR_NOMEM ||
           rc == COVCT_ERR_INTERNAL;
}

/* PS3.5 9.1: a UID is 1-64 characters, digits and dots, no empty
 * component, no leading zero in a component. */
static bool uid_valid(const char *u)
{
    size_t n = strlen(u);
    if (!n || n > 64 || u[0] == '.' || u[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (u[i] == '.') {
            if (u[i + 1] == '.')
                return false;
        } else if (u[i] < '0' || u[i] > '9') {
            return false;
        } else if (u[i] == '0' && (i == 0 || u[i - 1] == '.') &&
                   i + 1 < n && u[i + 1] != '.') {
            return false;
        }
    }
    return true;
}

/* A UID named by content: an RFC 9562 version 8 UUID from the SHA-256 of
 * `what` and the file's hash, so the same file gives the same UID on every
 * import and two different files never share one. */
static void uid_from_hash(const char *what, const char *sha_hex, char out[65])
{
    char text[160];
    unsigned char md[32];
    unsigned int len = 0;
    int n = snprintf(text, sizeof text, "covct-import-%s\n%s", what, sha_hex);
    EVP_Digest(text, (size_t)n, md, &len, EVP_sha256(), NULL);
    md[6] = (unsigned char)((md[6] & 0x0F) | 0x80); /* version 8 */
    md[8] = (unsigned char)((md[8] & 0x3F) | 0x80); /* variant 10 */
    covct_dcm_uid_from_uuid(md, out);
}

/* Whether `path` holds exactly the bytes with this SHA-256. */
static bool same_file(const char *path, const char *sha)
{
    uint8_t *d = NULL;
    size_t n = 0;
    covct_error e = { 0 };
    if (covct_file_read(path, &d, &n, &e))
        return false;
    char h[65];
    covct_sha256_hex(d, n, h);
    covct_free(d);
    return !strcmp(h, sha);
}

/* Write `len` bytes to DIR/rel unless the same bytes are already there. */
static covct_rc place_copy(const char *dir, const char *rel, const void *p,
                           size_t len, const char *sha, covct_error *err)
{
    char path[4096], folder[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    snprintf(folder, sizeof folder, "%s", path);
    char *slash = strrchr(folder, '/');
    if (slash)
        *slash = '\0';
    covct_rc rc = covct_mkdirs(folder, 0750, err);
    if (rc || same_file(path, sha))
        return rc;
    return covct_file_write_bytes(path, p, len, err);
}

/* A set of strings (patients, studies, series seen in this run). */
typedef struct strset {
    char **slot;
    size_t cap, n;
} strset;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Add s; 1 if it was new, 0 if already in, -1 out of memory. */
static int strset_add(strset *set, const char *s)
{
    if (set->n * 2 >= set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        char **slot = covct_calloc(cap, sizeof *slot);
        if (!slot)
            return -1;
        for (size_t i = 0; i < set->cap; i++) {
            if (!set->slot[i])
                continue;
            size_t k = str_hash(set->slot[i]) & (cap - 1);
            while (slot[k])
                k = (k + 1) & (cap - 1);
            slot[k] = set->slot[i];
        }
        covct_free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    size_t k = str_hash(s) & (set->cap - 1);
    for (; set->slot[k]; k = (k + 1) & (set->cap - 1))
        if (!strcmp(set->slot[k], s))
            return 0;
    if (!(set->slot[k] = covct_strdup(s)))
        return -1;
    set->n++;
    return 1;
}

static void strset_free(strset *set)
{
    for (size_t i = 0; i < set->cap; i++)
        covct_free(set->slot[i]);
    covct_free(set->slot);
    memset(set, 0, sizeof *set);
}

/* Whether the row `sql` finds with one text parameter exists. */
static covct_rc row_exists(covct_site *site, const char *sql, const char *key,
                           bool *exists, covct_error *err)
{
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(covct_site_db(site), sql,
                                 (covct_db_param[]){ COVCT_DB_TEXT(key) }, 1,
                                 &r, err);
    *exists = !rc && covct_db_rows(r) > 0;
    covct_db_result_free(r);
    return rc;
}

/* Record the run's summary in the audit log; a failure is reported, the
 * import itself stands. */
static void audit_summary(covct_site *site, const char *object, cJSON *detail)
{
    char *text = detail ? cJSON_PrintUnformatted(detail) : NULL;
    covct_error err = { 0 };
    if (!text || covct_audit(site, "import", object, text, &err))
        covct_cli_error("the import was done but not recorded in the audit "
                        "log: %s",
                        text ? err.msg : "out of memory");
    free(text);
}

/* ---- progress -------------------------------------------------------------- */

typedef struct progress {
    bool quiet, tty;
    double last;
} progress;

static void progress_show(progress *p, size_t done, size_t total, bool final)
{
    if (p->quiet)
        return;
    double now = covct_now();
    /* a terminal gets a line redrawn in place; a log file a line a second */
    if (!final && now - p->last < (p->tty ? 0.2 : 1.0))
        return;
    p->last = now;
    fprintf(stderr, "%simport: %zu/%zu files%s", p->tty ? "\r" : "", done,
            total, p->tty && !final ? "" : "\n");
    fflush(stderr);
}

/* ---- DICOM files ----------------------------------------------------------- */

typedef struct file_list {
    char **path;
    size_t n, cap;
} file_list;

static file_list *g_walk;

static int list_add(file_list *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **p = realloc(l->path, cap * sizeof *p);
        if (!p)
            return -1;
        l->path = p;
        l->cap = cap;
    }
    if (!(l->path[l->n] = strdup(path)))
        return -1;
    l->n++;
    return 0;
}

static int walk_cb(const char *path, const struct stat *sb, int type,
                   struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return type == FTW_F ? list_add(g_walk, path) : 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_free(file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->path[i]);
    free(l->path);
}

typedef struct dicom_counts {
    size_t files, new_instances, already, refused, duplicates, media_dirs;
    strset patients, studies, series;
    size_t new_patients, new_studies, new_series;
} dicom_counts;

/* What the case database is told about one file. */
typedef struct dicom_meta {
    char sop_class[65], sop_uid[65], study_uid[65], series_uid[65];
    char patient_id[65], birth_date[17], sex[17], study_date[17];
    char modality[17];
    char *patient_name, *study_desc, *series_desc; /* UTF-8 or NULL */
} dicom_meta;

static void meta_free(dicom_meta *m)
{
    COVCT_FREE(m->patient_name);
    COVCT_FREE(m->study_desc);
    COVCT_FREE(m->series_desc);
}

static void ds_str(const covct_dcm_dataset *ds, uint16_t g, uint16_t e,
                   char *buf, size_t cap)
{
    if (covct_dcm_get_string(ds, COVCT_TAG(g, e), 0, buf, cap, NULL))
        buf[0] = '\0';
}

static char *ds_utf8(const covct_dcm_dataset *ds, uint16_t g, uint16_t e)
{
    char *s = NULL;
    if (covct_dcm_get_utf8(ds, COVCT_TAG(g, e), &s, NULL) || (s && !*s))
        COVCT_FREE(s);
    return s;
}

/* Read what the case database needs; refuse a file that cannot be filed. */
static covct_rc read_meta(const covct_dcm_dataset *ds, dicom_meta *m,
                          covct_error *err)
{
    ds_str(ds, 0x0008, 0x0016, m->sop_class, sizeof m->sop_class);
    ds_str(ds, 0x0008, 0x0018, m->sop_uid, sizeof m->sop_uid);
    ds_str(ds, 0x0020, 0x000D, m->study_uid, sizeof m->study_uid);
    ds_str(ds, 0x0020, 0x000E, m->series_uid, sizeof m->series_uid);
    ds_str(ds, 0x0010, 0x0020, m->patient_id, sizeof m->patient_id);
    ds_str(ds, 0x0010, 0x0030, m->birth_date, sizeof m->birth_date);
    ds_str(ds, 0x0010, 0x0040, m->sex, sizeof m->sex);
    ds_str(ds, 0x0008, 0x0020, m->study_date, sizeof m->study_date);
    ds_str(ds, 0x0008, 0x0060, m->modality, sizeof m->modality);
    if (!m->sop_class[0])
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "no SOP Class UID (0008,0016): not a DICOM "
                         "instance");
    if (!m->patient_id[0])
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "no Patient ID (0010,0020): the case database "
                         "files images by patient");
    m->patient_name = ds_utf8(ds, 0x0010, 0x0010);
    m->study_desc = ds_utf8(ds, 0x0008, 0x1030);
    m->series_desc = ds_utf8(ds, 0x0008, 0x103E);
    return COVCT_OK;
}

/* The file as the store takes it: a Part 10 file with file meta
 * information naming the transfer syntax (PS3.10 7.1).  Files written
 * without the preamble or meta information (older modalities, some
 * archives) get them; the data set bytes are kept as they are. */
static covct_rc part10_bytes(const covct_dcm_file *f, const dicom_meta *m,
                             uint8_t **bytes, size_t *len, covct_error *err)
{
    size_t n = 0;
    const uint8_t *b = covct_dcm_file_bytes(f, &n);
    const covct_dcm_dataset *meta = covct_dcm_file_meta(f);
    covct_rc rc;
    if (covct_dcm_file_has_preamble(f) &&
        covct_dcm_dataset_get(meta, COVCT_TAG(0x0002, 0x0010))) {
        if (!(*bytes = covct_malloc(n ? n : 1)))
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        memcpy(*bytes, b, n);
        *len = n;
        return COVCT_OK;
    }
    /* the data set starts at its first element as read */
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    size_t start = n;
    for (size_t i = 0; i < covct_dcm_dataset_count(ds); i++) {
        size_t off = covct_dcm_element_offset(covct_dcm_dataset_at(ds, i));
        if (off < start)
            start = off;
    }
    if (start >= n)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT, "no data set");
    /* Without file meta information only the native encodings can be
     * recognised (PS3.5 A.1-A.3); compressed pixel data there means the
     * file lost the transfer syntax it needs, and labelling it wrongly
     * would store an unreadable instance. */
    uint8_t *copy = covct_malloc(n ? n : 1);
    covct_dcm_file *full = NULL;
    if (!copy)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    memcpy(copy, b, n);
    if ((rc = covct_dcm_file_parse(copy, n, NULL, &full, err)))
        return rc;
    const covct_dcm_element *px = covct_dcm_dataset_get(
        covct_dcm_file_dataset_const(full), COVCT_TAG(0x7FE0, 0x0010));
    bool encapsulated = px && covct_dcm_element_encapsulated(px);
    covct_dcm_file_free(full);
    if (encapsulated)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "no file meta information (PS3.10 7.1) and the "
                         "pixel data is compressed: its transfer syntax "
                         "cannot be known");
    covct_buf out = { 0 };
    if ((rc = covct_dcm_write_meta(&out, m->sop_class, m->sop_uid,
                                   covct_dcm_file_ts(f), NULL, err)) ||
        (rc = covct_buf_append(&out, b + start, n - start, err))) {
        covct_buf_free(&out);
        return rc;
    }
    *bytes = out.data;
    *len = out.len;
    return COVCT_OK;
}

/* Cached ids of the patient, study and series of the previous file: the
 * files of a series come one after another. */
typedef struct dicom_cache {
    char patient[65], study[65], series[65];
    int64_t patient_id, study_id, series_id;
} dicom_cache;

/* File one stored instance in the case database. */
static covct_rc file_instance(covct_site *site, covct_store *store,
                              const dicom_meta *m, dicom_cache *c,
                              dicom_counts *n, covct_error *err)
{
    covct_rc rc;
    bool had;
    int added;
    if (strcmp(c->patient, m->patient_id)) {
        if ((added = strset_add(&n->patients, m->patient_id)) < 0)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        if ((rc = row_exists(site,
                             "SELECT id FROM patients WHERE"
                             " site_patient_id = $1",
                             m->patient_id, &had, err)) ||
            (rc = covct_case_patient(site, m->patient_id, m->patient_name,
                                     m->birth_date[0] ? m->birth_date : NULL,
                                     m->sex[0] ? m->sex : NULL,
                                     &c->patient_id, err)))
            return rc;
        n->new_patients += added && !had;
        snprintf(c->patient, sizeof c->patient, "%s", m->patient_id);
        c->study[0] = c->series[0] = '\0';
    }
    if (strcmp(c->study, m->study_uid)) {
        if ((added = strset_add(&n->studies, m->study_uid)) < 0)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        if ((rc = row_exists(site,
                             "SELECT id FROM studies WHERE study_uid = $1",
                             m->study_uid, &had, err)) ||
            (rc = covct_case_study(site, c->patient_id, m->study_uid,
                                   m->study_date[0] ? m->study_date : NULL,
                                   m->study_desc, &c->study_id, NULL, err)))
            return rc;
        n->new_studies += added && !had;
        snprintf(c->study, sizeof c->study, "%s", m->study_uid);
        c->series[0] = '\0';
    }
    if (strcmp(c->series, m->series_uid)) {
        if ((added = strset_add(&n->series, m->series_uid)) < 0)
            return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        if ((rc = row_exists(site,
                             "SELECT id FROM series WHERE series_uid = $1",
                             m->series_uid, &had, err)) ||
            (rc = covct_case_series(site, c->study_id, m->series_uid,
                                    m->modality[0] ? m->modality : NULL,
                                    m->series_desc, NULL, NULL,
                                    &c->series_id, err)))
            return rc;
        n->new_series += added && !had;
        snprintf(c->series, sizeof c->series, "%s", m->series_uid);
    }
    if ((rc = row_exists(site, "SELECT id FROM instances WHERE sop_uid = $1",
                         m->sop_uid, &had, err)))
        return rc;
    if (had) {
        n->already++;
        return COVCT_OK;
    }
    /* the stored file: the one the store already had for a copy it found
     * identical or different, else the new one */
    char path[4096], sha[65];
    if ((rc = covct_store_instance_path(store, m->sop_uid, path, sizeof path,
                                        err)))
        return rc;
    const char *dir = covct_store_dir(store);
    size_t dl = strlen(dir);
    if (strncmp(path, dir, dl) || path[dl] != '/')
        return COVCT_ERR(err, COVCT_ERR_INTERNAL,
                         "stored file %s is not under %s", path, dir);
    uint8_t *stored = NULL;
    size_t len = 0;
    if ((rc = covct_file_read(path, &stored, &len, err)))
        return rc;
    covct_sha256_hex(stored, len, sha);
    covct_free(stored);
    if ((rc = covct_case_instance(site, c->series_id, m->sop_uid,
                                  path + dl + 1, sha, err)))
        return rc;
    n->new_instances++;
    return COVCT_OK;
}

/* One file: parse, store, file.  COVCT_OK or a refusal (err says why);
 * fatal() codes end the run. */
static covct_rc import_file(covct_site *site, covct_store *store,
                            const char *path, dicom_cache *cache,
                            dicom_counts *n, bool *media_dir,
                            covct_error *err)
{
    *media_dir = false;
    dicom_meta m;
    memset(&m, 0, sizeof m);
    uint8_t *bytes = NULL;
    size_t len = 0;
    covct_dcm_file *f = NULL;
    const covct_dcm_read_opts opts = { .stop_before_pixels = true };
    covct_rc rc = covct_dcm_file_read(path, &opts, &f, err);
    if (rc) {
        /* the input file, not our disk: refuse it and go on */
        if (rc == COVCT_ERR_IO)
            rc = COVCT_ERR_CORRUPT;
        goto out;
    }
    /* PS3.10 8.6: a DICOMDIR lists the files of the media; they are
     * imported by themselves */
    char media_class[65] = "";
    covct_dcm_get_string(covct_dcm_file_meta(f), COVCT_TAG(0x0002, 0x0002), 0,
                         media_class, sizeof media_class, NULL);
    if (!strcmp(media_class, "1.2.840.10008.1.3.10") ||
        !strcmp(base_name(path), "DICOMDIR")) {
        *media_dir = true;
        goto out;
    }
    if ((rc = read_meta(covct_dcm_file_dataset_const(f), &m, err)))
        goto out;
    /* the whole file: the parse above stopped before the pixels, but
     * covct_dcm_file_read read all of it */
    if ((rc = part10_bytes(f, &m, &bytes, &len, err)))
        goto out;
    covct_dcm_file_free(f);
    f = NULL;
    covct_store_result res;
    covct_store_info info;
    rc = covct_store_put(store, bytes, len, NULL, &res, &info, err);
    bytes = NULL; /* the store's now */
    if (rc)
        goto out;
    if (res == COVCT_STORE_DUPLICATE) {
        n->duplicates++;
        fprintf(stderr,
                "covct: note: %s: a different file with SOP Instance UID %s "
                "is already stored; this one is kept under %s/duplicates/ "
                "and the stored one is left as it is\n",
                path, m.sop_uid, covct_store_dir(store));
    }
    /* the store checked the UIDs (PS3.5 9.1) */
    rc = file_instance(site, store, &m, cache, n, err);
out:
    covct_free(bytes);
    covct_dcm_file_free(f);
    meta_free(&m);
    return rc;
}

/* The store is locked while `covct serve` runs on DIR: say what to do
 * instead. */
static bool store_busy(const char *dir)
{
    char marker[4096];
    snprintf(marker, sizeof marker, "%s/.open", dir);
    int fd = open(marker, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the lock, if we got it */
    return busy;
}

static void busy_message(const char *dir)
{
    covct_cli_error(
        "the DICOM store in %s is in use by a running 'covct serve' (or "
        "another import).\n"
        "  Send the files to the running server instead:\n"
        "      covct send AE@HOST:PORT FILE|FOLDER...\n"
        "  with the server's AE title and DICOM port (its --ae and\n"
        "  --dicom-port, by default COVCT@localhost:11112), or stop the\n"
        "  server, import, and start it again.",
        dir);
}

static int import_dicom(covct_site *site, const import_opts *o)
{
    int code = COVCT_EXIT_OK;
    file_list files = { 0 };
    dicom_counts n;
    memset(&n, 0, sizeof n);
    covct_store *store = NULL;
    covct_error err = { 0 };
    g_walk = &files;
    for (int i = 0; i < o->n_paths; i++) {
        struct stat st;
        if (stat(o->paths[i], &st) != 0) {
            covct_cli_error("%s: %s", o->paths[i], strerror(errno));
            n.refused++;
            continue;
        }
        /* links inside folders are not followed (a loop, or files
         * outside what was named), but a folder named through a link is
         * walked where it really is */
        char top[PATH_MAX];
        struct stat lst;
        if (!S_ISDIR(st.st_mode) || lstat(o->paths[i], &lst) ||
            !S_ISLNK(lst.st_mode) || !realpath(o->paths[i], top))
            snprintf(top, sizeof top, "%s", o->paths[i]);
        if (S_ISDIR(st.st_mode) ? nftw(top, walk_cb, 32, FTW_PHYS)
                                : list_add(&files, o->paths[i])) {
            covct_cli_error("%s: cannot list the folder: %s", o->paths[i],
                            strerror(errno));
            n.refused++;
        }
    }
    qsort(files.path, files.n, sizeof *files.path, cmp_str);
    if (!files.n) {
        covct_cli_error("no files to import in %s%s", o->paths[0],
                        o->n_paths > 1 ? " ..." : "");
        code = COVCT_EXIT_FAIL;
        goto out;
    }
    if (store_busy(o->data)) {
        busy_message(o->data);
        code = COVCT_EXIT_FAIL;
        goto out;
    }
    if (covct_store_open(o->data, &store, &err)) {
        if (strstr(err.msg, "is already open"))
            busy_message(o->data);
        else
            covct_cli_error("%s", err.msg);
        code = COVCT_EXIT_FAIL;
        goto out;
    }
    progress pr = { .quiet = o->quiet, .tty = isatty(2),
                    .last = covct_now() };
    dicom_cache cache;
    memset(&cache, 0, sizeof cache);
    bool stopped = false;
    for (size_t i = 0; i < files.n; i++) {
        covct_error_clear(&err);
        n.files++;
        bool media_dir;
        covct_rc rc = import_file(site, store, files.path[i], &cache, &n,
                                  &media_dir, &err);
        if (media_dir) {
            n.media_dirs++; /* a directory of the others, not refused */
        } else if (fatal(rc)) {
            if (pr.tty && !pr.quiet)
                fputc('\n', stderr);
            covct_cli_error("%s: %s", files.path[i], err.msg);
            covct_cli_error("import stopped after %zu of %zu files; what "
                            "was imported before stays (run the same "
                            "import again to go on)",
                            i, files.n);
            stopped = true;
            break;
        } else if (rc) {
            if (pr.tty && !pr.quiet)
                fputc('\n', stderr);
            /* the parser's messages already start with the path */
            size_t pl = strlen(files.path[i]);
            const char *why = err.msg;
            if (!strncmp(why, files.path[i], pl) && !strncmp(why + pl, ": ", 2))
                why += pl + 2;
            fprintf(stderr, "covct: refused %s: %s\n", files.path[i], why);
            n.refused++;
            /* the cached ids may belong to a half-filed file */
            memset(&cache, 0, sizeof cache);
        }
        progress_show(&pr, i + 1, files.n, i + 1 == files.n);
    }
    covct_store_close(store);
    printf("import: %zu file%s: %zu new instance%s, %zu already there, "
           "%zu refused",
           n.files, n.files == 1 ? "" : "s", n.new_instances,
           n.new_instances == 1 ? "" : "s", n.already, n.refused);
    if (n.duplicates)
        printf(", %zu different cop%s kept aside", n.duplicates,
               n.duplicates == 1 ? "y" : "ies");
    if (n.media_dirs)
        printf(", %zu DICOMDIR skipped", n.media_dirs);
    printf("\n        %zu patient%s (%zu new), %zu stud%s (%zu new), "
           "%zu series (%zu new)\n",
           n.patients.n, n.patients.n == 1 ? "" : "s", n.new_patients,
           n.studies.n, n.studies.n == 1 ? "y" : "ies", n.new_studies,
           n.series.n, n.new_series);
    if (!n.new_instances && !n.refused && !stopped && n.already)
        printf("import: nothing new: every instance was already "
               "imported\n");
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "files", (double)n.files);
    cJSON_AddNumberToObject(d, "new_instances", (double)n.new_instances);
    cJSON_AddNumberToObject(d, "already", (double)n.already);
    cJSON_AddNumberToObject(d, "refused", (double)n.refused);
    cJSON_AddNumberToObject(d, "duplicates", (double)n.duplicates);
    cJSON_AddNumberToObject(d, "patients", (double)n.patients.n);
    cJSON_AddNumberToObject(d, "new_patients", (double)n.new_patients);
    cJSON_AddNumberToObject(d, "studies", (double)n.studies.n);
    cJSON_AddNumberToObject(d, "new_studies", (double)n.new_studies);
    cJSON_AddNumberToObject(d, "series", (double)n.series.n);
    cJSON_AddNumberToObject(d, "new_series", (double)n.new_series);
    if (stopped)
        cJSON_AddBoolToObject(d, "stopped", 1);
    audit_summary(site, "files", d);
    cJSON_Delete(d);
    if (n.refused || stopped)
        code = COVCT_EXIT_FAIL;
out:
    strset_free(&n.patients);
    strset_free(&n.studies);
    strset_free(&n.series);
    list_free(&files);
    return code;
}

/* ---- NIfTI volumes and masks ----------------------------------------------- */

/* Highest label value of each mask kind (include/covct/site.h). */
static int mask_max(const char *kind)
{
    return !strcmp(kind, "lobes") ? 5 : 2;
}

static void shape_str(const covct_volume *v, char *buf, size_t n)
{
    snprintf(buf, n, "%" PRIu32 " x %" PRIu32 " x %" PRIu32, v->nx, v->ny,
             v->nz);
}

/* Check a mask against its volume: same grid, label values only. */
static covct_rc check_mask(const char *kind, const char *path,
                           const covct_volume *mask, const char *vol_path,
                           const covct_volume *vol, covct_error *err)
{
    char a[64], b[64];
    if (mask->nx != vol->nx || mask->ny != vol->ny || mask->nz != vol->nz) {
        shape_str(mask, a, sizeof a);
        shape_str(vol, b, sizeof b);
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "%s: the mask is %s voxels but the volume %s is "
                         "%s: a mask must have the volume's shape",
                         path, a, vol_path, b);
    }
    size_t nv = covct_volume_voxels(mask);
    int max = mask_max(kind);
    for (size_t i = 0; i < nv; i++) {
        double v = mask->dtype == COVCT_DTYPE_INT16
                       ? ((const int16_t *)mask->data)[i]
                       : ((const float *)mask->data)[i];
        if (!(v >= 0 && v <= max && v == (double)(int)v)) {
            size_t x = i % mask->nx, y = i / mask->nx % mask->ny,
                   z = i / ((size_t)mask->nx * mask->ny);
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "%s: voxel (%zu, %zu, %zu) is %g; a %s mask "
                             "holds the labels 0 to %d",
                             path, x, y, z, v, kind, max);
        }
    }
    /* the same grid in space too: a mask written with another affine is
     * most likely flipped or shifted; say so, but keep it (some public
     * data sets store masks with a cruder header) */
    double worst = 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            double d = mask->affine[r][c] - vol->affine[r][c];
            if (d < 0)
                d = -d;
            if (d > worst)
                worst = d;
        }
    if (worst > 0.01)
        fprintf(stderr,
                "covct: warning: %s: its geometry (affine) differs from the "
                "volume's by up to %.3g mm; imported as it is, check that "
                "it lies on the volume\n",
                path, worst);
    return COVCT_OK;
}

/* Whether the file's bytes are gzip (RFC 1952 magic). */
static const char *nii_ext(const uint8_t *p, size_t n)
{
    return n >= 2 && p[0] == 0x1F && p[1] == 0x8B ? ".nii.gz" : ".nii";
}

typedef struct nifti_in {
    uint8_t *bytes;
    size_t len;
    char sha[65];
    covct_volume *vol;
} nifti_in;

static void nifti_in_free(nifti_in *in)
{
    covct_free(in->bytes);
    covct_volume_free(in->vol);
    memset(in, 0, sizeof *in);
}

static covct_rc nifti_load(const char *path, nifti_in *in, covct_error *err)
{
    covct_rc rc = covct_file_read(path, &in->bytes, &in->len, err);
    if (rc)
        return rc;
    covct_sha256_hex(in->bytes, in->len, in->sha);
    if ((rc = covct_nifti_parse(in->bytes, in->len, &in->vol, err)))
        covct_error_prefix(err, "%s: not a NIfTI-1 volume covct can read: ",
                           path);
    return rc;
}

/* One mask of the volume's series: 0 imported or already there, else
 * refused (the message is printed). */
static int import_mask(covct_site *site, const import_opts *o, int k,
                       const nifti_in *vol, const char *series_uid,
                       int64_t series_id, cJSON *list)
{
    const char *kind = o->masks[k].kind, *path = o->masks[k].path;
    nifti_in m;
    memset(&m, 0, sizeof m);
    covct_error err = { 0 };
    covct_db_result *r = NULL;
    char rel[512], source[300];
    int code = 1;
    covct_rc rc = nifti_load(path, &m, &err);
    if (!rc)
        rc = check_mask(kind, path, m.vol, o->nifti, vol->vol, &err);
    if (rc)
        goto out;
    rc = covct_db_query(
        covct_site_db(site),
        "SELECT id, sha256 FROM image_labels WHERE series_id = $1 AND"
        " kind = $2 AND status = $3 ORDER BY id DESC",
        (covct_db_param[]){ COVCT_DB_INT(series_id), COVCT_DB_TEXT(kind),
                            COVCT_DB_TEXT(COVCT_LABEL_IMPORTED) },
        3, &r, &err);
    if (rc)
        goto out;
    for (size_t i = 0; i < covct_db_rows(r); i++)
        if (!strcmp(covct_db_get(r, i, 1), m.sha)) {
            printf("import: %s mask %s: already there (label version "
                   "%s)\n",
                   kind, path, covct_db_get(r, i, 0));
            code = 0;
            goto out;
        }
    /* a different mask of the same kind: a new version of the newest */
    int64_t parent = covct_db_rows(r) ? covct_db_get_int(r, 0, 0, 0) : 0;
    snprintf(rel, sizeof rel, "labels/%s/%s-%.16s%s", series_uid, kind, m.sha,
             nii_ext(m.bytes, m.len));
    snprintf(source, sizeof source, "import:%.200s", base_name(path));
    int64_t label_id = 0;
    if ((rc = place_copy(o->data, rel, m.bytes, m.len, m.sha, &err)) ||
        (rc = covct_label_image_add(site, series_id, kind,
                                    COVCT_LABEL_IMPORTED, "import", source,
                                    rel, m.sha, parent, &label_id, &err)))
        goto out;
    printf("import: %s mask %s: label version %" PRId64 "%s, %s\n", kind,
           path, label_id, parent ? " (revises the one before)" : "", rel);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "kind", kind);
    cJSON_AddNumberToObject(e, "label", (double)label_id);
    cJSON_AddStringToObject(e, "sha256", m.sha);
    cJSON_AddItemToArray(list, e);
    code = 0;
out:
    if (rc)
        fprintf(stderr, "covct: refused %s mask: %s\n", kind, err.msg);
    covct_db_result_free(r);
    nifti_in_free(&m);
    return code;
}

/* DICOM DA from YYYYMMDD or YYYY-MM-DD (the case database keeps DA). */
static bool parse_date(const char *in, char out[9])
{
    size_t n = strlen(in), k = 0;
    if (n != 8 && n != 10)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (n == 10 && (i == 4 || i == 7)) {
            if (in[i] != '-')
                return false;
            continue;
        }
        if (in[i] < '0' || in[i] > '9')
            return false;
        out[k++] = in[i];
    }
    out[8] = '\0';
    int mon = (out[4] - '0') * 10 + out[5] - '0',
        day = (out[6] - '0') * 10 + out[7] - '0';
    return mon >= 1 && mon <= 12 && day >= 1 && day <= 31;
}

static int import_nifti(covct_site *site, const import_opts *o)
{
    nifti_in v;
    memset(&v, 0, sizeof v);
    covct_error err = { 0 };
    covct_db_result *r = NULL;
    int code = COVCT_EXIT_FAIL;
    char study_uid[65], series_uid[65], rel[512], date[9] = "";
    int64_t patient_id = 0, study_id = 0, series_id = 0;
    bool already = false;
    if (o->study_date && !parse_date(o->study_date, date)) {
        covct_cli_error("--study-date %s: give the date as YYYYMMDD or "
                        "YYYY-MM-DD",
                        o->study_date);
        return COVCT_EXIT_USAGE;
    }
    if (nifti_load(o->nifti, &v, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    if (o->study_uid)
        snprintf(study_uid, sizeof study_uid, "%s", o->study_uid);
    else
        uid_from_hash("study", v.sha, study_uid);
    if (o->series_uid)
        snprintf(series_uid, sizeof series_uid, "%s", o->series_uid);
    else
        uid_from_hash("series", v.sha, series_uid);
    snprintf(rel, sizeof rel, "volumes/%s%s", series_uid,
             nii_ext(v.bytes, v.len));
    /* a series that is already there must hold this very volume */
    if (covct_db_query(covct_site_db(site),
                       "SELECT s.volume_sha256, s.volume_path, p.site_patient_id"
                       " FROM series s JOIN studies st ON st.id = s.study_id"
                       " JOIN patients p ON p.id = st.patient_id"
                       " WHERE s.series_uid = $1",
                       (covct_db_param[]){ COVCT_DB_TEXT(series_uid) }, 1, &r,
                       &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    if (covct_db_rows(r)) {
        const char *sha = covct_db_get(r, 0, 0), *pid = covct_db_get(r, 0, 2);
        if (!sha) {
            covct_cli_error("%s: series %s is a DICOM series already in the "
                            "database; a NIfTI volume needs its own series "
                            "UID",
                            o->nifti, series_uid);
            goto out;
        }
        if (strcmp(sha, v.sha)) {
            covct_cli_error("%s: series %s already holds another volume "
                            "(%s, SHA-256 %.16s...); give another "
                            "--series-uid",
                            o->nifti, series_uid, covct_db_get(r, 0, 1), sha);
            goto out;
        }
        if (strcmp(pid, o->patient)) {
            covct_cli_error("%s: this volume was imported before for "
                            "patient '%s', not '%s'",
                            o->nifti, pid, o->patient);
            goto out;
        }
        already = true;
    }
    /* the file first, so that no row ever points at a missing one */
    covct_rc rc;
    if ((rc = place_copy(o->data, rel, v.bytes, v.len, v.sha, &err)) ||
        (rc = covct_case_patient(site, o->patient, NULL, NULL, NULL,
                                 &patient_id, &err)) ||
        (rc = covct_case_study(site, patient_id, study_uid,
                               date[0] ? date : NULL, NULL, &study_id, NULL,
                               &err)) ||
        (rc = covct_case_series(site, study_id, series_uid, "CT",
                                o->description, rel, v.sha, &series_id,
                                &err))) {
        covct_cli_error("%s: %s", o->nifti, err.msg);
        goto out;
    }
    char shape[64];
    shape_str(v.vol, shape, sizeof shape);
    if (already)
        printf("import: %s: already there, series %s\n", o->nifti,
               series_uid);
    else
        printf("import: %s: %s voxels, patient %s, series %s, %s\n",
               o->nifti, shape, o->patient, series_uid, rel);
    cJSON *d = cJSON_CreateObject(), *masks = cJSON_CreateArray();
    int refused = 0;
    for (int k = 0; k < o->n_masks; k++)
        refused += import_mask(site, o, k, &v, series_uid, series_id, masks);
    cJSON_AddStringToObject(d, "series_uid", series_uid);
    cJSON_AddStringToObject(d, "sha256", v.sha);
    cJSON_AddBoolToObject(d, "new", !already);
    cJSON_AddItemToObject(d, "masks", masks);
    cJSON_AddNumberToObject(d, "masks_refused", refused);
    char obj[300];
    snprintf(obj, sizeof obj, "nifti:%.250s", base_name(o->nifti));
    audit_summary(site, obj, d);
    cJSON_Delete(d);
    code = refused ? COVCT_EXIT_FAIL : COVCT_EXIT_OK;
out:
    covct_db_result_free(r);
    nifti_in_free(&v);
    return code;
}

/* ---- CSV clinical labels --------------------------------------------------- */

enum { COL_PATIENT, COL_DIAGNOSIS, COL_SEVERITY, COL_OUTCOME, COL_CATEGORY,
       COL_COMMENT, N_COLS };
static const char *const col_names[N_COLS] = {
    "patient_id", "diagnosis", "severity", "outcome", "category", "comment"
};

typedef struct csv_ctx {
    covct_site *site;
    const char *file;
    long col[N_COLS]; /* field index of each column, -1 when absent */
    bool header_bad;
    size_t rows, imported, already, refused;
    covct_rc fatal_rc;
} csv_ctx;

static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    memmove(s, s + i, n - i + 1);
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static covct_rc csv_header(csv_ctx *c, const covct_csv_record *r)
{
    if (r->problem) {
        covct_cli_error("%s line %" PRIu64 ": the header row: %s", c->file,
                        r->line, r->problem);
        c->header_bad = true;
        return COVCT_OK;
    }
    for (size_t i = 0; i < r->n_fields; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s", r->fields[i]);
        trim(name);
        lower(name);
        int k = 0;
        while (k < N_COLS && strcmp(name, col_names[k]))
            k++;
        if (k == N_COLS) {
            fprintf(stderr,
                    "covct: note: %s line %" PRIu64 ": column %zu '%s' is "
                    "not one covct knows; it is not imported\n",
                    c->file, r->line, i + 1, r->fields[i]);
            continue;
        }
        if (c->col[k] >= 0) {
            covct_cli_error("%s line %" PRIu64 ": column '%s' appears "
                            "twice (columns %ld and %zu)",
                            c->file, r->line, col_names[k], c->col[k] + 1,
                            i + 1);
            c->header_bad = true;
        }
        c->col[k] = (long)i;
    }
    for (int k = 0; k < 2; k++)
        if (c->col[k] < 0) {
            covct_cli_error("%s line %" PRIu64 ": the header row has no "
                            "'%s' column (it needs patient_id and "
                            "diagnosis; severity, outcome, category and "
                            "comment may follow)",
                            c->file, r->line, col_names[k]);
            c->header_bad = true;
        }
    return COVCT_OK;
}

/* The value of column k in a record ("" when the file has no such
 * column), trimmed, in buf. */
static const char *csv_value(const csv_ctx *c, const covct_csv_record *r,
                             int k, char *buf, size_t n)
{
    buf[0] = '\0';
    if (c->col[k] >= 0 && (size_t)c->col[k] < r->n_fields)
        snprintf(buf, n, "%s", r->fields[c->col[k]]);
    trim(buf);
    return buf;
}

static bool same_text(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static covct_rc csv_row(void *user, const covct_csv_record *r,
                        covct_error *fatal_err)
{
    csv_ctx *c = user;
    if (r->index == 0)
        return csv_header(c, r);
    if (c->header_bad)
        return COVCT_OK;
    c->rows++;
    covct_error err = { 0 };
    char pid[256], diag[64], sev[64], outcome[1024], cat[64];
    char *comment = NULL;
    size_t clen = c->col[COL_COMMENT] >= 0 &&
                          (size_t)c->col[COL_COMMENT] < r->n_fields
                      ? r->lens[c->col[COL_COMMENT]] + 1
                      : 1;
    covct_db_result *res = NULL;
    covct_rc rc = COVCT_OK;
#define REFUSE(...)                                                        \
    do {                                                                   \
        fprintf(stderr, "covct: refused %s line %" PRIu64 ": ", c->file,   \
                r->line);                                                  \
        fprintf(stderr, __VA_ARGS__);                                      \
        fputc('\n', stderr);                                               \
        c->refused++;                                                      \
        goto out;                                                          \
    } while (0)
    if (r->problem)
        REFUSE("%s", r->problem);
    if (!(comment = covct_malloc(clen)))
        return COVCT_ERR(fatal_err, COVCT_ERR_NOMEM, "out of memory");
    csv_value(c, r, COL_PATIENT, pid, sizeof pid);
    csv_value(c, r, COL_DIAGNOSIS, diag, sizeof diag);
    csv_value(c, r, COL_SEVERITY, sev, sizeof sev);
    csv_value(c, r, COL_OUTCOME, outcome, sizeof outcome);
    csv_value(c, r, COL_CATEGORY, cat, sizeof cat);
    csv_value(c, r, COL_COMMENT, comment, clen);
    lower(diag);
    lower(cat);
    if (!pid[0])
        REFUSE("column 'patient_id' is empty");
    if (!covct_diagnosis_valid(diag))
        REFUSE("column 'diagnosis': %s%s%s (covid-19-confirmed, "
               "covid-19-clinical, other-pneumonia, normal, other)",
               diag[0] ? "unknown diagnosis '" : "empty", diag,
               diag[0] ? "'" : "");
    int severity = -1;
    if (sev[0]) {
        char *end;
        errno = 0;
        long s = strtol(sev, &end, 10);
        if (*end || errno)
            REFUSE("column 'severity': '%s' is not a whole number", sev);
        if (s < 0 || s > 25)
            REFUSE("column 'severity': %ld is outside the CT severity "
                   "score's 0-25",
                   s);
        severity = (int)s;
    }
    if (cat[0] && !covct_category_valid(cat))
        REFUSE("column 'category': unknown category '%s' (typical, "
               "indeterminate, atypical, negative, or empty)",
               cat);
    /* the patient's newest case, and its newest clinical label */
    rc = covct_db_query(
        covct_site_db(c->site),
        "SELECT c.id, (SELECT MAX(l.id) FROM clinical_labels l"
        "  WHERE l.case_id = c.id)"
        " FROM cases c JOIN patients p ON p.id = c.patient_id"
        " WHERE p.site_patient_id = $1 ORDER BY c.id DESC LIMIT 1",
        (covct_db_param[]){ COVCT_DB_TEXT(pid) }, 1, &res, &err);
    if (rc)
        goto out;
    if (!covct_db_rows(res)) {
        bool patient = false;
        if ((rc = row_exists(c->site,
                             "SELECT id FROM patients WHERE"
                             " site_patient_id = $1",
                             pid, &patient, &err)))
            goto out;
        if (patient)
            REFUSE("patient '%s' has no study yet (import the images "
                   "first)",
                   pid);
        REFUSE("no patient '%s' (import the images first)", pid);
    }
    int64_t case_id = covct_db_get_int(res, 0, 0, 0),
            parent = covct_db_get_int(res, 0, 1, 0);
    covct_db_result_free(res);
    res = NULL;
    if (parent) {
        /* the same label again (the file imported twice): nothing to do */
        rc = covct_db_query(
            covct_site_db(c->site),
            "SELECT diagnosis, severity, outcome, category, comment, status"
            " FROM clinical_labels WHERE id = $1",
            (covct_db_param[]){ COVCT_DB_INT(parent) }, 1, &res, &err);
        if (rc)
            goto out;
        char sevtext[16] = "";
        if (severity >= 0)
            snprintf(sevtext, sizeof sevtext, "%d", severity);
        if (covct_db_rows(res) && same_text(covct_db_get(res, 0, 0), diag) &&
            same_text(covct_db_get(res, 0, 1), sevtext) &&
            same_text(covct_db_get(res, 0, 2), outcome) &&
            same_text(covct_db_get(res, 0, 3), cat) &&
            same_text(covct_db_get(res, 0, 4), comment) &&
            same_text(covct_db_get(res, 0, 5), COVCT_LABEL_IMPORTED)) {
            c->already++;
            goto out;
        }
    }
    covct_clinical_label l = { .diagnosis = diag,
                               .severity = severity,
                               .outcome = outcome,
                               .category = cat,
                               .comment = comment };
    int64_t label_id;
    rc = covct_label_clinical_add(c->site, case_id, &l, COVCT_LABEL_IMPORTED,
                                  parent, &label_id, &err);
    if (!rc)
        c->imported++;
    else if (!fatal(rc))
        REFUSE("%s", err.msg);
out:
#undef REFUSE
    covct_db_result_free(res);
    covct_free(comment);
    if (rc && fatal(rc)) {
        c->fatal_rc = rc;
        return COVCT_ERR(fatal_err, rc, "line %" PRIu64 ": %s", r->line,
                         err.msg);
    }
    return COVCT_OK;
}

static int import_labels(covct_site *site, const import_opts *o)
{
    uint8_t *data = NULL;
    size_t len = 0;
    covct_error err = { 0 };
    if (covct_file_read(o->labels, &data, &len, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    csv_ctx c;
    memset(&c, 0, sizeof c);
    c.site = site;
    c.file = o->labels;
    for (int k = 0; k < N_COLS; k++)
        c.col[k] = -1;
    covct_rc rc = covct_csv_parse(data, len, csv_row, &c, &err);
    covct_free(data);
    if (rc) {
        covct_cli_error("%s %s; rows before it stay imported", o->labels,
                        err.msg);
    } else if (c.col[COL_PATIENT] < 0 && !c.header_bad) {
        covct_cli_error("%s is empty: it needs a header row (patient_id,"
                        "diagnosis,...) and a row per patient",
                        o->labels);
        c.header_bad = true;
    }
    printf("import: %s: %zu row%s: %zu imported, %zu already there, "
           "%zu refused\n",
           o->labels, c.rows, c.rows == 1 ? "" : "s", c.imported, c.already,
           c.refused);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "rows", (double)c.rows);
    cJSON_AddNumberToObject(d, "imported", (double)c.imported);
    cJSON_AddNumberToObject(d, "already", (double)c.already);
    cJSON_AddNumberToObject(d, "refused", (double)c.refused);
    if (c.header_bad)
        cJSON_AddBoolToObject(d, "header_refused", 1);
    if (rc)
        cJSON_AddBoolToObject(d, "stopped", 1);
    char obj[300];
    snprintf(obj, sizeof obj, "csv:%.250s", base_name(o->labels));
    audit_summary(site, obj, d);
    cJSON_Delete(d);
    return rc || c.refused || c.header_bad ? COVCT_EXIT_FAIL : COVCT_EXIT_OK;
}

/* ---- the command ----------------------------------------------------------- */

static int parse_args(int argc, char **argv, import_opts *o)
{
    memset(o, 0, sizeof *o);
    if (!(o->paths = calloc((size_t)argc + 1, sizeof *o->paths))) {
        covct_cli_error("out of memory");
        return COVCT_EXIT_FAIL;
    }
    static const char *const valued[] = { "--data", "--nifti", "--patient",
                                          "--study-uid", "--series-uid",
                                          "--study-date", "--description",
                                          "--mask", "--labels" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return -1;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = true;
            continue;
        }
        size_t v = 0;
        while (v < sizeof valued / sizeof *valued && strcmp(a, valued[v]))
            v++;
        if (v < sizeof valued / sizeof *valued) {
            if (i + 1 >= argc) {
                covct_cli_error("import: %s needs a value (see covct import "
                                "--help)",
                                a);
                return COVCT_EXIT_USAGE;
            }
            const char *val = argv[++i];
            const char **slot[] = { &o->data, &o->nifti, &o->patient,
                                    &o->study_uid, &o->series_uid,
                                    &o->study_date, &o->description, NULL,
                                    &o->labels };
            if (slot[v]) {
                if (*slot[v]) {
                    covct_cli_error("import: %s given twice", a);
                    return COVCT_EXIT_USAGE;
                }
                *slot[v] = val;
                continue;
            }
            const char *eq = strchr(val, '=');
            size_t kl = eq ? (size_t)(eq - val) : 0;
            if (!eq || !eq[1] ||
                !((kl == 7 && !strncmp(val, "lesions", 7)) ||
                  (kl == 5 && !strncmp(val, "lobes", 5)) ||
                  (kl == 5 && !strncmp(val, "lungs", 5)))) {
                covct_cli_error("import: --mask %s: write KIND=FILE with "
                                "KIND lesions, lobes or lungs",
                                val);
                return COVCT_EXIT_USAGE;
            }
            for (int k = 0; k < o->n_masks; k++)
                if (strlen(o->masks[k].kind) == kl &&
                    !strncmp(o->masks[k].kind, val, kl)) {
                    covct_cli_error("import: two %.*s masks: one per kind "
                                    "and run",
                                    (int)kl, val);
                    return COVCT_EXIT_USAGE;
                }
            snprintf(o->masks[o->n_masks].kind, sizeof o->masks[0].kind,
                     "%.*s", (int)kl, val);
            o->masks[o->n_masks++].path = eq + 1;
            continue;
        }
        if (a[0] == '-' && a[1]) {
            covct_cli_error("import: unknown option '%s' (see covct import "
                            "--help)",
                            a);
            return COVCT_EXIT_USAGE;
        }
        o->paths[o->n_paths++] = argv[i];
    }
    if (!o->data) {
        covct_cli_error("import: --data DIR is required (the site's data "
                        "folder)");
        return COVCT_EXIT_USAGE;
    }
    if (!o->n_paths && !o->nifti && !o->labels) {
        covct_cli_error("import: nothing to import: name DICOM files or "
                        "folders, --nifti FILE or --labels FILE.csv (see "
                        "covct import --help)");
        return COVCT_EXIT_USAGE;
    }
    if (!o->nifti && (o->patient || o->study_uid || o->series_uid ||
                      o->study_date || o->description || o->n_masks)) {
        covct_cli_error("import: --patient, --mask, --study-uid, "
                        "--series-uid, --study-date and --description go "
                        "with --nifti");
        return COVCT_EXIT_USAGE;
    }
    if (o->nifti && !o->patient) {
        covct_cli_error("import: --nifti needs --patient ID (the site's "
                        "patient ID the volume belongs to)");
        return COVCT_EXIT_USAGE;
    }
    const char *uids[] = { o->study_uid, o->series_uid };
    for (int k = 0; k < 2; k++)
        if (uids[k] && !uid_valid(uids[k])) {
            covct_cli_error("import: %s '%s' is not a DICOM UID (1-64 "
                            "digits and dots, PS3.5 9.1)",
                            k ? "--series-uid" : "--study-uid", uids[k]);
            return COVCT_EXIT_USAGE;
        }
    return 0;
}

int covct_cmd_import(int argc, char **argv)
{
    import_opts o;
    int code = parse_args(argc, argv, &o);
    if (code) {
        free(o.paths);
        return code < 0 ? COVCT_EXIT_OK : code;
    }
    covct_site *site = NULL;
    covct_error err = { 0 };
    if (covct_site_open(o.data, &site, &err)) {
        covct_cli_error("%s", err.msg);
        free(o.paths);
        return COVCT_EXIT_FAIL;
    }
    /* each form runs even when one before it refused something: they are
     * independent, and a refusal is always reported */
    int worst = COVCT_EXIT_OK;
    if (o.n_paths)
        worst = import_dicom(site, &o);
    if (o.nifti) {
        code = import_nifti(site, &o);
        worst = code > worst ? code : worst;
    }
    if (o.labels) {
        code = import_labels(site, &o);
        worst = code > worst ? code : worst;
    }
    covct_site_close(site);
    free(o.paths);
    return worst;
}
