/* covct agreement: how far the two readers of the case database agree. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli-data.h"
#include "cli/cli.h"
#include "covct/site.h"

static const char help[] =
    "Usage: covct agreement --data DIR [--series SERIES_UID]\n"
    "\n"
    "Agreement between the first and the second reader of the case\n"
    "database (their newest versions):\n"
    "  masks     per series read by both: Dice of their lesion masks for\n"
    "            any lesion, ground glass and consolidation, 2|A and B| /\n"
    "            (|A| + |B|); '-' where neither marked that class\n"
    "  clinical  over cases both labelled: Cohen's kappa (unweighted) of\n"
    "            the diagnosis and of the RSNA category, and the mean\n"
    "            absolute difference of their CT severity scores (0-25)\n"
    "Exit status: 0 shown, 1 failed, 2 usage.\n";

static void cell(double v)
{
    if (isnan(v))
        printf("  %8s", "-");
    else
        printf("  %8.4f", v);
}

int covct_cmd_agreement(int argc, char **argv)
{
    const char *data = NULL, *series = NULL;
    for (int i = 1; i < argc; i++) {
        if (covct_cli_is_help(argv[i])) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(argv[i], "--series") && i + 1 < argc) {
            series = argv[++i];
        } else {
            covct_cli_error("agreement: unexpected argument '%s' (see covct "
                            "agreement --help)",
                            argv[i]);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!data) {
        covct_cli_error("agreement: --data DIR is required");
        return COVCT_EXIT_USAGE;
    }
    covct_site *site = NULL;
    covct_error err = { 0 };
    covct_agreement a;
    int64_t sid = 0;
    if (!covct_cli_open_existing_site("agreement", data, &site))
        return COVCT_EXIT_FAIL;
    if ((series && covct_db_query_int(covct_site_db(site),
                                      "SELECT id FROM series WHERE"
                                      " series_uid = $1",
                                      (covct_db_param[]){
                                          COVCT_DB_TEXT(series) },
                                      1, &sid, &err)) ||
        covct_agreement_compute(site, sid, &a, &err)) {
        covct_cli_error("%s", err.rc == COVCT_ERR_NOT_FOUND && series
                                  ? "no such series in the case database"
                                  : err.msg);
        covct_site_close(site);
        return COVCT_EXIT_FAIL;
    }
    printf("lesion masks read by both readers: %zu series\n", a.n_masks);
    if (a.n_masks)
        printf("  series      any lesion  ground glass  consolidation\n");
    for (size_t i = 0; i < a.n_masks; i++) {
        printf("  #%-8" PRId64, a.masks[i].series_id);
        cell(a.masks[i].dice[0]);
        cell(a.masks[i].dice[1]);
        cell(a.masks[i].dice[2]);
        putchar('\n');
    }
    printf("clinical labels by both readers: %zu cases\n", a.n_cases);
    printf("  kappa, diagnosis:");
    cell(a.kappa_diagnosis);
    printf("\n  kappa, RSNA category:");
    cell(a.kappa_category);
    printf("\n  severity score, mean absolute difference:");
    cell(a.severity_mad);
    putchar('\n');
    covct_agreement_free(&a);
    covct_site_close(site);
    return COVCT_EXIT_OK;
}
