/*
 * covct phantom: a synthetic chest CT with exact ground truth.  The model
 * and its conventions are described in include/covct/phantom.h and
 * docs/internals/phantom.md.
 *
 * Generation in four passes over the grid:
 *   1. anatomy: every voxel centre is classified by analytic shapes (body,
 *      airways, lungs, lobes, bones, mediastinum) -> HU and truth labels;
 *   2. trees: vessel and small-airway segments (tapered capsules) are
 *      rasterised over their bounding boxes, inside the lungs only;
 *   3. lesions: placed by rejection sampling against the analytic model
 *      (lobe, fissure margin, pleura, no overlap), then rasterised;
 *   4. per slice: 1-2-1 blur in x and y, Gaussian noise, padding.
 * All randomness comes from splitmix64 streams derived from the seed, so
 * results are the same on every platform with IEEE doubles.
 */
#include "covct/phantom.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/dicom.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- random numbers: splitmix64 (Steele, Lea, Flood 2014) -------------- */

static uint64_t rnd_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rnd_unit(uint64_t *s)
{
    return (double)(rnd_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double rnd_range(uint64_t *s, double a, double b)
{
    return a + (b - a) * rnd_unit(s);
}

/* Independent stream `which` (a small constant) of the seed. */
static uint64_t rnd_stream(uint64_t seed, uint64_t which)
{
    uint64_t s = seed ^ (which * 0xD1B54A32D192ED03ull);
    (void)rnd_next(&s);
    return s;
}

/* ---- small vector helpers ------------------------------------------------ */

static double dot3(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static void normalize3(double v[3])
{
    double n = sqrt(dot3(v, v));
    if (n > 0) {
        v[0] /= n;
        v[1] /= n;
        v[2] /= n;
    }
}

/* Squared distance from p to segment a-b and the parameter t in [0,1] of
 * the nearest point. */
static double seg_dist2(const double p[3], const double a[3],
                        const double b[3], double *t_out)
{
    double ab[3] = {b[0] - a[0], b[1] - a[1], b[2] - a[2]};
    double ap[3] = {p[0] - a[0], p[1] - a[1], p[2] - a[2]};
    double l2 = dot3(ab, ab);
    double t = l2 > 0 ? dot3(ap, ab) / l2 : 0;
    if (t < 0)
        t = 0;
    else if (t > 1)
        t = 1;
    double d[3] = {ap[0] - t * ab[0], ap[1] - t * ab[1], ap[2] - t * ab[2]};
    if (t_out)
        *t_out = t;
    return dot3(d, d);
}

/* ---- the anatomy (mm, LPS, origin at the centre of the chest) ----------- */

/* Body outline: an elliptic cylinder; fat is the outer 7 %. */
#define BODY_A 165.0
#define BODY_B 120.0
#define BODY_YC 5.0
#define FAT_SCALE 0.93
/* Thoracic cavity: the inner surface of the chest wall. */
#define CAV_A 135.0
#define CAV_B 95.0
/* Each lung: an elliptic cylinder around (+-LUNG_CX, LUNG_YC) capped by a
 * half ellipsoid above LUNG_ZC (apex at LUNG_ZC + LUNG_CAP). */
#define LUNG_CX 75.0
#define LUNG_YC 5.0
#define LUNG_AX 62.0
#define LUNG_AY 92.0
#define LUNG_ZC 20.0
#define LUNG_CAP 110.0
/* Medial limit of both lungs (mediastinum). */
#define MEDIAST_HALF 16.0
/* Ribs: a ring of tubes just outside the cavity. */
#define RIB_A 147.0
#define RIB_B 104.0
#define RIB_PITCH 28.0
#define RIB_TOP 125.0
#define RIB_BOTTOM (-115.0)

static const double heart_c[3] = {20, -25, -35}, heart_a[3] = {65, 55, 55};

typedef struct tube {
    double a[3], b[3];
    double r;      /* lumen (airways) or whole radius (vessels) */
    double wall;   /* wall thickness, airways only */
} tube;

/* Trachea (18 mm lumen, 2 mm wall) down to the carina at (0, 22, 35), then
 * the main bronchi to the hila; the right one shorter and steeper. */
static const tube airway_tubes[3] = {
    {{0, 22, 400}, {0, 22, 35}, 9.0, 2.0},
    {{0, 22, 35}, {-45, 28, 10}, 6.0, 1.5},
    {{0, 22, 35}, {50, 30, 5}, 5.5, 1.5},
};
/* Ascending aorta, arch and descending aorta (unenhanced blood). */
static const tube aorta_tubes[3] = {
    {{20, -25, -10}, {20, -25, 55}, 15.0, 0},
    {{20, -25, 55}, {28, 52, 55}, 13.0, 0},
    {{28, 52, 55}, {28, 52, -400}, 13.0, 0},
};

enum { WHY_LUNG = 0, WHY_WALL, WHY_DIAPHRAGM, WHY_MEDIASTINUM };

static double lung_rho2(int side, double x, double y)
{
    double cx = side == COVCT_LUNG_RIGHT ? -LUNG_CX : LUNG_CX;
    double u = (x - cx) / LUNG_AX, v = (y - LUNG_YC) / LUNG_AY;
    return u * u + v * v;
}

/* Diaphragm surface under each lung: a dome, highest mid-lung, lowest in
 * the posterior costophrenic recess; the right dome higher (liver). */
static double diaphragm_z(int side, double x, double y)
{
    double z0 = side == COVCT_LUNG_RIGHT ? -45.0 : -55.0;
    return z0 - 60.0 * lung_rho2(side, x, y) - 15.0 * (y - LUNG_YC) / LUNG_AY;
}

static int in_heart(double x, double y, double z, double margin)
{
    double u = (x - heart_c[0]) / (heart_a[0] + margin),
           v = (y - heart_c[1]) / (heart_a[1] + margin),
           w = (z - heart_c[2]) / (heart_a[2] + margin);
    return u * u + v * v + w * w < 1.0;
}

/* Which lung holds (x,y,z): COVCT_LUNG_RIGHT, COVCT_LUNG_LEFT or 0, with
 * the reason when 0 (for lesion placement). */
static int lung_at(double x, double y, double z, int *why)
{
    int side = x < 0 ? COVCT_LUNG_RIGHT : COVCT_LUNG_LEFT;
    double r2 = lung_rho2(side, x, y);
    int dummy;
    if (!why)
        why = &dummy;
    *why = WHY_WALL;
    if (r2 >= 1.0)
        return 0;
    if (z > LUNG_ZC) {
        double w = (z - LUNG_ZC) / LUNG_CAP;
        if (r2 + w * w >= 1.0)
            return 0;
    }
    double cu = x / CAV_A, cv = (y - BODY_YC) / CAV_B;
    if (cu * cu + cv * cv >= 1.0)
        return 0;
    if (z <= diaphragm_z(side, x, y)) {
        *why = WHY_DIAPHRAGM;
        return 0;
    }
    *why = WHY_MEDIASTINUM;
    if (fabs(x) < MEDIAST_HALF)
        return 0;
    if (in_heart(x, y, z, 3.0))
        return 0;
    /* Vertebral body with a margin for the paravertebral soft tissue. */
    if (x * x + (y - 75) * (y - 75) < 22.0 * 22.0)
        return 0;
    double p[3] = {x, y, z};
    for (int i = 0; i < 3; i++) {
        double r = aorta_tubes[i].r + 2.0;
        if (seg_dist2(p, aorta_tubes[i].a, aorta_tubes[i].b, NULL) < r * r)
            return 0;
        r = airway_tubes[i].r + airway_tubes[i].wall + 1.0;
        if (seg_dist2(p, airway_tubes[i].a, airway_tubes[i].b, NULL) < r * r)
            return 0;
    }
    *why = WHY_LUNG;
    return side;
}

/* Fissures: smooth surfaces z = f(x, y).  The oblique fissures run from
 * high posteriorly to the anterior diaphragm; the horizontal fissure
 * (right) splits the part in front of and above the oblique one. */
static double oblique_z(int side, double x, double y)
{
    double z0 = side == COVCT_LUNG_RIGHT ? -56.0 : -53.0;
    return z0 + 0.86 * (y + 80) - 0.002 * (y - 5) * (y - 5) +
           0.05 * (fabs(x) - 75);
}

/* Signed first-order distance (mm) of z above the surface z = f(x, y),
 * f having the gradient (gx, gy). */
static double surf_dist(double dz, double gx, double gy)
{
    return dz / sqrt(1 + gx * gx + gy * gy);
}

static double oblique_dist(int side, double x, double y, double z)
{
    return surf_dist(z - oblique_z(side, x, y), 0.05,
                     0.86 - 0.004 * (y - 5));
}

static double horizontal_dist(double x, double y, double z)
{
    return surf_dist(z - (36.0 + 0.04 * y + 0.03 * (fabs(x) - 75)), 0.03,
                     0.04);
}

/* Lobe of a lung point and its distance to the nearest fissure (for the
 * right upper/middle lobes the whole horizontal surface is counted, which
 * can only make the distance smaller: conservative). */
static int lobe_at(int side, double x, double y, double z, double *fdist)
{
    double d_o = oblique_dist(side, x, y, z);
    if (side == COVCT_LUNG_LEFT) {
        if (fdist)
            *fdist = fabs(d_o);
        return d_o > 0 ? COVCT_LOBE_LUL : COVCT_LOBE_LLL;
    }
    if (d_o <= 0) {
        if (fdist)
            *fdist = -d_o;
        return COVCT_LOBE_RLL;
    }
    double d_h = horizontal_dist(x, y, z);
    if (fdist)
        *fdist = fmin(d_o, fabs(d_h));
    return d_h > 0 ? COVCT_LOBE_RUL : COVCT_LOBE_RML;
}

/* Voxel kinds kept during generation. */
enum {
    K_AIR = 0,     /* outside the body */
    K_TISSUE,      /* body, not lung */
    K_PARENCHYMA,  /* lung parenchyma */
    K_FISSURE,     /* lung, on a fissure */
    K_VESSEL,      /* lung, vessel or small-airway wall */
    K_SAIRWAY      /* lung, small-airway lumen */
};

#define HU_AIR (-1000)
#define HU_FAT (-100)
#define HU_SOFT 40
#define HU_LIVER 55
#define HU_CORTEX 700
#define HU_MARROW 250
#define HU_DISC 80
#define HU_CSF 15
#define HU_FISSURE (-720)
#define HU_VESSEL 40
#define HU_SAIRWAY (-960)
#define HU_SAIRWAY_WALL 20

/* Parenchyma, slightly denser posteriorly (gravity-dependent). */
static int parenchyma_hu(double y)
{
    double t = (y + 87.0) / 184.0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return (int)lrint(-865.0 + 45.0 * t);
}

/* Bone and other non-lung tissue inside the body. */
static int tissue_hu(double x, double y, double z)
{
    double yy = y - BODY_YC;
    /* Heart and aorta: blood and myocardium without contrast. */
    if (in_heart(x, y, z, 0))
        return HU_SOFT;
    double p[3] = {x, y, z};
    for (int i = 0; i < 3; i++)
        if (seg_dist2(p, aorta_tubes[i].a, aorta_tubes[i].b, NULL) <
            aorta_tubes[i].r * aorta_tubes[i].r)
            return HU_SOFT;
    /* Ribs: tubes 9 x 12 mm, sloping down towards the front, absent near
     * the sternum (costal cartilage). */
    double qu = x / RIB_A, qv = yy / RIB_B, q2 = qu * qu + qv * qv;
    if (q2 > 0.88 && q2 < 1.13 && !(fabs(x) < 28 && yy < 0)) {
        double q = sqrt(q2);
        double rloc = sqrt(x * x + yy * yy) / q;
        double dr = (q - 1.0) * rloc;
        double zz = z - 14.0 * (yy / RIB_B) - RIB_BOTTOM;
        double n = floor(zz / RIB_PITCH + 0.5);
        double dz = zz - n * RIB_PITCH;
        double zc = RIB_BOTTOM + n * RIB_PITCH;
        if (zc >= RIB_BOTTOM && zc <= RIB_TOP) {
            double e = (dr / 4.5) * (dr / 4.5) + (dz / 6.0) * (dz / 6.0);
            if (e < 1.0)
                return e > 0.4 ? HU_CORTEX : HU_MARROW;
        }
    }
    /* Spine: vertebral bodies with discs every 30 mm, canal, arch. */
    double d2 = x * x + (y - 75) * (y - 75);
    if (d2 < 18.0 * 18.0) {
        double zz = fmod(z + 3000.0, 30.0);
        if (zz < 6.0)
            return HU_DISC;
        return d2 > 16.0 * 16.0 ? HU_CORTEX : HU_MARROW;
    }
    double c2 = x * x + (y - 103) * (y - 103);
    if (c2 < 7.0 * 7.0)
        return HU_CSF;
    if (c2 < 13.0 * 13.0 || (fabs(x) < 4 && y > 103 && y < 122))
        return HU_CORTEX;
    /* Sternum. */
    double su = x / 20.0, sv = (y + 100.0) / 7.0;
    if (z > -75 && z < 115 && su * su + sv * sv < 1.0)
        return su * su + sv * sv > 0.45 ? HU_CORTEX - 100 : HU_MARROW;
    /* Gas in the stomach under the left dome: air that is not lung. */
    double gu = (x - 65) / 30.0, gv = (y + 5) / 25.0, gw = (z + 88) / 14.0;
    if (gu * gu + gv * gv + gw * gw < 1.0)
        return HU_AIR;
    /* Subcutaneous fat. */
    double bu = x / (BODY_A * FAT_SCALE), bv = yy / (BODY_B * FAT_SCALE);
    if (bu * bu + bv * bv >= 1.0)
        return HU_FAT;
    /* Liver under the right dome. */
    if (x < 40 && z < diaphragm_z(COVCT_LUNG_RIGHT, x, y) - 4)
        return HU_LIVER;
    return HU_SOFT;
}

/* ---- generation state ----------------------------------------------------- */

typedef struct tree_seg {
    double a[3], b[3];
    double ra, rb;   /* radius at a and at b (lumen for airways) */
    double wall;     /* 0 for vessels */
} tree_seg;

typedef struct blob {
    double c[3];
    double rot[3][3];   /* rows: the ellipsoid's axes */
    double inv_ax[3];   /* 1 / semi-axis */
    double amp[3], dir[3][3], phase[3];
    double rb;          /* bounding radius */
    double r_nominal;
    double hu;
    int cls, lobe;
    bool subpleural;
    bool sphere;
    bool dependent; /* inside: y at or behind ycut (dependent_y) */
    double frac;    /* dependent: the back frac of the lungs' depth */
    double ycut;    /* set by paint_lesions from the lung mask */
} blob;

typedef struct gen {
    const covct_phantom_params *p;
    covct_volume *ct;
    covct_seg *seg;
    uint8_t *kind;
    uint8_t *lesion_id;  /* 1-based index into blobs, 0 none */
    tree_seg *segs;
    size_t n_segs, cap_segs;
    blob blobs[COVCT_PHANTOM_MAX_LESIONS];
    int n_blobs;
    uint64_t les_vox[COVCT_PHANTOM_MAX_LESIONS];
    double les_sum[COVCT_PHANTOM_MAX_LESIONS][3];
    covct_error *err;
} gen;

static void vox_to_mm(const covct_volume *v, double i, double j, double k,
                      double out[3])
{
    for (int r = 0; r < 3; r++)
        out[r] = v->affine[r][0] * i + v->affine[r][1] * j +
                 v->affine[r][2] * k + v->affine[r][3];
}

/* ---- pass 1: anatomy ------------------------------------------------------- */

static void paint_anatomy(gen *g)
{
    const covct_volume *ct = g->ct;
    int16_t *hu = ct->data;
    const size_t nx = ct->nx, ny = ct->ny, nz = ct->nz;
    const double x0 = ct->affine[0][3], dx = ct->affine[0][0];
    const double y0 = ct->affine[1][3], dy = ct->affine[1][1];
    const double z0 = ct->affine[2][3], dzk = ct->affine[2][2];
    /* Half thickness of a drawn fissure: half the voxel's extent along
     * the surface normal (about (0, 0.65, 0.76) for the oblique fissures,
     * z for the horizontal one), so the sheet is one voxel thick without
     * holes. */
    const double half_o =
        0.5 * (0.05 * fabs(dx) + 0.65 * fabs(dy) + 0.76 * fabs(dzk));
    const double half_h = 0.5 * fabs(dzk);
    for (size_t k = 0; k < nz; k++) {
        double z = z0 + dzk * (double)k;
        for (size_t j = 0; j < ny; j++) {
            double y = y0 + dy * (double)j;
            size_t row = (k * ny + j) * nx;
            for (size_t i = 0; i < nx; i++) {
                double x = x0 + dx * (double)i;
                size_t idx = row + i;
                double bu = x / BODY_A, bv = (y - BODY_YC) / BODY_B;
                if (bu * bu + bv * bv >= 1.0) {
                    hu[idx] = HU_AIR;
                    continue; /* kind K_AIR = 0 from calloc */
                }
                g->seg->body[idx] = 1;
                /* Trachea and main bronchi. */
                double p[3] = {x, y, z};
                int in_tube = 0;
                for (int t = 0; t < 3 && !in_tube; t++) {
                    const tube *tb = &airway_tubes[t];
                    double d2 = seg_dist2(p, tb->a, tb->b, NULL);
                    double ro = tb->r + tb->wall;
                    if (d2 < tb->r * tb->r) {
                        in_tube = 1;
                        hu[idx] = HU_AIR;
                        g->seg->airways[idx] = 1;
                        g->kind[idx] = K_TISSUE;
                    } else if (d2 < ro * ro) {
                        in_tube = 1;
                        hu[idx] = HU_SOFT;
                        g->kind[idx] = K_TISSUE;
                    }
                }
                if (in_tube)
                    continue;
                int side = lung_at(x, y, z, NULL);
                if (side) {
                    g->seg->lungs[idx] = (uint8_t)side;
                    int lobe = lobe_at(side, x, y, z, NULL);
                    g->seg->lobes[idx] = (uint8_t)lobe;
                    double d_o = oblique_dist(side, x, y, z);
                    int on_fissure =
                        fabs(d_o) < half_o ||
                        (side == COVCT_LUNG_RIGHT && d_o > 0 &&
                         fabs(horizontal_dist(x, y, z)) < half_h);
                    if (g->p->fissures && on_fissure) {
                        hu[idx] = HU_FISSURE;
                        g->kind[idx] = K_FISSURE;
                    } else {
                        hu[idx] = (int16_t)parenchyma_hu(y);
                        g->kind[idx] = K_PARENCHYMA;
                    }
                    continue;
                }
                hu[idx] = (int16_t)tissue_hu(x, y, z);
                g->kind[idx] = K_TISSUE;
            }
        }
    }
}

/* ---- pass 2: vessel and small-airway trees --------------------------------- */

static covct_rc add_seg(gen *g, const tree_seg *s)
{
    if (g->n_segs == g->cap_segs) {
        size_t cap = g->cap_segs ? 2 * g->cap_segs : 512;
        tree_seg *n = covct_realloc(g->segs, cap * sizeof *n);
        if (!n)
            return COVCT_ERR(g->err, COVCT_ERR_NOMEM, "out of memory");
        g->segs = n;
        g->cap_segs = cap;
    }
    g->segs[g->n_segs++] = *s;
    return COVCT_OK;
}

/* Rotate unit vector d by angle a towards a random perpendicular
 * direction (angle phi around d). */
static void deflect(const double d[3], double a, double phi, double out[3])
{
    double ref[3] = {1, 0, 0};
    if (fabs(d[0]) > 0.9)
        ref[0] = 0, ref[1] = 1;
    double u[3] = {d[1] * ref[2] - d[2] * ref[1], d[2] * ref[0] - d[0] * ref[2],
                   d[0] * ref[1] - d[1] * ref[0]};
    normalize3(u);
    double w[3] = {d[1] * u[2] - d[2] * u[1], d[2] * u[0] - d[0] * u[2],
                   d[0] * u[1] - d[1] * u[0]};
    for (int i = 0; i < 3; i++) {
        double perp = cos(phi) * u[i] + sin(phi) * w[i];
        out[i] = cos(a) * d[i] + sin(a) * perp;
    }
    normalize3(out);
}

typedef struct tree_style {
    int levels;
    double r_factor, len_factor, wall_frac, wall_min;
    int is_airway;
} tree_style;

static covct_rc grow(gen *g, uint64_t *rs, const tree_style *st,
                     const double a[3], const double d[3], double len,
                     double r, int level)
{
    double b[3] = {a[0] + d[0] * len, a[1] + d[1] * len, a[2] + d[2] * len};
    tree_seg s;
    memcpy(s.a, a, sizeof s.a);
    memcpy(s.b, b, sizeof s.b);
    s.ra = r;
    s.rb = r * 0.9;
    s.wall = st->is_airway ? fmax(st->wall_min, st->wall_frac * r) : 0;
    covct_rc rc = add_seg(g, &s);
    if (rc || level + 1 >= st->levels)
        return rc;
    if (!lung_at(b[0], b[1], b[2], NULL))
        return COVCT_OK; /* left the lung: the branch ends here */
    /* Two children on opposite sides of the parent's axis; each tries a
     * few directions to stay inside the lung. */
    double phi0 = rnd_range(rs, 0, 2 * M_PI);
    for (int c = 0; c < 2; c++) {
        double cr = r * st->r_factor * (c ? 0.93 : 1.0);
        double clen = len * st->len_factor * rnd_range(rs, 0.85, 1.15);
        double cd[3];
        int ok = 0;
        for (int attempt = 0; attempt < 4 && !ok; attempt++) {
            double ang = rnd_range(rs, 20, 42) * M_PI / 180.0;
            double phi = phi0 + (c ? M_PI : 0) + rnd_range(rs, -0.6, 0.6);
            deflect(d, ang, phi, cd);
            double e[3] = {b[0] + cd[0] * clen, b[1] + cd[1] * clen,
                           b[2] + cd[2] * clen};
            ok = lung_at(e[0], e[1], e[2], NULL) != 0;
        }
        if (ok && (rc = grow(g, rs, st, b, cd, clen, cr, level + 1)))
            return rc;
    }
    return COVCT_OK;
}

static covct_rc make_trees(gen *g)
{
    static const tree_style vessel_style = {8, 0.80, 0.80, 0, 0, 0};
    static const tree_style airway_style = {4, 0.75, 0.80, 0.22, 0.7, 1};
    uint64_t rs = rnd_stream(g->p->seed, 1);
    covct_rc rc = COVCT_OK;
    for (int sidei = 0; sidei < 2 && !rc; sidei++) {
        double sx = sidei == 0 ? -1.0 : 1.0;
        const double *end = airway_tubes[1 + sidei].b;
        /* Pulmonary arteries leave the hilum just in front of and below
         * the bronchus; the veins lower, towards the left atrium. */
        double hv[2][3] = {{end[0] + sx * 2, end[1] - 10, end[2] - 4},
                           {end[0] + sx * 4, end[1] - 18, end[2] - 22}};
        static const double vdirs[7][3] = {
            {0.35, -0.10, 0.93}, {0.60, -0.55, 0.55}, {0.80, -0.50, -0.20},
            {0.35, 0.50, -0.80}, {0.60, 0.05, -0.80}, {0.55, 0.75, 0.30},
            {0.50, -0.40, -0.75}};
        static const double vlen[7] = {40, 35, 35, 45, 40, 35, 35};
        static const int vfrom[7] = {0, 0, 0, 0, 1, 1, 1};
        for (int r = 0; r < 7 && !rc; r++) {
            double d[3] = {sx * vdirs[r][0], vdirs[r][1], vdirs[r][2]};
            normalize3(d);
            rc = grow(g, &rs, &vessel_style, hv[vfrom[r]], d, vlen[r],
                      r < 4 ? 5.0 : 4.5, 0);
        }
        static const double adirs[3][3] = {
            {0.30, 0.05, 0.95}, {0.75, -0.55, -0.30}, {0.40, 0.45, -0.80}};
        for (int r = 0; r < 3 && !rc; r++) {
            double d[3] = {sx * adirs[r][0], adirs[r][1], adirs[r][2]};
            normalize3(d);
            rc = grow(g, &rs, &airway_style, end, d, 25.0, 4.0, 0);
        }
    }
    return rc;
}

/* Voxel index range [lo, hi] covering mm interval [a, b] along axis ax of
 * an axis-aligned affine; returns 0 when empty. */
static int vox_range(const covct_volume *v, int ax, double a, double b,
                     size_t *lo, size_t *hi)
{
    double s = v->affine[ax][ax], o = v->affine[ax][3];
    uint32_t n = ax == 0 ? v->nx : ax == 1 ? v->ny : v->nz;
    double i0 = (a - o) / s, i1 = (b - o) / s;
    if (i0 > i1) {
        double t = i0;
        i0 = i1;
        i1 = t;
    }
    double l = ceil(i0), h = floor(i1);
    if (l < 0)
        l = 0;
    if (h > (double)n - 1)
        h = (double)n - 1;
    if (l > h)
        return 0;
    *lo = (size_t)l;
    *hi = (size_t)h;
    return 1;
}

static void paint_tree_seg(gen *g, const tree_seg *s, int pass)
{
    const covct_volume *ct = g->ct;
    int16_t *hu = ct->data;
    double rmax = fmax(s->ra, s->rb) + s->wall;
    size_t lo[3], hi[3];
    for (int ax = 0; ax < 3; ax++)
        if (!vox_range(ct, ax, fmin(s->a[ax], s->b[ax]) - rmax,
                       fmax(s->a[ax], s->b[ax]) + rmax, &lo[ax], &hi[ax]))
            return;
    const size_t nx = ct->nx, ny = ct->ny;
    for (size_t k = lo[2]; k <= hi[2]; k++)
        for (size_t j = lo[1]; j <= hi[1]; j++)
            for (size_t i = lo[0]; i <= hi[0]; i++) {
                size_t idx = (k * ny + j) * nx + i;
                uint8_t kd = g->kind[idx];
                if (kd < K_PARENCHYMA)
                    continue; /* trees live inside the lungs only */
                double p[3];
                vox_to_mm(ct, (double)i, (double)j, (double)k, p);
                double t, d2 = seg_dist2(p, s->a, s->b, &t);
                double r = s->ra + (s->rb - s->ra) * t;
                if (s->wall == 0) { /* vessel */
                    if (d2 < r * r) {
                        hu[idx] = HU_VESSEL;
                        g->kind[idx] = K_VESSEL;
                    }
                } else if (pass == 0) { /* airway walls first */
                    double ro = r + s->wall;
                    if (d2 < ro * ro && kd != K_SAIRWAY) {
                        hu[idx] = HU_SAIRWAY_WALL;
                        g->kind[idx] = K_VESSEL;
                    }
                } else if (d2 < r * r) { /* then lumens over every wall */
                    hu[idx] = HU_SAIRWAY;
                    g->kind[idx] = K_SAIRWAY;
                }
            }
}

static void paint_trees(gen *g)
{
    for (size_t s = 0; s < g->n_segs; s++)
        if (g->segs[s].wall == 0)
            paint_tree_seg(g, &g->segs[s], 0);
    for (int pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < g->n_segs; s++)
            if (g->segs[s].wall > 0)
                paint_tree_seg(g, &g->segs[s], pass);
}

/* ---- pass 3: lesions -------------------------------------------------------- */

/* The surface of dependent consolidation: ycut +- 3 mm, undulating
 * along x and z (LPS y grows towards the back). */
static double dependent_y(const blob *b, const double p[3])
{
    return b->ycut + 3.0 * sin(p[0] / 17.0 + b->c[0]) * cos(p[2] / 23.0);
}

static int blob_inside(const blob *b, const double p[3])
{
    if (b->dependent)
        return p[1] >= dependent_y(b, p);
    double d[3] = {p[0] - b->c[0], p[1] - b->c[1], p[2] - b->c[2]};
    double q = 0;
    for (int a = 0; a < 3; a++) {
        double l = dot3(b->rot[a], d) * b->inv_ax[a];
        q += l * l;
    }
    if (b->sphere)
        return q <= 1.0;
    if (q > 1.7 * 1.7)
        return 0;
    double n = sqrt(dot3(d, d));
    if (n == 0)
        return 1;
    double eps = 0;
    for (int h = 0; h < 3; h++)
        eps += b->amp[h] * sin(3.0 * dot3(b->dir[h], d) / n + b->phase[h]);
    double lim = 1.0 + eps;
    return q < lim * lim;
}

static void random_unit(uint64_t *rs, double out[3])
{
    double z = rnd_range(rs, -1, 1), phi = rnd_range(rs, 0, 2 * M_PI);
    double s = sqrt(1 - z * z);
    out[0] = s * cos(phi);
    out[1] = s * sin(phi);
    out[2] = z;
}

static void random_shape(uint64_t *rs, blob *b, double r)
{
    /* Random orthonormal frame. */
    double a0[3], t[3];
    random_unit(rs, a0);
    deflect(a0, M_PI / 2, rnd_range(rs, 0, 2 * M_PI), t);
    double a2[3] = {a0[1] * t[2] - a0[2] * t[1], a0[2] * t[0] - a0[0] * t[2],
                    a0[0] * t[1] - a0[1] * t[0]};
    normalize3(a2);
    memcpy(b->rot[0], a0, sizeof a0);
    memcpy(b->rot[1], t, sizeof t);
    memcpy(b->rot[2], a2, sizeof a2);
    /* Semi-axes with product r^3: the ellipsoid keeps the sphere's
     * volume. */
    double f0 = rnd_range(rs, 0.8, 1.25), f1 = rnd_range(rs, 0.8, 1.25);
    double f2 = 1.0 / (f0 * f1);
    double fmaxv = fmax(f0, fmax(f1, f2));
    b->inv_ax[0] = 1.0 / (r * f0);
    b->inv_ax[1] = 1.0 / (r * f1);
    b->inv_ax[2] = 1.0 / (r * f2);
    double asum = 0;
    for (int h = 0; h < 3; h++) {
        b->amp[h] = rnd_range(rs, 0.04, 0.10);
        asum += b->amp[h];
        random_unit(rs, b->dir[h]);
        b->phase[h] = rnd_range(rs, 0, 2 * M_PI);
    }
    b->sphere = false;
    b->r_nominal = r;
    b->rb = r * fmaxv * (1.0 + asum) + 0.5;
}

/* Directions spread evenly over the sphere (Fibonacci lattice). */
#define N_DIRS 96
static void fib_dir(int i, double out[3])
{
    double z = 1.0 - (2.0 * i + 1.0) / N_DIRS;
    double s = sqrt(1 - z * z), phi = i * 2.399963229728653;
    out[0] = s * cos(phi);
    out[1] = s * sin(phi);
    out[2] = z;
}

/* Whether blob b can stand at its centre: in `lobe` (the centre's lobe if
 * 0), 5 mm plus its bounding radius from every fissure, clear of the
 * other lesions, and either wholly inside the lung or (touch) against the
 * chest wall or diaphragm but never the mediastinum. */
static int blob_fits(const gen *g, const blob *b, int lobe, bool touch)
{
    const double *c = b->c;
    int side = lung_at(c[0], c[1], c[2], NULL);
    if (!side)
        return 0;
    double fd;
    int l = lobe_at(side, c[0], c[1], c[2], &fd);
    if ((lobe && l != lobe) || fd < b->rb + COVCT_PHANTOM_FISSURE_MARGIN_MM)
        return 0;
    for (int j = 0; j < g->n_blobs; j++) {
        const double *o = g->blobs[j].c;
        double d[3] = {c[0] - o[0], c[1] - o[1], c[2] - o[2]};
        double m = b->rb + g->blobs[j].rb + 3.0;
        if (dot3(d, d) < m * m)
            return 0;
    }
    int touched = 0;
    for (int i = 0; i < N_DIRS; i++) {
        double u[3];
        fib_dir(i, u);
        if (!touch) {
            /* The bounding sphere plus 2 mm inside the lung. */
            for (double t = 2.0; t <= b->rb + 2.0; t += 2.0) {
                double p[3] = {c[0] + t * u[0], c[1] + t * u[1],
                               c[2] + t * u[2]};
                if (lung_at(p[0], p[1], p[2], NULL) != side)
                    return 0;
            }
            continue;
        }
        /* Touching: the core (0.4 r) inside the lung; every part of the
         * shape outside the lung is chest wall or diaphragm. */
        for (double t = 1.0; t <= b->rb; t += 1.0) {
            double p[3] = {c[0] + t * u[0], c[1] + t * u[1], c[2] + t * u[2]};
            int why, s2 = lung_at(p[0], p[1], p[2], &why);
            if (t <= 0.4 * b->r_nominal && s2 != side)
                return 0;
            if (s2 == side || !blob_inside(b, p))
                continue;
            if (s2 || why == WHY_MEDIASTINUM)
                return 0;
            if (why == WHY_WALL)
                touched = 1;
        }
    }
    return !touch || touched;
}

typedef struct lesion_spec {
    int cls, lobe;
    double r;
    bool touch;
} lesion_spec;

/* The standard set: both classes in a lower lobe, a consolidation against
 * the chest wall, subpleural ground glass, something in every lobe.
 * Largest first so the rejection sampler finds room. */
static const lesion_spec standard_lesions[] = {
    {COVCT_LESION_GGO, COVCT_LOBE_RLL, 18, true},
    {COVCT_LESION_GGO, COVCT_LOBE_LLL, 14, true},
    {COVCT_LESION_CONSOLIDATION, COVCT_LOBE_LLL, 12, true},
    {COVCT_LESION_GGO, COVCT_LOBE_RUL, 11, false},
    {COVCT_LESION_GGO, COVCT_LOBE_LUL, 10, true},
    {COVCT_LESION_CONSOLIDATION, COVCT_LOBE_RLL, 9, false},
    {COVCT_LESION_CONSOLIDATION, COVCT_LOBE_RUL, 8, true},
    {COVCT_LESION_GGO, COVCT_LOBE_RML, 7, false},
};

static double lesion_hu(uint64_t *rs, int cls)
{
    return cls == COVCT_LESION_GGO
               ? rnd_range(rs, COVCT_PHANTOM_GGO_HU_MIN + 10,
                           COVCT_PHANTOM_GGO_HU_MAX - 10)
               : rnd_range(rs, COVCT_PHANTOM_CONS_HU_MIN + 5,
                           COVCT_PHANTOM_CONS_HU_MAX - 5);
}

static covct_rc place_lesions(gen *g)
{
    const covct_phantom_params *p = g->p;
    uint64_t rs = rnd_stream(p->seed, 2);
    if (p->sphere_radius_mm > 0) {
        blob *b = &g->blobs[0];
        memset(b, 0, sizeof *b);
        const double *sc = p->sphere_centre_mm;
        if (sc[0] == 0 && sc[1] == 0 && sc[2] == 0) {
            b->c[0] = -80;
            b->c[1] = 40;
            b->c[2] = -30;
        } else {
            memcpy(b->c, sc, sizeof b->c);
        }
        for (int a = 0; a < 3; a++) {
            b->rot[a][a] = 1;
            b->inv_ax[a] = 1.0 / p->sphere_radius_mm;
        }
        b->sphere = true;
        b->r_nominal = p->sphere_radius_mm;
        b->rb = p->sphere_radius_mm;
        b->cls = p->sphere_class ? p->sphere_class
                                 : COVCT_LESION_CONSOLIDATION;
        if (b->cls != COVCT_LESION_GGO &&
            b->cls != COVCT_LESION_CONSOLIDATION)
            return COVCT_ERR(g->err, COVCT_ERR_ARG,
                             "phantom: sphere_class %d is not a lesion class",
                             b->cls);
        b->hu = b->cls == COVCT_LESION_GGO
                    ? 0.5 * (COVCT_PHANTOM_GGO_HU_MIN + COVCT_PHANTOM_GGO_HU_MAX)
                    : 0.5 * (COVCT_PHANTOM_CONS_HU_MIN +
                             COVCT_PHANTOM_CONS_HU_MAX);
        int side = lung_at(b->c[0], b->c[1], b->c[2], NULL);
        if (!side || !blob_fits(g, b, 0, false))
            return COVCT_ERR(g->err, COVCT_ERR_ARG,
                             "phantom: a sphere of radius %g mm at (%g, %g, "
                             "%g) is not inside one lobe, inside the lung "
                             "and %g mm from the fissures",
                             p->sphere_radius_mm, b->c[0], b->c[1], b->c[2],
                             COVCT_PHANTOM_FISSURE_MARGIN_MM);
        b->lobe = lobe_at(side, b->c[0], b->c[1], b->c[2], NULL);
        g->n_blobs = 1;
        return COVCT_OK;
    }
    if (!p->lesions)
        return COVCT_OK;
    if (p->dependent < 0 || p->dependent > 0.8 || p->dependent != p->dependent)
        return COVCT_ERR(g->err, COVCT_ERR_ARG,
                         "phantom: dependent consolidation %g is not a "
                         "fraction from 0 to 0.8",
                         p->dependent);
    const bool dep = p->dependent > 0;
    size_t n_spec = sizeof standard_lesions / sizeof standard_lesions[0];
    for (size_t s = 0; s < n_spec; s++) {
        const lesion_spec *sp = &standard_lesions[s];
        if (dep && (sp->lobe == COVCT_LOBE_RLL || sp->lobe == COVCT_LOBE_LLL))
            continue; /* the dependent consolidation takes their place */
        blob *b = &g->blobs[g->n_blobs];
        memset(b, 0, sizeof *b);
        b->cls = sp->cls;
        b->lobe = sp->lobe;
        b->subpleural = sp->touch;
        b->hu = lesion_hu(&rs, sp->cls);
        int left = sp->lobe == COVCT_LOBE_LUL || sp->lobe == COVCT_LOBE_LLL;
        double cx = left ? LUNG_CX : -LUNG_CX;
        int placed = 0;
        for (int attempt = 0; attempt < 20000 && !placed; attempt++) {
            if (attempt % 50 == 0)
                random_shape(&rs, b, sp->r);
            b->c[0] = rnd_range(&rs, cx - LUNG_AX, cx + LUNG_AX);
            b->c[1] = rnd_range(&rs, LUNG_YC - LUNG_AY, LUNG_YC + LUNG_AY);
            b->c[2] = rnd_range(&rs, -125.0, LUNG_ZC + LUNG_CAP);
            int side = lung_at(b->c[0], b->c[1], b->c[2], NULL);
            if (!side || lobe_at(side, b->c[0], b->c[1], b->c[2], NULL) !=
                             sp->lobe)
                continue;
            placed = blob_fits(g, b, sp->lobe, sp->touch);
        }
        if (!placed)
            return COVCT_ERR(g->err, COVCT_ERR_INTERNAL,
                             "phantom: no room for lesion %zu (%s, r %g mm) "
                             "with seed %llu",
                             s + 1, covct_lobe_name(sp->lobe), sp->r,
                             (unsigned long long)p->seed);
        g->n_blobs++;
    }
    for (int side = 0; dep && side < 2; side++) {
        blob *b = &g->blobs[g->n_blobs++];
        memset(b, 0, sizeof *b);
        b->cls = COVCT_LESION_CONSOLIDATION;
        b->lobe = side ? COVCT_LOBE_LLL : COVCT_LOBE_RLL;
        b->subpleural = true;
        b->dependent = true;
        b->hu = lesion_hu(&rs, b->cls);
        b->c[0] = side ? LUNG_CX : -LUNG_CX;
        b->c[1] = LUNG_YC + LUNG_AY * (1.0 - p->dependent);
        b->c[2] = LUNG_ZC;
        b->frac = p->dependent;
        b->rb = 1e4; /* the whole grid; the lobe and ycut decide */
    }
    return COVCT_OK;
}

static void paint_lesions(gen *g)
{
    const covct_volume *ct = g->ct;
    int16_t *hu = ct->data;
    const size_t nx = ct->nx, ny = ct->ny;
    /* Dependent consolidation's cut, from the lungs' front-to-back extent
     * (voxel centres of the lung mask). */
    double ymin = DBL_MAX, ymax = -DBL_MAX;
    for (int n = 0; n < g->n_blobs; n++)
        if (g->blobs[n].dependent && ymin > ymax) {
            size_t nv = covct_volume_voxels(ct);
            for (size_t i = 0; i < nv; i++)
                if (g->seg->lungs[i]) {
                    double y = ct->affine[1][1] * (double)((i / nx) % ny) +
                               ct->affine[1][3];
                    ymin = y < ymin ? y : ymin;
                    ymax = y > ymax ? y : ymax;
                }
        }
    for (int n = 0; n < g->n_blobs; n++)
        if (g->blobs[n].dependent)
            g->blobs[n].ycut = ymax - g->blobs[n].frac * (ymax - ymin);
    for (int n = 0; n < g->n_blobs; n++) {
        const blob *b = &g->blobs[n];
        size_t lo[3], hi[3];
        int empty = 0;
        for (int ax = 0; ax < 3 && !empty; ax++)
            empty = !vox_range(ct, ax, b->c[ax] - b->rb, b->c[ax] + b->rb,
                               &lo[ax], &hi[ax]);
        if (empty)
            continue;
        int16_t v = (int16_t)lrint(b->hu);
        for (size_t k = lo[2]; k <= hi[2]; k++)
            for (size_t j = lo[1]; j <= hi[1]; j++)
                for (size_t i = lo[0]; i <= hi[0]; i++) {
                    size_t idx = (k * ny + j) * nx + i;
                    if (!g->seg->lungs[idx] || g->seg->lobes[idx] != b->lobe ||
                        g->lesion_id[idx])
                        continue;
                    /* Ground glass leaves vessels and airways visible and
                     * outside the lesion; consolidation covers them. */
                    if (b->cls == COVCT_LESION_GGO &&
                        g->kind[idx] != K_PARENCHYMA)
                        continue;
                    /* Dependent consolidation keeps its small airways'
                     * lumens open: air bronchograms. */
                    if (b->dependent && g->kind[idx] == K_SAIRWAY)
                        continue;
                    double p[3];
                    vox_to_mm(ct, (double)i, (double)j, (double)k, p);
                    if (!blob_inside(b, p))
                        continue;
                    hu[idx] = v;
                    g->seg->lesions[idx] = (uint8_t)b->cls;
                    g->lesion_id[idx] = (uint8_t)(n + 1);
                    g->les_vox[n]++;
                    for (int a = 0; a < 3; a++)
                        g->les_sum[n][a] += p[a];
                }
    }
}

/* ---- pass 4: blur, noise, padding ------------------------------------------ */

static void finish_slices(gen *g, int32_t *tmp)
{
    covct_volume *ct = g->ct;
    int16_t *hu = ct->data;
    const size_t nx = ct->nx, ny = ct->ny, nz = ct->nz;
    const double sigma = g->p->noise_hu;
    const double r_fov = COVCT_PHANTOM_FOV_DIAMETER_MM / 2;
    for (size_t k = 0; k < nz; k++) {
        int16_t *pl = hu + k * nx * ny;
        uint8_t *out = ct->outside + k * nx * ny;
        /* 1-2-1 in x into tmp, then 1-2-1 in y; edges replicate. */
        for (size_t j = 0; j < ny; j++) {
            const int16_t *r = pl + j * nx;
            for (size_t i = 0; i < nx; i++) {
                int32_t a = r[i ? i - 1 : 0], c = r[i + 1 < nx ? i + 1 : i];
                tmp[j * nx + i] = a + 2 * (int32_t)r[i] + c;
            }
        }
        uint64_t rs = rnd_stream(g->p->seed, 1000 + k);
        double spare = 0;
        int have_spare = 0;
        for (size_t j = 0; j < ny; j++) {
            const int32_t *up = tmp + (j ? j - 1 : 0) * nx;
            const int32_t *mid = tmp + j * nx;
            const int32_t *dn = tmp + (j + 1 < ny ? j + 1 : j) * nx;
            for (size_t i = 0; i < nx; i++) {
                size_t idx = j * nx + i;
                double pmm[3];
                vox_to_mm(ct, (double)i, (double)j, (double)k, pmm);
                if (pmm[0] * pmm[0] + pmm[1] * pmm[1] > r_fov * r_fov) {
                    pl[idx] = COVCT_PHANTOM_PADDING_HU;
                    out[idx] = 1;
                    continue;
                }
                double v = (up[i] + 2.0 * mid[i] + dn[i]) / 16.0;
                if (sigma > 0) {
                    /* Box-Muller, two normal deviates per pair. */
                    double nrm;
                    if (have_spare) {
                        nrm = spare;
                        have_spare = 0;
                    } else {
                        double u1 = 1.0 - rnd_unit(&rs), u2 = rnd_unit(&rs);
                        double rad = sqrt(-2.0 * log(u1));
                        nrm = rad * cos(2 * M_PI * u2);
                        spare = rad * sin(2 * M_PI * u2);
                        have_spare = 1;
                    }
                    v += sigma * nrm;
                }
                v = v < -1024 ? -1024 : v > 3071 ? 3071 : v;
                pl[idx] = (int16_t)lrint(v);
                out[idx] = 0;
            }
        }
    }
}

/* ---- truth summary ----------------------------------------------------------- */

static void summarize(gen *g, covct_phantom_truth *t)
{
    const covct_volume *ct = g->ct;
    const covct_seg *s = g->seg;
    memset(t, 0, sizeof *t);
    t->seed = g->p->seed;
    t->voxel_ml = fabs(ct->spacing[0] * ct->spacing[1] * ct->spacing[2]) /
                  1000.0;
    uint64_t lobe[COVCT_N_LOBES + 1] = {0}, lobe_ggo[COVCT_N_LOBES + 1] = {0},
             lobe_cons[COVCT_N_LOBES + 1] = {0};
    uint64_t right = 0, left = 0, airway = 0, body = 0, ggo = 0, cons = 0;
    size_t n = covct_volume_voxels(ct);
    for (size_t i = 0; i < n; i++) {
        body += s->body[i];
        airway += s->airways[i];
        right += s->lungs[i] == COVCT_LUNG_RIGHT;
        left += s->lungs[i] == COVCT_LUNG_LEFT;
        uint8_t lb = s->lobes[i] <= COVCT_N_LOBES ? s->lobes[i] : 0;
        lobe[lb]++;
        if (s->lesions[i] == COVCT_LESION_GGO) {
            ggo++;
            lobe_ggo[lb]++;
        } else if (s->lesions[i] == COVCT_LESION_CONSOLIDATION) {
            cons++;
            lobe_cons[lb]++;
        }
    }
    const double vm = t->voxel_ml;
    for (int l = 1; l <= COVCT_N_LOBES; l++) {
        t->lobe_ml[l] = (double)lobe[l] * vm;
        t->lobe_ggo_ml[l] = (double)lobe_ggo[l] * vm;
        t->lobe_consolidation_ml[l] = (double)lobe_cons[l] * vm;
    }
    t->right_ml = (double)right * vm;
    t->left_ml = (double)left * vm;
    t->lungs_ml = (double)(right + left) * vm;
    t->airway_ml = (double)airway * vm;
    t->body_ml = (double)body * vm;
    t->ggo_ml = (double)ggo * vm;
    t->consolidation_ml = (double)cons * vm;
    t->lesion_ml = (double)(ggo + cons) * vm;
    t->n_lesions = g->n_blobs;
    for (int i = 0; i < g->n_blobs; i++) {
        const blob *b = &g->blobs[i];
        covct_phantom_lesion *l = &t->lesion[i];
        l->cls = b->cls;
        l->lobe = b->lobe;
        l->voxels = g->les_vox[i];
        l->volume_ml = (double)g->les_vox[i] * vm;
        for (int a = 0; a < 3; a++)
            l->centre_mm[a] = g->les_vox[i]
                                  ? g->les_sum[i][a] / (double)g->les_vox[i]
                                  : b->c[a];
        /* Dependent consolidation has no nominal shape: the sphere of
         * its volume. */
        l->radius_mm = b->dependent ? cbrt(3.0 * l->volume_ml * 1000.0 /
                                           (4.0 * M_PI))
                                    : b->r_nominal;
        l->hu = b->hu;
        l->subpleural = b->subpleural;
    }
}

/* ---- public: make -------------------------------------------------------------- */

void covct_phantom_params_default(covct_phantom_params *p)
{
    memset(p, 0, sizeof *p);
    p->pixel_mm = 1.4;
    p->slice_mm = 2.5;
    p->fov_mm = 358.4;
    p->length_mm = 300.0;
    p->seed = 1;
    p->noise_hu = 12.0;
    p->lesions = true;
    p->fissures = true;
    p->sphere_class = COVCT_LESION_CONSOLIDATION;
}

covct_rc covct_phantom_make(const covct_phantom_params *params,
                            covct_volume **ct_out, covct_seg **truth_out,
                            covct_phantom_truth *t, covct_error *err)
{
    covct_phantom_params p;
    if (params)
        p = *params;
    else
        covct_phantom_params_default(&p);
    if (ct_out)
        *ct_out = NULL;
    if (truth_out)
        *truth_out = NULL;
    if (!ct_out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "phantom: ct is NULL");
    if (!(p.pixel_mm > 0.05 && p.pixel_mm <= 20) ||
        !(p.slice_mm > 0.05 && p.slice_mm <= 50))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: pixel %g mm and slice %g mm must be in "
                         "0.05..20 and 0.05..50",
                         p.pixel_mm, p.slice_mm);
    if (!(p.noise_hu >= 0 && p.noise_hu <= 1000))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: noise %g HU must be in 0..1000",
                         p.noise_hu);
    if (!(p.sphere_radius_mm >= 0 && p.sphere_radius_mm < 100))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: sphere radius %g mm must be in 0..100",
                         p.sphere_radius_mm);
    for (int a = 0; a < 3; a++)
        if (!isfinite(p.centre_mm[a]) || !isfinite(p.sphere_centre_mm[a]))
            return COVCT_ERR(err, COVCT_ERR_ARG,
                             "phantom: centre coordinates must be finite");
    double nxd = p.nx ? p.nx : floor(p.fov_mm / p.pixel_mm + 0.5);
    double nyd = p.ny ? p.ny : floor(p.fov_mm / p.pixel_mm + 0.5);
    double nzd = p.nz ? p.nz : floor(p.length_mm / p.slice_mm + 0.5);
    /* Rows and Columns are US in DICOM; 4096 slices covers 0.1 mm over
     * 400 mm. */
    if (!(nxd >= 1 && nxd <= 4096 && nyd >= 1 && nyd <= 4096 && nzd >= 1 &&
          nzd <= 4096))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: grid %g x %g x %g is outside 1..4096",
                         nxd, nyd, nzd);
    gen g;
    memset(&g, 0, sizeof g);
    g.p = &p;
    g.err = err;
    covct_rc rc = covct_volume_new((uint32_t)nxd, (uint32_t)nyd,
                                   (uint32_t)nzd, COVCT_DTYPE_INT16, &g.ct,
                                   err);
    if (rc)
        return rc;
    covct_volume *ct = g.ct;
    ct->spacing[0] = ct->spacing[1] = p.pixel_mm;
    ct->spacing[2] = p.slice_mm;
    memset(ct->affine, 0, sizeof ct->affine);
    ct->affine[0][0] = p.pixel_mm;
    ct->affine[1][1] = p.pixel_mm;
    ct->affine[2][2] = p.slice_mm;
    ct->affine[0][3] = p.centre_mm[0] - (nxd - 1) * p.pixel_mm / 2;
    ct->affine[1][3] = p.centre_mm[1] - (nyd - 1) * p.pixel_mm / 2;
    ct->affine[2][3] = p.centre_mm[2] - (nzd - 1) * p.slice_mm / 2;
    ct->affine[3][3] = 1;
    size_t n = covct_volume_voxels(ct);
    int32_t *tmp = NULL;
    ct->outside = covct_malloc(n);
    g.kind = covct_calloc(n, 1);
    g.lesion_id = covct_calloc(n, 1);
    tmp = covct_malloc((size_t)ct->nx * ct->ny * sizeof *tmp);
    if (!ct->outside || !g.kind || !g.lesion_id || !tmp) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                       "phantom: cannot allocate %zu voxels", n);
        goto out;
    }
    if ((rc = covct_seg_new(ct, &g.seg, err)))
        goto out;
    if ((rc = place_lesions(&g)))
        goto out;
    if ((rc = make_trees(&g)))
        goto out;
    paint_anatomy(&g);
    paint_trees(&g);
    paint_lesions(&g);
    finish_slices(&g, tmp);
    if (t)
        summarize(&g, t);
    covct_log(COVCT_LOG_DEBUG, "phantom: %zu tree segments", g.n_segs);
