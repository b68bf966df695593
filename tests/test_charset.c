/*
 * Tests of covct_dcm_charset_to_utf8 (src/dicom/dicom-charset.c).
 *
 * Every expected string comes from outside covct:
 *
 *   [pydicom]  pydicom 2.3.1 (Debian python3-pydicom), tests/test_charset.py:
 *              FILE_PATIENT_NAMES, ENCODED_NAMES and the other tests named
 *              in each case.  The raw bytes of the chr*.dcm cases are the
 *              values stored in pydicom's data/charset_files (David Clunie's
 *              SCS* examples), read with pydicom's raw reader.  Those files
 *              are not in ../shared/data, so the bytes are written out here.
 *   [PS3.5]    the examples of DICOM PS3.5 Annexes H, I, J and K (2024e):
 *              both the bytes and the character string.
 *   [dcmtk]    dcmtk 3.6.7 `dcmconv +U8` (glibc iconv) run over the same
 *              bytes while writing these tests gave the same UTF-8 string.
 *              That dcmtk build cannot convert ISO 2022 IR 87/159, so the
 *              Japanese cases have no dcmtk check.
 *   [rule]     no outside decoder to compare with: the rule quoted in the
 *              case (PS3.5 6.1.2.5.3, or covct's documented tolerance) and
 *              a character table (ISO 8859-15, GB 18030) fix the result.
 *
 * pydicom strips trailing spaces and trailing empty component groups from
 * a Person Name; covct leaves both to the caller, so where a stored value
 * ends in a padding space or '=' the expected string keeps it.
 */
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "covct/core.h"
#include "covct/dicom.h"
#include "test.h"

#define FFFD "\xEF\xBF\xBD"

