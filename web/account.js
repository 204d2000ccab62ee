// account.js - the main page's side of accounts: who is signed in (GET /api/v1/me; a page with no
// sign-in goes to /login), the user menu in the header (sign out, sign out everywhere, API keys,
// admin), the API keys dialog, and fetch with the X-CSRF-Token every state change signed in with
// the cookie must carry. With --auth token or none it stays out of the way: the page works as before.

import { $, copyText } from './util.js';
import { hydrateIcons } from './icons.js';

export const account = {
  accounts: false, // the server has accounts (GET /api/v1/me said so)
  me: null,
  csrf: '',
};

/** fetch that adds X-CSRF-Token to anything but GET/HEAD once the page knows it. */
export function csrfFetch(input, init = {}) {
  const method = (init.method || 'GET').toUpperCase();
  if (account.csrf && method !== 'GET' && method !== 'HEAD') {
    const headers = new Headers(init.headers || {});
    headers.set('X-CSRF-Token', account.csrf);
    init = { ...init, headers };
  }
  return fetch(input, init);
}

/** Go to the sign-in page, coming back here afterwards. */
export function toSignIn() {
  const here = location.pathname + location.search;
  location.replace(here === '/' ? '/login' : `/login?next=${encodeURIComponent(here)}`);
}

/**
 * Ask who is signed in. 'accounts': signed in (account.me set); 'signin': not signed in, on the
 * way to /login; 'plain': no accounts (token or none) or the server could not say (the page's own
 * start-up handles that as before).
 */
export async function whoAmI() {
  let res;
  let body = null;
  try {
    res = await fetch('/api/v1/me', { credentials: 'same-origin', cache: 'no-store' });
    body = await res.json();
  } catch {
    return 'plain';
  }
  const mode = body && body.auth_mode;
  if (mode !== 'accounts' && mode !== 'proxy') {
    account.accounts = false;
    return 'plain';
  }
  account.accounts = true;
  if (res.status === 401) {
    toSignIn();
    return 'signin';
  }
  if (!res.ok) return 'plain';
  account.me = body;
  account.csrf = typeof body.csrf === 'string' ? body.csrf : '';
  return 'accounts';
}

async function errorText(res) {
  try {
    const b = await res.json();
    if (b && b.error && b.error.message) return b.error.message;
  } catch { /* not JSON */ }
  return `HTTP ${res.status}`;
}

// ---- the header menu -------------------------------------------------------------------------

let wired = false;

