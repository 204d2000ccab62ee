// faults.test.mjs - backend faults injected by fakevlm (a "[[fault:KIND]]" marker in the prompt)
// reach the user as `error` with backend_error / backend_timeout, never as answer text, and the
// session recovers once the prompt is normal again. Also: one session's stalled request does not
// hold up another session.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, sleep, sha8, parseFakeAnswer, JPEG_640, JPEG_320, T,
} from '../lib/harness.mjs';

let fake;
let srv;
const TO = { timeout: T(40000) };
const J640 = JPEG_640();
const J320 = JPEG_320();
const FIRST_TOKEN_TIMEOUT_MS = 500;
const TOTAL_TIMEOUT_MS = 3000;

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'], slots: 8, ttftMs: 20, tokenMs: 10, tokens: 10 });
  srv = await startLivevlm({
    backends: [fake],
    args: ['--first-token-timeout-ms', String(FIRST_TOKEN_TIMEOUT_MS),
      '--total-timeout-ms', String(TOTAL_TIMEOUT_MS), '--connect-timeout-ms', '1000'],
  });
});
after(stopAll);

/** Push one frame and wait for what it produced: the vlm_response or the error. */
async function oneFrame(c, jpeg = J640, timeoutMs = T(8000)) {
  const t0 = Date.now();
  c.sendFrame(jpeg);
  const m = await c.next(['vlm_response', 'error'], { timeoutMs });
  m.elapsed = Date.now() - t0;
  return m;
}

/** After a fault, a normal prompt gets a normal answer again. */
async function recovers(c, prompt) {
  const up = await c.updateSettings({ prompt });
  assert.equal(up.type, 'settings_updated');
  const m = await oneFrame(c, J320);
  assert.equal(m.type, 'vlm_response', `session recovered after the fault: ${JSON.stringify(m).slice(0, 300)}`);
  const a = parseFakeAnswer(m.text);
  assert.ok(a, m.text);
  assert.equal(a.prompt, sha8(prompt));
  return m;
}

function assertNoFaultText(c) {
  for (const r of c.seen('vlm_response')) {
    assert.ok(!/\[\[fault|server_error|Internal Server Error|"error"/i.test(r.text), `backend error surfaced as answer text: ${r.text}`);
  }
}

test('HTTP 500 from the backend: error backend_error, not answer text; then recovery', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'Describe. [[fault:error500]]', interval_ms: 3600000 } });
  await c.start();
  const m = await oneFrame(c);
  assert.equal(m.type, 'error', `expected an error, got ${JSON.stringify(m).slice(0, 300)}`);
  assert.equal(m.code, 'backend_error');
  assert.equal(typeof m.message, 'string');
  await c.expectNone('vlm_response', 300);
  assertNoFaultText(c);
  const ok = await recovers(c, 'Describe, no fault this time.');
  assert.ok(ok.metrics.errors >= 1, `metrics.errors counts the failure (${ok.metrics.errors})`);
  await c.stop();
  await c.close();
});

test('HTTP 429 from the backend: error backend_error; then recovery', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'Busy? [[fault:error429]]', interval_ms: 3600000 } });
  await c.start();
  const m = await oneFrame(c);
  assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 300));
  assert.ok(['backend_error', 'backend_timeout'].includes(m.code), `code ${m.code}`);
  await recovers(c, 'Not busy now.');
  await c.stop();
  await c.close();
});

test('no first token: error backend_timeout after --first-token-timeout-ms; then recovery', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'Hold on. [[fault:stall]]', interval_ms: 3600000 } });
  await c.start();
  const m = await oneFrame(c);
  assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 300));
  assert.equal(m.code, 'backend_timeout');
  assert.ok(m.elapsed >= FIRST_TOKEN_TIMEOUT_MS - 50, `timed out after ${m.elapsed} ms, not before ${FIRST_TOKEN_TIMEOUT_MS}`);
  assert.ok(m.elapsed < T(FIRST_TOKEN_TIMEOUT_MS + 2500), `timed out after ${m.elapsed} ms, expected about ${FIRST_TOKEN_TIMEOUT_MS}`);
  assert.equal(c.seen('delta').length, 0);
  await recovers(c, 'Go on.');
  await c.stop();
  await c.close();
});

