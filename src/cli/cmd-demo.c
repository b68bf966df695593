/* covct demo: the built-in example.  Writes a small synthetic chest CT
 * series (a digital phantom, clearly labelled as synthetic, never patient
 * data) as DICOM files in shuffled order, then runs 'covct info' and
 * 'covct volume' on it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "covct/dicom.h"

static const char help[] =
    "Usage: covct demo [FOLDER]\n"
    "\n"
    "Write a synthetic chest CT series (a digital phantom with two lungs, a\n"
    "ground-glass patch and a padded field of view; 40 slices of 256 x 256)\n"
    "to FOLDER (default: demo) as DICOM files named out of slice order, then\n"
    "run 'covct info FOLDER' and 'covct volume FOLDER -o FOLDER.nii.gz'.\n";

#define T(g, e) COVCT_TAG(g, e)
#define NX 256
#define NY 256
#define NZ 40
#define PIX 1.5  /* mm */
#define STEP 5.0 /* mm */

/* Phantom HU at patient position (x, y, z) in mm, LPS, centre at 0. */
static int16_t phantom(double x, double y, double z)
{
    /* Scanner field of view: a 360 mm circle; outside it the vendor fill. */
    if (x * x + y * y > 180.0 * 180.0)
        return -3024;
    double bx = x / 165.0, by = y / 115.0;
    if (bx * bx + by * by > 1.0)
        return -1000; /* air around the body */
    if (bx * bx + by * by > 0.85)
        return -80; /* fat */
    double sx = x / 18.0, sy = (y - 85.0) / 18.0;
    if (sx * sx + sy * sy < 1.0)
        return 700; /* vertebra */
    double hx = (x - 25.0) / 55.0, hy = (y + 20.0) / 45.0;
    if (hx * hx + hy * hy < 1.0 && z < 40.0)
        return 40; /* heart */
    for (int side = -1; side <= 1; side += 2) {
        double lx = (x - side * 70.0) / 55.0, ly = y / 85.0,
               lz = (z - 10.0) / 95.0;
        if (lx * lx + ly * ly + lz * lz < 1.0) {
            /* Ground-glass patch in the right lower lobe (patient right is
             * -x in LPS). */
            double gx = (x + 95.0) / 25.0, gy = (y - 35.0) / 25.0,
                   gz = (z + 40.0) / 20.0;
            if (side < 0 && gx * gx + gy * gy + gz * gz < 1.0)
                return -550;
            /* A vessel running along z. */
            double vx = (x - side * 60.0) / 4.0, vy = (y + 10.0) / 4.0;
            if (vx * vx + vy * vy < 1.0)
                return 30;
            return -860;
        }
    }
    return 35; /* soft tissue */
}

