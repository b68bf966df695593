// study.html?study=UID: the analysed CT series in the viewer, the AI
// report beside it, labelling (readers, adjudication) and the case form.
import { t, tOr } from './i18n.js';
import {
  $, h, call, getJSON, postJSON, whoAmI, may, say, showError, setupHeader,
  initPage, fmtDate, fmtNum, fmtPersonName, severityBadge,
} from './common.js';
import { Viewer, PRESETS } from './viewer.js';

const READER_KEY = 'covct.reader';
let me = null;
let study = null;
let series = null; // the series_uid shown
let report = null;
let labels = [];
let viewer = null;
let base = null; // {id, status} of the lesion version being edited
let dirty = false;
let adj = null; // {r1, r2, dice} while adjudicating
let loadToken = 0; // a newer series load makes older ones stop

const api = (p) => `/api/series/${encodeURIComponent(series)}/${p}`;

// ---- binary downloads with progress (fetch + ReadableStream) ------------
async function fetchBinary(path, onProgress) {
  const res = await call(path);
  const total = Number(res.headers.get('Content-Length')) || 0;
  if (!res.body || !res.body.getReader) {
    const b = new Uint8Array(await res.arrayBuffer());
    if (onProgress) onProgress(b.length, b.length);
    return { res, bytes: b };
  }
  const reader = res.body.getReader();
  let buf = total ? new Uint8Array(total) : null;
  const parts = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (buf && got + value.length <= total) buf.set(value, got);
    else {
      if (buf) { parts.push(buf.subarray(0, got)); buf = null; }
      parts.push(value);
    }
    got += value.length;
    if (onProgress) onProgress(got, total);
  }
  if (!buf || got !== total) {
    const all = new Uint8Array(got);
    let o = 0;
    for (const p of parts) { all.set(p, o); o += p.length; }
    if (buf && !parts.length) all.set(buf.subarray(0, got));
    buf = all;
  }
  return { res, bytes: buf };
}

function parseTriple(s, what) {
  const v = String(s || '').split(',').map(Number);
  if (v.length !== 3 || v.some((x) => !Number.isFinite(x) || x <= 0)) throw new Error(`${what}: "${s}"`);
  return v;
}

function progress(text, pct) {
  const box = $('#load');
  box.hidden = text === null;
  if (text === null) return;
  $('#load-text').textContent = text;
  const bar = $('#load-bar');
  if (pct === undefined || pct === null) bar.removeAttribute('value');
  else bar.value = pct;
}

// ---- study and series ---------------------------------------------------
function pickSeries(s) {
  const ct = (s.series || []).filter((x) => x.modality === 'CT');
  const done = ct.filter((x) => x.ai_state === 'done').sort((a, b) => (b.severity ?? -1) - (a.severity ?? -1));
  if (done.length) return done[0].series_uid;
  ct.sort((a, b) => (b.instances || 0) - (a.instances || 0));
  return ct.length ? ct[0].series_uid : null;
}

function renderStudyInfo() {
  const dl = $('#study-info');
  dl.replaceChildren();
  if (!study) return;
  const add = (k, v) => dl.append(h('div', null, h('dt', { text: t(k) }), h('dd', { text: v || t('common.none') })));
  add('st.patient', [fmtPersonName(study.patient_name), study.patient_id].filter(Boolean).join(' · '));
  add('st.date', fmtDate(study.study_date));
  add('st.desc', study.description);
  document.title = `covct — ${fmtPersonName(study.patient_name) || study.patient_id || ''}`;
  const sel = $('#series');
  const cur = sel.value || series;
  sel.replaceChildren();
  for (const s of study.series || []) {
    if (s.modality !== 'CT') continue;
    const sev = s.severity !== null && s.severity !== undefined ? ` · ${s.severity}/25` : '';
    sel.append(h('option', { value: s.series_uid, text: `#${s.number ?? ''} ${s.description || s.series_uid} (${s.instances || 0})${sev}` }));
  }
  if (cur) sel.value = cur;
}