out:
    covct_free(tmp);
    covct_free(g.kind);
    covct_free(g.lesion_id);
    covct_free(g.segs);
    if (rc) {
        covct_volume_free(g.ct);
        covct_seg_free(g.seg);
        return rc;
    }
    *ct_out = g.ct;
    if (truth_out)
        *truth_out = g.seg;
    else
        covct_seg_free(g.seg);
    return COVCT_OK;
}

/* ---- public: DICOM ------------------------------------------------------------- */

static covct_rc ensure_dir(const char *dir, covct_error *err)
{
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
            return COVCT_OK;
        return COVCT_ERR(err, COVCT_ERR_IO, "%s exists and is not a folder",
                         dir);
    }
    return COVCT_ERR(err, COVCT_ERR_IO, "cannot create folder %s: %s", dir,
                     strerror(errno));
}

/* FNV-1a over bytes, continuing from h. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

/* "2.25." followed by the decimal value of a 128-bit UUID (PS3.5 B.2)
 * made from the content hash, a role and an index: a name-based UUID in
 * the RFC 9562 version 8 (custom) layout. */
static void make_uid(const uint64_t h[2], uint64_t role, uint64_t index,
                     char out[65])
{
    uint64_t s = h[0] ^ (role * 0x9E3779B97F4A7C15ull) ^ (index << 20);
    uint64_t hi = rnd_next(&s) ^ h[1], lo = rnd_next(&s);
    hi = (hi & ~0xF000ull) | 0x8000ull;          /* version 8 */
    lo = (lo & ~(3ull << 62)) | (2ull << 62);    /* variant 10 */
    uint8_t uuid[16];
    for (int i = 0; i < 8; i++) {
        uuid[i] = (uint8_t)(hi >> (56 - 8 * i));
        uuid[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    covct_dcm_uid_from_uuid(uuid, out);
}

/* A DS value (at most 16 characters, PS3.5 6.2). */
static void fmt_ds(char *buf, size_t cap, double v)
{
    for (int prec = 10; prec >= 4; prec--) {
        int n = snprintf(buf, cap, "%.*g", prec, v);
        if (n > 0 && n <= 16)
            return;
    }
    snprintf(buf, cap, "%.4g", v);
}

#define T(g, e) COVCT_TAG(g, e)

static covct_rc set_str(covct_dcm_dataset *ds, uint32_t tag, const char *vr,
                        const char *s, covct_error *err)
{
    return covct_dcm_dataset_set_string(ds, tag, COVCT_VR(vr[0], vr[1]), s,
                                        err);
}

typedef struct series_ctx {
    const covct_volume *ct;
    uint64_t hash[2];
    char study_uid[65], series_uid[65], for_uid[65];
    double iop[6];
    uint8_t *px;   /* one slice, little endian */
} series_ctx;

static covct_rc write_slice(const series_ctx *sc, uint32_t k, uint32_t file_no,
                            const char *dir, covct_error *err)
{
    const covct_volume *ct = sc->ct;
    covct_dcm_dataset *ds = covct_dcm_dataset_new();
    if (!ds)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    char buf[160], a[24], b[24], c[24], uid[65];
    covct_rc rc = COVCT_OK;
    double pos[3];
    vox_to_mm(ct, 0, 0, (double)k, pos);
    /* Instance Number from the head: slice nearest the head is 1. */
    uint32_t inst = ct->affine[2][2] > 0 ? ct->nz - k : k + 1;
#define S(tag, vr, s)                                                       \
    do {                                                                    \
        if (!rc)                                                            \
            rc = set_str(ds, tag, vr, s, err);                              \
    } while (0)
    S(T(0x0008, 0x0005), "CS", "ISO_IR 192");
    S(T(0x0008, 0x0008), "CS", "DERIVED\\SECONDARY\\AXIAL");
    S(T(0x0008, 0x0016), "UI", "1.2.840.10008.5.1.4.1.1.2");
    make_uid(sc->hash, 4, k, uid);
    S(T(0x0008, 0x0018), "UI", uid);
    S(T(0x0008, 0x0020), "DA", "20200301");
    S(T(0x0008, 0x0023), "DA", "20200301");
    S(T(0x0008, 0x0030), "TM", "120000");
    S(T(0x0008, 0x0033), "TM", "120000");
    S(T(0x0008, 0x0050), "SH", "");
    S(T(0x0008, 0x0060), "CS", "CT");
    S(T(0x0008, 0x0070), "LO", "covct synthetic phantom");
    S(T(0x0008, 0x0090), "PN", "");
    S(T(0x0008, 0x1030), "LO", "SYNTHETIC PHANTOM - NOT PATIENT DATA");
    S(T(0x0008, 0x103E), "LO", "SYNTHETIC PHANTOM - NOT PATIENT DATA");
    S(T(0x0008, 0x1090), "LO", "covct phantom");
    S(T(0x0008, 0x2111), "ST",
      "Computed digital phantom (covct phantom); not acquired from a "
      "patient");
    S(T(0x0010, 0x0010), "PN", "SYNTHETIC^PHANTOM");
    S(T(0x0010, 0x0020), "LO", "SYNTH-PHANTOM");
    S(T(0x0010, 0x0030), "DA", "");
    S(T(0x0010, 0x0040), "CS", "O");
    S(T(0x0018, 0x0015), "CS", "CHEST");
    fmt_ds(a, sizeof a, ct->spacing[2]);
    S(T(0x0018, 0x0050), "DS", a);
    S(T(0x0018, 0x0060), "DS", "120");
    S(T(0x0018, 0x5100), "CS", "FFS");
    S(T(0x0020, 0x000D), "UI", sc->study_uid);
    S(T(0x0020, 0x000E), "UI", sc->series_uid);
    S(T(0x0020, 0x0010), "SH", "PHANTOM");
    S(T(0x0020, 0x0011), "IS", "1");
    S(T(0x0020, 0x0012), "IS", "1");
    snprintf(buf, sizeof buf, "%u", inst);
    S(T(0x0020, 0x0013), "IS", buf);
    fmt_ds(a, sizeof a, pos[0]);
    fmt_ds(b, sizeof b, pos[1]);
    fmt_ds(c, sizeof c, pos[2]);
    snprintf(buf, sizeof buf, "%s\\%s\\%s", a, b, c);
    S(T(0x0020, 0x0032), "DS", buf);
    {
        char v[6][24];
        for (int i = 0; i < 6; i++)
            fmt_ds(v[i], sizeof v[i], sc->iop[i]);
        snprintf(buf, sizeof buf, "%s\\%s\\%s\\%s\\%s\\%s", v[0], v[1], v[2],
                 v[3], v[4], v[5]);
    }
    S(T(0x0020, 0x0037), "DS", buf);
    S(T(0x0020, 0x0052), "UI", sc->for_uid);
    S(T(0x0020, 0x1040), "LO", "");
    fmt_ds(a, sizeof a, pos[2]);
    S(T(0x0020, 0x1041), "DS", a);
    S(T(0x0028, 0x0004), "CS", "MONOCHROME2");
    /* Pixel Spacing is row spacing (between rows, along j) first. */
    fmt_ds(a, sizeof a, ct->spacing[1]);
    fmt_ds(b, sizeof b, ct->spacing[0]);
    snprintf(buf, sizeof buf, "%s\\%s", a, b);
    S(T(0x0028, 0x0030), "DS", buf);
    S(T(0x0028, 0x1050), "DS", "-600");
    S(T(0x0028, 0x1051), "DS", "1500");
    S(T(0x0028, 0x1052), "DS", "0");
    S(T(0x0028, 0x1053), "DS", "1");
    S(T(0x0028, 0x1054), "LO", "HU");
#undef S
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0002), 1, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0010),
                                       (uint16_t)ct->ny, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0011),
                                       (uint16_t)ct->nx, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0100), 16, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0101), 16, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0102), 15, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0103), 1, err);
    if (!rc) {
        /* Pixel Padding Value is SS because Pixel Representation is 1
         * (PS3.3 C.7.5.1.1.2). */
        int16_t pad = COVCT_PHANTOM_PADDING_HU;
        uint8_t pb[2] = {(uint8_t)((uint16_t)pad & 0xFF),
                         (uint8_t)((uint16_t)pad >> 8)};
        rc = covct_dcm_dataset_set(ds, T(0x0028, 0x0120), COVCT_VR('S', 'S'),
                                   pb, 2, err);
    }
    size_t plane = (size_t)ct->nx * ct->ny;
    const int16_t *src = (const int16_t *)ct->data + plane * k;
    for (size_t i = 0; i < plane; i++) {
        uint16_t v = (uint16_t)src[i];
        sc->px[2 * i] = (uint8_t)(v & 0xFF);
        sc->px[2 * i + 1] = (uint8_t)(v >> 8);
    }
    if (!rc)
        rc = covct_dcm_dataset_set(ds, T(0x7FE0, 0x0010), COVCT_VR('O', 'W'),
                                   sc->px, plane * 2, err);
    if (!rc) {
        char path[4096];
        int pn = snprintf(path, sizeof path, "%s/IM%05u.dcm", dir, file_no);
        if (pn < 0 || (size_t)pn >= sizeof path)
            rc = COVCT_ERR(err, COVCT_ERR_ARG, "folder name too long: %s",
                           dir);
        else
            rc = covct_dcm_write_file(path, ds, err);
    }
    covct_dcm_dataset_free(ds);
    return rc;
}

