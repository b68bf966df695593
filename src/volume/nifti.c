/*
 * covct volume: NIfTI-1 single-file input and output (.nii, .nii.gz).
 *
 * The format is defined by nifti1.h (NIfTI DFWG, 2004); the geometry
 * arithmetic follows nifti1_io.c (nifti_quatern_to_mat44,
 * nifti_mat44_to_quatern, nifti_mat33_polar) so that covct agrees with the
 * reference library and with nibabel.  See docs/internals/nifti.md.
 *
 * The header is decoded field by field from its byte offsets, never by
 * casting the bytes to a struct, so the code does not depend on the host's
 * byte order, alignment or struct padding.
 */
#include "covct/volume.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "covct/limits.h"
#include "volume/volume_int.h"

/* ---- the header layout (nifti1.h, struct nifti_1_header) ---------------- */

enum {
    HDR_SIZE = 348,
    HDR_SIZE_NIFTI2 = 540,
    /* 348 header bytes + the 4-byte extension flag, all zero = none. */
    VOX_OFFSET_WRITE = 352,

    OFF_SIZEOF_HDR = 0,
    OFF_REGULAR = 38,
    OFF_DIM = 40,           /* short[8] */
    OFF_DATATYPE = 70,
    OFF_BITPIX = 72,
    OFF_PIXDIM = 76,        /* float[8] */
    OFF_VOX_OFFSET = 108,
    OFF_SCL_SLOPE = 112,
    OFF_SCL_INTER = 116,
    OFF_XYZT_UNITS = 123,
    OFF_DESCRIP = 148,      /* char[80] */
    OFF_QFORM_CODE = 252,
    OFF_SFORM_CODE = 254,
    OFF_QUATERN_B = 256,    /* b, c, d, then qoffset x, y, z */
    OFF_SROW_X = 280,       /* srow_x[4], srow_y[4], srow_z[4] */
    OFF_MAGIC = 344
};

/* nifti1.h NIFTI_TYPE_* codes. */
enum {
    DT_BINARY = 1,
    DT_UINT8 = 2,
    DT_INT16 = 4,
    DT_INT32 = 8,
    DT_FLOAT32 = 16,
    DT_COMPLEX64 = 32,
    DT_FLOAT64 = 64,
    DT_RGB24 = 128,
    DT_INT8 = 256,
    DT_UINT16 = 512,
    DT_UINT32 = 768,
    DT_INT64 = 1024,
    DT_UINT64 = 1280,
    DT_FLOAT128 = 1536,
    DT_COMPLEX128 = 1792,
    DT_COMPLEX256 = 2048,
    DT_RGBA32 = 2304
};

enum {
    NIFTI_UNITS_MM = 2,
    NIFTI_XFORM_SCANNER_ANAT = 1
};

/* .nii.gz compression: zlib level 1 with the Z_RLE strategy (matches at
 * distance 1 only, then Huffman coding).  On a real 512x512x148 chest CT
 * (int16 HU, which is mostly noise in the low byte) it gives 65.7% of the
 * raw size in 0.46 s on one core, against 62.9% in 1.0 s for level 1's
 * default strategy and 61.2% in 4.2 s for level 6: the files are 4% larger
 * and DICOM -> NIfTI stays under a second. */
#define GZ_LEVEL 1
#define GZ_STRATEGY Z_RLE
/* Input bytes per deflate job.  Each job after the first is primed with
 * the 32 KiB before it, so the split costs almost no compression. */
#define GZ_CHUNK ((size_t)1 << 20)
#define GZ_MAX_THREADS 8

/* ---- byte order ---------------------------------------------------------- */

static bool host_big_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 0;
}

static uint16_t ld16(const uint8_t *p, bool be)
{
    return be ? (uint16_t)((unsigned)p[0] << 8 | p[1])
              : (uint16_t)((unsigned)p[1] << 8 | p[0]);
}

static uint32_t ld32(const uint8_t *p, bool be)
{
    if (be)
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | p[3];
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 |
           p[0];
}

static uint64_t ld64(const uint8_t *p, bool be)
{
    uint64_t a = ld32(p, be), b = ld32(p + 4, be);
    return be ? a << 32 | b : b << 32 | a;
}

static int16_t ldi16(const uint8_t *p, bool be)
{
    uint16_t u = ld16(p, be);
    int16_t s;
    memcpy(&s, &u, 2);
    return s;
}

static int32_t ldi32(const uint8_t *p, bool be)
{
    uint32_t u = ld32(p, be);
    int32_t s;
    memcpy(&s, &u, 4);
    return s;
}

