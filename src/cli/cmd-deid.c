/* covct deid: de-identify DICOM files and folders for research exports
 * (PS3.15 Annex E; the work is done by the govern module). */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "cli/cli-data.h"
#include "covct/site.h"
#include "covct/dicom.h"
#include "covct/govern.h"
#include "covct/limits.h"

static const char help[] =
    "Usage: covct deid IN OUT --key KEYFILE [options]\n"
    "       covct deid --new-key KEYFILE\n"
    "\n"
    "Remove what identifies the patient from DICOM files before they leave\n"
    "the hospital, after the DICOM standard's Basic Application Level\n"
    "Confidentiality Profile (PS3.15 Annex E).  Names, IDs, addresses,\n"
    "physicians, institution, accession numbers and private tags are\n"
    "removed or blanked; the pixel data are kept unchanged.\n"
    "\n"
    "The patient gets a pseudonym (P followed by 12 letters and digits) and\n"
    "every UID a new one, computed from the original with the secret key:\n"
    "with the same key and project, the follow-up CT of a patient gets the\n"
    "same pseudonym, and segmentations still point at their images.  Keep\n"
    "the key file secret and backed up: anyone holding it can test whether\n"
    "a given patient ID is behind a pseudonym, and without it later exports\n"
    "cannot be linked to earlier ones.\n"
    "\n"
    "IN is a file or a folder (searched recursively).  For a file, OUT is\n"
    "the file to write (or a folder to write it into).  For a folder, OUT\n"
    "is a folder, filled as OUT/PSEUDONYM/STUDY-UID/SERIES-UID/SOP-UID.dcm:\n"
    "the original file and folder names are not kept, as they often hold\n"
    "patient names.\n"
    "\n"
    "Images that may show patient data in their pixels are refused, never\n"
    "passed on: Burned In Annotation YES, screen captures and other\n"
    "secondary captures (unless marked Burned In Annotation NO).  Refused\n"
    "and unreadable files are listed; the others are still written.\n"
    "\n"
    "  --key KEYFILE          secret key (64+ hex digits or 32+ bytes); must\n"
    "                         not be readable by other users (chmod 600)\n"
    "  --new-key KEYFILE      write a new random key (never overwrites one)\n"
    "  --project NAME         project name mixed into every pseudonym, so the\n"
    "                         same patient differs between projects\n"
    "                         (default: empty)\n"
    "  --no-date-shift        remove dates instead of shifting them (by 1 to\n"
    "                         365 days into the past, the same for all of a\n"
    "                         patient's studies, so intervals are kept)\n"
    "  --no-patient-chars     remove age, sex, size, weight (kept by default:\n"
    "                         research needs them)\n"
    "  --keep-device-id       keep station name, serial numbers (removed by\n"
    "                         default)\n"
    "  --keep-institution     keep institution name and department\n"
    "  --no-clean-descriptors remove all descriptions (default: keep a\n"
    "                         description when all its words are plain\n"
    "                         anatomy/protocol terms such as \"CHEST 1.25mm\")\n"
    "  --data DIR             the covct data folder whose audit log records\n"
    "                         this run (IN, OUT and the counts; file and\n"
    "                         folder names may hold patient names, so the\n"
    "                         log stays on site); DIR must already be one\n"
    "  -q                     no progress line\n"
    "\n"
    "Exit status: 0 every file written, 1 a file refused or failed (the\n"
    "others are written), 2 usage.\n";

typedef struct deid_run {
    const covct_deid_key *key;
    covct_deid_opts opts;
    const char *out;
    bool quiet;
    size_t done, refused, failed, skipped;
} deid_run;

/* Files found under a folder (nftw gives no user pointer). */
static char **g_files;
static size_t g_nfiles, g_capfiles;
static bool g_walk_failed;

static int walk_cb(const char *path, const struct stat *st, int type,
                   struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DNR) {
        fprintf(stderr, "covct: warning: %s: cannot read folder\n", path);
        g_walk_failed = true;
        return 0;
    }
    if (type != FTW_F)
        return 0;
    if (g_nfiles >= COVCT_LIMIT_DIR_FILES) {
        covct_cli_error("more than %d files under the input folder",
                        COVCT_LIMIT_DIR_FILES);
        return 1;
    }
    if (g_nfiles == g_capfiles) {
        size_t cap = g_capfiles ? g_capfiles * 2 : 256;
        char **n = covct_realloc(g_files, cap * sizeof *n);
        if (!n)
            return 1;
        g_files = n;
        g_capfiles = cap;
    }
    g_files[g_nfiles] = covct_strdup(path);
    if (!g_files[g_nfiles])
        return 1;
    g_nfiles++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* De-identify one file; `dest` NULL means the folder layout under
 * run->out.  Prints the problem and counts it. */
