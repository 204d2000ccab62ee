// history.test.mjs - the History panel (issue 10, "beyond the tool it replaces"; web/history.js):
// each answer with the prompt it was asked with and a thumbnail of the frame it was about; a prompt
// change shows in the entries after it; search narrows as you type; JSON, CSV and Markdown
// downloads parse back to the same texts (quotes, commas, line breaks, Markdown and HTML
// characters); a reload of the same session keeps prompts and pictures; answers from before the
// page was loaded come from the server's history and say they have no picture; the page keeps at
// most LIMITS.entries answers and LIMITS.thumbs pictures, in memory and in IndexedDB; keyboard and a
// 390 px phone work. Debian's chromium (playwright-core) against the real livevlm over TLS and
// fakevlm, whose answers name the hash of the prompt they were asked with (prompt=…) and the
// size of the frame (jpeg=WxH). Every test fails on an uncaught page exception or a console error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, connectWs, withTimeout, JPEG_320,
  sha8, sleep, waitUntil, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(150000) };
const DESKTOP = { viewport: { width: 1366, height: 768 } };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };
const LIMITS = { entries: 200, thumbs: 60, thumbWidth: 160 }; // web/history.js LIMITS

// Texts the downloads must carry unchanged: quotes, commas, line breaks, a blank line, leading
// blanks, and characters that mean something in Markdown, HTML or CSV.
const PROMPT_1 = 'Count the "chairs", tables, and lamps.\nThen say, on one line: done | *bold* <b>x</b> #1 & [link](x)';
const PROMPT_2 = 'Describe the person\'s "shirt", colour, and pose.\n\n  - in short, please_now';
// Added by the test to every answer the page receives (and to the server's history it is sent),
// so that answer texts carry the same trouble.
const TAIL = '\nHe said "no, thanks", then left.\n\n1. `code` & <i>html</i> \\ end_';

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

/** A new context and page signed in through /?token=…; init: a script run before the page's own. */
async function openSignedIn(server, { ctxOpts = DESKTOP, init, initArg, route } = {}) {
  const ctx = await br.newContext(ctxOpts);
  if (init) await ctx.addInitScript(init, initArg);
  const page = await ctx.newPage();
  if (route) await page.routeWebSocket(/\/ws$/, route);
  const errs = watchPageErrors(page);
  await page.goto(`${server.origin}/?token=${server.token}`);
  await waitConnected(page);
  return { ctx, page, errs };
}

/** The page's WebSocket through the test: TAIL is added to every answer text (live and history). */
function tailRoute(ctl = {}) {
  const addTail = (t) => (typeof t === 'string' && !t.endsWith(TAIL) ? t + TAIL : t);
  return (ws) => {
    const server = ws.connectToServer();
    ctl.ws = ws;
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (typeof m !== 'string') return ws.send(m);
      let msg;
      try { msg = JSON.parse(m); } catch { return ws.send(m); }
      if (msg.type === 'vlm_response') msg.text = addTail(msg.text);
      if (msg.type === 'session' && Array.isArray(msg.history)) for (const e of msg.history) e.text = addTail(e.text);
      ws.send(JSON.stringify(msg));
    });
  };
}

async function setPrompt(page, prompt) {
  await page.fill('#promptText', prompt);
  await page.locator('#promptText').press('Tab'); // the prompt applies on blur
  await page.waitForFunction((p) => document.getElementById('promptEcho')?.title === p, prompt, { timeout: T(5000) });
}

async function startCamera(page) {
  await page.waitForFunction(() => [...(document.getElementById('cameraSelect')?.options || [])].some((o) => o.value),
    null, { timeout: T(10000) });
  const value = await page.evaluate(() => [...document.getElementById('cameraSelect').options].find((o) => o.value).value);
  await page.selectOption('#cameraSelect', value);
  await page.locator('#startBtn').click();
}

/** Stop, and let an answer being written end (the server finishes it) so the list holds still. */
async function stopCamera(page) {
  await page.locator('#stopBtn').click();
  await page.waitForFunction(() => document.getElementById('answerCard')?.dataset.busy !== 'true', null, { timeout: T(10000) });
  await sleep(500);
}

const histCount = (page) => page.evaluate(() => Number(document.getElementById('historyCount')?.textContent) || 0);