static float ldf32(const uint8_t *p, bool be)
{
    uint32_t u = ld32(p, be);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double ldf64(const uint8_t *p, bool be)
{
    uint64_t u = ld64(p, be);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static void st16le(uint8_t *p, int16_t v)
{
    uint16_t u;
    memcpy(&u, &v, 2);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
}

static void st32le(uint8_t *p, uint32_t u)
{
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

static void stf32le(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    st32le(p, u);
}

/* double -> float without the undefined behaviour of an out-of-range
 * conversion (C11 6.3.1.5): saturate to infinity as IEEE rounding would. */
static float to_f32(double d)
{
    if (d > FLT_MAX)
        return INFINITY;
    if (d < -FLT_MAX)
        return -INFINITY;
    return (float)d;
}

/* ---- 3x3 geometry (nifti1_io.c) ------------------------------------------ */

static double det33(const double a[3][3])
{
    return a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
           a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
           a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
}

static bool inverse33(const double a[3][3], double y[3][3])
{
    double d = det33(a);
    if (d == 0.0 || !isfinite(d))
        return false;
    y[0][0] = (a[1][1] * a[2][2] - a[1][2] * a[2][1]) / d;
    y[0][1] = (a[0][2] * a[2][1] - a[0][1] * a[2][2]) / d;
    y[0][2] = (a[0][1] * a[1][2] - a[0][2] * a[1][1]) / d;
    y[1][0] = (a[1][2] * a[2][0] - a[1][0] * a[2][2]) / d;
    y[1][1] = (a[0][0] * a[2][2] - a[0][2] * a[2][0]) / d;
    y[1][2] = (a[0][2] * a[1][0] - a[0][0] * a[1][2]) / d;
    y[2][0] = (a[1][0] * a[2][1] - a[1][1] * a[2][0]) / d;
    y[2][1] = (a[0][1] * a[2][0] - a[0][0] * a[2][1]) / d;
    y[2][2] = (a[0][0] * a[1][1] - a[0][1] * a[1][0]) / d;
    return true;
}

static double rownorm33(const double a[3][3])
{
    double m = 0.0;
    for (int r = 0; r < 3; r++) {
        double s = fabs(a[r][0]) + fabs(a[r][1]) + fabs(a[r][2]);
        if (s > m)
            m = s;
    }
    return m;
}

static double colnorm33(const double a[3][3])
{
    double m = 0.0;
    for (int c = 0; c < 3; c++) {
        double s = fabs(a[0][c]) + fabs(a[1][c]) + fabs(a[2][c]);
        if (s > m)
            m = s;
    }
    return m;
}

/* The orthogonal matrix closest to `a` (the orthogonal factor of its polar
 * decomposition), by nifti_mat33_polar()'s scaled Newton iteration
 * Z = (gamma X + X^-T / gamma) / 2, in double precision.  nibabel's
 * set_qform() gets the same matrix from an SVD (U V^T). */
static void polar33(const double a[3][3], double z[3][3])
{
    double x[3][3];
    memcpy(x, a, sizeof x);
    /* Force the matrix to be nonsingular, as nifti1_io does. */
    double g = det33(x);
    for (int t = 0; g == 0.0 && t < 100; t++) {
        g = 0.00001 * (0.001 + rownorm33(x));
        for (int i = 0; i < 3; i++)
            x[i][i] += g;
        g = det33(x);
    }
    memcpy(z, x, sizeof x);
    double dif = 1.0;
    for (int k = 0; k < 100; k++) {
        double y[3][3], gam = 1.0, gmi = 1.0;
        if (!inverse33(x, y))
            break;
        if (dif > 0.3) { /* far from convergence: scale to speed it up */
            double alp = sqrt(rownorm33(x) * colnorm33(x));
            double bet = sqrt(rownorm33(y) * colnorm33(y));
            gam = sqrt(bet / alp);
            gmi = 1.0 / gam;
        }
        dif = 0.0;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                z[r][c] = 0.5 * (gam * x[r][c] + gmi * y[c][r]);
                dif += fabs(z[r][c] - x[r][c]);
            }
        if (!(dif >= 1e-13)) /* converged, or NaN */
            break;
        memcpy(x, z, sizeof x);
    }
}

typedef struct quatern {
    double b, c, d;    /* quatern_b/c/d */
    double qx, qy, qz; /* qoffset_x/y/z */
    double dx, dy, dz; /* pixdim[1..3] */
    double qfac;       /* pixdim[0] */
} quatern;

/* nifti_mat44_to_quatern(): the qform parameters nearest to the rotation
 * part of `m` (RAS).  Shears (gantry tilt) cannot be represented in a
 * qform; the polar decomposition finds the nearest rotation. */
static void mat44_to_quatern(const double m[4][4], quatern *q)
{
    double r[3][3];
    double d[3];
    q->qx = m[0][3];
    q->qy = m[1][3];
    q->qz = m[2][3];
    for (int c = 0; c < 3; c++) {
        d[c] = sqrt(m[0][c] * m[0][c] + m[1][c] * m[1][c] +
                    m[2][c] * m[2][c]);
        if (d[c] == 0.0) { /* patch a zero column as nifti1_io does */
            r[0][c] = c == 0;
            r[1][c] = c == 1;
            r[2][c] = c == 2;
            d[c] = 1.0;
        } else {
            for (int i = 0; i < 3; i++)
                r[i][c] = m[i][c] / d[c];
        }
    }
    q->dx = d[0];
    q->dy = d[1];
    q->dz = d[2];

    double p[3][3];
    polar33(r, p);
    /* The determinant of an orthogonal matrix is +1 (proper rotation) or
     * -1; an improper one is stored as qfac = -1 with the third column
     * flipped. */
    if (det33(p) > 0) {
        q->qfac = 1.0;
    } else {
        q->qfac = -1.0;
        p[0][2] = -p[0][2];
        p[1][2] = -p[1][2];
        p[2][2] = -p[2][2];
    }
    double a = p[0][0] + p[1][1] + p[2][2] + 1.0, b, c, dd;
    if (a > 0.5) {
        a = 0.5 * sqrt(a);
        b = 0.25 * (p[2][1] - p[1][2]) / a;
        c = 0.25 * (p[0][2] - p[2][0]) / a;
        dd = 0.25 * (p[1][0] - p[0][1]) / a;
    } else {
        double xd = 1.0 + p[0][0] - (p[1][1] + p[2][2]);
        double yd = 1.0 + p[1][1] - (p[0][0] + p[2][2]);
        double zd = 1.0 + p[2][2] - (p[0][0] + p[1][1]);
        if (xd > 1.0) {
            b = 0.5 * sqrt(xd);
            c = 0.25 * (p[0][1] + p[1][0]) / b;
            dd = 0.25 * (p[0][2] + p[2][0]) / b;
            a = 0.25 * (p[2][1] - p[1][2]) / b;
        } else if (yd > 1.0) {
            c = 0.5 * sqrt(yd);
            b = 0.25 * (p[0][1] + p[1][0]) / c;
            dd = 0.25 * (p[1][2] + p[2][1]) / c;
            a = 0.25 * (p[0][2] - p[2][0]) / c;
        } else {
            dd = 0.5 * sqrt(zd);
            b = 0.25 * (p[0][2] + p[2][0]) / dd;
            c = 0.25 * (p[1][2] + p[2][1]) / dd;
            a = 0.25 * (p[1][0] - p[0][1]) / dd;
        }
        /* The header stores b, c, d only and rebuilds a >= 0. */
        if (a < 0.0) {
            b = -b;
            c = -c;
            dd = -dd;
        }
    }
    q->b = b;
    q->c = c;
    q->d = dd;
}

/* nifti_quatern_to_mat44(): the qform matrix (RAS). */
static void quatern_to_mat44(const quatern *q, double m[4][4])
{
    double b = q->b, c = q->c, d = q->d;
    double a = 1.0 - (b * b + c * c + d * d);
    if (a < 1.e-7) { /* special case: a 180 degree rotation */
        a = 1.0 / sqrt(b * b + c * c + d * d);
        b *= a;
        c *= a;
        d *= a;
        a = 0.0;
    } else {
        a = sqrt(a);
    }
    double xd = q->dx > 0.0 ? q->dx : 1.0;
    double yd = q->dy > 0.0 ? q->dy : 1.0;
    double zd = q->dz > 0.0 ? q->dz : 1.0;
    if (q->qfac < 0.0)
        zd = -zd;
    m[0][0] = (a * a + b * b - c * c - d * d) * xd;
    m[0][1] = 2.0 * (b * c - a * d) * yd;
    m[0][2] = 2.0 * (b * d + a * c) * zd;
    m[1][0] = 2.0 * (b * c + a * d) * xd;
    m[1][1] = (a * a + c * c - b * b - d * d) * yd;
    m[1][2] = 2.0 * (c * d - a * b) * zd;
    m[2][0] = 2.0 * (b * d - a * c) * xd;
    m[2][1] = 2.0 * (c * d + a * b) * yd;
    m[2][2] = (a * a + d * d - c * c - b * b) * zd;
    m[0][3] = q->qx;
    m[1][3] = q->qy;
    m[2][3] = q->qz;
    m[3][0] = m[3][1] = m[3][2] = 0.0;
    m[3][3] = 1.0;
}

/* LPS <-> RAS: negate x and y, the first two rows (PS3.3 C.7.6.2.1.1 vs
 * nifti1.h "+x = Right ... +y = Anterior"). */
static void flip_lps_ras(const double in[4][4], double out[4][4])
{
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            out[r][c] = r < 2 ? -in[r][c] : in[r][c];
}

/* ---- reading: header --------------------------------------------------- */

typedef struct nhdr {
    bool be;
    int16_t dim[8];
    int16_t datatype;
    float pixdim[8];
    float slope, inter;
    int16_t qform_code, sform_code;
    float quatern[6]; /* b, c, d, qoffset x, y, z */
    float srow[3][4];
    uint32_t nx, ny, nz;
    size_t nvox;
    size_t elem;       /* bytes per stored voxel */
    size_t vox_offset;
    size_t data_bytes;
    size_t need;       /* vox_offset + data_bytes */
} nhdr;

static const char *datatype_name(int dt)
{
    switch (dt) {
    case DT_BINARY: return "binary";
    case DT_COMPLEX64: return "complex64";
    case DT_RGB24: return "rgb24";
    case DT_UINT32: return "uint32";
    case DT_INT64: return "int64";
    case DT_UINT64: return "uint64";
    case DT_FLOAT128: return "float128";
    case DT_COMPLEX128: return "complex128";
    case DT_COMPLEX256: return "complex256";
    case DT_RGBA32: return "rgba32";
    default: return NULL;
    }
}

static size_t datatype_size(int dt)
{
    switch (dt) {
    case DT_UINT8:
    case DT_INT8: return 1;
    case DT_INT16:
    case DT_UINT16: return 2;
    case DT_INT32:
    case DT_FLOAT32: return 4;
    case DT_FLOAT64: return 8;
    default: return 0;
    }
}

/* Decode and check the 348-byte header at p (len bytes available, which may
 * be less than the file when called on a partly inflated stream).  Checks
 * everything that does not depend on the file's length. */
static covct_rc header_decode(const uint8_t *p, size_t len, nhdr *h,
                              covct_error *err)
{
    memset(h, 0, sizeof *h);
    if (len < HDR_SIZE)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: %zu bytes, shorter than the %d-byte header",
                         len, HDR_SIZE);
    /* nifti1.h: sizeof_hdr must be 348; read in the wrong byte order it
     * is 0x5C010000, which tells the file's endianness. */
    uint32_t sle = ld32(p + OFF_SIZEOF_HDR, false);
    uint32_t sbe = ld32(p + OFF_SIZEOF_HDR, true);
    if (sle == HDR_SIZE) {
        h->be = false;
    } else if (sbe == HDR_SIZE) {
        h->be = true;
    } else if (sle == HDR_SIZE_NIFTI2 || sbe == HDR_SIZE_NIFTI2) {
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "NIfTI: sizeof_hdr 540 is NIfTI-2, which covct "
                         "does not read; convert to NIfTI-1");
    } else {
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: sizeof_hdr %" PRIu32 " (0x%08" PRIx32
                         ") is not 348: not a NIfTI-1 file",
                         sle, sle);
    }
    const uint8_t *mg = p + OFF_MAGIC;
    if (memcmp(mg, "ni1\0", 4) == 0)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "NIfTI: magic \"ni1\" is a two-file .hdr/.img pair; "
                         "covct reads single .nii files (magic \"n+1\") "
                         "only: convert the pair to .nii");
    if (memcmp(mg, "n+1\0", 4) != 0)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: magic %02x %02x %02x %02x is not \"n+1\" "
                         "(an Analyze 7.5 file?)",
                         mg[0], mg[1], mg[2], mg[3]);

    for (int i = 0; i < 8; i++)
        h->dim[i] = ldi16(p + OFF_DIM + 2 * i, h->be);
    if (h->dim[0] < 1 || h->dim[0] > 7)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: dim[0] = %d is not in 1..7", h->dim[0]);
    int64_t n3[3] = {1, 1, 1};
    for (int i = 1; i <= h->dim[0]; i++) {
        if (h->dim[i] <= 0)
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "NIfTI: dim[%d] = %d (dim[0] = %d) is not "
                             "positive",
                             i, h->dim[i], h->dim[0]);
        if (i <= 3)
            n3[i - 1] = h->dim[i];
        else if (h->dim[i] != 1)
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                             "NIfTI: dim[%d] = %d: only one 3-D volume is "
                             "supported, not a %d-D series",
                             i, h->dim[i], h->dim[0]);
    }
    h->nx = (uint32_t)n3[0];
    h->ny = (uint32_t)n3[1];
    h->nz = (uint32_t)n3[2];

    h->datatype = ldi16(p + OFF_DATATYPE, h->be);
    h->elem = datatype_size(h->datatype);
    if (!h->elem) {
        const char *name = datatype_name(h->datatype);
        if (name)
            return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                             "NIfTI: datatype %d (%s) is not supported",
                             h->datatype, name);
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: datatype %d is not a NIfTI-1 type",
                         h->datatype);
    }

    for (int i = 0; i < 8; i++)
        h->pixdim[i] = ldf32(p + OFF_PIXDIM + 4 * i, h->be);
    for (int i = 0; i <= 3; i++)
        if (!isfinite(h->pixdim[i]))
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "NIfTI: pixdim[%d] = %g is not finite", i,
                             (double)h->pixdim[i]);

    float vo = ldf32(p + OFF_VOX_OFFSET, h->be);
    /* The limit keeps the float -> size_t conversion defined; a header
     * that puts the voxels beyond it is corrupt anyway. */
    if (!(vo >= (float)HDR_SIZE && vo <= (float)COVCT_LIMIT_FILE_MAX) ||
        vo != floorf(vo))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: vox_offset %g is not a whole byte offset "
                         "from 348 up",
                         (double)vo);
    h->vox_offset = (size_t)vo;

    size_t nvox, bytes, outb;
    if (!covct_mul_size(h->nx, h->ny, &nvox) ||
        !covct_mul_size(nvox, h->nz, &nvox) ||
        !covct_mul_size(nvox, h->elem, &bytes) ||
        !covct_mul_size(nvox, sizeof(float), &outb) ||
        !covct_add_size(h->vox_offset, bytes, &h->need))
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "NIfTI: %ux%ux%u voxels overflow a size", h->nx,
                         h->ny, h->nz);
    if (bytes > COVCT_LIMIT_ALLOC_MAX || outb > COVCT_LIMIT_ALLOC_MAX)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "NIfTI: %ux%ux%u voxels of datatype %d exceed the "
                         "%zu byte allocation limit",
                         h->nx, h->ny, h->nz, h->datatype,
                         (size_t)COVCT_LIMIT_ALLOC_MAX);
    h->nvox = nvox;
    h->data_bytes = bytes;

    h->slope = ldf32(p + OFF_SCL_SLOPE, h->be);
    h->inter = ldf32(p + OFF_SCL_INTER, h->be);
    /* nifti1.h: slope 0 means no scaling; nibabel also ignores a NaN or
     * infinite slope (it writes NaN for "unscaled").  A usable slope with
     * a non-finite intercept has no meaning. */
    if (h->slope != 0.0f && isfinite(h->slope) && !isfinite(h->inter))
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: scl_inter %g with scl_slope %g",
                         (double)h->inter, (double)h->slope);

    h->qform_code = ldi16(p + OFF_QFORM_CODE, h->be);
    h->sform_code = ldi16(p + OFF_SFORM_CODE, h->be);
    static const char *const qnames[6] = {"quatern_b", "quatern_c",
                                          "quatern_d", "qoffset_x",
                                          "qoffset_y", "qoffset_z"};
    for (int i = 0; i < 6; i++) {
        h->quatern[i] = ldf32(p + OFF_QUATERN_B + 4 * i, h->be);
        if (h->qform_code > 0 && !isfinite(h->quatern[i]))
            return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                             "NIfTI: %s = %g with qform_code %d", qnames[i],
                             (double)h->quatern[i], h->qform_code);
    }
    static const char axes[3] = {'x', 'y', 'z'};
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            h->srow[r][c] = ldf32(p + OFF_SROW_X + 16 * r + 4 * c, h->be);
            if (h->sform_code > 0 && !isfinite(h->srow[r][c]))
                return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                                 "NIfTI: srow_%c[%d] = %g with sform_code "
                                 "%d",
                                 axes[r], c, (double)h->srow[r][c],
                                 h->sform_code);
        }
    return COVCT_OK;
}

