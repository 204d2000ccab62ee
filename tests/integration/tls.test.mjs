// tls.test.mjs - TLS by default: a self-signed certificate is generated in the config dir on
// first start (SANs for localhost and 127.0.0.1), reused on the next start; HTTPS, WSS and a
// Secure cookie work; --tls-cert/--tls-key serve the given certificate.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import {
  makeTempDir, startFakevlm, startLivevlm, stopAll, run, httpRequest, JPEG_320, JPEG_640, T,
} from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
after(stopAll);

function fingerprint(certPath) {
  return run('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', certPath]).trim().split('=')[1];
}

/** SHA-256 fingerprint (AA:BB:...) of the certificate the server presents. */
function servedFingerprint(port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
    s.setTimeout(T(5000), () => s.destroy(new Error('TLS handshake timed out')));
  });
}

test('first start makes a self-signed cert with localhost/127.0.0.1 SANs; the second reuses it', TO, async () => {
  const fake = await startFakevlm({ models: ['fake-vlm-1'] });
  const dir = makeTempDir('tls');
  const configDir = path.join(dir, 'config');
  // --print-token-url: stdout is a file here, and the URL carries the token only when asked
  const s1 = await startLivevlm({ backends: [fake], tls: true, dir, configDir, logName: 'livevlm-1.log',
    args: ['--print-token-url'] });
  const cert = path.join(configDir, 'cert.pem');
  const key = path.join(configDir, 'key.pem');
  assert.ok(fs.existsSync(cert), 'cert.pem in the config dir');
  assert.ok(fs.existsSync(key), 'key.pem in the config dir');
  assert.equal(fs.statSync(key).mode & 0o077, 0, 'key.pem is readable by its owner only');
  const san = run('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', cert]);
  assert.match(san, /DNS:localhost\b/, san);
  assert.match(san, /IP Address:127\.0\.0\.1\b/, san);
  const fp1 = fingerprint(cert);
  assert.equal(await servedFingerprint(s1.port), fp1, 'the server presents the generated certificate');

  // HTTPS + the URL with the token on stdout.
  const h = await s1.request('/healthz', { auth: false });
  assert.equal(h.status, 200);
  assert.match(s1.proc.logText(), new RegExp(`https://[^ ]+\\?token=${s1.token}`), 'start-up URL is https with the token');
  const token1 = s1.token;
  await s1.stop();

  const s2 = await startLivevlm({ backends: [fake], tls: true, dir, configDir, logName: 'livevlm-2.log' });
  assert.equal(fingerprint(cert), fp1, 'cert.pem was not regenerated');
  assert.equal(await servedFingerprint(s2.port), fp1, 'the same certificate is served after a restart');
  assert.equal(s2.token, token1, 'the access token persists across restarts');
  await s2.stop();
});

test('over TLS: WSS works end to end and the login cookie is Secure', TO, async () => {
  const fake = await startFakevlm({ models: ['fake-vlm-1'] });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const r = await srv.request('/api/v1/login', { auth: false, body: { token: srv.token } });
  assert.equal(r.status, 204);
  const sc = [].concat(r.headers['set-cookie'] || []).find((x) => /^livevlm_auth=/.test(x));
  assert.ok(sc, 'cookie set');
  assert.match(sc, /;\s*Secure/i);
  assert.match(sc, /HttpOnly/i);

  const c = await srv.session({ settings: { prompt: 'over tls', interval_ms: 3600000 } }, { origin: `https://127.0.0.1:${srv.port}` });
  await c.start();
  c.sendFrame(JPEG_320());
  const a = await c.nextAnswer();
  assert.match(a.text, /fakevlm/);
  await c.close();
  // Plain HTTP on the TLS port is not served as HTTP.
  const plain = await httpRequest({ port: srv.port, path: '/healthz', timeoutMs: T(3000) })
    .then((x) => x.status, (e) => `error ${e.code || e.message}`);
  assert.notEqual(plain, 200, 'plain HTTP is not answered 200 on the TLS port');
});

// OpenSSL reads ahead (a 64 KiB buffer per busy connection): a 640x480 frame spans three TLS
// records, and what it read ahead of the record being decrypted is not seen by poll. Five frames
// in a row, each answered from autoFeed as the credit comes, must each arrive whole and in turn.
test('over TLS: frames spanning several records are read whole, one after another', TO, async () => {
  const fake = await startFakevlm({ models: ['fake-vlm-1'] });
  const srv = await startLivevlm({ backends: [fake], tls: true });
  const c = await srv.session({ settings: { prompt: 'read ahead', interval_ms: 100 } }, { origin: `https://127.0.0.1:${srv.port}` });
  await c.start();
  c.autoFeed(JPEG_640());
  for (let i = 0; i < 5; i++) {
    const a = await c.nextAnswer();
    assert.match(a.text, /fakevlm/, `answer ${i + 1}`);
  }
  c.autoFeed(null);
  assert.equal(c.seen('error').length, 0, 'no error message');
  await c.close();
});

test('--tls-cert/--tls-key: the given certificate is served', TO, async () => {
  const dir = makeTempDir('tlsgiven');
  const cert = path.join(dir, 'given-cert.pem');
  const key = path.join(dir, 'given-key.pem');
  run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=livevlm-test', '-addext', 'subjectAltName=DNS:localhost']);
  const fake = await startFakevlm({ models: ['fake-vlm-1'] });
  const srv = await startLivevlm({ backends: [fake], tls: true, dir, args: ['--tls-cert', cert, '--tls-key', key] });
  assert.equal(await servedFingerprint(srv.port), fingerprint(cert));
  assert.ok(!fs.existsSync(path.join(srv.configDir, 'cert.pem')), 'no certificate generated when one is given');
  await srv.stop();
});
