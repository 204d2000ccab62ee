// backend_kill.test.mjs - a backend (fakevlm) killed under load in a cluster: each worker's pool
// does what a single node's does (integration/backends.test.mjs): the breaker opens on the first
// refused connection, a request that failed before its first token is retried on the other
// backend, and traffic moves to the other backend at once. Measured: the longest gap in the
// answers of all sessions together around the kill (<= 1 s), and the errors pages saw.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, sleep, waitUntil, fakevlmStats, T } from '../lib/harness.mjs';
import { startCluster, secs } from '../lib/cluster.mjs';

const TO = { timeout: T(60000) };
after(stopAll);

test('a backend killed: answers move to the other within 1 s, as on a single node', TO, async (t) => {
  const opts = { slots: 4, ttftMs: 60, tokenMs: 5, tokens: 8 };
  const cl = await startCluster({ frontends: 2, workers: 2, fakes: [opts, opts], workerArgs: ['--connect-timeout-ms', '1000'] });
  const pages = [];
  try {
    for (let i = 0; i < 6; i++) pages.push(await cl.page({ prompt: `backend kill ${i}: name the colour`, settings: { interval_ms: 100 } }));
    const [fa, fb] = cl.fakes;
    await waitUntil(async () => (await fakevlmStats(fa))?.requests >= 3 && (await fakevlmStats(fb))?.requests >= 3,
      { timeoutMs: T(8000), what: 'traffic on both backends' });
    await sleep(500);
    const tKill = Date.now();
    fb.proc.kill('SIGKILL');
    assert.ok(await fb.proc.waitExit(T(3000)), 'fakevlm f2 is gone');
    await sleep(3000);

    const answers = pages.flatMap((p) => p.seen('vlm_response')).map((a) => a.__t).sort((x, y) => x - y);
    // The longest gap between consecutive answers, from 1 s before to 2 s after the kill: of all
    // sessions together, and of each session alone (its own wait for the next answer).
    const longestGap = (ts) => {
      const win = ts.filter((x) => x >= tKill - 1000 && x <= tKill + 2000);
      let g = 0;
      let at = 0;
      for (let i = 1; i < win.length; i++) if (win[i] - win[i - 1] > g) { g = win[i] - win[i - 1]; at = win[i - 1] - tKill; }
      return { g, at };
    };
    const { g: gap, at: gapAt } = longestGap(answers);
    const perPage = pages.map((p) => longestGap(p.seen('vlm_response').map((a) => a.__t)).g);
    const worstPage = Math.max(...perPage);
    const before = answers.filter((x) => x >= tKill - 1000 && x < tKill).length;
    const afterN = answers.filter((x) => x >= tKill + 1000 && x < tKill + 2000).length;
    const late = pages.flatMap((p) => p.seen('answer_start', (m) => m.__t >= tKill + 1000 && m.backend === 'f2'));
    const errors = pages.flatMap((p) => p.seen('error', (e) => e.__t >= tKill - 100));
    const line = `cluster backend kill: longest gap in answers ${secs(gap)} s (all sessions; starting ${secs(gapAt)} s ` +
      `after the kill), ${secs(worstPage)} s (one session's own; each: ${perPage.map(secs).join(', ')}); ` +
      `${before} answers in the second before, ${afterN} in the second 1-2 s after; ${errors.length} errors ` +
      `${JSON.stringify(errors.map((e) => [e.__t - tKill, e.code]))}`;
    console.log(line);
    t.diagnostic(line);
    assert.ok(gap <= T(1000), `no gap over 1 s in the answers around the kill (${gap} ms)`);
    assert.ok(worstPage <= T(1000), `no session waited over 1 s for its next answer around the kill (${JSON.stringify(perPage)} ms)`);
    assert.ok(afterN >= before / 3, `answers keep coming after the kill (${afterN} in 1 s vs ${before} before)`);
    assert.deepEqual(late.map((m) => m.backend), [], 'no answer started on the dead backend 1 s after the kill');
    assert.deepEqual(errors.filter((e) => e.__t >= tKill + 1000).map((e) => e.code), [], 'no errors from 1 s after the kill on');
    assert.ok(errors.every((e) => e.code === 'backend_error' || e.code === 'backend_timeout'), `only backend errors: ${JSON.stringify(errors)}`);
    assert.ok(errors.length <= 4, `few errors for users (${errors.length})`);
    for (const p of pages) for (const c of p.clients) {
      for (const r of c.seen('vlm_response')) assert.ok(r.text.includes(`prompt=`), r.text);
    }
  } finally {
    await Promise.all(pages.map((p) => p.close()));
  }
});