/* Voxel index -> RAS mm, in the order of preference nifti1.h gives. */
static void header_affine(const nhdr *h, double ras[4][4])
{
    memset(ras, 0, 16 * sizeof(double));
    ras[3][3] = 1.0;
    if (h->sform_code > 0) {
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                ras[r][c] = h->srow[r][c];
        double m[3][3];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++)
                m[r][c] = ras[r][c];
        if (det33(m) != 0.0)
            return;
        covct_log(COVCT_LOG_WARN,
                  "NIfTI: sform (code %d) is singular; using the %s",
                  h->sform_code, h->qform_code > 0 ? "qform" : "pixdim");
    }
    if (h->qform_code > 0) {
        quatern q = {
            .b = h->quatern[0], .c = h->quatern[1], .d = h->quatern[2],
            .qx = h->quatern[3], .qy = h->quatern[4], .qz = h->quatern[5],
            .dx = h->pixdim[1], .dy = h->pixdim[2], .dz = h->pixdim[3],
            .qfac = h->pixdim[0] < 0.0f ? -1.0 : 1.0,
        };
        quatern_to_mat44(&q, ras);
        return;
    }
    /* nifti1.h method 1 (Analyze compatibility): x = pixdim[1] * i, ...,
     * no offset.  (nibabel instead centres the grid; see nifti.md.) */
    memset(ras, 0, 16 * sizeof(double));
    for (int i = 0; i < 3; i++) {
        double d = fabs((double)h->pixdim[i + 1]);
        ras[i][i] = d > 0.0 ? d : 1.0;
    }
    ras[3][3] = 1.0;
}

