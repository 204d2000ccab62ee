// ui4.test.mjs - the page's layout and accessibility (issue 10, points 5 and 7, and the axe-core
// audit): a camera box that keeps the picture's shape (no black bars when History or the debug
// payloads open), a Start button inside it and on screen, the answer overlay over the picture, a
// Stop button that covers none of it, a header and frame line that say only true, whole things;
// text contrast of at least 4.5:1 (3:1 for large text) computed from the computed styles with the
// WCAG formula, in light and dark; touch targets of at least 44x44 px on a phone; a Tab order
// that follows what the eye sees; and no serious or critical axe-core violation on the main page,
// the settings dialog and the sign-in page, light and dark. Debian's chromium (playwright-core)
// against the real livevlm over TLS and fakevlm, at 1366x768 and as a 390x844 phone. Every test
// fails on an uncaught page exception or a console error (watchPageErrors).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, sleep, T,
} from '../lib/harness.mjs';

const require = createRequire(import.meta.url);
const TO = { timeout: T(180000) };
const DESKTOP = { viewport: { width: 1366, height: 768 } };
const PHONE = {
  viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36',
};
const LOGIN_401 = {
  text: /status of 401/, url: /\/api\/v1\/config$/,
  why: 'the page asks GET /api/v1/config whether it is signed in; 401 is how it learns to show the form',
};
let br;

before(async () => {
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

// ---------------------------------------------------------------------------------------------
// page helpers

async function waitConnected(page) {
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected',
    null, { timeout: T(15000) });
}

/** Local preferences set before the page's scripts run (layout order, overlay, theme, ...). */
function setPrefs(p) {
  for (const [k, v] of Object.entries(p)) localStorage.setItem(k, v);
}

/** A new context and page signed in through /?token=…; prefs: localStorage before the scripts. */
async function openSignedIn(server, { ctxOpts = DESKTOP, allow = [], prefs, init } = {}) {
  const ctx = await br.newContext(ctxOpts);
  if (prefs) await ctx.addInitScript(setPrefs, prefs);
  if (init) await ctx.addInitScript(init);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, allow);
  await page.goto(`${server.origin}/?token=${server.token}`);
  await waitConnected(page);
  return { ctx, page, errs };
}

async function startCamera(page) {
  await page.waitForFunction(() => [...(document.getElementById('cameraSelect')?.options || [])].some((o) => o.value),
    null, { timeout: T(10000) });
  const value = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
  await page.selectOption('#cameraSelect', value);
  await page.locator('#startBtn').scrollIntoViewIfNeeded();
  await page.locator('#startBtn').click();
}

const count = (page) => page.evaluate(() => Number((document.getElementById('metricCount')?.textContent || '').replace(/[^0-9]/g, '')) || 0);

async function waitAnswers(page, n, timeoutMs = T(20000)) {
  await page.waitForFunction((k) => Number((document.getElementById('metricCount')?.textContent || '')
    .replace(/[^0-9]/g, '')) >= k, n, { timeout: timeoutMs }).catch(async (e) => {
    throw new Error(`fewer than ${n} answers (count ${await count(page)}; errorBar ` +
      `${JSON.stringify(await page.locator('#errorBar').innerText())}): ${e.message}`);
  });
}

async function stopCamera(page) {
  await page.locator('#stopBtn').scrollIntoViewIfNeeded();
  await page.locator('#stopBtn').click();
  await page.locator('#startBtn').waitFor({ state: 'visible', timeout: T(5000) });
}

/** Open the settings dialog, run fn(page) in it, close it. */
async function inSettings(page, fn) {
  await page.locator('#settingsBtn').click();
  await page.locator('#settingsModal').waitFor({ state: 'visible' });
  await fn(page);
  await page.locator('#settingsDone').click();
  await page.locator('#settingsModal').waitFor({ state: 'hidden' });
  // the dialog hands focus back to the Settings button once it has closed: let that happen before
  // anything walks the focus (a slow machine otherwise sees it land in the middle of the walk)
  await page.waitForFunction(() => document.activeElement?.id === 'settingsBtn', null, { timeout: T(3000) })
    .catch(() => {});
  await sleep(100);
}

async function openDetails(page, id, open = true) {
  await page.evaluate(({ i, o }) => { document.getElementById(i).open = o; }, { i: id, o: open });
  await sleep(150); // a layout pass
}

const rnd = (r) => r && Object.fromEntries(['left', 'top', 'width', 'height'].map((k) => [k, Math.round(r[k])]));

/**
 * The camera box, the picture inside it (the <video> draws the camera's frames with object-fit:
 * contain, so the picture is the largest box of the video's shape that fits, centred) and the
 * boxes of the things drawn on or near it, all from getBoundingClientRect.
 */
