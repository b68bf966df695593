/*
 * Minimal test harness for covct's C tests.  Each test program runs its
 * checks, prints "N passed, N failed" and exits non-zero on any failure.
 *
 * Shared data (../shared/data) is looked up with test_data(); when it is
 * missing the test fails under CI=true and is skipped (exit 77, which ctest
 * reports as skipped, never as passed) otherwise.
 */
#ifndef COVCT_TEST_H
#define COVCT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_passed, test_failed;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (cond) {                                                        \
            test_passed++;                                                 \
        } else {                                                           \
            test_failed++;                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
        }                                                                  \
    } while (0)

#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        if (cond) {                                                        \
            test_passed++;                                                 \
        } else {                                                           \
            test_failed++;                                                 \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__,         \
                    __LINE__, #cond);                                      \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

#define TEST_SKIP_CODE 77

/* Path of a file or folder under the shared data folder.  Never returns
 * when it is missing: fails in CI, skips elsewhere. */
static inline const char *test_data(const char *rel)
{
    static char bufs[8][4096];
    static int next;
    char *buf = bufs[next++ % 8];
    const char *root = getenv("COVCT_SHARED_DATA");
#ifdef COVCT_SHARED_DATA_DEFAULT
    if (!root || !*root)
        root = COVCT_SHARED_DATA_DEFAULT;
#endif
    if (!root)
        root = "../shared/data";
    snprintf(buf, 4096, "%s/%s", root, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        const char *ci = getenv("CI");
        if (ci && strcmp(ci, "true") == 0) {
            fprintf(stderr, "FAIL: shared test data missing: %s\n", buf);
            exit(1);
        }
        fprintf(stderr, "SKIP: shared test data missing: %s\n", buf);
        exit(TEST_SKIP_CODE);
    }
    return buf;
}

static inline int test_report(void)
{
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : (test_passed ? 0 : 1);
}

#endif
