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
#include "analysis/analysis_int.h"

/* The HU window that maps CT onto the training slices' grey levels
 * (docs/internals/hu-window.md): v = (HU - LO) * 255 / WIDTH. */
#define WIN_LO (-1075.0)
#define WIN_WIDTH 1350.0
/* Worker threads at most: each holds a plan (about 100 MB at 352 x 352). */
#define MAX_WORKERS 4

static uint8_t window(const covct_volume *ct, size_t i)
{
    double v = ct->outside && ct->outside[i] ? -1024.0 : covct_hu(ct, i);
    double g = floor((v - WIN_LO) * 255.0 / WIN_WIDTH + 0.5);
    return (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
}

void covct_lesions_nn_options_default(covct_lesions_nn_options *o)
{
    memset(o, 0, sizeof *o);
    o->threshold = 128;
    o->density_check = true;
}

typedef struct shared {
    const covct_volume *ct;
    const uint8_t *body;
    uint8_t *lab; /* class per voxel before the lung mask: 1 GGO, 2 cons. */
    const covct_nn_model *m;
    int threshold;
    bool density_check;
    covct_axes ax;
    const char *dump;
    int omp_threads;        /* oneDNN threads of each worker */
    uint32_t *order;        /* slices to segment (see start) */
    uint32_t *box;          /* per slice: the body's i0, i1, j0, j1 */
    uint32_t n_order;
    uint32_t next;          /* next entry of order to take (atomic) */
    /* Set by finish once the lungs are known: from then on slices without
     * lung (has_lung[z] == 0) are skipped. */
    uint8_t *has_lung;
    int lungs_known;        /* atomic, release/acquire with has_lung */
    int failed;             /* set (atomic) by the first worker to fail */
    pthread_mutex_t lock;   /* guards rc and err */
    covct_rc rc;
    covct_error err;
} shared;

typedef struct worker {
    shared *sh;
    covct_nn_model model; /* the shared network, its own plan */
    uint8_t *img, *inf, *ggo, *con;
    double t_net;
    unsigned slices;
} worker;

/* Slices with this much air (below AIR_HU) inside the body go to the
 * network: every slice the lungs can be on, found before the lungs are
 * (the lung mask is applied when the job finishes). */
#define AIR_HU (-400.0)
#define MIN_AIR_MM2 20.0

/* One slice: crop to the body, window, orient, segment. */
static covct_rc do_slice(worker *wk, uint32_t z, covct_error *err)
{
    const shared *sh = wk->sh;
    const covct_volume *ct = sh->ct;
    const covct_axes *ax = &sh->ax;
    const uint32_t nx = ct->nx, ny = ct->ny;
    const size_t plane = (size_t)nx * ny, zoff = (size_t)z * plane;
    /* Image rows follow patient x (right to left), columns patient y
     * (anterior to posterior). */
    const uint32_t n_along[2] = {nx, ny};
    const int ar = ax->axis[0], ac = ax->axis[1]; /* voxel axis 0 or 1 */
    const uint32_t rows_n = n_along[ar], cols_n = n_along[ac];
    const ptrdiff_t stride[2] = {1, (ptrdiff_t)nx};
    /* Body extent in image coordinates, from its box in voxels. */
    const uint32_t *bx = sh->box + 4 * (size_t)z; /* i0, i1, j0, j1 */
    if (bx[0] > bx[1])
        return COVCT_OK; /* no body */
    const uint32_t lo[2] = {bx[0], bx[2]}, hi[2] = {bx[1], bx[3]};
    const uint32_t r0 = ax->sign[0] > 0 ? lo[ar] : rows_n - 1 - hi[ar];
    const uint32_t r1 = ax->sign[0] > 0 ? hi[ar] : rows_n - 1 - lo[ar];
    const uint32_t c0 = ax->sign[1] > 0 ? lo[ac] : cols_n - 1 - hi[ac];
    const uint32_t c1 = ax->sign[1] > 0 ? hi[ac] : cols_n - 1 - lo[ac];
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
    covct_nn_model *mp = &wk->model;
    covct_rc rc = covct_nn_segment_slice_ens(&mp, 1, wk->img, w, h,
                                             COVCT_NN_GRID_TIGHT, wk->inf,
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
    uint8_t *lab = sh->lab + zoff;
    for (uint32_t r = 0; r < h; r++)
        for (uint32_t c = 0; c < w; c++) {
            size_t q = (size_t)r * w + c;
            if (wk->inf[q] < sh->threshold)
                continue;
            lab[origin + r * step_r + c * step_c] =
                wk->con[q] > wk->ggo[q] ? COVCT_LESION_CONSOLIDATION
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
        uint32_t k = __atomic_fetch_add(&sh->next, 1, __ATOMIC_RELAXED);
        if (k >= sh->n_order)
            break;
        uint32_t z = sh->order[k];
        if (__atomic_load_n(&sh->lungs_known, __ATOMIC_ACQUIRE) &&
            !sh->has_lung[z])
            continue; /* below or above the lungs: not needed */
        covct_rc rc = do_slice(wk, z, &err);
        if (rc != COVCT_OK) {
            pthread_mutex_lock(&sh->lock);
            if (!sh->failed) {
                sh->rc = rc;
                sh->err = err;
                __atomic_store_n(&sh->failed, 1, __ATOMIC_RELAXED);
            }
            pthread_mutex_unlock(&sh->lock);
            break;
        }
    }
    return NULL;
}

/* Air inside the body per slice, mm2, and the body's box (slices z0..z1-1;
 * no body: i0 > i1). */
typedef struct air_job {
    const covct_volume *ct;
    const uint8_t *body;
    double *air;
    uint32_t *box;
} air_job;

static int air_range(uint32_t z0, uint32_t z1, void *arg)
{
    const air_job *a = arg;
    const covct_volume *ct = a->ct;
    const uint32_t nx = ct->nx, ny = ct->ny;
    const size_t plane = (size_t)nx * ny;
    for (uint32_t z = z0; z < z1; z++) {
        size_t cnt = 0, o = (size_t)z * plane;
        uint32_t i0 = UINT32_MAX, i1 = 0, j0 = UINT32_MAX, j1 = 0;
        for (uint32_t j = 0; j < ny; j++) {
            const size_t row = o + (size_t)j * nx;
            for (uint32_t i = 0; i < nx; i++) {
                size_t p = row + i;
                if (!a->body[p])
                    continue;
                i0 = i < i0 ? i : i0, i1 = i > i1 ? i : i1;
                j0 = j < j0 ? j : j0, j1 = j;
                cnt += covct_hu(ct, p) < AIR_HU &&
                       !(ct->outside && ct->outside[p]);
            }
        }
        a->air[z] = (double)cnt * ct->spacing[0] * ct->spacing[1];
        uint32_t *b = a->box + 4 * (size_t)z;
        b[0] = i0, b[1] = i1, b[2] = j0, b[3] = j1;
    }
    return 0;
}

/* The order of the slices: slices of much air first (10 % of the most
 * or more: the lungs), the others (trachea above, bowel gas below, that
 * may turn out to hold no lung) after them, to be skipped once the lungs
 * are known; within each, by the network's grid, largest first, so that
 * a worker remakes its inference plan only when the grid changes (a
 * handful of times), then most air first. */
typedef struct order_key {
    const double *air;
    const uint32_t *grid; /* pixels of the network's grid per slice */
    double much;
} order_key;

static bool before(const order_key *k, uint32_t a, uint32_t b)
{
    bool ma = k->air[a] >= k->much, mb = k->air[b] >= k->much;
    if (ma != mb)
        return ma;
    if (k->grid[a] != k->grid[b])
        return k->grid[a] > k->grid[b];
    return k->air[a] > k->air[b];
}

struct covct_lesions_nn_job {
    shared sh;
    worker wk[MAX_WORKERS];
    pthread_t tid[MAX_WORKERS];
    bool started[MAX_WORKERS];
    int nw;
    double t0;
};

static void job_free(covct_lesions_nn_job *j)
{
    for (int i = 0; i < MAX_WORKERS; i++) {
        covct_nn_plan_free(j->wk[i].model.plan);
        covct_free(j->wk[i].img);
        covct_free(j->wk[i].inf);
        covct_free(j->wk[i].ggo);
        covct_free(j->wk[i].con);
    }
    covct_free(j->sh.lab);
    covct_free(j->sh.order);
    covct_free(j->sh.box);
    covct_free(j->sh.has_lung);
    pthread_mutex_destroy(&j->sh.lock);
    covct_free(j);
}

covct_rc covct_lesions_nn_start(const covct_volume *ct, const covct_seg *seg,
                                covct_nn_model *m,
                                const covct_lesions_nn_options *opt,
                                covct_lesions_nn_job **out, covct_error *err)
{
    *out = NULL;
    if (!ct || !seg || !ct->data || !seg->body || !seg->body_ready || !m ||
        !m->graph)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lesions: missing input (the body must be found "
                         "first)");
    if (seg->nx != ct->nx || seg->ny != ct->ny || seg->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "lesions: segmentation and CT differ in size");
    covct_lesions_nn_options defaults;
    if (!opt) {
        covct_lesions_nn_options_default(&defaults);
        opt = &defaults;
    }
    covct_axes ax;
    covct_volume_axes(ct, &ax);
    if (ax.axis[2] != 2)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "lesions: the network reads axial slices; this "
                         "series is not axial");
    covct_lesions_nn_job *j = covct_calloc(1, sizeof *j);
    const size_t plane = (size_t)ct->nx * ct->ny;
    if (!j || !(j->sh.lab = covct_calloc(plane * ct->nz, 1))) {
        covct_free(j);
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "lesions: out of memory for the label volume");
    }
    shared *sh = &j->sh;
    pthread_mutex_init(&sh->lock, NULL);
    sh->ct = ct;
    sh->body = seg->body;
    sh->m = m;
    sh->threshold = opt->threshold;
    sh->density_check = opt->density_check;
    sh->ax = ax;
    sh->rc = COVCT_OK;
    /* COVCT_LESIONS_NN_DUMP=DIR writes each slice as the network got it
     * and its infection map (docs/internals/lesions-nn.md). */
    sh->dump = getenv("COVCT_LESIONS_NN_DUMP");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    int nw = opt->workers > 0 ? opt->workers
                              : (int)(cores < MAX_WORKERS ? cores : MAX_WORKERS);
    j->nw = nw > MAX_WORKERS ? MAX_WORKERS : nw;
    sh->omp_threads = (int)(cores / j->nw > 0 ? cores / j->nw : 1);
    covct_nn_set_backend(m->graph, COVCT_NN_FAST);
    for (int i = 0; i < j->nw; i++) {
        worker *wk = &j->wk[i];
        wk->sh = sh;
        wk->model = *m; /* same graph, read only; its own plan */
        wk->model.plan = NULL;
        wk->img = covct_malloc(plane);
        wk->inf = covct_malloc(plane);
        wk->ggo = covct_malloc(plane);
        wk->con = covct_malloc(plane);
        if (!wk->img || !wk->inf || !wk->ggo || !wk->con) {
            job_free(j);
            return COVCT_ERR(err, COVCT_ERR_NOMEM,
                             "lesions: out of memory for slice buffers");
        }
    }
    /* Which slices, in which order: those with air inside the body, in
     * the order of `before`. */
    sh->order = covct_malloc((size_t)ct->nz * sizeof *sh->order);
    sh->box = covct_malloc((size_t)ct->nz * 4 * sizeof *sh->box);
    sh->has_lung = covct_calloc(ct->nz, 1);
    double *air = covct_malloc((size_t)ct->nz * sizeof *air);
    uint32_t *grid = covct_malloc((size_t)ct->nz * sizeof *grid);
    if (!sh->order || !sh->box || !sh->has_lung || !air || !grid) {
        covct_free(air);
        covct_free(grid);
        job_free(j);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "lesions: out of memory");
    }
    air_job aj = {ct, seg->body, air, sh->box};
    covct_morph_parallel(ct->nz, air_range, &aj);
    order_key key = {air, grid, 0};
    for (uint32_t z = 0; z < ct->nz; z++) {
        const uint32_t *b = sh->box + 4 * (size_t)z;
        uint32_t ext[2] = {b[1] - b[0] + 1, b[3] - b[2] + 1}, gw = 0, gh = 0;
        if (b[0] <= b[1])
            covct_nn_grid(m, ext[ax.axis[1]], ext[ax.axis[0]], &gw, &gh);
        grid[z] = gw * gh;
        key.much = air[z] > key.much ? air[z] : key.much;
        if (air[z] >= MIN_AIR_MM2)
            sh->order[sh->n_order++] = z;
    }
    key.much *= 0.1;
    for (uint32_t a = 1; a < sh->n_order; a++) { /* insertion sort */
        uint32_t z = sh->order[a], b = a;
        for (; b > 0 && before(&key, z, sh->order[b - 1]); b--)
            sh->order[b] = sh->order[b - 1];
        sh->order[b] = z;
    }
    covct_free(air);
    covct_free(grid);
    j->t0 = covct_now();
    for (int i = 0; i < j->nw; i++)
        j->started[i] = pthread_create(&j->tid[i], NULL, work, &j->wk[i]) == 0;
    *out = j;
    return COVCT_OK;
}

