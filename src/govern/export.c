/* Research export of a project (docs/internals/export.md): what may
 * leave, de-identified, with a manifest that lets the receiver check
 * every byte.
 *
 * Layout of OUT:
 *   images/PSEUDO/ct-K.nii.gz          CT volume K of the patient (HU)
 *   labels/PSEUDO/ct-K_KIND.nii.gz     its final (or imported) mask
 *   dicom/PSEUDO/ct-K/NNNN.dcm         with --dicom: the instances,
 *                                      de-identified (PS3.15 E.1)
 *   images.csv    one row per volume: pseudonym, split, file, masks, days
 *                 after the patient's first CT, modality, slices
 *   clinical.csv  one row per case: pseudonym, split, diagnosis,
 *                 severity, outcome, category, label status
 *   split.csv     pseudonym, split (train / validation / test)
 *   datasheet.md  what this is, under which approval, how it was made
 *   manifest.sha256  "SHA256  PATH" for every other file (sha256sum -c)
 * Volumes and masks are read and written again by covct (never copied),
 * so nothing from a foreign NIfTI header (descrip, aux_file, intent
 * name) leaves. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "covct/dicom.h"
#include "covct/govern.h"
#include "covct/volume.h"
#include "govern/site_int.h"

#define PATH_CAP 4096

typedef struct patient {
    int64_t id;
    char site_id[80];
    char pseudo[14];
    char split[12];
    char order[65]; /* sort key of the split */
} patient;

typedef struct ctx {
    covct_site *site;
    const char *project;
    int64_t project_id;
    const char *out;
    const covct_export_opts *opts;
    covct_deid_key *key;
    covct_export_result *res;
    bool scope_images, scope_labels, scope_clinical;
    FILE *images_csv, *clinical_csv;
    covct_progress_fn progress;
    void *user;
    const char *today; /* YYYY-MM-DD that judged approval and agreement */
} ctx;

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(FILE *f, const char *v, bool last)
{
    if (!v)
        v = "";
    if (strpbrk(v, ",\"\r\n")) {
        fputc('"', f);
        for (; *v; v++) {
            if (*v == '"')
                fputc('"', f);
            fputc(*v, f);
        }
        fputc('"', f);
    } else {
        fputs(v, f);
    }
    fputc(last ? '\n' : ',', f);
}

static void sha256_text(const char *s, char out[65])
{
    covct_sha256_hex(s, strlen(s), out);
}

static int by_order(const void *a, const void *b)
{
    return strcmp(((const patient *)a)->order, ((const patient *)b)->order);
}

/* Patient-level split: patients sorted by SHA-256(seed, pseudonym), the
 * first train% to train, the next validation% to validation, the rest to
 * test.  One patient, one part, whatever the number of CTs. */
static void assign_split(patient *p, size_t n, const covct_export_opts *o)
{
    unsigned tr = 70, va = 15;
    if (o->split[0] + o->split[1] + o->split[2] == 100) {
        tr = o->split[0];
        va = o->split[1];
    }
    const char *seed = o->seed ? o->seed : "covct";
    for (size_t i = 0; i < n; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "split\n%s\n%s", seed, p[i].pseudo);
        sha256_text(buf, p[i].order);
    }
    qsort(p, n, sizeof *p, by_order);
    size_t n_tr = (size_t)((double)n * tr / 100.0 + 0.5),
           n_va = (size_t)((double)n * va / 100.0 + 0.5);
    if (n_tr > n)
        n_tr = n;
    if (n_tr + n_va > n)
        n_va = n - n_tr;
    for (size_t i = 0; i < n; i++)
        snprintf(p[i].split, sizeof p[i].split, "%s",
                 i < n_tr ? "train" : i < n_tr + n_va ? "validation" : "test");
}

/* A DICOM date YYYYMMDD as a struct tm, false when it is not one. */
static bool parse_da(const char *s, struct tm *t)
{
    memset(t, 0, sizeof *t);
    if (!s || strlen(s) < 8)
        return false;
    int v[8];
    for (int i = 0; i < 8; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v[i] = s[i] - '0';
    }
    t->tm_year = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3] - 1900;
    t->tm_mon = v[4] * 10 + v[5] - 1;
    t->tm_mday = v[6] * 10 + v[7];
    t->tm_hour = 12; /* away from any day boundary */
    return t->tm_mon >= 0 && t->tm_mon < 12 && t->tm_mday >= 1 &&
           t->tm_mday <= 31;
}

