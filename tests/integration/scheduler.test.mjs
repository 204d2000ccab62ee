// scheduler.test.mjs - the fair queue in front of the backends: deficit round-robin across users
// (client addresses: this file connects from 127.0.0.2, 127.0.0.3, ... to act as several users),
// credits only when a frame could be served soon, stale frames dropped with `frame_dropped`
// instead of being sent late (--max-frame-age-ms), and the per-user frame budget (--user-fpm).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, sleep, sha8, parseFakeAnswer, scrapeMetrics, waitUntil,
  JPEG_320, T,
  stopAndClose, assertOwnAnswers,
} from '../lib/harness.mjs';

const TO = { timeout: T(40000) };
const J320 = JPEG_320();

after(stopAll);

/** n started sessions of one user (client address addr), each with its own prompt. */
async function openUser(srv, addr, n, settings, tag) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const prompt = `${tag} session ${i}: what changed?`;
    const c = await srv.session({ settings: { prompt, ...settings } }, { localAddress: addr });
    c.prompt = prompt;
    await c.start();
    out.push(c);
  }
  return out;
}

test('fairness: one session of user B gets about as many answers as six sessions of user A', TO, async (t) => {
  // One slot, 200 ms per answer (100 ms to the first token, then 10 tokens 10 ms apart): about
  // 5 answers a second for 7 sessions that each want 10. A FIFO over sessions would give B 1/7 of
  // the answers (A/B = 6); deficit round-robin over users gives each user half.
  const fake = await startFakevlm({ slots: 1, ttftMs: 100, tokenMs: 10, tokens: 10 });
  const srv = await startLivevlm({ backends: [fake], args: ['--backend-max', 'fake=1'] });
  const settings = { interval_ms: 100 };
  const a = await openUser(srv, '127.0.0.2', 6, settings, 'user A');
  const [b] = await openUser(srv, '127.0.0.3', 1, settings, 'user B');
  const all = [...a, b];
  try {
    const t0 = Date.now();
    for (const c of all) c.autoFeed(J320);
    const RUN_MS = 8000;
    const WARMUP_MS = 1000;
    await sleep(RUN_MS);
    for (const c of all) c.autoFeed(null);
    const inWindow = (m) => m.__t >= t0 + WARMUP_MS && m.__t <= t0 + RUN_MS;
    const nA = a.reduce((n, c) => n + c.seen('vlm_response', inWindow).length, 0);
    const nB = b.seen('vlm_response', inWindow).length;
    const perA = a.map((c) => c.seen('vlm_response').length);
    const errors = all.flatMap((c) => c.seen('error'));
    const credits = all.reduce((n, c) => n + c.seen('credit').length, 0);
    const answers = all.reduce((n, c) => n + c.seen('vlm_response').length, 0);
    const queued = all.flatMap((c) => c.seen('queued'));
    const info = `A (6 sessions) ${nA}, B (1 session) ${nB} answers in ${(RUN_MS - WARMUP_MS) / 1000} s; ` +
      `per A session ${JSON.stringify(perA)}; credits ${credits}, answers ${answers}, queued msgs ${queued.length}`;
    t.diagnostic(`${info}; credits per A session ${JSON.stringify(a.map((c) => c.seen('credit').length))}`);

    assert.deepEqual(errors, [], `no errors: ${JSON.stringify(errors).slice(0, 300)}`);
    assert.ok(nA + nB >= 20, `the single slot was kept busy (~5 answers/s): ${info}`);
    assert.ok(nB > 0 && nA > 0, info);
    const ratio = nB / nA;
    assert.ok(ratio >= 0.5 && ratio <= 2, `B / A = ${ratio.toFixed(2)}, expected 0.5..2 (a FIFO gives ~0.17): ${info}`);
    // Round-robin across one user's sessions: A's answers are spread evenly over its six sessions.
    assert.ok(perA.every((n) => n >= 1), `round-robin across A's sessions: every one got answers: ${info}`);
    assert.ok(Math.max(...perA) - Math.min(...perA) <= 3,
      `round-robin across A's sessions: answers per session differ by at most 3: ${info}`);
    // Under overload credits follow what can be served, not sessions × rate (7 × 10/s).
    const asked = all.length * (RUN_MS / settings.interval_ms);
    assert.ok(credits <= asked / 4, `credits ${credits} well below sessions × rate (${asked}): ${info}`);
    assert.ok(credits <= answers + 2 * all.length + 5, `credits ${credits} follow the answers (${answers}): ${info}`);
    for (const q of queued) {
      assert.ok(Number.isInteger(q.position) && q.position >= 1, `queued.position: ${JSON.stringify(q)}`);
    }
    for (const c of all) assertOwnAnswers(c);
  } finally {
    await stopAndClose(all);
    await srv.stop();
    await fake.stop();
  }
});

