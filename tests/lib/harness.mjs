// harness.mjs - start the real livevlm and the fakevlm backend on free loopback ports in fresh
// temp dirs, talk to them over HTTP(S) and WebSocket, and stop every process at the end.
//
// Processes write stdout+stderr straight into <tempdir>/<name>.log (a file, not a pipe, so a
// chatty process never blocks on us). When LIVEVLM_TEST_TMP is set (scripts/test.sh does), temp
// dirs are made under it and kept, so the script can scan every log for sanitizer reports;
// otherwise they are removed when the test process exits, unless LIVEVLM_KEEP_TMP=1.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD_DIR = path.resolve(ROOT, process.env.LIVEVLM_BUILD || 'build');
export const LIVEVLM_BIN = path.join(BUILD_DIR, 'livevlm');
export const FAKEVLM_BIN = path.join(BUILD_DIR, 'fakevlm');
export const DATA_DIR = path.join(ROOT, 'tests', 'data');

/** Sanitizer builds run several times slower: every wait below is multiplied by SCALE. */
export const SCALE = Number(process.env.LIVEVLM_TIMEOUT_SCALE) ||
    (/san/.test(path.basename(BUILD_DIR)) ? 3 : 1);
export const T = (ms) => Math.round(ms * SCALE);

/** Lines that mean a sanitizer found something (scripts/test.sh scans for the same). */
export const SANITIZER_RE = /ERROR: AddressSanitizer|runtime error:|LeakSanitizer/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** First 8 hex digits of sha256(text): what fakevlm puts after "prompt=" in its answer. */
export function sha8(text) {
  return crypto.createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 8);
}

/** Parse fakevlm's answer ("model=M prompt=H image=N bytes jpeg=WxH"), or null. */
export function parseFakeAnswer(text) {
  const m = /model=(\S+) prompt=([0-9a-f]{8}) image=(\d+) bytes jpeg=(\d+)x(\d+)/.exec(text || '');
  if (!m) return null;
  return { model: m[1], prompt: m[2], imageBytes: Number(m[3]), width: Number(m[4]), height: Number(m[5]) };
}

// ---------------------------------------------------------------------------------------------
// temp dirs and processes

const tmpDirs = [];
const liveProcs = new Set();
const allProcs = [];

export function makeTempDir(prefix) {
  const base = process.env.LIVEVLM_TEST_TMP || os.tmpdir();
  fs.mkdirSync(base, { recursive: true });
  const dir = fs.mkdtempSync(path.join(base, `${prefix}-`));
  tmpDirs.push(dir);
  return dir;
}

process.on('exit', () => {
  for (const p of liveProcs) {
    try { p.child.kill('SIGKILL'); } catch { /* already gone */ }
  }
  if (!process.env.LIVEVLM_TEST_TMP && process.env.LIVEVLM_KEEP_TMP !== '1') {
    for (const d of tmpDirs) {
      try { fs.rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => { process.exit(130); });
}

/** Last n lines of a file (for error messages). */
export function tailFile(file, n = 30) {
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch { return `(no log at ${file})`; }
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines.slice(-n).join('\n');
}

/** One child process with its log file. */
export class Proc {
  constructor(name, bin, args, { cwd, env, logPath } = {}) {
    this.name = name;
    this.bin = bin;
    this.args = args;
    this.cwd = cwd;
    this.env = env;
    this.logPath = logPath;
    this.exitCode = null;
    this.signal = null;
    this.exited = false;
    this.sentSignal = null; // the last signal the test (or stop) sent
    this.expected = null; // {code, signal} from expectExit
    this.verdictGiven = false; // its exit was judged (and any problem reported) already
  }

  start() {
    if (!fs.existsSync(this.bin)) {
      throw new Error(`${this.name}: binary ${this.bin} does not exist (build it first: make)`);
    }
    fs.appendFileSync(this.logPath, `### ${new Date().toISOString()} ${this.bin} ${this.args.join(' ')}\n`);
    const fd = fs.openSync(this.logPath, 'a');
    this.child = spawn(this.bin, this.args, {
      cwd: this.cwd,
      env: this.env,
      stdio: ['ignore', fd, fd],
    });
    fs.closeSync(fd);
    liveProcs.add(this);
    allProcs.push(this);
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.signal = signal;
        liveProcs.delete(this);
        resolve({ code, signal });
      });
      this.child.on('error', (err) => {
        this.exited = true;
        this.spawnError = err;
        liveProcs.delete(this);
        resolve({ code: -1, signal: null, error: err });
      });
    });
    return this;
  }

  get pid() { return this.child?.pid; }

  logText() {
    try { return fs.readFileSync(this.logPath, 'utf8'); } catch { return ''; }
  }

  logTail(n = 30) { return tailFile(this.logPath, n); }

  describeExit() {
    if (this.spawnError) return `failed to start: ${this.spawnError.message}`;
    return this.signal ? `killed by ${this.signal}` : `exited with code ${this.exitCode}`;
  }

  /** Wait for exit up to ms; true when it exited. */
  async waitExit(ms) {
    if (this.exited) return true;
    let timer;
    const r = await Promise.race([
      this.exitPromise.then(() => true),
      new Promise((res) => { timer = setTimeout(() => res(false), ms); }),
    ]);
    clearTimeout(timer);
    return r;
  }

  /**
   * Send a signal on purpose (a test's crash or restart). The exit that follows is then expected:
   * death by that signal, or (for a signal the process handles) exit status 0.
   */
  kill(signal = 'SIGTERM') {
    this.sentSignal = signal;
    try { this.child.kill(signal); } catch { /* gone */ }
  }

  /**
   * Declare how this process is meant to end when that is not "exit 0 after stop()": code (a
   * number, or 'nonzero' for any failure status) and/or signal (e.g. 'SIGKILL'). A refused
   * configuration expects {code: 'nonzero'}.
   */
  expectExit({ code, signal } = {}) {
    this.expected = { code, signal };
    return this;
  }

  /** Why the way this process ended is wrong, or null when it is right (or it still runs). */
  exitProblem() {
    if (this.spawnError) return `${this.name}: failed to start: ${this.spawnError.message}`;
    if (!this.exited) return null;
    const how = this.describeExit();
    const e = this.expected;
    if (e) {
      const codeOk = e.code === undefined || (e.code === 'nonzero'
        ? this.exitCode !== null && this.exitCode !== 0 : this.exitCode === e.code);
      const sigOk = e.signal === undefined ? this.signal === null || e.code === undefined : this.signal === e.signal;
      if (codeOk && sigOk) return null;
      return `${this.name} ${how}, expected ${JSON.stringify(e)}`;
    }
    if (this.sentSignal) {
      if (this.exitCode === 0 || this.signal === this.sentSignal) return null;
      return `${this.name} ${how} after ${this.sentSignal} (expected exit 0)`;
    }
    return `${this.name} ${how} by itself, before the test stopped it`;
  }

  /** Judge the exit once; returns an Error with the log tail, or null. */
  exitVerdict() {
    if (this.verdictGiven || (!this.exited && !this.spawnError)) return null;
    this.verdictGiven = true;
    const problem = this.exitProblem();
    if (!problem) return null;
    return new Error(`${problem}\ncommand: ${this.bin} ${this.args.join(' ')}\n` +
      `--- last 30 log lines (${this.logPath}):\n${this.logTail(30)}`);
  }

  /**
   * SIGTERM and wait up to graceMs for the exit; then throw when the exit was wrong: a non-zero
   * status, death by another signal (SIGSEGV, SIGABRT), no exit in graceMs (it is then
   * SIGKILLed), or an exit before this call that nobody expected (see kill, expectExit).
   */
  stop(graceMs = T(5000)) {
    if (!this.stopping) this.stopping = this.stopInner(graceMs);
    return this.stopping;
  }

  async stopInner(graceMs) {
    if (this.child && !this.exited) {
      this.kill('SIGTERM');
      if (!(await this.waitExit(graceMs))) {
        try { this.child.kill('SIGKILL'); } catch { /* gone */ }
        await this.waitExit(5000);
        this.verdictGiven = true;
        throw new Error(`${this.name} did not exit within ${graceMs} ms of SIGTERM (SIGKILLed)\n` +
          `command: ${this.bin} ${this.args.join(' ')}\n--- last 30 log lines (${this.logPath}):\n${this.logTail(30)}`);
      }
    }
    const err = this.exitVerdict();
    if (err) throw err;
  }

  /** Lines of this process's log that are sanitizer reports. */
  sanitizerLines() {
    return this.logText().split('\n').filter((l) => SANITIZER_RE.test(l));
  }
}