/* Whole days from DICOM date a to b, -1 when either is not a date. */
static long days_between(const char *a, const char *b)
{
    struct tm ta, tb;
    if (!parse_da(a, &ta) || !parse_da(b, &tb))
        return -1;
    return (long)((timegm(&tb) - timegm(&ta)) / 86400);
}

/* Read a NIfTI volume and write it again, so that only what covct writes
 * (data and geometry) leaves. */
static covct_rc rewrite_nifti(const char *src, const char *dst,
                              covct_volume **keep, covct_error *err)
{
    covct_volume *v = NULL;
    covct_rc rc = covct_nifti_read(src, &v, err);
    if (!rc)
        rc = covct_nifti_write(v, dst, err);
    if (keep && !rc)
        *keep = v;
    else
        covct_volume_free(v);
    return rc;
}

/* De-identified copies of a series' DICOM instances. */
static covct_rc export_dicom(ctx *c, int64_t series_id, const char *dir,
                             covct_error *err)
{
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        c->site->db,
        "SELECT path FROM instances WHERE series_id = $1 ORDER BY id",
        (covct_db_param[]){ COVCT_DB_INT(series_id) }, 1, &r, err);
    if (rc || (rc = covct_mkdirs(dir, 0750, err))) {
        covct_db_result_free(r);
        return rc;
    }
    covct_deid_opts o;
    covct_deid_opts_default(&o);
    o.project = c->project;
    for (size_t i = 0; i < covct_db_rows(r) && !rc; i++) {
        char src[PATH_CAP], dst[PATH_CAP + 32];
        snprintf(src, sizeof src, "%s/%s", c->site->dir,
                 covct_db_get(r, i, 0));
        snprintf(dst, sizeof dst, "%s/%04zu.dcm", dir, i + 1);
        uint8_t *data = NULL;
        size_t len = 0;
        covct_buf out = { 0 };
        if (!(rc = covct_file_read(src, &data, &len, err)) &&
            !(rc = covct_deid_buffer(data, len, c->key, &o, &out, err)))
            rc = covct_file_write_bytes(dst, out.data, out.len, err);
        if (rc)
            covct_error_prefix(err, "%s: ", src);
        covct_free(data);
        covct_buf_free(&out);
    }
    covct_db_result_free(r);
    return rc;
}

/* The newest label of each kind for a series that may leave: the
 * adjudicated final version, else one imported from a labelled data set;
 * drafts and single readers' versions stay. */
static covct_rc export_masks(ctx *c, int64_t series_id, const char *pseudo,
                             int k, const covct_volume *vol, char *names,
                             size_t cap, covct_error *err)
{
    static const char *const kinds[] = { "lesions", "lobes", "lungs" };
    names[0] = 0;
    for (size_t i = 0; i < 3; i++) {
        covct_db_result *r = NULL;
        covct_rc rc = covct_db_query(
            c->site->db,
            "SELECT path, status FROM image_labels WHERE series_id = $1 AND"
            " kind = $2 AND status IN ('final', 'imported') ORDER BY"
            " CASE status WHEN 'final' THEN 0 ELSE 1 END, id DESC LIMIT 1",
            (covct_db_param[]){ COVCT_DB_INT(series_id),
                                COVCT_DB_TEXT(kinds[i]) },
            2, &r, err);
        if (rc)
            return rc;
        if (!covct_db_rows(r)) {
            covct_db_result_free(r);
            continue;
        }
        char src[PATH_CAP], rel[256], dst[PATH_CAP];
        snprintf(src, sizeof src, "%s/%s", c->site->dir,
                 covct_db_get(r, 0, 0));
        covct_db_result_free(r);
        snprintf(rel, sizeof rel, "labels/%s/ct-%d_%s.nii.gz", pseudo, k,
                 kinds[i]);
        snprintf(dst, sizeof dst, "%s/%s", c->out, rel);
        covct_volume *m = NULL;
        if ((rc = rewrite_nifti(src, dst, &m, err))) {
            covct_error_prefix(err, "mask of series %" PRId64 ": ",
                               series_id);
            return rc;
        }
        bool same = !vol || (m->nx == vol->nx && m->ny == vol->ny &&
                             m->nz == vol->nz);
        covct_volume_free(m);
        if (!same)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "the %s mask of series %" PRId64 " (%s) does "
                             "not have the volume's size",
                             kinds[i], series_id, src);
        snprintf(names + strlen(names), cap - strlen(names), "%s%s",
                 names[0] ? ";" : "", rel);
        c->res->masks++;
    }
    return COVCT_OK;
}