/* ---- reading: voxels ------------------------------------------------------ */

/* Convert n stored voxels to double. */
static void load_chunk(const uint8_t *s, size_t n, int dt, bool be,
                       double *d)
{
    switch (dt) {
    case DT_UINT8:
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
        break;
    case DT_INT8:
        for (size_t i = 0; i < n; i++)
            d[i] = (int8_t)s[i];
        break;
    case DT_INT16:
        for (size_t i = 0; i < n; i++)
            d[i] = ldi16(s + 2 * i, be);
        break;
    case DT_UINT16:
        for (size_t i = 0; i < n; i++)
            d[i] = ld16(s + 2 * i, be);
        break;
    case DT_INT32:
        for (size_t i = 0; i < n; i++)
            d[i] = ldi32(s + 4 * i, be);
        break;
    case DT_FLOAT32:
        for (size_t i = 0; i < n; i++)
            d[i] = ldf32(s + 4 * i, be);
        break;
    case DT_FLOAT64:
        for (size_t i = 0; i < n; i++)
            d[i] = ldf64(s + 8 * i, be);
        break;
    default: /* header_decode() admits no other type */
        for (size_t i = 0; i < n; i++)
            d[i] = 0.0;
        break;
    }
}

static bool fits_int16(double x)
{
    return x >= -32768.0 && x <= 32767.0 && x == (double)(int16_t)x;
}

