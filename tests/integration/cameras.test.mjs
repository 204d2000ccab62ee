// cameras.test.mjs - admin-defined RTSP cameras end to end (docs/protocol.md "Cameras",
// docs/operations.md "Cameras"): the real livevlm with a real test camera (tests/tools/rtspcam,
// H.264 over RTSP with Basic auth) and fakevlm. Two sessions from two addresses watch one camera
// with the same prompt and are both answered about the same samples; the camera list, snapshots
// and metrics; the session setting `source` refused for a camera nobody defined; a file:// camera
// refused at start; the camera killed and brought back on the same port (camera_state reconnecting
// with a reason, then live, then answers again); the camera's password nowhere but on the command
// line: not in an API answer, /metrics, a WebSocket message or the server's log. A session saved
// watching a camera that the restarted server no longer defines hears why and falls back to the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  startFakevlm, startLivevlm, startRtspcam, spawnLivevlm, stopAll, makeTempDir, parseFakeAnswer, sha8, waitUntil,
  T, JPEG_320,
} from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
const USER = 'admin';
const PASS = 'Pw7f3aQx9c'; // searched for in everything the server says
const WRONG = 'Wr0ngPw4e1b'; // a second camera's (refused) password: searched for too
const PROMPT = 'What is on the test card?';
const INTERVAL_MS = 1500; // >= 1 s with a 1 s GOP: the camera decodes keyframes only

let fake, cam, srv;
const clients = [];

before(async () => {
  fake = await startFakevlm({ slots: 8, ttftMs: 20, tokenMs: 5, tokens: 6 });
  cam = await startRtspcam({ size: '1280x720', fps: 30, gop: 30, user: USER, pass: PASS });
  const url = cam.url.replace('rtsp://', `rtsp://${USER}:${PASS}@`);
  // In the sanitizer build, full malloc stacks: GLib's quark block that gst_init leaves behind on
  // purpose is recognised by its _dl_init frame (src/main.c, __lsan_default_suppressions)
  const asan = [process.env.ASAN_OPTIONS, 'fast_unwind_on_malloc=0'].filter(Boolean).join(':');
  const wrong = cam.url.replace('rtsp://', `rtsp://${USER}:${WRONG}@`);
  srv = await startLivevlm({
    backends: [fake], args: ['--camera', `lobby=${url}`, '--camera', `locked=${wrong}`], env: { ASAN_OPTIONS: asan },
  });
});

after(async () => {
  for (const c of clients) await c.close();
  await stopAll();
});

async function watcher(opts = {}) {
  const c = await srv.connect(opts);
  clients.push(c);
  await c.hello({ settings: { source: 'camera:lobby', prompt: PROMPT, interval_ms: INTERVAL_MS } });
  await c.start();
  return c;
}

async function cameras() {
  const r = await srv.request('/api/v1/cameras');
  assert.equal(r.status, 200, r.text);
  return r.json().cameras;
}

/** Width and height from a JPEG's SOF marker. */
function jpegSize(buf) {
  let i = 2;
  while (i + 9 < buf.length) {
    assert.equal(buf[i], 0xff, 'JPEG marker expected');
    const marker = buf[i + 1];
    const len = buf.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) };
    }
    i += 2 + len;
  }
  throw new Error('no SOF marker in the snapshot');
}

