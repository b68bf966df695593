/*
 * The report module: report.json, report.html, the PNG key images and the
 * NIfTI masks, written for a small synthetic chest (two box lungs, five
 * lobes, a ground-glass and a consolidation block) with measures filled in
 * by hand, then read back by independent peers:
 *
 *   - Debian's python3: json (report.json), zlib + its own PNG unfilter
 *     (chunk CRCs, IDAT size, pixel colours), html.parser (report.html),
 *     nibabel (the masks);
 *   - pngcheck, when installed, on every PNG.
 *
 * The peer script is written by this test into its temporary folder.  A
 * missing peer fails under CI=true and skips (exit 77, after every other
 * check passed) otherwise.  COVCT_PYTHON names the interpreter to use;
 * else /usr/bin/python3, then python3, whichever imports nibabel.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "covct/analysis.h"
#include "covct/core.h"
#include "covct/report.h"
#include "covct/volume.h"
#include "report/report_int.h"
#include "test.h"

#define HOSTILE "<script>alert(1)</script>"

static char tmpdir[1024];
static char python[1024];
static char peer[1200];

/* ---- the synthetic chest ----------------------------------------------------
 * 64 x 48 x 40 voxels of 0.8 x 0.8 x 2.5 mm, a standard axial DICOM
 * orientation (i to the patient's left, j to posterior, k to the head).
 * The right lung (label 1) lies at small i, the left at large i. */
enum { NX = 64, NY = 48, NZ = 40 };
static const double SP[3] = {0.8, 0.8, 2.5};
static const double ORIGIN[3] = {-25.0, -20.0, -100.0};

/* Lesion blocks (inclusive voxel ranges). */
static const int GGO_BOX[6] = {12, 20, 20, 30, 8, 12};  /* RLL */
static const int CONS_BOX[6] = {42, 52, 15, 25, 25, 27}; /* LUL */

typedef struct fixture {
    covct_volume *ct;
    covct_seg *seg;
    covct_lung_info lungs;
    covct_measures m;
    covct_report_input in;
} fixture;

static int in_box(const int *b, int x, int y, int z)
{
    return x >= b[0] && x <= b[1] && y >= b[2] && y <= b[3] && z >= b[4] &&
           z <= b[5];
}

static int lobe_of(int lung, int z)
{
    if (lung == COVCT_LUNG_RIGHT)
        return z >= 22 ? COVCT_LOBE_RUL : z >= 15 ? COVCT_LOBE_RML
                                                  : COVCT_LOBE_RLL;
    return z >= 20 ? COVCT_LOBE_LUL : COVCT_LOBE_LLL;
}

static void set_affine(covct_volume *v, int mirror_i)
{
    memset(v->affine, 0, sizeof v->affine);
    for (int a = 0; a < 3; a++) {
        v->spacing[a] = SP[a];
        v->affine[a][a] = SP[a];
        v->affine[a][3] = ORIGIN[a];
    }
    if (mirror_i) {
        /* i runs to the patient's right, as in a volume read from a RAS
         * NIfTI file stored in the radiological order. */
        v->affine[0][0] = -SP[0];
        v->affine[0][3] = -ORIGIN[0];
    }
    v->affine[3][3] = 1;
}

/* Fill the CT and labels; `mirror_i`: lungs and lesions placed so that the
 * patient anatomy is the same as without it. */
static void build(fixture *f, int mirror_i)
{
    covct_error err = {0};
    memset(f, 0, sizeof *f);
    CHECK(covct_volume_new(NX, NY, NZ, COVCT_DTYPE_INT16, &f->ct, &err) ==
          COVCT_OK);
    set_affine(f->ct, mirror_i);
    CHECK(covct_seg_new(f->ct, &f->seg, &err) == COVCT_OK);
    int16_t *hu = f->ct->data;
    size_t i = 0;
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++, i++) {
                /* Anatomical x (the un-mirrored one) decides the side. */
                int ax = mirror_i ? NX - 1 - x : x;
                int16_t v = -1000;
                int body = y >= 4 && y <= 43 && ax >= 3 && ax <= 60;
                if (body)
                    v = 40;
                int lung = 0;
                if (y >= 10 && y <= 38 && z >= 5 && z <= 35) {
                    if (ax >= 8 && ax <= 28)
                        lung = COVCT_LUNG_RIGHT;
                    else if (ax >= 36 && ax <= 56)
                        lung = COVCT_LUNG_LEFT;
                }
                f->seg->body[i] = (uint8_t)body;
                if (lung) {
                    v = -850;
                    f->seg->lungs[i] = (uint8_t)lung;
                    f->seg->lobes[i] = (uint8_t)lobe_of(lung, z);
                    if (in_box(GGO_BOX, ax, y, z)) {
                        v = -500;
                        f->seg->lesions[i] = COVCT_LESION_GGO;
                    } else if (in_box(CONS_BOX, ax, y, z)) {
                        v = -100;
                        f->seg->lesions[i] = COVCT_LESION_CONSOLIDATION;
                    }
                }
                hu[i] = v;
            }
    f->lungs.is_chest = true;
    f->lungs.right_ml = 1234.5678;
    f->lungs.left_ml = 1111.04;
    f->lungs.z_first = 5;
    f->lungs.z_last = 35;

    covct_measures *m = &f->m;
    m->right_ml = 1234.5678;
    m->left_ml = 1111.04;
    m->lungs_ml = 2345.6078;
    for (int l = 1; l <= COVCT_N_LOBES; l++)
        m->lobe[l].volume_ml = 400 + 100 * l + 0.04;
    m->lobe[COVCT_LOBE_LUL] = (covct_lobe_measures){
        500.04, 0.0, 12.34, 12.34, 2.4567, 1};
    m->lobe[COVCT_LOBE_RLL] = (covct_lobe_measures){
        900.04, 30.26, 0.0, 30.26, 6.123, 2};
    m->ggo_ml = 30.26;
    m->consolidation_ml = 12.34;
    m->lesion_ml = 42.6;
    m->involvement_pct = 1.8161;
    m->well_aerated_pct = 81.23456;
    m->ct_severity_score = 3;
    m->peripheral_pct = 71.111;
    m->lower_pct = 70.9;
    m->right_pct = 71.0;
    m->bilateral = true;
    m->lobes_involved = 2;
    m->category = COVCT_CAT_TYPICAL;
    snprintf(m->reasons[0], sizeof m->reasons[0],
             "bilateral peripheral ground glass");
    snprintf(m->reasons[1], sizeof m->reasons[1],
             "lower-lobe predominant <b>&amp;</b>");
    m->n_reasons = 2;
    m->n_slices = NZ;
    m->slices = calloc(NZ, sizeof *m->slices);
    double area = SP[0] * SP[1];
    for (int z = 0; z < NZ; z++) {
        covct_slice_measures *s = &m->slices[z];
        s->z_mm = ORIGIN[2] + SP[2] * z;
        s->instance_number = z == 3 ? -1 : z + 1;
        size_t o = (size_t)z * NX * NY;
        for (size_t j = 0; j < (size_t)NX * NY; j++) {
            if (f->seg->lungs[o + j])
                s->lung_mm2 += area;
            if (f->seg->lesions[o + j]) {
                s->lesion_mm2 += area;
                s->lobe_lesion_mm2[f->seg->lobes[o + j]] += area;
            }
        }
    }

    covct_report_input *in = &f->in;
    in->source = "/data/" HOSTILE "/P001";
    in->ct = f->ct;
    in->seg = f->seg;
    in->lungs = &f->lungs;
    in->m = &f->m;
    in->patient_id = "P&001";
    in->study_date = "20200315";
    in->series_description = "Thorax 1.0 \"lung\"";
    in->seconds = 12.345;
}

