// quota.test.mjs - quotas per user and per tenant (docs/internals/accounts.md "Quotas"): over
// answers_day or fpm a session hears quota_exceeded once (limit, used, renews_at) and gets no
// credits; POST /api/v1/analyze answers 429 with Retry-After naming the quota; a tenant's quota is
// shared by its users; the sessions quota refuses a new session at hello. Quotas set with the CLI
// on a running server (seen within ~1 s), users connect with API keys.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cli, startFakevlm, startLivevlm, stopAll, sleep, JPEG_320, T } from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
const SEEN_MS = T(1500);

let fake;
before(async () => { fake = await startFakevlm({ models: ['fake-vlm-1'], ttftMs: 5, tokenMs: 1, tokens: 4 }); });
after(stopAll);

function run(srv, args) {
  const r = cli(args, { configDir: srv.configDir });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.lines;
}

async function userWithKey(srv, name, extra = []) {
  run(srv, ['user', 'add', name, ...extra]);
  return run(srv, ['key', 'add', name])[0];
}

const as = (key) => ({ auth: false, headers: { Authorization: `Bearer ${key}` } });

/** A started session streaming JPEG_320 at a short interval. */
async function streaming(srv, key, interval = 100) {
  const c = await srv.connect(as(key));
  await c.hello({ settings: { interval_ms: interval } });
  c.autoFeed(JPEG_320());
  await c.start();
  return c;
}

test('answers_day: quota_exceeded once with limit and renews_at, then no credits; analyze 429', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  const key = await userWithKey(srv, 'carol');
  run(srv, ['quota', 'set', 'carol', '--answers-day', '3']);
  await sleep(SEEN_MS);
  const c = await streaming(srv, key);
  const q = await c.next('quota_exceeded', { timeoutMs: T(10000) });
  assert.equal(q.scope, 'user');
  assert.equal(q.quota, 'answers_day');
  assert.equal(q.limit, 3);
  assert.equal(q.used, 3);
  assert.match(q.renews_at, /^\d{4}-\d\d-\d\dT00:00:00Z$/, 'a UTC day renews at midnight');
  assert.ok(Date.parse(q.renews_at) > Date.now());
  assert.ok(q.retry_after_s > 0 && q.retry_after_s <= 86400);
  await sleep(T(600)); // an answer in flight at the refusal may still end
  const credits = c.seen('credit').length, answers = c.seen('vlm_response').length;
  assert.equal(answers, 3, 'exactly the quota of answers');
  await sleep(T(1500));
  assert.equal(c.seen('credit').length, credits, 'no credit while over the quota');
  assert.equal(c.seen('quota_exceeded').length, 1, 'told once');
  const r = await srv.request('/api/v1/analyze', { ...as(key), method: 'POST', body: JPEG_320(),
    headers: { ...as(key).headers, 'Content-Type': 'image/jpeg' } });
  assert.equal(r.status, 429);
  assert.ok(Number(r.headers['retry-after']) > 0, 'Retry-After');
  const e = r.json().error;
  assert.equal(e.code, 'quota_exceeded');
  assert.equal(e.quota, 'answers_day');
  assert.match(e.message, /answers per day/);
  // another user is not affected
  const other = await userWithKey(srv, 'dave');
  await sleep(SEEN_MS);
  const d = await streaming(srv, other);
  await d.nextAnswer({ timeoutMs: T(10000) });
  // raising the quota gives credits back without a reconnect
  run(srv, ['quota', 'set', 'carol', '--answers-day', '100']);
  await c.next('credit', { timeoutMs: T(5000) });
  await c.nextAnswer({ timeoutMs: T(10000) });
  await srv.stop();
});

