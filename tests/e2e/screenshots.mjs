#!/usr/bin/env node
// screenshots.mjs - the pictures in docs/images/ that the README shows ("What it looks like"):
// the page at 1366x768 and as a 390x844 phone, light and dark, with answers on screen. It runs
// the real livevlm over TLS against fakevlm (the test backend: the answers name what they got,
// they do not describe the picture) and Chromium's fake camera, like the e2e tests; it is not a
// test itself (node --test does not pick it up).
//
//   make all && node tests/e2e/screenshots.mjs [--out DIR]     (default DIR: docs/images)
//
// LIVEVLM_BUILD picks the build directory as for the tests. Every wait is bounded. The PNGs are
// taken at a device pixel ratio of 1 to stay small (about 165 KB desktop, 65 KB phone).
import fs from 'node:fs';
import path from 'node:path';
import {
  ROOT, startFakevlm, startLivevlm, stopAll, launchBrowser, withTimeout, sleep, T,
} from '../lib/harness.mjs';

const args = process.argv.slice(2);
const outIdx = args.indexOf('--out');
const OUT = path.resolve(outIdx >= 0 ? args[outIdx + 1] : path.join(ROOT, 'docs', 'images'));

const VIEWS = [
  { name: 'desktop', ctx: { viewport: { width: 1366, height: 768 }, deviceScaleFactor: 1 } },
  {
    name: 'phone',
    ctx: {
      viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true,
      userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36',
    },
  },
];
const PROMPT = 'Describe in one or two sentences what is happening in this picture.';

async function shoot(br, srv, view, scheme, file) {
  const ctx = await br.newContext({ ...view.ctx, colorScheme: scheme });
  try {
    // Answers in Markdown, no entrance effects mid-shot, the camera first.
    await ctx.addInitScript(() => {
      localStorage.setItem('popIn', 'false');
      localStorage.setItem('glow', 'false');
      localStorage.setItem('fade', 'false');
    });
    const page = await ctx.newPage();
    await page.goto(`${srv.origin}/?token=${srv.token}`);
    await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected', null, { timeout: T(15000) });
    await page.fill('#promptText', PROMPT);
    await page.locator('#promptText').press('Tab');
    await page.waitForFunction(() => [...(document.getElementById('cameraSelect')?.options || [])].some((o) => o.value), null, { timeout: T(10000) });
    const cam = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
    await page.selectOption('#cameraSelect', cam);
    await page.locator('#startBtn').click();
    // A few answers, so that the metrics and the history have something; then the moment a
    // complete answer is shown and the next one is being written under it.
    await page.waitForFunction(() => Number(document.getElementById('metricCount').textContent) >= 3, null, { timeout: T(30000) });
    await page.waitForFunction(() => document.getElementById('answerNext')?.dataset.state === 'writing'
      && document.getElementById('answerNextText').textContent.split(/\s+/).length > 6, null, { timeout: T(10000), polling: 50 });
    await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
    await sleep(100);
    await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
    await page.locator('#stopBtn').click();
  } finally {
    await br.closeContext(ctx);
  }
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  // Answers of about 50 words, each written in about a second and a half.
  const fake = await startFakevlm({ ttftMs: 200, tokenMs: 25, tokens: 50 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const br = await launchBrowser();
  const made = [];
  try {
    for (const view of VIEWS) {
      for (const scheme of ['light', 'dark']) {
        const file = path.join(OUT, `livevlm-${view.name}-${scheme}.png`);
        await withTimeout(shoot(br, srv, view, scheme, file), T(90000), `${view.name} ${scheme}`);
        made.push(`${path.relative(ROOT, file)} (${Math.round(fs.statSync(file).size / 1024)} KB)`);
      }
    }
  } finally {
    await br.close();
    await srv.stop();
    await fake.stop();
    await stopAll();
  }
  console.log(`screenshots: ${made.join(', ')}`);
}

main().then(() => process.exit(0), (e) => {
  console.error(`screenshots: ${e.stack || e}`);
  process.exit(1);
});
