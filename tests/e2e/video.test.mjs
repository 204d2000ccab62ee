// video.test.mjs - the page's "Send video" option (Settings → Webcam) in Chromium with its fake
// camera, on loopback: Start opens the webcam and web/video.js streams it to livevlm (POST /offer),
// which samples the video itself: fakevlm answers about the pictures it got while the page sends
// no binary frame at all (counted by a hook on WebSocket.send), and the sender's frame rate is
// capped to what the analysis needs (two pictures per interval). Stop closes the peer connection
// and the server's stream at once. And the fallbacks: a server that refuses the offer
// (--max-webrtc 0), and a video whose picture stops (video_ended from the server's 10 s watchdog),
// get frames from the page instead, and the page says so once, with the reason.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, parseFakeAnswer, waitUntil,
  CHROMIUM_ARGS, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(120000) };
let fake;
let srv; // takes video
let off; // --max-webrtc 0: refuses every offer
let br;

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'], ttftMs: 20, tokenMs: 5, tokens: 4 });
  srv = await startLivevlm({ backends: [fake], gst: true });
  off = await startLivevlm({ backends: [fake], args: ['--max-webrtc', '0'] });
  br = await launchBrowser({ args: [...CHROMIUM_ARGS, '--allow-loopback-in-peer-connection'] });
});
after(async () => {
  if (br) await br.close();
  await stopAll();
});

// In every document: binary WebSocket sends are counted, peer connections are kept for the test.
const HOOKS = () => {
  window.__binarySent = 0;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function countingSend(data) {
    if (typeof data !== 'string') window.__binarySent++;
    return send.call(this, data);
  };
  window.__pcs = [];
  const Orig = window.RTCPeerConnection;
  if (Orig) {
    window.RTCPeerConnection = function KeptPeerConnection(...args) {
      const pc = new Orig(...args);
      window.__pcs.push(pc);
      return pc;
    };
    window.RTCPeerConnection.prototype = Orig.prototype;
  }
};

async function openPage(server, allow = []) {
  const ctx = await br.newContext();
  await ctx.addInitScript(HOOKS);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, allow);
  await page.goto(`${server.origin}/?token=${server.token}`);
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected',
    null, { timeout: T(15000) });
  return { ctx, page, errs };
}

/** Settings → Webcam: pick "Send video" or "Send frames" with the keyboard-reachable radio. */
async function chooseSendMode(page, mode) {
  await page.locator('#settingsBtn').click();
  await page.locator(mode === 'video' ? '#sendVideo' : '#sendFrames').check();
  await page.locator('#settingsDone').click();
}

const answerCount = (page) => page.evaluate(() => Number((document.getElementById('metricCount')?.textContent || '').replace(/[^0-9]/g, '')) || 0);

async function waitAnswers(page, n, timeoutMs = T(30000)) {
  try {
    await page.waitForFunction((k) => Number((document.getElementById('metricCount')?.textContent || '').replace(/[^0-9]/g, '')) >= k,
      n, { timeout: timeoutMs, polling: 100 });
  } catch (e) {
    throw new Error(`fewer than ${n} answers (count ${await answerCount(page)}): ${e.message}`);
  }
  const text = await page.evaluate(() => document.getElementById('answerText').textContent);
  const parsed = parseFakeAnswer(text);
  assert.ok(parsed, `a fakevlm answer in the box: ${JSON.stringify(text.slice(0, 200))}`);
  return parsed;
}

const binarySent = (page) => page.evaluate(() => window.__binarySent);

