// tenant_allow.test.mjs - a tenant's allowed backends hold on the cluster's workers
// (docs/internals/accounts.md "Tenants"): the job body carries the list ("ab"), so a worker
// serving the same model on two backends answers a tenant allowed one of them only from that one
// (fakevlm /stats counts), while a session of the default tenant uses both; a tenant whose
// allowed backends no worker has hears no_backend with a sentence saying so, and nothing goes to
// the backends it may not use. Accounts in a shared PostgreSQL, tenants set with the CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fakevlmStats, stopAll, sleep, JPEG_320, T } from '../lib/harness.mjs';
import { startCluster } from '../lib/cluster.mjs';
import { startPostgres } from '../lib/pg.mjs';

const TO = { timeout: T(90000) };
const SEEN_MS = T(1500);
const ANSWERS = 8;

let pg;
before(async () => { pg = await startPostgres(); });
after(async () => { await stopAll(); pg?.stop(); });

const as = (key) => ({ auth: false, headers: { Authorization: `Bearer ${key}` } });

async function requests(fake) { return (await fakevlmStats(fake)).requests; }

async function streaming(fe, key) {
  const c = await fe.connect(as(key));
  const s = await c.hello({ settings: { interval_ms: 100 } });
  assert.equal(s.type, 'session', JSON.stringify(s));
  c.autoFeed(JPEG_320());
  await c.start();
  return c;
}

test('a tenant allowed one of two backends serving a model is answered only by it on a worker', TO, async () => {
  // f1 and f2 (both serve fake-vlm-1) on the one worker; f3 known to the frontends only
  const fast = { ttftMs: 5, tokenMs: 1, tokens: 4 };
  const cl = await startCluster({ auth: 'accounts', db: pg.url, frontends: 2, workers: 1, haproxy: false,
    fakes: [fast, fast, fast], workerBackends: [[0, 1]] });
  const [f1, f2, f3] = cl.fakes;
  cl.cli(['tenant', 'add', 'acme', '--backends', 'f2']);
  cl.cli(['user', 'add', 'bob', '--tenant', 'acme']);
  cl.cli(['user', 'add', 'carol']);
  const bob = cl.cli(['key', 'add', 'bob'])[0];
  const carol = cl.cli(['key', 'add', 'carol'])[0];
  await sleep(SEEN_MS);

  // the control: a default-tenant session's answers come from both of the worker's backends
  let a0 = await requests(f1), b0 = await requests(f2);
  const cc = await streaming(cl.frontends[0], carol);
  for (let i = 0; i < ANSWERS; i++) await cc.nextAnswer();
  cc.close();
  const ca = (await requests(f1)) - a0, cb = (await requests(f2)) - b0;
  console.log(`default tenant: f1 ${ca}, f2 ${cb} requests for ${ANSWERS} answers`);
  assert.ok(ca >= 1, `the worker picks f1 for an unrestricted session (f1 ${ca}, f2 ${cb})`);
  await sleep(T(300)); // carol's last request ends before bob's are counted

  // acme may use f2 only: every request of bob's sessions, on either frontend, goes to f2
  a0 = await requests(f1);
  b0 = await requests(f2);
  const c1 = await streaming(cl.frontends[0], bob);
  const c2 = await streaming(cl.frontends[1], bob);
  for (let i = 0; i < ANSWERS; i++) {
    await c1.nextAnswer();
    await c2.nextAnswer();
  }
  const ba = (await requests(f1)) - a0, bb = (await requests(f2)) - b0;
  console.log(`tenant acme (f2 only): f1 ${ba}, f2 ${bb} requests for ${2 * ANSWERS} answers`);
  assert.equal(ba, 0, 'f1 (not acme\'s) got no request');
  assert.ok(bb >= 2 * ANSWERS, `f2 served acme's answers (${bb})`);

  // acme moved to f3, which no worker has: the worker says so and never falls back to f1 or f2
  cl.cli(['tenant', 'set', 'acme', '--backends', 'f3']);
  for (const c of [c1, c2]) {
    const e = await c.next('error', { timeoutMs: T(15000) });
    assert.equal(e.code, 'no_backend', JSON.stringify(e));
    assert.match(e.message, /^(cluster: )?no backend this tenant may use serves model '[^']+' on worker w1 \(it may use: f3\)/);
  }
  await sleep(T(300)); // a request started before the change ends
  const a1 = await requests(f1), b1 = await requests(f2);
  await sleep(T(1000));
  assert.equal((await requests(f1)) - a1, 0, 'no request to f1 after the change');
  assert.equal((await requests(f2)) - b1, 0, 'no request to f2 after the change');
  assert.equal(await requests(f3), 0, 'f3 is no worker\'s');
  c1.close();
  c2.close();
});
