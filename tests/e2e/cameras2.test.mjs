// cameras2.test.mjs - Compare and History while the page watches an IP camera (issue: camera
// sources; web/compare.js, web/history.js). Debian's chromium (playwright-core) against the real
// livevlm with a real RTSP camera (tests/tools/rtspcam through the harness's startRtspcam) and
// fakevlm, whose answers name the model, the prompt's hash and the picture they were about
// (jpeg=WxH): the camera's size (320x176) is one no webcam has, so an answer or a thumbnail of
// that shape comes from the camera. Every test fails on an uncaught page exception or a console
// error (watchPageErrors); every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, startRtspcam, stopAll, launchBrowser, watchPageErrors, parseFakeAnswer, scrapeMetrics,
  waitUntil, sleep, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
const DESKTOP = { viewport: { width: 1366, height: 768 } };
const CAM = { id: 'lobby', width: 320, height: 176 };
const THUMB_WIDTH = 160; // web/history.js LIMITS.thumbWidth
const MODEL_A = 'vlm-a';
const MODEL_B = 'vlm-b';

let br;
let srv;
let cam;

before(async () => {
  const fake = await startFakevlm({ models: [MODEL_A, MODEL_B], ttftMs: 30, tokenMs: 5, tokens: 8 });
  cam = await startRtspcam({ name: 'rtspcam-lobby', size: `${CAM.width}x${CAM.height}`, fps: 15 });
  // (startLivevlm adds fast_unwind_on_malloc=0 to ASAN_OPTIONS when there is a --camera: GStreamer
  // under the sanitizer build)
  srv = await startLivevlm({ backends: [fake], args: ['--camera', `${CAM.id}=${cam.url}`] });
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

// ---------------------------------------------------------------------------------------------
// page helpers (as in cameras.test.mjs and compare.test.mjs)

async function openSignedIn() {
  const ctx = await br.newContext(DESKTOP);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page);
  await page.goto(`${srv.origin}/?token=${srv.token}`);
  await waitConnected(page);
  return { ctx, page, errs };
}

async function waitConnected(page) {
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected',
    null, { timeout: T(15000) });
}

/** Choose a source in the Watch picker and wait until the session has it. */
async function watch(page, value) {
  await page.locator('#sourceField').waitFor({ state: 'visible', timeout: T(10000) });
  await page.selectOption('#sourceSelect', value);
  const want = value === 'page' ? 'page' : 'camera';
  await page.waitForFunction((w) => document.getElementById('videoWrap').dataset.source === w, want, { timeout: T(10000) });
}

/** The camera's line of GET /api/v1/cameras, asked by the signed-in page. */
const cameraInfo = (page, id) => page.evaluate(async (camId) => {
  const res = await fetch('/api/v1/cameras', { credentials: 'same-origin', cache: 'no-store' });
  return (await res.json()).cameras.find((c) => c.id === camId) || null;
}, id);

/** What the Compare card shows: the pair on screen and both panes' answers. */
const cmp = (page) => page.evaluate(() => {
  const frame = document.getElementById('compareFrame');
  const pane = (s) => ({
    text: document.querySelector(`#compareCard .compare-pane[data-side="${s}"] .pane-text`).textContent,
    model: document.getElementById(`compareModel${s.toUpperCase()}Name`).textContent,
  });
  const status = document.getElementById('compareStatus');
  return {
    pair: frame.dataset.pair ? Number(frame.dataset.pair) : null, camera: frame.dataset.camera ?? null,
    bytes: frame.dataset.bytes ? Number(frame.dataset.bytes) : null, frameText: frame.textContent,
    status: status.hidden ? '' : status.textContent, count: document.getElementById('compareCount').textContent,
    a: pane('a'), b: pane('b'),
  };
});

