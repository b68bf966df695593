/* Internals of the volume module; included only by the files in src/volume,
 * the volume tests and the NIfTI fuzz target. */
#ifndef COVCT_VOLUME_INT_H
#define COVCT_VOLUME_INT_H

#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/volume.h"

/* Bytes per voxel of a volume data type (2 or 4). */
size_t covct_dtype_size(covct_dtype dtype);

#endif
