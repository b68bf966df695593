/*
 * The analysis as standard DICOM objects of the source study, for a PACS
 * and any viewer (docs/internals/dicom-results.md):
 *
 *   seg.dcm     Segmentation Storage (PS3.3 A.51), BINARY, the nine
 *               segments with SNOMED CT property codes;
 *   sr.dcm      Comprehensive SR (PS3.3 A.35.3) following TID 1500
 *               Measurement Report (PS3.16), groups TID 1411 (one per
 *               segment) and TID 1501 (the whole lungs);
 *   key-NN.dcm  Secondary Capture Image Storage (PS3.3 A.8.1), the key
 *               images of the report with a banner burned in.
 *
 * Everything is built with the data set API of include/covct/dicom.h and
 * written in explicit VR little endian.  Text is UTF-8 (ISO_IR 192); the
 * patient and study attributes copied from the source are converted from
 * the source's character set.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "covct/dicom.h"
#include "report/report_int.h"

#define T(g, e) COVCT_TAG(g, e)

#define SEG_SOP_CLASS "1.2.840.10008.5.1.4.1.1.66.4"
#define SR_SOP_CLASS "1.2.840.10008.5.1.4.1.1.88.33"
#define SC_SOP_CLASS "1.2.840.10008.5.1.4.1.1.7"

/* Series Numbers of the three result series: high, so that they sort after
 * the scanner's own series in a PACS's series list. */
enum { SEG_SERIES_NO = 9001, SR_SERIES_NO = 9002, SC_SERIES_NO = 9003 };

/* The banner burned into every key image (Burned In Annotation YES). */
#define BANNER_TEXT "AI RESULT - TO BE CONFIRMED BY A RADIOLOGIST"

/* Private coding scheme for the concepts no standard terminology has
 * (PS3.16 8.2: a designator beginning with "99"). */
#define PRIV "99COVCT"

typedef struct code {
    const char *value, *scheme, *meaning;
} code;

/* ---- codes -----------------------------------------------------------------
 * SNOMED CT and DICOM (DCM) codes from PS3.16; see the documentation for
 * where each comes from. */
static const code C_ANATOMY = {"91723000", "SCT", "Anatomical Structure"};
static const code C_MORPH = {"49755003", "SCT",
                             "Morphologically Abnormal Structure"};
static const code C_LUNG = {"39607008", "SCT", "Lung"};
static const code C_THORAX = {"51185008", "SCT", "Thoracic structure"};
static const code C_RLUNG = {"3341006", "SCT", "Right lung"};
static const code C_LLUNG = {"44029006", "SCT", "Left lung"};
static const code C_LUL = {"44714003", "SCT", "Upper lobe of left lung"};
static const code C_LLL = {"41224006", "SCT", "Lower lobe of left lung"};
static const code C_RUL = {"42400003", "SCT", "Upper lobe of right lung"};
static const code C_RML = {"72481006", "SCT", "Middle lobe of right lung"};
static const code C_RLL = {"266005", "SCT", "Lower lobe of right lung"};
static const code C_GGO = {"1217294009", "SCT", "Ground glass opacity"};
static const code C_CONS = {"95436008", "SCT", "Lung consolidation"};

static const code C_SEGMENTATION = {"113076", "DCM", "Segmentation"};
static const code C_SOURCE_IMAGE = {
    "121322", "DCM", "Source image for image processing operation"};
static const code C_MPR = {"113072", "DCM", "Multiplanar reformatting"};
static const code C_AI = {"123110", "DCM", "Artificial Intelligence"};
static const code C_MORPH_OPS = {"123104", "DCM", "Morphological Operations"};
static const code C_MULTISCALE = {"123106", "DCM",
                                  "Multi-Scale/Resolution Filtering"};

static const code C_REPORT = {"126000", "DCM", "Imaging Measurement Report"};
static const code C_LANGUAGE = {"121049", "DCM",
                                "Language of Content Item and Descendants"};
static const code C_EN_US = {"en-US", "RFC5646", "English (US)"};
static const code C_OBSERVER_TYPE = {"121005", "DCM", "Observer Type"};
static const code C_DEVICE = {"121007", "DCM", "Device"};
static const code C_DEVICE_UID = {"121012", "DCM", "Device Observer UID"};
static const code C_DEVICE_NAME = {"121013", "DCM", "Device Observer Name"};
static const code C_DEVICE_MAKER = {"121014", "DCM",
                                    "Device Observer Manufacturer"};
static const code C_DEVICE_MODEL = {"121015", "DCM",
                                    "Device Observer Model Name"};
static const code C_PROCEDURE = {"121058", "DCM", "Procedure reported"};
static const code C_CT_CHEST = {"24627-2", "LN", "CT Chest"};
static const code C_IMAGE_LIBRARY = {"111028", "DCM", "Image Library"};
static const code C_IMAGE_LIBRARY_GROUP = {"126200", "DCM",
                                           "Image Library Group"};
static const code C_MEASUREMENTS = {"126010", "DCM", "Imaging Measurements"};
static const code C_GROUP = {"125007", "DCM", "Measurement Group"};
static const code C_TRACKING_ID = {"112039", "DCM", "Tracking Identifier"};
static const code C_TRACKING_UID = {"112040", "DCM",
                                    "Tracking Unique Identifier"};
static const code C_FINDING = {"121071", "DCM", "Finding"};
static const code C_REF_SEGMENT = {"121191", "DCM", "Referenced Segment"};
static const code C_SOURCE_SERIES = {"121232", "DCM",
                                     "Source series for segmentation"};
static const code C_FINDING_SITE = {"363698007", "SCT", "Finding Site"};
static const code C_VOLUME = {"118565006", "SCT", "Volume"};
static const code C_QUALITATIVE = {"C0034375", "UMLS",
                                   "Qualitative Evaluations"};
static const code C_COMMENT = {"121106", "DCM", "Comment"};
static const code C_YES = {"373066001", "SCT", "Yes"};
static const code C_NO = {"373067005", "SCT", "No"};

/* UCUM units. */
static const code U_ML = {"ml", "UCUM", "ml"};
static const code U_PCT = {"%", "UCUM", "%"};
static const code U_SCORE = {"{score}", "UCUM", "score"};
static const code U_COUNT = {"{lobes}", "UCUM", "lobes"};

/* Private concepts (docs/internals/dicom-results.md lists them). */
static const code P_OPACITY_VOL = {"OPACVOL", PRIV,
                                   "Opacity volume (ground glass and "
                                   "consolidation)"};
static const code P_GGO_VOL = {"GGOVOL", PRIV, "Ground glass opacity volume"};
/* Dense tissue behind the lungs (docs/internals/lungs.md): no standard code
 * names "consolidation or pleural effusion, outside the lung mask". */
static const code P_DENSE_BEHIND = {"DENSEBEH", PRIV,
                                    "Dense tissue behind the lungs"};
static const code P_CONS_VOL = {"CONSVOL", PRIV, "Consolidation volume"};
static const code P_INVOLVED = {"INVPCT", PRIV,
                                "Percentage of volume with opacity"};
static const code P_LOBE_SCORE = {"CTSSLOBE", PRIV,
                                  "Lobe CT severity score (Pan 2020, 0-5)"};
static const code P_TOTAL_SCORE = {"CTSS", PRIV,
                                   "CT severity score (Pan 2020, 0-25)"};
static const code P_AERATED = {"AERPCT", PRIV,
                               "Well-aerated lung percentage (-950 to -700 "
                               "HU)"};
static const code P_PERIPHERAL = {"PERIPCT", PRIV,
                                  "Percentage of opacity in the outer third "
                                  "of the lungs"};
static const code P_LOWER = {"LOWERPCT", PRIV,
                             "Percentage of opacity in the lower lobes"};
static const code P_RIGHT = {"RIGHTPCT", PRIV,
                             "Percentage of opacity in the right lung"};
static const code P_LOBES_INVOLVED = {"LOBESINV", PRIV,
                                      "Number of lobes involved"};
static const code P_BILATERAL = {"BILAT", PRIV, "Bilateral involvement"};
static const code P_CATEGORY = {"RSNACAT", PRIV,
                                "RSNA COVID-19 CT pattern category"};
static const code P_REASON = {"CATREASON", PRIV,
                              "Feature supporting the category"};
static const code P_CAT[4] = {
    [COVCT_CAT_NEGATIVE] = {"NEGATIVE", PRIV, "Negative for pneumonia"},
    [COVCT_CAT_TYPICAL] = {"TYPICAL", PRIV, "Typical appearance"},
    [COVCT_CAT_INDETERMINATE] = {"INDETERM", PRIV,
                                 "Indeterminate appearance"},
    [COVCT_CAT_ATYPICAL] = {"ATYPICAL", PRIV, "Atypical appearance"},
};

/* ---- the segments ------------------------------------------------------- */
enum { MASK_LUNGS, MASK_LOBES, MASK_LESIONS, MASK_DENSE };
enum { N_SEG = 10 };

typedef struct seg_def {
    const char *label;
    int mask;          /* which label volume */
    uint8_t value;     /* its label */
    const code *category, *type;
    const code *site;  /* Finding Site in the SR, Anatomic Region of lesions */
    int lobe;          /* covct_lobe for the lobe segments, else 0 */
    uint8_t rgb[3];    /* the colour of the PNG key images */
} seg_def;

