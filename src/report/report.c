/* covct_report_write(): every output of `covct analyze` into one folder,
 * each file atomically; and the key-slice choice shared by the JSON, the
 * images and the page. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "report/report_int.h"

int covct_report_has_measures(const covct_report_input *in)
{
    return in && in->lungs && in->lungs->is_chest && in->m;
}

double covct_report_slice_z(const covct_report_input *in, uint32_t k)
{
    const covct_measures *m = in->m;
    if (m && m->slices && k < m->n_slices && isfinite(m->slices[k].z_mm))
        return m->slices[k].z_mm;
    const covct_volume *ct = in->ct;
    double ci = ct->nx ? (ct->nx - 1) / 2.0 : 0;
    double cj = ct->ny ? (ct->ny - 1) / 2.0 : 0;
    return ct->affine[2][0] * ci + ct->affine[2][1] * cj +
           ct->affine[2][2] * k + ct->affine[2][3];
}

static int far_from(const covct_report_input *in, const uint32_t *ks, int n,
                    uint32_t k)
{
    double z = covct_report_slice_z(in, k);
    for (int i = 0; i < n; i++) {
        if (ks[i] == k)
            return 0;
        if (fabs(covct_report_slice_z(in, ks[i]) - z) <
            COVCT_REPORT_KEY_GAP_MM - 1e-6)
            return 0;
    }
    return 1;
}

/* The slice whose z is nearest to `z` among those with lung. */
static int nearest_lung_slice(const covct_report_input *in, double z)
{
    const covct_measures *m = in->m;
    int best = -1;
    double bd = 0;
    for (uint32_t k = 0; k < m->n_slices; k++) {
        if (!(m->slices[k].lung_mm2 > 0))
            continue;
        double d = fabs(covct_report_slice_z(in, k) - z);
        if (best < 0 || d < bd) {
            best = (int)k;
            bd = d;
        }
    }
    return best;
}

int covct_report_pick_slices(const covct_report_input *in, uint32_t *ks)
{
    const covct_volume *ct = in->ct;
    if (!ct || !ct->nz)
        return 0;
    int n = 0;
    const covct_measures *m = covct_report_has_measures(in) ? in->m : NULL;
    uint32_t ns = m && m->slices ? m->n_slices : 0;
    if (ns > ct->nz)
        ns = ct->nz;
    /* Dense tissue behind the lungs that the report warns of: its
     * largest slice first, so the warning has its picture. */
    if (m && m->dense_behind_ml >= COVCT_DENSE_BEHIND_MIN_ML) {
        double most = 0;
        for (uint32_t k = 0; k < ns; k++)
            if (m->slices[k].dense_behind_mm2 > most) {
                most = m->slices[k].dense_behind_mm2;
                ks[0] = k;
            }
        n = most > 0 ? 1 : 0;
    }
    const int n_dense = n;
    /* Greedy: the largest lesion area first, then the largest one far
     * enough from those already taken. */
    while (n < COVCT_REPORT_MAX_KEY) {
        int best = -1;
        for (uint32_t k = 0; k < ns; k++) {
            double a = m->slices[k].lesion_mm2;
            if (!(a > 0) || !far_from(in, ks, n, k))
                continue;
            if (best < 0 || a > m->slices[best].lesion_mm2)
                best = (int)k;
        }
        if (best < 0)
            break;
        ks[n++] = (uint32_t)best;
    }
    if (n == n_dense && ns) {
        /* No lesion: the slice with the most lung, then the middles of the
         * upper and the lower third of the lungs for context. */
        int best = -1;
        double zlo = 0, zhi = 0;
        for (uint32_t k = 0; k < ns; k++) {
            double a = m->slices[k].lung_mm2;
            if (!(a > 0))
                continue;
            double z = covct_report_slice_z(in, k);
            if (best < 0 || z < zlo)
                zlo = z;
            if (best < 0 || z > zhi)
                zhi = z;
            if (best < 0 || a > m->slices[best].lung_mm2)
                best = (int)k;
        }
        if (best >= 0) {
            ks[n++] = (uint32_t)best;
            double t = (zhi - zlo) / 6;
            int up = nearest_lung_slice(in, zhi - t);
            int lo = nearest_lung_slice(in, zlo + t);
            if (up >= 0 && far_from(in, ks, n, (uint32_t)up))
                ks[n++] = (uint32_t)up;
            if (lo >= 0 && far_from(in, ks, n, (uint32_t)lo))
                ks[n++] = (uint32_t)lo;
        }
    }
    if (n == 0)
        ks[n++] = ct->nz / 2;
    /* Head first, the order in which a stack is read. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && covct_report_slice_z(in, ks[j]) >
                                     covct_report_slice_z(in, ks[j - 1]);
             j--) {
            uint32_t t = ks[j];
            ks[j] = ks[j - 1];
            ks[j - 1] = t;
        }
    return n;
}

/* ---- files ------------------------------------------------------------------ */
static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = covct_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Make sure the message names the file (the atomic writer names its
 * temporary file; an encoder names nothing). */
static covct_rc name_file(covct_rc rc, const char *path, covct_error *err)
{
    if (rc && err && !strstr(err->msg, path))
        covct_error_prefix(err, "%s: ", path);
    return rc;
}

static covct_rc write_bytes(const char *dir, const char *name, const void *p,
                            size_t n, covct_error *err)
{
    char *path = join(dir, name);
    if (!path)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "%s: out of memory", name);
    covct_rc rc = name_file(covct_file_write_bytes(path, p, n, err), path,
                            err);
    covct_free(path);
    return rc;
}