static int write_slice(const char *dir, int k, int file_no, covct_error *err)
{
    covct_dcm_dataset *ds = covct_dcm_dataset_new();
    if (!ds)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    char buf[128], path[4096];
    double z = -((NZ - 1) * STEP) / 2 + k * STEP;
    double x0 = -(NX - 1) * PIX / 2, y0 = -(NY - 1) * PIX / 2;
    /* Fixed UIDs under 2.25 (PS3.5 B.2) derived from constants: the demo
     * is reproducible.  They identify synthetic data only. */
    const char *root = "2.25.1829456311092856423197402015";
    covct_rc rc = COVCT_OK;
#define S(tag, vr, s)                                                       \
    if (!rc)                                                                \
    rc = covct_dcm_dataset_set_string(ds, tag, COVCT_VR(vr[0], vr[1]), s, err)
    S(T(0x0008, 0x0005), "CS", "ISO_IR 192");
    S(T(0x0008, 0x0008), "CS", "DERIVED\\SECONDARY\\AXIAL");
    S(T(0x0008, 0x0016), "UI", "1.2.840.10008.5.1.4.1.1.2");
    snprintf(buf, sizeof buf, "%s.3.%d", root, k + 1);
    S(T(0x0008, 0x0018), "UI", buf);
    S(T(0x0008, 0x0020), "DA", "20200305");
    S(T(0x0008, 0x0030), "TM", "120000");
    S(T(0x0008, 0x0050), "SH", "");
    S(T(0x0008, 0x0060), "CS", "CT");
    S(T(0x0008, 0x0070), "LO", "covct synthetic phantom");
    S(T(0x0008, 0x0090), "PN", "");
    S(T(0x0008, 0x1030), "LO", "SYNTHETIC DEMO - NOT PATIENT DATA");
    S(T(0x0008, 0x103E), "LO", "SYNTHETIC PHANTOM - NOT PATIENT DATA");
    S(T(0x0010, 0x0010), "PN", "SYNTHETIC^PHANTOM");
    S(T(0x0010, 0x0020), "LO", "SYNTH-0001");
    S(T(0x0010, 0x0030), "DA", "");
    S(T(0x0010, 0x0040), "CS", "O");
    S(T(0x0018, 0x0015), "CS", "CHEST");
    snprintf(buf, sizeof buf, "%g", STEP);
    S(T(0x0018, 0x0050), "DS", buf);
    S(T(0x0018, 0x0060), "DS", "120");
    S(T(0x0018, 0x5100), "CS", "FFS");
    snprintf(buf, sizeof buf, "%s.1", root);
    S(T(0x0020, 0x000D), "UI", buf);
    snprintf(buf, sizeof buf, "%s.2", root);
    S(T(0x0020, 0x000E), "UI", buf);
    S(T(0x0020, 0x0010), "SH", "1");
    S(T(0x0020, 0x0011), "IS", "1");
    S(T(0x0020, 0x0012), "IS", "1");
    snprintf(buf, sizeof buf, "%d", k + 1);
    S(T(0x0020, 0x0013), "IS", buf);
    snprintf(buf, sizeof buf, "%.2f\\%.2f\\%.2f", x0, y0, z);
    S(T(0x0020, 0x0032), "DS", buf);
    S(T(0x0020, 0x0037), "DS", "1\\0\\0\\0\\1\\0");
    snprintf(buf, sizeof buf, "%s.4", root);
    S(T(0x0020, 0x0052), "UI", buf);
    S(T(0x0020, 0x1040), "LO", "");
    snprintf(buf, sizeof buf, "%.2f", z);
    S(T(0x0020, 0x1041), "DS", buf);
    S(T(0x0028, 0x0004), "CS", "MONOCHROME2");
    snprintf(buf, sizeof buf, "%g\\%g", PIX, PIX);
    S(T(0x0028, 0x0030), "DS", buf);
    S(T(0x0028, 0x1052), "DS", "0");
    S(T(0x0028, 0x1053), "DS", "1");
    S(T(0x0028, 0x1054), "LO", "HU");
    S(T(0x0028, 0x1050), "DS", "-600");
    S(T(0x0028, 0x1051), "DS", "1500");
#undef S
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0002), 1, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0010), NY, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0011), NX, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0100), 16, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0101), 16, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0102), 15, err);
    if (!rc)
        rc = covct_dcm_dataset_set_u16(ds, T(0x0028, 0x0103), 1, err);
    if (!rc) {
        /* Pixel Padding Value, SS because Pixel Representation is 1. */
        int16_t pad = -3024;
        uint8_t b[2] = {(uint8_t)(pad & 0xFF), (uint8_t)((uint16_t)pad >> 8)};
        rc = covct_dcm_dataset_set(ds, T(0x0028, 0x0120), COVCT_VR('S', 'S'),
                                   b, 2, err);
    }
    static uint8_t px[NX * NY * 2];
    for (int j = 0; j < NY; j++)
        for (int i = 0; i < NX; i++) {
            uint16_t v = (uint16_t)phantom(x0 + i * PIX, y0 + j * PIX, z);
            px[2 * (j * NX + i)] = (uint8_t)(v & 0xFF);
            px[2 * (j * NX + i) + 1] = (uint8_t)(v >> 8);
        }
    if (!rc)
        rc = covct_dcm_dataset_set(ds, T(0x7FE0, 0x0010), COVCT_VR('O', 'W'),
                                   px, sizeof px, err);
    snprintf(path, sizeof path, "%s/IM%04d.dcm", dir, file_no);
    if (!rc)
        rc = covct_dcm_write_file(path, ds, err);
    covct_dcm_dataset_free(ds);
    return rc;
}

int covct_cmd_demo(int argc, char **argv)
{
    const char *dir = "demo";
    for (int i = 1; i < argc; i++) {
        if (covct_cli_is_help(argv[i])) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (argv[i][0] == '-') {
            covct_cli_error("demo: unknown option '%s'\n%s", argv[i], help);
            return COVCT_EXIT_USAGE;
        } else {
            dir = argv[i];
        }
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        covct_cli_error("demo: cannot create folder %s: %s", dir,
                        strerror(errno));
        return COVCT_EXIT_FAIL;
    }
    printf("Writing a synthetic chest CT phantom (%d slices) to %s/ ...\n",
           NZ, dir);
    covct_error err = {0};
    for (int k = 0; k < NZ; k++) {
        /* File numbers are a permutation of slice numbers (7 is coprime
         * with 40), so the file order says nothing about slice order. */
        if (write_slice(dir, k, (k * 7) % NZ + 1, &err)) {
            covct_cli_error("demo: %s", err.msg);
            return COVCT_EXIT_FAIL;
        }
    }
    printf("\n$ covct info %s\n", dir);
    fflush(stdout);
    char *info_argv[] = {"info", (char *)dir, NULL};
    int rc = covct_cmd_info(2, info_argv);
    if (rc)
        return rc;
    char out[4096];
    snprintf(out, sizeof out, "%s.nii.gz", dir);
    printf("\n$ covct volume %s -o %s\n", dir, out);
    fflush(stdout);
    char *vol_argv[] = {"volume", (char *)dir, "-o", out, NULL};
    return covct_cmd_volume(4, vol_argv);
}
