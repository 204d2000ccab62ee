// edges.test.mjs - careless and hostile edges (issue 12, points 5, 6, 7, 9): flags over the
// environment over the config file whatever the order, --host refused when it cannot be bound as
// given, the token URL only on standard output, a model no backend serves refused as
// invalid_setting, a text flood answered with few rate_limited errors (and closed 1008 when
// extreme), and the per-address session cap counting live sessions (reloads, NAT classrooms).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  startFakevlm, startLivevlm, stopAll, spawnLivevlm, listeningAddresses, makeTempDir, waitUntil,
  sleep, T, JPEG_320, LIVEVLM_BIN,
} from '../lib/harness.mjs';

let fake;
const TO = { timeout: T(60000) };

before(async () => {
  fake = await startFakevlm({ models: ['fake-vlm-1', 'fake-vlm-2'], slots: 16 });
});
after(stopAll);

// ---------------------------------------------------------------------------------------------
// configuration: precedence and --host

/** Start `serve` with exactly these extra args (plus a port file, no TLS, no detection) and
 * resolve {proc, port, addrs}: the addresses it actually listens on. */
async function serveRaw(extra, { env, dir } = {}) {
  dir = dir || makeTempDir('edges-cfg');
  const portFile = path.join(dir, `port-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  const args = ['serve', '--port', '0', '--port-file', portFile, '--no-tls', '--no-detect',
    '--config-dir', path.join(dir, 'config'), ...extra];
  const r = await spawnLivevlm(args, { dir, env, logName: `livevlm-${path.basename(portFile)}.log` });
  // not the harness's waitForPort: that one connects to 127.0.0.1, and these may listen elsewhere
  const port = await waitUntil(() => {
    if (r.proc.exited) throw new Error(`livevlm ${r.proc.describeExit()}:\n${r.proc.logTail(20)}`);
    const m = /^(\d+)\s*$/.exec(fs.existsSync(portFile) ? fs.readFileSync(portFile, 'utf8') : '');
    return m && Number(m[1]) > 0 && listeningAddresses(r.proc.pid).length ? Number(m[1]) : null;
  }, { timeoutMs: T(10000), what: `livevlm ${extra.join(' ')} listening` });
  return { ...r, port, addrs: listeningAddresses(r.proc.pid) };
}

function writeConfig(dir, obj) {
  const f = path.join(dir, 'livevlm.json');
  fs.writeFileSync(f, JSON.stringify(obj));
  return f;
}

function canConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok) => { s.destroy(); resolve(ok); };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

test('flags win over the config file whichever comes first', TO, async () => {
  const dir = makeTempDir('edges-prec');
  const file = writeConfig(dir, { host: '127.0.0.2', 'log-level': 'warn' });
  for (const order of [['--host', '127.0.0.3', '--config', file], ['--config', file, '--host', '127.0.0.3']]) {
    const { proc, port, addrs } = await serveRaw(order, { dir });
    try {
      assert.deepEqual(addrs, [`127.0.0.3:${port}`], `${order.join(' ')}: listens on ${addrs}`);
      assert.ok(await canConnect('127.0.0.3', port), 'the flag\'s address accepts');
      assert.equal(await canConnect('127.0.0.2', port), false, 'the file\'s address does not');
    } finally {
      await proc.stop();
    }
  }
});

test('the environment ranks between the config file and the flags', TO, async () => {
  const dir = makeTempDir('edges-env');
  const file = writeConfig(dir, { host: '127.0.0.2' });
  const env = { LIVEVLM_HOST: '127.0.0.4' };
  let s = await serveRaw(['--config', file], { dir, env });
  try {
    assert.deepEqual(s.addrs, [`127.0.0.4:${s.port}`], `environment over file: ${s.addrs}`);
  } finally {
    await s.proc.stop();
  }
  s = await serveRaw(['--config', file, '--host', '127.0.0.3'], { dir, env });
  try {
    assert.deepEqual(s.addrs, [`127.0.0.3:${s.port}`], `flag over environment: ${s.addrs}`);
  } finally {
    await s.proc.stop();
  }
});

for (const [host, expect] of [
  ['127.1', /--host '127\.1'.*four numbers/],
  ['127.0.0.1:80', /--host '127\.0\.0\.1:80'.*--port/],
  ['[::1]:8090', /--host '\[::1\]:8090'.*--port/],
  ['gateway.example', /--host 'gateway\.example'.*expected/],
]) {
  test(`--host ${host} is refused at start with a clear message`, TO, async () => {
    const { proc } = await spawnLivevlm(['serve', '--host', host, '--port', '0', '--no-tls', '--no-detect'],
      { expectExit: { code: 'nonzero' } });
    assert.ok(await proc.waitExit(T(5000)), 'exits by itself');
    assert.notEqual(proc.exitCode, 0, 'with a failure status');
    const log = proc.logText().split('\n').filter((l) => !l.startsWith('###')).join('\n'); // not the command line
    assert.match(log, expect);
    assert.doesNotMatch(log, /listening/, 'never claims to listen');
    assert.equal(proc.outText(), '', 'prints no URL');
  });
}

test('the same check applies to LIVEVLM_HOST and to "host" in the config file', TO, async () => {
  const dir = makeTempDir('edges-hostsrc');
  let r = await spawnLivevlm(['serve', '--port', '0', '--no-tls', '--no-detect'],
    { dir, env: { LIVEVLM_HOST: '127.0.0.1:8090' }, expectExit: { code: 'nonzero' } });
  assert.ok(await r.proc.waitExit(T(5000)));
  assert.notEqual(r.proc.exitCode, 0);
  assert.match(r.proc.logText(), /LIVEVLM_HOST '127\.0\.0\.1:8090'.*--port/);
  const file = writeConfig(dir, { host: '127.1' });
  r = await spawnLivevlm(['serve', '--config', file, '--port', '0', '--no-tls', '--no-detect'], { dir, logName: 'file.log',
    expectExit: { code: 'nonzero' } });
  assert.ok(await r.proc.waitExit(T(5000)));
  assert.notEqual(r.proc.exitCode, 0);
  assert.ok(r.proc.logText().includes(file), 'the message names the file');
});

// ---------------------------------------------------------------------------------------------
// the token URL

test('the URL with the token goes to standard output only, and only when asked or on a terminal', TO, async () => {
  const dir = makeTempDir('edges-token');
  const cfgDir = path.join(dir, 'config');
  const readToken = () => fs.readFileSync(path.join(cfgDir, 'token'), 'utf8').trim();
  // stdout is a file here, not a terminal: the URL without the token
  let s = await serveRaw(['--host', '127.0.0.1', '--auth', 'token'], { dir });
  try {
    const token = readToken();
    await waitUntil(() => /Open in a browser/.test(s.proc.outText()), { what: 'the URL on stdout' });
    assert.match(s.proc.outText(), new RegExp(`http://localhost:${s.port}/\\s`));
    assert.ok(!s.proc.outText().includes(token), 'no token on a stdout that is not a terminal');
    assert.match(s.proc.outText(), /livevlm token show/);
    assert.match(s.proc.logText(), /listening on 127\.0\.0\.1/);
    assert.match(s.proc.logText(), /standard output/, 'the log says where the URL is');
    assert.ok(!s.proc.logText().includes(token), 'the log never carries the token');
  } finally {
    await s.proc.stop();
  }
  // --print-token-url: on stdout with the token; still not in the log
  s = await serveRaw(['--host', '127.0.0.1', '--auth', 'token', '--print-token-url'], { dir });
  try {
    const token = readToken();
    await waitUntil(() => s.proc.outText().includes(token), { what: 'the token URL on stdout' });
    assert.match(s.proc.outText(), new RegExp(`http://localhost:${s.port}/\\?token=${token}`));
    assert.ok(!s.proc.logText().includes(token), 'the log never carries the token');
  } finally {
    await s.proc.stop();
  }
  // a terminal on stdout (script(1) gives it one): the URL with the token; stderr to a file
  const script = spawnSync('sh', ['-c', 'command -v script'], { encoding: 'utf8' }).stdout.trim();
  if (!script) return;
  const errFile = path.join(dir, 'tty-stderr.log');
  const outFile = path.join(dir, 'tty-typescript');
  const cmd = `timeout -s TERM ${Math.round(T(3000) / 1000)} ${LIVEVLM_BIN} serve --host 127.0.0.1 --port 0 ` +
    `--no-tls --no-detect --auth token --config-dir ${cfgDir} 2>${errFile}`;
  const r = spawnSync(script, ['-qefc', cmd, outFile], {
    encoding: 'utf8', timeout: T(15000), env: { ...process.env, XDG_CONFIG_HOME: path.join(dir, 'xdg') },
  });
  const tty = fs.existsSync(outFile) ? fs.readFileSync(outFile, 'utf8') : r.stdout;
  const token = readToken();
  assert.match(tty, new RegExp(`http://localhost:\\d+/\\?token=${token}`), `on a terminal: ${tty.slice(0, 400)}`);
  assert.ok(!fs.readFileSync(errFile, 'utf8').includes(token), 'the log never carries the token');
});

