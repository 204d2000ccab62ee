// login.test.mjs - the signed-in person's routes (src/server/lv_account_api.c) against the real
// livevlm with accounts (SQLite in a temp config dir) and the real `livevlm user` CLI: password
// sign-in and its cookie, one sentence for an unknown name and a wrong password, the per-account
// lock, me, sign-out here and everywhere, own API keys (created, listed, used as a Bearer,
// revoked), password change, invite redemption, CSRF, and the body caps.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { startLivevlm, stopAll, cli, httpRequestFrom, T } from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
let srv;

before(async () => {
  srv = await startLivevlm({ auth: 'accounts' });
  // the first admin's password: the harness's, or read from standard output (alone on its line)
  if (!srv.adminPassword) srv.adminPassword = (/\n([0-9a-f]{24})\n/.exec(fs.readFileSync(srv.stdoutPath, 'utf8')) || [])[1];
  assert.match(srv.adminPassword || '', /^[0-9a-f]{24}$/, 'the first admin password was printed');
});

after(async () => { await stopAll(); });

/** A request with no credential but what opts says (cookie, csrf, bearer). */
function req(path, { body, method, cookie, csrf, bearer, headers = {} } = {}) {
  const h = { ...headers };
  if (cookie) h.Cookie = cookie;
  if (csrf) h['X-CSRF-Token'] = csrf;
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  return srv.request(path, { auth: false, body, method, headers: h });
}

function sessionCookie(res) {
  const sc = [].concat(res.headers['set-cookie'] || []);
  const line = sc.find((l) => l.startsWith('livevlm_session='));
  assert.ok(line, `a livevlm_session cookie was set (got ${JSON.stringify(sc)})`);
  return { line, value: line.split(';')[0] };
}

async function signIn(name, password) {
  const res = await req('/api/v1/login', { body: { name, password } });
  assert.equal(res.status, 200, res.text);
  const { value } = sessionCookie(res);
  const body = res.json();
  return { cookie: value, csrf: body.csrf, user: body.user };
}

function addUser(name, password, role = 'user') {
  const r = cli(['user', 'add', name, '--role', role, '--password-stdin'], { configDir: srv.configDir, input: `${password}\n` });
  assert.equal(r.code, 0, `user add ${name}: ${r.stderr}`);
}

test('sign-in: 200 {user, csrf} and a HttpOnly SameSite=Lax 30-day cookie on Path=/ (no Secure without TLS)', TO, async () => {
  const res = await req('/api/v1/login', { body: { name: 'admin', password: srv.adminPassword } });
  assert.equal(res.status, 200, res.text);
  const body = res.json();
  assert.equal(body.user.name, 'admin');
  assert.equal(body.user.role, 'admin');
  assert.equal(body.user.tenant, 'default');
  assert.match(body.user.id, /^[a-z0-9_-]{1,32}$/);
  assert.match(body.csrf, /^[0-9a-f]{64}$/);
  const { line } = sessionCookie(res);
  assert.match(line, /^livevlm_session=[0-9a-f]{64};/);
  assert.match(line, /; HttpOnly/);
  assert.match(line, /; SameSite=Lax/);
  assert.match(line, /; Path=\//);
  assert.match(line, /; Max-Age=2592000/);
  assert.doesNotMatch(line, /Secure/);
});

test('an unknown name and a wrong password get the same 401 sentence', TO, async () => {
  const wrong = await httpRequestFrom({ localAddress: '127.0.0.21', port: srv.port, method: 'POST', path: '/api/v1/login',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'admin', password: 'not-the-password' }) });
  const unknown = await httpRequestFrom({ localAddress: '127.0.0.21', port: srv.port, method: 'POST', path: '/api/v1/login',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'nobody-here', password: 'whatever-1' }) });
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.deepEqual(wrong.json(), unknown.json());
  assert.equal(wrong.json().error.code, 'bad_credentials');
  assert.equal(wrong.json().error.message, 'wrong name or password');
  assert.equal(wrong.headers['set-cookie'], undefined);
});

