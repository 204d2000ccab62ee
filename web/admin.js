// admin.js - the admin page (/admin): users, API keys, tenants, live sessions, backends, usage and
// the audit log, over /api/v1/admin/... (src/server/lv_admin_api.c). Every request that changes
// something is a POST carrying X-CSRF-Token (GET /api/v1/me gives it to a cookie sign-in); the
// server checks the role on every route, so this page only decides what to show.

import { $, h, copyText, fmtInt, pulse } from './util.js';
import { hydrateIcons } from './icons.js';

const SESSIONS_EVERY_MS = 2000;
const AUDIT_ROWS = 100;
const API = '/api/v1/admin';

const state = {
  me: null,
  csrf: '',
  tenants: [],
  users: [],
  editing: null, // the user being edited
  sessionsTimer: null,
  sessionsBusy: false,
};

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** fetch JSON; a POST carries the CSRF token. Throws HttpError with the server's sentence. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (state.csrf) headers['X-CSRF-Token'] = state.csrf;
  }
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? (method === 'GET' ? undefined : '{}') : JSON.stringify(body),
    });
  } catch {
    throw new HttpError(0, 'offline', 'The server cannot be reached.');
  }
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (!res.ok) {
    const e = data && data.error ? data.error : {};
    throw new HttpError(res.status, e.code || 'error', e.message || `The server answered ${res.status}.`);
  }
  return data || {};
}

// ---- small helpers -----------------------------------------------------------------------------

function setStatus(kind, text) {
  $('adminStatus').dataset.state = kind;
  $('adminStatusText').textContent = text;
}

let toastTimer = null;
function toast(text, kind = 'ok') {
  const t = $('adminToast');
  t.textContent = text;
  t.dataset.kind = kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, kind === 'error' ? 12000 : 6000);
}

function fieldMsg(id, text, kind = 'error') {
  const el = $(id);
  el.textContent = text || '';
  if (text) el.dataset.kind = kind; else delete el.dataset.kind;
}

function showMessage(text, linkText = 'Back to livevlm', href = '/') {
  $('adminMessageText').textContent = text;
  const a = $('adminMessageLink');
  a.textContent = linkText;
  a.href = href;
  $('adminMessage').hidden = false;
  $('adminSections').hidden = true;
  $('adminNav').hidden = true;
}

