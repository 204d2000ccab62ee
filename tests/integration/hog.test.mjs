// hog.test.mjs - one user must not starve the others at the backend's door (issue 12, points 2
// and 3). Users are client addresses: the bystander connects from 127.0.0.2, the attacker from
// 127.0.0.3. fakevlm plays a 64-slot GPU server with realistic pacing (150 ms to the first token,
// 20 ms per token), and its prompt markers make only the attacker's requests faulty.
//
//  (a) a hog with 4 tabs asking 3000-token answers (a minute each) while the window starts at 4:
//      the window grows into the free slots and the bystander keeps >= 90 % of its solo rate;
//  (b) 12 sessions whose requests hang (no first token): the bystander keeps >= 90 %; when the
//      attacker closes every socket, its requests are cancelled after --detached-cancel-ms;
//  (b2) the same sessions come first and fill the window: a newcomer is served at once (a hung
//      request of the user over its share is taken back) and keeps >= 90 %;
//  (c) a stream that stalls after its first token: backend_timeout after --stream-idle-timeout-ms,
//      the slot is freed, credits go on and the next answer comes;
//  (d) a prompt change during a long answer cancels it (answer_cancelled) and the next answer,
//      with the new prompt, follows at once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startFakevlm, startLivevlm, stopAll, sleep, sha8, parseFakeAnswer, fakevlmStats, scrapeMetrics, waitUntil,
  JPEG_320, T, stopAndClose, run, LIVEVLM_BIN,
} from '../lib/harness.mjs';

const TO = { timeout: T(60000) };
const J320 = JPEG_320();

/* livevlm with fake as its backend, once it knows fake's models (/readyz): a bystander opened
 * before the first model check may hear no_backend once, which these rate measurements are not about. */
async function startReady(fake, args = []) {
  const srv = await startLivevlm({ backends: [fake], args });
  await waitUntil(async () => (await srv.request('/readyz', { auth: false })).status === 200,
    { timeoutMs: T(10000), what: 'livevlm ready (the backend\'s models known)' });
  return srv;
}
const BYSTANDER = '127.0.0.2';
const ATTACKER = '127.0.0.3';
const SOLO_MS = T(6000);
const ATTACK_MS = T(8000);
const SETTLE_MS = T(1000);

after(stopAll);

/** A 64-slot backend with GPU-like pacing; answers up to 3000 words (one minute at 20 ms each). */
function startGpu() {
  return startFakevlm({ slots: 64, ttftMs: 150, tokenMs: 20, tokens: 3000 });
}

/** n started sessions from addr, answering every credit with a frame. */
async function openUser(srv, addr, n, settings, tag) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const prompt = settings.prompt ?? `${tag} ${i}: what is on the desk?`;
    const c = await srv.session({ settings: { interval_ms: 100, ...settings, prompt } }, { localAddress: addr });
    c.prompt = prompt;
    await c.start();
    c.autoFeed(J320);
    out.push(c);
  }
  return out;
}

/** Answers per second in [from, to): (answers - 1) / (last - first), precise with few answers. */
function rate(c, from, to) {
  const t = c.seen('vlm_response', (m) => m.__t >= from && m.__t < to).map((m) => m.__t);
  if (t.length < 2) return t.length / ((to - from) / 1000);
  return (t.length - 1) / ((t[t.length - 1] - t[0]) / 1000);
}

/** The bystander alone: its answer rate over SOLO_MS after a 1 s warm-up. */
async function soloRate(by) {
  await by.nextAnswer({ timeoutMs: T(5000) });
  const t0 = Date.now();
  await sleep(SOLO_MS);
  return rate(by, t0, Date.now());
}