static const seg_def segs[N_SEG] = {
    {"Right lung", MASK_LUNGS, COVCT_LUNG_RIGHT, &C_ANATOMY, &C_RLUNG,
     &C_RLUNG, 0, {255, 190, 140}},
    {"Left lung", MASK_LUNGS, COVCT_LUNG_LEFT, &C_ANATOMY, &C_LLUNG, &C_LLUNG,
     0, {140, 190, 255}},
    {"Left upper lobe", MASK_LOBES, COVCT_LOBE_LUL, &C_ANATOMY, &C_LUL, &C_LUL,
     COVCT_LOBE_LUL, {0, 140, 255}},
    {"Left lower lobe", MASK_LOBES, COVCT_LOBE_LLL, &C_ANATOMY, &C_LLL, &C_LLL,
     COVCT_LOBE_LLL, {0, 220, 220}},
    {"Right upper lobe", MASK_LOBES, COVCT_LOBE_RUL, &C_ANATOMY, &C_RUL,
     &C_RUL, COVCT_LOBE_RUL, {60, 220, 60}},
    {"Right middle lobe", MASK_LOBES, COVCT_LOBE_RML, &C_ANATOMY, &C_RML,
     &C_RML, COVCT_LOBE_RML, {255, 80, 200}},
    {"Right lower lobe", MASK_LOBES, COVCT_LOBE_RLL, &C_ANATOMY, &C_RLL,
     &C_RLL, COVCT_LOBE_RLL, {170, 100, 255}},
    {"Ground glass opacity", MASK_LESIONS, COVCT_LESION_GGO, &C_MORPH, &C_GGO,
     &C_LUNG, 0, {255, 230, 0}},
    {"Consolidation", MASK_LESIONS, COVCT_LESION_CONSOLIDATION, &C_MORPH,
     &C_CONS, &C_LUNG, 0, {255, 80, 0}},
    /* Only when the report warns of it (COVCT_DENSE_BEHIND_MIN_ML). */
    {"Dense tissue behind the lungs", MASK_DENSE, 1, &C_MORPH,
     &P_DENSE_BEHIND, &C_THORAX, 0, {255, 0, 255}},
};

/* ---- building data sets with a sticky error --------------------------------
 * Every helper does nothing once an error is recorded, so a long run of
 * attribute settings needs a single check at its end. */
typedef struct bld {
    covct_rc rc;
    covct_error *err;
    int non_ascii; /* a string with bytes over 0x7F was set */
} bld;

static void note_text(bld *b, const char *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if ((unsigned char)s[i] > 0x7F)
            b->non_ascii = 1;
}

static void put(bld *b, covct_dcm_dataset *ds, uint32_t tag, const char *vr,
                const void *v, size_t n)
{
    if (b->rc)
        return;
    b->rc = covct_dcm_dataset_set(ds, tag, COVCT_VR(vr[0], vr[1]), v, n,
                                  b->err);
}

static void put_str(bld *b, covct_dcm_dataset *ds, uint32_t tag,
                    const char *vr, const char *s)
{
    note_text(b, s, s ? strlen(s) : 0);
    put(b, ds, tag, vr, s ? s : "", s ? strlen(s) : 0);
}

/* A string cut to `max` bytes, not inside a UTF-8 sequence (LO 64, SH 16,
 * CS 16 characters). */
static void put_str_max(bld *b, covct_dcm_dataset *ds, uint32_t tag,
                        const char *vr, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    note_text(b, s, n);
    put(b, ds, tag, vr, s ? s : "", n);
}

static void put_u16(bld *b, covct_dcm_dataset *ds, uint32_t tag, unsigned v)
{
    uint8_t x[2] = {(uint8_t)(v & 0xFF), (uint8_t)((v >> 8) & 0xFF)};
    put(b, ds, tag, "US", x, 2);
}

static void put_u16s(bld *b, covct_dcm_dataset *ds, uint32_t tag,
                     const uint16_t *v, size_t n)
{
    uint8_t x[16];
    for (size_t i = 0; i < n && i < 8; i++) {
        x[2 * i] = (uint8_t)(v[i] & 0xFF);
        x[2 * i + 1] = (uint8_t)(v[i] >> 8);
    }
    put(b, ds, tag, "US", x, 2 * (n < 8 ? n : 8));
}

static void put_ul2(bld *b, covct_dcm_dataset *ds, uint32_t tag, uint32_t v0,
                    uint32_t v1)
{
    uint8_t x[8];
    for (int i = 0; i < 4; i++) {
        x[i] = (uint8_t)(v0 >> (8 * i));
        x[4 + i] = (uint8_t)(v1 >> (8 * i));
    }
    put(b, ds, tag, "UL", x, 8);
}

/* Attribute Tag value (PS3.5 6.2: group, then element, each 16-bit LE). */
static void put_at(bld *b, covct_dcm_dataset *ds, uint32_t tag, uint32_t v)
{
    uint16_t g = COVCT_TAG_GROUP(v), e = COVCT_TAG_ELEM(v);
    uint8_t x[4] = {(uint8_t)(g & 0xFF), (uint8_t)(g >> 8),
                    (uint8_t)(e & 0xFF), (uint8_t)(e >> 8)};
    put(b, ds, tag, "AT", x, 4);
}

static void put_fd(bld *b, covct_dcm_dataset *ds, uint32_t tag, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(u >> (8 * i));
    put(b, ds, tag, "FD", x, 8);
}

/* A DS value: at most 16 characters (PS3.5 6.2). */
static void fmt_ds(char *buf, size_t cap, double v)
{
    if (!isfinite(v))
        v = 0;
    if (fabs(v) < 1e-9)
        v = 0;
    for (int prec = 12; prec >= 3; prec--) {
        int n = snprintf(buf, cap, "%.*g", prec, v);
        if (n > 0 && n <= 16)
            return;
    }
    snprintf(buf, cap, "%.3g", v);
}

static void put_ds(bld *b, covct_dcm_dataset *ds, uint32_t tag,
                   const double *v, int n)
{
    char s[17 * 8], one[24];
    size_t o = 0;
    for (int i = 0; i < n && i < 8; i++) {
        fmt_ds(one, sizeof one, v[i]);
        o += (size_t)snprintf(s + o, sizeof s - o, "%s%s", i ? "\\" : "", one);
    }
    put(b, ds, tag, "DS", s, o);
}

static void put_is(bld *b, covct_dcm_dataset *ds, uint32_t tag, long v)
{
    char s[24];
    snprintf(s, sizeof s, "%ld", v);
    put_str(b, ds, tag, "IS", s);
}

/* A present but empty sequence (Type 2). */
static void put_empty_sq(bld *b, covct_dcm_dataset *ds, uint32_t tag)
{
    put(b, ds, tag, "SQ", "", 0);
}

static covct_dcm_dataset *item(bld *b, covct_dcm_dataset *ds, uint32_t tag)
{
    covct_dcm_dataset *it = NULL;
    if (!b->rc)
        b->rc = covct_dcm_dataset_add_item(ds, tag, &it, b->err);
    return b->rc ? NULL : it;
}

/* Code Sequence Macro (PS3.3 Table 8.8-1): one item. */
static void put_code(bld *b, covct_dcm_dataset *ds, uint32_t seq,
                     const code *c)
{
    covct_dcm_dataset *it = item(b, ds, seq);
    if (!it)
        return;
    put_str(b, it, T(0x0008, 0x0100), "SH", c->value);
    put_str(b, it, T(0x0008, 0x0102), "SH", c->scheme);
    put_str_max(b, it, T(0x0008, 0x0104), "LO", c->meaning, 64);
}

/* ---- UIDs, dates, names ------------------------------------------------- */

/* A new UID from a random (version 4) UUID: OpenSSL's generator, or the
 * kernel's when that fails. */
static covct_rc new_uid(char out[65], covct_error *err)
{
    uint8_t r[16];
    if (RAND_bytes(r, sizeof r) != 1) {
        FILE *f = fopen("/dev/urandom", "rb");
        size_t got = f ? fread(r, 1, sizeof r, f) : 0;
        if (f)
            fclose(f);
        if (got != sizeof r)
            return COVCT_ERR(err, COVCT_ERR_IO,
                             "no random numbers for new UIDs (OpenSSL and "
                             "/dev/urandom both failed)");
    }
    r[6] = (uint8_t)((r[6] & 0x0F) | 0x40); /* version 4 */
    r[8] = (uint8_t)((r[8] & 0x3F) | 0x80); /* variant 10 */
    covct_dcm_uid_from_uuid(r, out);
    return COVCT_OK;
}

/* A UID that names a thing (this installation as an SR device observer):
 * the same name always gives the same UID (an RFC 9562 version 8 UUID
 * from two FNV-1a hashes of the name). */
