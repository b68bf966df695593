/* covct phantom: write a synthetic chest CT (DICOM series) with its exact
 * ground truth (NIfTI label maps and truth.json), for testing covct or
 * any other chest CT software without patient data. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "covct/phantom.h"

/* Declared here as well as in cli.h, which registers it. */
int covct_cmd_phantom(int argc, char **argv);

static const char help[] =
    "Usage: covct phantom -o DIR [OPTIONS]\n"
    "\n"
    "Write a synthetic chest CT -- a computer-generated digital phantom, not\n"
    "patient data -- with its exact ground truth, to test covct or any other\n"
    "chest CT software (a PACS import, a viewer, an AI product) without\n"
    "touching real patients' images.\n"
    "\n"
    "The phantom has a body with fat, ribs, spine, heart and aorta, a\n"
    "trachea and bronchi, two lungs with vessels, fissures and five lobes,\n"
    "and (unless --no-lesions) COVID-19-like lesions: ground-glass opacities\n"
    "and consolidations of known size, some against the chest wall.\n"
    "\n"
    "Output:\n"
    "  DIR/dicom/IM*.dcm        one CT image per slice (uncompressed, explicit\n"
    "                           VR little endian); Patient Name\n"
    "                           SYNTHETIC^PHANTOM, Patient ID SYNTH-PHANTOM,\n"
    "                           descriptions 'SYNTHETIC PHANTOM - NOT PATIENT\n"
    "                           DATA'; file names are not in slice order;\n"
    "                           Instance Number 1 is the top slice\n"
    "  DIR/truth_lungs.nii.gz   1 right lung, 2 left lung\n"
    "  DIR/truth_lobes.nii.gz   1 LUL, 2 LLL, 3 RUL, 4 RML, 5 RLL\n"
    "  DIR/truth_lesions.nii.gz 1 ground glass, 2 consolidation\n"
    "  DIR/truth.json           every lesion (class, lobe, volume in ml,\n"
    "                           centre in patient mm), totals, lobe and lung\n"
    "                           volumes\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR   where to write (created; DIR/dicom must not hold\n"
    "                     files already)\n"
    "  --seed N           vessels, lesions and noise (default 1); the same\n"
    "                     seed and options give identical files and UIDs\n"
    "  --spacing MM       in-plane pixel size (default 1.4: 256 x 256 over\n"
    "                     358 mm; 0.7 gives 512 x 512)\n"
    "  --slice MM         slice thickness and spacing (default 2.5: 120\n"
    "                     slices over 300 mm)\n"
    "  --noise HU         image noise, standard deviation (default 12; 0 for\n"
    "                     none)\n"
    "  --no-lesions       a healthy chest (for false-positive tests)\n"
    "  --dependent F      severe disease: the back F (0 to 0.8) of the\n"
    "                     lungs' depth consolidated in both lower lobes,\n"
    "                     as in a patient with severe COVID-19 or ARDS\n"
    "                     lying on the back, its small airways open (air\n"
    "                     bronchograms; the lower lobes' other lesions\n"
    "                     are left out)\n"
    "  -h, --help         this text\n"
    "\n"
    "Example:\n"
    "  covct phantom -o phantom && covct analyze phantom/dicom -o result\n"
    "  then compare result with phantom/truth.json.\n";

/* Parse a whole argument as a number; 0 on failure. */
static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return 0;
    *out = v;
    return 1;
}

static int dir_has_entries(const char *dir)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%.4000s/IM00001.dcm", dir) >=
        sizeof path)
        return 0;
    struct stat st;
    return stat(path, &st) == 0;
}

static const char *class_word(int cls)
{
    return cls == COVCT_LESION_GGO ? "ground glass" : "consolidation";
}

