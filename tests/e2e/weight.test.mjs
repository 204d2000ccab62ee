// weight.test.mjs - what the page costs on the wire (issue 10, point 8): Debian's chromium
// (playwright-core) loads the UI from the real livevlm, then reloads it; the bytes are counted
// from chromium's own network log (CDP Network.loadingFinished encodedDataLength: headers and
// body as received, before decoding). A first load must come compressed (well under the bytes
// of the same files sent plain), and a reload must only revalidate (304s, no bodies).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakevlm, startLivevlm, stopAll, launchBrowser, watchPageErrors, sleep, T } from '../lib/harness.mjs';

const TO = { timeout: T(90000) };
let fake;
let srv;
let br;

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1'] });
  srv = await startLivevlm({ backends: [fake] });
  br = await launchBrowser();
});

after(async () => {
  if (br) await br.close();
  await stopAll();
});

/** The page's own files, as opposed to the API, the WebSocket and the sign-in redirect. */
function isAsset(url) {
  const u = new URL(url);
  return u.origin === srv.origin && u.search === '' && !/^\/(api\/|ws$|models$|metrics$)/.test(u.pathname);
}

/** Record every finished request on page's network (CDP) under the phase set by the caller. */
async function networkLog(ctx, page) {
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  const log = { phase: 'first', byId: new Map() };
  const entry = (id) => {
    if (!log.byId.has(id)) log.byId.set(id, { phase: log.phase });
    return log.byId.get(id);
  };
  cdp.on('Network.requestWillBeSent', (e) => {
    // a redirect reuses the request id: keep the hop that finishes
    Object.assign(entry(e.requestId), { url: e.request.url, method: e.request.method, phase: log.phase });
  });
  cdp.on('Network.responseReceived', (e) => {
    const h = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
    Object.assign(entry(e.requestId), {
      status: e.response.status, encoding: h['content-encoding'] || '', etag: h.etag || '',
      cached: !!(e.response.fromDiskCache || e.response.fromPrefetchCache),
    });
  });
  // The status line as received: for a navigation or the favicon revalidated with a 304,
  // responseReceived reports the cached 200 it stands for.
  cdp.on('Network.responseReceivedExtraInfo', (e) => { entry(e.requestId).wireStatus = e.statusCode; });
  cdp.on('Network.requestServedFromCache', (e) => { entry(e.requestId).cached = true; });
  cdp.on('Network.loadingFinished', (e) => { entry(e.requestId).bytes = e.encodedDataLength; });
  cdp.on('Network.loadingFailed', (e) => { entry(e.requestId).failed = e.errorText; });
  log.assets = (phase) => [...log.byId.values()].filter((r) => r.phase === phase && r.url && isAsset(r.url));
  log.all = (phase) => [...log.byId.values()].filter((r) => r.phase === phase && r.url && /^https?:/.test(r.url));
  return log;
}

const total = (rs) => rs.reduce((s, r) => s + (r.bytes || 0), 0);
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

/** Wait until the page's assets have all finished (none still open) for a quiet half second. */
async function settle(log, phase) {
  let quiet = 0;
  for (let i = 0; i < 100 && quiet < 5; i++) {
    await sleep(100);
    const open = log.assets(phase).filter((r) => r.bytes === undefined && !r.failed);
    quiet = open.length ? 0 : quiet + 1;
  }
}

test('first load comes compressed, a reload only revalidates: bytes from the network log', TO, async () => {
  const ctx = await br.newContext();
  const page = await ctx.newPage();
  const errs = watchPageErrors(page);
  const log = await networkLog(ctx, page);

  await page.goto(`${srv.origin}/?token=${srv.token}`, { waitUntil: 'load' });
  await page.waitForFunction(() => !!document.getElementById('connectionStatus')?.dataset.state, null,
    { timeout: T(15000) });
  await settle(log, 'first');
  const first = log.assets('first');

  log.phase = 'reload';
  await page.reload({ waitUntil: 'load' });
  await settle(log, 'reload');
  const reload = log.assets('reload');

  // The same files sent plain: what the first load would weigh without compression.
  let plain = 0;
  for (const r of first) {
    const res = await srv.request(new URL(r.url).pathname, { auth: false });
    plain += res.body.length;
  }
  const firstBytes = total(first);
  const reloadBytes = total(reload);
  const table = (rs) => rs.map((r) => `  ${r.wireStatus ?? r.status} ${String(r.bytes).padStart(6)} ${r.encoding || '-'}` +
    `${r.cached ? ' (cache)' : ''} ${new URL(r.url).pathname}`).join('\n');
  console.log(`page weight: first load ${first.length} requests, ${firstBytes} bytes (${kb(firstBytes)}); ` +
    `reload ${reload.length} requests, ${reloadBytes} bytes (${kb(reloadBytes)}); ` +
    `the same files sent plain: ${plain} bytes of bodies (${kb(plain)}); with the sign-in redirect and ` +
    `the API calls: first ${log.all('first').length} requests ${total(log.all('first'))} bytes, ` +
    `reload ${log.all('reload').length} requests ${total(log.all('reload'))} bytes`);
  console.log(`first load:\n${table(first)}\nreload:\n${table(reload)}`);

  assert.ok(first.length >= 5, `the page loads its files (${first.length} requests)`);
  for (const r of first) {
    assert.equal(r.failed, undefined, `${r.url} loads (${r.failed})`);
    assert.equal(r.status, 200, `${r.url} on the first load`);
    assert.match(r.etag, /^"[^"]+"$/, `${r.url} carries a strong ETag`);
  }
  for (const r of first.filter((x) => /\.(html|js|css)$|\/$/.test(new URL(x.url).pathname))) {
    assert.equal(r.encoding, 'gzip', `${r.url} comes gzip-compressed (chromium asks for it)`);
  }
  // gzip leaves a quarter to a third of text; headers add a few hundred bytes per request
  assert.ok(firstBytes < plain / 2,
    `first load ${firstBytes} bytes is well under the ${plain} bytes of the files sent plain`);

  // A reload asks again for every file (no-cache) and gets 304s: headers only.
  assert.ok(reload.length >= first.length - 1, `the reload asks for the page's files (${reload.length})`);
  for (const r of reload) {
    assert.equal(r.failed, undefined, `${r.url} reloads (${r.failed})`);
    assert.ok(r.wireStatus === 304 || r.cached,
      `${r.url} is revalidated (304) or served from cache on reload: ${r.wireStatus} (${r.bytes} bytes)`);
  }
  assert.ok(reloadBytes < firstBytes / 5, `reload ${reloadBytes} bytes is far below the first load ${firstBytes}`);
  errs.check('the page'); // last: the numbers above are worth seeing even when the page is broken
  await br.closeContext(ctx);
});
