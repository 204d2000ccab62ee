// detect.test.mjs - the default user path: `livevlm serve` with no --backend and without
// --no-detect finds a local server on one of the well-known ports (Ollama 11434, vLLM 8000,
// SGLang 30000, llama.cpp 8080, LM Studio 1234; src/backend/lv_backend.c local_candidates), lists
// it in /api/v1/config, makes its vision model the default, and a WebSocket session gets a real
// answer from it. A fakevlm stands in for the server, on the first of those ports that is free.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startFakevlm, startLivevlm, stopAll, waitUntil, sha8, parseFakeAnswer, JPEG_320, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(40000) };
const DETECT_PORTS = [
  { port: 11434, id: 'ollama' }, { port: 8000, id: 'vllm' }, { port: 30000, id: 'sglang' },
  { port: 8080, id: 'llamacpp' }, { port: 1234, id: 'lmstudio' },
];

after(stopAll);

/** Whether nothing listens on 127.0.0.1:port (we can bind it ourselves). */
function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** A fakevlm on the first free detect port, or null when every one is taken. */
async function fakevlmOnDetectPort(models) {
  const tried = [];
  for (const cand of DETECT_PORTS) {
    if (!(await portFree(cand.port))) { tried.push(`${cand.port} busy`); continue; }
    try {
      const fake = await startFakevlm({ port: cand.port, models, slots: 4, ttftMs: 20, tokenMs: 5, tokens: 6 });
      return { fake, ...cand };
    } catch (e) { // taken between the check and the bind
      tried.push(`${cand.port}: ${e.message.split('\n')[0]}`);
    }
  }
  return { fake: null, tried };
}

test('no --backend, detection on: a local server on a well-known port is found, listed and answers', TO, async (t) => {
  // A model name of our own, so another local server (or a parallel run) cannot be mistaken for ours.
  const model = `detected-vl-${process.pid}`;
  const found = await fakevlmOnDetectPort([model]);
  if (!found.fake) {
    t.skip(`every detect port is taken (${found.tried.join('; ')}): cannot place a stand-in server`);
    return;
  }
  const { fake, port, id } = found;
  const srv = await startLivevlm({ detect: true, backends: [] });
  try {
    // detection runs after the listener is up: wait for it to land in the config
    let cfg;
    await waitUntil(async () => {
      cfg = (await srv.request('/api/v1/config')).json();
      return cfg.backends.some((b) => b.id === id && b.healthy);
    }, { timeoutMs: T(8000), what: `backend "${id}" detected on port ${port}` });
    const b = cfg.backends.find((x) => x.id === id);
    assert.equal(b.url_host, `127.0.0.1:${port}`, 'the detected backend is the server on the detect port');
    assert.deepEqual(b.models, [model], 'its models were discovered from GET /v1/models');
    assert.equal(cfg.no_backend_help ?? null, null, 'no "how to add a backend" help once one is found');
    assert.ok(srv.proc.logText().includes(`found a local backend ${id} at http://127.0.0.1:${port}/v1`),
      `the log says what was found:\n${srv.logTail(10)}`);
    // detection ends once every port has answered or timed out (1 s), a silent one included
    await waitUntil(() => /backend detection found [1-9]\d* local server/.test(srv.proc.logText()),
      { timeoutMs: T(5000), what: 'the end of detection in the log' });

    // The default user path picks no model: the detected vision model is the default. (When
    // another real server answers on another detect port, it may own the default: then name ours.)
    const alone = cfg.backends.length === 1;
    if (alone) assert.equal(cfg.defaults.model, model, 'the detected vision model is the default');
    else t.diagnostic(`other local servers were detected too: ${cfg.backends.map((x) => x.id).join(', ')}`);

    const prompt = 'detected backend: what is in the frame?';
    const c = await srv.session({ settings: { prompt, interval_ms: 200, ...(alone ? {} : { model }) } });
    await c.start();
    const credit = await c.next('credit');
    c.sendFrame(JPEG_320(), { creditId: credit.credit_id });
    const resp = await c.nextAnswer({ timeoutMs: T(10000) });
    const a = parseFakeAnswer(resp.text);
    assert.ok(a, `the answer is fakevlm's: ${JSON.stringify(resp.text)}`);
    assert.equal(a.model, model, 'answered by the detected server\'s model');
    assert.equal(a.prompt, sha8(prompt), 'about the session\'s prompt');
    assert.equal(resp.metrics.backend, id, 'the answer names the detected backend');
    assert.deepEqual(c.seen('error'), []);
    await c.close();
  } finally {
    await srv.stop();
    await fake.stop();
  }
});