/* nifti1.h: scl_slope 0 means no scaling; nibabel also ignores a NaN or
 * infinite slope; (1, 0) is the identity. */
static bool uses_scaling(const nhdr *h)
{
    return h->slope != 0.0f && isfinite(h->slope) &&
           !(h->slope == 1.0f && h->inter == 0.0f);
}

/* Stored values that go straight into an int16 volume. */
static bool direct_int16(const nhdr *h)
{
    return !uses_scaling(h) &&
           (h->datatype == DT_INT16 || h->datatype == DT_UINT8 ||
            h->datatype == DT_INT8);
}

/* Fill v from the stored voxels.  v is INT16 when direct_int16(), else
 * FLOAT32, narrowed to INT16 in place when every value is a whole number
 * in int16 range. */
static void convert_voxels(const nhdr *h, const uint8_t *src,
                           covct_volume *v)
{
    bool scale = uses_scaling(h);
    size_t n = h->nvox;

    if (direct_int16(h)) {
        int16_t *o = v->data;
        if (h->datatype == DT_INT16)
            for (size_t i = 0; i < n; i++)
                o[i] = ldi16(src + 2 * i, h->be);
        else if (h->datatype == DT_UINT8)
            for (size_t i = 0; i < n; i++)
                o[i] = src[i];
        else
            for (size_t i = 0; i < n; i++)
                o[i] = (int8_t)src[i];
        v->dtype = COVCT_DTYPE_INT16;
        return;
    }

    float *f = v->data;
    bool integral = true;
    double chunk[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t m = n - i < 4096 ? n - i : 4096;
        load_chunk(src + i * h->elem, m, h->datatype, h->be, chunk);
        for (size_t j = 0; j < m; j++) {
            double x = chunk[j];
            if (scale)
                x = x * (double)h->slope + (double)h->inter;
            if (integral && !fits_int16(x))
                integral = false;
            f[i + j] = to_f32(x);
        }
    }
    v->dtype = COVCT_DTYPE_FLOAT32;
    if (!integral)
        return;

    /* Narrow in place: int16 i lives at bytes 2i..2i+1, which only overlap
     * floats at indices <= i, already read.  Whole numbers in int16 range
     * survive the float stage exactly (24-bit mantissa). */
    uint8_t *b = v->data;
    for (size_t i = 0; i < n; i++) {
        float x;
        memcpy(&x, b + 4 * i, 4);
        int16_t s = (int16_t)x;
        memcpy(b + 2 * i, &s, 2);
    }
    v->dtype = COVCT_DTYPE_INT16;
    size_t bytes = n * sizeof(int16_t);
    void *shrunk = covct_realloc(v->data, bytes);
    if (shrunk)
        v->data = shrunk; /* else keep the larger block: still valid */
}

/* Parse an uncompressed .nii held in memory. */
static covct_rc parse_raw(const uint8_t *p, size_t len, covct_volume **out,
                          covct_error *err)
{
    nhdr h;
    covct_rc rc = header_decode(p, len, &h, err);
    if (rc)
        return rc;
    if (h.vox_offset > len)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: vox_offset %zu is beyond the end of the "
                         "%zu-byte file",
                         h.vox_offset, len);
    if (h.need > len)
        return COVCT_ERR(err, COVCT_ERR_CORRUPT,
                         "NIfTI: %ux%ux%u voxels of datatype %d need %zu "
                         "bytes from vox_offset %zu, only %zu present",
                         h.nx, h.ny, h.nz, h.datatype, h.data_bytes,
                         h.vox_offset, len - h.vox_offset);

    covct_volume *v = NULL;
    rc = covct_volume_new(h.nx, h.ny, h.nz,
                          direct_int16(&h) ? COVCT_DTYPE_INT16
                                           : COVCT_DTYPE_FLOAT32,
                          &v, err);
    if (rc)
        return rc;
    convert_voxels(&h, p + h.vox_offset, v);
    double ras[4][4];
    header_affine(&h, ras);
    flip_lps_ras(ras, v->affine);
    for (int c = 0; c < 3; c++)
        v->spacing[c] = sqrt(ras[0][c] * ras[0][c] + ras[1][c] * ras[1][c] +
                             ras[2][c] * ras[2][c]);
    *out = v;
    return COVCT_OK;
}

