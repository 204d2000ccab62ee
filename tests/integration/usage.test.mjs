// usage.test.mjs - usage recording (docs/internals/accounts.md "Usage"): every delivered answer
// has a usage row with its tokens; GET /api/v1/usage as JSON and CSV with filters; a non-admin
// sees only its own rows; token mode records too (user = the client address); and after kill -9
// under load the restarted server's rows equal the answers the clients received (the journal is
// written before the answer is queued to the page).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cli, startFakevlm, startLivevlm, stopAll, sleep, waitUntil, JPEG_320, T } from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
const SEEN_MS = T(1500);
const FLUSH_MS = T(1000); // the journal is moved into the database every 200 ms

let fake;
before(async () => { fake = await startFakevlm({ models: ['fake-vlm-1'], ttftMs: 5, tokenMs: 2, tokens: 6, slots: 16 }); });
after(stopAll);

function run(srv, args) {
  const r = cli(args, { configDir: srv.configDir });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.lines;
}
const as = (key) => ({ auth: false, headers: { Authorization: `Bearer ${key}` } });

async function streaming(srv, opts, interval = 100) {
  const c = await srv.connect(opts);
  await c.hello({ settings: { interval_ms: interval } });
  c.autoFeed(JPEG_320());
  await c.start();
  return c;
}

test('rows match delivered answers with tokens; JSON and CSV with filters; own rows only', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  const aliceId = run(srv, ['user', 'add', 'alice'])[0];
  const alice = run(srv, ['key', 'add', 'alice'])[0];
  run(srv, ['user', 'add', 'bob']);
  const bob = run(srv, ['key', 'add', 'bob'])[0];
  const admin = run(srv, ['key', 'add', 'admin', '--scope', 'admin'])[0];
  await sleep(SEEN_MS);
  const a = await streaming(srv, as(alice));
  const b = await streaming(srv, as(bob));
  await waitUntil(() => a.seen('vlm_response').length >= 5 && b.seen('vlm_response').length >= 2,
    { timeoutMs: T(15000), what: 'answers' });
  await a.stop();
  await b.stop();
  await sleep(T(500));
  const nA = a.seen('vlm_response').length, nB = b.seen('vlm_response').length;
  await sleep(FLUSH_MS);

  let r = await srv.request('/api/v1/usage', as(alice));
  assert.equal(r.status, 200, r.text);
  let j = r.json();
  const ok = j.records.filter((x) => x.outcome === 'ok');
  assert.equal(ok.length, nA, 'one row per answer alice received');
  for (const x of ok) {
    assert.equal(x.user, aliceId);
    assert.equal(x.tenant, 'default');
    assert.equal(x.model, 'fake-vlm-1');
    assert.equal(x.backend, 'fake');
    assert.ok(x.prompt_tokens > 0, 'prompt tokens from the backend\'s usage');
    assert.ok(x.completion_tokens > 0);
    assert.ok(x.image_bytes === JPEG_320().length);
    assert.match(x.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
  assert.equal(j.totals.answers, nA);
  assert.equal(j.totals.completion_tokens, ok.reduce((s, x) => s + x.completion_tokens, 0));
  // the answers' ids on the page match the rows' (session prefix + answer number)
  const ids = new Set(ok.map((x) => Number(x.answer_id.split('-')[1])));
  for (const m of a.seen('vlm_response')) assert.ok(ids.has(m.answer_id), `answer ${m.answer_id} recorded`);

  // a non-admin asking for someone else still gets its own rows only
  r = await srv.request(`/api/v1/usage?user=alice&tenant=other`, as(bob));
  j = r.json();
  assert.equal(j.records.filter((x) => x.outcome === 'ok').length, nB);
  assert.ok(j.records.every((x) => x.user !== aliceId));

  // admin: everything, filters by user name, CSV
  r = await srv.request('/api/v1/usage', as(admin));
  assert.equal(r.json().totals.answers, nA + nB);
  r = await srv.request('/api/v1/usage?user=alice&format=csv', as(admin));
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/csv/);
  assert.match(r.headers['content-disposition'], /attachment; filename="usage.csv"/);
  const lines = r.text.split('\r\n').filter(Boolean);
  assert.equal(lines[0], 'answer_id,time,tenant,user,session,backend,model,image_bytes,prompt_tokens,' +
    'completion_tokens,backend_ms,outcome');
  assert.equal(lines.filter((l) => l.endsWith(',ok')).length, nA);
  r = await srv.request('/api/v1/usage?limit=2', as(admin));
  assert.equal(r.json().records.length, 2);
  r = await srv.request(`/api/v1/usage?from=${Date.now() + 3600000}`, as(admin));
  assert.equal(r.json().records.length, 0, 'from in the future: nothing');
  const today = new Date().toISOString().slice(0, 10);
  r = await srv.request(`/api/v1/usage?from=${today}&model=fake-vlm-1`, as(admin));
  assert.equal(r.json().totals.answers, nA + nB);
  r = await srv.request('/api/v1/usage?model=nope', as(admin));
  assert.equal(r.json().records.length, 0);
  // bad parameters: 400 with a sentence
  for (const [q, re] of [['from=yesterday', /ISO 8601/], ['format=xml', /json or csv/], ['limit=0', /1 to 100000/],
    ['limit=100001', /1 to 100000/], [`from=${Date.now()}&to=${Date.now() - 1000}`, /after from/]]) {
    r = await srv.request(`/api/v1/usage?${q}`, as(admin));
    assert.equal(r.status, 400, q);
    assert.match(r.json().error.message, re, q);
  }
  // per-tenant counters on /metrics
  r = await srv.request('/metrics', as(admin));
  assert.match(r.text, new RegExp(`livevlm_tenant_answers_total\\{tenant="default"\\} ${nA + nB}\\n`));
  await srv.stop();
});