function fmtDate(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? '—' : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

function fmtAge(s) {
  if (!Number.isFinite(s)) return '—';
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d`;
}

function quotaText(q) {
  if (!q) return '—';
  const parts = [];
  if (q.fpm) parts.push(`${fmtInt(q.fpm)} fpm`);
  if (q.answers_day) parts.push(`${fmtInt(q.answers_day)} answers/day`);
  if (q.tokens_day) parts.push(`${fmtInt(q.tokens_day)} tokens/day`);
  if (q.sessions) parts.push(`${fmtInt(q.sessions)} sessions`);
  return parts.length ? parts.join(', ') : 'no limit';
}

/** A table cell that says what it holds (the phone layout shows the label before the value). */
function td(label, content, cls) {
  const cell = h('td', { class: cls, dataset: { label } });
  if (content instanceof Node) cell.append(content); else cell.textContent = content ?? '';
  return cell;
}

function fillTable(id, rows, empty) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length) {
    const cols = $(id).tHead.rows[0].cells.length;
    body.append(h('tr', { class: 'empty-row' }, h('td', { colSpan: cols, text: empty })));
  }
}

/** A button that runs an action, disabled while it runs, with the result said in the toast. */
function actionButton(label, aria, run, { danger = false } = {}) {
  const b = h('button', { class: `btn btn-sm${danger ? ' btn-danger' : ''}`, type: 'button', text: label, 'aria-label': aria });
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await run();
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

function numberOf(id) {
  const v = $(id).value.trim();
  if (v === '') return 0;
  const n = Number(v);
  return Number.isInteger(n) ? n : NaN;
}

// ---- users -------------------------------------------------------------------------------------

function tenantOptions(select, current) {
  const ids = state.tenants.map((t) => t.id);
  if (current && !ids.includes(current)) ids.push(current);
  select.replaceChildren(...ids.map((id) => {
    const t = state.tenants.find((x) => x.id === id);
    return h('option', { value: id, text: t && t.name && t.name !== id ? `${id} (${t.name})` : id });
  }));
  if (current) select.value = current;
}

async function loadUsers() {
  const data = await api(`${API}/users`);
  state.users = data.users || [];
  $('usersCount').textContent = String(state.users.length);
  fillTable('usersTable', state.users.map((u) => {
    const stateText = u.disabled ? 'disabled' : u.has_password ? 'active' : u.sso ? 'single sign-on' : 'invited';
    const actions = h('div', { class: 'row-actions' },
      actionButton('Edit', `Edit ${u.name}`, async () => openUser(u)),
      actionButton('Delete', `Delete ${u.name}`, async () => {
        if (!window.confirm(`Delete the user ${u.name}? Their keys and sign-ins go with them.`)) return;
        await api(`${API}/users/${encodeURIComponent(u.id)}/delete`, { method: 'POST' });
        toast(`User ${u.name} deleted.`);
        await Promise.all([loadUsers(), loadKeys(), loadTenants(), loadAudit()]);
      }, { danger: true }));
    return h('tr', { dataset: { user: u.name } },
      td('Name', h('span', { class: 'mono', text: u.name })), td('Role', u.role), td('Tenant', u.tenant),
      td('State', h('span', { class: 'pill', dataset: { state: stateText.replace(/ /g, '-') }, text: stateText })),
      td('Quota', quotaText(u.quota)), td('Actions', actions, 'actions'));
  }), 'No users yet.');
}

function syncAddHow() {
  const pw = document.querySelector('input[name="userAddHow"]:checked')?.value === 'password';
  $('userAddPwField').hidden = !pw;
}

async function addUser(ev) {
  ev.preventDefault();
  fieldMsg('userAddMsg', '');
  const name = $('userAddName').value.trim();
  const how = document.querySelector('input[name="userAddHow"]:checked')?.value;
  const body = { name, role: $('userAddRole').value, tenant: $('userAddTenant').value };
  if (!name) return fieldMsg('userAddMsg', 'Give a login name.');
  if (how === 'password') body.password = $('userAddPassword').value;
  else body.invite = true;
  try {
    const data = await api(`${API}/users`, { method: 'POST', body });
    $('userAddForm').reset();
    syncAddHow();
    if (state.tenants.length) $('userAddTenant').value = state.tenants[0].id;
    if (data.invite_link) showInvite(data.user.name, data.invite_link);
    else $('inviteBox').hidden = true;
    toast(`User ${data.user.name} added.`);
    await Promise.all([loadUsers(), loadTenants(), loadAudit()]);
  } catch (e) {
    fieldMsg('userAddMsg', e.message);
  }
}

function showInvite(name, path) {
  $('inviteUser').textContent = name;
  $('inviteLink').value = new URL(path, location.origin).href;
  $('inviteBox').hidden = false;
  $('inviteLink').focus();
  $('inviteLink').select();
}

function openUser(u) {
  state.editing = u;
  $('userDialogTitle').textContent = `Edit ${u.name}`;
  $('userEditRole').value = u.role;
  tenantOptions($('userEditTenant'), u.tenant);
  $('userEditWeight').value = u.weight || 1;
  $('userEditDisabled').checked = !!u.disabled;
  $('userEditFpm').value = u.quota?.fpm ?? 0;
  $('userEditAnswers').value = u.quota?.answers_day ?? 0;
  $('userEditTokens').value = u.quota?.tokens_day ?? 0;
  $('userEditSessions').value = u.quota?.sessions ?? 0;
  fieldMsg('userEditMsg', '');
  $('userDialog').showModal();
}

async function saveUser(ev) {
  ev.preventDefault();
  const u = state.editing;
  if (!u) return;
  const quota = {
    fpm: numberOf('userEditFpm'), answers_day: numberOf('userEditAnswers'),
    tokens_day: numberOf('userEditTokens'), sessions: numberOf('userEditSessions'),
  };
  const weight = numberOf('userEditWeight');
  if ([...Object.values(quota), weight].some((n) => !Number.isInteger(n) || n < 0)) {
    return fieldMsg('userEditMsg', 'Weight and quotas are whole numbers (quotas 0 = no limit).');
  }
  const body = { role: $('userEditRole').value, tenant: $('userEditTenant').value, weight, quota,
    disabled: $('userEditDisabled').checked };
  try {
    await api(`${API}/users/${encodeURIComponent(u.id)}`, { method: 'POST', body });
    $('userDialog').close();
    toast(`User ${u.name} saved.`);
    await Promise.all([loadUsers(), loadTenants(), loadAudit()]);
  } catch (e) {
    fieldMsg('userEditMsg', e.message);
  }
}

async function newInvite() {
  const u = state.editing;
  if (!u) return;
  try {
    const data = await api(`${API}/users/${encodeURIComponent(u.id)}`, { method: 'POST', body: { invite: true } });
    $('userDialog').close();
    if (data.invite_link) showInvite(u.name, data.invite_link);
    toast(`A new invite link for ${u.name} is shown under Users.`);
    await Promise.all([loadUsers(), loadAudit()]);
  } catch (e) {
    fieldMsg('userEditMsg', e.message);
  }
}

// ---- API keys ----------------------------------------------------------------------------------

async function loadKeys() {
  const data = await api(`${API}/keys`);
  const keys = data.keys || [];
  $('keysCount').textContent = String(keys.filter((k) => !k.revoked).length);
  const now = Date.now();
  fillTable('keysTable', keys.map((k) => {
    const expired = k.expires_ms && k.expires_ms <= now;
    const st = k.revoked ? 'revoked' : expired ? 'expired' : 'active';
    const label = `${k.prefix}…${k.name ? ` (${k.name})` : ''}`;
    return h('tr', {},
      td('Key', h('span', { class: 'mono', text: label })), td('User', k.user || k.user_id),
      td('Scope', (k.scope || []).join(', ')), td('Expires', k.expires_ms ? fmtDate(k.expires_ms) : 'never'),
      td('Last used', fmtDate(k.last_used_ms)),
      td('State', h('span', { class: 'pill', dataset: { state: st }, text: st })),
      td('Actions', k.revoked ? '' : h('div', { class: 'row-actions' }, actionButton('Revoke', `Revoke key ${k.prefix}`, async () => {
        if (!window.confirm(`Revoke the key ${k.prefix}… of ${k.user || k.user_id}? Programs using it stop at once.`)) return;
        await api(`${API}/keys/${encodeURIComponent(k.id)}/revoke`, { method: 'POST' });
        toast(`Key ${k.prefix}… revoked.`);
        await Promise.all([loadKeys(), loadAudit()]);
      }, { danger: true })), 'actions'));
  }), 'No API keys.');
}

// ---- tenants -----------------------------------------------------------------------------------

async function loadTenants() {
  const data = await api(`${API}/tenants`);
  state.tenants = data.tenants || [];
  $('tenantsCount').textContent = String(state.tenants.length);
  const keep = $('userAddTenant').value;
  tenantOptions($('userAddTenant'), keep || (state.tenants[0] && state.tenants[0].id));
  fillTable('tenantsTable', state.tenants.map((t) => h('tr', { dataset: { tenant: t.id } },
    td('Tenant', h('span', {}, h('span', { class: 'mono', text: t.id }), t.name && t.name !== t.id ? ` ${t.name}` : '')),
    td('Weight', String(t.weight)), td('Backends', t.backends || 'all'), td('Models', t.models || 'all'),
    td('Quota', quotaText(t.quota)), td('Users', String(t.users ?? 0)),
    td('Actions', h('div', { class: 'row-actions' },
      actionButton('Edit', `Edit tenant ${t.id}`, async () => editTenant(t)),
      actionButton('Delete', `Delete tenant ${t.id}`, async () => {
        if (!window.confirm(`Delete the tenant ${t.id}?`)) return;
        await api(`${API}/tenants/${encodeURIComponent(t.id)}/delete`, { method: 'POST' });
        toast(`Tenant ${t.id} deleted.`);
        await Promise.all([loadTenants(), loadAudit()]);
      }, { danger: true })), 'actions'))), 'No tenants.');
}

function editTenant(t) {
  $('tenantId').value = t.id;
  $('tenantName').value = t.name || '';
  $('tenantWeight').value = t.weight || 1;
  $('tenantBackends').value = t.backends || '';
  $('tenantModels').value = t.models || '';
  $('tenantFpm').value = t.quota?.fpm ?? 0;
  $('tenantAnswers').value = t.quota?.answers_day ?? 0;
  $('tenantTokens').value = t.quota?.tokens_day ?? 0;
  $('tenantSessions').value = t.quota?.sessions ?? 0;
  fieldMsg('tenantMsg', `Editing ${t.id}: save to apply.`, 'info');
  $('tenantForm').scrollIntoView({ block: 'nearest' });
  $('tenantName').focus();
}

async function saveTenant(ev) {
  ev.preventDefault();
  fieldMsg('tenantMsg', '');
  const quota = { fpm: numberOf('tenantFpm'), answers_day: numberOf('tenantAnswers'),
    tokens_day: numberOf('tenantTokens'), sessions: numberOf('tenantSessions') };
  const weight = numberOf('tenantWeight');
  if ([...Object.values(quota), weight].some((n) => !Number.isInteger(n) || n < 0)) {
    return fieldMsg('tenantMsg', 'Weight and quotas are whole numbers (quotas 0 = no limit).');
  }
  const body = { id: $('tenantId').value.trim(), weight, backends: $('tenantBackends').value,
    models: $('tenantModels').value, quota };
  const name = $('tenantName').value.trim();
  if (name) body.name = name;
  if (!body.id) return fieldMsg('tenantMsg', 'Give the tenant an id.');
  try {
    const data = await api(`${API}/tenants`, { method: 'POST', body });
    $('tenantForm').reset();
    toast(`Tenant ${data.tenant.id} saved.`);
    await Promise.all([loadTenants(), loadAudit()]);
  } catch (e) {
    fieldMsg('tenantMsg', e.message);
  }
}

// ---- live sessions -----------------------------------------------------------------------------

async function loadSessions() {
  if (state.sessionsBusy) return;
  state.sessionsBusy = true;
  try {
    const data = await api(`${API}/sessions`);
    const list = data.sessions || [];
    $('sessionsCount').textContent = String(list.length);
    $('sessionsNote').textContent = `Refreshed every 2 seconds${data.this_node_only ? '; this server’s sessions only (each frontend of a cluster lists its own)' : ''}.`;
    fillTable('sessionsTable', list.map((s) => {
      const st = s.connected ? (s.started ? 'streaming' : 'connected') : `detached ${fmtAge(s.detached_s)}`;
      return h('tr', { dataset: { session: s.id } },
        td('Who', h('span', { class: 'mono', text: s.user || s.principal, title: s.id })), td('Tenant', s.tenant),
        td('Model', `${s.model || 'automatic'}${s.backend ? ` @ ${s.backend}` : ''}`),
        td('Frames', fmtInt(s.frames)), td('Answers', fmtInt(s.answers)),
        td('State', h('span', { class: 'pill', dataset: { state: s.connected ? 'active' : 'detached' }, text: st })),
        td('Age', fmtAge(s.age_s)),
        td('Actions', h('div', { class: 'row-actions' }, actionButton('Kick', `End the session of ${s.user || s.principal}`, async () => {
          if (!window.confirm(`End this session of ${s.user || s.principal}? Their page is told an administrator ended it.`)) return;
          await api(`${API}/sessions/${encodeURIComponent(s.id)}/kick`, { method: 'POST' });
          toast('Session ended.');
          await Promise.all([loadSessions(), loadAudit()]);
        }, { danger: true })), 'actions'));
    }), 'No live sessions.');
    setStatus('connected', 'Up to date');
  } catch (e) {
    setStatus(e.status === 0 ? 'reconnecting' : 'error', e.status === 0 ? 'Server unreachable' : e.message);
    if (e.status === 401 || e.status === 403) stopPolling();
  } finally {
    state.sessionsBusy = false;
  }
}

function startPolling() {
  stopPolling();
  state.sessionsTimer = setInterval(() => { if (!document.hidden) loadSessions(); }, SESSIONS_EVERY_MS);
}

function stopPolling() {
  clearInterval(state.sessionsTimer);
  state.sessionsTimer = null;
}

// ---- backends ----------------------------------------------------------------------------------

async function loadBackends() {
  const data = await api(`${API}/backends`);
  const list = data.backends || [];
  $('backendsCount').textContent = String(list.length);
  fillTable('backendsTable', list.map((b) => {
    const health = b.draining ? 'draining' : b.healthy ? 'healthy' : 'down';
    const act = b.draining
      ? actionButton('Enable', `Enable backend ${b.id}`, () => setBackend(b.id, 'enable'))
      : actionButton('Drain', `Drain backend ${b.id}`, () => setBackend(b.id, 'drain'), { danger: true });
    return h('tr', { dataset: { backend: b.id } },
      td('Backend', h('span', {}, h('span', { class: 'mono', text: b.id }), h('span', { class: 'muted small url', text: ` ${b.url}` }))),
      td('Health', h('span', { class: 'pill', dataset: { state: health === 'healthy' ? 'active' : health }, text: health, title: b.error || '' })),
      td('In flight / window', `${b.inflight} / ${b.window}`),
      td('Models', (b.models || []).join(', ') || '—'),
      td('Actions', data.cluster ? 'workers only' : h('div', { class: 'row-actions' }, act), 'actions'));
  }), data.cluster ? 'In a cluster the workers call the backends.' : 'No backends.');
}

async function setBackend(id, what) {
  await api(`${API}/backends/${encodeURIComponent(id)}/${what}`, { method: 'POST' });
  toast(what === 'drain' ? `Backend ${id} drained: it finishes what it has and takes nothing new.` : `Backend ${id} takes requests again.`);
  await Promise.all([loadBackends(), loadAudit()]);
}

// ---- usage chart (plain SVG) -------------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
const PALETTE = ['--c-gpu', '--c-cpu', '--c-ram', '--c-vram', '--c-prompt', '--c-model', '--info', '--warn'];

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawUsage(data) {
  const days = data.days || [];
  const tenants = data.tenants || [];
  const W = 640; const H = 240; const L = 44; const B = 26; const T = 10; const R = 8;
  const totals = days.map((_, d) => tenants.reduce((s, t) => s + (t.answers[d] || 0), 0));
  const max = Math.max(1, ...totals);
  const step = (W - L - R) / Math.max(1, days.length);
  const bar = Math.max(2, step * 0.7);
  const total = totals.reduce((a, b) => a + b, 0);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'usage-svg', role: 'img',
    'aria-label': `Answers per day over ${days.length} days: ${total} in all${tenants.length ? `, ${tenants.length} tenant${tenants.length === 1 ? '' : 's'}` : ''}.` });
  const y = (v) => H - B - (v / max) * (H - B - T);
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    chart.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    chart.append(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, String(v)));
  }
  const every = Math.ceil(days.length / 7);
  days.forEach((day, d) => {
    let acc = 0;
    const x = L + d * step + (step - bar) / 2;
    tenants.forEach((t, i) => {
      const v = t.answers[d] || 0;
      if (!v) return;
      const r = svg('rect', { x, y: y(acc + v), width: bar, height: Math.max(1, y(acc) - y(acc + v)), class: 'bar' });
      r.style.fill = `var(${PALETTE[i % PALETTE.length]})`;
      r.append(svg('title', {}, `${day} ${t.id}: ${v} answers, ${t.tokens[d] || 0} tokens`));
      chart.append(r);
      acc += v;
    });
    if (d % every === 0 || d === days.length - 1) {
      chart.append(svg('text', { x: x + bar / 2, y: H - 8, 'text-anchor': 'middle', class: 'axis' }, day.slice(5)));
    }
  });
  $('usageChart').replaceChildren(chart);
  $('usageLegend').replaceChildren(...tenants.map((t, i) => {
    const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    sw.style.background = `var(${PALETTE[i % PALETTE.length]})`;
    const a = t.answers.reduce((s, v) => s + v, 0);
    const k = t.tokens.reduce((s, v) => s + v, 0);
    return h('li', {}, sw, h('span', { class: 'mono', text: t.id }), h('span', { class: 'muted', text: ` ${fmtInt(a)} answers, ${fmtInt(k)} tokens` }));
  }));
  $('usageCaption').textContent = `Answers per day (UTC), stacked by tenant${data.partial ? ' (partial: too many answers to count them all here; use the export)' : ''}.`;
}

async function loadUsage() {
  const days = $('usageDays').value;
  try {
    drawUsage(await api(`${API}/usage/summary?days=${encodeURIComponent(days)}`));
  } catch (e) {
    $('usageChart').replaceChildren(h('p', { class: 'muted', text: e.message }));
  }
}

// ---- audit -------------------------------------------------------------------------------------

async function loadAudit() {
  const data = await api(`${API}/audit?limit=${AUDIT_ROWS}`);
  fillTable('auditTable', (data.audit || []).map((a) => h('tr', {},
    td('When', fmtDate(a.t_ms)), td('Who', `${a.actor}${a.ip ? ` (${a.ip})` : ''}`),
    td('Action', h('span', { class: 'mono', text: a.action })), td('Target', a.target), td('Detail', a.detail, 'detail'))),
  'Nothing recorded yet.');
}

// ---- start -------------------------------------------------------------------------------------

async function start() {
  hydrateIcons();
  let me;
  try {
    const res = await fetch('/api/v1/me', { credentials: 'same-origin', cache: 'no-store' });
    me = await res.json().catch(() => ({}));
    if (res.status === 401 || me.signed_in === false) {
      setStatus('error', 'Signed out');
      const auth = me && me.auth_mode;
      showMessage('Sign in as an administrator to see this page.', 'Sign in',
        auth === 'token' ? '/' : '/login?next=%2Fadmin');
      return;
    }
    if (!res.ok) throw new Error(me?.error?.message || `The server answered ${res.status}.`);
  } catch (e) {
    setStatus('error', 'Server unreachable');
    showMessage(`The server could not be asked who you are: ${e.message}`, 'Try again', '/admin');
    return;
  }
  state.me = me;
  state.csrf = typeof me.csrf === 'string' ? me.csrf : '';
  const role = me.role || me.user?.role;
  if (role !== 'admin') {
    setStatus('error', 'Not an administrator');
    const who = me.user && me.user.name ? `You are signed in as ${me.user.name} (role ${role || 'unknown'}). ` : '';
    showMessage(`${who}This page is for administrators only.`);
    return;
  }
  $('adminSections').hidden = false;
  $('adminNav').hidden = false;
  document.body.dataset.view = 'admin';
  setStatus('connecting', 'Loading…');

  $('userAddForm').addEventListener('submit', addUser);
  for (const r of document.querySelectorAll('input[name="userAddHow"]')) r.addEventListener('change', syncAddHow);
  $('inviteCopy').addEventListener('click', async () => {
    const ok = await copyText($('inviteLink').value);
    $('inviteCopy').dataset.copied = ok ? 'true' : 'failed';
    pulse($('inviteCopy'), 'copied', 1200);
    toast(ok ? 'Invite link copied.' : 'Copy failed: select the link and copy it by hand.', ok ? 'ok' : 'error');
    setTimeout(() => { delete $('inviteCopy').dataset.copied; }, 1500);
  });
  $('userEditForm').addEventListener('submit', saveUser);
  $('userEditInvite').addEventListener('click', newInvite);
  $('userDialogClose').addEventListener('click', () => $('userDialog').close());
  $('tenantForm').addEventListener('submit', saveTenant);
  $('tenantClear').addEventListener('click', () => { $('tenantForm').reset(); fieldMsg('tenantMsg', ''); });
  $('usageDays').addEventListener('change', loadUsage);
  $('auditRefresh').addEventListener('click', () => loadAudit().catch((e) => toast(e.message, 'error')));

  const accounts = me.auth_mode !== 'token' && me.auth_mode !== 'none';
  const loads = [loadSessions(), loadBackends(), loadAudit(), loadUsage()];
  if (accounts) loads.push(loadTenants().then(loadUsers), loadKeys());
  else for (const id of ['users', 'keys', 'tenants']) $(id).hidden = true;
  const results = await Promise.allSettled(loads);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) toast(failed.reason.message, 'error');
  startPolling();
  document.addEventListener('visibilitychange', () => { if (!document.hidden) loadSessions(); });
}

start();