// ---- the report -------------------------------------------------------------
function renderReport() {
  const box = $('#report-body');
  box.replaceChildren();
  if (!report) { box.append(h('p.hint', { text: t('rp.none') })); return; }
  if (report.error) { box.append(h('p.msg.msg-error', { text: t('common.error', { msg: report.error }) })); return; }
  const r = report;
  if (typeof r.schema === 'string' && !/^covct-report\/1\b/.test(r.schema))
    box.append(h('p.msg.msg-error', { text: `schema ${r.schema}` }));
  if (r.is_chest === false) {
    box.append(h('p.msg.msg-error', { text: t('rp.not_chest', { why: r.not_chest_reason || '' }) }));
    return;
  }
  const ml = (v) => (v === null || v === undefined ? t('common.none') : t('rp.ml', { v: fmtNum(v, 1) }));
  const pct = (v) => (v === null || v === undefined ? t('common.none') : t('rp.pct', { v: fmtNum(v, 1) }));
  box.append(h('div.score-row', null,
    h('div', null, h('div.k', { text: t('rp.score') }), h('div.score', null, severityBadge(r.ct_severity_score), h('span.of', { text: ' / 25' }))),
    h('div', null, h('div.k', { text: t('rp.category') }),
      h('div', null, r.category ? h(`span.cat.cat-${r.category}`, { text: tOr(`cat.${r.category}`, r.category) }) : t('common.none')))));
  if (r.category_reasons && r.category_reasons.length) {
    box.append(h('div.k', { text: t('rp.features') }), h('ul.reasons', null, r.category_reasons.map((x) => h('li', { text: x }))));
  }
  if (r.lobes) {
    const order = ['RUL', 'RML', 'RLL', 'LUL', 'LLL'];
    box.append(h('table.table.small.lobes', null,
      h('thead', null, h('tr', null,
        h('th', { scope: 'col', text: t('rp.lobe') }), h('th', { scope: 'col', text: t('rp.lobe_score') }),
        h('th', { scope: 'col', text: t('rp.involvement') }), h('th', { scope: 'col', text: t('rp.lesion_ml') }),
        h('th', { scope: 'col', text: t('rp.volume_ml') }))),
      h('tbody', null, order.filter((k) => r.lobes[k]).map((k) => {
        const l = r.lobes[k];
        return h('tr', null, h('th', { scope: 'row', text: tOr(`lobe.${k}`, k) }),
          h('td.num', null, h(`span.pill.lobe-score-${l.score ?? 0}`, { text: `${l.score ?? '—'}/5` })),
          h('td.num', { text: pct(l.involvement_pct) }), h('td.num', { text: ml(l.lesion_ml) }),
          h('td.num', { text: ml(l.volume_ml) }));
      }))));
  }
  const rows = [];
  if (r.lungs) rows.push(['rp.lungs', `${ml(r.lungs.right_ml)} / ${ml(r.lungs.left_ml)} / ${ml(r.lungs.total_ml)}`]);
  if (r.lesions) {
    rows.push(['rp.ggo', ml(r.lesions.ggo_ml)], ['rp.consolidation', ml(r.lesions.consolidation_ml)],
      ['rp.lesions_total', ml(r.lesions.total_ml)], ['rp.total_involvement', pct(r.lesions.involvement_pct)]);
  }
  if (r.well_aerated_pct !== undefined && r.well_aerated_pct !== null) rows.push(['rp.aerated', pct(r.well_aerated_pct)]);
  if (r.distribution) {
    rows.push(['rp.bilateral', r.distribution.bilateral ? t('common.yes') : t('common.no')],
      ['rp.peripheral', pct(r.distribution.peripheral_pct)], ['rp.lower', pct(r.distribution.lower_lobe_pct)]);
  }
  if (rows.length) {
    box.append(h('h3', { text: t('rp.volumes') }),
      h('dl.kv', null, rows.map(([k, v]) => h('div', null, h('dt', { text: t(k) }), h('dd', { text: v })))));
  }
  if (r.key_images && r.key_images.length) {
    box.append(h('h3', { text: t('rp.key_slices') }),
      h('div.keys', null, r.key_images.map((ki) => h('button.btn-secondary.small', {
        type: 'button',
        text: `${ki.index + 1}`,
        title: `z ${ki.z_mm} mm, ${fmtNum(ki.lesion_mm2, 0)} mm²`,
        on: { click: () => { if (viewer) { viewer.setSlice(ki.index); $('#axial').focus(); } } },
      }))));
  }
}

// ---- label versions -----------------------------------------------------------
function author(l) {
  const s = l.source || '';
  return s.startsWith('user:') ? s.slice(5) : s;
}