const videoBoxes = (page) => page.evaluate(() => {
  const box = (e) => {
    if (!e || e.hidden || getComputedStyle(e).display === 'none' || getComputedStyle(e).visibility === 'hidden') return null;
    const r = e.getBoundingClientRect();
    if (!r.width || !r.height) return null;
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
  };
  const v = document.getElementById('video');
  const vr = v.getBoundingClientRect();
  let picture = null;
  if (v.videoWidth && v.videoHeight) {
    const s = Math.min(vr.width / v.videoWidth, vr.height / v.videoHeight);
    const w = v.videoWidth * s;
    const h = v.videoHeight * s;
    const left = vr.left + (vr.width - w) / 2;
    const top = vr.top + (vr.height - h) / 2;
    picture = { left, top, right: left + w, bottom: top + h, width: w, height: h };
  }
  return {
    wrap: box(document.getElementById('videoWrap')),
    video: { left: vr.left, top: vr.top, right: vr.right, bottom: vr.bottom, width: vr.width, height: vr.height },
    picture,
    intrinsic: [v.videoWidth, v.videoHeight],
    start: box(document.getElementById('startBtn')),
    stop: box(document.getElementById('stopBtn')),
    live: box(document.getElementById('videoLive')),
    overlay: box(document.getElementById('videoOverlay')),
    overlayText: document.getElementById('videoOverlayText').textContent,
    viewport: { width: innerWidth, height: innerHeight },
  };
});

/** The black bars: the parts of the camera box the picture leaves empty, in whole px (under 1 px: 0). */
function bars(b) {
  return { vertical: Math.floor(b.video.height - b.picture.height), horizontal: Math.floor(b.video.width - b.picture.width) };
}

const inside = (a, b, tol = 1) => a.left >= b.left - tol && a.top >= b.top - tol && a.right <= b.right + tol && a.bottom <= b.bottom + tol;
const intersects = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;

// ---------------------------------------------------------------------------------------------
// 5. layout