/**
 * Stop every process this test file started; then fail if any ended wrongly (see Proc.stop:
 * problems a test's own stop() already threw are not repeated) or any log holds a sanitizer report.
 */
export async function stopAll() {
  const results = await Promise.allSettled([...liveProcs].map((p) => p.stop()));
  const problems = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
  for (const p of allProcs) {
    const err = p.exitVerdict();
    if (err) problems.push(err.message);
  }
  try {
    assertNoSanitizerReports();
  } catch (e) {
    problems.push(e.message);
  }
  if (problems.length) throw new Error(`at teardown:\n\n${problems.join('\n\n')}`);
}

export function assertNoSanitizerReports() {
  const bad = [];
  for (const p of allProcs) {
    const lines = p.sanitizerLines();
    if (lines.length) bad.push(`${p.name} (${p.logPath}):\n${lines.slice(0, 5).join('\n')}\n--- log tail:\n${p.logTail(40)}`);
  }
  if (bad.length) throw new Error(`sanitizer reports in logs:\n${bad.join('\n\n')}`);
}

async function canConnect(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok) => { s.destroy(); resolve(ok); };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

/** Wait until portFile holds a port that accepts TCP, failing early if proc exits. */
export async function waitForPort(proc, portFile, timeoutMs = T(10000)) {
  const deadline = Date.now() + timeoutMs;
  let port = null;
  while (Date.now() < deadline) {
    if (proc.exited) {
      throw new Error(`${proc.name} ${proc.describeExit()} before it was ready\n` +
        `command: ${proc.bin} ${proc.args.join(' ')}\n--- last 30 log lines (${proc.logPath}):\n${proc.logTail(30)}`);
    }
    if (port === null) {
      let text = '';
      try { text = fs.readFileSync(portFile, 'utf8'); } catch { /* not yet */ }
      const m = /^\s*(\d+)\s*$/.exec(text);
      if (m && Number(m[1]) > 0) port = Number(m[1]);
    }
    if (port !== null && await canConnect(port)) return port;
    await sleep(50);
  }
  throw new Error(`${proc.name} not ready after ${timeoutMs} ms (port file ${portFile}: ` +
    `${port === null ? 'no port yet' : `port ${port} does not accept`})\n` +
    `command: ${proc.bin} ${proc.args.join(' ')}\n--- last 30 log lines (${proc.logPath}):\n${proc.logTail(30)}`);
}

function childEnv(dir, extra = {}) {
  const env = { ...process.env, XDG_CONFIG_HOME: path.join(dir, 'xdg'), ...extra };
  return env;
}

// ---------------------------------------------------------------------------------------------
// fakevlm

/**
 * Start fakevlm. opts: slots, ttftMs, tokenMs, tokens, models (array), extraArgs, port (default 0:
 * a free one; pass an earlier instance's port to restart a backend where livevlm expects it).
 * Returns {proc, port, url (OpenAI base ending in /v1), models, dir, stop()}.
 */
