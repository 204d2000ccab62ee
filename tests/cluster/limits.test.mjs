// limits.test.mjs - per-user limits hold across the frontends of a cluster
// (docs/internals/cluster.md "Limits that hold cluster-wide"): --max-sessions-per-ip counts a
// user's live sessions on every frontend (lv:us in Redis), and a closed tab gives its place back;
// --user-fpm counts a user's frames per wall-clock minute summed over the frontends. The user is the client
// address: pages connect straight to the frontends from 127.0.0.2 / 127.0.0.3.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, connectWs, waitUntil, sleep, JPEG_320, T } from '../lib/harness.mjs';
import { startCluster } from '../lib/cluster.mjs';

const TO = { timeout: T(60000) };
after(stopAll);

async function hello(fe, addr) {
  const c = await connectWs(fe, { localAddress: addr });
  const m = await c.hello({ settings: { prompt: `limits ${addr}`, interval_ms: 100 } }, { allowError: true });
  return { c, m };
}

test('--max-sessions-per-ip counts a user\'s live sessions on every frontend; a closed tab frees its place', TO, async () => {
  const cl = await startCluster({ frontends: 2, workers: 1, haproxy: false, frontendArgs: ['--max-sessions-per-ip', '2'] });
  const open = [];
  try {
    const a1 = await hello(cl.frontends[0], '127.0.0.2');
    const a2 = await hello(cl.frontends[1], '127.0.0.2');
    open.push(a1.c, a2.c);
    assert.equal(a1.m.type, 'session');
    assert.equal(a2.m.type, 'session');
    // a third live session of the same user, on either frontend: refused
    const a3 = await hello(cl.frontends[0], '127.0.0.2');
    open.push(a3.c);
    assert.equal(a3.m.type, 'error', `a third session of one user across two frontends is refused (got ${a3.m.type})`);
    assert.equal(a3.m.code, 'too_many_sessions');
    // another user is not affected
    const b1 = await hello(cl.frontends[0], '127.0.0.3');
    open.push(b1.c);
    assert.equal(b1.m.type, 'session');
    // the user closes a tab on the other frontend: its place comes back (bounded)
    a2.c.close();
    const t0 = Date.now();
    let last;
    await waitUntil(async () => {
      const r = await hello(cl.frontends[0], '127.0.0.2');
      open.push(r.c);
      last = r.m;
      if (r.m.type !== 'session') r.c.close();
      return r.m.type === 'session';
    }, { timeoutMs: T(5000), intervalMs: 200, what: `a new session once a tab closed (last: ${JSON.stringify(last)})` });
    console.log(`cluster limits: a closed tab's place came back after ${((Date.now() - t0) / 1000).toFixed(2)} s`);
  } finally {
    for (const c of open) c.close();

  }
});

test('--user-fpm counts a user\'s frames over every frontend', TO, async () => {
  const FPM = 20;
  const cl = await startCluster({ frontends: 2, workers: 1, haproxy: false, frontendArgs: ['--user-fpm', String(FPM)] });
  const open = [];
  try {
    // the budget is per wall-clock minute: keep the whole window inside one
    const intoMinute = Date.now() % 60000;
    if (intoMinute > 60000 - T(8000) - 4000) await sleep(60000 - intoMinute + 300);
    // one user, a session on each frontend, asking for frames as fast as the server allows
    const pages = [];
    for (const fe of cl.frontends) {
      const { c, m } = await hello(fe, '127.0.0.2');
      assert.equal(m.type, 'session');
      open.push(c);
      await c.start();
      c.autoFeed(JPEG_320());
      pages.push(c);
    }
    await sleep(T(8000));
    const answers = pages.map((c) => c.seen('vlm_response').length);
    const total = answers.reduce((a, b) => a + b, 0);
    console.log(`cluster limits: --user-fpm ${FPM} over two frontends: ${total} answers in 8 s (${answers.join(' + ')})`);
    // each frontend alone would allow FPM; together they must stay near FPM, not 2 x FPM
    assert.ok(total <= FPM + 4, `one user's answers across two frontends stay within the minute's budget: ${total} <= ${FPM + 4}`);
    assert.ok(total >= FPM / 2, `the budget is used, not blocked: ${total} >= ${FPM / 2}`);
  } finally {
    for (const c of open) c.close();

  }
});