for (const [name, ctxOpts] of [['1366x768', DESKTOP], ['phone 390x844', PHONE]]) {
  test(`5 (${name}): the camera box keeps the picture's shape: no black bars while streaming, with History open, or with Answer first + debug payloads open`, TO, async () => {
    const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 40 });
    const srv = await startLivevlm({ backends: [fake], tls: true });
    const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts });
    try {
      await startCamera(page);
      await waitAnswers(page, 3);
      const run = await videoBoxes(page);
      assert.ok(run.picture, 'the camera shows a picture');
      assert.deepEqual(bars(run), { vertical: 0, horizontal: 0 }, `streaming: the box is the picture (${JSON.stringify(rnd(run.video))}, picture ${JSON.stringify(rnd(run.picture))})`);
      await openDetails(page, 'history');
      const hist = await videoBoxes(page);
      assert.deepEqual(bars(hist), { vertical: 0, horizontal: 0 },
        `History open: no black bars (box ${JSON.stringify(rnd(hist.video))}, picture ${JSON.stringify(rnd(hist.picture))})`);
      assert.ok(Math.abs(hist.video.height - run.video.height) <= 1, `opening History leaves the camera box as it was (${Math.round(run.video.height)} -> ${Math.round(hist.video.height)} px high)`);
      console.log(`# ${name}: camera box ${Math.round(hist.video.width)}x${Math.round(hist.video.height)} with History open, picture ${hist.intrinsic.join('x')}`);

      // Answer first, debug on, both payloads and History open: still the picture's shape.
      await inSettings(page, async (p) => {
        await p.locator('#layoutAnswerFirst').check();
        await p.locator('#debugToggle').setChecked(true, { force: true });
      });
      await waitAnswers(page, (await count(page)) + 1);
      await page.locator('#requestPayload').waitFor({ state: 'visible', timeout: T(5000) });
      await openDetails(page, 'requestPayload');
      await openDetails(page, 'responsePayload');
      const dbg = await videoBoxes(page);
      assert.deepEqual(bars(dbg), { vertical: 0, horizontal: 0 }, `Answer first + debug: no black bars (box ${JSON.stringify(rnd(dbg.video))})`);
      errs.check();
    } finally {
      await br.closeContext(ctx);
      await srv.stop();
      await fake.stop();
    }
  });

  test(`5 (${name}): with Answer first + debug (payloads and History open), the Start button sits in the middle of the camera box, on screen`, TO, async () => {
    const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 40 });
    const srv = await startLivevlm({ backends: [fake], tls: true });
    const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts, prefs: { layoutOrder: 'answer-first' } });
    try {
      await inSettings(page, (p) => p.locator('#debugToggle').setChecked(true, { force: true }));
      await startCamera(page);
      await waitAnswers(page, 2);
      await page.locator('#requestPayload').waitFor({ state: 'visible', timeout: T(5000) });
      await openDetails(page, 'requestPayload');
      await openDetails(page, 'responsePayload');
      await openDetails(page, 'history');
      await stopCamera(page);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.locator('#videoWrap').scrollIntoViewIfNeeded();
      const b = await videoBoxes(page);
      assert.ok(b.start, 'the Start button is shown');
      assert.ok(inside(b.start, b.wrap), `Start is inside the camera box: ${JSON.stringify(rnd(b.start))} in ${JSON.stringify(rnd(b.wrap))}`);
      const below = b.wrap.bottom - b.start.bottom;
      assert.ok(below >= 16, `Start keeps clear of the box's bottom edge (${Math.round(below)} px)`);
      const centre = (b.start.top + b.start.bottom) / 2 - (b.wrap.top + b.wrap.bottom) / 2;
      assert.ok(Math.abs(centre) <= b.wrap.height * 0.2, `Start is about the middle of the box (${Math.round(centre)} px off)`);
      assert.ok(b.start.top >= 0 && b.start.bottom <= b.viewport.height, `Start is on screen: ${JSON.stringify(rnd(b.start))} in a ${b.viewport.height} px window`);
      const ratio = b.wrap.width / b.wrap.height;
      assert.ok(Math.abs(ratio - 16 / 9) < 0.03, `the stopped camera box keeps the 16:9 shape (${ratio.toFixed(3)}), it does not stretch to the answer column`);
      if (name === '1366x768') {
        await page.evaluate(() => window.scrollTo(0, 0));
        const top = await videoBoxes(page);
        assert.ok(top.start.bottom <= top.viewport.height - 16, `at the top of the page Start is in the window, clear of its bottom edge: ${JSON.stringify(rnd(top.start))}`);
      }
      errs.check();
    } finally {
      await br.closeContext(ctx);
      await srv.stop();
      await fake.stop();
    }
  });

  test(`5 (${name}): the answer overlay "At the top" is drawn over the picture (also in full screen), and leaves with the picture on Stop`, TO, async () => {
    const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 24 });
    const srv = await startLivevlm({ backends: [fake], tls: true });
    const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts, prefs: { overlayPosition: 'top' } });
    try {
      await startCamera(page);
      await waitAnswers(page, 2);
      await openDetails(page, 'history');
      const b = await videoBoxes(page);
      assert.ok(b.overlay && /fakevlm/.test(b.overlayText), `the overlay shows the answer: ${JSON.stringify(b.overlayText.slice(0, 60))}`);
      assert.ok(inside(b.overlay, b.picture), `the overlay ${JSON.stringify(rnd(b.overlay))} lies over the picture ${JSON.stringify(rnd(b.picture))}`);
      assert.ok(Math.abs(b.overlay.top - b.picture.top) <= 1, `it starts at the picture's top edge (${Math.round(b.overlay.top)} vs ${Math.round(b.picture.top)})`);

      // Full screen: the box is the whole window, the picture is letterboxed inside it.
      await page.locator('#fullscreenBtn').click();
      await page.waitForFunction(() => document.getElementById('videoWrap').dataset.fullscreen === 'true', null, { timeout: T(5000) });
      await sleep(300);
      const fs = await videoBoxes(page);
      assert.ok(fs.overlay, 'the overlay is shown in full screen');
      assert.ok(inside(fs.overlay, fs.picture), `full screen: the overlay ${JSON.stringify(rnd(fs.overlay))} lies over the picture ${JSON.stringify(rnd(fs.picture))}`);
      await page.locator('#fullscreenBtn').click();
      await page.waitForFunction(() => document.getElementById('videoWrap').dataset.fullscreen === 'false', null, { timeout: T(5000) });

      await stopCamera(page);
      const st = await videoBoxes(page);
      assert.equal(st.overlay, null, `after Stop no answer text stays over the "Camera is off" box and the Start button (${JSON.stringify(st.overlayText.slice(0, 40))})`);
      errs.check();
    } finally {
      await br.closeContext(ctx);
      await srv.stop();
      await fake.stop();
    }
  });

  test(`5 (${name}): the Stop button and the LIVE sign cover no part of the picture`, TO, async () => {
    const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
    const srv = await startLivevlm({ backends: [fake], tls: true });
    const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts });
    try {
      await startCamera(page);
      await waitAnswers(page, 1);
      await page.locator('#videoLive').waitFor({ state: 'visible', timeout: T(5000) });
      const b = await videoBoxes(page);
      assert.ok(b.stop && b.picture, 'Stop and the picture are shown');
      assert.ok(!intersects(b.stop, b.picture), `Stop ${JSON.stringify(rnd(b.stop))} is off the picture ${JSON.stringify(rnd(b.picture))}`);
      assert.ok(!intersects(b.live, b.picture), `LIVE ${JSON.stringify(rnd(b.live))} is off the picture ${JSON.stringify(rnd(b.picture))}`);
      assert.ok(b.stop.width >= 44 && b.stop.height >= (name === '1366x768' ? 32 : 44), `Stop is easy to hit: ${JSON.stringify(rnd(b.stop))}`);
      // The button is where the camera is (its card's head), and a click on it stops.
      const inCard = await page.evaluate(() => !!document.getElementById('stopBtn').closest('#videoCard'));
      assert.ok(inCard, 'Stop belongs to the camera card');
      await stopCamera(page);
      errs.check();
    } finally {
      await br.closeContext(ctx);
      await srv.stop();
      await fake.stop();
    }
  });
}

