/*
 * The network lesion stage's plumbing (src/analysis/lesions-nn.c), with a
 * small untrained U-Net (the fuzzing seed model) on a synthetic volume:
 *  - refused without a body, for a non-axial volume, and for a missing
 *    job, with messages that say so;
 *  - start/finish: lesions only inside the lung mask, and exactly the
 *    voxels the unmasked result has there (the lungs given to finish, not
 *    to start, decide); slices without lung stay empty;
 *  - the one-call form gives the same labels as start/finish;
 *  - cancel stops a job and frees it (LeakSanitizer in CI).
 * Whether the trained network finds lesions is measured elsewhere
 * (tests/phantom_e2e.sh, docs/internals/lesions-nn.md).
 */
#include <stdlib.h>
#include <string.h>

#include "covct/analysis.h"
#include "covct/nn.h"
#include "test.h"

enum { NX = 48, NY = 40, NZ = 6 };

/* A box of tissue (+40 HU) with a dark ellipse of "lung" (-850 HU) in
 * each slice, air (-1000 HU) around; geometry LPS, 1 x 1 x 2 mm. */
static covct_volume *make_volume(void)
{
    covct_volume *v = NULL;
    if (covct_volume_new(NX, NY, NZ, COVCT_DTYPE_INT16, &v, NULL))
        return NULL;
    v->spacing[0] = v->spacing[1] = 1.0;
    v->spacing[2] = 2.0;
    v->affine[2][2] = 2.0;
    int16_t *d = v->data;
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) {
                int16_t hu = -1000;
                if (x >= 4 && x < NX - 4 && y >= 4 && y < NY - 4) {
                    double ex = (x - NX / 2.0) / 16.0, ey = (y - NY / 2.0) / 12.0;
                    hu = ex * ex + ey * ey < 1.0 ? -850 : 40;
                }
                d[((size_t)z * NY + y) * NX + x] = hu;
            }
    return v;
}

int main(void)
{
    covct_error err = {0};
    covct_nn_model m;
    char path[4096];
    snprintf(path, sizeof path, "%s/fuzz/corpus/model/tiny-unet.covctnn",
             getenv("COVCT_SOURCE_DIR") ? getenv("COVCT_SOURCE_DIR") : ".");
    if (covct_nn_model_read(path, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    covct_volume *v = make_volume();
    covct_seg *seg = NULL;
    CHECK(v && covct_seg_new(v, &seg, &err) == COVCT_OK);
    if (!v || !seg)
        return 1;
    const size_t n = (size_t)NX * NY * NZ;
    covct_lesions_nn_options opt;
    covct_lesions_nn_options_default(&opt);
    opt.threshold = 1; /* an untrained net: mark nearly everything */
    covct_lesions_nn_job *job = NULL;

    /* No body yet. */
    CHECK(covct_lesions_nn_start(v, seg, &m, &opt, &job, &err) ==
          COVCT_ERR_ARG);
    CHECKF(strstr(err.msg, "body") != NULL, "%s", err.msg);
    CHECK(!job);
    CHECK(covct_lesions_nn_finish(NULL, seg, &err) == COVCT_ERR_ARG);
    covct_lesions_nn_cancel(NULL);

    CHECK(covct_body_segment(v, seg, &err) == COVCT_OK);
    CHECK(seg->body_ready);

    /* Unmasked: every voxel a lung. */
    memset(seg->lungs, COVCT_LUNG_RIGHT, n);
    CHECK(covct_lesions_nn_start(v, seg, &m, &opt, &job, &err) == COVCT_OK);
    CHECK(covct_lesions_nn_finish(job, seg, &err) == COVCT_OK);
    uint8_t *all = malloc(n);
    memcpy(all, seg->lesions, n);
    size_t marked = 0;
    for (size_t i = 0; i < n; i++)
        marked += all[i] != 0;
    CHECKF(marked > n / 10, "threshold 1 marked only %zu of %zu", marked, n);

    /* Lungs: the ellipse on slices 1..4 only (0 and 5 have none). */
    memset(seg->lungs, 0, n);
    const int16_t *d = v->data;
    for (size_t i = 0; i < n; i++) {
        size_t z = i / ((size_t)NX * NY);
        if (z >= 1 && z <= 4 && d[i] < -500)
            seg->lungs[i] = (i % NX) < NX / 2 ? COVCT_LUNG_RIGHT
                                              : COVCT_LUNG_LEFT;
    }
    memset(seg->lesions, 0xff, n);
    CHECK(covct_lesions_nn_start(v, seg, &m, &opt, &job, &err) == COVCT_OK);
    CHECK(covct_lesions_nn_finish(job, seg, &err) == COVCT_OK);
    size_t outside = 0, differ = 0, inside = 0;
    for (size_t i = 0; i < n; i++) {
        if (!seg->lungs[i]) {
            outside += seg->lesions[i] != 0;
        } else {
            inside += seg->lesions[i] != 0;
            differ += seg->lesions[i] != all[i];
        }
    }
    CHECKF(outside == 0, "%zu lesion voxels outside the lungs", outside);
    CHECKF(differ == 0, "%zu lung voxels differ from the unmasked run",
           differ);
    CHECK(inside > 0);

    /* The one-call form: the same labels. */
    uint8_t *two = malloc(n);
    memcpy(two, seg->lesions, n);
    memset(seg->lesions, 0, n);
    CHECK(covct_lesions_segment_nn(v, seg, &m, &opt, &err) == COVCT_OK);
    CHECK(!memcmp(two, seg->lesions, n));

    /* Cancel: stops and frees. */
    CHECK(covct_lesions_nn_start(v, seg, &m, &opt, &job, &err) == COVCT_OK);
    covct_lesions_nn_cancel(job);

    /* Not axial: slices along x. */
    covct_volume *s = make_volume();
    covct_seg *ss = NULL;
    if (s) {
        memset(s->affine, 0, sizeof s->affine);
        s->affine[0][2] = 2.0; /* k along patient x */
        s->affine[1][1] = 1.0;
        s->affine[2][0] = 1.0; /* i along patient z */
        s->affine[3][3] = 1.0;
    }
    CHECK(s && covct_seg_new(s, &ss, &err) == COVCT_OK);
    if (ss) {
        ss->body_ready = true;
        covct_error_clear(&err);
        CHECK(covct_lesions_nn_start(s, ss, &m, &opt, &job, &err) ==
              COVCT_ERR_UNSUPPORTED);
        CHECKF(strstr(err.msg, "axial") != NULL, "%s", err.msg);
    }
    covct_seg_free(ss);
    covct_volume_free(s);
    free(all);
    free(two);
    covct_seg_free(seg);
    covct_volume_free(v);
    covct_nn_model_free(&m);
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}