static covct_rc export_patient(ctx *c, const patient *p, covct_error *err)
{
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        c->site->db,
        "SELECT se.id, se.modality, se.volume_path, st.study_date,"
        " (SELECT path FROM instances i WHERE i.series_id = se.id"
        "  ORDER BY i.id LIMIT 1)"
        " FROM series se JOIN studies st ON st.id = se.study_id"
        " WHERE st.patient_id = $1 ORDER BY st.study_date, st.id, se.id",
        (covct_db_param[]){ COVCT_DB_INT(p->id) }, 1, &r, err);
    if (rc)
        return rc;
    const char *first_date = covct_db_rows(r) ? covct_db_get(r, 0, 3) : NULL;
    int k = 0;
    for (size_t i = 0; i < covct_db_rows(r) && !rc; i++) {
        int64_t sid = covct_db_get_int(r, i, 0, 0);
        const char *modality = covct_db_get(r, i, 1),
                   *vpath = covct_db_get(r, i, 2),
                   *date = covct_db_get(r, i, 3),
                   *inst = covct_db_get(r, i, 4);
        if (!vpath && (!modality || strcmp(modality, "CT") || !inst))
            continue; /* results (SEG, SR), scouts of other modalities */
        k++;
        char rel[256] = "", path[PATH_CAP], dir[PATH_CAP], masks[1024] = "";
        covct_volume *vol = NULL;
        snprintf(dir, sizeof dir, "%s/images/%s", c->out, p->pseudo);
        if (c->scope_images) {
            if ((rc = covct_mkdirs(dir, 0750, err)))
                break;
            snprintf(rel, sizeof rel, "images/%s/ct-%d.nii.gz", p->pseudo,
                     k);
            snprintf(path, sizeof path, "%s/%s", c->out, rel);
            if (vpath) {
                char src[PATH_CAP];
                snprintf(src, sizeof src, "%s/%s", c->site->dir, vpath);
                rc = rewrite_nifti(src, path, &vol, err);
            } else {
                char sdir[PATH_CAP];
                snprintf(sdir, sizeof sdir, "%s/%s", c->site->dir, inst);
                char *slash = strrchr(sdir, '/');
                if (slash)
                    *slash = 0;
                if (!(rc = covct_volume_load_path(sdir, 0, &vol, err)))
                    rc = covct_nifti_write(vol, path, err);
            }
            if (rc) {
                covct_error_prefix(err, "series %" PRId64 ": ", sid);
                break;
            }
            c->res->series++;
            if (c->opts->dicom && !vpath) {
                snprintf(dir, sizeof dir, "%s/dicom/%s/ct-%d", c->out,
                         p->pseudo, k);
                if ((rc = export_dicom(c, sid, dir, err)))
                    break;
            }
        }
        if (c->scope_labels) {
            snprintf(dir, sizeof dir, "%s/labels/%s", c->out, p->pseudo);
            if (!(rc = covct_mkdirs(dir, 0750, err)))
                rc = export_masks(c, sid, p->pseudo, k, vol, masks,
                                  sizeof masks, err);
        }
        if (!rc && (rel[0] || masks[0])) {
            char days[24] = "", slices[24] = "";
            long d = days_between(first_date, date);
            if (d >= 0)
                snprintf(days, sizeof days, "%ld", d);
            if (vol)
                snprintf(slices, sizeof slices, "%u", vol->nz);
            csv_field(c->images_csv, p->pseudo, false);
            csv_field(c->images_csv, p->split, false);
            csv_field(c->images_csv, rel, false);
            csv_field(c->images_csv, masks, false);
            csv_field(c->images_csv, days, false);
            csv_field(c->images_csv, modality ? modality : "CT", false);
            csv_field(c->images_csv, slices, true);
        }
        covct_volume_free(vol);
    }
    covct_db_result_free(r);
    if (rc || !c->scope_clinical)
        return rc;
    /* one row per case: the final clinical label, else an imported one */
    if ((rc = covct_db_query(
             c->site->db,
             "SELECT (SELECT COUNT(*) FROM cases c2 WHERE c2.patient_id ="
             " c.patient_id AND c2.id <= c.id), l.diagnosis, l.severity,"
             " l.outcome, l.category, l.status FROM cases c JOIN"
             " clinical_labels l ON l.id = (SELECT l2.id FROM"
             " clinical_labels l2 WHERE l2.case_id = c.id AND l2.status IN"
             " ('final', 'imported') ORDER BY CASE l2.status WHEN 'final'"
             " THEN 0 ELSE 1 END, l2.id DESC LIMIT 1)"
             " WHERE c.patient_id = $1 ORDER BY c.id",
             (covct_db_param[]){ COVCT_DB_INT(p->id) }, 1, &r, err)))
        return rc;
    for (size_t i = 0; i < covct_db_rows(r); i++) {
        csv_field(c->clinical_csv, p->pseudo, false);
        csv_field(c->clinical_csv, p->split, false);
        for (size_t col = 0; col < 6; col++)
            csv_field(c->clinical_csv, covct_db_get(r, i, col), col == 5);
    }
    covct_db_result_free(r);
    return COVCT_OK;
}