static void name_uid(const char *name, char out[65])
{
    uint64_t h[2] = {0xCBF29CE484222325ull, 0x84222325CBF29CE4ull};
    for (int k = 0; k < 2; k++)
        for (const char *p = name; *p; p++) {
            h[k] ^= (unsigned char)*p;
            h[k] *= 0x100000001B3ull;
        }
    uint8_t r[16];
    for (int i = 0; i < 8; i++) {
        r[i] = (uint8_t)(h[0] >> (56 - 8 * i));
        r[8 + i] = (uint8_t)(h[1] >> (56 - 8 * i));
    }
    r[6] = (uint8_t)((r[6] & 0x0F) | 0x80); /* version 8 */
    r[8] = (uint8_t)((r[8] & 0x3F) | 0x80); /* variant 10 */
    covct_dcm_uid_from_uuid(r, out);
}

typedef struct stamp {
    char da[16]; /* YYYYMMDD */
    char tm[24]; /* HHMMSS.ffffff */
    char host[65];
} stamp;

static void stamp_now(stamp *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tmv;
    localtime_r(&ts.tv_sec, &tmv);
    if (strftime(s->da, sizeof s->da, "%Y%m%d", &tmv) != 8)
        snprintf(s->da, sizeof s->da, "19700101");
    char hms[16];
    if (strftime(hms, sizeof hms, "%H%M%S", &tmv) != 6)
        snprintf(hms, sizeof hms, "000000");
    snprintf(s->tm, sizeof s->tm, "%.6s.%06u", hms,
             (unsigned)((ts.tv_nsec / 1000) % 1000000));
    if (gethostname(s->host, sizeof s->host - 1) != 0 || !s->host[0])
        snprintf(s->host, sizeof s->host, "unknown");
    s->host[sizeof s->host - 1] = '\0';
}

/* ---- the source series -------------------------------------------------- */
typedef struct src {
    size_t n;                      /* slices, = ct->nz */
    covct_series_slice_ref *ref;   /* in k order */
    covct_dcm_file *hdr;           /* header of slice 0's file */
    char study_uid[65], series_uid[65], for_uid[65];
    /* Unique source instances in k order (multi-frame files once). */
    size_t *uniq;
    size_t n_uniq;
} src;

static void src_close(src *s)
{
    covct_free(s->ref);
    covct_free(s->uniq);
    covct_dcm_file_free(s->hdr);
    memset(s, 0, sizeof *s);
}

static covct_rc src_open(src *s, const covct_series *series,
                         const covct_volume *ct, covct_error *err)
{
    memset(s, 0, sizeof *s);
    size_t n = covct_series_slice_count(series);
    if (n != ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "DICOM results: the series has %zu slices, the "
                         "volume %u; it was not loaded from this series",
                         n, (unsigned)ct->nz);
    s->n = n;
    s->ref = covct_calloc(n, sizeof *s->ref);
    s->uniq = covct_calloc(n, sizeof *s->uniq);
    if (!s->ref || !s->uniq) {
        src_close(s);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
    }
    covct_rc rc = COVCT_OK;
    for (size_t k = 0; k < n && !rc; k++) {
        covct_series_slice_ref *r = &s->ref[k];
        covct_series_slice_ref_get(series, k, r);
        /* The results reference their source images by these UIDs; a
         * series without them (some research data sets blank them) has
         * nothing a PACS could link the results to. */
        const char *missing =
            !r->sop_instance_uid[0] ? "(0008,0018) SOP Instance UID"
            : !r->sop_class_uid[0]  ? "(0008,0016) SOP Class UID"
            : !r->study_uid[0]      ? "(0020,000D) Study Instance UID"
            : !r->series_uid[0]     ? "(0020,000E) Series Instance UID"
                                    : NULL;
        if (missing)
            rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                           "%s: no %s; DICOM results must reference their "
                           "source images, so none are written for this "
                           "series",
                           r->path, missing);
        else if (k > 0 && (strcmp(r->study_uid, s->ref[0].study_uid) ||
                           strcmp(r->series_uid, s->ref[0].series_uid)))
            rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                           "%s: its study or series UID differs from %s's; "
                           "DICOM results need one source series",
                           r->path, s->ref[0].path);
    }
    if (rc) {
        src_close(s);
        return rc;
    }
    snprintf(s->study_uid, sizeof s->study_uid, "%s", s->ref[0].study_uid);
    snprintf(s->series_uid, sizeof s->series_uid, "%s", s->ref[0].series_uid);
    snprintf(s->for_uid, sizeof s->for_uid, "%s", s->ref[0].frame_of_ref_uid);
    for (size_t k = 1; k < n; k++)
        if (strcmp(s->ref[k].frame_of_ref_uid, s->for_uid))
            s->for_uid[0] = '\0'; /* not one frame of reference */
    /* Unique instances: a multi-frame file gives several slices. */
    for (size_t k = 0; k < n; k++) {
        int dup = 0;
        if (s->ref[k].n_frames > 1)
            for (size_t j = 0; j < s->n_uniq && !dup; j++)
                dup = !strcmp(s->ref[s->uniq[j]].sop_instance_uid,
                              s->ref[k].sop_instance_uid);
        if (!dup)
            s->uniq[s->n_uniq++] = k;
    }
    covct_dcm_read_opts opts = {.stop_before_pixels = true};
    rc = covct_dcm_file_read(s->ref[0].path, &opts, &s->hdr, err);
    if (rc) {
        covct_error_prefix(err, "DICOM results: ");
        src_close(s);
    }
    return rc;
}

/* Patient and General Study modules copied from the source (PS3.3 C.7.1.1,
 * C.7.2.1); Type 2 attributes are written empty when the source lacks
 * them.  Text is converted to UTF-8. */
static const struct copy_attr {
    uint32_t tag;
    const char *vr;
    int type2;
} copy_attrs[] = {
    {T(0x0010, 0x0010), "PN", 1}, /* Patient's Name */
    {T(0x0010, 0x0020), "LO", 1}, /* Patient ID */
    {T(0x0010, 0x0021), "LO", 0}, /* Issuer of Patient ID */
    {T(0x0010, 0x0030), "DA", 1}, /* Patient's Birth Date */
    {T(0x0010, 0x0040), "CS", 1}, /* Patient's Sex */
    {T(0x0010, 0x1010), "AS", 0}, /* Patient's Age */
    {T(0x0008, 0x0020), "DA", 1}, /* Study Date */
    {T(0x0008, 0x0030), "TM", 1}, /* Study Time */
    {T(0x0008, 0x0050), "SH", 1}, /* Accession Number */
    {T(0x0008, 0x0090), "PN", 1}, /* Referring Physician's Name */
    {T(0x0008, 0x1030), "LO", 0}, /* Study Description */
    {T(0x0020, 0x0010), "SH", 1}, /* Study ID */
};

static void copy_patient_study(bld *b, covct_dcm_dataset *ds, const src *s)
{
    const covct_dcm_dataset *from = covct_dcm_file_dataset_const(s->hdr);
    for (size_t i = 0; i < sizeof copy_attrs / sizeof copy_attrs[0]; i++) {
        const struct copy_attr *a = &copy_attrs[i];
        const covct_dcm_element *e = covct_dcm_dataset_get(from, a->tag);
        size_t len = 0;
        const uint8_t *v = e ? covct_dcm_element_value(e, &len) : NULL;
        if (!e || !v) {
            if (a->type2)
                put_str(b, ds, a->tag, a->vr, "");
            continue;
        }
        int text = !strcmp(a->vr, "PN") || !strcmp(a->vr, "LO") ||
                   !strcmp(a->vr, "SH");
        char *u = NULL;
        if (text && covct_dcm_get_utf8(from, a->tag, &u, NULL) == COVCT_OK &&
            u) {
            put_str(b, ds, a->tag, a->vr, u);
        } else {
            /* ASCII VRs (DA, TM, CS, AS), or text the converter refused:
             * the bytes as they are, padding removed. */
            while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\0'))
                len--;
            note_text(b, (const char *)v, len);
            put(b, ds, a->tag, a->vr, v, len);
        }
        covct_free(u);
    }
    put_str(b, ds, T(0x0020, 0x000D), "UI", s->study_uid);
}

/* SOP Common, Patient, General Study, General Series, General and Enhanced
 * General Equipment: what all three kinds of object share. */
static void common(bld *b, covct_dcm_dataset *ds, const src *s,
                   const stamp *now, const char *sop_class,
                   const char *sop_uid, const char *series_uid,
                   const char *modality, int series_no,
                   const char *series_desc)
{
    put_str(b, ds, T(0x0008, 0x0016), "UI", sop_class);
    put_str(b, ds, T(0x0008, 0x0018), "UI", sop_uid);
    put_str(b, ds, T(0x0008, 0x0012), "DA", now->da);
    put_str(b, ds, T(0x0008, 0x0013), "TM", now->tm);
    copy_patient_study(b, ds, s);
    put_str(b, ds, T(0x0008, 0x0060), "CS", modality);
    put_str(b, ds, T(0x0020, 0x000E), "UI", series_uid);
    put_is(b, ds, T(0x0020, 0x0011), series_no);
    put_str(b, ds, T(0x0008, 0x103E), "LO", series_desc);
    /* General Series Body Part Examined: what the analysis found. */
    if (strcmp(modality, "SR"))
        put_str(b, ds, T(0x0018, 0x0015), "CS", "CHEST");
    put_str(b, ds, T(0x0008, 0x0021), "DA", now->da);
    put_str(b, ds, T(0x0008, 0x0031), "TM", now->tm);
    put_str(b, ds, T(0x0008, 0x0023), "DA", now->da);
    put_str(b, ds, T(0x0008, 0x0033), "TM", now->tm);
    put_str(b, ds, T(0x0008, 0x0070), "LO", "covct");
    put_str(b, ds, T(0x0008, 0x1090), "LO", "covct");
    put_str_max(b, ds, T(0x0018, 0x1000), "LO", now->host, 64);
    put_str(b, ds, T(0x0018, 0x1020), "LO", COVCT_VERSION);
}

