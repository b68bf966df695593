// governance.html: research projects with their approval and consent
// counts, the audit log (paged) and its verification, the users.
import { t } from './i18n.js';
import { $, h, getJSON, whoAmI, may, say, showError, setupHeader, initPage } from './common.js';

const LIMIT = 50;
let me = null;
let projects = null;
let entries = [];
let users = null;
let offset = 0;
let verified = null;

function renderProjects() {
  const body = $('#pj-body');
  body.replaceChildren();
  if (!projects) return;
  if (!projects.length) { body.append(h('tr', null, h('td', { colSpan: 5, text: t('gv.no_projects') }))); return; }
  for (const p of projects) {
    const ok = p.approval_in_force;
    body.append(h('tr', null,
      h('td', { text: p.name || '' }), h('td', { text: p.title || '' }), h('td', { text: p.investigator || '' }),
      h('td.num', { text: String(p.patients ?? 0) }),
      h('td', null, h(`span.status.${ok ? 'status-ok' : 'status-bad'}`, {
        text: ok ? t('gv.approved', { scope: p.scope || '' }) : t('gv.not_approved', { why: p.why_not || '' }),
      }))));
  }
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
  document.addEventListener('langchange', () => { renderProjects(); renderAudit(); renderUsers(); renderVerify(); });
  $('#verify').addEventListener('click', verify);
  $('#au-prev').addEventListener('click', () => { offset = Math.max(0, offset - LIMIT); loadAudit(); });
  $('#au-next').addEventListener('click', () => { offset += LIMIT; loadAudit(); });
  if (may(me, 'read.deidentified')) {
    getJSON('/api/projects').then((r) => { projects = r.projects || []; renderProjects(); }, (e) => showError($('#pj-msg'), e));
  } else {
    $('#projects').hidden = true;
  }
  if (may(me, 'audit.read')) loadAudit();
  else { $('#audit').hidden = true; say($('#page-msg'), t('gv.noaccess'), 'info'); }
  if (may(me, 'user.manage')) {
    $('#users').hidden = false;
    getJSON('/api/users').then((r) => { users = r.users || []; renderUsers(); }, (e) => showError($('#us-msg'), e));
  }
}

main();