async function waitHistory(page, fn, arg, what, timeoutMs = T(20000)) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 100 });
  } catch (e) {
    throw new Error(`${what}: not within ${timeoutMs} ms (history count ${await histCount(page)}; errorBar ` +
      `${JSON.stringify(await page.locator('#errorBar').innerText().catch(() => ''))}): ${e.message}`);
  }
}

/** Wait for n entries in the History list. */
async function waitEntries(page, n, what = `${n} history entries`) {
  await waitHistory(page, (k) => document.querySelectorAll('#historyList > li').length >= k, n, what);
}

async function openHistory(page) {
  await page.evaluate(() => { document.getElementById('history').open = true; });
}

/** Every entry of the list as shown: newest first. */
const entries = (page) => page.evaluate(() => [...document.querySelectorAll('#historyList > li')].map((li) => {
  const img = li.querySelector('.hist-thumb img');
  const text = li.querySelector('.hist-text').textContent;
  return {
    id: Number(li.dataset.answerId), source: li.dataset.source, thumb: li.dataset.thumb === 'true', hidden: li.hidden,
    prompt: li.querySelector('.hist-prompt-text').textContent, promptKnown: !li.querySelector('.hist-prompt-text.hist-unknown'),
    hash: (/prompt=([0-9a-f]{8})/.exec(text) || [])[1] || null,
    jpeg: (/jpeg=(\d+)x(\d+)/.exec(text) || []).slice(1).map(Number),
    img: img ? { w: img.naturalWidth, h: img.naturalHeight, done: img.complete, src: img.getAttribute('src') } : null,
    noPicture: li.querySelector('.hist-thumb').title, caption: li.querySelector('.hist-figure figcaption')?.textContent || '',
  };
}));

/** Click an export button, wait for the download, return {name, text}. */
async function download(page, kind) {
  const [dl] = await Promise.all([
    page.waitForEvent('download', { timeout: T(10000) }),
    page.locator(`#history [data-export="${kind}"]`).click(),
  ]);
  const file = await withTimeout(dl.path(), T(10000), `the ${kind} download`);
  return { name: dl.suggestedFilename(), text: fs.readFileSync(file, 'utf8') };
}

// ---------------------------------------------------------------------------------------------
// parsers of the downloads (strict: anything malformed throws)

