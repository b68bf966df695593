/* Opening a site's data folder from a command that must not create one. */
#ifndef COVCT_CLI_DATA_H
#define COVCT_CLI_DATA_H

#include "covct/site.h"

/* Open the data folder DIR for command CMD ("export", "project", ...) only
 * if it already is one: the directory exists and, unless COVCT_DB names a
 * PostgreSQL database, holds covct.db.  Otherwise print what is wrong and
 * where to stderr and return false; covct_site_open would create an empty
 * case database in any folder, and a mistyped --data would then show an
 * empty project list, or refuse an export for reasons that do not apply,
 * instead of saying that DIR is the wrong folder.  On success *site is
 * open (the caller closes it). */
bool covct_cli_open_existing_site(const char *cmd, const char *dir,
                                  covct_site **site);

#endif
