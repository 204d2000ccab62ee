// attack_http.test.mjs - the front door under hostile and careless clients (issue 12, points 1, 4,
// 6, 7 and 8): error responses that must not loop, pipelining, chunked bodies, odd header names,
// slowloris from one address while another address is served (plain and TLS, HTTP and a live
// WebSocket session), slow bodies, unmasked WebSocket frames, HSTS, Origin on POST, failed
// credentials rate limited without locking out the right one, and close 1001 on SIGTERM.
// Attackers connect from 127.0.0.2 (and .4), bystanders from 127.0.0.3: the server sees other
// client addresses. Every loop is bounded in count and time; traffic stays on loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startFakevlm, startLivevlm, stopAll, sleep, rawConnect, parseHttpResponses, httpRequestFrom,
  processCpuMs, JPEG_320, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
const ATTACKER = '127.0.0.2';
const BYSTANDER = '127.0.0.3';

let fake;
let srv;    // plain
let tsrv;   // TLS

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'], slots: 16, ttftMs: 10, tokenMs: 2, tokens: 4 });
  srv = await startLivevlm({ backends: [fake], logLevel: 'info' });
  tsrv = await startLivevlm({ backends: [fake], tls: true, logLevel: 'info' });
});
after(stopAll);

const head = (lines) => `${lines.join('\r\n')}\r\n\r\n`;

/** Send bytes on a fresh connection and collect what comes back for ms (or until it closes). */
async function exchange(server, bytes, ms = 1000, opts = {}) {
  const c = await rawConnect({ port: server.port, tls: server.tls, localAddress: opts.localAddress });
  c.write(bytes);
  await Promise.race([c.closed, sleep(ms)]);
  const data = c.data();
  const closed = c.isClosed();
  c.destroy();
  return { data, closed };
}

// ---------------------------------------------------------------------------------------------
// (a) an error response followed by more bytes: one response per request, no loop

test('POST answered with an error, then a stray CRLF: exactly one response, bounded bytes, low CPU', TO, async () => {
  const c = await rawConnect({ port: srv.port });
  const cpu0 = processCpuMs(srv.proc.pid);
  c.write(`${head(['POST /api/v1/nothing HTTP/1.1', 'Host: x', 'Content-Length: 2'])}{}\r\n`);
  await sleep(1000);
  const cpu = processCpuMs(srv.proc.pid) - cpu0;
  const data = c.data();
  c.destroy();
  assert.ok(data.length < 4096, `bytes received in 1 s: ${data.length}`);
  const { responses, rest } = parseHttpResponses(data);
  assert.equal(responses.length, 1, `one response: ${data.toString('latin1').slice(0, 400)}`);
  assert.equal(responses[0].status, 401);
  assert.equal(JSON.parse(responses[0].body).error.code, 'unauthorized');
  assert.equal(rest.length, 0, 'nothing after it');
  assert.ok(cpu < 300, `server CPU over that second: ${cpu} ms`);
});

test('POST answered with an error, then a pipelined request: one response each, in order', TO, async () => {
  const cpu0 = processCpuMs(srv.proc.pid);
  const { data } = await exchange(srv,
    `${head(['POST /api/v1/nothing HTTP/1.1', 'Host: x', 'Content-Length: 2'])}{}` +
    head(['GET /healthz HTTP/1.1', 'Host: x']), 1000);
  const cpu = processCpuMs(srv.proc.pid) - cpu0;
  assert.ok(data.length < 4096, `bytes received in 1 s: ${data.length}`);
  const { responses, rest } = parseHttpResponses(data);
  assert.deepEqual(responses.map((r) => r.status), [401, 200], data.toString('latin1').slice(0, 600));
  assert.equal(responses[1].body.toString(), 'ok\n');
  assert.equal(rest.length, 0);
  assert.ok(cpu < 300, `server CPU over that second: ${cpu} ms`);
});

test('a malformed request gets one 400 with connection: close, and nothing after it is answered', TO, async () => {
  const { data, closed } = await exchange(srv,
    `GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n${head(['GET /healthz HTTP/1.1', 'Host: x'])}`, 1500);
  const { responses } = parseHttpResponses(data);
  assert.deepEqual(responses.map((r) => r.status), [400]);
  assert.equal(responses[0].headers.connection, 'close');
  assert.equal(JSON.parse(responses[0].body).error.code, 'bad_request');
  assert.ok(closed, 'the server closed the connection');
});

