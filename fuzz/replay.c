/* Replays fuzz inputs through a fuzz target without libFuzzer, so the
 * corpus (and every crash ever found) runs in the ordinary test suite
 * under the sanitizers.  Arguments are files or folders (recursive). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "covct/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count;

static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: missing\n", path);
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return 1;
        struct dirent *de;
        int rc = 0;
        char sub[4096];
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rc |= run_path(sub);
        }
        closedir(d);
        return rc;
    }
    uint8_t *data;
    size_t len;
    covct_error err = {0};
    if (covct_file_read(path, &data, &len, &err)) {
        fprintf(stderr, "replay: %s\n", err.msg);
        return 1;
    }
    LLVMFuzzerTestOneInput(data, len);
    covct_free(data);
    count++;
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++)
        rc |= run_path(argv[i]);
    printf("replayed %zu inputs\n", count);
    printf("%d passed, %d failed\n", rc ? 0 : 1, rc ? 1 : 0);
    return rc || count == 0;
}
