// limits.test.mjs - per-address and global session caps (too_many_sessions + close 1008), the
// per-address socket cap (HTTP 429 on upgrade), and idle session expiry (--session-idle).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakevlm, startLivevlm, stopAll, sleep, waitUntil, T } from '../lib/harness.mjs';

let fake;
const TO = { timeout: T(40000) };

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'] });
});
after(stopAll);

async function closedWith(c, ms = T(5000)) {
  let timer;
  const info = await Promise.race([c.closed, new Promise((r) => { timer = setTimeout(() => r(null), ms); })]);
  clearTimeout(timer);
  return info;
}

test('more sessions than --max-sessions-per-ip: too_many_sessions and close 1008; resume still works', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--max-sessions-per-ip', '3', '--max-sockets-per-ip', '20'] });
  try {
    const cfg = (await srv.request('/api/v1/config')).json();
    assert.equal(cfg.limits.max_sessions_per_ip, 3);
    const ok = [];
    for (let i = 0; i < 3; i++) ok.push(await srv.session());
    const extra = await srv.connect();
    const m = await extra.hello({}, { allowError: true });
    assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 200));
    assert.equal(m.code, 'too_many_sessions');
    const info = await closedWith(extra);
    assert.ok(info, 'socket closed after too_many_sessions');

    // Another socket on an existing session is not a new session.
    const again = await srv.connect();
    const s = await again.hello({ session_id: ok[0].session.session_id, resume_secret: ok[0].session.resume_secret });
    assert.equal(s.type, 'session');
    assert.equal(s.resumed, true);
    // The existing sessions keep working.
    for (const c of ok) {
      c.send({ type: 'ping', t: 9 });
      assert.equal((await c.next('pong')).t, 9);
    }
    await Promise.all([...ok, again].map((c) => c.close()));
    assert.equal(info.code, 1008, 'close code after too_many_sessions');
  } finally {
    await srv.stop();
  }
});

test('more sessions than --max-sessions in total: too_many_sessions', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--max-sessions', '2'] });
  try {
    const a = await srv.session();
    const b = await srv.session();
    const c = await srv.connect();
    const m = await c.hello({}, { allowError: true });
    assert.equal(m.type, 'error');
    assert.equal(m.code, 'too_many_sessions');
    const info = await closedWith(c);
    assert.ok(info, 'socket closed after too_many_sessions');
    // The existing sessions keep working.
    a.send({ type: 'ping', t: 1 });
    assert.equal((await a.next('pong')).t, 1);
    await Promise.all([a.close(), b.close()]);
    assert.equal(info.code, 1008, 'close code after too_many_sessions');
  } finally {
    await srv.stop();
  }
});

test('more sockets than --max-sockets-per-ip: HTTP 429 on the upgrade; a closed socket frees its place', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--max-sockets-per-ip', '4'] });
  try {
    const open = [];
    for (let i = 0; i < 4; i++) open.push(await srv.connect());
    await assert.rejects(srv.connect(), (e) => e.status === 429, 'fifth socket refused with 429');
    await open.pop().close();
    const again = await waitUntil(async () => {
      try { return await srv.connect(); } catch (e) { if (e.status === 429) return null; throw e; }
    }, { timeoutMs: T(3000), what: 'a socket place freed by a close' });
    await again.hello();
    await Promise.all([...open, again].map((c) => c.close()));
  } finally {
    await srv.stop();
  }
});

test('a session without sockets expires after --session-idle; one with a socket does not', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--session-idle', '1', '--max-sessions-per-ip', '2'] });
  try {
    const gone = await srv.session();
    const kept = await srv.session();
    const ids = { session_id: gone.session.session_id, resume_secret: gone.session.resume_secret };
    await gone.close();
    await sleep(T(4000));
    // kept still has its socket: still there and answering.
    kept.send({ type: 'ping', t: 4 });
    assert.equal((await kept.next('pong')).t, 4);
    const c = await srv.connect();
    const m = await c.hello(ids, { allowError: true });
    assert.equal(m.type, 'error', `session still there after ~4 s idle with --session-idle 1: ${JSON.stringify(m).slice(0, 120)}`);
    assert.equal(m.code, 'session_not_found');
    // The expired session no longer counts against the per-address cap (2): a new one fits.
    const s = await c.hello();
    assert.equal(s.type, 'session');
    await Promise.all([kept.close(), c.close()]);
  } finally {
    await srv.stop();
  }
});