/* ---- manifest -------------------------------------------------------------- */
typedef struct names {
    char **v;
    size_t n, cap;
} names;

static covct_rc list_files(const char *root, const char *rel, names *out,
                           covct_error *err)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d)
        return COVCT_ERR(err, COVCT_ERR_IO, "cannot list %s: %s", path,
                         strerror(errno));
    covct_rc rc = COVCT_OK;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[PATH_CAP], full[2 * PATH_CAP + 2];
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "",
                 e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (stat(full, &st) != 0) {
            rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot stat %s", full);
        } else if (S_ISDIR(st.st_mode)) {
            rc = list_files(root, sub, out, err);
        } else if (strcmp(sub, "manifest.sha256")) {
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 64;
                char **v = covct_realloc(out->v, cap * sizeof *v);
                if (!v) {
                    rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
                    break;
                }
                out->v = v;
                out->cap = cap;
            }
            if (!(out->v[out->n] = covct_strdup(sub)))
                rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            else
                out->n++;
        }
    }
    closedir(d);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static covct_rc write_manifest(ctx *c, covct_error *err)
{
    names list = { 0 };
    covct_rc rc = list_files(c->out, "", &list, err);
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/manifest.sha256", c->out);
    FILE *f = rc ? NULL : fopen(path, "w");
    if (!rc && !f)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", path,
                       strerror(errno));
    if (!rc) {
        qsort(list.v, list.n, sizeof *list.v, by_name);
        for (size_t i = 0; i < list.n && !rc; i++) {
            char full[PATH_CAP], hex[65];
            snprintf(full, sizeof full, "%s/%s", c->out, list.v[i]);
            if (!(rc = covct_sha256_file(full, hex, err)))
                fprintf(f, "%s  %s\n", hex, list.v[i]);
        }
        c->res->files = list.n;
        if (fclose(f) != 0 && !rc)
            rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s", path);
    }
    for (size_t i = 0; i < list.n; i++)
        covct_free(list.v[i]);
    covct_free(list.v);
    if (!rc)
        rc = covct_sha256_file(path, c->res->manifest_sha256, err);
    return rc;
}

