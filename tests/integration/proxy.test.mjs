// proxy.test.mjs - clients behind a reverse proxy (--trusted-proxy): a request from a trusted peer
// acts for the client its X-Forwarded-For names (the rightmost address that is not a trusted
// proxy), so per-address sockets, sessions and failed credentials, the principal and the logs are
// per client; from any other peer the header is ignored; an unusable header falls back to the
// proxy's own address and is counted; and the real haproxy with deploy/haproxy.cfg in front of
// one `serve` makes two pages from two addresses two principals.
//
// The proxy is 127.0.0.1 (the tests' own connections); 127.0.0.2 and 127.0.0.3 are other peers
// (Linux answers the whole of 127.0.0.0/8 on loopback).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  Proc, Server, makeTempDir, startFakevlm, startLivevlm, stopAll, httpRequestFrom, scrapeMetrics, waitUntil, T,
} from '../lib/harness.mjs';
import { HAPROXY_BIN, HAPROXY_CFG, freePort, haproxyStates } from '../lib/cluster.mjs';

const TO = { timeout: T(40000) };
const A = '203.0.113.1';
const B = '203.0.113.2';
const xff = (v) => ({ 'X-Forwarded-For': v });

let fake;
before(async () => { fake = await startFakevlm({ models: ['fake-vlm-1'] }); });
after(stopAll);

/** Resolves the HTTP status of a refused upgrade, or 101 (the socket is kept in `open`). */
async function upgrade(srv, open, opts) {
  try {
    open.push(await srv.connect(opts));
    return 101;
  } catch (e) {
    if (!e.status) throw e;
    return e.status;
  }
}

const invalidCount = async (srv) => (await scrapeMetrics(srv)).get('livevlm_forwarded_for_invalid_total');

test('from a trusted proxy each forwarded client is its own address: one WebSocket each under --max-sockets-per-ip 1', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--trusted-proxy', '127.0.0.1', '--max-sockets-per-ip', '1'] });
  const open = [];
  try {
    // without the proxy rule these would all be 127.0.0.1: the second would get 429
    assert.equal(await upgrade(srv, open, { headers: xff(A) }), 101);
    assert.equal(await upgrade(srv, open, { headers: xff(B) }), 101, 'another forwarded client is another address');
    assert.equal(await upgrade(srv, open, {}), 101, 'the proxy itself (no header) is a client of its own');
    // the same client again, however it is written, is refused: it already has its one socket
    assert.equal(await upgrade(srv, open, { headers: xff(A) }), 429);
    assert.equal(await upgrade(srv, open, { headers: xff(`::ffff:${A}`) }), 429, 'IPv4-mapped is the same client');
    assert.equal(await upgrade(srv, open, { headers: xff(`${A}, 127.0.0.1`) }), 429, '"client, trusted proxy" is the client');
    assert.equal(await upgrade(srv, open, { headers: xff(`198.51.100.9, ${A}`) }), 429,
      'what the client wrote left of the address the proxy appended is not read');
    assert.equal(await upgrade(srv, open, { headers: { 'X-Forwarded-For': ['198.51.100.9', `${B}, 127.0.0.1`] } }), 429,
      'two X-Forwarded-For fields are one list');
    assert.equal(await upgrade(srv, open, {}), 429, 'the proxy has its one socket too');
    assert.match(srv.proc.logText(), new RegExp(`refused WebSocket upgrade from ${A.replace(/\./g, '\\.')}: 429`),
      'the log names the client, not the proxy');

    // unusable headers: the proxy's own address stands for the client (it has its socket: 429),
    // nothing is refused for the header itself, and each one is counted
    const before0 = await invalidCount(srv);
    assert.equal(before0, 0);
    for (const bad of ['garbage', '', `${A}:4711`, Array(40).fill('127.0.0.1').join(', ')]) {
      assert.equal(await upgrade(srv, open, { headers: xff(bad) }), 429, `X-Forwarded-For ${JSON.stringify(bad.slice(0, 40))}`);
    }
    assert.equal(await invalidCount(srv), 4, 'four unusable headers counted');
    assert.match(srv.proc.logText(), /X-Forwarded-For from trusted proxy 127\.0\.0\.1 empty or not an address/);
    assert.match(srv.proc.logText(), /X-Forwarded-For from trusted proxy 127\.0\.0\.1 over its cap/);
    // a closed socket gives its client's place back, to that client only
    await open[0].close();
    await waitUntil(async () => (await upgrade(srv, open, { headers: xff(A) })) === 101, { what: 'A gets a socket again' });
    assert.equal(await upgrade(srv, open, { headers: xff(B) }), 429);
  } finally {
    await Promise.all(open.map((c) => c.close()));
    await srv.stop();
  }
});