test('5 wrong passwords for one account from 5 addresses lock it: 429 account_locked with Retry-After, even with the right password; other accounts still sign in', TO, async () => {
  addUser('carol', 'carol-password-1');
  const post = (ip, name, password) => httpRequestFrom({ localAddress: ip, port: srv.port, method: 'POST',
    path: '/api/v1/login', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name, password }) });
  for (let i = 0; i < 5; i++) {
    const r = await post(`127.0.0.${30 + i}`, 'carol', `wrong-password-${i}`);
    assert.equal(r.status, 401, `try ${i + 1}: ${r.text}`);
  }
  const locked = await post('127.0.0.40', 'carol', 'carol-password-1');
  assert.equal(locked.status, 429, locked.text);
  assert.equal(locked.json().error.code, 'account_locked');
  assert.equal(locked.headers['retry-after'], '60');
  assert.match(locked.json().error.message, /locked/);
  const other = await post('127.0.0.40', 'admin', srv.adminPassword);
  assert.equal(other.status, 200, 'another account from the same address is not locked');
});

test('GET /api/v1/me: the user, tenant, role and csrf when signed in; 401 JSON with the mode when not', TO, async () => {
  const s = await signIn('admin', srv.adminPassword);
  const me = await req('/api/v1/me', { cookie: s.cookie });
  assert.equal(me.status, 200, me.text);
  const b = me.json();
  assert.equal(b.user.name, 'admin');
  assert.equal(b.role, 'admin');
  assert.deepEqual(b.tenant, { id: 'default', name: b.tenant.name });
  assert.equal(b.csrf, s.csrf);
  assert.equal(b.auth_mode, 'accounts');
  assert.equal(b.oidc, false);
  const anon = await req('/api/v1/me');
  assert.equal(anon.status, 401);
  assert.equal(anon.json().auth_mode, 'accounts');
  assert.equal(anon.json().oidc, false);
  assert.equal(anon.json().error.code, 'unauthorized');
  const post = await req('/api/v1/me', { method: 'POST', body: {} });
  assert.equal(post.status, 405);
});

test('sign-out needs the CSRF token, clears the cookie and ends that sign-in only', TO, async () => {
  const a = await signIn('admin', srv.adminPassword);
  const b = await signIn('admin', srv.adminPassword);
  const noCsrf = await req('/api/v1/logout', { method: 'POST', body: '', cookie: a.cookie });
  assert.equal(noCsrf.status, 403, noCsrf.text);
  assert.equal(noCsrf.json().error.code, 'csrf');
  const out = await req('/api/v1/logout', { method: 'POST', body: '', cookie: a.cookie, csrf: a.csrf });
  assert.equal(out.status, 204, out.text);
  assert.match(sessionCookie(out).line, /^livevlm_session=;.*Max-Age=0/);
  assert.equal((await req('/api/v1/me', { cookie: a.cookie })).status, 401, 'the signed-out cookie stopped working');
  assert.equal((await req('/api/v1/me', { cookie: b.cookie })).status, 200, 'the other sign-in still works');
});

test('sign-out everywhere ends every sign-in of the user, not other users\'', TO, async () => {
  addUser('erin', 'erin-password-1');
  const a = await signIn('erin', 'erin-password-1');
  const b = await signIn('erin', 'erin-password-1');
  const admin = await signIn('admin', srv.adminPassword);
  const out = await req('/api/v1/logout?everywhere=1', { method: 'POST', body: '', cookie: a.cookie, csrf: a.csrf });
  assert.equal(out.status, 204, out.text);
  assert.equal((await req('/api/v1/me', { cookie: b.cookie })).status, 401, 'another cookie of the same user stopped working');
  assert.equal((await req('/api/v1/me', { cookie: a.cookie })).status, 401);
  assert.equal((await req('/api/v1/me', { cookie: admin.cookie })).status, 200);
  assert.equal((await req('/api/v1/logout?everywhere=1', { method: 'POST', body: '' })).status, 401, 'not signed in: nothing to end');
});

