// ui2.test.mjs - what users see in the browser beyond the happy path (issue 6): an answer full of
// HTML and Markdown attacks renders inert, switching between two cameras while running, and the
// page on a phone. Debian's chromium (playwright-core) against the real livevlm over TLS; the
// camera is chromium's fake device, asked for two of them (device-count=2). Every test fails on
// an uncaught page exception or a console error (watchPageErrors).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, CHROMIUM_ARGS, sha8, sleep, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
// A model id that is one long word (ids may be 256 bytes): it shows in the answer and under it,
// and a phone must wrap it rather than scroll sideways.
const LONG_MODEL = `fake-vlm-${'x'.repeat(110)}-long-model-id`;
let fake;
let srv;
let br;

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1', LONG_MODEL], slots: 8, ttftMs: 30, tokenMs: 15, tokens: 10 });
  srv = await startLivevlm({ backends: [fake], tls: true });
  // Two fake cameras ("fake_device_0", "fake_device_1"), which this chromium (Debian, 156) honours.
  const args = CHROMIUM_ARGS.map((a) => (a === '--use-fake-device-for-media-stream'
    ? `${a}=device-count=2` : a));
  assert.ok(args.some((a) => a.endsWith('=device-count=2')), 'CHROMIUM_ARGS still names the fake camera');
  br = await launchBrowser({ args });
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

// ---------------------------------------------------------------------------------------------
// page helpers

const CONNECTED = /^(connected|open|online|ready)$/;

async function waitConnected(page) {
  await page.waitForFunction((re) => new RegExp(re).test(document.getElementById('connectionStatus')?.dataset.state || ''),
    CONNECTED.source, { timeout: T(15000) });
}

/** A new context and page signed in through /?token=… (the cookie path). */
async function openSignedIn(server, ctxOpts = {}, allow = []) {
  const ctx = await br.newContext(ctxOpts);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, allow);
  await page.goto(`${server.origin}/?token=${server.token}`);
  await waitConnected(page);
  return { ctx, page, errs };
}

async function setPrompt(page, prompt) {
  await page.fill('#promptText', prompt);
  await page.locator('#promptText').press('Tab'); // the prompt applies on blur
}

/** The camera picker's device entries [{value, label}], once chromium has listed them. */
async function cameraOptions(page, atLeast = 1) {
  await page.waitForFunction((n) => [...(document.getElementById('cameraSelect')?.options || [])]
    .filter((o) => o.value.startsWith('device:')).length >= n, atLeast, { timeout: T(10000) });
  return page.evaluate(() => [...document.getElementById('cameraSelect').options]
    .filter((o) => o.value.startsWith('device:')).map((o) => ({ value: o.value, label: o.textContent })));
}

const numberIn = async (page, sel) => Number(((await page.locator(sel).textContent()) || '').replace(/[^0-9]/g, '')) || 0;
const answerCount = (page) => numberIn(page, '#metricCount');

/** Wait until #metricCount (answers completed in this session) reaches n. */
async function waitAnswers(page, n, timeoutMs = T(20000)) {
  await page.waitForFunction((k) => Number((document.getElementById('metricCount')?.textContent || '')
    .replace(/[^0-9]/g, '')) >= k, n, { timeout: timeoutMs }).catch(async (e) => {
    throw new Error(`fewer than ${n} answers (count ${await answerCount(page)}; errorBar ` +
      `${JSON.stringify(await page.locator('#errorBar').textContent())}): ${e.message}`);
  });
}

/** Turn on the debug payloads and the answer overlay on the video in the settings dialog. */
async function debugAndOverlay(page) {
  await page.locator('#settingsBtn').click();
  await page.locator('#settingsModal').waitFor({ state: 'visible' });
  await page.selectOption('#overlayPosition', 'bottom');
  // The checkbox is drawn as a switch whose track covers it.
  await page.locator('#debugToggle').setChecked(true, { force: true });
  await page.locator('#settingsDone').click();
  await page.locator('#settingsModal').waitFor({ state: 'hidden' });
}

