/* Key images: an axial slice or a coronal overview of the CT in lung
 * window with the segmentation drawn over it, in integer/bitmap drawing
 * only, plus a tiny built-in 5x7 font for orientation letters, captions and
 * the legend.
 *
 * Display convention (radiological): patient right on the image left,
 * anterior up on axial images, head up on coronal ones.  Voxel axes are
 * mapped to patient axes with covct_volume_axes(), so a volume stored in
 * any axis order or direction is shown the same way.  Pixels are square in
 * millimetres: each image is resampled to one pixel size. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "report/report_int.h"

/* ---- a 5x7 bitmap font ----------------------------------------------------
 * One byte per row, top row first, bit 4 the leftmost column.  Digits,
 * capitals and the few lower-case letters and signs the captions use;
 * other lower-case letters are drawn as capitals. */
typedef struct glyph {
    char c;
    uint8_t rows[7];
} glyph;

static const glyph font[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}},
    {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}},
    {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
};

static const uint8_t *glyph_rows(char c)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
            if (font[i].c == c)
                return font[i].rows;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else
            break;
    }
    return NULL; /* a space, or a character the font lacks: left blank */
}

/* ---- an RGB canvas with clipped drawing ----------------------------------- */
typedef struct canvas {
    uint8_t *px;
    int w, h;
} canvas;

typedef struct rgb {
    uint8_t r, g, b;
} rgb;

static void put(canvas *cv, int x, int y, rgb c)
{
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h)
        return;
    uint8_t *p = cv->px + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static void fill_rect(canvas *cv, int x, int y, int w, int h, rgb c)
{
    for (int yy = y; yy < y + h; yy++)
        for (int xx = x; xx < x + w; xx++)
            put(cv, xx, yy, c);
}

static int text_width(const char *s, int scale)
{
    return (int)strlen(s) * 6 * scale;
}

static void draw_text_1(canvas *cv, int x, int y, const char *s, int scale,
                        rgb c)
{
    for (; *s; s++, x += 6 * scale) {
        const uint8_t *rows = glyph_rows(*s);
        if (!rows)
            continue;
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++)
                if (rows[r] & (0x10 >> col))
                    fill_rect(cv, x + col * scale, y + r * scale, scale,
                              scale, c);
    }
}

/* Text with a dark shadow, legible on any part of the image. */
static void draw_text(canvas *cv, int x, int y, const char *s, int scale,
                      rgb c)
{
    rgb black = {0, 0, 0};
    draw_text_1(cv, x + 1, y + 1, s, scale, black);
    draw_text_1(cv, x, y, s, scale, c);
}

/* ---- colours ---------------------------------------------------------------- */
/* Five lobe colours far from each other and from the lesion tints. */
static const rgb lobe_colour[COVCT_N_LOBES + 1] = {
    {255, 255, 255}, /* lung without a lobe label: white outline */
    {0, 140, 255},   /* LUL blue */
    {0, 220, 220},   /* LLL cyan */
    {60, 220, 60},   /* RUL green */
    {255, 80, 200},  /* RML pink */
    {170, 100, 255}, /* RLL violet */
};
static const rgb ggo_colour = {255, 230, 0};    /* yellow */
static const rgb cons_colour = {255, 80, 0};    /* red-orange */
/* Dense tissue behind the lungs (outside the lung mask): an outline. */
static const rgb behind_colour = {255, 0, 255}; /* magenta */
/* Opacity out of 256: ground glass lighter than consolidation, so the
 * image under the tint stays readable. */
enum { GGO_ALPHA = 110, CONS_ALPHA = 150 };

static void blend(uint8_t *p, rgb c, int a)
{
    p[0] = (uint8_t)((p[0] * (256 - a) + c.r * a) >> 8);
    p[1] = (uint8_t)((p[1] * (256 - a) + c.g * a) >> 8);
    p[2] = (uint8_t)((p[2] * (256 - a) + c.b * a) >> 8);
}

