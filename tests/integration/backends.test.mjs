// backends.test.mjs - the backend pool: load balancing over several backends serving one model,
// the circuit breaker and the retry before the first token when a backend dies (and its return),
// frame shaping per backend (--backend-max-side), the adaptive concurrency window
// (--backend-max / --backend-adaptive), and the operator endpoints /metrics and /readyz.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, sleep, sha8, parseFakeAnswer, fakevlmStats, parseMetrics,
  scrapeMetrics, waitUntil, JPEG_640, JPEG_320, T,
  stopAndClose, assertOwnAnswers,
} from '../lib/harness.mjs';

const TO = { timeout: T(40000) };
const J640 = JPEG_640();
const J320 = JPEG_320();

after(stopAll);

/** n started sessions, each with its own prompt; autoFeed J320 when feed is true. */
async function openSessions(srv, n, settings, tag) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const prompt = `${tag} ${i}: describe the frame`;
    const c = await srv.session({ settings: { prompt, ...settings } });
    c.prompt = prompt;
    await c.start();
    out.push(c);
  }
  return out;
}

const total = (clients, type, where) => clients.reduce((n, c) => n + c.seen(type, where).length, 0);

test('two backends serving one model: both get requests, every answer is the session\'s own', TO, async () => {
  const fa = await startFakevlm({ slots: 4, ttftMs: 30, tokenMs: 5, tokens: 8 });
  const fb = await startFakevlm({ slots: 4, ttftMs: 30, tokenMs: 5, tokens: 8 });
  const srv = await startLivevlm({ backends: [{ id: 'a', url: fa.url }, { id: 'b', url: fb.url }] });
  const clients = await openSessions(srv, 8, { interval_ms: 100 }, 'balanced');
  try {
    for (const c of clients) c.autoFeed(J320);
    await waitUntil(() => clients.every((c) => c.seen('vlm_response').length >= 3),
      { timeoutMs: T(8000), what: '3 answers per session' });
    await stopAndClose(clients);

    const [sa, sb] = [await fakevlmStats(fa), await fakevlmStats(fb)];
    const answers = clients.flatMap((c) => c.seen('vlm_response'));
    const info = `fakevlm a: ${sa.requests} requests, b: ${sb.requests}; ${answers.length} answers`;
    assert.ok(sa.requests > 0 && sb.requests > 0, `both backends got requests: ${info}`);
    const share = Math.min(sa.requests, sb.requests) / (sa.requests + sb.requests);
    assert.ok(share >= 0.2, `two equal backends share the load (smaller share ${share.toFixed(2)}): ${info}`);
    const byBackend = { a: 0, b: 0 };
    for (const r of answers) byBackend[r.metrics.backend]++;
    assert.ok(byBackend.a > 0 && byBackend.b > 0, `answers came from both: ${JSON.stringify(byBackend)}`);
    assert.equal(byBackend.a + byBackend.b, answers.length, `every answer names backend a or b: ${JSON.stringify(byBackend)}`);
    for (const c of clients) assertOwnAnswers(c);
    assert.deepEqual(clients.flatMap((c) => c.seen('error')), []);

    const m = await scrapeMetrics(srv);
    const ra = m.get('livevlm_backend_requests_total', { backend: 'a' });
    const rb = m.get('livevlm_backend_requests_total', { backend: 'b' });
    assert.ok(ra > 0 && rb > 0, `livevlm_backend_requests_total a=${ra} b=${rb}`);
    assert.ok(ra <= sa.requests && rb <= sb.requests, `livevlm counts no more requests than fakevlm saw (a ${ra}/${sa.requests}, b ${rb}/${sb.requests})`);
  } finally {
    await stopAndClose(clients);
    await srv.stop();
    await Promise.all([fa.stop(), fb.stop()]);
  }
});

