/* covct model: what a network file is (architecture, size, model card),
 * and replacing its model card. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "covct/nn.h"

int covct_cmd_model(int argc, char **argv);

static const char help[] =
    "Usage: covct model MODEL.covctnn [--card FILE.json] [--infection-cut N]\n"
    "                   [-o OUT.covctnn]\n"
    "\n"
    "Show what a covct network file holds: the architecture, the number of\n"
    "weights, the input size and the model card (training data, licence,\n"
    "cross-validation results).  The file's checksum is verified.\n"
    "\n"
    "With --card, write a copy whose model card has the fields of FILE.json\n"
    "(a JSON object) added, replacing fields of the same name; the weights\n"
    "and the other fields are unchanged.\n"
    "\n"
    "With --infection-cut N, the copy's masks (infection map >= 128, as\n"
    "'covct segment' and 'covct analyze' cut them) become the original's\n"
    "map >= N: the threshold chosen by cross-validation, built into the\n"
    "network (its background score is lowered; the maps stay\n"
    "probabilities of the adjusted network).  Recorded in the model card.\n"
    "\n"
    "Options:\n"
    "  --card FILE.json   fields to add to the model card\n"
    "  --infection-cut N  move the infection decision to level N (1-254)\n"
    "  -o, --output FILE  where to write the copy\n"
    "  -h, --help         this text\n";

int covct_cmd_model(int argc, char **argv)
{
    const char *in = NULL, *card = NULL, *out = NULL;
    int cut = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "--card") && i + 1 < argc) {
            card = argv[++i];
        } else if (!strcmp(a, "--infection-cut") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 254) {
                covct_cli_error("--infection-cut needs a level 1..254");
                return COVCT_EXIT_USAGE;
            }
            cut = (int)v;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) &&
                   i + 1 < argc) {
            out = argv[++i];
        } else if (a[0] == '-') {
            covct_cli_error("unknown option or missing value '%s'; run "
                            "'covct model --help'",
                            a);
            return COVCT_EXIT_USAGE;
        } else if (!in) {
            in = a;
        } else {
            covct_cli_error("one model file at a time");
            return COVCT_EXIT_USAGE;
        }
    }
    if (!in || (!card && !cut) != (!out)) {
        covct_cli_error("%s; run 'covct model --help'",
                        !in ? "no model file given"
                            : "--card or --infection-cut and -o go together");
        return COVCT_EXIT_USAGE;
    }
    covct_nn_model m;
    covct_error err = {0};
    if (covct_nn_model_read(in, &m, &err) != COVCT_OK) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    int rc = COVCT_EXIT_OK;
    if (out) {
        cJSON *old = m.card_json ? cJSON_Parse(m.card_json) : NULL;
        if (!cJSON_IsObject(old)) {
            cJSON_Delete(old);
            old = cJSON_CreateObject();
        }
        if (card) {
            uint8_t *b = NULL;
            size_t n = 0;
            char *text = NULL;
            cJSON *j = NULL;
            if (covct_file_read(card, &b, &n, &err) == COVCT_OK &&
                (text = covct_strndup((const char *)b, n)) != NULL)
                j = cJSON_Parse(text);
            covct_free(b);
            covct_free(text);
            if (!cJSON_IsObject(j)) {
                covct_cli_error("%s: %s", card,
                                err.rc ? err.msg : "not a JSON object");
                rc = COVCT_EXIT_FAIL;
            } else {
                for (cJSON *it = j->child; it; it = it->next) {
                    cJSON_DeleteItemFromObjectCaseSensitive(old, it->string);
                    cJSON_AddItemToObject(old, it->string,
                                          cJSON_Duplicate(it, 1));
                }
            }
            cJSON_Delete(j);
        }
        if (rc == COVCT_EXIT_OK && cut) {
            double d = 0;
            if (covct_nn_model_shift_infection_cut(&m, cut, &d, &err)) {
                covct_cli_error("%s: %s", in, err.msg);
                rc = COVCT_EXIT_FAIL;
            } else {
                /* Offsets add up when cut twice. */
                cJSON *prev = cJSON_GetObjectItemCaseSensitive(old,
                                                               "infection_cut");
                cJSON *po = cJSON_GetObjectItemCaseSensitive(
                    prev, "background_logit_offset");
                double total = d + (cJSON_IsNumber(po) ? po->valuedouble : 0);
                cJSON *ic = cJSON_CreateObject();
                cJSON_AddNumberToObject(ic, "level", cut);
                cJSON_AddNumberToObject(ic, "background_logit_offset", total);
                cJSON_AddStringToObject(
                    ic, "meaning",
                    "the final layer's background bias was lowered by "
                    "background_logit_offset, so that infection map >= 128 "
                    "is the trained network's map >= level");
                cJSON_DeleteItemFromObjectCaseSensitive(old, "infection_cut");
                cJSON_AddItemToObject(old, "infection_cut", ic);
            }
        }
        char *merged = cJSON_PrintUnformatted(old);
        cJSON_Delete(old);
        covct_free(m.card_json);
        m.card_json = merged ? covct_strdup(merged) : NULL;
        cJSON_free(merged);
        if (rc == COVCT_EXIT_OK && !m.card_json) {
            covct_cli_error("out of memory");
            rc = COVCT_EXIT_FAIL;
        } else if (rc == COVCT_EXIT_OK &&
                   covct_nn_model_write(out, &m, &err) != COVCT_OK) {
            covct_cli_error("%s", err.msg);
            rc = COVCT_EXIT_FAIL;
        } else if (rc == COVCT_EXIT_OK) {
            printf("written %s:%s%s%s\n", out, card ? " model card updated "
                                                     "with " : "",
                   card ? card : "", cut ? " infection cut moved" : "");
        }
    } else {
        size_t values = 0, np = covct_nn_param_count(m.graph);
        for (size_t i = 0; i < np; i++)
            values += covct_tensor_size(covct_nn_param(m.graph, i));
        printf("%s: U-Net, %d level(s), %d base channels, %d input "
               "channel(s), %d classes, %zu values in %zu tensors\n",
               in, m.cfg.depth, m.cfg.base, m.cfg.in_channels, m.cfg.classes,
               values, np);
        if (m.input_size)
            printf("input: slices fitted into %d x %d\n", m.input_size,
                   m.input_size);
        else
            printf("input: slices at their own size\n");
        cJSON *j = m.card_json ? cJSON_Parse(m.card_json) : NULL;
        char *pretty = j ? cJSON_Print(j) : NULL;
        printf("model card: %s\n", pretty ? pretty : "(none)");
        cJSON_free(pretty);
        cJSON_Delete(j);
    }
    covct_nn_model_free(&m);
    return rc;
}
