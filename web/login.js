// login.js - the sign-in page (/login, accounts): a name and a password, single sign-on when the
// server offers it, and redeeming an invite (/login?invite=CODE: choose a password twice). Asks
// GET /api/v1/me first: signed in already, or a server without accounts (--auth token signs in on
// the main page), means there is nothing to do here. API: src/server/lv_account_api.c.

import { $, byteLength, PASSWORD_MIN, PASSWORD_MAX_BYTES, passwordProblem, tooManyAttempts } from './util.js';
import { hydrateIcons } from './icons.js';

/** Where to go once signed in: a path on this site only (never //host or a scheme). Printable
 * ASCII without a backslash, as the server's own check (lv_oidc.c next_ok): the URL parser drops
 * tabs and newlines, so '/\t/evil.example' would otherwise become '//evil.example'. */
function nextPath() {
  const n = new URLSearchParams(location.search).get('next') || '/';
  return /^\/(?![/\\])[\x21-\x5b\x5d-\x7e]*$/.test(n) ? n : '/';
}

async function errorBody(res) {
  try {
    const b = await res.json();
    return (b && b.error) || {};
  } catch {
    return {};
  }
}

/** A sentence for a refused sign-in or invite (res: the answer, null when unreachable). */
async function refusal(res, what) {
  if (!res) return 'Cannot reach the server. Check the connection and try again.';
  const e = await errorBody(res);
  if (res.status === 429) return tooManyAttempts(res, e);
  if (res.status === 401 && e.code === 'bad_invite') return 'This invite is wrong, already used or expired. Ask for a new one.';
  if (res.status === 401) return 'Wrong name or password.';
  if (res.status === 503) return 'The server is busy. Try again in a moment.';
  return `${what} failed: ${e.message || `HTTP ${res.status}`}`;
}

async function post(path, body) {
  try {
    return await fetch(path, {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
  } catch {
    return null;
  }
}

function busy(button, on, label) {
  button.disabled = on;
  button.querySelector('.btn-label').textContent = label;
}

async function signIn(ev) {
  ev.preventDefault();
  const name = $('signinName');
  const pw = $('signinPassword');
  const err = $('signinError');
  const submit = $('signinSubmit');
  err.textContent = '';
  if (!name.value.trim()) {
    err.textContent = 'Enter your name.';
    name.focus();
    return;
  }
  if (!pw.value) {
    err.textContent = 'Enter your password.';
    pw.focus();
    return;
  }
  if (byteLength(pw.value) > PASSWORD_MAX_BYTES) {
    err.textContent = `A password has at most ${PASSWORD_MAX_BYTES} bytes.`;
    pw.select();
    return;
  }
  busy(submit, true, 'Signing in…');
  const res = await post('/api/v1/login', { name: name.value.trim(), password: pw.value });
  if (res && res.ok) {
    pw.value = '';
    location.replace(nextPath());
    return;
  }
  busy(submit, false, 'Sign in');
  err.textContent = await refusal(res, 'Sign-in');
  pw.select();
}

async function redeem(ev, code) {
  ev.preventDefault();
  const pw = $('invitePassword');
  const pw2 = $('invitePassword2');
  const err = $('inviteError');
  const submit = $('inviteSubmit');
  err.textContent = '';
  const problem = passwordProblem(pw.value, `Choose a password of at least ${PASSWORD_MIN} characters.`);
  if (problem) {
    err.textContent = problem;
    pw.focus();
    return;
  }
  if (pw.value !== pw2.value) {
    err.textContent = 'The two passwords differ. Type the same one twice.';
    pw2.select();
    return;
  }
  busy(submit, true, 'Setting the password…');
  const res = await post('/api/v1/invite', { code, password: pw.value });
  if (res && res.ok) {
    pw.value = '';
    pw2.value = '';
    location.replace('/');
    return;
  }
  busy(submit, false, 'Set password and sign in');
  err.textContent = await refusal(res, 'Setting the password');
}

async function init() {
  hydrateIcons();
  const invite = new URLSearchParams(location.search).get('invite');
  let me = null;
  let res = null;
  try {
    res = await fetch('/api/v1/me', { credentials: 'same-origin', cache: 'no-store' });
    me = await res.json();
  } catch { /* shown below */ }
  if (res && res.ok && me) {
    // --auth token or none: the main page signs in with the token; signed in already: go on.
    if (me.auth_mode === 'token' || me.auth_mode === 'none' || (me.signed_in && !invite)) {
      location.replace(me.signed_in ? nextPath() : '/');
      return;
    }
  }
  if (me && me.oidc) {
    $('ssoBox').hidden = false;
    const next = nextPath();
    if (next !== '/') $('ssoBtn').href = `/auth/oidc/login?next=${encodeURIComponent(next)}`;
  }
  if (!res) $('signinError').textContent = 'Cannot reach the server. Reload the page to try again.';
  if (invite) {
    // The code leaves the address bar (and the history) before anything else happens.
    history.replaceState(null, '', '/login');
    $('signinForm').hidden = true;
    $('inviteForm').hidden = false;
    $('inviteForm').addEventListener('submit', (ev) => redeem(ev, invite));
    if (!/^[0-9a-f]{64}$/.test(invite)) {
      $('inviteError').textContent = 'This invite link is incomplete: copy the whole link you were sent.';
    }
    $('invitePassword').focus();
    return;
  }
  $('signinForm').addEventListener('submit', signIn);
  $('signinName').focus();
}

init();