// ---------------------------------------------------------------------------------------------
// (b) pipelining, (c) chunked bodies, (d) one-letter header names, other protocol edges

test('pipelined requests are answered in order, HEAD without a body', TO, async () => {
  const reqs = [
    ['GET', '/healthz'], ['GET', '/api/v1/config'], ['HEAD', '/healthz'], ['GET', '/no-such-page.html'],
    ['GET', '/readyz'], ['GET', '/healthz'],
  ];
  const bytes = reqs.map(([m, p]) => head([`${m} ${p} HTTP/1.1`, 'Host: x', `Authorization: Bearer ${srv.token}`])).join('');
  const c = await rawConnect({ port: srv.port });
  c.write(bytes);
  const done = await c.waitFor((d) => parseHttpResponses(d, reqs.map((r) => r[0])).responses.length >= reqs.length, T(5000));
  const { responses } = parseHttpResponses(c.data(), reqs.map((r) => r[0]));
  c.destroy();
  assert.ok(done, `all ${reqs.length} answered: got ${responses.length}`);
  assert.deepEqual(responses.map((r) => r.status), [200, 200, 200, 404, 200, 200]);
  assert.equal(responses[0].body.toString(), 'ok\n');
  assert.equal(JSON.parse(responses[1].body).protocol, 1);
  assert.equal(responses[2].headers['content-length'], '3');
  assert.equal(responses[2].body.length, 0);
  assert.equal(responses[4].body.toString(), 'ready\n');
});

test('chunked POST /api/v1/login gets an answer (right token: 204 + cookie; wrong: 401)', TO, async () => {
  const body = JSON.stringify({ token: srv.token });
  const a = body.slice(0, 10);
  const b = body.slice(10);
  const chunked = `${a.length.toString(16)};ext=1\r\n${a}\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\nX-Trailer: t\r\n\r\n`;
  const req = head(['POST /api/v1/login HTTP/1.1', 'Host: x', 'Content-Type: application/json',
    'Transfer-Encoding: chunked']) + chunked;
  const { data } = await exchange(srv, req, 1000, { localAddress: BYSTANDER });
  const { responses } = parseHttpResponses(data);
  assert.equal(responses.length, 1, data.toString('latin1').slice(0, 300));
  assert.equal(responses[0].status, 204);
  assert.match(responses[0].headers['set-cookie'] || '', /^livevlm_auth=/);

  const wrong = JSON.stringify({ token: 'f'.repeat(64) });
  const req2 = head(['POST /api/v1/login HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked']) +
    `${wrong.length.toString(16)}\r\n${wrong}\r\n0\r\n\r\n`;
  const r2 = parseHttpResponses((await exchange(srv, req2, 1000, { localAddress: BYSTANDER })).data).responses;
  assert.deepEqual(r2.map((r) => r.status), [401]);
  assert.equal(JSON.parse(r2[0].body).error.code, 'bad_token');
});

test('a chunked body over 64 KiB gets 413 and a close; Expect: 100-continue gets 100 first', TO, async () => {
  const big = 'x'.repeat(70 * 1024);
  const req = `${head(['POST /api/v1/login HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked'])}` +
    `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`;
  const r = await exchange(srv, req, 1500);
  const { responses } = parseHttpResponses(r.data);
  assert.deepEqual(responses.map((x) => x.status), [413]);
  assert.ok(r.closed);

  const c = await rawConnect({ port: srv.port });
  c.write(head(['POST /api/v1/logout HTTP/1.1', 'Host: x', 'Content-Length: 2', 'Expect: 100-continue']));
  assert.ok(await c.waitFor((d) => d.toString('latin1').startsWith('HTTP/1.1 100 Continue\r\n\r\n'), T(2000)),
    `100 Continue: ${c.data().toString('latin1').slice(0, 200)}`);
  c.write('{}');
  assert.ok(await c.waitFor((d) => parseHttpResponses(d).responses.length === 1, T(2000)));
  assert.equal(parseHttpResponses(c.data()).responses[0].status, 204);
  c.destroy();
});

test('headers named "A" and "X-A" are served like any other', TO, async () => {
  for (const name of ['A', 'X-A']) {
    const { data } = await exchange(srv, head(['GET /healthz HTTP/1.1', 'Host: x', `${name}: 1`]), 500);
    const { responses } = parseHttpResponses(data);
    assert.deepEqual(responses.map((r) => r.status), [200], `${name}: ${data.toString('latin1').slice(0, 200)}`);
  }
});