// ---------------------------------------------------------------------------------------------
// models the backend does not serve

async function modelsListed(srv, want) {
  await waitUntil(async () => {
    const r = await srv.request('/api/v1/models');
    return r.status === 200 && want.every((m) => r.json().models.some((x) => x.id === m));
  }, { timeoutMs: T(8000), what: `models ${want} listed` });
}

test('a model no backend serves: invalid_setting in hello and update_settings, nothing changes', TO, async () => {
  const srv = await startLivevlm({ backends: [fake] });
  try {
    await modelsListed(srv, ['fake-vlm-1', 'fake-vlm-2']);
    const c = await srv.connect();
    let m = await c.hello({ settings: { prompt: 'p', model: 'no-such-model' } }, { allowError: true });
    assert.equal(m.type, 'error', JSON.stringify(m).slice(0, 200));
    assert.equal(m.code, 'invalid_setting');
    assert.equal(m.field, 'model');
    assert.match(m.message, /no-such-model/);
    m = await c.hello({ settings: { backend: 'fake', model: 'no-such-model' } }, { allowError: true });
    assert.equal(m.code, 'invalid_setting');
    assert.equal(m.field, 'model');
    // the socket stays usable: a hello with a served model works
    m = await c.hello({ settings: { prompt: 'p', model: 'fake-vlm-2' } });
    assert.equal(m.settings.model, 'fake-vlm-2');

    // update_settings: all-or-nothing, field "model"
    m = await c.updateSettings({ prompt: 'changed?', model: 'gpt-17' });
    assert.equal(m.type, 'error');
    assert.equal(m.code, 'invalid_setting');
    assert.equal(m.field, 'model');
    m = await c.updateSettings({ max_tokens: 77 });
    assert.equal(m.type, 'settings_updated');
    assert.equal(m.settings.prompt, 'p', 'the prompt of the refused update was not applied');
    assert.equal(m.settings.model, 'fake-vlm-2');
    m = await c.updateSettings({ model: 'fake-vlm-1' });
    assert.equal(m.type, 'settings_updated');
    assert.equal(m.settings.model, 'fake-vlm-1');
    // and the session still gets answers
    await c.start();
    c.sendFrame(JPEG_320());
    const r = await c.nextAnswer();
    assert.match(r.text, /model=fake-vlm-1/);
    await c.close();
  } finally {
    await srv.stop();
  }
});