int covct_cmd_phantom(int argc, char **argv)
{
    covct_phantom_params p;
    covct_phantom_params_default(&p);
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "--no-lesions")) {
            p.lesions = false;
            continue;
        }
        int takes = !strcmp(a, "-o") || !strcmp(a, "--output") ||
                    !strcmp(a, "--seed") || !strcmp(a, "--spacing") ||
                    !strcmp(a, "--slice") || !strcmp(a, "--noise") ||
                    !strcmp(a, "--dependent");
        if (!takes) {
            covct_cli_error("phantom: unknown option '%s'; run 'covct "
                            "phantom --help'",
                            a);
            return COVCT_EXIT_USAGE;
        }
        if (!val) {
            covct_cli_error("phantom: %s needs a value", a);
            return COVCT_EXIT_USAGE;
        }
        i++;
        int ok = 1;
        if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out = val;
        else if (!strcmp(a, "--seed"))
            ok = parse_u64(val, &p.seed);
        else if (!strcmp(a, "--spacing"))
            ok = parse_double(val, &p.pixel_mm) && p.pixel_mm >= 0.3 &&
                 p.pixel_mm <= 10;
        else if (!strcmp(a, "--slice"))
            ok = parse_double(val, &p.slice_mm) && p.slice_mm >= 0.3 &&
                 p.slice_mm <= 20;
        else if (!strcmp(a, "--noise"))
            ok = parse_double(val, &p.noise_hu) && p.noise_hu >= 0 &&
                 p.noise_hu <= 500;
        else if (!strcmp(a, "--dependent"))
            ok = parse_double(val, &p.dependent) && p.dependent >= 0 &&
                 p.dependent <= 0.8;
        if (!ok) {
            covct_cli_error("phantom: bad value '%s' for %s (spacing 0.3-10 "
                            "mm, slice 0.3-20 mm, noise 0-500 HU, dependent "
                            "0-0.8, seed a whole number)",
                            val, a);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!out) {
        covct_cli_error("phantom: say where to write with -o DIR; run "
                        "'covct phantom --help'");
        return COVCT_EXIT_USAGE;
    }
    char dicom_dir[4096];
    int n = snprintf(dicom_dir, sizeof dicom_dir, "%s/dicom", out);
    if (n < 0 || (size_t)n >= sizeof dicom_dir) {
        covct_cli_error("phantom: folder name too long");
        return COVCT_EXIT_USAGE;
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        covct_cli_error("phantom: cannot create folder %s: %s", out,
                        strerror(errno));
        return COVCT_EXIT_FAIL;
    }
    if (dir_has_entries(dicom_dir)) {
        /* Mixing two phantoms' slices in one folder would make a confusing
         * pair of series; refuse instead of overwriting. */
        covct_cli_error("phantom: %s already holds a phantom; remove it or "
                        "choose another folder",
                        dicom_dir);
        return COVCT_EXIT_FAIL;
    }

    covct_error err = {0};
    covct_volume *ct = NULL;
    covct_seg *truth = NULL;
    covct_phantom_truth t;
    double t0 = covct_now();
    covct_rc rc = covct_phantom_make(&p, &ct, &truth, &t, &err);
    double t1 = covct_now();
    if (!rc)
        rc = covct_phantom_write_dicom(ct, dicom_dir, &err);
    if (!rc)
        rc = covct_phantom_write_truth(truth, &t, ct, out, &err);
    double t2 = covct_now();
    if (rc) {
        covct_cli_error("phantom: %s", err.msg);
        covct_volume_free(ct);
        covct_seg_free(truth);
        return COVCT_EXIT_FAIL;
    }

    printf("Synthetic chest CT phantom (seed %llu) - NOT PATIENT DATA\n",
           (unsigned long long)p.seed);
    printf("  %u slices of %u x %u, %.2f x %.2f mm pixels, %.2f mm slices, "
           "noise %.0f HU\n",
           ct->nz, ct->nx, ct->ny, ct->spacing[0], ct->spacing[1],
           ct->spacing[2], p.noise_hu);
    printf("  lungs: right %.0f ml, left %.0f ml\n", t.right_ml, t.left_ml);
    if (t.n_lesions == 0) {
        printf("  no lesions\n");
    } else {
        int ng = 0, nc = 0;
        for (int i = 0; i < t.n_lesions; i++) {
            if (t.lesion[i].cls == COVCT_LESION_GGO)
                ng++;
            else
                nc++;
        }
        printf("  ground glass: %d lesions, %.1f ml; consolidation: %d "
               "lesions, %.1f ml\n",
               ng, t.ggo_ml, nc, t.consolidation_ml);
        for (int i = 0; i < t.n_lesions; i++) {
            const covct_phantom_lesion *l = &t.lesion[i];
            printf("    %d. %-13s %s %6.2f ml%s\n", i + 1, class_word(l->cls),
                   covct_lobe_name(l->lobe), l->volume_ml,
                   l->subpleural ? "  (against the chest wall)" : "");
        }
    }
    printf("  generated in %.2f s, written in %.2f s\n", t1 - t0, t2 - t1);
    printf("  DICOM: %s/   truth: %s/truth.json, %s/truth_*.nii.gz\n",
           dicom_dir, out, out);
    covct_volume_free(ct);
    covct_seg_free(truth);
    return COVCT_EXIT_OK;
}
