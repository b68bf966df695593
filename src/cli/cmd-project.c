/* covct project and covct consent: research projects, their ethics
 * approvals and data use agreements, included patients, and consent
 * (docs/internals/casedb.md, "Projects, approvals, consent"). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli-data.h"
#include "covct/site.h"

static const char help[] =
    "Usage: covct project ACTION NAME [OPTIONS] --data DIR\n"
    "\n"
    "Research projects decide who may take which data out of the site, for\n"
    "what.  An export ('covct export') needs an ethics approval in force\n"
    "and a data use agreement in force (signed, not expired), contains\n"
    "only the kinds of data the approval allows, and only the project's\n"
    "patients who consented (or whose consent the committee waived).  The\n"
    "approval's purposes are recorded and printed in the export's\n"
    "datasheet, not checked.  Everything done here is written to the\n"
    "site's audit log.\n"
    "\n"
    "Actions:\n"
    "  create NAME [--title T] [--purpose P] [--investigator I]\n"
    "        a new project; NAME: letters, digits, '-', '_', '.'\n"
    "  approve NAME --committee C --number N --granted YYYY-MM-DD\n"
    "        --expires YYYY-MM-DD --purposes LIST --scope LIST\n"
    "        record an ethics approval.  purposes: research,\n"
    "        algorithm-development, product-development, education,\n"
    "        quality-assurance; scope: images, labels, clinical (comma lists)\n"
    "  revoke NAME --number N      the approval stops counting at once\n"
    "  agreement NAME --party P --signed YYYY-MM-DD [--expires YYYY-MM-DD]\n"
    "        [--terms TEXT]        record a data use agreement with the\n"
    "        receiver P; exports need one in force (no --expires: it does\n"
    "        not expire); record the renewal when one expires\n"
    "  add NAME --patient ID [--patient ID...] | --all-patients\n"
    "        include patients (the site's patient IDs) in the project\n"
    "  show NAME                   approvals, agreements, patients, consent\n"
    "  list                        all projects\n"
    "\n"
    "Patients' consent: covct consent (see covct consent --help).\n"
    "\n"
    "Common options:\n"
    "  --data DIR   the site's data folder (made by covct import or covct\n"
    "               serve; a folder without a case database is refused)\n"
    "  --as USER    act as a user of the case database (their role decides\n"
    "               what is allowed); default: the system account, as\n"
    "               administrator\n"
    "Exit status: 0 done, 1 refused or failed, 2 usage.\n";

static const char consent_help[] =
    "Usage: covct consent PATIENT_ID --project NAME --given|--withdrawn|--waived\n"
    "       [--reference TEXT] --data DIR [--as USER]\n"
    "\n"
    "Record a patient's consent for a research project.  PATIENT_ID is the\n"
    "site's patient ID (as in the images' Patient ID); the patient must have\n"
    "been imported, and the project created ('covct project create').\n"
    "\n"
    "  --given        the patient signed the consent form\n"
    "  --withdrawn    the patient withdrew consent: left out of every later\n"
    "                 export at once\n"
    "  --waived       the ethics committee waived consent (e.g. for\n"
    "                 retrospective data)\n"
    "  --reference T  the signed form's reference, the letter, or the\n"
    "                 committee decision\n"
    "  --project NAME the research project\n"
    "  --data DIR     the site's data folder (made by covct import or covct\n"
    "                 serve; a folder without a case database is refused)\n"
    "  --as USER      act as a user of the case database (their role decides\n"
    "                 what is allowed); default: the system account, as\n"
    "                 administrator\n"
    "\n"
    "The newest record counts; no record means no consent.  Every record is\n"
    "written to the site's audit log.\n"
    "Exit status: 0 recorded, 1 refused or failed, 2 usage.\n";

#define MAX_PATIENTS 4096

typedef struct opts {
    const char *action, *name, *data, *as;
    const char *title, *purpose, *investigator;
    const char *committee, *number, *granted, *expires, *purposes, *scope;
    const char *party, *signed_on, *terms, *reference, *status, *project;
    const char *patients[MAX_PATIENTS];
    size_t n_patients;
    bool all_patients;
} opts;

/* "--key VALUE": the value, or NULL (and a message) when missing. */
static bool take(int argc, char **argv, int *i, const char *key,
                 const char **dst)
{
    if (strcmp(argv[*i], key))
        return false;
    if (*i + 1 >= argc) {
        covct_cli_error("%s needs a value", key);
        *dst = NULL;
        return true;
    }
    *dst = argv[++*i];
    return true;
}

