// What every page shares: calling the API (session cookie, X-CSRF-Token,
// the API's own error text), the header (user, role, language, logout)
// and small DOM helpers.
import { t, applyI18n, setLang, getLang, LANGS } from './i18n.js';

export class ApiError extends Error {
  constructor(status, msg) {
    super(msg);
    this.status = status;
  }
}

let csrf = null;
export function setCsrf(c) { csrf = c; }

// The API's {"error": "..."} text, or a generic one.
async function errorOf(res) {
  let msg = '';
  try {
    const body = await res.clone().json();
    if (body && typeof body.error === 'string') msg = body.error;
  } catch (e) { /* not JSON */ }
  if (!msg) msg = t('err.status', { status: `${res.status} ${res.statusText}`.trim() });
  return new ApiError(res.status, msg);
}

// fetch() an API path; answers the Response when ok, else throws ApiError
// with the server's message.  POSTs carry the CSRF token.
export async function call(path, opts = {}) {
  const o = { credentials: 'same-origin', ...opts };
  o.headers = { ...(opts.headers || {}) };
  if (o.method && o.method !== 'GET' && csrf) o.headers['X-CSRF-Token'] = csrf;
  if (o.json !== undefined) {
    o.body = JSON.stringify(o.json);
    o.headers['Content-Type'] = 'application/json';
    delete o.json;
  }
  let res;
  try {
    res = await fetch(path, o);
  } catch (e) {
    throw new ApiError(0, t('err.network', { msg: e.message }));
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function getJSON(path) { return (await call(path)).json(); }
export async function postJSON(path, body) {
  return (await call(path, { method: 'POST', json: body })).json();
}

// The logged-in user ({user, role, csrf, may}) or null when not logged in.
export async function whoAmI() {
  try {
    const me = await getJSON('/api/me');
    if (me.csrf) csrf = me.csrf;
    return me;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export function may(me, perm) { return !!(me && me.may && me.may.includes(perm)); }

// h('tag.class', {attr: value, on: {click: fn}}, children...): a small
// element builder (no innerHTML with data, so no markup injection).
export function h(spec, attrs, ...kids) {
  const [tag, ...cls] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (cls.length) el.className = cls.join(' ');
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const c of kids.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function $(sel, root = document) { return root.querySelector(sel); }

// A message in an element with role=status/alert; kind: info | error | ok.
export function say(el, text, kind = 'info') {
  if (!el) return;
  el.textContent = text || '';
  el.className = `msg msg-${kind}`;
  el.hidden = !text;
}

export function showError(el, e) {
  if (e && e.status === 401 && el) {
    say(el, t('err.login_needed'), 'error');
    el.append(' ', h('a', { href: 'index.html', text: t('login.submit') }));
    return;
  }
  say(el, t('common.error', { msg: e && e.message ? e.message : String(e) }), 'error');
}

export function fmtDate(d) {
  if (!d) return t('common.none');
  const s = String(d);
  return /^\d{8}$/.test(s) ? `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6)}` : s;
}

// A DICOM person name (PS3.5 6.2, VR PN) as a person reads it.  The value
// has up to three component groups separated by '=' (alphabetic,
// ideographic, phonetic), each of up to five components separated by '^':
// family name, given name, middle name, prefix, suffix.  Shown as
// "Prefix Family, Given Middle, Suffix" (family name first, as a list
// sorted by it reads: "SYNTHETIC^PHANTOM" is "SYNTHETIC, PHANTOM"), and
// the ideographic group, when there is one, after it in parentheses,
// written without spaces as Chinese names are ("Wang^XiaoDong=王^小东=" is
// "Wang, XiaoDong (王小东)").  The phonetic group is not shown.
export function fmtPersonName(pn) {
  if (pn === null || pn === undefined) return '';
  const groups = String(pn).split('=');
  const parts = (g) => (g || '').split('^').map((x) => x.trim());
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = parts(groups[0]);
  let s = [prefix, family].filter(Boolean).join(' ');
  for (const more of [[given, middle].filter(Boolean).join(' '), suffix])
    if (more) s = s ? `${s}, ${more}` : more;
  const ideo = parts(groups[1]).slice(0, 3).join('');
  if (ideo) s = s ? `${s} (${ideo})` : ideo;
  return s;
}

export function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return t('common.none');
  return Number(v).toLocaleString(getLang() === 'zh' ? 'zh-CN' : 'en', {
    maximumFractionDigits: digits,
  });
}

// The severity badge: 0-25 coloured from green to dark red.
export function severityClass(s) {
  if (s === null || s === undefined) return 'sev-none';
  if (s === 0) return 'sev-0';
  if (s <= 7) return 'sev-1';
  if (s <= 14) return 'sev-2';
  if (s <= 19) return 'sev-3';
  return 'sev-4';
}
export function severityBadge(s) {
  const none = s === null || s === undefined;
  return h(`span.badge.${severityClass(s)}`, {
    text: none ? t('sev.none') : String(s),
    title: none ? t('sev.none') : t('sev.label', { s }),
    'aria-label': none ? t('sev.none') : t('sev.label', { s }),
  });
}

// The header: language switch, user and role, logout, navigation links
// the role may use.  onLogout: what the page does afterwards.
export function setupHeader(me, { onLogout } = {}) {
  const sel = $('#lang');
  if (sel && !sel.options.length) {
    for (const [code, name] of Object.entries(LANGS)) sel.append(h('option', { value: code, text: name }));
    sel.value = getLang();
    sel.addEventListener('change', () => setLang(sel.value));
  }
  const who = $('#who');
  const out = $('#logout');
  const navGov = $('#nav-governance');
  const navWl = $('#nav-worklist');
  const render = () => {
    if (who) {
      who.textContent = me ? t('user.as', { user: me.user, role: t(`role.${me.role}`) }) : '';
      who.hidden = !me;
    }
    if (out) out.hidden = !me;
    if (navGov) navGov.hidden = !(may(me, 'audit.read') || may(me, 'project.manage'));
    if (navWl) navWl.hidden = !may(me, 'read.identifiable');
  };
  render();
  document.addEventListener('langchange', render);
  if (out && !out.dataset.bound) {
    out.dataset.bound = '1';
    out.addEventListener('click', async () => {
      try { await call('/api/logout', { method: 'POST' }); } catch (e) { /* gone anyway */ }
      csrf = null;
      if (onLogout) onLogout(); else location.href = 'index.html';
    });
  }
  return { update(m) { me = m; render(); } };
}

export function initPage() { applyI18n(); }
