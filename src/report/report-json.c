/* report.json: the machine-readable report, schema COVCT_REPORT_SCHEMA,
 * documented field by field in docs/report-json.md. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "report/report_int.h"

/* Values are rounded to what the measurement supports: a voxel of a
 * 0.7 x 0.7 x 1 mm CT is 0.0005 ml, but the segmentation that decides
 * which voxels count is far coarser, so more digits would be noise. */
static double round_to(double x, double unit)
{
    if (!isfinite(x))
        return x; /* cJSON writes NaN and infinities as null */
    return round(x / unit) * unit;
}

/* Builders that remember the first failure (cJSON returns NULL when an
 * allocation fails) so the code below reads as the schema it writes. */
typedef struct jctx {
    bool ok;
} jctx;

static cJSON *chk(jctx *c, cJSON *item)
{
    if (!item)
        c->ok = false;
    return item;
}

static void add_num(jctx *c, cJSON *o, const char *k, double v)
{
    chk(c, cJSON_AddNumberToObject(o, k, v));
}

static void add_str(jctx *c, cJSON *o, const char *k, const char *v)
{
    if (v)
        chk(c, cJSON_AddStringToObject(o, k, v));
    else
        chk(c, cJSON_AddNullToObject(o, k));
}

/* An optional text: null when absent or empty. */
static void add_opt_str(jctx *c, cJSON *o, const char *k, const char *v)
{
    add_str(c, o, k, v && *v ? v : NULL);
}

static void add_bool(jctx *c, cJSON *o, const char *k, bool v)
{
    chk(c, cJSON_AddBoolToObject(o, k, v));
}

static cJSON *add_obj(jctx *c, cJSON *o, const char *k)
{
    return chk(c, cJSON_AddObjectToObject(o, k));
}

static cJSON *add_arr(jctx *c, cJSON *o, const char *k)
{
    return chk(c, cJSON_AddArrayToObject(o, k));
}

static void push(jctx *c, cJSON *arr, cJSON *item)
{
    if (!chk(c, item) || !arr) {
        cJSON_Delete(item);
        return;
    }
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        c->ok = false;
    }
}

static void add_measures(jctx *c, cJSON *root, const covct_measures *m,
                         const covct_lung_info *li)
{
    add_num(c, root, "ct_severity_score", m->ct_severity_score);
    add_str(c, root, "category", covct_category_name(m->category));
    cJSON *reasons = add_arr(c, root, "category_reasons");
    int nr = m->n_reasons < 0 ? 0
             : m->n_reasons > COVCT_MAX_REASONS ? COVCT_MAX_REASONS
                                                : m->n_reasons;
    for (int i = 0; i < nr; i++) {
        /* The reasons are fixed-size buffers: never read past them even
         * if a stage forgot the terminator. */
        char r[sizeof m->reasons[0] + 1];
        memcpy(r, m->reasons[i], sizeof m->reasons[0]);
        r[sizeof m->reasons[0]] = '\0';
        push(c, reasons, cJSON_CreateString(r));
    }

    cJSON *lungs = add_obj(c, root, "lungs");
    if (lungs) {
        add_num(c, lungs, "left_ml", round_to(m->left_ml, 0.1));
        add_num(c, lungs, "right_ml", round_to(m->right_ml, 0.1));
        add_num(c, lungs, "total_ml", round_to(m->lungs_ml, 0.1));
        add_num(c, lungs, "dense_behind_ml", round_to(m->dense_behind_ml, 0.1));
        add_num(c, lungs, "dense_behind_hu", round_to(m->dense_behind_hu, 0.1));
        add_num(c, lungs, "dense_lung_ml", round_to(li->dense_lung_ml, 0.1));
    }

    cJSON *lobes = add_obj(c, root, "lobes");
    for (int l = 1; lobes && l <= COVCT_N_LOBES; l++) {
        const covct_lobe_measures *lm = &m->lobe[l];
        cJSON *o = add_obj(c, lobes, covct_lobe_name(l));
        if (!o)
            break;
        add_num(c, o, "volume_ml", round_to(lm->volume_ml, 0.1));
        add_num(c, o, "lesion_ml", round_to(lm->lesion_ml, 0.1));
        add_num(c, o, "ggo_ml", round_to(lm->ggo_ml, 0.1));
        add_num(c, o, "consolidation_ml",
                round_to(lm->consolidation_ml, 0.1));
        add_num(c, o, "involvement_pct", round_to(lm->involvement_pct, 0.01));
        add_num(c, o, "score", lm->score);
    }

    cJSON *les = add_obj(c, root, "lesions");
    if (les) {
        add_num(c, les, "ggo_ml", round_to(m->ggo_ml, 0.1));
        add_num(c, les, "consolidation_ml",
                round_to(m->consolidation_ml, 0.1));
        add_num(c, les, "total_ml", round_to(m->lesion_ml, 0.1));
        add_num(c, les, "involvement_pct", round_to(m->involvement_pct, 0.01));
    }
    add_num(c, root, "well_aerated_pct", round_to(m->well_aerated_pct, 0.01));

    cJSON *d = add_obj(c, root, "distribution");
    if (d) {
        add_num(c, d, "peripheral_pct", round_to(m->peripheral_pct, 0.01));
        add_num(c, d, "lower_lobe_pct", round_to(m->lower_pct, 0.01));
        add_num(c, d, "right_pct", round_to(m->right_pct, 0.01));
        add_bool(c, d, "bilateral", m->bilateral);
        add_num(c, d, "lobes_involved", m->lobes_involved);
    }
}

