/*
 * Core helpers: covct_mkdirs (mkdir -p) and covct_sha256_hex.  Checked against the file system
 * with stat(2): nested creation, an existing path, a trailing slash, a
 * file in the way (named in the error), an empty name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/core.h"
#include "covct/site.h"
#include "test.h"

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mkdirs(void)
{
    char base[] = "/tmp/covct-test-core-XXXXXX";
    if (!mkdtemp(base)) {
        CHECKF(0, "mkdtemp: cannot make a temporary folder");
        return;
    }
    char p[512], q[512];
    covct_error err = {0};

    snprintf(p, sizeof p, "%s/a/b/c", base);
    CHECK(covct_mkdirs(p, 0750, &err) == COVCT_OK);
    CHECK(is_dir(p));
    snprintf(q, sizeof q, "%s/a/b", base);
    CHECK(is_dir(q));
    /* Already there: fine, twice. */
    CHECK(covct_mkdirs(p, 0750, &err) == COVCT_OK);
    /* Trailing slash and a double slash. */
    snprintf(q, sizeof q, "%s/a//d/", base);
    CHECK(covct_mkdirs(q, 0750, &err) == COVCT_OK);
    snprintf(q, sizeof q, "%s/a/d", base);
    CHECK(is_dir(q));

    /* A file where a folder should go: refused, and the error names it. */
    snprintf(q, sizeof q, "%s/a/file", base);
    FILE *f = fopen(q, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    snprintf(p, sizeof p, "%s/a/file/x", base);
    covct_error_clear(&err);
    CHECK(covct_mkdirs(p, 0750, &err) == COVCT_ERR_IO);
    CHECKF(strstr(err.msg, "/a/file") != NULL, "%s", err.msg);
    covct_error_clear(&err);
    CHECK(covct_mkdirs(q, 0750, &err) == COVCT_ERR_IO);
    CHECKF(strstr(err.msg, "not a folder") != NULL, "%s", err.msg);
    CHECK(covct_mkdirs("", 0750, &err) == COVCT_ERR_ARG);
    CHECK(covct_mkdirs(NULL, 0750, &err) == COVCT_ERR_ARG);

    /* A relative path. */
    char cwd[512];
    if (getcwd(cwd, sizeof cwd) && chdir(base) == 0) {
        CHECK(covct_mkdirs("r/s", 0700, &err) == COVCT_OK);
        CHECK(is_dir("r/s"));
        CHECK(chdir(cwd) == 0);
    }

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    CHECK(system(cmd) == 0);
}

/* SHA-256 against the FIPS 180-2 examples ("abc", and the empty string). */
static void test_sha256_hex(void)
{
    char h[65];
    covct_sha256_hex("abc", 3, h);
    CHECKF(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223"
                      "b00361a396177a9cb410ff61f20015ad"), "%s", h);
    covct_sha256_hex("", 0, h);
    CHECKF(!strcmp(h, "e3b0c44298fc1c149afbf4c8996fb924"
                      "27ae41e4649b934ca495991b7852b855"), "%s", h);
}

int main(void)
{
    test_mkdirs();
    test_sha256_hex();
    return test_report();
}