static void release(fixture *f)
{
    free(f->m.slices);
    covct_seg_free(f->seg);
    covct_volume_free(f->ct);
}

/* ---- files and folders ------------------------------------------------------ */
static const char *tpath(const char *rel)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 4096, "%s/%s", tmpdir, rel);
    return b;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        unlink(dir);
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int count_entries(const char *dir, int *tmp_files)
{
    DIR *d = opendir(dir);
    int n = 0;
    *tmp_files = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        n++;
        if (strstr(e->d_name, ".tmp-"))
            (*tmp_files)++;
    }
    closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 4096 >= cap)
            b = realloc(b, cap *= 2);
        size_t r = fread(b + n, 1, cap - n - 1, fp);
        if (!r)
            break;
        n += r;
    }
    fclose(fp);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- the peer ------------------------------------------------------------------ */
static const char peer_py[] =
    "import sys, json, zlib, struct\n"
    "def out(k, v):\n"
    "    print('%s\\t%s' % (k, v))\n"
    "def flat(p, v):\n"
    "    if v is None: out(p, 'null')\n"
    "    elif isinstance(v, bool): out(p, 'bool ' + ('true' if v else 'false'))\n"
    "    elif isinstance(v, int): out(p, 'int %d' % v)\n"
    "    elif isinstance(v, float): out(p, 'float %r' % v)\n"
    "    elif isinstance(v, str): out(p, 'str ' + json.dumps(v))\n"
    "    elif isinstance(v, list):\n"
    "        out(p, 'list %d' % len(v))\n"
    "        for i, x in enumerate(v): flat('%s[%d]' % (p, i), x)\n"
    "    elif isinstance(v, dict):\n"
    "        out(p, 'dict %d' % len(v))\n"
    "        for k, x in v.items(): flat(p + '.' + k if p else k, x)\n"
    "mode = sys.argv[1]\n"
    "if mode == 'probe':\n"
    "    import nibabel, numpy, html.parser\n"
    "elif mode == 'json':\n"
    "    with open(sys.argv[2], encoding='utf-8') as f:\n"
    "        flat('', json.load(f))\n"
    "elif mode == 'png':\n"
    "    data = open(sys.argv[2], 'rb').read()\n"
    "    out('signature', int(data[:8] == b'\\x89PNG\\r\\n\\x1a\\n'))\n"
    "    pos, idat, ihdr, crc_ok, names = 8, b'', None, 1, []\n"
    "    while pos + 12 <= len(data):\n"
    "        n, t = struct.unpack('>I4s', data[pos:pos + 8])\n"
    "        body = data[pos + 8:pos + 8 + n]\n"
    "        crc = struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])[0]\n"
    "        if zlib.crc32(t + body) & 0xffffffff != crc: crc_ok = 0\n"
    "        names.append(t.decode('latin-1'))\n"
    "        if t == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)\n"
    "        if t == b'IDAT': idat += body\n"
    "        pos += 12 + n\n"
    "        if t == b'IEND': break\n"
    "    out('crc_ok', crc_ok)\n"
    "    out('first', names[0]); out('last', names[-1])\n"
    "    out('trailing', len(data) - pos)\n"
    "    w, h, depth, ctype, comp, filt, inter = ihdr\n"
    "    out('size', '%d %d' % (w, h))\n"
    "    out('format', '%d %d %d' % (depth, ctype, inter))\n"
    "    raw = zlib.decompress(idat)\n"
    "    stride = w * 3\n"
    "    out('raw_ok', int(len(raw) == h * (stride + 1)))\n"
    "    img, prev = bytearray(), bytearray(stride)\n"
    "    for y in range(h):\n"
    "        f = raw[y * (stride + 1)]\n"
    "        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])\n"
    "        for i in range(stride):\n"
    "            a = line[i - 3] if i >= 3 else 0\n"
    "            b = prev[i]\n"
    "            c = prev[i - 3] if i >= 3 else 0\n"
    "            if f == 1: line[i] = (line[i] + a) & 255\n"
    "            elif f == 2: line[i] = (line[i] + b) & 255\n"
    "            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255\n"
    "            elif f == 4:\n"
    "                p = a + b - c\n"
    "                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)\n"
    "                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)\n"
    "                line[i] = (line[i] + pr) & 255\n"
    "        img += line\n"
    "        prev = line\n"
    "    args = sys.argv[3:]\n"
    "    for j in range(0, len(args) - 1, 2):\n"
    "        x, y = int(args[j]), int(args[j + 1])\n"
    "        o = (y * w + x) * 3\n"
    "        out('px %d %d' % (x, y), '%d %d %d' % (img[o], img[o + 1], img[o + 2]))\n"
    "elif mode == 'html':\n"
    "    import base64\n"
    "    from html.parser import HTMLParser\n"
    "    VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input',\n"
    "            'link', 'meta', 'source', 'track', 'wbr'}\n"
    "    PRE = 'data:image/png;base64,'\n"
    "    class P(HTMLParser):\n"
    "        def __init__(s):\n"
    "            super().__init__(convert_charrefs=True)\n"
    "            s.stack, s.bad, s.imgs, s.pngs, s.scripts, s.ext = [], 0, 0, 0, 0, 0\n"
    "            s.data, s.style = [], 0\n"
    "        def handle_starttag(s, tag, attrs):\n"
    "            a = dict(attrs)\n"
    "            if tag == 'script': s.scripts += 1\n"
    "            if tag == 'style': s.style += 1\n"
    "            if tag == 'link': s.ext += 1\n"
    "            for k in ('src', 'href'):\n"
    "                v = a.get(k) or ''\n"
    "                if v and not v.startswith('data:') and not v.startswith('#'):\n"
    "                    s.ext += 1\n"
    "            if tag == 'img':\n"
    "                s.imgs += 1\n"
    "                src = a.get('src') or ''\n"
    "                if src.startswith(PRE):\n"
    "                    try:\n"
    "                        b = base64.b64decode(src[len(PRE):], validate=True)\n"
    "                        if b[:8] == b'\\x89PNG\\r\\n\\x1a\\n': s.pngs += 1\n"
    "                    except Exception:\n"
    "                        pass\n"
    "            if tag not in VOID: s.stack.append(tag)\n"
    "        def handle_endtag(s, tag):\n"
    "            if tag in VOID: return\n"
    "            if s.stack and s.stack[-1] == tag: s.stack.pop()\n"
    "            else: s.bad += 1\n"
    "        def handle_data(s, d):\n"
    "            if not s.stack or s.stack[-1] not in ('style', 'title'):\n"
    "                s.data.append(d)\n"
    "    text = open(sys.argv[2], encoding='utf-8').read()\n"
    "    p = P()\n"
    "    p.feed(text)\n"
    "    p.close()\n"
    "    out('nesting_errors', p.bad)\n"
    "    out('unclosed', len(p.stack))\n"
    "    out('imgs', p.imgs)\n"
    "    out('png_imgs', p.pngs)\n"
    "    out('scripts', p.scripts)\n"
    "    out('styles', p.style)\n"
    "    out('external', p.ext)\n"
    "    out('text', json.dumps(' '.join(''.join(p.data).split())))\n"
    "elif mode == 'nifti':\n"
    "    import nibabel as nib, numpy as np\n"
    "    img = nib.load(sys.argv[2])\n"
    "    d = np.asanyarray(img.dataobj)\n"
    "    out('shape', ' '.join(str(x) for x in d.shape))\n"
    "    out('dtype', str(d.dtype))\n"
    "    out('affine', ' '.join('%.6f' % x for x in img.affine.flatten()))\n"
    "    vals, counts = np.unique(d, return_counts=True)\n"
    "    out('labels', ' '.join('%d:%d' % (v, c) for v, c in zip(vals, counts)))\n"
    "    args = sys.argv[3:]\n"
    "    for j in range(0, len(args) - 2, 3):\n"
    "        i, jj, k = int(args[j]), int(args[j + 1]), int(args[j + 2])\n"
    "        out('v %d %d %d' % (i, jj, k), int(d[i, jj, k]))\n";

