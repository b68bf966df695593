/* report.html: one self-contained page for the radiologist.  Images are
 * embedded as data: URIs (RFC 2397) with base64 (RFC 4648), the style
 * sheet sits in a <style> block: the page needs nothing beside it, so it
 * can be mailed, archived or opened offline.  Every text that comes from
 * outside (paths, DICOM attributes, reasons) is escaped. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "report/report_int.h"

/* ---- base64 ------------------------------------------------------------------ */
covct_rc covct_base64_append(covct_buf *out, const uint8_t *p, size_t n,
                             covct_error *err)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t groups = n / 3 + (n % 3 != 0), need;
    if (!covct_mul_size(groups, 4, &need))
        return COVCT_ERR(err, COVCT_ERR_LIMIT, "base64: %zu bytes too many", n);
    covct_rc rc = covct_buf_reserve(out, need, err);
    if (rc)
        return rc;
    char *o = (char *)out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = '=';
    }
    out->len += need;
    return COVCT_OK;
}

/* ---- an output buffer that remembers its first failure -------------------- */
typedef struct html {
    covct_buf b;
    covct_rc rc;
    covct_error *err;
} html;

static void put(html *h, const char *s)
{
    if (!h->rc)
        h->rc = covct_buf_append(&h->b, s, strlen(s), h->err);
}

static void putf(html *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(html *h, const char *fmt, ...)
{
    if (h->rc)
        return;
    va_list ap;
    va_start(ap, fmt);
    h->rc = covct_buf_vappendf(&h->b, h->err, fmt, ap);
    va_end(ap);
}

/* Text content or attribute value: the five characters HTML gives meaning
 * to become references; control characters other than tab and newline
 * are dropped (they are not allowed in HTML text, WHATWG 13.1.4). */
static void put_esc_n(html *h, const char *s, size_t n)
{
    for (size_t i = 0; i < n && s[i] && !h->rc; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&': put(h, "&amp;"); break;
        case '<': put(h, "&lt;"); break;
        case '>': put(h, "&gt;"); break;
        case '"': put(h, "&quot;"); break;
        case '\'': put(h, "&#39;"); break;
        default:
            if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7F)
                break;
            h->rc = covct_buf_append(&h->b, &c, 1, h->err);
        }
    }
}

static void put_esc(html *h, const char *s)
{
    put_esc_n(h, s ? s : "", (size_t)-1);
}

/* ---- wording ------------------------------------------------------------------ */
static const char *category_words(covct_category c)
{
    /* RSNA expert consensus (Simpson et al., Radiology: Cardiothoracic
     * Imaging 2020;2:e200152). */
    switch (c) {
    case COVCT_CAT_NEGATIVE: return "Negative for pneumonia";
    case COVCT_CAT_TYPICAL: return "Typical appearance of COVID-19 pneumonia";
    case COVCT_CAT_INDETERMINATE: return "Indeterminate appearance";
    case COVCT_CAT_ATYPICAL:
        return "Atypical appearance (an alternative diagnosis is more likely)";
    }
    return "Indeterminate appearance";
}

static const char *lobe_words(int l)
{
    switch (l) {
    case COVCT_LOBE_RUL: return "Right upper lobe";
    case COVCT_LOBE_RML: return "Right middle lobe";
    case COVCT_LOBE_RLL: return "Right lower lobe";
    case COVCT_LOBE_LUL: return "Left upper lobe and lingula";
    case COVCT_LOBE_LLL: return "Left lower lobe";
    }
    return "";
}

/* Lobes in the order a radiologist reads them: right then left, top down. */
static const int lobe_order[COVCT_N_LOBES] = {
    COVCT_LOBE_RUL, COVCT_LOBE_RML, COVCT_LOBE_RLL, COVCT_LOBE_LUL,
    COVCT_LOBE_LLL};

