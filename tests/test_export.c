/* The case database's labels and governance end to end, on SQLite or
 * (under tests/with-postgres.sh) PostgreSQL: label versions and reader
 * rules, projects, approvals, consent, and the research export (refused
 * without an approval in force, patients without consent left out, both
 * attempts audited, files checked with sha256sum).  Volumes here are
 * synthetic 8x8x4 blocks made by the test. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/govern.h"
#include "covct/site.h"
#include "covct/volume.h"
#include "test.h"

static char tmpdir[] = "/tmp/covct-test-export.XXXXXX";
static char dir[4200];
static covct_site *site;

static void write_volume(const char *rel, int value)
{
    covct_volume *v = NULL;
    covct_error err = { 0 };
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    CHECK(covct_volume_new(8, 8, 4, COVCT_DTYPE_INT16, &v, &err) == COVCT_OK);
    int16_t *d = v->data;
    for (size_t i = 0; i < covct_volume_voxels(v); i++)
        d[i] = (int16_t)(i % 7 == 0 ? value : -800);
    v->spacing[0] = v->spacing[1] = 0.7;
    v->spacing[2] = 2.0;
    CHECKF(covct_nifti_write(v, path, &err) == COVCT_OK, "%s", err.msg);
    covct_volume_free(v);
}

/* A reader's lesion mask with a pattern of its own (synthetic). */
static void write_pattern(const char *rel, int m1, int m2)
{
    covct_volume *v = NULL;
    covct_error err = { 0 };
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    CHECK(covct_volume_new(8, 8, 4, COVCT_DTYPE_INT16, &v, &err) == COVCT_OK);
    int16_t *d = v->data;
    for (size_t i = 0; i < covct_volume_voxels(v); i++)
        d[i] = (int16_t)(i % (size_t)m1 == 0 ? 1 : i % (size_t)m2 == 0 ? 2 : 0);
    CHECKF(covct_nifti_write(v, path, &err) == COVCT_OK, "%s", err.msg);
    covct_volume_free(v);
}

static int64_t series_of(const char *pid, const char *date, const char *uid)
{
    covct_error err = { 0 };
    int64_t p = 0, st = 0, se = 0, cs = 0;
    char rel[128], study[80];
    snprintf(rel, sizeof rel, "volumes/%s.nii", uid);
    snprintf(study, sizeof study, "%s.1", uid);
    write_volume(rel, 40);
    CHECKF(covct_case_patient(site, pid, "DOE^JANE", "19700101", "F", &p,
                              &err) == COVCT_OK,
           "%s", err.msg);
    CHECKF(covct_case_study(site, p, study, date, "CHEST", &st, &cs, &err) ==
               COVCT_OK,
           "%s", err.msg);
    CHECKF(covct_case_series(site, st, uid, "CT", "LUNG", rel,
                             "00000000000000000000000000000000000000000000"
                             "00000000000000000000",
                             &se, &err) == COVCT_OK,
           "%s", err.msg);
    return se;
}

static int64_t mask(int64_t series, const char *status, const char *source,
                    int64_t parent, covct_rc expect)
{
    static int n;
    char rel[64];
    snprintf(rel, sizeof rel, "labels/m%d.nii", ++n);
    write_volume(rel, 1);
    covct_error err = { 0 };
    int64_t id = 0;
    const char *kind = !strcmp(status, COVCT_LABEL_AI_DRAFT) ? "model"
                       : !strcmp(status, COVCT_LABEL_IMPORTED) ? "import"
                                                               : "reader";
    covct_rc rc = covct_label_image_add(
        site, series, "lesions", status, kind, source, rel,
        "1111111111111111111111111111111111111111111111111111111111111111",
        parent, &id, &err);
    CHECKF(rc == expect, "label %s: %s", status, err.msg);
    return id;
}

static void add_user(const char *name, const char *role)
{
    covct_error err = { 0 };
    char now[COVCT_DB_TIME_LEN];
    covct_db_now(now);
    CHECK(covct_db_query(covct_site_db(site),
                         "INSERT INTO users (name, role, created_at) VALUES"
                         " ($1, $2, $3)",
                         (covct_db_param[]){ COVCT_DB_TEXT(name),
                                             COVCT_DB_TEXT(role),
                                             COVCT_DB_TEXT(now) },
                         3, NULL, &err) == COVCT_OK);
}

