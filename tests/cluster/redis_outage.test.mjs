// redis_outage.test.mjs - Redis killed (SIGKILL) for 5 s and started again on the same port with
// its append-only file (docs/internals/cluster.md "Degraded mode"). While it is away: /readyz is
// 503 on every frontend, haproxy takes them all out of rotation, a new hello straight to a
// frontend gets `cluster_unavailable`, a page connected straight to a frontend hears why in a
// sentence and gets no credits. When it is back, with no livevlm process restarted: /readyz is 200
// again, the page connected straight gets answers on the same socket, a page behind haproxy (whose
// socket haproxy closed) resumes its session, created before the outage, with its id and secret,
// and new sessions work — all within 10 s.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, sleep, waitUntil, connectWs, T } from '../lib/harness.mjs';
import { startCluster, PageSession, secs } from '../lib/cluster.mjs';

const TO = { timeout: T(120000) };
after(stopAll);

const OUTAGE_MS = 5000;

test('Redis down 5 s and back (AOF): degraded with reasons, then everything recovers by itself', TO, async (t) => {
  const cl = await startCluster({ frontends: 2, workers: 2, aof: true });
  const pages = [];
  try {
    // One page behind haproxy, one straight on fe1 (so what a frontend says is seen without the
    // proxy closing the socket).
    const viaProxy = await cl.page({ prompt: 'outage: page behind haproxy' });
    pages.push(viaProxy);
    const direct = new PageSession(cl.frontends[0], { prompt: 'outage: page straight on fe1' });
    await direct.open();
    pages.push(direct);
    await waitUntil(() => pages.every((p) => p.seen('vlm_response').length >= 2), { timeoutMs: T(15000), what: '2 answers each' });
    // The session is in Redis (and, appendfsync always, in its AOF) before the outage.
    await waitUntil(() => cl.redis.raw('EXISTS', `lv:s:${viaProxy.sessionId}`).trim() === '1',
      { timeoutMs: T(3000), what: `lv:s:${viaProxy.sessionId} in Redis` });

    const tKill = Date.now();
    await cl.redis.kill('SIGKILL');

    // Degraded: readyz 503 everywhere, haproxy sees every frontend down.
    const tNotReady = await waitUntil(async () => ((await cl.readyz(0)) === 503 && (await cl.readyz(1)) === 503 ? Date.now() : null),
      { timeoutMs: T(3000), intervalMs: 25, what: '/readyz 503 on both frontends' });
    const tAllDown = await cl.waitHaproxy({ fe1: 'DOWN', fe2: 'DOWN' }, T(4000));
    // A new session is refused with the reason.
    const c = await connectWs(cl.frontends[1]);
    const refused = await c.hello({ settings: { prompt: 'during the outage' } }, { allowError: true });
    await c.close();
    assert.equal(refused.type, 'error', `a new hello during the outage: ${JSON.stringify(refused)}`);
    assert.equal(refused.code, 'cluster_unavailable');
    assert.ok(/\w+ \w+ \w+/.test(refused.message || ''), `cluster_unavailable says why: ${JSON.stringify(refused.message)}`);
    // The page straight on fe1 hears why, in a sentence, on its open socket.
    const told = await waitUntil(() => direct.seen('error', (e) => e.__t > tKill)[0],
      { timeoutMs: T(3000), intervalMs: 10, what: 'the direct page to hear about the outage' });
    assert.equal(told.code, 'no_backend', `the page hears no_backend: ${JSON.stringify(told)}`);
    assert.ok(/\w+ \w+ \w+/.test(told.message || '') && !/\bredis\b.*\b(ECONN|errno)/i.test(told.message),
      `no_backend is a plain sentence: ${JSON.stringify(told.message)}`);
    assert.equal(direct.events.length, 0, 'the direct page keeps its socket');

    // Through haproxy during the outage: the proxy answers 503 itself.
    await sleep(Math.max(0, tKill + OUTAGE_MS - 1000 - Date.now()));
    const creditsLate = direct.seen('credit', (m) => m.__t > tKill + 1500).length;
    const viaProxyEvents = viaProxy.events.filter((e) => e.t > tKill).map((e) => `${e.kind}${e.code ? ` ${e.code}` : ''}${e.why ? ` ${e.why}` : ''}`);
    assert.equal(creditsLate, 0, 'no credits while Redis is down');
    await sleep(Math.max(0, tKill + OUTAGE_MS - Date.now()));

    // Back, on the same port with its AOF.
    const tBack = Date.now();
    await cl.redis.start();
    const tReady = await waitUntil(async () => ((await cl.readyz(0)) === 200 && (await cl.readyz(1)) === 200 ? Date.now() : null),
      { timeoutMs: T(10000), intervalMs: 25, what: '/readyz 200 on both frontends again' });
    const tUp = await cl.waitHaproxy({ fe1: 'UP', fe2: 'UP' }, T(10000));
    const aDirect = await direct.answerAfter(tBack, T(10000));
    assert.equal(direct.events.length, 0, 'the direct page got its answers on the socket it had');
    const res = await viaProxy.resumedAfter(tKill, T(10000));
    assert.equal(res.session.session_id, viaProxy.sessionId, 'the page behind haproxy resumed the session made before the outage');
    assert.equal(res.session.settings.prompt, viaProxy.prompt);
    const aProxy = await viaProxy.answerAfter(tBack, T(10000));
    const fresh = await cl.page({ prompt: 'a new session after the outage' });
    pages.push(fresh);
    const aFresh = await fresh.answerAfter(tBack, T(10000));

    const line = `cluster redis outage: readyz 503 ${secs(tNotReady - tKill)} s after the kill, the direct page heard ` +
      `${told.code} ${secs(told.__t - tKill)} s after it (${JSON.stringify(told.message)}), new hello: ${refused.code} ` +
      `(${JSON.stringify(refused.message)}), haproxy all down after ` +
      `${secs(tAllDown - tKill)} s; page behind haproxy during the outage: ${JSON.stringify(viaProxyEvents.slice(0, 4))}` +
      `${viaProxyEvents.length > 4 ? ` (+${viaProxyEvents.length - 4} more)` : ''}; after the restart: readyz 200 in ` +
      `${secs(tReady - tBack)} s, haproxy up in ${secs(tUp - tBack)} s, answers resumed in ${secs(aDirect.__t - tBack)} s ` +
      `(direct socket) / ${secs(aProxy.__t - tBack)} s (resumed through haproxy, resume at ${secs(res.t - tBack)} s), ` +
      `new session answered in ${secs(aFresh.__t - tBack)} s`;
    console.log(line);
    t.diagnostic(line);
    for (const [what, ms] of [['direct', aDirect.__t - tBack], ['via haproxy', aProxy.__t - tBack], ['new session', aFresh.__t - tBack]]) {
      assert.ok(ms <= T(10000), `answers resume within 10 s of Redis coming back (${what}: ${ms} ms)`);
    }
    for (const f of cl.frontends) assert.ok(!f.proc.exited, `${f.nodeId} never restarted`);
    for (const w of cl.workers) assert.ok(!w.proc.exited, `worker ${w.id} never restarted`);
  } finally {
    await Promise.all(pages.map((p) => p.close()));
  }
});