static int find_peer(void)
{
    snprintf(peer, sizeof peer, "%s/peer.py", tmpdir);
    FILE *fp = fopen(peer, "w");
    if (!fp)
        return 0;
    fputs(peer_py, fp);
    fclose(fp);
    const char *cands[3] = {getenv("COVCT_PYTHON"), "/usr/bin/python3",
                            "python3"};
    for (int i = 0; i < 3; i++) {
        if (!cands[i] || !*cands[i] || strchr(cands[i], '\''))
            continue;
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' '%s' probe >/dev/null 2>&1", cands[i],
                 peer);
        if (system(cmd) == 0) {
            snprintf(python, sizeof python, "%s", cands[i]);
            return 1;
        }
    }
    return 0;
}

/* The peer's answer: "key<TAB>value" lines. */
typedef struct kv {
    char **keys, **vals;
    size_t n;
    char *text;
} kv;

static void kv_free(kv *t)
{
    free(t->keys);
    free(t->vals);
    free(t->text);
    memset(t, 0, sizeof *t);
}

static int run_peer(const char *mode, const char *file, const char *args,
                    kv *t)
{
    memset(t, 0, sizeof *t);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' '%s' %s '%s' %s", python, peer, mode, file,
             args ? args : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (;;) {
        if (len + 4096 >= cap)
            out = realloc(out, cap *= 2);
        size_t n = fread(out + len, 1, cap - len - 1, p);
        if (!n)
            break;
        len += n;
    }
    out[len] = '\0';
    int st = pclose(p);
    if (st != 0) {
        fprintf(stderr, "peer failed (status %d): %s\n", st, cmd);
        free(out);
        return 0;
    }
    t->text = out;
    size_t lines = 1;
    for (char *c = out; *c; c++)
        lines += *c == '\n';
    t->keys = calloc(lines, sizeof *t->keys);
    t->vals = calloc(lines, sizeof *t->vals);
    for (char *line = out; *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *tab = strchr(line, '\t');
        if (tab) {
            *tab = '\0';
            t->keys[t->n] = line;
            t->vals[t->n] = tab + 1;
            t->n++;
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    return 1;
}

static const char *kv_get(const kv *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->keys[i], key))
            return t->vals[i];
    return NULL;
}

/* ---- JSON checks through the flattened peer output ----------------------------- */
static const char *jval(const kv *t, const char *key)
{
    const char *v = kv_get(t, key);
    CHECKF(v != NULL, "report.json lacks %s", key);
    return v ? v : "";
}