test('HTTP/1.1 without Host, or with two: 400; HTTP/1.0 without Host is fine', TO, async () => {
  const none = parseHttpResponses((await exchange(srv, head(['GET /healthz HTTP/1.1']))).data);
  assert.deepEqual(none.responses.map((r) => r.status), [400]);
  const two = parseHttpResponses((await exchange(srv, head(['GET /healthz HTTP/1.1', 'Host: a', 'Host: b']))).data);
  assert.deepEqual(two.responses.map((r) => r.status), [400]);
  const old = parseHttpResponses((await exchange(srv, head(['GET /healthz HTTP/1.0']))).data);
  assert.deepEqual(old.responses.map((r) => r.status), [200]);
});

test('TLS 1.0 and 1.1 are refused; TLS 1.2 and 1.3 negotiate ALPN http/1.1', TO, async () => {
  const { default: tlsLib } = await import('node:tls');
  const hello = (opts) => new Promise((resolve) => {
    const sock = tlsLib.connect({ host: '127.0.0.1', port: tsrv.port, rejectUnauthorized: false,
      servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'], ...opts }, () => {
      const r = { ok: true, version: sock.getProtocol(), alpn: sock.alpnProtocol };
      sock.destroy();
      resolve(r);
    });
    sock.on('error', (e) => resolve({ ok: false, error: e.code || e.message }));
    sock.setTimeout(T(3000), () => { sock.destroy(); resolve({ ok: false, error: 'timeout' }); });
  });
  for (const v of ['TLSv1', 'TLSv1.1']) {
    const r = await hello({ minVersion: v, maxVersion: v, ciphers: 'DEFAULT@SECLEVEL=0' });
    assert.equal(r.ok, false, `${v} refused: ${JSON.stringify(r)}`);
  }
  for (const v of ['TLSv1.2', 'TLSv1.3']) {
    const r = await hello({ minVersion: v, maxVersion: v });
    assert.deepEqual([r.ok, r.version, r.alpn], [true, v, 'http/1.1'], JSON.stringify(r));
  }
});

test('methods and versions: 405 with Allow for PUT, 505 for HTTP/2.0, 501 for another coding', TO, async () => {
  const put = parseHttpResponses((await exchange(srv, head(['PUT /healthz HTTP/1.1', 'Host: x', 'Connection: close']))).data);
  assert.deepEqual(put.responses.map((r) => r.status), [405]);
  assert.match(put.responses[0].headers.allow, /GET/);
  const v2 = parseHttpResponses((await exchange(srv, head(['GET /healthz HTTP/2.0', 'Host: x']))).data);
  assert.deepEqual(v2.responses.map((r) => r.status), [505]);
  const gz = parseHttpResponses((await exchange(srv,
    head(['POST /api/v1/login HTTP/1.1', 'Host: x', 'Transfer-Encoding: gzip']))).data);
  assert.deepEqual(gz.responses.map((r) => r.status), [501]);
});

// ---------------------------------------------------------------------------------------------
// (e) slowloris from one address; (f) a slow body

/** n sockets from ATTACKER, each sending one header byte a second (bounded: at most maxBytes). */
async function slowloris(server, n, maxBytes = 40) {
  const socks = [];
  const t0 = Date.now();
  const results = await Promise.allSettled(Array.from({ length: n }, () =>
    rawConnect({ port: server.port, tls: server.tls, localAddress: ATTACKER, timeoutMs: T(5000) })));
  for (const r of results) if (r.status === 'fulfilled') socks.push(r.value);
  const refusedAtOnce = n - socks.length;
  let sent = 0;
  const line = 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
  const tick = setInterval(() => {
    if (sent >= maxBytes) return;
    for (const s of socks) s.write(line[sent % line.length]);
    sent++;
  }, 1000);
  return {
    t0, socks, refusedAtOnce,
    stop() { clearInterval(tick); for (const s of socks) s.destroy(); },
    open() { return socks.filter((s) => !s.isClosed()).length; },
  };
}

async function bystanderRequests(server, count) {
  const times = [];
  for (let i = 0; i < count; i++) {
    const t = Date.now();
    const r = await httpRequestFrom({ localAddress: BYSTANDER, tls: server.tls, port: server.port,
      path: '/api/v1/config', headers: server.authHeader, timeoutMs: T(1000) });
    assert.equal(r.status, 200);
    times.push(Date.now() - t);
    await sleep(200);
  }
  return times;
}

