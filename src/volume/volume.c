/* covct volume: allocation and access of the 3-D HU volume. */
#include "covct/volume.h"

#include <assert.h>
#include <string.h>

#include "covct/limits.h"
#include "volume/volume_int.h"

size_t covct_dtype_size(covct_dtype dtype)
{
    return dtype == COVCT_DTYPE_FLOAT32 ? sizeof(float) : sizeof(int16_t);
}

covct_rc covct_volume_new(uint32_t nx, uint32_t ny, uint32_t nz,
                          covct_dtype dtype, covct_volume **out,
                          covct_error *err)
{
    if (!out)
        return COVCT_ERR(err, COVCT_ERR_ARG, "covct_volume_new: out is NULL");
    *out = NULL;
    if (dtype != COVCT_DTYPE_INT16 && dtype != COVCT_DTYPE_FLOAT32)
        return COVCT_ERR(err, COVCT_ERR_ARG, "volume data type %d unknown",
                         (int)dtype);
    if (nx == 0 || ny == 0 || nz == 0)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "volume size %ux%ux%u has a zero dimension", nx, ny,
                         nz);
    size_t n, bytes;
    if (!covct_mul_size(nx, ny, &n) || !covct_mul_size(n, nz, &n) ||
        !covct_mul_size(n, covct_dtype_size(dtype), &bytes) ||
        bytes > COVCT_LIMIT_ALLOC_MAX)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "volume %ux%ux%u exceeds the %zu byte allocation "
                         "limit",
                         nx, ny, nz, (size_t)COVCT_LIMIT_ALLOC_MAX);
    covct_volume *v = covct_calloc(1, sizeof *v);
    if (!v)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "cannot allocate a volume");
    v->data = covct_calloc(n, covct_dtype_size(dtype));
    if (!v->data) {
        covct_free(v);
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "cannot allocate %zu bytes for a %ux%ux%u volume",
                         bytes, nx, ny, nz);
    }
    v->nx = nx;
    v->ny = ny;
    v->nz = nz;
    v->dtype = dtype;
    for (int i = 0; i < 3; i++)
        v->spacing[i] = 1.0;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            v->affine[r][c] = r == c ? 1.0 : 0.0;
    *out = v;
    return COVCT_OK;
}

void covct_volume_free(covct_volume *v)
{
    if (!v)
        return;
    covct_free(v->data);
    covct_free(v->outside);
    covct_free(v);
}

size_t covct_volume_voxels(const covct_volume *v)
{
    /* covct_volume_new() checked that this product fits. */
    return v ? (size_t)v->nx * v->ny * v->nz : 0;
}

double covct_volume_get(const covct_volume *v, uint32_t x, uint32_t y,
                        uint32_t z)
{
    assert(v && x < v->nx && y < v->ny && z < v->nz);
    size_t i = ((size_t)z * v->ny + y) * v->nx + x;
    if (v->dtype == COVCT_DTYPE_FLOAT32)
        return ((const float *)v->data)[i];
    return ((const int16_t *)v->data)[i];
}

/* Tiles of 32 x 32 elements: rows of both planes stay in cache. */
#define TILE 32

void covct_planes_transpose(const void *in, void *out, uint32_t nx,
                            uint32_t ny, uint32_t nz, size_t size)
{
    const size_t plane = (size_t)nx * ny;
    for (uint32_t z = 0; z < nz; z++) {
        const uint8_t *a = (const uint8_t *)in + plane * size * z;
        uint8_t *b = (uint8_t *)out + plane * size * z;
        for (uint32_t y0 = 0; y0 < ny; y0 += TILE)
            for (uint32_t x0 = 0; x0 < nx; x0 += TILE) {
                uint32_t y1 = y0 + TILE < ny ? y0 + TILE : ny;
                uint32_t x1 = x0 + TILE < nx ? x0 + TILE : nx;
                for (uint32_t y = y0; y < y1; y++)
                    for (uint32_t x = x0; x < x1; x++)
                        memcpy(b + ((size_t)x * ny + y) * size,
                               a + ((size_t)y * nx + x) * size, size);
            }
    }
}

covct_rc covct_volume_transpose_xy(covct_volume *v, covct_error *err)
{
    const size_t n = covct_volume_voxels(v);
    const size_t es = covct_dtype_size(v->dtype);
    void *data = covct_malloc(n * es);
    uint8_t *outside = v->outside ? covct_malloc(n) : NULL;
    if (!data || (v->outside && !outside)) {
        covct_free(data);
        covct_free(outside);
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "out of memory transposing a %ux%ux%u volume",
                         v->nx, v->ny, v->nz);
    }
    covct_planes_transpose(v->data, data, v->nx, v->ny, v->nz, es);
    covct_free(v->data);
    v->data = data;
    if (outside) {
        covct_planes_transpose(v->outside, outside, v->nx, v->ny, v->nz, 1);
        covct_free(v->outside);
        v->outside = outside;
    }
    uint32_t t = v->nx;
    v->nx = v->ny;
    v->ny = t;
    double d = v->spacing[0];
    v->spacing[0] = v->spacing[1];
    v->spacing[1] = d;
    for (int r = 0; r < 4; r++) {
        d = v->affine[r][0];
        v->affine[r][0] = v->affine[r][1];
        v->affine[r][1] = d;
    }
    return COVCT_OK;
}