test('an untrusted peer\'s X-Forwarded-For is ignored: it stays its own address', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--trusted-proxy', '127.0.0.1', '--max-sockets-per-ip', '1'] });
  const open = [];
  try {
    assert.equal(await upgrade(srv, open, { localAddress: '127.0.0.2', headers: xff(A) }), 101);
    // 127.0.0.2 has its socket: naming another client does not get it a second one ...
    assert.equal(await upgrade(srv, open, { localAddress: '127.0.0.2', headers: xff(B) }), 429);
    // ... nor did its first one take A's place
    assert.equal(await upgrade(srv, open, { headers: xff(A) }), 101, 'A (through the proxy) still has its place');
    // claiming to be the trusted proxy from elsewhere changes nothing either
    assert.equal(await upgrade(srv, open, { localAddress: '127.0.0.3', headers: xff(`${B}, 127.0.0.1`) }), 101);
    assert.equal(await upgrade(srv, open, { localAddress: '127.0.0.3', headers: xff(B) }), 429);
    assert.equal(await upgrade(srv, open, { headers: xff(B) }), 101, 'B (through the proxy) still has its place');
    // and an untrusted peer's garbage is nobody's concern: not counted
    assert.equal(await upgrade(srv, open, { localAddress: '127.0.0.2', headers: xff('garbage') }), 429);
    assert.equal(await invalidCount(srv), 0);
  } finally {
    await Promise.all(open.map((c) => c.close()));
    await srv.stop();
  }
});

test('sessions and failed credentials count per forwarded client', TO, async () => {
  const srv = await startLivevlm({ backends: [fake],
    args: ['--trusted-proxy', '127.0.0.1', '--max-sessions-per-ip', '1', '--max-sockets-per-ip', '10'] });
  const open = [];
  try {
    // --max-sessions-per-ip 1: one session per client, not one for the whole proxy
    const a = await srv.session({}, { headers: xff(A) });
    const b = await srv.session({}, { headers: xff(B) });
    open.push(a, b);
    assert.notEqual(a.session.session_id, b.session.session_id);
    const again = await srv.connect({ headers: xff(`${A}, 127.0.0.1`) });
    open.push(again);
    const m = await again.hello({}, { allowError: true });
    assert.equal(m.type, 'error');
    assert.equal(m.code, 'too_many_sessions', 'A already has its session');

    // ten wrong tokens from A: the eleventh is 429 for A alone
    const get = (headers, localAddress) => httpRequestFrom({ localAddress, port: srv.port, path: '/api/v1/config',
      headers: { Authorization: `Bearer ${'f'.repeat(64)}`, ...headers } });
    const codes = [];
    for (let i = 0; i < 11; i++) codes.push((await get(xff(A))).status);
    assert.deepEqual(codes, [...Array(10).fill(401), 429], codes.join(','));
    assert.equal((await get(xff(B))).status, 401, 'B is not blocked by A\'s failures');
    assert.equal((await get({})).status, 401, 'nor is the proxy itself');
    assert.equal((await get(xff(A), '127.0.0.2')).status, 401, 'an untrusted peer naming A is not A');
    // the right token from A still passes
    const ok = await httpRequestFrom({ port: srv.port, path: '/api/v1/config',
      headers: { Authorization: `Bearer ${srv.token}`, ...xff(A) } });
    assert.equal(ok.status, 200);
  } finally {
    await Promise.all(open.map((c) => c.close()));
    await srv.stop();
  }
});