test('a backend killed mid-stream: traffic moves to the other, circuit opens, it rejoins after a restart', TO, async (t) => {
  const opts = { slots: 4, ttftMs: 60, tokenMs: 5, tokens: 8 };
  const fa = await startFakevlm(opts);
  let fb = await startFakevlm(opts);
  const srv = await startLivevlm({
    backends: [{ id: 'a', url: fa.url }, { id: 'b', url: fb.url }],
    args: ['--connect-timeout-ms', '1000'],
  });
  const clients = await openSessions(srv, 6, { interval_ms: 100 }, 'failover');
  try {
    for (const c of clients) c.autoFeed(J320);
    await waitUntil(async () => (await fakevlmStats(fb))?.requests >= 3 && (await fakevlmStats(fa))?.requests >= 3,
      { timeoutMs: T(5000), what: 'traffic on both backends' });

    const port = fb.port;
    const tKill = Date.now();
    fb.proc.kill('SIGKILL');
    assert.ok(await fb.proc.waitExit(T(3000)), 'fakevlm b is gone');

    // The breaker opens on the first refused connection.
    let state;
    const tOpen = await waitUntil(async () => {
      const m = await scrapeMetrics(srv);
      state = m.get('livevlm_backend_circuit_state', { backend: 'b' });
      return state === 2 ? Date.now() : null;
    }, { timeoutMs: T(4000), intervalMs: 25, what: 'livevlm_backend_circuit_state{backend="b"} == 2' });
    assert.ok(tOpen - tKill <= T(1500), `circuit of b open ${tOpen - tKill} ms after the kill (expected within ~1.5 s)`);
    const mDown = await scrapeMetrics(srv);
    assert.equal(mDown.get('livevlm_backend_healthy', { backend: 'b' }), 0, 'b is out of rotation');
    assert.equal(mDown.get('livevlm_backend_healthy', { backend: 'a' }), 1, 'a is still in rotation');

    // Answers keep coming, from a.
    await sleep(Math.max(0, tKill + 2000 - Date.now()));
    const afterKill = (m) => m.__t >= tKill + 1000;
    const nDown = total(clients, 'vlm_response', (m) => m.__t >= tKill + 500 && m.__t < tKill + 2000);
    assert.ok(nDown >= 6, `answers kept coming while b was down (${nDown} in 1.5 s)`);
    const fromB = clients.flatMap((c) => c.seen('answer_start', (m) => m.__t >= tKill + 500 && m.backend === 'b'));
    assert.deepEqual(fromB, [], 'no request started on the dead backend after its circuit opened');

    // Restart b on the same port: it gets traffic again within a few seconds.
    const tRestart = Date.now();
    fb = await startFakevlm({ ...opts, port });
    assert.equal(fb.port, port);
    const tBack = await waitUntil(async () => ((await fakevlmStats(fb))?.completed > 0 ? Date.now() : null),
      { timeoutMs: T(8000), intervalMs: 50, what: 'requests to the restarted backend b' });
    assert.ok(tBack - tRestart <= T(5000), `b served again ${tBack - tRestart} ms after its restart`);
    await waitUntil(() => total(clients, 'vlm_response', (m) => m.__t >= tRestart && m.metrics.backend === 'b') > 0,
      { timeoutMs: T(3000), what: 'an answer from b after the restart' });
    const mUp = await scrapeMetrics(srv);
    assert.equal(mUp.get('livevlm_backend_circuit_state', { backend: 'b' }), 0, 'circuit of b closed again');
    assert.equal(mUp.get('livevlm_backend_healthy', { backend: 'b' }), 1, 'b back in rotation');
    await sleep(300);
    await stopAndClose(clients);

    // Users saw at most the answers that were already streaming from b when it died: a request
    // that failed before its first token (no delta of that answer yet) must have been retried on a.
    const errors = clients.flatMap((c) => c.seen('error'));
    const beforeFirstToken = clients.flatMap((c) => c.seen('error', (e) =>
      c.seen('delta', (d) => d.answer_id === e.answer_id && d.__seq < e.__seq).length === 0));
    const late = clients.flatMap((c) => c.seen('error', afterKill));
    t.diagnostic(`circuit open after ${tOpen - tKill} ms, ${nDown} answers while down, b served again ` +
      `${tBack - tRestart} ms after its restart, ${errors.length} user errors, ` +
      `retries ${mUp.get('livevlm_retries_total')}; errors ${JSON.stringify(errors.map((e) => [e.__t - tKill, e.code, e.message]))}`);
    assert.ok(errors.length <= 4, `few errors for users (${errors.length}): ${JSON.stringify(errors).slice(0, 400)}`);
    assert.deepEqual(late, [], 'no error for users from 1 s after the kill on (retries go to a)');
    assert.deepEqual(beforeFirstToken.map((e) => `${e.code}: ${e.message}`), [],
      'a request that failed before its first token was retried on the healthy backend, not reported');
    for (const c of clients) assertOwnAnswers(c);
    const retries = mUp.get('livevlm_retries_total');
    assert.equal(typeof retries, 'number', 'livevlm_retries_total is exported');
  } finally {
    await stopAndClose(clients);
    await srv.stop();
    await Promise.all([fa.stop(), fb.stop()]);
  }
});