/** Watch the card until `want` different pairs that pass `keep` were on screen with both answers. */
async function collectPairs(page, want, keep, timeoutMs = T(30000)) {
  const seen = new Map();
  const deadline = Date.now() + timeoutMs;
  while (seen.size < want && Date.now() < deadline) {
    const s = await cmp(page);
    if (s.pair !== null && !seen.has(s.pair) && keep(s)) {
      const a = parseFakeAnswer(s.a.text);
      const b = parseFakeAnswer(s.b.text);
      if (a && b) seen.set(s.pair, { pair: s.pair, a, b, shown: s });
    }
    await sleep(150);
  }
  assert.ok(seen.size >= want, `${want} compared frames shown in ${timeoutMs} ms (saw ${seen.size}: ` +
    `${JSON.stringify([...seen.keys()])}; card ${JSON.stringify(await cmp(page))})`);
  return [...seen.values()];
}

/** The History list as shown, newest first. */
const entries = (page) => page.evaluate(() => [...document.querySelectorAll('#historyList > li')].map((li) => {
  const img = li.querySelector('.hist-thumb img');
  return {
    id: Number(li.dataset.answerId), source: li.dataset.source, thumb: li.dataset.thumb === 'true',
    jpeg: (/jpeg=(\d+)x(\d+)/.exec(li.querySelector('.hist-text').textContent) || []).slice(1).map(Number),
    img: img ? { w: img.naturalWidth, h: img.naturalHeight, done: img.complete, src: img.getAttribute('src') } : null,
    caption: li.querySelector('.hist-figure figcaption')?.textContent || '', noPicture: li.querySelector('.hist-thumb').title,
  };
}));

/** Wait until n entries of this page have a loaded thumbnail. */
async function waitThumbs(page, n, what) {
  try {
    await page.waitForFunction((k) => [...document.querySelectorAll('#historyList > li[data-source="page"]')]
      .filter((li) => li.dataset.thumb === 'true' && li.querySelector('.hist-thumb img')?.complete
        && li.querySelector('.hist-thumb img').naturalWidth > 0).length >= k, n, { timeout: T(25000), polling: 150 });
  } catch (e) {
    throw new Error(`${what}: ${e.message}\nentries: ${JSON.stringify(await entries(page))}`);
  }
}

// ---------------------------------------------------------------------------------------------

