// answers.test.mjs - the frame path end to end through a real fakevlm: credits, answer_start,
// deltas before vlm_response, per-session isolation of answers (prompt hash and model checked),
// sockets sharing a session, the one-waiting-frame mailbox, debug payloads, history, no_backend.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, sleep, sha8, parseFakeAnswer, padJpeg, JPEG_640, JPEG_320, T,
} from '../lib/harness.mjs';

let fake;
let srv;
const TO = { timeout: T(40000) };
const J640 = JPEG_640();
const J320 = JPEG_320();

before(async () => {
  // ~20 ms to the first token, then 12 tokens 15 ms apart: an answer takes about 200 ms.
  fake = await startFakevlm({ models: ['vlm-a', 'vlm-b'], slots: 8, ttftMs: 20, tokenMs: 15, tokens: 12 });
  srv = await startLivevlm({ backends: [fake] });
});
after(stopAll);

function checkAnswer(resp, { prompt, model, jpeg, w, h }) {
  const a = parseFakeAnswer(resp.text);
  assert.ok(a, `answer text is fakevlm's: ${JSON.stringify(resp.text)}`);
  if (model) assert.equal(a.model, model, 'answer is from the session\'s model');
  if (prompt) assert.equal(a.prompt, sha8(prompt), 'answer is about the session\'s prompt');
  if (jpeg) assert.equal(a.imageBytes, jpeg.length, 'the backend got the JPEG bytes unchanged');
  if (w) assert.deepEqual([a.width, a.height], [w, h]);
  return a;
}

test('a frame sent for a credit: answer_start, deltas, then vlm_response with metrics', TO, async () => {
  const prompt = 'What is in the picture? (first test)';
  const c = await srv.session({ settings: { prompt, model: 'vlm-a', interval_ms: 200 } });
  await c.start();
  const credit = await c.next('credit');
  assert.ok(Number.isInteger(credit.credit_id) && credit.credit_id > 0, `credit_id ${credit.credit_id}`);
  c.sendFrame(J640, { creditId: credit.credit_id, ageMs: 250 });

  const st = await c.next('answer_start', { timeoutMs: T(5000) });
  assert.ok(st.answer_id !== undefined && st.answer_id !== null, 'answer_start has answer_id');
  assert.equal(st.backend, 'fake');
  assert.equal(st.model, 'vlm-a');
  assert.equal(typeof st.queue_wait_ms, 'number');
  assert.equal(typeof st.frame_age_ms, 'number');
  assert.ok(st.frame_age_ms >= 250, `frame_age_ms ${st.frame_age_ms} includes the 250 ms capture age`);

  const resp = await c.nextAnswer({ where: (m) => m.answer_id === st.answer_id });
  await c.stop();
  checkAnswer(resp, { prompt, model: 'vlm-a', jpeg: J640, w: 640, h: 480 });

  const deltas = c.seen('delta', (m) => m.answer_id === st.answer_id);
  assert.ok(deltas.length >= 2, `streamed in several deltas (got ${deltas.length})`);
  assert.ok(deltas.every((d) => d.__seq < resp.__seq && d.__seq > st.__seq), 'deltas come between answer_start and vlm_response');
  assert.equal(deltas.map((d) => d.text).join(''), resp.text, 'deltas add up to the final text');

  const m = resp.metrics;
  for (const f of ['last_latency_ms', 'avg_latency_ms', 'total_inferences', 'ttft_ms', 'queue_wait_ms',
    'frame_age_ms', 'tokens', 'frames_received', 'frames_replaced', 'frames_rejected', 'errors']) {
    assert.equal(typeof m[f], 'number', `metrics.${f} is a number (${JSON.stringify(m[f])})`);
  }
  assert.equal(typeof m.is_processing, 'boolean');
  assert.equal(m.streamed, true);
  assert.equal(m.backend, 'fake');
  assert.equal(m.model, 'vlm-a');
  assert.ok(m.total_inferences >= 1);
  assert.ok(m.frames_received >= 1);
  assert.ok(m.tokens >= 1);
  assert.ok(m.frame_age_ms >= 250);
  assert.ok(m.ttft_ms >= 15, `ttft_ms ${m.ttft_ms} reflects fakevlm's 20 ms time to first token`);
  assert.ok(m.last_latency_ms >= m.ttft_ms, 'latency covers time to first token');
  assert.ok(!('request_payload' in resp), 'no payloads without debug');
  await c.close();
});

