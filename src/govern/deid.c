/*
 * De-identification after DICOM PS3.15 Annex E: the Basic Application
 * Level Confidentiality Profile (E.1, Table E.1-1 in deid-table.c) with
 * the options of E.3 that covct offers.  Design and choices:
 * docs/internals/deid.md.
 */
#include <stdio.h>
#include <string.h>

#include "covct/limits.h"
#include "govern/govern_int.h"

#define T_PATIENT_NAME COVCT_TAG(0x0010, 0x0010)
#define T_PATIENT_ID COVCT_TAG(0x0010, 0x0020)
#define T_BIRTH_DATE COVCT_TAG(0x0010, 0x0030)
#define T_STUDY_UID COVCT_TAG(0x0020, 0x000D)
#define T_SOP_CLASS COVCT_TAG(0x0008, 0x0016)
#define T_IMAGE_TYPE COVCT_TAG(0x0008, 0x0008)
#define T_BURNED_IN COVCT_TAG(0x0028, 0x0301)
#define T_IDENTITY_REMOVED COVCT_TAG(0x0012, 0x0062)
#define T_DEID_METHOD COVCT_TAG(0x0012, 0x0063)
#define T_DEID_METHOD_CODES COVCT_TAG(0x0012, 0x0064)
#define T_LONGITUDINAL COVCT_TAG(0x0028, 0x0303)
#define T_PIXEL_DATA COVCT_TAG(0x7FE0, 0x0010)

#define VR_SQ COVCT_VR('S', 'Q')
#define VR_UI COVCT_VR('U', 'I')
#define VR_UN COVCT_VR('U', 'N')
#define VR_DA COVCT_VR('D', 'A')
#define VR_DT COVCT_VR('D', 'T')
#define VR_TM COVCT_VR('T', 'M')

/* ---- the table ---------------------------------------------------------- */

const covct_deid_rule *covct_deid_rule_find(uint32_t tag)
{
    size_t lo = 0, hi = covct_deid_table_plain;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (covct_deid_table[mid].tag < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < covct_deid_table_plain && covct_deid_table[lo].tag == tag)
        return &covct_deid_table[lo];
    /* Repeating groups (50xx,xxxx), (60xx,3000), (60xx,4000): PS3.5 7.6,
     * the even groups of the range only. */
    for (size_t i = covct_deid_table_plain; i < covct_deid_table_len; i++) {
        const covct_deid_rule *r = &covct_deid_table[i];
        if ((tag & r->mask) == r->tag && !(COVCT_TAG_GROUP(tag) & 1) &&
            COVCT_TAG_GROUP(tag) <= (COVCT_TAG_GROUP(r->tag) | 0x1E))
            return r;
    }
    return NULL;
}

const char *covct_deid_table_basic(uint32_t tag)
{
    static const char *const names[] = {"K",   "D",   "Z",   "X",
                                        "U",   "C",   "X/Z", "X/D",
                                        "Z/D", "X/Z/D", "X/Z/U*"};
    if (COVCT_TAG_GROUP(tag) & 1)
        return "X"; /* the "Private attributes" row */
    const covct_deid_rule *r = covct_deid_rule_find(tag);
    return r ? names[r->basic] : NULL;
}

const char *covct_deid_action_str(covct_deid_action a)
{
    switch (a) {
    case COVCT_DEID_KEEP: return "K";
    case COVCT_DEID_DUMMY: return "D";
    case COVCT_DEID_ZERO: return "Z";
    case COVCT_DEID_REMOVE: return "X";
    case COVCT_DEID_UID: return "U";
    case COVCT_DEID_CLEAN: return "C";
    case COVCT_DEID_UID_SEQ: return "U*";
    }
    return "?";
}

/* Compound actions (PS3.15 E.1.1: "X/Z: X unless Z is required to maintain
 * IOD conformance", and so on) need the IOD's type of the attribute, which
 * covct does not model.  It takes the choice that conforms whatever the
 * type: D (a dummy satisfies types 1, 2 and 3), else Z (types 2 and 3),
 * else X.  None of them leaks the original value.  A sequence cannot hold
 * a meaningful dummy item, so D on a sequence becomes an empty sequence
 * (Z); X/Z/U* keeps the sequence and maps the UIDs inside (U*), which is
 * what keeps a SEG or a reformat linked to its source images. */
