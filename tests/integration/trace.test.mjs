// trace.test.mjs - W3C trace context and JSON logs (docs/protocol.md "Tracing", docs/operations.md
// "Logs and tracing"): a request's traceparent becomes the trace of its answer, and every backend
// request carries that trace id with a span id of its own (fakevlm's /stats shows what it got); a
// WebSocket upgrade's traceparent is its session's trace; without one a session gets a new trace;
// a malformed one is ignored, counted and never written to the log; with --log-format json every
// stderr line is a JSON object and a session's lines carry its ids.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  startFakevlm, startLivevlm, stopAll, fakevlmStats, scrapeMetrics, cli, waitUntil, sleep, JPEG_320, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(40000) };
const TP_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;
const TRACE_A = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_A = '00f067aa0ba902b7';
let fake;
let srv;

before(async () => {
  fake = await startFakevlm({ ttftMs: 10, tokenMs: 2, tokens: 4 });
  srv = await startLivevlm({ backends: [fake] });
});
after(stopAll);

/** The traceparents fakevlm received since a /stats snapshot `since` (at most the 16 it keeps). */
async function traceparentsSince(since) {
  const st = await fakevlmStats(fake);
  assert.ok(st, 'fakevlm /stats answers');
  const n = st.requests - since.requests;
  assert.ok(n >= 1 && n <= 16, `new chat requests: ${n}`);
  return st.traceparents.slice(-n);
}

function analyze(headers = {}, server = srv) {
  return server.request('/api/v1/analyze?max_tokens=4', {
    method: 'POST', body: JPEG_320(), headers: { 'Content-Type': 'image/jpeg', ...headers },
  });
}

/** A started session fed until `answers` answers came, then stopped; its client is returned. */
async function sessionAnswers(server, answers, connectOpts = {}) {
  const c = await server.session({ settings: { interval_ms: 100, max_tokens: 4 } }, connectOpts);
  await c.start();
  c.autoFeed(JPEG_320());
  for (let i = 0; i < answers; i++) await c.nextAnswer();
  c.autoFeed(null);
  await c.stop();
  await sleep(T(100)); // an answer still in flight ends before we read what fakevlm saw
  return c;
}

test('analyze: the request\'s traceparent reaches the backend with the same trace id and a new span', TO, async () => {
  const before0 = await fakevlmStats(fake);
  const r = await analyze({ traceparent: `00-${TRACE_A}-${PARENT_A}-01`, tracestate: 'rojo=00f067aa0ba902b7' });
  assert.equal(r.status, 200, r.text);
  const seen = await traceparentsSince(before0);
  assert.equal(seen.length, 1, JSON.stringify(seen));
  const m = TP_RE.exec(seen[0]);
  assert.ok(m, `a W3C traceparent: ${seen[0]}`);
  assert.equal(m[1], TRACE_A);
  assert.notEqual(m[2], PARENT_A, 'the backend request is a span of its own');
  assert.equal((await fakevlmStats(fake)).traced, before0.traced + 1);
});

test('a WebSocket upgraded with a traceparent: every backend request of its session carries that trace', TO, async () => {
  const trace = 'aaaabbbbccccddddeeeeffff00001111';
  const before0 = await fakevlmStats(fake);
  const c = await sessionAnswers(srv, 2, { headers: { traceparent: `00-${trace}-1111222233334444-01` } });
  const seen = await traceparentsSince(before0);
  assert.ok(seen.length >= 2, JSON.stringify(seen));
  const spans = new Set();
  for (const tp of seen) {
    const m = TP_RE.exec(tp);
    assert.ok(m, `a W3C traceparent: ${tp}`);
    assert.equal(m[1], trace);
    assert.notEqual(m[2], '1111222233334444');
    spans.add(m[2]);
  }
  assert.equal(spans.size, seen.length, 'a new span id per backend request');
  await c.close();
});

test('a session without a traceparent gets a valid trace of its own, the same for all its requests', TO, async () => {
  const before0 = await fakevlmStats(fake);
  const c = await sessionAnswers(srv, 2);
  const seen = await traceparentsSince(before0);
  assert.ok(seen.length >= 2, JSON.stringify(seen));
  const traces = new Set(seen.map((tp) => {
    const m = TP_RE.exec(tp);
    assert.ok(m, `a W3C traceparent: ${tp}`);
    assert.notEqual(m[1], '0'.repeat(32));
    return m[1];
  }));
  assert.equal(traces.size, 1, `one trace per session: ${[...traces]}`);
  assert.ok(!traces.has(TRACE_A));
  await c.close();
  // another session: another trace
  const before1 = await fakevlmStats(fake);
  const c2 = await sessionAnswers(srv, 1);
  const seen2 = await traceparentsSince(before1);
  assert.ok(!traces.has(TP_RE.exec(seen2[0])[1]), 'each session has its own trace');
  await c2.close();
});