static void put_date(html *h, const char *d)
{
    /* DICOM DA is YYYYMMDD (PS3.5 6.2); show it as YYYY-MM-DD. */
    size_t n = strlen(d);
    int digits = n == 8;
    for (size_t i = 0; digits && i < 8; i++)
        digits = d[i] >= '0' && d[i] <= '9';
    if (digits)
        putf(h, "%.4s-%.2s-%.2s", d, d + 4, d + 6);
    else
        put_esc(h, d);
}

static void put_distribution(html *h, const covct_measures *m)
{
    if (!(m->lesion_ml > 0)) {
        put(h, "No ground glass or consolidation detected.");
        return;
    }
    if (m->bilateral)
        put(h, "Bilateral");
    else
        put(h, m->right_pct >= 50 ? "Right lung only or mostly"
                                  : "Left lung only or mostly");
    putf(h, " (%.0f&nbsp;%% of lesion volume in the right lung); ",
         m->right_pct);
    if (m->peripheral_pct >= 70)
        put(h, "predominantly peripheral");
    else if (m->peripheral_pct <= 30)
        put(h, "predominantly central");
    else
        put(h, "both peripheral and central");
    putf(h, " (%.0f&nbsp;%% in the outer third of the lungs); ",
         m->peripheral_pct);
    if (m->lower_pct >= 60)
        put(h, "lower-lobe predominant");
    else if (m->lower_pct <= 30)
        put(h, "upper-lobe predominant");
    else
        put(h, "no clear upper or lower predominance");
    putf(h, " (%.0f&nbsp;%% in the lower lobes).", m->lower_pct);
}