/* Inflate a gzip stream (one or more members, RFC 1952 2.2) far enough to
 * hold the header and the voxels it declares, growing the buffer as data
 * arrives rather than trusting the declared size up front. */
static covct_rc gunzip(const uint8_t *in, size_t in_len, covct_buf *b,
                       covct_error *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "NIfTI: inflateInit2 failed");
    covct_rc rc = COVCT_OK;
    size_t want = COVCT_LIMIT_INFLATE_MAX; /* until the header is known */
    bool have_hdr = false;
    size_t used = 0; /* input consumed */
    for (;;) {
        if (!have_hdr && b->len >= HDR_SIZE) {
            nhdr h;
            rc = header_decode(b->data, b->len, &h, err);
            if (rc)
                goto out;
            have_hdr = true;
            if (h.need > COVCT_LIMIT_INFLATE_MAX) {
                rc = COVCT_ERR(err, COVCT_ERR_LIMIT,
                               "NIfTI: %zu bytes declared exceed the %zu "
                               "byte inflate limit",
                               h.need, (size_t)COVCT_LIMIT_INFLATE_MAX);
                goto out;
            }
            want = h.need;
        }
        if (b->len >= want)
            break;
        if (b->len == b->cap) {
            size_t grow = b->cap ? b->cap : (size_t)64 << 10;
            if (grow > want - b->len)
                grow = want - b->len;
            rc = covct_buf_reserve(b, grow, err);
            if (rc)
                goto out;
        }
        size_t ain = in_len - used, aout = b->cap - b->len;
        if (aout > want - b->len)
            aout = want - b->len;
        zs.next_in = (Bytef *)(uintptr_t)(in + used);
        zs.avail_in = ain > UINT_MAX ? UINT_MAX : (uInt)ain;
        zs.next_out = b->data + b->len;
        zs.avail_out = aout > UINT_MAX ? UINT_MAX : (uInt)aout;
        uInt in0 = zs.avail_in, out0 = zs.avail_out;
        int zr = inflate(&zs, Z_NO_FLUSH);
        used += in0 - zs.avail_in;
        b->len += out0 - zs.avail_out;
        if (zr == Z_STREAM_END) {
            /* Another member may follow (pigz, concatenated files). */
            if (in_len - used >= 2 && in[used] == 0x1f &&
                in[used + 1] == 0x8b) {
                inflateReset(&zs);
                continue;
            }
            break;
        }
        if (zr == Z_OK || zr == Z_BUF_ERROR) {
            /* No progress with room on both sides cannot happen; without
             * input left it means the stream is truncated, and
             * parse_raw() will name what is missing. */
            if (in0 == zs.avail_in && out0 == zs.avail_out)
                break;
            continue;
        }
        rc = COVCT_ERR(err, COVCT_ERR_CORRUPT,
                       "NIfTI: gzip stream corrupt at compressed byte %zu: "
                       "%s",
                       used, zs.msg ? zs.msg : "inflate error");
        goto out;
    }
out:
    inflateEnd(&zs);
    return rc;
}

covct_rc covct_nifti_parse(const uint8_t *data, size_t len,
                           covct_volume **out, covct_error *err)
{
    if (!out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "covct_nifti_parse: out is NULL");
    *out = NULL;
    if (!data && len)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "covct_nifti_parse: data is NULL");
    /* RFC 1952: a gzip member starts 1f 8b; a NIfTI-1 file starts with
     * sizeof_hdr 348 (5c 01 00 00 or 00 00 01 5c), so the two never
     * collide. */
    if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
        covct_buf b = {0};
        covct_rc rc = gunzip(data, len, &b, err);
        if (!rc)
            rc = parse_raw(b.data, b.len, out, err);
        covct_buf_free(&b);
        return rc;
    }
    return parse_raw(data, len, out, err);
}

covct_rc covct_nifti_read(const char *path, covct_volume **out,
                          covct_error *err)
{
    if (!out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "covct_nifti_read: out is NULL");
    *out = NULL;
    if (!path)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "covct_nifti_read: path is NULL");
    uint8_t *data = NULL;
    size_t len = 0;
    covct_rc rc = covct_file_read(path, &data, &len, err);
    if (rc)
        return rc;
    rc = covct_nifti_parse(data, len, out, err);
    if (rc)
        covct_error_prefix(err, "%s: ", path);
    covct_free(data);
    return rc;
}

/* ---- writing ----------------------------------------------------------- */

static void header_encode(const covct_volume *v, uint8_t hdr[VOX_OFFSET_WRITE])
{
    double ras[4][4];
    flip_lps_ras(v->affine, ras);
    quatern q;
    mat44_to_quatern(ras, &q);

    memset(hdr, 0, VOX_OFFSET_WRITE);
    st32le(hdr + OFF_SIZEOF_HDR, HDR_SIZE);
    hdr[OFF_REGULAR] = 'r';
    const int16_t dim[8] = {3, (int16_t)v->nx, (int16_t)v->ny,
                            (int16_t)v->nz, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++)
        st16le(hdr + OFF_DIM + 2 * i, dim[i]);
    bool f32 = v->dtype == COVCT_DTYPE_FLOAT32;
    st16le(hdr + OFF_DATATYPE, f32 ? DT_FLOAT32 : DT_INT16);
    st16le(hdr + OFF_BITPIX, f32 ? 32 : 16);
    /* pixdim[1..3] are the affine's column lengths, which is what the
     * qform is built from (nifti_mat44_to_quatern); they equal
     * v->spacing for any consistent volume. */
    const float pixdim[8] = {(float)q.qfac, to_f32(q.dx), to_f32(q.dy),
                             to_f32(q.dz), 1.0f, 1.0f, 1.0f, 1.0f};
    for (int i = 0; i < 8; i++)
        stf32le(hdr + OFF_PIXDIM + 4 * i, pixdim[i]);
    stf32le(hdr + OFF_VOX_OFFSET, (float)VOX_OFFSET_WRITE);
    stf32le(hdr + OFF_SCL_SLOPE, 1.0f);
    stf32le(hdr + OFF_SCL_INTER, 0.0f);
    hdr[OFF_XYZT_UNITS] = NIFTI_UNITS_MM;
    memcpy(hdr + OFF_DESCRIP, "covct", 5);
    st16le(hdr + OFF_QFORM_CODE, NIFTI_XFORM_SCANNER_ANAT);
    st16le(hdr + OFF_SFORM_CODE, NIFTI_XFORM_SCANNER_ANAT);
    const double qv[6] = {q.b, q.c, q.d, q.qx, q.qy, q.qz};
    for (int i = 0; i < 6; i++)
        stf32le(hdr + OFF_QUATERN_B + 4 * i, to_f32(qv[i]));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            stf32le(hdr + OFF_SROW_X + 16 * r + 4 * c, to_f32(ras[r][c]));
    memcpy(hdr + OFF_MAGIC, "n+1\0", 4);
    /* bytes 348..351: extension flag, all zero = no extensions */
}