static void check_num(const kv *t, const char *key, double want, double tol)
{
    const char *v = jval(t, key);
    int is_num = !strncmp(v, "int ", 4) || !strncmp(v, "float ", 6);
    CHECKF(is_num, "%s: want a number, got %s", key, v);
    if (!is_num)
        return;
    double got = strtod(strchr(v, ' ') + 1, NULL);
    CHECKF(fabs(got - want) <= tol, "%s = %.9g, want %.9g", key, got, want);
}

static void check_int(const kv *t, const char *key, long want)
{
    const char *v = jval(t, key);
    CHECKF(!strncmp(v, "int ", 4) && strtol(v + 4, NULL, 10) == want,
           "%s = %s, want int %ld", key, v, want);
}

static void check_val(const kv *t, const char *key, const char *want)
{
    const char *v = jval(t, key);
    CHECKF(!strcmp(v, want), "%s = %s, want %s", key, v, want);
}

static void check_json_chest(const kv *t, const fixture *f)
{
    const covct_measures *m = &f->m;
    check_val(t, "schema", "str \"covct-report/1\"");
    check_val(t, "generator.name", "str \"covct\"");
    CHECK(!strncmp(jval(t, "generator.version"), "str \"", 5));
    check_val(t, "source", "str \"/data/<script>alert(1)</script>/P001\"");
    check_val(t, "ai_notice",
              "str \"AI-assisted result, to be confirmed by a radiologist\"");
    check_val(t, "patient_id", "str \"P&001\"");
    check_val(t, "is_chest", "bool true");
    check_val(t, "not_chest_reason", "null");
    check_int(t, "ct_severity_score", 3);
    check_val(t, "category", "str \"typical\"");
    check_val(t, "category_reasons", "list 2");
    check_val(t, "category_reasons[0]",
              "str \"bilateral peripheral ground glass\"");
    check_val(t, "category_reasons[1]",
              "str \"lower-lobe predominant <b>&amp;</b>\"");
    check_num(t, "lungs.left_ml", 1111.0, 1e-9);
    check_num(t, "lungs.right_ml", 1234.6, 1e-9);
    check_num(t, "lungs.total_ml", 2345.6, 1e-9);
    check_val(t, "lobes", "dict 5");
    static const char *const fields[] = {"volume_ml", "lesion_ml", "ggo_ml",
                                         "consolidation_ml",
                                         "involvement_pct", "score"};
    for (int l = 1; l <= COVCT_N_LOBES; l++) {
        char key[128];
        for (int i = 0; i < 6; i++) {
            snprintf(key, sizeof key, "lobes.%s.%s", covct_lobe_name(l),
                     fields[i]);
            CHECKF(kv_get(t, key) != NULL, "missing %s", key);
        }
        snprintf(key, sizeof key, "lobes.%s.volume_ml", covct_lobe_name(l));
        check_num(t, key, round(m->lobe[l].volume_ml * 10) / 10, 1e-9);
        snprintf(key, sizeof key, "lobes.%s.score", covct_lobe_name(l));
        check_int(t, key, m->lobe[l].score);
    }
    check_num(t, "lobes.LUL.lesion_ml", 12.3, 1e-9);
    check_num(t, "lobes.LUL.consolidation_ml", 12.3, 1e-9);
    check_num(t, "lobes.LUL.ggo_ml", 0, 1e-9);
    check_num(t, "lobes.LUL.involvement_pct", 2.46, 1e-9);
    check_num(t, "lobes.RLL.ggo_ml", 30.3, 1e-9);
    check_num(t, "lobes.RLL.involvement_pct", 6.12, 1e-9);
    check_num(t, "lesions.ggo_ml", 30.3, 1e-9);
    check_num(t, "lesions.consolidation_ml", 12.3, 1e-9);
    check_num(t, "lesions.total_ml", 42.6, 1e-9);
    check_num(t, "lesions.involvement_pct", 1.82, 1e-9);
    check_num(t, "well_aerated_pct", 81.23, 1e-9);
    check_num(t, "distribution.peripheral_pct", 71.11, 1e-9);
    check_num(t, "distribution.lower_lobe_pct", 70.9, 1e-9);
    check_num(t, "distribution.right_pct", 71.0, 1e-9);
    check_val(t, "distribution.bilateral", "bool true");
    check_int(t, "distribution.lobes_involved", 2);

    check_val(t, "volume.size", "list 3");
    check_int(t, "volume.size[0]", NX);
    check_int(t, "volume.size[1]", NY);
    check_int(t, "volume.size[2]", NZ);
    check_num(t, "volume.spacing_mm[2]", 2.5, 1e-9);
    check_val(t, "volume.affine_lps", "list 4");
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            char key[64];
            snprintf(key, sizeof key, "volume.affine_lps[%d][%d]", r, c);
            check_num(t, key, f->ct->affine[r][c], 1e-9);
        }

    check_val(t, "slices", "list 40");
    for (int k = 0; k < NZ; k++) {
        const covct_slice_measures *s = &m->slices[k];
        char key[128];
        snprintf(key, sizeof key, "slices[%d].index", k);
        check_int(t, key, k);
        snprintf(key, sizeof key, "slices[%d].z_mm", k);
        check_num(t, key, s->z_mm, 1e-6);
        snprintf(key, sizeof key, "slices[%d].instance_number", k);
        if (k == 3)
            check_val(t, key, "null");
        else
            check_int(t, key, k + 1);
        snprintf(key, sizeof key, "slices[%d].lung_mm2", k);
        check_num(t, key, s->lung_mm2, 0.05 + 1e-9);
        snprintf(key, sizeof key, "slices[%d].lesion_mm2", k);
        check_num(t, key, s->lesion_mm2, 0.05 + 1e-9);
        for (int l = 1; l <= COVCT_N_LOBES; l++) {
            snprintf(key, sizeof key, "slices[%d].lobe_lesion_mm2.%s", k,
                     covct_lobe_name(l));
            check_num(t, key, s->lobe_lesion_mm2[l], 0.05 + 1e-9);
        }
    }
    /* Consolidation (121 voxels a slice) beats ground glass (99); then the
     * ground glass 42.5 mm below; the other slices of each block are
     * closer than 15 mm.  Head first. */
    check_val(t, "key_images", "list 2");
    check_int(t, "key_images[0].index", 25);
    check_val(t, "key_images[0].file", "str \"key_axial_25.png\"");
    check_int(t, "key_images[1].index", 8);
    check_val(t, "key_images[1].file", "str \"key_axial_8.png\"");
}