static const char style[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,"
    "Arial,sans-serif;max-width:1100px;margin:0 auto;padding:16px 24px;"
    "color:#1a1a1a;background:#fff;line-height:1.45}\n"
    "h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin-top:1.6em;"
    "border-bottom:1px solid #ccc;padding-bottom:.2em}\n"
    ".notice{border:2px solid #b45309;background:#fff7ed;color:#7c2d12;"
    "padding:10px 14px;font-weight:600;font-size:1.1em;border-radius:6px;"
    "margin:12px 0}\n"
    ".notchest{border:2px solid #991b1b;background:#fef2f2;color:#7f1d1d;"
    "padding:10px 14px;border-radius:6px}\n"
    ".score{font-size:1.5em;margin:.3em 0}.category{font-size:1.2em;"
    "margin:.3em 0}\n"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid "
    "#ccc;padding:4px 10px;text-align:right}th{background:#f3f4f6}\n"
    "th:first-child,td:first-child{text-align:left}tr.total td{font-weight:"
    "600;background:#f9fafb}\n"
    "table.meta td{border:none;text-align:left;padding:1px 14px 1px 0}"
    "table.meta td:first-child{color:#555}\n"
    "table.kv td{text-align:left}table.kv td:first-child{color:#333;"
    "white-space:nowrap}\n"
    "figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top;"
    "max-width:100%}figure img{max-width:100%;height:auto;border:1px solid "
    "#444;background:#000;display:block}figcaption{font-size:.9em;"
    "max-width:520px}\n"
    ".sw{display:inline-block;width:.9em;height:.9em;border:1px solid #555;"
    "vertical-align:-.1em;margin:0 4px 0 12px}\n"
    ".small{color:#555;font-size:.9em}footer{margin-top:2em;color:#666;"
    "font-size:.85em;border-top:1px solid #ccc;padding-top:.5em}\n";

static void put_header(html *h, const covct_report_input *in)
{
    put(h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
           "<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, "
           "initial-scale=1\">\n<title>Chest CT analysis: ");
    put_esc(h, in->source);
    put(h, "</title>\n<style>\n");
    put(h, style);
    put(h, "</style>\n</head>\n<body>\n<header>\n<h1>Chest CT analysis "
           "for COVID-19 pneumonia</h1>\n<table class=\"meta\">\n");
    put(h, "<tr><td>Source</td><td>");
    put_esc(h, in->source);
    put(h, "</td></tr>\n");
    if (in->patient_id && *in->patient_id) {
        put(h, "<tr><td>Patient ID</td><td>");
        put_esc(h, in->patient_id);
        put(h, "</td></tr>\n");
    }
    if (in->study_date && *in->study_date) {
        put(h, "<tr><td>Study date</td><td>");
        put_date(h, in->study_date);
        put(h, "</td></tr>\n");
    }
    if (in->series_description && *in->series_description) {
        put(h, "<tr><td>Series</td><td>");
        put_esc(h, in->series_description);
        put(h, "</td></tr>\n");
    }
    const covct_volume *ct = in->ct;
    putf(h, "<tr><td>Volume</td><td>%u &times; %u &times; %u voxels, "
            "%.2f &times; %.2f &times; %.2f mm</td></tr>\n",
         (unsigned)ct->nx, (unsigned)ct->ny, (unsigned)ct->nz,
         ct->spacing[0], ct->spacing[1], ct->spacing[2]);
    putf(h, "<tr><td>Analysis</td><td>covct %s, %.1f s</td></tr>\n",
         COVCT_VERSION, in->seconds);
    put(h, "</table>\n</header>\n");
    put(h, "<div class=\"notice\" role=\"note\">AI-assisted, to be confirmed "
           "by a radiologist. These results were produced automatically by "
           "software and are not a diagnosis.</div>\n");
}

static void put_findings(html *h, const covct_measures *m,
                         const covct_lung_info *li)
{
    put(h, "<section>\n<h2>Findings</h2>\n");
    if (m->dense_behind_ml >= COVCT_DENSE_BEHIND_MIN_ML)
        putf(h,
             "<div class=\"notchest\"><strong>Look at the back of the lower "
             "lungs.</strong> %.0f&nbsp;ml of dense tissue (mean %+.0f&nbsp;HU) "
             "lies between the lungs and the ribs there, outside the lung "
             "mask: consolidated dependent lung (severe pneumonia, ARDS; "
             "unenhanced about 30 to 50&nbsp;HU) or pleural effusion (about "
             "0 to 20&nbsp;HU), which density alone cannot tell apart; the "
             "key images outline it in magenta. The volumes, involvement and "
             "scores below leave it out and may understate the "
             "disease.</div>\n",
             m->dense_behind_ml, m->dense_behind_hu);
    if (li->dense_lung_ml >= COVCT_DENSE_BEHIND_MIN_ML)
        putf(h,
             "<div class=\"notchest\"><strong>Airless lung at the back of "
             "the lower lungs.</strong> %.0f&nbsp;ml of dense tissue between "
             "the aerated lungs and the ribs there holds air bronchograms, "
             "so it is lung: consolidated (severe pneumonia, ARDS) or "
             "collapsed. It is counted in the lung volumes, and where covct "
             "marks it as consolidation (the key images colour it), in the "
             "involvement and scores. Check whether it is consolidation or "
             "lung collapsed beside an effusion.</div>\n",
             li->dense_lung_ml);
    putf(h, "<p class=\"score\">CT severity score: <strong>%d / 25</strong> "
            "<span class=\"small\">(sum of the five lobe scores, 0&ndash;5 "
            "each)</span></p>\n",
         m->ct_severity_score);
    put(h, "<p class=\"category\">Category: <strong>");
    put(h, category_words(m->category));
    put(h, "</strong> <span class=\"small\">(RSNA expert consensus "
           "categories)</span></p>\n");
    int nr = m->n_reasons < 0 ? 0
             : m->n_reasons > COVCT_MAX_REASONS ? COVCT_MAX_REASONS
                                                : m->n_reasons;
    if (nr) {
        put(h, "<p>Features that led to this category:</p>\n<ul>\n");
        for (int i = 0; i < nr; i++) {
            put(h, "<li>");
            put_esc_n(h, m->reasons[i], sizeof m->reasons[i]);
            put(h, "</li>\n");
        }
        put(h, "</ul>\n");
    }
    put(h, "<table class=\"kv\">\n");
    putf(h, "<tr><td>Lung volume</td><td>right %.0f ml, left %.0f ml, "
            "total %.0f ml</td></tr>\n",
         m->right_ml, m->left_ml, m->lungs_ml);
    putf(h, "<tr><td>Involvement</td><td>%.1f&nbsp;%% of the lung volume "
            "(%.1f ml)</td></tr>\n",
         m->involvement_pct, m->lesion_ml);
    putf(h, "<tr><td>Ground glass</td><td>%.1f ml</td></tr>\n", m->ggo_ml);
    putf(h, "<tr><td>Consolidation</td><td>%.1f ml</td></tr>\n",
         m->consolidation_ml);
    putf(h, "<tr><td>Well-aerated lung</td><td>%.1f&nbsp;%% "
            "(&minus;950 to &minus;700 HU)</td></tr>\n",
         m->well_aerated_pct);
    put(h, "<tr><td>Distribution</td><td>");
    put_distribution(h, m);
    put(h, "</td></tr>\n");
    putf(h, "<tr><td>Lobes involved</td><td>%d of 5</td></tr>\n",
         m->lobes_involved);
    put(h, "</table>\n</section>\n");

    put(h, "<section>\n<h2>Lobes</h2>\n<table>\n<tr><th>Lobe</th>"
           "<th>Volume (ml)</th><th>Ground glass (ml)</th>"
           "<th>Consolidation (ml)</th><th>Lesion (ml)</th>"
           "<th>Involvement (%)</th><th>Score (0&ndash;5)</th></tr>\n");
    for (int i = 0; i < COVCT_N_LOBES; i++) {
        int l = lobe_order[i];
        const covct_lobe_measures *lm = &m->lobe[l];
        putf(h, "<tr><td>%s (%s)</td><td>%.0f</td><td>%.1f</td><td>%.1f</td>"
                "<td>%.1f</td><td>%.1f</td><td>%d</td></tr>\n",
             lobe_words(l), covct_lobe_name(l), lm->volume_ml, lm->ggo_ml,
             lm->consolidation_ml, lm->lesion_ml, lm->involvement_pct,
             lm->score);
    }
    putf(h, "<tr class=\"total\"><td>Both lungs</td><td>%.0f</td>"
            "<td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td>"
            "<td>%d / 25</td></tr>\n</table>\n"
            "<p class=\"small\">Score per lobe (Pan et al., Radiology 2020): "
            "0 none, 1 under 5&nbsp;%%, 2 5&ndash;25&nbsp;%%, "
            "3 26&ndash;50&nbsp;%%, 4 51&ndash;75&nbsp;%%, 5 over "
            "75&nbsp;%% of the lobe involved.</p>\n</section>\n",
         m->lungs_ml, m->ggo_ml, m->consolidation_ml, m->lesion_ml,
         m->involvement_pct, m->ct_severity_score);
}

static void put_legend(html *h)
{
    static const struct {
        const char *colour, *name;
    } items[] = {
        {"#008cff", "left upper lobe"}, {"#00dcdc", "left lower lobe"},
        {"#3cdc3c", "right upper lobe"}, {"#ff50c8", "right middle lobe"},
        {"#aa64ff", "right lower lobe"}, {"#ffe600", "ground glass"},
        {"#ff5000", "consolidation"}};
    put(h, "<p class=\"small\">Lung window (W 1500, L &minus;600), "
           "radiological convention: patient right on the image left. "
           "Lobe outlines:");
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        if (i == 5)
            put(h, ". Lesions, as tints:");
        putf(h, "<span class=\"sw\" style=\"background:%s\"></span>%s",
             items[i].colour, items[i].name);
    }
    put(h, ".</p>\n");
}