/* ---- sampling a plane of the volume ------------------------------------------ */
typedef struct plane {
    int hax, vax, fax;     /* voxel axes shown across, down, and fixed */
    int hflip, vflip;      /* display runs against the voxel index */
    uint32_t fixed;        /* index on the fixed axis */
    double sp[3];          /* spacing per voxel axis (mm) */
    uint32_t n[3];
    double pix;            /* mm per display pixel */
    int w, h;
} plane;

/* The image's longer side, in pixels, is kept within these bounds: small
 * test volumes are enlarged, very large fields reduced. */
enum { MIN_SIDE = 384, MAX_SIDE = 768 };

static void plane_size(plane *p)
{
    double eh = p->n[p->hax] * p->sp[p->hax];
    double ev = p->n[p->vax] * p->sp[p->vax];
    double pix = fmin(p->sp[p->hax], p->sp[p->vax]);
    double lng = fmax(eh, ev);
    if (lng / pix > MAX_SIDE)
        pix = lng / MAX_SIDE;
    if (lng / pix < MIN_SIDE)
        pix = lng / MIN_SIDE;
    p->pix = pix;
    p->w = (int)fmax(1, floor(eh / pix + 0.5));
    p->h = (int)fmax(1, floor(ev / pix + 0.5));
    if (p->w > MAX_SIDE)
        p->w = MAX_SIDE;
    if (p->h > MAX_SIDE)
        p->h = MAX_SIDE;
}

/* Continuous voxel coordinate along `ax` of display coordinate d. */
static double voxel_coord(const plane *p, int ax, int flip, int d)
{
    double u = (d + 0.5) * p->pix / p->sp[ax] - 0.5;
    double hi = (double)p->n[ax] - 1;
    if (u < 0)
        u = 0;
    if (u > hi)
        u = hi;
    return flip ? hi - u : u;
}

static size_t voxel_index(const plane *p, uint32_t ih, uint32_t iv)
{
    uint32_t idx[3];
    idx[p->fax] = p->fixed;
    idx[p->hax] = ih;
    idx[p->vax] = iv;
    return idx[0] + (size_t)p->n[0] * (idx[1] + (size_t)p->n[1] * idx[2]);
}

static double ct_at(const covct_volume *v, size_t i)
{
    if (v->dtype == COVCT_DTYPE_FLOAT32)
        return ((const float *)v->data)[i];
    return ((const int16_t *)v->data)[i];
}

/* Patient-axis inverse of covct_axes: which patient axis a voxel axis
 * runs along, and in which direction. */
static void voxel_to_patient(const covct_axes *ax, int *pat, int *sgn)
{
    for (int a = 0; a < 3; a++) {
        pat[ax->axis[a]] = a;
        sgn[ax->axis[a]] = ax->sign[a];
    }
}

/* Direction a display axis must run along patient axis `pa`: across,
 * toward the patient's left (+x) so that the right is on the image left;
 * down, toward posterior (+y) and toward the feet (-z). */
static int wanted_dir(int across, int pa)
{
    if (across)
        return pa == 0 ? 1 : -1;
    return pa == 2 ? -1 : 1;
}