/* Specific Character Set (C.12.1.1.2): UTF-8 when some text needs more
 * than the default repertoire (a patient's name, say), else absent, so
 * that viewers without UTF-8 show the plain ASCII as it is. */
static void finish_charset(bld *b, covct_dcm_dataset *ds)
{
    if (b->non_ascii)
        put(b, ds, T(0x0008, 0x0005), "CS", "ISO_IR 192", 10);
}

/* Reference to a source image (Image SOP Instance Reference Macro, PS3.3
 * Table 10-3): its class and instance, and the frame of a multi-frame. */
static void ref_source(bld *b, covct_dcm_dataset *it,
                       const covct_series_slice_ref *r)
{
    put_str(b, it, T(0x0008, 0x1150), "UI", r->sop_class_uid);
    put_str(b, it, T(0x0008, 0x1155), "UI", r->sop_instance_uid);
    if (r->n_frames > 1)
        put_is(b, it, T(0x0008, 0x1160), (long)r->frame + 1);
}

/* Geometry of slice k: Image Position (Patient) from its file, else from
 * the volume's affine. */
static void slice_position(const src *s, const covct_volume *ct, uint32_t k,
                           double pos[3])
{
    const covct_series_slice_ref *r = &s->ref[k];
    for (int a = 0; a < 3; a++)
        pos[a] = r->has_position
                     ? r->position[a]
                     : ct->affine[a][2] * k + ct->affine[a][3];
}

static void slice_orientation(const src *s, const covct_volume *ct,
                              double iop[6])
{
    const covct_series_slice_ref *r = &s->ref[0];
    if (r->has_orientation) {
        memcpy(iop, r->orientation, 6 * sizeof *iop);
        return;
    }
    for (int c = 0; c < 2; c++) {
        double len = 0;
        for (int a = 0; a < 3; a++)
            len += ct->affine[a][c] * ct->affine[a][c];
        len = sqrt(len);
        for (int a = 0; a < 3; a++)
            iop[3 * c + a] = len > 0 ? ct->affine[a][c] / len : (a == c);
    }
}

/* ---- writing ------------------------------------------------------------ */
typedef struct outset {
    const char *dir;
    covct_dicom_results *res; /* may be NULL */
} outset;

static covct_rc write_object(const outset *o, const char *name,
                             const char *kind, covct_dcm_dataset *ds,
                             const char *sop_class, const char *sop_uid,
                             const char *series_uid, covct_error *err)
{
    size_t n = strlen(o->dir) + strlen(name) + 2;
    char *path = covct_malloc(n);
    if (!path)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "%s: out of memory", name);
    snprintf(path, n, "%s/%s", o->dir, name);
    covct_rc rc = covct_dcm_write_file(path, ds, err);
    if (rc && err && !strstr(err->msg, path))
        covct_error_prefix(err, "%s: ", path);
    if (!rc && o->res) {
        covct_dicom_result *r =
            covct_realloc(o->res->r, (o->res->n + 1) * sizeof *r);
        if (!r) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        } else {
            o->res->r = r;
            r = &o->res->r[o->res->n++];
            memset(r, 0, sizeof *r);
            r->path = path;
            path = NULL;
            r->kind = kind;
            snprintf(r->sop_class_uid, sizeof r->sop_class_uid, "%s",
                     sop_class);
            snprintf(r->sop_instance_uid, sizeof r->sop_instance_uid, "%s",
                     sop_uid);
            snprintf(r->series_uid, sizeof r->series_uid, "%s", series_uid);
        }
    }
    covct_free(path);
    return rc;
}

void covct_dicom_results_free(covct_dicom_results *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->n; i++)
        covct_free(res->r[i].path);
    covct_free(res->r);
    res->r = NULL;
    res->n = 0;
}

/* ---- the Segmentation --------------------------------------------------- */

/* What the SR needs to know about the SEG. */
typedef struct seg_info {
    char sop_uid[65], series_uid[65];
    unsigned number[N_SEG];     /* Segment Number, 0: segment empty, absent */
    char tracking_uid[N_SEG][65];
} seg_info;

static const uint8_t *seg_mask(const covct_seg *sg, int mask)
{
    return mask == MASK_LUNGS    ? sg->lungs
           : mask == MASK_LOBES  ? sg->lobes
           : mask == MASK_DENSE  ? sg->dense_behind
                                 : sg->lesions;
}

/* sRGB (8-bit) to the scaled CIELab of Recommended Display CIELab Value
 * (PS3.3 C.10.7.1.1: L* 0..100 and a*, b* -128..127 mapped to 0..65535;
 * the ICC PCS illuminant D50, so sRGB's D65 is Bradford-adapted). */
static void rgb_to_lab(const uint8_t rgb[3], uint16_t out[3])
{
    double c[3];
    for (int i = 0; i < 3; i++) {
        double v = rgb[i] / 255.0;
        c[i] = v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
    }
    double x = (0.4360747 * c[0] + 0.3850649 * c[1] + 0.1430804 * c[2]) /
               0.96422;
    double y = 0.2225045 * c[0] + 0.7168786 * c[1] + 0.0606169 * c[2];
    double z = (0.0139322 * c[0] + 0.0971045 * c[1] + 0.7141733 * c[2]) /
               0.82521;
    double f[3], t[3] = {x, y, z};
    for (int i = 0; i < 3; i++)
        f[i] = t[i] > 216.0 / 24389.0 ? cbrt(t[i])
                                      : (24389.0 / 27.0 * t[i] + 16) / 116;
    double lab[3] = {116 * f[1] - 16, 500 * (f[0] - f[1]),
                     200 * (f[1] - f[2])};
    double sc[3] = {lab[0] * 65535.0 / 100.0,
                    (lab[1] + 128) * 65535.0 / 255.0,
                    (lab[2] + 128) * 65535.0 / 255.0};
    for (int i = 0; i < 3; i++)
        out[i] = (uint16_t)(sc[i] < 0 ? 0 : sc[i] > 65535 ? 65535
                                                         : sc[i] + 0.5);
}

typedef struct frame_ref {
    uint8_t s;  /* segment index in segs[] */
    uint32_t k; /* slice */
} frame_ref;