static void put_image(html *h, const covct_report_image *img,
                      const char *alt)
{
    putf(h, "<figure>\n<img alt=\"%s\" width=\"%u\" height=\"%u\" "
            "src=\"data:image/png;base64,",
         alt, (unsigned)img->width, (unsigned)img->height);
    if (!h->rc)
        h->rc = covct_base64_append(&h->b, img->png, img->png_len, h->err);
    put(h, "\">\n");
}

static void put_images(html *h, const covct_report_input *in,
                       const covct_report_images *im, int chest)
{
    if (!im || !im->n)
        return;
    int any_axial = 0;
    for (int i = 0; i < im->n; i++)
        any_axial |= im->img[i].is_axial;
    if (any_axial) {
        put(h, chest ? "<section>\n<h2>Key images</h2>\n"
                     : "<section>\n<h2>Images</h2>\n");
        if (chest) {
            put(h, "<p>Axial slices with the largest lesion area, at least "
                   "15 mm apart (without lesions: the slice with the most "
                   "lung and slices in the upper and lower lungs).</p>\n");
            put_legend(h);
        } else {
            put(h, "<p>The middle slice of the volume.</p>\n");
        }
    }
    for (int i = 0; i < im->n; i++) {
        const covct_report_image *img = &im->img[i];
        if (!img->is_axial) {
            if (any_axial)
                put(h, "</section>\n");
            put(h, "<section>\n<h2>Coronal overview</h2>\n");
            put_image(h, img, "Coronal overview");
            put(h, chest ? "<figcaption>Coronal plane through the centre of "
                           "the lungs"
                         : "<figcaption>Coronal plane through the middle of "
                           "the volume");
            put(h, ", head up, patient right on the image left, resampled "
                   "to square pixels.</figcaption>\n</figure>\n"
                   "</section>\n");
            return;
        }
        char alt[64];
        snprintf(alt, sizeof alt, "Axial slice %u", (unsigned)img->k);
        put_image(h, img, alt);
        const covct_slice_measures *s =
            in->m && in->m->slices && img->k < in->m->n_slices
                ? &in->m->slices[img->k]
                : NULL;
        putf(h, "<figcaption>Slice %u", (unsigned)img->k);
        if (s && s->instance_number >= 0)
            putf(h, " (instance %lld)", (long long)s->instance_number);
        putf(h, ", z = %.1f mm", covct_report_slice_z(in, img->k));
        if (chest && s)
            putf(h, ": lesion area %.1f mm&sup2;, lung area %.1f mm&sup2;",
                 s->lesion_mm2, s->lung_mm2);
        put(h, "</figcaption>\n</figure>\n");
    }
    if (any_axial)
        put(h, "</section>\n");
}