// Every frame takes 1.5 s to encode, so that Stop can be pressed while one is being encoded.
function slowEncode() {
  window.lvEncoding = 0;
  const wrap = (proto, name) => {
    const orig = proto[name];
    if (!orig) return;
    proto[name] = function slow(...args) {
      window.lvEncoding++;
      const self = this;
      return new Promise((r) => setTimeout(r, 1500)).then(() => orig.apply(self, args)).finally(() => { window.lvEncoding--; });
    };
  };
  if (typeof OffscreenCanvas === 'function') wrap(OffscreenCanvas.prototype, 'convertToBlob');
  const toBlob = HTMLCanvasElement.prototype.toBlob;
  HTMLCanvasElement.prototype.toBlob = function slowToBlob(cb, ...args) {
    window.lvEncoding++;
    setTimeout(() => toBlob.call(this, (b) => { window.lvEncoding--; cb(b); }, ...args), 1500);
  };
}

test('5: Stop pressed while a frame is being encoded: the camera header never says "0×0", no frame is sent after Stop', TO, async () => {
  const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv, { init: slowEncode });
  try {
    await startCamera(page);
    await waitAnswers(page, 1, T(30000));
    // The next credit: a frame is being encoded now.
    await page.waitForFunction(() => window.lvEncoding > 0, null, { timeout: T(15000), polling: 20 });
    const sent = await page.evaluate(() => document.getElementById('framesSent').textContent);
    await page.locator('#stopBtn').click();
    await sleep(2500); // the encode in flight ends meanwhile
    const after = await page.evaluate(() => ({
      card: document.getElementById('videoCard').innerText,
      sent: document.getElementById('framesSent').textContent,
    }));
    assert.doesNotMatch(after.card, /\b0×0\b/, `the camera card says nothing about a 0×0 camera after Stop: ${JSON.stringify(after.card)}`);
    assert.doesNotMatch(after.card, /\d+×\d+ → \d+×\d+/, 'with the camera closed, no camera size is claimed');
    assert.equal(after.sent, sent, 'the frame encoded when Stop was pressed is not sent');
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
    await fake.stop();
  }
});