/* A label mask as an INT16 NIfTI on the CT's grid (NULL labels: zeros). */
static covct_rc write_mask(const char *dir, const char *name,
                           const covct_volume *ct, const uint8_t *labels,
                           covct_error *err)
{
    char *path = join(dir, name);
    if (!path)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "%s: out of memory", name);
    uint8_t *none = NULL;
    if (!labels && !(labels = none = covct_calloc(covct_volume_voxels(ct), 1))) {
        covct_free(path);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "%s: out of memory", name);
    }
    covct_rc rc = covct_nifti_write_labels(ct, labels, path, err);
    name_file(rc, path, err);
    covct_free(none);
    covct_free(path);
    return rc;
}

void covct_report_remove_files(const char *dir, const char *prefix,
                               const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t np = strlen(prefix), ns = strlen(suffix);
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > np + ns && !strncmp(de->d_name, prefix, np) &&
            !strcmp(de->d_name + n - ns, suffix) &&
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) <
                sizeof path)
            unlink(path);
    }
    closedir(d);
}

/* The three masks, written by a thread of their own while the key
 * images are drawn (the gzip of the NIfTI files and the PNG encoding are
 * the report's two large costs, and neither uses both cores throughout). */
typedef struct mask_job {
    const char *outdir;
    const covct_volume *ct;
    const covct_seg *s;
    covct_rc rc;
    covct_error err;
} mask_job;

static void *write_masks(void *arg)
{
    mask_job *j = arg;
    j->rc = write_mask(j->outdir, "lungs.nii.gz", j->ct, j->s->lungs, &j->err);
    if (!j->rc)
        j->rc = write_mask(j->outdir, "lobes.nii.gz", j->ct, j->s->lobes,
                           &j->err);
    if (!j->rc)
        j->rc = write_mask(j->outdir, "lesions.nii.gz", j->ct, j->s->lesions,
                           &j->err);
    /* Dense tissue behind the lungs, when some was found (an earlier
     * run's file is removed otherwise). */
    if (!j->rc && j->s->dense_behind)
        j->rc = write_mask(j->outdir, "dense_behind.nii.gz", j->ct,
                           j->s->dense_behind, &j->err);
    else if (!j->rc) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/dense_behind.nii.gz",
                             j->outdir) < sizeof path)
            unlink(path);
    }
    return NULL;
}

covct_rc covct_report_write(const char *outdir, const covct_report_input *in,
                            covct_error *err)
{
    if (!outdir || !*outdir || !in || !in->ct || !in->lungs || !in->seg)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "report: folder, CT, segmentation and lung result "
                         "are required");
    const covct_seg *s = in->seg;
    const covct_volume *ct = in->ct;
    if (s->nx != ct->nx || s->ny != ct->ny || s->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "report: segmentation %ux%ux%u does not match the "
                         "CT %ux%ux%u",
                         (unsigned)s->nx, (unsigned)s->ny, (unsigned)s->nz,
                         (unsigned)ct->nx, (unsigned)ct->ny, (unsigned)ct->nz);
    covct_rc rc = covct_mkdirs(outdir, 0777, err);
    if (rc)
        return rc;
    /* Key images of an earlier run into the same folder would sit beside
     * the new ones and mislead. */
    covct_report_remove_files(outdir, "key_axial_", ".png");

    char *json = NULL, *page = NULL;
    covct_report_images im = {0};
    rc = covct_report_json(in, &json, err);
    if (rc) {
        covct_error_prefix(err, "report.json: ");
        goto out;
    }
    double tm = covct_now();
    rc = write_bytes(outdir, "report.json", json, strlen(json), err);
    mask_job mj = {.outdir = outdir, .ct = ct, .s = s};
    pthread_t tid;
    bool threaded = false;
    if (!rc)
        threaded = pthread_create(&tid, NULL, write_masks, &mj) == 0;
    if (!rc && !threaded)
        write_masks(&mj);
    if (!rc)
        rc = covct_report_images_make(in, &im, err);
    tm = covct_debug_time("report", "images", tm);
    if (threaded)
        pthread_join(tid, NULL);
    tm = covct_debug_time("report", "masks (after the images)", tm);
    if (!rc && mj.rc) {
        rc = mj.rc;
        if (err)
            *err = mj.err;
    }
    for (int i = 0; !rc && i < im.n; i++)
        rc = write_bytes(outdir, im.img[i].file, im.img[i].png,
                         im.img[i].png_len, err);
    if (!rc) {
        rc = covct_report_html(in, &im, &page, err);
        if (rc)
            covct_error_prefix(err, "report.html: ");
    }
    if (!rc)
        rc = write_bytes(outdir, "report.html", page, strlen(page), err);
out:
    covct_free(json);
    covct_free(page);
    covct_report_images_free(&im);
    return rc;
}