test('token mode records usage too (user = the client address)', TO, async () => {
  const srv = await startLivevlm({ backends: [fake] });
  const c = await streaming(srv, {});
  await waitUntil(() => c.seen('vlm_response').length >= 3, { timeoutMs: T(10000), what: 'answers' });
  await c.stop();
  await sleep(T(300) + FLUSH_MS);
  const r = await srv.request('/api/v1/usage');
  assert.equal(r.status, 200, r.text);
  const ok = r.json().records.filter((x) => x.outcome === 'ok');
  assert.equal(ok.length, c.seen('vlm_response').length);
  assert.ok(ok.every((x) => x.user === '127.0.0.1' && x.tenant === 'default'));
  await srv.stop();
});

test('kill -9 under load: recorded answers after the restart = answers the clients received', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--max-sessions-per-ip', '16'] });
  const clients = [];
  for (let i = 0; i < 6; i++) clients.push(await streaming(srv, {}, 100));
  await waitUntil(() => clients.every((c) => c.seen('vlm_response').length >= 10),
    { timeoutMs: T(20000), what: 'every session answered' });
  srv.proc.kill('SIGKILL');
  await Promise.all(clients.map((c) => c.closed));
  const delivered = clients.reduce((s, c) => s + c.seen('vlm_response').length, 0);
  // sessions with an answer on its way at the kill: at most one per session
  const inFlight = clients.length;
  const again = await startLivevlm({ backends: [fake], configDir: srv.configDir });
  let recorded = -1;
  await waitUntil(async () => {
    const r = await again.request('/api/v1/usage?limit=100000');
    recorded = r.json().records.filter((x) => x.outcome === 'ok').length;
    return recorded >= delivered;
  }, { timeoutMs: T(5000), what: `recorded >= delivered (${delivered})` });
  console.log(`# kill -9: delivered ${delivered}, recorded ${recorded}, journaled but not delivered ${recorded - delivered}`);
  assert.ok(recorded >= delivered, 'every delivered answer is recorded');
  assert.ok(recorded - delivered <= inFlight, `at most one undelivered answer per session (${recorded - delivered})`);
  await again.stop();
});