test('API keys: created (shown once), listed, used as a Bearer, revoked; scopes and ownership enforced', TO, async () => {
  const s = await signIn('admin', srv.adminPassword);
  const noCsrf = await req('/api/v1/keys', { body: { name: 'ci' }, cookie: s.cookie });
  assert.equal(noCsrf.status, 403);
  const made = await req('/api/v1/keys', { body: { name: 'ci runner', scope: 'stream', expires_days: 30 }, cookie: s.cookie, csrf: s.csrf });
  assert.equal(made.status, 201, made.text);
  const k = made.json();
  assert.match(k.key, /^lvk_[0-9a-f]{64}$/);
  assert.equal(k.name, 'ci runner');
  assert.equal(k.scope, 'stream');
  assert.ok(k.expires_ms > Date.now() + 29 * 86400e3 && k.expires_ms < Date.now() + 31 * 86400e3, `expires_ms ${k.expires_ms}`);
  assert.ok(k.key.startsWith(k.prefix), 'the prefix tells the key apart');

  const list = await req('/api/v1/keys', { cookie: s.cookie });
  assert.equal(list.status, 200);
  const mine = list.json().keys.find((x) => x.id === k.id);
  assert.ok(mine, 'the new key is listed');
  assert.equal(mine.key, undefined, 'the list never shows the secret');
  assert.doesNotMatch(list.text, new RegExp(k.key.slice(4)));

  const used = await req('/api/v1/me', { bearer: k.key });
  assert.equal(used.status, 200, used.text);
  assert.equal(used.json().user.name, 'admin');
  assert.equal(used.json().credential, 'api_key');
  assert.equal(used.json().role, 'user', 'a stream key acts as a user even for an admin');
  const minted = await req('/api/v1/keys', { body: {}, bearer: k.key });
  assert.equal(minted.status, 403, 'an API key cannot make more keys');

  // another user's key is "no such key" to me, and theirs to revoke only
  addUser('frank', 'frank-password-1');
  const f = await signIn('frank', 'frank-password-1');
  const adminScope = await req('/api/v1/keys', { body: { scope: 'admin' }, cookie: f.cookie, csrf: f.csrf });
  assert.equal(adminScope.status, 403, 'a user may not create an admin key');
  const notMine = await req(`/api/v1/keys/${k.id}/revoke`, { method: 'POST', body: '', cookie: f.cookie, csrf: f.csrf });
  assert.equal(notMine.status, 404);
  assert.equal(notMine.json().error.code, 'no_such_key');
  assert.equal((await req('/api/v1/me', { bearer: k.key })).status, 200, 'still works after the refused revoke');

  const revoked = await req(`/api/v1/keys/${k.id}/revoke`, { method: 'POST', body: '', cookie: s.cookie, csrf: s.csrf });
  assert.equal(revoked.status, 204, revoked.text);
  const after = await req('/api/v1/me', { bearer: k.key });
  assert.equal(after.status, 401, 'a revoked key stops at once');
  const relisted = (await req('/api/v1/keys', { cookie: s.cookie })).json().keys.find((x) => x.id === k.id);
  assert.ok(!relisted || relisted.revoked === true);
  const bad = await req('/api/v1/keys', { body: { scope: 'root' }, cookie: s.cookie, csrf: s.csrf });
  assert.equal(bad.status, 400);
  assert.equal(bad.json().error.message, 'scope is stream or admin');
});

test('password change: the current one is checked, the new one must be 10+ characters; other sign-ins end, this one gets a new cookie', TO, async () => {
  addUser('dave', 'dave-password-1');
  const a = await signIn('dave', 'dave-password-1');
  const other = await signIn('dave', 'dave-password-1');
  const wrong = await req('/api/v1/password', { body: { current: 'not-it-at-all', new: 'dave-password-2' }, cookie: a.cookie, csrf: a.csrf });
  assert.equal(wrong.status, 403, wrong.text);
  assert.equal(wrong.json().error.code, 'wrong_password');
  const short = await req('/api/v1/password', { body: { current: 'dave-password-1', new: 'short' }, cookie: a.cookie, csrf: a.csrf });
  assert.equal(short.status, 400);
  assert.equal(short.json().error.message, 'a new password needs at least 10 characters');
  const ok = await req('/api/v1/password', { body: { current: 'dave-password-1', new: 'dave-password-2' }, cookie: a.cookie, csrf: a.csrf });
  assert.equal(ok.status, 200, ok.text);
  const fresh = sessionCookie(ok).value;
  assert.equal((await req('/api/v1/me', { cookie: fresh })).status, 200, 'the new cookie works');
  assert.equal((await req('/api/v1/me', { cookie: other.cookie })).status, 401, 'other sign-ins ended');
  const old = await req('/api/v1/login', { body: { name: 'dave', password: 'dave-password-1' } });
  assert.equal(old.status, 401);
  await signIn('dave', 'dave-password-2');
});

