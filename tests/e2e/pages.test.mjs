// covct's pages in Debian's Chromium (run by tests/e2e/run.sh, which
// starts the server and passes COVCT_URL, the passwords and the expected
// severity).  Each step is checked and leaves a screenshot in
// E2E_ARTIFACTS.  Any page error, failed assertion or Content-Security-
// Policy violation fails the test.
import { createRequire } from 'node:module';
import path from 'node:path';

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} not set (run tests/e2e/run.sh)`);
  return process.env[k];
};
const URL0 = env('COVCT_URL');
const ART = env('E2E_ARTIFACTS');
const require = createRequire(path.join(env('E2E_NODE_DIR'), 'package.json'));
const { chromium } = require('playwright-core');

let failed = 0;
let passed = 0;
let shot = 0;
const problems = []; // page errors and CSP violations, per page

function ok(cond, what) {
  if (cond) { passed++; console.log(`ok   ${what}`); }
  else { failed++; console.log(`FAIL ${what}`); }
  return cond;
}

async function step(what, fn) {
  try {
    await fn();
  } catch (e) {
    failed++;
    console.log(`FAIL ${what}: ${e.message.split('\n')[0]}`);
  }
}

async function snap(page, name) {
  shot++;
  const file = path.join(ART, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
}

function watch(page, who) {
  page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
  page.on('console', (m) => {
    const s = m.text();
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(s)) problems.push(`${who}: ${s}`);
  });
}

async function login(browser, user, pw, lang = 'en-GB') {
  const ctx = await browser.newContext({ locale: lang, viewport: { width: 1500, height: 1000 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  watch(page, user);
  await page.goto(`${URL0}/`);
  await page.fill('#login-user', user);
  await page.fill('#login-password', pw);
  await page.click('#login-submit');
  await page.waitForSelector('#who:not([hidden])');
  return { ctx, page };
}

// the study page is ready when the volume and masks are in
async function openStudy(page, study) {
  await page.goto(`${URL0}/study.html?study=${encodeURIComponent(study)}`);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
}

const canvasData = (page) => page.evaluate(() => document.querySelector('#axial').toDataURL());

// nonzero voxels of the lesion mask the server gives this user
const lesionVoxels = (page, series, version) => page.evaluate(async ([s, v]) => {
  const r = await fetch(`/api/series/${s}/mask/lesions${v ? `?version=${v}` : ''}`);
  if (!r.ok) return -r.status;
  const b = new Uint8Array(await r.arrayBuffer());
  let n = 0;
  for (const x of b) if (x) n++;
  return n;
}, [series, version]);

// What changed between two saved lesion mask versions, counted in the
// page from the API's bytes: how many voxels, on which slices (z), to
// which labels, the HU range of the volume under them, and the newer
// version's label at one voxel [x, y, z].
const maskDiff = (page, series, a, b, probe = null) => page.evaluate(async ([s, va, vb, pr]) => {
  const get = async (u) => { const r = await fetch(u); if (!r.ok) throw new Error(`${u}: ${r.status}`); return r; };
  const ra = await get(`/api/series/${s}/mask/lesions?version=${va}`);
  const [nx, ny] = ra.headers.get('X-Covct-Dims').split(',').map(Number);
  const ma = new Uint8Array(await ra.arrayBuffer());
  const mb = new Uint8Array(await (await get(`/api/series/${s}/mask/lesions?version=${vb}`)).arrayBuffer());
  const vol = new Int16Array(await (await get(`/api/series/${s}/volume`)).arrayBuffer());
  let n = 0;
  let huLo = Infinity;
  let huHi = -Infinity;
  const zs = new Set();
  const to = {};
  for (let i = 0; i < ma.length; i++) {
    if (ma[i] === mb[i]) continue;
    n++;
    zs.add(Math.floor(i / (nx * ny)));
    to[mb[i]] = (to[mb[i]] || 0) + 1;
    huLo = Math.min(huLo, vol[i]);
    huHi = Math.max(huHi, vol[i]);
  }
  const at = pr ? mb[pr[2] * nx * ny + pr[1] * nx + pr[0]] : null;
  return { n, zs: [...zs], to, huLo, huHi, at, len: ma.length === mb.length };
}, [series, a, b, probe]);

// Save the lesion mask as the chosen reader; the version number once the
// page has said so and listed it (it reloads the list after the message).
async function saveVersion(page) {
  const before = await page.textContent('#label-msg');
  await page.click('#save');
  await page.waitForFunction((prev) => {
    const m = document.querySelector('#label-msg');
    return m.classList.contains('msg-ok') && m.textContent !== prev;
  }, before, { timeout: 30000 });
  const id = Number(((await page.textContent('#label-msg')).match(/\d+/) || [])[0]);
  await page.locator(`#versions-body tr[data-id="${id}"]`).waitFor();
  return id;
}

