// index.html: log in, then the worklist (most severe study first).
import { t, tOr } from './i18n.js';
import {
  $, h, call, getJSON, whoAmI, may, say, showError, setCsrf, setupHeader,
  initPage, fmtDate, fmtPersonName, severityBadge,
} from './common.js';

const LIMIT = 25;
const REFRESH_MS = 30000; // new studies arrive while the list is open
let me = null;
let header = null;
let rows = [];
let loading = false;
const state = { q: '', from: '', to: '', offset: 0 };

// YYYY-MM-DD (date input) <-> YYYYMMDD (DICOM, the API)
const toApi = (d) => (d ? d.replaceAll('-', '') : '');
const fromApi = (d) => (/^\d{8}$/.test(d || '') ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : '');

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.q = p.get('q') || '';
  state.from = p.get('from') || '';
  state.to = p.get('to') || '';
  state.offset = Math.max(0, parseInt(p.get('offset') || '0', 10) || 0);
  $('#wl-q').value = state.q;
  $('#wl-from').value = fromApi(state.from);
  $('#wl-to').value = fromApi(state.to);
}

function writeUrl() {
  const p = new URLSearchParams();
  for (const k of ['q', 'from', 'to']) if (state[k]) p.set(k, state[k]);
  if (state.offset) p.set('offset', state.offset);
  const s = p.toString();
  history.replaceState(null, '', s ? `?${s}` : location.pathname);
}

function showLogin() {
  $('#worklist').hidden = true;
  $('#login').hidden = false;
  $('#login-user').focus();
}

async function showWorklist() {
  $('#login').hidden = true;
  const sec = $('#worklist');
  if (!may(me, 'read.identifiable')) {
    sec.hidden = true;
    const msg = $('#page-msg');
    say(msg, t('wl.noaccess'), 'info');
    if (may(me, 'audit.read') || may(me, 'project.manage'))
      msg.append(' ', h('a', { href: 'governance.html', text: t('wl.to_governance') }));
    return;
  }
  say($('#page-msg'), '');
  sec.hidden = false;
  readUrl();
  await load();
}

async function load({ quiet = false } = {}) {
  if (loading) return;
  loading = true;
  const msg = $('#wl-msg');
  if (!quiet) say(msg, t('common.loading'), 'info');
  $('#wl-table').setAttribute('aria-busy', 'true');
  const p = new URLSearchParams({ limit: LIMIT, offset: state.offset });
  if (state.q) p.set('q', state.q);
  if (state.from) p.set('from', state.from);
  if (state.to) p.set('to', state.to);
  try {
    const r = await getJSON(`/api/worklist?${p}`);
    rows = r.studies || [];
    render();
    say(msg, rows.length ? '' : t('wl.empty'), 'info');
  } catch (e) {
    if (e.status === 401) { me = null; header.update(null); showLogin(); say($('#login-msg'), t('err.login_needed'), 'error'); }
    else showError(msg, e);
  } finally {
    loading = false;
    $('#wl-table').setAttribute('aria-busy', 'false');
  }
}

function aiStatus(s) {
  return h(`span.ai.ai-${String(s || 'waiting').replace(/\W+/g, '-')}`, { text: tOr(`ai.${s}`, s || '') });
}

function render() {
  const body = $('#wl-body');
  body.replaceChildren();
  rows.forEach((s, i) => {
    const href = `study.html?study=${encodeURIComponent(s.study_uid)}`;
    const top = i === 0 && state.offset === 0 && s.severity !== null && s.severity !== undefined;
    const name = h('a.study-link', { href, text: fmtPersonName(s.patient_name) || s.patient_id || s.study_uid });
    const tr = h('tr' + (top ? '.most-severe' : ''), {
      dataset: { study: s.study_uid },
      on: {
        click: (ev) => { if (!ev.target.closest('a')) location.href = href; },
      },
    },
    h('td', null, severityBadge(s.severity), top ? h('span.top-tag', { text: t('wl.top') }) : null),
    h('td', null, s.category ? h(`span.cat.cat-${s.category}`, { text: tOr(`cat.${s.category}`, s.category) }) : t('common.none')),
    h('td', null, name),
    h('td', { text: s.patient_id || '' }),
    h('td', { text: fmtDate(s.study_date) }),
    h('td', { text: s.description || '' }),
    h('td', { text: s.accession || '' }),
    h('td.num', { text: `${s.series ?? 0} / ${s.instances ?? 0}` }),
    h('td', null, aiStatus(s.ai_status)));
    body.append(tr);
  });
  $('#wl-page').textContent = t('common.page', { page: Math.floor(state.offset / LIMIT) + 1 });
  $('#wl-prev').disabled = state.offset === 0;
  $('#wl-next').disabled = rows.length < LIMIT;
}

function bind() {
  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = $('#login-submit');
    const msg = $('#login-msg');
    btn.disabled = true;
    btn.textContent = t('login.busy');
    say(msg, '');
    try {
      const r = await (await call('/api/login', {
        method: 'POST',
        json: { user: $('#login-user').value.trim(), password: $('#login-password').value },
      })).json();
      setCsrf(r.csrf);
      $('#login-password').value = '';
      me = await whoAmI();
      header.update(me);
      await showWorklist();
    } catch (e) {
      // 401 here is the API's "wrong user name or password", not an
      // ended session: show its text as it is
      say(msg, t('common.error', { msg: e.message }), 'error');
      $('#login-password').select();
    } finally {
      btn.disabled = false;
      btn.textContent = t('login.submit');
    }
  });
  $('#wl-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.q = $('#wl-q').value.trim();
    state.from = toApi($('#wl-from').value);
    state.to = toApi($('#wl-to').value);
    state.offset = 0;
    writeUrl();
    load();
  });
  $('#wl-clear').addEventListener('click', () => {
    $('#wl-q').value = '';
    $('#wl-from').value = '';
    $('#wl-to').value = '';
    Object.assign(state, { q: '', from: '', to: '', offset: 0 });
    writeUrl();
    load();
  });
  $('#wl-refresh').addEventListener('click', () => load());
  $('#wl-prev').addEventListener('click', () => { state.offset = Math.max(0, state.offset - LIMIT); writeUrl(); load(); });
  $('#wl-next').addEventListener('click', () => { state.offset += LIMIT; writeUrl(); load(); });
  document.addEventListener('langchange', () => { if (!$('#worklist').hidden) render(); });
  setInterval(() => {
    if (me && !document.hidden && !$('#worklist').hidden) load({ quiet: true });
  }, REFRESH_MS);
}

async function main() {
  initPage();
  bind();
  try {
    me = await whoAmI();
  } catch (e) {
    showError($('#page-msg'), e);
  }
  header = setupHeader(me, {
    onLogout: () => { me = null; header.update(null); rows = []; $('#wl-body').replaceChildren(); showLogin(); },
  });
  if (me) await showWorklist(); else showLogin();
}

main();
