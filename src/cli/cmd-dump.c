/* covct dump: every data element of a DICOM file, in the spirit of dcmtk's
 * dcmdump, with text converted to UTF-8. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "covct/dicom.h"

static const char help[] =
    "Usage: covct dump [--no-utf8] FILE...\n"
    "\n"
    "Print every data element of each DICOM file: tag, VR, value, length,\n"
    "multiplicity and keyword, with sequences indented, like dcmtk's dcmdump.\n"
    "Text is converted to UTF-8 after Specific Character Set (0008,0005)\n"
    "unless --no-utf8 is given. Long binary values are abbreviated.\n";

/* Listing thousands of files is dominated by formatting: the common parts
 * of a line are built by hand and written with one fwrite. */
static char *put_hex4(char *o, unsigned v)
{
    static const char hx[] = "0123456789abcdef";
    o[0] = hx[(v >> 12) & 15];
    o[1] = hx[(v >> 8) & 15];
    o[2] = hx[(v >> 4) & 15];
    o[3] = hx[v & 15];
    return o + 4;
}

static char *put_uint(char *o, uint64_t v)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = t[--n];
    return o;
}

static void print_value(const covct_dcm_dataset *ds,
                        const covct_dcm_element *e, bool utf8)
{
    uint16_t vr = covct_dcm_element_vr(e);
    size_t len;
    const uint8_t *v = covct_dcm_element_value(e, &len);
    uint32_t vm = covct_dcm_element_vm(e);
    char buf[256];
    if (len == 0 || !v) {
        fputs("(no value available)", stdout);
        return;
    }
    bool text = vr == COVCT_VR('P', 'N') || vr == COVCT_VR('L', 'O') ||
                vr == COVCT_VR('S', 'H') || vr == COVCT_VR('S', 'T') ||
                vr == COVCT_VR('L', 'T') || vr == COVCT_VR('U', 'T') ||
                vr == COVCT_VR('U', 'C');
    if (text && utf8) {
        char *s = NULL;
        if (covct_dcm_get_utf8(ds, covct_dcm_element_tag(e), &s, NULL) ==
            COVCT_OK) {
            size_t n = strlen(s);
            for (size_t i = 0; i < n; i++)
                if (s[i] == '\r' || s[i] == '\n')
                    s[i] = ' ';
            printf("[%.200s%s]", s, n > 200 ? "..." : "");
            covct_free(s);
            return;
        }
    }
    if (vr == COVCT_VR('O', 'B') || vr == COVCT_VR('U', 'N') ||
        vr == COVCT_VR('O', 'W') || vr == COVCT_VR('O', 'F') ||
        vr == COVCT_VR('O', 'D') || vr == COVCT_VR('O', 'L') ||
        vr == COVCT_VR('O', 'V')) {
        bool words = vr == COVCT_VR('O', 'W');
        size_t shown = 0;
        for (size_t i = 0; i < len && shown < 8; i += words ? 2 : 1, shown++) {
            if (words && i + 1 < len)
                printf("%s%04x", shown ? "\\" : "",
                       covct_dcm_dataset_big_endian(ds)
                           ? (unsigned)(v[i] << 8 | v[i + 1])
                           : (unsigned)(v[i] | v[i + 1] << 8));
            else
                printf("%s%02x", shown ? "\\" : "", v[i]);
        }
        if (shown < (words ? len / 2 : len))
            fputs("...", stdout);
        return;
    }
    if (covct_dcm_vr_is_string(vr)) {
        /* Show the whole raw value, multi-valued included, without the
         * trailing padding. */
        size_t n = len < 200 ? len : 200;
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\0') && n == len)
            n--, len--;
        char line[210];
        char *o = line;
        *o++ = '[';
        for (size_t i = 0; i < n; i++) {
            unsigned char ch = v[i];
            *o++ = ch >= 32 && ch != 127 ? (char)ch : '.';
        }
        fwrite(line, 1, (size_t)(o - line), stdout);
        fputs(len > 200 ? "...]" : "]", stdout);
        return;
    }
    for (uint32_t i = 0; i < vm && i < 16; i++) {
        if (covct_dcm_element_get_string(e, i, buf, sizeof buf, NULL) ==
            COVCT_OK)
            printf("%s%s", i ? "\\" : "", buf);
    }
    if (vm > 16)
        fputs("\\...", stdout);
}

