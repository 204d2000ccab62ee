// compare.test.mjs - Compare (issue 10, "beyond the tool it replaces"): the same camera frame sent
// to two models (or to one model with two prompts), both answers side by side with their
// latencies. Debian's chromium (playwright-core) against the real livevlm over TLS and fakevlm,
// whose answers say which model, which prompt (its hash) and which picture (its size in bytes and
// pixels) they were about: both answers of a pair must name the same picture, and that picture
// must be the frame the page says it sent. The second session is a real one: the server counts
// its socket, refuses it past the per-address cap (the page says so), and it resumes after a
// reload. Every test fails on an uncaught page exception or a console error (watchPageErrors);
// every wait is bounded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, parseFakeAnswer, fakevlmStats, scrapeMetrics,
  waitUntil, sha8, sleep, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(120000) };
const DESKTOP = { viewport: { width: 1366, height: 768 } };
const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
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

async function openSignedIn(server, { ctxOpts = DESKTOP, allow = [] } = {}) {
  const ctx = await br.newContext(ctxOpts);
  const page = await ctx.newPage();
  const errs = watchPageErrors(page, allow);
  await page.goto(`${server.origin}/?token=${server.token}`);
  await waitConnected(page);
  return { ctx, page, errs };
}

async function waitConnected(page) {
  await page.waitForFunction(() => document.getElementById('connectionStatus')?.dataset.state === 'connected',
    null, { timeout: T(15000) });
}

async function startCamera(page) {
  await page.waitForFunction(() => [...(document.getElementById('cameraSelect')?.options || [])].some((o) => o.value),
    null, { timeout: T(10000) });
  const value = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
  await page.selectOption('#cameraSelect', value);
  await page.locator('#startBtn').click();
}

const mainCount = (page) => page.evaluate(() => Number((document.getElementById('metricCount')?.textContent || '').replace(/[^0-9]/g, '')) || 0);

async function waitMainAnswers(page, n, timeoutMs = T(20000)) {
  await page.waitForFunction((k) => Number((document.getElementById('metricCount')?.textContent || '')
    .replace(/[^0-9]/g, '')) >= k, n, { timeout: timeoutMs }).catch(async (e) => {
    throw new Error(`fewer than ${n} answers of the page's own session (count ${await mainCount(page)}): ${e.message}`);
  });
}

/** Everything the Compare card shows. */
const cmp = (page) => page.evaluate(() => {
  const t = (id) => document.getElementById(id)?.textContent ?? null;
  const pane = (s) => {
    const el = document.querySelector(`#compareCard .compare-pane[data-side="${s}"]`);
    return {
      text: el.querySelector('.pane-text').textContent, model: t(`compareModel${s.toUpperCase()}Name`),
      lat: t(`compareLatency${s.toUpperCase()}`), ttft: t(`compareTtft${s.toUpperCase()}`), tokens: t(`compareTokens${s.toUpperCase()}`),
      faster: el.dataset.faster === 'true', next: el.querySelector('.pane-next').textContent,
    };
  };
  const frame = document.getElementById('compareFrame');
  const status = document.getElementById('compareStatus');
  return {
    on: document.getElementById('compareToggle').checked, card: document.getElementById('compareCard').dataset.on,
    status: status.hidden ? '' : status.textContent, statusKind: status.dataset.kind || '',
    pair: frame.dataset.pair ? Number(frame.dataset.pair) : null, bytes: frame.dataset.bytes ? Number(frame.dataset.bytes) : null,
    frameText: frame.textContent, modelB: document.getElementById('compareModel').value,
    count: t('compareCount'), meanA: t('compareMeanA'), meanB: t('compareMeanB'), faster: t('compareFaster'),
    a: pane('a'), b: pane('b'),
  };
});

const compared = (s) => Number(String(s.count).replace(/[^0-9]/g, '')) || 0;

/** "123 ms" or "12.3 s" (util.js fmtMs) in ms. */
function msOf(text) {
  const m = /^([\d.]+) (ms|s)$/.exec(String(text).trim());
  assert.ok(m, `a duration: ${JSON.stringify(text)}`);
  return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
}

async function waitCompared(page, n, timeoutMs = T(30000)) {
  try {
    await page.waitForFunction((k) => Number((document.getElementById('compareCount')?.textContent || '')
      .replace(/[^0-9]/g, '')) >= k, n, { timeout: timeoutMs, polling: 100 });
  } catch (e) {
    throw new Error(`fewer than ${n} frames compared in ${timeoutMs} ms; the card shows ${JSON.stringify(await cmp(page))}: ${e.message}`);
  }
}

