// account.js - the main page's side of accounts: who is signed in (GET /api/v1/me; a page with no
// sign-in goes to /login), the user menu in the header (sign out, sign out everywhere, API keys,
// change password, admin), the API keys and change password dialogs, and fetch with the
// X-CSRF-Token every state change signed in with the cookie must carry (a password change brings a
// new one). With --auth token or none it stays out of the way: the page works as before.

import { $, copyText, PASSWORD_MIN, passwordProblem, tooManyAttempts } from './util.js';
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
  // a password belongs to a browser sign-in (an API key or bearer token is answered sign_in_needed)
  $('menuPassword').hidden = me.credential !== 'cookie';
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
  $('menuPassword').addEventListener('click', () => { close(); openPassword(); });
  wireKeys();
  wirePassword();
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

/**
 * The shared part of this file's dialogs: showModal, the page behind not scrolling, the close
 * buttons, a click on the backdrop and Escape all closing it, the focus back on the menu button.
 * onClose runs on every close (Escape included): it clears what must not stay shown.
 */
function dialog(modal, closeIds, onClose) {
  hydrateIcons(modal);
  const close = () => { if (modal.open) modal.close(); };
  modal.addEventListener('close', () => {
    onClose();
    document.body.classList.remove('modal-open');
    $('userMenuBtn').focus();
  });
  for (const id of closeIds) $(id).addEventListener('click', close);
  modal.addEventListener('click', (ev) => { if (ev.target === modal) close(); });
  return {
    open() {
      if (!modal.open) modal.showModal();
      document.body.classList.add('modal-open');
    },
    close,
  };
}

let keysDialog = null;

function openKeys() {
  $('keyNew').hidden = true;
  $('keyNewValue').textContent = '';
  $('keysError').textContent = '';
  keysDialog.open();
  loadKeys();
}

function wireKeys() {
  keysDialog = dialog($('keysModal'), ['keysClose', 'keysDone'], () => {
    $('keyNewValue').textContent = ''; // shown once: gone when the dialog closes
    $('keyNew').hidden = true;
  });
  $('keyForm').addEventListener('submit', createKey);
  $('keyCopy').addEventListener('click', async () => {
    const btn = $('keyCopy');
    const ok = await copyText($('keyNewValue').textContent);
    btn.dataset.copied = ok ? 'true' : 'failed';
    setTimeout(() => { btn.dataset.copied = 'false'; }, 1500);
  });
}

// ---- change password dialog ------------------------------------------------------------------

let passwordDialog = null;

/** A sentence for a refused change (res: the answer, null when the server was unreachable). */
async function passwordRefusal(res) {
  if (!res) return 'Cannot reach the server. Check the connection and try again.';
  let e = {};
  try {
    e = (await res.json()).error || {};
  } catch { /* not JSON */ }
  const msg = typeof e.message === 'string' && e.message ? e.message : `HTTP ${res.status}`;
  if (res.status === 429) return tooManyAttempts(res, e);
  if (e.code === 'wrong_password') {
    // a single sign-on user has no password here: the server cannot tell that apart from a wrong one
    return account.me && account.me.oidc
      ? 'The current password is wrong. (If you sign in with single sign-on, you have no password here to change.)'
      : 'The current password is wrong.';
  }
  return `Could not change the password: ${msg}.`;
}

function clearPasswords() {
  for (const id of ['pwCurrent', 'pwNew', 'pwNew2']) $(id).value = '';
}

function openPassword() {
  clearPasswords();
  $('pwUser').value = (account.me && account.me.user && account.me.user.name) || '';
  $('passwordError').textContent = '';
  $('passwordOk').hidden = true;
  passwordDialog.open();
  $('pwCurrent').focus();
}

async function changePassword(ev) {
  ev.preventDefault();
  const err = $('passwordError');
  const submit = $('passwordSubmit');
  const cur = $('pwCurrent');
  const pw = $('pwNew');
  const pw2 = $('pwNew2');
  err.textContent = '';
  $('passwordOk').hidden = true;
  if (!cur.value) {
    err.textContent = 'Enter your current password.';
    cur.focus();
    return;
  }
  const problem = passwordProblem(pw.value, `The new password needs at least ${PASSWORD_MIN} characters.`);
  if (problem) {
    err.textContent = problem;
    pw.focus();
    return;
  }
  if (pw.value !== pw2.value) {
    err.textContent = 'The two new passwords differ. Type the same one twice.';
    pw2.select();
    return;
  }
  submit.disabled = true;
  const res = await csrfFetch('/api/v1/password', {
    method: 'POST', credentials: 'same-origin', cache: 'no-store',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ current: cur.value, new: pw.value }),
  }).catch(() => null);
  submit.disabled = false;
  if (!res || !res.ok) {
    err.textContent = await passwordRefusal(res);
    cur.select();
    return;
  }
  // 200 {user, csrf}: the old sign-in ended with the others; the browser took the new cookie and
  // every later state change must carry the new csrf (csrfFetch reads account.csrf each time).
  let body = null;
  try {
    body = await res.json();
  } catch { /* 204 (not a cookie sign-in) or no body: the csrf stays */ }
  if (body && typeof body.csrf === 'string' && body.csrf) account.csrf = body.csrf;
  clearPasswords();
  $('passwordOk').hidden = false;
  $('passwordDone').focus();
}

function wirePassword() {
  passwordDialog = dialog($('passwordModal'), ['passwordClose', 'passwordDone'], () => {
    clearPasswords();
    $('passwordError').textContent = '';
  });
  $('passwordForm').addEventListener('submit', changePassword);
}