static void dump_dataset(const covct_dcm_dataset *ds, int indent, bool utf8)
{
    char vrs[3];
    for (size_t i = 0; i < covct_dcm_dataset_count(ds); i++) {
        const covct_dcm_element *e = covct_dcm_dataset_at(ds, i);
        uint32_t tag = covct_dcm_element_tag(e);
        uint16_t vr = covct_dcm_element_vr(e);
        const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
        const char *kw = d ? d->keyword
                           : ((COVCT_TAG_GROUP(tag) & 1) ? "PrivateTag"
                                                         : "Unknown Tag");
        char head[160], *o = head;
        for (int k = 0; k < indent * 2 && k < 100; k++)
            *o++ = ' ';
        *o++ = '(';
        o = put_hex4(o, COVCT_TAG_GROUP(tag));
        *o++ = ',';
        o = put_hex4(o, COVCT_TAG_ELEM(tag));
        *o++ = ')';
        *o++ = ' ';
        covct_dcm_vr_str(vr, vrs);
        *o++ = vrs[0];
        *o++ = vrs[1];
        *o++ = ' ';
        fwrite(head, 1, (size_t)(o - head), stdout);
        uint32_t len = covct_dcm_element_length(e);
        if (vr == COVCT_VR('S', 'Q')) {
            printf("(Sequence with %s length #=%zu)  # %s\n",
                   len == COVCT_UNDEFINED_LENGTH ? "undefined" : "explicit",
                   covct_dcm_element_item_count(e), kw);
            for (size_t k = 0; k < covct_dcm_element_item_count(e); k++) {
                printf("%*s  (fffe,e000) na (Item #%zu)\n", indent * 2, "",
                       k + 1);
                dump_dataset(covct_dcm_element_item(e, k), indent + 2, utf8);
                printf("%*s  (fffe,e00d) na (ItemDelimitationItem)\n",
                       indent * 2, "");
            }
            printf("%*s(fffe,e0dd) na (SequenceDelimitationItem)\n",
                   indent * 2, "");
            continue;
        }
        if (covct_dcm_element_encapsulated(e)) {
            printf("(PixelSequence #=%zu)  # %s\n",
                   covct_dcm_element_fragment_count(e), kw);
            for (size_t k = 0; k < covct_dcm_element_fragment_count(e); k++) {
                size_t fl;
                covct_dcm_element_fragment(e, k, &fl);
                printf("%*s  (fffe,e000) pi (%s, %zu bytes)\n", indent * 2, "",
                       k == 0 ? "offset table" : "fragment", fl);
            }
            continue;
        }
        print_value(ds, e, utf8);
        char tail[160];
        o = tail;
        memcpy(o, "  # ", 4);
        o += 4;
        if (len == COVCT_UNDEFINED_LENGTH) {
            memcpy(o, "u/l", 3);
            o += 3;
        } else {
            o = put_uint(o, len);
        }
        *o++ = ',';
        *o++ = ' ';
        o = put_uint(o, covct_dcm_element_vm(e));
        *o++ = ' ';
        size_t kl = strnlen(kw, 100);
        memcpy(o, kw, kl);
        o += kl;
        *o++ = '\n';
        fwrite(tail, 1, (size_t)(o - tail), stdout);
    }
}

static int dump_one(const char *path, bool utf8)
{
    covct_error err = {0};
    covct_dcm_file *f;
    if (covct_dcm_file_read(path, NULL, &f, &err)) {
        covct_cli_error("%s", err.msg);
        return COVCT_EXIT_FAIL;
    }
    const char *ts = covct_dcm_file_ts(f);
    const char *tsn = covct_dcm_ts_name(ts);
    printf("# %s\n", path);
    if (covct_dcm_dataset_count(covct_dcm_file_meta(f))) {
        printf("\n# File Meta Information (group 0002)\n");
        dump_dataset(covct_dcm_file_meta(f), 0, utf8);
    }
    printf("\n# Data set, transfer syntax %s (%s)\n", ts, tsn ? tsn : "unknown");
    dump_dataset(covct_dcm_file_dataset_const(f), 0, utf8);
    const char *w = covct_dcm_file_warnings(f);
    if (*w)
        fprintf(stderr, "covct: warnings for %s:\n%s", path, w);
    covct_dcm_file_free(f);
    return COVCT_EXIT_OK;
}

int covct_cmd_dump(int argc, char **argv)
{
    bool utf8 = true;
    int files = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        if (covct_cli_is_help(argv[i])) {
            fputs(help, stdout);
            return COVCT_EXIT_OK;
        } else if (!strcmp(argv[i], "--no-utf8")) {
            utf8 = false;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            covct_cli_error("dump: unknown option '%s'\n%s", argv[i], help);
            return COVCT_EXIT_USAGE;
        }
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1])
            continue;
        if (files++)
            fputc('\n', stdout);
        failed += dump_one(argv[i], utf8) != COVCT_EXIT_OK;
    }
    if (!files) {
        fputs(help, stderr);
        return COVCT_EXIT_USAGE;
    }
    return failed ? COVCT_EXIT_FAIL : COVCT_EXIT_OK;
}
