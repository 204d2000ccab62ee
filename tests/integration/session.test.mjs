// session.test.mjs - hello, session, resume, settings (validation, all-or-nothing, isolation),
// ping, and the messages a socket may send before hello. docs/protocol.md "WebSocket /ws".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakevlm, startLivevlm, stopAll, sleep, T } from '../lib/harness.mjs';

let fake;
let srv;
const TO = { timeout: T(30000) };

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1', 'fake-vlm-2'] });
  srv = await startLivevlm({ backends: [fake] });
});
after(stopAll);

const SETTING_FIELDS = ['prompt', 'max_tokens', 'temperature', 'interval_ms', 'backend', 'model',
  'frame_max_side', 'jpeg_quality', 'stats_interval_ms', 'debug'];

test('hello creates a session: protocol 1, ids, documented defaults', TO, async () => {
  const c = await srv.connect();
  const s = await c.hello();
  assert.equal(s.type, 'session');
  assert.equal(s.protocol, 1);
  assert.match(s.session_id, /^[0-9a-f]{32}$/);
  assert.match(s.resume_secret, /^[0-9a-f]{64}$/);
  assert.equal(s.resumed, false);
  assert.equal(s.started, false);
  assert.equal(typeof s.metrics, 'object');
  assert.ok(Array.isArray(s.history), 'history is an array');
  for (const f of SETTING_FIELDS) assert.ok(f in s.settings, `settings.${f} present`);
  assert.equal(s.settings.max_tokens, 512);
  assert.equal(s.settings.temperature, 0.7);
  assert.equal(s.settings.interval_ms, 1000);
  assert.equal(s.settings.frame_max_side, 768);
  assert.equal(s.settings.jpeg_quality, 80);
  assert.equal(s.settings.stats_interval_ms, 1000);
  assert.equal(s.settings.debug, false);
  assert.equal(typeof s.settings.prompt, 'string');
  assert.ok(s.settings.prompt.length > 0);

  // The default prompt is the "scene" preset, and the config's defaults match the session's.
  const cfg = (await srv.request('/api/v1/config')).json();
  const scene = cfg.presets.find((p) => p.id === 'scene');
  assert.ok(scene, 'config lists a "scene" preset');
  assert.equal(s.settings.prompt, scene.prompt);
  assert.equal(cfg.defaults.prompt, s.settings.prompt);
  assert.equal(cfg.defaults.max_tokens, s.settings.max_tokens);

  // A second hello makes a different session with different secrets.
  const c2 = await srv.connect();
  const s2 = await c2.hello();
  assert.notEqual(s2.session_id, s.session_id);
  assert.notEqual(s2.resume_secret, s.resume_secret);
  await c.close();
  await c2.close();
});

test('hello with settings applies them', TO, async () => {
  const c = await srv.connect();
  const s = await c.hello({ settings: { prompt: 'Count the red cubes.', interval_ms: 2000, max_tokens: 64 } });
  assert.equal(s.settings.prompt, 'Count the red cubes.');
  assert.equal(s.settings.interval_ms, 2000);
  assert.equal(s.settings.max_tokens, 64);
  await c.close();
});

test('hello with an out-of-range setting never keeps the bad value', TO, async () => {
  const c = await srv.connect();
  const m = await c.hello({ settings: { interval_ms: 5 } }, { allowError: true });
  if (m.type === 'error') {
    assert.equal(m.code, 'invalid_setting');
    assert.equal(m.field, 'interval_ms');
  } else {
    assert.notEqual(m.settings.interval_ms, 5);
  }
  await c.close();
});

test('ping gets pong with the same t', TO, async () => {
  const c = await srv.session();
  c.send({ type: 'ping', t: 12345.5 });
  const p = await c.next('pong');
  assert.equal(p.t, 12345.5);
  c.send({ type: 'ping' });
  await c.next('pong');
  await c.close();
});

test('messages before hello get hello_required and the socket still works', TO, async () => {
  const c = await srv.connect();
  c.send({ type: 'ping', t: 1 });
  let e = await c.nextError();
  assert.equal(e.code, 'hello_required');
  c.send({ type: 'start' });
  e = await c.nextError();
  assert.equal(e.code, 'hello_required');
  c.send({ type: 'update_settings', settings: { max_tokens: 10 } });
  e = await c.nextError();
  assert.equal(e.code, 'hello_required');
  const s = await c.hello();
  assert.equal(s.settings.max_tokens, 512, 'the update sent before hello changed nothing');
  c.send({ type: 'ping', t: 2 });
  assert.equal((await c.next('pong')).t, 2);
  await c.close();
});

test('unknown type gets unknown_type and the session continues', TO, async () => {
  const c = await srv.session();
  c.send({ type: 'no_such_thing', x: 1 });
  const e = await c.nextError();
  assert.equal(e.code, 'unknown_type');
  c.send({ type: 'ping', t: 3 });
  assert.equal((await c.next('pong')).t, 3);
  await c.close();
});

