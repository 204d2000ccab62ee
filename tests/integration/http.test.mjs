// http.test.mjs - HTTP routes and authentication (docs/protocol.md "Authentication", "HTTP
// routes", "Caps"): 401 without a credential, Bearer, login cookie, /?token=, logout, Origin
// check on the upgrade, body/header/URL caps, 404, /healthz, the UI, models, stats, and that the
// token never shows up in the log except in the start-up URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakevlm, startLivevlm, stopAll, httpRequest, T } from '../lib/harness.mjs';

let fake;
let srv;
const TO = { timeout: T(30000) };

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1', 'fake-vlm-2'] });
  srv = await startLivevlm({ backends: [fake] });
});
after(stopAll);

function setCookies(res) {
  const sc = res.headers['set-cookie'];
  return Array.isArray(sc) ? sc : sc ? [sc] : [];
}

function authCookie(res) {
  const c = setCookies(res).find((x) => /^livevlm_auth=/.test(x));
  assert.ok(c, `a livevlm_auth cookie is set (Set-Cookie: ${JSON.stringify(setCookies(res))})`);
  return c;
}

function assertErrorBody(res, code) {
  let body;
  try { body = res.json(); } catch { assert.fail(`error body is not JSON: ${res.text.slice(0, 200)}`); }
  assert.equal(typeof body.error, 'object', res.text);
  assert.equal(typeof body.error.message, 'string');
  if (code) assert.equal(body.error.code, code);
}

test('/healthz answers 200 without a credential', TO, async () => {
  const r = await srv.request('/healthz', { auth: false });
  assert.equal(r.status, 200);
  assert.match(r.text, /ok/);
});

test('the UI is public', TO, async () => {
  const r = await srv.request('/', { auth: false });
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'] || '', /text\/html/);
  assert.match(r.text, /<html|<!doctype/i);
  const r2 = await srv.request('/index.html', { auth: false });
  assert.equal(r2.status, 200);
});

test('API routes need a credential: 401 JSON error without one or with a wrong one', TO, async () => {
  for (const p of ['/api/v1/config', '/api/v1/models', '/models', '/api/v1/stats']) {
    const r = await srv.request(p, { auth: false });
    assert.equal(r.status, 401, `${p} without credential`);
    assertErrorBody(r);
  }
  // Wrong credentials may count as failed logins (rate limited after 10): only a few here.
  const w = await srv.request('/api/v1/config', { auth: false, headers: { Authorization: `Bearer ${'a'.repeat(64)}` } });
  assert.equal(w.status, 401, 'wrong Bearer token');
  const c = await srv.request('/api/v1/stats', { auth: false, headers: { Cookie: `livevlm_auth=${'b'.repeat(64)}` } });
  assert.equal(c.status, 401, 'wrong cookie');
});

test('the WebSocket upgrade needs a credential: 401', TO, async () => {
  await assert.rejects(srv.connect({ auth: false }), (e) => e.status === 401);
  await assert.rejects(srv.connect({ token: 'c'.repeat(64) }), (e) => e.status === 401);
  const c = await srv.connect();
  await c.hello();
  await c.close();
});

test('GET /api/v1/config with the Bearer token', TO, async () => {
  const r = await srv.request('/api/v1/config');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'] || '', /application\/json/);
  const cfg = r.json();
  assert.equal(cfg.protocol, 1);
  assert.equal(typeof cfg.version, 'string');
  assert.equal(cfg.auth, 'token');
  assert.ok(Array.isArray(cfg.backends) && cfg.backends.length === 1, JSON.stringify(cfg.backends));
  const b = cfg.backends[0];
  assert.equal(b.id, 'fake');
  assert.equal(b.url_host, `127.0.0.1:${fake.port}`);
  assert.ok(!JSON.stringify(b).includes('/v1'), 'only host:port of the backend is shown');
  assert.deepEqual([...b.models].sort(), ['fake-vlm-1', 'fake-vlm-2']);
  assert.equal(cfg.no_backend_help, null);
  assert.equal(typeof cfg.defaults, 'object');
  const L = cfg.limits;
  assert.equal(L.max_frame_bytes, 4194304);
  assert.equal(L.max_text_message_bytes, 65536);
  assert.equal(L.max_prompt_bytes, 4000);
  assert.equal(L.max_frame_side, 8192);
  assert.equal(L.max_frame_pixels, 16777216);
  assert.equal(L.max_sessions_per_ip, 100); // a classroom behind one NAT address (issue 12)
  assert.equal(L.max_sockets_per_ip, 200);
  assert.ok(Array.isArray(cfg.presets) && cfg.presets.length >= 1);
  for (const p of cfg.presets) {
    assert.equal(typeof p.id, 'string');
    assert.equal(typeof p.label, 'string');
    assert.equal(typeof p.prompt, 'string');
  }
});

