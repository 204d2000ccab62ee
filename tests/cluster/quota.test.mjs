// quota.test.mjs - quotas hold across the frontends of a cluster (docs/internals/accounts.md
// "Quotas"): a user's answers per day are counted in Redis (lv:qt:...), so two sessions of one
// user on two frontends share one quota; usage records made in a cluster carry the backend's
// prompt tokens (the worker's done event "ptok"). Accounts in a shared PostgreSQL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cli, stopAll, sleep, waitUntil, JPEG_320, T } from '../lib/harness.mjs';
import { startCluster } from '../lib/cluster.mjs';
import { startPostgres } from '../lib/pg.mjs';

const TO = { timeout: T(90000) };
const SEEN_MS = T(1500);

let pg;
before(async () => { pg = await startPostgres(); });
after(async () => { await stopAll(); pg?.stop(); });

const as = (key) => ({ auth: false, headers: { Authorization: `Bearer ${key}` } });

function run(cl, args) {
  const r = cli(args, { configDir: cl.frontends[0].configDir, args: ['--db', pg.url] });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.lines;
}

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
  run(cl, ['user', 'add', 'quinn']);
  const key = run(cl, ['key', 'add', 'quinn'])[0];
  const admin = run(cl, ['key', 'add', 'admin', '--scope', 'admin'])[0];
  run(cl, ['quota', 'set', 'quinn', '--answers-day', '4']);
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
