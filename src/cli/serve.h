/* covct serve's parts (cmd-serve.c wires them). */
#ifndef COVCT_CLI_SERVE_H
#define COVCT_CLI_SERVE_H

#include <stdbool.h>

#include "covct/net.h"
#include "covct/store.h"

typedef struct serve_jobs_config {
    covct_store *store;
    const char *exe;                   /* this covct binary */
    const char *ae;                    /* our AE title (results' sender) */
    const covct_net_peer *results_peer; /* NULL: keep results locally */
    double settle_s;                   /* series complete after this quiet */
    unsigned min_instances;            /* fewer CT images: skipped */
    unsigned max_attempts;
    double retry_base_s;
} serve_jobs_config;

typedef struct serve_jobs serve_jobs;

/* Start the analysis thread; 0 on success. */
int serve_jobs_start(const serve_jobs_config *cfg, serve_jobs **out);
/* Stop it (an analysis in progress is stopped and queued again at the
 * next start). */
void serve_jobs_stop(serve_jobs *j);

#endif