test('Compare while the page watches a camera: session B watches the same camera, both panes answer about its frames, and B follows A back to the webcam', TO, async () => {
  const { ctx, page, errs } = await openSignedIn();
  try {
    await page.selectOption('#modelSelect', MODEL_A);
    await page.locator('#compareToggle').check();
    await waitUntil(async () => (await scrapeMetrics(srv)).get('livevlm_sockets') === 2,
      { timeoutMs: T(10000), what: 'the second session\'s socket' });
    assert.equal(await page.locator('#compareModel').inputValue(), MODEL_B, 'model B defaults to the other model');

    // Compare was on before the camera was chosen: B must follow A's source change.
    await watch(page, `camera:${CAM.id}`);
    await page.locator('#startBtn').click();
    const pairs = await collectPairs(page, 3, (s) => s.camera === CAM.id);
    for (const p of pairs) {
      const where = `pair #${p.pair}: A ${JSON.stringify(p.shown.a.text.slice(0, 90))} / B ${JSON.stringify(p.shown.b.text.slice(0, 90))}`;
      assert.equal(p.a.model, MODEL_A, `A's answer comes from model A (${where})`);
      assert.equal(p.b.model, MODEL_B, `B's answer comes from model B (${where})`);
      assert.equal(`${p.a.width}x${p.a.height}`, `${CAM.width}x${CAM.height}`, `A answered about a frame of camera ${CAM.id} (${where})`);
      assert.equal(`${p.b.width}x${p.b.height}`, `${CAM.width}x${CAM.height}`, `B answered about a frame of camera ${CAM.id} (${where})`);
      assert.equal(p.b.imageBytes, p.a.imageBytes, `both saw the same sample, byte for byte the same size (${where})`);
      assert.match(p.shown.frameText, new RegExp(`^Camera ${CAM.id}, frame #${p.pair} `), where);
    }
    const s = await cmp(page);
    assert.match(s.status, new RegExp(`Both sessions watch camera ${CAM.id}`), `the card says so: ${s.status}`);
    assert.ok(Number(s.count) >= 1, `pairs where both models answered are counted (${s.count})`);
    assert.equal(await page.evaluate(() => document.getElementById('framesSent').textContent), '0', 'the page sent no frame');
    const info = await cameraInfo(page, CAM.id);
    assert.equal(info.watchers, 2, `both sessions watch the camera: ${JSON.stringify(info)}`);
    console.log(`# camera pairs: ${pairs.map((p) => `#${p.pair} ${p.a.imageBytes} B ${p.a.width}x${p.a.height}`).join(', ')}`);

    // Back to the webcam: B's source follows (nobody watches the camera any more) and B gets the
    // frames the page sends again.
    await watch(page, 'page');
    await waitUntil(async () => (await cameraInfo(page, CAM.id)).watchers === 0,
      { timeoutMs: T(10000), intervalMs: 200, what: 'no session watching the camera after A went back to the webcam' });
    const webcam = await collectPairs(page, 2, (s) => s.camera === null && s.bytes !== null);
    for (const p of webcam) {
      assert.equal(p.b.imageBytes, p.a.imageBytes, `both answered about the frame the page sent (pair #${p.pair})`);
      assert.equal(p.a.imageBytes, p.shown.bytes, `that frame is the one the card names (pair #${p.pair})`);
      assert.notEqual(`${p.a.width}x${p.a.height}`, `${CAM.width}x${CAM.height}`, 'the webcam\'s frame, not the camera\'s');
    }
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});

test('History while the page watches a camera: each answer keeps a thumbnail of the camera frame it was about, also after a reload', TO, async () => {
  const { ctx, page, errs } = await openSignedIn();
  try {
    await watch(page, `camera:${CAM.id}`);
    await page.locator('#startBtn').click();
    await page.evaluate(() => { document.getElementById('history').open = true; });
    await waitThumbs(page, 3, 'three camera answers with their thumbnails');
    await page.locator('#stopBtn').click();
    // (an answer still being written when Stop was pressed may land after it: let it settle)
    await sleep(T(1500));
    const tw = Math.min(THUMB_WIDTH, CAM.width);
    const th = Math.round((CAM.height * tw) / CAM.width);
    await waitThumbs(page, (await entries(page)).filter((e) => e.source === 'page').length, 'every camera answer has its thumbnail');
    const list = (await entries(page)).filter((e) => e.source === 'page');
    assert.ok(list.length >= 3, `at least three answers: ${JSON.stringify(list)}`);
    for (const e of list) {
      assert.deepEqual(e.jpeg, [CAM.width, CAM.height], `answer ${e.id} is about a frame of camera ${CAM.id}`);
      assert.ok(e.thumb && e.img && e.img.done && /^blob:/.test(e.img.src), `answer ${e.id} has a picture: ${JSON.stringify(e)}`);
      assert.deepEqual([e.img.w, e.img.h], [tw, th], `answer ${e.id}: a ${tw} px thumbnail of the ${CAM.width}x${CAM.height} camera frame`);
      assert.equal(e.caption, `The frame of camera ${CAM.id} (thumbnail)`);
    }
    console.log(`# ${list.length} camera answers, each with a ${tw}x${th} thumbnail`);

    // Kept in this browser: a reload of the same session shows the same pictures.
    await page.reload();
    await waitConnected(page);
    await page.evaluate(() => { document.getElementById('history').open = true; });
    await waitThumbs(page, list.length, 'the thumbnails after a reload');
    const again = (await entries(page)).filter((e) => list.some((x) => x.id === e.id));
    assert.equal(again.length, list.length, 'the same answers after the reload');
    for (const e of again) {
      assert.deepEqual([e.img.w, e.img.h], [tw, th], `answer ${e.id} keeps its thumbnail: ${JSON.stringify(e)}`);
      assert.equal(e.caption, `The frame of camera ${CAM.id} (thumbnail)`);
    }
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
});