test('under light load a restarted backend is probed and closes its circuit again', TO, async (t) => {
  // Two sessions: backend a alone could serve them, so b only comes back through its half-open
  // probe ("probed every 500 ms"), not because a is full.
  const opts = { slots: 4, ttftMs: 60, tokenMs: 5, tokens: 8 };
  const fa = await startFakevlm(opts);
  let fb = await startFakevlm(opts);
  const srv = await startLivevlm({ backends: [{ id: 'a', url: fa.url }, { id: 'b', url: fb.url }] });
  const clients = await openSessions(srv, 2, { interval_ms: 100 }, 'light');
  try {
    for (const c of clients) c.autoFeed(J320);
    await waitUntil(async () => (await fakevlmStats(fb))?.requests >= 2, { timeoutMs: T(5000), what: 'traffic on b' });
    await sleep(1500); // long enough for both windows to adapt to the load
    const port = fb.port;
    fb.proc.kill('SIGKILL');
    await fb.proc.waitExit(T(3000));
    // (no /metrics scrape while b is down or coming back: only fakevlm's own counters are read)
    await sleep(1500);
    const tRestart = Date.now();
    fb = await startFakevlm({ ...opts, port });
    const served = await waitUntil(async () => (await fakevlmStats(fb))?.requests > 0,
      { timeoutMs: T(5000), intervalMs: 100, what: 'a request to the restarted b' }).catch(() => false);
    const m = await scrapeMetrics(srv);
    const state = { circuit: m.get('livevlm_backend_circuit_state', { backend: 'b' }),
      window: m.get('livevlm_backend_window', { backend: 'b' }), fakevlmRequests: (await fakevlmStats(fb))?.requests };
    t.diagnostic(`b ${Date.now() - tRestart} ms after its restart: ${JSON.stringify(state)}`);
    assert.ok(served, `the restarted b got a request within 5 s (circuit state then: ${JSON.stringify(state)})`);
    await waitUntil(async () => (await scrapeMetrics(srv)).get('livevlm_backend_circuit_state', { backend: 'b' }) === 0,
      { timeoutMs: T(2000), what: 'circuit of b closed after a successful request' });
  } finally {
    await stopAndClose(clients);
    await srv.stop();
    await Promise.all([fa.stop(), fb.stop()]);
  }
});

