/* covct demo: a quick tour of the DICOM side.  Writes a small synthetic
 * chest CT series (the phantom of `covct phantom`, coarse: 40 slices of
 * 5 mm, clearly labelled as synthetic, never patient data), then runs
 * 'covct info' and 'covct volume' on it. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "covct/phantom.h"

static const char help[] =
    "Usage: covct demo [FOLDER]\n"
    "\n"
    "Write a small synthetic chest CT series (the covct phantom: body,\n"
    "ribs, heart, airways, vessels, lungs and lesions; 40 slices of 5 mm,\n"
    "256 x 256) to FOLDER (default: demo) as DICOM files named out of slice\n"
    "order, then run 'covct info FOLDER' and\n"
    "'covct volume FOLDER -o FOLDER.nii.gz'.  For the full analysis of a\n"
    "phantom, see 'covct phantom' and 'covct analyze'.\n";

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
    covct_phantom_params p;
    covct_phantom_params_default(&p);
    p.slice_mm = 5.0;
    p.length_mm = 200.0;
    covct_volume *ct = NULL;
    covct_error err = {0};
    printf("Writing a synthetic chest CT phantom to %s/ ...\n", dir);
    if (covct_phantom_make(&p, &ct, NULL, NULL, &err) ||
        covct_phantom_write_dicom(ct, dir, &err)) {
        covct_cli_error("demo: %s", err.msg);
        covct_volume_free(ct);
        return COVCT_EXIT_FAIL;
    }
    covct_volume_free(ct);
    printf("\n$ covct info %s\n", dir);
    fflush(stdout);
    char *info_argv[] = {"info", (char *)dir, NULL};
    int rc = covct_cmd_info(2, info_argv);
    if (rc)
        return rc;
    char out[4096];
    if ((size_t)snprintf(out, sizeof out, "%s.nii.gz", dir) >= sizeof out) {
        covct_cli_error("demo: folder name too long");
        return COVCT_EXIT_USAGE;
    }
    printf("\n$ covct volume %s -o %s\n", dir, out);
    fflush(stdout);
    char *vol_argv[] = {"volume", (char *)dir, "-o", out, NULL};
    return covct_cmd_volume(4, vol_argv);
}
