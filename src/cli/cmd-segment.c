/* covct segment: run the lesion segmentation network on 2-D slice images
 * (JPEG or PNG, 8-bit, any size) and write probability maps as PNG. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "covct/image.h"
#include "covct/nn.h"


static const char help[] =
    "Usage: covct segment IMAGE... -o OUTDIR [OPTIONS]\n"
    "\n"
    "Find COVID-19 pneumonia (ground glass and consolidation) on axial CT\n"
    "slices saved as pictures (8-bit JPEG or PNG, grey or colour, any size,\n"
    "windowed for the lungs, as in the COVID-SemiSeg data set), with the\n"
    "neural network that ships with covct.  For whole CT series in DICOM\n"
    "use 'covct analyze'.\n"
    "\n"
    "For each IMAGE (name STEM.jpg or STEM.png) it writes, same size as the\n"
    "input, 0 = certainly not, 255 = certainly infection:\n"
    "  OUTDIR/STEM.png                 infection probability (either class)\n"
    "  OUTDIR/STEM_ggo.png             ground-glass opacity probability\n"
    "  OUTDIR/STEM_consolidation.png   consolidation probability\n"
    "A mask is the map thresholded at 128.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR   where to write (created if missing)\n"
    "  --model FILE       the network; give it more than once for an\n"
    "                     ensemble (the networks' probabilities are\n"
    "                     averaged).  Default: the three networks that\n"
    "                     ship in " COVCT_MODEL_DIR ",\n"
    "                     lesions-unet.covctnn and its -seed2 and -seed3\n"
    "                     siblings (same recipe, other seeds), averaged\n"
    "  --flip / --no-flip also run the network on the mirrored slice and\n"
    "                     average the two (twice the time; default: off)\n"
    "  -q, --quiet        no progress lines\n"
    "  -h, --help         this text\n"
    "\n"
    "AI-assisted result, to be confirmed by a radiologist.\n";

int covct_cmd_segment(int argc, char **argv);

/* STEM of a path: the file name without folder and extension. */
static void stem_of(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = '\0';
}

static int write_map(const char *dir, const char *stem, const char *suffix,
                     uint8_t *px, uint32_t w, uint32_t h)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s%s.png", dir, stem, suffix) >=
        (int)sizeof path) {
        covct_cli_error("output path too long: %s/%s%s.png", dir, stem,
                        suffix);
        return -1;
    }
    covct_image img = {.width = w, .height = h, .pixels = px};
    covct_error err = {0};
    if (covct_image_write_png(path, &img, &err) != COVCT_OK) {
        covct_cli_error("%s", err.msg);
        return -1;
    }
    return 0;
}

#define MAX_MODELS 8

int covct_cmd_segment(int argc, char **argv)
{
    const char *out = NULL;
    const char *paths[MAX_MODELS];
    int n_models = 0;
    int quiet = 0;
    char **inputs = calloc((size_t)argc, sizeof *inputs);
    int n_in = 0;
    unsigned tta = 0;
    if (!inputs) {
        covct_cli_error("out of memory");
        return COVCT_EXIT_FAIL;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            free(inputs);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output") ||
                   !strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                covct_cli_error("%s needs a value", a);
                free(inputs);
                return COVCT_EXIT_USAGE;
            }
            if (!strcmp(a, "--model")) {
                if (n_models == MAX_MODELS) {
                    covct_cli_error("at most %d networks (--model)",
                                    MAX_MODELS);
                    free(inputs);
                    return COVCT_EXIT_USAGE;
                }
                paths[n_models++] = argv[++i];
            } else {
                out = argv[++i];
            }
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--flip")) {
            tta = COVCT_NN_TTA_FLIP;
        } else if (!strcmp(a, "--no-flip")) {
            tta = 0;
        } else if (a[0] == '-' && a[1]) {
            covct_cli_error("unknown option '%s'; run 'covct segment --help'",
                            a);
            free(inputs);
            return COVCT_EXIT_USAGE;
        } else {
            inputs[n_in++] = argv[i];
        }
    }
    if (!out || !n_in) {
        covct_cli_error("%s; run 'covct segment --help'",
                        !n_in ? "no input image given" : "no output folder "
                                                         "given (-o DIR)");
        free(inputs);
        return COVCT_EXIT_USAGE;
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        covct_cli_error("cannot create %s: %s", out, strerror(errno));
        free(inputs);
        return COVCT_EXIT_FAIL;
    }
    if (!n_models) {
        static const char *const ens[] = COVCT_SEGMENT_ENSEMBLE;
        for (size_t k = 0; k < sizeof ens / sizeof ens[0]; k++)
            paths[n_models++] = ens[k];
    }
    covct_nn_model models[MAX_MODELS];
    covct_nn_model *mp[MAX_MODELS];
    covct_error err = {0};
    for (int k = 0; k < n_models; k++) {
        mp[k] = &models[k];
        if (covct_nn_model_read(paths[k], &models[k], &err) != COVCT_OK) {
            covct_cli_error("cannot load the segmentation network: %s",
                            err.msg);
            for (int j = 0; j < k; j++)
                covct_nn_model_free(&models[j]);
            free(inputs);
            return COVCT_EXIT_FAIL;
        }
    }
    if (!quiet && n_models > 1)
        fprintf(stderr, "%d networks, their maps averaged\n", n_models);
    int failed = 0;
    double t0 = covct_now();
    for (int i = 0; i < n_in; i++) {
        covct_image img = {0};
        covct_error_clear(&err);
        if (covct_image_read(inputs[i], COVCT_IMAGE_GRAY, &img, &err) !=
            COVCT_OK) {
            covct_cli_error("%s", err.msg);
            failed++;
            continue;
        }
        size_t n = (size_t)img.width * img.height;
        uint8_t *maps = malloc(3 * n);
        char stem[1024];
        stem_of(inputs[i], stem, sizeof stem);
        int ok = maps != NULL;
        if (ok && covct_nn_segment_slice_ens(mp, n_models, img.pixels,
                                             img.width, img.height, tta, maps,
                                             maps + n, maps + 2 * n,
                                             &err) != COVCT_OK) {
            covct_cli_error("%s: %s", inputs[i], err.msg);
            ok = 0;
        } else if (!ok) {
            covct_cli_error("%s: out of memory", inputs[i]);
        }
        if (ok)
            ok = !write_map(out, stem, "", maps, img.width, img.height) &&
                 !write_map(out, stem, "_ggo", maps + n, img.width,
                            img.height) &&
                 !write_map(out, stem, "_consolidation", maps + 2 * n,
                            img.width, img.height);
        if (ok && !quiet) {
            size_t pos = 0;
            for (size_t k = 0; k < n; k++)
                pos += maps[k] >= 128;
            fprintf(stderr, "[%3d/%d] %s: %ux%u, infection %.1f %% of the "
                    "image (%.1f s)\n",
                    i + 1, n_in, inputs[i], (unsigned)img.width,
                    (unsigned)img.height, 100.0 * (double)pos / (double)n,
                    covct_now() - t0);
        }
        failed += !ok;
        free(maps);
        covct_image_free(&img);
    }
    for (int k = 0; k < n_models; k++)
        covct_nn_model_free(&models[k]);
    free(inputs);
    if (!quiet)
        fprintf(stderr, "%d of %d images segmented into %s\n", n_in - failed,
                n_in, out);
    return failed ? COVCT_EXIT_FAIL : COVCT_EXIT_OK;
}