test('--backend-max-side: frames are scaled down for that backend only', TO, async () => {
  const fake = await startFakevlm({ slots: 4, ttftMs: 10, tokenMs: 2, tokens: 8 });
  const srv = await startLivevlm({
    backends: [{ id: 'fake', url: fake.url }, { id: 'raw', url: fake.url }],
    args: ['--backend-max-side', 'fake=320'],
  });
  const [small, raw] = await Promise.all([
    openSessions(srv, 1, { backend: 'fake', interval_ms: 3600000 }, 'shaped'),
    openSessions(srv, 1, { backend: 'raw', interval_ms: 3600000 }, 'unshaped'),
  ]).then((x) => x.flat());
  try {
    small.sendFrame(J640);
    const r1 = await small.nextAnswer();
    const a1 = parseFakeAnswer(r1.text);
    assert.equal(r1.metrics.backend, 'fake');
    assert.deepEqual([a1.width, a1.height], [320, 240], `640x480 with max side 320 reached the backend as 320x240: ${r1.text.slice(0, 100)}`);
    assert.ok(a1.imageBytes < J640.length, `the scaled JPEG is smaller (${a1.imageBytes} < ${J640.length})`);
    assert.equal(typeof r1.metrics.shape_ms, 'number', `metrics.shape_ms: ${JSON.stringify(r1.metrics)}`);
    assert.ok(r1.metrics.shape_ms > 0, `shape_ms ${r1.metrics.shape_ms} > 0`);
    assert.equal(a1.prompt, sha8(small.prompt));

    small.sendFrame(J320); // already within the cap: sent as it is
    const r2 = await small.nextAnswer();
    const a2 = parseFakeAnswer(r2.text);
    assert.deepEqual([a2.width, a2.height, a2.imageBytes], [320, 240, J320.length], 'a frame within the cap is not re-encoded');

    raw.sendFrame(J640);
    const r3 = await raw.nextAnswer();
    const a3 = parseFakeAnswer(r3.text);
    assert.equal(r3.metrics.backend, 'raw');
    assert.deepEqual([a3.width, a3.height, a3.imageBytes], [640, 480, J640.length], 'without --backend-max-side the frame is unchanged');
    assert.ok(!(r3.metrics.shape_ms > 0), `no shaping time without the flag (${r3.metrics.shape_ms})`);

    const m = await scrapeMetrics(srv);
    assert.equal(m.get('livevlm_shape_seconds_count'), 1, 'livevlm_shape_seconds counts the one scaled frame');
    assert.deepEqual([...small.seen('error'), ...raw.seen('error')], []);
  } finally {
    await stopAndClose([small, raw]);
    await srv.stop();
    await fake.stop();
  }
});

const HISTOGRAMS = ['livevlm_frame_receive_seconds', 'livevlm_queue_wait_seconds', 'livevlm_frame_age_seconds',
  'livevlm_ttft_seconds', 'livevlm_answer_seconds', 'livevlm_gateway_seconds', 'livevlm_shape_seconds'];
const COUNTERS = ['livevlm_frames_total', 'livevlm_answers_total', 'livevlm_retries_total',
  'livevlm_frames_dropped_total', 'livevlm_errors_total', 'livevlm_rate_limited_total',
  'livevlm_backend_requests_total', 'livevlm_backend_errors_total'];
const GAUGES = ['livevlm_sessions', 'livevlm_sockets', 'livevlm_queued_sessions', 'livevlm_backend_inflight',
  'livevlm_backend_window', 'livevlm_backend_circuit_state', 'livevlm_backend_healthy'];