test('(a) a hog with 4 tabs of 3000-token answers: the bystander keeps >= 90 % of its rate', TO, async (t) => {
  const fake = await startGpu();
  const srv = await startReady(fake); // --backend-max 16: the window starts at 4
  const [by] = await openUser(srv, BYSTANDER, 1, { max_tokens: 8 }, 'bystander');
  const hog = [];
  try {
    const solo = await soloRate(by);
    hog.push(...await openUser(srv, ATTACKER, 4, { max_tokens: 3000 }, 'hog'));
    const tAttack = Date.now();
    await waitUntil(() => hog.every((c) => c.seen('delta').length > 0),
      { timeoutMs: T(5000), what: 'every hog tab streaming' });
    await sleep(SETTLE_MS);
    const t0 = Date.now();
    await sleep(ATTACK_MS);
    const during = rate(by, t0, Date.now());
    const st = await fakevlmStats(fake);
    const m = await scrapeMetrics(srv);
    const win = m.get('livevlm_backend_window', { backend: 'fake' });
    const grows = m.get('livevlm_backend_window_grows_total', { backend: 'fake' });
    const info = `bystander ${solo.toFixed(2)}/s alone, ${during.toFixed(2)}/s with the hog ` +
      `(${(100 * during / solo).toFixed(0)} %); window ${win} (${grows} growths on demand), backend active ${st?.active}, ` +
      `hog answers done ${hog.reduce((n, c) => n + c.seen('vlm_response').length, 0)}, ` +
      `first bystander answer after the hog came: ${by.seen('vlm_response', (r) => r.__t >= tAttack)[0]?.__t - tAttack} ms`;
    t.diagnostic(info);
    assert.ok(solo >= 2, `the bystander alone gets about 3 answers/s: ${info}`);
    assert.ok(during >= 0.9 * solo, `bystander keeps >= 90 % of its solo rate: ${info}`);
    assert.ok(hog.every((c) => c.seen('delta').length > 20), `the hog is served too (all 4 tabs stream): ${info}`);
    assert.ok(win > 4, `the window grew past its start (4) into the backend's free slots: ${info}`);
    assert.ok(grows >= 1, `it grew on demand while long answers held every slot: ${info}`);
    assert.ok(st.active >= 5, `hog (4) and bystander in flight together: ${info}`);
    assert.deepEqual(by.seen('error'), [], 'no errors for the bystander');
  } finally {
    await stopAndClose([by, ...hog]);
    await srv.stop();
    await fake.stop();
  }
});

test('(b) 12 sessions whose requests hang: the bystander keeps >= 90 %; closing them cancels their requests', TO, async (t) => {
  const GRACE_MS = 2000; // --detached-cancel-ms default
  const fake = await startGpu();
  const srv = await startReady(fake);
  const [by] = await openUser(srv, BYSTANDER, 1, { max_tokens: 8 }, 'bystander');
  let bad = [];
  try {
    const solo = await soloRate(by);
    bad = await openUser(srv, ATTACKER, 12, { max_tokens: 3000, prompt: 'Hang. [[fault:stall]]' }, 'attacker');
    await waitUntil(async () => (await fakevlmStats(fake))?.active >= 3,
      { timeoutMs: T(5000), what: 'hung requests on the backend' });
    await sleep(SETTLE_MS);
    const t0 = Date.now();
    await sleep(ATTACK_MS);
    const during = rate(by, t0, Date.now());
    const before = await fakevlmStats(fake);
    const info = `bystander ${solo.toFixed(2)}/s alone, ${during.toFixed(2)}/s with 12 hung sessions ` +
      `(${(100 * during / solo).toFixed(0)} %); backend active ${before.active}`;
    t.diagnostic(info);
    assert.ok(during >= 0.9 * solo, `bystander keeps >= 90 % of its solo rate: ${info}`);
    assert.ok(before.active >= 3, `the attacker does hold hung requests: ${info}`);

    // The attacker leaves: every socket closed. Its hung requests go after the grace period.
    const aborts0 = before.client_aborts;
    const tClose = Date.now();
    await Promise.all(bad.map((c) => c.close()));
    await sleep(500);
    const during_grace = await fakevlmStats(fake);
    const gone = await waitUntil(async () => {
      const s = await fakevlmStats(fake);
      return s && s.active <= 1 ? { s, at: Date.now() - tClose } : null;
    }, { timeoutMs: T(GRACE_MS + 3000), intervalMs: 100, what: 'the hung requests cancelled' });
    t.diagnostic(`after close: ${during_grace.active} active at +500 ms (grace), <= 1 active at +${gone.at} ms; ` +
      `client_aborts ${aborts0} -> ${gone.s.client_aborts}`);
    assert.ok(during_grace.active >= 3, `within the grace period the requests are kept (a reload would resume them)`);
    assert.ok(gone.at >= GRACE_MS - 200, `cancelled after the grace period, not before (${gone.at} ms)`);
    assert.ok(gone.at <= T(GRACE_MS + 1500), `cancelled within grace + 1.5 s (${gone.at} ms)`);
    assert.ok(gone.s.client_aborts - aborts0 >= before.active - 1, 'the backend saw them go');
    const m = await scrapeMetrics(srv);
    assert.ok(m.get('livevlm_requests_cancelled_total', { reason: 'detached' }) >= before.active - 1,
      'livevlm_requests_cancelled_total{reason="detached"} counts them');
    assert.ok(m.get('livevlm_share_held_back_total') + m.get('livevlm_credits_held_back_total') > 0,
      'the share bound held the attacker back (its frames in the queue, or its credits)');
    // and the bystander goes on
    const n = by.seen('vlm_response').length;
    await waitUntil(() => by.seen('vlm_response').length >= n + 3, { timeoutMs: T(3000), what: 'bystander answers' });
    assert.deepEqual(by.seen('error'), [], 'no errors for the bystander');
  } finally {
    await stopAndClose([by, ...bad]);
    await srv.stop();
    await fake.stop();
  }
});