for (const [name, ctxOpts] of [['1366x768', DESKTOP], ['phone 390x844', PHONE]]) {
  test(`5 (${name}): the frame line under the camera ("Last frame 5.4 KB · encode …", the queue place) is shown whole, never cut`, TO, async () => {
    const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
    const srv = await startLivevlm({ backends: [fake], tls: true });
    const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts });
    try {
      await startCamera(page);
      await waitAnswers(page, 1);
      await page.waitForFunction(() => /encode/.test(document.getElementById('frameInfo').textContent), null, { timeout: T(5000) });
      const cut = () => page.evaluate(() => {
        const foot = document.querySelector('#videoCard .video-meta');
        const fr = foot.getBoundingClientRect();
        const out = [];
        for (const item of foot.querySelectorAll('.meta-item')) {
          if (item.hidden) continue;
          const r = item.getBoundingClientRect();
          const cs = getComputedStyle(item);
          if (cs.display === 'none') out.push(`${item.innerText || item.textContent}: not shown`);
          else if (item.scrollWidth > item.clientWidth + 1 || r.right > fr.right + 0.5 || r.left < fr.left - 0.5) {
            out.push(`${item.textContent.trim()}: cut (${item.scrollWidth} px of text in ${item.clientWidth} px, ${Math.round(r.left)}..${Math.round(r.right)} in ${Math.round(fr.left)}..${Math.round(fr.right)})`);
          }
        }
        return { out, text: foot.innerText };
      });
      const a = await cut();
      assert.deepEqual(a.out, [], `every item of the frame line is whole: ${JSON.stringify(a.text)}`);
      assert.match(a.text, /Last frame\s+[\d.]+ [KM]?B · encode \d+ ms/, 'the line says the size and the encode time');
      // With the queue place shown as well (the server sent `queued`).
      await page.evaluate(() => {
        const q = document.getElementById('queuePos');
        q.textContent = '#12 of 34';
        q.closest('.meta-item').hidden = false;
      });
      const b = await cut();
      assert.deepEqual(b.out, [], `with the queue place too: ${JSON.stringify(b.text)}`);
      if (name === '1366x768') {
        // The narrowest camera columns of the three- and two-column layouts.
        for (const width of [1240, 1000]) {
          await page.setViewportSize({ width, height: 768 });
          await sleep(300);
          const c = await cut();
          assert.deepEqual(c.out, [], `at ${width} px with the queue place: ${JSON.stringify(c.text)}`);
        }
      }
      await stopCamera(page);
      errs.check();
    } finally {
      await br.closeContext(ctx);
      await srv.stop();
      await fake.stop();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// 7. contrast

/**
 * In the page: every piece of visible text (text nodes, form values, placeholders) with its colour
 * and the colour behind it, composited from the computed styles (background colours of the
 * ancestors, colour alpha, opacity groups), and its WCAG contrast ratio. Skips text over the
 * camera picture (the overlay and buttons drawn on the video) and disabled controls (WCAG 1.4.3
 * exempts inactive components). Returns [{who, text, ratio, need, fg, bg}].
 */
function scanContrast({ scope = null, named = {} } = {}) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const cx = canvas.getContext('2d', { willReadFrequently: true });
  const parse = (c) => {
    let m = /^rgba?\(([\d.]+),?\s*([\d.]+),?\s*([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\)$/.exec(c);
    if (m) {
      const a = m[4] === undefined ? 1 : m[4].endsWith('%') ? parseFloat(m[4]) / 100 : Number(m[4]);
      return [m[1] / 255, m[2] / 255, m[3] / 255, a];
    }
    m = /^color\(srgb ([-\d.e]+) ([-\d.e]+) ([-\d.e]+)(?: \/ ([\d.]+))?\)$/.exec(c);
    if (m) return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])];
    cx.clearRect(0, 0, 1, 1);
    cx.fillStyle = 'rgba(0,0,0,0)';
    cx.fillStyle = c;
    cx.fillRect(0, 0, 1, 1);
    const d = cx.getImageData(0, 0, 1, 1).data;
    return [d[0] / 255, d[1] / 255, d[2] / 255, d[3] / 255];
  };
  // Premultiplied "source over".
  const pm = ([r, g, b, a]) => [r * a, g * a, b * a, a];
  const over = (s, d) => [s[0] + d[0] * (1 - s[3]), s[1] + d[1] * (1 - s[3]), s[2] + d[2] * (1 - s[3]), s[3] + d[3] * (1 - s[3])];
  const scale = (c, o) => c.map((v) => v * o);
  // The layers from the root down to el: [{bg, opacity}], with the dialog's backdrop for a modal.
  const layers = (el) => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.unshift(e);
    return chain.map((e) => {
      const cs = getComputedStyle(e);
      return { bg: pm(parse(cs.backgroundColor)), opacity: Number(cs.opacity) };
    });
  };
  const paint = (ls, i, backdrop, text) => {
    if (i === ls.length) return text ? over(text, backdrop) : backdrop;
    const l = ls[i];
    if (l.opacity < 1) {
      const inner = paint(ls, i + 1, over(l.bg, [0, 0, 0, 0]), text);
      return over(scale(inner, l.opacity), backdrop);
    }
    return paint(ls, i + 1, over(l.bg, backdrop), text);
  };
  const lum = (c) => {
    const a = c[3] || 1;
    const ch = [c[0] / a, c[1] / a, c[2] / a].map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
  };
  const ratio = (x, y) => {
    const [l1, l2] = [lum(x), lum(y)].sort((p, q) => q - p);
    return (l1 + 0.05) / (l2 + 0.05);
  };
  const hex = (c) => `#${[0, 1, 2].map((k) => Math.round((c[k] / (c[3] || 1)) * 255).toString(16).padStart(2, '0')).join('')}`;
  const white = [1, 1, 1, 1];
  // Elements in the middle of a finite animation (a new answer popping in) are in a passing state:
  // skipped (the caller waits for animations to end first; a new answer may start one meanwhile).
  const moving = new Set(document.getAnimations()
    .filter((a) => a.playState === 'running' && a.effect?.getComputedTiming().endTime !== Infinity)
    .map((a) => a.effect.target).filter(Boolean));
  const shown = (el) => {
    if (el.closest('[hidden], .video-wrap, details:not([open]) > :not(summary)')) return false;
    for (const m of moving) if (m.contains(el)) return false;
    for (let e = el; e; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.display === 'none' || cs.visibility !== 'visible' || Number(cs.opacity) === 0) return false;
    }
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const out = [];
  const namedOut = {};
  const check = (el, colorCss, text, who) => {
    const cs = getComputedStyle(el);
    const size = parseFloat(cs.fontSize);
    const bold = Number(cs.fontWeight) >= 700;
    const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    const ls = layers(el);
    const fg = paint(ls, 0, white, pm(parse(colorCss)));
    const bg = paint(ls, 0, white, null);
    const r = { who, text: text.trim().slice(0, 50), ratio: Math.round(ratio(fg, bg) * 100) / 100, need, fg: hex(fg), bg: hex(bg) };
    out.push(r);
    for (const [name, sel] of Object.entries(named)) if (!(name in namedOut) && el.closest(sel)) namedOut[name] = r.ratio;
  };
  const root = scope ? document.querySelector(scope) : document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.nodeValue.trim() || seen.has(el) || ['SCRIPT', 'STYLE', 'OPTION', 'NOSCRIPT', 'TITLE'].includes(el.tagName)) continue;
    seen.add(el);
    if (!shown(el) || el.closest('button:disabled, select:disabled, input:disabled')) continue;
    const who = el.id ? `#${el.id}` : `${el.localName}${el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : ''}` +
      (el.parentElement && el.parentElement.id ? ` in #${el.parentElement.id}` : '');
    check(el, getComputedStyle(el).color, n.nodeValue, who);
  }
  for (const el of root.querySelectorAll('input, select, textarea')) {
    if (!shown(el) || el.disabled || ['checkbox', 'radio', 'range', 'hidden'].includes(el.type)) continue;
    const who = `#${el.id || el.name}`;
    if (el.localName === 'select') {
      check(el, getComputedStyle(el).color, el.selectedOptions[0]?.textContent || '', `${who} (value)`);
    } else if (el.value) {
      check(el, getComputedStyle(el).color, el.type === 'password' ? '••••' : el.value, `${who} (value)`);
    } else if (el.placeholder) {
      check(el, getComputedStyle(el, '::placeholder').color, el.placeholder, `${who} (placeholder)`);
    }
  }
  return { all: out, named: namedOut };
}

