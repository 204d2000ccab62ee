// trace.test.mjs - W3C trace context through the cluster (docs/protocol.md "Tracing"): a
// frontend's analyze request with a traceparent becomes a job whose body carries the trace, and
// the worker's backend request carries that trace id with a span of its own; a worker started
// with --log-format json writes only JSON lines.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { stopAll, fakevlmStats, JPEG_320, T } from '../lib/harness.mjs';
import { startCluster } from '../lib/cluster.mjs';

const TO = { timeout: T(60000) };
after(stopAll);

test('a traceparent crosses Redis: the worker\'s backend request carries its trace id', TO, async () => {
  const cl = await startCluster({ frontends: 1, workers: 1, haproxy: false, fakes: [{}],
    workerArgs: ['--log-format', 'json'] });
  const trace = '5e1d2c3b4a5f60718293a4b5c6d7e8f9';
  const before = await fakevlmStats(cl.fakes[0]);
  const r = await cl.frontends[0].request('/api/v1/analyze?max_tokens=4', {
    method: 'POST', body: JPEG_320(),
    headers: { 'Content-Type': 'image/jpeg', traceparent: `00-${trace}-a1a2a3a4a5a6a7a8-01` },
  });
  assert.equal(r.status, 200, r.text);
  const after1 = await fakevlmStats(cl.fakes[0]);
  assert.equal(after1.requests - before.requests, 1);
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(after1.traceparents.at(-1));
  assert.ok(m, `a W3C traceparent: ${after1.traceparents.at(-1)}`);
  assert.equal(m[1], trace);
  assert.notEqual(m[2], 'a1a2a3a4a5a6a7a8');
  // the worker's log: JSON lines only
  const w = cl.workers[0];
  const lines = fs.readFileSync(path.join(w.dir, 'worker.log'), 'utf8').split('\n')
    .filter((l) => l && !l.startsWith('### '));
  assert.ok(lines.length >= 1);
  for (const l of lines) {
    const o = JSON.parse(l);
    assert.ok(o.ts && o.level && typeof o.msg === 'string', l);
  }
});