/* The bytes of the file, as up to two segments: the header, then the
 * voxels (little endian; `swap` set when the host must byte-swap them). */
typedef struct wsrc {
    const uint8_t *hdr;
    const uint8_t *data;
    size_t data_len;
    size_t width; /* bytes per voxel */
    bool swap;
    bool gz;      /* gzip-compress (the name ends in .gz) */
} wsrc;

static void swap_copy(uint8_t *dst, const uint8_t *src, size_t n,
                      size_t width)
{
    for (size_t i = 0; i + width <= n; i += width)
        for (size_t k = 0; k < width; k++)
            dst[i + k] = src[i + width - 1 - k];
}

static covct_rc write_all(int fd, const uint8_t *p, size_t n,
                          const char *path, covct_error *err)
{
    return covct_fd_write_all(fd, p, n, path, err);
}

static covct_rc write_plain(int fd, const wsrc *s, const char *path,
                            covct_error *err)
{
    covct_rc rc = write_all(fd, s->hdr, VOX_OFFSET_WRITE, path, err);
    if (rc)
        return rc;
    if (!s->swap)
        return write_all(fd, s->data, s->data_len, path, err);
    uint8_t *tmp = covct_malloc(GZ_CHUNK);
    if (!tmp)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate %zu bytes",
                         GZ_CHUNK);
    for (size_t off = 0; off < s->data_len && !rc; off += GZ_CHUNK) {
        size_t m = s->data_len - off < GZ_CHUNK ? s->data_len - off
                                                 : GZ_CHUNK;
        swap_copy(tmp, s->data + off, m, s->width);
        rc = write_all(fd, tmp, m, path, err);
    }
    covct_free(tmp);
    return rc;
}

/* One piece of the deflate stream, compressed independently (as pigz
 * does): job 0 is the header, the others GZ_CHUNK bytes of voxels each.
 * The calling thread allocates every buffer before the workers start, so
 * that workers never allocate through covct_malloc (whose failure hook is
 * single-threaded). */
typedef struct zjob {
    const uint8_t *in;
    size_t in_len;
    const uint8_t *dict; /* the 32 KiB of input before `in`, or NULL */
    size_t dict_len;
    bool last;
    size_t width;        /* swap voxels of this width into `scratch` */
    uint8_t *scratch;    /* in_len bytes when the host must swap, or NULL */
    uint8_t *out;
    size_t out_cap, out_len;
    uLong crc;
    covct_rc rc;
} zjob;

typedef struct zpool {
    zjob *jobs;
    size_t n;
    atomic_size_t next;
} zpool;

static covct_rc zjob_run(zjob *j)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    const uint8_t *in = j->in;
    /* Raw deflate (negative window bits): the gzip wrapper is written
     * once around all jobs. */
    if (deflateInit2(&zs, GZ_LEVEL, Z_DEFLATED, -15, 8, GZ_STRATEGY) !=
        Z_OK)
        return COVCT_ERR_NOMEM;
    if (j->scratch) {
        swap_copy(j->scratch, j->in, j->in_len, j->width);
        in = j->scratch;
    } else if (j->dict_len) {
        deflateSetDictionary(&zs, j->dict, (uInt)j->dict_len);
    }
    j->crc = crc32(0L, in, (uInt)j->in_len);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)j->in_len;
    zs.next_out = j->out;
    zs.avail_out = (uInt)j->out_cap;
    /* Z_SYNC_FLUSH ends the piece on a byte boundary without a final
     * block, so the pieces concatenate into one valid deflate stream. */
    int zr = deflate(&zs, j->last ? Z_FINISH : Z_SYNC_FLUSH);
    covct_rc rc = COVCT_OK;
    if ((j->last && zr != Z_STREAM_END) || (!j->last && zr != Z_OK) ||
        zs.avail_in != 0 || (!j->last && zs.avail_out == 0))
        rc = COVCT_ERR_INTERNAL;
    j->out_len = j->out_cap - zs.avail_out;
    deflateEnd(&zs);
    return rc;
}

static void *zworker(void *arg)
{
    zpool *pool = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&pool->next, 1);
        if (i >= pool->n)
            break;
        pool->jobs[i].rc = zjob_run(&pool->jobs[i]);
    }
    return NULL;
}

static unsigned gz_threads(size_t njobs)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t t = cpus > 0 ? (size_t)cpus : 1;
    if (t > GZ_MAX_THREADS)
        t = GZ_MAX_THREADS;
    if (t > njobs)
        t = njobs;
    return (unsigned)(t ? t : 1);
}