covct_rc covct_lesions_nn_finish(covct_lesions_nn_job *j, covct_seg *seg,
                                 covct_error *err)
{
    if (!j)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lesions: no job");
    if (seg && seg->lungs) { /* the lungs are known: skip slices without */
        const shared *sh0 = &j->sh;
        size_t plane = (size_t)sh0->ct->nx * sh0->ct->ny;
        for (uint32_t z = 0; z < sh0->ct->nz; z++) {
            const uint8_t *l = seg->lungs + (size_t)z * plane;
            size_t p = 0;
            while (p < plane && !l[p])
                p++;
            j->sh.has_lung[z] = p < plane;
        }
        __atomic_store_n(&j->sh.lungs_known, 1, __ATOMIC_RELEASE);
    }
    bool any = false;
    for (int i = 0; i < j->nw; i++)
        if (j->started[i]) {
            pthread_join(j->tid[i], NULL);
            any = true;
        }
    if (!any) /* no thread could be started: do the work here */
        work(&j->wk[0]);
    shared *sh = &j->sh;
    covct_rc rc = sh->rc;
    if (rc != COVCT_OK) {
        if (err)
            *err = sh->err;
    } else if (seg) {
        size_t n = (size_t)sh->ct->nx * sh->ct->ny * sh->ct->nz;
        for (size_t i = 0; i < n; i++)
            seg->lesions[i] = seg->lungs[i] ? sh->lab[i] : 0;
        if (sh->density_check) {
            covct_lesions_check_stats st;
            double t0 = covct_now();
            rc = covct_lesions_density_check(sh->ct, seg, &st, err);
            covct_log(COVCT_LOG_DEBUG,
                      "lesions (network): density check %.3f s: %zu voxels "
                      "well aerated, %zu made consolidation, %zu of "
                      "consolidation's rim",
                      covct_now() - t0, st.aerated_voxels, st.dense_voxels,
                      st.rim_voxels);
        }
    }
    double t_net = 0;
    unsigned n_slices = 0;
    for (int i = 0; i < j->nw; i++)
        t_net += j->wk[i].t_net, n_slices += j->wk[i].slices;
    covct_log(COVCT_LOG_DEBUG,
              "lesions (network): %u slices on %d worker(s) x %d thread(s), "
              "%.4f s per slice in the network, %.3f s in all",
              n_slices, j->nw, sh->omp_threads,
              n_slices ? t_net / n_slices : 0.0, covct_now() - j->t0);
    job_free(j);
    return rc;
}

void covct_lesions_nn_cancel(covct_lesions_nn_job *j)
{
    if (!j)
        return;
    __atomic_store_n(&j->sh.failed, 1, __ATOMIC_RELAXED);
    covct_lesions_nn_finish(j, NULL, NULL);
}

covct_rc covct_lesions_segment_nn(const covct_volume *ct, covct_seg *seg,
                                  covct_nn_model *m,
                                  const covct_lesions_nn_options *opt,
                                  covct_error *err)
{
    if (!seg || !seg->lungs || !seg->lesions || !seg->body)
        return COVCT_ERR(err, COVCT_ERR_ARG, "lesions: missing input");
    /* The body as the lungs stage left it. */
    seg->body_ready = true;
    covct_lesions_nn_job *j = NULL;
    covct_rc rc = covct_lesions_nn_start(ct, seg, m, opt, &j, err);
    return rc ? rc : covct_lesions_nn_finish(j, seg, err);
}
