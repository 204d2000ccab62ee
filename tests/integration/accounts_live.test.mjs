// accounts_live.test.mjs - accounts changes reaching a running server's live state
// (docs/internals/accounts.md): an API key's last use is written to the database (within a second
// of its first use, then at most once a minute) and shown by `livevlm key list` and the admin API;
// `livevlm user disable` ends the user's live WebSocket with account_disabled while another user
// keeps streaming; `livevlm key revoke` ends the WebSocket opened with that key with key_revoked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  cli, startFakevlm, startLivevlm, stopAll, httpRequestFrom, waitUntil, sleep, JPEG_320, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
const bearer = (k) => ({ auth: false, headers: { Authorization: `Bearer ${k}` } });

let fake;
let srv;
before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'] });
  srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  for (const name of ['bob', 'carol']) {
    const r = cli(['user', 'add', name, '--password-stdin'], { configDir: srv.configDir, input: 'a long password 1\n' });
    assert.equal(r.code, 0, r.stderr);
  }
});
after(stopAll);

function newKey(user, extra = []) {
  const r = cli(['key', 'add', user, ...extra], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  const key = r.lines.find((l) => l.startsWith('lvk_'));
  assert.ok(key, `a key on stdout: ${r.stdout}`);
  return key;
}

/** `livevlm key list USER` as objects (ID PREFIX USER SCOPE STATE EXPIRES LAST_USED LABEL). */
function keyList(user) {
  const r = cli(['key', 'list', user], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  return r.lines.map((l) => {
    const [id, prefix, owner, scope, state, expires, lastUsed] = l.split(' ');
    return { id, prefix, owner, scope, state, expires, lastUsed };
  });
}

// Each request with a key from an address of its own: polls of a key the server does not know yet
// are failed credentials, counted per address (10 a minute, then 429).
let nextAddr = 1;
const keyGet = (key) => httpRequestFrom({ localAddress: `127.0.3.${nextAddr++}`, port: srv.port,
  path: '/api/v1/config', headers: { Authorization: `Bearer ${key}` } });

/** The key answers 200 on HTTP within a few seconds (the server reloads each second). */
async function waitKeyWorks(key) {
  await waitUntil(async () => (await keyGet(key)).status === 200,
    { timeoutMs: T(3000), intervalMs: 100, what: 'the new key works' });
}

/** A session opened with key, streaming (one answer received). */
async function streaming(key) {
  const c = await srv.connect(bearer(key));
  await c.hello({});
  c.send({ type: 'start' });
  c.autoFeed(JPEG_320());
  await c.nextAnswer({ timeoutMs: T(10000) });
  return c;
}

test('a key used on HTTP shows its last use in `key list` and the admin API, written once a minute at most', TO, async () => {
  const key = newKey('bob', ['--name', 'used']);
  const before = Date.now();
  const [fresh] = keyList('bob').filter((k) => k.prefix === key.slice(0, 12));
  assert.equal(fresh.lastUsed, 'never', 'an unused key was never used');
  await waitKeyWorks(key);
  const used = Date.now();

  let row;
  await waitUntil(() => {
    [row] = keyList('bob').filter((k) => k.prefix === key.slice(0, 12));
    return row.lastUsed !== 'never';
  }, { timeoutMs: T(3000), intervalMs: 200, what: 'the first use written within a few seconds' });
  assert.match(row.lastUsed, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const written = Date.parse(row.lastUsed);
  assert.ok(written >= Math.floor(before / 1000) * 1000 && written <= used + 1000,
    `last used ${row.lastUsed} lies between ${new Date(before).toISOString()} and ${new Date(used).toISOString()}`);

  // the admin API (the admin page's source) reads the same column
  const adminKey = newKey('admin', ['--scope', 'admin']);
  await waitKeyWorks(adminKey);
  const res = await srv.request('/api/v1/admin/keys', { token: adminKey });
  assert.equal(res.status, 200, res.text);
  const listed = res.json().keys.find((k) => k.id === row.id);
  assert.ok(listed, 'the key is listed');
  assert.ok(Math.abs(listed.last_used_ms - written) < 1000, `admin API last_used_ms ${listed.last_used_ms}`);

  // used again 2 s later: not written again within the minute (one UPDATE a minute per key)
  await sleep(2000);
  assert.equal((await srv.request('/api/v1/config', { token: key })).status, 200);
  await sleep(T(2500));
  const [again] = keyList('bob').filter((k) => k.id === row.id);
  assert.equal(again.lastUsed, row.lastUsed, 'a second use within the minute is not written yet');
});

test('`livevlm user disable` ends the live WebSocket with account_disabled; another user keeps streaming', TO, async () => {
  const bobKey = newKey('bob');
  const carolKey = newKey('carol');
  await waitKeyWorks(bobKey);
  await waitKeyWorks(carolKey);
  const bob = await streaming(bobKey);
  const carol = await streaming(carolKey);
  const idle = await srv.connect(bearer(bobKey)); // no hello yet: ended too

  const r = cli(['user', 'disable', 'bob'], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  const t0 = Date.now();
  const err = await bob.nextError('account_disabled', { timeoutMs: T(3000) });
  const tookMs = Date.now() - t0;
  assert.ok(tookMs < T(2500), `ended after ${tookMs} ms`);
  assert.match(err.message, /disabled or removed/);
  const closed = await bob.closed;
  assert.equal(closed.code, 1000);
  assert.ok((await idle.nextError('account_disabled', { timeoutMs: T(3000) })).message);
  await idle.closed;

  // carol's session still gets answers after bob's ended
  carol.drain('vlm_response');
  await carol.nextAnswer({ timeoutMs: T(10000) });
  assert.equal(carol.seen('error').length, 0, `carol heard no error: ${carol.recent()}`);
  assert.equal(carol.closeInfo, null);
  await carol.close();

  // bob cannot come back in with the key, and the session is gone (no resume)
  const res = await keyGet(bobKey);
  assert.equal(res.status, 401);
  assert.match(res.text, /disabled/);
  assert.equal(cli(['user', 'enable', 'bob'], { configDir: srv.configDir }).code, 0);
});

test('`livevlm key revoke` ends the WebSocket opened with that key with key_revoked, not the others', TO, async () => {
  const doomed = newKey('carol', ['--name', 'doomed']);
  const kept = newKey('carol', ['--name', 'kept']);
  await waitKeyWorks(doomed);
  await waitKeyWorks(kept);
  const a = await streaming(doomed);
  const b = await streaming(kept);
  const id = keyList('carol').find((k) => k.prefix === doomed.slice(0, 12)).id;

  const r = cli(['key', 'revoke', id], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  const t0 = Date.now();
  const err = await a.nextError('key_revoked', { timeoutMs: T(3000) });
  assert.ok(Date.now() - t0 < T(2500));
  assert.match(err.message, /revoked/);
  assert.equal((await a.closed).code, 1000);

  // the same user's other key still streams
  b.drain('vlm_response');
  await b.nextAnswer({ timeoutMs: T(10000) });
  assert.equal(b.seen('error').length, 0, `no error on the kept key's socket: ${b.recent()}`);
  await b.close();
});

/* A password sign-in of name: its cookie value and csrf. */
async function signIn(name, password) {
  const res = await srv.request('/api/v1/login', { auth: false, method: 'POST', body: { name, password } });
  assert.equal(res.status, 200, res.text);
  const sc = [].concat(res.headers['set-cookie'] || []).find((c) => c.startsWith('livevlm_session='));
  return { cookie: sc.split(';')[0], csrf: res.json().csrf };
}

async function streamingWith(cookie) {
  const c = await srv.connect({ auth: false, headers: { Cookie: cookie } });
  await c.hello({});
  c.send({ type: 'start' });
  c.autoFeed(JPEG_320());
  await c.nextAnswer({ timeoutMs: T(10000) });
  return c;
}

test('sign-out everywhere ends the pages of every sign-in of the user with signed_out; a password change keeps its own page', TO, async () => {
  const a = await signIn('carol', 'a long password 1');
  const b = await signIn('carol', 'a long password 1');
  const pa = await streamingWith(a.cookie);
  const pb = await streamingWith(b.cookie);
  const bob = await signIn('bob', 'a long password 1');
  const pbob = await streamingWith(bob.cookie);

  // a password change from sign-in a: b's page ends, a's own page goes on
  const pw = await srv.request('/api/v1/password', { auth: false, method: 'POST', body: { current: 'a long password 1', new: 'a longer password 2' },
    headers: { Cookie: a.cookie, 'X-CSRF-Token': a.csrf } });
  assert.equal(pw.status, 200, pw.text);
  const err = await pb.nextError('signed_out', { timeoutMs: T(3000) });
  assert.match(err.message, /sign-in ended/);
  pa.drain('vlm_response');
  await pa.nextAnswer({ timeoutMs: T(10000) });
  assert.equal(pa.seen('error').length, 0, `the page that changed the password goes on: ${pa.recent()}`);

  // sign-out everywhere (with the new cookie the change gave): that page ends too, bob's does not
  const a2 = { cookie: [].concat(pw.headers['set-cookie']).find((c) => c.startsWith('livevlm_session=')).split(';')[0], csrf: pw.json().csrf };
  const out = await srv.request('/api/v1/logout?everywhere=1', { auth: false, method: 'POST', body: '',
    headers: { Cookie: a2.cookie, 'X-CSRF-Token': a2.csrf } });
  assert.equal(out.status, 204, out.text);
  await pa.nextError('signed_out', { timeoutMs: T(3000) });
  pbob.drain('vlm_response');
  await pbob.nextAnswer({ timeoutMs: T(10000) });
  assert.equal(pbob.seen('error').length, 0, `another user's page goes on: ${pbob.recent()}`);
  await pbob.close();
  // put carol's password back for the other tests of this file
  const c = await signIn('carol', 'a longer password 2');
  const back = await srv.request('/api/v1/password', { auth: false, method: 'POST', body: { current: 'a longer password 2', new: 'a long password 1' },
    headers: { Cookie: c.cookie, 'X-CSRF-Token': c.csrf } });
  assert.equal(back.status, 200, back.text);
});