test('Send video: answers about the streamed video, no frame sent by the page, frame rate capped; Stop closes the stream', TO, async () => {
  const { ctx, page, errs } = await openPage(srv);
  await chooseSendMode(page, 'video');
  assert.equal(await page.evaluate(() => localStorage.getItem('sendMode')), 'video', 'the choice is kept in this browser');
  const sid = await page.evaluate(() => document.getElementById('sessionId').dataset.sessionId);
  await page.locator('#startBtn').click();
  await page.waitForFunction(() => window.__pcs.some((pc) => pc.connectionState === 'connected'), null, { timeout: T(20000) });
  const first = await waitAnswers(page, 3);
  // pictures from the video the server decoded (the fake camera's size), none sent by the page
  assert.ok(first.width >= 160 && first.height >= 120 && first.imageBytes > 1000, JSON.stringify(first));
  assert.equal(await binarySent(page), 0, 'no binary frame went over the WebSocket');
  assert.equal(await page.evaluate(() => document.getElementById('framesSent').textContent), '0');
  assert.match(await page.evaluate(() => document.getElementById('frameInfo').textContent), /^video · up to 2 fps$/);
  // the sender's cap: two pictures per interval (1 s by default), and the encoder keeps to it
  const rate = await page.evaluate(async () => {
    const pc = window.__pcs.find((p) => p.connectionState === 'connected');
    const cap = pc.getSenders()[0].getParameters().encodings[0].maxFramerate;
    const frames = async () => {
      let n = 0;
      (await pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video') n = r.framesEncoded; });
      return n;
    };
    const a = await frames();
    await new Promise((r) => setTimeout(r, 4000));
    return { cap, fps: ((await frames()) - a) / 4 };
  });
  assert.equal(rate.cap, 2, JSON.stringify(rate));
  assert.ok(rate.fps > 0 && rate.fps <= 3, `frames encoded per second ${rate.fps} (cap 2)`);
  // a shorter interval raises the cap (0.5 s → 4 fps)
  await page.locator('#interval').fill('0.5');
  await page.locator('#interval').dispatchEvent('change');
  await page.waitForFunction(() => window.__pcs.some((p) => p.connectionState === 'connected' &&
    p.getSenders()[0].getParameters().encodings[0].maxFramerate === 4), null, { timeout: T(10000) });
  await waitAnswers(page, (await answerCount(page)) + 2);
  assert.equal(await binarySent(page), 0, 'still no binary frame');

  // Stop: the peer connection closes, the server's stream ends at once (not by its watchdog) and
  // the session's source is the page again
  await page.locator('#stopBtn').click();
  await page.waitForFunction(() => window.__pcs.every((p) => p.connectionState === 'closed'), null, { timeout: T(5000) });
  const ended = new RegExp(`webrtc ${sid.slice(0, 8)}: ended \\(the session's source changed\\)`);
  await waitUntil(() => ended.test(srv.logTail(600)), { timeoutMs: T(5000), what: 'the server closed the stream' });
  assert.equal(await page.locator('#errorBar [data-key="video"]').count(), 0, 'no fallback notice: nothing failed');

  // the choice survives a reload; a second Start streams again
  await page.reload();
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected', null, { timeout: T(15000) });
  assert.equal(await page.evaluate(() => document.getElementById('sendVideo').checked), true);
  await page.locator('#startBtn').click();
  await page.waitForFunction(() => window.__pcs.some((pc) => pc.connectionState === 'connected'), null, { timeout: T(20000) });
  await waitAnswers(page, (await answerCount(page)) + 1);
  assert.equal(await binarySent(page), 0);
  await page.locator('#stopBtn').click();
  errs.check('video page');
  await br.closeContext(ctx);
});

test('Send video on a server that refuses it: the page says so once and sends frames instead', TO, async () => {
  const { ctx, page, errs } = await openPage(off, [{ text: /status of 503/, url: /\/offer$/,
    why: 'the browser logs the refused offer (503 webrtc_off) itself' }]);
  await chooseSendMode(page, 'video');
  await page.locator('#startBtn').click();
  const notice = page.locator('#errorBar [data-key="video"]');
  await notice.waitFor({ state: 'visible', timeout: T(15000) });
  const text = await notice.textContent();
  assert.match(text, /Sending frames instead of video/);
  assert.match(text, /turned off on this server/, 'the reason is the server\'s');
  const a = await waitAnswers(page, 2);
  assert.ok(a.imageBytes > 1000, JSON.stringify(a));
  assert.ok(await binarySent(page) >= 2, 'answers came from the page\'s frames');
  assert.ok(Number(await page.evaluate(() => document.getElementById('framesSent').textContent)) >= 2);
  assert.equal(await page.evaluate(() => document.querySelector('#errorBar [data-key="video"]').dataset.repeat), '1',
    'said once');
  assert.equal(await page.evaluate(() => window.__pcs.every((p) => p.connectionState === 'closed')), true);
  await page.locator('#stopBtn').click();
  errs.check('fallback page');
  await br.closeContext(ctx);
});

test('Send video whose picture stops (video_ended after 10 s): the page falls back to frames, saying why', TO, async () => {
  const { ctx, page, errs } = await openPage(srv);
  await chooseSendMode(page, 'video');
  await page.locator('#startBtn').click();
  await page.waitForFunction(() => window.__pcs.some((pc) => pc.connectionState === 'connected'), null, { timeout: T(20000) });
  await waitAnswers(page, 1);
  assert.equal(await binarySent(page), 0);
  // the sender lets go of the camera's track (the camera itself stays on): no picture reaches the
  // server any more
  await page.evaluate(() => window.__pcs.find((pc) => pc.connectionState === 'connected').getSenders()[0].replaceTrack(null));
  const notice = page.locator('#errorBar [data-key="video"]');
  await notice.waitFor({ state: 'visible', timeout: T(30000) });
  assert.match(await notice.textContent(), /Sending frames instead of video.*no video arrived for 10 s/s);
  const before = await answerCount(page);
  await waitAnswers(page, before + 2);
  assert.ok(await binarySent(page) >= 2, 'the answers now come from the page\'s frames');
  await page.locator('#stopBtn').click();
  errs.check('ended page');
  await br.closeContext(ctx);
});