static void put_method(html *h, const covct_report_input *in)
{
    put(h,
        "<section>\n<h2>Method</h2>\n<ul>\n"
        "<li>Lungs: body, airways and lungs are segmented from the densities "
        "of the CT; dense disease against the pleura is kept inside the "
        "lung.</li>\n"
        "<li>Lobes: assigned by an anatomical model of the fissures, not "
        "traced on the fissures themselves.</li>\n");
    const bool net =
        in->lesion_method && !strcmp(in->lesion_method, "network");
    if (net)
        put(h,
            "<li>Lesions: a neural network (U-Net) trained on 50 CT slices "
            "outlined by radiologists (COVID-SemiSeg) marks ground glass and "
            "consolidation on each axial slice; only what lies inside the "
            "lung mask is counted.</li>\n");
    else
        put(h,
            "<li>Lesions: density-based detection. Ground glass is lung at "
            "&minus;700 to &minus;300 HU, consolidation &minus;300 to +100 "
            "HU, after light smoothing; vessels (by a vesselness filter) and "
            "airway walls are excluded.</li>\n");
    if (net && in->density_check)
        put(h,
            "<li>Density check of the network's lesions: voxels of "
            "well-aerated lung (under &minus;700 HU) are removed; solid "
            "opacities 10 mm or more across, and the blurred rim of "
            "consolidation up to 1.5 mm where it is &minus;400 HU or denser, "
            "are counted as consolidation.</li>\n");
    if (in->thick_slice_ml > 0)
        putf(h,
             "<li>Thick slices (%.1f mm): %.1f ml of opacity on the lungs' "
             "top and bottom surfaces was not counted. A thick slice that "
             "cuts the diaphragm, the heart or the lung apex obliquely mixes "
             "lung and soft tissue into ground-glass density there, so "
             "opacity on those surfaces cannot be told from the slice's "
             "partial volume.</li>\n",
             in->ct->spacing[2], in->thick_slice_ml);
    put(h,
        "<li>Dense tissue behind the lungs: inside the ribs, behind the "
        "back of the lower two thirds of the lungs, away from the spine, "
        "soft tissue reaching 15&nbsp;mm or more behind the lung "
        "(consolidation too thick for the lung mask, or effusion). Where it "
        "holds air bronchograms (at least 0.2&nbsp;ml of air enclosed by "
        "it) it is airless lung and is added to the lungs; the rest is "
        "measured and reported apart from 50&nbsp;ml on.</li>\n");
    put(h,
        "<li>Scores: each lobe scores 0&ndash;5 by the percentage of it "
        "involved (Pan et al.); the CT severity score is their sum. The "
        "category follows the RSNA consensus, from the distribution of the "
        "lesions.</li>\n</ul>\n"
        "<h2>Limits</h2>\n<ul>\n"
        "<li>The CT appearance alone, and so covct, does not tell COVID-19 "
        "from other causes of "
        "ground glass or consolidation (other infections, oedema, "
        "haemorrhage, atelectasis, fibrosis).</li>\n"
        "<li>Dependent atelectasis, an expiratory scan, motion, noise, "
        "contrast medium and thick slices change lung densities and can be "
        "counted as lesion or hide it.</li>\n"
        "<li>Lobe borders are modelled, so per-lobe volumes and scores are "
        "approximate.</li>\n"
        "<li>The program does not know the clinical context. Every result "
        "here must be checked on the images by a radiologist.</li>\n"
        "</ul>\n</section>\n");
}