static covct_deid_action resolve_basic(int basic, uint16_t vr)
{
    bool sq = vr == VR_SQ;
    switch (basic) {
    case DEID_K: return COVCT_DEID_KEEP;
    case DEID_X: return COVCT_DEID_REMOVE;
    case DEID_Z: case DEID_XZ: return COVCT_DEID_ZERO;
    case DEID_D: case DEID_XD: case DEID_ZD: case DEID_XZD:
        return sq ? COVCT_DEID_ZERO : COVCT_DEID_DUMMY;
    case DEID_U: return sq ? COVCT_DEID_UID_SEQ : COVCT_DEID_UID;
    case DEID_XZU: return sq ? COVCT_DEID_UID_SEQ : COVCT_DEID_UID;
    case DEID_C: return COVCT_DEID_CLEAN;
    }
    return COVCT_DEID_REMOVE;
}

/* The option columns that apply under `opts`: 'K' if one of them keeps,
 * else 'C' if one cleans, else 0. */
static char option_code(const covct_deid_rule *r, const covct_deid_opts *o)
{
    char c[5] = {o->keep_device_id ? r->dev : 0,
                 o->keep_institution_id ? r->inst : 0,
                 o->keep_patient_chars ? r->pat : 0,
                 o->shift_dates ? r->dates : 0,
                 o->clean_descriptors ? r->desc : 0};
    char best = 0;
    for (int i = 0; i < 5; i++) {
        if (c[i] == 'K')
            return 'K';
        if (c[i] == 'C')
            best = 'C';
    }
    return best;
}

covct_deid_action covct_deid_action_for(uint32_t tag, uint16_t vr,
                                        const covct_deid_opts *opts)
{
    /* Table E.1-1 "Private attributes": X; covct offers no Retain Safe
     * Private Option, as it cannot tell which private values are safe. */
    if (COVCT_TAG_GROUP(tag) & 1)
        return COVCT_DEID_REMOVE;
    const covct_deid_rule *r = covct_deid_rule_find(tag);
    if (!r)
        return vr == VR_SQ ? COVCT_DEID_UID_SEQ : COVCT_DEID_KEEP;
    /* With shifted dates every listed date is shifted, even where another
     * option would keep it (the calibration dates of Rtn. Dev. Id.): a
     * real date next to shifted ones would give the shift away. */
    if (opts->shift_dates && r->dates)
        return COVCT_DEID_CLEAN;
    char oc = option_code(r, opts);
    if (oc == 'K')
        return vr == VR_SQ ? COVCT_DEID_UID_SEQ : COVCT_DEID_KEEP;
    if (oc == 'C')
        return COVCT_DEID_CLEAN;
    return resolve_basic(r->basic, vr);
}

void covct_deid_opts_default(covct_deid_opts *o)
{
    memset(o, 0, sizeof *o);
    o->project = "";
    o->shift_dates = true;
    o->keep_patient_chars = true;
    o->keep_device_id = false;
    o->keep_institution_id = false;
    o->clean_descriptors = true;
}

/* ---- burned-in annotation ----------------------------------------------- */