test('no backend has listed models yet (down at start): any model is accepted, frames get no_backend', TO, async () => {
  // a port that nothing listens on
  const srvSock = net.createServer();
  await new Promise((r) => srvSock.listen(0, '127.0.0.1', r));
  const deadPort = srvSock.address().port;
  await new Promise((r) => srvSock.close(r));
  const srv = await startLivevlm({ backends: [{ id: 'down', url: `http://127.0.0.1:${deadPort}/v1` }] });
  try {
    const c = await srv.session({ settings: { model: 'whatever-it-will-serve' } });
    assert.equal(c.session.settings.model, 'whatever-it-will-serve');
    const u = await c.updateSettings({ model: 'another-one' });
    assert.equal(u.type, 'settings_updated');
    await c.start();
    c.sendFrame(JPEG_320());
    const e = await c.nextError(undefined, { timeoutMs: T(10000) });
    assert.ok(['no_backend', 'backend_error'].includes(e.code), JSON.stringify(e));
    await c.close();
  } finally {
    await srv.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// text floods

test('a moderate text flood (3x the rate for 3 s): dropped with a few rate_limited errors, socket open', TO, async () => {
  const srv = await startLivevlm({ backends: [fake] });
  try {
    const c = await srv.session();
    const bystander = await srv.session();
    let sent = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      for (let i = 0; i < 15; i++) c.send({ type: 'ping', t: sent++ }); // 150 a second
      await sleep(100);
    }
    await sleep(T(1200));
    assert.equal(c.closeInfo, null, `socket closed: ${JSON.stringify(c.closeInfo)}`);
    const limited = c.seen('error', (m) => m.code === 'rate_limited');
    const pongs = c.seen('pong').length;
    assert.ok(limited.length >= 1, 'the sender is told');
    assert.ok(limited.length <= 5, `at most one rate_limited a second, got ${limited.length}`);
    for (const e of limited) assert.ok(Number.isInteger(e.dropped) && e.dropped >= 1, JSON.stringify(e));
    const reported = limited.reduce((a, e) => a + e.dropped, 0);
    assert.ok(pongs >= 150 && pongs <= 260, `about 50 + 50/s answered: ${pongs} of ${sent}`);
    assert.ok(reported + pongs <= sent, `reported drops ${reported} + pongs ${pongs} <= sent ${sent}`);
    assert.ok(reported >= (sent - pongs) / 3, `most drops are reported (${reported} of ${sent - pongs})`);
    assert.equal(c.seen('error').length, limited.length, 'no other errors');
    // normal again
    c.send({ type: 'ping', t: 987654 });
    assert.equal((await c.next('pong', { where: (m) => m.t === 987654 })).t, 987654);
    bystander.send({ type: 'ping', t: 4242 });
    assert.equal((await bystander.next('pong')).t, 4242);
    await Promise.all([c.close(), bystander.close()]);
    assert.doesNotMatch(srv.proc.logText(), /slow reader|stopped reading/);
  } finally {
    await srv.stop();
  }
});

test('an extreme text flood (far over 10x the rate for seconds): closed with 1008, others unaffected', TO, async () => {
  const srv = await startLivevlm({ backends: [fake] });
  try {
    const c = await srv.session();
    const bystander = await srv.session();
    const t0 = Date.now();
    let sent = 0;
    while (!c.closeInfo && Date.now() - t0 < T(8000)) {
      if (c.ws.bufferedAmount < (1 << 20)) {
        for (let i = 0; i < 400; i++) c.send({ type: 'ping', t: sent++ }); // ~4000 a second
      }
      await sleep(100);
    }
    const info = await Promise.race([c.closed, sleep(T(3000)).then(() => null)]);
    assert.ok(info, `closed within the flood (sent ${sent} in ${Date.now() - t0} ms)`);
    assert.equal(info.code, 1008);
    assert.match(info.reason, /flood/);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 1800, `not before two full seconds of flood (${elapsed} ms)`);
    assert.ok(c.seen('error', (m) => m.code === 'rate_limited').length <= 10, 'few errors even so');
    bystander.send({ type: 'ping', t: 4242 });
    assert.equal((await bystander.next('pong')).t, 4242);
    await bystander.close();
    assert.match(srv.proc.logText(), /text messages a second/);
  } finally {
    await srv.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// the per-address session cap

test('25 reloads from one address are never locked out; resuming does not count twice', TO, async () => {
  const srv = await startLivevlm({ backends: [fake], args: ['--max-sessions-per-ip', '2'] });
  try {
    let last = null;
    for (let i = 0; i < 25; i++) {
      const c = await srv.connect();
      const m = await c.hello({ settings: { prompt: `reload ${i}` } }, { allowError: true });
      assert.equal(m.type, 'session', `reload ${i}: ${JSON.stringify(m).slice(0, 160)}`);
      last = m;
      await c.close();
    }
    // the last page comes back: its session is still there
    const back = await srv.connect();
    const r = await back.hello({ session_id: last.session_id, resume_secret: last.resume_secret });
    assert.equal(r.resumed, true);
    assert.equal(r.settings.prompt, 'reload 24');
    // a second tab on the same session (resume) is still one session: one more fits...
    const tab2 = await srv.connect();
    await tab2.hello({ session_id: last.session_id, resume_secret: last.resume_secret });
    const other = await srv.session();
    // ...and then two live sessions fill the cap of 2: the next is refused
    const third = await srv.connect();
    const refused = await third.hello({}, { allowError: true });
    assert.equal(refused.type, 'error');
    assert.equal(refused.code, 'too_many_sessions');
    // a session whose sockets all left gives way to a new one
    await other.close();
    const fresh = await waitUntil(async () => {
      const c = await srv.connect();
      const m = await c.hello({}, { allowError: true });
      if (m.type === 'session') return c;
      await c.close();
      return null;
    }, { timeoutMs: T(3000), what: 'a new session once one is detached' });
    // the evicted one is gone for good; the live one is untouched
    const gone = await srv.connect();
    const g = await gone.hello({ session_id: other.session.session_id, resume_secret: other.session.resume_secret },
      { allowError: true });
    assert.equal(g.code, 'session_not_found');
    back.send({ type: 'ping', t: 1 });
    assert.equal((await back.next('pong')).t, 1);
    await Promise.all([back, tab2, fresh, gone, third].map((c) => c.close()));
    assert.match(srv.proc.logText(), /gave way to a new session/);
  } finally {
    await srv.stop();
  }
});

test('a classroom behind one NAT address: 30 live sessions work with the defaults', TO, async () => {
  const srv = await startLivevlm({ backends: [fake] });
  try {
    const cfg = (await srv.request('/api/v1/config')).json();
    assert.ok(cfg.limits.max_sessions_per_ip >= 30, `default per-address cap ${cfg.limits.max_sessions_per_ip}`);
    const pupils = [];
    for (let i = 0; i < 30; i++) pupils.push(await srv.session({ settings: { prompt: `pupil ${i}`, interval_ms: 3600000 } }));
    const jpeg = JPEG_320();
    await Promise.all(pupils.map((c) => c.start()));
    for (const c of pupils) c.sendFrame(jpeg);
    const answers = await Promise.all(pupils.map((c) => c.nextAnswer({ timeoutMs: T(20000) })));
    assert.equal(answers.length, 30);
    await Promise.all(pupils.map((c) => c.close()));
  } finally {
    await srv.stop();
  }
});
