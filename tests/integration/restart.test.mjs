// restart.test.mjs - sessions survive a restart (docs/operations.md "Sessions across restarts"):
// after SIGTERM, and after SIGKILL once the save period has passed, a resume with the same id and
// secret gets the same session, settings and answer history; a wrong secret is still refused; an
// unusable state file is set aside with a warning and the server starts empty; expiry carries over.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  startFakevlm, startLivevlm, stopAll, makeTempDir, sleep, T, JPEG_320, parseFakeAnswer, sha8, waitUntil,
} from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
// Changes reach the file within about 2 s (one 1 s save period plus a write): wait longer.
const SAVE_WINDOW_MS = 3000;

let fake;
before(async () => { fake = await startFakevlm({ slots: 16 }); });
after(stopAll);

const freshConfigDir = () => path.join(makeTempDir('restart'), 'config');
const start = (configDir, args = []) => startLivevlm({ backends: [fake], configDir, args });

/** A session with a prompt of its own, max_tokens 77, and `n` answers received. */
async function sessionWithAnswers(srv, prompt, n) {
  const c = await srv.session();
  const upd = await c.updateSettings({ prompt, max_tokens: 77, interval_ms: 200 });
  assert.equal(upd.type, 'settings_updated', JSON.stringify(upd));
  await c.start();
  c.autoFeed(JPEG_320());
  const answers = [];
  for (let i = 0; i < n; i++) answers.push(await c.nextAnswer());
  c.autoFeed(null);
  return { c, id: c.session.session_id, secret: c.session.resume_secret, prompt, answers };
}

async function resume(srv, id, secret) {
  const c = await srv.connect();
  const m = await c.hello({ session_id: id, resume_secret: secret }, { allowError: true });
  return { c, m };
}

function assertRestored(m, { id, prompt, answers }) {
  assert.equal(m.type, 'session', `resume after the restart: ${JSON.stringify(m)}`);
  assert.equal(m.session_id, id);
  assert.equal(m.resumed, true);
  assert.equal(m.resume_secret, undefined, 'the secret is only sent when a session is created');
  assert.equal(m.settings.prompt, prompt);
  assert.equal(m.settings.max_tokens, 77);
  assert.equal(m.settings.interval_ms, 200);
  const byId = new Map(m.history.map((h) => [h.answer_id, h]));
  for (const a of answers) {
    const h = byId.get(a.answer_id);
    assert.ok(h, `answer ${a.answer_id} in the restored history (ids ${[...byId.keys()].join(',')})`);
    assert.equal(h.text, a.text);
    assert.equal(parseFakeAnswer(h.text)?.prompt, sha8(prompt));
  }
  assert.ok(m.metrics.total_inferences >= answers.length, `total_inferences ${m.metrics.total_inferences}`);
}

async function kill9(srv) {
  srv.proc.kill('SIGKILL');
  assert.ok(await srv.proc.waitExit(T(5000)), 'livevlm gone after SIGKILL');
}

test('SIGTERM and restart: same session, settings and history; new answers continue; wrong secret refused', TO, async () => {
  const configDir = freshConfigDir();
  const srv = await start(configDir);
  const prompt = 'Count the red cubes, before the restart.';
  const s = await sessionWithAnswers(srv, prompt, 2);
  // A second session that must stay apart from the first.
  const other = await sessionWithAnswers(srv, 'Another user, another prompt.', 1);

  await srv.proc.stop(T(5000)); // SIGTERM, sockets still open
  assert.equal(srv.proc.exitCode, 0, `clean exit after SIGTERM\n${srv.logTail()}`);
  assert.match(srv.proc.logText(), /saved 2 session\(s\)/);

  const file = path.join(configDir, 'sessions.db');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'the state file is private');
  const text = fs.readFileSync(file, 'utf8');
  assert.ok(!text.includes(s.secret) && !text.includes(other.secret), 'no resume secret in the file');
  assert.ok(text.includes(crypto.createHash('sha256').update(s.secret).digest('hex')), 'its hash is');

  const srv2 = await start(configDir);
  assert.match(srv2.proc.logText(), /restored 2 of the 2 session\(s\)/);
  const { c, m } = await resume(srv2, s.id, s.secret);
  assertRestored(m, s);
  assert.equal(m.started, true, 'it was started when the server stopped');
  // the other session's answers are not in this one's history
  assert.ok(m.history.every((h) => parseFakeAnswer(h.text)?.prompt === sha8(prompt)));

  // The restored session works: the restored prompt reaches the backend, ids go on from the old ones.
  await c.start();
  c.autoFeed(JPEG_320());
  const next = await c.nextAnswer();
  c.autoFeed(null);
  assert.ok(next.answer_id > Math.max(...s.answers.map((a) => a.answer_id)), `new id ${next.answer_id}`);
  assert.equal(parseFakeAnswer(next.text)?.prompt, sha8(prompt));
  assert.equal(parseFakeAnswer(next.text)?.model, 'fake-vlm-1');

  // Secrets still matter after a restart: a wrong one, or another session's, is refused.
  const { m: wrong } = await resume(srv2, s.id, 'f'.repeat(64));
  assert.equal(wrong.type, 'error');
  assert.equal(wrong.code, 'session_not_found');
  const { m: swapped } = await resume(srv2, s.id, other.secret);
  assert.equal(swapped.code, 'session_not_found');
  const { m: theOther } = await resume(srv2, other.id, other.secret);
  assertRestored(theOther, other);
  await srv2.stop();
});