function renderVersions() {
  const body = $('#versions-body');
  body.replaceChildren();
  // a second reader works blind: the server leaves other readers' versions
  // out; the page never asks for them outside adjudication either
  const list = labels.filter((l) => !(readerChoice() === 'reader-2' && l.status === 'reader-1' && !adj));
  if (!list.length) {
    body.append(h('tr', null, h('td', { colSpan: 6, text: t('lb.no_versions') })));
    return;
  }
  for (const l of [...list].reverse()) {
    const cur = base && base.id === l.id;
    body.append(h('tr' + (cur ? '.current' : ''), { dataset: { id: l.id, status: l.status } },
      h('td.num', { text: String(l.id) }),
      h('td', { text: tOr(`lbk.${l.kind}`, l.kind) }),
      h('td', null, h(`span.status.status-${l.status}`, { text: l.status })),
      h('td', { text: author(l) }),
      h('td', { text: (l.created_at || '').replace('T', ' ').replace(/\.\d+Z$/, 'Z') }),
      h('td', null, l.kind === 'lesions' && viewer && viewer.vol
        ? h('button.btn-secondary.small', { type: 'button', text: t('lb.load'), on: { click: () => loadLesions(l.id) } })
        : null)));
  }
}

async function refreshLabels() {
  try {
    const q = adj ? '?adjudicate=1' : '';
    labels = (await getJSON(api(`labels${q}`))).labels || [];
  } catch (e) {
    labels = [];
    showError($('#label-msg'), e);
  }
  renderVersions();
}

function renderBase() {
  const el = $('#base');
  el.textContent = base ? t('lb.base', { id: base.id, status: base.status }) : t('lb.base_none');
  if (dirty) el.append(' · ', h('strong', { text: t('lb.unsaved') }));
}

async function loadLesions(version) {
  if (dirty && !confirm(t('lb.confirm_discard'))) return;
  try {
    const q = version ? `?version=${version}${adj ? '&adjudicate=1' : ''}` : '';
    const { res, bytes } = await fetchBinary(api(`mask/lesions${q}`));
    viewer.setMask('lesions', bytes);
    base = { id: Number(res.headers.get('X-Covct-Label-Id')) || null, status: res.headers.get('X-Covct-Label-Status') || '' };
    if (!base.id) base = null;
  } catch (e) {
    showError($('#label-msg'), e);
    return;
  }
  dirty = false;
  renderBase();
  renderVersions();
}

// ---- loading a series -----------------------------------------------------------
async function loadSeries(uid) {
  const my = ++loadToken;
  series = uid;
  $('#series').value = uid;
  report = null;
  base = null;
  dirty = false;
  adj = null;
  $('#adj-body').hidden = true;
  $('#ov-r1-wrap').hidden = true;
  $('#ov-r2-wrap').hidden = true;
  say($('#page-msg'), '');
  const reportP = getJSON(api('report')).then((r) => { report = r; }, (e) => { report = e.status === 404 ? null : { error: e.message }; })
    .then(() => { if (my === loadToken) renderReport(); });
  const labelsP = may(me, 'read.deidentified') ? refreshLabels() : Promise.resolve();
  progress(t('st.loading_volume', { pct: '' }), 0);
  try {
    const { res, bytes } = await fetchBinary(api('volume'), (got, total) => {
      if (my !== loadToken) return;
      const pct = total ? Math.round((got / total) * 100) : null;
      progress(t('st.loading_volume', { pct: pct === null ? `${(got / 1048576).toFixed(1)} MB` : `${pct} %` }), pct);
    });
    if (my !== loadToken) return;
    const dims = parseTriple(res.headers.get('X-Covct-Dims'), 'X-Covct-Dims');
    const spacing = parseTriple(res.headers.get('X-Covct-Spacing'), 'X-Covct-Spacing');
    const n = dims[0] * dims[1] * dims[2];
    if (bytes.byteLength !== n * 2) throw new Error(`${bytes.byteLength} bytes for ${dims.join('×')} int16 voxels`);
    const vol = new Int16Array(bytes.buffer, bytes.byteOffset, n);
    const cor = $('#coronal');
    cor.style.aspectRatio = `${dims[0] * spacing[0]} / ${dims[2] * spacing[2]}`;
    $('#side').style.aspectRatio = `${dims[0] * spacing[0]} / ${dims[1] * spacing[1]}`;
    viewer.setVolume(vol, dims, spacing);
    const slider = $('#slice');
    slider.max = dims[2] - 1;
    slider.value = viewer.k;
  } catch (e) {
    if (my !== loadToken) return;
    progress(null);
    say($('#page-msg'), t('st.volume_failed', { msg: e.message }), 'error');
    await reportP;
    await labelsP;
    return;
  }
  progress(t('st.loading_mask'), null);
  const problems = [];
  await Promise.all(['lungs', 'lobes', 'lesions'].map(async (kind) => {
    try {
      const { res, bytes } = await fetchBinary(api(`mask/${kind}`));
      if (my !== loadToken) return;
      viewer.setMask(kind, bytes);
      if (kind === 'lesions') {
        const id = Number(res.headers.get('X-Covct-Label-Id'));
        base = id ? { id, status: res.headers.get('X-Covct-Label-Status') || '' } : null;
      }
    } catch (e) {
      problems.push(t('st.mask_failed', { kind: t(`lbk.${kind}`), msg: e.message }));
      if (kind === 'lesions' && my === loadToken) viewer.setMask('lesions', new Uint8Array(viewer.vol.length));
    }
  }));
  if (my !== loadToken) return;
  progress(null);
  if (problems.length) say($('#page-msg'), problems.join(' '), 'error');
  renderBase();
  await reportP;
  await labelsP;
  renderVersions();
  document.body.dataset.ready = '1'; // for the end-to-end test
}

