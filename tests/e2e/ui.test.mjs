// ui.test.mjs - the web UI in Debian's headless chromium (playwright-core) against the real
// livevlm over TLS (self-signed, generated on first start) and fakevlm. The camera is chromium's
// fake device. Element ids are the UI's contract (see web/index.html). Every test fails on an
// uncaught page exception or a console error (watchPageErrors; the few expected ones are listed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, sha8, sleep, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
let fake;
let srv;
let br;

before(async () => {
  // Slow enough streaming (20 words, 60 ms apart) that the page can be seen growing an answer.
  fake = await startFakevlm({ models: ['fake-vlm-1', 'fake-vlm-2'], slots: 8, ttftMs: 100, tokenMs: 60, tokens: 20 });
  srv = await startLivevlm({ backends: [fake], tls: true });
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

const CONNECTED = /^(connected|open|online|ready)$/;

async function connectionState(page) {
  return page.locator('#connectionStatus').getAttribute('data-state');
}

async function waitConnected(page) {
  await page.waitForFunction((re) => {
    const s = document.getElementById('connectionStatus')?.dataset.state || '';
    return new RegExp(re).test(s);
  }, CONNECTED.source, { timeout: T(15000) }).catch(async (e) => {
    throw new Error(`page never connected (data-state=${await connectionState(page)}): ${e.message}`);
  });
}

async function sessionIdOf(page) {
  return page.evaluate(() => {
    const el = document.getElementById('sessionId');
    return (el?.dataset.sessionId || el?.textContent || '').trim();
  });
}

// Messages a page may log without anything being wrong. Chromium logs every 4xx answer to a
// fetch as a console error ("Failed to load resource: … 401"), so each entry names the request.
const BEFORE_SIGN_IN = {
  text: /status of 401/, url: /\/api\/v1\/config$/,
  why: 'a page opened without the auth cookie asks GET /api/v1/config whether it is signed in; ' +
    'the 401 answer is how it learns to show the login form',
};

/** New context + page logged in through the login form; errs collects its page/console errors. */
async function loginWithForm(opts = {}) {
  const ctx = await br.newContext(opts);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, [BEFORE_SIGN_IN]);
  page.__errs = errs;
  await page.goto(`${srv.origin}/`);
  await page.locator('#loginToken').waitFor({ state: 'visible', timeout: T(10000) });
  await page.fill('#loginToken', srv.token);
  await page.click('#loginSubmit');
  await waitConnected(page);
  return { ctx, page, errs };
}

async function answerText(page) {
  return (await page.locator('#answerText').textContent()) || '';
}

/** Pick the fake camera (if the select offers a choice) and press start. */
async function startCamera(page) {
  await page.waitForFunction(() => {
    const s = document.getElementById('cameraSelect');
    return s && [...s.options].some((o) => o.value);
  }, null, { timeout: T(10000) });
  const value = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
  await page.selectOption('#cameraSelect', value);
  await page.locator('#startBtn').click();
}

async function setPrompt(page, prompt) {
  await page.fill('#promptText', prompt);
  await page.locator('#promptText').press('Tab'); // the prompt applies on blur
}

/** Wait until #answerText contains re (string or RegExp); returns the text. */
async function waitAnswer(page, re, timeoutMs = T(20000)) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await answerText(page);
    if (typeof re === 'string' ? last.includes(re) : re.test(last)) return last;
    await sleep(100);
  }
  const err = await page.locator('#errorBar').textContent().catch(() => '');
  throw new Error(`#answerText never matched ${re} in ${timeoutMs} ms; last: ${JSON.stringify(last.slice(0, 300))}; ` +
    `#errorBar: ${JSON.stringify(err)}; page errors: ${JSON.stringify(page.__errs?.errors || [])}`);
}

test('log in with the token through the form', TO, async () => {
  const { ctx, page, errs } = await loginWithForm();
  try {
    assert.match(await sessionIdOf(page), /[0-9a-f]{8}/, 'the session id is shown');
    assert.equal(await page.locator('#loginToken').isVisible(), false, 'login form gone');
    errs.check('signed-in page');
    // A wrong token is refused and keeps the form.
    const ctx2 = await br.newContext();
    const p2 = await ctx2.newPage();
    const errs2 = watchPageErrors(p2, [BEFORE_SIGN_IN, {
      text: /status of 401/, url: /\/api\/v1\/login$/,
      why: 'the wrong token is what this test sends: POST /api/v1/login answers 401 and Chromium logs it',
    }]);
    await p2.goto(`${srv.origin}/`);
    await p2.fill('#loginToken', 'f'.repeat(64));
    await p2.click('#loginSubmit');
    // The page says so in words (role=alert), rather than failing silently.
    await p2.locator('#loginError').filter({ hasText: /wrong token/i }).waitFor({ state: 'visible', timeout: T(10000) });
    assert.equal(await p2.locator('#loginToken').isVisible(), true, 'a wrong token keeps the login form');
    assert.doesNotMatch((await connectionState(p2)) || '', CONNECTED);
    errs2.check('page with the wrong token');
    await br.closeContext(ctx2);
  } finally {
    await br.closeContext(ctx);
  }
});