test('two sessions from two addresses watch one camera: both answered, about the same samples', TO, async () => {
  const a = await watcher();
  const b = await watcher({ localAddress: '127.0.0.2' });
  for (const c of [a, b]) {
    const st = await c.next('camera_state', { timeoutMs: T(5000) });
    assert.equal(st.camera, 'lobby');
    assert.ok(['starting', 'live'].includes(st.state), JSON.stringify(st));
  }
  const frames = { a: new Set(), b: new Set() };
  for (let i = 0; i < 3; i++) {
    for (const [name, c] of [['a', a], ['b', b]]) {
      const start = await c.next('answer_start', { timeoutMs: T(15000) });
      assert.ok(Number.isInteger(start.camera_frame) && start.camera_frame > 0, JSON.stringify(start));
      frames[name].add(start.camera_frame);
      const ans = await c.nextAnswer({ timeoutMs: T(15000) });
      const f = parseFakeAnswer(ans.text);
      assert.ok(f, ans.text);
      assert.equal(f.prompt, sha8(PROMPT));
      // the camera's own size (nothing halves a picture under 1920 px)
      assert.deepEqual([f.width, f.height], [1280, 720], ans.text);
    }
  }
  // one sample serves every watcher asking within the fastest interval
  const common = [...frames.a].filter((s) => frames.b.has(s));
  assert.ok(common.length > 0, `no sample shared: a ${[...frames.a]} b ${[...frames.b]}`);

  const list = await waitUntil(async () => {
    const l = await cameras();
    return l[0].state === 'live' && l[0].decode === 'keyframes' ? l : null;
  }, { timeoutMs: T(10000), what: 'lobby live, decoding keyframes only' });
  const lobby = list[0];
  assert.deepEqual(list.map((c) => c.id), ['lobby', 'locked']);
  assert.equal(list[1].state, 'idle', 'nobody watches it: not opened');
  assert.equal(lobby.id, 'lobby');
  assert.equal(lobby.watchers, 2);
  assert.equal(lobby.codec, 'h264');
  assert.equal(lobby.width, 1280);
  assert.equal(lobby.height, 720);
  assert.equal(lobby.fps, 30);
  assert.equal(lobby.url, cam.url, 'the URL is shown without its credentials');
  assert.equal(lobby.reason, '');
  assert.ok(lobby.last_frame_age_ms !== null && lobby.last_frame_age_ms < 5000, JSON.stringify(lobby));

  // the page gets no credits for a camera session
  assert.equal(a.seen('credit').length + b.seen('credit').length, 0);
});

test('snapshot: the latest sample as a JPEG of the camera size, and ?seq= an exact held sample', TO, async () => {
  const r = await srv.request('/api/v1/cameras/lobby/snapshot');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['content-type'], 'image/jpeg');
  assert.match(String(r.headers['cache-control']), /no-store/);
  const seq = Number(r.headers['x-frame-seq']);
  assert.ok(seq > 0);
  assert.deepEqual(jpegSize(r.body), { width: 1280, height: 720 });

  // an answer's camera_frame names a sample still held (the last 8)
  const c = clients[0];
  const start = await c.next('answer_start', { timeoutMs: T(15000) });
  const exact = await srv.request(`/api/v1/cameras/lobby/snapshot?seq=${start.camera_frame}`);
  assert.equal(exact.status, 200);
  assert.equal(Number(exact.headers['x-frame-seq']), start.camera_frame);
  // a sample long gone gives the latest
  const gone = await srv.request('/api/v1/cameras/lobby/snapshot?seq=4000000000');
  assert.equal(gone.status, 200);
  assert.ok(Number(gone.headers['x-frame-seq']) >= start.camera_frame);

  const unknown = await srv.request('/api/v1/cameras/nope/snapshot');
  assert.equal(unknown.status, 404);
  assert.ok(unknown.json().error.code);
  const anon = await srv.request('/api/v1/cameras', { auth: false });
  assert.equal(anon.status, 401);
});

test('a camera nobody defined: invalid_setting on field source', TO, async () => {
  const c = await srv.connect();
  clients.push(c);
  const err = await c.hello({ settings: { source: 'camera:nope' } }, { allowError: true });
  assert.equal(err.type, 'error');
  assert.equal(err.code, 'invalid_setting');
  assert.equal(err.field, 'source');
  await c.hello({});
  const upd = await c.updateSettings({ source: 'camera:nope' });
  assert.equal(upd.code, 'invalid_setting');
  assert.equal(upd.field, 'source');
  const bad = await c.updateSettings({ source: 'rtsp://127.0.0.1/x' });
  assert.equal(bad.code, 'invalid_setting');
  assert.equal(bad.field, 'source');
  const ok = await c.updateSettings({ source: 'camera:lobby' });
  assert.equal(ok.type, 'settings_updated');
  assert.equal(ok.settings.source, 'camera:lobby');
});

