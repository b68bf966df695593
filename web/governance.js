// governance.html: research projects with their approval and consent
// counts, the audit log (paged) and its verification, the users.
import { t } from './i18n.js';
import { $, h, getJSON, postJSON, whoAmI, may, say, showError, setupHeader, initPage } from './common.js';

const LIMIT = 50;
let me = null;
let projects = null;
let entries = [];
let users = null;
let offset = 0;
let verified = null;
let exportsList = null;

// Forms for projects, approvals and consent (shown by permission).
function fillProjectSelects() {
  for (const sel of document.querySelectorAll('#pj-manage select[name=project]')) {
    const cur = sel.value;
    sel.replaceChildren(...(projects || []).map((p) => h('option', { value: p.name, text: p.name })));
    if (cur) sel.value = cur;
  }
}

function formJSON(form) {
  const o = {};
  for (const [k, v] of new FormData(form).entries()) o[k] = v;
  return o;
}

async function submitForm(ev, path) {
  ev.preventDefault();
  const form = ev.target;
  const body = formJSON(form);
  const msg = $('#pm-msg');
  try {
    await postJSON(path(body), body);
    say(msg, t('gv.pm.saved'), 'ok');
    await loadProjects();
    if (body.project) showProject(body.project);
  } catch (e) {
    showError(msg, e);
  }
}

async function showProject(name) {
  try {
    const p = await getJSON(`/api/projects/${encodeURIComponent(name)}`);
    const c = p.consent || {};
    const approvals = (p.approvals || []).map((a) => `${a.number} (${a.granted_on} – ${a.expires_on}${a.revoked_at ? ', revoked' : ''})`).join('; ') || '—';
    const agreements = (p.agreements || []).map((a) => `${a.party} (${a.signed_on} – ${a.expires_on || '…'})`).join('; ') || '—';
    $('#pm-detail').replaceChildren(h('p', { text: t('gv.pm.detail', {
      name, given: c.given || 0, waived: c.waived || 0, withdrawn: c.withdrawn || 0, none: c.none || 0, approvals, agreements,
    }) }));
  } catch (e) {
    showError($('#pm-msg'), e);
  }
}

async function loadProjects() {
  try {
    projects = (await getJSON('/api/projects')).projects || [];
    renderProjects();
    fillProjectSelects();
  } catch (e) {
    showError($('#pj-msg'), e);
  }
}

function renderProjects() {
  const body = $('#pj-body');
  body.replaceChildren();
  if (!projects) return;
  if (!projects.length) { body.append(h('tr', null, h('td', { colSpan: 6, text: t('gv.no_projects') }))); return; }
  for (const p of projects) {
    const ok = p.approval_in_force;
    body.append(h('tr', null,
      h('td', null, h('a', { href: '#pj-manage', text: p.name || '', on: { click: () => { $('#pj-manage').hidden = false; showProject(p.name); } } })), h('td', { text: p.title || '' }), h('td', { text: p.investigator || '' }),
      h('td.num', { text: String(p.patients ?? 0) }),
      h('td', null, h(`span.status.${ok ? 'status-ok' : 'status-bad'}`, {
        text: ok ? t('gv.approved', { scope: p.scope || '' }) : t('gv.not_approved', { why: p.why_not || '' }),
      })),
      h('td', null, may(me, 'export.request')
        ? h('button.btn', { type: 'button', text: t('gv.ex.request'), on: { click: () => requestExport(p.name) } })
        : '')));
  }
}

// Export requests: a researcher asks, site IT (or an administrator) runs
// it on the server; the approval, its scope and consent are enforced there.
function renderExports() {
  const body = $('#ex-body');
  body.replaceChildren();
  if (!exportsList) return;
  if (!exportsList.length) { body.append(h('tr', null, h('td', { colSpan: 7, text: t('gv.ex.none') }))); return; }
  for (const e of exportsList) {
    const canRun = e.status === 'requested' && may(me, 'export.run');
    body.append(h('tr', null,
      h('td.num', { text: String(e.id) }), h('td', { text: e.project || '' }),
      h('td', { text: e.requested_by || '' }), h('td', { text: e.requested_at || '' }),
      h('td', { text: e.status || '' }), h('td.num', { text: e.patients == null ? '' : String(e.patients) }),
      h('td', null, canRun ? h('button.btn', { type: 'button', text: t('gv.ex.run'), on: { click: () => runExport(e.id) } }) : '')));
  }
}

async function loadExports() {
  try {
    exportsList = (await getJSON('/api/exports')).exports || [];
    renderExports();
  } catch (e) {
    showError($('#ex-msg'), e);
  }
}