/**
 * Watch the card until `want` different pairs were on screen; returns them as shown:
 * [{pair, bytes, a: parsed fake answer, b: parsed fake answer, shown}].
 */
async function collectPairs(page, want, timeoutMs = T(30000)) {
  const seen = new Map();
  const deadline = Date.now() + timeoutMs;
  while (seen.size < want && Date.now() < deadline) {
    const s = await cmp(page);
    if (s.pair !== null && !seen.has(s.pair)) {
      const a = parseFakeAnswer(s.a.text);
      const b = parseFakeAnswer(s.b.text);
      if (a && b) seen.set(s.pair, { pair: s.pair, bytes: s.bytes, a, b, shown: s });
    }
    await sleep(150);
  }
  assert.ok(seen.size >= want, `${want} compared frames shown in ${timeoutMs} ms (saw ${seen.size}: ${JSON.stringify([...seen.keys()])}; ` +
    `card ${JSON.stringify(await cmp(page))})`);
  return [...seen.values()];
}

async function sockets(srv) {
  return (await scrapeMetrics(srv)).get('livevlm_sockets');
}

/** Both answers of every pair are about the same picture: the frame the card says was sent. */
function assertSamePicture(pairs, { modelA, modelB, promptA, promptB }) {
  for (const p of pairs) {
    const where = `frame #${p.pair}: A ${JSON.stringify(p.shown.a.text.slice(0, 90))} / B ${JSON.stringify(p.shown.b.text.slice(0, 90))}`;
    assert.equal(p.a.model, modelA, `A's answer comes from model A (${where})`);
    assert.equal(p.b.model, modelB, `B's answer comes from model B (${where})`);
    assert.equal(p.a.prompt, sha8(promptA), `A was asked A's prompt (${where})`);
    assert.equal(p.b.prompt, sha8(promptB), `B was asked B's prompt (${where})`);
    assert.ok(p.a.imageBytes > 0 && p.a.width > 0 && p.a.height > 0, `A saw a picture (${where})`);
    assert.equal(p.b.imageBytes, p.a.imageBytes, `both saw a picture of the same size in bytes (${where})`);
    assert.equal(`${p.b.width}x${p.b.height}`, `${p.a.width}x${p.a.height}`, `both saw the same pixel size (${where})`);
    assert.equal(p.a.imageBytes, p.bytes, `that picture is the frame the card names (${p.bytes} bytes; ${where})`);
  }
}

// ---------------------------------------------------------------------------------------------

