// admin.test.mjs - the admin API (/api/v1/admin/..., src/server/lv_admin_api.c) on a real server
// with accounts (SQLite in its config dir) and real fakevlm backends: every route answers an admin
// key, refuses a user-role key (403 forbidden_role) and bad bodies (400 with a sentence naming the
// field), writes its audit rows; a kick ends a live WebSocket with kicked_by_admin; a drained
// backend gets no new request while the other takes them all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as H from '../lib/harness.mjs';

const {
  startFakevlm, startLivevlm, stopAll, makeTempDir, waitUntil, fakevlmStats, stopAndClose, sleep,
  JPEG_320, LIVEVLM_BIN, T,
} = H;

const TO = { timeout: T(60000) };
const J320 = JPEG_320();
const ADMIN_PW = 'boss-password-1';

let srv; let fa; let fb; let configDir;
const keys = {}; // name -> lvk_... key

/** `livevlm ARGS --config-dir DIR` (the database directly); stdout lines. */
function cli(args, input) {
  const r = spawnSync(LIVEVLM_BIN, [...args, '--config-dir', configDir], { input, encoding: 'utf8', timeout: T(20000) });
  if (r.status !== 0) throw new Error(`livevlm ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

/** A request with one API key (or none). */
function as(who, p, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (who) headers.Authorization = `Bearer ${keys[who]}`;
  return srv.request(p, { ...opts, headers, auth: false });
}

const post = (who, p, body) => as(who, p, { method: 'POST', body: body === undefined ? {} : body });

/** The error object of an answer; its body must be valid JSON even when it quotes the client. */
function errorOf(res) {
  let body;
  assert.doesNotThrow(() => { body = res.json(); }, `the body is JSON: ${res.text}`);
  return body.error || {};
}

/** 400 whose sentence matches re. */
async function expect400(res, re, what) {
  const r = await res;
  assert.equal(r.status, 400, `${what}: ${r.status} ${r.text}`);
  const e = errorOf(r);
  assert.match(e.message || '', re, `${what}: the sentence says why (${r.text})`);
}

before(async () => {
  fa = await startFakevlm({ slots: 4, ttftMs: 20, tokenMs: 5, tokens: 6 });
  fb = await startFakevlm({ slots: 4, ttftMs: 20, tokenMs: 5, tokens: 6 });
  const dir = makeTempDir('admin');
  configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir, { recursive: true, mode: 0o700 });
  // accounts made before the server starts: an admin (boss) and a user (joe), with API keys
  cli(['user', 'add', 'boss', '--role', 'admin', '--password-stdin'], `${ADMIN_PW}\n`);
  cli(['user', 'add', 'joe', '--role', 'user', '--password-stdin'], 'joe-password-1\n');
  [keys.boss] = cli(['key', 'add', 'boss', '--scope', 'admin']);
  [keys.joe] = cli(['key', 'add', 'joe', '--scope', 'stream']);
  [keys.joe2] = cli(['key', 'add', 'joe', '--scope', 'stream', '--name', 'spare']);
  // the harness reads a token file after start in every mode but none; accounts mode ignores it
  fs.writeFileSync(path.join(configDir, 'token'), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
  srv = await startLivevlm({ dir, configDir, auth: 'accounts', backends: [{ id: 'a', url: fa.url }, { id: 'b', url: fb.url }] });
  srv.token = keys.boss;
});

after(stopAll);

const ROUTES_GET = ['users', 'keys', 'tenants', 'sessions', 'backends', 'audit', 'usage/summary'];

test('only an admin: no credential 401, a user-role key 403 forbidden_role on every route', TO, async () => {
  for (const r of ROUTES_GET) {
    const anon = await as(null, `/api/v1/admin/${r}`);
    assert.equal(anon.status, 401, `GET ${r} without a credential: ${anon.status}`);
    const res = await as('joe', `/api/v1/admin/${r}`);
    assert.equal(res.status, 403, `GET ${r} as joe: ${res.status} ${res.text}`);
    assert.equal(errorOf(res).code, 'forbidden_role');
  }
  for (const p of ['users', 'tenants', 'users/x/delete', 'keys/x/revoke', 'tenants/x/delete',
    'sessions/0123456789abcdef0123456789abcdef/kick', 'backends/a/drain', 'backends/a/enable']) {
    const res = await post('joe', `/api/v1/admin/${p}`, { id: 'x', name: 'x', invite: true });
    assert.equal(res.status, 403, `POST ${p} as joe: ${res.status} ${res.text}`);
    assert.equal(errorOf(res).code, 'forbidden_role');
  }
  const unknown = await as('boss', '/api/v1/admin/nothing');
  assert.equal(unknown.status, 404);
});

test('tenants: create, update, list, bad bodies, delete refused while it has users', TO, async () => {
  let r = await post('boss', '/api/v1/admin/tenants', {
    id: 'acme', name: 'Acme Corp', weight: 3, backends: 'a, b', models: ['fake-vlm-1'],
    quota: { fpm: 120, answers_day: 1000 },
  });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(
    (({ id, name, weight, backends, models, quota }) => ({ id, name, weight, backends, models, quota }))(r.json().tenant),
    { id: 'acme', name: 'Acme Corp', weight: 3, backends: 'a,b', models: 'fake-vlm-1',
      quota: { fpm: 120, answers_day: 1000, tokens_day: 0, sessions: 0 } });
  r = await post('boss', '/api/v1/admin/tenants', { id: 'acme', weight: 5, quota: { sessions: 4 } });
  assert.equal(r.status, 200, r.text);
  const t = r.json().tenant;
  assert.equal(t.weight, 5);
  assert.equal(t.name, 'Acme Corp', 'an update keeps what it does not name');
  assert.deepEqual(t.quota, { fpm: 120, answers_day: 1000, tokens_day: 0, sessions: 4 });
  r = await as('boss', '/api/v1/admin/tenants');
  assert.equal(r.status, 200);
  const ids = r.json().tenants.map((x) => x.id).sort();
  assert.deepEqual(ids, ['acme', 'default']);

  const T0 = '/api/v1/admin/tenants';
  await expect400(post('boss', T0, {}), /id must be/, 'no id');
  await expect400(post('boss', T0, { id: 'Bad Id' }), /id must be/, 'bad id');
  await expect400(post('boss', T0, { id: 'x', weight: 0 }), /weight must be a whole number from 1 to 1000/, 'weight 0');
  await expect400(post('boss', T0, { id: 'x', weight: 'heavy' }), /weight/, 'weight text');
  await expect400(post('boss', T0, { id: 'x', quota: { fpm: -1 } }), /quota\.fpm/, 'negative quota');
  await expect400(post('boss', T0, { id: 'x', quota: { perday: 3 } }), /quota has no field 'perday'/, 'unknown quota');
  await expect400(post('boss', T0, { id: 'x', quotas: {} }), /has no field 'quotas'/, 'typo');
  await expect400(post('boss', T0, { id: 'x', backends: 'ok, not ok!' }), /not a backend id/, 'bad backend id');
  await expect400(post('boss', T0, { id: 'x', models: 'm'.repeat(600) }), /too long/, 'long models');
  await expect400(post('boss', T0, { id: 'x', name: 'a\u0001b' }), /control characters/, 'control char');
  await expect400(post('boss', T0, '{"id":'), /not JSON/, 'broken JSON');
  await expect400(post('boss', T0, '[1]'), /JSON object/, 'array body');
  await expect400(post('boss', T0, '{"id":"x","id":"y"}'), /not JSON/, 'duplicate key');
  await expect400(post('boss', T0, { id: 'x', 'we"ird\\key': 1 }), /has no field 'we"ird\\key'/, 'a quote in a key');
  await expect400(post('boss', T0, { id: 'x', [`a${'é'.repeat(30)}`]: 1 }), /has no field/, 'a long UTF-8 key');
});

test('users: add with an invite link or a password, update, self-protection, delete', TO, async () => {
  const U = '/api/v1/admin/users';
  let r = await post('boss', U, { name: 'ann', role: 'user', tenant: 'acme', invite: true });
  assert.equal(r.status, 201, r.text);
  const ann = r.json().user;
  assert.match(r.json().invite_link, /^\/login\?invite=[0-9a-f]{64}$/);
  assert.equal(ann.has_password, false);
  assert.equal(ann.tenant, 'acme');
  r = await post('boss', U, { name: 'carl', role: 'viewer', password: 'carl-password-1' });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json().user.tenant, 'default');
  assert.equal(r.json().invite_link, undefined);
  // carl signs in with it: the password really was set
  const login = await srv.request('/api/v1/login', { auth: false, body: { name: 'carl', password: 'carl-password-1' } });
  assert.equal(login.status, 200, login.text);

  assert.equal((await post('boss', U, { name: 'ann', invite: true })).status, 409);
  await expect400(post('boss', U, { name: 'bad name!', invite: true }), /name must be/, 'bad name');
  await expect400(post('boss', U, { name: 'bob' }), /give invite: true .* or a password/, 'neither');
  await expect400(post('boss', U, { name: 'bob', invite: true, password: 'long-enough-1' }), /not both/, 'both');
  await expect400(post('boss', U, { name: 'bob', role: 'root', invite: true }), /role must be admin, user or viewer/, 'role');
  await expect400(post('boss', U, { name: 'bob', password: 'short' }), /at least 10/, 'short password');
  await expect400(post('boss', U, { name: 'bob', tenant: 'nosuch', invite: true }), /no tenant 'nosuch'/, 'tenant');
  await expect400(post('boss', U, { name: 'bob', invite: 'yes' }), /invite must be true or false/, 'invite type');

  r = await post('boss', `${U}/${ann.id}`, { role: 'viewer', weight: 7, quota: { fpm: 10 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json().user.role, 'viewer');
  assert.equal(r.json().user.weight, 7);
  assert.equal(r.json().user.quota.fpm, 10);
  r = await post('boss', `${U}/${ann.id}`, { invite: true });
  assert.equal(r.status, 200, r.text);
  assert.match(r.json().invite_link, /^\/login\?invite=[0-9a-f]{64}$/, 'a new invite link');
  await expect400(post('boss', `${U}/${ann.id}`, {}), /nothing to change/, 'empty update');
  await expect400(post('boss', `${U}/${ann.id}`, { disabled: 'yes' }), /disabled must be true or false/, 'disabled');
  await expect400(post('boss', `${U}/${ann.id}`, { name: 'x' }), /has no field 'name'/, 'rename');
  assert.equal((await post('boss', `${U}/0000000000000000`, { role: 'user' })).status, 404);

  r = await as('boss', U);
  const boss = r.json().users.find((u) => u.name === 'boss');
  assert.ok(boss, r.text);
  r = await post('boss', `${U}/${boss.id}`, { role: 'user' });
  assert.equal(r.status, 409, 'an admin cannot demote themselves');
  assert.match(errorOf(r).message, /your own account/);
  assert.equal((await post('boss', `${U}/${boss.id}/delete`)).status, 409);

  // acme has ann: not deletable yet
  r = await post('boss', '/api/v1/admin/tenants/acme/delete');
  assert.equal(r.status, 409, r.text);
  assert.match(errorOf(r).message, /still has 1 user/);
  assert.equal((await post('boss', '/api/v1/admin/tenants/default/delete')).status, 409);
  r = await post('boss', `${U}/${ann.id}/delete`);
  assert.equal(r.status, 200, r.text);
  assert.ok(!(await as('boss', U)).json().users.some((u) => u.name === 'ann'));
  r = await post('boss', '/api/v1/admin/tenants/acme/delete');
  assert.equal(r.status, 200, r.text);
  assert.equal((await post('boss', '/api/v1/admin/tenants/acme/delete')).status, 404);
});

test('a disabled user is signed out and their keys stop; enabling brings the keys back', TO, async () => {
  const users = (await as('boss', '/api/v1/admin/users')).json().users;
  const joe = users.find((u) => u.name === 'joe');
  assert.equal((await as('joe', '/api/v1/config')).status, 200);
  let r = await post('boss', `/api/v1/admin/users/${joe.id}`, { disabled: true });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json().user.disabled, true);
  await waitUntil(async () => (await as('joe', '/api/v1/config')).status === 401,
    { timeoutMs: T(4000), what: "joe's key refused once he is disabled" });
  r = await post('boss', `/api/v1/admin/users/${joe.id}`, { disabled: false });
  assert.equal(r.status, 200, r.text);
  await waitUntil(async () => (await as('joe', '/api/v1/config')).status === 200,
    { timeoutMs: T(4000), what: "joe's key works again" });
});

test('API keys: listed with user names and no secret; revoke stops the key', TO, async () => {
  let r = await as('boss', '/api/v1/admin/keys');
  assert.equal(r.status, 200, r.text);
  const list = r.json().keys;
  assert.equal(list.length, 3);
  assert.ok(!r.text.includes(keys.joe2.slice(4, 40)), 'no key secret in the listing');
  const spare = list.find((k) => k.name === 'spare');
  assert.equal(spare.user, 'joe');
  assert.deepEqual(spare.scope, ['stream']);
  assert.equal(spare.prefix, keys.joe2.slice(0, spare.prefix.length));
  assert.equal(spare.revoked, false);
  assert.equal((await as('joe2', '/api/v1/config')).status, 200);
  r = await post('boss', `/api/v1/admin/keys/${spare.id}/revoke`);
  assert.equal(r.status, 200, r.text);
  await waitUntil(async () => (await as('joe2', '/api/v1/config')).status === 401,
    { timeoutMs: T(4000), what: 'the revoked key refused' });
  assert.equal((await post('boss', `/api/v1/admin/keys/${spare.id}/revoke`)).status, 409);
  assert.equal((await post('boss', '/api/v1/admin/keys/nosuchkey/revoke')).status, 404);
  assert.equal((await as('boss', '/api/v1/admin/keys')).json().keys.find((k) => k.id === spare.id).revoked, true);
});

test('live sessions: listed with user and tenant; kick ends the WebSocket with kicked_by_admin', TO, async () => {
  const c = await srv.session({}, { token: keys.joe });
  try {
    let r = await as('boss', '/api/v1/admin/sessions');
    assert.equal(r.status, 200, r.text);
    const s = r.json().sessions.find((x) => x.id === c.session.session_id);
    assert.ok(s, `the session is listed: ${r.text}`);
    assert.equal(s.user, 'joe');
    assert.equal(s.tenant, 'default');
    assert.equal(s.connected, true);
    r = await post('boss', `/api/v1/admin/sessions/${s.id}/kick`);
    assert.equal(r.status, 200, r.text);
    const err = await c.nextError('kicked_by_admin');
    assert.match(err.message, /administrator ended this session/);
    const closed = await Promise.race([c.closed, sleep(T(3000)).then(() => null)]);
    assert.ok(closed, 'the socket is closed');
    r = await as('boss', '/api/v1/admin/sessions');
    assert.ok(!r.json().sessions.some((x) => x.id === s.id), 'gone from the list');
    // its secret no longer resumes it
    const again = await srv.connect({ token: keys.joe });
    const m = await again.hello({ session_id: s.id, resume_secret: c.session.resume_secret }, { allowError: true });
    assert.equal(m.code, 'session_not_found');
    await again.close();
    assert.equal((await post('boss', `/api/v1/admin/sessions/${s.id}/kick`)).status, 404);
    assert.equal((await post('boss', '/api/v1/admin/sessions/not-a-session/kick')).status, 404);
  } finally {
    await c.close();
  }
});

test('backends: listed without keys; a drained one takes no new request, enable brings it back', TO, async () => {
  let r = await as('boss', '/api/v1/admin/backends');
  assert.equal(r.status, 200, r.text);
  const list = r.json().backends;
  assert.deepEqual(list.map((b) => b.id), ['a', 'b']);
  assert.equal(list[0].url, fa.url);
  assert.equal(list[0].draining, false);
  assert.equal(typeof list[0].window, 'number');

  const clients = [];
  for (let i = 0; i < 4; i++) {
    const c = await srv.session({ settings: { prompt: `drain ${i}`, interval_ms: 100 } }, { token: keys.boss });
    await c.start();
    c.autoFeed(J320);
    clients.push(c);
  }
  const answers = () => clients.reduce((n, c) => n + c.seen('vlm_response').length, 0);
  try {
    await waitUntil(async () => (await fakevlmStats(fa)).requests > 0 && (await fakevlmStats(fb)).requests > 0,
      { timeoutMs: T(8000), what: 'both backends get requests' });
    r = await post('boss', '/api/v1/admin/backends/a/drain');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json().draining, true);
    await sleep(T(400)); // what a had in flight finishes
    const aAt = (await fakevlmStats(fa)).requests;
    const n0 = answers();
    await waitUntil(() => answers() >= n0 + 12, { timeoutMs: T(10000), what: '12 more answers' });
    assert.equal((await fakevlmStats(fa)).requests, aAt, 'the drained backend got no new request');
    r = await as('boss', '/api/v1/admin/backends');
    assert.equal(r.json().backends[0].draining, true);
    r = await post('boss', '/api/v1/admin/backends/a/enable');
    assert.equal(r.status, 200, r.text);
    await waitUntil(async () => (await fakevlmStats(fa)).requests > aAt,
      { timeoutMs: T(8000), what: 'the enabled backend takes requests again' });
    assert.equal((await post('boss', '/api/v1/admin/backends/zz/drain')).status, 404);
  } finally {
    await stopAndClose(clients);
  }
});

test('usage summary: answers per UTC day per tenant; bad days refused', TO, async () => {
  let r = await as('boss', '/api/v1/admin/usage/summary?days=7');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json().days.length, 7);
  assert.equal(r.json().days[6], new Date().toISOString().slice(0, 10), 'the last day is today (UTC)');
  // the answers of the sessions above reach the database through the usage journal
  await waitUntil(async () => {
    r = await as('boss', '/api/v1/admin/usage/summary?days=7');
    const d = r.json().tenants.find((t) => t.id === 'default');
    return d && d.answers[6] > 0 && d.tokens[6] > 0;
  }, { timeoutMs: T(10000), what: "today's answers of tenant default in the summary" });
  for (const bad of ['days=0', 'days=91', 'days=abc', 'days=1.5']) {
    await expect400(as('boss', `/api/v1/admin/usage/summary?${bad}`), /days must be a whole number from 1 to 90/, bad);
  }
});

test('audit log: every change above has its row, latest first, limit honoured', TO, async () => {
  const r = await as('boss', '/api/v1/admin/audit?limit=200');
  assert.equal(r.status, 200, r.text);
  const rows = r.json().audit;
  const mine = rows.filter((a) => a.actor === 'boss');
  const actions = new Set(mine.map((a) => a.action));
  for (const a of ['tenant.put', 'tenant.delete', 'user.add', 'user.update', 'user.delete', 'key.revoke',
    'session.kick', 'backend.drain', 'backend.enable']) {
    assert.ok(actions.has(a), `an audit row for ${a} (have: ${[...actions].join(', ')})`);
  }
  assert.ok(mine.some((a) => a.action === 'user.add' && a.target === 'ann' && /invite/.test(a.detail)));
  assert.ok(mine.some((a) => a.action === 'backend.drain' && a.target === 'a'));
  assert.ok(mine.every((a) => a.ip === '127.0.0.1'), 'the client address is recorded');
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i - 1].t_ms >= rows[i].t_ms, 'latest first');
  assert.equal((await as('boss', '/api/v1/admin/audit?limit=2')).json().audit.length, 2);
  await expect400(as('boss', '/api/v1/admin/audit?limit=0'), /limit must be/, 'limit 0');
  await expect400(as('boss', '/api/v1/admin/audit?limit=5000'), /limit must be/, 'limit 5000');
});

test('a cookie sign-in must send X-CSRF-Token on admin changes', TO, async () => {
  const login = await srv.request('/api/v1/login', { auth: false, body: { name: 'boss', password: ADMIN_PW } });
  assert.equal(login.status, 200, login.text);
  const cookie = [].concat(login.headers['set-cookie'] || []).map((c) => c.split(';')[0]).join('; ');
  const csrf = login.json().csrf;
  assert.ok(cookie.includes('livevlm_session=') && csrf, login.text);
  const body = { id: 'csrf-test', weight: 2 };
  const without = await srv.request('/api/v1/admin/tenants', { auth: false, headers: { Cookie: cookie }, body });
  assert.equal(without.status, 403, without.text);
  const withTok = await srv.request('/api/v1/admin/tenants',
    { auth: false, headers: { Cookie: cookie, 'X-CSRF-Token': csrf }, body });
  assert.equal(withTok.status, 201, withTok.text);
  const list = await srv.request('/api/v1/admin/tenants', { auth: false, headers: { Cookie: cookie } });
  assert.equal(list.status, 200, 'a GET needs no token');
});

test('--auth token: the token holder is the admin; accounts routes say accounts are off, the rest work', TO, async () => {
  const t = await startLivevlm({ backends: [{ id: 'a', url: fa.url }] });
  let r = await t.request('/api/v1/admin/users');
  assert.equal(r.status, 409, r.text);
  assert.equal(errorOf(r).code, 'accounts_off');
  assert.match(errorOf(r).message, /--auth accounts/);
  r = await t.request('/api/v1/admin/sessions');
  assert.equal(r.status, 200, r.text);
  r = await t.request('/api/v1/admin/backends/a/drain', { body: {} });
  assert.equal(r.status, 200, r.text);
  await waitUntil(async () => (await t.request('/api/v1/admin/audit')).json().audit
    .some((a) => a.action === 'backend.drain' && a.target === 'a'), { timeoutMs: T(4000), what: 'the audit row' });
  assert.equal((await t.request('/api/v1/admin/users', { auth: false })).status, 401);
  await t.stop();
});
