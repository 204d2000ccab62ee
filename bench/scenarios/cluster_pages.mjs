// bench/scenarios/cluster_pages.mjs - camera pages that move between cluster frontends, for the
// failover part of bench/scenarios/cluster.sh. loadgen counts a lost socket as a lost session; a
// real page reconnects and resumes its session on whichever frontend haproxy picks. These pages
// do that (on the next frontend in the list, at once or after --reconnect-ms) and record, with
// wall-clock times the shell script's `date +%s.%N` can be compared with, every answer, every
// error and every move, so that the time from a kill to the answers coming back can be read per
// session.
//
//   node cluster_pages.mjs run --fe ws://127.0.0.1:P1/ws,ws://127.0.0.1:P2/ws --token-file F \
//        --sessions 40 --interval-ms 500 --duration-s 30 --ready FILE --out FILE
//   node cluster_pages.mjs analyze FILE --at NAME=EPOCH_S ... [--end EPOCH_S]
//
// run: session i connects to frontend i % n from source address --src-base + i / --per-ip, sends
// hello (a prompt of its own) and start, and answers every credit with one LVF1 frame. When its
// socket closes before the end it reconnects to the next frontend and sends hello with its id and
// secret (a connect that fails tries the next one 200 ms later, at most 100 times). --ready is
// written once every session has had an answer. Everything ends after --duration-s from ready
// (at most 60 s more waiting for ready): close 1000, JSON to --out.
//
// analyze: for each event NAME at EPOCH_S (up to the next event or --end), per session: the time
// from the event to its next answer, and the longest gap between answers spanning it; sessions
// whose socket closed in the first 2 s after the event: the time to `session` on the other
// frontend (resumed or not) and to their first answer there; errors by code. Prints JSON.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/package.json', import.meta.url));
const WebSocket = require('ws');

function flags(argv) {
  const o = { at: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { (o._ ||= []).push(a); continue; }
    const k = a.slice(2);
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (k === 'at') o.at.push(v); else o[k] = v;
  }
  return o;
}

function lvf1(jpeg, creditId) {
  const h = Buffer.alloc(16);
  h.write('LVF1', 0, 'ascii');
  h.writeUInt32BE(creditId >>> 0, 4);
  return Buffer.concat([h, jpeg]);
}

function addrPlus(base, k) {
  const p = base.split('.').map(Number);
  let n = ((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3];
  for (let j = 0; j < k; j++) { n++; while ((n & 0xff) === 0 || (n & 0xff) === 255) n++; }
  return [n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff].join('.');
}

async function run(o) {
  const fes = o.fe.split(',');
  const token = fs.readFileSync(o['token-file'], 'utf8').trim();
  const jpeg = fs.readFileSync(o.jpeg || 'tests/data/frame-640x480.jpg');
  const n = Number(o.sessions || 40);
  const interval = Number(o['interval-ms'] || 500);
  const perIp = Number(o['per-ip'] || 20);
  const srcBase = o['src-base'] || '127.70.0.2';
  const durMs = Number(o['duration-s'] || 20) * 1000;
  const reconnectMs = Number(o['reconnect-ms'] || 0);
  let ending = false;
  let readyAt = 0;
  const sessions = [];

  function connect(s) {
    if (ending) return;
    const url = fes[s.fe];
    const ws = new WebSocket(url, ['livevlm.v1'], {
      headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false,
      handshakeTimeout: 3000, localAddress: s.src,
    });
    s.ws = ws;
    let opened = false;
    ws.on('open', () => {
      opened = true;
      s.tries = 0;
      const hello = s.id ? { type: 'hello', session_id: s.id, resume_secret: s.secret }
        : { type: 'hello', settings: { prompt: `Describe the scene. [cp s${s.i}]`, interval_ms: interval, stats_interval_ms: 0 } };
      ws.send(JSON.stringify(hello));
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let m;
      try { m = JSON.parse(data.toString('utf8')); } catch { return; }
      const t = Date.now();
      const mv = s.moves[s.moves.length - 1];
      switch (m.type) {
        case 'session':
          if (mv && mv.t_session === null) { mv.t_session = t; mv.resumed = !!m.resumed; mv.to = s.fe; }
          s.id = m.session_id;
          if (m.resume_secret) s.secret = m.resume_secret;
          if (!m.started) ws.send(JSON.stringify({ type: 'start' }));
          break;
        case 'credit':
          ws.send(lvf1(jpeg, m.credit_id));
          break;
        case 'vlm_response':
          s.answers.push(t);
          if (mv && mv.t_answer === null) mv.t_answer = t;
          break;
        case 'error':
          s.errors.push([t, m.code || '?']);
          if (m.code === 'session_not_found' && mv) {
            // not resumable: the page would start a new session
            mv.lost = true;
            s.id = null;
            ws.send(JSON.stringify({ type: 'hello', settings: { prompt: `Describe the scene. [cp s${s.i}]`, interval_ms: interval, stats_interval_ms: 0 } }));
          }
          break;
        case 'frame_dropped':
          s.errors.push([t, `frame_dropped:${m.reason || '?'}`]);
          break;
        case 'answer_cancelled':
          s.errors.push([t, `answer_cancelled:${m.reason || '?'}`]);
          break;
        default:
      }
    });
    ws.on('error', () => { /* the close that follows handles it */ });
    ws.on('close', () => {
      if (ending) return;
      const t = Date.now();
      if (opened) s.moves.push({ t_close: t, from: s.fe, to: null, t_session: null, t_answer: null, resumed: null, lost: false, tries: 0 });
      const mv = s.moves[s.moves.length - 1];
      if (mv) mv.tries++;
      if (++s.tries > 100) { s.gaveUp = true; return; }
      s.fe = (s.fe + 1) % fes.length;
      setTimeout(() => connect(s), opened ? reconnectMs : 200);
    });
  }

  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const s = { i, fe: i % fes.length, fe0: i % fes.length, src: addrPlus(srcBase, Math.floor(i / perIp)), id: null, secret: null, answers: [], errors: [], moves: [], tries: 0, ws: null };
    sessions.push(s);
    setTimeout(() => connect(s), Math.floor((i * 1000) / n));   // spread over 1 s
  }
  await new Promise((resolve) => {
    const deadline = Date.now() + 60000;
    const tick = setInterval(() => {
      if (sessions.every((s) => s.answers.length > 0) || Date.now() > deadline) { clearInterval(tick); resolve(); }
    }, 50);
  });
  readyAt = Date.now();
  if (o.ready) fs.writeFileSync(o.ready, `${readyAt / 1000} ${sessions.filter((s) => s.answers.length > 0).length}\n`);
  await new Promise((r) => setTimeout(r, durMs));
  ending = true;
  for (const s of sessions) { try { s.ws.close(1000); } catch { /* gone */ } }
  await new Promise((r) => setTimeout(r, 300));
  const out = {
    t0: t0 / 1000, ready: readyAt / 1000, end: Date.now() / 1000, interval_ms: interval, frontends: fes,
    sessions: sessions.map((s) => ({ i: s.i, fe0: s.fe0, answers: s.answers, errors: s.errors, moves: s.moves, gave_up: !!s.gaveUp })),
  };
  fs.writeFileSync(o.out, JSON.stringify(out));
  for (const s of sessions) { try { s.ws.terminate(); } catch { /* gone */ } }
  process.exit(0);
}