// ---- labelling --------------------------------------------------------------------
function readerChoice() { return $('#reader').value; }

async function save(status) {
  if (!viewer || !viewer.masks.lesions) { say($('#label-msg'), t('lb.no_volume'), 'error'); return; }
  const msg = status === 'final' ? $('#adj-msg') : $('#label-msg');
  const btn = status === 'final' ? $('#adj-final') : $('#save');
  btn.disabled = true;
  say(msg, t('lb.saving'), 'info');
  try {
    const p = new URLSearchParams({ status });
    if (base && base.id) p.set('parent', base.id);
    const r = await (await call(api(`mask/lesions?${p}`), {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: viewer.masks.lesions,
    })).json();
    base = { id: r.id, status };
    dirty = false;
    say(msg, t('lb.saved', { id: r.id }), 'ok');
    await refreshLabels();
    renderBase();
  } catch (e) {
    showError(msg, e);
  } finally {
    btn.disabled = false;
  }
}

function setLabelMode(on) {
  viewer.labelling = on;
  $('#label-tools').hidden = !on;
  $('#axial').classList.toggle('painting', on);
  if (on) {
    $('#pan').setAttribute('aria-pressed', 'false');
    viewer.panTool = false;
    // painting needs the lesion overlay visible
    for (const id of ['#ov-ggo', '#ov-cons']) { $(id).checked = true; }
    viewer.show.ggo = viewer.show.cons = true;
    viewer.changed();
    say($('#label-msg'), viewer.vol ? t('lb.mode_on') : t('lb.no_volume'), viewer.vol ? 'info' : 'error');
  }
  viewer.render();
}

// ---- adjudication ---------------------------------------------------------------
async function openAdjudication() {
  const msg = $('#adj-msg');
  say(msg, t('common.loading'), 'info');
  try {
    const a = await getJSON(api('agreement?adjudicate=1'));
    if (!a.dice || !a.reader1_label || !a.reader2_label) { say(msg, t('adj.no_pair'), 'info'); return; }
    const [r1, r2] = await Promise.all([a.reader1_label, a.reader2_label].map((id) =>
      fetchBinary(api(`mask/lesions?version=${id}&adjudicate=1`)).then((x) => x.bytes)));
    adj = { r1, r2, dice: a.dice, ids: [a.reader1_label, a.reader2_label] };
    viewer.setMask('r1', r1);
    viewer.setMask('r2', r2);
    const d = (v) => (v === null || v === undefined ? '—' : Number(v).toFixed(3));
    $('#adj-dice').textContent = t('adj.dice', { a: d(a.dice[0]), g: d(a.dice[1]), c: d(a.dice[2]) });
    $('#adj-body').hidden = false;
    $('#ov-r1-wrap').hidden = false;
    $('#ov-r2-wrap').hidden = false;
    say(msg, '');
    await refreshLabels();
  } catch (e) {
    showError(msg, e);
  }
}

function startFinalFrom(how) {
  if (!adj) return;
  const { r1, r2 } = adj;
  const m = new Uint8Array(r1.length);
  for (let i = 0; i < m.length; i++) {
    const a = r1[i];
    const b = r2[i];
    m[i] = how === 'r1' ? a : how === 'r2' ? b : how === 'union' ? Math.max(a, b) : (a && b ? Math.min(a, b) : 0);
  }
  viewer.setMask('lesions', m);
  base = { id: how === 'r2' ? adj.ids[1] : adj.ids[0], status: how === 'r2' ? 'reader-2' : 'reader-1' };
  dirty = true;
  renderBase();
}