async function requestExport(name) {
  try {
    const r = await postJSON(`/api/projects/${encodeURIComponent(name)}/exports`, {});
    say($('#ex-msg'), t('gv.ex.requested', { id: r.id }), 'ok');
    loadExports();
  } catch (e) {
    showError($('#ex-msg'), e);
  }
}

async function runExport(id) {
  say($('#ex-msg'), t('common.loading'), 'info');
  try {
    const r = await postJSON(`/api/exports/${id}/run`, {});
    say($('#ex-msg'), t('gv.ex.done', { folder: r.folder, patients: r.patients, files: r.files }), 'ok');
  } catch (e) {
    showError($('#ex-msg'), e);
  }
  loadExports();
}

function renderAudit() {
  const body = $('#au-body');
  body.replaceChildren();
  for (const e of entries) {
    const bad = verified && !verified.intact && verified.first_bad === e.seq;
    body.append(h('tr' + (bad ? '.bad' : ''), { dataset: { seq: e.seq } },
      h('td.num', { text: String(e.seq) }), h('td', { text: e.at || '' }), h('td', { text: e.actor || '' }),
      h('td', { text: e.role || '' }), h('td', null, h('code', { text: e.action || '' })),
      h('td.wrap', { text: e.object || '' }), h('td.wrap.detail', { text: e.detail || '' })));
  }
  $('#au-page').textContent = t('common.page', { page: Math.floor(offset / LIMIT) + 1 });
  $('#au-prev').disabled = offset === 0;
  $('#au-next').disabled = entries.length < LIMIT;
}

function renderUsers() {
  const body = $('#us-body');
  body.replaceChildren();
  for (const u of users || []) {
    body.append(h('tr', null, h('td', { text: u.name }), h('td', { text: t(`role.${u.role}`) }),
      h('td', { text: u.disabled ? t('common.yes') : t('common.no') }), h('td', { text: u.created_at || '' })));
  }
}

function renderVerify() {
  const el = $('#verify-msg');
  if (!verified) return;
  if (verified.intact) say(el, t('gv.intact', { n: verified.entries }), 'ok');
  else say(el, t('gv.broken', { seq: verified.first_bad, problem: verified.problem || '' }), 'error');
}

async function loadAudit() {
  const msg = $('#au-msg');
  say(msg, t('common.loading'), 'info');
  try {
    entries = (await getJSON(`/api/audit?limit=${LIMIT}&offset=${offset}`)).entries || [];
    say(msg, '');
  } catch (e) {
    entries = [];
    showError(msg, e);
  }
  renderAudit();
}

async function verify() {
  const btn = $('#verify');
  btn.disabled = true;
  say($('#verify-msg'), t('gv.verifying'), 'info');
  try {
    verified = await getJSON('/api/audit/verify');
    renderVerify();
    renderAudit();
  } catch (e) {
    showError($('#verify-msg'), e);
  } finally {
    btn.disabled = false;
  }
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
  document.addEventListener('langchange', () => { renderProjects(); renderExports(); renderAudit(); renderUsers(); renderVerify(); });
  $('#verify').addEventListener('click', verify);
  $('#au-prev').addEventListener('click', () => { offset = Math.max(0, offset - LIMIT); loadAudit(); });
  $('#au-next').addEventListener('click', () => { offset += LIMIT; loadAudit(); });
  if (may(me, 'read.deidentified')) {
    loadExports();
    loadProjects();
    const forms = [['#pm-create', 'project.manage', () => '/api/projects'],
      ['#pm-approve', 'approval.record', (b) => `/api/projects/${encodeURIComponent(b.project)}/approvals`],
      ['#pm-agreement', 'approval.record', (b) => `/api/projects/${encodeURIComponent(b.project)}/agreements`],
      ['#pm-consent', 'consent.record', (b) => `/api/projects/${encodeURIComponent(b.project)}/consents`]];
    for (const [sel, perm, path] of forms) {
      if (!may(me, perm)) continue;
      $('#pj-manage').hidden = false;
      $(sel).hidden = false;
      $(sel).addEventListener('submit', (ev) => submitForm(ev, path));
    }
  } else {
    $('#projects').hidden = true;
    $('#exports').hidden = true;
  }
  if (may(me, 'audit.read')) loadAudit();
  else { $('#audit').hidden = true; say($('#page-msg'), t('gv.noaccess'), 'info'); }
  if (may(me, 'user.manage')) {
    $('#users').hidden = false;
    getJSON('/api/users').then((r) => { users = r.users || []; renderUsers(); }, (e) => showError($('#us-msg'), e));
  }
}

main();