static void setup_plane(const covct_report_input *in, int axial, uint32_t k,
                        plane *p)
{
    const covct_volume *ct = in->ct;
    covct_axes ax;
    covct_volume_axes(ct, &ax);
    int pat[3] = {0, 1, 2}, sgn[3] = {1, 1, 1};
    voxel_to_patient(&ax, pat, sgn);
    p->n[0] = ct->nx;
    p->n[1] = ct->ny;
    p->n[2] = ct->nz;
    for (int a = 0; a < 3; a++)
        p->sp[a] = isfinite(ct->spacing[a]) && ct->spacing[a] > 0
                       ? ct->spacing[a]
                       : 1.0;
    if (axial) {
        /* Slice k is the plane of voxel axes i and j; show the one that
         * runs closer to patient x across. */
        p->fax = 2;
        p->fixed = k < ct->nz ? k : ct->nz - 1;
        p->hax = pat[0] <= pat[1] ? 0 : 1;
        p->vax = 1 - p->hax;
    } else {
        p->hax = ax.axis[0];
        p->vax = ax.axis[2];
        p->fax = ax.axis[1];
        /* Through the centre of the lungs front to back, or of the volume
         * when there are none. */
        uint32_t nf = p->n[p->fax];
        p->fixed = nf / 2;
        const covct_seg *s = in->seg;
        if (s && s->lungs) {
            double sum = 0;
            size_t cnt = 0, i = 0;
            for (uint32_t z = 0; z < ct->nz; z++)
                for (uint32_t y = 0; y < ct->ny; y++)
                    for (uint32_t x = 0; x < ct->nx; x++, i++)
                        if (s->lungs[i]) {
                            uint32_t c[3] = {x, y, z};
                            sum += c[p->fax];
                            cnt++;
                        }
            if (cnt)
                p->fixed = (uint32_t)floor(sum / (double)cnt + 0.5);
            if (p->fixed >= nf)
                p->fixed = nf - 1;
        }
    }
    p->hflip = sgn[p->hax] != wanted_dir(1, pat[p->hax]);
    p->vflip = sgn[p->vax] != wanted_dir(0, pat[p->vax]);
    plane_size(p);
}

static uint8_t window(double hu)
{
    double lo = COVCT_REPORT_WINDOW_L - COVCT_REPORT_WINDOW_W / 2;
    double g = (hu - lo) * 255.0 / COVCT_REPORT_WINDOW_W;
    if (!(g > 0))
        return 0;
    if (g > 255)
        return 255;
    return (uint8_t)(g + 0.5);
}

/* Whether the label at (x, y) differs from one of its 4 neighbours (the
 * image border counts as label 0): a 1-pixel outline of each region. */
static int on_edge(const uint8_t *lab, int w, int h, int x, int y)
{
    uint8_t v = lab[(size_t)y * w + x];
    static const int dx[4] = {1, -1, 0, 0}, dy[4] = {0, 0, 1, -1};
    for (int d = 0; d < 4; d++) {
        int xx = x + dx[d], yy = y + dy[d];
        uint8_t o = xx < 0 || yy < 0 || xx >= w || yy >= h
                        ? 0
                        : lab[(size_t)yy * w + xx];
        if (o != v)
            return 1;
    }
    return 0;
}

/* The strip under the image: the caption on its first line, then a swatch
 * and a name per colour, wrapped to the width. */
typedef struct legend_item {
    rgb c;
    const char *name;
} legend_item;

static int legend_layout(canvas *cv, int y0, const char *caption,
                         int colours, int behind, int scale, int draw)
{
    legend_item items[COVCT_N_LOBES + 3];
    int n = 0;
    for (int l = 1; l <= COVCT_N_LOBES; l++)
        items[n++] = (legend_item){lobe_colour[l], covct_lobe_name(l)};
    items[n++] = (legend_item){ggo_colour, "GGO"};
    items[n++] = (legend_item){cons_colour, "CONS"};
    if (behind)
        items[n++] = (legend_item){behind_colour, "DENSE BEHIND LUNG"};
    if (!colours)
        n = 0; /* nothing is drawn over a volume without lungs */
    int sw = 7 * scale, line = 7 * scale + 6, x = 4, y = y0 + 4;
    rgb white = {235, 235, 235};
    if (draw)
        draw_text_1(cv, x, y, caption, scale, white);
    y += line;
    for (int i = 0; i < n; i++) {
        int iw = sw + 4 + text_width(items[i].name, scale) + 8;
        if (x > 4 && x + iw > cv->w) {
            x = 4;
            y += line;
        }
        if (draw) {
            fill_rect(cv, x, y, sw, sw, items[i].c);
            draw_text_1(cv, x + sw + 4, y, items[i].name, scale, white);
        }
        x += iw;
    }
    return y + line - y0;
}