test('a bare JPEG without the LVF1 header is analysed too', TO, async () => {
  const prompt = 'Bare frame.';
  const c = await srv.session({ settings: { prompt, model: 'vlm-b', interval_ms: 5000 } });
  await c.start();
  c.sendFrame(J320, { header: false });
  const resp = await c.nextAnswer();
  checkAnswer(resp, { prompt, model: 'vlm-b', jpeg: J320, w: 320, h: 240 });
  await c.stop();
  await c.close();
});

test('a client answering credits with bare JPEGs is asked at its interval, not every 5 s', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'bare credits', model: 'vlm-a', interval_ms: 400 } });
  await c.start();
  c.autoFeed(J320, 0, { header: false });
  await sleep(3000);
  c.autoFeed(null);
  const answers = c.seen('vlm_response').length;
  // an unanswered credit is only asked again after 5 s: that would be one answer in 3 s
  assert.ok(answers >= 4, `answers in 3 s at a 400 ms interval: ${answers}`);
  await c.stop();
  await c.close();
});

test('credits come while started, at about the interval, and stop after stop', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'credits', model: 'vlm-a', interval_ms: 200 } });
  const ack = await c.start();
  assert.equal(ack.type, 'started');
  c.autoFeed(J320);
  const t0 = Date.now();
  await sleep(2000);
  c.autoFeed(null);
  const credits = c.seen('credit');
  const ids = credits.map((m) => m.credit_id);
  assert.ok(credits.length >= 4, `at least 4 credits in 2 s at 200 ms (got ${credits.length})`);
  assert.ok(credits.length <= 14, `no more than about one credit per interval (got ${credits.length})`);
  assert.equal(new Set(ids).size, ids.length, 'credit ids are distinct');
  assert.ok(c.seen('vlm_response').length >= 3, 'frames sent for credits were answered');
  assert.ok(Date.now() - t0 < T(5000));

  const stopped = await c.stop();
  assert.equal(stopped.type, 'stopped');
  const nAfterStop = c.seen('credit').length;
  await sleep(1000);
  const late = c.seen('credit').slice(nAfterStop);
  assert.equal(late.length, 0, `no credits after stopped (got ${late.length})`);
  await c.close();
});

test('a frame while stopped gets not_started', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'stopped', model: 'vlm-a' } });
  c.sendFrame(J640);
  const e = await c.nextError();
  assert.equal(e.code, 'not_started');
  await c.start();
  await c.stop();
  c.sendFrame(J640);
  assert.equal((await c.nextError()).code, 'not_started');
  await c.expectNone('vlm_response', 500);
  await c.close();
});

test('stop lets a running answer finish', TO, async () => {
  const fakeSlow = await startFakevlm({ models: ['slow'], ttftMs: 50, tokenMs: 60, tokens: 15 });
  const s2 = await startLivevlm({ backends: [fakeSlow] });
  try {
    const c = await s2.session({ settings: { prompt: 'finish me', interval_ms: 5000 } });
    await c.start();
    c.sendFrame(J640);
    await c.next('delta', { timeoutMs: T(5000) });
    c.send({ type: 'stop' });
    await c.next('stopped');
    const resp = await c.nextAnswer({ timeoutMs: T(5000) });
    checkAnswer(resp, { prompt: 'finish me', model: 'slow' });
    await c.close();
  } finally {
    await s2.stop();
    await fakeSlow.stop();
  }
});

