// analyze.test.mjs - POST /api/v1/analyze, the one-shot API for scripts (docs/protocol.md,
// "One-shot analysis"): a JPEG body and query settings in, the answer out as JSON or as
// Server-Sent Events; the same auth, caps, fairness and metrics as the WebSocket path; a client
// that goes away has its backend request cancelled; bad input gets a clear error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  startFakevlm, startLivevlm, stopAll, parseFakeAnswer, sha8, scrapeMetrics, fakevlmStats, waitUntil, sleep,
  JPEG_320, JPEG_640, lvf1, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(30000) };
let fake;
let srv;

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1', 'fake-vlm-2'], ttftMs: 30, tokenMs: 10, tokens: 8 });
  srv = await startLivevlm({ backends: [fake] });
});
after(stopAll);

function analyze(query, body, headers = {}, opts = {}) {
  return srv.request(`/api/v1/analyze${query ? `?${query}` : ''}`, {
    method: 'POST', body, headers: { 'Content-Type': 'image/jpeg', ...headers }, ...opts,
  });
}

/** Parse a text/event-stream body into [{event, data}] (data parsed as JSON). */
function parseSse(text) {
  const out = [];
  for (const block of text.split('\n\n')) {
    if (!block.trim()) continue;
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    out.push({ event, data: data.length ? JSON.parse(data.join('\n')) : null });
  }
  return out;
}

test('a JPEG in, the answer out as JSON, with the prompt and model asked for', TO, async () => {
  const jpeg = JPEG_320();
  const prompt = 'What is on the desk?\nCount the pens.';
  const r = await analyze(`prompt=${encodeURIComponent(prompt)}&model=fake-vlm-2&max_tokens=6`, jpeg);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'], /^application\/json/);
  const a = r.json();
  const fa = parseFakeAnswer(a.text);
  assert.ok(fa, `fakevlm's answer: ${a.text}`);
  assert.equal(fa.model, 'fake-vlm-2');
  assert.equal(fa.prompt, sha8(prompt));
  assert.equal(fa.imageBytes, jpeg.length);
  assert.equal(a.model, 'fake-vlm-2');
  assert.equal(typeof a.backend, 'string');
  assert.ok(a.answer_id >= 1);
  for (const k of ['latency_ms', 'ttft_ms', 'queue_wait_ms', 'frame_age_ms', 'tokens'])
    assert.equal(typeof a.metrics[k], 'number', `metrics.${k}`);
  assert.ok(a.metrics.latency_ms >= a.metrics.ttft_ms);
  // an LVF1-wrapped frame (the page's envelope) is taken too
  const r2 = await analyze('', lvf1(jpeg, 0, 0));
  assert.equal(r2.status, 200, r2.text);
  assert.equal(parseFakeAnswer(r2.json().text).imageBytes, jpeg.length);
});

test('stream=1 (or Accept: text/event-stream) streams answer_start, deltas and the answer as SSE', TO, async () => {
  for (const [query, headers] of [['stream=1', {}], ['', { Accept: 'text/event-stream' }]]) {
    const r = await analyze(query, JPEG_320(), headers);
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /^text\/event-stream/);
    const ev = parseSse(r.text);
    const names = ev.map((e) => e.event);
    assert.equal(names[0], 'answer_start', names.join(','));
    assert.equal(names[names.length - 1], 'answer', names.join(','));
    assert.ok(names.includes('delta'), names.join(','));
    const deltas = ev.filter((e) => e.event === 'delta').map((e) => e.data.text).join('');
    const answer = ev[ev.length - 1].data;
    assert.equal(deltas, answer.text, 'the deltas make up the answer');
    assert.equal(ev[0].data.answer_id, answer.answer_id);
  }
});

test('no credential: 401 before the body is read; a wrong one counts as a failed login', TO, async () => {
  const r = await analyze('', JPEG_320(), {}, { auth: false });
  assert.equal(r.status, 401);
  assert.equal(r.json().error.code, 'unauthorized');
  const big = Buffer.alloc(1 << 20, 0x41); // 1 MiB: refused at the head, not buffered
  const r2 = await analyze('', big, { Authorization: 'Bearer nope' }, { auth: false });
  assert.ok(r2.status === 401 || r2.status === 429, `status ${r2.status}`);
});