/* "1b 24 42 ..." to bytes; returns the count. */
static size_t unhex(const char *hex, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        int v;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            v = *p - 'A' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            if (n >= cap) {
                fprintf(stderr, "unhex: buffer too small\n");
                exit(2);
            }
            buf[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (hi >= 0) {
        fprintf(stderr, "unhex: odd digit count in %s\n", hex);
        exit(2);
    }
    return n;
}

/* Strict UTF-8 (RFC 3629): no overlongs, surrogates or values > U+10FFFF. */
static bool utf8_valid(const char *str)
{
    const uint8_t *s = (const uint8_t *)str;
    while (*s) {
        uint32_t cp;
        int more;
        if (s[0] < 0x80) {
            s++;
            continue;
        } else if (s[0] >= 0xC2 && s[0] <= 0xDF) {
            cp = s[0] & 0x1Fu;
            more = 1;
        } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
            cp = s[0] & 0x0Fu;
            more = 2;
        } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
            cp = s[0] & 0x07u;
            more = 3;
        } else {
            return false;
        }
        for (int k = 1; k <= more; k++) {
            if ((s[k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[k] & 0x3Fu);
        }
        if ((more == 2 && cp < 0x800) || (more == 3 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        s += more + 1;
    }
    return true;
}

static void print_hex(const char *label, const char *s)
{
    fprintf(stderr, "    %s:", label);
    for (const uint8_t *p = (const uint8_t *)s; *p; p++)
        fprintf(stderr, " %02x", *p);
    fprintf(stderr, "  \"%s\"\n", s);
}

static void check_bytes(const char *what, const char *charset,
                        const uint8_t *in, size_t len, bool is_pn,
                        const char *expected)
{
    char *out = (char *)1;
    covct_error err;
    covct_error_clear(&err);
    covct_rc rc = covct_dcm_charset_to_utf8(charset, in, len, is_pn, &out,
                                            &err);
    CHECKF(rc == COVCT_OK, "%s: rc %d (%s)", what, (int)rc, err.msg);
    if (rc != COVCT_OK)
        return;
    bool same = strcmp(out, expected) == 0;
    CHECKF(same, "%s: wrong decoding", what);
    if (!same) {
        print_hex("got     ", out);
        print_hex("expected", expected);
    }
    CHECKF(utf8_valid(out), "%s: output is not valid UTF-8", what);
    covct_free(out);
}

static void check_hex(const char *what, const char *charset, const char *hex,
                      bool is_pn, const char *expected)
{
    uint8_t buf[512];
    size_t len = unhex(hex, buf, sizeof buf);
    check_bytes(what, charset, buf, len, is_pn, expected);
}

/* ---- pydicom's charset files (FILE_PATIENT_NAMES and friends) ---------- */

typedef struct hex_case {
    const char *what;
    const char *charset; /* raw (0008,0005), padding included */
    bool is_pn;
    const char *hex;
    const char *expected;
} hex_case;

static const hex_case file_cases[] = {
    /* [pydicom] FILE_PATIENT_NAMES, [dcmtk] */
    {"chrArab (0010,0010)", "ISO_IR 127", true,
     "e2 c8 c7 e6 ea 5e e4 e6 d2 c7 d1 20", "قباني^لنزار "},
    {"chrFren (0010,0010)", "ISO_IR 100", true,
     "42 75 63 5e 4a e9 72 f4 6d 65", "Buc^Jérôme"},
    /* [pydicom] test_changed_character_set reads this file; [dcmtk] */
    {"chrFrenMulti (0010,1001)", "ISO_IR 100", true,
     "42 75 63 5e 4a e9 72 f4 6d 65 5c 42 75 63 5e 4a e9 72 f4 6d 65 20",
     "Buc^Jérôme\\Buc^Jérôme "},
    {"chrGerm (0010,0010)", "ISO_IR 100", true,
     "c4 6e 65 61 73 5e 52 fc 64 69 67 65 72 20", "Äneas^Rüdiger "},
    {"chrGreek (0010,0010)", "ISO_IR 126", true,
     "c4 e9 ef ed f5 f3 e9 ef f2 20", "Διονυσιος "},
    /* [pydicom], and [PS3.5] Example H.3.1-1 (same bytes) */
    {"chrH31 (0010,0010)", "\\ISO 2022 IR 87 ", true,
     "59 61 6d 61 64 61 5e 54 61 72 6f 75 3d 1b 24 42 3b 33 45 44 1b 28 42 "
     "5e 1b 24 42 42 40 4f 3a 1b 28 42 3d 1b 24 42 24 64 24 5e 24 40 1b 28 "
     "42 5e 1b 24 42 24 3f 24 6d 24 26 1b 28 42",
     "Yamada^Tarou=山田^太郎=やまだ^たろう"},
    /* [pydicom], and [PS3.5] Example H.3.2-1 */
    {"chrH32 (0010,0010)", "ISO 2022 IR 13\\ISO 2022 IR 87 ", true,
     "d4 cf c0 de 5e c0 db b3 3d 1b 24 42 3b 33 45 44 1b 28 4a 5e 1b 24 42 "
     "42 40 4f 3a 1b 28 4a 3d 1b 24 42 24 64 24 5e 24 40 1b 28 4a 5e 1b 24 "
     "42 24 3f 24 6d 24 26 1b 28 4a",
     "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"},
    {"chrHbrw (0010,0010)", "ISO_IR 138", true,
     "f9 f8 e5 ef 5e e3 e1 e5 f8 e4", "שרון^דבורה"},
    /* [pydicom], [PS3.5] Example I.2-1, [dcmtk] */
    {"chrI2 (0010,0010)", "\\ISO 2022 IR 149", true,
     "48 6f 6e 67 5e 47 69 6c 64 6f 6e 67 3d 1b 24 29 43 fb f3 5e 1b 24 29 "
     "43 d1 ce d4 d7 3d 1b 24 29 43 c8 ab 5e 1b 24 29 43 b1 e6 b5 bf",
     "Hong^Gildong=洪^吉洞=홍^길동"},
    {"chrJapMulti (0010,0010)", "\\ISO 2022 IR 87 ", true,
     "1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 42 24 3f 24 6d 24 26 1b "
     "28 42 20",
     "やまだ^たろう "},
    /* Two values: the '\' between them resets to value 1. */
    {"chrJapMulti (0010,1001)", "\\ISO 2022 IR 87 ", true,
     "1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 42 24 3f 24 6d 24 26 1b "
     "28 42 5c 1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 42 24 3f 24 6d "
     "24 26 1b 28 42 20",
     "やまだ^たろう\\やまだ^たろう "},
    {"chrJapMulti (0010,21B0) LT", "\\ISO 2022 IR 87 ", false,
     "1b 24 42 24 3f 24 6d 24 26 1b 28 42", "たろう"},
    {"chrJapMultiExplicitIR6 (0010,0010)", "ISO 2022 IR 6\\ISO 2022 IR 87",
     true,
     "1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 42 24 3f 24 6d 24 26 1b "
     "28 42 20",
     "やまだ^たろう "},
    {"chrJapMultiExplicitIR6 (0010,1001)", "ISO 2022 IR 6\\ISO 2022 IR 87",
     true,
     "1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 42 24 3f 24 6d 24 26 1b "
     "28 42 5c 1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 42 24 3f 24 6d "
     "24 26 1b 28 42 20",
     "やまだ^たろう\\やまだ^たろう "},
    /* [pydicom], [dcmtk] */
    {"chrKoreanMulti (0010,0010)", "\\ISO 2022 IR 149", true,
     "1b 24 29 43 b1 e8 c8 f1 c1 df 1b 28 42 20", "김희중 "},
    {"chrKoreanMulti (0010,1001)", "\\ISO 2022 IR 149", true,
     "1b 24 29 43 b1 e8 c8 f1 c1 df 1b 28 42 5c 1b 24 29 43 b1 e8 c8 f1 c1 "
     "df 1b 28 42 20",
     "김희중\\김희중 "},
    {"chrKoreanMulti (0010,21B0) LT", "\\ISO 2022 IR 149", false,
     "1b 24 29 43 b1 e8 c8 f1 c1 df 1b 28 42 20", "김희중 "},
    /* The Latin c, e, y and p in this name are really Latin. */
    {"chrRuss (0010,0010)", "ISO_IR 144", true,
     "bb ee da 63 65 dc d1 79 70 d3", "Люкceмбypг"},
    /* [pydicom], [PS3.5] Example J.1-1 (UTF-8), [dcmtk] */
    {"chrX1 (0010,0010)", "ISO_IR 192", true,
     "57 61 6e 67 5e 58 69 61 6f 44 6f 6e 67 3d e7 8e 8b 5e e5 b0 8f e6 9d "
     "b1 3d 20",
     "Wang^XiaoDong=王^小東= "},
    /* [pydicom], [PS3.5] Example J.3-1 (GB18030), [dcmtk] */
    {"chrX2 (0010,0010)", "GB18030 ", true,
     "57 61 6e 67 5e 58 69 61 6f 44 6f 6e 67 3d cd f5 5e d0 a1 b6 ab 3d",
     "Wang^XiaoDong=王^小东="},
    /* [pydicom] test_nested_character_sets: the item's own (0008,0005). */
    {"chrSQEncoding item (0010,0010)", "ISO 2022 IR 13\\ISO 2022 IR 87 ",
     true,
     "d4 cf c0 de 5e c0 db b3 3d 1b 24 42 3b 33 45 44 1b 28 42 5e 1b 24 42 "
     "42 40 4f 3a 1b 28 42 3d 1b 24 42 24 64 24 5e 24 40 1b 28 42 5e 1b 24 "
     "42 24 3f 24 6d 24 26 1b 28 42",
     "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"},
};

/* ---- PS3.5 Annexes J and K ------------------------------------------------ */

static const hex_case annex_cases[] = {
    /* [PS3.5] Example J.2-1, Long Text in UTF-8. */
    {"PS3.5 J.2-1", "ISO_IR 192", false,
     "54 68 65 20 66 69 72 73 74 20 6c 69 6e 65 20 69 6e 63 6c 75 64 65 73 "
     "e4 b8 ad e6 96 87 2e 0d 0a 54 68 65 20 73 65 63 6f 6e 64 20 6c 69 6e "
     "65 20 69 6e 63 6c 75 64 65 73 e4 b8 ad e6 96 87 2c 20 74 6f 6f 2e 0d "
     "0a 54 68 65 20 74 68 69 72 64 20 6c 69 6e 65 2e 0d 0a",
     "The first line includes中文.\r\nThe second line includes中文, too.\r\n"
     "The third line.\r\n"},
    /* [PS3.5] Example J.4-1, Long Text in GB18030; [dcmtk] */
    {"PS3.5 J.4-1", "GB18030", false,
     "54 68 65 20 66 69 72 73 74 20 6c 69 6e 65 20 69 6e 63 6c 75 64 65 73 "
     "d6 d0 ce c4 2e 0d 0a 54 68 65 20 73 65 63 6f 6e 64 20 6c 69 6e 65 20 "
     "69 6e 63 6c 75 64 65 73 d6 d0 ce c4 2c 20 74 6f 6f 2e 0d 0a 54 68 65 "
     "20 74 68 69 72 64 20 6c 69 6e 65 2e 0d 0a",
     "The first line includes中文.\r\nThe second line includes中文, too.\r\n"
     "The third line.\r\n"},
    /* [PS3.5] Annex J: "the specific examples of GB 18030 ... are used to
     * demonstrate the person name and text encoding in both standards"
     * (GB18030 and GBK).  Example J.3-1 read as GBK; [dcmtk] */
    {"PS3.5 J.3-1 as GBK", "GBK", true,
     "57 61 6e 67 5e 58 69 61 6f 44 6f 6e 67 3d cd f5 5e d0 a1 b6 ab 3d",
     "Wang^XiaoDong=王^小东="},
    /* [PS3.5] Example K.2-1, GB2312 in G1, ends in a padding space;
     * [dcmtk] */
    {"PS3.5 K.2-1", "\\ISO 2022 IR 58", true,
     "5a 68 61 6e 67 5e 58 69 61 6f 44 6f 6e 67 3d 1b 24 29 41 d5 c5 5e 1b "
     "24 29 41 d0 a1 b6 ab 3d 20",
     "Zhang^XiaoDong=张^小东= "},
    /* [PS3.5] Example K.3-1 (2024e).  Its character string reads "1)",
     * but its bytes, which covct decodes, are 0x31 0x2e: "1.".  [dcmtk] */
    {"PS3.5 K.3-1", "\\ISO 2022 IR 58", false,
     "31 2e 1b 24 29 41 b5 da d2 bb d0 d0 ce c4 d7 d6 a1 a3 0d 0a "
     "32 2e 1b 24 29 41 b5 da b6 fe d0 d0 ce c4 d7 d6 a1 a3 0d 0a "
     "33 2e 1b 24 29 41 b5 da c8 fd d0 d0 ce c4 d7 d6 a1 a3 0d 0a",
     "1.第一行文字。\r\n2.第二行文字。\r\n3.第三行文字。\r\n"},
    /* [PS3.5] Example K.3-1 as printed in 2015c: an explicit ESC ( B before
     * each CR LF, and a padding space. */
    {"PS3.5 2015c K.3-1", "\\ISO 2022 IR 58", false,
     "31 2e 1b 24 29 41 b5 da d2 bb d0 d0 ce c4 d7 d6 a1 a3 1b 28 42 0d 0a "
     "32 2e 1b 24 29 41 b5 da b6 fe d0 d0 ce c4 d7 d6 a1 a3 1b 28 42 0d 0a "
     "33 2e 1b 24 29 41 b5 da c8 fd d0 d0 ce c4 d7 d6 a1 a3 1b 28 42 0d 0a "
     "20",
     "1.第一行文字。\r\n2.第二行文字。\r\n3.第三行文字。\r\n "},
};

/* ---- pydicom ENCODED_NAMES: single-byte sets as code extensions --------- */

static const hex_case encoded_names[] = {
    /* [pydicom] test_single_byte_code_extensions: charset ['', encoding],
     * value b'ASCII+' + raw.  [dcmtk] for IR 13, 101, 109, 110, 127, 138,
     * 148 and 166 too. */
    {"ENCODED_NAMES IR 13", "\\ISO 2022 IR 13", true,
     "41 53 43 49 49 2b 1b 29 49 d4 cf c0 de 5e 1b 29 49 c0 db b3",
     "ASCII+ﾔﾏﾀﾞ^ﾀﾛｳ"},
    {"ENCODED_NAMES IR 100", "\\ISO 2022 IR 100", true,
     "41 53 43 49 49 2b 1b 2d 41 42 75 63 5e 1b 2d 41 4a e9 72 f4 6d 65",
     "ASCII+Buc^Jérôme"},
    {"ENCODED_NAMES IR 101", "\\ISO 2022 IR 101", true,
     "41 53 43 49 49 2b 1b 2d 42 57 61 b3 ea 73 61", "ASCII+Wałęsa"},
    {"ENCODED_NAMES IR 109", "\\ISO 2022 IR 109", true,
     "41 53 43 49 49 2b 1b 2d 43 61 6e 74 61 fd 6e 6f 6d 6f",
     "ASCII+antaŭnomo"},
    {"ENCODED_NAMES IR 110", "\\ISO 2022 IR 110", true,
     "41 53 43 49 49 2b 1b 2d 44 76 e0 72 64 73", "ASCII+vārds"},
    {"ENCODED_NAMES IR 127", "\\ISO 2022 IR 127", true,
     "41 53 43 49 49 2b 1b 2d 47 e2 c8 c7 e6 ea 5e 1b 2d 47 e4 e6 d2 c7 d1",
     "ASCII+قباني^لنزار"},
    {"ENCODED_NAMES IR 126", "\\ISO 2022 IR 126", true,
     "41 53 43 49 49 2b 1b 2d 46 c4 e9 ef ed f5 f3 e9 ef f2",
     "ASCII+Διονυσιος"},
    {"ENCODED_NAMES IR 138", "\\ISO 2022 IR 138", true,
     "41 53 43 49 49 2b 1b 2d 48 f9 f8 e5 ef 5e 1b 2d 48 e3 e1 e5 f8 e4",
     "ASCII+שרון^דבורה"},
    {"ENCODED_NAMES IR 144", "\\ISO 2022 IR 144", true,
     "41 53 43 49 49 2b 1b 2d 4c bb ee da 63 65 dc d1 79 70 d3",
     "ASCII+Люкceмбypг"},
    {"ENCODED_NAMES IR 148", "\\ISO 2022 IR 148", true,
     "41 53 43 49 49 2b 1b 2d 4d c7 61 76 75 fe 6f f0 6c 75",
     "ASCII+Çavuşoğlu"},
    {"ENCODED_NAMES IR 166", "\\ISO 2022 IR 166", true,
     "41 53 43 49 49 2b 1b 2d 54 b9 d2 c1 ca a1 d8 c5", "ASCII+นามสกุล"},
};

/* ---- other pydicom tests ------------------------------------------------- */

static const hex_case pydicom_cases[] = {
    /* test_missing_escape_for_single_byte_code_extensions: after '^' the
     * state is value 1 again, and the default repertoire reads the
     * katakana bytes as Latin-1. */
    {"pydicom missing escape after ^", "\\ISO 2022 IR 13", true,
     "41 53 43 49 49 2b 1b 29 49 d4 cf c0 de 5e c0 db b3",
     "ASCII+ﾔﾏﾀﾞ^ÀÛ³"},
    /* test_single_byte_multi_charset_personname */
    {"pydicom PN groups", "ISO 2022 IR 100\\ISO 2022 IR 126", true,
     "44 69 6f 6e 79 73 69 6f 73 3d 1b 2d 46 c4 e9 ef ed f5 f3 e9 ef f2",
     "Dionysios=Διονυσιος"},
    /* ... and its multi-valued PN; [dcmtk] */
    {"pydicom PN values", "ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126",
     true,
     "42 75 63 5e 4a e9 72 f4 6d 65 5c 1b 2d 46 c4 e9 ef ed f5 f3 e9 ef f2 "
     "5c 1b 2d 4c bb ee da 63 65 dc d1 79 70 d3",
     "Buc^Jérôme\\Διονυσιος\\Люкceмбypг"},
    /* test_single_byte_multi_charset_text */
    {"pydicom LO switch", "ISO 2022 IR 100\\ISO 2022 IR 126", false,
     "44 69 6f 6e 79 73 69 6f 73 20 69 73 20 1b 2d 46 c4 e9 ef ed f5 f3 e9 "
     "ef f2",
     "Dionysios is Διονυσιος"},
    {"pydicom LO values", "ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126",
     false,
     "42 75 63 5e 4a e9 72 f4 6d 65 5c 1b 2d 46 c4 e9 ef ed f5 f3 e9 ef f2 "
     "5c 1b 2d 4c bb ee da 63 65 dc d1 79 70 d3",
     "Buc^Jérôme\\Διονυσιος\\Люкceмбypг"},
    /* test_multi_charset_default_value */
    {"pydicom value 1 without escape (PN)", "ISO 2022 IR 100\\ISO 2022 IR 144",
     true, "42 75 63 5e 4a e9 72 f4 6d 65", "Buc^Jérôme"},
    {"pydicom value 1 without escape (LO)", "ISO 2022 IR 100\\ISO 2022 IR 144",
     false, "52 f6 6e 74 67 65 6e 61 75 66 6e 61 68 6d 65",
     "Röntgenaufnahme"},
    /* test_code_extensions_not_allowed: UTF-8 ignores later values. */
    {"pydicom UTF-8 with extensions",
     "ISO_IR 192\\ISO 2022 IR 100\\ISO 2022 IR 144", true,
     "42 75 63 5e 4a c3 a9 72 c3 b4 6d 65", "Buc^Jérôme"},
    /* test_patched_charset and test_patched_code_extension_charset:
     * misspelt Defined Terms seen in real files. */
    {"pydicom patched 'ISO IR 192'", "ISO IR 192", true,
     "42 75 63 5e 4a c3 a9 72 c3 b4 6d 65", "Buc^Jérôme"},
    {"pydicom patched 'ISO-IR 144'", "ISO_IR 100\\ISO-IR 144", true,
     "42 75 63 5e 4a e9 72 f4 6d 65", "Buc^Jérôme"},
    {"pydicom patched 'ISO_2022-IR 100'", "ISO_2022-IR 100\\ISO 2022 IR 126",
     true,
     "44 69 6f 6e 79 73 69 6f 73 3d 1b 2d 46 c4 e9 ef ed f5 f3 e9 ef f2",
     "Dionysios=Διονυσιος"},
    {"pydicom patched 'ISO_2022_IR+126'", "ISO 2022 IR 100\\ISO_2022_IR+126",
     true,
     "44 69 6f 6e 79 73 69 6f 73 3d 1b 2d 46 c4 e9 ef ed f5 f3 e9 ef f2",
     "Dionysios=Διονυσιος"},
    /* test_unknown_escape_sequence: a single value without code extensions
     * takes ESC as a plain control character. */
    {"pydicom escape in ISO_IR 100", "ISO_IR 100", true,
     "1b 2d 46 c4 e9 ef ed f5 f3 e9 ef f2", "\x1b-FÄéïíõóéïò"},
    /* test_bad_encoded_single_encoding: each bad byte is one U+FFFD. */
    {"pydicom bad UTF-8", "ISO_IR 192", true,
     "c4 e9 ef ed f5 f3 e9 ef f2",
     FFFD FFFD FFFD FFFD FFFD FFFD FFFD FFFD FFFD},
    /* test_bad_decoded_multi_byte_encoding: high bytes with no G1 set. */
    {"pydicom bad ISO 2022 IR 159", "ISO 2022 IR 159", true,
     "1b 24 28 44 c4 e9 ef ed f5 f3 e9 ef f2",
     FFFD FFFD FFFD FFFD FFFD FFFD FFFD FFFD FFFD},
    /* test_japanese_multi_byte_personname: pydicom's encoder output for
     * "Mori^Ogai=森^鷗外=もり^おうがい" (鷗 is JIS X 0212), decoded back. */
    {"pydicom Mori^Ogai (JIS X 0212)",
     "ISO 2022 IR 6\\ISO 2022 IR 87\\ISO 2022 IR 159", true,
     "4d 6f 72 69 5e 4f 67 61 69 3d 1b 24 42 3f 39 1b 28 42 5e 1b 24 28 44 "
     "6c 3f 1b 24 42 33 30 1b 28 42 3d 1b 24 42 24 62 24 6a 1b 28 42 5e 1b "
     "24 42 24 2a 24 26 24 2c 24 24 1b 28 42",
     "Mori^Ogai=森^鷗外=もり^おうがい"},
    /* test_japanese_multi_byte_encoding: "あaｱア齩", ESC ( J, ESC ) I,
     * ESC $ B and ESC $ ( D in one value. */
    {"pydicom あaｱア齩", "ISO 2022 IR 13\\ISO 2022 IR 87\\ISO 2022 IR 159",
     false,
     "1b 24 42 24 22 1b 28 4a 61 1b 29 49 b1 1b 24 42 25 22 1b 24 28 44 6d "
     "4e 1b 28 4a",
     "あaｱア齩"},
    /* test_invalid_character_set, test_invalid_second_encoding: unknown
     * terms fall back to the default repertoire. */
    {"pydicom unknown term", "UNSUPPORTED", true,
     "43 6f 6d 70 72 65 73 73 65 64 53 61 6d 70 6c 65 73 5e 43 54 31",
     "CompressedSamples^CT1"},
    {"pydicom unknown second term", "ISO 2022 IR 100\\ISO 2022 IR 146", true,
     "43 49 54 49 5a 45 4e", "CITIZEN"},
};

/* ---- state resets and tolerance ------------------------------------------ */

static const hex_case rule_cases[] = {
    /* PS3.5 6.1.2.5.3: '^' and '=' reset a Person Name to value 1 (Latin-1
     * here); in other VRs they are ordinary.  [pydicom] decode_bytes and
     * [dcmtk] agree. */
    {"reset at ^ in PN", "ISO 2022 IR 100\\ISO 2022 IR 126", true,
     "1b 2d 46 c4 e9 5e c4 e9", "Δι^Äé"},
    {"no reset at ^ in LT", "ISO 2022 IR 100\\ISO 2022 IR 126", false,
     "1b 2d 46 c4 e9 5e c4 e9", "Δι^Δι"},
    {"reset at CR in LT", "ISO 2022 IR 100\\ISO 2022 IR 126", false,
     "1b 2d 46 c4 e9 0d c4 e9", "Δι\rÄé"},
    {"reset at TAB in LT", "ISO 2022 IR 100\\ISO 2022 IR 126", false,
     "1b 2d 46 c4 e9 09 c4 e9", "Δι\tÄé"},
    {"reset at FF in LT", "ISO 2022 IR 100\\ISO 2022 IR 126", false,
     "1b 2d 46 c4 e9 0c c4 e9", "Δι\fÄé"},
    /* [pydicom]: after CR LF, KS X 1001 is no longer in G1; value 1 is
     * the default repertoire, read as Latin-1. */
    {"reset of G1 at CR LF", "\\ISO 2022 IR 149", false,
     "1b 24 29 43 b1 e8 c8 f1 c1 df 0d 0a b1 e8", "김희중\r\n±è"},
    /* [rule] PS3.5 6.1.2.5.3 makes the writer return G0 to ASCII before
     * CR LF; this value forgets to, and covct resets anyway, as dcmtk's
     * DcmSpecificCharacterSet does.  (pydicom keeps JIS X 0208 and reads
     * "ab" as one kanji.) */
    {"reset of G0 at CR LF", "\\ISO 2022 IR 87", false,
     "1b 24 42 24 64 24 5e 24 40 0d 0a 61 62", "やまだ\r\nab"},
    /* Inside JIS X 0208, 0x5E and 0x5C are halves of characters
     * (や is 24 64, ま is 24 5E): chrH31 above relies on it. */
    {"'^' inside a JIS X 0208 pair", "\\ISO 2022 IR 87", true,
     "1b 24 42 24 5e 1b 28 42", "ま"},
    /* [pydicom] single values of Table C.12-2. */
    {"ISO_IR 166", "ISO_IR 166", false, "b9 d2 c1 ca a1 d8 c5", "นามสกุล"},
    {"ISO_IR 13", "ISO_IR 13", true, "d4 cf c0 de 5e c0 db b3", "ﾔﾏﾀﾞ^ﾀﾛｳ"},
    /* [pydicom] a misspelt "ISO_IR 58" without escapes, as some Chinese
     * systems write: GB2312 is in G1 from the start. */
    {"misspelt ISO_IR 58", "ISO_IR 58", true, "d5 c5", "张"},
    /* [rule] ISO 8859-15 (ISO-IR 203, PS3.3 Table C.12-2 since 2019):
     * A4 EURO SIGN, A6 S WITH CARON, BD LIGATURE OE (Python's iso8859_15
     * codec agrees).  Neither pydicom 2.3.1 nor dcmtk 3.6.7 knows the
     * term. */
    {"ISO_IR 203", "ISO_IR 203", false, "a4 20 a6 bd", "€ Šœ"},
    {"ISO 2022 IR 203", "\\ISO 2022 IR 203", false, "1b 2d 62 a4", "€"},
    /* [rule] GB 18030 four-byte sequences (not in GBK): U+00DE is
     * 81 30 89 37 in the GB 18030 mapping table, and U+20000 is
     * 95 32 82 36 by the standard's linear formula
     * (0x20000 - 0x10000 + 189000 = 254536 -> 95 32 82 36); Python's
     * gb18030 codec agrees. */
    {"GB18030 four-byte", "GB18030", false, "81 30 89 37 95 32 82 36",
     "Þ\xF0\xA0\x80\x80"},
    /* In GB18030 the trail byte of a character can be '\' (0x5C): 乗 is
     * 81 5C (Python's gb18030 codec, which pydicom uses).  The value is
     * one run, never split there. */
    {"GB18030 trail byte 0x5C", "GB18030", true, "81 5c", "乗"},

    /* Default repertoire: ASCII, and Latin-1 for stray high bytes.
     * [pydicom] default_encoding 'iso8859'. */
    {"empty charset, ASCII", "", true, "44 6f 65 5e 4a 6f 68 6e",
     "Doe^John"},
    {"ISO_IR 6", "ISO_IR 6", true, "44 6f 65 5e 4a 6f 68 6e", "Doe^John"},
    {"empty charset, high bytes", "", true,
     "42 75 63 5e 4a e9 72 f4 6d 65", "Buc^Jérôme"},
    {"blank charset", "   ", true, "42 75 63 5e 4a e9 72 f4 6d 65",
     "Buc^Jérôme"},
    {"unknown term", "ISO_IR 999", true, "42 75 63 5e 4a e9 72 f4 6d 65",
     "Buc^Jérôme"},
    /* Padding is the caller's to trim. */
    {"trailing spaces kept", "", false, "41 42 43 20 20 20", "ABC   "},
    {"trailing spaces kept (UTF-8)", "ISO_IR 192", false, "e7 8e 8b 20 20",
     "王  "},

    /* Invalid input: U+FFFD, never a failure.  [pydicom] for the first
     * two; [rule] (covct replaces per byte or per character where pydicom
     * gives up on the whole value) for the rest. */
    {"unassigned ISO 8859-8 byte", "ISO_IR 138", false, "a1 f9", FFFD "ש"},
    {"truncated GB18030", "GB18030", true, "57 61 6e 67 cd",
     "Wang" FFFD},
    {"odd KS X 1001 byte", "\\ISO 2022 IR 149", true,
     "1b 24 29 43 b1 e8 c8", "김" FFFD},
    {"odd JIS X 0208 byte", "\\ISO 2022 IR 87", true,
     "1b 24 42 24 64 24 1b 28 42 61", "や" FFFD "a"},
    /* JIS X 0208 row 15 and JIS X 0212 row 1 are empty: one U+FFFD per
     * two-byte character, as Python's iso2022_jp_2 codec gives.  JIS X 0212
     * 30 21 is U+4E02 (Python's euc_jp codec on 8F B0 A1). */
    {"unassigned JIS X 0208 pair", "\\ISO 2022 IR 87", true,
     "1b 24 42 2f 21 24 64 1b 28 42", FFFD "や"},
    {"unassigned JIS X 0212 pair", "\\ISO 2022 IR 159", true,
     "1b 24 28 44 21 21 30 21 1b 28 42", FFFD "丂"},
    {"unknown escape", "\\ISO 2022 IR 100", true,
     "61 1b 24 29 5a 62", "a" FFFD "b"},
    {"lone ESC at the end", "\\ISO 2022 IR 100", true, "61 1b", "a" FFFD},
    {"ESC without a final byte", "\\ISO 2022 IR 100", true,
     "61 1b 24 29 0d 62", "a" FFFD "$)\rb"},
    {"half-width katakana range", "ISO_IR 13", false, "a0 a1 df e0",
     FFFD "｡ﾟ" FFFD},
};

static void run_table(const hex_case *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_hex(t[i].what, t[i].charset, t[i].hex, t[i].is_pn,
                  t[i].expected);
}

/* ---- round trips through glibc's encoders -------------------------------
 * Weaker than the cases above (iconv on both sides), but they cover many
 * more characters: the whole of a text in each multi-byte set. */
static size_t encode(const char *to, const char *utf8, uint8_t *buf,
                     size_t cap)
{
    iconv_t cd = iconv_open(to, "UTF-8");
    if (cd == (iconv_t)-1) {
        fprintf(stderr, "iconv_open(%s) failed\n", to);
        exit(2);
    }
    char *in = (char *)(uintptr_t)utf8;
    size_t inleft = strlen(utf8);
    char *out = (char *)buf;
    size_t outleft = cap;
    size_t r = iconv(cd, &in, &inleft, &out, &outleft);
    iconv_close(cd);
    if (r == (size_t)-1) {
        fprintf(stderr, "iconv to %s failed\n", to);
        exit(2);
    }
    return cap - outleft;
}

static void test_round_trips(void)
{
    static const char chinese[] =
        "患者姓名^王小东=王^小东 胸部CT平扫：双肺多发磨玻璃影，考虑病毒性肺炎。"
        "新型冠状病毒 COVID-19 核酸检测阳性。𠀀𪚥 Þ é €";
    static const char korean[] = "홍길동 흉부 CT: 양측 폐에 간유리 음영.";
    static const char japanese_g1[] = "胸部ＣＴ：両肺にすりガラス影。";
    uint8_t buf[1024];
    size_t n;

    /* GB18030 covers all of Unicode, including U+20000 and U+2A6A5. */
    n = encode("GB18030", chinese, buf, sizeof buf);
    check_bytes("round trip GB18030", "GB18030", buf, n, false, chinese);

    /* GBK: the BMP part of the Chinese text. */
    static const char chinese_bmp[] =
        "患者姓名^王小东=王^小东 胸部CT平扫：双肺多发磨玻璃影，考虑病毒性肺炎。";
    n = encode("GBK", chinese_bmp, buf, sizeof buf);
    check_bytes("round trip GBK", "GBK", buf, n, false, chinese_bmp);

    /* GB2312 and KS X 1001 in G1 after their escape sequences. */
    static const char esc_gb[] = "\x1b$)A";
    memcpy(buf, esc_gb, 4);
    n = 4 + encode("GB2312", "胸部平扫：双肺多发磨玻璃影。", buf + 4,
                   sizeof buf - 4);
    check_bytes("round trip ISO 2022 IR 58", "\\ISO 2022 IR 58", buf, n,
                false, "胸部平扫：双肺多发磨玻璃影。");

    static const char esc_kr[] = "\x1b$)C";
    memcpy(buf, esc_kr, 4);
    n = 4 + encode("EUC-KR", korean, buf + 4, sizeof buf - 4);
    check_bytes("round trip ISO 2022 IR 149", "\\ISO 2022 IR 149", buf, n,
                false, korean);

    /* ISO-2022-JP from glibc's encoder is exactly PS3.5's use of ESC $ B
     * and ESC ( B. */
    n = encode("ISO-2022-JP", japanese_g1, buf, sizeof buf);
    check_bytes("round trip ISO 2022 IR 87", "\\ISO 2022 IR 87", buf, n,
                false, japanese_g1);
}

/* ---- arguments, allocation, robustness ------------------------------------ */

static void test_arguments(void)
{
    char *out = (char *)1;
    covct_error err;

    /* Empty input, with or without a pointer. */
    covct_error_clear(&err);
    CHECK(covct_dcm_charset_to_utf8(NULL, NULL, 0, true, &out, &err) ==
          COVCT_OK);
    CHECK(out && out[0] == '\0');
    covct_free(out);
    out = (char *)1;
    CHECK(covct_dcm_charset_to_utf8("ISO_IR 192", (const uint8_t *)"x", 0,
                                    false, &out, &err) == COVCT_OK);
    CHECK(out && out[0] == '\0');
    covct_free(out);

    /* NULL charset is the default repertoire. */
    check_bytes("NULL charset", NULL, (const uint8_t *)"Doe^John", 8, true,
                "Doe^John");

    /* NULL input with a length is a caller bug. */
    out = (char *)1;
    covct_error_clear(&err);
    CHECK(covct_dcm_charset_to_utf8("", NULL, 5, true, &out, &err) ==
          COVCT_ERR_ARG);
    CHECK(out == NULL);
    CHECK(err.rc == COVCT_ERR_ARG && err.msg[0] != '\0');

    covct_error_clear(&err);
    CHECK(covct_dcm_charset_to_utf8("", (const uint8_t *)"a", 1, true, NULL,
                                    &err) == COVCT_ERR_ARG);

    /* err may be NULL. */
    CHECK(covct_dcm_charset_to_utf8("", NULL, 5, true, &out, NULL) ==
          COVCT_ERR_ARG);
}

static void test_allocation_failure(void)
{
    char *out = (char *)1;
    covct_error err;
    covct_error_clear(&err);
    covct_alloc_fail_at(1);
    covct_rc rc = covct_dcm_charset_to_utf8(
        "ISO_IR 100", (const uint8_t *)"Buc^J\xe9r\xf4me", 10, true, &out,
        &err);
    covct_alloc_fail_at(0);
    CHECK(rc == COVCT_ERR_NOMEM);
    CHECK(out == NULL);
    CHECK(err.rc == COVCT_ERR_NOMEM);

    /* The second allocation gives back the worst-case slack; when it fails
     * the result is still right. */
    char text[101];
    memset(text, 'a', 100);
    text[100] = '\0';
    covct_error_clear(&err);
    covct_alloc_fail_at(2);
    rc = covct_dcm_charset_to_utf8("", (const uint8_t *)text, 100, false,
                                   &out, &err);
    covct_alloc_fail_at(0);
    CHECK(rc == COVCT_OK);
    CHECK(rc == COVCT_OK && strcmp(out, text) == 0);
    if (rc == COVCT_OK)
        covct_free(out);
}

/* Worst cases for the output bound: every byte U+FFFD. */
static void test_worst_case(void)
{
    static const char *const charsets[] = {
        "ISO_IR 192", "GB18030", "GBK", "\\ISO 2022 IR 149",
        "\\ISO 2022 IR 58", "ISO 2022 IR 159", "ISO_IR 13", "ISO_IR 138",
        "\\ISO 2022 IR 87",
    };
    uint8_t in[301];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (i % 3 == 2) ? 0x1B : 0xFF;
    for (size_t c = 0; c < sizeof charsets / sizeof charsets[0]; c++) {
        char *out = NULL;
        covct_error err;
        covct_error_clear(&err);
        covct_rc rc = covct_dcm_charset_to_utf8(charsets[c], in, sizeof in,
                                                false, &out, &err);
        CHECKF(rc == COVCT_OK, "worst case %s: %s", charsets[c], err.msg);
        if (rc == COVCT_OK) {
            CHECKF(utf8_valid(out), "worst case %s: bad UTF-8", charsets[c]);
            CHECK(strlen(out) <= 4 * sizeof in);
            covct_free(out);
        }
    }
}

/* Random values over a hostile alphabet (escape sequence pieces,
 * delimiters, high bytes): every call must succeed with valid UTF-8 and
 * stay inside the bound.  Run under ASan and UBSan. */
static void test_random(void)
{
    static const char *const charsets[] = {
        NULL, "", "ISO_IR 100", "ISO_IR 192", "GB18030", "GBK", "ISO_IR 13",
        "ISO_IR 166", "\\ISO 2022 IR 87", "\\ISO 2022 IR 149",
        "\\ISO 2022 IR 58", "ISO 2022 IR 13\\ISO 2022 IR 87",
        "ISO 2022 IR 6\\ISO 2022 IR 87\\ISO 2022 IR 159",
        "ISO 2022 IR 100\\ISO 2022 IR 144\\ISO 2022 IR 126",
        "ISO 2022 IR 159", "ISO_IR 58", "junk\\ISO 2022 IR 149",
    };
    static const uint8_t alphabet[] = {
        0x1B, 0x1B, '$', '(', ')', '-', 'B', 'A', 'C', 'D', 'I', 'J', 'F',
        'L', '@', '^', '=', '\\', '\r', '\n', ' ', 'a', '!', '~', 0x21, 0x30,
        0x7E, 0x7F, 0x80, 0x8F, 0xA1, 0xB0, 0xC4, 0xDF, 0xE0, 0xFE, 0xFF,
    };
    uint64_t x = 0x9E3779B97F4A7C15u;
    int failures = 0;
    for (int iter = 0; iter < 20000 && failures < 5; iter++) {
        uint8_t in[64];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t len = (size_t)(x % (sizeof in + 1));
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            in[i] = alphabet[x % sizeof alphabet];
        }
        const char *cs = charsets[(size_t)iter % (sizeof charsets /
                                                  sizeof charsets[0])];
        char *out = NULL;
        covct_rc rc = covct_dcm_charset_to_utf8(cs, in, len, iter & 1, &out,
                                                NULL);
        bool ok = rc == COVCT_OK && out && utf8_valid(out) &&
                  strlen(out) <= 4 * len;
        if (!ok) {
            failures++;
            fprintf(stderr, "random case %d (%s, %zu bytes) failed\n", iter,
                    cs ? cs : "NULL", len);
        }
        covct_free(out);
    }
    CHECK(failures == 0);
}

int main(void)
{
    covct_log_set_level(COVCT_LOG_ERROR);
    run_table(file_cases, sizeof file_cases / sizeof file_cases[0]);
    run_table(annex_cases, sizeof annex_cases / sizeof annex_cases[0]);
    run_table(encoded_names, sizeof encoded_names / sizeof encoded_names[0]);
    run_table(pydicom_cases, sizeof pydicom_cases / sizeof pydicom_cases[0]);
    run_table(rule_cases, sizeof rule_cases / sizeof rule_cases[0]);
    test_round_trips();
    test_arguments();
    test_allocation_failure();
    test_worst_case();
    test_random();
    return test_report();
}