for (const mode of ['plain', 'TLS']) {
  test(`slowloris: 300 slow sockets from one address (${mode}); another address is served within 1 s, ` +
    'and the slow ones are closed by the header time box', TO, async (t) => {
    const server = mode === 'TLS' ? tsrv : srv;
    const attack = await slowloris(server, 300);
    try {
      const times = await bystanderRequests(server, 10);
      t.diagnostic(`${mode}: refused at once ${attack.refusedAtOnce}, accepted ${attack.socks.length}; ` +
        `bystander ms ${JSON.stringify(times)}`);
      assert.ok(Math.max(...times) < T(1000), `every bystander request within 1 s: ${JSON.stringify(times)}`);
      // The accepted ones are closed by the 10 s head time box (not reset by their bytes).
      const deadline = attack.t0 + T(10000) + T(4000);
      while (attack.open() > 0 && Date.now() < deadline) await sleep(250);
      assert.equal(attack.open(), 0, `slow sockets still open ${Date.now() - attack.t0} ms after they connected`);
      const closes = await Promise.all(attack.socks.map((s) => s.closed));
      const lastMs = Math.max(0, ...closes.map((x) => x.atMs - attack.t0));
      t.diagnostic(`${mode}: last slow socket closed ${lastMs} ms after the attack began`);
      assert.ok(lastMs < T(14000), `last closed after ${lastMs} ms`);
      // The ones that got a byte in were answered 408 (TLS or plain), the rest just closed.
      const answered = attack.socks.filter((s) => /^HTTP\/1\.1 408 /.test(s.data().toString('latin1')));
      t.diagnostic(`${mode}: ${answered.length} slow sockets got 408`);
      assert.ok(answered.length >= 1, 'the accepted slow sockets got 408 at the time box');
    } finally {
      attack.stop();
    }
  });
}

test('a request body sent at 1 byte / 2 s is cut off at the body time box (30 s) with 408', TO, async () => {
  const c = await rawConnect({ port: srv.port, localAddress: ATTACKER });
  const t0 = Date.now();
  c.write(head(['POST /api/v1/login HTTP/1.1', 'Host: x', 'Content-Length: 100']));
  let n = 0;
  const tick = setInterval(() => { if (n++ < 30) c.write('x'); }, 2000);
  try {
    await Promise.race([c.closed, sleep(T(45000))]);
  } finally {
    clearInterval(tick);
  }
  const ms = Date.now() - t0;
  assert.ok(c.isClosed(), 'closed');
  assert.ok(ms >= 28000 && ms < T(36000), `closed after ${ms} ms (box: 30 s)`);
  const { responses } = parseHttpResponses(c.data());
  assert.deepEqual(responses.map((r) => r.status), [408]);
});

// ---------------------------------------------------------------------------------------------
// (g) WebSocket protocol violations

async function rawUpgrade(server, localAddress) {
  const c = await rawConnect({ port: server.port, tls: server.tls, localAddress });
  const key = crypto.randomBytes(16).toString('base64');
  c.write(head(['GET /ws HTTP/1.1', `Host: 127.0.0.1:${server.port}`, 'Upgrade: websocket', 'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13', `Authorization: Bearer ${server.token}`]));
  assert.ok(await c.waitFor((d) => d.indexOf('\r\n\r\n') >= 0, T(3000)), 'upgrade answered');
  const text = c.data().toString('latin1');
  assert.match(text, /^HTTP\/1\.1 101 /, text.slice(0, 200));
  const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  assert.match(text, new RegExp(`sec-websocket-accept: ${accept.replace(/[+/=]/g, '\\$&')}`, 'i'));
  c.headLen = text.indexOf('\r\n\r\n') + 4;
  return c;
}

/** Server frames after the upgrade head: [{op, payload}] */
function serverFrames(buf) {
  const out = [];
  let i = 0;
  while (i + 2 <= buf.length) {
    let len = buf[i + 1] & 0x7f;
    let at = i + 2;
    if (len === 126) { if (at + 2 > buf.length) break; len = buf.readUInt16BE(at); at += 2; }
    else if (len === 127) { if (at + 8 > buf.length) break; len = Number(buf.readBigUInt64BE(at)); at += 8; }
    if (at + len > buf.length) break;
    out.push({ op: buf[i] & 0x0f, payload: buf.subarray(at, at + len) });
    i = at + len;
  }
  return out;
}

