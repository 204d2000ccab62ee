// webrtc.test.mjs - WebRTC ingest end to end on loopback: Chromium's fake camera (640x480) streams
// to livevlm through web/video.js (POST /offer, non-trickle), livevlm decodes the video with
// webrtcbin, samples it at the session's interval and fakevlm answers about the JPEGs it got (its
// answer names their size and bytes): the frames came over WebRTC, not from the page's JPEG path
// (the session's source is "webrtc", so the page is sent no credits). Then the browser hangs up
// and the session hears video_ended.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, parseFakeAnswer, CHROMIUM_ARGS, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
let fake;
let srv;
let br;

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'], ttftMs: 20, tokenMs: 5, tokens: 4 });
  srv = await startLivevlm({ backends: [fake], gst: true });
  br = await launchBrowser({
    args: [...CHROMIUM_ARGS, '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection'],
  });
});
after(async () => {
  if (br) await br.close();
  await stopAll();
});

test('video sent over WebRTC is sampled at the interval and answered about', TO, async () => {
  const c = await srv.session({ settings: { interval_ms: 500 } });
  await c.start();
  const sid = c.session.session_id;
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  await page.goto(`${srv.origin}/?token=${srv.token}`);
  const result = await page.evaluate(async (sessionId) => {
    const { startVideo } = await import('/video.js');
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    window.__states = [];
    try {
      window.__video = await startVideo({ stream, sessionId, onState: (s) => window.__states.push(s) });
      return { ok: true };
    } catch (e) {
      return { ok: false, code: e.code, message: e.message };
    }
  }, sid);
  assert.ok(result.ok, JSON.stringify(result));
  const upd = await c.next('settings_updated', { timeoutMs: T(5000) });
  assert.equal(upd.settings.source, 'webrtc');
  const creditsBefore = c.seen('credit').length; // asked while the source was still the page
  await page.waitForFunction(() => window.__states.includes('live'), null, { timeout: T(20000) });
  // three answers about pictures decoded from the video: fakevlm saw 640x480 JPEGs
  const seen = [];
  for (let i = 0; i < 3; i++) {
    const a = await c.nextAnswer({ timeoutMs: T(20000) });
    const fa = parseFakeAnswer(a.text);
    assert.ok(fa, a.text);
    assert.equal(`${fa.width}x${fa.height}`, '640x480', a.text);
    assert.ok(fa.imageBytes > 1000, a.text);
    seen.push(fa.imageBytes);
  }
  // the fake camera moves: not one picture sent three times
  assert.ok(new Set(seen).size >= 2, `image sizes ${seen}`);
  // the node client is the only WebSocket of this session and never sent a frame; once the source
  // is webrtc it is asked for none
  assert.equal(c.seen('credit').length, creditsBefore, 'no credit goes to a page whose source is webrtc');
  // the browser hangs up: the session is told, with the reason
  await page.evaluate(() => window.__video.stop());
  const ended = await c.nextError('video_ended', { timeoutMs: T(20000) });
  assert.match(ended.message, /WebRTC video ended/);
  await br.closeContext(ctx);
  c.close();
});