// ---- the case form ----------------------------------------------------------------
function setupCaseForm() {
  const sec = $('#caseform');
  sec.hidden = !may(me, 'case.clinical');
  if (sec.hidden) return;
  const has = study && study.case_id;
  $('#cf-none').hidden = !!has;
  $('#cf-form').hidden = !has;
}

function renderCaseFrom() {
  const c = study && study.clinical;
  if (c) $('#cf-from').textContent = t('cf.from', { id: c.id, status: c.status, time: (c.created_at || '').replace('T', ' ').replace(/\.\d+Z$/, 'Z') });
}

// The form shows what was saved last (the newest version this user may
// see: his own, final or imported; GET /api/studies/{study} .clinical);
// a case without one starts from the AI's report.
function prefillCaseForm() {
  const c = study && study.clinical;
  const from = $('#cf-from');
  from.hidden = !c;
  if (c) {
    $('#cf-dx').value = c.diagnosis;
    $('#cf-sev').value = c.severity ?? '';
    $('#cf-outcome').value = c.outcome || '';
    if (c.category) $('#cf-cat').value = c.category;
    $('#cf-comment').value = c.comment || '';
    renderCaseFrom();
    return;
  }
  if (report && !report.error) {
    if (report.ct_severity_score !== null && report.ct_severity_score !== undefined && $('#cf-sev').value === '')
      $('#cf-sev').value = report.ct_severity_score;
    if (report.category) $('#cf-cat').value = report.category;
  }
}

