/* covct analyze: lungs, lobes, lesions, measures and the report for one
 * chest CT series, DICOM or NIfTI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "covct/analysis.h"
#include "covct/nn.h"
#include "covct/report.h"
#include "covct/volume.h"

static const char help[] =
    "Usage: covct analyze SERIES_FOLDER|FILE|VOLUME.nii.gz -o OUTDIR [options]\n"
    "\n"
    "Analyse a chest CT for COVID-19 pneumonia: find the lungs, the five\n"
    "lobes, ground-glass opacity and consolidation; measure volumes and the\n"
    "involvement of each lobe; give the CT severity score (0-25, Pan et al.\n"
    "2020) and a pattern category (RSNA consensus) with its reasons.\n"
    "AI-assisted results, to be confirmed by a radiologist.\n"
    "\n"
    "Writes into OUTDIR: report.html (open it in a browser), report.json,\n"
    "key images (PNG), lungs.nii.gz, lobes.nii.gz and lesions.nii.gz\n"
    "(and dense_behind.nii.gz when dense tissue without air bronchograms\n"
    "lies behind the lungs, outside the lung mask: possibly effusion).\n"
    "With --dicom, also OUTDIR/dicom/: seg.dcm (DICOM Segmentation of the\n"
    "lungs, lobes and opacities), sr.dcm (DICOM SR measurement report, TID\n"
    "1500) and key-NN.dcm (key images with an 'AI RESULT' banner), new\n"
    "series of the source study, ready to send to a PACS.\n"
    "\n"
    "Slices 0.6 to 5 mm thick.  On slices thicker than 2.5 mm, opacity on\n"
    "the lungs' top and bottom surfaces (diaphragm, apex) is not counted:\n"
    "there the slice mixes lung and soft tissue into ground-glass density.\n"
    "The progress, the page and report.json (thick_slice_ml) say how much.\n"
    "\n"
    "Dense tissue behind the lower lungs that the lung mask cannot keep:\n"
    "where it holds air bronchograms it is airless lung (consolidated, as in\n"
    "severe disease in a patient lying on the back, or collapsed) and is\n"
    "added to the lungs, so it counts in the volumes and scores\n"
    "(report.json lungs.dense_lung_ml); without them it may be pleural\n"
    "effusion and is measured apart: from 50 ml on the terminal, the page\n"
    "(outlined in magenta), report.json (lungs.dense_behind_ml) and the\n"
    "DICOM results say so, and the scan is never called negative.\n"
    "\n"
    "  -o, --output DIR   output folder (created if missing), required\n"
    "  --series N         use series N as listed by 'covct info'.  Without\n"
    "                     it, a folder of several series of one patient\n"
    "                     is read as its axial CT series with most slices\n"
    "                     (said on the terminal); a folder holding more\n"
    "                     than one patient is refused\n"
    "  --lesions METHOD   how ground glass and consolidation are found:\n"
    "                     'network' (default: the trained lesion network)\n"
    "                     or 'density' (HU ranges with vessel suppression)\n"
    "  --model FILE       the lesion network (default:\n"
    "                     " COVCT_MODEL_DEFAULT ")\n"
    "  --lesion-threshold N  network: a voxel is lesion when its infection\n"
    "                     map (0-255) reaches N (default 128, probability\n"
    "                     0.5; lower finds more and fainter opacity)\n"
    "  --no-density-check network: keep its lesions as they are (by\n"
    "                     default voxels of well-aerated lung, under\n"
    "                     -700 HU, are dropped from them; solid\n"
    "                     opacities 10 mm or more across are added as\n"
    "                     consolidation, and so is the blurred rim of\n"
    "                     consolidation, up to 1.5 mm, where it is\n"
    "                     -400 HU or denser)\n"
    "  --dicom            also write the DICOM results (DICOM input only:\n"
    "                     they reference the source images by UID)\n"
    "  --threads N        decoding threads (default: all cores)\n"
    "  -q, --quiet        no progress or summary\n"
    "\n"
    "Exit status: 0 done; 1 the input could not be read or is not a chest\n"
    "CT (the report then says why); 2 wrong command line.\n";

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void step(bool show, const char *what, double t0)
{
    if (show)
        fprintf(stderr, "[%5.1f s] %s\n", covct_now() - t0, what);
}

int covct_cmd_analyze(int argc, char **argv)
{
    const char *in = NULL, *outdir = NULL;
    const char *model_path = COVCT_MODEL_DEFAULT;
    unsigned long series_no = 0, threads = 0;
    bool quiet = false, use_net = true, want_dicom = false;
    covct_lesions_nn_options nn_opt;
    covct_lesions_nn_options_default(&nn_opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end;
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) &&
                   i + 1 < argc) {
            outdir = argv[++i];
        } else if (!strcmp(a, "--series") && i + 1 < argc) {
            series_no = strtoul(argv[++i], &end, 10);
            if (*end || !series_no) {
                covct_cli_error("analyze: --series needs a number from 1");
                return COVCT_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            threads = strtoul(argv[++i], &end, 10);
            if (*end || threads > 64) {
                covct_cli_error("analyze: --threads needs a number 0..64");
                return COVCT_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--lesions") && i + 1 < argc) {
            const char *v = argv[++i];
            if (strcmp(v, "network") && strcmp(v, "density")) {
                covct_cli_error("analyze: --lesions is 'network' or "
                                "'density', not '%s'", v);
                return COVCT_EXIT_USAGE;
            }
            use_net = !strcmp(v, "network");
        } else if (!strcmp(a, "--lesion-threshold") && i + 1 < argc) {
            unsigned long t = strtoul(argv[++i], &end, 10);
            if (*end || t < 1 || t > 255) {
                covct_cli_error("analyze: --lesion-threshold needs a number "
                                "1..255");
                return COVCT_EXIT_USAGE;
            }
            nn_opt.threshold = (int)t;
        } else if (!strcmp(a, "--no-density-check")) {
            nn_opt.density_check = false;
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            model_path = argv[++i];
        } else if (!strcmp(a, "--dicom")) {
            want_dicom = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            covct_cli_error("analyze: unknown or incomplete option '%s'\n%s", a,
                            help);
            return COVCT_EXIT_USAGE;
        } else if (in) {
            covct_cli_error("analyze: one series at a time");
            return COVCT_EXIT_USAGE;
        } else {
            in = a;
        }
    }
    if (!in || !outdir) {
        covct_cli_error("analyze: %s is required\n%s",
                        !in ? "an input series, file or NIfTI volume"
                            : "-o OUTDIR",
                        help);
        return COVCT_EXIT_USAGE;
    }
    const bool is_nifti = ends_with(in, ".nii") || ends_with(in, ".nii.gz");
    if (want_dicom && is_nifti) {
        covct_cli_error("analyze: --dicom needs a DICOM series: a NIfTI "
                        "volume has no source images (SOP Instance UIDs) "
                        "for DICOM results to reference");
        return COVCT_EXIT_USAGE;
    }
    const bool show = !quiet;
    const double t0 = covct_now();
    covct_error err = {0};
    covct_volume *ct = NULL;
    covct_series_set *set = NULL;
    const covct_series *src_series = NULL;
    covct_dicom_results dres = {0};
    char *dicom_dir = NULL;
    covct_seg *seg = NULL;
    int64_t *inst = NULL;
    covct_measures m;
    memset(&m, 0, sizeof m);
    covct_lung_info li;
    memset(&li, 0, sizeof li);
    covct_series_summary sm;
    memset(&sm, 0, sizeof sm);
    covct_nn_model net;
    memset(&net, 0, sizeof net);
    char *net_name = NULL;
    covct_lesions_nn_job *job = NULL;
    int rc = COVCT_EXIT_FAIL;

    /* The network first: a missing or damaged model file is found before
     * minutes of reading. */
    if (use_net) {
        if (covct_nn_model_read(model_path, &net, &err)) {
            covct_cli_error("cannot load the lesion network: %s\n"
                            "(use --model FILE, or --lesions density to "
                            "analyse without it)",
                            err.msg);
            goto out;
        }
        cJSON *card = net.card_json ? cJSON_Parse(net.card_json) : NULL;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(card, "name");
        if (cJSON_IsString(name))
            net_name = covct_strdup(name->valuestring);
        cJSON_Delete(card);
    }

    step(show, "reading the CT", t0);
    if (is_nifti) {
        if (covct_nifti_read(in, &ct, &err)) {
            covct_cli_error("%s", err.msg);
            goto out;
        }
    } else {
        if (covct_series_scan(in, &set, &err)) {
            covct_cli_error("%s", err.msg);
            goto out;
        }
        covct_series *s = series_no ? covct_series_set_at(set, series_no - 1)
                                    : covct_series_set_best(set);
        if (!s) {
            covct_cli_error("%s: %s", in,
                            series_no ? "no such series (see 'covct info')"
                                      : "no DICOM image series found");
            goto out;
        }
        covct_series_get_summary(s, &sm);
        src_series = s;
        if (!series_no && !covct_cli_one_patient("analyze", in, set, s))
            goto out;
        inst = covct_malloc((covct_series_slice_count(s) + 1) * sizeof *inst);
        if (!inst) {
            covct_cli_error("out of memory");
            goto out;
        }
        covct_series_instance_numbers(s, inst);
        if (covct_series_load(s, (unsigned)threads, NULL, NULL, &ct, &err)) {
            covct_cli_error("%s", err.msg);
            goto out;
        }
    }
    /* The lung stage reads slice rows as the patient's right-left axis
     * and columns as front-back.  A volume stored the other way round
     * (rows front-back: a transposed NIfTI, a DICOM Image Orientation of
     * (0,1,0,1,0,0)) is analysed transposed, and it and its masks are
     * turned back before anything is measured or written, so every output
     * lies on the input's grid. */
    covct_axes axes;
    covct_volume_axes(ct, &axes);
    const bool swapped = axes.axis[2] == 2 && axes.axis[0] == 1;
    if (swapped && covct_volume_transpose_xy(ct, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    if (covct_seg_new(ct, &seg, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    /* The network needs only the body: it runs in worker threads while
     * the lungs and lobes are found, and its result is cut to the lungs
     * when it is collected. */
    covct_error net_err = {0};
    if (use_net) {
        step(show, "finding the body; the lesion network starts", t0);
        if (covct_body_segment(ct, seg, &err)) {
            covct_cli_error("body: %s", err.msg);
            goto out;
        }
        /* A series the network cannot read (not axial) is not an error
         * yet: the lung stage says what it is, in the report. */
        if (covct_lesions_nn_start(ct, seg, &net, &nn_opt, &job, &net_err))
            job = NULL;
    }
    step(show, "finding the lungs", t0);
    if (covct_lungs_segment(ct, seg, &li, &err)) {
        covct_cli_error("lung segmentation: %s", err.msg);
        goto out;
    }
    if (li.is_chest && li.dense_behind_ml >= COVCT_DENSE_BEHIND_MIN_ML)
        fprintf(stderr,
                "          %.0f ml of dense tissue lies behind the lower "
                "lungs, inside the ribs,\n          outside the lung mask: "
                "consolidated dependent lung or pleural\n          effusion; "
                "the volumes and scores leave it out\n",
                li.dense_behind_ml);
    if (li.is_chest && li.dense_lung_ml >= COVCT_DENSE_BEHIND_MIN_ML)
        fprintf(stderr,
                "          %.0f ml of dense tissue behind the lower lungs "
                "holds air bronchograms:\n          airless lung "
                "(consolidated or collapsed), counted as lung\n",
                li.dense_lung_ml);
    size_t pv = 0; /* voxels the thick-slice check left out */
    const double voxel_ml =
        ct->spacing[0] * ct->spacing[1] * ct->spacing[2] / 1000.0;
    if (li.is_chest) {
        step(show, "dividing the lobes", t0);
        if (covct_lobes_segment(ct, seg, &err)) {
            covct_cli_error("lobe segmentation: %s", err.msg);
            goto out;
        }
        step(show,
             use_net ? "finding ground glass and consolidation (network)"
                     : "finding ground glass and consolidation (density)",
             t0);
        covct_rc lrc;
        if (use_net && !job) {
            err = net_err;
            lrc = err.rc ? err.rc : COVCT_ERR_INTERNAL;
        } else if (use_net) {
            lrc = covct_lesions_nn_finish(job, seg, &err);
            job = NULL;
        } else {
            lrc = covct_lesions_segment(ct, seg, &err);
        }
        pv = 0;
        if (!lrc)
            lrc = covct_lesions_thick_slice_check(ct, seg, &pv, &err);
        if (lrc) {
            covct_cli_error("lesion segmentation: %s", err.msg);
            goto out;
        }
        if (pv && show)
            fprintf(stderr,
                    "          slices %.1f mm thick: %.1f ml of opacity on the "
                    "lungs' top and bottom\n          surfaces not counted "
                    "(partial volume of the slab)\n",
                    ct->spacing[2], (double)pv * voxel_ml);
    }
    covct_lesions_nn_cancel(job); /* not a chest CT: not needed */
    job = NULL;
    if (swapped && (covct_volume_transpose_xy(ct, &err) ||
                    covct_seg_transpose_xy(seg, &err))) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    step(show, "measuring", t0);
    if (covct_measures_compute(ct, seg, inst, &m, &err)) {
        covct_cli_error("measures: %s", err.msg);
        goto out;
    }
    step(show, "writing the report", t0);
    covct_report_input ri = {
        .source = in,
        .ct = ct,
        .seg = seg,
        .lungs = &li,
        .m = &m,
        .patient_id = sm.patient_id,
        .study_date = sm.study_date,
        .series_description = sm.description,
        .seconds = covct_now() - t0,
        .lesion_method = use_net ? "network" : "density",
        .lesion_model = net_name,
        .lesion_model_file = use_net ? model_path : NULL,
        .density_check = use_net && nn_opt.density_check,
        .thick_slice_ml = (double)pv * voxel_ml,
    };
    if (covct_report_write(outdir, &ri, &err)) {
        covct_cli_error("%s", err.msg);
        goto out;
    }
    if (!li.is_chest) {
        covct_cli_error("%s: not a chest CT: %s (report written to "
                        "%s/report.html)",
                        in, li.why_not, outdir);
        goto out;
    }
    if (want_dicom) {
        step(show, "writing the DICOM results", t0);
        size_t dn = strlen(outdir) + sizeof "/dicom";
        dicom_dir = covct_malloc(dn);
        if (!dicom_dir) {
            covct_cli_error("out of memory");
            goto out;
        }
        snprintf(dicom_dir, dn, "%s/dicom", outdir);
        if (covct_report_write_dicom(dicom_dir, &ri, src_series, &dres,
                                     &err)) {
            covct_cli_error("DICOM results: %s (the report itself is in "
                            "%s/report.html)",
                            err.msg, outdir);
            goto out;
        }
    }
    if (show) {
        printf("CT severity score %d / 25, %s appearance\n",
               m.ct_severity_score, covct_category_name(m.category));
        printf("Lungs: right %.0f ml, left %.0f ml; opacities %.1f ml (%.1f%% "
               "of the lungs: ground glass %.1f ml, consolidation %.1f ml)\n",
               m.right_ml, m.left_ml, m.lesion_ml, m.involvement_pct, m.ggo_ml,
               m.consolidation_ml);
        for (int lb = 1; lb <= COVCT_N_LOBES; lb++)
            printf("  %s %6.0f ml, involved %5.1f%%, score %d\n",
                   covct_lobe_name(lb), m.lobe[lb].volume_ml,
                   m.lobe[lb].involvement_pct, m.lobe[lb].score);
        printf("AI-assisted result, to be confirmed by a radiologist.\n");
        if (want_dicom) {
            size_t nk = 0;
            for (size_t i = 0; i < dres.n; i++)
                nk += !strcmp(dres.r[i].kind, "SC");
            printf("DICOM results: %s/ (seg.dcm segmentation, sr.dcm "
                   "measurement report, %zu key image%s)\n",
                   dicom_dir, nk, nk == 1 ? "" : "s");
        }
        printf("Report: %s/report.html (%.1f s)\n", outdir, covct_now() - t0);
    }
    rc = COVCT_EXIT_OK;
out:
    covct_lesions_nn_cancel(job);
    covct_dicom_results_free(&dres);
    covct_free(dicom_dir);
    covct_free(net_name);
    covct_nn_model_free(&net);
    covct_measures_free(&m);
    covct_seg_free(seg);
    covct_volume_free(ct);
    covct_series_set_free(set);
    covct_free(inst);
    return rc;
}