test('stall after the first token: backend_timeout from the total timeout, no vlm_response', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'Start then stop. [[fault:stall-after-first]]', interval_ms: 3600000 } });
  await c.start();
  const m = await oneFrame(c, J640, T(TOTAL_TIMEOUT_MS + 6000));
  assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 300));
  assert.equal(m.code, 'backend_timeout');
  assert.ok(m.elapsed < T(TOTAL_TIMEOUT_MS + 3000), `timed out after ${m.elapsed} ms`);
  assert.equal(c.seen('vlm_response').length, 0);
  await recovers(c, 'Start and finish.');
  await c.stop();
  await c.close();
});

test('malformed stream: error backend_error; then recovery', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'Garble. [[fault:malformed]]', interval_ms: 3600000 } });
  await c.start();
  const m = await oneFrame(c);
  assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 300));
  assert.equal(m.code, 'backend_error');
  await c.expectNone('vlm_response', 300);
  assertNoFaultText(c);
  await recovers(c, 'Speak clearly.');
  await c.stop();
  await c.close();
});

test('connection dropped half way: error backend_error, no vlm_response; then recovery', TO, async () => {
  const c = await srv.session({ settings: { prompt: 'Hang up. [[fault:drop]]', interval_ms: 3600000 } });
  await c.start();
  const m = await oneFrame(c);
  assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 300));
  assert.equal(m.code, 'backend_error');
  await c.expectNone('vlm_response', 300);
  await recovers(c, 'Stay on the line.');
  await c.stop();
  await c.close();
});

test('unstreamed answer (backend ignores stream:true): vlm_response with streamed=false', TO, async () => {
  const prompt = 'All at once. [[fault:nostream]]';
  const c = await srv.session({ settings: { prompt, interval_ms: 3600000 } });
  await c.start();
  const m = await oneFrame(c);
  assert.equal(m.type, 'vlm_response', JSON.stringify(m).slice(0, 300));
  assert.equal(m.metrics.streamed, false);
  const a = parseFakeAnswer(m.text);
  assert.ok(a, m.text);
  assert.equal(a.prompt, sha8(prompt));
  assert.equal(a.imageBytes, J640.length);
  assert.ok(m.metrics.tokens >= 1, `tokens ${m.metrics.tokens}`);
  await c.stop();
  await c.close();
});

test("one session's stalled request does not hold up another session", TO, async () => {
  const stuck = await srv.session({ settings: { prompt: 'Stuck. [[fault:stall]]', interval_ms: 3600000 } });
  const fine = await srv.session({ settings: { prompt: 'Fine.', interval_ms: 3600000 } });
  await Promise.all([stuck.start(), fine.start()]);
  stuck.sendFrame(J640);
  await sleep(50);
  const t0 = Date.now();
  fine.sendFrame(J320);
  const r = await fine.nextAnswer({ timeoutMs: T(3000) });
  assert.ok(Date.now() - t0 < T(FIRST_TOKEN_TIMEOUT_MS), `the other session was answered in ${Date.now() - t0} ms`);
  assert.equal(parseFakeAnswer(r.text).prompt, sha8('Fine.'));
  const e = await stuck.nextError('backend_timeout', { timeoutMs: T(4000) });
  assert.equal(e.code, 'backend_timeout');
  assert.equal(fine.seen('error').length, 0);
  await Promise.all([stuck.stop(), fine.stop()]);
  await Promise.all([stuck.close(), fine.close()]);
});

test('a backend that is down: error, no answer text, and the server keeps running', TO, async () => {
  const gone = await startFakevlm({ models: ['gone'] });
  const s2 = await startLivevlm({ backends: [gone], args: ['--connect-timeout-ms', '500', '--first-token-timeout-ms', '1000'] });
  try {
    const c = await s2.session({ settings: { prompt: 'anyone there?', interval_ms: 3600000 } });
    await c.start();
    await gone.stop();
    const m = await oneFrame(c);
    assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 300));
    assert.ok(['backend_error', 'backend_timeout', 'no_backend'].includes(m.code), `code ${m.code}`);
    const h = await s2.request('/healthz', { auth: false });
    assert.equal(h.status, 200);
    await c.close();
  } finally {
    await s2.stop();
  }
});