/* ---- datasheet ------------------------------------------------------------- */
static covct_rc write_datasheet(ctx *c, int64_t approval_id, covct_error *err)
{
    covct_db_result *p = NULL, *a = NULL, *d = NULL;
    covct_rc rc = covct_db_query(
        c->site->db,
        "SELECT title, purpose, investigator FROM projects WHERE id = $1",
        (covct_db_param[]){ COVCT_DB_INT(c->project_id) }, 1, &p, err);
    if (!rc)
        rc = covct_db_query(
            c->site->db,
            "SELECT committee, number, granted_on, expires_on, purposes,"
            " data_scope FROM approvals WHERE id = $1",
            (covct_db_param[]){ COVCT_DB_INT(approval_id) }, 1, &a, err);
    if (!rc)
        rc = covct_db_query(
            c->site->db,
            "SELECT party, signed_on, expires_on, terms FROM agreements"
            " WHERE project_id = $1 ORDER BY id",
            (covct_db_param[]){ COVCT_DB_INT(c->project_id) }, 1, &d, err);
    char path[PATH_CAP], now[COVCT_DB_TIME_LEN];
    snprintf(path, sizeof path, "%s/datasheet.md", c->out);
    FILE *f = rc ? NULL : fopen(path, "w");
    if (!rc && !f)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot create %s: %s", path,
                       strerror(errno));
    if (!rc) {
        const covct_export_result *r = c->res;
        covct_db_now(now);
#define V(res, i, j) \
    (covct_db_get((res), (i), (j)) ? covct_db_get((res), (i), (j)) : "-")
        fprintf(f,
                "# Datasheet: project %s\n\n"
                "Made by covct on %s from the case database of one site.\n\n"
                "## Purpose and permission\n\n"
                "- Title: %s\n- Purpose: %s\n- Investigator: %s\n"
                "- Ethics approval: %s, number %s, valid %s to %s\n"
                "- Allowed purposes: %s\n- Data released (scope): %s\n",
                c->project, now, V(p, 0, 0), V(p, 0, 1), V(p, 0, 2),
                V(a, 0, 0), V(a, 0, 1), V(a, 0, 2), V(a, 0, 3), V(a, 0, 4),
                V(a, 0, 5));
        for (size_t i = 0; i < covct_db_rows(d); i++) {
            /* every agreement on record, each marked as judged today: the
             * receiver sees which one the release falls under */
            const char *to = covct_db_get(d, i, 2);
            int w = covct_date_window(c->today, covct_db_get(d, i, 1), to);
            const char *state = w < 0   ? "not yet in force"
                                : w > 0 ? "EXPIRED"
                                        : "in force";
            fprintf(f, "- Data use agreement with %s, signed %s, expires "
                       "%s (%s on %s); terms: %s\n",
                    V(d, i, 0), V(d, i, 1), to && *to ? to : "never", state,
                    c->today, V(d, i, 3));
        }
#undef V
        fprintf(f,
                "\n## Composition\n\n"
                "- Patients included: %zu (consent given, or waived by the "
                "committee)\n"
                "- Left out: %zu who withdrew consent, %zu without consent "
                "on record\n"
                "- CT volumes: %zu; masks: %zu\n"
                "- Split by patient (never one patient in two parts): see "
                "split.csv; train/validation/test %u/%u/%u %%, seed '%s'\n",
                r->patients, r->withdrawn, r->no_consent, r->series, r->masks,
                c->opts->split[0] + c->opts->split[1] + c->opts->split[2] ==
                        100
                    ? c->opts->split[0]
                    : 70,
                c->opts->split[0] + c->opts->split[1] + c->opts->split[2] ==
                        100
                    ? c->opts->split[1]
                    : 15,
                c->opts->split[0] + c->opts->split[1] + c->opts->split[2] ==
                        100
                    ? c->opts->split[2]
                    : 15,
                c->opts->seed ? c->opts->seed : "covct");
        fprintf(f,
                "\n## How it was made\n\n"
                "- Patients are named by pseudonyms, a keyed hash (HMAC-SHA256)"
                " of the site's patient ID with the project's key: the same "
                "patient has the same pseudonym in every export of this "
                "project, and another in other projects.\n"
                "- Volumes: Hounsfield units, NIfTI-1, written by covct "
                "(geometry from DICOM; no header text from the source).\n"
                "- Masks: the adjudicated final version of each label, or a "
                "label imported from a labelled data set; AI drafts and "
                "single readers' versions are not released. Lesion masks: "
                "0 background, 1 ground glass, 2 consolidation.\n"
                "- images.csv gives each CT's day relative to the patient's "
                "first CT; no calendar dates are released.\n"
                "- clinical.csv: diagnosis, CT severity score (0-25), "
                "outcome, RSNA category; free-text comments are not "
                "released.\n"
                "%s"
                "- manifest.sha256 lists the SHA-256 of every file "
                "(check with: sha256sum -c manifest.sha256).\n",
                c->opts->dicom
                    ? "- dicom/: the CT instances de-identified after DICOM "
                      "PS3.15 Annex E (Basic Application Level "
                      "Confidentiality Profile with options; see De-"
                      "identification Method in each file).\n"
                    : "");
        if (fclose(f) != 0)
            rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot write %s", path);
    }
    covct_db_result_free(p);
    covct_db_result_free(a);
    covct_db_result_free(d);
    return rc;
}