static covct_rc build_seg(const covct_report_input *in, const src *s,
                          const stamp *now, covct_dcm_dataset *ds,
                          seg_info *si, covct_error *err)
{
    const covct_volume *ct = in->ct;
    const covct_seg *sg = in->seg;
    const size_t plane = (size_t)ct->nx * ct->ny, nz = ct->nz;
    bld b = {COVCT_OK, err, 0};
    uint8_t *has = covct_calloc((size_t)N_SEG * nz, 1);
    frame_ref *fr = NULL;
    uint8_t *bits = NULL;
    uint8_t *used = NULL;
    if (!has) {
        b.rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* Which segment has voxels on which slice (the dense tissue behind
     * the lungs only when the report warns of it). */
    const bool dense = in->m && in->m->dense_behind_ml >=
                                    COVCT_DENSE_BEHIND_MIN_ML;
    for (size_t k = 0; k < nz; k++)
        for (int m = MASK_LUNGS; m <= MASK_DENSE; m++) {
            const uint8_t *lab = seg_mask(sg, m);
            if (!lab || (m == MASK_DENSE && !dense))
                continue;
            uint8_t seen[256] = {0};
            const uint8_t *p = lab + plane * k;
            for (size_t i = 0; i < plane; i++)
                seen[p[i]] = 1;
            for (int q = 0; q < N_SEG; q++)
                if (segs[q].mask == m && seen[segs[q].value])
                    has[(size_t)q * nz + k] = 1;
        }
    size_t nframes = 0;
    unsigned next_no = 1;
    for (int q = 0; q < N_SEG; q++) {
        size_t c = 0;
        for (size_t k = 0; k < nz; k++)
            c += has[(size_t)q * nz + k];
        nframes += c;
        /* PS3.3 C.8.20.2.4: Segment Numbers start at 1 and increase by 1;
         * a segment with no voxel gets no number and no frames. */
        si->number[q] = c ? next_no++ : 0;
    }
    if (nframes == 0) {
        b.rc = COVCT_ERR(err, COVCT_ERR_ARG,
                         "segmentation: no lung voxel to encode");
        goto out;
    }
    size_t total_bits, nbytes;
    if (!covct_mul_size(nframes, plane, &total_bits) ||
        total_bits / 8 > (size_t)0xFFFFFFF0u) {
        b.rc = COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "segmentation: %zu frames of %zu pixels exceed the "
                         "4 GiB a DICOM value can hold",
                         nframes, plane);
        goto out;
    }
    /* PS3.5 8.1.1: 1-bit frames follow each other without padding to a
     * byte; the first pixel is the least significant bit.  The value is
     * padded to an even length. */
    nbytes = (total_bits + 7) / 8;
    nbytes += nbytes & 1;
    fr = covct_malloc(nframes * sizeof *fr);
    bits = covct_calloc(nbytes, 1);
    used = covct_calloc(nz, 1);
    if (!fr || !bits || !used) {
        b.rc = COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "segmentation: out of memory for %zu frames",
                         nframes);
        goto out;
    }
    size_t f = 0;
    for (int q = 0; q < N_SEG; q++) {
        const uint8_t *lab = seg_mask(sg, segs[q].mask);
        for (size_t k = 0; k < nz; k++) {
            if (!has[(size_t)q * nz + k])
                continue;
            fr[f].s = (uint8_t)q;
            fr[f].k = (uint32_t)k;
            used[k] = 1;
            const uint8_t *p = lab + plane * k;
            size_t off = f * plane;
            for (size_t i = 0; i < plane; i++, off++)
                if (p[i] == segs[q].value)
                    bits[off >> 3] |= (uint8_t)(1u << (off & 7));
            f++;
        }
    }

    char series_uid[65], dim_uid[65];
    if ((b.rc = new_uid(si->sop_uid, err)) ||
        (b.rc = new_uid(series_uid, err)) || (b.rc = new_uid(dim_uid, err)))
        goto out;
    snprintf(si->series_uid, sizeof si->series_uid, "%s", series_uid);
    common(&b, ds, s, now, SEG_SOP_CLASS, si->sop_uid, series_uid, "SEG",
           SEG_SERIES_NO, "covct AI segmentation (to be confirmed)");

    /* Frame of Reference (C.7.4.1): the source's, so that the frames lie
     * on the CT. */
    put_str(&b, ds, T(0x0020, 0x0052), "UI", s->for_uid);
    put_str(&b, ds, T(0x0020, 0x1040), "LO", "");

    /* General Image and Segmentation Image (C.8.20.2). */
    put_is(&b, ds, T(0x0020, 0x0013), 1);
    put_str(&b, ds, T(0x0008, 0x0008), "CS", "DERIVED\\PRIMARY");
    put_str(&b, ds, T(0x0070, 0x0080), "CS", "COVCT");
    put_str(&b, ds, T(0x0070, 0x0081), "LO",
            "AI segmentation, to be confirmed by a radiologist");
    put_str(&b, ds, T(0x0070, 0x0084), "PN", "");
    put_str(&b, ds, T(0x0062, 0x0001), "CS", "BINARY");
    /* Lobes lie in lungs, opacities in lobes. */
    put_str(&b, ds, T(0x0062, 0x0013), "CS", "YES");
    put_str(&b, ds, T(0x0028, 0x2110), "CS", "00");

    /* Image Pixel (C.7.6.3) for BINARY (C.8.20.2.1). */
    put_u16(&b, ds, T(0x0028, 0x0002), 1);
    put_str(&b, ds, T(0x0028, 0x0004), "CS", "MONOCHROME2");
    put_u16(&b, ds, T(0x0028, 0x0010), ct->ny);
    put_u16(&b, ds, T(0x0028, 0x0011), ct->nx);
    put_u16(&b, ds, T(0x0028, 0x0100), 1);
    put_u16(&b, ds, T(0x0028, 0x0101), 1);
    put_u16(&b, ds, T(0x0028, 0x0102), 0);
    put_u16(&b, ds, T(0x0028, 0x0103), 0);
    put_is(&b, ds, T(0x0028, 0x0008), (long)nframes);

    /* Segment Sequence. */
    const char *model = in->lesion_model && in->lesion_model[0]
                            ? in->lesion_model
                            : "lesions";
    int net = in->lesion_method && !strcmp(in->lesion_method, "network");
    for (int q = 0; q < N_SEG; q++) {
        if (!si->number[q])
            continue;
        const seg_def *d = &segs[q];
        covct_dcm_dataset *it = item(&b, ds, T(0x0062, 0x0002));
        if (!it)
            break;
        put_u16(&b, it, T(0x0062, 0x0004), si->number[q]);
        put_str(&b, it, T(0x0062, 0x0005), "LO", d->label);
        put_str(&b, it, T(0x0062, 0x0008), "CS", "AUTOMATIC");
        char alg[160];
        const code *family;
        if (d->mask == MASK_LESIONS) {
            /* The network's own name (its model card's), which says
             * covct already when it is ours. */
            snprintf(alg, sizeof alg, "%s%s",
                     net && !strncmp(model, "covct", 5) ? "" : "covct ",
                     net ? model : "density method");
            family = net ? &C_AI : &C_MULTISCALE;
        } else {
            snprintf(alg, sizeof alg, "covct %s",
                     d->mask == MASK_LUNGS   ? "lungs"
                     : d->mask == MASK_LOBES ? "lobes"
                                             : "dense tissue behind the lungs");
            family = &C_MORPH_OPS;
        }
        put_str_max(&b, it, T(0x0062, 0x0009), "LO", alg, 64);
        covct_dcm_dataset *ai = item(&b, it, T(0x0062, 0x0007));
        if (ai) {
            put_code(&b, ai, T(0x0066, 0x002F), family);
            put_str_max(&b, ai, T(0x0066, 0x0036), "LO", alg, 64);
            put_str(&b, ai, T(0x0066, 0x0031), "LO", COVCT_VERSION);
        }
        put_code(&b, it, T(0x0062, 0x0003), d->category);
        put_code(&b, it, T(0x0062, 0x000F), d->type);
        if (d->mask == MASK_LESIONS || d->mask == MASK_DENSE)
            put_code(&b, it, T(0x0008, 0x2218), d->site);
        uint16_t lab[3];
        rgb_to_lab(d->rgb, lab);
        put_u16s(&b, it, T(0x0062, 0x000D), lab, 3);
        /* Tracking (C.8.20.2.x): the SR's measurement group of this
         * segment carries the same identifier and UID. */
        put_str(&b, it, T(0x0062, 0x0020), "UT", d->label);
        if (!b.rc)
            b.rc = new_uid(si->tracking_uid[q], err);
        put_str(&b, it, T(0x0062, 0x0021), "UI", si->tracking_uid[q]);
    }

    /* Multi-frame Dimension (C.7.6.17): segment, then position. */
    covct_dcm_dataset *it = item(&b, ds, T(0x0020, 0x9221));
    if (it)
        put_str(&b, it, T(0x0020, 0x9164), "UI", dim_uid);
    static const struct {
        uint32_t index, group;
        const char *label;
    } dims[2] = {
        {T(0x0062, 0x000B), T(0x0062, 0x000A), "Segment Number"},
        {T(0x0020, 0x0032), T(0x0020, 0x9113), "Image Position Patient"},
    };
    for (int d = 0; d < 2; d++) {
        it = item(&b, ds, T(0x0020, 0x9222));
        if (!it)
            break;
        put_str(&b, it, T(0x0020, 0x9164), "UI", dim_uid);
        put_at(&b, it, T(0x0020, 0x9165), dims[d].index);
        put_at(&b, it, T(0x0020, 0x9167), dims[d].group);
        put_str(&b, it, T(0x0020, 0x9421), "LO", dims[d].label);
    }

    /* Shared Functional Groups: Pixel Measures, Plane Orientation. */
    covct_dcm_dataset *sh = item(&b, ds, T(0x5200, 0x9229));
    if (sh) {
        covct_dcm_dataset *pm = item(&b, sh, T(0x0028, 0x9110));
        if (pm) {
            double ps[2] = {s->ref[0].pixel_spacing[0],
                            s->ref[0].pixel_spacing[1]};
            if (!(ps[0] > 0) || !(ps[1] > 0)) {
                ps[0] = ct->spacing[1];
                ps[1] = ct->spacing[0];
            }
            double th = s->ref[0].thickness > 0 ? s->ref[0].thickness
                                                : ct->spacing[2];
            put_ds(&b, pm, T(0x0028, 0x0030), ps, 2);
            put_ds(&b, pm, T(0x0018, 0x0050), &th, 1);
            put_ds(&b, pm, T(0x0018, 0x0088), &ct->spacing[2], 1);
        }
        covct_dcm_dataset *po = item(&b, sh, T(0x0020, 0x9116));
        if (po) {
            double iop[6];
            slice_orientation(s, ct, iop);
            put_ds(&b, po, T(0x0020, 0x0037), iop, 6);
        }
    }

    /* Per-frame Functional Groups. */
    for (size_t i = 0; i < nframes && !b.rc; i++) {
        covct_dcm_dataset *pf = item(&b, ds, T(0x5200, 0x9230));
        if (!pf)
            break;
        const covct_series_slice_ref *r = &s->ref[fr[i].k];
        covct_dcm_dataset *fc = item(&b, pf, T(0x0020, 0x9111));
        if (fc)
            put_ul2(&b, fc, T(0x0020, 0x9157), si->number[fr[i].s],
                    fr[i].k + 1);
        covct_dcm_dataset *pp = item(&b, pf, T(0x0020, 0x9113));
        if (pp) {
            double pos[3];
            slice_position(s, ct, fr[i].k, pos);
            put_ds(&b, pp, T(0x0020, 0x0032), pos, 3);
        }
        covct_dcm_dataset *dv = item(&b, pf, T(0x0008, 0x9124));
        if (dv) {
            put_code(&b, dv, T(0x0008, 0x9215), &C_SEGMENTATION);
            covct_dcm_dataset *si2 = item(&b, dv, T(0x0008, 0x2112));
            if (si2) {
                ref_source(&b, si2, r);
                put_code(&b, si2, T(0x0040, 0xA170), &C_SOURCE_IMAGE);
            }
        }
        covct_dcm_dataset *sid = item(&b, pf, T(0x0062, 0x000A));
        if (sid)
            put_u16(&b, sid, T(0x0062, 0x000B), si->number[fr[i].s]);
    }

    /* Common Instance Reference (C.12.2): every source image a frame
     * derives from. */
    covct_dcm_dataset *rs = item(&b, ds, T(0x0008, 0x1115));
    if (rs) {
        put_str(&b, rs, T(0x0020, 0x000E), "UI", s->series_uid);
        for (size_t u = 0; u < s->n_uniq && !b.rc; u++) {
            size_t k = s->uniq[u];
            int any = used[k];
            /* A multi-frame file: any of its frames used. */
            for (size_t j = 0; j < nz && !any && s->ref[k].n_frames > 1; j++)
                any = used[j] && !strcmp(s->ref[j].sop_instance_uid,
                                         s->ref[k].sop_instance_uid);
            if (!any)
                continue;
            covct_dcm_dataset *ri = item(&b, rs, T(0x0008, 0x114A));
            if (ri) {
                put_str(&b, ri, T(0x0008, 0x1150), "UI",
                        s->ref[k].sop_class_uid);
                put_str(&b, ri, T(0x0008, 0x1155), "UI",
                        s->ref[k].sop_instance_uid);
            }
        }
    }
    put(&b, ds, T(0x7FE0, 0x0010), "OB", bits, nbytes);
    finish_charset(&b, ds);
