// tenant_allow.test.mjs - a tenant's allowed backends and models are enforced
// (docs/internals/accounts.md "Tenants"): the catalogue (GET /api/v1/models, /api/v1/config) lists
// only what the tenant may use; hello and update_settings refuse another model or backend with
// model_not_allowed / backend_not_allowed; a model two backends serve goes only to the allowed
// one (fakevlm /stats counts); POST /api/v1/analyze answers 403; narrowing the tenant while a
// session streams stops it with the error once. Tenants set with the CLI on a running server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cli, fakevlmStats, startFakevlm, startLivevlm, stopAll, sleep, JPEG_320, T } from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
const SEEN_MS = T(1500);

let fakeA, fakeB;
before(async () => {
  const fast = { ttftMs: 5, tokenMs: 1, tokens: 4 };
  fakeA = await startFakevlm({ models: ['m-a', 'm-shared'], ...fast });
  fakeB = await startFakevlm({ models: ['m-b', 'm-shared'], ...fast });
  fakeA.id = 'fa';
  fakeB.id = 'fb';
});
after(stopAll);

function run(srv, args, input) {
  const r = cli(args, { configDir: srv.configDir, input });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.lines;
}

const as = (key) => ({ auth: false, headers: { Authorization: `Bearer ${key}` } });

async function requests(fake) { return (await fakevlmStats(fake)).requests; }

function analyze(srv, key, query = '') {
  return srv.request(`/api/v1/analyze${query}`, { method: 'POST', body: JPEG_320(),
    token: key, headers: { 'Content-Type': 'image/jpeg' } });
}

test('allowed backends and models: catalogue, settings, frames, analyze, narrowing', TO, async () => {
  const srv = await startLivevlm({ backends: [fakeA, fakeB], auth: 'accounts' });
  run(srv, ['tenant', 'add', 'acme', '--models', 'm-a,m-shared', '--backends', 'fa']);
  run(srv, ['user', 'add', 'bob', '--tenant', 'acme', '--password-stdin'], 'bob-password-123\n');
  const key = run(srv, ['key', 'add', 'bob'])[0];
  const adminKey = run(srv, ['key', 'add', 'admin'])[0];
  await sleep(SEEN_MS);

  // the catalogue: bob sees fa's allowed models only; the default tenant's admin sees all
  const mine = (await srv.request('/api/v1/models', { token: key })).json();
  assert.deepEqual(mine.models.map((m) => `${m.backend}/${m.id}`).sort(), ['fa/m-a', 'fa/m-shared']);
  assert.deepEqual(mine.backends.map((b) => b.id), ['fa']);
  assert.equal(mine.models.filter((m) => m.current).length, 1, 'one default, an allowed one');
  const all = (await srv.request('/api/v1/models', { token: adminKey })).json();
  assert.equal(all.models.length, 4);
  const cfg = (await srv.request('/api/v1/config', { token: key })).json();
  assert.deepEqual(cfg.backends.map((b) => b.id), ['fa']);
  assert.deepEqual(cfg.backends[0].models, ['m-a', 'm-shared']);
  assert.ok(['m-a', 'm-shared'].includes(cfg.defaults.model), `default ${cfg.defaults.model}`);

  // hello: a forbidden model or backend is refused with a sentence naming it and the tenant
  let c = await srv.connect(as(key));
  let e = await c.hello({ settings: { model: 'm-b' } }, { allowError: true });
  assert.equal(e.code, 'model_not_allowed');
  assert.equal(e.field, 'model');
  assert.match(e.message, /'m-b'.*tenant 'acme'/);
  e = await c.hello({ settings: { backend: 'fb' } }, { allowError: true });
  assert.equal(e.code, 'backend_not_allowed');
  assert.match(e.message, /'fb'.*tenant 'acme'/);
  // no model asked: the tenant's first allowed one
  const s = await c.hello({});
  assert.equal(s.type, 'session');
  assert.ok(['m-a', 'm-shared'].includes(s.settings.model), `got ${s.settings.model}`);
  // update_settings: refused too, the session keeps its settings
  e = await c.updateSettings({ model: 'm-b' });
  assert.equal(e.code, 'model_not_allowed');
  e = await c.updateSettings({ backend: 'fb' });
  assert.equal(e.code, 'backend_not_allowed');
  const ok = await c.updateSettings({ model: 'm-shared', interval_ms: 100 });
  assert.equal(ok.type, 'settings_updated');

  // frames: m-shared is served by both backends; every request goes to fa
  const a0 = await requests(fakeA), b0 = await requests(fakeB);
  c.autoFeed(JPEG_320());
  await c.start();
  for (let i = 0; i < 6; i++) await c.nextAnswer();
  assert.ok((await requests(fakeA)) - a0 >= 6, 'fa served the answers');
  assert.equal((await requests(fakeB)) - b0, 0, 'fb (not acme\'s) got no request');

  // analyze: 403 with the code and sentence; an allowed one is answered by fa
  let r = await analyze(srv, key, '?model=m-b');
  assert.equal(r.status, 403);
  assert.equal(r.json().error.code, 'model_not_allowed');
  assert.match(r.json().error.message, /'m-b'.*'acme'/);
  r = await analyze(srv, key, '?backend=fb');
  assert.equal(r.status, 403);
  assert.equal(r.json().error.code, 'backend_not_allowed');
  r = await analyze(srv, key, '?model=m-shared');
  assert.equal(r.status, 200, r.text);
  assert.equal((await requests(fakeB)) - b0, 0, 'analyze went to fa too');

  // narrowing while it streams: its next frame is refused, told once, no more credits
  run(srv, ['tenant', 'set', 'acme', '--models', 'm-a']);
  e = await c.nextError('model_not_allowed', { timeoutMs: T(5000) });
  assert.match(e.message, /'m-shared'.*'acme'/);
  await sleep(T(600)); // an answer in flight at the change still ends
  const answers = c.seen('vlm_response').length, credits = c.seen('credit').length;
  await sleep(T(1500));
  assert.equal(c.seen('vlm_response').length, answers, 'no answer after the refusal');
  assert.equal(c.seen('credit').length, credits, 'no credit after the refusal');
  assert.equal(c.seen('error', (m) => m.code === 'model_not_allowed').length, 3, 'told once (2 from above)');
  // choosing an allowed model gives it credits again
  const back = await c.updateSettings({ model: 'm-a' });
  assert.equal(back.type, 'settings_updated');
  c.drain('vlm_response');
  await c.nextAnswer();
  await c.close();

  // narrowing the backends: a session on fb's model is refused at its next frame as well
  run(srv, ['tenant', 'set', 'acme', '--models', '', '--backends', 'fa']);
  await sleep(SEEN_MS);
  const d = await srv.connect(as(key));
  await d.hello({ settings: { model: 'm-shared', interval_ms: 100 } });
  d.autoFeed(JPEG_320());
  await d.start();
  await d.nextAnswer();
  run(srv, ['tenant', 'set', 'acme', '--backends', 'fb']);
  await sleep(SEEN_MS);
  d.drain('vlm_response'); // answered before the change
  const a1 = await requests(fakeA), b1 = await requests(fakeB);
  for (let i = 0; i < 4; i++) await d.nextAnswer(); // m-shared is still allowed: fb serves it now
  assert.ok((await requests(fakeB)) - b1 >= 3, 'fb serves acme now (one may have started before b1 was read)');
  assert.ok((await requests(fakeA)) - a1 <= 1, 'fa: at most the request in flight at the change');
  await d.close();
  await srv.stop();
});