test('an unmasked client frame: close 1002, and nothing of it is processed', TO, async () => {
  const c = await rawUpgrade(srv);
  const msg = Buffer.from(JSON.stringify({ type: 'ping', t: 1 }));
  c.write(Buffer.concat([Buffer.from([0x81, msg.length]), msg])); // FIN text, MASK bit clear
  await Promise.race([c.closed, sleep(T(3000))]);
  const frames = serverFrames(c.data().subarray(c.headLen));
  const close = frames.find((f) => f.op === 0x8);
  assert.ok(close, `a close frame: ${JSON.stringify(frames.map((f) => f.op))}`);
  assert.equal(close.payload.readUInt16BE(0), 1002);
  assert.ok(!frames.some((f) => f.op === 0x1 && /pong/.test(f.payload.toString())), 'the ping was not answered');
  assert.ok(c.isClosed(), 'the connection is closed');
});

test('a ping frame is answered with a pong carrying the same payload; a close is answered with a close', TO, async () => {
  const c = await rawUpgrade(srv);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = (op, payload) => Buffer.concat([Buffer.from([0x80 | op, 0x80 | payload.length]), mask,
    Buffer.from(payload.map((b, i) => b ^ mask[i % 4]))]);
  c.write(masked(0x9, Buffer.from('hello')));
  assert.ok(await c.waitFor((d) => serverFrames(d.subarray(c.headLen)).some((f) => f.op === 0xa), T(2000)), 'pong');
  const pong = serverFrames(c.data().subarray(c.headLen)).find((f) => f.op === 0xa);
  assert.equal(pong.payload.toString(), 'hello');
  c.write(masked(0x8, Buffer.from([0x03, 0xe8]))); // close 1000
  await Promise.race([c.closed, sleep(T(3000))]);
  const close = serverFrames(c.data().subarray(c.headLen)).find((f) => f.op === 0x8);
  assert.ok(close, 'close answered');
  assert.equal(close.payload.readUInt16BE(0), 1000);
  assert.ok(c.isClosed());
});

// ---------------------------------------------------------------------------------------------
// (h) HSTS, CSP; (i) Origin on POST; (j) failed credentials

test('HSTS on every TLS response, none over plain HTTP; CSP connect-src is this origin only', TO, async () => {
  for (const p of ['/healthz', '/', '/api/v1/config', '/no-such.html']) {
    const r = await tsrv.request(p, { auth: false });
    assert.equal(r.headers['strict-transport-security'], 'max-age=31536000', `TLS ${p} (${r.status})`);
    const q = await srv.request(p, { auth: false });
    assert.equal(q.headers['strict-transport-security'], undefined, `plain ${p}`);
  }
  const page = await srv.request('/', { auth: false });
  const csp = page.headers['content-security-policy'];
  assert.match(csp, /connect-src 'self';/);
  assert.doesNotMatch(csp, /ws:|wss:/);
});

test('POST with a foreign Origin or Sec-Fetch-Site: cross-site → 403; our own Origin is fine', TO, async () => {
  const body = { token: srv.token };
  const foreign = await srv.request('/api/v1/login', { auth: false, body, headers: { Origin: 'http://evil.example' } });
  assert.equal(foreign.status, 403);
  assert.equal(foreign.json().error.code, 'forbidden_origin');
  assert.equal(foreign.headers['set-cookie'], undefined);
  const port = await srv.request('/api/v1/login', { auth: false, body, headers: { Origin: `http://127.0.0.1:${srv.port + 1}` } });
  assert.equal(port.status, 403);
  const nul = await srv.request('/api/v1/logout', { auth: false, body: '', headers: { Origin: 'null' } });
  assert.equal(nul.status, 403);
  const site = await srv.request('/api/v1/login', { auth: false, body, headers: { 'Sec-Fetch-Site': 'cross-site' } });
  assert.equal(site.status, 403);
  const own = await srv.request('/api/v1/login', { auth: false, body,
    headers: { Origin: `http://127.0.0.1:${srv.port}`, 'Sec-Fetch-Site': 'same-origin' } });
  assert.equal(own.status, 204);
});