static void upper_trim(char *s)
{
    for (char *p = s; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
}

bool covct_deid_burned_in(const covct_dcm_dataset *ds, char *why, size_t cap)
{
    char bia[32] = "", cls[68] = "", v[68];
    covct_dcm_get_string(ds, T_BURNED_IN, 0, bia, sizeof bia, NULL);
    upper_trim(bia);
    if (!strcmp(bia, "YES")) {
        snprintf(why, cap, "Burned In Annotation (0028,0301) is YES: the "
                           "pixels show text that may identify the patient");
        return true;
    }
    if (!strcmp(bia, "NO"))
        return false;
    covct_dcm_get_string(ds, T_SOP_CLASS, 0, cls, sizeof cls, NULL);
    /* PS3.4 B.5: the Secondary Capture family, 1.2.840.10008.5.1.4.1.1.7
     * and its .1 to .4 multi-frame variants. */
    static const char sc[] = "1.2.840.10008.5.1.4.1.1.7";
    if (!strncmp(cls, sc, sizeof sc - 1) &&
        (cls[sizeof sc - 1] == '\0' || cls[sizeof sc - 1] == '.')) {
        snprintf(why, cap, "a Secondary Capture image (SOP Class %s) without "
                           "Burned In Annotation (0028,0301) NO: screen "
                           "captures usually show patient data",
                 cls);
        return true;
    }
    const covct_dcm_element *it = covct_dcm_dataset_get(ds, T_IMAGE_TYPE);
    uint32_t n = it ? covct_dcm_element_vm(it) : 0;
    for (uint32_t i = 0; i < n && i < 16; i++) {
        if (covct_dcm_element_get_string(it, i, v, sizeof v, NULL))
            continue;
        upper_trim(v);
        if (!strcmp(v, "SECONDARY") || strstr(v, "SCREEN")) {
            snprintf(why, cap, "Image Type (0008,0008) value %u is %s and "
                               "Burned In Annotation (0028,0301) is not NO: "
                               "the pixels may show patient data",
                     i + 1, v);
            return true;
        }
    }
    return false;
}

/* ---- values -------------------------------------------------------------- */

typedef struct deid_ctx {
    const covct_deid_key *key;
    const covct_deid_opts *opts;
    const char *project;
    char pseudonym[14];
    int shift_days;
    covct_error *err;
} deid_ctx;

static covct_rc put(covct_dcm_dataset *ds, uint32_t tag, uint16_t vr,
                    const void *v, size_t len, covct_error *err)
{
    /* Remove first: a parsed data set may hold the tag twice, and set()
     * replaces only the first. */
    covct_dcm_dataset_remove(ds, tag);
    return covct_dcm_dataset_set(ds, tag, vr, v, len, err);
}

static covct_rc put_str(covct_dcm_dataset *ds, uint32_t tag, uint16_t vr,
                        const char *s, covct_error *err)
{
    return put(ds, tag, vr, s, strlen(s), err);
}

static size_t binary_unit(uint16_t vr)
{
    switch (vr) {
    case COVCT_VR('U', 'S'): case COVCT_VR('S', 'S'):
    case COVCT_VR('O', 'W'): case COVCT_VR('O', 'B'): case VR_UN:
        return 2;
    case COVCT_VR('U', 'L'): case COVCT_VR('S', 'L'): case COVCT_VR('F', 'L'):
    case COVCT_VR('O', 'F'): case COVCT_VR('O', 'L'): case COVCT_VR('A', 'T'):
        return 4;
    case COVCT_VR('F', 'D'): case COVCT_VR('O', 'D'): case COVCT_VR('S', 'V'):
    case COVCT_VR('U', 'V'): case COVCT_VR('O', 'V'):
        return 8;
    default:
        return 0;
    }
}

/* E.1.1 D: "a non-zero length value that may be a dummy value and
 * consistent with the VR". */
static covct_rc put_dummy(covct_dcm_dataset *ds, uint32_t tag, uint16_t vr,
                          covct_error *err)
{
    static const uint8_t zeros[8];
    size_t unit = binary_unit(vr);
    if (unit)
        return put(ds, tag, vr, zeros, unit, err);
    const char *s = "ANONYMOUS";
    switch (vr) {
    case VR_DA: s = "19000101"; break;
    case VR_TM: s = "000000"; break;
    case VR_DT: s = "19000101000000"; break;
    case COVCT_VR('A', 'S'): s = "000D"; break;
    case COVCT_VR('D', 'S'): case COVCT_VR('I', 'S'): s = "0"; break;
    case COVCT_VR('U', 'R'): s = "urn:covct:anonymous"; break;
    default: break;
    }
    return put_str(ds, tag, vr, s, err);
}

/* Copy of an element's value bytes as a C string (NUL bytes end it). */
static char *value_str(const covct_dcm_element *e)
{
    size_t len;
    const uint8_t *v = covct_dcm_element_value(e, &len);
    char *s = covct_malloc(len + 1);
    if (!s)
        return NULL;
    if (len)
        memcpy(s, v, len);
    s[len] = '\0';
    return s;
}

static bool is_class_like(uint32_t tag)
{
    /* UIDs that name a kind of thing, not an instance: kept (PS3.15 E.1.1
     * lists only instance UIDs for U). */
    const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
    if (!d || !d->keyword)
        return false;
    static const char *const kinds[] = {
        "ClassUID", "TransferSyntax", "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID", "ContextUID",
        "MappingResourceUID", "CreatorVersionUID", "ImplementationClassUID"};
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (strstr(d->keyword, kinds[i]))
            return true;
    return false;
}

/* U: every value of a UI element replaced by its keyed mapping. */
static covct_rc map_uids(deid_ctx *c, covct_dcm_dataset *ds, uint32_t tag,
                         const covct_dcm_element *e)
{
    char *s = value_str(e);
    if (!s)
        return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory");
    covct_buf out = {0};
    covct_rc rc = COVCT_OK;
    char *p = s;
    for (bool first = true;; first = false) {
        char *bs = strchr(p, '\\');
        if (bs)
            *bs = '\0';
        /* PS3.5 6.2: UIDs are padded with NUL; spaces are not allowed but
         * occur, and would make the same UID hash differently. */
        while (*p == ' ')
            p++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\0'))
            p[--n] = '\0';
        char m[65] = "";
        if (n && (rc = covct_deid_map_uid(c->key, c->project, p, m, c->err)))
            goto out;
        if ((!first && (rc = covct_buf_append(&out, "\\", 1, c->err))) ||
            (rc = covct_buf_append(&out, m, strlen(m), c->err)))
            goto out;
        if (!bs)
            break;
        p = bs + 1;
    }
    rc = put(ds, tag, VR_UI, out.data ? (const char *)out.data : "", out.len,
             c->err);
out:
    covct_buf_free(&out);
    covct_free(s);
    return rc;
}

/* Days from 1970-01-01 for a proleptic Gregorian date, and back
 * (H. Hinnant's days_from_civil / civil_from_days). */
static long days_from_civil(long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long)doe - 719468;
}