// ---------------------------------------------------------------------------------------------
// A scripted OpenAI-compatible backend whose answer text the test chooses. fakevlm cannot be
// used: its answer is a fixed sentence (docs/fakevlm.md "The answer"), and the only part a client
// controls, the model id, is limited to [A-Za-z0-9._:/@+-]. The answer still travels the real
// path: backend SSE → livevlm's chat client → session → WebSocket → the page's renderer.

/**
 * Start it on a free loopback port. reply(prompt, n) (n: 1 for the first request) → {text,
 * holdMs} (after holdMs, the text streamed in `chunk`-character deltas, so markup is split across
 * deltas) or {status, message} (an OpenAI-shaped error). Returns {url, prompts (every prompt
 * received), close()}.
 */
async function startScriptedBackend(reply, { model = 'scripted-vlm', chunk = 13, delayMs = 3 } = {}) {
  const prompts = [];
  const server = http.createServer((req, res) => {
    const body = [];
    let gone = false;
    res.on('close', () => { gone = true; });
    res.on('error', () => { gone = true; });
    req.on('data', (c) => body.push(c));
    req.on('end', async () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: model, object: 'model', created: 0, owned_by: 'test' }] }));
        return;
      }
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
        return;
      }
      let r;
      try { r = JSON.parse(Buffer.concat(body).toString('utf8')); } catch { r = {}; }
      const user = (r.messages || []).filter((m) => m.role === 'user').pop() || {};
      const prompt = typeof user.content === 'string' ? user.content
        : (user.content || []).filter((p) => p.type === 'text').map((p) => p.text).join('\n');
      prompts.push(prompt);
      const out = reply(prompt, prompts.length);
      if (out.status) {
        res.writeHead(out.status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: out.message, type: 'invalid_request_error', code: 'scripted' } }));
        return;
      }
      const base = { id: `chatcmpl-scripted-${prompts.length}`, object: 'chat.completion.chunk', created: 0, model };
      const words = out.text.split(/\s+/).length;
      if (!r.stream) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: out.text }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: words, total_tokens: words + 1 } }));
        return;
      }
      for (const until = Date.now() + (out.holdMs || 0); !gone && Date.now() < until;) await sleep(20);
      if (gone) return;
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      const send = (o) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
      for (let i = 0; i < out.text.length && !gone; i += chunk) {
        send({ ...base, choices: [{ index: 0, delta: { content: out.text.slice(i, i + chunk) }, finish_reason: null }] });
        await sleep(delayMs);
      }
      send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      if (r.stream_options?.include_usage) {
        send({ ...base, choices: [], usage: { prompt_tokens: 1, completion_tokens: words, total_tokens: words + 1 } });
      }
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/v1`,
    prompts,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

// Each payload would set window.lvXss (or call alert) if the page ever treated answer text as
// HTML or followed a script URL. No underscores: Markdown would read `__` as emphasis.
const END = 'END-OF-ATTACK';
const ATTACK = [
  '# Heading <img src=x onerror="window.lvXss=1">',
  '<script>window.lvXss=2</script>',
  'Links: [js](javascript:window.lvXss=3) [JS](JaVaScRiPt:alert(1)) [spaced](  javascript:alert(2)  )',
  '[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) [vb](vbscript:msgbox(1))',
  '[entity](java&#x73;cript:alert(3)) [ok](https://example.com/a?b=1&c=2) <javascript:alert(4)>',
  '![pic](javascript:alert(5)) ![pic2](https://example.com/x.png" onerror="window.lvXss=4)',
  '<svg onload=window.lvXss=5><circle r=1></circle></svg> <svg><script>window.lvXss=6</script></svg>',
  '<iframe src="javascript:window.lvXss=7"></iframe> <a href="javascript:window.lvXss=8">raw link</a>',
  '<details open ontoggle=window.lvXss=9>d</details> <math><mi xlink:href="javascript:alert(6)">m</mi></math>',
  '<style>body{display:none}</style> <base href="javascript:alert(7)//"> <object data="javascript:alert(8)"></object>',
  'Entities: &lt;img src=x onerror=window.lvXss=10&gt; &#60;script&#62;window.lvXss=11&#60;/script&#62; &amp;lt;b&amp;gt;',
  '`<img src=x onerror=window.lvXss=12>` **bold <img src=x onerror=window.lvXss=13>**',
  '',
  '| a | b |',
  '|---|---|',
  '| <img src=x onerror=window.lvXss=14> | [t](javascript:alert(9)) |',
  '',
  '```html',
  '<script>window.lvXss=15</script>',
  '```',
  '> <img src=x onerror=window.lvXss=16>',
  `- item <b onmouseover=window.lvXss=17>b</b> ${END}`,
].join('\n');
const ERROR_ATTACK = '<img src=x onerror=window.lvXss=20><script>window.lvXss=21</script>';

