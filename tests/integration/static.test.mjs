// static.test.mjs - the embedded web UI on the wire (issue 10, point 8; docs/protocol.md "HTTP
// routes"): every file index.html loads (and the modules those import) comes gzip-compressed
// when the client asks for it and plain when it does not or says q=0, carries a strong ETag per
// representation, answers If-None-Match with a bodiless 304, answers HEAD with GET's headers;
// and the bytes of a first load and of a reload, counted on one keep-alive connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { startFakevlm, startLivevlm, stopAll, rawConnect, parseHttpResponses, T } from '../lib/harness.mjs';

const TO = { timeout: T(30000) };
const BROWSER_AE = 'gzip, deflate, br, zstd';
let srv;
let assets; // ['/', '/style.css', '/app.js', ...]: what a browser fetches for the page

before(async () => {
  const fake = await startFakevlm({ models: ['fake-vlm-1'] });
  srv = await startLivevlm({ backends: [fake] });
  assets = await pageAssets();
});
after(stopAll);

const get = (p, headers = {}, method = 'GET') => srv.request(p, { auth: false, headers, method });

/** '/', the same-origin files index.html names (src=, href=), and every module those import,
 * transitively (import ... from './x.js'), as a browser would fetch them. */
async function pageAssets() {
  const html = (await get('/')).text;
  const found = ['/'];
  const add = (p) => { if (!found.includes(p)) found.push(p); };
  for (const m of html.matchAll(/\s(?:src|href)="(\/[^"#?]*)"/g)) add(m[1]);
  for (let i = 1; i < found.length; i++) {
    if (!found[i].endsWith('.js')) continue;
    const js = (await get(found[i])).text;
    for (const m of js.matchAll(/\b(?:import|export)\b[^'";]*?\bfrom\s*['"]\.\/([^'"]+)['"]/g)) add(`/${m[1]}`);
    for (const m of js.matchAll(/\bimport\s*\(\s*['"]\.\/([^'"]+)['"]\s*\)/g)) add(`/${m[1]}`);
  }
  return found;
}

const isText = (type) => /^(text\/|application\/(json|manifest\+json|javascript))|^image\/svg/.test(type || '');

test('the page loads a handful of files, all found', TO, async () => {
  assert.ok(assets.length >= 5 && assets.includes('/style.css') && assets.includes('/app.js'),
    `index.html and its modules name the page's files: ${assets.join(' ')}`);
  for (const p of assets) assert.equal((await get(p)).status, 200, p);
});

test('gzip when the client asks for it, plain when it does not or says q=0', TO, async () => {
  for (const p of assets) {
    const plain = await get(p);
    assert.equal(plain.headers['content-encoding'], undefined, `${p}: no Accept-Encoding, no coding`);
    const gz = await get(p, { 'Accept-Encoding': BROWSER_AE });
    assert.equal(gz.headers['content-type'], plain.headers['content-type'], p);
    if (!isText(plain.headers['content-type'])) continue;
    assert.equal(gz.headers['content-encoding'], 'gzip', `${p}: a browser's Accept-Encoding gets gzip`);
    assert.equal(Number(gz.headers['content-length']), gz.body.length, p);
    assert.ok(gz.body.length < plain.body.length, `${p}: ${gz.body.length} < ${plain.body.length} bytes`);
    assert.deepEqual(zlib.gunzipSync(gz.body), plain.body, `${p}: the gzip copy decodes to the file`);
    for (const r of [plain, gz]) assert.match(r.headers.vary || '', /accept-encoding/i, `${p}: Vary`);
    assert.notEqual(gz.headers.etag, plain.headers.etag, `${p}: another representation, another ETag`);
  }
  const cases = [
    ['gzip', 'gzip'], ['GZIP;q=0.5', 'gzip'], ['*', 'gzip'], ['br;q=1, gzip;q=0.1', 'gzip'],
    ['gzip;q=0', undefined], ['gzip;q=0.0, deflate', undefined], ['*;q=0', undefined],
    ['gzip;q=0, *', undefined], ['identity', undefined], ['br, zstd', undefined], ['', undefined],
    ['gzip;q=2', undefined], ['gzipx', undefined],
  ];
  for (const [ae, want] of cases) {
    const r = await get('/app.js', { 'Accept-Encoding': ae });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-encoding'], want, `Accept-Encoding: ${JSON.stringify(ae)}`);
  }
});

test('strong ETag round trip: If-None-Match gives 304 without a body; another tag gives 200', TO, async () => {
  for (const p of assets) {
    for (const headers of [{}, { 'Accept-Encoding': BROWSER_AE }]) {
      const r = await get(p, headers);
      const etag = r.headers.etag;
      assert.match(etag || '', /^"[0-9a-f]{32}"$/, `${p}: a strong ETag`);
      assert.equal(r.headers['cache-control'], 'no-cache', `${p}: revalidated on every use`);
      const again = await get(p, headers);
      assert.equal(again.headers.etag, etag, `${p}: the same bytes, the same tag`);

      const nm = await get(p, { ...headers, 'If-None-Match': etag });
      assert.equal(nm.status, 304, `${p} ${JSON.stringify(headers)}: If-None-Match its own tag`);
      assert.equal(nm.body.length, 0, `${p}: a 304 has no body`);
      assert.equal(nm.headers.etag, etag);
      assert.equal(nm.headers['cache-control'], 'no-cache');
      assert.equal(nm.headers.vary, r.headers.vary, `${p}: the 304 repeats Vary`);
      // weak comparison for If-None-Match; a list; "*"
      assert.equal((await get(p, { ...headers, 'If-None-Match': `W/${etag}` })).status, 304);
      assert.equal((await get(p, { ...headers, 'If-None-Match': `"stale", ${etag}` })).status, 304);
      assert.equal((await get(p, { ...headers, 'If-None-Match': '*' })).status, 304);
      const stale = await get(p, { ...headers, 'If-None-Match': '"0123456789abcdef0123456789abcdef"' });
      assert.equal(stale.status, 200, `${p}: another tag gets the file`);
      assert.equal(stale.body.length, r.body.length);
      assert.equal((await get(p, { ...headers, 'If-None-Match': etag.slice(1, -1) })).status, 200,
        `${p}: an unquoted tag is malformed, so the file is sent`);
    }
  }
  // The tag of the gzip copy does not validate a plain copy: a client that stops taking gzip
  // gets the plain bytes, not a 304 for bytes it cannot read.
  const gzTag = (await get('/app.js', { 'Accept-Encoding': 'gzip' })).headers.etag;
  const r = await get('/app.js', { 'If-None-Match': gzTag });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-encoding'], undefined);
});

test('HEAD answers with the headers of GET and no body', TO, async () => {
  const c = await rawConnect({ port: srv.port });
  try {
    for (const ae of ['', `accept-encoding: ${BROWSER_AE}\r\n`]) {
      for (const p of ['/', '/app.js', '/style.css']) {
        const before = c.data().length;
        c.write(`HEAD ${p} HTTP/1.1\r\nhost: x\r\n${ae}\r\nGET ${p} HTTP/1.1\r\nhost: x\r\n${ae}\r\n`);
        const both = (buf) => parseHttpResponses(buf.subarray(before), ['HEAD', 'GET']).responses.length === 2;
        assert.ok(await c.waitFor(both, T(5000)), `${p}: HEAD then GET answered`);
        const { responses: [head, full], rest } = parseHttpResponses(c.data().subarray(before), ['HEAD', 'GET']);
        assert.equal(rest.length, 0, `${p}: nothing after the GET's body (HEAD sent none)`);
        assert.equal(head.status, 200);
        assert.equal(head.body.length, 0);
        for (const h of ['content-length', 'content-type', 'content-encoding', 'etag', 'vary', 'cache-control']) {
          assert.equal(head.headers[h], full.headers[h], `${p} ${ae.trim() || '(no accept-encoding)'}: HEAD's ${h}`);
        }
        assert.equal(Number(full.headers['content-length']), full.body.length);
      }
    }
  } finally {
    c.destroy();
  }
});

/** Fetch every path in order on one keep-alive connection; the bytes received for each answer
 * (status line, headers and body, as on the wire) and its status. */
async function wireLoad(paths, headersFor) {
  const c = await rawConnect({ port: srv.port });
  const out = [];
  try {
    let offset = 0;
    for (const p of paths) {
      const extra = Object.entries(headersFor(p)).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      c.write(`GET ${p} HTTP/1.1\r\nhost: 127.0.0.1:${srv.port}\r\n${extra}\r\n`);
      const one = (buf) => parseHttpResponses(buf.subarray(offset), ['GET']).responses.length >= 1;
      assert.ok(await c.waitFor(one, T(5000)), `${p}: answered`);
      const seg = c.data().subarray(offset);
      const { responses: [r], rest } = parseHttpResponses(seg, ['GET']);
      const bytes = seg.length - rest.length;
      out.push({ path: p, status: r.status, bytes, etag: r.headers.etag });
      offset += bytes;
    }
  } finally {
    c.destroy();
  }
  return out;
}

test('bytes of a first load and of a reload of every file the page loads', TO, async () => {
  const sum = (rs) => rs.reduce((s, r) => s + r.bytes, 0);
  const plain = await wireLoad(assets, () => ({}));
  const first = await wireLoad(assets, () => ({ 'accept-encoding': BROWSER_AE }));
  const tags = Object.fromEntries(first.map((r) => [r.path, r.etag]));
  const reload = await wireLoad(assets, (p) => ({ 'accept-encoding': BROWSER_AE, 'if-none-match': tags[p] }));
  console.log(`static weight (${assets.length} files, bytes on the wire): uncompressed ${sum(plain)}, ` +
    `first load ${sum(first)}, reload ${sum(reload)}`);
  for (const r of [...plain, ...first]) assert.equal(r.status, 200, r.path);
  for (const r of reload) assert.equal(r.status, 304, `${r.path} on reload`);
  assert.ok(sum(first) < sum(plain) / 2, `first load ${sum(first)} under half of uncompressed ${sum(plain)}`);
  assert.ok(sum(reload) < sum(first) / 10, `reload ${sum(reload)} far below the first load ${sum(first)}`);
  for (const r of reload) assert.ok(r.bytes < 512, `${r.path}: a 304 is headers only (${r.bytes} bytes)`);
});