// ---- wiring --------------------------------------------------------------------------
function bind() {
  viewer = new Viewer($('#axial'), $('#coronal'), $('#side'));
  const slider = $('#slice');
  const sliceText = () => {
    const nz = viewer.dims[2];
    $('#slice-text').textContent = nz ? t('st.slice', { k: viewer.k + 1, n: nz }) : '';
    slider.setAttribute('aria-valuetext', $('#slice-text').textContent);
  };
  viewer.on('slice', (k) => { slider.value = k; sliceText(); });
  slider.addEventListener('input', () => viewer.setSlice(Number(slider.value)));
  viewer.on('hover', (x, y, z, hu) => { $('#hu').textContent = t('st.hu', { hu, x, y, z: z + 1 }); });
  viewer.on('edit', () => { dirty = true; renderBase(); });
  const presetButtons = { lung: $('#preset-lung'), mediastinum: $('#preset-med') };
  viewer.on('window', (ww, wl) => {
    $('#ww').value = ww;
    $('#wl').value = wl;
    for (const [k, b] of Object.entries(presetButtons))
      b.setAttribute('aria-pressed', String(PRESETS[k].ww === ww && PRESETS[k].wl === wl));
  });
  presetButtons.lung.addEventListener('click', () => viewer.setWindow(PRESETS.lung.ww, PRESETS.lung.wl));
  presetButtons.mediastinum.addEventListener('click', () => viewer.setWindow(PRESETS.mediastinum.ww, PRESETS.mediastinum.wl));
  const manual = () => viewer.setWindow(Number($('#ww').value), Number($('#wl').value));
  $('#ww').addEventListener('change', manual);
  $('#wl').addEventListener('change', manual);
  $('#zoom-in').addEventListener('click', () => viewer.zoomBy(1.25));
  $('#zoom-out').addEventListener('click', () => viewer.zoomBy(0.8));
  $('#zoom-fit').addEventListener('click', () => viewer.fit());
  $('#pan').addEventListener('click', () => {
    viewer.panTool = !viewer.panTool;
    $('#pan').setAttribute('aria-pressed', String(viewer.panTool));
    $('#axial').classList.toggle('panning', viewer.panTool);
  });
  const ov = { lungs: '#ov-lungs', lobes: '#ov-lobes', ggo: '#ov-ggo', cons: '#ov-cons', r1: '#ov-r1', r2: '#ov-r2' };
  for (const [k, sel] of Object.entries(ov)) {
    viewer.show[k] = $(sel).checked;
    $(sel).addEventListener('change', () => { viewer.show[k] = $(sel).checked; viewer.changed(); });
  }
  $('#opacity').addEventListener('input', () => { viewer.opacity = Number($('#opacity').value) / 100; viewer.render(); });
  viewer.opacity = Number($('#opacity').value) / 100;

  $('#series').addEventListener('change', () => {
    if (dirty && !confirm(t('lb.confirm_discard'))) { $('#series').value = series; return; }
    const u = new URL(location.href);
    u.searchParams.set('series', $('#series').value);
    history.replaceState(null, '', u);
    loadSeries($('#series').value);
  });

  // labelling
  $('#label-mode').addEventListener('change', () => setLabelMode($('#label-mode').checked));
  const reader = $('#reader');
  try { const r = localStorage.getItem(READER_KEY); if (r === 'reader-1' || r === 'reader-2') reader.value = r; } catch (e) { /* */ }
  const readerChanged = () => {
    $('#blind-note').hidden = reader.value !== 'reader-2';
    try { localStorage.setItem(READER_KEY, reader.value); } catch (e) { /* */ }
    renderVersions();
  };
  reader.addEventListener('change', readerChanged);
  readerChanged();
  for (const r of document.querySelectorAll('input[name=tool]')) {
    r.addEventListener('change', () => {
      viewer.tool = r.value;
      $('#fill-opts').hidden = r.value !== 'fill';
      viewer.render();
    });
  }
  for (const r of document.querySelectorAll('input[name=cls]')) r.addEventListener('change', () => { viewer.cls = Number(r.value); });
  $('#radius').addEventListener('input', () => { viewer.radius = Number($('#radius').value); $('#radius-out').textContent = $('#radius').value; viewer.render(); });
  viewer.radius = Number($('#radius').value);
  $('#fill-mode').addEventListener('change', () => { viewer.fillMode = $('#fill-mode').value; });
  $('#hu-min').addEventListener('change', () => { viewer.huMin = Number($('#hu-min').value); });
  $('#hu-max').addEventListener('change', () => { viewer.huMax = Number($('#hu-max').value); });
  $('#undo').addEventListener('click', () => {
    if (!viewer.undoLast()) say($('#label-msg'), t('lb.nothing'), 'info');
    if (!viewer.undo.length) { dirty = false; renderBase(); }
  });
  $('#save').addEventListener('click', () => save(readerChoice()));

  // adjudication
  $('#adj-open').addEventListener('click', openAdjudication);
  $('#adj-from').addEventListener('change', () => startFinalFrom($('#adj-from').value));
  $('#adj-side').addEventListener('change', () => {
    viewer.sideBySide = $('#adj-side').checked;
    $('#side-wrap').hidden = !viewer.sideBySide;
    viewer.resize();
  });
  $('#adj-final').addEventListener('click', () => save('final'));

  // case form
  $('#cf-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const msg = $('#cf-msg');
    const sev = $('#cf-sev').value;
    try {
      const r = await postJSON(`/api/cases/${encodeURIComponent(study.case_id)}/clinical`, {
        diagnosis: $('#cf-dx').value,
        severity: sev === '' ? null : Number(sev),
        outcome: $('#cf-outcome').value.trim() || null,
        category: $('#cf-cat').value,
        comment: $('#cf-comment').value.trim() || null,
        status: readerChoice(),
      });
      say(msg, t('cf.saved', { id: r.id }), 'ok');
    } catch (e) {
      showError(msg, e);
    }
  });

  window.addEventListener('beforeunload', (ev) => { if (dirty) { ev.preventDefault(); ev.returnValue = ''; } });
  document.addEventListener('langchange', () => {
    renderStudyInfo();
    renderReport();
    renderVersions();
    renderBase();
    renderCaseFrom();
    sliceText();
  });
}

async function main() {
  initPage();
  try {
    me = await whoAmI();
  } catch (e) {
    setupHeader(null);
    showError($('#page-msg'), e);
    return;
  }
  if (!me) { location.href = 'index.html'; return; }
  setupHeader(me);
  bind();
  const p = new URLSearchParams(location.search);
  const uid = p.get('study');
  if (!uid) { say($('#page-msg'), t('st.no_study'), 'error'); return; }
  $('#label').hidden = !may(me, 'label.write');
  $('#adjudicate').hidden = !may(me, 'label.adjudicate');
  try {
    study = await getJSON(`/api/studies/${encodeURIComponent(uid)}`);
  } catch (e) {
    showError($('#page-msg'), e);
    return;
  }
  const want = p.get('series');
  const s = want && (study.series || []).some((x) => x.series_uid === want) ? want : pickSeries(study);
  series = s;
  renderStudyInfo();
  setupCaseForm();
  if (!s) { say($('#page-msg'), t('st.no_series'), 'error'); return; }
  await loadSeries(s);
  prefillCaseForm();
}

main();