test('resume with the secret restores session id and settings', TO, async () => {
  const a = await srv.session();
  const { session_id: id, resume_secret: secret } = a.session;
  const up = await a.updateSettings({ prompt: 'Remember me after a reconnect.', max_tokens: 77, temperature: 0.25 });
  assert.equal(up.type, 'settings_updated', JSON.stringify(up));
  await a.close();

  const b = await srv.connect();
  const s = await b.hello({ session_id: id, resume_secret: secret });
  assert.equal(s.type, 'session');
  assert.equal(s.session_id, id);
  assert.equal(s.resumed, true);
  assert.equal(s.settings.prompt, 'Remember me after a reconnect.');
  assert.equal(s.settings.max_tokens, 77);
  assert.equal(s.settings.temperature, 0.25);
  await b.close();
});

test('wrong secret or unknown id gives session_not_found and creates nothing', TO, async () => {
  const a = await srv.session();
  const id = a.session.session_id;

  const b = await srv.connect();
  let m = await b.hello({ session_id: id, resume_secret: '0'.repeat(64) }, { allowError: true });
  assert.equal(m.type, 'error');
  assert.equal(m.code, 'session_not_found');
  // No session was made implicitly: the socket still has to say hello.
  b.send({ type: 'ping', t: 1 });
  const e = await b.nextError();
  assert.equal(e.code, 'hello_required');

  m = await b.hello({ session_id: 'f'.repeat(32), resume_secret: a.session.resume_secret }, { allowError: true });
  assert.equal(m.type, 'error');
  assert.equal(m.code, 'session_not_found');

  m = await b.hello({ session_id: id, resume_secret: '' }, { allowError: true });
  assert.equal(m.type, 'error');
  assert.equal(m.code, 'session_not_found');

  const s = await b.hello();
  assert.notEqual(s.session_id, id);
  assert.equal(s.resumed, false);
  await a.close();
  await b.close();
});

// [settings patch, field the error must name]
const INVALID = [
  [{ max_tokens: 0 }, 'max_tokens'],
  [{ max_tokens: 4097 }, 'max_tokens'],
  [{ max_tokens: 'many' }, 'max_tokens'],
  [{ temperature: -0.1 }, 'temperature'],
  [{ temperature: 2.5 }, 'temperature'],
  [{ temperature: 'hot' }, 'temperature'],
  [{ interval_ms: 99 }, 'interval_ms'],
  [{ interval_ms: 3600001 }, 'interval_ms'],
  [{ prompt: '' }, 'prompt'],
  [{ prompt: 'x'.repeat(4001) }, 'prompt'],
  [{ prompt: 'é'.repeat(2001) }, 'prompt'], // 4002 bytes in 2001 characters
  [{ prompt: 42 }, 'prompt'],
  [{ frame_max_side: 63 }, 'frame_max_side'],
  [{ frame_max_side: 4097 }, 'frame_max_side'],
  [{ jpeg_quality: 9 }, 'jpeg_quality'],
  [{ jpeg_quality: 101 }, 'jpeg_quality'],
  [{ stats_interval_ms: 100 }, 'stats_interval_ms'],
  [{ stats_interval_ms: 60001 }, 'stats_interval_ms'],
  [{ debug: 'yes' }, 'debug'],
  [{ model: 'm'.repeat(257) }, 'model'],
  [{ backend: 'no-such-backend' }, 'backend'],
];

const VALID = [
  { max_tokens: 1 }, { max_tokens: 4096 }, { temperature: 0 }, { temperature: 2 },
  { interval_ms: 100 }, { interval_ms: 3600000 }, { stats_interval_ms: 0 }, { stats_interval_ms: 250 },
  { stats_interval_ms: 60000 }, { frame_max_side: 64 }, { frame_max_side: 4096 }, { jpeg_quality: 10 },
  { jpeg_quality: 100 }, { prompt: 'é'.repeat(2000) }, { debug: true }, { debug: false },
  { backend: 'fake' }, { backend: '' }, { model: 'fake-vlm-2' },
];

test('invalid settings: invalid_setting naming the field; nothing changes', TO, async () => {
  const c = await srv.session();
  const before = (await c.updateSettings({ max_tokens: 300 })).settings;
  assert.equal(before.max_tokens, 300);
  for (const [patch, field] of INVALID) {
    const m = await c.updateSettings(patch);
    assert.equal(m.type, 'error', `${JSON.stringify(patch).slice(0, 60)} accepted: ${JSON.stringify(m).slice(0, 200)}`);
    assert.equal(m.code, 'invalid_setting', JSON.stringify(m));
    assert.equal(m.field, field, `error for ${JSON.stringify(patch).slice(0, 60)} names ${m.field}`);
    await sleep(30); // stay well under the 50 messages/s rate limit
  }
  const after = (await c.updateSettings({ max_tokens: 300 })).settings;
  assert.deepEqual(after, before, 'rejected updates left the settings unchanged');
  await c.close();
});