test('--auth none stays a loopback bind decision: a forwarded address changes nothing', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'none', args: ['--trusted-proxy', '127.0.0.1'] });
  try {
    const c = await srv.connect({ auth: false, headers: xff('198.51.100.7') });
    assert.equal((await c.hello()).type, 'session');
    await c.close();
    const r = await httpRequestFrom({ port: srv.port, path: '/api/v1/config', headers: xff('198.51.100.7') });
    assert.equal(r.status, 200);
    assert.equal(r.json().auth, 'none');
  } finally {
    await srv.stop();
  }
});

test('behind haproxy (deploy/haproxy.cfg): pages from 127.0.0.2 and 127.0.0.3 are two clients', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--trusted-proxy', '127.0.0.1', '--max-sockets-per-ip', '1'] });
  const dir = makeTempDir('haproxy');
  const port = await freePort();
  const statsPort = await freePort();
  // the config wants two frontends: both name the one `serve`
  const env = { ...process.env, LIVEVLM_HAPROXY_BIND: `127.0.0.1:${port}`, LIVEVLM_HAPROXY_STATS: `127.0.0.1:${statsPort}`,
    LIVEVLM_FRONTEND_1: `127.0.0.1:${srv.port}`, LIVEVLM_FRONTEND_2: `127.0.0.1:${srv.port}` };
  const hap = new Proc('haproxy', HAPROXY_BIN, ['-f', HAPROXY_CFG, '-db'],
    { cwd: dir, env, logPath: path.join(dir, 'haproxy.log') }).start();
  const proxy = new Server({ proc: hap, port, dir, configDir: null, tls: false, host: '127.0.0.1' });
  proxy.token = srv.token;
  const open = [];
  try {
    let last;
    await waitUntil(async () => {
      if (hap.exited) throw new Error(`haproxy ${hap.describeExit()}:\n${hap.logTail(20)}`);
      try { last = await haproxyStates(statsPort); } catch (e) { last = e.message; return false; }
      return last.fe1 === 'UP' && last.fe2 === 'UP';
    }, { timeoutMs: T(10000), what: `haproxy to see the frontend up (last ${JSON.stringify(last)})` });

    const p2 = await proxy.session({}, { localAddress: '127.0.0.2' });
    const p3 = await proxy.session({}, { localAddress: '127.0.0.3' });
    open.push(p2, p3);
    assert.notEqual(p2.session.session_id, p3.session.session_id);
    // a second page from 127.0.0.2 is that client's second socket: 429, from haproxy's own answer
    // of livevlm's refusal; a forged header does not make it 127.0.0.3 (haproxy appends the truth)
    assert.equal(await upgrade(proxy, open, { localAddress: '127.0.0.2' }), 429);
    assert.equal(await upgrade(proxy, open, { localAddress: '127.0.0.2', headers: xff('198.51.100.1') }), 429);
    assert.match(srv.proc.logText(), /refused WebSocket upgrade from 127\.0\.0\.2: 429/);
    assert.equal(await invalidCount(srv), 0, 'haproxy\'s header is always usable');
    // the pages work through the proxy
    p2.send({ type: 'ping', t: 2 });
    p3.send({ type: 'ping', t: 3 });
    assert.equal((await p2.next('pong')).t, 2);
    assert.equal((await p3.next('pong')).t, 3);
  } finally {
    await Promise.all(open.map((c) => c.close()));
    await hap.stop();
    await srv.stop();
  }
});