// Runs in the page before its own scripts: records every element added inside a place that shows
// answer text whose tag the Markdown renderer never makes, every on* attribute and script-URL
// attribute added anywhere, and every CSP violation (a violation means markup got through; the
// attack test bypasses the policy, so there it cannot fire, but the record stays honest elsewhere).
function watchInjection() {
  window.lvInjected = [];
  const AREAS = '#answerText, #answerNextText, #historyList .hist-text, #videoOverlay, #errorBar .error-msg, #requestPayloadText, #responsePayloadText';
  const RENDERER_TAGS = new Set(['p', 'br', 'strong', 'em', 'del', 'code', 'pre', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
    'ul', 'ol', 'li', 'blockquote', 'hr', 'div', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'a', 'span']);
  const note = (what) => window.lvInjected.push(what);
  // parent: where el was added (it may have been replaced again before this callback runs).
  const inspect = (el, parent) => {
    for (const a of el.attributes || []) {
      if (/^on/i.test(a.name)) note(`${el.localName}[${a.name}=${a.value}]`);
      if (/^(href|src|action|formaction|data|xlink:href)$/i.test(a.name) && /^\s*(javascript|vbscript|data):/i.test(a.value)) {
        note(`${el.localName}[${a.name}=${a.value}]`);
      }
    }
    const area = parent && parent.closest ? parent.closest(AREAS) : null;
    if (area && !RENDERER_TAGS.has(el.localName)) note(`<${el.localName}> in #${area.id || area.className}`);
  };
  new MutationObserver((muts) => {
    for (const m of muts) {
      for (const n of m.addedNodes) {
        if (n.nodeType !== 1) continue;
        inspect(n, m.target);
        for (const d of n.querySelectorAll('*')) inspect(d, d.parentElement);
      }
    }
  }).observe(document, { childList: true, subtree: true });
  document.addEventListener('securitypolicyviolation', (e) => note(`CSP ${e.violatedDirective} ${e.blockedURI}`));
}

/** Everything the page shows of the answer, checked after the fact. */
async function inertnessReport(page) {
  return page.evaluate(() => {
    const areas = ['#answerText', '#answerNextText', '#historyList .hist-text', '#videoOverlay', '#responsePayloadText', '#requestPayloadText', '#errorBar .error-msg'];
    const bad = [];
    const ATTACK_TAGS = 'script, img, svg, iframe, object, embed, style, base, math, link, meta, form, input, b, details';
    for (const sel of areas) {
      for (const root of document.querySelectorAll(sel)) {
        for (const e of root.querySelectorAll(ATTACK_TAGS)) bad.push(`<${e.localName}> inside ${sel}`);
        for (const a of root.querySelectorAll('a')) {
          let proto = '';
          try { proto = new URL(a.href).protocol; } catch { proto = `unparsable ${a.getAttribute('href')}`; }
          if (!['http:', 'https:'].includes(proto)) bad.push(`link to ${a.getAttribute('href')} inside ${sel}`);
          if (!/noopener/.test(a.rel)) bad.push(`link without rel=noopener inside ${sel}`);
        }
      }
    }
    const links = [...document.querySelectorAll('#answerText a')].map((a) => a.href);
    return { bad, injected: window.lvInjected, flag: window.lvXss, links };
  });
}