test('valid boundary settings are accepted and echoed in full', TO, async () => {
  const c = await srv.session();
  for (const patch of VALID) {
    const m = await c.updateSettings(patch);
    assert.equal(m.type, 'settings_updated', `${JSON.stringify(patch).slice(0, 60)} refused: ${JSON.stringify(m).slice(0, 200)}`);
    for (const f of SETTING_FIELDS) assert.ok(f in m.settings, `settings_updated carries ${f}`);
    for (const [k, v] of Object.entries(patch)) assert.deepEqual(m.settings[k], v);
    await sleep(30);
  }
  await c.close();
});

test('update_settings is all-or-nothing', TO, async () => {
  const c = await srv.session();
  const m = await c.updateSettings({ max_tokens: 100, prompt: 'half applied?', temperature: 5 });
  assert.equal(m.type, 'error');
  assert.equal(m.code, 'invalid_setting');
  assert.equal(m.field, 'temperature');
  const s = (await c.updateSettings({ jpeg_quality: 80 })).settings;
  assert.equal(s.max_tokens, 512, 'max_tokens from the rejected update was not applied');
  assert.notEqual(s.prompt, 'half applied?', 'prompt from the rejected update was not applied');
  assert.equal(s.temperature, 0.7);
  await c.close();
});

test('settings are isolated between sessions', TO, async () => {
  const a = await srv.session();
  const b = await srv.session();
  const ua = await a.updateSettings({ prompt: 'Only session A asks this.', max_tokens: 11 });
  assert.equal(ua.type, 'settings_updated');
  const ub = await b.updateSettings({ temperature: 0.1 });
  assert.equal(ub.type, 'settings_updated');
  assert.equal(ub.settings.max_tokens, 512);
  assert.notEqual(ub.settings.prompt, 'Only session A asks this.');
  assert.equal(ub.settings.temperature, 0.1);
  const ua2 = await a.updateSettings({ interval_ms: 1500 });
  assert.equal(ua2.settings.temperature, 0.7, "B's temperature did not leak into A");
  assert.equal(ua2.settings.prompt, 'Only session A asks this.');
  assert.equal(ua2.settings.max_tokens, 11);
  // The other socket gets none of A's updates.
  assert.equal(b.seen('settings_updated').length, 1);
  await a.close();
  await b.close();
});

test('gpu_stats arrive every stats_interval_ms, and not at all with 0', TO, async () => {
  const c = await srv.session({ settings: { stats_interval_ms: 250 } });
  const first = await c.next('gpu_stats', { timeoutMs: T(3000) });
  const st = first.stats;
  for (const f of ['hostname', 'cpu_model', 'cpu_percent', 'ram_used_gb', 'ram_total_gb', 'ram_percent', 'platform',
    'gpu_name', 'gpu_percent', 'vram_used_gb', 'vram_total_gb', 'vram_percent', 'temp_c', 'power_w', 'history']) {
    assert.ok(f in st, `stats.${f} present`);
  }
  assert.ok(st.ram_total_gb > 0);
  for (const k of ['cpu_util', 'ram_used', 'gpu_util', 'vram_used']) {
    assert.ok(Array.isArray(st.history[k]) && st.history[k].length <= 60, `history.${k}`);
  }
  await sleep(1300);
  const n = c.seen('gpu_stats').length;
  assert.ok(n >= 3 && n <= 9, `about one gpu_stats per 250 ms (got ${n} in ~1.3 s)`);
  // The first reading may have no CPU figure yet (it needs two samples); later ones do.
  const last = c.seen('gpu_stats').at(-1).stats;
  assert.equal(typeof last.cpu_percent, 'number', `cpu_percent in a later sample: ${JSON.stringify(last.cpu_percent)}`);
  const up = await c.updateSettings({ stats_interval_ms: 0 });
  assert.equal(up.type, 'settings_updated');
  await sleep(100);
  const before = c.seen('gpu_stats').length;
  await sleep(1200);
  assert.equal(c.seen('gpu_stats').length, before, 'no gpu_stats with stats_interval_ms 0');
  await c.close();
});

test('a socket that never says hello is closed with 1008 after about 10 s', { timeout: T(30000) }, async () => {
  const c = await srv.connect();
  const t0 = Date.now();
  let timer;
  const info = await Promise.race([
    c.closed,
    new Promise((res) => { timer = setTimeout(() => res(null), T(16000)); }),
  ]);
  clearTimeout(timer);
  assert.ok(info, 'socket still open 16 s after connecting without hello');
  assert.equal(info.code, 1008);
  assert.ok(Date.now() - t0 >= 8000, `closed after ${Date.now() - t0} ms, expected about 10 s`);
});