covct_rc covct_report_render(const covct_report_input *in, int axial,
                             uint32_t k, uint8_t **out, uint32_t *ow,
                             uint32_t *oh, covct_error *err)
{
    *out = NULL;
    *ow = *oh = 0;
    const covct_volume *ct = in->ct;
    if (!ct || !ct->data || !ct->nx || !ct->ny || !ct->nz)
        return COVCT_ERR(err, COVCT_ERR_ARG, "image: empty volume");
    plane p;
    memset(&p, 0, sizeof p);
    setup_plane(in, axial, k, &p);
    int w = p.w, h = p.h;
    int scale = w >= 320 ? 2 : 1;
    canvas cv = {NULL, w, 0};
    char cap[96];
    if (axial)
        snprintf(cap, sizeof cap, "z=%.1f mm k=%u",
                 covct_report_slice_z(in, p.fixed), (unsigned)p.fixed);
    else
        snprintf(cap, sizeof cap, "CORONAL");
    int colours = covct_report_has_measures(in);
    const covct_seg *s = in->seg;
    int have_seg = s && s->nx == ct->nx && s->ny == ct->ny && s->nz == ct->nz;
    /* The dense tissue behind the lungs is outlined when the report warns
     * of it. */
    const uint8_t *dense = have_seg && colours && s->dense_behind &&
                                   in->m->dense_behind_ml >=
                                       COVCT_DENSE_BEHIND_MIN_ML
                               ? s->dense_behind
                               : NULL;
    int legend_h = legend_layout(&cv, 0, cap, colours, dense != NULL, scale,
                                 0);
    cv.h = h + legend_h;
    size_t npx = (size_t)w * (size_t)h;
    uint8_t *lab = covct_calloc(npx, 4); /* lung, lobe, lesion, dense */
    cv.px = covct_calloc((size_t)w * (size_t)cv.h, 3);
    if (!lab || !cv.px) {
        covct_free(lab);
        covct_free(cv.px);
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "image: out of memory");
    }
    uint8_t *lung = lab, *lobe = lab + npx, *les = lab + 2 * npx,
            *den = lab + 3 * npx;

    /* CT in lung window, bilinear; labels nearest-neighbour. */
    for (int y = 0; y < h; y++) {
        double v = voxel_coord(&p, p.vax, p.vflip, y);
        uint32_t v0 = (uint32_t)floor(v);
        uint32_t v1 = v0 + 1 < p.n[p.vax] ? v0 + 1 : v0;
        double fv = v - v0;
        uint32_t vn = (uint32_t)floor(v + 0.5);
        for (int x = 0; x < w; x++) {
            double u = voxel_coord(&p, p.hax, p.hflip, x);
            uint32_t u0 = (uint32_t)floor(u);
            uint32_t u1 = u0 + 1 < p.n[p.hax] ? u0 + 1 : u0;
            double fu = u - u0;
            double hu = (1 - fv) * ((1 - fu) * ct_at(ct, voxel_index(&p, u0, v0)) +
                                    fu * ct_at(ct, voxel_index(&p, u1, v0))) +
                        fv * ((1 - fu) * ct_at(ct, voxel_index(&p, u0, v1)) +
                              fu * ct_at(ct, voxel_index(&p, u1, v1)));
            uint8_t g = window(hu);
            size_t o = (size_t)y * w + x;
            cv.px[o * 3] = cv.px[o * 3 + 1] = cv.px[o * 3 + 2] = g;
            if (have_seg) {
                size_t vi = voxel_index(&p, (uint32_t)floor(u + 0.5), vn);
                lung[o] = s->lungs ? s->lungs[vi] : 0;
                lobe[o] = s->lobes && s->lobes[vi] <= COVCT_N_LOBES
                              ? s->lobes[vi]
                              : 0;
                les[o] = s->lesions ? s->lesions[vi] : 0;
                den[o] = dense ? dense[vi] : 0;
            }
        }
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t o = (size_t)y * w + x;
            uint8_t *px = cv.px + o * 3;
            if (les[o] == COVCT_LESION_GGO)
                blend(px, ggo_colour, GGO_ALPHA);
            else if (les[o] == COVCT_LESION_CONSOLIDATION)
                blend(px, cons_colour, CONS_ALPHA);
            if (lobe[o] && on_edge(lobe, w, h, x, y))
                put(&cv, x, y, lobe_colour[lobe[o]]);
            else if (lung[o] && !lobe[o] && on_edge(lung, w, h, x, y))
                put(&cv, x, y, lobe_colour[0]);
            if (den[o] && on_edge(den, w, h, x, y))
                put(&cv, x, y, behind_colour);
        }

    /* Orientation letters and the caption. */
    rgb white = {255, 255, 255};
    int th = 7 * scale;
    draw_text(&cv, 4, h / 2 - th / 2, "R", scale, white);
    draw_text(&cv, w - 4 - text_width("L", scale) + scale, h / 2 - th / 2,
              "L", scale, white);
    if (axial) {
        draw_text(&cv, w / 2 - text_width("A", scale) / 2, 4, "A", scale,
                  white);
        draw_text(&cv, w / 2 - text_width("P", scale) / 2, h - th - 4, "P",
                  scale, white);
    } else {
        draw_text(&cv, w / 2 - text_width("H", scale) / 2, 4, "H", scale,
                  white);
        draw_text(&cv, w / 2 - text_width("F", scale) / 2, h - th - 4, "F",
                  scale, white);
    }
    fill_rect(&cv, 0, h, w, legend_h, (rgb){24, 24, 24});
    legend_layout(&cv, h, cap, colours, dense != NULL, scale, 1);

    covct_free(lab);
    *out = cv.px;
    *ow = (uint32_t)w;
    *oh = (uint32_t)cv.h;
    return COVCT_OK;
}

