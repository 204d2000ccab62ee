// cameras.test.mjs - watching IP cameras from the page (issue: camera sources): Debian's chromium
// (playwright-core) against the real livevlm with two real RTSP cameras (tests/tools/rtspcam, a
// moving pattern served by libgstrtspserver) and fakevlm, whose answers name the picture they
// were about (jpeg=WxH), so an answer about a camera's frame has that camera's size. The page's
// getUserMedia is counted in the page itself: watching a camera must never open the webcam.
// Every test fails on an uncaught page exception or a console error (watchPageErrors); every wait
// is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, parseFakeAnswer, makeTempDir, Proc,
  BUILD_DIR, waitUntil, scrapeMetrics, sha8, sleep, T,
} from '../lib/harness.mjs';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const TO = { timeout: T(60000) };
const DESKTOP = { viewport: { width: 1366, height: 768 } };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const LOBBY = { id: 'lobby', width: 640, height: 480 };
const YARD = { id: 'yard', width: 320, height: 240 };

let br;
let fake;
let srv;
const cams = {};

// ---------------------------------------------------------------------------------------------
// the test camera

/** Start rtspcam (port 0: a free one); resolves {proc, url, port} once it prints its ready line. */
async function startCam(name, { size, port = 0 } = {}) {
  const dir = makeTempDir(`rtspcam-${name}`);
  const args = ['--port', String(port), '--size', size, '--fps', '15'];
  const proc = new Proc(`rtspcam-${name}`, path.join(BUILD_DIR, 'rtspcam'), args,
    { cwd: dir, env: process.env, logPath: path.join(dir, 'rtspcam.log') }).start();
  const line = await waitUntil(() => {
    if (proc.exited) throw new Error(`rtspcam ${proc.describeExit()}:\n${proc.logTail(20)}`);
    return /rtspcam: ready (rtsp:\/\/127\.0\.0\.1:(\d+)\/\S+)/.exec(proc.logText());
  }, { timeoutMs: T(10000), what: `rtspcam ${name} ready` });
  return { proc, url: line[1], port: Number(line[2]) };
}

before(async () => {
  fake = await startFakevlm({ ttftMs: 30, tokenMs: 5, tokens: 8 });
  cams.lobby = await startCam('lobby', { size: `${LOBBY.width}x${LOBBY.height}` });
  cams.yard = await startCam('yard', { size: `${YARD.width}x${YARD.height}` });
  srv = await startLivevlm({
    backends: [fake],
    args: ['--camera', `lobby=${cams.lobby.url}`, '--camera', `yard=${cams.yard.url}`],
  });
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

// ---------------------------------------------------------------------------------------------
// page helpers

// Counts getUserMedia calls in the page (a fresh count in every document).
const COUNT_GUM = () => {
  window.__gumCalls = 0;
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const orig = md.getUserMedia.bind(md);
    md.getUserMedia = (c) => {
      window.__gumCalls++;
      return orig(c);
    };
  }
};

async function openSignedIn(ctxOpts = DESKTOP, allow = []) {
  const ctx = await br.newContext(ctxOpts);
  await ctx.addInitScript(COUNT_GUM);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, allow);
  await page.goto(`${srv.origin}/?token=${srv.token}`);
  await waitConnected(page);
  return { ctx, page, errs };
}

async function waitConnected(page) {
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected',
    null, { timeout: T(15000) });
}

const gumCalls = (page) => page.evaluate(() => window.__gumCalls);
const answerCount = (page) => page.evaluate(() => Number((document.getElementById('metricCount')?.textContent || '').replace(/[^0-9]/g, '')) || 0);

/** Wait for the answer count to reach n; returns fakevlm's parsed answer shown then. */
async function waitAnswers(page, n, timeoutMs = T(20000)) {
  try {
    await page.waitForFunction((k) => Number((document.getElementById('metricCount')?.textContent || '').replace(/[^0-9]/g, '')) >= k,
      n, { timeout: timeoutMs, polling: 100 });
  } catch (e) {
    throw new Error(`fewer than ${n} answers (count ${await answerCount(page)}, status ` +
      `${await page.evaluate(() => document.getElementById('connectionText').textContent)}): ${e.message}`);
  }
  const text = await page.evaluate(() => document.getElementById('answerText').textContent);
  const parsed = parseFakeAnswer(text);
  assert.ok(parsed, `a fakevlm answer in the box: ${JSON.stringify(text.slice(0, 200))}`);
  return parsed;
}