covct_rc covct_report_html(const covct_report_input *in,
                           const covct_report_images *im, char **out,
                           covct_error *err)
{
    *out = NULL;
    if (!in || !in->ct || !in->lungs)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "report: the CT and the lung result are required");
    html h = {{0}, COVCT_OK, err};
    put_header(&h, in);
    int chest = covct_report_has_measures(in);
    if (chest) {
        put_findings(&h, in->m, in->lungs);
    } else {
        put(&h, "<section class=\"notchest\">\n<h2>Not a chest CT</h2>\n"
                "<p>covct found no pair of lungs in this volume, so it gives "
                "no lung measures and no scores.</p>\n<p>Reason: ");
        if (in->lungs->why_not[0])
            put_esc_n(&h, in->lungs->why_not, sizeof in->lungs->why_not);
        else
            put(&h, "no plausible pair of lungs found");
        put(&h, "</p>\n</section>\n");
    }
    put_images(&h, in, im, chest);
    if (chest)
        put_method(&h, in);
    putf(&h, "<footer>covct %s &middot; report schema %s &middot; files "
             "beside this page: report.json, lungs.nii.gz (1 right, 2 left), "
             "lobes.nii.gz (1 LUL, 2 LLL, 3 RUL, 4 RML, 5 RLL), "
             "lesions.nii.gz (1 ground glass, 2 consolidation), key images "
             "as PNG</footer>\n</body>\n</html>\n",
         COVCT_VERSION, COVCT_REPORT_SCHEMA);
    uint8_t nul = 0;
    if (!h.rc)
        h.rc = covct_buf_append(&h.b, &nul, 1, err);
    if (h.rc) {
        covct_buf_free(&h.b);
        return h.rc;
    }
    *out = (char *)h.b.data;
    return COVCT_OK;
}