void covct_report_images_free(covct_report_images *im)
{
    if (!im)
        return;
    for (int i = 0; i < im->n; i++)
        COVCT_FREE(im->img[i].png);
    im->n = 0;
}

static covct_rc make_one(const covct_report_input *in, int axial, uint32_t k,
                         covct_report_image *img, covct_error *err)
{
    memset(img, 0, sizeof *img);
    img->is_axial = axial;
    img->k = k;
    if (axial)
        snprintf(img->file, sizeof img->file, "key_axial_%u.png",
                 (unsigned)k);
    else
        snprintf(img->file, sizeof img->file, "coronal.png");
    uint8_t *rgbp = NULL;
    covct_rc rc = covct_report_render(in, axial, k, &rgbp, &img->width,
                                      &img->height, err);
    if (!rc) {
        covct_buf b = {0};
        rc = covct_png_encode_rgb(rgbp, img->width, img->height, &b, err);
        img->png = b.data;
        img->png_len = b.len;
        if (rc)
            COVCT_FREE(img->png);
    }
    covct_free(rgbp);
    if (rc)
        covct_error_prefix(err, "%s: ", img->file);
    return rc;
}

/* The key images are independent: drawn and encoded by a few threads. */
#define IMAGE_THREADS 2

typedef struct images_job {
    const covct_report_input *in;
    uint32_t ks[COVCT_REPORT_MAX_KEY + 1];
    int n;          /* axial images; one coronal after them */
    covct_report_image img[COVCT_REPORT_MAX_KEY + 1];
    covct_rc rc[COVCT_REPORT_MAX_KEY + 1];
    covct_error err[COVCT_REPORT_MAX_KEY + 1];
    int next;       /* next image to take (atomic) */
} images_job;

static void *images_work(void *arg)
{
    images_job *j = arg;
    for (;;) {
        int i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i > j->n)
            break;
        j->rc[i] = make_one(j->in, i < j->n, i < j->n ? j->ks[i] : 0,
                            &j->img[i], &j->err[i]);
    }
    return NULL;
}