out:
    covct_free(has);
    covct_free(fr);
    covct_free(bits);
    covct_free(used);
    return b.rc;
}

/* ---- the Structured Report ---------------------------------------------- */

/* One content item (PS3.3 C.17.3) appended to the Content Sequence of
 * `parent`: relationship, value type, concept name (NULL: unnamed). */
static covct_dcm_dataset *content(bld *b, covct_dcm_dataset *parent,
                                  const char *rel, const char *vt,
                                  const code *name)
{
    covct_dcm_dataset *it = item(b, parent, T(0x0040, 0xA730));
    if (!it)
        return NULL;
    put_str(b, it, T(0x0040, 0xA010), "CS", rel);
    put_str(b, it, T(0x0040, 0xA040), "CS", vt);
    if (name)
        put_code(b, it, T(0x0040, 0xA043), name);
    if (!strcmp(vt, "CONTAINER"))
        put_str(b, it, T(0x0040, 0xA050), "CS", "SEPARATE");
    return b->rc ? NULL : it;
}

static void c_text(bld *b, covct_dcm_dataset *p, const char *rel,
                   const code *name, const char *text)
{
    covct_dcm_dataset *it = content(b, p, rel, "TEXT", name);
    if (it)
        put_str(b, it, T(0x0040, 0xA160), "UT", text);
}

static void c_code(bld *b, covct_dcm_dataset *p, const char *rel,
                   const code *name, const code *value)
{
    covct_dcm_dataset *it = content(b, p, rel, "CODE", name);
    if (it)
        put_code(b, it, T(0x0040, 0xA168), value);
}

static void c_uid(bld *b, covct_dcm_dataset *p, const char *rel,
                  const code *name, const char *uid)
{
    covct_dcm_dataset *it = content(b, p, rel, "UIDREF", name);
    if (it)
        put_str(b, it, T(0x0040, 0xA124), "UI", uid);
}

/* NUM (C.18.1): the value as DS (rounded to `decimals`) and, since a DS
 * may lose precision, as Floating Point Value too. */
static void c_num(bld *b, covct_dcm_dataset *p, const code *name, double v,
                  int decimals, const code *unit)
{
    covct_dcm_dataset *it = content(b, p, "CONTAINS", "NUM", name);
    covct_dcm_dataset *mv = it ? item(b, it, T(0x0040, 0xA300)) : NULL;
    if (!mv)
        return;
    if (!isfinite(v))
        v = 0;
    char s[40];
    snprintf(s, sizeof s, "%.*f", decimals, v);
    if (strlen(s) > 16)
        fmt_ds(s, sizeof s, v);
    put_str(b, mv, T(0x0040, 0xA30A), "DS", s);
    put_fd(b, mv, T(0x0040, 0xA161), v);
    put_code(b, mv, T(0x0040, 0x08EA), unit);
}

/* A Measurement Group of TID 1411 for segment q, its ROI measurements
 * added by the caller. */
static covct_dcm_dataset *group_1411(bld *b, covct_dcm_dataset *meas,
                                     const seg_info *si, const src *s, int q)
{
    const seg_def *d = &segs[q];
    covct_dcm_dataset *g = content(b, meas, "CONTAINS", "CONTAINER",
                                   &C_GROUP);
    if (!g)
        return NULL;
    covct_dcm_dataset *tpl = item(b, g, T(0x0040, 0xA504));
    if (tpl) {
        put_str(b, tpl, T(0x0008, 0x0105), "CS", "DCMR");
        put_str(b, tpl, T(0x0040, 0xDB00), "CS", "1411");
    }
    c_text(b, g, "HAS OBS CONTEXT", &C_TRACKING_ID, d->label);
    c_uid(b, g, "HAS OBS CONTEXT", &C_TRACKING_UID, si->tracking_uid[q]);
    c_code(b, g, "CONTAINS", &C_FINDING, d->type);
    covct_dcm_dataset *img = content(b, g, "CONTAINS", "IMAGE",
                                     &C_REF_SEGMENT);
    covct_dcm_dataset *rs = img ? item(b, img, T(0x0008, 0x1199)) : NULL;
    if (rs) {
        put_str(b, rs, T(0x0008, 0x1150), "UI", SEG_SOP_CLASS);
        put_str(b, rs, T(0x0008, 0x1155), "UI", si->sop_uid);
        put_u16(b, rs, T(0x0062, 0x000B), si->number[q]);
    }
    c_uid(b, g, "CONTAINS", &C_SOURCE_SERIES, s->series_uid);
    c_code(b, g, "HAS CONCEPT MOD", &C_FINDING_SITE, d->site);
    return b->rc ? NULL : g;
}

/* Hierarchical SOP Instance Reference (PS3.3 Table C.17-3): one study, one
 * series, `n` instances. */
static void evidence(bld *b, covct_dcm_dataset *ds, uint32_t seq,
                     const char *study_uid, const char *series_uid,
                     const char *const *classes, const char *const *insts,
                     size_t n)
{
    covct_dcm_dataset *st = item(b, ds, seq);
    if (!st)
        return;
    put_str(b, st, T(0x0020, 0x000D), "UI", study_uid);
    covct_dcm_dataset *se = item(b, st, T(0x0008, 0x1115));
    if (!se)
        return;
    put_str(b, se, T(0x0020, 0x000E), "UI", series_uid);
    for (size_t i = 0; i < n && !b->rc; i++) {
        covct_dcm_dataset *r = item(b, se, T(0x0008, 0x1199));
        if (r) {
            put_str(b, r, T(0x0008, 0x1150), "UI", classes[i]);
            put_str(b, r, T(0x0008, 0x1155), "UI", insts[i]);
        }
    }
}

