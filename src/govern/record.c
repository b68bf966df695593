/* The DICOM node's analyses in the case database: the analysed series and
 * the AI's masks as draft label versions for the readers
 * (docs/internals/casedb.md, "Where labels come from"). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "govern/site_int.h"

/* `path` relative to the site folder when it lies under it. */
static const char *relative(const covct_site *site, const char *path)
{
    size_t n = strlen(site->dir);
    while (n > 1 && site->dir[n - 1] == '/')
        n--;
    if (!strncmp(path, site->dir, n) && path[n] == '/')
        return path + n + 1;
    return path;
}

static covct_rc record_series(covct_site *site, const covct_series *s,
                              int64_t *series_id, covct_error *err)
{
    covct_series_summary sum;
    covct_series_get_summary(s, &sum);
    int64_t pid = 0, study = 0;
    covct_rc rc;
    if ((rc = covct_case_patient(site, sum.patient_id[0] ? sum.patient_id
                                                         : "(none)",
                                 sum.patient_name, NULL, NULL, &pid, err)) ||
        (rc = covct_case_study(site, pid, sum.study_uid, sum.study_date, NULL,
                               &study, NULL, err)) ||
        (rc = covct_case_series(site, study, sum.series_uid, sum.modality,
                                sum.description, NULL, NULL, series_id, err)))
        return rc;
    size_t n = covct_series_slice_count(s);
    const char *last = "";
    for (size_t k = 0; k < n && !rc; k++) {
        covct_series_slice_ref ref;
        if (!covct_series_slice_ref_get(s, k, &ref) || !ref.path ||
            !strcmp(ref.path, last))
            continue; /* frames of one multi-frame file: one instance */
        last = ref.path;
        char sha[65];
        if (!(rc = covct_sha256_file(ref.path, sha, err)))
            rc = covct_case_instance(site, *series_id, ref.sop_instance_uid,
                                     relative(site, ref.path), sha, err);
    }
    return rc;
}

covct_rc covct_case_record_analysis(covct_site *site, const char *series_dir,
                                    const char *results_dir,
                                    const char *model, int64_t *series_id,
                                    covct_error *err)
{
    static const char *const kinds[] = { "lesions", "lobes", "lungs" };
    covct_series_set *set = NULL;
    int64_t sid = 0;
    covct_rc rc = covct_series_scan(series_dir, &set, err);
    if (rc)
        return rc;
    covct_series *best = covct_series_set_best(set);
    if (!best)
        rc = COVCT_ERR(err, COVCT_ERR_NOT_FOUND,
                       "%s: no CT volume series to record", series_dir);
    else
        rc = record_series(site, best, &sid, err);
    covct_series_set_free(set);
    for (size_t i = 0; i < 3 && !rc; i++) {
        char path[4200], sha[65];
        snprintf(path, sizeof path, "%s/%s.nii.gz", results_dir, kinds[i]);
        if (access(path, R_OK) != 0)
            continue;
        if ((rc = covct_sha256_file(path, sha, err)))
            break;
        int64_t have = 0, id = 0;
        const char *rel = relative(site, path);
        if ((rc = covct_db_query_int(
                 site->db,
                 "SELECT COUNT(*) FROM image_labels WHERE series_id = $1 AND"
                 " path = $2 AND sha256 = $3",
                 (covct_db_param[]){ COVCT_DB_INT(sid), COVCT_DB_TEXT(rel),
                                     COVCT_DB_TEXT(sha) },
                 3, &have, err)) ||
            have)
            continue;
        rc = covct_label_image_add(site, sid, kinds[i], COVCT_LABEL_AI_DRAFT,
                                   "model", model, rel, sha, 0, &id, err);
    }
    if (!rc && series_id)
        *series_id = sid;
    return rc;
}