static void add_no_measures(jctx *c, cJSON *root)
{
    static const char *const keys[] = {
        "ct_severity_score", "category", "category_reasons", "lungs",
        "lobes", "lesions", "well_aerated_pct", "distribution"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        chk(c, cJSON_AddNullToObject(root, keys[i]));
}

static void add_volume(jctx *c, cJSON *root, const covct_volume *ct)
{
    cJSON *v = add_obj(c, root, "volume");
    if (!v)
        return;
    cJSON *size = add_arr(c, v, "size");
    push(c, size, cJSON_CreateNumber(ct->nx));
    push(c, size, cJSON_CreateNumber(ct->ny));
    push(c, size, cJSON_CreateNumber(ct->nz));
    cJSON *sp = add_arr(c, v, "spacing_mm");
    for (int a = 0; a < 3; a++)
        push(c, sp, cJSON_CreateNumber(round_to(ct->spacing[a], 1e-6)));
    cJSON *aff = add_arr(c, v, "affine_lps");
    for (int r = 0; r < 4; r++) {
        cJSON *row = cJSON_CreateArray();
        for (int col = 0; row && col < 4; col++)
            push(c, row, cJSON_CreateNumber(round_to(ct->affine[r][col],
                                                     1e-6)));
        push(c, aff, row);
    }
    add_str(c, v, "dtype",
            ct->dtype == COVCT_DTYPE_FLOAT32 ? "float32" : "int16");
}

static void add_slices(jctx *c, cJSON *root, const covct_report_input *in)
{
    cJSON *arr = add_arr(c, root, "slices");
    const covct_measures *m = in->m;
    if (!arr || !m || !m->slices)
        return;
    for (uint32_t k = 0; k < m->n_slices && c->ok; k++) {
        const covct_slice_measures *s = &m->slices[k];
        cJSON *o = cJSON_CreateObject();
        push(c, arr, o);
        if (!c->ok)
            break;
        add_num(c, o, "index", k);
        add_num(c, o, "z_mm", round_to(s->z_mm, 0.01));
        if (s->instance_number >= 0)
            add_num(c, o, "instance_number", (double)s->instance_number);
        else
            chk(c, cJSON_AddNullToObject(o, "instance_number"));
        add_num(c, o, "lung_mm2", round_to(s->lung_mm2, 0.1));
        add_num(c, o, "lesion_mm2", round_to(s->lesion_mm2, 0.1));
        cJSON *ll = add_obj(c, o, "lobe_lesion_mm2");
        for (int l = 1; ll && l <= COVCT_N_LOBES; l++)
            add_num(c, ll, covct_lobe_name(l),
                    round_to(s->lobe_lesion_mm2[l], 0.1));
        add_num(c, o, "dense_behind_mm2", round_to(s->dense_behind_mm2, 0.1));
    }
}

static void add_images(jctx *c, cJSON *root, const covct_report_input *in)
{
    uint32_t ks[COVCT_REPORT_MAX_KEY];
    int n = covct_report_pick_slices(in, ks);
    cJSON *arr = add_arr(c, root, "key_images");
    for (int i = 0; arr && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        push(c, arr, o);
        if (!c->ok)
            return;
        char file[64];
        snprintf(file, sizeof file, "key_axial_%u.png", (unsigned)ks[i]);
        add_str(c, o, "file", file);
        add_num(c, o, "index", ks[i]);
        add_num(c, o, "z_mm", round_to(covct_report_slice_z(in, ks[i]), 0.01));
        double lesion = in->m && in->m->slices && ks[i] < in->m->n_slices
                            ? in->m->slices[ks[i]].lesion_mm2
                            : 0;
        add_num(c, o, "lesion_mm2", round_to(lesion, 0.1));
    }
    add_str(c, root, "coronal_image", "coronal.png");
    cJSON *files = add_obj(c, root, "files");
    if (files) {
        add_str(c, files, "html", "report.html");
        add_str(c, files, "lungs_mask", "lungs.nii.gz");
        add_str(c, files, "lobes_mask", "lobes.nii.gz");
        add_str(c, files, "lesions_mask", "lesions.nii.gz");
        add_str(c, files, "dense_behind_mask",
                in->seg && in->seg->dense_behind ? "dense_behind.nii.gz"
                                                 : NULL);
    }
}

covct_rc covct_report_json(const covct_report_input *in, char **out,
                           covct_error *err)
{
    *out = NULL;
    if (!in || !in->ct || !in->lungs)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "report: the CT and the lung result are required");
    if (in->lungs->is_chest && !in->m)
        return COVCT_ERR(err, COVCT_ERR_ARG,
                         "report: a chest CT needs its measures");

    jctx c = {true};
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "report.json: out of memory");
    add_str(&c, root, "schema", COVCT_REPORT_SCHEMA);
    cJSON *gen = add_obj(&c, root, "generator");
    if (gen) {
        add_str(&c, gen, "name", "covct");
        add_str(&c, gen, "version", COVCT_VERSION);
    }
    add_str(&c, root, "source", in->source ? in->source : "");
    add_str(&c, root, "ai_notice", COVCT_REPORT_AI_NOTICE);
    add_opt_str(&c, root, "patient_id", in->patient_id);
    add_opt_str(&c, root, "study_date", in->study_date);
    add_opt_str(&c, root, "series_description", in->series_description);
    add_num(&c, root, "analysis_seconds", round_to(in->seconds, 0.01));
    cJSON *lm = add_obj(&c, root, "lesion_method");
    if (lm) {
        bool net = in->lesion_method && !strcmp(in->lesion_method, "network");
        add_str(&c, lm, "name", net ? "network" : "density");
        if (net) {
            add_opt_str(&c, lm, "model", in->lesion_model);
            add_opt_str(&c, lm, "model_file", in->lesion_model_file);
            add_bool(&c, lm, "density_check", in->density_check);
        }
        add_num(&c, lm, "thick_slice_ml", round_to(in->thick_slice_ml, 0.1));
    }

    bool chest = in->lungs->is_chest;
    add_bool(&c, root, "is_chest", chest);
    if (chest) {
        chk(&c, cJSON_AddNullToObject(root, "not_chest_reason"));
    } else {
        char why[sizeof in->lungs->why_not + 1];
        memcpy(why, in->lungs->why_not, sizeof in->lungs->why_not);
        why[sizeof in->lungs->why_not] = '\0';
        add_str(&c, root, "not_chest_reason",
                *why ? why : "no plausible pair of lungs found");
    }
    if (covct_report_has_measures(in))
        add_measures(&c, root, in->m, in->lungs);
    else
        add_no_measures(&c, root);
    add_volume(&c, root, in->ct);
    add_images(&c, root, in);
    add_slices(&c, root, in);

    char *text = c.ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "report.json: out of memory");
    *out = covct_strdup(text);
    cJSON_free(text);
    if (!*out)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "report.json: out of memory");
    return COVCT_OK;
}
