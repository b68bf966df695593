/* PS3.6 data dictionary lookups over the table generated at build time by
 * tools/dictgen.c, and the VR rules of PS3.5 Section 6.2. */
#include <string.h>

#include "dicom/dicom_int.h"

const covct_dcm_dict_entry *covct_dcm_dict_lookup(uint32_t tag)
{
    /* The table is sorted by tag; plain tags are found by bisection. */
    size_t lo = 0, hi = covct_dcm_dict_table_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const covct_dcm_dict_entry *e = &covct_dcm_dict_table[mid];
        if (e->tag < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < covct_dcm_dict_table_len &&
                        covct_dcm_dict_table[i].tag == tag;
         i++)
        if (covct_dcm_dict_table[i].tag_mask == 0xFFFFFFFFu)
            return &covct_dcm_dict_table[i];
    /* Repeating groups (50xx, 60xx overlays, 7Fxx): 72 entries, scan. */
    uint16_t g = COVCT_TAG_GROUP(tag);
    if ((g >= 0x5000 && g <= 0x60FF) || (g >= 0x7F00 && g <= 0x7FFF) ||
        g == 0x1000 || g == 0x0028 || g == 0x0020) {
        for (size_t i = 0; i < covct_dcm_dict_table_len; i++) {
            const covct_dcm_dict_entry *e = &covct_dcm_dict_table[i];
            if (e->tag_mask != 0xFFFFFFFFu && (tag & e->tag_mask) == e->tag)
                return e;
        }
    }
    return NULL;
}

uint32_t covct_dcm_dict_tag(const char *keyword)
{
    for (size_t i = 0; i < covct_dcm_dict_table_len; i++)
        if (covct_dcm_dict_table[i].tag_mask == 0xFFFFFFFFu &&
            strcmp(covct_dcm_dict_table[i].keyword, keyword) == 0)
            return covct_dcm_dict_table[i].tag;
    return 0;
}

uint16_t covct_dcm_dict_vr(uint32_t tag)
{
    uint16_t g = COVCT_TAG_GROUP(tag), el = COVCT_TAG_ELEM(tag);
    if (el == 0x0000)
        return COVCT_VR('U', 'L'); /* group length */
    if (g & 1) {
        /* PS3.5 7.8.1: (gggg,0010-00FF) in odd groups are Private Creator
         * Data Elements, VR LO. */
        if (el >= 0x0010 && el <= 0x00FF)
            return COVCT_VR('L', 'O');
        return COVCT_VR('U', 'N');
    }
    const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
    if (d && d->vr == COVCT_VR('x', 's'))
        return COVCT_VR('U', 'S');
    if (d && d->vr)
        return d->vr;
    return COVCT_VR('U', 'N');
}

uint16_t covct_dcm_dict_vr_in(uint32_t tag, const covct_dcm_dataset *ds)
{
    const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
    if (d && d->vr == COVCT_VR('x', 's') && ds) {
        /* US or SS: SS when the pixels are signed (PS3.5 A.1 note). */
        int64_t rep = 0;
        if (covct_dcm_get_int(ds, COVCT_TAG(0x0028, 0x0103), 0, &rep, NULL) ==
                COVCT_OK &&
            rep == 1)
            return COVCT_VR('S', 'S');
        return COVCT_VR('U', 'S');
    }
    return covct_dcm_dict_vr(tag);
}

static const uint16_t known_vrs[] = {
    COVCT_VR('A', 'E'), COVCT_VR('A', 'S'), COVCT_VR('A', 'T'),
    COVCT_VR('C', 'S'), COVCT_VR('D', 'A'), COVCT_VR('D', 'S'),
    COVCT_VR('D', 'T'), COVCT_VR('F', 'D'), COVCT_VR('F', 'L'),
    COVCT_VR('I', 'S'), COVCT_VR('L', 'O'), COVCT_VR('L', 'T'),
    COVCT_VR('O', 'B'), COVCT_VR('O', 'D'), COVCT_VR('O', 'F'),
    COVCT_VR('O', 'L'), COVCT_VR('O', 'V'), COVCT_VR('O', 'W'),
    COVCT_VR('P', 'N'), COVCT_VR('S', 'H'), COVCT_VR('S', 'L'),
    COVCT_VR('S', 'Q'), COVCT_VR('S', 'S'), COVCT_VR('S', 'T'),
    COVCT_VR('S', 'V'), COVCT_VR('T', 'M'), COVCT_VR('U', 'C'),
    COVCT_VR('U', 'I'), COVCT_VR('U', 'L'), COVCT_VR('U', 'N'),
    COVCT_VR('U', 'R'), COVCT_VR('U', 'S'), COVCT_VR('U', 'T'),
    COVCT_VR('U', 'V'),
};

bool covct_dcm_vr_is_known(uint16_t vr)
{
    for (size_t i = 0; i < sizeof known_vrs / sizeof known_vrs[0]; i++)
        if (known_vrs[i] == vr)
            return true;
    return false;
}