const snapshotState = (page) => page.evaluate(() => {
  const img = document.getElementById('cameraSnapshot');
  return { hidden: img.hidden, seq: img.dataset.seq ?? null, w: img.naturalWidth, h: img.naturalHeight, complete: img.complete };
});

/** Choose a source in the Watch picker and wait until the session has it. */
async function watch(page, value) {
  await page.locator('#sourceField').waitFor({ state: 'visible', timeout: T(10000) });
  await page.selectOption('#sourceSelect', value);
  const want = value === 'page' ? 'page' : 'camera';
  await page.waitForFunction((w) => document.getElementById('videoWrap').dataset.source === w, want, { timeout: T(10000) });
}

// ---------------------------------------------------------------------------------------------

test('the picker lists the cameras; watching one gives answers about its frames without the webcam; the analysed frame shows and changes; a reload keeps the choice', TO, async () => {
  const { ctx, page, errs } = await openSignedIn();
  try {
    // The picker: both cameras, beside the webcam, and the wall link.
    await page.locator('#sourceField').waitFor({ state: 'visible', timeout: T(10000) });
    const options = await page.evaluate(() => [...document.getElementById('sourceSelect').options].map((o) => [o.value, o.text]));
    assert.deepEqual(options.map((o) => o[0]), ['page', 'camera:lobby', 'camera:yard'], `the picker's choices: ${JSON.stringify(options)}`);
    assert.ok(options[1][1].startsWith('lobby — '), `a camera's option names it and its state: ${options[1][1]}`);
    assert.equal(await page.locator('#wallLink').isVisible(), true, 'the wall is linked');

    const gumBefore = await gumCalls(page);
    await watch(page, 'camera:lobby');
    assert.equal(await page.locator('#cameraSelect').isVisible(), false, 'the webcam picker steps aside while a camera is watched');
    await page.locator('#startBtn').click();
    const first = await waitAnswers(page, 2);
    assert.equal(`${first.width}x${first.height}`, `${LOBBY.width}x${LOBBY.height}`, 'the answer is about a frame of camera lobby');
    assert.equal(await page.evaluate(() => document.getElementById('framesSent').textContent), '0', 'the page sent no frame');

    // The analysed frame, where the webcam picture would be, and it changes with the answers.
    await page.waitForFunction(() => {
      const img = document.getElementById('cameraSnapshot');
      return !img.hidden && img.complete && img.naturalWidth > 0 && img.dataset.seq;
    }, null, { timeout: T(10000) });
    const s1 = await snapshotState(page);
    assert.equal(`${s1.w}x${s1.h}`, `${LOBBY.width}x${LOBBY.height}`, 'the picture is the camera\'s frame');
    await page.waitForFunction((seq) => {
      const img = document.getElementById('cameraSnapshot');
      return img.dataset.seq && img.dataset.seq !== seq && img.complete && img.naturalWidth > 0;
    }, s1.seq, { timeout: T(15000) });
    const s2 = await snapshotState(page);
    assert.ok(Number(s2.seq) > Number(s1.seq), `a later sample is shown (${s1.seq} → ${s2.seq})`);
    assert.equal(await gumCalls(page), gumBefore, 'watching the camera never called getUserMedia');

    // A reload resumes the session with its source: the page comes back watching lobby and never
    // opens (or probes) the webcam, not even for the camera labels.
    await page.reload();
    await waitConnected(page);
    await page.waitForFunction(() => document.getElementById('sourceSelect').value === 'camera:lobby', null, { timeout: T(10000) });
    await page.locator('#startBtn').click();
    const before = await answerCount(page);
    const again = await waitAnswers(page, before + 2);
    assert.equal(`${again.width}x${again.height}`, `${LOBBY.width}x${LOBBY.height}`);
    assert.equal(await gumCalls(page), 0, 'after the reload, getUserMedia was never called');

    // Back to the webcam: the session's source is the page again and the webcam opens.
    await watch(page, 'page');
    await page.waitForFunction(() => window.__gumCalls > 0 && document.getElementById('video').videoWidth > 0, null, { timeout: T(10000) });
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('camera loss: the page says the camera is reconnecting, and clears it when the camera is back', TO, async () => {
  // (the Content-Security-Policy would refuse axe's script tag: this context ignores it)
  const { ctx, page, errs } = await openSignedIn({ ...DESKTOP, bypassCSP: true });
  try {
    await watch(page, 'camera:lobby');
    await page.locator('#startBtn').click();
    await waitAnswers(page, 1);
    assert.equal(await page.locator('#cameraStateNote').isVisible(), false, 'no notice while the camera is live');

    const { port } = cams.lobby;
    const killedAt = Date.now();
    cams.lobby.proc.kill('SIGKILL');
    await cams.lobby.proc.waitExit(T(5000));
    await page.waitForFunction(() => {
      const n = document.getElementById('cameraStateNote');
      return !n.hidden && /^Camera lobby is reconnecting/.test(n.textContent);
    }, null, { timeout: T(25000), polling: 100 });
    const note = await page.evaluate(() => document.getElementById('cameraStateNote').textContent);
    assert.doesNotMatch(note, /\.\./, `one full stop at the end of the reason: ${note}`);
    // Past the page's own stall limit (6 s without progress), the badge still blames the camera,
    // not the backend.
    await sleep(Math.max(0, killedAt + 7000 - Date.now()));
    const badge = await page.evaluate(() => [document.getElementById('connectionStatus').dataset.state,
      document.getElementById('connectionText').textContent]);
    assert.deepEqual(badge, ['camera-down', 'Camera lobby reconnecting…'], 'the status badge says what is wrong');
    assert.deepEqual(await axeProblems(page, 'main page, camera reconnecting'), [], 'serious or critical axe-core violations');

    cams.lobby = await startCam('lobby', { size: `${LOBBY.width}x${LOBBY.height}`, port });
    await page.waitForFunction(() => document.getElementById('cameraStateNote').hidden, null, { timeout: T(40000), polling: 200 });
    assert.notEqual(await page.evaluate(() => document.getElementById('connectionStatus').dataset.state), 'camera-down');
    const n = await answerCount(page);
    const after = await waitAnswers(page, n + 1, T(20000));
    assert.equal(`${after.width}x${after.height}`, `${LOBBY.width}x${LOBBY.height}`, 'answers resume about the camera');
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

// ---------------------------------------------------------------------------------------------
// the wall

const tiles = (page) => page.evaluate(() => [...document.querySelectorAll('.wall-tile')].map((t) => {
  const img = t.querySelector('.wall-img');
  const r = t.getBoundingClientRect();
  return {
    camera: t.dataset.camera, state: t.dataset.state, answers: Number(t.dataset.answers),
    text: t.querySelector('.wall-answer').textContent, img: { w: img.naturalWidth, h: img.naturalHeight, hidden: img.hidden, seq: img.dataset.seq ?? null },
    box: { x: r.x, y: r.y, w: r.width, h: r.height },
  };
}));

async function waitTiles(page, pred, what, timeoutMs = T(25000)) {
  // Returns the very look that satisfied pred: a second look could catch a tile's picture in the
  // middle of its swap to the next sample (0x0).
  let seen = null;
  try {
    await waitUntil(async () => {
      const ts = await tiles(page);
      if (!pred(ts)) return false;
      seen = ts;
      return true;
    }, { timeoutMs, intervalMs: 200, what });
  } catch (e) {
    throw new Error(`${e.message}\ntiles: ${JSON.stringify(await tiles(page))}`);
  }
  return seen;
}

/** Run axe on the page: the serious and critical violations, as lines. */
async function axeProblems(page, what) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.addScriptTag({ path: AXE });
  const res = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
  return res.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${what}: ${v.id} (${v.impact}) ${v.help}: ${v.nodes.slice(0, 6).join(', ')}`);
}

const SIZE_OF = { lobby: LOBBY, yard: YARD };

test('the wall: every camera in a tile with its analysed frame and answers, one prompt for all; keyboard, phone and axe-core', TO, async () => {
  // The Content-Security-Policy would refuse axe's script tag: this context ignores it.
  const ctx = await br.newContext({ ...DESKTOP, bypassCSP: true });
  const page = await ctx.newPage();
  const errs = watchPageErrors(page);
  try {
    await page.goto(`${srv.origin}/?token=${srv.token}`);
    await waitConnected(page);
    await page.evaluate(() => localStorage.setItem('wall.interval_ms', '1000'));
    await page.goto(`${srv.origin}/wall`);
    const got = await waitTiles(page, (ts) => ts.length === 2 && ts.every((t) => t.answers >= 1 && !t.img.hidden && t.img.w > 0),
      'two tiles, each with an answer and its picture');
    for (const t of got) {
      const a = parseFakeAnswer(t.text);
      assert.ok(a, `tile ${t.camera} shows a fakevlm answer: ${JSON.stringify(t.text.slice(0, 160))}`);
      const want = SIZE_OF[t.camera];
      assert.equal(`${a.width}x${a.height}`, `${want.width}x${want.height}`, `tile ${t.camera}'s answer is about its own camera`);
      assert.equal(`${t.img.w}x${t.img.h}`, `${want.width}x${want.height}`, `tile ${t.camera}'s picture is its camera's frame`);
      assert.equal(t.state, 'live');
    }
    const status = await page.evaluate(() => document.getElementById('wallStatusText').textContent);
    assert.match(status, /^2 cameras · 2 live/);

    // A tile is a watcher like any other: the main page watching lobby with the same question
    // (the default prompt and parameters) gets answers the server coalesced with the tile's.
    const coalesced = async () => (await scrapeMetrics(srv)).get('livevlm_answers_coalesced_total') || 0;
    const before = await coalesced();
    const main = await ctx.newPage();
    const merrs = watchPageErrors(main);
    await main.goto(`${srv.origin}/`);
    await waitConnected(main);
    await watch(main, 'camera:lobby');
    await main.locator('#startBtn').click();
    await waitAnswers(main, 2);
    await waitUntil(async () => (await coalesced()) > before, { timeoutMs: T(15000), what: 'an answer shared by the tile and the page' });
    await main.locator('#stopBtn').click();
    merrs.check('main page next to the wall');
    await main.close();

    // One prompt for the whole wall: every tile's next answers are asked the new one.
    const prompt = 'How many balls are in this picture? (wall test)';
    await page.selectOption('#wallPreset', '');
    await page.fill('#wallPrompt', prompt);
    await page.locator('#wallPrompt').press('Control+Enter');
    await waitTiles(page, (ts) => ts.every((t) => parseFakeAnswer(t.text)?.prompt === sha8(prompt)), 'both tiles answering the new prompt');

    // Keyboard: Tab walks the controls, then each tile's answer (a scrollable region).
    const order = [];
    await page.evaluate(() => document.activeElement?.blur());
    for (let i = 0; i < 14; i++) {
      await page.keyboard.press('Tab');
      const id = await page.evaluate(() => {
        const a = document.activeElement;
        return a?.id || (a?.classList.contains('wall-answer') ? `answer:${a.closest('.wall-tile').dataset.camera}` : a?.textContent?.trim().slice(0, 20) || a?.tagName);
      });
      order.push(id);
    }
    for (const want of ['wallPrompt', 'wallInterval', 'wallModel', 'wallPause', 'answer:lobby', 'answer:yard']) {
      assert.ok(order.includes(want), `Tab reaches ${want}: ${JSON.stringify(order)}`);
    }
    assert.ok(order.indexOf('answer:lobby') > order.indexOf('wallPause'), `the tiles come after the controls: ${JSON.stringify(order)}`);

    // Pause all stops every tile; Resume all starts them again (keyboard).
    await page.locator('#wallPause').focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.getElementById('wallPause').getAttribute('aria-pressed') === 'true', null, { timeout: T(5000) });
    // An answer in flight still finishes (stop lets it, protocol.md): wait (bounded) until the counts
    // hold still for 1.5 s, then they must stay so.
    let paused = (await tiles(page)).map((t) => t.answers);
    for (const end = Date.now() + T(10000); Date.now() < end;) {
      await sleep(1500);
      const now = (await tiles(page)).map((t) => t.answers);
      if (now.every((n, i) => n === paused[i])) break;
      paused = now;
    }
    await sleep(2500);
    assert.deepEqual((await tiles(page)).map((t) => t.answers), paused, 'no new answers while paused');
    await page.keyboard.press('Enter');
    await waitTiles(page, (ts) => ts.every((t, i) => t.answers > paused[i]), 'answers again after Resume all');

    const bad = [];
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.evaluate(() => { localStorage.removeItem('theme'); });
      await page.evaluate((s) => { document.documentElement.dataset.theme = s; }, scheme);
      // The colours change with a transition: axe must see where they end.
      await page.evaluate(() => Promise.race([
        Promise.all(document.getAnimations().filter((a) => a.effect?.getComputedTiming().endTime !== Infinity).map((a) => a.finished.catch(() => {}))),
        new Promise((r) => setTimeout(r, 3000)),
      ]));
      bad.push(...await axeProblems(page, `wall (${scheme})`));
    }
    assert.deepEqual(bad, [], 'serious or critical axe-core violations on the wall');
    errs.check('wall, desktop');
  } finally {
    await br.closeContext(ctx);
  }

  // A phone: one column, nothing wider than the screen.
  const phone = await br.newContext(PHONE);
  try {
    const p = await phone.newPage();
    const perrs = watchPageErrors(p);
    await p.goto(`${srv.origin}/?token=${srv.token}`);
    await waitConnected(p);
    await p.goto(`${srv.origin}/wall`);
    const ts = await waitTiles(p, (x) => x.length === 2 && x.every((t) => t.answers >= 1), 'two tiles with answers on the phone');
    const width = await p.evaluate(() => ({ inner: window.innerWidth, scroll: document.documentElement.scrollWidth }));
    assert.ok(width.scroll <= width.inner, `no sideways scrolling on a phone: ${JSON.stringify(width)}`);
    assert.ok(ts[1].box.y >= ts[0].box.y + ts[0].box.h - 1, `the tiles are stacked in one column: ${JSON.stringify(ts.map((t) => t.box))}`);
    assert.ok(ts[0].box.w > width.inner * 0.85, `a tile takes the phone's width: ${JSON.stringify(ts[0].box)}`);
    perrs.check('wall, phone');
  } finally {
    await br.closeContext(phone);
  }
});

test('without cameras the main page looks as it did, and the wall says there are none', TO, async () => {
  const bare = await startLivevlm({ backends: [fake] });
  const ctx = await br.newContext(DESKTOP);
  try {
    const page = await ctx.newPage();
    const errs = watchPageErrors(page);
    await page.goto(`${bare.origin}/?token=${bare.token}`);
    await waitConnected(page);
    await sleep(500);
    const shown = await page.evaluate(() => ({
      field: !document.getElementById('sourceField').hidden, wall: !document.getElementById('wallLink').hidden,
      webcam: document.getElementById('cameraSelect').closest('.field').hidden === false,
      note: !document.getElementById('cameraStateNote').hidden, source: document.getElementById('videoWrap').dataset.source,
    }));
    assert.deepEqual(shown, { field: false, wall: false, webcam: true, note: false, source: 'page' });
    await page.goto(`${bare.origin}/wall`);
    await page.waitForFunction(() => !document.getElementById('wallMessage').hidden, null, { timeout: T(10000) });
    assert.match(await page.evaluate(() => document.getElementById('wallMessage').textContent), /no cameras/);
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await bare.stop();
  }
});