test('Compare with the keyboard: two models answer about the same frames side by side, with latencies and a summary; off closes the second session', TO, async () => {
  const fast = await startFakevlm({ models: ['fast-vlm'], ttftMs: 20, tokenMs: 5, tokens: 8 });
  const slow = await startFakevlm({ models: ['slow-vlm'], ttftMs: 300, tokenMs: 15, tokens: 8 });
  const srv = await startLivevlm({ backends: [fast, slow], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv);
  try {
    // Off: a line saying what it does, no second socket.
    let s = await cmp(page);
    assert.equal(s.on, false);
    assert.equal(await page.locator('#compareBody').isVisible(), false, 'the panes are hidden while Compare is off');
    assert.match(await page.locator('#compareIntro').innerText(), /second model/i);
    await page.selectOption('#modelSelect', 'fast-vlm');
    await startCamera(page);
    await waitMainAnswers(page, 1);
    assert.equal(await sockets(srv), 1, 'one socket before Compare');

    // On, with the keyboard only.
    await page.locator('#compareToggle').focus();
    await page.keyboard.press('Space');
    await page.waitForFunction(() => document.getElementById('compareToggle').checked, null, { timeout: T(5000) });
    s = await cmp(page);
    assert.equal(s.modelB, 'slow-vlm', 'model B defaults to another model than A\'s');
    assert.equal(await page.locator('#compareBody').isVisible(), true);
    await waitUntil(async () => (await sockets(srv)) === 2, { timeoutMs: T(5000), what: 'the second session\'s socket' });

    await waitCompared(page, 3);
    const promptA = await page.locator('#promptText').inputValue();
    const pairs = await collectPairs(page, 3);
    assertSamePicture(pairs, { modelA: 'fast-vlm', modelB: 'slow-vlm', promptA, promptB: promptA });
    const sizes = new Set(pairs.map((p) => p.bytes));
    console.log(`# pairs on screen: ${pairs.map((p) => `#${p.pair} ${p.bytes} B ${p.a.width}x${p.a.height}`).join(', ')} ` +
      `(${sizes.size} distinct sizes)`);

    // Latency, TTFT and tokens on each side; the summary's means; the faster side marked.
    s = await cmp(page);
    for (const side of ['a', 'b']) {
      assert.ok(msOf(s[side].lat) > 0, `${side}: a latency (${s[side].lat})`);
      msOf(s[side].ttft);
      assert.match(s[side].tokens, /^\d+$/, `${side}: tokens`);
    }
    assert.equal(s.a.model, 'fast-vlm');
    assert.equal(s.b.model, 'slow-vlm');
    const meanA = msOf(s.meanA);
    const meanB = msOf(s.meanB);
    assert.ok(meanA < meanB, `the fast model's mean latency ${s.meanA} is under the slow one's ${s.meanB}`);
    assert.match(s.faster, /^A \(\d+ of \d+\)$/, `A answers first: ${s.faster}`);
    assert.equal(s.a.faster, true, 'pane A is marked faster');
    console.log(`# summary: compared ${s.count}, mean A ${s.meanA}, mean B ${s.meanB}, faster ${s.faster}`);

    // The second session really is one: the slow backend served it.
    const slowBefore = (await fakevlmStats(slow)).requests;
    assert.ok(slowBefore >= 3, `the slow backend answered B (${slowBefore} requests)`);

    // Off (keyboard again): the second socket goes, the slow backend gets nothing more, A goes on.
    await page.locator('#compareToggle').focus();
    await page.keyboard.press('Space');
    await waitUntil(async () => (await sockets(srv)) === 1, { timeoutMs: T(5000), what: 'the second socket closed' });
    s = await cmp(page);
    assert.equal(s.on, false);
    assert.equal(await page.locator('#compareBody').isVisible(), false);
    const slowAfterOff = (await fakevlmStats(slow)).requests;
    const mainBefore = await mainCount(page);
    await sleep(T(2500));
    assert.ok((await fakevlmStats(slow)).requests - slowAfterOff <= 1, 'no request for B after Compare is off');
    await waitMainAnswers(page, mainBefore + 1, T(10000));
    const sess = await page.evaluate(() => [sessionStorage.getItem('livevlm.compare.session_id'), sessionStorage.getItem('livevlm.compare.on')]);
    assert.deepEqual(sess, [null, null], 'the second session is forgotten: it is over for this page');
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
  }
});

test('Compare two prompts on one model: B gets its own prompt, A keeps its own, both about the same frames', TO, async () => {
  const fake = await startFakevlm({ models: ['fake-vlm-1'], ttftMs: 30, tokenMs: 5, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv);
  try {
    // The way in from the Model panel: at 1366x768 the card starts below the fold.
    assert.ok(await page.evaluate(() => document.getElementById('compareCard').getBoundingClientRect().top > innerHeight),
      'the card is below the fold at first');
    await page.locator('#compareOpen').click();
    await page.waitForFunction(() => {
      const r = document.getElementById('compareCard').getBoundingClientRect();
      return document.getElementById('compareToggle').checked && r.top >= 0 && r.top < innerHeight / 2;
    }, null, { timeout: T(5000) }).catch(async (e) => {
      throw new Error(`the button did not bring Compare into view: ${JSON.stringify(await page.evaluate(() =>
        document.getElementById('compareCard').getBoundingClientRect()))} ${e.message}`);
    });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'compareModel', 'the focus is on model B');
    assert.equal(await page.locator('#compareOpen').innerText(), 'Show the comparison');
    const s = await cmp(page);
    assert.equal(s.modelB, 'fake-vlm-1', 'one model listed: B gets it too');
    assert.match(await page.locator('#compareModelHint').innerText(), /own prompt/i, 'the card suggests another prompt');
    const promptB = 'How many people are in the picture?\nAnswer with a number.';
    await page.fill('#comparePrompt', promptB);
    await page.locator('#comparePrompt').press('Tab'); // applies on leaving the field
    await startCamera(page);
    await waitCompared(page, 2);
    const promptA = await page.locator('#promptText').inputValue();
    // Pairs shown after B's prompt was applied (the first one may have been asked before).
    const pairs = (await collectPairs(page, 3)).filter((p) => p.b.prompt === sha8(promptB));
    assert.ok(pairs.length >= 2, `answers with B's prompt: ${pairs.length}`);
    assertSamePicture(pairs, { modelA: 'fake-vlm-1', modelB: 'fake-vlm-1', promptA, promptB });
    assert.equal(await page.locator('#compareModelHint').innerText(), '', 'no hint once B has its own prompt');
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
  }
});

test('the server refuses the second session (sessions per address): the card says so in words, Compare goes off, A goes on', TO, async () => {
  const fake = await startFakevlm({ models: ['m1', 'm2'], ttftMs: 20, tokenMs: 5, tokens: 8 });
  // A cap of 1: the page knows from /api/v1/config that there is no room and does not even try.
  const one = await startLivevlm({ backends: [fake], tls: true, args: ['--max-sessions-per-ip', '1'] });
  let r = await openSignedIn(one);
  try {
    await r.page.locator('#compareToggle').setChecked(true, { force: true }).catch(() => {});
    await r.page.waitForFunction(() => document.getElementById('compareStatus').dataset.kind === 'error', null, { timeout: T(5000) });
    const s = await cmp(r.page);
    assert.equal(s.on, false, 'Compare stays off');
    assert.match(s.status, /only 1 session per address.*second one/i, s.status);
    assert.equal(await sockets(one), 1, 'no second socket was opened');
    r.errs.check('cap 1');
  } finally {
    await br.closeContext(r.ctx);
    await one.stop();
  }

  // A cap of 2 with another client of this address holding one: the server refuses B itself.
  const srv = await startLivevlm({ backends: [fake], tls: true, args: ['--max-sessions-per-ip', '2'] });
  const other = await srv.session();
  r = await openSignedIn(srv);
  const { ctx, page, errs } = r;
  try {
    await startCamera(page);
    await waitMainAnswers(page, 1);
    await page.locator('#compareToggle').focus();
    await page.keyboard.press('Space');
    await page.waitForFunction(() => document.getElementById('compareStatus').dataset.kind === 'error', null, { timeout: T(10000) })
      .catch(async (e) => { throw new Error(`no refusal shown: ${JSON.stringify(await cmp(page))} ${e.message}`); });
    const s = await cmp(page);
    assert.equal(s.on, false, 'Compare went off');
    assert.match(s.status, /refused a second session/i, s.status);
    assert.match(s.status, /close another livevlm tab/i, 'it says what to do');
    assert.doesNotMatch(s.status, /too_many_sessions/, 'no protocol code');
    assert.equal(await page.locator('#compareStatus').isVisible(), true, 'the message is visible with Compare off');
    await sleep(T(1500));
    assert.equal(await sockets(srv), 2, 'the page does not keep knocking: A and the other client only');
    // A was not disturbed.
    const n = await mainCount(page);
    await waitMainAnswers(page, n + 2, T(10000));
    assert.equal(await page.evaluate(() => document.getElementById('connectionStatus').dataset.state), 'streaming');
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await other.close();
    await srv.stop();
  }
});

test('the second session resumes after a reload like the first: same session, Compare still on, pairs again after Start', TO, async () => {
  const fake = await startFakevlm({ models: ['m1', 'm2'], ttftMs: 20, tokenMs: 5, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv);
  try {
    await page.selectOption('#modelSelect', 'm1');
    await page.locator('#compareToggle').setChecked(true, { force: true });
    await startCamera(page);
    await waitCompared(page, 1);
    const before = await page.evaluate(() => ({
      a: sessionStorage.getItem('livevlm.session_id'), b: sessionStorage.getItem('livevlm.compare.session_id'),
    }));
    assert.match(before.b || '', /^[0-9a-f]{32}$/, 'the second session\'s id is kept for the tab');
    assert.notEqual(before.b, before.a);
    await page.reload();
    await waitConnected(page);
    await page.waitForFunction(() => /ready/i.test(document.getElementById('compareStatus').textContent), null, { timeout: T(10000) })
      .catch(async (e) => { throw new Error(`B not back after the reload: ${JSON.stringify(await cmp(page))} ${e.message}`); });
    const after = await page.evaluate(() => ({
      a: sessionStorage.getItem('livevlm.session_id'), b: sessionStorage.getItem('livevlm.compare.session_id'),
    }));
    assert.deepEqual(after, before, 'both sessions resumed (no new one)');
    const s = await cmp(page);
    assert.equal(s.on, true, 'Compare is still on');
    assert.match(s.status, new RegExp(`session ${before.b.slice(0, 8)}`), s.status);
    assert.equal(await sockets(srv), 2);
    await startCamera(page);
    const pairs = await collectPairs(page, 2);
    const promptA = await page.locator('#promptText').inputValue();
    assertSamePicture(pairs, { modelA: 'm1', modelB: 'm2', promptA, promptB: promptA });
    // Stop stops both sessions: the backend gets nothing more.
    await page.locator('#stopBtn').click();
    await page.waitForFunction(() => /ready/i.test(document.getElementById('compareStatus').textContent), null, { timeout: T(5000) });
    await sleep(T(1000));
    const r0 = (await fakevlmStats(fake)).requests;
    await sleep(T(2500));
    assert.equal((await fakevlmStats(fake)).requests, r0, 'no request for A or B after Stop');
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
  }
});

test('model B slower than the frame interval: its frames wait or are skipped, the pairs shown still match, A keeps its pace', TO, async () => {
  const fast = await startFakevlm({ models: ['fast-vlm'], ttftMs: 20, tokenMs: 5, tokens: 8 });
  // Slower than the 1 s interval and than the 2 s a frame may wait: B's waiting frames go stale.
  const slow = await startFakevlm({ models: ['slow-vlm'], ttftMs: 2400, tokenMs: 30, tokens: 8 });
  const srv = await startLivevlm({ backends: [fast, slow], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv);
  try {
    await page.selectOption('#modelSelect', 'fast-vlm');
    await page.locator('#compareToggle').setChecked(true, { force: true });
    await startCamera(page);
    await waitCompared(page, 1, T(30000));
    const t0 = Date.now();
    const a0 = await mainCount(page);
    const promptA = await page.locator('#promptText').inputValue();
    const pairs = await collectPairs(page, 4, T(60000));
    assertSamePicture(pairs, { modelA: 'fast-vlm', modelB: 'slow-vlm', promptA, promptB: promptA });
    const stale = (await scrapeMetrics(srv)).get('livevlm_frames_dropped_total', { reason: 'stale' }) || 0;
    assert.ok(stale >= 1, `some of B's frames went stale and were skipped (${stale}): answers are matched past them`);
    const secs = (Date.now() - t0) / 1000;
    const aRate = ((await mainCount(page)) - a0) / secs;
    const s = await cmp(page);
    console.log(`# slow B: ${pairs.length} pairs in ${secs.toFixed(1)} s, A ${aRate.toFixed(2)} answers/s, ${stale} stale frames, ` +
      `summary ${s.count} / ${s.meanA} / ${s.meanB}`);
    assert.ok(aRate >= 0.5, `A is not held to B's pace: ${aRate.toFixed(2)} answers/s`);
    assert.ok(msOf(s.meanB) > 2400, `B's mean latency includes its slow first token (${s.meanB})`);
    assert.notEqual(await page.evaluate(() => document.getElementById('connectionStatus').dataset.state), 'stalled');
    await page.locator('#stopBtn').click();
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
  }
});

test('Compare on a 390 px phone: panes stacked, nothing wider than the screen, touch-sized switch', TO, async () => {
  const fake = await startFakevlm({ models: ['m1', 'm2'], ttftMs: 20, tokenMs: 5, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv, { ctxOpts: PHONE });
  try {
    await page.locator('#compareCard .compare-switch').tap();
    await page.waitForFunction(() => document.getElementById('compareToggle').checked, null, { timeout: T(5000) });
    await startCamera(page);
    await waitCompared(page, 1);
    const box = await page.evaluate(() => {
      const r = (sel) => { const b = document.querySelector(sel).getBoundingClientRect(); return { x: b.x, y: b.y, w: b.width, h: b.height, r: b.right, b: b.bottom }; };
      return {
        width: document.documentElement.scrollWidth, card: r('#compareCard'), sw: r('#compareCard .compare-switch'),
        a: r('#compareCard .compare-pane[data-side="a"]'), b: r('#compareCard .compare-pane[data-side="b"]'),
        model: r('#compareModel'), prompt: r('#comparePrompt'),
      };
    });
    assert.ok(box.width <= 390, `no sideways scrolling (${box.width} px wide)`);
    for (const k of ['card', 'a', 'b', 'model', 'prompt']) assert.ok(box[k].x >= 0 && box[k].r <= 390, `${k} fits the screen: ${JSON.stringify(box[k])}`);
    assert.ok(box.b.y >= box.a.b - 1, `B under A: ${JSON.stringify([box.a, box.b])}`);
    assert.ok(box.sw.h >= 44, `the switch is a 44 px target (${box.sw.h})`);
    const s = await cmp(page);
    assert.ok(parseFakeAnswer(s.a.text) && parseFakeAnswer(s.b.text), 'both panes answer');
    await page.locator('#stopBtn').tap();
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
  }
});
