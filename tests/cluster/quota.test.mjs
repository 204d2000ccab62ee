// quota.test.mjs - quotas hold across the frontends of a cluster (docs/internals/accounts.md
// "Quotas"): a user's answers per day are counted in Redis (lv:qt:...), so two sessions of one
// user on two frontends share one quota; usage records made in a cluster carry the backend's
// prompt tokens (the worker's done event "ptok"). The sessions quotas of a user and of a tenant
// count live sessions on every frontend (lv:us:<principal>, lv:ts:<tenant>, checked by the
// admission script). Accounts in a shared PostgreSQL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, sleep, waitUntil, JPEG_320, T } from '../lib/harness.mjs';
import { startCluster } from '../lib/cluster.mjs';
import { startPostgres } from '../lib/pg.mjs';

const TO = { timeout: T(90000) };
const SEEN_MS = T(1500);

let pg;
before(async () => { pg = await startPostgres(); });
after(async () => { await stopAll(); pg?.stop(); });

const as = (key) => ({ auth: false, headers: { Authorization: `Bearer ${key}` } });

async function streaming(fe, key) {
  const c = await fe.connect(as(key));
  await c.hello({ settings: { interval_ms: 100 } });
  c.autoFeed(JPEG_320());
  await c.start();
  return c;
}

test('answers_day 4 over two frontends: 4 answers in all (not 8), both pages hear quota_exceeded; usage has prompt tokens', TO, async () => {
  const cl = await startCluster({ auth: 'accounts', db: pg.url, frontends: 2, workers: 1, haproxy: false,
    fakes: [{ ttftMs: 20, tokenMs: 2, tokens: 4 }] });
  cl.cli(['user', 'add', 'quinn']);
  const key = cl.cli(['key', 'add', 'quinn'])[0];
  const admin = cl.cli(['key', 'add', 'admin', '--scope', 'admin'])[0];
  cl.cli(['quota', 'set', 'quinn', '--answers-day', '4']);
  await sleep(SEEN_MS);
  const [a, b] = await Promise.all([streaming(cl.frontends[0], key), streaming(cl.frontends[1], key)]);
  const qa = await a.next('quota_exceeded', { timeoutMs: T(20000) });
  const qb = await b.next('quota_exceeded', { timeoutMs: T(20000) });
  for (const q of [qa, qb]) {
    assert.equal(q.scope, 'user');
    assert.equal(q.quota, 'answers_day');
    assert.equal(q.limit, 4);
    assert.ok(q.used >= 4, `used ${q.used}`);
  }
  await sleep(T(1500)); // answers in flight at the refusal may still end
  const na = a.seen('vlm_response').length, nb = b.seen('vlm_response').length;
  console.log(`cluster quota: answers ${na} on fe1 + ${nb} on fe2 = ${na + nb} for answers_day 4`);
  // 4, plus at most one answer already running on the other frontend when the 4th was counted
  // (the rule of a single node with two sessions: docs/internals/accounts.md "Quotas")
  assert.ok(na + nb >= 4 && na + nb <= 5, `answers in all: ${na} + ${nb}`);
  const credits = a.seen('credit').length + b.seen('credit').length;
  await sleep(T(2000));
  assert.equal(a.seen('credit').length + b.seen('credit').length, credits, 'no credit on either frontend while over');
  assert.equal(a.seen('vlm_response').length + b.seen('vlm_response').length, na + nb, 'no answer while over');

  // usage: rows made on both frontends, each with the backend's prompt tokens
  let rows = [];
  await waitUntil(async () => {
    const r = await cl.frontends[0].request('/api/v1/usage?user=quinn', as(admin));
    if (r.status !== 200) return false;
    rows = r.json().records.filter((x) => x.outcome === 'ok');
    return rows.length >= na + nb;
  }, { timeoutMs: T(10000), what: `usage rows for ${na + nb} answers (last ${rows.length})` });
  assert.equal(rows.length, na + nb, 'one row per delivered answer');
  for (const x of rows) {
    assert.ok(x.prompt_tokens > 0, `prompt tokens cross the cluster: ${JSON.stringify(x)}`);
    assert.ok(x.completion_tokens > 0, `completion tokens: ${JSON.stringify(x)}`);
  }
  a.close();
  b.close();
});

// A hello: the session, or the refusal with its quota_exceeded fields (then the socket closes).
async function tryHello(fe, key, open) {
  const c = await fe.connect(as(key));
  open.push(c);
  const m = await c.hello({ settings: { interval_ms: 1000 } }, { allowError: true, timeoutMs: T(5000) });
  if (m.type === 'session') return { c, m };
  assert.equal(m.code, 'quota_exceeded', `refused as ${JSON.stringify(m)}`);
  const q = await c.next('quota_exceeded', { timeoutMs: T(2000) });
  assert.match(m.message, /live sessions/);
  await c.closed;
  return { c, m, q };
}