export async function startFakevlm(opts = {}) {
  const dir = opts.dir || makeTempDir('fakevlm');
  const portFile = path.join(dir, 'fakevlm.port');
  const models = opts.models || ['fake-vlm-1'];
  const args = [
    '--port', String(opts.port ?? 0), '--port-file', portFile,
    '--slots', String(opts.slots ?? 8),
    '--ttft-ms', String(opts.ttftMs ?? 20),
    '--token-ms', String(opts.tokenMs ?? 5),
    '--tokens', String(opts.tokens ?? 8),
    '--models', models.join(','),
    ...(opts.quiet === false ? [] : ['--quiet']),
    ...(opts.extraArgs || []),
  ];
  const proc = new Proc('fakevlm', FAKEVLM_BIN, args,
    { cwd: dir, env: childEnv(dir), logPath: path.join(dir, 'fakevlm.log') }).start();
  const port = await waitForPort(proc, portFile, opts.readyTimeoutMs);
  return {
    proc, port, dir, models,
    url: `http://127.0.0.1:${port}/v1`,
    stop: () => proc.stop(),
  };
}

// ---------------------------------------------------------------------------------------------
// livevlm

/**
 * Start `livevlm serve` on 127.0.0.1 with a free port.
 * opts:
 *   backends: [{id, url}] or fakevlm objects (id defaults to "fake", "fake2", ...)
 *   tls (default false), auth ('token' by default here, so tests keep one shared token; 'accounts',
 *   'proxy' or 'none'), host, configDir (reuse one), args (extra flags),
 *   env, detect (default false: --no-detect), logLevel (default 'debug'), gst (the server will run
 *   GStreamer: WebRTC offers; implied by a --camera flag).
 * Returns a Server (see class below). With accounts its standard output goes to its own file
 * (server.stdoutPath, not the log) and server.adminPassword is the first admin's password printed
 * there (null when the database already had an admin, e.g. a reused configDir).
 */
export async function startLivevlm(opts = {}) {
  const dir = opts.dir || makeTempDir('livevlm');
  const configDir = opts.configDir || path.join(dir, 'config');
  fs.mkdirSync(configDir, { recursive: true, mode: 0o700 });
  const portFile = path.join(dir, `livevlm-${Date.now()}-${Math.floor(Math.random() * 1e6)}.port`);
  const host = opts.host || '127.0.0.1';
  const args = ['serve', '--host', host, '--port', '0', '--port-file', portFile,
    '--config-dir', configDir, '--log-level', opts.logLevel || 'debug'];
  if (!opts.tls) args.push('--no-tls');
  const auth = opts.auth || 'token';
  const accounts = auth === 'accounts' || auth === 'proxy';
  args.push('--auth', auth);
  if (!opts.detect) args.push('--no-detect');
  (opts.backends || []).forEach((b, i) => {
    const id = b.id || (i === 0 ? 'fake' : `fake${i + 1}`);
    args.push('--backend', `${id}=${b.url}`);
  });
  args.push(...(opts.args || []));
  // GStreamer (cameras, WebRTC) leaves GLib's quark block behind on purpose; the binary's LSan
  // suppression recognises it by its _dl_init frame, which only a full unwind shows (a no-op
  // outside the sanitizer build).
  let env = opts.env || {};
  if (opts.gst || args.includes('--camera')) {
    const asan = [env.ASAN_OPTIONS || process.env.ASAN_OPTIONS, 'fast_unwind_on_malloc=0'].filter(Boolean).join(':');
    env = { ...env, ASAN_OPTIONS: asan };
  }
  const logPath = path.join(dir, opts.logName || 'livevlm.log');
  const procOpts = { cwd: dir, env: childEnv(dir, env), logPath };
  if (accounts) procOpts.outPath = logPath.replace(/\.log$/, '') + '.stdout.txt';
  const proc = (accounts ? new SplitProc('livevlm', LIVEVLM_BIN, args, procOpts)
    : new Proc('livevlm', LIVEVLM_BIN, args, procOpts)).start();
  const port = await waitForPort(proc, portFile, opts.readyTimeoutMs);
  const server = new Server({ proc, port, dir, configDir, tls: !!opts.tls, host });
  if (auth === 'token') server.token = await readToken(configDir, proc);
  if (accounts) {
    server.stdoutPath = procOpts.outPath;
    server.adminPassword = await readAdminPassword(proc);
  }
  return server;
}

/* The first admin's password, printed once on standard output before the "is serving" banner. */
async function readAdminPassword(proc) {
  const deadline = Date.now() + T(3000);
  let out = '';
  while (Date.now() < deadline) {
    out = proc.outText();
    if (out.includes(' is serving')) break;
    await sleep(20);
  }
  if (!out.includes(' is serving')) throw new Error(`livevlm printed no banner\n--- stdout:\n${out}`);
  const m = out.match(/is on the next line:\n([0-9a-f]{24})\n/);
  return m ? m[1] : null;
}

/**
 * Run a `livevlm` accounts command (user, key, tenant, quota ...) synchronously against configDir
 * (added as --config-dir unless opts.configDir is null). opts.input: standard input (for
 * --password-stdin), opts.args: more arguments. Resolves {code, stdout, stderr, lines} (lines: stdout's
 * non-empty lines).
 */
export function cli(args, opts = {}) {
  const full = [...args, ...(opts.configDir ? ['--config-dir', opts.configDir] : []), ...(opts.args || [])];
  const r = spawnSync(LIVEVLM_BIN, full, {
    input: opts.input ?? '', encoding: 'utf8', timeout: opts.timeoutMs || T(20000),
    env: { ...process.env, ...(opts.env || {}) },
  });
  const stdout = r.stdout || '';
  return { code: r.status, signal: r.signal, stdout, stderr: r.stderr || '', lines: stdout.split('\n').filter(Boolean) };
}