/* ---- PNG checks ------------------------------------------------------------------ */
/* Display pixel of voxel (i, j) on an axial image of the fixture (no flip:
 * i runs to the patient's left, j to posterior). */
static void axial_pixel(double i, double j, int *x, int *y)
{
    double pix = NX * SP[0] / 384.0; /* the long side is enlarged to 384 */
    *x = (int)floor((i + 0.5) * SP[0] / pix);
    *y = (int)floor((j + 0.5) * SP[1] / pix);
}

static void parse_rgb(const char *s, int *c)
{
    char *end;
    for (int i = 0; i < 3; i++) {
        c[i] = (int)strtol(s, &end, 10);
        s = end;
    }
}

static void check_png_peer(const char *file, int check_pixels)
{
    char args[512] = "";
    int gx, gy, cx, cy, lx, ly, ox, oy;
    axial_pixel(16, 25, &gx, &gy); /* ground glass, slice 8 */
    axial_pixel(47, 20, &cx, &cy); /* consolidation, slice 25 */
    axial_pixel(24, 34, &lx, &ly); /* plain lung */
    axial_pixel(32, 40, &ox, &oy); /* soft tissue between the lungs */
    if (check_pixels)
        snprintf(args, sizeof args, "%d %d %d %d %d %d %d %d", gx, gy, cx, cy,
                 lx, ly, ox, oy);
    kv t;
    CHECKF(run_peer("png", file, args, &t), "peer could not read %s", file);
    check_val(&t, "signature", "1");
    check_val(&t, "crc_ok", "1");
    check_val(&t, "first", "IHDR");
    check_val(&t, "last", "IEND");
    check_val(&t, "trailing", "0");
    check_val(&t, "format", "8 2 0");
    check_val(&t, "raw_ok", "1");
    if (check_pixels == 8) {
        char key[64];
        int c[3];
        snprintf(key, sizeof key, "px %d %d", gx, gy);
        parse_rgb(jval(&t, key), c);
        /* Yellow tint over -500 HU: red and green well above blue. */
        CHECKF(c[0] > c[2] + 60 && c[1] > c[2] + 60,
               "ground glass pixel (%d,%d) is %d %d %d, want yellow", gx, gy,
               c[0], c[1], c[2]);
        snprintf(key, sizeof key, "px %d %d", lx, ly);
        parse_rgb(jval(&t, key), c);
        /* -850 HU in W 1500 L -600: (-850 + 1350) / 1500 x 255 = 85. */
        CHECKF(c[0] == 85 && c[1] == 85 && c[2] == 85,
               "plain lung pixel is %d %d %d, want grey 85", c[0], c[1],
               c[2]);
        snprintf(key, sizeof key, "px %d %d", ox, oy);
        parse_rgb(jval(&t, key), c);
        CHECKF(c[0] == c[1] && c[1] == c[2] && c[0] > 200,
               "soft tissue pixel is %d %d %d, want near white", c[0], c[1],
               c[2]);
    }
    if (check_pixels == 25) {
        char key[64];
        int c[3];
        snprintf(key, sizeof key, "px %d %d", cx, cy);
        parse_rgb(jval(&t, key), c);
        /* Red-orange tint: red well above green, green above blue. */
        CHECKF(c[0] > c[1] + 60 && c[1] >= c[2],
               "consolidation pixel (%d,%d) is %d %d %d, want red-orange", cx,
               cy, c[0], c[1], c[2]);
    }
    kv_free(&t);

    if (system("command -v pngcheck >/dev/null 2>&1") == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "pngcheck -q '%s' >/dev/null", file);
        CHECKF(system(cmd) == 0, "pngcheck refuses %s", file);
    }
}

/* ---- HTML checks ----------------------------------------------------------------- */
static void check_html_peer(const char *file, int chest)
{
    kv t;
    CHECKF(run_peer("html", file, NULL, &t), "peer could not parse %s", file);
    check_val(&t, "nesting_errors", "0");
    check_val(&t, "unclosed", "0");
    check_val(&t, "scripts", "0");
    check_val(&t, "external", "0");
    check_val(&t, "styles", "1");
    const char *imgs = jval(&t, "imgs"), *pngs = jval(&t, "png_imgs");
    CHECKF(strtol(imgs, NULL, 10) >= 2 && !strcmp(imgs, pngs),
           "images %s, of which PNG data URIs %s", imgs, pngs);
    if (chest)
        check_val(&t, "imgs", "3"); /* two key slices and the coronal */
    const char *text = jval(&t, "text");
    CHECKF(strstr(text, "AI-assisted, to be confirmed by a radiologist"),
           "no AI notice");
    /* The hostile source arrives as text, not markup. */
    CHECKF(strstr(text, HOSTILE), "source not shown as text");
    if (chest) {
        CHECKF(strstr(text, "CT severity score: 3 / 25"), "no score");
        CHECKF(strstr(text, "Typical appearance of COVID-19"), "no category");
        CHECKF(strstr(text, "lower-lobe predominant <b>&amp;</b>"),
               "reason not shown as text");
        CHECKF(strstr(text, "P&001"), "no patient ID");
        CHECKF(strstr(text, "2020-03-15"), "no study date");
        CHECKF(strstr(text, "Right lower lobe (RLL)"), "no lobe table");
        CHECKF(strstr(text, "Coronal overview"), "no coronal");
        CHECKF(strstr(text, "Bilateral"), "no distribution");
    } else {
        CHECKF(strstr(text, "Not a chest CT"), "not-chest page says nothing");
        CHECKF(strstr(text, "no air-filled lungs"), "no reason");
        CHECKF(!strstr(text, "/ 25") && !strstr(text, "severity"),
               "not-chest page shows a score");
    }
    kv_free(&t);

    char *raw = slurp(file, NULL);
    CHECK(raw != NULL);
    if (raw) {
        CHECKF(!strstr(raw, "<script"), "a script tag got through");
        CHECK(strstr(raw, "&lt;script&gt;alert(1)&lt;/script&gt;") != NULL);
        CHECK(strstr(raw, "<img alt=") != NULL &&
              strstr(raw, "src=\"data:image/png;base64,iVBORw0KGgo") != NULL);
    }
    free(raw);
}