static int parse(int argc, char **argv, opts *o, bool consent)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *pat = NULL;
        if (covct_cli_is_help(a)) {
            fputs(consent ? consent_help : help, stdout);
            return -1;
        }
        if (take(argc, argv, &i, "--data", &o->data) ||
            take(argc, argv, &i, "--as", &o->as) ||
            take(argc, argv, &i, "--title", &o->title) ||
            take(argc, argv, &i, "--purpose", &o->purpose) ||
            take(argc, argv, &i, "--investigator", &o->investigator) ||
            take(argc, argv, &i, "--committee", &o->committee) ||
            take(argc, argv, &i, "--number", &o->number) ||
            take(argc, argv, &i, "--granted", &o->granted) ||
            take(argc, argv, &i, "--expires", &o->expires) ||
            take(argc, argv, &i, "--purposes", &o->purposes) ||
            take(argc, argv, &i, "--scope", &o->scope) ||
            take(argc, argv, &i, "--party", &o->party) ||
            take(argc, argv, &i, "--signed", &o->signed_on) ||
            take(argc, argv, &i, "--terms", &o->terms) ||
            take(argc, argv, &i, "--reference", &o->reference) ||
            take(argc, argv, &i, "--project", &o->project))
            continue;
        if (take(argc, argv, &i, "--patient", &pat)) {
            if (!pat)
                return COVCT_EXIT_USAGE;
            if (o->n_patients == MAX_PATIENTS) {
                covct_cli_error("more than %d --patient options; use "
                                "--all-patients",
                                MAX_PATIENTS);
                return COVCT_EXIT_USAGE;
            }
            o->patients[o->n_patients++] = pat;
        } else if (!strcmp(a, "--all-patients")) {
            o->all_patients = true;
        } else if (consent && (!strcmp(a, "--given") ||
                               !strcmp(a, "--withdrawn") ||
                               !strcmp(a, "--waived"))) {
            o->status = a + 2;
        } else if (a[0] != '-' && !consent && !o->action) {
            o->action = a;
        } else if (a[0] != '-' && !o->name) {
            o->name = a;
        } else {
            covct_cli_error("unexpected argument '%s' (see covct %s --help)",
                            a, consent ? "consent" : "project");
            return COVCT_EXIT_USAGE;
        }
    }
    if (!o->data) {
        covct_cli_error("--data DIR is required (the site's data folder)");
        return COVCT_EXIT_USAGE;
    }
    return 0;
}

static int fail(const covct_error *err)
{
    covct_cli_error("%s", err->msg);
    return COVCT_EXIT_FAIL;
}