static void civil_from_days(long z, long *y, unsigned *m, unsigned *d)
{
    z += 719468;
    long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (long)yoe + era * 400 + (*m <= 2);
}

/* Shift the 8 digits YYYYMMDD at p by `days` in place; false if they are
 * not a valid date or the result leaves years 0001-9999. */
static bool shift_ymd(char *p, int days)
{
    for (int i = 0; i < 8; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    long y = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10 +
             (p[3] - '0');
    unsigned m = (unsigned)((p[4] - '0') * 10 + (p[5] - '0'));
    unsigned d = (unsigned)((p[6] - '0') * 10 + (p[7] - '0'));
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap)
        return false;
    civil_from_days(days_from_civil(y, m, d) + days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return false;
    unsigned v[8] = {(unsigned)(y / 1000), (unsigned)(y / 100 % 10),
                     (unsigned)(y / 10 % 10), (unsigned)(y % 10), m / 10,
                     m % 10, d / 10, d % 10};
    for (int i = 0; i < 8; i++)
        p[i] = (char)('0' + v[i]);
    return true;
}

/* Modified dates: each DA value (and each end of a DA range) and the date
 * part of each DT shifted; times and UTC offsets kept.  A value that is not
 * a full date (a DT of year precision, a malformed DA) cannot be shifted
 * exactly and is emptied instead: false. */
static bool shift_value(char *s, uint16_t vr, int days)
{
    for (char *p = s;;) {
        char *bs = strchr(p, '\\');
        char *end = bs ? bs : p + strlen(p);
        while (p < end && *p == ' ')
            p++;
        char *q = end;
        while (q > p && q[-1] == ' ')
            q--;
        if (q > p) {
            if (vr == VR_DA) {
                /* A range "A-B" (either end may be missing). */
                char *dash = memchr(p, '-', (size_t)(q - p));
                char *a = p, *ae = dash ? dash : q;
                if (ae - a != 0 && (ae - a != 8 || !shift_ymd(a, days)))
                    return false;
                if (dash && q - (dash + 1) != 0 &&
                    (q - (dash + 1) != 8 || !shift_ymd(dash + 1, days)))
                    return false;
                if (!dash && ae - a == 0)
                    return false;
            } else if (q - p < 8 || !shift_ymd(p, days)) {
                return false;
            }
        }
        if (!bs)
            return true;
        p = bs + 1;
    }
}

/* ---- clean descriptors --------------------------------------------------- */

/* Words that describe anatomy, technique or protocol and identify nobody.
 * A description passes only if every word is here or is a short number
 * with an optional unit; otherwise it is treated as the Basic Profile
 * says.  Deliberately small: a false rejection costs a description, a
 * false acceptance could cost a patient's privacy. */
static const char *const vocab[] = {
    "abd", "abdomen", "abdominal", "acq", "acquisition", "adult", "airway",
    "airways", "and", "angio", "angiography", "ap", "aorta", "arterial",
    "ax", "axial", "bone", "body", "bolus", "brain", "cap", "cardiac",
    "chest", "child", "contrast", "cor", "coronal", "covid", "covid19",
    "ct", "cta", "ctpa", "delayed", "dose", "dual", "energy", "embolism",
    "exp", "expiration", "expiratory", "fast", "follow", "followup",
    "full", "head", "heart", "helical", "high", "hr", "hrct", "image",
    "images", "insp", "inspiration", "inspiratory", "iterative", "iv",
    "kernel", "lat", "lateral", "ld", "ldct", "localizer", "low", "lung",
    "lungs", "mediastinal", "mediastinum", "minip", "mip", "mpr", "native",
    "neck", "no", "non", "of", "on", "pa", "pediatric", "pelvis", "pe",
    "phase", "plain", "portal", "post", "pre", "prone", "protocol",
    "pulmonary", "recon", "reconstruction", "res", "resolution",
    "routine", "sag", "sagittal", "scout", "screening", "seg",
    "segmentation", "sequential", "series", "sharp", "slice", "slices",
    "smooth", "soft", "spiral", "standard", "std", "study", "supine",
    "thick", "thin", "thin-slice", "thorax", "thoracic", "tissue",
    "topogram", "up", "upper", "venous", "volume", "vr", "w", "wo",
    "window", "with", "without", "3d", "2d", "lesion", "lesions", "lobe",
    "lobes", "covct", "ai", "result", "mask", "masks"};

static bool word_ok(const char *w, size_t n)
{
    char low[32];
    if (n == 0)
        return true;
    if (n >= sizeof low)
        return false;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] - 'A' + 'a' : w[i]);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof vocab / sizeof *vocab; i++)
        if (!strcmp(low, vocab[i]))
            return true;
    /* A number of at most 4 integer digits (slice thickness, kV): longer
     * digit runs could be record numbers or dates. */
    size_t i = 0, digits = 0;
    while (i < n && low[i] >= '0' && low[i] <= '9')
        i++, digits++;
    if (digits == 0 || digits > 4)
        return false;
    if (i < n && low[i] == '.') {
        i++;
        size_t f = 0;
        while (i < n && low[i] >= '0' && low[i] <= '9')
            i++, f++;
        if (f == 0 || f > 3)
            return false;
    }
    static const char *const units[] = {"", "mm", "cm", "kv", "kvp", "mas",
                                        "ma", "ml", "s", "sec", "mgy", "x"};
    for (size_t u = 0; u < sizeof units / sizeof *units; u++)
        if (!strcmp(low + i, units[u]))
            return true;
    return false;
}

