/* covct token: API tokens for scripts and other systems. */
#include <stdio.h>
#include <string.h>

#include "cli/cli-data.h"
#include "cli/cli.h"
#include "covct/site.h"

static const char help[] =
    "Usage: covct token create NAME [--label TEXT] --data DIR\n"
    "       covct token revoke NAME --data DIR\n"
    "\n"
    "A token lets a script or another system use the web service's REST\n"
    "API and DICOMweb as the user NAME, with that user's role:\n"
    "  curl -H \"Authorization: Bearer TOKEN\" https://HOST:PORT/dicom-web/studies\n"
    "'create' prints a new token once: keep it like a password (the site\n"
    "stores only its SHA-256).  'revoke' cancels every token of the user.\n"
    "Both are written to the audit log.  Exit status: 0 done, 1 failed,\n"
    "2 usage.\n";

int covct_cmd_token(int argc, char **argv)
{
    const char *action = NULL, *name = NULL, *data = NULL, *label = NULL;
    for (int i = 1; i < argc; i++) {
        if (covct_cli_is_help(argv[i])) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(argv[i], "--label") && i + 1 < argc) {
            label = argv[++i];
        } else if (argv[i][0] != '-' && !action) {
            action = argv[i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            covct_cli_error("token: unexpected argument '%s' (see covct "
                            "token --help)",
                            argv[i]);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!action || !name || !data ||
        (strcmp(action, "create") && strcmp(action, "revoke"))) {
        covct_cli_error("token: create|revoke NAME --data DIR (see covct "
                        "token --help)");
        return COVCT_EXIT_USAGE;
    }
    covct_site *site = NULL;
    covct_error err = { 0 };
    char token[80];
    int code = COVCT_EXIT_OK;
    if (!covct_cli_open_existing_site("token", data, &site))
        return COVCT_EXIT_FAIL;
    if ((!strcmp(action, "create")
             ? covct_token_create(site, name, label, token, &err)
             : covct_token_revoke(site, name, &err))) {
        covct_cli_error("%s", err.msg);
        code = COVCT_EXIT_FAIL;
    } else if (!strcmp(action, "create")) {
        printf("%s\n", token);
        memset(token, 0, sizeof token);
    } else {
        printf("tokens of %s revoked\n", name);
    }
    covct_site_close(site);
    return code;
}