function quant(a, q) {
  if (!a.length) return null;
  const b = [...a].sort((x, y) => x - y);
  return b[Math.min(b.length - 1, Math.max(0, Math.ceil(q * b.length) - 1))];
}

function analyze(o) {
  const d = JSON.parse(fs.readFileSync(o._[1], 'utf8'));
  const evs = o.at.map((x) => { const [name, t] = x.split('='); return { name, t: Number(t) * 1000 }; })
    .sort((a, b) => a.t - b.t);
  const end = o.end ? Number(o.end) * 1000 : d.end * 1000;
  const res = {};
  evs.forEach((ev, k) => {
    const until = k + 1 < evs.length ? evs[k + 1].t : end;
    const next = [];
    const gaps = [];
    let never = 0;
    const errs = {};
    for (const s of d.sessions) {
      const before = s.answers.filter((t) => t <= ev.t);
      const after = s.answers.filter((t) => t > ev.t && t <= until);
      if (!after.length) { never++; continue; }
      next.push(after[0] - ev.t);
      gaps.push(after[0] - (before.length ? before[before.length - 1] : ev.t));
      for (const [t, c] of s.errors) if (t >= ev.t && t < until) errs[c] = (errs[c] || 0) + 1;
    }
    const moved = [];
    for (const s of d.sessions) {
      for (const mv of s.moves) if (mv.t_close >= ev.t && mv.t_close < ev.t + 2000) moved.push(mv);
    }
    const resumedMs = moved.filter((m) => m.t_session !== null).map((m) => m.t_session - ev.t);
    const answerMs = moved.filter((m) => m.t_answer !== null).map((m) => m.t_answer - ev.t);
    const r = (x) => (x === null ? null : Math.round(x));
    res[ev.name] = {
      window_s: (until - ev.t) / 1000,
      sessions: d.sessions.length,
      next_answer_ms: { p50: r(quant(next, 0.5)), p90: r(quant(next, 0.9)), max: r(quant(next, 1)) },
      longest_gap_ms: r(quant(gaps, 1)),
      gaps_over_2_intervals: gaps.filter((g) => g > 2 * d.interval_ms).length,
      never_answered_again: never,
      errors: errs,
      moved: moved.length,
      resumed: moved.filter((m) => m.resumed === true).length,
      lost: moved.filter((m) => m.lost).length,
      reconnect_tries_max: moved.length ? Math.max(...moved.map((m) => m.tries)) : 0,
      session_ms: { p50: r(quant(resumedMs, 0.5)), max: r(quant(resumedMs, 1)), n: resumedMs.length },
      moved_answer_ms: { p50: r(quant(answerMs, 0.5)), max: r(quant(answerMs, 1)), n: answerMs.length },
    };
  });
  res.total = {
    answers: d.sessions.reduce((a, s) => a + s.answers.length, 0),
    gave_up: d.sessions.filter((s) => s.gave_up).length,
    ready_s: d.ready - d.t0,
  };
  console.log(JSON.stringify(res));
}

const o = flags(process.argv.slice(2));
const cmd = (o._ || [])[0];
if (cmd === 'run') await run(o);
else if (cmd === 'analyze') analyze(o);
else { console.error('usage: cluster_pages.mjs run|analyze ... (see the header)'); process.exit(2); }