test('an answer full of HTML and Markdown attacks renders as inert text (markdown, plain, history, overlay, payloads, error bar)', TO, async () => {
  // Only the first answer comes at once: later ones wait, so that pressing Stop leaves the whole
  // first answer on screen rather than the first words of the next.
  const backend = await startScriptedBackend((prompt, n) => (prompt.includes('[[evil-error]]')
    ? { status: 400, message: ERROR_ATTACK } : { text: ATTACK, holdMs: n === 1 ? 0 : T(60000) }));
  const evil = await startLivevlm({ backends: [{ id: 'scripted', url: backend.url }], tls: true });
  const dialogs = [];
  let ctx;
  try {
    // bypassCSP: the page's Content-Security-Policy would block an injected inline handler and so
    // hide a renderer bug from the window.lvXss check; this test is about the renderer alone.
    ctx = await br.newContext({ bypassCSP: true });
    await ctx.addInitScript(watchInjection);
    const page = await ctx.newPage();
    page.on('dialog', (d) => { dialogs.push(`${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
    // The refused backend request is an error the page shows, not a resource it fails to load.
    const errs = watchPageErrors(page);
    await page.goto(`${evil.origin}/?token=${evil.token}`);
    await waitConnected(page);
    await debugAndOverlay(page);
    await setPrompt(page, 'Describe the scene.');
    const [cam] = await cameraOptions(page);
    await page.selectOption('#cameraSelect', cam.value);
    await page.locator('#startBtn').click();
    await waitAnswers(page, 1);
    await page.locator('#stopBtn').click();
    await page.waitForFunction(() => !(document.getElementById('responsePayload')?.hidden), null, { timeout: T(5000) });
    assert.ok(backend.prompts.length >= 1, 'the scripted backend was asked');

    // Markdown mode: the markup is shown as text, and the only links are http(s) ones.
    const md = await page.locator('#answerText').textContent();
    assert.ok(md.includes(END), `the whole answer is shown: ${md.slice(-200)}`);
    for (const literal of ['<script>window.lvXss=2</script>', '<img src=x onerror="window.lvXss=1">',
      '<svg onload=window.lvXss=5>', '<iframe src="javascript:window.lvXss=7"></iframe>']) {
      assert.ok(md.includes(literal), `markdown mode shows ${literal} as text: ${md.slice(0, 400)}`);
    }
    assert.ok(md.includes('&lt;img src=x onerror=window.lvXss=10&gt;') || md.includes('<img src=x onerror=window.lvXss=10>'),
      'an entity-encoded tag is shown as text (encoded or decoded, never parsed)');
    let r = await inertnessReport(page);
    assert.deepEqual(r.bad, [], 'no attack element and no unsafe link where answers are shown');
    // The http(s) link, and the image turned into a link to its (quoted, hence escaped) address.
    assert.deepEqual(r.links, ['https://example.com/a?b=1&c=2', 'https://example.com/x.png%22'], 'only the http(s) links are links');

    // Plain mode: the text arrived whole through livevlm, and the page shows exactly those bytes.
    await page.locator('#markdownToggle').click();
    await page.waitForFunction(() => document.getElementById('answerText').dataset.mode === 'plain');
    assert.equal(await page.locator('#answerText').textContent(), ATTACK, 'plain mode shows the answer byte for byte');
    assert.equal(await page.locator('#answerText').evaluate((e) => e.children.length), 0, 'plain mode: text only');
    await page.locator('#markdownToggle').click();
    // The history keeps the answer; opening an entry renders it again.
    await page.locator('#history > summary').click();
    await page.locator('#historyList details.hist-item').first().evaluate((d) => { d.open = true; });
    assert.ok((await page.locator('#historyList .hist-text').first().textContent()).includes(END));
    assert.ok((await page.locator('#videoOverlayText').textContent()).includes('window.lvXss=2'), 'the overlay shows the text');
    assert.ok((await page.locator('#responsePayloadText').textContent()).length > 0, 'the response payload is shown');

    // A backend error message with markup reaches the error bar as text.
    await setPrompt(page, 'Now fail. [[evil-error]]');
    await page.locator('#startBtn').click();
    const msg = page.locator('#errorBar .error-msg').filter({ hasText: 'lvXss=20' });
    await msg.first().waitFor({ state: 'visible', timeout: T(20000) });
    assert.ok((await msg.first().textContent()).includes('<img src=x onerror=window.lvXss=20>'),
      `the error bar shows the markup as text: ${await msg.first().textContent()}`);
    await page.locator('#stopBtn').click();

    await sleep(300); // an image error handler or a deferred script would have run by now
    r = await inertnessReport(page);
    assert.deepEqual(r.bad, [], 'no attack element and no unsafe link, after the error and the history');
    assert.deepEqual(r.injected, [], 'no element, handler attribute or CSP violation was ever added while streaming');
    assert.equal(r.flag, undefined, 'no injected script ran (window.lvXss unset)');
    assert.deepEqual(dialogs, [], 'no dialog was opened');
    errs.check();
  } finally {
    if (ctx) await br.closeContext(ctx);
    await evil.stop();
    await backend.close();
  }
});

test('switching to the second camera while running: frames keep flowing, answers keep coming, the label changes', TO, async () => {
  const { ctx, page, errs } = await openSignedIn(srv);
  try {
    const cams = await cameraOptions(page, 2);
    assert.deepEqual(cams.map((c) => c.label), ['fake_device_0', 'fake_device_1'], 'chromium lists two fake cameras by name');
    const prompt = 'E2E camera switch: what is on screen?';
    await setPrompt(page, prompt);
    await page.selectOption('#cameraSelect', cams[0].value);
    await page.locator('#startBtn').click();
    await waitAnswers(page, 2);
    const track = () => page.evaluate(() => {
      const t = document.getElementById('video').srcObject?.getVideoTracks()[0];
      return t ? { label: t.label, state: t.readyState, id: t.getSettings().deviceId } : null;
    });
    const t0 = await track();
    assert.equal(t0.label, 'fake_device_0');

    await page.selectOption('#cameraSelect', cams[1].value);
    await page.locator('#cameraHint').filter({ hasText: 'fake_device_1' }).waitFor({ timeout: T(10000) });
    const t1 = await track();
    assert.deepEqual([t1.label, t1.state, `device:${t1.id}`], ['fake_device_1', 'live', cams[1].value], 'the video shows the second camera');
    assert.equal(await page.locator('#cameraSelect').inputValue(), cams[1].value);
    // From here on, new frames (sent by the page, received by the server) and new answers about
    // our prompt, without pressing anything.
    const sent0 = await numberIn(page, '#framesSent');
    const count0 = await answerCount(page);
    await waitAnswers(page, count0 + 3);
    // answers can be about frames sent before sent0 was read: wait for the count rather than race it
    await page.waitForFunction((k) => Number((document.querySelector('#framesSent')?.textContent || '')
      .replace(/[^0-9]/g, '')) >= k, sent0 + 3, { timeout: T(10000) }).catch(async () => {
      assert.fail(`the page keeps sending frames: ${await numberIn(page, '#framesSent')} sent, ${sent0} before the switch`);
    });
    await page.waitForFunction((n) => Number((document.getElementById('metricFrames')?.textContent || '').replace(/[^0-9]/g, '')) > n,
      await numberIn(page, '#metricFrames'), { timeout: T(10000) });
    assert.ok((await page.locator('#answerText').textContent()).includes(`prompt=${sha8(prompt)}`));
    assert.equal(await page.locator('#stopBtn').isVisible(), true, 'still running');
    await page.waitForFunction(() => document.getElementById('videoWrap').dataset.streaming === 'true', null, { timeout: T(5000) });

    // And back to the first one.
    await page.selectOption('#cameraSelect', cams[0].value);
    await page.locator('#cameraHint').filter({ hasText: 'fake_device_0' }).waitFor({ timeout: T(10000) });
    const count1 = await answerCount(page);
    await waitAnswers(page, count1 + 2);
    assert.equal((await track()).label, 'fake_device_0');
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('on a phone (390x844, touch, 3x): sign in, the controls fit and work, an answer appears, no sideways scroll', TO, async () => {
  const phone = {
    viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 3,
    userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36',
  };
  const ctx = await br.newContext(phone);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, [{
    text: /status of 401/, url: /\/api\/v1\/config$/,
    why: 'the page asks GET /api/v1/config whether it is signed in; 401 is how it learns to show the form',
  }]);
  // A mobile browser lays out a page wider than the screen by widening the layout viewport (and
  // zooming out), so innerWidth alone would follow the overflow: compare with the screen too.
  const sideways = () => page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  }));
  const assertNoSideways = async (when) => {
    const s = await sideways();
    assert.ok(s.scrollWidth <= s.innerWidth && s.innerWidth === phone.viewport.width,
      `${when}: the page is wider than the phone's ${phone.viewport.width} px (${JSON.stringify(s)})`);
  };
  /** The element is visible, inside the screen's width, and a tap at its centre reaches it. */
  const assertTappable = async (sel) => {
    const loc = page.locator(sel);
    await loc.scrollIntoViewIfNeeded();
    assert.equal(await loc.isVisible(), true, `${sel} is visible`);
    const box = await loc.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390 + 0.5, `${sel} fits the width: ${JSON.stringify(box)}`);
    assert.ok(box.width >= 24 && box.height >= 24, `${sel} is big enough to tap: ${JSON.stringify(box)}`);
    const hit = await page.evaluate(({ s, x, y }) => {
      const e = document.elementFromPoint(x, y);
      return !!e && (e === document.querySelector(s) || document.querySelector(s).contains(e));
    }, { s: sel, x: box.x + box.width / 2, y: box.y + box.height / 2 });
    assert.ok(hit, `nothing covers ${sel}`);
  };
  try {
    await page.goto(`${srv.origin}/`);
    await page.locator('#loginToken').waitFor({ state: 'visible' });
    await assertNoSideways('login form');
    await assertTappable('#loginSubmit');
    await page.locator('#loginToken').tap();
    await page.fill('#loginToken', srv.token);
    await page.locator('#loginSubmit').tap();
    await waitConnected(page);
    assert.equal(await page.evaluate(() => matchMedia('(pointer: coarse)').matches), true, 'the page sees a touch screen');
    await assertNoSideways('signed in');
    for (const sel of ['#startBtn', '#settingsBtn', '#cameraSelect', '#promptText', '#modelSelect']) await assertTappable(sel);

    await page.locator('#promptText').tap();
    const prompt = 'E2E phone: what is in front of the camera?';
    await setPrompt(page, prompt);
    // A model whose id is one 130-character word: the answer and "Answered by" must wrap it.
    await page.waitForFunction((m) => [...document.getElementById('modelSelect').options].some((o) => o.value === m), LONG_MODEL, { timeout: T(10000) });
    await page.selectOption('#modelSelect', LONG_MODEL);
    const cams = await cameraOptions(page);
    await page.selectOption('#cameraSelect', cams[0].value);
    await page.locator('#startBtn').scrollIntoViewIfNeeded();
    await page.locator('#startBtn').tap();
    await waitAnswers(page, 1);
    const text = await page.locator('#answerText').textContent();
    assert.ok(text.includes(`prompt=${sha8(prompt)}`) && text.includes(LONG_MODEL), `an answer about our prompt from the long-named model: ${text.slice(0, 300)}`);
    await page.locator('#answerText').scrollIntoViewIfNeeded();
    assert.equal(await page.locator('#answerText').isVisible(), true);
    await assertNoSideways('with an answer on screen');
    await assertTappable('#stopBtn');
    await page.locator('#stopBtn').tap();
    await page.locator('#startBtn').waitFor({ state: 'visible', timeout: T(5000) });

    await page.locator('#settingsBtn').scrollIntoViewIfNeeded();
    await page.locator('#settingsBtn').tap();
    await page.locator('#settingsModal').waitFor({ state: 'visible' });
    await assertNoSideways('settings dialog open');
    await assertTappable('#settingsDone');
    await page.locator('#settingsDone').tap();
    await page.locator('#settingsModal').waitFor({ state: 'hidden' });
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});
