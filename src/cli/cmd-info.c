/* covct info: what a radiology IT person wants to know about a DICOM file
 * or folder, with every image decoded so that a broken one shows here. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "covct/dicom.h"
#include "covct/volume.h"

static const char help[] =
    "Usage: covct info [--no-decode] FILE|FOLDER\n"
    "\n"
    "For a file: patient, study and series, image size and encoding,\n"
    "geometry, rescale to Hounsfield units, and a full decode of the pixel\n"
    "data (a file whose pixels cannot be decoded makes the command fail).\n"
    "For a folder (searched recursively): every series found, with its\n"
    "slices, spacing and the problems noticed (gaps, duplicates, varying\n"
    "spacing, gantry tilt, mixed sizes), and every image decoded.\n"
    "\n"
    "  --no-decode   read the headers only (fast)\n"
    "\n"
    "Exit status: 0 when everything was read and decoded, 1 otherwise.\n";

#define T(g, e) COVCT_TAG(g, e)

static void line_utf8(const covct_dcm_dataset *ds, const char *label,
                      uint32_t tag)
{
    char *s = NULL;
    if (covct_dcm_get_utf8(ds, tag, &s, NULL) == COVCT_OK && s && *s)
        printf("  %-22s %s\n", label, s);
    covct_free(s);
}

static void line_str(const covct_dcm_dataset *ds, const char *label,
                     uint32_t tag)
{
    char buf[256];
    if (covct_dcm_get_string(ds, tag, 0, buf, sizeof buf, NULL) == COVCT_OK &&
        buf[0]) {
        /* Show all values of multi-valued strings. */
        const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
        uint32_t vm = covct_dcm_element_vm(e);
        printf("  %-22s %s", label, buf);
        for (uint32_t i = 1; i < vm && i < 8; i++)
            if (covct_dcm_element_get_string(e, i, buf, sizeof buf, NULL) ==
                COVCT_OK)
                printf("\\%s", buf);
        printf("\n");
    }
}

static void print_lines(const char *text, const char *indent)
{
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        printf("%s%.*s\n", indent, n, p);
        p += n + (nl ? 1 : 0);
    }
}