test('start the fake camera: the answer streams in (grows) and contains "fakevlm"', TO, async () => {
  const { ctx, page, errs } = await loginWithForm();
  try {
    const prompt = 'E2E: what does the fake camera show?';
    await setPrompt(page, prompt);
    await startCamera(page);
    const samples = [];
    const deadline = Date.now() + T(25000);
    let final = null;
    while (Date.now() < deadline) {
      const t = await answerText(page);
      if (t && samples[samples.length - 1] !== t) samples.push(t);
      const count = Number(((await page.locator('#metricCount').textContent()) || '').replace(/[^0-9]/g, '')) || 0;
      if (count >= 1 && t.includes('fakevlm') && samples.length >= 3) { final = t; break; }
      await sleep(80);
    }
    assert.ok(final, `no complete answer in time; samples: ${JSON.stringify(samples.slice(-5)).slice(0, 600)}; ` +
      `errorBar: ${await page.locator('#errorBar').textContent()}`);
    assert.ok(final.includes(`prompt=${sha8(prompt)}`), `answer is about our prompt: ${final.slice(0, 200)}`);
    const grew = samples.some((s, i) => i > 0 && s.length > samples[i - 1].length && samples[i - 1].length > 0 &&
      s.startsWith(samples[i - 1].slice(0, Math.min(samples[i - 1].length, 20))));
    assert.ok(grew, `the answer was seen growing token by token: ${JSON.stringify(samples.map((s) => s.length))}`);
    const latency = (await page.locator('#metricLatency').textContent()) || '';
    assert.match(latency, /\d/, `#metricLatency shows a number (${latency})`);
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('two browser contexts with different prompts stay isolated', TO, async () => {
  const a = await loginWithForm();
  const b = await loginWithForm();
  try {
    assert.notEqual(await sessionIdOf(a.page), await sessionIdOf(b.page), 'two sessions');
    const pa = 'Context A asks about colours.';
    const pb = 'Context B asks about shapes.';
    await setPrompt(a.page, pa);
    await setPrompt(b.page, pb);
    await startCamera(a.page);
    await startCamera(b.page);
    const ha = sha8(pa);
    const hb = sha8(pb);
    await Promise.all([waitAnswer(a.page, `prompt=${ha}`), waitAnswer(b.page, `prompt=${hb}`)]);
    // Watch both for a while: neither ever shows the other's prompt hash.
    for (let i = 0; i < 20; i++) {
      const [ta, tb] = await Promise.all([answerText(a.page), answerText(b.page)]);
      assert.ok(!ta.includes(hb), `A shows B's answer: ${ta.slice(0, 200)}`);
      assert.ok(!tb.includes(ha), `B shows A's answer: ${tb.slice(0, 200)}`);
      await sleep(100);
    }
    await a.page.locator('#stopBtn').click();
    await b.page.locator('#stopBtn').click();
    a.errs.check('page A');
    b.errs.check('page B');
  } finally {
    await br.closeContext(a.ctx);
    await br.closeContext(b.ctx);
  }
});

test('the theme toggle cycles and the choice persists across a reload', TO, async () => {
  const { ctx, page, errs } = await loginWithForm();
  try {
    const theme = () => page.evaluate(() => document.body.dataset.theme || '');
    const mode = () => page.locator('#themeToggle').getAttribute('data-mode');
    const t0 = await theme();
    assert.match(t0, /^(light|dark)$/, `body[data-theme] is light or dark (got ${JSON.stringify(t0)}; ` +
      `html has ${JSON.stringify(await page.evaluate(() => document.documentElement.dataset.theme))})`);
    const m0 = await mode();
    const states = [[m0, t0]];
    for (let i = 0; i < 4; i++) {
      await page.locator('#themeToggle').click();
      await sleep(100);
      states.push([await mode(), await theme()]);
      if (states[states.length - 1][0] === m0) break;
    }
    assert.equal(states[states.length - 1][0], m0, `the toggle cycles back to where it started: ${JSON.stringify(states)}`);
    const themes = new Set(states.map((x) => x[1]));
    assert.ok(themes.has('light') && themes.has('dark'), `cycling shows both light and dark: ${JSON.stringify(states)}`);
    // Pick a state whose theme differs from the start, then reload.
    for (let i = 0; i < 4 && (await theme()) === t0; i++) {
      await page.locator('#themeToggle').click();
      await sleep(100);
    }
    const chosen = [await mode(), await theme()];
    assert.notEqual(chosen[1], t0);
    await page.reload();
    await waitConnected(page);
    assert.deepEqual([await mode(), await theme()], chosen, 'theme choice persists across reload');
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('max tokens and prompt changes apply to the session (debug payload, answer, reload)', TO, async () => {
  const { ctx, page, errs } = await loginWithForm();
  try {
    await page.fill('#maxTokens', '9');
    await page.locator('#maxTokens').press('Tab');
    const prompt = 'E2E settings prompt, applied?';
    await setPrompt(page, prompt);
    // Debug on (in the settings dialog) shows the request payload sent to the backend.
    await page.locator('#settingsBtn').click();
    await page.locator('#settingsModal').waitFor({ state: 'visible' });
    // The checkbox is drawn as a switch whose track covers it: click where the user would.
    await page.locator('#debugToggle').setChecked(true, { force: true });
    assert.equal(await page.locator('#debugToggle').isChecked(), true, 'debug switch is on');
    await page.keyboard.press('Escape');
    await page.locator('#settingsModal').waitFor({ state: 'hidden', timeout: T(5000) }).catch(async () => {
      await page.locator('#settingsDone').click().catch(() => {});
    });
    await startCamera(page);
    await waitAnswer(page, `prompt=${sha8(prompt)}`);
    await page.waitForFunction(() => /"max_(completion_)?tokens"\s*:\s*9\b/.test(
      document.getElementById('requestPayloadText')?.textContent || ''), null, { timeout: T(15000) })
      .catch(async () => {
        throw new Error(`request payload never showed max_tokens 9: ${(await page.locator('#requestPayloadText').textContent() || '').slice(0, 400)}`);
      });
    const words = (await answerText(page)).trim().split(/\s+/).length;
    assert.ok(words <= 9, `max_tokens 9 caps the answer at 9 words (got ${words}): ${await answerText(page)}`);
    await page.locator('#stopBtn').click();
    // The server holds the settings: a reload resumes the session and shows them.
    const sid = await sessionIdOf(page);
    await page.reload();
    await waitConnected(page);
    assert.equal(await sessionIdOf(page), sid, 'a reload resumes the same session');
    await page.waitForFunction(() => document.getElementById('maxTokens').value === '9', null, { timeout: T(5000) });
    assert.equal(await page.locator('#promptText').inputValue(), prompt);
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('a page opened with /?token=… logs in by cookie and drops the token from the address', TO, async () => {
  const ctx = await br.newContext();
  try {
    const page = await ctx.newPage();
    const errs = watchPageErrors(page);
    await page.goto(`${srv.origin}/?token=${srv.token}`);
    await waitConnected(page);
    assert.ok(!page.url().includes(srv.token), `token left the address bar (${page.url()})`);
    assert.equal(await page.locator('#loginToken').isVisible(), false);
    const cookies = await ctx.cookies();
    const c = cookies.find((x) => x.name === 'livevlm_auth');
    assert.ok(c, 'auth cookie set');
    assert.equal(c.httpOnly, true);
    assert.equal(c.secure, true);
    assert.equal(c.sameSite, 'Strict');
    // The cookie is not readable from the page's JavaScript.
    assert.ok(!(await page.evaluate(() => document.cookie)).includes(srv.token));
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('a backend error shows in the error bar, not as the answer', TO, async () => {
  const { ctx, page, errs } = await loginWithForm();
  try {
    await setPrompt(page, 'E2E fault [[fault:error500]]');
    await startCamera(page);
    await page.waitForFunction(() => (document.getElementById('errorBar')?.textContent || '').trim().length > 0,
      null, { timeout: T(20000) });
    assert.ok(!(await answerText(page)).includes('fault'), 'no fault text in the answer');
    await page.locator('#stopBtn').click();
    errs.check('a backend error is shown to the user, not thrown or logged as a page error');
  } finally {
    await br.closeContext(ctx);
  }
});

test('system stats: the CPU tile shows a number', TO, async () => {
  const { ctx, page, errs } = await loginWithForm();
  try {
    await page.waitForFunction(() => /\d/.test(document.getElementById('statCpu')?.textContent || ''), null, { timeout: T(10000) });
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('with no backend the page shows the no-backend banner', TO, async () => {
  const bare = await startLivevlm({ backends: [], tls: true });
  const ctx = await br.newContext();
  try {
    const page = await ctx.newPage();
    const errs = watchPageErrors(page);
    await page.goto(`${bare.origin}/?token=${bare.token}`);
    await page.locator('#noBackendBanner').waitFor({ state: 'visible', timeout: T(10000) });
    assert.match((await page.locator('#noBackendBanner').textContent()) || '', /\w{3,}/);
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await bare.stop();
  }
});
