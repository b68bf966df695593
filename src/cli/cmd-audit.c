/* covct audit: check and read the site's audit log
 * (docs/internals/audit.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli-data.h"
#include "covct/site.h"

static const char help[] =
    "Usage: covct audit verify --data DIR\n"
    "       covct audit show --data DIR [--last N]\n"
    "\n"
    "Every read of identifiable data, label change, de-identification,\n"
    "import and export at a site is written to its audit log, in the case\n"
    "database of the data folder DIR.  Each entry carries the hash of the\n"
    "one before it and a signature made with the site key\n"
    "(DIR/keys/site-audit.key), so that an entry changed, deleted, moved\n"
    "or added directly in the database is found.  Entries of 'covct deid'\n"
    "hold the folder and file names it was given, which may contain\n"
    "patient names: the log stays on site.\n"
    "\n"
    "  verify   check the whole log: prints 'audit log intact: N entries'\n"
    "           and exits 0, or names the first entry that is wrong and\n"
    "           exits 1.  Needs only DIR/keys/site-audit.pub.\n"
    "  show     print the entries (all, or the newest N), one per line:\n"
    "           number, time (UTC), who, role, what, on what, details.\n"
    "\n"
    "Options:\n"
    "  --data DIR   the site's data folder (as given to 'covct serve'); a\n"
    "               folder without a case database is refused\n"
    "  --last N     show only the newest N entries\n"
    "\n"
    "The database is DIR/covct.db, or the PostgreSQL database named by the\n"
    "environment variable COVCT_DB (e.g. postgresql://covct@dbhost/covct).\n"
    "Exit status: 0 intact (or shown), 1 tampered or could not be read,\n"
    "2 usage.\n";

static int verify(covct_site *site)
{
    covct_error err = { 0 };
    covct_audit_result res;
    if (covct_site_require(site, "audit.read", "audit-log", &err) ||
        covct_audit_verify(site, &res, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    if (res.bad_seq) {
        printf("audit log TAMPERED: first bad entry %" PRId64 ": %s\n"
               "(%" PRId64 " entries before it verified)\n",
               res.bad_seq, res.problem, res.entries);
        return COVCT_EXIT_FAIL;
    }
    printf("audit log intact: %" PRId64 " entries, chain and signatures "
           "verified (%s)\n",
           res.entries, covct_db_describe(covct_site_db(site)));
    /* checking is itself worth a line in the log */
    char detail[96];
    snprintf(detail, sizeof detail, "{\"entries\":%" PRId64 "}", res.entries);
    if (covct_audit(site, "audit.verify", "audit-log", detail, &err))
        fprintf(stderr,
                "covct: note: the check itself was not recorded: %s\n",
                err.msg);
    return COVCT_EXIT_OK;
}

static int show(covct_site *site, long last)
{
    covct_error err = { 0 };
    covct_db_result *r = NULL;
    covct_db *db = covct_site_db(site);
    if (covct_site_require(site, "audit.read", "audit-log", &err) ||
        covct_db_query(db,
                       "SELECT seq, at, actor, role, action, object, detail"
                       " FROM audit_log WHERE seq > (SELECT COALESCE(MAX(seq),"
                       " 0) FROM audit_log) - $1 ORDER BY seq",
                       (covct_db_param[]){ COVCT_DB_INT(
                           last > 0 ? last : INT64_MAX / 2) },
                       1, &r, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    for (size_t i = 0; i < covct_db_rows(r); i++)
        printf("%s  %s  %s  %s  %s  %s  %s\n", covct_db_get(r, i, 0),
               covct_db_get(r, i, 1), covct_db_get(r, i, 2),
               covct_db_get(r, i, 3), covct_db_get(r, i, 4),
               covct_db_get(r, i, 5), covct_db_get(r, i, 6));
    covct_db_result_free(r);
    return COVCT_EXIT_OK;
}

int covct_cmd_audit(int argc, char **argv)
{
    const char *sub = NULL, *data = NULL;
    long last = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(a, "--last") && i + 1 < argc) {
            char *end;
            last = strtol(argv[++i], &end, 10);
            if (*end || last <= 0) {
                covct_cli_error("--last needs a positive number, not '%s'",
                                argv[i]);
                return COVCT_EXIT_USAGE;
            }
        } else if (a[0] != '-' && !sub) {
            sub = a;
        } else {
            covct_cli_error("audit: unexpected argument '%s' (see covct "
                            "audit --help)",
                            a);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!sub || (strcmp(sub, "verify") && strcmp(sub, "show"))) {
        covct_cli_error("audit: say 'verify' or 'show' (see covct audit "
                        "--help)");
        return COVCT_EXIT_USAGE;
    }
    if (!data) {
        covct_cli_error("audit: --data DIR is required (the site's data "
                        "folder)");
        return COVCT_EXIT_USAGE;
    }
    covct_site *site = NULL;
    if (!covct_cli_open_existing_site("audit", data, &site))
        return COVCT_EXIT_FAIL;
    int code = !strcmp(sub, "verify") ? verify(site) : show(site, last);
    covct_site_close(site);
    return code;
}