static int info_file(const char *path, bool decode)
{
    covct_error err = {0};
    covct_dcm_file *f;
    if (covct_dcm_file_read(path, NULL, &f, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    const covct_dcm_dataset *ds = covct_dcm_file_dataset_const(f);
    const char *ts = covct_dcm_file_ts(f);
    const char *tsn = covct_dcm_ts_name(ts);
    int rc = COVCT_EXIT_OK;
    printf("File: %s\n", path);
    printf("  %-22s %s (%s)%s\n", "Transfer syntax", ts,
           tsn ? tsn : "unknown",
           covct_dcm_file_has_preamble(f) ? "" : ", no Part 10 preamble");
    line_str(ds, "SOP class", T(0x0008, 0x0016));
    line_str(ds, "Modality", T(0x0008, 0x0060));
    line_utf8(ds, "Patient name", T(0x0010, 0x0010));
    line_utf8(ds, "Patient ID", T(0x0010, 0x0020));
    line_str(ds, "Patient sex", T(0x0010, 0x0040));
    line_str(ds, "Patient age", T(0x0010, 0x1010));
    line_str(ds, "Study date", T(0x0008, 0x0020));
    line_utf8(ds, "Study description", T(0x0008, 0x1030));
    line_str(ds, "Study UID", T(0x0020, 0x000D));
    line_str(ds, "Series number", T(0x0020, 0x0011));
    line_utf8(ds, "Series description", T(0x0008, 0x103E));
    line_str(ds, "Series UID", T(0x0020, 0x000E));
    line_str(ds, "Instance number", T(0x0020, 0x0013));
    line_str(ds, "Manufacturer", T(0x0008, 0x0070));
    line_str(ds, "Character set", T(0x0008, 0x0005));
    line_str(ds, "Image position (mm)", T(0x0020, 0x0032));
    line_str(ds, "Image orientation", T(0x0020, 0x0037));
    line_str(ds, "Pixel spacing (mm)", T(0x0028, 0x0030));
    line_str(ds, "Slice thickness (mm)", T(0x0018, 0x0050));
    line_str(ds, "Rescale slope", T(0x0028, 0x1053));
    line_str(ds, "Rescale intercept", T(0x0028, 0x1052));
    line_str(ds, "Pixel padding value", T(0x0028, 0x0120));

    covct_dcm_pixel_info pi;
    covct_error perr = {0};
    covct_rc prc = covct_dcm_pixel_info_get(f, &pi, &perr);
    if (prc == COVCT_ERR_NOT_FOUND) {
        printf("  %-22s none (not an image)\n", "Pixel data");
    } else if (prc) {
        covct_cli_error("%s: %s", path, perr.msg);
        rc = COVCT_EXIT_FAIL;
    } else {
        printf("  %-22s %u x %u, %u frame%s, %u sample%s, %u bits allocated, "
               "%u stored, %s, %s\n",
               "Image", pi.cols, pi.rows, pi.frames, pi.frames == 1 ? "" : "s",
               pi.samples, pi.samples == 1 ? "" : "s", pi.bits_alloc,
               pi.bits_stored, pi.pixel_rep ? "signed" : "unsigned",
               pi.photometric[0] ? pi.photometric : "(no photometric)");
        if (pi.frames > 1) {
            /* Multi-frame: the geometry of the frames, as 'covct volume'
             * will stack them (per-frame functional groups included). */
            covct_series_set *set = NULL;
            if (covct_series_scan(path, &set, NULL) == COVCT_OK &&
                covct_series_set_count(set) > 0) {
                covct_series_summary sm;
                covct_series_get_summary(covct_series_set_at(set, 0), &sm);
                printf("  %-22s %u planes, %.3f x %.3f mm pixels, spacing "
                       "%.3f mm, tilt %.2f deg\n",
                       "Frames geometry", sm.n_slices, sm.pixel_spacing[1],
                       sm.pixel_spacing[0], sm.slice_spacing,
                       sm.gantry_tilt_deg);
                const char *pr = covct_series_problems(
                    covct_series_set_at(set, 0));
                if (*pr) {
                    printf("  Frame problems:\n");
                    print_lines(pr, "    - ");
                }
            }
            covct_series_set_free(set);
        }
        if (decode) {
            void *buf = covct_malloc(pi.frame_bytes);
            double lo = INFINITY, hi = -INFINITY;
            if (!buf) {
                covct_cli_error("%s: out of memory", path);
                rc = COVCT_EXIT_FAIL;
            }
            for (uint32_t fr = 0; buf && fr < pi.frames; fr++) {
                covct_error derr = {0};
                if (covct_dcm_pixel_decode_frame(f, &pi, fr, buf,
                                                 pi.frame_bytes, &derr)) {
                    covct_cli_error("%s: frame %u: %s", path, fr + 1,
                                    derr.msg);
                    rc = COVCT_EXIT_FAIL;
                    break;
                }
                size_t n = pi.frame_bytes / pi.out_bytes;
                for (size_t i = 0; i < n; i++) {
                    double x;
                    if (pi.float_bits == 32) {
                        float t;
                        memcpy(&t, (uint8_t *)buf + 4 * i, 4);
                        x = t;
                    } else if (pi.float_bits == 64) {
                        memcpy(&x, (uint8_t *)buf + 8 * i, 8);
                    } else if (pi.out_bytes == 1) {
                        x = pi.pixel_rep ? ((int8_t *)buf)[i]
                                         : ((uint8_t *)buf)[i];
                    } else if (pi.out_bytes == 2) {
                        x = pi.pixel_rep ? ((int16_t *)buf)[i]
                                         : ((uint16_t *)buf)[i];
                    } else {
                        x = pi.pixel_rep ? (double)((int32_t *)buf)[i]
                                         : (double)((uint32_t *)buf)[i];
                    }
                    if (x < lo)
                        lo = x;
                    if (x > hi)
                        hi = x;
                }
            }
            if (rc == COVCT_EXIT_OK && buf)
                printf("  %-22s decoded, stored values %g to %g%s%s\n",
                       "Pixel data", lo, hi,
                       strcmp(pi.out_photometric, pi.photometric) ? ", as " : "",
                       strcmp(pi.out_photometric, pi.photometric)
                           ? pi.out_photometric
                           : "");
            covct_free(buf);
        }
    }
    const char *w = covct_dcm_file_warnings(f);
    if (*w) {
        printf("  Problems noticed while reading:\n");
        for (const char *p = w; *p;) {
            const char *nl = strchr(p, '\n');
            int n = nl ? (int)(nl - p) : (int)strlen(p);
            printf("    - %.*s\n", n, p);
            p += n + (nl ? 1 : 0);
        }
    }
    covct_dcm_file_free(f);
    return rc;
}

static int info_folder(const char *path, bool decode)
{
    covct_error err = {0};
    covct_series_set *set;
    if (covct_series_scan(path, &set, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    int rc = COVCT_EXIT_OK;
    size_t n = covct_series_set_count(set);
    printf("Folder: %s\n", path);
    printf("  %zu series, %zu file%s skipped (not DICOM images)\n", n,
           covct_series_set_skipped(set),
           covct_series_set_skipped(set) == 1 ? "" : "s");
    if (covct_series_set_skipped(set))
        print_lines(covct_series_set_skipped_report(set), "    skipped: ");
    covct_series *best = covct_series_set_best(set);
    for (size_t i = 0; i < n; i++) {
        covct_series *s = covct_series_set_at(set, i);
        covct_series_summary sm;
        covct_series_get_summary(s, &sm);
        const char *tsn = covct_dcm_ts_name(sm.transfer_syntax);
        printf("\nSeries %zu%s: %s %s\n", i + 1,
               s == best ? " (main CT volume)" : "", sm.modality,
               sm.description[0] ? sm.description : "(no description)");
        printf("  %-22s %s (ID %s)\n", "Patient",
               sm.patient_name[0] ? sm.patient_name : "(no name)",
               sm.patient_id[0] ? sm.patient_id : "none");
        printf("  %-22s %s, series number %s\n", "Study date",
               sm.study_date[0] ? sm.study_date : "(none)",
               sm.series_number[0] ? sm.series_number : "(none)");
        printf("  %-22s %s\n", "Series UID",
               sm.series_uid[0] ? sm.series_uid : "(none)");
        printf("  %-22s %s\n", "Study UID",
               sm.study_uid[0] ? sm.study_uid : "(none)");
        printf("  %-22s %u images in %u files\n", "Slices", sm.n_slices,
               sm.n_files);
        printf("  %-22s %u x %u, %.3f x %.3f mm\n", "Image", sm.cols, sm.rows,
               sm.pixel_spacing[1], sm.pixel_spacing[0]);
        printf("  %-22s spacing %.3f mm, thickness %.3f mm, tilt %.2f deg\n",
               "Slices geometry", sm.slice_spacing, sm.slice_thickness,
               sm.gantry_tilt_deg);
        printf("  %-22s %s (%s)\n", "Transfer syntax", sm.transfer_syntax,
               tsn ? tsn : "unknown");
        const char *pr = covct_series_problems(s);
        if (*pr) {
            printf("  Problems:\n");
            print_lines(pr, "    - ");
        } else {
            printf("  Problems:              none found\n");
        }
        if (decode) {
            covct_volume *v = NULL;
            covct_error lerr = {0};
            if (covct_series_load(s, 0, NULL, NULL, &v, &lerr)) {
                covct_cli_error("series %zu: %s", i + 1, lerr.msg);
                rc = COVCT_EXIT_FAIL;
            } else {
                size_t nv = covct_volume_voxels(v);
                double lo = INFINITY, hi = -INFINITY;
                size_t outside = 0;
                for (size_t k = 0; k < nv; k++) {
                    double x = v->dtype == COVCT_DTYPE_INT16
                                   ? ((int16_t *)v->data)[k]
                                   : ((float *)v->data)[k];
                    if (x < lo)
                        lo = x;
                    if (x > hi)
                        hi = x;
                    outside += v->outside && v->outside[k];
                }
                printf("  %-22s decoded, %g to %g HU, %.1f%% outside the "
                       "field of view\n",
                       "Pixel data", lo, hi, 100.0 * (double)outside / (double)nv);
            }
            covct_volume_free(v);
        }
    }
    if (n == 0) {
        covct_cli_error("%s: no DICOM images found", path);
        rc = COVCT_EXIT_FAIL;
    }
    covct_series_set_free(set);
    return rc;
}

int covct_cmd_info(int argc, char **argv)
{
    bool decode = true;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (covct_cli_is_help(argv[i])) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(argv[i], "--no-decode")) {
            decode = false;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            covct_cli_error("info: unknown option '%s'\n%s", argv[i], help);
            return COVCT_EXIT_USAGE;
        } else if (path) {
            covct_cli_error("info: one file or folder at a time");
            return COVCT_EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fputs(help, stderr);
        return COVCT_EXIT_USAGE;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        covct_cli_error("%s: no such file or folder", path);
        return COVCT_EXIT_FAIL;
    }
    return S_ISDIR(st.st_mode) ? info_folder(path, decode)
                               : info_file(path, decode);
}
