/*
 * Lesions by the network (docs/internals/lesions-nn.md): every axial slice
 * that holds lung is turned into the kind of image the lesion network was
 * trained on (COVID-SemiSeg: windowed 8-bit slices cropped to the body,
 * stored transposed against the radiological display) and segmented; the
 * network's ground-glass and consolidation probabilities are kept inside
 * the lung mask.
 *
 * Slices are shared among worker threads, each with its own inference
 * plan and its own share of oneDNN's OpenMP threads: on 2 cores two
 * single-threaded workers keep both busy through the whole network,
 * where one worker with two threads loses about a fifth to the layers
 * and the steps between them that do not split well.
 */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "covct/analysis.h"
#include "covct/image.h"
#include "covct/nn.h"

/* The HU window that maps CT onto the training slices' grey levels
 * (docs/internals/hu-window.md): v = (HU - LO) * 255 / WIDTH. */
#define WIN_LO (-1075.0)
#define WIN_WIDTH 1350.0
/* Worker threads at most: each holds a plan (about 100 MB at 352 x 352). */
#define MAX_WORKERS 4

static uint8_t window(const covct_volume *ct, size_t i)
{
    double v = ct->dtype == COVCT_DTYPE_INT16
                   ? ((const int16_t *)ct->data)[i]
                   : ((const float *)ct->data)[i];
    if (ct->outside && ct->outside[i])
        v = -1024.0;
    double g = floor((v - WIN_LO) * 255.0 / WIN_WIDTH + 0.5);
    return (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
}

void covct_lesions_nn_options_default(covct_lesions_nn_options *o)
{
    memset(o, 0, sizeof *o);
    o->threshold = 128;
}

typedef struct shared {
    const covct_volume *ct;
    covct_seg *seg;
    const covct_nn_model *m;
    int threshold;
    covct_axes ax;
    const char *dump;
    int omp_threads;        /* per worker; 0: leave oneDNN's default */
    uint32_t next_z;        /* next slice to take (atomic) */
    int failed;             /* set (atomic) by the first worker to fail */
    pthread_mutex_t lock;   /* guards err */
    covct_rc rc;
    covct_error *err;
} shared;

typedef struct worker {
    shared *sh;
    covct_nn_model model; /* the shared network, its own plan */
    uint8_t *img, *inf, *ggo, *con;
    double t_net;
    unsigned slices;
} worker;

/* One slice: crop, window, orient, segment, keep inside the lung. */
static covct_rc do_slice(worker *wk, uint32_t z, covct_error *err)
{
    const shared *sh = wk->sh;
    const covct_volume *ct = sh->ct;
    const covct_axes *ax = &sh->ax;
    const uint32_t nx = ct->nx, ny = ct->ny;
    const size_t plane = (size_t)nx * ny, zoff = (size_t)z * plane;
    const uint8_t *lung = sh->seg->lungs + zoff;
    const uint8_t *body = sh->seg->body + zoff;
    /* Image rows follow patient x (right to left), columns patient y
     * (anterior to posterior). */
    const uint32_t n_along[2] = {nx, ny};
    const int ar = ax->axis[0], ac = ax->axis[1]; /* voxel axis 0 or 1 */
    const uint32_t rows_n = n_along[ar], cols_n = n_along[ac];
    const ptrdiff_t stride[2] = {1, (ptrdiff_t)nx};
    /* Body and lung extent in image coordinates. */
    uint32_t r0 = UINT32_MAX, r1 = 0, c0 = UINT32_MAX, c1 = 0;
    bool any_lung = false;
    for (uint32_t j = 0; j < ny; j++)
        for (uint32_t i = 0; i < nx; i++) {
            size_t p = (size_t)j * nx + i;
            if (!body[p] && !lung[p])
                continue;
            any_lung |= lung[p] != 0;
            uint32_t vi[2] = {i, j};
            uint32_t r = ax->sign[0] > 0 ? vi[ar] : rows_n - 1 - vi[ar];
            uint32_t c = ax->sign[1] > 0 ? vi[ac] : cols_n - 1 - vi[ac];
            r0 = r < r0 ? r : r0, r1 = r > r1 ? r : r1;
            c0 = c < c0 ? c : c0, c1 = c > c1 ? c : c1;
        }
    if (!any_lung)
        return COVCT_OK;
    const uint32_t h = r1 - r0 + 1, w = c1 - c0 + 1;
    /* Voxel offset of image pixel (r, c) inside the slice. */
    const ptrdiff_t step_r = ax->sign[0] * stride[ar];
    const ptrdiff_t step_c = ax->sign[1] * stride[ac];
    const uint32_t vr0 = ax->sign[0] > 0 ? r0 : rows_n - 1 - r0;
    const uint32_t vc0 = ax->sign[1] > 0 ? c0 : cols_n - 1 - c0;
    const ptrdiff_t origin =
        (ptrdiff_t)vr0 * stride[ar] + (ptrdiff_t)vc0 * stride[ac];
    for (uint32_t r = 0; r < h; r++)
        for (uint32_t c = 0; c < w; c++)
            wk->img[(size_t)r * w + c] = window(
                ct, zoff + (size_t)(origin + r * step_r + c * step_c));
    double t0 = covct_now();
    covct_rc rc = covct_nn_segment_slice(&wk->model, wk->img, w, h, wk->inf,
                                         wk->ggo, wk->con, err);
    wk->t_net += covct_now() - t0;
    wk->slices++;
    if (rc != COVCT_OK) {
        covct_error_prefix(err, "lesions, slice %u: ", (unsigned)z + 1);
        return rc;
    }
    if (sh->dump) { /* debugging: what the network saw and said */
        char path[4096];
        covct_error derr = {0};
        covct_image im = {.width = w, .height = h, .pixels = wk->img};
        snprintf(path, sizeof path, "%s/z%03u.png", sh->dump, (unsigned)z);
        covct_image_write_png(path, &im, &derr);
        im.pixels = wk->inf;
        snprintf(path, sizeof path, "%s/z%03u_map.png", sh->dump, (unsigned)z);
        covct_image_write_png(path, &im, &derr);
    }
    uint8_t *les = sh->seg->lesions + zoff;
    for (uint32_t r = 0; r < h; r++)
        for (uint32_t c = 0; c < w; c++) {
            size_t q = (size_t)r * w + c;
            size_t p = (size_t)(origin + r * step_r + c * step_c);
            if (!lung[p] || wk->inf[q] < sh->threshold)
                continue;
            les[p] = wk->con[q] > wk->ggo[q] ? COVCT_LESION_CONSOLIDATION
                                             : COVCT_LESION_GGO;
        }
    return COVCT_OK;
}

/* oneDNN runs on OpenMP: its thread count is a per-thread setting, made
 * through libgomp's omp_set_num_threads when oneDNN brought it in (found
 * at run time, so a oneDNN on another threading runtime still works, with
 * its own default). */
static void set_omp_threads(int n)
{
    if (n < 1)
        return;
    void (*set)(int) = NULL;
    *(void **)&set = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (set)
        set(n);
}

static void *work(void *arg)
{
    worker *wk = arg;
    shared *sh = wk->sh;
    set_omp_threads(sh->omp_threads);
    covct_error err = {0};
    for (;;) {
        if (__atomic_load_n(&sh->failed, __ATOMIC_RELAXED))
            break;
        uint32_t z = __atomic_fetch_add(&sh->next_z, 1, __ATOMIC_RELAXED);
        if (z >= sh->ct->nz)
            break;
        covct_rc rc = do_slice(wk, z, &err);
        if (rc != COVCT_OK) {
            pthread_mutex_lock(&sh->lock);
            if (!sh->failed) {
                sh->rc = rc;
                if (sh->err)
                    *sh->err = err;
                __atomic_store_n(&sh->failed, 1, __ATOMIC_RELAXED);
            }
            pthread_mutex_unlock(&sh->lock);
            break;
        }
    }
    return NULL;
}

covct_rc covct_lesions_segment_nn(const covct_volume *ct, covct_seg *seg,
                                  covct_nn_model *m,
                                  const covct_lesions_nn_options *opt,
                                  covct_error *err)
{
    if (!ct || !seg || !ct->data || !seg->lungs || !seg->lesions ||
        !seg->body || !m || !m->graph)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lesions: missing input");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lesions: segmentation and CT differ in size");
    covct_lesions_nn_options defaults;
    if (!opt) {
        covct_lesions_nn_options_default(&defaults);
        opt = &defaults;
    }
    shared sh = {.ct = ct, .seg = seg, .m = m, .threshold = opt->threshold,
                 .err = err, .rc = COVCT_OK};
    covct_volume_axes(ct, &sh.ax);
    if (sh.ax.axis[2] != 2)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "lesions: the network reads axial slices; this "
                         "series is not axial");
    /* COVCT_LESIONS_NN_DUMP=DIR writes each slice as the network got it
     * and its infection map (docs/internals/lesions-nn.md). */
    sh.dump = getenv("COVCT_LESIONS_NN_DUMP");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    int nw = opt->workers > 0 ? opt->workers
                              : (int)(cores < MAX_WORKERS ? cores : MAX_WORKERS);
    if (nw > MAX_WORKERS)
        nw = MAX_WORKERS;
    sh.omp_threads = nw > 1 ? (int)(cores / nw > 0 ? cores / nw : 1) : 0;
    pthread_mutex_init(&sh.lock, NULL);
    covct_nn_set_backend(m->graph, COVCT_NN_FAST);
    memset(seg->lesions, 0, (size_t)ct->nx * ct->ny * ct->nz);

    const size_t plane = (size_t)ct->nx * ct->ny;
    worker wk[MAX_WORKERS];
    pthread_t tid[MAX_WORKERS];
    bool started[MAX_WORKERS] = {false};
    memset(wk, 0, sizeof wk);
    covct_rc rc = COVCT_OK;
    for (int i = 0; i < nw; i++) {
        wk[i].sh = &sh;
        wk[i].model = *m; /* same graph, read only; its own plan */
        wk[i].model.plan = NULL;
        wk[i].img = covct_malloc(plane);
        wk[i].inf = covct_malloc(plane);
        wk[i].ggo = covct_malloc(plane);
        wk[i].con = covct_malloc(plane);
        if (!wk[i].img || !wk[i].inf || !wk[i].ggo || !wk[i].con) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "lesions: out of memory for slice buffers");
            nw = i + 1;
            goto done;
        }
    }
    double t_all = covct_now();
    if (nw == 1) {
        work(&wk[0]);
    } else {
        for (int i = 0; i < nw; i++)
            started[i] = pthread_create(&tid[i], NULL, work, &wk[i]) == 0;
        if (!started[0]) /* no thread at all: do it here */
            work(&wk[0]);
        for (int i = 0; i < nw; i++)
            if (started[i])
                pthread_join(tid[i], NULL);
    }
    rc = sh.rc;
    double t_net = 0;
    unsigned n_slices = 0;
    for (int i = 0; i < nw; i++)
        t_net += wk[i].t_net, n_slices += wk[i].slices;
    covct_log(COVCT_LOG_DEBUG,
              "lesions (network): %u slices on %d worker(s) x %d thread(s), "
              "%.4f s per slice in the network, %.3f s in all",
              n_slices, nw, sh.omp_threads ? sh.omp_threads : 0,
              n_slices ? t_net / n_slices : 0.0, covct_now() - t_all);
done:
    for (int i = 0; i < nw; i++) {
        covct_nn_plan_free(wk[i].model.plan);
        covct_free(wk[i].img);
        covct_free(wk[i].inf);
        covct_free(wk[i].ggo);
        covct_free(wk[i].con);
    }
    pthread_mutex_destroy(&sh.lock);
    return rc;
}