// After a session closes, its place comes back within a few write-behind ticks (bounded).
async function admittedAgain(fe, key, open, what) {
  let last;
  const t0 = Date.now();
  await waitUntil(async () => {
    last = await tryHello(fe, key, open);
    return last.m.type === 'session';
  }, { timeoutMs: T(5000), intervalMs: 200, what: `${what} (last: ${JSON.stringify(last?.q ?? last?.m)})` });
  console.log(`cluster sessions quota: ${what} after ${((Date.now() - t0) / 1000).toFixed(2)} s`);
  return last;
}

test('sessions quota 2 of a user over two frontends: a third is refused on either; closing one lets one in', TO, async () => {
  const cl = await startCluster({ auth: 'accounts', db: pg.url, frontends: 2, workers: 1, haproxy: false,
    frontendArgs: ['--max-sessions-per-ip', '8'] });
  const open = [];
  try {
    cl.cli(['user', 'add', 'sam']);
    const key = cl.cli(['key', 'add', 'sam'])[0];
    cl.cli(['quota', 'set', 'sam', '--sessions', '2']);
    await sleep(SEEN_MS);
    const s1 = await tryHello(cl.frontends[0], key, open);
    const s2 = await tryHello(cl.frontends[1], key, open);
    assert.equal(s1.m.type, 'session');
    assert.equal(s2.m.type, 'session', 'one session on each frontend: 2 in all');
    for (const fe of cl.frontends) {
      const r = await tryHello(fe, key, open);
      assert.equal(r.m.type, 'error', 'a third live session of the user, on either frontend');
      assert.equal(r.q.scope, 'user');
      assert.equal(r.q.quota, 'sessions');
      assert.equal(r.q.limit, 2);
      assert.equal(r.q.used, 2);
      assert.equal(r.q.renews_at, null);
    }
    s2.c.close();
    const again = await admittedAgain(cl.frontends[0], key, open, 'the user\'s closed session freed its place');
    assert.equal(again.m.type, 'session');
    const r = await tryHello(cl.frontends[1], key, open);
    assert.equal(r.m.type, 'error', 'at 2 again');
    assert.equal(r.q.quota, 'sessions');
  } finally {
    for (const c of open) c.close();
  }
});

test('sessions quota 3 of a tenant shared by two users over two frontends', TO, async () => {
  const cl = await startCluster({ auth: 'accounts', db: pg.url, frontends: 2, workers: 1, haproxy: false,
    frontendArgs: ['--max-sessions-per-ip', '8'] });
  const open = [];
  try {
    cl.cli(['tenant', 'add', 'acme', '--sessions', '3']);
    cl.cli(['user', 'add', 'tess', '--tenant', 'acme']);
    cl.cli(['user', 'add', 'ugo', '--tenant', 'acme']);
    cl.cli(['user', 'add', 'vic']); // another tenant: not counted
    const kt = cl.cli(['key', 'add', 'tess'])[0];
    const ku = cl.cli(['key', 'add', 'ugo'])[0];
    const kv = cl.cli(['key', 'add', 'vic'])[0];
    await sleep(SEEN_MS);
    const t1 = await tryHello(cl.frontends[0], kt, open);
    const u1 = await tryHello(cl.frontends[1], ku, open);
    const t2 = await tryHello(cl.frontends[1], kt, open);
    for (const x of [t1, u1, t2]) assert.equal(x.m.type, 'session');
    assert.equal(Number(cl.redis.raw('ZCARD', 'lv:ts:acme').trim()), 3, 'lv:ts:acme holds the three');
    for (const [fe, k] of [[cl.frontends[0], ku], [cl.frontends[1], kt]]) {
      const r = await tryHello(fe, k, open);
      assert.equal(r.m.type, 'error', 'a fourth session of the tenant, either user, either frontend');
      assert.equal(r.q.scope, 'tenant');
      assert.equal(r.q.quota, 'sessions');
      assert.equal(r.q.limit, 3);
      assert.equal(r.q.used, 3);
    }
    const v1 = await tryHello(cl.frontends[0], kv, open);
    assert.equal(v1.m.type, 'session', 'a user of another tenant is not affected');
    u1.c.close();
    await waitUntil(() => Number(cl.redis.raw('ZCARD', 'lv:ts:acme').trim()) === 2,
      { timeoutMs: T(5000), what: 'the closed session leaves lv:ts:acme' });
    const again = await admittedAgain(cl.frontends[0], ku, open, 'the tenant\'s closed session freed its place');
    assert.equal(again.m.type, 'session');
    const r = await tryHello(cl.frontends[1], kt, open);
    assert.equal(r.q?.scope, 'tenant', 'at 3 again');
  } finally {
    for (const c of open) c.close();
  }
});