static void deid_one(deid_run *run, const char *path, const char *dest)
{
    covct_error err = {0};
    covct_dcm_file *f = NULL;
    covct_buf out = {0};
    covct_rc rc = covct_dcm_file_read(path, NULL, &f, &err);
    if (rc) {
        fprintf(stderr, "covct: %s: not de-identified: %s\n", path, err.msg);
        run->failed++;
        goto done;
    }
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    char cls[68] = "";
    covct_dcm_get_string(ds, COVCT_TAG(0x0008, 0x0016), 0, cls, sizeof cls,
                         NULL);
    /* A DICOMDIR lists patients' names and IDs and points at the original
     * file names: not an object to export. */
    if (!strcmp(cls, "1.2.840.10008.1.3.10")) {
        fprintf(stderr, "covct: %s: skipped: a DICOMDIR (media directory), "
                        "not an image\n", path);
        run->skipped++;
        goto done;
    }
    rc = covct_deid_file(f, run->key, &run->opts, &out, &err);
    if (rc == COVCT_ERR_UNSUPPORTED) {
        fprintf(stderr, "covct: %s: %s\n", path, err.msg);
        run->refused++;
        goto done;
    }
    if (rc) {
        fprintf(stderr, "covct: %s: not de-identified: %s\n", path, err.msg);
        run->failed++;
        goto done;
    }
    char target[4096];
    if (dest) {
        snprintf(target, sizeof target, "%s", dest);
    } else {
        ds = covct_dcm_file_dataset_const(f);
        char pid[80] = "", st[68] = "", se[68] = "", sop[68] = "";
        covct_dcm_get_string(ds, COVCT_TAG(0x0010, 0x0020), 0, pid,
                             sizeof pid, NULL);
        covct_dcm_get_string(ds, COVCT_TAG(0x0020, 0x000D), 0, st, sizeof st,
                             NULL);
        covct_dcm_get_string(ds, COVCT_TAG(0x0020, 0x000E), 0, se, sizeof se,
                             NULL);
        covct_dcm_get_string(ds, COVCT_TAG(0x0008, 0x0018), 0, sop,
                             sizeof sop, NULL);
        /* Every part is a pseudonym or a mapped UID: digits, dots and
         * base32 letters, safe as file names. */
        snprintf(target, sizeof target, "%s/%s/%s/%s/%s.dcm", run->out, pid,
                 st[0] ? st : "nostudy", se[0] ? se : "noseries", sop);
    }
    char *slash = strrchr(target, '/');
    if (slash && slash != target) {
        *slash = '\0';
        rc = covct_mkdirs(target, 0777, &err);
        *slash = '/';
        if (rc) {
            fprintf(stderr, "covct: %s: %s\n", path, err.msg);
            run->failed++;
            goto done;
        }
    }
    rc = covct_file_write_bytes(target, out.data, out.len, &err);
    if (rc) {
        fprintf(stderr, "covct: %s: not written: %s\n", path, err.msg);
        run->failed++;
        goto done;
    }
    run->done++;
done:
    covct_buf_free(&out);
    covct_dcm_file_free(f);
}

