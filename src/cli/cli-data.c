/* Opening an existing data folder (cli-data.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/cli-data.h"

bool covct_cli_open_existing_site(const char *cmd, const char *dir,
                                  covct_site **site)
{
    *site = NULL;
    struct stat st;
    if (stat(dir, &st) != 0) {
        covct_cli_error("%s: the data folder %s does not exist (%s); give "
                        "the folder that 'covct import' or 'covct serve' "
                        "made",
                        cmd, dir, strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        covct_cli_error("%s: %s is a file, not a data folder", cmd, dir);
        return false;
    }
    const char *env = getenv("COVCT_DB");
    if (!env || !*env) {
        char db[4200];
        snprintf(db, sizeof db, "%s/covct.db", dir);
        if (stat(db, &st) != 0) {
            covct_cli_error("%s: %s is not a covct data folder: it has no "
                            "case database (%s missing). Give the folder "
                            "that 'covct import' or 'covct serve' made; if "
                            "the case database is on PostgreSQL, set "
                            "COVCT_DB",
                            cmd, dir, db);
            return false;
        }
    }
    covct_error err = { 0 };
    if (covct_site_open(dir, site, &err)) {
        covct_cli_error("%s: %s", cmd, err.msg);
        covct_site_close(*site);
        *site = NULL;
        return false;
    }
    return true;
}