// The axial canvas once it differs from (or equals) `than`: rendering
// happens on the next animation frame, so poll instead of reading at once.
// the axial image once it has stopped changing (two reads 50 ms apart
// agree): a baseline taken while a redraw is pending would be stale
async function settledAxial(page) {
  let a = await canvasData(page);
  for (let i = 0; i < 60; i++) {
    await page.waitForTimeout(50);
    const b = await canvasData(page);
    if (b === a) return a;
    a = b;
  }
  return a;
}
const axialChanged = (page, than) => page.waitForFunction((a) => document.querySelector('#axial').toDataURL() !== a, than, { timeout: 5000 }).then(() => true, () => false);
const axialBackTo = (page, img) => page.waitForFunction((a) => document.querySelector('#axial').toDataURL() === a, img, { timeout: 5000 }).then(() => true, () => false);
// a range input moved as a user does (input event)
const setRange = (page, sel, v) => page.$eval(sel, (el, x) => { el.value = String(x); el.dispatchEvent(new Event('input', { bubbles: true })); }, v);
// the pointer off the canvas, so the brush outline is not drawn
const pointerAway = (page) => page.mouse.move(2, 2);

async function paint(page, strokes) {
  await page.locator('#axial').scrollIntoViewIfNeeded();
  const box = await page.locator('#axial').boundingBox();
  for (const s of strokes) {
    await page.mouse.move(box.x + box.width * s[0][0], box.y + box.height * s[0][1]);
    await page.mouse.down();
    for (const p of s.slice(1)) await page.mouse.move(box.x + box.width * p[0], box.y + box.height * p[1], { steps: 8 });
    await page.mouse.up();
  }
}