static bool text_clean(const char *s)
{
    const char *w = NULL;
    for (const char *p = s;; p++) {
        unsigned char ch = (unsigned char)*p;
        bool in = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch >= 0x80;
        if (in && !w)
            w = p;
        if (!in && w) {
            size_t n = (size_t)(p - w);
            while (n && w[n - 1] == '.')
                n--; /* a word ending a sentence */
            if (!word_ok(w, n))
                return false;
            w = NULL;
        }
        if (!ch)
            return true;
        /* Bytes of other character sets (ISO 2022 escapes, multi-byte
         * names) are not words of the vocabulary. */
        if (ch == 0x1B)
            return false;
    }
}

/* ---- the walk ------------------------------------------------------------ */

static covct_rc deid_items(deid_ctx *c, covct_dcm_dataset *ds, uint32_t tag,
                           unsigned depth);

static covct_rc apply(deid_ctx *c, covct_dcm_dataset *ds, uint32_t tag,
                      covct_deid_action a, uint16_t vr, unsigned depth);

static covct_rc clean(deid_ctx *c, covct_dcm_dataset *ds, uint32_t tag,
                      const covct_dcm_element *e, uint16_t vr,
                      unsigned depth)
{
    const covct_deid_rule *r = covct_deid_rule_find(tag);
    if (vr == VR_SQ)
        return deid_items(c, ds, tag, depth);
    char *s = value_str(e);
    if (!s)
        return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory");
    covct_rc rc = COVCT_OK;
    bool done = false;
    if (r && r->dates && c->opts->shift_dates) {
        /* Times are kept: the shift is in whole days.  Other VRs in the
         * date rows (Timezone Offset From UTC) fall back to the Basic
         * Profile: the vocabulary below is for descriptions. */
        if (vr != VR_DA && vr != VR_DT && vr != VR_TM) {
            done = false;
        } else if (vr == VR_TM) {
            done = true;
        } else if (shift_value(s, vr, c->shift_days)) {
            rc = put_str(ds, tag, vr, s, c->err);
            done = true;
        } else {
            rc = put(ds, tag, vr, "", 0, c->err);
            done = true;
        }
    } else if (covct_dcm_vr_is_string(vr) && vr != VR_UI && text_clean(s)) {
        done = true; /* kept as it is */
    }
    covct_free(s);
    if (rc || done)
        return rc;
    /* Cleaning could not make it safe: the Basic Profile decides. */
    return apply(c, ds, tag, r ? resolve_basic(r->basic, vr)
                               : COVCT_DEID_REMOVE,
                 vr, depth);
}