test('(b2) the hung sessions come first and fill the window: a newcomer still gets >= 90 % of its rate', TO, async (t) => {
  const fake = await startGpu();
  const srv = await startReady(fake);
  let [by] = await openUser(srv, BYSTANDER, 1, { max_tokens: 8 }, 'bystander');
  let bad = [];
  try {
    const solo = await soloRate(by);
    await stopAndClose([by]);
    await sleep(T(1500)); // the bystander is forgotten: the attacker alone may take every slot
    bad = await openUser(srv, ATTACKER, 12, { max_tokens: 3000, prompt: 'Hang. [[fault:stall]]' }, 'attacker');
    await waitUntil(async () => (await fakevlmStats(fake))?.active >= 4, { timeoutMs: T(5000), what: 'window full of hung requests' });
    await sleep(T(1500)); // hung for longer than the backend's usual time to first token
    const m0 = await scrapeMetrics(srv);
    const tJoin = Date.now();
    [by] = await openUser(srv, BYSTANDER, 1, { max_tokens: 8 }, 'newcomer');
    const first = await by.nextAnswer({ timeoutMs: T(5000) });
    const t0 = Date.now();
    await sleep(ATTACK_MS);
    const during = rate(by, t0, Date.now());
    const m = await scrapeMetrics(srv);
    const preempted = m.get('livevlm_requests_cancelled_total', { reason: 'preempted' });
    const info = `bystander ${solo.toFixed(2)}/s alone; joining a window full of hung requests ` +
      `(${m0.get('livevlm_backend_inflight', { backend: 'fake' })} in flight, window ` +
      `${m0.get('livevlm_backend_window', { backend: 'fake' })}): first answer after ${first.__t - tJoin} ms, then ` +
      `${during.toFixed(2)}/s (${(100 * during / solo).toFixed(0)} %); ${preempted} hung requests taken back`;
    t.diagnostic(info);
    assert.ok(first.__t - tJoin <= T(2500), `the newcomer is served within ~a second, not after the 60 s timeout: ${info}`);
    assert.ok(during >= 0.9 * solo, `newcomer keeps >= 90 % of the solo rate: ${info}`);
    assert.ok(preempted >= 1, `a hung request of the user over its share was taken back: ${info}`);
    const x = bad.flatMap((c) => c.seen('answer_cancelled'));
    assert.ok(x.length >= 1 && x.every((a) => a.reason === 'preempted'), 'the attacker was told (answer_cancelled preempted)');
    assert.deepEqual(by.seen('error'), [], 'no errors for the bystander');
  } finally {
    await stopAndClose([by, ...bad]);
    await srv.stop();
    await fake.stop();
  }
});

