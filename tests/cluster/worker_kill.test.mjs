// worker_kill.test.mjs - kill -9 a worker while it streams answers (docs/internals/cluster.md
// "Every job ends"): a session whose answer was running there hears `worker_lost` (its frontend
// sees the worker's heartbeat go stale: > 3 s) or gets another answer, within 5 s; no session is
// ever stuck: every one keeps getting answers, from the other worker. The frontends count the
// lost jobs and see one worker less; the worker started again takes jobs again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, sleep, waitUntil, T } from '../lib/harness.mjs';
import { startCluster, secs } from '../lib/cluster.mjs';

const TO = { timeout: T(90000) };
after(stopAll);

test('kill -9 a worker mid-answer: worker_lost or another answer within 5 s, then answers from the other', TO, async (t) => {
  // Long answers (40 tokens x 25 ms = 1 s each) so that a worker always has some mid-stream.
  const slow = { slots: 8, ttftMs: 50, tokenMs: 25, tokens: 40 };
  const cl = await startCluster({ frontends: 2, workers: 2, fakes: [slow, slow] });
  const pages = [];
  try {
    for (let i = 0; i < 6; i++) pages.push(await cl.page({ prompt: `worker kill ${i}: read the label`, settings: { interval_ms: 200 } }));
    await waitUntil(() => pages.every((p) => p.seen('vlm_response').length >= 2),
      { timeoutMs: T(20000), what: '2 answers per page' });
    // Kill the worker at a moment it has answers streaming.
    let inFlight;
    await waitUntil(async () => {
      inFlight = await cl.workerSum('livevlm_worker_in_flight');
      return inFlight.w1 >= 1 && inFlight.w2 >= 1;
    }, { timeoutMs: T(5000), intervalMs: 20, what: 'both workers with answers in flight' });
    const tKill = await cl.killWorker(0);

    // Every page: after the kill, something (an answer or worker_lost) within 5 s, and answers after.
    const firstAfter = [];
    for (const p of pages) {
      const m = await waitUntil(() => p.seen('vlm_response', (x) => x.__t > tKill)[0] ||
        p.seen('error', (x) => x.__t > tKill)[0], { timeoutMs: T(8000), intervalMs: 10, what: `an answer or error for ${p.sessionId}` });
      firstAfter.push({ ms: m.__t - tKill, type: m.type, code: m.code });
    }
    const tAnswers = Date.now();
    await Promise.all(pages.map((p) => p.answerAfter(Math.max(tKill, ...p.seen('error', (x) => x.__t > tKill).map((e) => e.__t)), T(8000))));
    const errors = pages.flatMap((p) => p.seen('error', (x) => x.__t > tKill - 200));
    const lost = errors.filter((e) => e.code === 'worker_lost');
    const lostMs = lost.map((e) => e.__t - tKill);
    // Gaps: the longest time any page went without an answer or error after the kill.
    const gaps = pages.map((p) => {
      const ts = [tKill, ...p.seen('vlm_response', (x) => x.__t > tKill).map((x) => x.__t),
        ...p.seen('error', (x) => x.__t > tKill).map((x) => x.__t)].sort((a, b) => a - b);
      let g = 0;
      for (let i = 1; i < ts.length; i++) g = Math.max(g, ts[i] - ts[i - 1]);
      return g;
    });
    const m = await cl.frontendMetrics(0);
    const m2 = await cl.frontendMetrics(1);
    const lostMetric = (m.get('livevlm_cluster_jobs_lost_total', { reason: 'worker_lost' }) || 0) +
      (m2.get('livevlm_cluster_jobs_lost_total', { reason: 'worker_lost' }) || 0);
    const line = `cluster worker kill: in flight at the kill ${JSON.stringify(inFlight)}; worker_lost errors ` +
      `${lost.length} at ${lostMs.map(secs).join(', ')} s; first event per page ${firstAfter.map((f) => `${secs(f.ms)}s ${f.code || f.type}`).join(', ')}; ` +
      `longest gap ${secs(Math.max(...gaps))} s; jobs_lost{worker_lost} ${lostMetric}`;
    console.log(line);
    t.diagnostic(line);

    assert.deepEqual(errors.filter((e) => e.code !== 'worker_lost').map((e) => `${e.code}: ${e.message}`), [],
      'the only error pages hear is worker_lost');
    for (const e of lost) assert.ok(/\w+ \w+ \w+/.test(e.message || ''), `worker_lost says why in a sentence: ${JSON.stringify(e.message)}`);
    assert.ok(lost.length >= 1, `the answers running on the killed worker ended with worker_lost (worker 1 had ${inFlight.w1} in flight)`);
    assert.ok(Math.max(...firstAfter.map((f) => f.ms)) <= T(5000), `every page heard something within 5 s: ${JSON.stringify(firstAfter)}`);
    assert.ok(lostMetric >= lost.length, `livevlm_cluster_jobs_lost_total{reason="worker_lost"} counts them (${lostMetric})`);
    await waitUntil(async () => (await cl.frontendMetrics(0)).get('livevlm_cluster_workers') === 1,
      { timeoutMs: T(5000), what: 'fe1 sees one worker' });
    // Answers after the kill come from w2 only.
    const answered = await cl.workerSum('livevlm_worker_jobs_total', { outcome: 'answered' });
    assert.ok(answered.w2 > 0, `w2 answered: ${JSON.stringify(answered)}`);
    assert.ok(tAnswers - tKill < T(10000));

    // Started again, the worker takes jobs again.
    const tStart = Date.now();
    await cl.startWorker(0);
    await waitUntil(async () => (await cl.frontendMetrics(0)).get('livevlm_cluster_workers') === 2,
      { timeoutMs: T(5000), what: 'fe1 sees two workers again' });
    await waitUntil(async () => (await cl.workerSum('livevlm_worker_jobs_total', { outcome: 'answered' })).w1 > 0,
      { timeoutMs: T(8000), what: 'the restarted w1 answers' });
    const back = `cluster worker kill: restarted worker answering ${secs(Date.now() - tStart)} s after its start`;
    console.log(back);
    t.diagnostic(back);
    await sleep(200);
  } finally {
    await Promise.all(pages.map((p) => p.close()));
  }
});