static covct_rc apply(deid_ctx *c, covct_dcm_dataset *ds, uint32_t tag,
                      covct_deid_action a, uint16_t vr, unsigned depth)
{
    const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
    if (!e)
        return COVCT_OK;
    switch (a) {
    case COVCT_DEID_REMOVE:
        covct_dcm_dataset_remove(ds, tag);
        return COVCT_OK;
    case COVCT_DEID_ZERO:
        return put(ds, tag, vr, "", 0, c->err);
    case COVCT_DEID_DUMMY:
        if (vr == VR_UI)
            return map_uids(c, ds, tag, e);
        return put_dummy(ds, tag, vr, c->err);
    case COVCT_DEID_UID:
    case COVCT_DEID_UID_SEQ:
        if (vr == VR_SQ)
            return deid_items(c, ds, tag, depth);
        if (vr == VR_UI || covct_dcm_vr_is_string(vr) || vr == VR_UN)
            return map_uids(c, ds, tag, e);
        return put(ds, tag, vr, "", 0, c->err);
    case COVCT_DEID_CLEAN:
        return clean(c, ds, tag, e, vr, depth);
    case COVCT_DEID_KEEP:
        if (vr == VR_SQ)
            return deid_items(c, ds, tag, depth);
        break;
    }
    /* Kept attributes the table does not list.  A UI that is not a class
     * or well-known UID is an instance UID the table missed (a newer
     * attribute): mapped, so that no original instance UID survives.  A
     * DA or DT the table does not list is still a date: shifted with the
     * dates, emptied without. */
    if (covct_deid_rule_find(tag))
        return COVCT_OK; /* kept by an option column */
    if (vr == VR_UI && !is_class_like(tag))
        return map_uids(c, ds, tag, e);
    if (vr == VR_DA || vr == VR_DT) {
        if (!c->opts->shift_dates)
            return put(ds, tag, vr, "", 0, c->err);
        char *s = value_str(e);
        if (!s)
            return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory");
        covct_rc rc = shift_value(s, vr, c->shift_days)
                          ? put_str(ds, tag, vr, s, c->err)
                          : put(ds, tag, vr, "", 0, c->err);
        covct_free(s);
        return rc;
    }
    return COVCT_OK;
}

static covct_rc deid_level(deid_ctx *c, covct_dcm_dataset *ds,
                           unsigned depth);

static covct_rc deid_items(deid_ctx *c, covct_dcm_dataset *ds, uint32_t tag,
                           unsigned depth)
{
    covct_dcm_dataset *item;
    for (size_t i = 0; (item = covct_dcm_dataset_item_mut(ds, tag, i)); i++) {
        covct_rc rc = deid_level(c, item, depth + 1);
        if (rc)
            return rc;
    }
    return COVCT_OK;
}

static bool whole_group_removed(uint16_t g)
{
    /* Curves (50xx) and overlays (60xx), PS3.3 C.9 and C.10 (retired
     * curves): the table removes Curve Data, Overlay Data and Overlay
     * Comments; covct removes the whole group, since an overlay without
     * its data is malformed and the graphics can carry text. */
    return !(g & 1) && ((g >= 0x5000 && g <= 0x501E) ||
                        (g >= 0x6000 && g <= 0x601E));
}

static covct_rc deid_level(deid_ctx *c, covct_dcm_dataset *ds, unsigned depth)
{
    if (depth > COVCT_LIMIT_SQ_DEPTH)
        return COVCT_ERR(c->err, COVCT_ERR_LIMIT,
                         "sequences nested deeper than %d",
                         COVCT_LIMIT_SQ_DEPTH);
    /* Work on a copy of the tags: actions remove and insert elements. */
    size_t n = covct_dcm_dataset_count(ds);
    uint32_t *tags = covct_malloc((n ? n : 1) * sizeof *tags);
    if (!tags)
        return COVCT_ERR(c->err, COVCT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        tags[i] = covct_dcm_element_tag(covct_dcm_dataset_at(ds, i));
    covct_rc rc = COVCT_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        uint32_t tag = tags[i];
        uint16_t g = COVCT_TAG_GROUP(tag);
        const covct_dcm_element *e = covct_dcm_dataset_get(ds, tag);
        if (!e)
            continue; /* a duplicate already handled */
        if (g == 0x0000 || g == 0x0002 || (g & 1) ||
            whole_group_removed(g)) {
            /* Command (0000) and file meta (0002) elements do not belong
             * in a data set; the writer builds a fresh meta header. */
            covct_dcm_dataset_remove(ds, tag);
            continue;
        }
        if (depth == 0 &&
            (tag == T_PATIENT_ID || tag == T_PATIENT_NAME)) {
            /* The pseudonym replaces both (Table E.1-1: Z, Z/D): a
             * follow-up CT of the same patient gets the same one. */
            rc = put_str(ds, tag, tag == T_PATIENT_ID ? COVCT_VR('L', 'O')
                                                      : COVCT_VR('P', 'N'),
                         c->pseudonym, c->err);
            continue;
        }
        if (depth == 0 &&
            (tag == T_IDENTITY_REMOVED || tag == T_DEID_METHOD ||
             tag == T_DEID_METHOD_CODES || tag == T_LONGITUDINAL)) {
            covct_dcm_dataset_remove(ds, tag); /* written afresh below */
            continue;
        }
        uint16_t vr = covct_dcm_element_vr(e);
        if (vr == VR_UN) {
            /* UN of a defined length is opaque: with a known VR it is
             * handled as that VR; a sequence or an unknown attribute in
             * UN cannot be looked into, so it goes. */
            const covct_dcm_dict_entry *d = covct_dcm_dict_lookup(tag);
            if (!d || d->vr == VR_SQ || d->vr == COVCT_VR_NONE ||
                d->vr == COVCT_VR('x', 's')) {
                covct_dcm_dataset_remove(ds, tag);
                continue;
            }
            vr = d->vr;
        }
        if (tag == T_PIXEL_DATA && depth == 0)
            continue; /* kept byte for byte, fragments included */
        rc = apply(c, ds, tag, covct_deid_action_for(tag, vr, c->opts), vr,
                   depth);
    }
    covct_free(tags);
    return rc;
}