test('(c) a stream that stalls after its first token: backend_timeout within the idle timeout, then recovery', TO, async (t) => {
  const IDLE_MS = 1000;
  const help = run(LIVEVLM_BIN, ['serve', '--help']);
  assert.match(help, /--stream-idle-timeout-ms N[\s\S]*default 5000/, '--help documents the flag and its default');
  assert.match(help, /--detached-cancel-ms N[\s\S]*default 2000/, '--help documents the flag and its default');
  const fake = await startGpu();
  const srv = await startReady(fake, ['--stream-idle-timeout-ms', String(IDLE_MS)]);
  const [c] = await openUser(srv, BYSTANDER, 1,
    { max_tokens: 50, interval_ms: 200, prompt: 'Start, then stop. [[fault:stall-after-first]]' }, 'staller');
  try {
    const d = await c.next('delta', { timeoutMs: T(5000) });
    const e = await c.nextError('backend_timeout', { timeoutMs: T(IDLE_MS + 3000) });
    const took = e.__t - d.__t;
    t.diagnostic(`first token, then backend_timeout ${took} ms later: ${e.message}`);
    assert.equal(e.answer_id, d.answer_id, 'the error names the answer that stalled');
    assert.ok(took >= IDLE_MS - 100 && took <= T(IDLE_MS + 1000), `error ${took} ms after the first token`);
    assert.match(e.message, /stall/);
    // the job ended: credits go on, the next frame is sent (it stalls too with this prompt)
    const next = await c.next('answer_start', { timeoutMs: T(3000), where: (m) => m.answer_id > e.answer_id });
    assert.ok(next.__t - e.__t < T(1500), `next answer started ${next.__t - e.__t} ms after the error`);
    // a normal prompt: answers again
    const prompt = 'Describe it all, please.';
    c.prompt = prompt;
    assert.equal((await c.updateSettings({ prompt, max_tokens: 8 })).type, 'settings_updated');
    const r = await c.nextAnswer({ timeoutMs: T(6000), allowErrors: true, where: (m) => parseFakeAnswer(m.text)?.prompt === sha8(prompt) });
    assert.equal(parseFakeAnswer(r.text).prompt, sha8(prompt));
    // stalled requests did not stay on the backend
    await waitUntil(async () => (await fakevlmStats(fake))?.active <= 1, { timeoutMs: T(3000), what: 'stalled slots freed' });
    const m = await scrapeMetrics(srv);
    assert.ok(m.get('livevlm_backend_timeouts_total', { backend: 'fake' }) >= 1, 'counted as a backend timeout');
  } finally {
    await stopAndClose([c]);
    await srv.stop();
    await fake.stop();
  }
});

test('(d) a prompt change during a long answer: that answer is cancelled and the new prompt answered at once', TO, async (t) => {
  const fake = await startGpu();
  const srv = await startReady(fake);
  const p1 = 'Tell me everything, at length.';
  const [c] = await openUser(srv, BYSTANDER, 1, { max_tokens: 3000, interval_ms: 200, prompt: p1 }, 'talker');
  try {
    const d = await c.next('delta', { timeoutMs: T(5000) }); // a one-minute answer is streaming
    await sleep(300);
    const p2 = 'Now just one word.';
    c.prompt = p2;
    const tChange = Date.now();
    assert.equal((await c.updateSettings({ prompt: p2, max_tokens: 8 })).type, 'settings_updated');
    const x = await c.next('answer_cancelled', { timeoutMs: T(3000) });
    assert.equal(x.answer_id, d.answer_id);
    assert.equal(x.reason, 'settings_changed');
    const r = await c.nextAnswer({ timeoutMs: T(5000) });
    const took = r.__t - tChange;
    t.diagnostic(`prompt changed ${Date.now() - d.__t} ms into a long answer: cancelled after ${x.__t - tChange} ms, ` +
      `the new prompt's answer ${took} ms after the change`);
    assert.equal(parseFakeAnswer(r.text).prompt, sha8(p2), 'the next answer is for the new prompt');
    assert.ok(r.answer_id > d.answer_id);
    assert.ok(took <= T(2500), `new prompt answered ${took} ms after the change (cancel within 1 s, then ~0.3 s)`);
    assert.equal(c.seen('vlm_response', (m) => m.answer_id === d.answer_id).length, 0, 'the old answer never completes');
    await waitUntil(async () => (await fakevlmStats(fake))?.client_aborts >= 1, { timeoutMs: T(2000), what: 'old request dropped' });
    assert.deepEqual(c.seen('error'), []);
    const m = await scrapeMetrics(srv);
    assert.equal(m.get('livevlm_requests_cancelled_total', { reason: 'settings_changed' }), 1);
  } finally {
    await stopAndClose([c]);
    await srv.stop();
    await fake.stop();
  }
});
