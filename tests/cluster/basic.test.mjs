// basic.test.mjs - a cluster on loopback (Redis, 2 fakevlm, 2 workers, 2 frontends, haproxy with
// deploy/haproxy.cfg): sessions opened through haproxy land on both frontends, each gets answers
// about its own prompt only, the answers come from both workers and both backends, the access
// token (one, shared by the frontends) is needed through the proxy, and the frontends' cluster
// metrics say what the cluster is.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  stopAll, waitUntil, assertOwnAnswers, connectWs, parseFakeAnswer, sha8, T,
} from '../lib/harness.mjs';
import { startCluster, secs } from '../lib/cluster.mjs';

const TO = { timeout: T(60000) };
after(stopAll);

test('sessions through haproxy: their own answers only, from both workers and both frontends', TO, async (t) => {
  const cl = await startCluster({ frontends: 2, workers: 2 });
  const pages = [];
  try {
    // The proxy passes the credential through; without it the frontend refuses the upgrade.
    const refused = await connectWs(cl.proxy, { auth: false }).then((c) => { c.close(); return null; }, (e) => e);
    assert.ok(refused && refused.status === 401, `no token through haproxy: HTTP 401 (got ${refused?.status ?? 'an open socket'})`);

    const t0 = Date.now();
    for (let i = 0; i < 6; i++) pages.push(await cl.page({ prompt: `basic ${i}: what is on the desk?`, settings: { interval_ms: 200 } }));
    const tOpen = Date.now();
    await waitUntil(() => pages.every((p) => p.seen('vlm_response').length >= 4),
      { timeoutMs: T(15000), what: '4 answers per session' }).catch((e) => {
      throw new Error(`${e.message}\nanswers: ${pages.map((p) => p.seen('vlm_response').length)}; errors: ` +
        `${JSON.stringify(pages.flatMap((p) => p.seen('error')).slice(0, 5))}\n${cl.logTails()}`);
    });
    const tDone = Date.now();

    // Where the sessions live: haproxy spreads connections by least connections.
    const owners = pages.map((p) => cl.owner(p.sessionId));
    const perFe = Object.fromEntries(cl.frontends.map((f) => [f.nodeId, owners.filter((o) => o === f.nodeId).length]));
    assert.ok(owners.every((o) => o === 'fe1' || o === 'fe2'), `every session has an owner in Redis (lv:o): ${JSON.stringify(owners)}`);
    assert.ok(perFe.fe1 >= 2 && perFe.fe2 >= 2, `sessions on both frontends: ${JSON.stringify(perFe)}`);

    // Own answers only, and no errors.
    for (const p of pages) {
      for (const c of p.clients) assertOwnAnswers(c);
      assert.equal(p.events.length, 0, `no socket of ${p.sessionId} closed: ${JSON.stringify(p.events)}`);
    }
    const errors = pages.flatMap((p) => p.seen('error'));
    assert.deepEqual(errors, [], 'no errors');
    const answers = pages.flatMap((p) => p.seen('vlm_response'));
    const byBackend = {};
    for (const a of answers) byBackend[a.metrics.backend] = (byBackend[a.metrics.backend] || 0) + 1;
    assert.ok(byBackend.f1 > 0 && byBackend.f2 > 0, `answers from both backends: ${JSON.stringify(byBackend)}`);
    // Answer ids are the session's own numbering: strictly increasing per session, never shared.
    for (const p of pages) {
      const ids = p.seen('vlm_response').map((a) => a.answer_id);
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b), `answer ids of ${p.sessionId} increase`);
      assert.equal(new Set(ids).size, ids.length, `answer ids of ${p.sessionId} are distinct`);
      for (const a of p.seen('vlm_response')) assert.equal(parseFakeAnswer(a.text).prompt, sha8(p.prompt));
    }

    // Both workers answered (their own counters), and the frontends see both of them.
    const answered = await cl.workerSum('livevlm_worker_jobs_total', { outcome: 'answered' });
    assert.ok(answered.w1 > 0 && answered.w2 > 0, `both workers answered: ${JSON.stringify(answered)}`);
    const total = answered.w1 + answered.w2;
    assert.ok(total >= answers.length, `workers answered ${total} >= ${answers.length} answers the pages got`);
    for (let i = 0; i < 2; i++) {
      const m = await cl.frontendMetrics(i);
      assert.equal(m.get('livevlm_cluster_up'), 1, `fe${i + 1}: livevlm_cluster_up`);
      assert.equal(m.get('livevlm_cluster_workers'), 2, `fe${i + 1}: livevlm_cluster_workers`);
      assert.ok(m.get('livevlm_cluster_capacity') > 0, `fe${i + 1}: livevlm_cluster_capacity ${m.get('livevlm_cluster_capacity')}`);
      assert.equal(typeof m.get('livevlm_cluster_queue_depth'), 'number', `fe${i + 1}: livevlm_cluster_queue_depth`);
      assert.equal(typeof m.get('livevlm_cluster_oldest_job_seconds'), 'number', `fe${i + 1}: livevlm_cluster_oldest_job_seconds`);
    }

    const lat = answers.map((a) => a.metrics.last_latency_ms).sort((a, b) => a - b);
    const line = `cluster basic: 6 sessions over 2 frontends ${JSON.stringify(perFe)}, opened in ${secs(tOpen - t0)} s, ` +
      `${answers.length} answers in ${secs(tDone - tOpen)} s, workers answered ${JSON.stringify(answered)}, ` +
      `backends ${JSON.stringify(byBackend)}, latency p50 ${Math.round(lat[Math.floor(lat.length / 2)])} ms p95 ${Math.round(lat[Math.floor(lat.length * 0.95)])} ms`;
    console.log(line);
    t.diagnostic(line);
  } finally {
    await Promise.all(pages.map((p) => p.close()));
  }
});
