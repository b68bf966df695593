/* Roles and what each may do: the one permission table of covct
 * (docs/internals/casedb.md, "Roles", shows it; test_audit checks that
 * the two agree).  The web service (issue 7) and the command
 * line ask covct_role_may(); nothing else decides access. */
#include <string.h>

#include "covct/site.h"

const char *const covct_roles[] = { "administrator",  "radiologist",
                                    "annotator",      "researcher",
                                    "ethics-officer", "site-it" };
const size_t covct_role_count = sizeof covct_roles / sizeof covct_roles[0];

enum {
    ADM = 1 << 0, /* administrator */
    RAD = 1 << 1, /* radiologist / reader */
    ANN = 1 << 2, /* annotator */
    RES = 1 << 3, /* researcher */
    ETH = 1 << 4, /* ethics officer */
    SIT = 1 << 5  /* site IT */
};

static const struct {
    const char *action;
    unsigned roles;
    const char *what; /* for docs and messages */
} permissions[] = {
    /* identifiable data: names, IDs, dates as acquired */
    { "read.identifiable", ADM | RAD, "see identifiable patient data" },
    { "read.deidentified", ADM | RAD | ANN | RES | ETH,
      "see de-identified images, labels and reports" },
    { "study.analyze", ADM | RAD | SIT, "start an analysis" },
    { "label.write", ADM | RAD | ANN, "save a label version as a reader" },
    { "label.adjudicate", ADM | RAD, "save the adjudicated final version" },
    { "case.clinical", ADM | RAD, "record clinical labels of a case" },
    { "import", ADM | SIT, "import DICOM, NIfTI and CSV data" },
    { "deid", ADM | SIT, "de-identify files" },
    { "project.manage", ADM | ETH, "create research projects" },
    { "approval.record", ADM | ETH, "record ethics approvals and DUAs" },
    { "consent.record", ADM | ETH | RAD, "record or withdraw consent" },
    { "export.request", ADM | RES, "ask for a research export" },
    { "export.run", ADM | SIT, "write a research export" },
    { "audit.read", ADM | ETH | SIT, "read and verify the audit log" },
    { "user.manage", ADM, "add users and change roles" },
};

static int role_bit(const char *role)
{
    for (size_t i = 0; i < covct_role_count; i++)
        if (role && !strcmp(role, covct_roles[i]))
            return 1 << i;
    return 0;
}

bool covct_role_valid(const char *role) { return role_bit(role) != 0; }

bool covct_role_may(const char *role, const char *action)
{
    int bit = role_bit(role);
    for (size_t i = 0; bit && i < sizeof permissions / sizeof *permissions;
         i++)
        if (!strcmp(permissions[i].action, action))
            return (permissions[i].roles & (unsigned)bit) != 0;
    return false;
}