/* The run's entry in the site's audit log: what, where to, how many. */
static covct_rc audit_run(covct_site *site, const deid_run *run,
                          const char *in, const char *out, covct_error *err)
{
    cJSON *d = cJSON_CreateObject();
    if (!d || !cJSON_AddStringToObject(d, "to", out) ||
        !cJSON_AddStringToObject(d, "project",
                                 run->opts.project ? run->opts.project : "") ||
        !cJSON_AddNumberToObject(d, "written", (double)run->done) ||
        !cJSON_AddNumberToObject(d, "refused", (double)run->refused) ||
        !cJSON_AddNumberToObject(d, "failed", (double)run->failed) ||
        !cJSON_AddBoolToObject(d, "dates_shifted", run->opts.shift_dates)) {
        cJSON_Delete(d);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    char *text = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    if (!text)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    char obj[4200];
    snprintf(obj, sizeof obj, "files:%s", in);
    covct_rc rc = covct_audit(site, "deid", obj, text, err);
    cJSON_free(text);
    return rc;
}

int covct_cmd_deid(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *key_path = NULL, *new_key = NULL;
    /* The site's data folder: when given, the run needs the "deid"
     * permission there and is recorded in its audit log. */
    const char *data_dir = NULL;
    covct_site *site = NULL;
    deid_run run;
    memset(&run, 0, sizeof run);
    covct_deid_opts_default(&run.opts);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_arg = i + 1 < argc;
        if (covct_cli_is_help(a)) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(a, "--key") && has_arg) {
            key_path = argv[++i];
        } else if (!strcmp(a, "--new-key") && has_arg) {
            new_key = argv[++i];
        } else if (!strcmp(a, "--project") && has_arg) {
            run.opts.project = argv[++i];
        } else if (!strcmp(a, "--data") && has_arg) {
            data_dir = argv[++i];
        } else if (!strcmp(a, "--no-date-shift")) {
            run.opts.shift_dates = false;
        } else if (!strcmp(a, "--no-patient-chars")) {
            run.opts.keep_patient_chars = false;
        } else if (!strcmp(a, "--keep-device-id")) {
            run.opts.keep_device_id = true;
        } else if (!strcmp(a, "--keep-institution")) {
            run.opts.keep_institution_id = true;
        } else if (!strcmp(a, "--no-clean-descriptors")) {
            run.opts.clean_descriptors = false;
        } else if (!strcmp(a, "-q")) {
            run.quiet = true;
        } else if (a[0] == '-' && a[1]) {
            covct_cli_error("deid: unknown option or missing value: %s "
                            "(see covct deid --help)", a);
            return COVCT_EXIT_USAGE;
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            covct_cli_error("deid: too many arguments: %s", a);
            return COVCT_EXIT_USAGE;
        }
    }
    covct_error err = {0};
    if (new_key) {
        if (in || key_path) {
            covct_cli_error("deid: --new-key takes no other arguments");
            return COVCT_EXIT_USAGE;
        }
        if (covct_deid_key_generate(new_key, &err)) {
            covct_cli_error("%s", err.msg);
            return COVCT_EXIT_FAIL;
        }
        printf("new key written to %s (mode 600); keep it secret and back "
               "it up\n", new_key);
        return COVCT_EXIT_OK;
    }
    if (!in || !out || !key_path) {
        covct_cli_error("deid: needs IN, OUT and --key KEYFILE (see covct "
                        "deid --help)");
        return COVCT_EXIT_USAGE;
    }
    if (data_dir && !covct_cli_open_existing_site("deid", data_dir, &site))
        return COVCT_EXIT_FAIL;
    if (site && covct_site_require(site, "deid", in, &err)) {
        covct_cli_error("%s", err.msg);
        covct_site_close(site);
        return COVCT_EXIT_FAIL;
    }
    covct_deid_key *key = NULL;
    if (covct_deid_key_load(key_path, &key, &err)) {
        covct_cli_error("%s", err.msg);
        covct_site_close(site);
        return COVCT_EXIT_FAIL;
    }
    run.key = key;
    run.out = out;
    int status = COVCT_EXIT_OK;
    struct stat st;
    if (stat(in, &st) != 0) {
        covct_cli_error("%s: %s", in, strerror(errno));
        status = COVCT_EXIT_FAIL;
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        char dest[4096];
        struct stat so;
        if (stat(out, &so) == 0 && S_ISDIR(so.st_mode)) {
            const char *base = strrchr(in, '/');
            snprintf(dest, sizeof dest, "%s/%s", out, base ? base + 1 : in);
        } else {
            snprintf(dest, sizeof dest, "%s", out);
        }
        deid_one(&run, in, dest);
    } else {
        if (nftw(in, walk_cb, 32, FTW_PHYS) != 0) {
            covct_cli_error("%s: cannot list the folder", in);
            status = COVCT_EXIT_FAIL;
            goto out;
        }
        if (g_nfiles)
            qsort(g_files, g_nfiles, sizeof *g_files, cmp_str);
        if (mkdir(out, 0777) != 0 && errno != EEXIST) {
            covct_cli_error("%s: cannot create: %s", out, strerror(errno));
            status = COVCT_EXIT_FAIL;
            goto out;
        }
        bool tty = !run.quiet && isatty(2);
        for (size_t i = 0; i < g_nfiles; i++) {
            if (tty)
                fprintf(stderr, "\rdeid: %zu/%zu files", i + 1, g_nfiles);
            deid_one(&run, g_files[i], NULL);
        }
        if (tty)
            fputc('\n', stderr);
    }
    if (!run.quiet || run.refused || run.failed)
        printf("%zu file%s de-identified, %zu refused, %zu failed%s -> %s\n",
               run.done, run.done == 1 ? "" : "s", run.refused, run.failed,
               run.skipped ? " (DICOMDIR skipped)" : "", out);
    if (run.refused || run.failed || g_walk_failed)
        status = COVCT_EXIT_FAIL;
    if (site && audit_run(site, &run, in, out, &err)) {
        covct_cli_error("%s", err.msg);
        status = COVCT_EXIT_FAIL;
    }
out:
    covct_site_close(site);
    for (size_t i = 0; i < g_nfiles; i++)
        covct_free(g_files[i]);
    covct_free(g_files);
    covct_deid_key_free(key);
    return status;
}
