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