test('password change works for a 64-character name (the principal keeps 63: the full name comes from the account)', TO, async () => {
  const name = `l${'o'.repeat(62)}g`;
  assert.equal(name.length, 64);
  addUser(name, 'long-password-1');
  const a = await signIn(name, 'long-password-1');
  const ok = await req('/api/v1/password', { body: { current: 'long-password-1', new: 'long-password-2' }, cookie: a.cookie, csrf: a.csrf });
  assert.equal(ok.status, 200, ok.text);
  await signIn(name, 'long-password-2');
});

test('wrong passwords whose client hung up before the answer still count toward the account lock', TO, async () => {
  addUser('hank', 'hank-password-1');
  const body = JSON.stringify({ name: 'hank', password: 'wrong-password' });
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve, reject) => {
      const sock = net.connect({ host: '127.0.0.1', port: srv.port, localAddress: `127.0.0.${50 + i}` }, () => {
        sock.write(`POST /api/v1/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        setTimeout(() => { sock.destroy(); resolve(); }, 10); // gone before argon2 answers
      });
      sock.on('error', reject);
    });
  }
  // the five checks run on the database thread one after another: wait until the lock shows
  let r;
  for (let i = 0; i < 40; i++) {
    await new Promise((res) => setTimeout(res, 100));
    r = await httpRequestFrom({ localAddress: '127.0.0.60', port: srv.port, method: 'POST', path: '/api/v1/login',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'hank', password: 'hank-password-1' }) });
    if (r.status === 429) break;
  }
  assert.equal(r.status, 429, `the hung-up failures locked the account (got ${r.status} ${r.text})`);
  assert.equal(r.json().error.code, 'account_locked');
});

test('invite: `livevlm user add bob --invite` gives a link whose code sets a password and signs in, once', TO, async () => {
  const r = cli(['user', 'add', 'bob', '--invite'], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  const link = r.lines.find((l) => l.includes('/login?invite='));
  assert.ok(link, `an invite link was printed: ${r.stdout}`);
  const code = /invite=([0-9a-f]{64})/.exec(link)[1];
  const short = await req('/api/v1/invite', { body: { code, password: 'short' } });
  assert.equal(short.status, 400, 'a too-short password does not use the invite up');
  const res = await req('/api/v1/invite', { body: { code, password: 'bob-password-1' } });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json().user.name, 'bob');
  const me = await req('/api/v1/me', { cookie: sessionCookie(res).value });
  assert.equal(me.json().user.name, 'bob');
  const again = await req('/api/v1/invite', { body: { code, password: 'bob-password-2' } });
  assert.equal(again.status, 401);
  assert.equal(again.json().error.code, 'bad_invite');
  await signIn('bob', 'bob-password-1');
});

test('bodies: a 10 KiB password, a non-JSON body, missing fields and a bad invite code get 400 with a sentence', TO, async () => {
  const big = await req('/api/v1/login', { body: { name: 'admin', password: 'x'.repeat(10240) } });
  assert.equal(big.status, 400);
  assert.equal(big.json().error.code, 'bad_field');
  assert.match(big.json().error.message, /at most 256 bytes/);
  const notJson = await req('/api/v1/login', { body: 'name=admin&password=x', headers: { 'Content-Type': 'text/plain' } });
  assert.equal(notJson.status, 400);
  assert.equal(notJson.json().error.code, 'bad_json');
  const missing = await req('/api/v1/login', { body: { name: 'admin' } });
  assert.equal(missing.status, 400);
  assert.equal(missing.json().error.message, 'enter your name and your password');
  const token = await req('/api/v1/login', { body: { token: 'a'.repeat(64) } });
  assert.equal(token.status, 400);
  assert.match(token.json().error.message, /not the access token/);
  const code = await req('/api/v1/invite', { body: { code: 'abc', password: 'long-enough-1' } });
  assert.equal(code.status, 400);
  assert.match(code.json().error.message, /64 hex digits/);
  const over = await req('/api/v1/login', { body: 'x'.repeat(70 * 1024), headers: { 'Content-Type': 'application/json' } });
  assert.equal(over.status, 413, 'the server caps every body at 64 KiB');
});