test('a malformed traceparent is ignored (a new trace), counted, and never written to the log', TO, async () => {
  const bad = [
    `00-${TRACE_A.toUpperCase()}-${PARENT_A}-01`, // upper case
    `00-${'0'.repeat(32)}-${PARENT_A}-01`, // all-zero trace id
    `ff-${TRACE_A}-${PARENT_A}-01`, // version ff
    '00-"},{"level":"error","msg":"forged-entry-7731"}-zz', // an attempt at a forged log line
  ];
  const m0 = await scrapeMetrics(srv);
  const base = m0.get('livevlm_traceparent_invalid_total');
  assert.equal(typeof base, 'number', 'livevlm_traceparent_invalid_total is exported');
  for (const v of bad) {
    const before0 = await fakevlmStats(fake);
    const r = await analyze({ traceparent: v });
    assert.equal(r.status, 200, r.text);
    const [tp] = await traceparentsSince(before0);
    const m = TP_RE.exec(tp);
    assert.ok(m, `a new valid traceparent went out instead: ${tp}`);
    assert.notEqual(m[1], TRACE_A);
  }
  // a WebSocket upgrade's malformed traceparent too
  const c = await srv.connect({ headers: { traceparent: 'not-a-traceparent' } });
  await c.hello({});
  await c.close();
  const m1 = await scrapeMetrics(srv);
  assert.equal(m1.get('livevlm_traceparent_invalid_total'), base + bad.length + 1);
  const log = srv.proc.logText();
  assert.ok(!log.includes('forged-entry-7731'), 'the bad value is not in the log');
  assert.ok(!log.includes(TRACE_A.toUpperCase()));
  assert.match(log, /a malformed traceparent header \(\d+ bytes\) from 127\.0\.0\.1 was ignored/);
});

test('--log-format json: every stderr line is a JSON object; a session\'s lines carry its ids', TO, async () => {
  const js = await startLivevlm({ backends: [fake], auth: 'accounts', args: ['--log-format', 'json'] });
  const k = cli(['key', 'add', 'admin'], { configDir: js.configDir });
  assert.equal(k.code, 0, k.stderr);
  js.apiKey = k.lines[0];
  // the running server reads the new key within about a second
  await waitUntil(async () => (await js.request('/api/v1/me')).status === 200,
    { timeoutMs: T(5000), what: 'the new key works' });
  const trace = '0af7651916cd43dd8448eb211c80319c';
  const c = await sessionAnswers(js, 1, { headers: { traceparent: `00-${trace}-b7ad6b7169203331-01` } });
  const sid = c.session.session_id;
  await c.close();
  // a refused upgrade (no credential) logs the address
  await js.connect({ auth: false }).then((x) => x.close(), () => {});
  await sleep(T(200));
  const lines = fs.readFileSync(js.proc.logPath, 'utf8').split('\n')
    .filter((l) => l && !l.startsWith('### ')); // the harness's own header line
  assert.ok(lines.length > 3, `some log lines: ${lines.length}`);
  const objs = lines.map((l) => {
    let o;
    assert.doesNotThrow(() => { o = JSON.parse(l); }, `a JSON line: ${l}`);
    assert.equal(typeof o, 'object');
    assert.match(o.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(o.level), l);
    assert.equal(typeof o.msg, 'string');
    return o;
  });
  const mine = objs.filter((o) => o.session === sid);
  assert.ok(mine.length >= 1, `lines about session ${sid}`);
  const created = mine.find((o) => /created$/.test(o.msg));
  assert.ok(created, JSON.stringify(mine));
  assert.equal(created.trace_id, trace);
  assert.equal(created.tenant, 'default');
  assert.match(created.user || '', /^[0-9a-f]+$/, 'the user id (an account)');
  assert.equal(created.ip, '127.0.0.1');
  for (const o of mine) assert.equal(o.trace_id, trace, JSON.stringify(o));
  const answer = mine.find((o) => o.answer >= 1);
  assert.ok(answer, 'an answer line (debug) names its answer, backend and model');
  assert.equal(answer.backend, 'fake');
  assert.equal(answer.model, 'fake-vlm-1');
  // no other session's ids leak onto this session's lines, and the refusal names its address
  assert.ok(objs.some((o) => /refused WebSocket upgrade/.test(o.msg) && o.ip === '127.0.0.1'));
  await js.stop();
});