async function readToken(configDir, proc) {
  const file = path.join(configDir, 'token');
  const deadline = Date.now() + T(3000);
  while (Date.now() < deadline) {
    let t = '';
    try { t = fs.readFileSync(file, 'utf8').trim(); } catch { /* not yet */ }
    if (/^[0-9a-f]{64}$/.test(t)) return t;
    await sleep(50);
  }
  let raw = '(missing)';
  try { raw = JSON.stringify(fs.readFileSync(file, 'utf8')); } catch { /* missing */ }
  throw new Error(`no 64-hex access token in ${file} (content ${raw})\n--- log tail:\n${proc.logTail(30)}`);
}

/** A running livevlm. */
export class Server {
  constructor({ proc, port, dir, configDir, tls, host }) {
    Object.assign(this, { proc, port, dir, configDir, tls, host });
    this.token = null;
  }

  get origin() { return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`; }
  get wsUrl() { return `${this.tls ? 'wss' : 'ws'}://127.0.0.1:${this.port}/ws`; }
  /** The bearer this server's requests carry: server.apiKey (accounts) or the shared token. */
  get bearer() { return this.apiKey || this.token; }
  get authHeader() { return { Authorization: `Bearer ${this.bearer}` }; }

  stop() { return this.proc.stop(); }
  logTail(n = 30) { return this.proc.logTail(n); }

  /**
   * Raw HTTP(S) request. opts: method, headers, body (string|Buffer|object → JSON), auth (default
   * true: add the Bearer token, or server.apiKey), token (another bearer), timeoutMs. Resolves
   * {status, headers, body (Buffer), text, json()}.
   */
  request(urlPath, opts = {}) {
    const bearer = opts.token || this.bearer;
    const headers = { ...(opts.auth === false || !bearer ? {} : { Authorization: `Bearer ${bearer}` }),
      ...(opts.headers || {}) };
    let body = opts.body;
    if (body !== undefined && !Buffer.isBuffer(body) && typeof body !== 'string') {
      body = JSON.stringify(body);
      headers['Content-Type'] = headers['Content-Type'] || 'application/json';
    }
    return httpRequest({
      tls: this.tls, port: this.port, method: opts.method || (body !== undefined ? 'POST' : 'GET'),
      path: urlPath, headers, body, timeoutMs: opts.timeoutMs,
    });
  }

  /** Open a WebSocket (see connectWs) with this server's token unless opts.auth === false. */
  connect(opts = {}) { return connectWs(this, opts); }

  /** Connect and say hello; resolves the client, whose .session is the `session` message. */
  async session(helloFields = {}, opts = {}) {
    const c = await this.connect(opts);
    await c.hello(helloFields);
    return c;
  }
}

/** Plain node http(s) request with a bounded time. */
export function httpRequest({ tls = false, host = '127.0.0.1', port, method = 'GET', path: p = '/',
  headers = {}, body, timeoutMs = T(10000) }) {
  return new Promise((resolve, reject) => {
    const mod = tls ? https : http;
    const req = mod.request({
      host, port, method, path: p, headers, rejectUnauthorized: false, agent: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolve({
          status: res.statusCode, headers: res.headers, body: buf, text: buf.toString('utf8'),
          json() { return JSON.parse(buf.toString('utf8')); },
        });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${p}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body); else req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

/**
 * Open a WebSocket to server /ws. opts: auth (default true: Bearer header), token, cookie,
 * origin, headers, protocols, timeoutMs, localAddress (connect from e.g. 127.0.0.2: the server
 * sees another client address, i.e. another user). Rejects with err.status set when the upgrade is refused.
 */
export function connectWs(server, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const bearer = opts.token || server.apiKey || server.token;
  if (opts.auth !== false && bearer) headers.Authorization = `Bearer ${bearer}`;
  if (opts.cookie) headers.Cookie = opts.cookie;
  const timeoutMs = opts.timeoutMs || T(5000);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(opts.url || server.wsUrl, opts.protocols || [], {
      headers, origin: opts.origin, rejectUnauthorized: false, perMessageDeflate: false,
      handshakeTimeout: timeoutMs, maxPayload: 64 * 1024 * 1024,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    let settled = false;
    const client = new WsClient(ws, server);
    ws.once('open', () => { settled = true; resolve(client); });
    ws.once('unexpected-response', (req, res) => {
      settled = true;
      const e = new Error(`WebSocket upgrade refused: HTTP ${res.statusCode}`);
      e.status = res.statusCode;
      e.headers = res.headers;
      res.resume();
      req.destroy();
      reject(e);
    });
    ws.once('error', (err) => { if (!settled) { settled = true; reject(err); } });
  });
}

/** LVF1 header (16 bytes) + JPEG. */
export function lvf1(jpeg, creditId = 0, ageMs = 0) {
  const h = Buffer.alloc(16);
  h.write('LVF1', 0, 'ascii');
  h.writeUInt32BE(creditId >>> 0, 4);
  h.writeUInt32BE(ageMs >>> 0, 8);
  return Buffer.concat([h, jpeg]);
}

function summarize(m) {
  const s = JSON.stringify(m);
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/** A connected WebSocket with an inbox of parsed messages and awaitable `next()`. */
export class WsClient {
  constructor(ws, server) {
    this.ws = ws;
    this.server = server;
    this.inbox = [];      // not yet consumed, in arrival order
    this.log = [];        // every message, {seq, msg}
    this.seq = 0;
    this.waiters = [];
    this.feed = null;     // {jpeg, ageMs}: answer each credit with this frame
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Error(`socket closed (code ${code} ${reason}) while waiting for ${w.desc}; ` +
            `recent: ${this.recent()}`));
        }
        resolve(this.closeInfo);
      });
    });
    ws.on('error', () => { /* surfaced through close */ });
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
  }