test('a restored session whose camera is gone from the config: told why, back on the page, frames again', TO, async () => {
  // One config dir (one state file) for two servers: the first defines the camera, the second not.
  const configDir = path.join(makeTempDir('camgone'), 'config');
  const url = cam.url.replace('rtsp://', `rtsp://${USER}:${PASS}@`);
  const a = await startLivevlm({ backends: [fake], configDir, args: ['--camera', `gone=${url}`] });
  const c = await a.connect();
  await c.hello({ settings: { source: 'camera:gone', prompt: PROMPT, interval_ms: 300 } });
  await c.start();
  const id = c.session.session_id;
  const secret = c.session.resume_secret;
  await c.close();
  await a.stop(); // SIGTERM: the session is saved with source camera:gone, started
  const b = await startLivevlm({ backends: [fake], configDir });
  try {
    const r = await b.connect();
    const m = await r.hello({ session_id: id, resume_secret: secret });
    assert.equal(m.resumed, true);
    assert.equal(m.settings.source, 'camera:gone', 'restored as it was saved');
    const err = await r.nextError('invalid_setting');
    assert.equal(err.field, 'source');
    assert.match(err.message, /camera 'gone' is not configured/);
    const upd = await r.next('settings_updated');
    assert.equal(upd.settings.source, 'page');
    // the page is the source again: it is asked for frames and they are answered
    r.autoFeed(JPEG_320());
    const ans = await r.nextAnswer({ timeoutMs: T(15000) });
    assert.equal(parseFakeAnswer(ans.text)?.prompt, sha8(PROMPT));
    r.autoFeed(null);
    await r.close();
    // and it stays "page" for the next resume: no second error
    const r2 = await b.connect();
    const m2 = await r2.hello({ session_id: id, resume_secret: secret });
    assert.equal(m2.settings.source, 'page');
    await r2.expectNone('error', T(500));
    await r2.close();
  } finally {
    await b.stop();
  }
});

test('the replaced tool\'s /api/rtsp/* (a URL from the client): 410 saying where cameras come from', TO, async () => {
  const start = await srv.request('/api/rtsp/start', { body: { rtsp_url: 'rtsp://127.0.0.1:1/x', session_id: 's' } });
  assert.equal(start.status, 410, start.text);
  assert.equal(start.json().error.code, 'rtsp_url_not_accepted');
  assert.match(start.json().error.message, /--camera ID=URL/);
  assert.match(start.json().error.message, /\/api\/v1\/cameras/);
  const status = await srv.request('/api/rtsp/status');
  assert.equal(status.status, 410, status.text);
  // still behind the credential: nothing about cameras for someone without it
  const anon = await srv.request('/api/rtsp/status', { auth: false });
  assert.equal(anon.status, 401, anon.text);
});

test('a camera that refuses the credentials: failed at once, with the reason and no password', TO, async () => {
  const c = await srv.connect();
  clients.push(c);
  await c.hello({ settings: { source: 'camera:locked', prompt: PROMPT, interval_ms: INTERVAL_MS } });
  await c.start();
  const st = await c.next('camera_state', { where: (m) => m.state === 'failed', timeoutMs: T(15000) });
  assert.equal(st.camera, 'locked');
  assert.match(st.reason, /unauthori[sz]ed/i);
  const l = (await cameras()).find((x) => x.id === 'locked');
  assert.equal(l.state, 'failed');
  assert.equal(l.watchers, 1);
  assert.equal(l.url, cam.url);
  const snap = await srv.request('/api/v1/cameras/locked/snapshot');
  assert.equal(snap.status, 503);
  assert.equal(snap.json().error.code, 'no_frame');
  await c.stop();
  await waitUntil(async () => (await cameras()).find((x) => x.id === 'locked').state === 'idle',
    { timeoutMs: T(5000), what: 'locked idle once nobody watches (a broken camera does not linger)' });
});