/* ---- NIfTI checks ---------------------------------------------------------------- */
static void check_mask(const fixture *f, const char *file, const uint8_t *lab,
                       int max_label)
{
    kv t;
    CHECKF(run_peer("nifti", file, "16 25 8 47 20 25 0 0 0", &t),
           "nibabel could not read %s", file);
    check_val(&t, "shape", "64 48 40");
    check_val(&t, "dtype", "uint8"); /* labels: covct_nifti_write_labels */
    /* nibabel's affine is RAS: the LPS affine with x and y negated. */
    double want[16], got[16];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            want[r * 4 + c] = (r < 2 ? -1 : 1) * f->ct->affine[r][c];
    const char *a = jval(&t, "affine");
    int n = 0;
    for (char *end; n < 16; n++) {
        got[n] = strtod(a, &end);
        if (end == a)
            break;
        a = end;
    }
    CHECKF(n == 16, "%s: affine has %d numbers", file, n);
    for (int i = 0; i < n; i++)
        CHECKF(fabs(got[i] - want[i]) < 1e-4, "%s affine[%d] %g want %g",
               file, i, got[i], want[i]);
    /* Counts of every label, as covct's arrays hold them. */
    size_t count[256] = {0};
    for (size_t i = 0; i < (size_t)NX * NY * NZ; i++)
        count[lab[i]]++;
    char labels[512] = "";
    size_t len = 0;
    for (int l = 0; l <= max_label; l++)
        if (count[l])
            len += (size_t)snprintf(labels + len, sizeof labels - len,
                                    "%s%d:%zu", len ? " " : "", l, count[l]);
    check_val(&t, "labels", labels);
    char key[64];
    static const int at[3][3] = {{16, 25, 8}, {47, 20, 25}, {0, 0, 0}};
    for (int i = 0; i < 3; i++) {
        snprintf(key, sizeof key, "v %d %d %d", at[i][0], at[i][1], at[i][2]);
        size_t vi = at[i][0] + (size_t)NX * (at[i][1] + (size_t)NY * at[i][2]);
        const char *v = jval(&t, key);
        CHECKF(strtol(v, NULL, 10) == lab[vi], "%s %s = %s, want %d", file,
               key, v, lab[vi]);
    }
    kv_free(&t);
}

/* ---- tests ------------------------------------------------------------------------- */
static void test_base64(void)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba",
                                     "foobar"};
    static const char *const want[] = {"", "Zg==", "Zm8=", "Zm9v",
                                       "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) { /* RFC 4648 section 10 */
        covct_buf b = {0};
        covct_error err = {0};
        CHECK(covct_base64_append(&b, (const uint8_t *)in[i], strlen(in[i]),
                                  &err) == COVCT_OK);
        CHECKF(b.len == strlen(want[i]) &&
                   (!b.len || !memcmp(b.data, want[i], b.len)),
               "base64(%s)", in[i]);
        covct_buf_free(&b);
    }
}

static void test_png_write_errors(void)
{
    uint8_t px[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};
    covct_error err = {0};
    const char *bad = tpath("no/such/folder/x.png");
    CHECK(covct_png_write_rgb(bad, px, 2, 2, &err) == COVCT_ERR_IO);
    CHECKF(strstr(err.msg, "x.png") != NULL, "error does not name the file: %s",
           err.msg);
    covct_error_clear(&err);
    CHECK(covct_png_write_rgb(tpath("zero.png"), px, 0, 2, &err) ==
          COVCT_ERR_ARG);
    CHECK(strstr(err.msg, "zero.png") != NULL);
    covct_error_clear(&err);
    CHECK(covct_png_write_rgb(tpath("tiny.png"), px, 2, 2, &err) == COVCT_OK);
    CHECK(exists(tpath("tiny.png")));
}

static void test_orientation(void)
{
    /* The same anatomy stored with i mirrored must look the same. */
    fixture a, b;
    build(&a, 0);
    build(&b, 1);
    covct_error err = {0};
    uint8_t *ra = NULL, *rb = NULL;
    uint32_t wa, ha, wb, hb;
    CHECK(covct_report_render(&a.in, 1, 8, &ra, &wa, &ha, &err) == COVCT_OK);
    CHECK(covct_report_render(&b.in, 1, 8, &rb, &wb, &hb, &err) == COVCT_OK);
    CHECK(wa == 384 && ha > 288 && wa == wb && ha == hb);
    if (ra && rb && wa == wb && ha == hb) {
        int x, y;
        axial_pixel(16, 25, &x, &y);
        /* Right lung on the image left: ground glass at x < w/2. */
        CHECK(x < (int)wa / 2);
        const uint8_t *pa = ra + ((size_t)y * wa + x) * 3;
        const uint8_t *pb = rb + ((size_t)y * wb + x) * 3;
        CHECKF(pa[0] > pa[2] + 60 && !memcmp(pa, pb, 3),
               "ground glass at (%d,%d): %d %d %d vs mirrored %d %d %d", x, y,
               pa[0], pa[1], pa[2], pb[0], pb[1], pb[2]);
        /* The image part (above the legend) is identical apart from the
         * sub-voxel sampling, which is symmetric for this size. */
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)wa * 288 * 3; i++)
            diff += ra[i] != rb[i];
        CHECKF(diff == 0, "%zu bytes differ between mirrored renderings",
               diff);
    }
    free(ra);
    free(rb);
    /* Coronal: head up.  Slice 25 (consolidation, upper) is above slice 8
     * (ground glass, lower); pixels are square, and the long side (40 x
     * 2.5 mm, head to feet) is enlarged to 384 pixels. */
    uint8_t *rc = NULL;
    uint32_t wc, hc;
    CHECK(covct_report_render(&a.in, 0, 0, &rc, &wc, &hc, &err) == COVCT_OK);
    if (rc) {
        double pix = NZ * SP[2] / 384.0;
        int img_w = (int)floor(NX * SP[0] / pix + 0.5);
        CHECKF((int)wc == img_w && hc > 384, "coronal %ux%u", wc, hc);
        /* The coronal plane passes through the lungs' centre in j (24); the
         * ground glass (j 20-30) and consolidation (j 15-25) both cut it. */
        int gx = (int)floor(16.5 * SP[0] / pix);
        int gy = (int)floor((NZ - 10 - 0.5) * SP[2] / pix); /* k = 10 */
        int cx = (int)floor(47.5 * SP[0] / pix);
        int cy = (int)floor((NZ - 26 - 0.5) * SP[2] / pix); /* k = 26 */
        const uint8_t *g = rc + ((size_t)gy * wc + gx) * 3;
        const uint8_t *c = rc + ((size_t)cy * wc + cx) * 3;
        CHECKF(g[0] > g[2] + 60 && g[1] > g[2] + 60,
               "coronal ground glass %d %d %d", g[0], g[1], g[2]);
        CHECKF(c[0] > c[1] + 60, "coronal consolidation %d %d %d", c[0], c[1],
               c[2]);
    }
    free(rc);
    release(&a);
    release(&b);
}

