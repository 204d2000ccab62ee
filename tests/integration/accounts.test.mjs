// accounts.test.mjs - accounts as the default credential system of `livevlm serve`
// (docs/internals/accounts.md): the first admin's password printed once and never logged; the
// `livevlm user|key|tenant|quota` commands working on a running server's database (seen within
// ~1.5 s); API keys as Bearer on HTTP and the WebSocket; revoked and expired keys and disabled
// users refused with their reason; a viewer gets no frames through; --auth proxy believes the user
// header from a trusted proxy peer only; cookie POSTs need the CSRF token; --auth token unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  cli, startFakevlm, startLivevlm, stopAll, httpRequestFrom, waitUntil, makeTempDir, JPEG_320, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
const SEEN_MS = T(1500); // a running server picks a database change up within a second

let fake;
before(async () => { fake = await startFakevlm({ models: ['fake-vlm-1'] }); });
after(stopAll);

/** Resolves the HTTP status and body of a refused upgrade, or the open client. */
async function upgrade(srv, opts) {
  try {
    return { status: 101, client: await srv.connect(opts) };
  } catch (e) {
    if (!e.status) throw e;
    return { status: e.status, body: e.body };
  }
}

const bearer = (k) => ({ auth: false, headers: { Authorization: `Bearer ${k}` } });

/** A key made with the CLI for user, and a request with it answering 200 within SEEN_MS. */
async function newKey(srv, user, extra = []) {
  const r = cli(['key', 'add', user, ...extra], { configDir: srv.configDir });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.lines.length, 1, 'the key alone on its line');
  assert.match(r.lines[0], /^lvk_[0-9a-f]{64}$/);
  return r.lines[0];
}