/** RFC 4180: CRLF between records, quoted fields with "" for a quote; every record as wide as the header. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  let wasQuoted = false;
  for (let i = 0; i < text.length;) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 2; continue; }
      if (c === '"') { quoted = false; i++; continue; }
      field += c; i++; continue;
    }
    if (c === '"') {
      if (field !== '' || wasQuoted) throw new Error(`CSV: a quote inside an unquoted field at ${i}`);
      quoted = true; wasQuoted = true; i++; continue;
    }
    if (c === ',') { row.push(field); field = ''; wasQuoted = false; i++; continue; }
    if (c === '\r' && text[i + 1] === '\n') { row.push(field); rows.push(row); row = []; field = ''; wasQuoted = false; i += 2; continue; }
    if (c === '\r' || c === '\n') throw new Error(`CSV: a bare line break outside quotes at ${i}`);
    if (wasQuoted) throw new Error(`CSV: text after a closing quote at ${i}`);
    field += c; i++;
  }
  if (quoted) throw new Error('CSV: an unclosed quote');
  if (field !== '' || row.length) throw new Error('CSV: the last record does not end with CRLF');
  for (const r of rows) if (r.length !== rows[0].length) throw new Error(`CSV: a record of ${r.length} fields, the header has ${rows[0].length}`);
  return rows;
}

/** A Markdown block quote written by mdQuote back to its text; throws on an unescaped special character. */
function unquote(lines) {
  return lines.map((l) => {
    assert.ok(l === '>' || l.startsWith('> '), `a block quote line: ${JSON.stringify(l)}`);
    let s = l === '>' ? '' : l.slice(2);
    const trailing = /\\*$/.exec(s)[0].length;
    if (trailing % 2 === 1) s = s.slice(0, -1); // the hard line break
    const bare = s.replace(/&#(32|9);/g, '').replace(/\\[\s\S]/g, '');
    assert.doesNotMatch(bare, /[\\`*_[\]<>#|~&$]/, `every special character is escaped: ${JSON.stringify(l)}`);
    assert.doesNotMatch(bare, /^\s*([-+=]|\d+[.)])/, `no line starts a list or a heading: ${JSON.stringify(l)}`);
    return s.replace(/^((?:&#(?:32|9);)+)/, (m) => m.replace(/&#32;/g, ' ').replace(/&#9;/g, '\t'))
      .replace(/\\([!-/:-@[-`{-~])/g, '$1');
  }).join('\n');
}

/** The Markdown download: [{id, head, prompt (null: not known), text}] in file order. */
function parseMarkdown(md) {
  const lines = md.split('\n');
  assert.equal(lines[0], '# livevlm history', 'the title');
  const out = [];
  let cur = null;
  const quoteAfter = (i) => {
    assert.equal(lines[i + 1], '', `a blank line after ${lines[i]}`);
    const q = [];
    for (let k = i + 2; k < lines.length && lines[k].startsWith('>'); k++) q.push(lines[k]);
    return q;
  };
  for (let i = 0; i < lines.length; i++) {
    const m = /^## Answer (\d+)$/.exec(lines[i]);
    if (m) {
      cur = { id: Number(m[1]), head: lines[i + 2], prompt: undefined, text: undefined };
      out.push(cur);
    } else if (cur && lines[i] === '**Prompt**') {
      const q = quoteAfter(i);
      cur.prompt = q.length ? unquote(q) : null;
    } else if (cur && lines[i] === '**Answer**') {
      cur.text = unquote(quoteAfter(i));
    } else if (/^#/.test(lines[i]) && i > 0) {
      throw new Error(`an unexpected heading: ${lines[i]}`);
    }
  }
  return out;
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// ---------------------------------------------------------------------------------------------

test('each answer with its prompt and frame; a prompt change shows in later entries; search; JSON, CSV and Markdown downloads; a reload keeps prompts and pictures; Clear', TO, async () => {
  const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const { ctx, page, errs } = await openSignedIn(srv, { route: tailRoute() });
  try {
    const t0 = Date.now();
    await setPrompt(page, PROMPT_1);
    await startCamera(page);
    await openHistory(page);
    await waitEntries(page, 3, 'three answers in the history');

    // Each answer: the prompt it was asked with (fakevlm names its hash) and a picture of the frame.
    let list = await entries(page);
    for (const e of list) {
      assert.equal(e.source, 'page', `answer ${e.id} was seen by this page`);
      assert.equal(e.prompt, PROMPT_1, `answer ${e.id} shows its prompt, line breaks and all`);
      assert.equal(e.hash, sha8(PROMPT_1), `answer ${e.id} was asked with that prompt`);
    }
    await waitHistory(page, () => [...document.querySelectorAll('#historyList > li')]
      .every((li) => li.dataset.thumb === 'true' && li.querySelector('.hist-thumb img')?.naturalWidth > 0),
    null, 'every answer gets its thumbnail');
    list = await entries(page);
    for (const e of list) {
      const [w, h] = e.jpeg;
      assert.ok(e.img && e.img.done && /^blob:/.test(e.img.src), `answer ${e.id} has a picture: ${JSON.stringify(e.img)}`);
      assert.equal(e.img.w, LIMITS.thumbWidth, `a ${LIMITS.thumbWidth} px thumbnail: ${JSON.stringify(e.img)}`);
      assert.equal(e.img.h, Math.round((h * LIMITS.thumbWidth) / w), `the thumbnail has the shape of the ${w}x${h} frame sent`);
    }
    console.log(`# ${list.length} answers with a ${list[0].img.w}x${list[0].img.h} thumbnail each, in ${Date.now() - t0} ms`);

    // A prompt change: the answers after it show the new prompt, the ones before keep theirs.
    await setPrompt(page, PROMPT_2);
    await waitHistory(page, (h) => [...document.querySelectorAll('#historyList .hist-text')].filter((t) => t.textContent.includes(`prompt=${h}`)).length >= 2,
      sha8(PROMPT_2), 'two answers to the new prompt');
    await stopCamera(page);
    list = await entries(page);
    const byPrompt = { [sha8(PROMPT_1)]: PROMPT_1, [sha8(PROMPT_2)]: PROMPT_2 };
    for (const e of list) {
      assert.ok(e.hash in byPrompt, `answer ${e.id} is about one of the two prompts`);
      assert.equal(e.prompt, byPrompt[e.hash], `answer ${e.id} shows the prompt it was asked with`);
      assert.ok(e.thumb, `answer ${e.id} keeps its picture`);
    }
    const first = list.filter((e) => e.prompt === PROMPT_1);
    const second = list.filter((e) => e.prompt === PROMPT_2);
    assert.ok(first.length >= 3 && second.length >= 2, `answers to both prompts: ${first.length} + ${second.length}`);
    assert.ok(Math.min(...second.map((e) => e.id)) > Math.max(...first.map((e) => e.id)), 'the new prompt is in the later entries');
    assert.deepEqual(list.map((e) => e.id), [...list.map((e) => e.id)].sort((a, b) => b - a), 'newest first');

    // Search narrows as you type: answer text and prompt, any case, every word.
    const shown = async () => (await entries(page)).filter((e) => !e.hidden);
    await page.locator('#historySearch').fill(sha8(PROMPT_2));
    assert.deepEqual((await shown()).map((e) => e.id), second.map((e) => e.id), 'a word of the answers to the new prompt');
    assert.match(await page.locator('#historyStatus').textContent(), new RegExp(`^${second.length} of ${list.length} answers match`));
    await page.locator('#historySearch').fill('CHAIRS lamps');
    assert.deepEqual((await shown()).map((e) => e.id), first.map((e) => e.id), 'words of the first prompt, in another case');
    await page.locator('#historySearch').fill('chairs shirt');
    assert.deepEqual(await shown(), [], 'every word must match');
    assert.match(await page.locator('#historyStatus').textContent(), /^No answer matches/);
    assert.ok(await page.locator('#history [data-export="json"]').isDisabled(), 'nothing to download');

    // A download takes the answers shown.
    await page.locator('#historySearch').fill('chairs');
    const part = JSON.parse((await download(page, 'json')).text);
    assert.deepEqual(part.entries.map((e) => e.answer_id), first.map((e) => e.id).reverse(), 'the matching answers, oldest first');
    await page.locator('#historySearch').press('Escape');
    assert.equal(await page.locator('#historySearch').inputValue(), '', 'Escape empties the search');
    assert.equal((await shown()).length, list.length, 'and everything is shown again');

    // JSON: ISO times, the exact texts, small thumbnails as JPEG data URLs.
    const sid = await page.evaluate(() => document.getElementById('sessionId').dataset.sessionId);
    const j = await download(page, 'json');
    assert.match(j.name, new RegExp(`^livevlm-history-${sid.slice(0, 8)}-[0-9T-]+Z\\.json$`), `file name ${j.name}`);
    const doc = JSON.parse(j.text);
    assert.equal(doc.format, 'livevlm-history');
    assert.equal(doc.session_id, sid);
    assert.match(doc.exported_at, ISO);
    assert.equal(doc.entries.length, list.length);
    assert.deepEqual(doc.entries.map((e) => e.answer_id), list.map((e) => e.id).reverse(), 'oldest first');
    for (const e of doc.entries) {
      assert.match(e.time, ISO, `answer ${e.answer_id}: an ISO time`);
      assert.ok(Math.abs(Date.parse(e.time) - Date.now()) < T(120000), `answer ${e.answer_id}: a time of this run`);
      assert.equal(e.prompt, byPrompt[/prompt=([0-9a-f]{8})/.exec(e.text)[1]], `answer ${e.answer_id}: the prompt, exactly`);
      assert.ok(e.text.endsWith(TAIL), `answer ${e.answer_id}: the text, exactly`);
      assert.match(e.thumbnail, /^data:image\/jpeg;base64,/, `answer ${e.answer_id}: its thumbnail`);
      const jpeg = Buffer.from(e.thumbnail.split(',')[1], 'base64');
      assert.ok(jpeg[0] === 0xff && jpeg[1] === 0xd8 && jpeg.at(-2) === 0xff && jpeg.at(-1) === 0xd9, 'a whole JPEG');
      assert.ok(Number.isFinite(e.latency_ms) && e.model === 'fake-vlm-1' && e.source === 'page', JSON.stringify({ ...e, thumbnail: '…' }));
    }
    const texts = new Map(doc.entries.map((e) => [e.answer_id, e]));

    // CSV: RFC 4180, quotes and line breaks inside quoted fields, no thumbnails.
    const c = await download(page, 'csv');
    assert.match(c.name, /\.csv$/);
    assert.ok(c.text.startsWith('\uFEFF'), 'a BOM, so spreadsheets read UTF-8');
    const rows = parseCsv(c.text.slice(1));
    assert.deepEqual(rows[0], ['answer_id', 'time', 'prompt', 'text', 'latency_ms', 'model', 'backend', 'source']);
    assert.equal(rows.length - 1, list.length);
    for (const r of rows.slice(1)) {
      const e = texts.get(Number(r[0]));
      assert.ok(e, `row ${r[0]} is an answer`);
      assert.deepEqual(r.slice(1), [e.time, e.prompt, e.text, String(e.latency_ms), e.model, e.backend, 'page'], `row ${r[0]} carries the texts exactly`);
    }
    assert.doesNotMatch(c.text, /data:image/, 'no thumbnails in CSV');

    // Markdown: every answer under its heading, prompt and text quoted and escaped to read as written.
    const m = await download(page, 'md');
    assert.match(m.name, /\.md$/);
    const sections = parseMarkdown(m.text);
    assert.deepEqual(sections.map((s) => s.id), list.map((e) => e.id).reverse());
    for (const s of sections) {
      const e = texts.get(s.id);
      assert.equal(s.prompt, e.prompt, `answer ${s.id}: the prompt reads back exactly`);
      assert.equal(s.text, e.text, `answer ${s.id}: the text reads back exactly`);
      assert.equal(s.head, `${e.time} · latency ${Math.round(e.latency_ms)} ms · model fake-vlm-1 (backend fake) · picture: thumbnail of answer ${s.id}`);
    }
    assert.doesNotMatch(m.text, /data:image|<img/, 'thumbnails are named, not embedded');

    // A reload of the same session keeps every answer with its prompt and picture.
    const before = await entries(page);
    await page.reload();
    await waitConnected(page);
    await openHistory(page);
    await waitHistory(page, (n) => [...document.querySelectorAll('#historyList > li')]
      .filter((li) => li.dataset.thumb === 'true' && li.querySelector('.hist-thumb img')?.naturalWidth > 0).length >= n,
    before.length, 'the pictures after the reload', T(10000));
    const after = await entries(page);
    assert.deepEqual(after.map((e) => [e.id, e.source, e.prompt, e.thumb, e.img.w, e.img.h]),
      before.map((e) => [e.id, e.source, e.prompt, e.thumb, e.img.w, e.img.h]), 'the same entries, prompts and thumbnails');
    assert.equal(await page.evaluate(() => document.getElementById('sessionId').dataset.sessionId), sid, 'the same session');

    // Keyboard: Tab from the search reaches the downloads and Clear; Clear asks once more, and
    // what it cleared stays cleared after a reload (the server's own history included).
    await page.locator('#historySearch').focus();
    await page.keyboard.type('shirt');
    assert.equal((await shown()).length, second.length, 'typing filters');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.dataset.export), 'json', 'Tab: the JSON download');
    const [dl] = await Promise.all([page.waitForEvent('download', { timeout: T(10000) }), page.keyboard.press('Enter')]);
    assert.match(dl.suggestedFilename(), /\.json$/, 'Enter downloads');
    for (let i = 0; i < 3; i++) await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'historyClear', 'Tab: Clear');
    await page.keyboard.press('Enter');
    assert.match(await page.locator('#historyStatus').textContent(), /press clear again/i, 'Clear asks for a second press');
    assert.equal(await histCount(page), list.length, 'nothing is deleted yet');
    await page.keyboard.press('Enter');
    await waitHistory(page, () => document.querySelectorAll('#historyList > li').length === 0, null, 'Clear empties the list', T(5000));
    assert.equal(await histCount(page), 0);
    assert.ok(await page.locator('#historyEmpty').isVisible(), 'the list says it is empty');
    await sleep(300); // the deletion is written
    await page.reload();
    await waitConnected(page);
    await sleep(1000);
    assert.equal(await histCount(page), 0, 'cleared stays cleared after a reload');
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
    await fake.stop();
  }
});