static void test_float_ct(void)
{
    /* A FLOAT32 CT renders like the INT16 one. */
    fixture a;
    build(&a, 0);
    covct_volume *fv = NULL;
    covct_error err = {0};
    CHECK(covct_volume_new(NX, NY, NZ, COVCT_DTYPE_FLOAT32, &fv, &err) ==
          COVCT_OK);
    set_affine(fv, 0);
    const int16_t *s = a.ct->data;
    float *d = fv->data;
    for (size_t i = 0; i < (size_t)NX * NY * NZ; i++)
        d[i] = s[i];
    uint8_t *ri = NULL, *rf = NULL;
    uint32_t w1, h1, w2, h2;
    CHECK(covct_report_render(&a.in, 1, 25, &ri, &w1, &h1, &err) == COVCT_OK);
    a.in.ct = fv;
    CHECK(covct_report_render(&a.in, 1, 25, &rf, &w2, &h2, &err) == COVCT_OK);
    CHECK(ri && rf && w1 == w2 && h1 == h2 &&
          !memcmp(ri, rf, (size_t)w1 * h1 * 3));
    free(ri);
    free(rf);
    covct_volume_free(fv);
    release(&a);
}

static void test_write_chest(int have_peer)
{
    fixture f;
    build(&f, 0);
    covct_error err = {0};
    const char *out = tpath("out/chest/nested");
    covct_rc rc = covct_report_write(out, &f.in, &err);
    CHECKF(rc == COVCT_OK, "covct_report_write: %s", err.msg);
    static const char *const files[] = {
        "report.json", "report.html", "lungs.nii.gz", "lobes.nii.gz",
        "lesions.nii.gz", "key_axial_25.png", "key_axial_8.png",
        "coronal.png"};
    char p[4096];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        CHECKF(exists(p), "missing %s", p);
    }
    int tmp_files;
    CHECKF(count_entries(out, &tmp_files) == 8 && tmp_files == 0,
           "unexpected files in %s", out);

    /* covct_report_json gives the file's content. */
    char *json = NULL;
    CHECK(covct_report_json(&f.in, &json, &err) == COVCT_OK);
    snprintf(p, sizeof p, "%s/report.json", out);
    char *file = slurp(p, NULL);
    CHECK(json && file && !strcmp(json, file));
    covct_free(json);
    free(file);

    /* Writing again over existing files works (atomic replace). */
    CHECK(covct_report_write(out, &f.in, &err) == COVCT_OK);

    if (have_peer) {
        kv t;
        CHECKF(run_peer("json", p, NULL, &t), "python could not parse %s", p);
        check_json_chest(&t, &f);
        kv_free(&t);
        snprintf(p, sizeof p, "%s/key_axial_8.png", out);
        check_png_peer(p, 8);
        snprintf(p, sizeof p, "%s/key_axial_25.png", out);
        check_png_peer(p, 25);
        snprintf(p, sizeof p, "%s/coronal.png", out);
        check_png_peer(p, 0);
        snprintf(p, sizeof p, "%s/report.html", out);
        check_html_peer(p, 1);
        snprintf(p, sizeof p, "%s/lungs.nii.gz", out);
        check_mask(&f, p, f.seg->lungs, 2);
        snprintf(p, sizeof p, "%s/lobes.nii.gz", out);
        check_mask(&f, p, f.seg->lobes, 5);
        snprintf(p, sizeof p, "%s/lesions.nii.gz", out);
        check_mask(&f, p, f.seg->lesions, 2);
    }
    release(&f);
}

static void test_write_no_lesions(int have_peer)
{
    /* Without lesions: the slice of most lung plus the upper and lower
     * thirds, at least 15 mm apart. */
    fixture f;
    build(&f, 0);
    memset(f.seg->lesions, 0, (size_t)NX * NY * NZ);
    for (int k = 0; k < NZ; k++) {
        f.m.slices[k].lesion_mm2 = 0;
        /* Most lung at k = 20. */
        if (f.m.slices[k].lung_mm2 > 0)
            f.m.slices[k].lung_mm2 += k == 20 ? 10 : 0;
    }
    uint32_t ks[COVCT_REPORT_MAX_KEY];
    int n = covct_report_pick_slices(&f.in, ks);
    CHECKF(n == 3, "no-lesion pick: %d slices", n);
    if (n == 3) {
        CHECKF(ks[1] == 20, "middle key slice %u", ks[1]);
        CHECK(ks[0] > ks[1] && ks[1] > ks[2]); /* head first */
        for (int i = 0; i < 2; i++)
            CHECK((ks[i] - ks[i + 1]) * SP[2] >= 15.0 - 1e-9);
        CHECK(ks[0] <= 35 && ks[2] >= 5);
    }
    covct_error err = {0};
    const char *out = tpath("out/nolesion");
    CHECKF(covct_report_write(out, &f.in, &err) == COVCT_OK, "%s", err.msg);
    if (have_peer) {
        char p[4096];
        snprintf(p, sizeof p, "%s/report.json", out);
        kv t;
        CHECK(run_peer("json", p, NULL, &t));
        check_val(&t, "key_images", "list 3");
        kv_free(&t);
    }
    release(&f);
}

