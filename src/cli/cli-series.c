/*
 * Choosing a series from a folder without --series (covct analyze, covct
 * volume).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

bool covct_cli_one_patient(const char *cmd, const char *in,
                           const covct_series_set *set,
                           const covct_series *chosen)
{
    covct_series_summary sm;
    covct_series_get_summary(chosen, &sm);
    size_t ns = covct_series_set_count(set), k_chosen = 0, others = 0;
    char list[1024] = "";
    size_t len = 0;
    for (size_t k = 0; k < ns; k++) {
        const covct_series *s = covct_series_set_at(set, k);
        if (s == chosen) {
            k_chosen = k + 1;
            continue;
        }
        covct_series_summary o;
        covct_series_get_summary(s, &o);
        if (strcmp(o.patient_id, sm.patient_id) ||
            strcmp(o.patient_name, sm.patient_name)) {
            others++;
            if (len < sizeof list - 1)
                len += (size_t)snprintf(list + len, sizeof list - len,
                                        "; series %zu: ID '%s'", k + 1,
                                        o.patient_id);
        }
    }
    if (others) {
        covct_cli_error("%s: %s holds images of more than one patient "
                        "(series %zu: ID '%s'%s%s).  covct reads one "
                        "patient at a time: choose the series with "
                        "--series N ('covct info %s' lists them)",
                        cmd, in, k_chosen, sm.patient_id, list,
                        len >= sizeof list - 1 ? " ..." : "", in);
        return false;
    }
    if (ns > 1)
        fprintf(stderr,
                "covct %s: note: %s holds %zu image series of this "
                "patient; reading series %zu (%s, %u slices, '%s'), the "
                "axial CT with most slices.  Another: --series N ('covct "
                "info %s' lists them).\n",
                cmd, in, ns, k_chosen, sm.modality, (unsigned)sm.n_slices,
                sm.description, in);
    return true;
}