/** Show the signed-in user in the header (accounts only). signOut(everywhere) ends the sign-in. */
export function showAccount({ signOut }) {
  if (!account.accounts || !account.me) return;
  const me = account.me;
  const user = me.user || {};
  $('userName').textContent = user.name || '?';
  $('userTenant').textContent = (me.tenant && (me.tenant.name || me.tenant.id)) || '';
  $('userMenuBtn').title = `Signed in as ${user.name || '?'} (${me.role || user.role || 'user'})`;
  $('menuAdmin').hidden = me.role !== 'admin';
  $('keyScopeAdmin').disabled = me.role !== 'admin';
  $('userMenu').hidden = false;
  $('logoutBtn').hidden = true; // the menu signs out
  if (wired) return;
  wired = true;
  const btn = $('userMenuBtn');
  const list = $('userMenuList');
  const close = () => {
    list.hidden = true;
    btn.setAttribute('aria-expanded', 'false');
  };
  btn.addEventListener('click', () => {
    const open = list.hidden;
    list.hidden = !open;
    btn.setAttribute('aria-expanded', String(open));
    if (open) list.querySelector('[role="menuitem"]:not([hidden])').focus();
  });
  document.addEventListener('click', (ev) => { if (!$('userMenu').contains(ev.target)) close(); });
  list.addEventListener('keydown', (ev) => {
    const items = [...list.querySelectorAll('[role="menuitem"]:not([hidden])')];
    const i = items.indexOf(document.activeElement);
    if (ev.key === 'Escape') {
      close();
      btn.focus();
    } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      items[(i + (ev.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length].focus();
    }
  });
  $('menuSignOut').addEventListener('click', () => { close(); signOut(false); });
  $('menuSignOutAll').addEventListener('click', () => { close(); signOut(true); });
  $('menuKeys').addEventListener('click', () => { close(); openKeys(); });
  wireKeys();
}

// ---- API keys dialog -------------------------------------------------------------------------

function fmtDate(ms) {
  return ms ? new Date(ms).toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' }) : 'never';
}

function keyRow(k) {
  const li = document.createElement('li');
  li.className = 'key-row';
  li.dataset.keyId = k.id;
  const text = document.createElement('div');
  text.className = 'key-text';
  const name = document.createElement('strong');
  name.textContent = k.name;
  const meta = document.createElement('span');
  meta.className = 'muted small';
  meta.textContent = `${k.prefix}… · ${k.scope} · expires ${fmtDate(k.expires_ms)} · last used ${k.last_used_ms ? fmtDate(k.last_used_ms) : 'never'}`;
  text.append(name, meta);
  li.append(text);
  if (!k.revoked) {
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.className = 'btn btn-ghost btn-sm key-revoke';
    revoke.textContent = 'Revoke';
    revoke.setAttribute('aria-label', `Revoke the key ${k.name}`);
    revoke.addEventListener('click', () => revokeKey(k, revoke));
    li.append(revoke);
  } else {
    const gone = document.createElement('span');
    gone.className = 'chip chip-muted';
    gone.textContent = 'revoked';
    li.append(gone);
  }
  return li;
}

async function loadKeys() {
  const list = $('keysList');
  const err = $('keysError');
  err.textContent = '';
  let res;
  try {
    res = await csrfFetch('/api/v1/keys', { credentials: 'same-origin', cache: 'no-store' });
  } catch {
    err.textContent = 'Cannot reach the server.';
    return;
  }
  if (!res.ok) {
    err.textContent = `Could not list the keys: ${await errorText(res)}`;
    return;
  }
  const keys = ((await res.json()).keys || []).filter((k) => !k.revoked);
  list.replaceChildren(...keys.map(keyRow));
  $('keysEmpty').hidden = keys.length > 0;
}

async function revokeKey(k, button) {
  if (button.dataset.armed !== 'true') { // a second click confirms
    button.dataset.armed = 'true';
    button.textContent = 'Revoke: sure?';
    setTimeout(() => { button.dataset.armed = 'false'; button.textContent = 'Revoke'; }, 4000);
    return;
  }
  button.disabled = true;
  const res = await csrfFetch(`/api/v1/keys/${encodeURIComponent(k.id)}/revoke`, {
    method: 'POST', credentials: 'same-origin', cache: 'no-store',
  }).catch(() => null);
  if (!res || !res.ok) {
    $('keysError').textContent = res ? `Could not revoke the key: ${await errorText(res)}` : 'Cannot reach the server.';
    button.disabled = false;
    return;
  }
  loadKeys();
}

async function createKey(ev) {
  ev.preventDefault();
  const err = $('keysError');
  const submit = $('keyCreate');
  err.textContent = '';
  const name = $('keyName').value.trim() || 'key';
  const days = Number($('keyExpires').value);
  if (!Number.isInteger(days) || days < 0 || days > 3650) {
    err.textContent = 'Expires after: a whole number of days from 0 (never) to 3650.';
    $('keyExpires').focus();
    return;
  }
  submit.disabled = true;
  const res = await csrfFetch('/api/v1/keys', {
    method: 'POST', credentials: 'same-origin', cache: 'no-store',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ name, scope: $('keyScopeAdmin').checked ? 'admin' : 'stream', expires_days: days }),
  }).catch(() => null);
  submit.disabled = false;
  if (!res || res.status !== 201) {
    err.textContent = res ? `Could not create the key: ${await errorText(res)}` : 'Cannot reach the server.';
    return;
  }
  const k = await res.json();
  $('keyNewValue').textContent = k.key;
  $('keyNew').hidden = false;
  $('keyName').value = '';
  loadKeys();
}

function openKeys() {
  const modal = $('keysModal');
  $('keyNew').hidden = true;
  $('keyNewValue').textContent = '';
  $('keysError').textContent = '';
  if (!modal.open) modal.showModal();
  document.body.classList.add('modal-open');
  loadKeys();
}

function closeKeys() {
  const modal = $('keysModal');
  $('keyNewValue').textContent = ''; // shown once: gone when the dialog closes
  $('keyNew').hidden = true;
  if (modal.open) modal.close();
  document.body.classList.remove('modal-open');
  $('userMenuBtn').focus();
}

function wireKeys() {
  hydrateIcons($('keysModal'));
  $('keyForm').addEventListener('submit', createKey);
  $('keysClose').addEventListener('click', closeKeys);
  $('keysDone').addEventListener('click', closeKeys);
  $('keysModal').addEventListener('close', () => document.body.classList.remove('modal-open'));
  $('keysModal').addEventListener('click', (ev) => { if (ev.target === $('keysModal')) closeKeys(); });
  $('keyCopy').addEventListener('click', async () => {
    const btn = $('keyCopy');
    const ok = await copyText($('keyNewValue').textContent);
    btn.dataset.copied = ok ? 'true' : 'failed';
    setTimeout(() => { btn.dataset.copied = 'false'; }, 1500);
  });
}