/** Wait until the page's finite animations and transitions (a pop-in, a fade) are over. */
async function settle(page) {
  await page.evaluate(() => Promise.race([
    Promise.all(document.getAnimations().filter((a) => a.effect?.getComputedTiming().endTime !== Infinity).map((a) => a.finished.catch(() => {}))),
    new Promise((r) => setTimeout(r, 3000)),
  ]));
}

/**
 * The pieces of text under their contrast minimum: [] when none is. named: {name: selector} whose
 * first text's ratio is put in into[name] (for the log).
 */
async function lowContrast(page, scope, what, named = {}, into = {}) {
  await settle(page);
  const res = await page.evaluate(scanContrast, { scope, named });
  assert.ok(res.all.length > 5, `${what}: the scan found text (${res.all.length})`);
  Object.assign(into, res.named);
  return res.all.filter((r) => r.ratio < r.need).map((r) => `${what}: ${r.who} "${r.text}" ${r.ratio}:1 (${r.fg} on ${r.bg}, needs ${r.need})`);
}

// The texts the review measured (issue 10, point 7), by selector.
const NAMED = {
  footer: '.footer', 'answer placeholder': '#answerText .placeholder', 'N/A': '#statGpu', 'no GPU readable': '#statGpuName',
  'session label': '.session-label', 'frame line label': '.video-meta .meta-label',
};

for (const scheme of ['light', 'dark']) {
  test(`7 (${scheme}): every piece of text has a contrast of at least 4.5:1 (3:1 when large): page, kept and dimmed answer, history, settings, sign-in`, TO, async () => {
    const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 12 });
    const srv = await startLivevlm({ backends: [fake], tls: true });
    const ctxOpts = { ...DESKTOP, colorScheme: scheme };
    const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts });
    const bad = [];
    try {
      assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), scheme);
      // Before an answer: the placeholder sentence, N/A tiles, "no GPU readable", the footer.
      await page.waitForFunction(() => document.getElementById('statCpuModel').textContent !== '—', null, { timeout: T(10000) }).catch(() => {});
      const measured = {};
      bad.push(...await lowContrast(page, null, 'idle page', NAMED, measured));
      // Answers, the history open, the metrics help open; then the answer dims (the fade effect).
      await startCamera(page);
      await waitAnswers(page, 2);
      await openDetails(page, 'history');
      await openDetails(page, 'metricsHelp');
      bad.push(...await lowContrast(page, null, 'streaming'));
      await stopCamera(page);
      await page.waitForFunction(() => document.getElementById('answerText').classList.contains('faded'), null, { timeout: T(6000) });
      bad.push(...await lowContrast(page, null, 'dimmed answer', { 'dimmed last answer': '#answerText' }, measured));
      // The settings dialog.
      await page.locator('#settingsBtn').click();
      await page.locator('#settingsModal').waitFor({ state: 'visible' });
      await sleep(300);
      bad.push(...await lowContrast(page, '#settingsModal', 'settings', { 'settings heading': '.modal-section h3' }, measured));
      await page.locator('#settingsDone').click();
      console.log(`# contrast (${scheme}): ${JSON.stringify(measured)}`);
      errs.check();
    } finally {
      await br.closeContext(ctx);
    }
    // The sign-in page (a fresh context: no cookie).
    const ctx2 = await br.newContext(ctxOpts);
    try {
      const page = await ctx2.newPage();
      const errs = watchPageErrors(page, [LOGIN_401, {
        text: /status of 401/, url: /\/api\/v1\/login$/, why: 'a wrong token is refused with 401: the form then shows its error line',
      }]);
      await page.goto(`${srv.origin}/`);
      await page.locator('#loginToken').waitFor({ state: 'visible' });
      bad.push(...await lowContrast(page, null, 'sign-in'));
      await page.fill('#loginToken', 'not a token');
      await page.locator('#loginSubmit').click();
      await page.waitForFunction(() => document.getElementById('loginError').textContent.trim() !== '', null, { timeout: T(5000) });
      bad.push(...await lowContrast(page, null, 'sign-in error'));
      errs.check();
    } finally {
      await br.closeContext(ctx2);
      await srv.stop();
      await fake.stop();
    }
    assert.deepEqual(bad, [], `${bad.length} pieces of text under their contrast minimum`);
  });
}

// ---------------------------------------------------------------------------------------------
// 7. touch targets on a phone