test('two concurrent sessions with different prompts and models only get their own answers', TO, async () => {
  const pa = 'Session A: describe the gradient.';
  const pb = 'Session B: count the circles, please.';
  const a = await srv.session({ settings: { prompt: pa, model: 'vlm-a', interval_ms: 150 } });
  const b = await srv.session({ settings: { prompt: pb, model: 'vlm-b', interval_ms: 150 } });
  await Promise.all([a.start(), b.start()]);
  a.autoFeed(J640);
  b.autoFeed(J320);
  const until = Date.now() + T(15000);
  while ((a.seen('vlm_response').length < 4 || b.seen('vlm_response').length < 4) && Date.now() < until) {
    await sleep(100);
  }
  a.autoFeed(null);
  b.autoFeed(null);
  await Promise.all([a.stop(), b.stop()]);
  await sleep(400); // let answers in flight land, to check them too

  const ra = a.seen('vlm_response');
  const rb = b.seen('vlm_response');
  assert.ok(ra.length >= 4 && rb.length >= 4, `each session got answers (A ${ra.length}, B ${rb.length})`);
  for (const r of ra) checkAnswer(r, { prompt: pa, model: 'vlm-a', jpeg: J640, w: 640, h: 480 });
  for (const r of rb) checkAnswer(r, { prompt: pb, model: 'vlm-b', jpeg: J320, w: 320, h: 240 });

  // answer ids may be numbered per session: each socket's deltas belong to its own answer_starts,
  // and their text adds up to its own answers.
  for (const c of [a, b]) {
    const ids = new Set(c.seen('answer_start').map((m) => m.answer_id));
    for (const d of c.seen('delta')) assert.ok(ids.has(d.answer_id), `delta for an answer this session never started: ${JSON.stringify(d)}`);
    for (const r of c.seen('vlm_response')) {
      const text = c.seen('delta', (d) => d.answer_id === r.answer_id && d.__seq < r.__seq &&
        d.__seq > c.seen('answer_start', (s) => s.answer_id === r.answer_id)[0].__seq).map((d) => d.text).join('');
      assert.equal(text, r.text, 'the deltas of each answer add up to its text');
    }
  }
  assert.ok(!a.seen('delta').some((d) => d.text.includes(sha8(pb))), "B's prompt hash never reaches A");
  assert.ok(!b.seen('delta').some((d) => d.text.includes(sha8(pa))), "A's prompt hash never reaches B");
  assert.equal(a.seen('error').length, 0, JSON.stringify(a.seen('error')));
  assert.equal(b.seen('error').length, 0, JSON.stringify(b.seen('error')));

  // The two sessions were served at the same time, not one after the other.
  const spans = (c) => c.seen('answer_start').map((st) => {
    const end = c.seen('vlm_response').find((r) => r.answer_id === st.answer_id);
    return end ? [st.__t, end.__t] : null;
  }).filter(Boolean);
  const sa = spans(a);
  const sb = spans(b);
  const overlap = sa.some(([s1, e1]) => sb.some(([s2, e2]) => s1 < e2 && s2 < e1));
  assert.ok(overlap, 'answers of A and B overlapped in time (the backend has 8 slots)');
  await a.close();
  await b.close();
});

test('sockets sharing a session all get its answers; other sessions get none', TO, async () => {
  const prompt = 'shared by two tabs';
  const a = await srv.session({ settings: { prompt, model: 'vlm-a', interval_ms: 5000 } });
  const b = await srv.connect();
  const sb = await b.hello({ session_id: a.session.session_id, resume_secret: a.session.resume_secret });
  assert.equal(sb.session_id, a.session.session_id);
  const other = await srv.session({ settings: { prompt: 'bystander', model: 'vlm-b' } });

  await a.start();
  a.sendFrame(J640);
  const ra = await a.nextAnswer();
  const rb = await b.nextAnswer();
  assert.equal(ra.answer_id, rb.answer_id);
  assert.equal(ra.text, rb.text);
  checkAnswer(rb, { prompt, model: 'vlm-a' });
  assert.ok(b.seen('delta').length >= 1, 'the second tab sees the streamed deltas too');
  await other.expectNone('vlm_response', 300);
  assert.equal(other.seen('delta').length, 0);
  assert.equal(other.seen('answer_start').length, 0);
  await a.stop();
  await Promise.all([a.close(), b.close(), other.close()]);
});