covct_rc covct_phantom_write_dicom(const covct_volume *ct, const char *dir,
                                   covct_error *err)
{
    if (!ct || !dir || !ct->data)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: volume, data or folder is NULL");
    if (ct->dtype != COVCT_DTYPE_INT16)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: DICOM output needs an INT16 volume");
    if (ct->nx > 65535 || ct->ny > 65535 || ct->nz < 1 || ct->nz > 99999)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: %ux%ux%u does not fit DICOM Rows/Columns "
                         "and five-digit file numbers",
                         ct->nx, ct->ny, ct->nz);
    /* Axial: the slice step along z only, rows and columns in the axial
     * plane. */
    if (ct->affine[2][0] != 0 || ct->affine[2][1] != 0 ||
        ct->affine[0][2] != 0 || ct->affine[1][2] != 0 ||
        ct->affine[2][2] == 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: DICOM output needs axial slices");
    series_ctx sc;
    memset(&sc, 0, sizeof sc);
    sc.ct = ct;
    for (int i = 0; i < 3; i++) {
        sc.iop[i] = ct->affine[i][0] / ct->spacing[0];
        sc.iop[3 + i] = ct->affine[i][1] / ct->spacing[1];
    }
    /* UIDs and file order from the content: same phantom, same UIDs. */
    size_t bytes = covct_volume_voxels(ct) * 2;
    sc.hash[0] = fnv1a(0xCBF29CE484222325ull, ct->data, bytes);
    sc.hash[0] = fnv1a(sc.hash[0], ct->affine, sizeof ct->affine);
    sc.hash[1] = fnv1a(0x84222325CBF29CE4ull ^ sc.hash[0], &ct->nx,
                       sizeof ct->nx);
    make_uid(sc.hash, 1, 0, sc.study_uid);
    make_uid(sc.hash, 2, 0, sc.series_uid);
    make_uid(sc.hash, 3, 0, sc.for_uid);
    covct_rc rc = ensure_dir(dir, err);
    if (rc)
        return rc;
    uint32_t *perm = covct_malloc(ct->nz * sizeof *perm);
    sc.px = covct_malloc((size_t)ct->nx * ct->ny * 2);
    if (!perm || !sc.px) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* File numbers: a shuffle (Fisher-Yates), so that neither the names
     * nor the directory order say where a slice lies. */
    for (uint32_t k = 0; k < ct->nz; k++)
        perm[k] = k + 1;
    uint64_t rs = sc.hash[1];
    for (uint32_t k = ct->nz; k > 1; k--) {
        uint32_t r = (uint32_t)(rnd_next(&rs) % k);
        uint32_t tmpv = perm[k - 1];
        perm[k - 1] = perm[r];
        perm[r] = tmpv;
    }
    for (uint32_t k = 0; k < ct->nz && !rc; k++)
        rc = write_slice(&sc, k, perm[k], dir, err);
out:
    covct_free(perm);
    covct_free(sc.px);
    return rc;
}