test('11 wrong Bearer tokens → 429; the right token from the same address still works (API and WebSocket)', TO, async () => {
  const from = '127.0.0.4';
  const get = (token, p = '/api/v1/config') => httpRequestFrom({ localAddress: from, port: srv.port, path: p,
    headers: { Authorization: `Bearer ${token}` } });
  const codes = [];
  for (let i = 0; i < 11; i++) codes.push((await get(`${i}`.padStart(64, 'a'))).status);
  assert.deepEqual(codes, [...Array(10).fill(401), 429], codes.join(','));
  // a wrong cookie and a wrong WebSocket credential count the same way now
  const cookie = await httpRequestFrom({ localAddress: from, port: srv.port, path: '/api/v1/stats',
    headers: { Cookie: `livevlm_auth=${'b'.repeat(64)}` } });
  assert.equal(cookie.status, 429);
  await assert.rejects(srv.connect({ token: 'c'.repeat(64), localAddress: from }), (e) => e.status === 429);
  // no credential at all is not a failure: 401
  assert.equal((await httpRequestFrom({ localAddress: from, port: srv.port, path: '/api/v1/config' })).status, 401);
  // the right one passes
  assert.equal((await get(srv.token)).status, 200);
  const ws = await srv.connect({ localAddress: from });
  await ws.hello();
  await ws.close();
  const login = await httpRequestFrom({ localAddress: from, port: srv.port, method: 'POST', path: '/api/v1/login',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: srv.token }) });
  assert.equal(login.status, 204, 'the right token logs in from a rate-limited address');
});

// ---------------------------------------------------------------------------------------------
// (l) a live WebSocket session from another address during a slowloris

test('slowloris from one address: a WebSocket session from another keeps >= 90 % of its answer rate', TO, async (t) => {
  const c = await srv.session({ settings: { prompt: 'bystander', interval_ms: 300 } }, { localAddress: BYSTANDER });
  await c.start();
  c.autoFeed(JPEG_320());
  const count = (from, to) => c.seen('vlm_response', (m) => m.__t >= from && m.__t < to).length;
  await sleep(1500); // warm up
  const b0 = Date.now();
  await sleep(6000);
  const before = count(b0, Date.now()) / 6;
  const attack = await slowloris(srv, 300);
  const a0 = Date.now();
  try {
    // a new page from the bystander's address connects meanwhile, without waiting
    const t1 = Date.now();
    const c2 = await srv.session({ settings: { prompt: 'late joiner' } }, { localAddress: BYSTANDER, timeoutMs: T(1000) });
    const joinMs = Date.now() - t1;
    await c2.close();
    await sleep(Math.max(0, 6000 - (Date.now() - a0)));
    const during = count(a0, Date.now()) / ((Date.now() - a0) / 1000);
    t.diagnostic(`a new session from ${BYSTANDER} connected in ${joinMs} ms during the attack`);
    t.diagnostic(`answers/s before ${before.toFixed(2)}, during the attack ${during.toFixed(2)} ` +
      `(attack sockets accepted ${attack.socks.length}, refused at once ${attack.refusedAtOnce})`);
    assert.ok(before > 1, `the session is answered before the attack (${before.toFixed(2)}/s)`);
    assert.ok(during >= 0.9 * before, `during ${during.toFixed(2)}/s vs before ${before.toFixed(2)}/s`);
    assert.deepEqual(c.seen('error'), []);
  } finally {
    attack.stop();
    c.autoFeed(null);
    await c.close();
  }
});

// ---------------------------------------------------------------------------------------------
// (k) shutdown

test('SIGTERM: a connected WebSocket gets close 1001 "server restarting" and the process exits 0', TO, async () => {
  const s = await startLivevlm({ backends: [fake], logLevel: 'info' });
  const c = await s.session({ settings: { prompt: 'shutdown' } });
  const t0 = Date.now();
  s.proc.kill('SIGTERM');
  let timer;
  const info = await Promise.race([c.closed, new Promise((r) => { timer = setTimeout(() => r(null), T(5000)); })]);
  clearTimeout(timer);
  assert.ok(info, 'the socket was closed');
  assert.equal(info.code, 1001, `close code ${info.code} ${info.reason}`);
  assert.equal(info.reason, 'server restarting');
  assert.ok(await s.proc.waitExit(T(5000)), 'the process exited');
  assert.equal(s.proc.exitCode, 0, s.proc.describeExit());
  assert.ok(Date.now() - t0 < T(4000), `shutdown took ${Date.now() - t0} ms`);
});
