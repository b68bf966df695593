/* covct: the command-line entry point. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "covct/core.h"

#ifndef COVCT_VERSION
#define COVCT_VERSION "0.1.0"
#endif

static const char usage[] =
    "covct " COVCT_VERSION " - COVID-19 pneumonia analysis for chest CT\n"
    "\n"
    "Usage: covct COMMAND [OPTIONS] ...\n"
    "\n"
    "Commands:\n"
    "  info FILE|FOLDER          what is in a DICOM file or folder: patient,\n"
    "                            study, series, geometry, encoding, problems\n"
    "  dump FILE                 every data element of a DICOM file\n"
    "  volume FILE|FOLDER -o OUT.nii.gz\n"
    "                            build a Hounsfield-unit volume from a CT\n"
    "                            series and save it as NIfTI\n"
    "  analyze SERIES|FILE|VOLUME.nii.gz -o OUTDIR\n"
    "                            lungs, lobes, ground glass, consolidation,\n"
    "                            severity score and category; writes an HTML\n"
    "                            and JSON report, key images and masks\n"
    "  phantom -o DIR            write a synthetic chest CT (DICOM) with its\n"
    "                            exact ground truth, for tests and demos\n"
    "  segment IMAGE... -o DIR   ground glass and consolidation on 2-D slice\n"
    "                            pictures (JPEG/PNG) with the neural network\n"
    "  train --data DIR -o MODEL train that network on labelled slices, with\n"
    "                            cross-validation\n"
    "  model MODEL.covctnn       what a network file holds (architecture,\n"
    "                            model card); replace its model card\n"
    "  eval PRED_DIR GT_DIR      score predicted infection maps against masks\n"
    "                            (Dice, Inf-Net protocol, 95 % intervals)\n"
    "  serve --data DIR          run as a DICOM node: receive studies from\n"
    "                            the PACS and scanners (C-STORE, C-ECHO)\n"
    "  echo AE@HOST:PORT         check that a DICOM node answers (C-ECHO)\n"
    "  send AE@HOST:PORT FILE|FOLDER...\n"
    "                            send DICOM files to a node (C-STORE)\n"
    "  deid IN OUT --key KEYFILE remove patient identity from DICOM files\n"
    "                            (PS3.15 Basic Profile, keyed pseudonyms)\n"
    "  import FILE|FOLDER... --data DIR\n"
    "                            bring DICOM files, NIfTI volumes with masks\n"
    "                            (--nifti) or CSV clinical labels (--labels)\n"
    "                            into a site's data folder and case database\n"
    "  project ACTION NAME --data DIR\n"
    "                            research projects: ethics approvals, data\n"
    "                            use agreements, included patients\n"
    "  consent PATIENT_ID --project NAME --given|--withdrawn|--waived\n"
    "                            record a patient's consent for a project\n"
    "  export --project NAME -o OUTDIR --data DIR\n"
    "                            a project's de-identified research data set\n"
    "                            (NIfTI, masks, CSV, split, datasheet)\n"
    "  audit verify|show --data DIR\n"
    "                            check that the audit log is untouched; read it\n"
    "  user add|passwd|list ... --data DIR\n"
    "                            the people of the case database and roles\n"
    "  token create NAME --data DIR\n"
    "                            an API token for scripts (DICOMweb, REST)\n"
    "  agreement --data DIR      how far the two readers agree (Dice per\n"
    "                            class, Cohen's kappa)\n"
    "  demo [FOLDER]             make a small synthetic CT series and run\n"
    "                            info and volume on it\n"
    "\n"
    "Run 'covct COMMAND --help' for the options of a command.\n"
    "Exit status: 0 success, 1 the input could not be processed, 2 usage.\n"
    "Environment: COVCT_DEBUG=1 prints diagnostic lines (timings of each\n"
    "step) on standard error.\n";

bool covct_cli_is_help(const char *arg)
{
    return !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

void covct_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("covct: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int main(int argc, char **argv)
{
    if (argc < 2 || covct_cli_is_help(argv[1])) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? COVCT_EXIT_USAGE : COVCT_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("covct %s\n", COVCT_VERSION);
        return COVCT_EXIT_OK;
    }
    const char *dbg = getenv("COVCT_DEBUG");
    if (dbg && *dbg && strcmp(dbg, "0"))
        covct_log_set_level(COVCT_LOG_DEBUG);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "dump"))
        return covct_cmd_dump(argc - 1, argv + 1);
    if (!strcmp(cmd, "info"))
        return covct_cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "volume"))
        return covct_cmd_volume(argc - 1, argv + 1);
    if (!strcmp(cmd, "demo"))
        return covct_cmd_demo(argc - 1, argv + 1);
    if (!strcmp(cmd, "analyze") || !strcmp(cmd, "analyse"))
        return covct_cmd_analyze(argc - 1, argv + 1);
    if (!strcmp(cmd, "phantom"))
        return covct_cmd_phantom(argc - 1, argv + 1);
    if (!strcmp(cmd, "segment"))
        return covct_cmd_segment(argc - 1, argv + 1);
    if (!strcmp(cmd, "train"))
        return covct_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "model"))
        return covct_cmd_model(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return covct_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve"))
        return covct_cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "echo"))
        return covct_cmd_echo(argc - 1, argv + 1);
    if (!strcmp(cmd, "send"))
        return covct_cmd_send(argc - 1, argv + 1);
    if (!strcmp(cmd, "deid"))
        return covct_cmd_deid(argc - 1, argv + 1);
    if (!strcmp(cmd, "audit"))
        return covct_cmd_audit(argc - 1, argv + 1);
    if (!strcmp(cmd, "import"))
        return covct_cmd_import(argc - 1, argv + 1);
    if (!strcmp(cmd, "project"))
        return covct_cmd_project(argc - 1, argv + 1);
    if (!strcmp(cmd, "consent"))
        return covct_cmd_consent(argc - 1, argv + 1);
    if (!strcmp(cmd, "export"))
        return covct_cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "user"))
        return covct_cmd_user(argc - 1, argv + 1);
    if (!strcmp(cmd, "agreement"))
        return covct_cmd_agreement(argc - 1, argv + 1);
    if (!strcmp(cmd, "token"))
        return covct_cmd_token(argc - 1, argv + 1);
    covct_cli_error("unknown command '%s'; run 'covct --help' for the list",
                    cmd);
    return COVCT_EXIT_USAGE;
}
