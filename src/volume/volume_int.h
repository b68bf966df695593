/* Internals of the volume module; included only by the files in src/volume,
 * the volume tests and the NIfTI fuzz target. */
#ifndef COVCT_VOLUME_INT_H
#define COVCT_VOLUME_INT_H

#include <stddef.h>
#include <stdint.h>

#include "covct/core.h"
#include "covct/volume.h"

/* Parse a NIfTI-1 single file (.nii bytes, or the bytes of a .nii.gz:
 * gzip is recognised by its magic) held in memory.  On success *out is a
 * new volume owned by the caller; on failure *out is NULL and err says
 * which field was wrong.  `data` is only read, and may be freed as soon as
 * the call returns.  This is what covct_nifti_read() uses after reading the
 * file, and what the fuzz target drives.
 *
 * TODO(volume.h owner): move this declaration to include/covct/volume.h. */
covct_rc covct_nifti_parse(const uint8_t *data, size_t len,
                           covct_volume **out, covct_error *err);

/* Bytes per voxel of a volume data type (2 or 4). */
size_t covct_dtype_size(covct_dtype dtype);

#endif