test('GET /api/v1/models and /models list the backend models', TO, async () => {
  for (const p of ['/api/v1/models', '/models', '/api/v1/models?refresh=1']) {
    const r = await srv.request(p);
    assert.equal(r.status, 200, p);
    const j = r.json();
    assert.ok(Array.isArray(j.models), p);
    const ids = j.models.map((m) => m.id).sort();
    assert.deepEqual(ids, ['fake-vlm-1', 'fake-vlm-2'], p);
    for (const m of j.models) assert.equal(m.backend, 'fake');
    assert.ok(Array.isArray(j.backends));
  }
});

test('GET /api/v1/stats gives the system stats object', TO, async () => {
  const r = await srv.request('/api/v1/stats');
  assert.equal(r.status, 200);
  const s = r.json();
  for (const f of ['hostname', 'cpu_percent', 'ram_used_gb', 'ram_total_gb', 'ram_percent', 'gpu_name', 'history']) {
    assert.ok(f in s, `stats.${f} present: ${JSON.stringify(s).slice(0, 300)}`);
  }
  assert.ok(s.ram_total_gb > 0);
  for (const k of ['cpu_util', 'ram_used', 'gpu_util', 'vram_used']) assert.ok(Array.isArray(s.history[k]), `history.${k}`);
});

test('POST /api/v1/login: 401 bad_token for a wrong token, 204 + HttpOnly cookie for the right one', TO, async () => {
  const bad = await srv.request('/api/v1/login', { auth: false, body: { token: 'd'.repeat(64) } });
  assert.equal(bad.status, 401);
  assertErrorBody(bad, 'bad_token');

  const ok = await srv.request('/api/v1/login', { auth: false, body: { token: srv.token } });
  assert.equal(ok.status, 204);
  const cookie = authCookie(ok);
  assert.match(cookie, /HttpOnly/i);
  assert.match(cookie, /SameSite=Strict/i);
  assert.match(cookie, /Path=\//i);
  assert.doesNotMatch(cookie, /;\s*Secure/i, 'no Secure flag without TLS');
  const pair = cookie.split(';')[0];

  const cfg = await srv.request('/api/v1/config', { auth: false, headers: { Cookie: pair } });
  assert.equal(cfg.status, 200, 'the cookie works on the API');
  const c = await srv.connect({ auth: false, cookie: pair });
  await c.hello();
  await c.close();
});

test('GET /?token=T: 303 to / with the cookie; a wrong T gives 401', TO, async () => {
  const r = await srv.request(`/?token=${srv.token}`, { auth: false });
  assert.equal(r.status, 303);
  assert.equal(r.headers.location, '/');
  const cookie = authCookie(r);
  assert.match(cookie, /HttpOnly/i);
  const pair = cookie.split(';')[0];
  assert.equal(pair, `livevlm_auth=${srv.token}`);
  const cfg = await srv.request('/api/v1/config', { auth: false, headers: { Cookie: pair } });
  assert.equal(cfg.status, 200);

  const w = await srv.request(`/?token=${'e'.repeat(64)}`, { auth: false });
  assert.equal(w.status, 401);
  assert.ok(!setCookies(w).some((x) => /^livevlm_auth=[0-9a-f]/.test(x)), 'no cookie for a wrong token');
});

test('POST /api/v1/logout: 204 and the cookie is cleared', TO, async () => {
  const r = await srv.request('/api/v1/logout', { auth: false, method: 'POST', body: '' });
  assert.equal(r.status, 204);
  const c = setCookies(r).find((x) => /^livevlm_auth=/.test(x));
  assert.ok(c, 'logout sets the cookie to clear it');
  assert.ok(/Max-Age=0/i.test(c) || /Expires=.*19[67]\d/i.test(c) || /^livevlm_auth=;/.test(c), c);
});

test('WebSocket upgrade with a foreign Origin: 403; with our own Origin: accepted', TO, async () => {
  await assert.rejects(srv.connect({ origin: 'http://evil.example' }), (e) => e.status === 403);
  await assert.rejects(srv.connect({ origin: `http://127.0.0.1:${srv.port + 1}` }), (e) => e.status === 403);
  await assert.rejects(srv.connect({ origin: `https://127.0.0.1:${srv.port}.evil.example` }), (e) => e.status === 403);
  const ok = await srv.connect({ origin: `http://127.0.0.1:${srv.port}` });
  await ok.hello();
  await ok.close();
  const none = await srv.connect(); // no Origin header (scripts): fine
  await none.hello();
  await none.close();
});

test('a subprotocol offer of livevlm.v1 is answered with livevlm.v1', TO, async () => {
  const c = await srv.connect({ protocols: ['livevlm.v1'] });
  assert.equal(c.ws.protocol, 'livevlm.v1');
  await c.hello();
  await c.close();
});

test('caps: request body over 64 KiB → 413', TO, async () => {
  const body = JSON.stringify({ token: 'x'.repeat(70 * 1024) });
  const r = await srv.request('/api/v1/login', { auth: false, body, headers: { 'Content-Type': 'application/json' } });
  assert.equal(r.status, 413);
  assert.equal((await srv.request('/healthz', { auth: false })).status, 200);
});

test('caps: header block over 8 KiB → 431 with the JSON error body; the server keeps serving', TO, async () => {
  const h = await httpRequest({ port: srv.port, path: '/healthz', headers: { 'X-Filler': 'y'.repeat(10 * 1024) } })
    .then((x) => x, (e) => `connection error ${e.code || e.message}`);
  assert.equal(h.status, 431, String(h));
  assertErrorBody(h, 'headers_too_large');
  assert.equal(h.headers.connection, 'close');
  // Just under the cap is fine.
  const ok = await httpRequest({ port: srv.port, path: '/healthz', headers: { 'X-Filler': 'y'.repeat(6 * 1024) } })
    .then((x) => x.status, (e) => `connection error ${e.code || e.message}`);
  assert.equal(ok, 200);
  assert.equal((await srv.request('/healthz', { auth: false })).status, 200);
});

test('caps: URL over 2 KiB → 414', TO, async () => {
  const u = await httpRequest({ port: srv.port, path: `/healthz?q=${'z'.repeat(3 * 1024)}` })
    .then((x) => x.status, (e) => `connection error ${e.code || e.message}`);
  assert.equal(u, 414);
  const a = await httpRequest({ port: srv.port, path: `/api/v1/config?q=${'z'.repeat(3 * 1024)}`, headers: srv.authHeader })
    .then((x) => x.status, (e) => `connection error ${e.code || e.message}`);
  assert.equal(a, 414);
  assert.equal((await srv.request('/healthz', { auth: false })).status, 200);
});

test('unknown routes: 404', TO, async () => {
  const r = await srv.request('/api/v1/no-such-route');
  assert.equal(r.status, 404);
  const s = await srv.request('/no-such-file.html', { auth: false });
  assert.equal(s.status, 404);
  const t = await srv.request('/../../etc/passwd', { auth: false });
  assert.ok([400, 404].includes(t.status), `path traversal → ${t.status}`);
  assert.doesNotMatch(t.text, /root:/);
});

// stdout and stderr share the log file here, and stdout is not a terminal: the start-up URL is
// printed without the token (edges.test.mjs checks --print-token-url and a terminal)
test('the token appears nowhere in the output when stdout is not a terminal', TO, async () => {
  const text = srv.proc.logText();
  assert.match(text, new RegExp(`http://localhost:${srv.port}/\\s`), 'the start-up URL is printed');
  const lines = text.split('\n').filter((l) => l.includes(srv.token));
  assert.deepEqual(lines, [], 'no line carries the token');
});

test('failed logins are rate limited: 429 after 10 failures a minute', TO, async () => {
  const s2 = await startLivevlm({ backends: [fake] }); // its own counters
  try {
    const codes = [];
    for (let i = 0; i < 12; i++) {
      const r = await s2.request('/api/v1/login', { auth: false, body: { token: `${i}`.padStart(64, 'f') } });
      codes.push(r.status);
      if (r.status === 429) assertErrorBody(r, 'rate_limited');
    }
    assert.deepEqual(codes.slice(0, 10), Array(10).fill(401), codes.join(','));
    assert.deepEqual(codes.slice(10), [429, 429], codes.join(','));
    // The Bearer token keeps working for API calls.
    assert.equal((await s2.request('/api/v1/config')).status, 200);
  } finally {
    await s2.stop();
  }
});