/* ---- the export ------------------------------------------------------------ */
static covct_rc load_patients(ctx *c, patient **out, size_t *n,
                              covct_error *err)
{
    covct_db_result *r = NULL;
    *out = NULL;
    *n = 0;
    covct_rc rc = covct_db_query(
        c->site->db,
        "SELECT p.id, p.site_patient_id FROM project_patients pp JOIN"
        " patients p ON p.id = pp.patient_id WHERE pp.project_id = $1"
        " ORDER BY p.id",
        (covct_db_param[]){ COVCT_DB_INT(c->project_id) }, 1, &r, err);
    if (rc)
        return rc;
    size_t rows = covct_db_rows(r);
    patient *p = covct_calloc(rows ? rows : 1, sizeof *p);
    if (!p) {
        covct_db_result_free(r);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < rows && !rc; i++) {
        char status[16];
        int64_t id = covct_db_get_int(r, i, 0, 0);
        if ((rc = covct_consent_status(c->site, id, c->project_id, status,
                                       err)))
            break;
        if (!strcmp(status, "withdrawn")) {
            c->res->withdrawn++;
            continue;
        }
        if (!strcmp(status, "none")) {
            c->res->no_consent++;
            continue;
        }
        patient *q = &p[(*n)++];
        q->id = id;
        snprintf(q->site_id, sizeof q->site_id, "%s", covct_db_get(r, i, 1));
        rc = covct_deid_pseudonym(c->key, c->project, q->site_id, q->pseudo,
                                  err);
    }
    covct_db_result_free(r);
    if (rc) {
        covct_free(p);
        *n = 0;
        return rc;
    }
    *out = p;
    return COVCT_OK;
}

covct_rc covct_export_request(covct_site *site, const char *project,
                              int64_t *request_id, covct_error *err)
{
    int64_t pid = 0;
    char obj[96], now[COVCT_DB_TIME_LEN];
    snprintf(obj, sizeof obj, "project:%s", project);
    covct_rc rc = covct_project_find(site, project, &pid, err);
    if (!rc)
        rc = site_begin_write(site, "export.request", obj, err);
    if (rc)
        return rc;
    covct_db_now(now);
    rc = covct_db_query_int(
        site->db,
        "INSERT INTO exports (project_id, requested_by, started_at, status)"
        " VALUES ($1, $2, $3, 'requested') RETURNING id",
        (covct_db_param[]){ COVCT_DB_INT(pid), COVCT_DB_TEXT(site->actor),
                            COVCT_DB_TEXT(now) },
        3, request_id, err);
    char detail[64];
    snprintf(detail, sizeof detail, "{\"request\":%" PRId64 "}",
             rc ? 0 : *request_id);
    return site_end_write(site, rc, "export.request", obj, detail, err);
}

static covct_rc refuse(covct_site *site, const char *obj, const char *why,
                       covct_export_result *res, covct_error *err)
{
    snprintf(res->refused, sizeof res->refused, "%s", why);
    /* the reason is covct's own text: safe in a JSON string once quotes
     * and backslashes are left out */
    char detail[400], clean[300];
    size_t j = 0;
    for (size_t i = 0; why[i] && j < sizeof clean - 1; i++)
        if (why[i] != '"' && why[i] != '\\' &&
            (unsigned char)why[i] >= 0x20)
            clean[j++] = why[i];
    clean[j] = 0;
    snprintf(detail, sizeof detail, "{\"reason\":\"%s\"}", clean);
    covct_error aerr = { 0 };
    if (covct_audit(site, "export.refused", obj, detail, &aerr))
        return COVCT_ERR(err, aerr.rc, "%s", aerr.msg);
    return COVCT_ERR(err, COVCT_ERR_ARG, "export of %s refused: %s", obj, why);
}

/* A data use agreement with the receiver in force on `today`: signed on
 * or before it and not expired (no expiry date: open-ended).  Sets `why`
 * when there is none. */
static covct_rc agreement_in_force(covct_site *site, int64_t project_id,
                                   const char *today, bool *ok,
                                   char why[256], covct_error *err)
{
    covct_db_result *r = NULL;
    covct_rc rc = covct_db_query(
        site->db,
        "SELECT party, signed_on, expires_on FROM agreements"
        " WHERE project_id = $1 ORDER BY id DESC",
        (covct_db_param[]){ COVCT_DB_INT(project_id) }, 1, &r, err);
    if (rc)
        return rc;
    *ok = false;
    snprintf(why, 256,
             "the project has no data use agreement on record (record the "
             "signed one with: covct project agreement NAME --party WHO "
             "--signed YYYY-MM-DD [--expires YYYY-MM-DD])");
    /* the reason given is the newest agreement's */
    for (size_t i = 0; i < covct_db_rows(r) && !*ok; i++) {
        const char *party = covct_db_get(r, i, 0),
                   *from = covct_db_get(r, i, 1),
                   *to = covct_db_get(r, i, 2);
        int w = covct_date_window(today, from, to);
        if (w == 0)
            *ok = true;
        else if (i > 0)
            continue;
        else if (w < 0)
            snprintf(why, 256,
                     "the data use agreement with %.80s is in force only "
                     "from %s",
                     party ? party : "?", from);
        else
            snprintf(why, 256,
                     "the data use agreement with %.80s expired on %s "
                     "(record the renewed one with: covct project "
                     "agreement)",
                     party ? party : "?", to);
    }
    if (*ok)
        why[0] = 0;
    covct_db_result_free(r);
    return COVCT_OK;
}

