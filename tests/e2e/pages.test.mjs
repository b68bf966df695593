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

  // ---- r1: the study --------------------------------------------------------
  await step('open the study', async () => {
    await p1.locator('#wl-body tr').first().locator('a').click();
    await p1.waitForURL(/study\.html\?study=/);
    await p1.waitForSelector('body[data-ready="1"]', { timeout: 60000 });
    series = await p1.inputValue('#series');
    ok(!!series, `series ${series} chosen`);
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
    await p3.selectOption('#cf-dx', 'covid-19-clinical');
    await p3.fill('#cf-outcome', 'discharged');
    await p3.fill('#cf-comment', 'e2e test (synthetic phantom)');
    await p3.click('#cf-form button[type=submit]');
    await p3.waitForSelector('#cf-msg.msg-ok, #cf-msg.msg-error');
    ok(await p3.locator('#cf-msg.msg-ok').count() === 1, `case form: ${await p3.textContent('#cf-msg')}`);
    await snap(p3, 'case-form');
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