// Each wait polls from an address of its own: the polls of a key not yet known are failed
// credentials, counted per address (10 a minute, then 429).
let nextAddr = 1;
async function waitStatus(srv, key, want, what) {
  const localAddress = `127.0.2.${nextAddr++}`;
  let last;
  const t0 = Date.now();
  while (Date.now() - t0 < SEEN_MS) {
    last = await httpRequestFrom({ localAddress, port: srv.port, path: '/api/v1/config',
      headers: { Authorization: `Bearer ${key}` } });
    if (last.status === want) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: still ${last.status} ${last.text} after ${SEEN_MS} ms`);
}

test('a fresh server makes an admin, prints its password once on stdout and never logs it', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  assert.match(srv.adminPassword || '', /^[0-9a-f]{24}$/, 'the first admin password is printed');
  const out = fs.readFileSync(srv.stdoutPath, 'utf8');
  assert.equal(out.split(srv.adminPassword).length - 1, 1, 'printed exactly once');
  assert.ok(!srv.proc.logText().includes(srv.adminPassword), 'the log never holds it');
  assert.match(srv.proc.logText(), /auth accounts/);
  assert.ok(!fs.existsSync(path.join(srv.configDir, 'token')), 'no shared token with accounts');
  const cfg = await srv.request('/api/v1/config', { auth: false });
  assert.equal(cfg.status, 401, 'no credential, no API');
  assert.match(cfg.json().error.message, /sign in|API key/);
  // the admin exists in the database: the CLI sees it
  const users = cli(['user', 'list'], { configDir: srv.configDir });
  assert.equal(users.code, 0, users.stderr);
  assert.deepEqual(users.lines, ['admin admin default active']);
  await srv.stop();
  // a second start with the same database makes no second admin and prints no password
  const again = await startLivevlm({ backends: [fake], auth: 'accounts', configDir: srv.configDir });
  assert.equal(again.adminPassword, null);
  await again.stop();
});

test('the CLI works on a running server\'s database; API keys work on HTTP and the WebSocket', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  const dir = srv.configDir;
  let r = cli(['user', 'add', 'alice'], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.lines.length, 2, 'the id, then the random password');
  assert.match(r.lines[0], /^[0-9a-f]{16}$/);
  r = cli(['user', 'add', 'bob', '--role', 'viewer', '--password-stdin'], { configDir: dir, input: 'bob-password-1\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.lines.length, 1, 'only the id: the password came from stdin');
  r = cli(['user', 'add', 'carol', '--invite'], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.lines[1], /^\/login\?invite=[0-9a-f]{64}$/);
  r = cli(['user', 'add', 'alice'], { configDir: dir });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /already exists/);
  r = cli(['user', 'add', 'dave', '--role', 'boss'], { configDir: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--role takes admin, user or viewer/);
  r = cli(['user', 'list'], { configDir: dir });
  assert.deepEqual(r.lines.sort(), ['admin admin default active', 'alice user default active',
    'bob viewer default active', 'carol user default active']);
  for (const c of ['user', 'key', 'tenant', 'quota']) {
    r = cli([c, '--help'], { configDir: null });
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`livevlm ${c} `));
  }

  // a key works on HTTP within the poll period, and on the WebSocket
  const key = await newKey(srv, 'alice', ['--name', 'ci']);
  const ok = await waitStatus(srv, key, 200, 'a new key works');
  assert.equal(ok.json().auth, 'accounts');
  srv.apiKey = key;
  const c = await srv.session({});
  c.send({ type: 'start' });
  c.autoFeed(JPEG_320());
  const answer = await c.next('vlm_response', { timeoutMs: T(10000) });
  assert.ok(answer, 'the key holder streams');
  c.close();
  r = cli(['key', 'list', 'alice'], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.lines.length, 1);
  const [keyId, prefix, owner, scope, state, , , label] = r.lines[0].split(' ');
  assert.deepEqual([prefix, owner, scope, state, label], [key.slice(0, 12), 'alice', 'stream', 'active', 'ci']);

  // revoke: 401 with the reason, on HTTP and on the upgrade
  r = cli(['key', 'revoke', keyId], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  const refused = await waitStatus(srv, key, 401, 'a revoked key is refused');
  assert.match(refused.json().error.message, /revoked/);
  const up = await upgrade(srv, {});
  assert.equal(up.status, 401);
  srv.apiKey = null;

  // an expired key: made with a day, the test cannot wait a day; a key never made says unknown
  r = await srv.request('/api/v1/config', bearer(`lvk_${'0'.repeat(64)}`));
  assert.equal(r.status, 401);
  assert.match(r.json().error.message, /unknown or revoked/);

  // disable the user: its keys stop with that reason; enable brings them back
  const key2 = await newKey(srv, 'alice');
  await waitStatus(srv, key2, 200, 'the second key works');
  assert.equal(cli(['user', 'disable', 'alice'], { configDir: dir }).code, 0);
  const dis = await waitStatus(srv, key2, 401, 'a disabled user\'s key is refused');
  assert.match(dis.json().error.message, /disabled/);
  assert.match(cli(['user', 'list'], { configDir: dir }).stdout, /^alice user default disabled$/m);
  assert.equal(cli(['user', 'enable', 'alice'], { configDir: dir }).code, 0);
  await waitStatus(srv, key2, 200, 'enabled again');

  // passwd, tenants and quotas
  r = cli(['user', 'passwd', 'alice'], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.lines[0], /^[0-9a-f]{24}$/);
  r = cli(['user', 'passwd', 'nobody'], { configDir: dir });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no user named 'nobody'/);
  r = cli(['tenant', 'add', 'acme', '--name', 'Acme Inc', '--weight', '3', '--fpm', '10', '--models', 'm1,m2'],
    { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  r = cli(['tenant', 'set', 'acme', '--answers-day', '50'], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  r = cli(['tenant', 'list'], { configDir: dir });
  assert.match(r.stdout, /^acme weight=3 fpm=10 answers_day=50 tokens_day=0 sessions=0 backends=\* models=m1,m2 name=Acme Inc$/m);
  assert.match(r.stdout, /^default weight=1 /m);
  r = cli(['tenant', 'add', 'acme'], { configDir: dir });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /already exists/);
  r = cli(['tenant', 'set', 'acme', '--weight', '0'], { configDir: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--weight takes a whole number from 1 to 1000/);
  r = cli(['user', 'add', 'erin', '--tenant', 'acme'], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(cli(['user', 'list'], { configDir: dir }).stdout, /^erin user acme active$/m);
  r = cli(['quota', 'set', 'erin', '--fpm', '5', '--weight', '7'], { configDir: dir });
  assert.equal(r.code, 0, r.stderr);
  r = cli(['key', 'add', 'erin', '--scope', 'admin'], { configDir: dir });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /only an admin user's key may have the admin scope/);
  // a key of a tenant's user acts for that tenant: the WebSocket's session is charged to it
  const erinKey = await newKey(srv, 'erin');
  await waitStatus(srv, erinKey, 200, 'erin\'s key works');
  r = cli(['user', 'frob'], { configDir: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown action 'frob'/);
  await srv.stop();
});

test('a viewer may open the WebSocket but its frames and its start get forbidden_role', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  assert.equal(cli(['user', 'add', 'vera', '--role', 'viewer'], { configDir: srv.configDir }).code, 0);
  const key = await newKey(srv, 'vera');
  await waitStatus(srv, key, 200, 'the viewer\'s key works');
  srv.apiKey = key;
  const c = await srv.session({});
  c.send({ type: 'start' });
  const e1 = await c.nextError('forbidden_role', { timeoutMs: T(3000) });
  assert.match(e1.message, /viewer/);
  c.sendFrame(JPEG_320());
  await c.nextError('forbidden_role', { timeoutMs: T(3000) });
  await c.expectNone('credit', 500, 'a viewer is never asked for a frame');
  c.close();
  const an = await srv.request('/api/v1/analyze', { method: 'POST', body: JPEG_320(),
    headers: { 'Content-Type': 'image/jpeg' } });
  assert.equal(an.status, 403);
  assert.equal(an.json().error.code, 'forbidden_role');
  await srv.stop();
});

test('cookie sign-ins: a POST needs the X-CSRF-Token from the sign-in; Bearer needs none', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  const login = await srv.request('/api/v1/login', { auth: false, body: { name: 'admin', password: srv.adminPassword } });
  assert.equal(login.status, 200, login.text);
  const csrf = login.json().csrf;
  assert.match(csrf, /^[0-9a-f]{64}$/);
  const cookie = String(login.headers['set-cookie']).match(/livevlm_session=[0-9a-f]{64}/)[0];
  // GET with the cookie: fine
  let r = await srv.request('/api/v1/config', { auth: false, headers: { Cookie: cookie } });
  assert.equal(r.status, 200, r.text);
  // POST with the cookie and no (or a wrong) CSRF token: 403
  const post = (headers) => srv.request('/api/v1/analyze', { auth: false, method: 'POST', body: JPEG_320(),
    headers: { 'Content-Type': 'image/jpeg', Cookie: cookie, ...headers } });
  r = await post({});
  assert.equal(r.status, 403);
  assert.equal(r.json().error.code, 'csrf');
  assert.match(r.json().error.message, /X-CSRF-Token/);
  r = await post({ 'X-CSRF-Token': '0'.repeat(64) });
  assert.equal(r.status, 403);
  r = await post({ 'X-CSRF-Token': csrf });
  assert.equal(r.status, 200, r.text);
  // an API key POSTs without one
  const key = await newKey(srv, 'admin');
  await waitStatus(srv, key, 200, 'the admin key works');
  r = await srv.request('/api/v1/analyze', { ...bearer(key), method: 'POST', body: JPEG_320(),
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'image/jpeg' } });
  assert.equal(r.status, 200, r.text);
  // the WebSocket opens with the cookie (a GET)
  const up = await upgrade(srv, { auth: false, cookie });
  assert.equal(up.status, 101);
  up.client.close();
  await srv.stop();
});

test('--auth proxy: the user header counts from a trusted proxy peer only; the user is made on first sight', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'proxy', args: ['--trusted-proxy', '127.0.0.1'] });
  const from = (localAddress, user) => httpRequestFrom({ localAddress, port: srv.port, path: '/api/v1/config',
    headers: user ? { 'X-Forwarded-User': user } : {} });
  let r = await from('127.0.0.2', 'mallory');
  assert.equal(r.status, 401, 'a peer that is not a trusted proxy names nobody');
  assert.ok(!cli(['user', 'list'], { configDir: srv.configDir }).stdout.includes('mallory'));
  r = await from('127.0.0.1', 'pat');
  assert.equal(r.status, 200, r.text);
  assert.match(cli(['user', 'list'], { configDir: srv.configDir }).stdout, /^pat user default active$/m);
  r = await from('127.0.0.1', 'bad name!');
  assert.equal(r.status, 401);
  assert.match(r.json().error.message, /no valid user name/);
  r = await from('127.0.0.1', null);
  assert.equal(r.status, 401, 'from the proxy without the header: no credential');
  // a disabled proxy user is refused
  assert.equal(cli(['user', 'disable', 'pat'], { configDir: srv.configDir }).code, 0);
  await waitUntil(async () => (await from('127.0.0.1', 'pat')).status === 401, { timeoutMs: SEEN_MS, what: 'pat refused' });
  await srv.stop();
});

test('--auth token is unchanged: the token works, nothing else; no admin is made', TO, async () => {
  const srv = await startLivevlm({ backends: [fake] });
  assert.match(srv.token, /^[0-9a-f]{64}$/);
  assert.equal((await srv.request('/api/v1/config')).json().auth, 'token');
  assert.equal((await srv.request('/api/v1/config', { auth: false })).status, 401);
  assert.equal((await srv.request('/api/v1/config', bearer(`lvk_${'1'.repeat(64)}`))).status, 401);
  assert.ok(!srv.proc.logText().includes('administrator'));
  const c = await srv.session({});
  c.close();
  await srv.stop();
});

test('per-account password failures lock that account\'s sign-in for a minute', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  const statuses = [];
  for (let i = 0; i < 6; i++) {
    const r = await httpRequestFrom({ localAddress: `127.0.1.${i + 1}`, port: srv.port, method: 'POST',
      path: '/api/v1/login', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'admin', password: 'wrong-password' }) });
    statuses.push(r.status);
  }
  assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401]);
  assert.equal(statuses[5], 429, 'the sixth try, from yet another address, finds the account locked');
  const r = await srv.request('/api/v1/login', { auth: false, body: { name: 'admin', password: srv.adminPassword } });
  assert.equal(r.status, 429, 'even the right password waits out the lock');
  await srv.stop();
});

test('a database that cannot be opened stops the start with a sentence', TO, async () => {
  const dir = makeTempDir('acct-bad');
  const file = path.join(dir, 'not-a-db');
  fs.writeFileSync(file, 'this is not SQLite, just text long enough to be read as a header'.repeat(20));
  const r = cli(['user', 'list', '--db', `sqlite:${file}`], { configDir: dir });
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.trim().length > 10, 'a sentence on stderr');
  assert.equal(r.stdout, '');
});