/** Every visible control smaller than 44x44 px (a label is the target of its checkbox or radio). */
function smallTargets(scope) {
  const root = scope ? document.querySelector(scope) : document;
  const sel = 'a[href], button, input:not([type="hidden"]), select, textarea, summary, [tabindex]:not([tabindex="-1"]), label.switch, label.radio';
  const out = [];
  for (const el of root.querySelectorAll(sel)) {
    if (el.closest('[hidden]') || el.classList.contains('skip-link') || el.localName === 'pre') continue;
    let t = el;
    if ((el.type === 'checkbox' || el.type === 'radio') && el.closest('label')) t = el.closest('label');
    const cs = getComputedStyle(t);
    if (cs.display === 'none' || cs.visibility !== 'visible') continue;
    const r = t.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    if (el.closest('details:not([open])') && el.localName !== 'summary') continue;
    if (el.closest('details:not([open])') && el.closest('details:not([open])') !== el.parentElement) continue;
    if (r.width < 44 - 0.5 || r.height < 44 - 0.5) {
      out.push(`${el.id ? `#${el.id}` : el.localName + (el.className ? `.${String(el.className).trim().split(/\s+/).join('.')}` : '')} ` +
        `"${(el.getAttribute('aria-label') || el.textContent || '').trim().slice(0, 30)}" ${Math.round(r.width)}x${Math.round(r.height)}`);
    }
  }
  return out;
}

test('7 (phone 390x844): every control is at least 44x44 px: top bar, session chip, camera, answer (markdown, copy), history, controls, settings, sign-in', TO, async () => {
  const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts: PHONE });
  const bad = [];
  try {
    assert.equal(await page.evaluate(() => matchMedia('(pointer: coarse)').matches), true, 'the page sees a touch screen');
    await page.locator('#copySessionBtn').waitFor({ state: 'visible', timeout: T(5000) });
    const named = await page.evaluate(() => Object.fromEntries(['copySessionBtn', 'markdownToggle', 'copyBtn', 'themeToggle', 'settingsBtn'].map((id) => {
      const r = document.getElementById(id).getBoundingClientRect();
      return [id, `${Math.round(r.width)}x${Math.round(r.height)}`];
    })));
    console.log(`# phone targets: ${JSON.stringify(named)}`);
    await page.evaluate(() => { for (const d of document.querySelectorAll('#controls details')) d.open = true; });
    bad.push(...(await page.evaluate(smallTargets, null)).map((s) => `idle: ${s}`));
    await startCamera(page);
    await waitAnswers(page, 2);
    await openDetails(page, 'history');
    await openDetails(page, 'metricsHelp');
    await sleep(200);
    bad.push(...(await page.evaluate(smallTargets, null)).map((s) => `streaming: ${s}`));
    await stopCamera(page);
    await page.locator('#settingsBtn').click();
    await page.locator('#settingsModal').waitFor({ state: 'visible' });
    await sleep(400); // the dialog's entrance (a small scale) is over
    bad.push(...(await page.evaluate(smallTargets, '#settingsModal')).map((s) => `settings: ${s}`));
    await page.locator('#settingsDone').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
  }
  const ctx2 = await br.newContext(PHONE);
  try {
    const page = await ctx2.newPage();
    const errs = watchPageErrors(page, [LOGIN_401]);
    await page.goto(`${srv.origin}/`);
    await page.locator('#loginToken').waitFor({ state: 'visible' });
    bad.push(...(await page.evaluate(smallTargets, '#loginView')).map((s) => `sign-in: ${s}`));
    errs.check();
  } finally {
    await br.closeContext(ctx2);
    await srv.stop();
    await fake.stop();
  }
  assert.deepEqual([...new Set(bad)], [], 'controls under 44x44 px on the phone');
});

// ---------------------------------------------------------------------------------------------
// 7. Tab order follows what the eye sees

/**
 * Press Tab from the top of the page until focus leaves the app; the regions visited, in order
 * (each once when the order is right). Regions outside this list (cards added later, such as
 * Compare) are left out of the sequence.
 */
async function tabRegions(page, maxPresses = 120) {
  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.evaluate(() => {
    // Start before the first element, as after a fresh load.
    const a = document.createElement('span');
    a.tabIndex = -1;
    a.id = 'lvTabStart';
    document.body.prepend(a);
    a.focus();
    window.lvTabSeen = new WeakSet();
  });
  // Focus handed back late (a dialog closing on a loaded machine) would start the walk in the
  // middle: the start must still hold focus a moment later, else it is taken back (bounded).
  for (let i = 0; i < 20; i++) {
    await sleep(50);
    const held = await page.evaluate(() => {
      const a = document.getElementById('lvTabStart');
      if (document.activeElement === a) return true;
      a.focus();
      return false;
    });
    if (held) break;
  }
  const seq = [];
  for (let i = 0; i < maxPresses; i++) {
    await page.keyboard.press('Tab');
    const r = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body || window.lvTabSeen.has(e)) return null; // out of the page, or round again
      window.lvTabSeen.add(e);
      const regions = [['.skip-link', 'skip'], ['.topbar', 'topbar'], ['#errorBar', 'errors'], ['#controls', 'sidebar'],
        ['#history', 'history'], ['#answerCard', 'answer'], ['#videoCard', 'camera'], ['#statsCard', 'stats'], ['.footer', 'footer']];
      for (const [s, name] of regions) if (e.closest(s)) return name;
      return 'other';
    });
    if (r === null) break;
    if (r !== 'other' && seq[seq.length - 1] !== r) seq.push(r);
  }
  await page.evaluate(() => document.getElementById('lvTabStart')?.remove());
  return seq;
}