static int show(covct_site *site, int64_t id, const char *name)
{
    covct_db *db = covct_site_db(site);
    covct_db_result *r = NULL;
    covct_error err = { 0 };
    char why[256], scope[128];
    int64_t in_force = 0;
    if (covct_site_require(site, "read.deidentified", "projects", &err) ||
        covct_project_approval_in_force(site, id, NULL, &in_force, scope, why,
                                        &err))
        return fail(&err);
    printf("project %s: %s\n", name,
           in_force ? "approval in force" : why);
    if (!covct_db_query(db,
                        "SELECT number, committee, granted_on, expires_on,"
                        " purposes, data_scope, revoked_at FROM approvals"
                        " WHERE project_id = $1 ORDER BY id",
                        (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &r,
                        &err)) {
        for (size_t i = 0; i < covct_db_rows(r); i++)
            printf("  approval %s (%s): %s to %s, purposes %s, scope %s%s%s\n",
                   covct_db_get(r, i, 0), covct_db_get(r, i, 1),
                   covct_db_get(r, i, 2), covct_db_get(r, i, 3),
                   covct_db_get(r, i, 4), covct_db_get(r, i, 5),
                   covct_db_get(r, i, 6) ? ", revoked " : "",
                   covct_db_get(r, i, 6) ? covct_db_get(r, i, 6) : "");
        covct_db_result_free(r);
    }
    if (!covct_db_query(db,
                        "SELECT party, signed_on, expires_on FROM agreements"
                        " WHERE project_id = $1 ORDER BY id",
                        (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &r,
                        &err)) {
        char today[11];
        covct_today(today);
        for (size_t i = 0; i < covct_db_rows(r); i++) {
            const char *from = covct_db_get(r, i, 1),
                       *to = covct_db_get(r, i, 2);
            int w = covct_date_window(today, from, to);
            printf("  agreement with %s, signed %s%s%s%s\n",
                   covct_db_get(r, i, 0), from, to ? ", expires " : "",
                   to ? to : "",
                   w < 0   ? " (not yet in force)"
                   : w > 0 ? " (EXPIRED: exports are refused under it)"
                           : "");
        }
        covct_db_result_free(r);
    }
    /* patients by consent status, counted (no identities on screen) */
    if (!covct_db_query(
            db,
            "SELECT COALESCE((SELECT c.status FROM consents c WHERE"
            " c.patient_id = pp.patient_id AND c.project_id = pp.project_id"
            " ORDER BY c.id DESC LIMIT 1), 'none') AS s, COUNT(*)"
            " FROM project_patients pp WHERE pp.project_id = $1"
            " GROUP BY s ORDER BY s",
            (covct_db_param[]){ COVCT_DB_INT(id) }, 1, &r, &err)) {
        for (size_t i = 0; i < covct_db_rows(r); i++)
            printf("  patients with consent %s: %s\n", covct_db_get(r, i, 0),
                   covct_db_get(r, i, 1));
        covct_db_result_free(r);
    }
    if (err.rc)
        return fail(&err);
    return COVCT_EXIT_OK;
}

static int add_patients(covct_site *site, int64_t id, const opts *o)
{
    covct_error err = { 0 };
    size_t added = 0;
    if (o->all_patients) {
        covct_db_result *r = NULL;
        if (covct_db_query(covct_site_db(site),
                           "SELECT site_patient_id FROM patients ORDER BY id",
                           NULL, 0, &r, &err))
            return fail(&err);
        for (size_t i = 0; i < covct_db_rows(r) && !err.rc; i++)
            if (!covct_project_add_patient(site, id, covct_db_get(r, i, 0),
                                           &err))
                added++;
        covct_db_result_free(r);
    }
    for (size_t i = 0; i < o->n_patients && !err.rc; i++)
        if (!covct_project_add_patient(site, id, o->patients[i], &err))
            added++;
    if (err.rc)
        return fail(&err);
    if (!added) {
        covct_cli_error("say which patients: --patient ID or "
                        "--all-patients");
        return COVCT_EXIT_USAGE;
    }
    printf("project %s: %zu patients included\n", o->name, added);
    return COVCT_EXIT_OK;
}

static int run(covct_site *site, const opts *o)
{
    covct_error err = { 0 };
    int64_t id = 0, aid = 0;
    if (!strcmp(o->action, "list")) {
        covct_db_result *r = NULL;
        if (covct_db_query(covct_site_db(site),
                           "SELECT name, title FROM projects ORDER BY name",
                           NULL, 0, &r, &err))
            return fail(&err);
        for (size_t i = 0; i < covct_db_rows(r); i++)
            printf("%s\t%s\n", covct_db_get(r, i, 0),
                   covct_db_get(r, i, 1) ? covct_db_get(r, i, 1) : "");
        covct_db_result_free(r);
        return COVCT_EXIT_OK;
    }
    if (!o->name) {
        covct_cli_error("project %s: which project? (NAME)", o->action);
        return COVCT_EXIT_USAGE;
    }
    if (!strcmp(o->action, "create")) {
        if (covct_project_create(site, o->name, o->title, o->purpose,
                                 o->investigator, &id, &err))
            return fail(&err);
        printf("project %s created\n", o->name);
        return COVCT_EXIT_OK;
    }
    if (covct_project_find(site, o->name, &id, &err))
        return fail(&err);
    if (!strcmp(o->action, "approve")) {
        covct_approval a = { o->committee, o->number,   o->granted,
                             o->expires,   o->purposes, o->scope };
        if (covct_project_approve(site, id, &a, &aid, &err))
            return fail(&err);
        printf("project %s: approval %s recorded (%s to %s)\n", o->name,
               o->number, o->granted, o->expires);
    } else if (!strcmp(o->action, "revoke")) {
        if (!o->number) {
            covct_cli_error("revoke: --number N names the approval");
            return COVCT_EXIT_USAGE;
        }
        if (covct_project_revoke(site, id, o->number, &err))
            return fail(&err);
        printf("project %s: approval %s revoked\n", o->name, o->number);
    } else if (!strcmp(o->action, "agreement")) {
        if (covct_project_agreement(site, id, o->party, o->signed_on,
                                    o->expires, o->terms, &err))
            return fail(&err);
        printf("project %s: data use agreement with %s recorded\n", o->name,
               o->party);
    } else if (!strcmp(o->action, "add")) {
        return add_patients(site, id, o);
    } else if (!strcmp(o->action, "show")) {
        return show(site, id, o->name);
    } else {
        covct_cli_error("unknown action '%s' (see covct project --help)",
                        o->action);
        return COVCT_EXIT_USAGE;
    }
    return COVCT_EXIT_OK;
}

static int with_site(const opts *o, bool consent)
{
    covct_site *site = NULL;
    covct_error err = { 0 };
    if (!covct_cli_open_existing_site(consent ? "consent" : "project",
                                      o->data, &site))
        return COVCT_EXIT_FAIL;
    if (o->as && covct_site_act_as(site, o->as, &err)) {
        covct_site_close(site);
        return fail(&err);
    }
    int code;
    if (!consent) {
        code = run(site, o);
    } else {
        int64_t id = 0;
        if (covct_project_find(site, o->project, &id, &err) ||
            covct_consent_record(site, o->name, id, o->status, o->reference,
                                 &err)) {
            code = fail(&err);
        } else {
            printf("consent of patient %s for project %s: %s\n", o->name,
                   o->project, o->status);
            code = COVCT_EXIT_OK;
        }
    }
    covct_site_close(site);
    return code;
}

int covct_cmd_project(int argc, char **argv)
{
    opts o;
    int rc = parse(argc, argv, &o, false);
    if (rc)
        return rc < 0 ? COVCT_EXIT_OK : rc;
    if (!o.action) {
        covct_cli_error("project: say what to do (create, approve, revoke, "
                        "agreement, add, show, list; see --help)");
        return COVCT_EXIT_USAGE;
    }
    return with_site(&o, false);
}

int covct_cmd_consent(int argc, char **argv)
{
    opts o;
    int rc = parse(argc, argv, &o, true);
    if (rc)
        return rc < 0 ? COVCT_EXIT_OK : rc;
    if (!o.name || !o.project || !o.status) {
        covct_cli_error("consent: PATIENT_ID, --project NAME and one of "
                        "--given, --withdrawn, --waived are required");
        return COVCT_EXIT_USAGE;
    }
    return with_site(&o, true);
}