static covct_rc write_gzip(int fd, const wsrc *s, const char *path,
                           covct_error *err)
{
    size_t ndata = (s->data_len + GZ_CHUNK - 1) / GZ_CHUNK;
    size_t n = 1 + ndata;
    covct_rc rc = COVCT_OK;
    zpool pool = {.n = n};
    atomic_init(&pool.next, 0);
    pool.jobs = covct_calloc(n, sizeof *pool.jobs);
    if (!pool.jobs)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "cannot allocate %zu deflate jobs", n);
    pool.jobs[0] = (zjob){.in = s->hdr, .in_len = VOX_OFFSET_WRITE,
                          .last = ndata == 0};
    for (size_t i = 0; i < ndata; i++) {
        size_t off = i * GZ_CHUNK;
        zjob *j = &pool.jobs[1 + i];
        j->in = s->data + off;
        j->in_len = s->data_len - off < GZ_CHUNK ? s->data_len - off
                                                 : GZ_CHUNK;
        j->last = i + 1 == ndata;
        j->width = s->width;
        if (i > 0 && !s->swap) {
            j->dict_len = 32768;
            j->dict = j->in - j->dict_len;
        }
    }
    for (size_t i = 0; i < n; i++) {
        zjob *j = &pool.jobs[i];
        /* compressBound() bounds zlib's output for the default window
         * and memLevel used here, at any level; a sync flush adds an
         * empty stored block (5 bytes). */
        j->out_cap = compressBound((uLong)j->in_len) + 64;
        j->out = covct_malloc(j->out_cap);
        if (s->swap && i > 0)
            j->scratch = covct_malloc(j->in_len);
        if (!j->out || (s->swap && i > 0 && !j->scratch)) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                           "%s: cannot allocate deflate buffers", path);
            goto out;
        }
    }

    pthread_t tids[GZ_MAX_THREADS];
    unsigned nt = gz_threads(n), started = 0;
    for (unsigned t = 1; t < nt; t++) {
        if (pthread_create(&tids[started], NULL, zworker, &pool) != 0)
            break; /* fewer helpers; the calling thread still works */
        started++;
    }
    zworker(&pool);
    for (unsigned t = 0; t < started; t++)
        pthread_join(tids[t], NULL);

    for (size_t i = 0; i < n && !rc; i++)
        if (pool.jobs[i].rc)
            rc = COVCT_ERR(err, pool.jobs[i].rc,
                           "%s: deflate of piece %zu of %zu failed (%s)",
                           path, i, n, covct_rc_str(pool.jobs[i].rc));

    /* RFC 1952: ID1 ID2 CM=8 FLG=0 MTIME=0 XFL=4 (fastest) OS=3 (Unix);
     * the stream; CRC32 and ISIZE (length mod 2^32), little endian. */
    static const uint8_t gzhdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3};
    if (!rc)
        rc = write_all(fd, gzhdr, sizeof gzhdr, path, err);
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        zjob *j = &pool.jobs[i];
        rc = write_all(fd, j->out, j->out_len, path, err);
        crc = crc32_combine(crc, j->crc, (z_off_t)j->in_len);
        total += j->in_len;
    }
    if (!rc) {
        uint8_t trailer[8];
        st32le(trailer, (uint32_t)crc);
        st32le(trailer + 4, (uint32_t)total);
        rc = write_all(fd, trailer, sizeof trailer, path, err);
    }
out:
    for (size_t i = 0; i < n; i++) {
        covct_free(pool.jobs[i].out);
        covct_free(pool.jobs[i].scratch);
    }
    covct_free(pool.jobs);
    return rc;
}

static bool ends_with_gz(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && path[n - 3] == '.' &&
           (path[n - 2] == 'g' || path[n - 2] == 'G') &&
           (path[n - 1] == 'z' || path[n - 1] == 'Z');
}

/* Content of a new NIfTI file, for covct_file_write_atomic(). */
static covct_rc fill_nifti(int fd, const char *tmp, void *user,
                           covct_error *err)
{
    const wsrc *s = user;
    return s->gz ? write_gzip(fd, s, tmp, err) : write_plain(fd, s, tmp, err);
}

/* Write v's geometry with `data` as its voxels: v's own samples, or (with
 * labels) one byte per voxel, datatype uint8. */
static covct_rc write_volume(const covct_volume *v, const void *data,
                             bool labels, const char *path, covct_error *err)
{
    if (!v || !path || !data)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "covct_nifti_write: volume, data or path is NULL");
    if (v->dtype != COVCT_DTYPE_INT16 && v->dtype != COVCT_DTYPE_FLOAT32)
        return COVCT_ERR(err, COVCT_ERR_ARG, "volume data type %d unknown",
                         (int)v->dtype);
    /* nifti1.h: dim[] is short. */
    if (v->nx < 1 || v->ny < 1 || v->nz < 1 || v->nx > 32767 ||
        v->ny > 32767 || v->nz > 32767)
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                         "volume %ux%ux%u: NIfTI-1 dimensions are 1..32767",
                         v->nx, v->ny, v->nz);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (!isfinite(v->affine[r][c]))
                return COVCT_ERR(err, COVCT_ERR_ARG,
                                 "volume affine[%d][%d] = %g is not finite",
                                 r, c, v->affine[r][c]);

    uint8_t hdr[VOX_OFFSET_WRITE];
    header_encode(v, hdr);
    size_t width = covct_dtype_size(v->dtype);
    if (labels) {
        st16le(hdr + OFF_DATATYPE, DT_UINT8);
        st16le(hdr + OFF_BITPIX, 8);
        width = 1;
    }
    wsrc s = {.hdr = hdr, .data = data,
              .data_len = covct_volume_voxels(v) * width, .width = width,
              .swap = width > 1 && host_big_endian(),
              .gz = ends_with_gz(path)};

    return covct_file_write_atomic(path, fill_nifti, &s, err);
}

covct_rc covct_nifti_write(const covct_volume *v, const char *path,
                           covct_error *err)
{
    return write_volume(v, v ? v->data : NULL, false, path, err);
}

covct_rc covct_nifti_write_labels(const covct_volume *grid,
                                  const uint8_t *labels, const char *path,
                                  covct_error *err)
{
    return write_volume(grid, labels, true, path, err);
}