test('7: the Tab order follows the visual order: at 1366x768 the controls column before the camera, the answer and its history (camera first and answer first); on a phone top to bottom', TO, async () => {
  const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts: DESKTOP });
  try {
    await startCamera(page);
    await waitAnswers(page, 1);
    await stopCamera(page);
    const desk = await tabRegions(page);
    console.log(`# Tab order at 1366x768: ${desk.join(' → ')}`);
    assert.deepEqual(desk, ['skip', 'topbar', 'sidebar', 'camera', 'answer', 'history'], 'camera first: left column, then the camera, then the answer');
    await inSettings(page, (p) => p.locator('#layoutAnswerFirst').check());
    const af = await tabRegions(page);
    console.log(`# Tab order at 1366x768, answer first: ${af.join(' → ')}`);
    assert.deepEqual(af, ['skip', 'topbar', 'sidebar', 'answer', 'history', 'camera'], 'answer first: left column, the answer, then the camera');
    // The phone: one column, the camera and the answer above the controls.
    await inSettings(page, (p) => p.locator('#layoutCameraFirst').check());
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(300);
    const order = await page.evaluate(() => ['videoCard', 'answerCard', 'controls', 'statsCard']
      .map((id) => [id, Math.round(document.getElementById(id).getBoundingClientRect().top + scrollY)])
      .sort((x, y) => x[1] - y[1]).map((x) => x[0]));
    const phone = await tabRegions(page);
    console.log(`# Tab order at 390 px: ${phone.join(' → ')} (seen top to bottom: ${order.join(', ')})`);
    assert.deepEqual(order, ['videoCard', 'answerCard', 'controls', 'statsCard']);
    assert.deepEqual(phone, ['skip', 'topbar', 'camera', 'answer', 'history', 'sidebar'], 'the phone: top to bottom');
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
    await fake.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// axe-core, run inside the page

const AXE = require.resolve('axe-core/axe.min.js');

/** Run axe on the page (or a part): the serious and critical violations, as lines. */
async function axeProblems(page, what, context) {
  await settle(page);
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.addScriptTag({ path: AXE });
  const res = await page.evaluate(async (ctxSel) => {
    const r = await window.axe.run(ctxSel ? document.querySelector(ctxSel) : document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ').slice(0, 200)}`) }));
  }, context || null);
  const minor = res.filter((v) => v.impact !== 'serious' && v.impact !== 'critical');
  if (minor.length) console.log(`# axe ${what}: ${minor.map((v) => `${v.id} (${v.impact}, ${v.nodes.length})`).join(', ')}`);
  return res.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${what}: ${v.id} (${v.impact}) ${v.help}\n    ${v.nodes.slice(0, 6).join('\n    ')}`);
}

for (const scheme of ['light', 'dark']) {
  test(`axe-core (${scheme}): no serious or critical violation on the main page (idle and with an answer), in the settings dialog and on the sign-in page`, TO, async () => {
    const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 12 });
    const srv = await startLivevlm({ backends: [fake], tls: true });
    // The page's Content-Security-Policy would refuse axe's script tag: this context ignores it.
    const ctxOpts = { ...DESKTOP, colorScheme: scheme, bypassCSP: true };
    const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts });
    const bad = [];
    try {
      bad.push(...await axeProblems(page, 'main page, idle'));
      await startCamera(page);
      await waitAnswers(page, 2);
      await openDetails(page, 'history');
      await stopCamera(page);
      bad.push(...await axeProblems(page, 'main page, with answers'));
      await page.locator('#settingsBtn').click();
      await page.locator('#settingsModal').waitFor({ state: 'visible' });
      await sleep(300);
      bad.push(...await axeProblems(page, 'settings dialog', '#settingsModal'));
      await page.locator('#settingsDone').click();
      errs.check();
    } finally {
      await br.closeContext(ctx);
    }
    const ctx2 = await br.newContext(ctxOpts);
    try {
      const page = await ctx2.newPage();
      const errs = watchPageErrors(page, [LOGIN_401]);
      await page.goto(`${srv.origin}/`);
      await page.locator('#loginToken').waitFor({ state: 'visible' });
      bad.push(...await axeProblems(page, 'sign-in page'));
      errs.check();
    } finally {
      await br.closeContext(ctx2);
      await srv.stop();
      await fake.stop();
    }
    assert.deepEqual(bad, [], 'serious or critical axe-core violations');
  });
}