test('stale frames: a pushed frame that waited past --max-frame-age-ms is dropped with frame_dropped', TO, async (t) => {
  // One slot, 180 ms per answer (~5.5/s); 4 sessions push a frame every 400 ms each (10/s) without
  // waiting for credits. Frames that wait more than 300 ms for their turn must be dropped.
  const SERVICE_MS = 100 + 8 * 10;
  const MAX_AGE_MS = 300;
  const fake = await startFakevlm({ slots: 1, ttftMs: 100, tokenMs: 10, tokens: 8 });
  const srv = await startLivevlm({
    backends: [fake],
    args: ['--backend-max', 'fake=1', '--max-frame-age-ms', String(MAX_AGE_MS)],
  });
  const clients = await openUser(srv, '127.0.0.2', 4, { interval_ms: 3600000 }, 'push');
  const timers = [];
  try {
    const t0 = Date.now();
    clients.forEach((c, i) => {
      setTimeout(() => {
        c.sendFrame(J320);
        timers.push(setInterval(() => c.sendFrame(J320), 400));
      }, i * 100);
    });
    await sleep(4500);
    for (const t of timers) clearInterval(t);
    await sleep(SERVICE_MS * 4 + 300); // what is queued is served or dropped
    const dropped = clients.flatMap((c) => c.seen('frame_dropped'));
    const answers = clients.flatMap((c) => c.seen('vlm_response'));
    const errors = clients.flatMap((c) => c.seen('error'));
    const info = `${answers.length} answers, ${dropped.length} frame_dropped in ${Date.now() - t0} ms`;
    t.diagnostic(`${info}; answered frame ages up to ${Math.max(...answers.map((r) => r.metrics.frame_age_ms))} ms`);

    assert.deepEqual(errors, [], `no errors: ${JSON.stringify(errors).slice(0, 300)}`);
    assert.ok(answers.length >= 8, `frames were still answered: ${info}`);
    assert.ok(dropped.length >= 1, `stale frames were dropped: ${info}`);
    for (const d of dropped) {
      assert.equal(d.reason, 'stale', JSON.stringify(d));
      assert.equal(typeof d.age_ms, 'number', JSON.stringify(d));
      assert.ok(d.age_ms >= MAX_AGE_MS, `a dropped frame was older than ${MAX_AGE_MS} ms: ${JSON.stringify(d)}`);
    }
    const ages = answers.map((r) => r.metrics.frame_age_ms);
    const worst = Math.max(...ages);
    assert.ok(worst <= MAX_AGE_MS + SERVICE_MS,
      `no answered frame was older than ${MAX_AGE_MS} + ${SERVICE_MS} ms when sent (worst ${worst} ms): ${info}`);
    for (const c of clients) assertOwnAnswers(c);

    const m = await scrapeMetrics(srv);
    const stale = m.get('livevlm_frames_dropped_total', { reason: 'stale' }) ?? 0;
    assert.equal(stale, dropped.length, `livevlm_frames_dropped_total{reason="stale"} counts every frame_dropped (${info})`);
  } finally {
    for (const t of timers) clearInterval(t);
    await stopAndClose(clients);
    await srv.stop();
    await fake.stop();
  }
});

test('--user-fpm: the frame over the budget gets rate_limited and credits stop for that user', TO, async () => {
  const fake = await startFakevlm({ slots: 4, ttftMs: 10, tokenMs: 2, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], args: ['--user-fpm', '3'] });
  const [c] = await openUser(srv, '127.0.0.4', 1, { interval_ms: 100 }, 'limited');
  const others = [];
  try {
    c.autoFeed(J320);
    await waitUntil(() => c.seen('vlm_response').length >= 3, { timeoutMs: T(5000), what: '3 answers' });
    await sleep(300); // a 4th credit would have come by now (interval 100 ms)
    c.autoFeed(null);
    assert.equal(c.seen('credit').length, 3, `no credit beyond the budget of 3 frames (recent: ${c.recent()})`);
    assert.deepEqual(c.seen('error'), [], 'the 3 frames within the budget were accepted');

    c.drain('vlm_response');
    c.sendFrame(J320); // the 4th frame this minute
    const e = await c.nextError('rate_limited', { timeoutMs: T(3000) });
    assert.match(e.message, /\d+\s*s/, `the message says when frames are accepted again: ${e.message}`);
    assert.match(e.message, /again/i, `the message says when frames are accepted again: ${e.message}`);
    await c.expectNone('vlm_response', 300);

    const nCredits = c.seen('credit').length;
    await sleep(2000);
    assert.equal(c.seen('credit').length, nCredits, `no credit for 2 s after the budget was spent (recent: ${c.recent()})`);

    const m = await scrapeMetrics(srv);
    assert.equal(m.get('livevlm_rate_limited_total', { limit: 'frames' }), 1,
      'livevlm_rate_limited_total{limit="frames"} counts the refused frame');

    // The budget is per user: another address is served as usual.
    others.push(...await openUser(srv, '127.0.0.5', 1, { interval_ms: 100 }, 'unlimited'));
    others[0].autoFeed(J320);
    await others[0].nextAnswer({ timeoutMs: T(3000) });
    assert.deepEqual(others[0].seen('error'), []);
  } finally {
    await stopAndClose([c, ...others]);
    await srv.stop();
    await fake.stop();
  }
});
