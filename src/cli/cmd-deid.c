/* covct deid: placeholder while issue 6 lands (replaced in this session). */
#include "cli/cli.h"

int covct_cmd_deid(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    covct_cli_error("'deid' is not built yet");
    return COVCT_EXIT_FAIL;
}
