/* The covct command's subcommands; each returns the process exit code. */
#ifndef COVCT_CLI_H
#define COVCT_CLI_H

#include <stdbool.h>

#include "covct/volume.h"

#define COVCT_EXIT_OK 0
#define COVCT_EXIT_FAIL 1  /* the input could not be processed */
#define COVCT_EXIT_USAGE 2 /* wrong command line */

int covct_cmd_dump(int argc, char **argv);
int covct_cmd_info(int argc, char **argv);
int covct_cmd_volume(int argc, char **argv);
int covct_cmd_demo(int argc, char **argv);
int covct_cmd_analyze(int argc, char **argv);
int covct_cmd_phantom(int argc, char **argv);
int covct_cmd_segment(int argc, char **argv);
int covct_cmd_train(int argc, char **argv);
int covct_cmd_model(int argc, char **argv);
int covct_cmd_eval(int argc, char **argv);
int covct_cmd_serve(int argc, char **argv);
int covct_cmd_echo(int argc, char **argv);
int covct_cmd_send(int argc, char **argv);
int covct_cmd_deid(int argc, char **argv);
int covct_cmd_audit(int argc, char **argv);
int covct_cmd_import(int argc, char **argv);
int covct_cmd_project(int argc, char **argv);
int covct_cmd_consent(int argc, char **argv);
int covct_cmd_export(int argc, char **argv);
int covct_cmd_user(int argc, char **argv);
int covct_cmd_agreement(int argc, char **argv);
int covct_cmd_token(int argc, char **argv);

/* The lesion network that ships with covct (CMake points it at the
 * source tree's models/). */
/* The web pages that ship with covct (CMake points it at web/). */
#ifndef COVCT_WEB_DEFAULT
#define COVCT_WEB_DEFAULT "web"
#endif
/* How the shipped network is named in label provenance. */
#define COVCT_MODEL_NAME "lesions-unet.covctnn"
#ifndef COVCT_MODEL_DEFAULT
#define COVCT_MODEL_DEFAULT "models/lesions-unet.covctnn"
#endif
#ifndef COVCT_MODEL_DIR
#define COVCT_MODEL_DIR "models"
#endif
/* covct segment's default: the shipped network and two more trained by
 * the same recipe with other seeds, averaged (docs/internals/training.md,
 * session 10).  covct analyze runs the first alone (its time budget). */
#define COVCT_SEGMENT_ENSEMBLE                                             \
    {COVCT_MODEL_DEFAULT, COVCT_MODEL_DIR "/lesions-unet-seed2.covctnn",    \
     COVCT_MODEL_DIR "/lesions-unet-seed3.covctnn"}

/* Shared helpers. */
bool covct_cli_is_help(const char *arg);
/* `chosen` was picked from `set` (read from folder `in`) without
 * --series: one result is of one patient, so if the folder holds series
 * of more than one patient (PatientID or name differ) print an error
 * naming them and --series N, and return false; if it holds several
 * series of one patient (kernels, a scout, contrast phases), print a
 * note naming the one chosen (covct_series_set_best: the axial CT series
 * with most slices) and return true. */
bool covct_cli_one_patient(const char *cmd, const char *in,
                           const covct_series_set *set,
                           const covct_series *chosen);
void covct_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
