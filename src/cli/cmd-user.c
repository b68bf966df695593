/* covct user: the people of the case database and their roles. */
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/cli.h"
#include "covct/site.h"

static const char help[] =
    "Usage: covct user add NAME --role ROLE [--no-password] --data DIR\n"
    "       covct user passwd NAME --data DIR      (new password on stdin)\n"
    "       covct user disable|enable NAME --data DIR\n"
    "       covct user list --data DIR\n"
    "\n"
    "Users log in to the web pages and are named as readers of labels.\n"
    "Their role decides what they may do:\n"
    "  administrator   everything\n"
    "  radiologist     read identifiable data, label, adjudicate, record\n"
    "                  clinical labels and consent\n"
    "  annotator       label de-identified images\n"
    "  researcher      see de-identified data, ask for exports\n"
    "  ethics-officer  projects, approvals, data use agreements, consent,\n"
    "                  the audit log\n"
    "  site-it         import, de-identify, run exports, the audit log\n"
    "(the full table: docs/internals/casedb.md, src/govern/roles.c).\n"
    "\n"
    "The password is read from standard input: typed at a prompt (not\n"
    "shown) on a terminal, else the first line (e.g. from a script:\n"
    "  echo 'a long password' | covct user add alice --role radiologist ...).\n"
    "At least 8 characters; stored only as an Argon2id hash.  --no-password\n"
    "adds a user who cannot log in yet (a reader named in imported labels,\n"
    "or one who gets a password later with 'passwd').  Every change is in\n"
    "the site's audit log.\n"
    "--data DIR is the site's data folder; 'user add' makes it (and its\n"
    "case database) when it does not exist yet, for a new site's first\n"
    "user: check the path.\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage.\n";

/* The first line of standard input, without its line end; on a terminal
 * a prompt, with echo off. */
static bool read_password(char *buf, size_t cap)
{
    struct termios old, quiet;
    bool tty = isatty(0) && tcgetattr(0, &old) == 0;
    if (tty) {
        fputs("Password: ", stderr);
        quiet = old;
        quiet.c_lflag &= (tcflag_t)~ECHO;
        tcsetattr(0, TCSAFLUSH, &quiet);
    }
    bool got = fgets(buf, (int)cap, stdin) != NULL;
    if (tty) {
        tcsetattr(0, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!got)
        return false;
    size_t n = strlen(buf);
    if (n && buf[n - 1] != '\n' && !feof(stdin)) {
        covct_cli_error("the password is longer than %zu characters",
                        cap - 2);
        return false;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    return true;
}

int covct_cmd_user(int argc, char **argv)
{
    const char *action = NULL, *name = NULL, *role = NULL, *data = NULL;
    bool pw_stdin = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "--role") && i + 1 < argc) {
            role = argv[++i];
        } else if (!strcmp(a, "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(a, "--password-stdin")) {
            pw_stdin = true; /* the default; kept for scripts */
        } else if (!strcmp(a, "--no-password")) {
            pw_stdin = false;
        } else if (a[0] != '-' && !action) {
            action = a;
        } else if (a[0] != '-' && !name) {
            name = a;
        } else {
            covct_cli_error("user: unexpected argument '%s' (see covct user "
                            "--help)",
                            a);
            return COVCT_EXIT_USAGE;
        }
    }
    if (!action || !data || (strcmp(action, "list") && !name)) {
        covct_cli_error("user: ACTION, NAME and --data DIR are needed (see "
                        "covct user --help)");
        return COVCT_EXIT_USAGE;
    }
    covct_site *site = NULL;
    covct_error err = { 0 };
    if (covct_site_open(data, &site, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    char pw[1100];
    int code = COVCT_EXIT_OK;
    covct_rc rc = COVCT_OK;
    if (!strcmp(action, "add")) {
        if (!role) {
            covct_cli_error("user add: --role ROLE is needed");
            code = COVCT_EXIT_USAGE;
        } else if (!covct_role_valid(role)) {
            /* said before asking for a password */
            rc = covct_user_add(site, name, role, NULL, &err);
        } else if (pw_stdin && !read_password(pw, sizeof pw)) {
            covct_cli_error("user add: no password on standard input");
            code = COVCT_EXIT_FAIL;
        } else if (!(rc = covct_user_add(site, name, role,
                                         pw_stdin ? pw : NULL, &err))) {
            printf("user %s added as %s\n", name, role);
        }
    } else if (!strcmp(action, "passwd")) {
        if (!read_password(pw, sizeof pw)) {
            covct_cli_error("user passwd: no password on standard input");
            code = COVCT_EXIT_FAIL;
        } else if (!(rc = covct_user_set_password(site, name, pw, &err))) {
            printf("password of %s changed\n", name);
        }
    } else if (!strcmp(action, "disable") || !strcmp(action, "enable")) {
        bool off = !strcmp(action, "disable");
        if (!(rc = covct_user_set_disabled(site, name, off, &err)))
            printf("user %s %s\n", name, off ? "disabled" : "enabled");
    } else if (!strcmp(action, "list")) {
        covct_db_result *r = NULL;
        if (!(rc = covct_site_require(site, "user.manage", "users", &err)) &&
            !(rc = covct_db_query(covct_site_db(site),
                                  "SELECT name, role, disabled, CASE WHEN"
                                  " password_hash IS NULL THEN 0 ELSE 1 END"
                                  " FROM users ORDER BY name",
                                  NULL, 0, &r, &err))) {
            for (size_t i = 0; i < covct_db_rows(r); i++)
                printf("%s\t%s%s%s\n", covct_db_get(r, i, 0),
                       covct_db_get(r, i, 1),
                       covct_db_get_int(r, i, 2, 0) ? "\tdisabled" : "",
                       covct_db_get_int(r, i, 3, 0) ? "" : "\tno password");
            covct_db_result_free(r);
        }
    } else {
        covct_cli_error("user: unknown action '%s' (add, passwd, disable, "
                        "enable, list)",
                        action);
        code = COVCT_EXIT_USAGE;
    }
    sodium_memzero(pw, sizeof pw);
    if (rc) {
        covct_cli_error("%s", err.msg);
        code = COVCT_EXIT_FAIL;
    }
    covct_site_close(site);
    return code;
}