static covct_rc build_sr(const covct_report_input *in, const src *s,
                         const stamp *now, const seg_info *si,
                         covct_dcm_dataset *ds, char sop_uid[65],
                         char series_uid[65], covct_error *err)
{
    const covct_measures *m = in->m;
    bld b = {COVCT_OK, err, 0};
    const char **classes = NULL, **insts = NULL;
    if ((b.rc = new_uid(sop_uid, err)) || (b.rc = new_uid(series_uid, err)))
        return b.rc;
    common(&b, ds, s, now, SR_SOP_CLASS, sop_uid, series_uid, "SR",
           SR_SERIES_NO, "covct AI measurement report (to be confirmed)");

    /* SR Document Series (C.17.1) and SR Document General (C.17.2).  The
     * report is an unverified preliminary machine result: a radiologist
     * confirms or corrects it. */
    put_empty_sq(&b, ds, T(0x0008, 0x1111));
    put_is(&b, ds, T(0x0020, 0x0013), 1);
    put_str(&b, ds, T(0x0040, 0xA491), "CS", "COMPLETE");
    put_str(&b, ds, T(0x0040, 0xA493), "CS", "UNVERIFIED");
    put_str(&b, ds, T(0x0040, 0xA496), "CS", "PRELIMINARY");
    put_code(&b, ds, T(0x0040, 0xA372), &C_CT_CHEST);

    /* Evidence: the source images (the requested procedure's) and the
     * segmentation the measurements refer to. */
    classes = covct_calloc(s->n_uniq ? s->n_uniq : 1, sizeof *classes);
    insts = covct_calloc(s->n_uniq ? s->n_uniq : 1, sizeof *insts);
    if (!classes || !insts) {
        b.rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t u = 0; u < s->n_uniq; u++) {
        classes[u] = s->ref[s->uniq[u]].sop_class_uid;
        insts[u] = s->ref[s->uniq[u]].sop_instance_uid;
    }
    evidence(&b, ds, T(0x0040, 0xA375), s->study_uid, s->series_uid,
             classes, insts, s->n_uniq);
    const char *seg_class = SEG_SOP_CLASS, *seg_inst = si->sop_uid;
    evidence(&b, ds, T(0x0040, 0xA385), s->study_uid, si->series_uid,
             &seg_class, &seg_inst, 1);

    /* The private coding scheme (SOP Common, C.12.1.1.4). */
    covct_dcm_dataset *cs = item(&b, ds, T(0x0008, 0x0110));
    if (cs) {
        put_str(&b, cs, T(0x0008, 0x0102), "SH", PRIV);
        put_str(&b, cs, T(0x0008, 0x0115), "ST",
                "covct private codes (docs/internals/dicom-results.md)");
        put_str(&b, cs, T(0x0008, 0x0116), "ST", "covct");
    }

    /* SR Document Content (C.17.3): TID 1500, root. */
    put_str(&b, ds, T(0x0040, 0xA040), "CS", "CONTAINER");
    put_code(&b, ds, T(0x0040, 0xA043), &C_REPORT);
    put_str(&b, ds, T(0x0040, 0xA050), "CS", "SEPARATE");
    covct_dcm_dataset *tpl = item(&b, ds, T(0x0040, 0xA504));
    if (tpl) {
        put_str(&b, tpl, T(0x0008, 0x0105), "CS", "DCMR");
        put_str(&b, tpl, T(0x0040, 0xDB00), "CS", "1500");
    }
    /* TID 1204 language; TID 1001/1004 device observer; procedure. */
    c_code(&b, ds, "HAS CONCEPT MOD", &C_LANGUAGE, &C_EN_US);
    c_code(&b, ds, "HAS OBS CONTEXT", &C_OBSERVER_TYPE, &C_DEVICE);
    char dev_uid[65], dev_name[128];
    snprintf(dev_name, sizeof dev_name, "covct device %s", now->host);
    name_uid(dev_name, dev_uid);
    c_uid(&b, ds, "HAS OBS CONTEXT", &C_DEVICE_UID, dev_uid);
    c_text(&b, ds, "HAS OBS CONTEXT", &C_DEVICE_NAME, "covct");
    c_text(&b, ds, "HAS OBS CONTEXT", &C_DEVICE_MAKER, "covct");
    c_text(&b, ds, "HAS OBS CONTEXT", &C_DEVICE_MODEL,
           "covct analyze " COVCT_VERSION);
    c_code(&b, ds, "HAS CONCEPT MOD", &C_PROCEDURE, &C_CT_CHEST);

    /* TID 1600 Image Library: the source images. */
    covct_dcm_dataset *lib = content(&b, ds, "CONTAINS", "CONTAINER",
                                     &C_IMAGE_LIBRARY);
    covct_dcm_dataset *lg = lib ? content(&b, lib, "CONTAINS", "CONTAINER",
                                          &C_IMAGE_LIBRARY_GROUP)
                                : NULL;
    for (size_t u = 0; lg && u < s->n_uniq && !b.rc; u++) {
        covct_dcm_dataset *img = content(&b, lg, "CONTAINS", "IMAGE", NULL);
        covct_dcm_dataset *r = img ? item(&b, img, T(0x0008, 0x1199)) : NULL;
        if (r) {
            put_str(&b, r, T(0x0008, 0x1150), "UI", classes[u]);
            put_str(&b, r, T(0x0008, 0x1155), "UI", insts[u]);
        }
    }

    /* Imaging Measurements: one TID 1411 group per segment, one TID 1501
     * group for the lungs as a whole. */
    covct_dcm_dataset *meas = content(&b, ds, "CONTAINS", "CONTAINER",
                                      &C_MEASUREMENTS);
    for (int q = 0; meas && q < N_SEG && !b.rc; q++) {
        if (!si->number[q])
            continue;
        covct_dcm_dataset *g = group_1411(&b, meas, si, s, q);
        if (!g)
            break;
        const seg_def *d = &segs[q];
        if (d->mask == MASK_LUNGS) {
            c_num(&b, g, &C_VOLUME,
                  d->value == COVCT_LUNG_RIGHT ? m->right_ml : m->left_ml, 1,
                  &U_ML);
        } else if (d->mask == MASK_LOBES) {
            const covct_lobe_measures *lm = &m->lobe[d->lobe];
            c_num(&b, g, &C_VOLUME, lm->volume_ml, 1, &U_ML);
            c_num(&b, g, &P_GGO_VOL, lm->ggo_ml, 2, &U_ML);
            c_num(&b, g, &P_CONS_VOL, lm->consolidation_ml, 2, &U_ML);
            c_num(&b, g, &P_OPACITY_VOL, lm->lesion_ml, 2, &U_ML);
            c_num(&b, g, &P_INVOLVED, lm->involvement_pct, 2, &U_PCT);
            c_num(&b, g, &P_LOBE_SCORE, lm->score, 0, &U_SCORE);
        } else if (d->mask == MASK_DENSE) {
            c_num(&b, g, &C_VOLUME, m->dense_behind_ml, 1, &U_ML);
        } else {
            c_num(&b, g, &C_VOLUME,
                  d->value == COVCT_LESION_GGO ? m->ggo_ml
                                               : m->consolidation_ml,
                  2, &U_ML);
        }
    }
    covct_dcm_dataset *g = meas ? content(&b, meas, "CONTAINS", "CONTAINER",
                                          &C_GROUP)
                                : NULL;
    if (g) {
        covct_dcm_dataset *t2 = item(&b, g, T(0x0040, 0xA504));
        if (t2) {
            put_str(&b, t2, T(0x0008, 0x0105), "CS", "DCMR");
            put_str(&b, t2, T(0x0040, 0xDB00), "CS", "1501");
        }
        char tuid[65];
        if (!b.rc)
            b.rc = new_uid(tuid, err);
        c_text(&b, g, "HAS OBS CONTEXT", &C_TRACKING_ID, "Lungs");
        c_uid(&b, g, "HAS OBS CONTEXT", &C_TRACKING_UID, tuid);
        c_code(&b, g, "HAS CONCEPT MOD", &C_FINDING_SITE, &C_LUNG);
        c_num(&b, g, &C_VOLUME, m->lungs_ml, 1, &U_ML);
        c_num(&b, g, &P_OPACITY_VOL, m->lesion_ml, 2, &U_ML);
        c_num(&b, g, &P_GGO_VOL, m->ggo_ml, 2, &U_ML);
        c_num(&b, g, &P_CONS_VOL, m->consolidation_ml, 2, &U_ML);
        c_num(&b, g, &P_INVOLVED, m->involvement_pct, 2, &U_PCT);
        c_num(&b, g, &P_AERATED, m->well_aerated_pct, 2, &U_PCT);
        c_num(&b, g, &P_TOTAL_SCORE, m->ct_severity_score, 0, &U_SCORE);
        c_num(&b, g, &P_LOBES_INVOLVED, m->lobes_involved, 0, &U_COUNT);
        if (m->lesion_ml > 0) {
            c_num(&b, g, &P_PERIPHERAL, m->peripheral_pct, 2, &U_PCT);
            c_num(&b, g, &P_LOWER, m->lower_pct, 2, &U_PCT);
            c_num(&b, g, &P_RIGHT, m->right_pct, 2, &U_PCT);
        }
        c_code(&b, g, "CONTAINS", &P_BILATERAL, m->bilateral ? &C_YES : &C_NO);
        int cat = m->category >= COVCT_CAT_NEGATIVE &&
                          m->category <= COVCT_CAT_ATYPICAL
                      ? (int)m->category
                      : COVCT_CAT_INDETERMINATE;
        c_code(&b, g, "CONTAINS", &P_CATEGORY, &P_CAT[cat]);
        for (int i = 0; i < m->n_reasons && i < COVCT_MAX_REASONS; i++)
            c_text(&b, g, "CONTAINS", &P_REASON, m->reasons[i]);
    }

    /* Qualitative Evaluations: what this report is. */
    covct_dcm_dataset *qe = content(&b, ds, "CONTAINS", "CONTAINER",
                                    &C_QUALITATIVE);
    if (qe) {
        char note[512];
        snprintf(note, sizeof note,
                 "AI result, to be confirmed by a radiologist. Produced "
                 "automatically by covct %s (lesions: %s%s%s); not a "
                 "diagnosis.",
                 COVCT_VERSION,
                 in->lesion_method ? in->lesion_method : "density",
                 in->lesion_model ? ", model " : "",
                 in->lesion_model ? in->lesion_model : "");
        c_text(&b, qe, "CONTAINS", &C_COMMENT, note);
    }
    finish_charset(&b, ds);
out:
    covct_free(classes);
    covct_free(insts);
    return b.rc;
}