  onMessage(data, isBinary) {
    let msg;
    if (isBinary) msg = { type: '(binary)', bytes: data.length };
    else {
      try { msg = JSON.parse(data.toString('utf8')); } catch { msg = { type: '(non-json)', raw: data.toString('utf8') }; }
    }
    msg.__seq = ++this.seq;
    msg.__t = Date.now();
    this.log.push(msg);
    if (this.feed && msg.type === 'credit') {
      this.sendFrame(this.feed.jpeg, { creditId: msg.credit_id, ageMs: this.feed.ageMs || 0, header: this.feed.header });
    }
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.match(msg)) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(msg);
        return;
      }
    }
    this.inbox.push(msg);
  }

  recent(n = 8) {
    return this.log.slice(-n).map(summarize).join(' | ') || '(nothing received)';
  }

  /**
   * Next unconsumed message whose type is `type` (a string or an array of them) and that
   * satisfies opts.where. Messages of other types stay in the inbox.
   */
  next(type, opts = {}) {
    const types = Array.isArray(type) ? type : [type];
    const where = opts.where || (() => true);
    const match = (m) => types.includes(m.type) && where(m);
    const idx = this.inbox.findIndex(match);
    if (idx >= 0) return Promise.resolve(this.inbox.splice(idx, 1)[0]);
    const desc = `${types.join('|')}${opts.where ? ' (filtered)' : ''}`;
    if (this.closeInfo) {
      return Promise.reject(new Error(`socket already closed (code ${this.closeInfo.code}) ` +
        `waiting for ${desc}; recent: ${this.recent()}`));
    }
    const timeoutMs = opts.timeoutMs ?? T(5000);
    return new Promise((resolve, reject) => {
      const w = { match, resolve, reject, desc };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no ${desc} within ${timeoutMs} ms; recent messages: ${this.recent()}` +
          (this.server ? `\n--- server log tail:\n${this.server.logTail(30)}` : '')));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Next `error` with the given code (or any error when code is omitted). */
  nextError(code, opts = {}) {
    return this.next('error', { ...opts, where: (m) => (code === undefined || m.code === code) && (!opts.where || opts.where(m)) });
  }

  /** Resolve null when no matching message arrives within ms, else reject. */
  async expectNone(type, ms, where) {
    try {
      const m = await this.next(type, { timeoutMs: ms, where });
      throw Object.assign(new Error(`unexpected ${summarize(m)}`), { unexpected: m });
    } catch (e) {
      if (e.unexpected) throw e;
      if (/^no /.test(e.message)) return null;
      throw e;
    }
  }

  /** Remove and return every queued message of a type. */
  drain(type) {
    const out = this.inbox.filter((m) => m.type === type);
    this.inbox = this.inbox.filter((m) => m.type !== type);
    return out;
  }

  /** Every message received so far of a type (consumed or not), in order. */
  seen(type, where = () => true) { return this.log.filter((m) => m.type === type && where(m)); }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }
  sendRaw(data, binary) { this.ws.send(data, { binary: binary ?? Buffer.isBuffer(data) }); }

  /** Send a frame: LVF1 header + JPEG (or the bare JPEG with header: false). */
  sendFrame(jpeg, { creditId = 0, ageMs = 0, header = true } = {}) {
    this.ws.send(header ? lvf1(jpeg, creditId, ageMs) : jpeg, { binary: true });
  }

  /** Answer every credit with this JPEG (null stops); header false: as a bare JPEG. */
  autoFeed(jpeg, ageMs = 0, { header = true } = {}) {
    this.feed = jpeg ? { jpeg, ageMs, header } : null;
    if (jpeg) {
      for (const m of this.drain('credit')) this.sendFrame(jpeg, { creditId: m.credit_id, ageMs, header });
    }
  }

  /** hello → `session` (kept as this.session); rejects on `error` unless allowError. */
  async hello(fields = {}, { allowError = false, timeoutMs } = {}) {
    this.send({ type: 'hello', ...fields });
    const m = await this.next(['session', 'error'], { timeoutMs });
    if (m.type === 'error' && !allowError) {
      throw new Error(`hello answered with error ${summarize(m)}`);
    }
    if (m.type === 'session') this.session = m;
    return m;
  }

  /** update_settings → `settings_updated` or `error` (returned, not thrown). */
  async updateSettings(settings, opts = {}) {
    this.send({ type: 'update_settings', settings });
    return this.next(['settings_updated', 'error'], opts);
  }

  async start() { this.send({ type: 'start' }); return this.next('started'); }
  async stop() { this.send({ type: 'stop' }); return this.next('stopped'); }

  /** Wait for the next vlm_response (failing early on a backend error unless allowed). */
  async nextAnswer(opts = {}) {
    const m = await this.next(['vlm_response', ...(opts.allowErrors ? [] : ['error'])],
      { timeoutMs: opts.timeoutMs ?? T(10000), where: opts.where });
    if (m.type === 'error') throw new Error(`expected vlm_response, got ${summarize(m)}`);
    return m;
  }

  async close(timeoutMs = 2000) {
    if (this.closeInfo) return this.closeInfo;
    try { this.ws.close(1000); } catch { /* ignore */ }
    let timer;
    const r = await Promise.race([this.closed, new Promise((res) => { timer = setTimeout(res, timeoutMs); })]);
    clearTimeout(timer);
    if (!this.closeInfo) this.ws.terminate();
    return r;
  }
}

// ---------------------------------------------------------------------------------------------
// test data

export function readData(name) { return fs.readFileSync(path.join(DATA_DIR, name)); }

export const JPEG_640 = () => readData('frame-640x480.jpg');
export const JPEG_320 = () => readData('frame-320x240.jpg');

/** Copy of jpeg with the SOFn header's dimensions replaced (the pixels are left as they are). */
export function patchJpegDims(jpeg, width, height) {
  const out = Buffer.from(jpeg);
  let i = 2;
  while (i + 4 < out.length) {
    if (out[i] !== 0xff) throw new Error(`bad marker at ${i}`);
    const marker = out[i + 1];
    const len = out.readUInt16BE(i + 2);
    const isSof = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (isSof) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
    if (marker === 0xda) break;
    i += 2 + len;
  }
  throw new Error('no SOF marker found');
}

/** A valid JPEG of about `size` bytes: COM segments inserted after SOI. */
export function padJpeg(jpeg, size) {
  const parts = [jpeg.subarray(0, 2)];
  let need = size - jpeg.length;
  while (need > 4) {
    const payload = Math.min(need - 4, 65533);
    const seg = Buffer.alloc(4 + payload, 0x41);
    seg[0] = 0xff; seg[1] = 0xfe; seg.writeUInt16BE(payload + 2, 2);
    parts.push(seg);
    need -= seg.length;
  }
  parts.push(jpeg.subarray(2));
  return Buffer.concat(parts);
}

/** Run a command and return stdout (throws on non-zero exit). */
export function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: T(20000), stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** Poll fn() until it returns truthy or timeout; returns the value. */
export async function waitUntil(fn, { timeoutMs = T(5000), intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

// ---------------------------------------------------------------------------------------------
// browser (e2e): Debian's chromium driven by playwright-core; never a downloaded browser

export const CHROMIUM = process.env.LIVEVLM_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic', '--disable-dev-shm-usage',
];

/** Promise that rejects after ms (for bounding closes). */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: no result in ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Launch chromium; returns {browser, newContext(opts), close()} where close() closes every
 * page and context first and bounds each step in time. opts.args replaces CHROMIUM_ARGS. */
export async function launchBrowser(opts = {}) {
  process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
  const { chromium } = await import('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found (apt-get install chromium)`);
  const browser = await withTimeout(chromium.launch({
    executablePath: CHROMIUM, headless: true, args: opts.args || CHROMIUM_ARGS, timeout: T(30000),
  }), T(40000), 'chromium launch');
  const contexts = [];
  return {
    browser,
    async newContext(opts = {}) {
      const ctx = await browser.newContext({
        ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 }, ...opts,
      });
      ctx.setDefaultTimeout(T(10000));
      contexts.push(ctx);
      return ctx;
    },
    async closeContext(ctx) {
      for (const p of ctx.pages()) await withTimeout(p.close(), 5000, 'page close').catch(() => {});
      await withTimeout(ctx.close(), 5000, 'context close').catch(() => {});
    },
    async close() {
      for (const ctx of contexts) await this.closeContext(ctx);
      await withTimeout(browser.close(), 10000, 'browser close').catch(() => {
        try { browser.process?.()?.kill('SIGKILL'); } catch { /* gone */ }
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// backends and metrics

/** fakevlm's GET /stats (requests, active, queued, ...), or null when it does not answer. */
export async function fakevlmStats(fake, timeoutMs = T(3000)) {
  try {
    const r = await httpRequest({ port: fake.port, path: '/stats', timeoutMs });
    return r.status === 200 ? r.json() : null;
  } catch {
    return null;
  }
}

/**
 * Parse Prometheus text exposition: {types: {family: 'counter'|...}, samples: [{name, labels,
 * value}], get(name, labels?) → value of the first sample whose labels include `labels` (or
 * undefined), all(name) → samples of that exact name}.
 */
export function parseMetrics(text) {
  const types = {};
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    let m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (m) { types[m[1]] = m[2]; continue; }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let lm;
      while ((lm = re.exec(m[2]))) labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    const v = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels, value: v });
  }
  const matches = (s, name, labels) => s.name === name &&
    Object.entries(labels || {}).every(([k, v]) => s.labels[k] === String(v));
  return {
    text, types, samples,
    get(name, labels) { return samples.find((s) => matches(s, name, labels))?.value; },
    all(name) { return samples.filter((s) => s.name === name); },
  };
}

/** GET /metrics with the token (unless opts.auth === false) and parse it; throws unless 200. */
export async function scrapeMetrics(server, opts = {}) {
  const r = await server.request('/metrics', { auth: opts.auth, timeoutMs: opts.timeoutMs });
  if (r.status !== 200) throw new Error(`GET /metrics: HTTP ${r.status}: ${r.text.slice(0, 200)}`);
  return parseMetrics(r.text);
}

/** Stop feeding, send stop (when still open), and close every client. */
export async function stopAndClose(clients) {
  for (const c of clients) c.autoFeed(null);
  await Promise.all(clients.map(async (c) => {
    if (!c.closeInfo) {
      c.send({ type: 'stop' });
      await c.next('stopped', { timeoutMs: T(3000) }).catch(() => {});
    }
    await c.close();
  }));
}

/** Every vlm_response a client saw names its own prompt's hash (fakevlm answers say what they got). */
export function assertOwnAnswers(c) {
  for (const r of c.seen('vlm_response')) {
    const a = parseFakeAnswer(r.text);
    assert.ok(a, `fakevlm answer: ${JSON.stringify(r.text).slice(0, 120)}`);
    assert.equal(a.prompt, sha8(c.prompt), 'each session only gets answers about its own prompt');
  }
}

// ---------------------------------------------------------------------------------------------
// raw starts (configuration edges): exact arguments, stdout and stderr in separate files

/** A Proc whose stdout goes to outPath and stderr (the log) to logPath. */
export class SplitProc extends Proc {
  constructor(name, bin, args, opts) {
    super(name, bin, args, opts);
    this.outPath = opts.outPath;
  }

  start() {
    if (!fs.existsSync(this.bin)) {
      throw new Error(`${this.name}: binary ${this.bin} does not exist (build it first: make)`);
    }
    fs.appendFileSync(this.logPath, `### ${new Date().toISOString()} ${this.bin} ${this.args.join(' ')}\n`);
    const out = fs.openSync(this.outPath, 'a');
    const err = fs.openSync(this.logPath, 'a');
    this.child = spawn(this.bin, this.args, { cwd: this.cwd, env: this.env, stdio: ['ignore', out, err] });
    fs.closeSync(out);
    fs.closeSync(err);
    liveProcs.add(this);
    allProcs.push(this);
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        Object.assign(this, { exited: true, exitCode: code, signal });
        liveProcs.delete(this);
        resolve({ code, signal });
      });
      this.child.on('error', (e) => {
        Object.assign(this, { exited: true, spawnError: e });
        liveProcs.delete(this);
        resolve({ code: -1, signal: null, error: e });
      });
    });
    return this;
  }

  outText() {
    try { return fs.readFileSync(this.outPath, 'utf8'); } catch { return ''; }
  }
}