/* ---- public: truth files ------------------------------------------------------ */

static covct_rc write_labels(const covct_volume *ct, const uint8_t *lab,
                             const char *dir, const char *name,
                             covct_error *err)
{
    covct_volume *v = NULL;
    covct_rc rc = covct_volume_new(ct->nx, ct->ny, ct->nz, COVCT_DTYPE_INT16,
                                   &v, err);
    if (rc)
        return rc;
    memcpy(v->affine, ct->affine, sizeof v->affine);
    memcpy(v->spacing, ct->spacing, sizeof v->spacing);
    int16_t *d = v->data;
    size_t n = covct_volume_voxels(ct);
    for (size_t i = 0; i < n; i++)
        d[i] = lab[i];
    char path[4096];
    int pn = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (pn < 0 || (size_t)pn >= sizeof path)
        rc = COVCT_ERR(err, COVCT_ERR_ARG, "folder name too long: %s", dir);
    else
        rc = covct_nifti_write(v, path, err);
    covct_volume_free(v);
    return rc;
}

/* Build helpers that remember a failed allocation (cJSON returns NULL). */
typedef struct jb {
    int failed;
} jb;

static cJSON *jchk(jb *j, cJSON *item)
{
    if (!item)
        j->failed = 1;
    return item;
}

static void jnum(jb *j, cJSON *o, const char *k, double v)
{
    /* Three decimals in ml keep the file readable; volumes are exact
     * multiples of the voxel volume anyway. */
    if (o)
        jchk(j, cJSON_AddNumberToObject(o, k, round(v * 1e4) / 1e4));
}

