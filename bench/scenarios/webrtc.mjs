// bench/scenarios/webrtc.mjs - livevlm's CPU per session for the two ways a page's webcam reaches
// it: "Send video" (WebRTC, POST /offer: the server decodes the video and samples a frame per
// interval) and "Send frames" (the page encodes one JPEG per credit). Chromium's fake camera
// (Debian's /usr/bin/chromium through playwright-core, as the e2e tests drive it) at 1280x720 and
// 640x480, interval 1 s, one session at a time: video uncapped (the camera's own rate) and capped
// at 2 frames/s (what the page sets: two pictures per interval), and the page's frames. CPU is
// livevlm's alone (/proc/PID/stat, user + system) over WEBRTC_SECS (30) after WEBRTC_WARM (6) s.
// Writes $BENCH_OUT/webrtc.md and webrtc.summary.
import fs from 'node:fs';
import path from 'node:path';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, processCpuMs, CHROMIUM_ARGS, sleep,
} from '../../tests/lib/harness.mjs';

const SECS = Number(process.env.WEBRTC_SECS || 30);
const WARM = Number(process.env.WEBRTC_WARM || 6);
const OUT = process.env.BENCH_OUT || 'bench/out';
const SIZES = [[1280, 720], [640, 480]];

const fake = await startFakevlm({ models: ['fake-vlm-1'], ttftMs: 20, tokenMs: 5, tokens: 4 });
const br = await launchBrowser({ args: [...CHROMIUM_ARGS, '--allow-loopback-in-peer-connection'] });
const rows = [];

/** livevlm's CPU in % of a core over SECS after WARM, and the answers the session got meanwhile. */
async function measure(srv, answers) {
  await sleep(WARM * 1000);
  const pid = srv.proc.child.pid;
  const c0 = processCpuMs(pid);
  const t0 = Date.now();
  const a0 = await answers();
  await sleep(SECS * 1000);
  const c1 = processCpuMs(pid);
  const t1 = Date.now();
  const a1 = await answers();
  return { pct: (100 * (c1 - c0)) / (t1 - t0), answers: a1 - a0 };
}

async function openPage(srv) {
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  await page.goto(`${srv.origin}/?token=${srv.token}`);
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected');
  return { ctx, page };
}

try {
  for (const [w, h] of SIZES) {
    for (const cap of [0, 2]) {
      const srv = await startLivevlm({ backends: [fake], gst: true, logLevel: 'warn' });
      const { ctx, page } = await openPage(srv);
      const c = await srv.session({ settings: { interval_ms: 1000 } });
      await c.start();
      const got = await page.evaluate(async ({ sessionId, maxFramerate, width, height }) => {
        const { startVideo } = await import('/video.js');
        const stream = await navigator.mediaDevices.getUserMedia({ video: { width, height } });
        window.lvBenchVideo = await startVideo({ stream, sessionId, maxFramerate });
        return stream.getVideoTracks()[0].getSettings();
      }, { sessionId: c.session.session_id, maxFramerate: cap, width: w, height: h });
      const m = await measure(srv, async () => c.seen('vlm_response').length);
      const fps = await page.evaluate(async () => {
        let n = 0;
        (await window.lvBenchVideo.pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') n = s.framesPerSecond || n; });
        return n;
      });
      rows.push({ mode: cap ? `video, capped at ${cap} fps (the page's setting)` : `video, uncapped (camera ${got.frameRate} fps)`,
        size: `${got.width}x${got.height}`, pct: m.pct, answers: m.answers, fps });
      c.close();
      await br.closeContext(ctx);
      await srv.stop();
    }
  }
  // the page's own frames path: Start at a 1 s interval (the page asks its camera for 1280x720 and
  // scales each frame to the session's frame_max_side before sending it)
  {
    const srv = await startLivevlm({ backends: [fake], logLevel: 'warn' });
    const { ctx, page } = await openPage(srv);
    await page.locator('#startBtn').click();
    const m = await measure(srv, async () => Number(await page.evaluate(() => document.getElementById('framesSent')?.textContent || '0')));
    const size = await page.evaluate(() => { const v = document.querySelector('video'); return v ? `${v.videoWidth}x${v.videoHeight}` : '?'; });
    rows.push({ mode: 'frames (a JPEG per credit)', size: `${size} camera`, pct: m.pct, answers: m.answers, fps: null });
    await br.closeContext(ctx);
    await srv.stop();
  }
} finally {
  await br.close();
  await stopAll();
}

const md = [
  '## 7. WebRTC ingest vs the page\'s frames',
  '',
  `Chromium's fake camera, one session at a time, interval 1 s; livevlm CPU over ${SECS} s after ${WARM} s; fakevlm`,
  '20 ms + 4 × 5 ms. "answers" counts vlm_response (video) or frames sent (frames) in the window.',
  '',
  '| how the webcam reaches livevlm | size | livevlm CPU (% of a core) | sender fps at the end | answers / frames |',
  '|---|---|---:|---:|---:|',
  ...rows.map((r) => `| ${r.mode} | ${r.size} | ${r.pct.toFixed(2)} | ${r.fps ?? '–'} | ${r.answers} |`),
  '',
].join('\n');
fs.mkdirSync(OUT, { recursive: true });
fs.writeFileSync(path.join(OUT, 'webrtc.md'), md);
const big = rows.filter((r) => r.size.startsWith('1280'));
const capped = big.find((r) => r.mode.startsWith('video, capped'));
const frames = rows.find((r) => r.mode.startsWith('frames'));
fs.writeFileSync(path.join(OUT, 'webrtc.summary'),
  `| WebRTC ingest, 720p, 1 frame/s | measured against the page's frames | video ${capped ? capped.pct.toFixed(2) : '?'} % of a core per session, frames ${frames ? frames.pct.toFixed(2) : '?'} % | measured |\n`);
process.stdout.write(md);