static void test_write_not_chest(int have_peer)
{
    fixture f;
    build(&f, 0);
    memset(f.seg->lungs, 0, (size_t)NX * NY * NZ);
    memset(f.seg->lobes, 0, (size_t)NX * NY * NZ);
    memset(f.seg->lesions, 0, (size_t)NX * NY * NZ);
    f.lungs.is_chest = false;
    snprintf(f.lungs.why_not, sizeof f.lungs.why_not,
             "no air-filled lungs: the largest air region <%s> is 3 ml",
             "outside");
    f.in.m = NULL;
    f.in.source = HOSTILE;
    covct_error err = {0};
    const char *out = tpath("out/notchest");
    CHECKF(covct_report_write(out, &f.in, &err) == COVCT_OK, "%s", err.msg);
    char *json = NULL;
    CHECK(covct_report_json(&f.in, &json, &err) == COVCT_OK);
    CHECK(json && strstr(json, "\"is_chest\":\tfalse"));
    covct_free(json);
    char p[4096];
    snprintf(p, sizeof p, "%s/key_axial_%d.png", out, NZ / 2);
    CHECKF(exists(p), "missing %s", p);
    if (have_peer) {
        kv t;
        snprintf(p, sizeof p, "%s/report.json", out);
        CHECK(run_peer("json", p, NULL, &t));
        check_val(&t, "is_chest", "bool false");
        check_val(&t, "not_chest_reason",
                  "str \"no air-filled lungs: the largest air region "
                  "<outside> is 3 ml\"");
        check_val(&t, "ct_severity_score", "null");
        check_val(&t, "category", "null");
        check_val(&t, "lobes", "null");
        check_val(&t, "slices", "list 0");
        check_val(&t, "source", "str \"" HOSTILE "\"");
        kv_free(&t);
        snprintf(p, sizeof p, "%s/report.html", out);
        check_html_peer(p, 0);
    }
    release(&f);
}

static void test_errors(void)
{
    fixture f;
    build(&f, 0);
    covct_error err = {0};
    /* The folder cannot be made: a file stands in the way. */
    FILE *fp = fopen(tpath("blocker"), "w");
    if (fp)
        fclose(fp);
    CHECK(covct_report_write(tpath("blocker/sub"), &f.in, &err) ==
          COVCT_ERR_IO);
    CHECKF(strstr(err.msg, "blocker") != NULL, "%s", err.msg);
    /* report.json cannot be replaced: a folder of that name. */
    covct_error_clear(&err);
    const char *out = tpath("out/err");
    CHECK(covct_report_write(tpath("out/err/report.json/x"), &f.in, &err) ==
          COVCT_OK);
    covct_error_clear(&err);
    CHECK(covct_report_write(out, &f.in, &err) == COVCT_ERR_IO);
    CHECKF(strstr(err.msg, "report.json") != NULL, "%s", err.msg);
    /* Bad arguments. */
    covct_error_clear(&err);
    covct_report_input in = f.in;
    in.seg = NULL;
    CHECK(covct_report_write(tpath("out/x"), &in, &err) == COVCT_ERR_ARG);
    covct_error_clear(&err);
    in = f.in;
    in.m = NULL; /* a chest needs measures */
    char *json = NULL;
    CHECK(covct_report_json(&in, &json, &err) == COVCT_ERR_ARG && !json);
    release(&f);
}

static void test_alloc_failures(void)
{
    /* Every allocation failure inside covct_report_write is reported and
     * cleaned up (the sanitizer build finds leaks). */
    fixture f;
    build(&f, 0);
    covct_error err = {0};
    covct_alloc_fail_at(0);
    covct_alloc_count();
    CHECK(covct_report_write(tpath("out/alloc"), &f.in, &err) == COVCT_OK);
    covct_alloc_fail_at(1000000000);
    CHECK(covct_report_write(tpath("out/alloc"), &f.in, &err) == COVCT_OK);
    uint64_t total = covct_alloc_count();
    covct_alloc_fail_at(0);
    int failed = 0, wrong = 0;
    for (uint64_t n = 1; n <= total; n++) {
        covct_error_clear(&err);
        covct_alloc_fail_at(n);
        covct_rc rc = covct_report_write(tpath("out/alloc"), &f.in, &err);
        covct_alloc_fail_at(0);
        if (rc)
            failed++;
        if (rc && rc != COVCT_ERR_NOMEM)
            wrong++;
        if (rc && !err.msg[0])
            wrong++;
    }
    CHECKF(total > 10 && failed > 0 && wrong == 0,
           "%llu allocations, %d failed runs, %d wrong codes/messages",
           (unsigned long long)total, failed, wrong);
    int tmp_files;
    count_entries(tpath("out/alloc"), &tmp_files);
    CHECKF(tmp_files == 0, "%d temporary files left behind", tmp_files);
    release(&f);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/covct-report-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", tmpdir, strerror(errno));
        return 1;
    }
    int have_peer = find_peer();
    test_base64();
    test_png_write_errors();
    test_orientation();
    test_float_ct();
    test_write_chest(have_peer);
    test_write_no_lesions(have_peer);
    test_write_not_chest(have_peer);
    test_errors();
    test_alloc_failures();

    int skipped = 0;
    if (!have_peer) {
        const char *ci = getenv("CI");
        if (ci && strcmp(ci, "true") == 0) {
            CHECKF(0, "python3 with json, html.parser and nibabel is "
                      "required under CI=true");
        } else {
            fprintf(stderr, "SKIP: no python3 that imports nibabel: peer "
                            "checks not run\n");
            skipped = 1;
        }
    }
    if (!getenv("COVCT_KEEP_TMP"))
        remove_tree(tmpdir);
    else
        fprintf(stderr, "kept %s\n", tmpdir);
    int rc = test_report();
    if (rc == 0 && skipped)
        return TEST_SKIP_CODE;
    return rc;
}