covct_rc covct_export(covct_site *site, const char *project,
                      const char *out_dir, const covct_export_opts *opts,
                      covct_export_result *res, covct_progress_fn progress,
                      void *user, covct_error *err)
{
    memset(res, 0, sizeof *res);
    covct_export_opts defaults = { 0 };
    if (!opts)
        opts = &defaults;
    char obj[96], why[256], scope[128], today[11];
    snprintf(obj, sizeof obj, "project:%s", project);
    if (opts->today)
        snprintf(today, sizeof today, "%s", opts->today);
    else
        covct_today(today);
    ctx c = { .site = site, .project = project, .out = out_dir,
              .opts = opts, .res = res, .progress = progress, .user = user,
              .today = today };
    covct_rc rc;
    int64_t approval = 0;
    bool agreed = false;
    if ((rc = covct_site_require(site, "export.run", obj, err)))
        return rc;
    /* Every refusal below is an audit entry with its reason: an attempt
     * to export is on record whatever stopped it. */
    covct_error e2 = { 0 };
    if (covct_project_find(site, project, &c.project_id, &e2))
        return refuse(site, obj, e2.msg, res, err);
    if ((rc = covct_project_approval_in_force(site, c.project_id, today,
                                              &approval, scope, why, err)))
        return rc;
    if (opts->request_id) {
        int64_t n = 0;
        if ((rc = covct_db_query_int(
                 site->db,
                 "SELECT COUNT(*) FROM exports WHERE id = $1 AND"
                 " project_id = $2 AND status = 'requested'",
                 (covct_db_param[]){ COVCT_DB_INT(opts->request_id),
                                     COVCT_DB_INT(c.project_id) },
                 2, &n, err)))
            return rc;
        if (!n) {
            char w[256];
            snprintf(w, sizeof w,
                     "no open export request %" PRId64 " for project %.64s",
                     opts->request_id, project);
            return refuse(site, obj, w, res, err);
        }
    }
    if (!approval)
        return refuse(site, obj, why, res, err);
    /* The approval allows the research; the data use agreement binds the
     * receiver to its terms.  Data leave only under both. */
    if ((rc = agreement_in_force(site, c.project_id, today, &agreed, why,
                                 err)))
        return rc;
    if (!agreed)
        return refuse(site, obj, why, res, err);
    c.scope_images = strstr(scope, "images") != NULL;
    c.scope_labels = strstr(scope, "labels") != NULL;
    c.scope_clinical = strstr(scope, "clinical") != NULL;

    /* never into a folder with something in it: an export is one whole */
    DIR *d = opendir(out_dir);
    if (d) {
        struct dirent *e;
        bool empty = true;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                empty = false;
        closedir(d);
        if (!empty) {
            char w[256];
            snprintf(w, sizeof w,
                     "the output folder %.180s is not empty: export into a "
                     "new folder",
                     out_dir);
            return refuse(site, obj, w, res, err);
        }
    }
    char keypath[PATH_CAP];
    if (opts->key_path)
        snprintf(keypath, sizeof keypath, "%s", opts->key_path);
    else
        snprintf(keypath, sizeof keypath, "%s/keys/project-%s.key", site->dir,
                 project);
    covct_error_clear(&e2);
    if (covct_deid_key_load(keypath, &c.key, &e2))
        return refuse(site, obj, e2.msg, res, err);
    patient *pts = NULL;
    size_t n = 0;
    char path[PATH_CAP];
    if ((rc = covct_mkdirs(out_dir, 0750, err)) ||
        (rc = load_patients(&c, &pts, &n, err)))
        goto done;
    res->patients = n;
    assign_split(pts, n, opts);

    snprintf(path, sizeof path, "%s/split.csv", out_dir);
    FILE *split = fopen(path, "w");
    snprintf(path, sizeof path, "%s/images.csv", out_dir);
    c.images_csv = fopen(path, "w");
    if (c.scope_clinical) {
        snprintf(path, sizeof path, "%s/clinical.csv", out_dir);
        c.clinical_csv = fopen(path, "w");
    }
    if (!split || !c.images_csv || (c.scope_clinical && !c.clinical_csv)) {
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot create files in %s: %s",
                       out_dir, strerror(errno));
    } else {
        fputs("pseudonym,split\n", split);
        fputs("pseudonym,split,image,masks,day,modality,slices\n",
              c.images_csv);
        if (c.clinical_csv)
            fputs("pseudonym,split,case,diagnosis,severity,outcome,"
                  "category,label_status\n",
                  c.clinical_csv);
        for (size_t i = 0; i < n && !rc; i++) {
            csv_field(split, pts[i].pseudo, false);
            csv_field(split, pts[i].split, true);
            if (progress)
                progress((double)i / (double)(n ? n : 1), pts[i].pseudo,
                         user);
            rc = export_patient(&c, &pts[i], err);
        }
    }
    if (split && fclose(split) != 0 && !rc)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot write split.csv");
    if (c.images_csv && fclose(c.images_csv) != 0 && !rc)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot write images.csv");
    if (c.clinical_csv && fclose(c.clinical_csv) != 0 && !rc)
        rc = COVCT_ERR(err, COVCT_ERR_IO, "cannot write clinical.csv");
    if (!rc)
        rc = write_datasheet(&c, approval, err);
    if (!rc)
        rc = write_manifest(&c, err);
    if (!rc) {
        char detail[512], now[COVCT_DB_TIME_LEN];
        covct_db_now(now);
        snprintf(detail, sizeof detail,
                 "{\"approval\":%" PRId64 ",\"patients\":%zu,"
                 "\"withdrawn\":%zu,\"no_consent\":%zu,\"series\":%zu,"
                 "\"masks\":%zu,\"files\":%zu,\"scope\":\"%s\","
                 "\"manifest_sha256\":\"%s\"}",
                 approval, res->patients, res->withdrawn, res->no_consent,
                 res->series, res->masks, res->files, scope,
                 res->manifest_sha256);
        if (!(rc = covct_db_begin(site->db, "audit_head", err))) {
            if (opts->request_id)
                rc = covct_db_query(
                    site->db,
                    "UPDATE exports SET finished_at = $1, status = 'done',"
                    " out_dir = $2, patients = $3, excluded = $4,"
                    " manifest_sha256 = $5 WHERE id = $6",
                    (covct_db_param[]){
                        COVCT_DB_TEXT(now), COVCT_DB_TEXT(out_dir),
                        COVCT_DB_INT((int64_t)res->patients),
                        COVCT_DB_INT(
                            (int64_t)(res->withdrawn + res->no_consent)),
                        COVCT_DB_TEXT(res->manifest_sha256),
                        COVCT_DB_INT(opts->request_id) },
                    6, NULL, err);
            else
                rc = covct_db_query(
                    site->db,
                    "INSERT INTO exports (project_id, requested_by,"
                    " started_at, finished_at, status, out_dir, patients,"
                    " excluded, manifest_sha256) VALUES ($1, $2, $3, $3,"
                    " 'done', $4, $5, $6, $7)",
                    (covct_db_param[]){
                        COVCT_DB_INT(c.project_id),
                        COVCT_DB_TEXT(site->actor), COVCT_DB_TEXT(now),
                        COVCT_DB_TEXT(out_dir),
                        COVCT_DB_INT((int64_t)res->patients),
                        COVCT_DB_INT(
                            (int64_t)(res->withdrawn + res->no_consent)),
                        COVCT_DB_TEXT(res->manifest_sha256) },
                    7, NULL, err);
            rc = site_end_write(site, rc, "export", obj, detail, err);
        }
    }
done:
    if (rc) { /* the attempt is on record too */
        char detail[400], clean[300];
        size_t j = 0;
        for (size_t i = 0; err && err->msg[i] && j < sizeof clean - 1; i++)
            if (err->msg[i] != '"' && err->msg[i] != '\\' &&
                (unsigned char)err->msg[i] >= 0x20)
                clean[j++] = err->msg[i];
        clean[j] = 0;
        snprintf(detail, sizeof detail, "{\"error\":\"%s\"}", clean);
        covct_error aerr = { 0 };
        if (covct_audit(site, "export.failed", obj, detail, &aerr))
            covct_log(COVCT_LOG_ERROR, "audit: %s", aerr.msg);
    }
    covct_free(pts);
    covct_deid_key_free(c.key);
    return rc;
}
