/* covct volume: a DICOM CT series (file, multi-frame file or folder) to a
 * Hounsfield-unit NIfTI volume. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "covct/volume.h"

static const char help[] =
    "Usage: covct volume FILE|FOLDER -o OUT.nii.gz [options]\n"
    "\n"
    "Build a 3-D volume in Hounsfield units from a CT series and write it as\n"
    "NIfTI-1 (.nii, or .nii.gz compressed) with its patient geometry, so\n"
    "that ITK-SNAP, 3D Slicer or nibabel show it where it is.  A folder may\n"
    "hold several series of one patient: the largest axial CT series is\n"
    "used unless --series is given (a folder of more than one patient\n"
    "needs --series).  Slices are ordered by position, not file name.\n"
    "\n"
    "  -o, --output FILE   output file (.nii or .nii.gz), required\n"
    "  --series N          use series number N as listed by 'covct info'\n"
    "  --threads N         decoding threads (default: all cores)\n"
    "  --outside-mask FILE also write a 0/1 NIfTI marking voxels outside the\n"
    "                      body or field of view (Pixel Padding Value, and\n"
    "                      values below -1500 HU such as -2048 or -3024)\n"
    "  -q, --quiet         no progress or summary\n";

typedef struct progress_state {
    bool show;
    int last;
} progress_state;

static void on_progress(double fraction, const char *what, void *user)
{
    progress_state *ps = user;
    int pct = (int)(fraction * 100.0);
    if (!ps->show || pct == ps->last)
        return;
    ps->last = pct;
    fprintf(stderr, "\r%s %3d%%", what, pct);
    if (pct >= 100)
        fputc('\n', stderr);
}

/* The outside mask as an int16 0/1 volume with the same geometry. */
static covct_rc write_mask(const covct_volume *v, const char *path,
                           covct_error *err)
{
    covct_volume *m;
    covct_rc rc = covct_volume_new(v->nx, v->ny, v->nz, COVCT_DTYPE_INT16, &m,
                                   err);
    if (rc)
        return rc;
    memcpy(m->spacing, v->spacing, sizeof m->spacing);
    memcpy(m->affine, v->affine, sizeof m->affine);
    int16_t *d = m->data;
    size_t n = covct_volume_voxels(v);
    for (size_t i = 0; i < n; i++)
        d[i] = v->outside ? v->outside[i] : 0;
    rc = covct_nifti_write(m, path, err);
    covct_volume_free(m);
    return rc;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v > max)
        return false;
    *out = v;
    return true;
}

int covct_cmd_volume(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *mask_out = NULL;
    unsigned long series_no = 0, threads = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) &&
                   i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(a, "--outside-mask") && i + 1 < argc) {
            mask_out = argv[++i];
        } else if (!strcmp(a, "--series") && i + 1 < argc) {
            if (!parse_uint(argv[++i], 100000, &series_no) || !series_no) {
                covct_cli_error("volume: --series needs a number from 1");
                return COVCT_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (!parse_uint(argv[++i], 64, &threads)) {
                covct_cli_error("volume: --threads needs a number 0..64");
                return COVCT_EXIT_USAGE;
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            covct_cli_error("volume: unknown or incomplete option '%s'\n%s", a,
                            help);
            return COVCT_EXIT_USAGE;
        } else if (in) {
            covct_cli_error("volume: one input file or folder at a time");
            return COVCT_EXIT_USAGE;
        } else {
            in = a;
        }
    }
    if (!in || !out) {
        covct_cli_error("volume: %s is required\n%s",
                        !in ? "an input file or folder" : "-o OUT.nii.gz",
                        help);
        return COVCT_EXIT_USAGE;
    }
    size_t ol = strlen(out);
    if (!(ol > 4 && !strcmp(out + ol - 4, ".nii")) &&
        !(ol > 7 && !strcmp(out + ol - 7, ".nii.gz"))) {
        covct_cli_error("volume: output '%s' must end in .nii or .nii.gz",
                        out);
        return COVCT_EXIT_USAGE;
    }
    covct_error err = {0};
    covct_series_set *set = NULL;
    covct_volume *v = NULL;
    int rc = COVCT_EXIT_FAIL;
    double t0 = covct_now();
    if (covct_series_scan(in, &set, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    covct_series *s;
    if (series_no) {
        s = covct_series_set_at(set, series_no - 1);
        if (!s) {
            covct_cli_error("%s: there is no series %lu (%zu found; see "
                            "'covct info %s')",
                            in, series_no, covct_series_set_count(set), in);
            goto out;
        }
    } else {
        s = covct_series_set_best(set);
        if (!s) {
            covct_cli_error("%s: no DICOM image series found (%zu files "
                            "skipped)",
                            in, covct_series_set_skipped(set));
            if (covct_series_set_skipped(set))
                fputs(covct_series_set_skipped_report(set), stderr);
            goto out;
        }
        if (!covct_cli_one_patient("volume", in, set, s))
            goto out;
    }
    const char *pr = covct_series_problems(s);
    if (*pr && !quiet)
        fprintf(stderr, "covct: note: problems in this series:\n%s", pr);
    progress_state ps = {.show = !quiet && isatty(2), .last = -1};
    if (covct_series_load(s, (unsigned)threads, on_progress, &ps, &v, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    if (covct_nifti_write(v, out, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    if (mask_out && write_mask(v, mask_out, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    if (!quiet)
        printf("%s: %u x %u x %u voxels, %.3f x %.3f x %.3f mm, %s, in %.2f "
               "s\n",
               out, v->nx, v->ny, v->nz, v->spacing[0], v->spacing[1],
               v->spacing[2],
               v->dtype == COVCT_DTYPE_INT16 ? "int16 HU" : "float32 HU",
               covct_now() - t0);
    rc = COVCT_EXIT_OK;
out:
    covct_volume_free(v);
    covct_series_set_free(set);
    return rc;
}