test('SIGKILL after the save period: the last settings and answers come back', TO, async () => {
  const configDir = freshConfigDir();
  const srv = await start(configDir);
  const s = await sessionWithAnswers(srv, 'First prompt.', 2);
  // Change it again after the answers: this must survive too.
  const prompt = 'Second prompt, set just before the crash.';
  const upd = await s.c.updateSettings({ prompt });
  assert.equal(upd.type, 'settings_updated');
  await sleep(SAVE_WINDOW_MS);
  await kill9(srv);
  assert.doesNotMatch(srv.proc.logText(), /saved \d+ session/, 'no clean shutdown happened');

  const srv2 = await start(configDir);
  const { m } = await resume(srv2, s.id, s.secret);
  assert.equal(m.type, 'session', JSON.stringify(m));
  assert.equal(m.settings.prompt, prompt);
  const byId = new Map(m.history.map((h) => [h.answer_id, h.text]));
  for (const a of s.answers) assert.equal(byId.get(a.answer_id), a.text);
  assert.equal(m.settings.max_tokens, 77);

  // And once more: a crash of the restarted server keeps what it restored.
  await sleep(SAVE_WINDOW_MS);
  await kill9(srv2);
  const srv3 = await start(configDir);
  const { m: m3 } = await resume(srv3, s.id, s.secret);
  assert.equal(m3.type, 'session', JSON.stringify(m3));
  assert.equal(m3.settings.prompt, prompt);
  assert.equal(m3.history.length, m.history.length);
  await srv3.stop();
});

test('a damaged state file: the server starts, warns, sets the file aside and has no sessions', TO, async () => {
  const configDir = freshConfigDir();
  const srv = await start(configDir);
  const s = await sessionWithAnswers(srv, 'Soon forgotten.', 1);
  await srv.stop();
  const file = path.join(configDir, 'sessions.db');
  const whole = fs.readFileSync(file);
  fs.writeFileSync(file, whole.subarray(0, Math.floor(whole.length / 2)), { mode: 0o600 }); // cut short

  const srv2 = await start(configDir);
  const log2 = srv2.proc.logText();
  assert.match(log2, /warn the session file .*sessions\.db cannot be used \(.*\); it is kept as .*sessions\.db\.corrupt/);
  assert.match(log2, /warn starting with no sessions/);
  assert.ok(fs.existsSync(`${file}.corrupt`), 'the damaged file is kept aside');
  const { m } = await resume(srv2, s.id, s.secret);
  assert.equal(m.code, 'session_not_found');
  // The server works and saves afresh.
  const fresh = await srv2.session();
  assert.equal(fresh.session.resumed, false);
  await waitUntil(() => fs.existsSync(file), { what: 'a new sessions.db', timeoutMs: T(5000) });
  await srv2.stop();

  // Garbage of another kind: not even JSON.
  fs.writeFileSync(file, 'this is not a session file\n\0\xff\n');
  const srv3 = await start(configDir);
  assert.match(srv3.proc.logText(), /cannot be used/);
  assert.equal(srv3.proc.exited, false);
  await srv3.stop();
});

test('expiry carries over a restart; --state-file none keeps nothing; a custom path works', TO, async () => {
  // A session idle for longer than --session-idle before the restart is not brought back.
  const configDir = freshConfigDir();
  const srv = await start(configDir, ['--session-idle', '2']);
  const s = await srv.session();
  await srv.stop();
  await sleep(2500);
  const srv2 = await start(configDir, ['--session-idle', '2']);
  assert.match(srv2.proc.logText(), /restored 0 of the 1 session\(s\) .*\(1 expired/);
  const { m } = await resume(srv2, s.session.session_id, s.session.resume_secret);
  assert.equal(m.code, 'session_not_found');
  await srv2.stop();

  // none: nothing is written, nothing restored.
  const dirNone = freshConfigDir();
  const a = await start(dirNone, ['--state-file', 'none']);
  const sa = await a.session();
  await a.stop();
  assert.ok(!fs.existsSync(path.join(dirNone, 'sessions.db')));
  const b = await start(dirNone, ['--state-file', 'none']);
  const { m: mb } = await resume(b, sa.session.session_id, sa.session.resume_secret);
  assert.equal(mb.code, 'session_not_found');
  await b.stop();

  // a path of one's own
  const custom = path.join(makeTempDir('restart-custom'), 'my-sessions.db');
  const x = await start(freshConfigDir(), ['--state-file', custom]);
  const sx = await x.session();
  await x.stop();
  assert.ok(fs.existsSync(custom));
  const y = await start(freshConfigDir(), ['--state-file', custom]);
  const { m: my } = await resume(y, sx.session.session_id, sx.session.resume_secret);
  assert.equal(my.type, 'session', JSON.stringify(my));
  assert.equal(my.resumed, true);
  await y.stop();
});

test('two servers on one config dir: the second keeps its sessions in memory and says so', TO, async () => {
  const configDir = freshConfigDir();
  const a = await start(configDir);
  const b = await start(configDir);
  assert.match(b.proc.logText(), /another livevlm process keeps its sessions in .*sessions\.db/);
  const sb = await b.session();
  assert.equal(sb.session.type, 'session');
  await b.stop();
  await a.stop();
});