test('answers from before the page was loaded come from the server\'s history, say they have no picture, and the page\'s own follow them (a 390 px phone)', TO, async () => {
  const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  // A script answers two frames in a session; then a phone opens that session.
  await waitUntil(async () => (await srv.request('/api/v1/models')).json().models?.length > 0,
    { timeoutMs: T(10000), what: 'the backend lists its models' });
  const c = await connectWs(srv);
  const hello = await c.hello({ settings: { prompt: 'What is on the table?' } });
  await c.start();
  c.autoFeed(JPEG_320());
  await c.nextAnswer();
  await c.nextAnswer();
  c.autoFeed(null);
  await c.stop();
  await c.close();
  const { ctx, page, errs } = await openSignedIn(srv, {
    ctxOpts: PHONE,
    init: ({ id, secret }) => {
      if (!sessionStorage.getItem('livevlm.session_id')) {
        sessionStorage.setItem('livevlm.session_id', id);
        sessionStorage.setItem('livevlm.resume_secret', secret);
      }
    },
    initArg: { id: hello.session_id, secret: hello.resume_secret },
  });
  try {
    assert.equal(await page.evaluate(() => document.getElementById('sessionId').dataset.sessionId), hello.session_id, 'the page resumed that session');
    await page.locator('#history > summary').click();
    await waitEntries(page, 2, 'the server\'s two answers');
    let list = await entries(page);
    assert.equal(list.length, 2);
    for (const e of list) {
      assert.equal(e.source, 'server', `answer ${e.id} comes from the server's history`);
      assert.equal(e.thumb, false);
      assert.match(e.noPicture, /before this page was loaded/, `the missing picture is explained: ${e.noPicture}`);
      assert.match(e.caption, /before this page was loaded/, 'also inside the entry');
      assert.equal(e.promptKnown, false);
      assert.match(e.prompt, /not known/i, 'the prompt is said to be unknown, not guessed');
    }
    assert.ok(await page.locator('#historyList > li .hist-thumb').first().isVisible());
    assert.match(await page.locator('#historyList > li .hist-thumb').first().innerText(), /no picture/i);

    // The phone's own answers come on top, with the session's prompt and a picture.
    await startCamera(page);
    await waitHistory(page, () => [...document.querySelectorAll('#historyList > li')]
      .some((li) => li.dataset.source === 'page' && li.dataset.thumb === 'true'), null, 'an answer of this page, with its picture');
    await stopCamera(page);
    list = await entries(page);
    assert.equal(list[0].source, 'page', 'the newest answer is this page\'s');
    assert.equal(list[0].prompt, 'What is on the table?');
    assert.equal(list[0].hash, sha8('What is on the table?'));
    assert.equal(list.filter((e) => e.source === 'server').length, 2, 'the server\'s answers stay');

    // It fits the phone: nothing sideways, every control of the panel 44 px or more and on screen.
    const layout = await page.evaluate(() => {
      const out = { scrollW: document.documentElement.scrollWidth, bad: [] };
      const box = document.getElementById('history');
      box.querySelector('details.hist-item').open = true;
      for (const el of box.querySelectorAll('input, button, summary, img')) {
        const r = el.getBoundingClientRect();
        if (!r.width) continue;
        if (r.left < -0.5 || r.right > 390.5) out.bad.push(`${el.localName}${el.id ? `#${el.id}` : ''} at ${Math.round(r.left)}..${Math.round(r.right)}`);
        if (el.localName !== 'img' && (r.width < 43.5 || r.height < 43.5)) out.bad.push(`${el.localName}${el.id ? `#${el.id}` : ''} ${Math.round(r.width)}x${Math.round(r.height)}`);
      }
      return out;
    });
    assert.ok(layout.scrollW <= 390, `no sideways scroll: ${layout.scrollW}`);
    assert.deepEqual(layout.bad, [], 'the History panel fits the phone and its controls are touch-sized');
    const csv = parseCsv((await download(page, 'csv')).text.slice(1));
    assert.deepEqual(csv.slice(1, 3).map((r) => [r[7], r[2]]), [['server', ''], ['server', '']],
      'the server\'s answers in CSV: no prompt');
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
    await fake.stop();
  }
});

test(`memory stays bounded: at most ${LIMITS.entries} answers and ${LIMITS.thumbs} pictures, on screen and in IndexedDB`, TO, async () => {
  const fake = await startFakevlm({ ttftMs: 30, tokenMs: 10, tokens: 8 });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const ctl = {};
  const { ctx, page, errs } = await openSignedIn(srv, { route: tailRoute(ctl) });
  try {
    await startCamera(page);
    await waitEntries(page, 2, 'two real answers');
    // 230 more answers, each started right after a frame went out (so each gets its picture).
    const N = 230;
    for (let i = 0; i < N; i++) {
      const id = 100000 + i;
      ctl.ws.send(JSON.stringify({ type: 'answer_start', answer_id: id, backend: 'fake', model: 'fake-vlm-1', queue_wait_ms: 0, frame_age_ms: 0 }));
      ctl.ws.send(JSON.stringify({ type: 'vlm_response', answer_id: id, text: `injected answer ${i}, "quoted"`, metrics: { last_latency_ms: 5, model: 'fake-vlm-1', backend: 'fake' } }));
      if (i % 20 === 19) await sleep(50);
    }
    await waitHistory(page, (n) => Number(document.getElementById('historyCount').textContent) === n, LIMITS.entries,
      `the list stops at ${LIMITS.entries}`);
    await stopCamera(page);
    const shown = await page.evaluate(() => ({
      items: document.querySelectorAll('#historyList > li').length,
      thumbs: document.querySelectorAll('#historyList > li[data-thumb="true"]').length,
      newest: Number(document.querySelector('#historyList > li').dataset.answerId),
      oldest: Number(document.querySelector('#historyList > li:last-child').dataset.answerId),
    }));
    assert.equal(shown.items, LIMITS.entries);
    assert.ok(shown.thumbs <= LIMITS.thumbs && shown.thumbs >= LIMITS.thumbs - 5, `${shown.thumbs} pictures kept (at most ${LIMITS.thumbs})`);
    assert.equal(shown.newest, 100000 + N - 1, 'the newest answers stay');
    assert.equal(shown.oldest, 100000 + N - LIMITS.entries, 'the oldest went first');
    // The pictures that went are the oldest ones, and those answers say why.
    const all = await entries(page);
    const withPicture = all.filter((e) => e.thumb).map((e) => e.id);
    const evicted = all.filter((e) => /only the newest \d+ answers keep/i.test(e.noPicture)).map((e) => e.id);
    assert.ok(evicted.length > 0, 'some answers lost their picture to the bound, and say so');
    assert.ok(Math.max(...evicted) < Math.min(...withPicture), `the oldest pictures went first (${evicted.length} went, ${withPicture.length} kept)`);
    // What IndexedDB holds for this session, once the writes are done.
    const stored = async () => page.evaluate(async (sid) => new Promise((resolve) => {
      const req = indexedDB.open('livevlm-history');
      req.onsuccess = () => {
        const db = req.result;
        const get = db.transaction('entries').objectStore('entries').index('sid').getAll(sid);
        get.onsuccess = () => {
          const r = get.result;
          db.close();
          resolve({ n: r.length, thumbs: r.filter((e) => e.thumb && e.thumb.byteLength).length, bytes: r.reduce((a, e) => a + (e.thumb ? e.thumb.byteLength : 0), 0) });
        };
      };
      req.onerror = () => resolve(null);
    }), await page.evaluate(() => document.getElementById('sessionId').dataset.sessionId));
    let db = null;
    for (let i = 0; i < 50; i++) {
      db = await stored();
      if (db && db.n === LIMITS.entries && db.thumbs <= LIMITS.thumbs) break;
      await sleep(100);
    }
    assert.ok(db && db.n === LIMITS.entries && db.thumbs <= LIMITS.thumbs, `IndexedDB holds ${JSON.stringify(db)}`);
    console.log(`# bounded: ${shown.items} answers, ${shown.thumbs} pictures on screen; IndexedDB ${db.n} answers, ` +
      `${db.thumbs} pictures, ${(db.bytes / 1024).toFixed(1)} KB of thumbnails`);
    errs.check();
  } finally {
    await br.closeContext(ctx);
    await srv.stop();
    await fake.stop();
  }
});