/* ---- the object ---------------------------------------------------------- */

static covct_rc add_code(covct_dcm_dataset *ds, const char *value,
                         const char *meaning, covct_error *err)
{
    covct_dcm_dataset *it;
    covct_rc rc = covct_dcm_dataset_add_item(ds, T_DEID_METHOD_CODES, &it,
                                             err);
    if (!rc)
        rc = covct_dcm_dataset_set_string(it, COVCT_TAG(0x0008, 0x0100),
                                          COVCT_VR('S', 'H'), value, err);
    if (!rc)
        rc = covct_dcm_dataset_set_string(it, COVCT_TAG(0x0008, 0x0102),
                                          COVCT_VR('S', 'H'), "DCM", err);
    if (!rc)
        rc = covct_dcm_dataset_set_string(it, COVCT_TAG(0x0008, 0x0104),
                                          COVCT_VR('L', 'O'), meaning, err);
    return rc;
}

/* PS3.15 E.1.1 step: "the attribute Patient Identity Removed (0012,0062)
 * shall be replaced or added ... with a value of YES, and ... De-
 * identification Method (0012,0063) or De-identification Method Code
 * Sequence (0012,0064)"; covct writes both, the codes from CID 7050. */
static covct_rc mark(deid_ctx *c, covct_dcm_dataset *ds)
{
    const covct_deid_opts *o = c->opts;
    covct_error *err = c->err;
    covct_rc rc;
    char method[512];
    snprintf(method, sizeof method,
             "covct deid: PS3.15 Basic Profile%s%s%s%s%s\\"
             "keyed-hash pseudonyms and UIDs",
             o->shift_dates ? "\\Retain Longitudinal Modified Dates" : "",
             o->keep_patient_chars ? "\\Retain Patient Characteristics" : "",
             o->keep_device_id ? "\\Retain Device Identity" : "",
             o->keep_institution_id ? "\\Retain Institution Identity" : "",
             o->clean_descriptors ? "\\Clean Descriptors" : "");
    if ((rc = put_str(ds, T_IDENTITY_REMOVED, COVCT_VR('C', 'S'), "YES",
                      err)) ||
        (rc = put_str(ds, T_DEID_METHOD, COVCT_VR('L', 'O'), method, err)) ||
        (rc = add_code(ds, "113100",
                       "Basic Application Confidentiality Profile", err)) ||
        (o->shift_dates &&
         (rc = add_code(ds, "113107",
                        "Retain Longitudinal Temporal Information Modified "
                        "Dates Option",
                        err))) ||
        (o->keep_patient_chars &&
         (rc = add_code(ds, "113108", "Retain Patient Characteristics Option",
                        err))) ||
        (o->keep_device_id &&
         (rc = add_code(ds, "113109", "Retain Device Identity Option",
                        err))) ||
        (o->keep_institution_id &&
         (rc = add_code(ds, "113112", "Retain Institution Identity Option",
                        err))) ||
        (o->clean_descriptors &&
         (rc = add_code(ds, "113105", "Clean Descriptors Option", err))))
        return rc;
    /* Longitudinal Temporal Information Modified (0028,0303), PS3.3
     * C.7.6.1: MODIFIED when dates were shifted, REMOVED otherwise. */
    return put_str(ds, T_LONGITUDINAL, COVCT_VR('C', 'S'),
                   o->shift_dates ? "MODIFIED" : "REMOVED", err);
}