static void jvec3(jb *j, cJSON *o, const char *k, const double v[3])
{
    double r[3];
    for (int i = 0; i < 3; i++)
        r[i] = round(v[i] * 100) / 100;
    cJSON *a = jchk(j, cJSON_CreateDoubleArray(r, 3));
    if (a && o)
        cJSON_AddItemToObject(o, k, a);
    else
        cJSON_Delete(a);
}

static const char *class_name(int cls)
{
    return cls == COVCT_LESION_GGO ? "ground glass"
           : cls == COVCT_LESION_CONSOLIDATION ? "consolidation"
                                                : "none";
}

covct_rc covct_phantom_write_truth(const covct_seg *truth,
                                   const covct_phantom_truth *t,
                                   const covct_volume *ct, const char *dir,
                                   covct_error *err)
{
    if (!truth || !t || !ct || !dir)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: truth, summary, volume or folder is NULL");
    if (truth->nx != ct->nx || truth->ny != ct->ny || truth->nz != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "phantom: truth %ux%ux%u does not match the CT "
                         "%ux%ux%u",
                         truth->nx, truth->ny, truth->nz, ct->nx, ct->ny,
                         ct->nz);
    covct_rc rc = ensure_dir(dir, err);
    if (!rc)
        rc = write_labels(ct, truth->lungs, dir, "truth_lungs.nii.gz", err);
    if (!rc)
        rc = write_labels(ct, truth->lobes, dir, "truth_lobes.nii.gz", err);
    if (!rc)
        rc = write_labels(ct, truth->lesions, dir, "truth_lesions.nii.gz",
                          err);
    if (rc)
        return rc;

    jb j = {0};
    cJSON *root = jchk(&j, cJSON_CreateObject());
    if (root) {
        jchk(&j, cJSON_AddStringToObject(
                     root, "note",
                     "SYNTHETIC PHANTOM - NOT PATIENT DATA. Exact ground "
                     "truth: volumes are voxel counts of the truth masks "
                     "times the voxel volume."));
        jchk(&j, cJSON_AddStringToObject(root, "coordinates",
                                         "DICOM patient LPS, mm"));
        jnum(&j, root, "seed", (double)t->seed);
        cJSON *grid = jchk(&j, cJSON_AddObjectToObject(root, "grid"));
        if (grid) {
            double dims[3] = {ct->nx, ct->ny, ct->nz};
            cJSON *a = jchk(&j, cJSON_CreateDoubleArray(dims, 3));
            if (a)
                cJSON_AddItemToObject(grid, "size", a);
            jvec3(&j, grid, "spacing_mm", ct->spacing);
            jchk(&j, cJSON_AddNumberToObject(grid, "voxel_ml", t->voxel_ml));
        }
        cJSON *les = jchk(&j, cJSON_AddArrayToObject(root, "lesions"));
        for (int i = 0; les && i < t->n_lesions; i++) {
            const covct_phantom_lesion *l = &t->lesion[i];
            cJSON *o = jchk(&j, cJSON_CreateObject());
            if (!o)
                break;
            cJSON_AddItemToArray(les, o);
            jnum(&j, o, "id", i + 1);
            jchk(&j, cJSON_AddStringToObject(o, "class", class_name(l->cls)));
            jnum(&j, o, "label", l->cls);
            jchk(&j, cJSON_AddStringToObject(o, "lobe",
                                             covct_lobe_name(l->lobe)));
            jnum(&j, o, "volume_ml", l->volume_ml);
            jnum(&j, o, "voxels", (double)l->voxels);
            jvec3(&j, o, "centre_mm", l->centre_mm);
            jnum(&j, o, "nominal_radius_mm", l->radius_mm);
            jnum(&j, o, "design_hu", round(l->hu * 10) / 10);
            jchk(&j, cJSON_AddBoolToObject(o, "subpleural", l->subpleural));
        }
        cJSON *tot = jchk(&j, cJSON_AddObjectToObject(root, "totals"));
        jnum(&j, tot, "ground_glass_ml", t->ggo_ml);
        jnum(&j, tot, "consolidation_ml", t->consolidation_ml);
        jnum(&j, tot, "lesion_ml", t->lesion_ml);
        cJSON *lobes = jchk(&j, cJSON_AddObjectToObject(root, "lobes"));
        for (int l = 1; lobes && l <= COVCT_N_LOBES; l++) {
            cJSON *o = jchk(&j, cJSON_AddObjectToObject(
                                    lobes, covct_lobe_name(l)));
            jnum(&j, o, "label", l);
            jnum(&j, o, "volume_ml", t->lobe_ml[l]);
            jnum(&j, o, "ground_glass_ml", t->lobe_ggo_ml[l]);
            jnum(&j, o, "consolidation_ml", t->lobe_consolidation_ml[l]);
        }
        cJSON *lungs = jchk(&j, cJSON_AddObjectToObject(root, "lungs"));
        jnum(&j, lungs, "right_ml", t->right_ml);
        jnum(&j, lungs, "left_ml", t->left_ml);
        jnum(&j, lungs, "total_ml", t->lungs_ml);
        jnum(&j, root, "airway_ml", t->airway_ml);
        jnum(&j, root, "body_ml", t->body_ml);
    }
    char *text = (!j.failed && root) ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "phantom: cannot build JSON");
    size_t tl = strlen(text);
    char *text2 = covct_malloc(tl + 2);
    if (!text2) {
        cJSON_free(text);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    memcpy(text2, text, tl);
    text2[tl] = '\n';
    text2[tl + 1] = '\0';
    cJSON_free(text);
    char path[4096];
    int pn = snprintf(path, sizeof path, "%s/truth.json", dir);
    if (pn < 0 || (size_t)pn >= sizeof path)
        rc = COVCT_ERR(err, COVCT_ERR_ARG, "folder name too long: %s", dir);
    else
        rc = covct_file_write_bytes(path, text2, tl + 1, err);
    covct_free(text2);
    return rc;
}