test('/metrics: token needed, every series there, histograms consistent; /readyz follows the backend', TO, async (t) => {
  const fake = await startFakevlm({ slots: 4, ttftMs: 20, tokenMs: 5, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake] });
  const clients = [];
  try {
    const denied = await srv.request('/metrics', { auth: false });
    assert.equal(denied.status, 401, 'GET /metrics without the token');
    const ok = await srv.request('/metrics');
    assert.equal(ok.status, 200, 'GET /metrics with the Bearer token');
    assert.match(ok.headers['content-type'] || '', /^text\/plain/);

    const ready = await srv.request('/readyz', { auth: false });
    assert.equal(ready.status, 200, `/readyz with a live backend: ${ready.text}`);

    clients.push(...await openSessions(srv, 1, { interval_ms: 3600000 }, 'metrics'));
    const [c] = clients;
    c.sendFrame(J640);
    await c.nextAnswer();

    const m = await scrapeMetrics(srv);
    const missing = [];
    for (const name of HISTOGRAMS) if (m.types[name] !== 'histogram') missing.push(`${name} (histogram)`);
    for (const name of COUNTERS) if (m.types[name] !== 'counter') missing.push(`${name} (counter)`);
    for (const name of GAUGES) if (m.types[name] !== 'gauge') missing.push(`${name} (gauge)`);
    // Families labelled by an event (reason, code, limit) are checked last, so the rest still runs.
    const EVENT_FAMILIES = ['livevlm_frames_dropped_total', 'livevlm_errors_total', 'livevlm_rate_limited_total'];
    const missingEvent = missing.filter((x) => EVENT_FAMILIES.some((f) => x.startsWith(`${f} `)));
    const exported = Object.entries(m.types).map(([k, v]) => `${k} ${v}`).join(', ');
    assert.deepEqual(missing.filter((x) => !missingEvent.includes(x)), [],
      `series missing or of another type after one answer (exported: ${exported})`);

    for (const name of HISTOGRAMS) {
      const count = m.get(`${name}_count`);
      const buckets = m.all(`${name}_bucket`);
      assert.equal(typeof count, 'number', `${name}_count`);
      assert.equal(typeof m.get(`${name}_sum`), 'number', `${name}_sum`);
      assert.ok(buckets.length >= 2, `${name} has buckets`);
      const inf = buckets.find((s) => s.labels.le === '+Inf');
      assert.ok(inf, `${name}_bucket{le="+Inf"}`);
      assert.equal(inf.value, count, `${name}: +Inf bucket equals _count`);
      for (let i = 1; i < buckets.length; i++) {
        assert.ok(buckets[i].value >= buckets[i - 1].value, `${name} buckets are cumulative`);
      }
    }
    assert.equal(m.get('livevlm_answers_total'), 1);
    assert.equal(m.get('livevlm_answer_seconds_count'), m.get('livevlm_answers_total'), 'answer histogram count = answers_total');
    assert.equal(m.get('livevlm_ttft_seconds_count'), 1);
    assert.equal(m.get('livevlm_gateway_seconds_count'), 1);
    assert.equal(m.get('livevlm_frames_total'), 1);
    assert.equal(m.get('livevlm_frame_receive_seconds_count'), 1);
    assert.equal(m.get('livevlm_queue_wait_seconds_count'), 1);
    assert.equal(m.get('livevlm_frame_age_seconds_count'), 1);
    assert.equal(m.get('livevlm_shape_seconds_count'), 0, 'nothing was scaled');
    assert.equal(m.get('livevlm_sessions'), 1);
    assert.equal(m.get('livevlm_sockets'), 1);
    assert.equal(m.get('livevlm_queued_sessions'), 0);
    assert.equal(m.get('livevlm_backend_requests_total', { backend: 'fake' }), 1);
    assert.equal(m.get('livevlm_backend_errors_total', { backend: 'fake' }), 0);
    assert.equal(m.get('livevlm_backend_inflight', { backend: 'fake' }), 0);
    assert.equal(m.get('livevlm_backend_circuit_state', { backend: 'fake' }), 0);
    assert.equal(m.get('livevlm_backend_healthy', { backend: 'fake' }), 1);
    const w = m.get('livevlm_backend_window', { backend: 'fake' });
    assert.ok(w >= 1 && w <= 4, `livevlm_backend_window in [1, --backend-max 4] (${w})`);
    const ttftSum = m.get('livevlm_ttft_seconds_sum');
    assert.ok(ttftSum >= 0.015 && ttftSum < 5, `ttft sum ${ttftSum} s reflects fakevlm's 20 ms`);

    // /readyz: 503 once the only backend is dead (a session keeps using it, as in production).
    c.autoFeed(J320);
    await c.updateSettings({ interval_ms: 100 });
    await c.nextAnswer({ timeoutMs: T(3000) });
    const tKill = Date.now();
    fake.proc.kill('SIGKILL');
    await fake.proc.waitExit(T(3000));
    const t503 = await waitUntil(async () => {
      const r = await srv.request('/readyz', { auth: false });
      return r.status === 503 ? Date.now() : null;
    }, { timeoutMs: T(4000), intervalMs: 50, what: '/readyz 503 after the backend was killed' });
    t.diagnostic(`/readyz 503 ${t503 - tKill} ms after the kill`);
    assert.ok(t503 - tKill <= T(2000), `/readyz said 503 ${t503 - tKill} ms after the kill (expected within ~2 s)`);
    c.autoFeed(null);

    assert.deepEqual(missingEvent, [], 'every listed series is exported after one answer, the families labelled ' +
      'by reason/code/limit included (known label values at 0, so rate() and alerts work before the first event); ' +
      `exported after one answer: ${exported}`);
  } finally {
    await stopAndClose(clients);
    await srv.stop();
    await fake.stop();
  }
});