test('fpm: over the frames per minute until the wall-clock minute ends', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  const key = await userWithKey(srv, 'erin');
  run(srv, ['quota', 'set', 'erin', '--fpm', '4']);
  await sleep(SEEN_MS);
  // not too close to the end of a minute: the window would renew during the test
  const inMinute = Date.now() % 60000;
  if (inMinute > 45000) await sleep(60000 - inMinute + 200);
  const c = await streaming(srv, key);
  const q = await c.next('quota_exceeded', { timeoutMs: T(10000) });
  assert.equal(q.quota, 'fpm');
  assert.equal(q.limit, 4);
  assert.equal(q.used, 4);
  assert.match(q.renews_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/);
  assert.ok(Date.parse(q.renews_at) - Date.now() <= 60000);
  await sleep(T(300));
  const credits = c.seen('credit').length;
  assert.equal(credits, 4, 'four credits, then none');
  await sleep(T(1200));
  assert.equal(c.seen('credit').length, credits);
  const r = await srv.request('/api/v1/analyze', { method: 'POST', body: JPEG_320(),
    auth: false, headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'image/jpeg' } });
  assert.equal(r.status, 429);
  assert.equal(r.json().error.quota, 'fpm');
  assert.ok(Number(r.headers['retry-after']) >= 1 && Number(r.headers['retry-after']) <= 60);
  const adminKey = run(srv, ['key', 'add', 'admin', '--scope', 'admin'])[0];
  await sleep(SEEN_MS);
  const m = await srv.request('/metrics', as(adminKey));
  assert.match(m.text, /livevlm_quota_refusals_total\{quota="fpm",scope="user"\} [1-9]/);
  assert.match(m.text, /livevlm_tenant_frames_total\{tenant="default"\} [1-9]/);
  await srv.stop();
});

test('a tenant\'s answers_day is shared by its users; the sessions quota refuses at hello', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  run(srv, ['tenant', 'add', 'acme', '--answers-day', '4', '--sessions', '3']);
  const k1 = await userWithKey(srv, 'frank', ['--tenant', 'acme']);
  const k2 = await userWithKey(srv, 'grace', ['--tenant', 'acme']);
  await sleep(SEEN_MS);
  const a = await streaming(srv, k1, 150);
  const b = await streaming(srv, k2, 150);
  const qa = await a.next('quota_exceeded', { timeoutMs: T(10000) });
  const qb = await b.next('quota_exceeded', { timeoutMs: T(10000) });
  for (const q of [qa, qb]) {
    assert.equal(q.scope, 'tenant');
    assert.equal(q.quota, 'answers_day');
    assert.equal(q.limit, 4);
  }
  await sleep(T(600));
  const total = a.seen('vlm_response').length + b.seen('vlm_response').length;
  assert.equal(total, 4, 'the two users together got the tenant\'s 4 answers');
  assert.ok(a.seen('vlm_response').length >= 1 && b.seen('vlm_response').length >= 1);
  // sessions: the tenant allows 3 live sessions; a and b hold 2
  const third = await srv.connect(as(k1));
  await third.hello();
  const fourth = await srv.connect(as(k2));
  fourth.send({ type: 'hello' });
  const q = await fourth.next('quota_exceeded', { timeoutMs: T(5000) });
  assert.equal(q.quota, 'sessions');
  assert.equal(q.scope, 'tenant');
  assert.equal(q.limit, 3);
  assert.equal(q.renews_at, null);
  const err = await fourth.nextError('quota_exceeded', { timeoutMs: T(5000) });
  assert.match(err.message, /live sessions/);
  await fourth.closed;
  // a user's own sessions quota
  run(srv, ['quota', 'set', 'grace', '--sessions', '1']);
  await sleep(SEEN_MS);
  const fifth = await srv.connect(as(k2));
  fifth.send({ type: 'hello' });
  const q5 = await fifth.next('quota_exceeded', { timeoutMs: T(5000) });
  assert.equal(q5.scope, 'user');
  assert.equal(q5.quota, 'sessions');
  await srv.stop();
});

test('day counters survive a restart (seeded from the usage table)', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], auth: 'accounts' });
  const key = await userWithKey(srv, 'heidi');
  run(srv, ['quota', 'set', 'heidi', '--answers-day', '3']);
  await sleep(SEEN_MS);
  const c = await streaming(srv, key);
  await c.next('quota_exceeded', { timeoutMs: T(10000) });
  await srv.stop();
  const again = await startLivevlm({ backends: [fake], auth: 'accounts', configDir: srv.configDir });
  const c2 = await streaming(again, key);
  const q = await c2.next('quota_exceeded', { timeoutMs: T(10000) });
  assert.equal(q.used, 3, 'the answers of the first run count');
  await sleep(T(500));
  assert.equal(c2.seen('vlm_response').length, 0);
  await again.stop();
});
