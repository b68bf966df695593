/*
 * dictgen: turn dcmtk's data dictionary text (dicom.dic, a tab-separated
 * transcription of PS3.6 and PS3.7) into a C table for the dicom module.
 *
 *   dictgen dicom.dic dicom-dict-table.c
 *
 * Input lines:  (gggg,eeee)<TAB>VR<TAB>Keyword<TAB>VM<TAB>Version
 * Repeating groups are written (6000-60FF,0010) or with 'x' digits; they
 * become a (tag, mask) pair.  Private-creator entries ("gggg,\"creator\",ee")
 * are skipped: covct shows private tags by number.  Runs at build time only.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned tag, mask;
    char vr[3];
    char keyword[96];
    char vm[16];
} entry;

/* Parse one 4-hex-digit field that may be a range "6000-60FF" or contain
 * 'x' wildcards; gives the base value and the mask of fixed bits. */
static int parse_field(const char *s, size_t n, unsigned *val, unsigned *mask)
{
    *val = 0;
    *mask = 0xFFFF;
    if (n == 9 && s[4] == '-') {
        unsigned lo = 0, hi = 0;
        for (int i = 0; i < 4; i++) {
            if (!isxdigit((unsigned char)s[i]) || !isxdigit((unsigned char)s[5 + i]))
                return -1;
            lo = lo * 16 + (unsigned)(isdigit((unsigned char)s[i]) ? s[i] - '0' : (tolower((unsigned char)s[i]) - 'a' + 10));
            hi = hi * 16 + (unsigned)(isdigit((unsigned char)s[5 + i]) ? s[5 + i] - '0' : (tolower((unsigned char)s[5 + i]) - 'a' + 10));
        }
        /* dcmtk ranges are even groups/elements over a span whose varying
         * bits are the ones that differ between lo and hi, the lowest bit
         * fixed (repeating groups are even only). */
        unsigned diff = lo ^ hi;
        unsigned m = 0xFFFF;
        for (int b = 15; b >= 0; b--)
            if (diff >> b) {
                m = (0xFFFFu << (b + 1)) & 0xFFFF;
                break;
            }
        *val = lo & m;
        *mask = m | 1; /* keep the odd/even bit fixed */
        return 0;
    }
    if (n != 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        *val <<= 4;
        if (c == 'x' || c == 'X') {
            *mask &= ~(0xFu << (4 * (3 - i)));
        } else if (isxdigit((unsigned char)c)) {
            *val |= (unsigned)(isdigit((unsigned char)c) ? c - '0' : tolower((unsigned char)c) - 'a' + 10);
        } else {
            return -1;
        }
    }
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->tag != y->tag)
        return x->tag < y->tag ? -1 : 1;
    return (x->mask > y->mask) - (x->mask < y->mask);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: dictgen dicom.dic out.c\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        perror(argv[1]);
        return 1;
    }
    size_t n = 0, cap = 8192;
    entry *tab = malloc(cap * sizeof *tab);
    char line[1024];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, in)) {
        lineno++;
        if (line[0] != '(')
            continue;
        char *close = strchr(line, ')');
        char *comma = strchr(line, ',');
        if (!close || !comma || comma > close || strchr(line, '"'))
            continue; /* private-creator entries */
        unsigned g, gm, e, em;
        if (parse_field(line + 1, (size_t)(comma - line - 1), &g, &gm) ||
            parse_field(comma + 1, (size_t)(close - comma - 1), &e, &em)) {
            /* dcmtk's "-o-" (odd) and "-u-" (unrestricted) ranges describe
             * private creators and group lengths, which dicom_dict.c
             * handles by rule; anything else is worth a note. */
            if (!strstr(line, "-o-") && !strstr(line, "-u-"))
                fprintf(stderr, "%s:%u: bad tag field, skipped\n", argv[1],
                        lineno);
            continue;
        }
        char *fields[5] = {0};
        char *p = close + 1;
        int nf = 0;
        while (nf < 5 && p && *p) {
            if (*p == '\t')
                p++;
            fields[nf++] = p;
            p = strchr(p, '\t');
            if (p)
                *p = '\0', p++;
        }
        if (nf < 4)
            continue;
        for (int i = 0; i < nf; i++)
            fields[i][strcspn(fields[i], "\r\n")] = '\0';
        if (n == cap) {
            cap *= 2;
            tab = realloc(tab, cap * sizeof *tab);
        }
        entry *en = &tab[n++];
        en->tag = (g << 16) | e;
        en->mask = (gm << 16) | em;
        /* Lower-case pseudo VRs: "ox" (OB or OW), "xs" (US or SS),
         * "lt" (OW or LT), "up" (UL pointer), "na" (items), "px". */
        const char *vr = fields[0];
        if (!strcmp(vr, "ox") || !strcmp(vr, "px") || !strcmp(vr, "lt"))
            vr = "OW";
        /* "xs" stays: US or SS depending on Pixel Representation, which
         * the parser resolves (PS3.5 Annex A.1 note). */
        else if (!strcmp(vr, "up"))
            vr = "UL";
        else if (!strcmp(vr, "na"))
            vr = "--";
        snprintf(en->vr, sizeof en->vr, "%s", vr);
        snprintf(en->keyword, sizeof en->keyword, "%s", fields[1]);
        snprintf(en->vm, sizeof en->vm, "%s", fields[2]);
    }
    fclose(in);
    qsort(tab, n, sizeof *tab, cmp_entry);

    FILE *out = fopen(argv[2], "w");
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    fprintf(out, "/* Generated by tools/dictgen.c from %s. Do not edit. */\n",
            argv[1]);
    fprintf(out, "#include \"dicom/dicom_int.h\"\n\n");
    fprintf(out, "const covct_dcm_dict_entry covct_dcm_dict_table[] = {\n");
    size_t nranges = 0;
    for (size_t i = 0; i < n; i++) {
        const entry *en = &tab[i];
        unsigned vr = en->vr[0] == '-' ? 0 : ((unsigned)en->vr[0] << 8) | (unsigned)en->vr[1];
        fprintf(out, "    {0x%08Xu, 0x%08Xu, 0x%04Xu, \"%s\", \"%s\"},\n",
                en->tag, en->mask, vr, en->keyword, en->vm);
        if (en->mask != 0xFFFFFFFFu)
            nranges++;
    }
    fprintf(out, "};\n\nconst size_t covct_dcm_dict_table_len = %zu;\n", n);
    fclose(out);
    fprintf(stderr, "dictgen: %zu entries (%zu repeating ranges)\n", n, nranges);
    free(tab);
    return 0;
}
