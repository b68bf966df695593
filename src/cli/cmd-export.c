/* covct export: a project's research data set (docs/internals/export.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli-data.h"
#include "covct/site.h"

static const char help[] =
    "Usage: covct export --project NAME -o OUTDIR --data DIR [OPTIONS]\n"
    "\n"
    "Write the research data set of a project into the new folder OUTDIR:\n"
    "  images/PSEUDONYM/ct-K.nii.gz    CT volumes in Hounsfield units\n"
    "  labels/PSEUDONYM/ct-K_KIND.nii.gz  final masks (lesions: 0 none,\n"
    "                                  1 ground glass, 2 consolidation)\n"
    "  images.csv, clinical.csv        one row per CT / per case\n"
    "  split.csv                       train / validation / test, by patient\n"
    "  datasheet.md                    what the data set is, under which\n"
    "                                  approval, how it was made\n"
    "  manifest.sha256                 SHA-256 of every file; the receiver\n"
    "                                  checks with: sha256sum -c manifest.sha256\n"
    "\n"
    "Rules (each refusal and each export is written to the audit log):\n"
    "  - the project needs an ethics approval in force today ('covct\n"
    "    project approve'); without one the export is refused;\n"
    "  - it also needs a data use agreement in force today ('covct\n"
    "    project agreement'): signed, and not past its expiry date;\n"
    "    the datasheet lists every agreement, expired ones marked;\n"
    "  - OUTDIR must be new or empty, the project key readable;\n"
    "  - the approval's purposes are printed in the datasheet, not\n"
    "    checked: whoever runs the export answers for its use;\n"
    "  - only the kinds of data the approval's scope names (images,\n"
    "    labels, clinical) are written;\n"
    "  - only the project's patients whose consent is given or waived;\n"
    "    those who withdrew it, or have none on record, are left out and\n"
    "    counted;\n"
    "  - patients appear under pseudonyms made with the project's key\n"
    "    (DIR/keys/project-NAME.key): the same in every export of the\n"
    "    project; no names, IDs or calendar dates leave.\n"
    "\n"
    "Options:\n"
    "  --project NAME     the research project\n"
    "  -o, --out OUTDIR   a new (or empty) folder\n"
    "  --data DIR         the site's data folder (made by covct import or\n"
    "                     covct serve; a folder without a case database\n"
    "                     is refused)\n"
    "  --split A,B,C      train,validation,test percentages (70,15,15)\n"
    "  --seed TEXT        changes which patients go to which part (covct)\n"
    "  --dicom            also write the CT instances as de-identified DICOM\n"
    "                     (dicom/PSEUDONYM/ct-K/), PS3.15 Annex E\n"
    "  --key KEYFILE      the project key, if not the one under DIR/keys\n"
    "  --as USER          act as a user of the case database\n"
    "Exit status: 0 written, 1 refused or failed, 2 usage.\n";

static void progress_line(double f, const char *what, void *user)
{
    (void)user;
    if (isatty(2))
        fprintf(stderr, "\rexport: %3.0f %% (%s)   ", f * 100.0, what);
}

int covct_cmd_export(int argc, char **argv)
{
    const char *project = NULL, *out = NULL, *data = NULL, *as = NULL;
    covct_export_opts o = { 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "--project") && has) {
            project = argv[++i];
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has) {
            out = argv[++i];
        } else if (!strcmp(a, "--data") && has) {
            data = argv[++i];
        } else if (!strcmp(a, "--as") && has) {
            as = argv[++i];
        } else if (!strcmp(a, "--key") && has) {
            o.key_path = argv[++i];
        } else if (!strcmp(a, "--seed") && has) {
            o.seed = argv[++i];
        } else if (!strcmp(a, "--today") && has) {
            o.today = argv[++i]; /* undocumented: tests judge approvals */
        } else if (!strcmp(a, "--dicom")) {
            o.dicom = true;
        } else if (!strcmp(a, "--split") && has) {
            const char *p = argv[++i];
            bool ok = true;
            for (int k = 0; k < 3 && ok; k++) {
                char *end;
                unsigned long v = strtoul(p, &end, 10);
                ok = end != p && v <= 100 && *end == (k < 2 ? ',' : '\0');
                o.split[k] = (unsigned)v;
                p = end + 1;
            }
            if (!ok || o.split[0] + o.split[1] + o.split[2] != 100) {
                covct_cli_error("--split takes three percentages that add "
                                "up to 100, e.g. 70,15,15 (not '%s')",
                                argv[i]);
                return COVCT_EXIT_USAGE;
            }
        } else {
            covct_cli_error("export: unexpected argument '%s' (see covct "
                            "export --help)",
                            a);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!project || !out || !data) {
        covct_cli_error("export: --project NAME, -o OUTDIR and --data DIR "
                        "are required");
        return COVCT_EXIT_USAGE;
    }
    covct_site *site = NULL;
    covct_error err = { 0 };
    covct_export_result res;
    if (!covct_cli_open_existing_site("export", data, &site))
        return COVCT_EXIT_FAIL;
    if ((as && covct_site_act_as(site, as, &err)) ||
        covct_export(site, project, out, &o, &res, progress_line, NULL,
                     &err)) {
        if (isatty(2))
            fputc('\n', stderr);
        covct_cli_error("%s", err.msg);
        covct_site_close(site);
        return COVCT_EXIT_FAIL;
    }
    if (isatty(2))
        fputc('\n', stderr);
    printf("export of project %s written to %s:\n"
           "  %zu patients, %zu CT volumes, %zu masks, %zu files\n"
           "  left out: %zu withdrew consent, %zu without consent\n"
           "  manifest.sha256: %s\n",
           project, out, res.patients, res.series, res.masks, res.files,
           res.withdrawn, res.no_consent, res.manifest_sha256);
    covct_site_close(site);
    return COVCT_EXIT_OK;
}