static void act(const char *user)
{
    covct_error err = { 0 };
    covct_site_close(site);
    CHECK(covct_site_open(dir, &site, &err) == COVCT_OK);
    if (user)
        CHECKF(covct_site_act_as(site, user, &err) == COVCT_OK, "%s",
               err.msg);
}

static int64_t count(const char *sql)
{
    int64_t n = -1;
    covct_error err = { 0 };
    CHECKF(covct_db_query_int(covct_site_db(site), sql, NULL, 0, &n, &err) ==
               COVCT_OK,
           "%s", err.msg);
    return n;
}

static bool exists(const char *out, const char *rel)
{
    char p[4400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", out, rel);
    return stat(p, &st) == 0;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        return 1;
    snprintf(dir, sizeof dir, "%s/site", tmpdir);
    covct_error err = { 0 };
    CHECKF(covct_site_open(dir, &site, &err) == COVCT_OK, "%s", err.msg);
    if (!site)
        return test_report();
    char p1[4400];
    snprintf(p1, sizeof p1, "%s/volumes", dir);
    mkdir(p1, 0750);
    snprintf(p1, sizeof p1, "%s/labels", dir);
    mkdir(p1, 0750);

    /* four patients; PA has a follow-up CT in the same case */
    int64_t sa = series_of("PA", "20200201", "1.2.3.1");
    int64_t sa2 = series_of("PA", "20200211", "1.2.3.11");
    int64_t sb = series_of("PB", "20200301", "1.2.3.2");
    int64_t sc = series_of("PC", "20200401", "1.2.3.3");
    series_of("PD", "20200501", "1.2.3.4");
    CHECK(count("SELECT COUNT(*) FROM cases") == 4);
    /* a study UID seen under another patient is refused, not moved */
    int64_t pb_id = 0, st_x = 0, se_x = 0;
    CHECK(covct_case_patient(site, "PB", NULL, NULL, NULL, &pb_id, &err) ==
          COVCT_OK);
    CHECK(covct_case_study(site, pb_id, "1.2.3.1.1", NULL, NULL, &st_x, NULL,
                           &err) == COVCT_ERR_CORRUPT &&
          strstr(err.msg, "another patient"));
    covct_error_clear(&err);
    CHECK(covct_case_study(site, pb_id, "1.2.3.2.1", NULL, NULL, &st_x, NULL,
                           &err) == COVCT_OK);
    CHECK(covct_case_series(site, st_x, "1.2.3.1", NULL, NULL, NULL, NULL,
                            &se_x, &err) == COVCT_ERR_CORRUPT);
    covct_error_clear(&err);
    CHECK(count("SELECT COUNT(DISTINCT case_id) FROM studies s JOIN patients"
                " p ON p.id = s.patient_id WHERE p.site_patient_id = 'PA'") ==
          1);

    /* label versions: AI draft, two readers, adjudication */
    add_user("r1", "radiologist");
    add_user("r2", "radiologist");
    add_user("ann", "annotator");
    add_user("rita", "researcher");
    int64_t draft = mask(sa, COVCT_LABEL_AI_DRAFT, "lesions-unet@1", 0,
                         COVCT_OK);
    act("r1");
    int64_t v1 = mask(sa, COVCT_LABEL_READER1, NULL, draft, COVCT_OK);
    /* the same reader cannot also be the second reader */
    mask(sa, COVCT_LABEL_READER2, NULL, draft, COVCT_ERR_ARG);
    act("r2");
    int64_t v2 = mask(sa, COVCT_LABEL_READER2, NULL, draft, COVCT_OK);
    act("ann");
    mask(sa, COVCT_LABEL_FINAL, NULL, v1, COVCT_ERR_ARG); /* not allowed */
    /* a parent from another series is refused */
    act("r1");
    mask(sa2, COVCT_LABEL_READER1, NULL, v1, COVCT_ERR_ARG);
    int64_t fin = mask(sa, COVCT_LABEL_FINAL, NULL, v2, COVCT_OK);
    CHECK(fin > v2 && v2 > v1);
    act(NULL);
    mask(sb, COVCT_LABEL_AI_DRAFT, "lesions-unet@1", 0, COVCT_OK);
    mask(sc, COVCT_LABEL_IMPORTED, "import:public.nii", 0, COVCT_OK);
    /* the versions keep their provenance */
    CHECK(count("SELECT COUNT(*) FROM image_labels WHERE source = 'user:r2'"
                " AND status = 'reader-2'") == 1);

    /* clinical labels */
    covct_clinical_label cl = { "covid-19-confirmed", 12, "recovered",
                                "typical", "comment with PA inside" };
    int64_t lid = 0, case_a = 0;
    CHECK(covct_db_query_int(covct_site_db(site),
                             "SELECT case_id FROM studies WHERE study_uid ="
                             " '1.2.3.1.1'",
                             NULL, 0, &case_a, &err) == COVCT_OK);
    CHECKF(covct_label_clinical_add(site, case_a, &cl, COVCT_LABEL_FINAL, 0,
                                    &lid, &err) == COVCT_OK,
           "%s", err.msg);
    covct_clinical_label bad = { "flu", -1, NULL, NULL, NULL };
    CHECK(covct_label_clinical_add(site, case_a, &bad, COVCT_LABEL_FINAL, 0,
                                   &lid, &err) == COVCT_ERR_ARG);
    bad.diagnosis = "normal";
    bad.severity = 26;
    covct_error_clear(&err);
    CHECK(covct_label_clinical_add(site, case_a, &bad, COVCT_LABEL_FINAL, 0,
                                   &lid, &err) == COVCT_ERR_ARG);

    /* a project; export refused without approval, then with an expired
     * one; both refusals in the audit log */
    int64_t proj = 0;
    CHECKF(covct_project_create(site, "lung-ai", "Lung AI", "research",
                                "Dr Who", &proj, &err) == COVCT_OK,
           "%s", err.msg);
    const char *pts[] = { "PA", "PB", "PC", "PD" };
    for (int i = 0; i < 4; i++)
        CHECK(covct_project_add_patient(site, proj, pts[i], &err) ==
              COVCT_OK);
    char out[4400], out2_day[4400];
    snprintf(out, sizeof out, "%s/out0", tmpdir);
    covct_export_result res;
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out, NULL, &res, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECKF(strstr(err.msg, "refused") && strstr(res.refused, "no ethics"),
           "%s", err.msg);
    covct_approval old = { "EC of Test Hospital", "EC-2020-001", "2020-01-01",
                           "2020-12-31", "research", "images,labels,clinical" };
    int64_t aid = 0;
    CHECKF(covct_project_approve(site, proj, &old, &aid, &err) == COVCT_OK,
           "%s", err.msg);
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out, NULL, &res, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECKF(strstr(res.refused, "expired on 2020-12-31"), "%s", res.refused);
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action ="
                " 'export.refused'") == 2);
    CHECK(!exists(out, "")); /* nothing written */
    /* bad approvals are refused with a reason */
    covct_approval wrong = old;
    wrong.expires_on = "2019-12-31";
    CHECK(covct_project_approve(site, proj, &wrong, &aid, &err) ==
          COVCT_ERR_ARG);
    wrong = old;
    wrong.data_scope = "images,genomes";
    covct_error_clear(&err);
    CHECK(covct_project_approve(site, proj, &wrong, &aid, &err) ==
              COVCT_ERR_ARG &&
          strstr(err.msg, "genomes"));
    wrong = old;
    wrong.granted_on = "2020-02-30";
    CHECK(covct_project_approve(site, proj, &wrong, &aid, &err) ==
          COVCT_ERR_ARG);
    /* a researcher may not record approvals */
    act("rita");
    covct_approval now_ok = { "EC of Test Hospital", "EC-2026-007",
                              "2026-01-01", "2099-12-31",
                              "research,algorithm-development",
                              "images,labels,clinical" };
    CHECK(covct_project_approve(site, proj, &now_ok, &aid, &err) ==
          COVCT_ERR_ARG);
    act(NULL);
    CHECK(covct_project_approve(site, proj, &now_ok, &aid, &err) == COVCT_OK);

    /* consent: PA given, PB waived, PC given then withdrawn, PD none */
    CHECK(covct_consent_record(site, "PA", proj, "given", "form 1", &err) ==
          COVCT_OK);
    CHECK(covct_consent_record(site, "PB", proj, "waived", "EC-2026-007",
                               &err) == COVCT_OK);
    CHECK(covct_consent_record(site, "PC", proj, "given", "form 3", &err) ==
          COVCT_OK);
    CHECK(covct_consent_record(site, "PC", proj, "withdrawn", "letter",
                               &err) == COVCT_OK);
    CHECK(covct_consent_record(site, "PX", proj, "given", NULL, &err) ==
          COVCT_ERR_NOT_FOUND);

    /* the approval in force is not enough: the receiver must be bound by
     * a data use agreement in force (signed, not expired); each refusal
     * is audited with its reason */
    int64_t refusals = count("SELECT COUNT(*) FROM audit_log WHERE action ="
                             " 'export.refused'");
    snprintf(out, sizeof out, "%s/out1", tmpdir);
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out, NULL, &res, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECKF(strstr(res.refused, "no data use agreement"), "%s", res.refused);
    CHECK(covct_project_agreement(site, proj, "Uni Lab", "2020-01-01",
                                  "2020-12-31", "research only", &err) ==
          COVCT_OK);
    covct_error_clear(&err);
    CHECK(covct_project_agreement(site, proj, "Uni Lab", "2020-02-30", NULL,
                                  NULL, &err) == COVCT_ERR_ARG &&
          strstr(err.msg, "2020-02-30"));
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out, NULL, &res, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECKF(strstr(res.refused, "Uni Lab expired on 2020-12-31"), "%s",
           res.refused);
    CHECK(covct_project_agreement(site, proj, "Future Inc", "2099-01-01",
                                  NULL, NULL, &err) == COVCT_OK);
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out, NULL, &res, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECKF(strstr(res.refused, "in force only from 2099-01-01"), "%s",
           res.refused);
    CHECK(!exists(out, ""));
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action ="
                " 'export.refused' AND detail LIKE '%data use agreement%'") ==
          3);
    /* on its last day an agreement still holds, the day after not */
    covct_export_opts day = { .today = "2020-12-31" };
    covct_approval past = now_ok;
    past.number = "EC-2020-009";
    past.granted_on = "2020-06-01";
    past.expires_on = "2021-06-01";
    CHECK(covct_project_approve(site, proj, &past, &aid, &err) == COVCT_OK);
    snprintf(out2_day, sizeof out2_day, "%s/out-day", tmpdir);
    covct_error_clear(&err);
    CHECKF(covct_export(site, "lung-ai", out2_day, &day, &res, NULL, NULL,
                        &err) == COVCT_OK,
           "%s", err.msg);
    CHECK(sh("grep -q 'Uni Lab, signed 2020-01-01, expires 2020-12-31 (in "
             "force on 2020-12-31)' %s/datasheet.md",
             out2_day) == 0);
    day.today = "2021-01-01";
    snprintf(out2_day, sizeof out2_day, "%s/out-day2", tmpdir);
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out2_day, &day, &res, NULL, NULL,
                       &err) == COVCT_ERR_ARG &&
          strstr(res.refused, "data use agreement with Future Inc"));
    CHECK(covct_project_agreement(site, proj, "Uni Lab", "2026-01-01", NULL,
                                  "research only", &err) == COVCT_OK);
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action ="
                " 'export.refused'") == refusals + 4);
    covct_error_clear(&err);
    CHECKF(covct_export(site, "lung-ai", out, NULL, &res, NULL, NULL,
                        &err) == COVCT_OK,
           "%s", err.msg);
    /* the datasheet lists every agreement, the expired one marked */
    CHECK(sh("grep -q 'Uni Lab, signed 2020-01-01, expires 2020-12-31 "
             "(EXPIRED on ' %s/datasheet.md",
             out) == 0);
    CHECK(sh("grep -q 'Uni Lab, signed 2026-01-01, expires never (in force "
             "on ' %s/datasheet.md",
             out) == 0);
    CHECK(res.patients == 2 && res.withdrawn == 1 && res.no_consent == 1);
    CHECKF(res.series == 3 && res.masks == 1, "series %zu masks %zu",
           res.series, res.masks);
    /* the pseudonyms are the project key's */
    covct_deid_key *key = NULL;
    char kp[9000], pa[14], pb[14], pc[14], rel[256];
    snprintf(kp, sizeof kp, "%s/keys/project-lung-ai.key", dir);
    CHECK(covct_deid_key_load(kp, &key, &err) == COVCT_OK);
    CHECK(covct_deid_pseudonym(key, "lung-ai", "PA", pa, &err) == COVCT_OK);
    CHECK(covct_deid_pseudonym(key, "lung-ai", "PB", pb, &err) == COVCT_OK);
    CHECK(covct_deid_pseudonym(key, "lung-ai", "PC", pc, &err) == COVCT_OK);
    covct_deid_key_free(key);
    snprintf(rel, sizeof rel, "images/%s/ct-1.nii.gz", pa);
    CHECK(exists(out, rel));
    snprintf(rel, sizeof rel, "images/%s/ct-2.nii.gz", pa); /* follow-up */
    CHECK(exists(out, rel));
    snprintf(rel, sizeof rel, "labels/%s/ct-1_lesions.nii.gz", pa);
    CHECK(exists(out, rel));
    snprintf(rel, sizeof rel, "labels/%s/ct-1_lesions.nii.gz", pb);
    CHECK(!exists(out, rel)); /* only an AI draft: not released */
    snprintf(rel, sizeof rel, "images/%s", pc);
    CHECK(!exists(out, rel)); /* withdrawn */
    CHECK(exists(out, "datasheet.md") && exists(out, "clinical.csv") &&
          exists(out, "split.csv") && exists(out, "manifest.sha256"));
    /* the receiver's check, with coreutils */
    CHECK(sh("cd %s && sha256sum --quiet -c manifest.sha256", out) ==
          0);
    /* no site patient ID, name or comment in any text file */
    /* (whole fields: a pseudonym is "P" and 12 base32 characters, which
     * may well contain "PD") */
    CHECK(sh("grep -rlE '(^|,)P[A-E](,|$)|DOE|comment with' %s "
             "--include=*.csv --include=*.md",
             out) != 0);
    /* the follow-up is day 10 */
    char pat[128];
    snprintf(pat, sizeof pat, "'^%s,[a-z]*,images/%s/ct-2.nii.gz,,10,CT,4$'",
             pa, pa);
    CHECK(sh("grep -q %s %s/images.csv", pat, out) == 0);
    snprintf(pat, sizeof pat,
             "'^%s,[a-z]*,1,covid-19-confirmed,12,recovered,typical,final$'",
             pa);
    CHECK(sh("grep -q %s %s/clinical.csv", pat, out) == 0);
    /* an exported volume reads back with the source's values */
    covct_volume *v = NULL;
    snprintf(kp, sizeof kp, "%s/images/%s/ct-1.nii.gz", out, pa);
    CHECK(covct_nifti_read(kp, &v, &err) == COVCT_OK && v && v->nz == 4 &&
          ((int16_t *)v->data)[7] == 40 && ((int16_t *)v->data)[1] == -800);
    covct_volume_free(v);
    /* this one and the one judged on 2020-12-31 */
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action = 'export'") ==
          2);
    CHECK(count("SELECT COUNT(*) FROM exports WHERE patients = 2 AND"
                " excluded = 2") == 2);

    /* the same export again: the same pseudonyms and split */
    char out2[4400];
    snprintf(out2, sizeof out2, "%s/out2", tmpdir);
    CHECK(covct_export(site, "lung-ai", out2, NULL, &res, NULL, NULL, &err) ==
          COVCT_OK);
    CHECK(sh("cmp -s %s/split.csv %s/split.csv", out, out2) == 0);
    /* not into a folder that has something in it; not without the key;
     * not of a project that does not exist: each refusal audited with
     * its reason */
    refusals = count("SELECT COUNT(*) FROM audit_log WHERE action ="
                     " 'export.refused'");
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out2, NULL, &res, NULL, NULL,
                       &err) == COVCT_ERR_ARG &&
          strstr(err.msg, "not empty"));
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action ="
                " 'export.refused' AND detail LIKE '%is not empty%'") == 1);
    covct_export_opts nokey = { .key_path = "/nonexistent/project.key" };
    snprintf(out2_day, sizeof out2_day, "%s/out-nokey", tmpdir);
    covct_error_clear(&err);
    CHECK(covct_export(site, "lung-ai", out2_day, &nokey, &res, NULL, NULL,
                       &err) == COVCT_ERR_ARG &&
          strstr(err.msg, "/nonexistent/project.key"));
    CHECK(!exists(out2_day, ""));
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action ="
                " 'export.refused' AND detail LIKE"
                " '%/nonexistent/project.key%'") == 1);
    covct_error_clear(&err);
    CHECK(covct_export(site, "no-such", out2_day, NULL, &res, NULL, NULL,
                       &err) == COVCT_ERR_ARG &&
          strstr(err.msg, "no project 'no-such'"));
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action ="
                " 'export.refused' AND object = 'project:no-such'") == 1);
    CHECK(count("SELECT COUNT(*) FROM audit_log WHERE action ="
                " 'export.refused'") == refusals + 3);

    /* the scope decides what leaves: images only */
    int64_t proj2 = 0;
    covct_approval img = now_ok;
    img.number = "EC-2026-008";
    img.data_scope = "images";
    CHECK(covct_project_create(site, "imgs", NULL, NULL, NULL, &proj2,
                               &err) == COVCT_OK);
    CHECK(covct_project_approve(site, proj2, &img, &aid, &err) == COVCT_OK);
    CHECK(covct_project_agreement(site, proj2, "Uni Lab", "2026-01-01", NULL,
                                  NULL, &err) == COVCT_OK);
    CHECK(covct_project_add_patient(site, proj2, "PA", &err) == COVCT_OK);
    CHECK(covct_consent_record(site, "PA", proj2, "given", NULL, &err) ==
          COVCT_OK);
    snprintf(out2, sizeof out2, "%s/out3", tmpdir);
    CHECKF(covct_export(site, "imgs", out2, NULL, &res, NULL, NULL, &err) ==
               COVCT_OK,
           "%s", err.msg);
    CHECK(res.patients == 1 && res.masks == 0 && !exists(out2, "labels") &&
          !exists(out2, "clinical.csv"));
    /* another project, another pseudonym */
    CHECK(sh("grep -q %s %s/split.csv", pa, out2) != 0);
    /* a revoked approval stops the next export at once */
    CHECK(covct_project_revoke(site, proj2, "EC-2026-008", &err) == COVCT_OK);
    snprintf(out2, sizeof out2, "%s/out4", tmpdir);
    covct_error_clear(&err);
    CHECK(covct_export(site, "imgs", out2, NULL, &res, NULL, NULL, &err) ==
          COVCT_ERR_ARG);
    CHECKF(strstr(res.refused, "revoked"), "%s", res.refused);

    /* Cohen's kappa against scikit-learn, the reference implementation */
    int a[] = { 0, 1, 2, 1, 0, 2, 2, 1, 0, 0, 3, 1 };
    int b[] = { 0, 1, 1, 1, 0, 2, 2, 0, 0, 1, 3, 1 };
    double k = covct_kappa(a, b, 12, 4);
    FILE *py = popen("/usr/bin/python3 -c 'from sklearn.metrics import "
                     "cohen_kappa_score as k; print(repr(k([0,1,2,1,0,2,2,1,0,"
                     "0,3,1],[0,1,1,1,0,2,2,0,0,1,3,1])))'",
                     "r");
    double ref = NAN;
    CHECK(py && fscanf(py, "%lf", &ref) == 1);
    if (py)
        pclose(py);
    CHECKF(fabs(k - ref) < 1e-12, "kappa %.15f, scikit-learn %.15f", k, ref);
    CHECK(isnan(covct_kappa(a, a, 0, 4)));

    /* agreement of two readers: Dice per class against numpy on the same
     * files, kappa of their clinical labels against scikit-learn */
    int64_t sd = series_of("PE", "20200601", "1.2.3.5"), l1 = 0, l2 = 0;
    write_pattern("labels/pe1.nii", 5, 11);
    write_pattern("labels/pe2.nii", 3, 7);
    const char *h = "2222222222222222222222222222222222222222222222222222222222222222";
    act("r1");
    CHECK(covct_label_image_add(site, sd, "lesions", COVCT_LABEL_READER1,
                                "reader", NULL, "labels/pe1.nii", h, 0, &l1,
                                &err) == COVCT_OK);
    act("r2");
    CHECK(covct_label_image_add(site, sd, "lesions", COVCT_LABEL_READER2,
                                "reader", NULL, "labels/pe2.nii", h, 0, &l2,
                                &err) == COVCT_OK);
    const char *dx1[] = { "covid-19-confirmed", "normal", "other-pneumonia",
                          "covid-19-confirmed", "normal" };
    const char *dx2[] = { "covid-19-confirmed", "normal", "covid-19-confirmed",
                          "covid-19-confirmed", "other-pneumonia" };
    const char *ct1[] = { "typical", "negative", "atypical", "typical",
                          "negative" };
    const char *ct2[] = { "typical", "negative", "indeterminate", "typical",
                          "negative" };
    for (int rd = 0; rd < 2; rd++) {
        act(rd ? "r2" : "r1");
        for (int c = 1; c <= 5; c++) {
            covct_clinical_label x = { rd ? dx2[c - 1] : dx1[c - 1], 10 + c * rd,
                                       NULL, rd ? ct2[c - 1] : ct1[c - 1],
                                       NULL };
            CHECKF(covct_label_clinical_add(site, c, &x,
                                            rd ? COVCT_LABEL_READER2
                                               : COVCT_LABEL_READER1,
                                            0, &lid, &err) == COVCT_OK,
                   "%s", err.msg);
        }
    }
    act(NULL);
    covct_agreement ag;
    CHECKF(covct_agreement_compute(site, 0, &ag, &err) == COVCT_OK, "%s",
           err.msg);
    CHECK(ag.n_cases == 5 && fabs(ag.severity_mad - 3.0) < 1e-12);
    /* series A was read by both with identical masks */
    bool found = false;
    for (size_t i = 0; i < ag.n_masks; i++) {
        if (ag.masks[i].series_id == sa)
            CHECK(ag.masks[i].dice[0] == 1.0 && ag.masks[i].dice[1] == 1.0 &&
                  isnan(ag.masks[i].dice[2]));
        if (ag.masks[i].series_id != sd)
            continue;
        found = true;
        char cmd[9000];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c 'import nibabel as n, numpy as np\n"
                 "a = np.asarray(n.load(\"%s/labels/pe1.nii\").dataobj)\n"
                 "b = np.asarray(n.load(\"%s/labels/pe2.nii\").dataobj)\n"
                 "for x, y in ((a > 0, b > 0), (a == 1, b == 1), (a == 2, b == 2)):\n"
                 "    print(repr(2 * (x & y).sum() / (x.sum() + y.sum())))'",
                 dir, dir);
        FILE *np = popen(cmd, "r");
        for (int c = 0; c < 3; c++) {
            double want = NAN;
            CHECK(np && fscanf(np, "%lf", &want) == 1);
            CHECKF(fabs(ag.masks[i].dice[c] - want) < 1e-12,
                   "class %d: covct %.15f numpy %.15f", c,
                   ag.masks[i].dice[c], want);
        }
        if (np)
            pclose(np);
    }
    CHECK(found);
    FILE *kp2 = popen(
        "/usr/bin/python3 -c 'from sklearn.metrics import cohen_kappa_score"
        " as k\n"
        "print(repr(k([\"c\",\"n\",\"o\",\"c\",\"n\"],"
        "[\"c\",\"n\",\"c\",\"c\",\"o\"])))\n"
        "print(repr(k([\"t\",\"n\",\"a\",\"t\",\"n\"],"
        "[\"t\",\"n\",\"i\",\"t\",\"n\"])))'",
        "r");
    double kd = NAN, kc = NAN;
    CHECK(kp2 && fscanf(kp2, "%lf %lf", &kd, &kc) == 2);
    if (kp2)
        pclose(kp2);
    CHECKF(fabs(ag.kappa_diagnosis - kd) < 1e-12 &&
               fabs(ag.kappa_category - kc) < 1e-12,
           "kappa %f %f, scikit-learn %f %f", ag.kappa_diagnosis,
           ag.kappa_category, kd, kc);
    covct_agreement_free(&ag);

    /* clinical labels follow the rules of the masks: the second reader
     * of a case cannot be its first, in either order, and a version can
     * only revise a version of the same case; refusals store nothing */
    int64_t other_case = 0, same_case = 0,
            n_clin = count("SELECT COUNT(*) FROM clinical_labels");
    CHECK(covct_db_query_int(covct_site_db(site),
                             "SELECT MAX(id) FROM clinical_labels WHERE"
                             " case_id = 2",
                             NULL, 0, &other_case, &err) == COVCT_OK);
    CHECK(covct_db_query_int(covct_site_db(site),
                             "SELECT MAX(id) FROM clinical_labels WHERE"
                             " case_id = 1 AND status = 'reader-1'",
                             NULL, 0, &same_case, &err) == COVCT_OK);
    covct_clinical_label again = { "covid-19-confirmed", 11, NULL, "typical",
                                   NULL };
    act("r1"); /* r1 read case 1 as reader-1 above */
    covct_error_clear(&err);
    CHECK(covct_label_clinical_add(site, 1, &again, COVCT_LABEL_READER2, 0,
                                   &lid, &err) == COVCT_ERR_ARG &&
          strstr(err.msg, "different people"));
    act("r2"); /* and r2 as reader-2 */
    covct_error_clear(&err);
    CHECK(covct_label_clinical_add(site, 1, &again, COVCT_LABEL_READER1, 0,
                                   &lid, &err) == COVCT_ERR_ARG &&
          strstr(err.msg, "different people"));
    covct_error_clear(&err);
    CHECK(covct_label_clinical_add(site, 1, &again, COVCT_LABEL_READER2,
                                   other_case, &lid, &err) ==
              COVCT_ERR_ARG &&
          strstr(err.msg, "is not a label of case 1"));
    CHECK(count("SELECT COUNT(*) FROM clinical_labels") == n_clin);
    covct_error_clear(&err);
    CHECKF(covct_label_clinical_add(site, 1, &again, COVCT_LABEL_READER2,
                                    same_case, &lid, &err) == COVCT_OK,
           "%s", err.msg);
    /* final needs no second reader: the adjudicator answers for it */
    act("r1");
    CHECKF(covct_label_clinical_add(site, 3, &again, COVCT_LABEL_FINAL, 0,
                                    &lid, &err) == COVCT_OK,
           "%s", err.msg);
    act(NULL);

    /* users: Argon2id passwords, roles checked, names checked */
    CHECKF(covct_user_add(site, "alice", "radiologist", "s3cret-pass", &err) ==
               COVCT_OK,
           "%s", err.msg);
    CHECK(covct_user_check_password(site, "alice", "s3cret-pass"));
    CHECK(!covct_user_check_password(site, "alice", "s3cret-Pass"));
    CHECK(!covct_user_check_password(site, "nobody", "s3cret-pass"));
    CHECK(!covct_user_check_password(site, "r1", "anything")); /* none set */
    CHECK(covct_user_add(site, "alice", "radiologist", NULL, &err) ==
          COVCT_ERR_ARG);
    CHECK(covct_user_add(site, "a b", "radiologist", NULL, &err) ==
          COVCT_ERR_ARG);
    CHECK(covct_user_add(site, "carl", "king", NULL, &err) == COVCT_ERR_ARG);
    CHECK(covct_user_set_disabled(site, "alice", true, &err) == COVCT_OK);
    CHECK(!covct_user_check_password(site, "alice", "s3cret-pass"));
    covct_error_clear(&err);
    CHECK(covct_site_act_as(site, "alice", &err) == COVCT_ERR_NOT_FOUND);
    CHECK(covct_user_set_disabled(site, "alice", false, &err) == COVCT_OK);
    CHECK(covct_user_set_password(site, "alice", "n3w-password", &err) ==
          COVCT_OK);
    CHECK(covct_user_check_password(site, "alice", "n3w-password"));
    CHECK(covct_user_set_password(site, "zed", "n3w-password", &err) ==
          COVCT_ERR_NOT_FOUND);
    act("rita");
    CHECK(covct_user_add(site, "mallory", "administrator", NULL, &err) ==
          COVCT_ERR_ARG); /* only administrators manage users */
    act(NULL);

    /* and everything above is in an intact audit log */
    covct_audit_result ar;
    CHECK(covct_audit_verify(site, &ar, &err) == COVCT_OK && ar.bad_seq == 0 &&
          ar.entries > 30);
    covct_site_close(site);
    sh("rm -rf %s", tmpdir);
    return test_report();
}