test('a file:// camera: the server refuses to start (exit 2) and says why', TO, async () => {
  const dir = makeTempDir('livevlm-badcam');
  const r = await spawnLivevlm(['serve', '--no-tls', '--port', '0', '--config-dir', path.join(dir, 'cfg'),
    '--camera', 'x=file:///etc/passwd'], { dir, expectExit: { code: 2 } });
  assert.ok(await r.proc.waitExit(T(10000)), 'livevlm did not exit');
  assert.equal(r.proc.exitCode, 2);
  assert.match(r.proc.logText(), /--camera: only rtsp:\/\/ and rtsps:\/\//);
});

test('camera lost and back on the same port: reconnecting with a reason, then live, then answers', TO, async () => {
  const [a, b] = clients;
  await cam.stop();
  for (const c of [a, b]) {
    const st = await c.next('camera_state', { where: (m) => m.state === 'reconnecting', timeoutMs: T(15000) });
    assert.equal(st.camera, 'lobby');
    assert.ok(st.reason.length > 0, 'a reason is given');
  }
  const l = await cameras();
  assert.ok(['reconnecting', 'failed'].includes(l[0].state), JSON.stringify(l[0]));
  assert.ok(l[0].reason.length > 0);

  cam = await startRtspcam({ port: cam.port, size: '1280x720', fps: 30, gop: 30, user: USER, pass: PASS });
  for (const c of [a, b]) {
    await c.next('camera_state', { where: (m) => m.state === 'live', timeoutMs: T(40000) });
    c.drain('vlm_response');
    c.drain('answer_start');
    const start = await c.next('answer_start', { timeoutMs: T(15000) });
    assert.ok(start.camera_frame > 0);
    const ans = await c.nextAnswer({ timeoutMs: T(15000) });
    const f = parseFakeAnswer(ans.text);
    assert.deepEqual(f && [f.width, f.height], [1280, 720], ans.text);
  }
  const m = (await srv.request('/metrics')).text;
  assert.match(m, /livevlm_camera_state\{camera="lobby",state="live"\} 1/);
  assert.match(m, /livevlm_camera_reconnects_total\{camera="lobby"\} [1-9]/);
  assert.match(m, /livevlm_camera_watchers\{camera="lobby"\} 2/);
  assert.match(m, /livevlm_camera_state\{camera="locked",state="idle"\} 1/);
});

test('two watchers, one RTSP client: the camera is opened once however many sessions watch it', TO, async () => {
  // the camera restarted by the test above has been watched by both sessions since
  const opens = [...cam.proc.logText().matchAll(/client connected, (\d+) open/g)].map((m) => Number(m[1]));
  assert.ok(opens.length >= 1, cam.proc.logText());
  assert.equal(Math.max(...opens), 1, `at most one RTSP client at a time: ${opens.join(', ')}`);
  assert.equal((await cameras()).find((c) => c.id === 'lobby').watchers, 2);
});

test('a camera that stalls with its connection open: the watchdog restarts it, and it comes back', TO, async () => {
  const [a] = clients;
  cam.proc.child.kill('SIGSTOP'); // the socket stays open, nothing more arrives
  try {
    const st = await a.next('camera_state', { where: (m) => m.state === 'reconnecting', timeoutMs: T(25000) });
    assert.match(st.reason, /no picture/);
  } finally {
    cam.proc.child.kill('SIGCONT');
  }
  await a.next('camera_state', { where: (m) => m.state === 'live', timeoutMs: T(45000) });
  a.drain('vlm_response');
  const ans = await a.nextAnswer({ timeoutMs: T(15000) });
  assert.deepEqual((f => f && [f.width, f.height])(parseFakeAnswer(ans.text)), [1280, 720], ans.text);
});

test('the camera password is nowhere: API answers, /metrics, WebSocket messages, the server log', TO, async () => {
  const bodies = [
    (await srv.request('/api/v1/cameras')).text,
    (await srv.request('/api/v1/config')).text,
    (await srv.request('/metrics')).text,
    ...clients.map((c) => JSON.stringify(c.log)),
  ];
  for (const text of bodies) {
    for (const pw of [PASS, WRONG]) assert.ok(!text.includes(pw), `a password leaked: ${text.slice(0, 200)}`);
  }
  // camera_state messages did reach the watchers (the search above saw them)
  assert.ok(clients[0].seen('camera_state').length >= 3);
  const log = fs.readFileSync(srv.proc.logPath, 'utf8');
  // the harness writes the command line (with the URL the admin gave) as the log's first line
  const served = log.split('\n').filter((l) => !l.startsWith('### '));
  assert.ok(served.length > 10);
  assert.ok(served.every((l) => !l.includes(PASS) && !l.includes(WRONG)), 'a password is in the server log');
  assert.ok(log.includes('camera locked: failed'));
  assert.ok(log.includes('camera lobby: live'));
});