test('bad input: clear errors, nothing sent to the backend', TO, async () => {
  const before = (await fakevlmStats(fake)).requests;
  let r = await analyze('', Buffer.from('not a jpeg'));
  assert.equal(r.status, 400);
  assert.equal(r.json().error.code, 'bad_frame');
  r = await analyze('', Buffer.alloc(0));
  assert.equal(r.status, 400);
  r = await analyze('max_tokens=lots', JPEG_320());
  assert.equal(r.status, 400);
  assert.equal(r.json().error.code, 'invalid_setting');
  assert.equal(r.json().error.field, 'max_tokens');
  r = await analyze('max_tokens=999999999', JPEG_320());
  assert.equal(r.status, 400);
  assert.equal(r.json().error.field, 'max_tokens');
  r = await analyze(`prompt=${'x'.repeat(4001)}`, JPEG_320());
  assert.ok(r.status === 400 || r.status === 414 || r.status === 431, `status ${r.status}`);
  r = await analyze('prompt=%zz', JPEG_320());
  assert.equal(r.status, 400);
  assert.equal(r.json().error.field, 'prompt');
  r = await analyze('backend=nosuch', JPEG_320());
  assert.equal(r.status, 400);
  assert.equal(r.json().error.field, 'backend');
  r = await analyze('model=no-such-model', JPEG_320());
  assert.equal(r.status, 503, r.text);
  assert.equal(r.json().error.code, 'no_backend');
  const after = (await fakevlmStats(fake)).requests;
  assert.equal(after, before, 'nothing reached the backend');
});

test('a body larger than the frame cap is refused with 413', TO, async () => {
  const cfg = (await srv.request('/api/v1/config')).json();
  const big = Buffer.alloc(cfg.limits.max_frame_bytes + 1024, 0x41);
  const r = await analyze('', big).catch((e) => ({ status: 0, error: e }));
  // the server may answer before the whole body is sent and close: a reset is acceptable too
  assert.ok(r.status === 413 || r.status === 0, `status ${r.status}`);
});

test('the client goes away: its backend request is cancelled and its session removed', TO, async () => {
  const slow = await startFakevlm({ ttftMs: 4000, tokenMs: 10, tokens: 4 });
  const s2 = await startLivevlm({ backends: [slow] });
  const m0 = await scrapeMetrics(s2);
  const req = http.request({
    host: '127.0.0.1', port: s2.port, method: 'POST', path: '/api/v1/analyze',
    headers: { ...s2.authHeader, 'Content-Type': 'image/jpeg' },
  });
  req.on('error', () => {});
  req.end(JPEG_320());
  await waitUntil(async () => (await fakevlmStats(slow))?.active >= 1, { timeoutMs: T(5000), what: 'the request on the backend' });
  const sessions = (await scrapeMetrics(s2)).get('livevlm_sessions');
  assert.ok(sessions >= 1, `a session while it runs (${sessions})`);
  req.destroy();
  await waitUntil(async () => (await fakevlmStats(slow))?.active === 0, { timeoutMs: T(3000), what: 'the backend request cancelled' });
  await waitUntil(async () => (await scrapeMetrics(s2)).get('livevlm_sessions') === m0.get('livevlm_sessions'),
    { timeoutMs: T(3000), what: 'the one-shot session removed' });
});

test('one-shot requests share the fair queue with pages: a burst from one user does not starve another', TO, async () => {
  // 2 slots, ~500 ms an answer: a burst of 12 is ~3 s of work; in arrival order the other user
  // would wait for all of it, in fair order for about one answer
  const gpu = await startFakevlm({ slots: 2, ttftMs: 300, tokenMs: 40, tokens: 5 });
  const s3 = await startLivevlm({ backends: [gpu], args: ['--backend-max', 'fake=2'] });
  const burst = [];
  for (let i = 0; i < 12; i++) burst.push(httpPost(s3, '127.0.0.3'));
  await sleep(100);
  const t0 = Date.now();
  const other = await httpPost(s3, '127.0.0.2');
  const waited = Date.now() - t0;
  assert.equal(other.status, 200, other.text);
  const results = await Promise.all(burst);
  const ok = results.filter((x) => x.status === 200).length;
  const busy = results.filter((x) => x.status === 503 && JSON.parse(x.text).error.code === 'busy').length;
  assert.equal(ok + busy, 12, `every burst request is answered or told the backends are busy: ${results.map((x) => x.status)}`);
  assert.ok(ok >= 4, `the burst is served as far as the backend allows (${ok} of 12)`);
  const m = await scrapeMetrics(s3);
  assert.equal(m.get('livevlm_answers_total'), ok + 1, 'one-shot answers are counted like the others');
  assert.ok(waited < T(2000), `the other user waited ${waited} ms, not behind the whole burst`);
});

function httpPost(server, localAddress) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port: server.port, method: 'POST', path: '/api/v1/analyze', localAddress,
      headers: { ...server.authHeader, 'Content-Type': 'image/jpeg' },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(T(15000), () => req.destroy(new Error('no answer')));
    req.on('error', reject);
    req.end(JPEG_640());
  });
}