// ---- static checks of web/: the CSP allows no inline script or style, and
// every text has both languages ------------------------------------------------
{
  const fs = await import('node:fs');
  const web = env('COVCT_WEB');
  const files = fs.readdirSync(web);
  const html = files.filter((f) => f.endsWith('.html'));
  for (const f of html) {
    const s = fs.readFileSync(path.join(web, f), 'utf8');
    ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(s), `${f}: no inline script`);
    ok(!/\sstyle\s*=|<style[\s>]|\son[a-z]+\s*=/i.test(s), `${f}: no inline style or event handler attribute`);
  }
  const { _dict: dict } = await import(path.join(web, 'i18n.js').replace(/^/, 'file://'));
  const en = Object.keys(dict.en);
  const zh = Object.keys(dict.zh);
  const missing = en.filter((k) => !(k in dict.zh)).concat(zh.filter((k) => !(k in dict.en)));
  ok(!missing.length, `English and Chinese have the same ${en.length} texts${missing.length ? `; not in both: ${missing.join(', ')}` : ''}`);
  const used = new Set();
  for (const f of files) {
    const s = fs.readFileSync(path.join(web, f), 'utf8');
    if (f.endsWith('.html')) for (const m of s.matchAll(/data-i18n(?:-[a-z]+)?="([^"]+)"/g)) used.add(m[1]);
    if (f.endsWith('.js') && f !== 'i18n.js') for (const m of s.matchAll(/\bt\('([a-z_.\-]+)'/g)) used.add(m[1]);
  }
  const unknown = [...used].filter((k) => !(k in dict.en));
  ok(!unknown.length, `every text the pages use (${used.size}) is in the dictionary${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`);
  // person names (PS3.5 6.2: family^given^middle^prefix^suffix, groups
  // alphabetic=ideographic=phonetic; the examples are PS3.5 6.2.1's) as
  // docs/internals/pages-api.md says the pages show them
  const { fmtPersonName } = await import(path.join(web, 'common.js').replace(/^/, 'file://'));
  for (const [pn, want] of [
    ['SYNTHETIC^PHANTOM', 'SYNTHETIC, PHANTOM'],
    ['Adams^John Robert Quincy^^Rev.^B.A. M.Div.', 'Rev. Adams, John Robert Quincy, B.A. M.Div.'],
    ['Morrison-Jones^Susan^^^Ph.D., Chief Executive Officer', 'Morrison-Jones, Susan, Ph.D., Chief Executive Officer'],
    ['Wang^XiaoDong=王^小東=', 'Wang, XiaoDong (王小東)'],
    ['=王^小東', '王小東'],
    ['SMITH', 'SMITH'],
  ]) ok(fmtPersonName(pn) === want, `person name ${pn} is shown as "${want}" (${fmtPersonName(pn)})`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let study = null;
let series = null;
let r1Version = null;
try {
  // ---- r1: log in, worklist ----------------------------------------------
  const { ctx: c1, page: p1 } = await login(browser, 'r1', env('PW_R1'));
  await step('worklist', async () => {
    await p1.waitForSelector('#wl-body tr');
    const sevs = process.env.E2E_SEVERITY.split(' ');
    ok((await p1.locator('#wl-body tr').count()) === sevs.length, `${sevs.length} studies listed`);
    const top = p1.locator('#wl-body tr').first();
    ok(await top.evaluate((tr) => tr.classList.contains('most-severe')), 'the most severe study is at the top, highlighted');
    const sev = (await top.locator('.badge').textContent()).trim();
    ok(sev === sevs[0] && Number(sevs[0]) > Number(sevs[1]), `its severity badge says ${sev} (worklist API: ${sevs.join(', ')})`);
    ok((await p1.locator('#wl-body tr.most-severe').count()) === 1, 'only one row is marked most severe');
    ok(/SYNTHETIC/.test(await top.textContent()), 'the synthetic phantom is listed');
    // Patient Name SYNTHETIC^PHANTOM: family name SYNTHETIC, given PHANTOM
    const shownName = (await top.locator('td').nth(2).textContent()).trim();
    ok(shownName === 'SYNTHETIC, PHANTOM', `the patient name reads "SYNTHETIC, PHANTOM" (${shownName})`);
    ok(!(await p1.textContent('#wl-body')).includes('^'), 'no raw DICOM name (with ^) in the worklist');
    ok((await p1.textContent('#who')).includes('r1'), 'the header shows the user and role');
    study = await top.getAttribute('data-study');
    await snap(p1, 'worklist-r1');
  });
  await step('language switch', async () => {
    await p1.selectOption('#lang', 'zh');
    ok((await p1.textContent('#wl-h')) === '工作列表', 'Chinese from the switch');
    await p1.reload();
    await p1.waitForSelector('#wl-body tr');
    ok((await p1.textContent('#wl-h')) === '工作列表', 'the choice is remembered (localStorage)');
    await snap(p1, 'worklist-zh');
    await p1.selectOption('#lang', 'en');
    ok((await p1.textContent('#wl-h')) === 'Worklist', 'back to English');
  });
  await step('search', async () => {
    await p1.fill('#wl-q', 'no-such-patient-xyz');
    await p1.click('#wl-filter button[type=submit]');
    await p1.waitForFunction(() => document.querySelectorAll('#wl-body tr').length === 0);
    ok(true, 'a search with no match empties the list');
    await p1.click('#wl-clear');
    await p1.waitForSelector('#wl-body tr');
  });
  await step('worklist date filter', async () => {
    // the expected rows from the unfiltered worklist's study dates
    const dates = await p1.evaluate(async () => (await (await fetch('/api/worklist')).json()).studies.map((x) => x.study_date));
    const d0 = dates[0];
    const shift = (d, days) => {
      const t0 = Date.UTC(Number(d.slice(0, 4)), Number(d.slice(4, 6)) - 1, Number(d.slice(6)));
      return new Date(t0 + days * 86400000).toISOString().slice(0, 10).replace(/-/g, '');
    };
    const iso = (d) => (d ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : '');
    const cases = [[shift(d0, 1), ''], ['', shift(d0, -1)], [d0, d0]];
    for (const [from, to] of cases) {
      const want = dates.filter((d) => (!from || d >= from) && (!to || d <= to)).length;
      await p1.fill('#wl-from', iso(from));
      await p1.fill('#wl-to', iso(to));
      const [res] = await Promise.all([
        p1.waitForResponse((r) => r.url().includes('/api/worklist') && (!from || r.url().includes(`from=${from}`)) && (!to || r.url().includes(`to=${to}`))),
        p1.click('#wl-filter button[type=submit]'),
      ]);
      const got = (await res.json()).studies.length;
      await p1.waitForFunction((n) => document.querySelectorAll('#wl-body tr').length === n, want, { timeout: 10000 });
      ok(got === want, `date filter ${iso(from) || '…'} to ${iso(to) || '…'}: ${want} of ${dates.length} studies listed`);
      if (from === d0) await snap(p1, 'worklist-date-filter');
    }
    await p1.click('#wl-clear');
    await p1.waitForFunction((n) => document.querySelectorAll('#wl-body tr').length === n, dates.length, { timeout: 10000 });
    ok(true, 'cleared: all studies again');
  });

  // ---- r1: the study --------------------------------------------------------
  await step('open the study', async () => {
    await p1.locator('#wl-body tr').first().locator('a').click();
    await p1.waitForURL(/study\.html\?study=/);
    await p1.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
    series = await p1.inputValue('#series');
    ok(!!series, `series ${series} chosen`);
    const info = await p1.textContent('#study-info');
    ok(info.includes('SYNTHETIC, PHANTOM') && !info.includes('^') && (await p1.title()).includes('SYNTHETIC, PHANTOM'),
      'the study page and its title show the patient name as a person reads it');
    ok(await p1.isVisible('.ai-notice'), 'the "AI result, to be confirmed" notice is shown');
    ok((await p1.locator('#report-body .score .badge').textContent()).trim() === process.env.E2E_SEVERITY.split(' ')[0], 'the report shows the severity score');
    ok((await p1.locator('#report-body table.lobes tbody tr').count()) === 5, 'the report lists five lobes');
    const err = await p1.locator('#page-msg').isVisible() ? await p1.textContent('#page-msg') : '';
    ok(!err, `no error on the page${err ? `: ${err}` : ''}`);
    await snap(p1, 'study-r1');
  });
  await step('scroll slices with the wheel', async () => {
    const before = await p1.inputValue('#slice');
    const box = await p1.locator('#axial').boundingBox();
    await p1.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    for (let i = 0; i < 5; i++) { await p1.mouse.wheel(0, 100); await p1.waitForTimeout(30); }
    const after = await p1.inputValue('#slice');
    ok(Number(after) === Number(before) - 5, `wheel: slice ${before} -> ${after}`);
    await p1.focus('#axial');
    await p1.keyboard.press('ArrowUp');
    ok(Number(await p1.inputValue('#slice')) === Number(after) + 1, 'arrow key: one slice up');
    await snap(p1, 'scrolled');
  });
  await step('overlay toggle', async () => {
    const a = await canvasData(p1);
    await p1.check('#ov-lobes');
    await p1.waitForTimeout(100);
    ok(await canvasData(p1) !== a, 'the lobes overlay changes the image');
    await snap(p1, 'overlay-lobes');
    await p1.uncheck('#ov-lobes');
  });
  await step('window preset', async () => {
    const a = await canvasData(p1);
    await p1.click('#preset-med');
    await p1.waitForTimeout(100);
    ok(await p1.inputValue('#ww') === '350' && await p1.inputValue('#wl') === '50', 'mediastinum: W350 L50');
    ok(await canvasData(p1) !== a, 'the window changes the image');
    await snap(p1, 'window-mediastinum');
    await p1.click('#preset-lung');
  });
  await step('zoom and pan', async () => {
    await p1.click('#zoom-in');
    await p1.click('#zoom-in');
    await p1.click('#pan');
    const box = await p1.locator('#axial').boundingBox();
    await p1.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await p1.mouse.down();
    await p1.mouse.move(box.x + box.width / 2 + 60, box.y + box.height / 2 + 30, { steps: 5 });
    await p1.mouse.up();
    await p1.click('#pan');
    await snap(p1, 'zoomed');
    await p1.click('#zoom-fit');
    ok(true, 'zoom buttons and the pan tool');
  });
  await step('coronal view', async () => {
    const corImg = () => p1.evaluate(() => document.querySelector('#coronal').toDataURL());
    const stats = await p1.evaluate(() => {
      const c = document.querySelector('#coronal');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let lit = 0;
      const grey = new Set();
      for (let i = 0; i < d.length; i += 4) { if (d[i] || d[i + 1] || d[i + 2]) lit++; grey.add(d[i]); }
      return { frac: lit / (c.width * c.height), grey: grey.size };
    });
    ok(stats.frac > 0.1 && stats.grey > 16, `the coronal view shows an image (${(100 * stats.frac).toFixed(0)} % of it lit, ${stats.grey} grey levels)`);
    const k0 = Number(await p1.inputValue('#slice'));
    // a click on the axial view puts the coronal plane through that row
    const before = await corImg();
    const box = await p1.locator('#axial').boundingBox();
    await p1.mouse.click(box.x + box.width * 0.5, box.y + box.height * 0.3);
    const moved = await p1.waitForFunction((a) => document.querySelector('#coronal').toDataURL() !== a, before, { timeout: 5000 }).then(() => true, () => false);
    ok(moved, 'a click on the axial view moves the coronal plane');
    // a click on the coronal view picks the axial slice: head at the top
    const cb = await p1.locator('#coronal').boundingBox();
    await p1.mouse.click(cb.x + cb.width / 2, cb.y + cb.height * 0.3);
    const top = Number(await p1.inputValue('#slice'));
    await p1.mouse.click(cb.x + cb.width / 2, cb.y + cb.height * 0.7);
    const low = Number(await p1.inputValue('#slice'));
    ok(top > low && top !== k0, `coronal clicks choose slices (upper ${top + 1}, lower ${low + 1}): the head is at the top`);
    await snap(p1, 'coronal');
    await setRange(p1, '#slice', k0);
    ok(Number(await p1.inputValue('#slice')) === k0, `back to slice ${k0 + 1}`);
  });
  await step('overlay opacity', async () => {
    await pointerAway(p1);
    await p1.check('#ov-lobes');
    await setRange(p1, '#opacity', 100);
    const opaque = await settledAxial(p1);
    await setRange(p1, '#opacity', 10);
    ok(await axialChanged(p1, opaque), 'the opacity slider changes how the overlay is drawn');
    await snap(p1, 'opacity-10');
    await setRange(p1, '#opacity', 100);
    ok(await axialBackTo(p1, opaque), 'and back at 100 % it is drawn as before');
    await setRange(p1, '#opacity', 45);
    await p1.uncheck('#ov-lobes');
  });

  // ---- r1: paint a correction, save as reader-1 ------------------------------
  await step('label as reader-1', async () => {
    const before = await lesionVoxels(p1, series);
    ok(before >= 0, `the AI's lesion mask is readable (${before} voxels)`);
    await p1.check('#label-mode');
    await p1.selectOption('#reader', 'reader-1');
    await p1.check('input[name=cls][value="2"]');
    await paint(p1, [
      [[0.30, 0.45], [0.36, 0.50], [0.40, 0.55]],
      [[0.62, 0.45], [0.66, 0.52], [0.68, 0.58]],
    ]);
    ok((await p1.textContent('#base')).includes('Unsaved'), 'the page knows there are unsaved changes');
    await snap(p1, 'painted');
    await p1.click('#save');
    await p1.waitForSelector('#label-msg.msg-ok', { timeout: 30000 });
    const text = await p1.textContent('#label-msg');
    r1Version = Number((text.match(/\d+/) || [])[0]);
    ok(r1Version > 0, `saved: ${text}`);
    const row = p1.locator(`#versions-body tr[data-id="${r1Version}"]`);
    await row.waitFor();
    ok((await row.textContent()).includes('reader-1') && (await row.textContent()).includes('r1'), 'the new version is listed with status reader-1 and author r1');
    const after = await lesionVoxels(p1, series, r1Version);
    ok(after > before, `the saved mask holds the strokes (${before} -> ${after} voxels)`);
    await snap(p1, 'saved-reader-1');
  });
  let erased = null;
  await step('eraser', async () => {
    const k = Number(await p1.inputValue('#slice'));
    await p1.check('input[name=tool][value=eraser]');
    await paint(p1, [[[0.30, 0.45], [0.36, 0.50], [0.40, 0.55]]]); // over the first brush stroke
    ok((await p1.textContent('#base')).includes('Unsaved'), 'erasing is an unsaved change');
    await pointerAway(p1);
    await snap(p1, 'erased');
    erased = await saveVersion(p1);
    const d = await maskDiff(p1, series, r1Version, erased);
    ok(d.len && d.n > 0 && d.zs.join() === String(k) && Object.keys(d.to).join() === '0',
      `the eraser cleared ${d.n} voxels, all on slice ${k + 1} (version ${r1Version} -> ${erased}; to labels ${JSON.stringify(d.to)})`);
  });
  let filled = null;
  await step('fill', async () => {
    const k = Number(await p1.inputValue('#slice'));
    await p1.check('input[name=tool][value=fill]');
    ok(await p1.isVisible('#fill-opts'), 'the fill options are shown');
    await p1.selectOption('#fill-mode', 'hu');
    await p1.check('input[name=cls][value="1"]');
    // a seed in lung tissue: the HU under the pointer, as the page shows it
    const box = await p1.locator('#axial').boundingBox();
    let seed = null;
    for (const [fx, fy] of [[0.35, 0.35], [0.65, 0.35], [0.35, 0.6], [0.65, 0.6], [0.3, 0.5], [0.7, 0.5], [0.4, 0.3], [0.6, 0.3]]) {
      await p1.mouse.move(box.x + box.width * fx, box.y + box.height * fy);
      const m = (await p1.textContent('#hu')).match(/(-?\d+) HU at \((\d+), (\d+), (\d+)\)/);
      if (m && Number(m[1]) > -950 && Number(m[1]) < -700 && Number(m[4]) === k + 1) { seed = { fx, fy, hu: Number(m[1]), x: Number(m[2]), y: Number(m[3]) }; break; }
    }
    if (!ok(!!seed, `a seed in the lung on slice ${k + 1}${seed ? `: ${seed.hu} HU at (${seed.x}, ${seed.y})` : ''}`)) return;
    const lo = seed.hu - 60;
    const hi = seed.hu + 60;
    await p1.fill('#hu-min', String(lo));
    await p1.locator('#hu-min').dispatchEvent('change');
    await p1.fill('#hu-max', String(hi));
    await p1.locator('#hu-max').dispatchEvent('change');
    await p1.mouse.click(box.x + box.width * seed.fx, box.y + box.height * seed.fy);
    ok((await p1.textContent('#base')).includes('Unsaved'), 'the fill is an unsaved change');
    await pointerAway(p1);
    await snap(p1, 'filled');
    filled = await saveVersion(p1);
    const d = await maskDiff(p1, series, erased, filled, [seed.x, seed.y, k]);
    ok(d.n > 0 && d.zs.join() === String(k) && Object.keys(d.to).join() === '1' && d.at === 1,
      `the fill made ${d.n} voxels ground glass, all on slice ${k + 1}, the seed among them`);
    ok(d.huLo >= lo && d.huHi <= hi, `every filled voxel is within ${lo}..${hi} HU (${d.huLo}..${d.huHi})`);
  });
  await step('lesion and lung overlay toggles', async () => {
    // this slice now has ground glass (the fill) and consolidation (the
    // second brush stroke)
    await pointerAway(p1);
    for (const [sel, what] of [['#ov-ggo', 'ground glass'], ['#ov-cons', 'consolidation'], ['#ov-lungs', 'lungs']]) {
      const a = await settledAxial(p1);
      const wasOn = await p1.isChecked(sel);
      await p1.setChecked(sel, !wasOn);
      ok(await axialChanged(p1, a), `${what} overlay ${wasOn ? 'off' : 'on'}: the image changes`);
      if (sel === '#ov-lungs') await snap(p1, 'overlay-lungs');
      await p1.setChecked(sel, wasOn);
      ok(await axialBackTo(p1, a), `${what} overlay ${wasOn ? 'on' : 'off'} again: the image is as before`);
    }
  });
  await step('undo', async () => {
    await p1.check('input[name=tool][value=brush]');
    await p1.check('input[name=cls][value="2"]');
    await paint(p1, [[[0.45, 0.62], [0.55, 0.66]]]);
    const stroked = await saveVersion(p1);
    const d0 = await maskDiff(p1, series, filled, stroked);
    ok(d0.n > 0, `a brush stroke changed ${d0.n} voxels (version ${stroked})`);
    await p1.click('#undo');
    await pointerAway(p1);
    await snap(p1, 'undone');
    const undone = await saveVersion(p1);
    const d1 = await maskDiff(p1, series, filled, undone);
    ok(d1.n === 0, `undo takes the stroke back: 0 voxels differ from version ${filled} (${d1.n})`);
    await p1.click('#undo'); // and then the fill
    const undone2 = await saveVersion(p1);
    const d2 = await maskDiff(p1, series, erased, undone2);
    ok(d2.n === 0, `a second undo takes the fill back: 0 voxels differ from version ${erased} (${d2.n})`);
  });
  await c1.close();

  // ---- r2: blind to reader 1 -----------------------------------------------
  const { ctx: c2, page: p2 } = await login(browser, 'r2', env('PW_R2'));
  await step('second reader is blind', async () => {
    await openStudy(p2, study);
    await p2.check('#label-mode');
    await p2.selectOption('#reader', 'reader-2');
    const statuses = await p2.locator('#versions-body tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.status));
    ok(statuses.length > 0 && !statuses.includes('reader-1'), `r2's version list has no reader-1 version (${statuses.join(', ')})`);
    const api = await p2.evaluate(async (s) => (await (await fetch(`/api/series/${s}/labels`)).json()).labels.map((l) => l.status), series);
    ok(!api.includes('reader-1'), 'the server does not give r2 the reader-1 version either');
    ok(!(await p2.textContent('#base')).includes(`version ${r1Version} `), 'r2 does not start from r1\'s mask');
    ok(await p2.isVisible('#blind-note'), 'the blind-reading note is shown');
    await snap(p2, 'reader-2-blind');
    // the second reading, for the adjudication below
    await p2.check('input[name=cls][value="1"]');
    await paint(p2, [[[0.33, 0.40], [0.38, 0.47]]]);
    await p2.click('#save');
    await p2.waitForSelector('#label-msg.msg-ok', { timeout: 30000 });
    ok(true, `r2 saved: ${await p2.textContent('#label-msg')}`);
  });
  await c2.close();

  // ---- admin: adjudication, case form, governance -------------------------------
  const { ctx: c3, page: p3 } = await login(browser, 'admin', env('PW_ADMIN'));
  await step('adjudication', async () => {
    await openStudy(p3, study);
    await p3.click('#adj-open');
    await p3.waitForSelector('#adj-body:not([hidden])', { timeout: 30000 });
    const dice = await p3.textContent('#adj-dice');
    ok(/Dice.*\d\.\d{3}/.test(dice), `the readers' agreement: ${dice}`);
    await p3.check('#adj-side');
    await p3.selectOption('#adj-from', 'union');
    await snap(p3, 'adjudication');
    await p3.click('#adj-final');
    await p3.waitForSelector('#adj-msg.msg-ok', { timeout: 30000 });
    ok(true, `final saved: ${await p3.textContent('#adj-msg')}`);
    const final = await p3.waitForSelector('#versions-body tr[data-status="final"]', { timeout: 10000 }).then(() => true, () => false);
    ok(final, 'the final version is listed');
  });
  await step('case form', async () => {
    if (!await p3.isVisible('#cf-form')) { ok(false, 'the case form is shown (study in the case database)'); return; }
    // a severity and category other than the AI's, which the form starts from
    const aiSev = Number(process.env.E2E_SEVERITY.split(' ')[0]);
    const sev = (aiSev + 7) % 26;
    const aiCat = await p3.inputValue('#cf-cat');
    const cat = ['typical', 'indeterminate', 'atypical', 'negative'].find((c) => c !== aiCat);
    await p3.selectOption('#cf-dx', 'covid-19-clinical');
    await p3.fill('#cf-sev', String(sev));
    await p3.selectOption('#cf-cat', cat);
    await p3.fill('#cf-outcome', 'discharged');
    await p3.fill('#cf-comment', 'e2e test (synthetic phantom)');
    await p3.click('#cf-form button[type=submit]');
    await p3.waitForSelector('#cf-msg.msg-ok, #cf-msg.msg-error');
    ok(await p3.locator('#cf-msg.msg-ok').count() === 1, `case form: ${await p3.textContent('#cf-msg')}`);
    await snap(p3, 'case-form');
    // reloaded, the form shows what was saved, not the AI's values
    await openStudy(p3, study);
    const shown = await p3.waitForFunction(([s, c]) => document.querySelector('#cf-sev').value === s && document.querySelector('#cf-cat').value === c,
      [String(sev), cat], { timeout: 10000 }).then(() => true, () => false);
    ok(shown, `after a reload the form shows severity ${sev} and category ${cat} (AI: ${aiSev}, ${aiCat}); shown: ${await p3.inputValue('#cf-sev')}, ${await p3.inputValue('#cf-cat')}`);
    ok(await p3.inputValue('#cf-dx') === 'covid-19-clinical' && await p3.inputValue('#cf-outcome') === 'discharged', 'and the diagnosis and outcome saved');
    ok(await p3.isVisible('#cf-from'), `the form says where it comes from: ${await p3.textContent('#cf-from')}`);
    const api = await p3.evaluate(async (u) => (await (await fetch(`/api/studies/${encodeURIComponent(u)}`)).json()).clinical, study);
    ok(api && api.severity === sev && api.category === cat, `the server has them too (${JSON.stringify(api && { severity: api.severity, category: api.category })})`);
    await p3.locator('#caseform').scrollIntoViewIfNeeded();
    await snap(p3, 'case-form-reloaded');
  });
  await step('governance', async () => {
    await p3.click('#nav-governance');
    await p3.waitForURL(/governance\.html/);
    await p3.waitForSelector('#au-body tr');
    const n = await p3.locator('#au-body tr').count();
    ok(n > 5, `the audit log lists ${n} entries`);
    const actions = await p3.locator('#au-body tr td:nth-child(5)').allTextContents();
    ok(actions.includes('label.save') || actions.some((a) => a.startsWith('label')), 'the label saves are in the audit log');
    await p3.click('#verify');
    await p3.waitForSelector('#verify-msg.msg-ok, #verify-msg.msg-error');
    const v = await p3.textContent('#verify-msg');
    ok(/^Intact/.test(v), `verify: ${v}`);
    await p3.waitForSelector('#us-body tr:nth-child(3)', { timeout: 10000 }).catch(() => {});
    ok(await p3.isVisible('#users') && (await p3.locator('#us-body tr').count()) === 3, 'the three users are listed');
    await snap(p3, 'governance');
  });
  await step('project, approval, consent, export request', async () => {
    await p3.fill('#pm-create input[name=name]', 'e2e-proj');
    await p3.fill('#pm-create input[name=title]', 'End-to-end test');
    await p3.click('#pm-create button[type=submit]');
    await p3.waitForSelector('#pj-body a:text("e2e-proj")');
    await p3.selectOption('#pm-approve select[name=project]', 'e2e-proj');
    await p3.fill('#pm-approve input[name=committee]', 'EC of the test');
    await p3.fill('#pm-approve input[name=number]', 'EC-E2E-1');
    await p3.fill('#pm-approve input[name=granted_on]', '2026-01-01');
    await p3.fill('#pm-approve input[name=expires_on]', '2099-12-31');
    await p3.click('#pm-approve button[type=submit]');
    await p3.waitForSelector('#pm-msg.msg-ok, #pm-msg.msg-error');
    ok(await p3.locator('#pm-msg.msg-ok').count() === 1, `approval: ${await p3.textContent('#pm-msg')}`);
    await p3.selectOption('#pm-consent select[name=project]', 'e2e-proj');
    await p3.fill('#pm-consent input[name=patient_id]', 'SYNTH-PHANTOM');
    await p3.click('#pm-consent button[type=submit]');
    await p3.waitForFunction(() => /given 1/.test(document.querySelector('#pm-detail')?.textContent || ''));
    ok(true, 'consent recorded and counted');
    await p3.click('#pj-body tr:has-text("e2e-proj") button');
    await p3.waitForSelector('#ex-body tr:has-text("requested") button');
    // approval and consent are not enough: no data use agreement yet
    await p3.click('#ex-body tr:has-text("requested") button');
    await p3.waitForSelector('#ex-msg.msg-error', { timeout: 10000 }).catch(() => {});
    const refusal = await p3.textContent('#ex-msg');
    ok(/no data use agreement/.test(refusal), `refused without a data use agreement: ${refusal}`);
    await p3.selectOption('#pm-agreement select[name=project]', 'e2e-proj');
    await p3.fill('#pm-agreement input[name=party]', 'University Lung Lab');
    await p3.fill('#pm-agreement input[name=signed_on]', '2026-01-01');
    await p3.click('#pm-agreement button[type=submit]');
    await p3.waitForFunction(() => /University Lung Lab/.test(document.querySelector('#pm-detail')?.textContent || ''));
    ok(true, 'the data use agreement is recorded and shown with the project');
    await p3.waitForSelector('#ex-body tr:has-text("requested") button');
    await p3.click('#ex-body tr:has-text("requested") button');
    await p3.waitForFunction(() => /Written to/.test(document.querySelector('#ex-msg')?.textContent || ''));
    // The page reloads the list after it shows the message: wait for the row.
    const listed = await p3.waitForSelector('#ex-body tr:has-text("done")', { timeout: 10000 }).then(() => true, () => false);
    ok(listed && await p3.locator('#ex-body tr:has-text("done")').count() === 1, 'the export ran and is listed as done');
    await snap(p3, 'export');
  });
  await step('logout', async () => {
    await p3.click('#logout');
    await p3.waitForURL(/index\.html/);
    await p3.waitForSelector('#login:not([hidden])');
    const st = await p3.evaluate(async () => (await fetch('/api/me')).status);
    ok(st === 401, 'logged out: /api/me answers 401');
  });
  await step('wrong password', async () => {
    await p3.fill('#login-user', 'admin');
    await p3.fill('#login-password', 'wrong');
    await p3.click('#login-submit');
    await p3.waitForSelector('#login-msg.msg-error');
    ok(/wrong user name or password/.test(await p3.textContent('#login-msg')), 'the API\'s error text is shown');
    await snap(p3, 'login-error');
  });
  await c3.close();
} finally {
  await browser.close();
}
for (const p of problems) { failed++; console.log(`FAIL ${p}`); }
ok(true, `${shot} screenshots in ${ART}`);
console.log(`pages: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
