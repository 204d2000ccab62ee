// fairness.test.mjs - fairness across users is decided cluster-wide (docs/internals/cluster.md
// "The queue: fair across users"): user A with 10 sessions spread over two frontends and user B
// with 2 sessions, both backlogged on a cluster of 2 slots, get about the same number of answers,
// whether B is alone on a third frontend (the queue's decision alone) or shares a frontend with
// half of A's sessions (the whole path: that frontend must keep B's demand in the queue too).
// A FIFO of jobs would give B 2/12 of the answers, a fair share per frontend 1/4.
//
// The user (principal) is the client address. Through haproxy every page would come from the
// proxy's address (livevlm does not read X-Forwarded-For; see deploy/haproxy.cfg), so the sessions
// connect straight to the frontends, A from 127.0.0.2 and B from 127.0.0.3.
//
// Why B has 2 sessions and the cluster 2 slots: a session has at most one job at a time, so one
// session can never hold more than one slot, and between its answer and its next frame it holds
// none. With 2 slots and 2 sessions B always has a job waiting when its turn comes, so the
// measured split is the queue's decision, not B's own pacing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, sleep, waitUntil, T } from '../lib/harness.mjs';
import { startCluster, PageSession, jain } from '../lib/cluster.mjs';

const TO = { timeout: T(90000) };
after(stopAll);

const WARMUP_MS = 2000;
const WINDOW_MS = 8000;

/** A on fe1 (5 sessions) and fe2 (5), B's 2 sessions on frontend bFe; B's share of the answers
 * must lie within [lo, hi]. */
async function measure(t, bFe, what, [lo, hi]) {
  const cl = await startCluster({
    frontends: bFe + 1, workers: 2, haproxy: false,
    // One slot per backend, one backend per worker: 2 slots in the cluster, each answer ~0.2 s.
    fakes: [{ slots: 1, ttftMs: 150, tokenMs: 10, tokens: 4 }, { slots: 1, ttftMs: 150, tokenMs: 10, tokens: 4 }],
    workerBackends: [[0], [1]],
    workerArgs: (i) => ['--backend-max', `f${i + 1}=1`, '--backend-adaptive', `f${i + 1}=off`],
  });
  const pages = [];
  try {
    await waitUntil(async () => (await cl.frontendMetrics(0)).get('livevlm_cluster_capacity') === 2,
      { timeoutMs: T(5000), what: 'cluster capacity 2 (one slot per worker)' }).catch(async (e) => {
      const m = await cl.frontendMetrics(0);
      throw new Error(`${e.message}: capacity ${m.get('livevlm_cluster_capacity')}, workers ${m.get('livevlm_cluster_workers')}`);
    });
    const open = async (fe, user, addr, i) => {
      const p = new PageSession(cl.frontends[fe], {
        prompt: `fair ${user}${i}: count the pens`, localAddress: addr, settings: { interval_ms: 100 },
      });
      p.user = user;
      await p.open();
      pages.push(p);
    };
    for (let i = 0; i < 5; i++) await open(0, 'A', '127.0.0.2', i);
    for (let i = 5; i < 10; i++) await open(1, 'A', '127.0.0.2', i);
    for (let i = 0; i < 2; i++) await open(bFe, 'B', '127.0.0.3', i);

    const t0 = Date.now();
    await sleep(WARMUP_MS + WINDOW_MS);
    const from = t0 + WARMUP_MS;
    const to = from + WINDOW_MS;
    const inWindow = (p) => p.seen('vlm_response', (m) => m.__t >= from && m.__t < to).length;
    const count = (user) => pages.filter((p) => p.user === user).reduce((n, p) => n + inWindow(p), 0);
    const a = count('A');
    const b = count('B');
    const perSessionA = pages.filter((p) => p.user === 'A').map(inWindow);
    const shareB = b / (a + b);
    const j = jain([a, b]);
    const stale = pages.reduce((n, p) => n + p.seen('frame_dropped').length, 0);
    const errors = pages.flatMap((p) => p.seen('error'));
    const line = `cluster fairness (${what}): user A (10 sessions, fe1+fe2) ${a} answers, user B (2 sessions) ${b} ` +
      `in ${WINDOW_MS / 1000} s; B's share ${(shareB * 100).toFixed(1)} %, Jain ${j.toFixed(3)}; ` +
      `A per session ${JSON.stringify(perSessionA)}; ${stale} frames dropped, ${errors.length} errors`;
    console.log(line);
    t.diagnostic(line);
    assert.deepEqual(errors.map((e) => `${e.code}: ${e.message}`), [], 'no errors');
    assert.ok(a + b >= 0.5 * (WINDOW_MS / 1000) * 2 / 0.2, `the 2 slots were kept busy (${a + b} answers in ${WINDOW_MS} ms)`);
    for (const p of pages) {
      assert.ok(p.seen('vlm_response').length > 0, `every session got answers (${p.user} ${p.sessionId})`);
    }
    assert.ok(shareB >= lo && shareB <= hi, `B gets about half the answers: ${(shareB * 100).toFixed(1)} % ` +
      `(Jain ${j.toFixed(3)}), expected ${lo * 100}..${hi * 100} %`);
  } finally {
    await Promise.all(pages.map((p) => p.close()));
  }
}

// The queue alone: B's frontend serves B only, so its jobs out are all B's. Measured: 50.0 % in
// every run (36 answers each), so the bound is tight.
test('user A with 10 sessions over two frontends vs user B with 2 on a third: equal shares', TO,
  (t) => measure(t, 2, 'B on a frontend of its own', [0.45, 0.55]));

// The whole path: B shares fe2 with half of A's sessions, whose jobs compete with B's for what
// fe2 may keep out; B's demand must still reach the queue. Measured on 2 cores: 40..46 % over ten
// runs (mean about 44 %), so the bound is B within 30 % of an equal share. It still tells the
// mechanisms apart: a FIFO of jobs gives B 17 %, a fair share per frontend 25 % (measured before
// the frontends kept twice the workers' slots out).
test('user A with 10 sessions over two frontends vs user B with 2 sharing one of them: equal shares', TO,
  (t) => measure(t, 1, 'B shares fe2 with A', [0.35, 0.65]));