/**
 * Run `livevlm` with exactly `args` (nothing added), stdout in <dir>/stdout.txt and stderr in
 * <dir>/<logName>. opts: dir, env (added to a clean XDG_CONFIG_HOME in dir), logName, portFile
 * (when given, waits until that port accepts), expectExit (see Proc.expectExit: for a start that
 * must be refused). Resolves {proc, dir, port}.
 */
export async function spawnLivevlm(args, opts = {}) {
  const dir = opts.dir || makeTempDir('livevlm-raw');
  const name = opts.logName || 'livevlm.log';
  const proc = new SplitProc('livevlm', LIVEVLM_BIN, args, {
    cwd: dir, env: childEnv(dir, opts.env), logPath: path.join(dir, name),
    outPath: path.join(dir, name.replace(/\.log$/, '') + '.stdout.txt'),
  });
  if (opts.expectExit) proc.expectExit(opts.expectExit);
  proc.start();
  const port = opts.portFile ? await waitForPort(proc, opts.portFile, opts.readyTimeoutMs) : null;
  return { proc, dir, port };
}

/** TCP addresses ("ip:port", IPv6 without brackets) that process pid listens on, from its socket
 * descriptors and /proc/net/tcp{,6}. */
export function listeningAddresses(pid) {
  const inodes = new Set();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let link = '';
    try { link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { continue; }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]);
  }
  const out = [];
  for (const [file, v6] of [[`/proc/${pid}/net/tcp`, false], [`/proc/${pid}/net/tcp6`, true]]) {
    let text = '';
    try { text = fs.readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9])) continue; // 0A = LISTEN
      const [hex, portHex] = f[1].split(':');
      const port = parseInt(portHex, 16);
      let ip;
      if (!v6) {
        ip = [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
      } else {
        // four little-endian 32-bit words
        const bytes = [];
        for (let w = 0; w < 4; w++) for (let b = 3; b >= 0; b--) bytes.push(hex.slice(w * 8 + b * 2, w * 8 + b * 2 + 2));
        const groups = [];
        for (let i = 0; i < 16; i += 2) groups.push(parseInt(bytes[i] + bytes[i + 1], 16).toString(16));
        ip = groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
      }
      out.push(`${ip}:${port}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// raw sockets, for tests that attack the front door byte by byte (attack_http.test.mjs)

const { default: rawTls } = await import('node:tls');

/**
 * Open a raw TCP or TLS (certificate not checked) connection to host:port, optionally from
 * localAddress (127.0.0.2 etc: another client address). Resolves once connected (TLS: after the
 * handshake) with {sock, data() (every byte received so far, one Buffer), isClosed(), closed (a
 * promise of {atMs}), waitFor(pred, ms) (resolves true once pred(data()) holds, false at ms or
 * when the socket closes first), write(bytes)}; rejects when the connection fails before that.
 * Socket errors after the connection count as a close.
 */
export function rawConnect({ port, tls: useTls = false, host = '127.0.0.1', localAddress, timeoutMs = T(5000) }) {
  return new Promise((resolve, reject) => {
    const opts = { host, port, ...(localAddress ? { localAddress } : {}) };
    const sock = useTls
      ? rawTls.connect({ ...opts, rejectUnauthorized: false, servername: 'localhost' })
      : net.connect(opts);
    const chunks = [];
    let closedAt = null;
    let settled = false;
    const waiters = new Set();
    const wake = () => { for (const w of [...waiters]) w(); };
    let resolveClosed;
    const closed = new Promise((r) => { resolveClosed = r; });
    const timer = setTimeout(() => {
      if (!settled) { settled = true; sock.destroy(); reject(new Error(`connect to ${port}: no connection in ${timeoutMs} ms`)); }
    }, timeoutMs);
    sock.on('data', (d) => { chunks.push(d); wake(); });
    sock.on('error', () => { /* reported as a close */ });
    sock.on('close', () => {
      closedAt = Date.now();
      resolveClosed({ atMs: closedAt });
      wake();
      if (!settled) { settled = true; clearTimeout(timer); reject(new Error(`connect to ${port}: closed before it was up`)); }
    });
    sock.once(useTls ? 'secureConnect' : 'connect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const api = {
        sock,
        closed,
        data: () => Buffer.concat(chunks),
        isClosed: () => closedAt !== null,
        write: (b) => { if (closedAt === null && !sock.destroyed) sock.write(b); },
        waitFor(pred, ms) {
          return new Promise((res) => {
            const check = () => {
              if (pred(api.data())) { done(true); return; }
              if (closedAt !== null) done(false);
            };
            const t = setTimeout(() => done(false), ms);
            function done(v) { clearTimeout(t); waiters.delete(check); res(v); }
            waiters.add(check);
            check();
          });
        },
        destroy: () => sock.destroy(),
      };
      resolve(api);
    });
  });
}

/**
 * Split the HTTP/1.1 responses at the front of buf. methods[i] is the method of the i-th request
 * (a response to HEAD has no body; 1xx, 204 and 304 never do). Returns {responses: [{status,
 * headers (names lower-cased), body (Buffer)}], rest (bytes after the last whole response)}.
 */
export function parseHttpResponses(buf, methods = []) {
  const responses = [];
  let off = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const lines = buf.subarray(off, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
    if (!m) throw new Error(`not an HTTP response at byte ${off}: ${JSON.stringify(lines[0].slice(0, 80))}`);
    const status = Number(m[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const interim = status >= 100 && status < 200;
    const noBody = interim || status === 204 || status === 304 || methods[responses.length] === 'HEAD';
    const len = noBody ? 0 : Number(headers['content-length'] ?? 0);
    if (end + 4 + len > buf.length) break;
    const r = { status, headers, body: buf.subarray(end + 4, end + 4 + len) };
    off = end + 4 + len;
    if (interim) continue; /* 100 Continue is not an answer */
    responses.push(r);
  }
  return { responses, rest: buf.subarray(off) };
}

/** httpRequest with a client address: opts as httpRequest plus localAddress. */
export function httpRequestFrom({ localAddress, tls: useTls = false, host = '127.0.0.1', port, method = 'GET',
  path: p = '/', headers = {}, body, timeoutMs = T(10000) }) {
  return new Promise((resolve, reject) => {
    const mod = useTls ? https : http;
    const req = mod.request({
      host, port, method, path: p, headers, rejectUnauthorized: false, agent: false, localAddress,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body: buf, text: buf.toString('utf8'),
          json() { return JSON.parse(buf.toString('utf8')); } });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${p}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) req.end(body); else req.end();
  });
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc). */
export function processCpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  return ticks * 10; // USER_HZ is 100 on Linux
}

// ---------------------------------------------------------------------------------------------
// browser pages: what a user would call broken

/**
 * Collect a page's uncaught exceptions (`pageerror`), crashes and console messages of type
 * `error` (Chromium's own "Failed to load resource" and "WebSocket connection … failed" lines
 * among them), so a test can fail on them at its end with `watcher.check()`. Attach it before
 * page.goto so nothing is missed.
 *
 * allow: [{text: RegExp, url?: RegExp, why: 'sentence'}]: a message is expected when its text
 * matches `text` and, when `url` is given, the URL it is reported at matches `url` (for a failed
 * resource, the resource's URL). Every entry must say why the message is right for that test.
 * Expected messages go to `allowed`, the rest to `errors`. Returns {page, errors, allowed, check}.
 */
export function watchPageErrors(page, allow = []) {
  for (const a of allow) {
    if (!(a.text instanceof RegExp) || typeof a.why !== 'string' || !a.why) {
      throw new Error(`watchPageErrors: allow entry ${JSON.stringify(a)} needs text (a RegExp) and why`);
    }
  }
  const w = { page, errors: [], allowed: [] };
  const record = (kind, text, url = '') => {
    const line = `${kind}: ${text}${url ? ` [at ${url}]` : ''}`;
    const expected = allow.some((a) => a.text.test(text) && (!a.url || a.url.test(url)));
    (expected ? w.allowed : w.errors).push(line);
  };
  page.on('pageerror', (e) => record('pageerror', (e && e.stack) || String(e)));
  page.on('crash', () => record('crash', 'the page crashed'));
  page.on('console', (m) => {
    if (m.type() === 'error') record('console.error', m.text(), (m.location() && m.location().url) || '');
  });
  /** Throw (an assertion) listing every unexpected message so far; what names the page. */
  w.check = (what = 'page') => {
    assert.deepEqual(w.errors, [], `${what}: no uncaught exception and no console error ` +
      `(expected and ignored: ${JSON.stringify(w.allowed)})`);
  };
  return w;
}

// ---------------------------------------------------------------------------------------------
// rtspcam (tests/tools/rtspcam.c): a test RTSP camera

/**
 * Start rtspcam on 127.0.0.1. opts: port (default 0: a free one; pass an earlier instance's port to
 * bring a camera back where livevlm expects it), size ('WxH'), fps, gop, user, pass, path, name.
 * Resolves {proc, port, url (without credentials), dir, stop()} once it prints its ready line.
 */
export async function startRtspcam(opts = {}) {
  const name = opts.name || 'rtspcam';
  const dir = opts.dir || makeTempDir(name);
  const args = ['--port', String(opts.port ?? 0)];
  if (opts.size) args.push('--size', opts.size);
  if (opts.fps) args.push('--fps', String(opts.fps));
  if (opts.gop) args.push('--gop', String(opts.gop));
  if (opts.path) args.push('--path', opts.path);
  if (opts.user) args.push('--user', opts.user, '--pass', opts.pass);
  const proc = new Proc(name, path.join(BUILD_DIR, 'rtspcam'), args,
    { cwd: dir, env: childEnv(dir), logPath: path.join(dir, `${name}.log`) }).start();
  const m = await waitUntil(() => {
    if (proc.exited) throw new Error(`${name} ${proc.describeExit()}:\n${proc.logTail(20)}`);
    return /rtspcam: ready (rtsp:\/\/127\.0\.0\.1:(\d+)\/\S*)/.exec(proc.logText());
  }, { timeoutMs: T(10000), what: `${name} ready` });
  return { proc, dir, url: m[1], port: Number(m[2]), stop: () => proc.stop() };
}
