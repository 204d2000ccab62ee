// authnone.test.mjs - `--auth none` is refused unless bound to loopback; on loopback it needs no
// credential for the API or the WebSocket.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Proc, LIVEVLM_BIN, makeTempDir, startFakevlm, startLivevlm, stopAll, T } from '../lib/harness.mjs';
import path from 'node:path';
import fs from 'node:fs';

const TO = { timeout: T(30000) };
after(stopAll);

test('--auth none with --host 0.0.0.0 is refused: non-zero exit and a clear message', TO, async () => {
  const dir = makeTempDir('authnone');
  const portFile = path.join(dir, 'port');
  const p = new Proc('livevlm', LIVEVLM_BIN, ['serve', '--host', '0.0.0.0', '--port', '0', '--port-file', portFile,
    '--auth', 'none', '--no-tls', '--no-detect', '--config-dir', path.join(dir, 'config')],
  { cwd: dir, env: { ...process.env, XDG_CONFIG_HOME: path.join(dir, 'xdg') }, logPath: path.join(dir, 'livevlm.log') })
    .expectExit({ code: 'nonzero' }).start();
  const exited = await p.waitExit(T(5000));
  if (!exited) await p.stop().catch(() => {}); // the assertion below says why
  assert.ok(exited, `still running 5 s after start; log:\n${p.logTail()}`);
  assert.notEqual(p.exitCode, 0, 'exit status is non-zero');
  assert.equal(p.signal, null, `ended by ${p.signal}, not by exiting`);
  const log = p.logText();
  assert.match(log, /auth/i, 'the message names --auth');
  assert.match(log, /loopback|127\.0\.0\.1|localhost/i, 'the message says loopback is required');
  assert.ok(!fs.existsSync(portFile) || fs.readFileSync(portFile, 'utf8').trim() === '', 'it never listened');
});

test('--auth none on 127.0.0.1: API and WebSocket without a credential', TO, async () => {
  const fake = await startFakevlm({ models: ['fake-vlm-1'] });
  const srv = await startLivevlm({ backends: [fake], auth: 'none' });
  const r = await srv.request('/api/v1/config', { auth: false });
  assert.equal(r.status, 200);
  assert.equal(r.json().auth, 'none');
  const c = await srv.connect({ auth: false });
  const s = await c.hello();
  assert.equal(s.type, 'session');
  await c.close();
});