/* ---- the key images ----------------------------------------------------- */
static covct_rc build_sc(const covct_report_input *in, const src *s,
                         const stamp *now, const char *series_uid,
                         int axial, uint32_t k, int number,
                         covct_dcm_dataset *ds, char sop_uid[65],
                         covct_error *err)
{
    uint8_t *rgb = NULL;
    uint32_t w = 0, h = 0;
    covct_rc rc = covct_report_render(in, axial, k, &rgb, &w, &h, err);
    if (!rc)
        rc = covct_report_banner(&rgb, w, &h, BANNER_TEXT, err);
    if (!rc && (w > 65535 || h > 65535))
        rc = COVCT_ERR(err, COVCT_ERR_LIMIT, "key image %ux%u too large",
                       (unsigned)w, (unsigned)h);
    if (!rc)
        rc = new_uid(sop_uid, err);
    if (rc) {
        covct_free(rgb);
        return rc;
    }
    bld b = {COVCT_OK, err, 0};
    common(&b, ds, s, now, SC_SOP_CLASS, sop_uid, series_uid, "OT",
           SC_SERIES_NO, "covct AI key images (to be confirmed)");
    /* SC Equipment (C.8.6.1): made on a workstation. */
    put_str(&b, ds, T(0x0008, 0x0064), "CS", "WSD");
    put_str(&b, ds, T(0x0018, 0x1016), "LO", "covct");
    put_str(&b, ds, T(0x0018, 0x1018), "LO", "covct analyze");
    put_str(&b, ds, T(0x0018, 0x1019), "LO", COVCT_VERSION);
    put_str(&b, ds, T(0x0018, 0x1012), "DA", now->da);
    put_str(&b, ds, T(0x0018, 0x1014), "TM", now->tm);
    /* General Image (C.7.6.1).  Rows run toward the patient's left, and
     * down toward posterior (axial) or the feet (coronal):
     * covct_report_render's radiological display convention. */
    put_is(&b, ds, T(0x0020, 0x0013), number);
    put_str(&b, ds, T(0x0020, 0x0020), "CS", axial ? "L\\P" : "L\\F");
    put_str(&b, ds, T(0x0008, 0x0008), "CS",
            axial ? "DERIVED\\SECONDARY\\AXIAL"
                  : "DERIVED\\SECONDARY\\REFORMATTED");
    put_str(&b, ds, T(0x0028, 0x0301), "CS", "YES");
    put_str(&b, ds, T(0x0028, 0x2110), "CS", "00");
    char desc[256];
    if (axial) {
        char which[64];
        if (s->ref[k].instance_number >= 0)
            snprintf(which, sizeof which, "Instance Number %lld",
                     (long long)s->ref[k].instance_number);
        else
            snprintf(which, sizeof which, "slice %u in position order",
                     (unsigned)k + 1);
        snprintf(desc, sizeof desc,
                 "Axial image (%s, z %.1f mm) of the source series in lung "
                 "window (W 1500 L -600) with covct's lobe outlines and "
                 "opacities overlaid; AI result, to be confirmed by a "
                 "radiologist",
                 which, covct_report_slice_z(in, k));
        covct_dcm_dataset *si = item(&b, ds, T(0x0008, 0x2112));
        if (si) {
            ref_source(&b, si, &s->ref[k]);
            put_code(&b, si, T(0x0040, 0xA170), &C_SOURCE_IMAGE);
        }
    } else {
        snprintf(desc, sizeof desc,
                 "Coronal reformat of the source series in lung window with "
                 "covct's lobe outlines and opacities overlaid; AI result, "
                 "to be confirmed by a radiologist");
        put_code(&b, ds, T(0x0008, 0x9215), &C_MPR);
    }
    put_str(&b, ds, T(0x0008, 0x2111), "ST", desc);
    put_code(&b, ds, T(0x0008, 0x9215), &C_SEGMENTATION);
    put_str(&b, ds, T(0x0020, 0x4000), "LT", COVCT_REPORT_AI_NOTICE);
    /* Image Pixel: 8-bit RGB, colour-by-pixel. */
    put_u16(&b, ds, T(0x0028, 0x0002), 3);
    put_str(&b, ds, T(0x0028, 0x0004), "CS", "RGB");
    put_u16(&b, ds, T(0x0028, 0x0006), 0);
    put_u16(&b, ds, T(0x0028, 0x0010), h);
    put_u16(&b, ds, T(0x0028, 0x0011), w);
    put_u16(&b, ds, T(0x0028, 0x0100), 8);
    put_u16(&b, ds, T(0x0028, 0x0101), 8);
    put_u16(&b, ds, T(0x0028, 0x0102), 7);
    put_u16(&b, ds, T(0x0028, 0x0103), 0);
    size_t n = (size_t)w * h * 3;
    /* An odd length gets its pad byte from the writer (PS3.5 8.1.1). */
    put(&b, ds, T(0x7FE0, 0x0010), "OB", rgb, n);
    finish_charset(&b, ds);
    covct_free(rgb);
    return b.rc;
}

covct_rc covct_report_write_dicom(const char *outdir,
                                  const covct_report_input *in,
                                  const covct_series *series,
                                  covct_dicom_results *out, covct_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!outdir || !*outdir || !in || !in->ct || !in->seg || !in->lungs)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "DICOM results: folder, CT, segmentation and lung "
                         "result are required");
    if (!series)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "DICOM results need the source DICOM series (a "
                         "NIfTI volume has no source images to reference)");
    if (!covct_report_has_measures(in))
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "DICOM results: no lungs were found, so there is "
                         "nothing to encode");
    const covct_volume *ct = in->ct;
    const covct_seg *sg = in->seg;
    if (sg->nx != ct->nx || sg->ny != ct->ny || sg->nz != ct->nz ||
        !sg->lungs || !sg->lobes || !sg->lesions)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "DICOM results: the segmentation does not match "
                         "the CT");
    if (ct->nx > 65535 || ct->ny > 65535 || ct->nx == 0 || ct->ny == 0)
        return COVCT_ERR(err, COVCT_ERR_LIMIT,
                         "DICOM results: %ux%u images do not fit Rows and "
                         "Columns",
                         (unsigned)ct->nx, (unsigned)ct->ny);
    src s;
    covct_rc rc = src_open(&s, series, ct, err);
    if (rc)
        return rc;
    if (!s.for_uid[0]) {
        rc = COVCT_ERR(err, COVCT_ERR_UNSUPPORTED,
                       "%s: no (0020,0052) Frame of Reference UID common to "
                       "the series; a segmentation cannot be placed on the "
                       "images without it, so no DICOM results are written",
                       s.ref[0].path);
        src_close(&s);
        return rc;
    }
    stamp now;
    stamp_now(&now);
    covct_dicom_results local = {0};
    outset o = {outdir, out ? &local : NULL};
    seg_info *si = covct_calloc(1, sizeof *si);
    covct_dcm_dataset *seg = covct_dcm_dataset_new();
    covct_dcm_dataset *sr = covct_dcm_dataset_new();
    if (!si || !seg || !sr) {
        rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = covct_mkdirs(outdir, 0777, err)))
        goto out;
    /* Earlier key images in the same folder would mix with the new ones. */
    covct_report_remove_files(outdir, "key-", ".dcm");

    rc = build_seg(in, &s, &now, seg, si, err);
    if (rc) {
        covct_error_prefix(err, "seg.dcm: ");
        goto out;
    }
    if ((rc = write_object(&o, "seg.dcm", "SEG", seg, SEG_SOP_CLASS,
                           si->sop_uid, si->series_uid, err)))
        goto out;
    covct_dcm_dataset_free(seg);
    seg = NULL;

    char sr_uid[65], sr_series[65];
    rc = build_sr(in, &s, &now, si, sr, sr_uid, sr_series, err);
    if (rc) {
        covct_error_prefix(err, "sr.dcm: ");
        goto out;
    }
    if ((rc = write_object(&o, "sr.dcm", "SR", sr, SR_SOP_CLASS, sr_uid,
                           sr_series, err)))
        goto out;

    /* Key images: the report's axial key slices, then the coronal
     * overview, one series. */
    uint32_t ks[COVCT_REPORT_MAX_KEY];
    int nk = covct_report_pick_slices(in, ks);
    char sc_series[65];
    if ((rc = new_uid(sc_series, err)))
        goto out;
    for (int i = 0; i <= nk && !rc; i++) {
        int axial = i < nk;
        char name[32], uid[65];
        snprintf(name, sizeof name, "key-%02d.dcm", i + 1);
        covct_dcm_dataset *ds = covct_dcm_dataset_new();
        if (!ds) {
            rc = COVCT_ERR(err, COVCT_ERR_NOMEM, "out of memory");
            break;
        }
        rc = build_sc(in, &s, &now, sc_series, axial, axial ? ks[i] : 0,
                      i + 1, ds, uid, err);
        if (rc)
            covct_error_prefix(err, "%s: ", name);
        else
            rc = write_object(&o, name, "SC", ds, SC_SOP_CLASS, uid,
                              sc_series, err);
        covct_dcm_dataset_free(ds);
    }
out:
    covct_dcm_dataset_free(seg);
    covct_dcm_dataset_free(sr);
    covct_free(si);
    src_close(&s);
    if (out) {
        if (rc)
            covct_dicom_results_free(&local);
        else
            *out = local;
    }
    return rc;
}