bool covct_dcm_vr_long_header(uint16_t vr)
{
    switch (vr) {
    case COVCT_VR('O', 'B'): case COVCT_VR('O', 'D'): case COVCT_VR('O', 'F'):
    case COVCT_VR('O', 'L'): case COVCT_VR('O', 'V'): case COVCT_VR('O', 'W'):
    case COVCT_VR('S', 'Q'): case COVCT_VR('S', 'V'): case COVCT_VR('U', 'C'):
    case COVCT_VR('U', 'N'): case COVCT_VR('U', 'R'): case COVCT_VR('U', 'T'):
    case COVCT_VR('U', 'V'):
        return true;
    default:
        return false;
    }
}

bool covct_dcm_vr_is_string(uint16_t vr)
{
    switch (vr) {
    case COVCT_VR('A', 'E'): case COVCT_VR('A', 'S'): case COVCT_VR('C', 'S'):
    case COVCT_VR('D', 'A'): case COVCT_VR('D', 'S'): case COVCT_VR('D', 'T'):
    case COVCT_VR('I', 'S'): case COVCT_VR('L', 'O'): case COVCT_VR('L', 'T'):
    case COVCT_VR('P', 'N'): case COVCT_VR('S', 'H'): case COVCT_VR('S', 'T'):
    case COVCT_VR('T', 'M'): case COVCT_VR('U', 'C'): case COVCT_VR('U', 'I'):
    case COVCT_VR('U', 'R'): case COVCT_VR('U', 'T'):
        return true;
    default:
        return false;
    }
}

const char *covct_dcm_vr_str(uint16_t vr, char buf[3])
{
    if (vr == COVCT_VR_NONE) {
        buf[0] = buf[1] = '-';
    } else {
        buf[0] = (char)(vr >> 8);
        buf[1] = (char)(vr & 0xFF);
    }
    buf[2] = '\0';
    return buf;
}

static const struct {
    const char *uid, *name;
    bool decodable;
} ts_table[] = {
    {COVCT_TS_IMPLICIT_LE, "Implicit VR Little Endian", true},
    {COVCT_TS_EXPLICIT_LE, "Explicit VR Little Endian", true},
    {COVCT_TS_DEFLATED_LE, "Deflated Explicit VR Little Endian", true},
    {COVCT_TS_EXPLICIT_BE, "Explicit VR Big Endian (retired)", true},
    {COVCT_TS_JPEG_BASELINE, "JPEG Baseline (Process 1)", true},
    {COVCT_TS_JPEG_EXTENDED, "JPEG Extended (Process 2 & 4)", true},
    {COVCT_TS_JPEG_LOSSLESS, "JPEG Lossless, Non-Hierarchical (Process 14)", true},
    {COVCT_TS_JPEG_LOSSLESS_SV1, "JPEG Lossless, First-Order Prediction (Process 14, SV1)", true},
    {COVCT_TS_JPEGLS_LOSSLESS, "JPEG-LS Lossless", true},
    {COVCT_TS_JPEGLS_NEAR, "JPEG-LS Lossy (Near-Lossless)", true},
    {COVCT_TS_J2K_LOSSLESS, "JPEG 2000 (Lossless Only)", true},
    {COVCT_TS_J2K, "JPEG 2000", true},
    {COVCT_TS_RLE, "RLE Lossless", true},
    {COVCT_TS_DEFLATED_IMAGE, "Deflated Image Frame Compression", true},
    {"1.2.840.10008.1.2.4.52", "JPEG Extended (Process 3 & 5) (retired)", false},
    {"1.2.840.10008.1.2.4.53", "JPEG Spectral Selection (retired)", false},
    {"1.2.840.10008.1.2.4.55", "JPEG Full Progression (retired)", false},
    {"1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component (Lossless Only)", false},
    {"1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component", false},
    {"1.2.840.10008.1.2.4.94", "JPIP Referenced", false},
    {"1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", false},
    {"1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", false},
    {"1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", false},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile", false},
    {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile", false},
    {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile for 2D Video", false},
    {"1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile for 3D Video", false},
    {"1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile", false},
    {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile", false},
    {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile", false},
    {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 (Lossless Only)", false},
    {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL (Lossless Only)", false},
    {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000", false},
    {"1.2.840.10008.1.2.6.1", "RFC 2557 MIME encapsulation (retired)", false},
    {"1.2.840.10008.1.2.6.2", "XML Encoding (retired)", false},
};

const char *covct_dcm_ts_name(const char *uid)
{
    for (size_t i = 0; i < sizeof ts_table / sizeof ts_table[0]; i++)
        if (strcmp(ts_table[i].uid, uid) == 0)
            return ts_table[i].name;
    return NULL;
}

bool covct_dcm_ts_decodable(const char *uid)
{
    for (size_t i = 0; i < sizeof ts_table / sizeof ts_table[0]; i++)
        if (strcmp(ts_table[i].uid, uid) == 0)
            return ts_table[i].decodable;
    return false;
}