/* The string the patient's pseudonym and date shift derive from: Patient
 * ID; without one, name and birth date; without those, the Study Instance
 * UID (one pseudonym per study).  The prefixes are bytes no LO or PN
 * value may contain, so the kinds cannot collide. */
static void patient_key(const covct_dcm_dataset *ds, char *out, size_t cap)
{
    char id[80] = "", name[400] = "", birth[40] = "", study[80] = "";
    covct_dcm_get_string(ds, T_PATIENT_ID, 0, id, sizeof id, NULL);
    if (id[0]) {
        snprintf(out, cap, "%s", id);
        return;
    }
    covct_dcm_get_string(ds, T_PATIENT_NAME, 0, name, sizeof name, NULL);
    covct_dcm_get_string(ds, T_BIRTH_DATE, 0, birth, sizeof birth, NULL);
    if (name[0] || birth[0]) {
        snprintf(out, cap, "\001%s\001%s", name, birth);
        return;
    }
    covct_dcm_get_string(ds, T_STUDY_UID, 0, study, sizeof study, NULL);
    snprintf(out, cap, "\002%s", study);
}

covct_rc covct_deid_dataset(covct_dcm_dataset *ds, const covct_deid_key *key,
                            const covct_deid_opts *opts, covct_error *err)
{
    covct_deid_opts defaults;
    if (!opts) {
        covct_deid_opts_default(&defaults);
        opts = &defaults;
    }
    if (!key)
        return COVCT_ERR(err, COVCT_ERR_ARG, "de-identification needs a key");
    char why[256];
    if (covct_deid_burned_in(ds, why, sizeof why))
        return COVCT_ERR(err, COVCT_ERR_UNSUPPORTED, "refused: %s", why);
    deid_ctx c = {.key = key, .opts = opts,
                  .project = opts->project ? opts->project : "", .err = err};
    char pk[600];
    patient_key(ds, pk, sizeof pk);
    covct_rc rc = covct_deid_pseudonym(key, c.project, pk, c.pseudonym, err);
    if (!rc)
        rc = covct_deid_date_shift(key, c.project, pk, &c.shift_days, err);
    if (!rc)
        rc = deid_level(&c, ds, 0);
    /* Patient ID and Name are type 2 in the Patient Module: present with
     * the pseudonym even where the original had neither. */
    if (!rc && !covct_dcm_dataset_get(ds, T_PATIENT_ID))
        rc = put_str(ds, T_PATIENT_ID, COVCT_VR('L', 'O'), c.pseudonym, err);
    if (!rc && !covct_dcm_dataset_get(ds, T_PATIENT_NAME))
        rc = put_str(ds, T_PATIENT_NAME, COVCT_VR('P', 'N'), c.pseudonym,
                     err);
    if (!rc)
        rc = mark(&c, ds);
    return rc;
}

covct_rc covct_deid_file(covct_dcm_file *f, const covct_deid_key *key,
                         const covct_deid_opts *opts, covct_buf *out,
                         covct_error *err)
{
    covct_dcm_dataset *ds = covct_dcm_file_dataset(f);
    covct_rc rc = covct_deid_dataset(ds, key, opts, err);
    if (rc)
        return rc;
    const covct_dcm_element *px = covct_dcm_dataset_get(ds, T_PIXEL_DATA);
    /* Compressed pixel data stay as they are, in their transfer syntax:
     * re-encoding would change the pixels of lossy syntaxes.  Native data
     * are written explicit VR little endian, which leaves the values (not
     * always the bytes: big endian input is swapped) unchanged. */
    if (px && covct_dcm_element_encapsulated(px))
        return covct_dcm_write_buffer_ts(ds, covct_dcm_file_ts(f), out, err);
    return covct_dcm_write_buffer(ds, out, err);
}

covct_rc covct_deid_buffer(const uint8_t *in, size_t len,
                           const covct_deid_key *key,
                           const covct_deid_opts *opts, covct_buf *out,
                           covct_error *err)
{
    uint8_t *copy = covct_malloc(len ? len : 1);
    if (!copy)
        return COVCT_ERR(err, COVCT_ERR_NOMEM,
                         "out of memory for a %zu-byte file", len);
    if (len)
        memcpy(copy, in, len);
    covct_dcm_file *f = NULL;
    covct_rc rc = covct_dcm_file_parse(copy, len, NULL, &f, err);
    if (!rc)
        rc = covct_deid_file(f, key, opts, out, err);
    covct_dcm_file_free(f);
    return rc;
}
