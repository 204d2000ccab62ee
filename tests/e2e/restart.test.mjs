// restart.test.mjs - the web UI across a server restart (docs/operations.md "Sessions across
// restarts"): the page reconnects by itself and resumes the same session; after a reload it shows
// the settings and the answer history the server restored from its state file; killed with
// SIGKILL while the camera runs, it comes back to the same session and the answers resume.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, makeTempDir, watchPageErrors, waitUntil, sha8, sleep, T,
} from '../lib/harness.mjs';
import fs from 'node:fs';
import path from 'node:path';

const TO = { timeout: T(120000) };
let fake;
let br;

before(async () => {
  fake = await startFakevlm({ slots: 8, ttftMs: 20, tokenMs: 5, tokens: 8 });
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

const CONNECTED = /^(connected|open|online|ready)$/;

// Messages a page logs while its server is away, which is what these tests do to it: Chromium
// logs each refused connection as a console error, whoever made it.
const OUTAGE = [{
  text: /^WebSocket connection to 'wss:\/\/127\.0\.0\.1:\d+\/ws' failed: .*net::ERR_CONNECTION_REFUSED$/,
  why: 'the page retries its WebSocket (with backoff) while nothing listens on the port',
}, {
  text: /^Failed to load resource: net::ERR_CONNECTION_REFUSED$/, url: /\/api\/v1\/config$/,
  why: 'after each failed WebSocket attempt the page asks GET /api/v1/config whether it is still signed in',
}];

async function waitConnected(page) {
  await page.waitForFunction((re) => new RegExp(re).test(document.getElementById('connectionStatus')?.dataset.state || ''),
    CONNECTED.source, { timeout: T(20000) });
}

const sessionIdOf = (page) => page.evaluate(() => {
  const el = document.getElementById('sessionId');
  return (el?.dataset.sessionId || el?.textContent || '').trim();
});

const historyTexts = (page) => page.evaluate(() => [...document.querySelectorAll('#historyList li')]
  .map((li) => li.textContent || ''));

test('restart under a live page: it resumes the same session, and a reload shows the restored history', TO, async () => {
  const configDir = path.join(makeTempDir('e2e-restart'), 'config');
  const srv = await startLivevlm({ backends: [fake], tls: true, configDir });
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, [...OUTAGE, {
    text: /status of 401/, url: /\/api\/v1\/config$/,
    why: 'a page opened without the auth cookie asks GET /api/v1/config whether it is signed in; 401 shows the form',
  }]);
  let srv2;
  try {
    await page.goto(`${srv.origin}/`);
    await page.fill('#loginToken', srv.token);
    await page.click('#loginSubmit');
    await waitConnected(page);
    const prompt = 'E2E restart: what is on the table?';
    await page.fill('#maxTokens', '7');
    await page.locator('#maxTokens').press('Tab');
    await page.fill('#promptText', prompt);
    await page.locator('#promptText').press('Tab');
    await page.waitForFunction(() => {
      const s = document.getElementById('cameraSelect');
      return s && [...s.options].some((o) => o.value);
    }, null, { timeout: T(10000) });
    const cam = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
    await page.selectOption('#cameraSelect', cam);
    await page.locator('#startBtn').click();
    // two answers about our prompt in the history
    await page.waitForFunction((h) => [...document.querySelectorAll('#historyList li')]
      .filter((li) => (li.textContent || '').includes(`prompt=${h}`)).length >= 2, sha8(prompt), { timeout: T(30000) });
    await page.locator('#stopBtn').click();
    await sleep(300);
    const sid = await sessionIdOf(page);
    const before = (await historyTexts(page)).filter((t) => t.includes(`prompt=${sha8(prompt)}`));
    assert.ok(before.length >= 2);

    // Restart on the same port and config dir (token, certificate and sessions.db are kept).
    await srv.stop();
    srv2 = await startLivevlm({ backends: [fake], tls: true, configDir, args: ['--port', String(srv.port)] });
    assert.equal(srv2.port, srv.port);
    await waitConnected(page); // the page's own reconnect
    await page.waitForFunction((id) => document.getElementById('sessionId')?.dataset.sessionId === id, sid,
      { timeout: T(20000) });
    assert.equal(await page.evaluate(() => document.body.dataset.sessionResumed), 'true');

    // A reload starts from nothing but the tab's stored credentials: what it shows came from the server.
    await page.reload();
    await waitConnected(page);
    assert.equal(await sessionIdOf(page), sid, 'the same session after the restart and a reload');
    await page.waitForFunction(() => document.getElementById('maxTokens').value === '7', null, { timeout: T(5000) });
    assert.equal(await page.locator('#promptText').inputValue(), prompt);
    const after = await historyTexts(page);
    for (const t of before) {
      const key = /model=\S+ prompt=[0-9a-f]{8} image=\d+ bytes/.exec(t)?.[0] || t.slice(0, 40);
      assert.ok(after.some((a) => a.includes(key)), `restored history shows ${JSON.stringify(key)}: ${JSON.stringify(after)}`);
    }
    assert.ok(Number(await page.locator('#historyCount').textContent()) >= before.length);
    errs.check();
  } finally {
    await br.closeContext(ctx);
    if (srv2) await srv2.stop();
  }
});

test('SIGKILL while the camera runs: the page reconnects by itself, resumes the same session, and answers keep coming', TO, async () => {
  const configDir = path.join(makeTempDir('e2e-kill'), 'config');
  const srv = await startLivevlm({ backends: [fake], tls: true, configDir });
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, OUTAGE);
  let srv2;
  try {
    await page.goto(`${srv.origin}/?token=${srv.token}`);
    await waitConnected(page);
    const prompt = 'E2E kill -9: what is on the table?';
    const hash = sha8(prompt);
    await page.fill('#promptText', prompt);
    await page.locator('#promptText').press('Tab');
    await page.waitForFunction(() => [...(document.getElementById('cameraSelect')?.options || [])].some((o) => o.value),
      null, { timeout: T(10000) });
    const cam = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
    await page.selectOption('#cameraSelect', cam);
    await page.locator('#startBtn').click();
    // fakevlm numbers its answers (seq=N): the newest one on screen says how far we got.
    const lastSeq = () => page.evaluate((h) => {
      const t = document.getElementById('answerText')?.textContent || '';
      const m = t.includes(`prompt=${h}`) ? /seq=(\d+)/.exec(t) : null;
      return m ? Number(m[1]) : 0;
    }, hash);
    await page.waitForFunction(() => Number((document.getElementById('metricCount')?.textContent || '')
      .replace(/[^0-9]/g, '')) >= 2, null, { timeout: T(30000) });
    const sid = await sessionIdOf(page);
    // A crash loses the last second or two of changes: wait until the state file holds the
    // session, started (what the page must find again), rather than sleeping.
    const stateFile = path.join(configDir, 'sessions.db');
    await waitUntil(() => {
      let text = '';
      try { text = fs.readFileSync(stateFile, 'utf8'); } catch { return false; }
      return text.split('\n').some((l) => l.includes(sid) && l.includes(prompt) && /"started"\s*:\s*true/.test(l));
    }, { timeoutMs: T(10000), what: `${stateFile} to hold session ${sid}, started` });
    const seqBefore = await lastSeq();
    assert.ok(seqBefore > 0, 'an answer about our prompt is on screen');

    srv.proc.kill('SIGKILL');
    assert.ok(await srv.proc.waitExit(T(5000)), 'livevlm died');
    assert.equal(srv.proc.signal, 'SIGKILL');
    const badge = (states) => page.waitForFunction((s) => s.includes(document.getElementById('connectionStatus')?.dataset.state),
      states, { timeout: T(20000) }).catch(async (e) => {
      throw new Error(`status badge never ${states.join('|')} (it says ` +
        `${JSON.stringify(await page.locator('#connectionStatus').getAttribute('data-state'))}): ${e.message}`);
    });
    await badge(['reconnecting', 'connecting']);
    assert.equal(await page.locator('#stopBtn').isVisible(), true, 'the page still means to run while the server is away');

    srv2 = await startLivevlm({ backends: [fake], tls: true, configDir, args: ['--port', String(srv.port)] });
    assert.equal(srv2.port, srv.port);
    // The page's own reconnect, nothing pressed; "streaming" = connected, started and the camera on.
    await badge(['streaming']);
    await page.waitForFunction((id) => document.getElementById('sessionId')?.dataset.sessionId === id, sid,
      { timeout: T(20000) }).catch(async (e) => {
      throw new Error(`the page shows session ${JSON.stringify(await sessionIdOf(page))}, not ${sid}: ${e.message}`);
    });
    assert.equal(await page.evaluate(() => document.body.dataset.sessionResumed), 'true', 'resumed, not a new session');
    // New answers (later fakevlm requests) about our prompt, with no click: the run resumed.
    await page.waitForFunction(({ h, before }) => {
      const t = document.getElementById('answerText')?.textContent || '';
      const m = t.includes(`prompt=${h}`) ? /seq=(\d+)/.exec(t) : null;
      return m && Number(m[1]) > before;
    }, { h: hash, before: seqBefore }, { timeout: T(30000) }).catch(async (e) => {
      throw new Error(`no new answer after the restart (last seq ${await lastSeq()}, before ${seqBefore}; errorBar ` +
        `${JSON.stringify(await page.locator('#errorBar').textContent())}): ${e.message}\n--- server log:\n${srv2.logTail(30)}`);
    });
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
    if (srv2) await srv2.stop();
  }
});