test('pushed frames: one waiting frame per session, the newest replaces it', TO, async () => {
  const fakeSlow = await startFakevlm({ models: ['slow'], ttftMs: 200, tokenMs: 30, tokens: 10 });
  const s2 = await startLivevlm({ backends: [fakeSlow] });
  try {
    const prompt = 'mailbox';
    const c = await s2.session({ settings: { prompt, interval_ms: 3600000 } });
    await c.start();
    c.sendFrame(J640);
    await c.next('answer_start', { timeoutMs: T(5000) });
    const newest = padJpeg(J640, 40000);
    c.sendFrame(J320);
    c.sendFrame(J320);
    c.sendFrame(J320);
    c.sendFrame(newest);
    const first = await c.nextAnswer({ timeoutMs: T(5000) });
    checkAnswer(first, { jpeg: J640 });
    const second = await c.nextAnswer({ timeoutMs: T(5000) });
    checkAnswer(second, { jpeg: newest, w: 640, h: 480 });
    assert.ok(second.metrics.frames_replaced >= 3, `frames_replaced ${second.metrics.frames_replaced} >= 3`);
    assert.ok(second.metrics.frames_received >= 5, `frames_received ${second.metrics.frames_received} >= 5`);
    await c.expectNone('vlm_response', T(800));
    await c.stop();
    await c.close();
  } finally {
    await s2.stop();
    await fakeSlow.stop();
  }
});

test('debug adds request/response payloads (image cut) and shows max_tokens/temperature sent', TO, async () => {
  const prompt = 'debug payloads';
  const c = await srv.session({ settings: { prompt, model: 'vlm-b', debug: true, max_tokens: 5, temperature: 0.3, interval_ms: 5000 } });
  await c.start();
  c.sendFrame(J640);
  const r = await c.nextAnswer();
  assert.ok('request_payload' in r, 'request_payload present with debug');
  assert.ok('response_payload' in r, 'response_payload present with debug');
  const req = typeof r.request_payload === 'string' ? r.request_payload : JSON.stringify(r.request_payload);
  assert.ok(req.length < J640.length, `request_payload is cut (${req.length} chars), not the whole image`);
  assert.ok(req.includes(prompt), 'request_payload carries the prompt');
  assert.ok(req.includes('vlm-b'), 'request_payload carries the model');
  assert.match(req, /"max_(completion_)?tokens"\s*:\s*5\b/, 'max_tokens 5 reached the backend');
  assert.match(req, /"temperature"\s*:\s*0\.3\b/, 'temperature 0.3 reached the backend');
  assert.ok(r.metrics.tokens <= 5, `answer honours max_tokens=5 (metrics.tokens ${r.metrics.tokens})`);

  const up = await c.updateSettings({ debug: false });
  assert.equal(up.type, 'settings_updated');
  c.sendFrame(J640);
  const r2 = await c.nextAnswer();
  assert.ok(!('request_payload' in r2) && !('response_payload' in r2), 'no payloads once debug is off');
  await c.stop();
  await c.close();
});

test('changing the prompt while started changes the next answers', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'first prompt', model: 'vlm-a', interval_ms: 5000 } });
  await c.start();
  c.sendFrame(J320);
  checkAnswer(await c.nextAnswer(), { prompt: 'first prompt' });
  await c.updateSettings({ prompt: 'second prompt', model: 'vlm-b' });
  c.sendFrame(J320);
  checkAnswer(await c.nextAnswer(), { prompt: 'second prompt', model: 'vlm-b' });
  await c.stop();
  await c.close();
});

test('resume returns the answer history', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'history', model: 'vlm-a', interval_ms: 5000 } });
  await c.start();
  c.sendFrame(J320);
  const r1 = await c.nextAnswer();
  c.sendFrame(J320);
  await c.nextAnswer();
  await c.stop();
  await c.close();
  const d = await srv.connect();
  const s = await d.hello({ session_id: c.session.session_id, resume_secret: c.session.resume_secret });
  assert.ok(Array.isArray(s.history) && s.history.length >= 2, `history has the 2 answers (${JSON.stringify(s.history).slice(0, 200)})`);
  assert.ok(JSON.stringify(s.history).includes(r1.text), 'history holds the answer text');
  assert.ok(s.metrics.total_inferences >= 2, 'metrics survive the reconnect');
  await d.close();
});

test('without any backend: config says how to fix it and frames get no_backend', TO, async () => {
  const s0 = await startLivevlm({ backends: [] });
  try {
    const cfg = (await s0.request('/api/v1/config')).json();
    assert.deepEqual(cfg.backends, []);
    assert.equal(typeof cfg.no_backend_help, 'string');
    assert.ok(cfg.no_backend_help.length > 10);
    const c = await s0.session();
    await c.start();
    c.sendFrame(J640);
    const e = await c.nextError();
    assert.equal(e.code, 'no_backend');
    await c.close();
  } finally {
    await s0.stop();
  }
});