test('adaptive window: shrinks well below --backend-max on a 2-slot backend; fixed at max with --backend-adaptive off', TO, async (t) => {
  // 12 sessions at 100 ms want ~120 answers/s; fakevlm serves 2 at a time, 150 ms each. A window
  // of 32 would queue up to 12 requests inside fakevlm; the adaptive one sees TTFT grow and shrinks.
  const run = async (adaptive) => {
    const fake = await startFakevlm({ slots: 2, ttftMs: 50, tokenMs: 10, tokens: 10 });
    const srv = await startLivevlm({
      backends: [fake],
      args: ['--backend-max', 'fake=32', ...(adaptive ? [] : ['--backend-adaptive', 'fake=off'])],
    });
    const clients = await openSessions(srv, 12, { interval_ms: 100 }, adaptive ? 'adaptive' : 'fixed');
    try {
      for (const c of clients) c.autoFeed(J320);
      await sleep(6000);
      const m = await scrapeMetrics(srv);
      const st = await fakevlmStats(fake);
      return {
        window: m.get('livevlm_backend_window', { backend: 'fake' }),
        answers: total(clients, 'vlm_response'),
        errors: clients.flatMap((c) => c.seen('error')),
        fakeMaxQueued: st?.max_queued,
      };
    } finally {
      await stopAndClose(clients);
      await srv.stop();
      await fake.stop();
    }
  };
  const [on, off] = await Promise.all([run(true), run(false)]);
  const info = `adaptive ${JSON.stringify({ ...on, errors: on.errors.length })}, off ${JSON.stringify({ ...off, errors: off.errors.length })}`;
  t.diagnostic(info);
  assert.ok(on.answers > 20 && off.answers > 20, `both served answers: ${info}`);
  assert.deepEqual([on.errors, off.errors], [[], []], `no errors: ${info}`);
  assert.ok(on.window <= 8, `adaptive window ${on.window} well below 32: ${info}`);
  assert.ok(on.window >= 1, `adaptive window ${on.window} >= --backend-min 1: ${info}`);
  assert.equal(off.window, 32, `--backend-adaptive off keeps the window at --backend-max: ${info}`);
});

// parseMetrics is exercised here too, so a harness bug shows up as such and not as a server bug.
test('harness: parseMetrics reads labels, histograms and +Inf', () => {
  const m = parseMetrics('# TYPE x_total counter\nx_total{a="1",b="q\\"x"} 3\n# TYPE h histogram\n' +
    'h_bucket{le="0.1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 0.3\nh_count 2\ng 1.5e-3\n');
  assert.equal(m.types.x_total, 'counter');
  assert.equal(m.get('x_total', { a: '1' }), 3);
  assert.equal(m.all('x_total')[0].labels.b, 'q"x');
  assert.equal(m.all('h_bucket')[1].labels.le, '+Inf');
  assert.equal(m.get('h_count'), 2);
  assert.equal(m.get('g'), 0.0015);
  assert.equal(m.get('missing'), undefined);
});