covct_rc covct_report_images_make(const covct_report_input *in,
                                  covct_report_images *out, covct_error *err)
{
    memset(out, 0, sizeof *out);
    images_job *j = covct_calloc(1, sizeof *j);
    if (!j)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "key images: out of memory");
    j->in = in;
    j->n = covct_report_pick_slices(in, j->ks);
    pthread_t tid[IMAGE_THREADS];
    bool started[IMAGE_THREADS] = {false};
    for (int t = 1; t < IMAGE_THREADS; t++)
        started[t] = pthread_create(&tid[t], NULL, images_work, j) == 0;
    images_work(j);
    for (int t = 1; t < IMAGE_THREADS; t++)
        if (started[t])
            pthread_join(tid[t], NULL);
    covct_rc rc = COVCT_OK;
    for (int i = 0; i <= j->n; i++) {
        if (!rc && j->rc[i]) {
            rc = j->rc[i];
            if (err)
                *err = j->err[i];
        }
        if (j->rc[i])
            continue;
        out->img[out->n++] = j->img[i];
    }
    covct_free(j);
    if (rc)
        covct_report_images_free(out);
    return rc;
}

/* ---- a burned-in banner (DICOM key images) ------------------------------ */
covct_rc covct_report_banner(uint8_t **rgbp, uint32_t w, uint32_t *hp,
                             const char *text, covct_error *err)
{
    if (!rgbp || !*rgbp || !hp || !text || w == 0 || w > 65535 ||
        *hp == 0 || *hp > 65535)
        return COVCT_ERR(err, COVCT_ERR_ARG, "banner: no image or text");
    /* The largest scale at which the longest word still fits, at most 2;
     * then the words wrapped greedily into lines of that width. */
    int scale = 2;
    size_t longest = 0, cur = 0;
    for (const char *p = text;; p++) {
        if (*p == ' ' || !*p) {
            if (cur > longest)
                longest = cur;
            cur = 0;
            if (!*p)
                break;
        } else {
            cur++;
        }
    }
    while (scale > 1 && (int)longest * 6 * scale + 8 > (int)w)
        scale--;
    int per_line = ((int)w - 8) / (6 * scale);
    if (per_line < 1)
        per_line = 1;
    enum { MAX_LINES = 8 };
    char lines[MAX_LINES][96];
    int nl = 0;
    const char *p = text;
    while (*p && nl < MAX_LINES) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        /* Take words while the line still fits (one word at least). */
        const char *end = p;
        for (;;) {
            const char *ws = end;
            while (*ws == ' ')
                ws++;
            const char *we = ws;
            while (*we && *we != ' ')
                we++;
            if (we == ws || (end != p && we - p > per_line))
                break;
            end = we;
        }
        size_t n = (size_t)(end - p);
        if (n >= sizeof lines[0])
            n = sizeof lines[0] - 1;
        memcpy(lines[nl], p, n);
        lines[nl][n] = '\0';
        nl++;
        p = end;
    }
    int line_h = 7 * scale + 4 * scale;
    int strip = nl * line_h + 4 * scale;
    uint32_t h = *hp, nh = h + (uint32_t)strip;
    uint8_t *px = covct_malloc((size_t)w * nh * 3);
    if (!px)
        return COVCT_ERR(err, COVCT_ERR_NOMEM, "banner: out of memory");
    canvas cv = {px, (int)w, (int)nh};
    fill_rect(&cv, 0, 0, (int)w, strip, (rgb){150, 0, 0});
    for (int i = 0; i < nl; i++) {
        int tw = text_width(lines[i], scale) - scale;
        int x = ((int)w - tw) / 2;
        if (x < 4)
            x = 4;
        draw_text_1(&cv, x, 4 * scale + i * line_h, lines[i], scale,
                    (rgb){255, 255, 255});
    }
    memcpy(px + (size_t)w * (size_t)strip * 3, *rgbp, (size_t)w * h * 3);
    covct_free(*rgbp);
    *rgbp = px;
    *hp = nh;
    return COVCT_OK;
}
