// browser.test.mjs - the real page (web/, in Debian's chromium with its fake camera) through
// haproxy in front of a cluster: it shows answers; the frontend serving it is killed with SIGKILL;
// the page reconnects by itself (web/ws.js), haproxy sends it to another frontend, and it resumes
// the same session (same id, resumed) and keeps showing new answers, with nothing pressed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { stopAll, launchBrowser, watchPageErrors, sha8, T } from '../lib/harness.mjs';
import { startCluster, secs } from '../lib/cluster.mjs';

const TO = { timeout: T(120000) };
let br;
after(async () => {
  if (br) await br.close();
  await stopAll();
});

// What chromium may log while its socket's frontend dies and haproxy fails over.
const FAILOVER = [{
  text: /^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/ws' failed: /,
  why: 'a reconnect that reaches haproxy before it took the dead frontend out of rotation and every retry failed is retried by the page',
}, {
  text: /^Failed to load resource: the server responded with a status of 50[23]/, url: /\/api\/v1\/config$/,
  why: 'after a failed WebSocket attempt the page asks GET /api/v1/config whether it is still signed in',
}];

const sessionIdOf = (page) => page.evaluate(() => (document.getElementById('sessionId')?.dataset.sessionId || '').trim());
const answerCount = (page) => page.evaluate(() => Number((document.getElementById('metricCount')?.textContent || '')
  .replace(/[^0-9]/g, '')) || 0);

test('the page behind haproxy: its frontend killed, it resumes the same session elsewhere and answers go on', TO, async (t) => {
  const cl = await startCluster({ frontends: 2, workers: 2 });
  br = await launchBrowser();
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, FAILOVER);
  try {
    await page.goto(`${cl.proxy.origin}/?token=${cl.token}`);
    await page.waitForFunction(() => /^(connected|open|online|ready)$/.test(document.getElementById('connectionStatus')?.dataset.state || ''),
      null, { timeout: T(20000) });
    const prompt = 'Cluster e2e: what is on the table?';
    await page.fill('#promptText', prompt);
    await page.locator('#promptText').press('Tab');
    await page.waitForFunction(() => [...(document.getElementById('cameraSelect')?.options || [])].some((o) => o.value),
      null, { timeout: T(10000) });
    const cam = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
    await page.selectOption('#cameraSelect', cam);
    await page.locator('#startBtn').click();
    await page.waitForFunction((h) => (document.getElementById('answerText')?.textContent || '').includes(`prompt=${h}`) &&
      Number((document.getElementById('metricCount')?.textContent || '').replace(/[^0-9]/g, '')) >= 2,
    sha8(prompt), { timeout: T(30000) }).catch(async (e) => {
      throw new Error(`no answers on the page (errorBar ${JSON.stringify(await page.locator('#errorBar').textContent().catch(() => ''))}): ${e.message}\n${cl.logTails()}`);
    });
    const sid = await sessionIdOf(page);
    assert.match(sid, /^[0-9a-f]{32}$/, 'the page shows its session id');
    const owner = cl.owner(sid);
    const victim = cl.frontends.find((f) => f.nodeId === owner);
    assert.ok(victim, `the session's owner in Redis is a frontend (${owner})`);
    const countBefore = await answerCount(page);

    const tKill = await cl.killFrontend(victim.index);
    // The page's own reconnect, through haproxy, to the other frontend.
    await page.waitForFunction((id) => document.getElementById('sessionId')?.dataset.sessionId === id &&
      document.body.dataset.sessionResumed === 'true' &&
      /^(connected|open|online|ready|streaming|waiting|queued)$/.test(document.getElementById('connectionStatus')?.dataset.state || ''),
    sid, { timeout: T(15000), polling: 20 }).catch(async (e) => {
      throw new Error(`the page did not resume ${sid} (it shows ${JSON.stringify(await sessionIdOf(page))}, state ` +
        `${await page.locator('#connectionStatus').getAttribute('data-state')}): ${e.message}`);
    });
    const tResumed = Date.now();
    const newOwner = cl.owner(sid);
    assert.ok(newOwner && newOwner !== owner, `another frontend owns the session now (${newOwner})`);
    await page.waitForFunction((n) => Number((document.getElementById('metricCount')?.textContent || '')
      .replace(/[^0-9]/g, '')) > n, countBefore, { timeout: T(15000), polling: 20 }).catch(async (e) => {
      throw new Error(`no new answer after the failover (count ${await answerCount(page)}, before ${countBefore}; errorBar ` +
        `${JSON.stringify(await page.locator('#errorBar').textContent().catch(() => ''))}): ${e.message}\n${cl.logTails()}`);
    });
    const tAnswer = Date.now();
    assert.equal(await sessionIdOf(page), sid, 'still the same session');
    assert.ok((await page.locator('#answerText').textContent()).includes(`prompt=${sha8(prompt)}`), 'answers about its prompt');
    const line = `cluster browser: page's frontend ${owner} killed -> page resumed ${sid.slice(0, 8)}… on ${newOwner} in ` +
      `${secs(tResumed - tKill)} s (as seen by polling), next answer shown ${secs(tAnswer - tKill)} s after the kill`;
    console.log(line);
    t.diagnostic(line);
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});
