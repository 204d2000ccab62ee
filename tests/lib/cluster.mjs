// cluster.mjs - a whole livevlm cluster on loopback for the tests in tests/cluster/: one
// redis-server, fakevlm backends, `livevlm worker` processes, `livevlm serve --redis` frontends
// and haproxy in front of them with the deployment's own config (deploy/haproxy.cfg, its addresses
// given in the environment). Every process is a harness Proc (its log in its temp dir, stopped and
// judged by stopAll), so a test can kill -9 any of them and start it again on the same port.
//
//   const cl = await startCluster({ frontends: 2, workers: 2, aof: true });
//   const page = await cl.page({ prompt: '...' });   // a reconnecting client through haproxy
//   await cl.killFrontend(0);                        // kill -9, haproxy notices within ~1 s
//   ...
//   after(stopAll);
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  Proc, Server, ROOT, LIVEVLM_BIN, cli, makeTempDir, startFakevlm, startLivevlm, waitForPort, waitUntil,
  httpRequest, parseMetrics, scrapeMetrics, connectWs, run, sleep, T, JPEG_320,
} from './harness.mjs';

export const HAPROXY_BIN = process.env.LIVEVLM_HAPROXY || '/usr/sbin/haproxy';
export const REDIS_BIN = process.env.LIVEVLM_REDIS_SERVER || '/usr/bin/redis-server';
export const REDIS_CLI = '/usr/bin/redis-cli';
export const HAPROXY_CFG = path.join(ROOT, 'deploy', 'haproxy.cfg');

/** A TCP port nobody listens on now (the kernel's pick; closed again before returning). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function env(dir, extra = {}) {
  return { ...process.env, XDG_CONFIG_HOME: path.join(dir, 'xdg'), ...extra };
}

/** Seconds since t0 with two decimals (for the measured lines the tests print). */
export const secs = (ms) => (ms / 1000).toFixed(2);

/** Jain's fairness index of the numbers in xs (1 = perfectly equal). */
export function jain(xs) {
  const s = xs.reduce((a, b) => a + b, 0);
  const s2 = xs.reduce((a, b) => a + b * b, 0);
  return s2 === 0 ? 1 : (s * s) / (xs.length * s2);
}

// ---------------------------------------------------------------------------------------------
// redis-server

/**
 * redis-server on 127.0.0.1 in its own dir. opts: aof (appendonly yes, appendfsync always: every
 * write on disk before the reply, so SIGKILL loses nothing), port (default: a free one). Nothing is
 * ever saved as RDB (--save ''). stop() is SIGTERM; kill() SIGKILL; start() again on the same port
 * and dir (the AOF, when on, brings the data back).
 */
export class Redis {
  constructor({ aof = false, port, dir } = {}) {
    this.aof = aof;
    this.port = port;
    this.dir = dir || makeTempDir('redis');
    this.starts = 0;
  }

  get url() { return `redis://127.0.0.1:${this.port}`; }

  async start() {
    if (!this.port) this.port = await freePort();
    this.starts++;
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir,
      '--save', '', '--daemonize', 'no', '--logfile', '', '--protected-mode', 'yes',
      '--appendonly', this.aof ? 'yes' : 'no', '--appendfsync', 'always'];
    this.proc = new Proc(`redis-server#${this.starts}`, REDIS_BIN, args,
      { cwd: this.dir, env: env(this.dir), logPath: path.join(this.dir, 'redis.log') }).start();
    await waitUntil(async () => {
      if (this.proc.exited) throw new Error(`redis-server ${this.proc.describeExit()}:\n${this.proc.logTail(20)}`);
      return this.ping();
    }, { timeoutMs: T(10000), intervalMs: 50, what: `redis-server on ${this.port}` });
    return this;
  }

  ping() {
    try { return this.cli('PING').trim() === 'PONG'; } catch { return false; }
  }

  /** redis-cli against this server; returns stdout (a command error prints as text, exit 0). */
  cli(...args) {
    return run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(this.port), '--no-raw', ...args], { timeout: T(5000) });
  }

  /** redis-cli --raw (plain values, one per line). */
  raw(...args) {
    return run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(this.port), '--raw', ...args], { timeout: T(5000) });
  }

  async kill(signal = 'SIGKILL') {
    this.proc.kill(signal);
    if (!(await this.proc.waitExit(T(5000)))) throw new Error(`redis-server did not exit after ${signal}`);
  }

  stop() { return this.proc.stop(); }
}

// ---------------------------------------------------------------------------------------------
// workers

/** `livevlm worker`: opts id, redisUrl, backends [{id,url}], args. Resolves {proc, port, id, dir}. */
export async function startWorker({ id, redisUrl, backends, args = [], dir, port = 0, logLevel = 'debug' }) {
  dir = dir || makeTempDir(`worker-${id}`);
  const portFile = path.join(dir, `worker-${Date.now()}.port`);
  const argv = ['worker', '--redis', redisUrl, '--host', '127.0.0.1', '--port', String(port),
    '--port-file', portFile, '--node-id', id, '--no-detect', '--log-level', logLevel];
  for (const b of backends) argv.push('--backend', `${b.id}=${b.url}`);
  argv.push(...args);
  const proc = new Proc(`worker ${id}`, LIVEVLM_BIN, argv,
    { cwd: dir, env: env(dir), logPath: path.join(dir, 'worker.log') }).start();
  const p = await waitForPort(proc, portFile);
  return {
    proc, port: p, id, dir,
    logTail: (n) => proc.logTail(n),
    /** GET /metrics of the worker's own listener (plain HTTP, no credential), parsed. */
    async metrics() {
      const r = await httpRequest({ port: p, path: '/metrics', timeoutMs: T(3000) });
      if (r.status !== 200) throw new Error(`worker ${id} GET /metrics: HTTP ${r.status}: ${r.text.slice(0, 200)}`);
      return parseMetrics(r.text);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// haproxy

/** haproxy's view of the backend `livevlm` from its stats page: {fe1: 'UP', fe2: 'DOWN', ...}. */
export async function haproxyStates(statsPort) {
  const r = await httpRequest({ port: statsPort, path: '/stats;csv', timeoutMs: T(2000) });
  if (r.status !== 200) throw new Error(`haproxy stats: HTTP ${r.status}`);
  const lines = r.text.split('\n').filter(Boolean);
  const head = lines[0].replace(/^# /, '').split(',');
  const ip = head.indexOf('pxname');
  const is = head.indexOf('svname');
  const ist = head.indexOf('status');
  const out = {};
  for (const l of lines.slice(1)) {
    const f = l.split(',');
    if (f[ip] === 'livevlm' && f[is] !== 'BACKEND') out[f[is]] = f[ist];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the cluster

/**
 * Start a cluster on loopback. opts:
 *   frontends (2..4, default 2), workers (default 2), aof (Redis AOF, default false),
 *   fakes: options of each fakevlm (default two with slots 4, ttft 30 ms, 5 ms/token, 8 tokens),
 *   auth ('token' default: one shared token in every frontend's config dir; or 'none'; or
 *   'accounts' with db: the shared database's URL, e.g. tests/lib/pg.mjs startPostgres().url),
 *   frontendArgs, workerArgs (extra flags for every frontend / worker; workerArgs may be a
 *   function of the worker's index), workerBackends (per worker,
 *   the indices of the fakes it serves: [[0], [1]] gives each worker its own; default all),
 *   haproxy (default true).
 * Backends are named f1, f2, ...; workers w1, w2, ...; frontends fe1, fe2, ... (their --node-id,
 * and the server names in haproxy).
 */
export async function startCluster(opts = {}) {
  const cl = new Cluster(opts);
  await cl.start();
  return cl;
}

export class Cluster {
  constructor(opts) {
    this.opts = {
      frontends: 2, workers: 2, aof: false, auth: 'token', haproxy: true,
      fakes: [{}, {}], frontendArgs: [], workerArgs: [], ...opts,
    };
    this.dir = makeTempDir('cluster');
    this.token = this.opts.auth !== 'token' ? null
      : [...Array(64)].map(() => '0123456789abcdef'[Math.floor(Math.random() * 16)]).join('');
    this.fakes = [];
    this.workers = [];
    this.frontends = [];
  }

  get backends() { return this.fakes.map((f, i) => ({ id: `f${i + 1}`, url: f.url })); }

  /** The livevlm command line (user, key, quota, tenant...) on the shared database of an
   * auth: 'accounts' cluster; its output lines, or a throw with its stderr when it fails. The
   * frontends see a change on their next reload (each second). */
  cli(args) {
    const r = cli(args, { configDir: this.frontends[0].configDir, args: ['--db', this.opts.db] });
    if (r.code !== 0) throw new Error(`livevlm ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    return r.lines;
  }

  async start() {
    const o = this.opts;
    this.redis = await new Redis({ aof: o.aof }).start();
    this.fakes = await Promise.all(o.fakes.map((f) => startFakevlm({ slots: 4, ttftMs: 30, tokenMs: 5, tokens: 8, ...f })));
    this.fakes.forEach((f, i) => { f.id = `f${i + 1}`; });
    for (let i = 0; i < o.workers; i++) await this.startWorker(i);
    for (let i = 0; i < o.frontends; i++) await this.startFrontend(i);
    if (o.haproxy) await this.startHaproxy();
    return this;
  }

  async startWorker(i, { port = 0 } = {}) {
    const old = this.workers[i];
    const w = await startWorker({
      id: `w${i + 1}`, redisUrl: this.redis.url,
      backends: this.opts.workerBackends ? this.opts.workerBackends[i].map((k) => this.backends[k]) : this.backends,
      args: typeof this.opts.workerArgs === 'function' ? this.opts.workerArgs(i) : this.opts.workerArgs,
      dir: old?.dir, port,
    });
    this.workers[i] = w;
    return w;
  }

  /** Start frontend i (again: on its old port and dirs when it ran before). */
  async startFrontend(i) {
    const old = this.frontends[i];
    const dir = old?.dir || makeTempDir(`fe${i + 1}`);
    const configDir = path.join(dir, 'config');
    fs.mkdirSync(configDir, { recursive: true, mode: 0o700 });
    if (this.token) fs.writeFileSync(path.join(configDir, 'token'), `${this.token}\n`, { mode: 0o600 });
    const args = ['--redis', this.redis.url, '--node-id', `fe${i + 1}`, '--trusted-proxy', '127.0.0.1', ...this.opts.frontendArgs];
    if (old) args.push('--port', String(old.port));
    if (this.opts.auth === 'accounts') args.push('--db', this.opts.db);
    const srv = await startLivevlm({
      dir, configDir, backends: this.backends, auth: this.opts.auth === 'token' ? undefined : this.opts.auth, args,
    });
    srv.nodeId = `fe${i + 1}`;
    srv.index = i;
    if (this.token && srv.token !== this.token) throw new Error(`fe${i + 1} did not take the shared token`);
    this.frontends[i] = srv;
    return srv;
  }

  async startHaproxy() {
    const dir = makeTempDir('haproxy');
    this.haproxyPort = await freePort();
    this.statsPort = await freePort();
    const e = {
      LIVEVLM_HAPROXY_BIND: `127.0.0.1:${this.haproxyPort}`,
      LIVEVLM_HAPROXY_STATS: `127.0.0.1:${this.statsPort}`,
    };
    this.frontends.forEach((f, i) => { e[`LIVEVLM_FRONTEND_${i + 1}`] = `127.0.0.1:${f.port}`; });
    this.haproxyProc = new Proc('haproxy', HAPROXY_BIN, ['-f', HAPROXY_CFG, '-db'],
      { cwd: dir, env: env(dir, e), logPath: path.join(dir, 'haproxy.log') }).start();
    // The proxy as a Server: connect()/session()/request() through it with the shared token.
    this.proxy = new Server({ proc: this.haproxyProc, port: this.haproxyPort, dir, configDir: null, tls: false, host: '127.0.0.1' });
    this.proxy.token = this.token;
    this.proxy.logTail = (n = 30) => this.logTails(n);
    await this.waitHaproxy(Object.fromEntries(this.frontends.map((f) => [f.nodeId, 'UP'])), T(10000));
  }

  /** Wait until haproxy reports each named server in exactly the given state ('UP', 'DOWN'; not
   * the transitions 'UP 1/2' (failing) or 'DOWN 1/2' (rising)). Resolves the time it saw it. */
  async waitHaproxy(want, timeoutMs = T(5000)) {
    let last;
    return waitUntil(async () => {
      if (this.haproxyProc.exited) throw new Error(`haproxy ${this.haproxyProc.describeExit()}:\n${this.haproxyProc.logTail(20)}`);
      try { last = await haproxyStates(this.statsPort); } catch (e) { last = e.message; return false; }
      return Object.entries(want).every(([k, v]) => last[k] === v) ? Date.now() : false;
    }, { timeoutMs, intervalMs: 25, what: `haproxy to see ${JSON.stringify(want)} (last ${JSON.stringify(last)})` });
  }

  /** kill -9 frontend i; resolves the time of the kill once it is gone. */
  async killFrontend(i, signal = 'SIGKILL') {
    const f = this.frontends[i];
    const t = Date.now();
    f.proc.kill(signal);
    if (!(await f.proc.waitExit(T(5000)))) throw new Error(`${f.nodeId} did not die on ${signal}`);
    return t;
  }

  async killWorker(i, signal = 'SIGKILL') {
    const w = this.workers[i];
    const t = Date.now();
    w.proc.kill(signal);
    if (!(await w.proc.waitExit(T(5000)))) throw new Error(`worker ${w.id} did not die on ${signal}`);
    return t;
  }

  /** /metrics of frontend i (with the token), parsed. */
  frontendMetrics(i) { return scrapeMetrics(this.frontends[i]); }

  /** Sum of a metric over every live worker's /metrics (labels filter as parseMetrics.get). */
  async workerSum(name, labels = {}) {
    const per = {};
    for (const w of this.workers) {
      if (w.proc.exited) continue;
      const m = await w.metrics();
      per[w.id] = m.all(name).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === String(v)))
        .reduce((a, s) => a + s.value, 0);
    }
    return per;
  }

  /** GET /readyz of frontend i: the HTTP status (0 when it does not answer). */
  async readyz(i) {
    try {
      return (await httpRequest({ port: this.frontends[i].port, path: '/readyz', timeoutMs: T(2000) })).status;
    } catch { return 0; }
  }

  /** Which frontend (node id) owns session sid, as Redis says (lv:o:<sid>), or null. */
  owner(sid) {
    const v = this.redis.raw('GET', `lv:o:${sid}`).trim();
    return v || null;
  }

  /** A client through haproxy that keeps its session like the page does (see PageSession). */
  async page(opts = {}) {
    const p = new PageSession(this.proxy, opts);
    await p.open();
    return p;
  }

  /** The last lines of every log of the cluster (for assertion messages). */
  logTails(n = 15) {
    const parts = [];
    const add = (name, proc) => { if (proc) parts.push(`--- ${name} (${proc.logPath}):\n${proc.logTail(n)}`); };
    this.frontends.forEach((f) => add(f.nodeId, f.proc));
    this.workers.forEach((w) => add(`worker ${w.id}`, w.proc));
    add('redis', this.redis?.proc);
    add('haproxy', this.haproxyProc);
    return parts.join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// a page-like client: one session, reconnecting through the proxy with its id and secret

/**
 * What web/ws.js does, in the test process: hello (new session with settings), start, answer
 * every credit with a JPEG; when the socket closes, reconnect (at once, then every 100..500 ms)
 * and resume with the id and secret until retryForMs passes. Every socket's messages stay in
 * this.clients (answers: this.seen('vlm_response')). this.events records what happened:
 * {t, kind: 'close'|'connect_failed'|'resumed'|'hello_error', ...}.
 * opts: prompt, settings, jpeg (default the 320x240 frame), localAddress, retryForMs (default 30 s),
 * start (default true), name.
 */
export class PageSession {
  constructor(target, opts = {}) {
    this.target = target;
    this.opts = opts;
    this.prompt = opts.prompt || `page ${Math.random().toString(36).slice(2, 8)}: what is in the picture?`;
    this.jpeg = opts.jpeg || JPEG_320();
    this.clients = [];
    this.events = [];
    this.stopped = false;
    this.sessionId = null;
    this.secret = null;
  }

  get current() { return this.clients[this.clients.length - 1]; }

  seen(type, where = () => true) { return this.clients.flatMap((c) => c.seen(type, where)); }

  async open() {
    const c = await connectWs(this.target, { localAddress: this.opts.localAddress });
    const m = await c.hello({ settings: { prompt: this.prompt, interval_ms: 200, ...(this.opts.settings || {}) } });
    this.sessionId = m.session_id;
    this.secret = m.resume_secret;
    this.first = m;
    this.watch(c);
    if (this.opts.start !== false) await c.start();
    c.autoFeed(this.jpeg);
    return this;
  }

  watch(c) {
    c.prompt = this.prompt;
    this.clients.push(c);
    c.closed.then((info) => {
      if (this.current !== c || this.stopped) return;
      this.events.push({ t: Date.now(), kind: 'close', code: info.code });
      this.reconnect();
    });
  }

  async reconnect() {
    const deadline = Date.now() + (this.opts.retryForMs ?? T(30000));
    let delay = 0;
    while (!this.stopped && Date.now() < deadline) {
      if (delay) await sleep(delay);
      delay = Math.min(500, Math.max(100, delay * 2));
      let c;
      try {
        c = await connectWs(this.target, { localAddress: this.opts.localAddress, timeoutMs: T(3000) });
      } catch (e) {
        this.events.push({ t: Date.now(), kind: 'connect_failed', why: e.status ? `HTTP ${e.status}` : e.message });
        continue;
      }
      let m;
      try {
        m = await c.hello({ session_id: this.sessionId, resume_secret: this.secret }, { allowError: true, timeoutMs: T(3000) });
      } catch (e) {
        this.events.push({ t: Date.now(), kind: 'hello_error', code: 'no_answer', message: e.message });
        await c.close();
        continue;
      }
      if (m.type === 'error') {
        this.events.push({ t: Date.now(), kind: 'hello_error', code: m.code, message: m.message });
        await c.close();
        continue;
      }
      this.events.push({ t: Date.now(), kind: 'resumed', session: m });
      this.watch(c);
      if (this.stopped) { await c.close(); return; }
      c.autoFeed(this.jpeg);
      return;
    }
    this.events.push({ t: Date.now(), kind: 'gave_up' });
  }

  /** Resolves the first `resumed` event after time t (waits up to ms). */
  resumedAfter(t, ms = T(10000)) {
    return waitUntil(() => this.events.find((e) => e.kind === 'resumed' && e.t >= t),
      { timeoutMs: ms, intervalMs: 10, what: `session ${this.sessionId} resumed (events ${JSON.stringify(this.events.map((e) => [e.kind, e.code || e.why || '']))})` });
  }

  /** Resolves the first vlm_response that arrived after time t (on any of its sockets). */
  answerAfter(t, ms = T(10000)) {
    return waitUntil(() => this.seen('vlm_response').find((m) => m.__t > t),
      { timeoutMs: ms, intervalMs: 10, what: `an answer for session ${this.sessionId} after ${new Date(t).toISOString()}` });
  }

  async close() {
    this.stopped = true;
    for (const c of this.clients) c.autoFeed(null);
    const c = this.current;
    if (c && !c.closeInfo) {
      try { c.send({ type: 'stop' }); } catch { /* closing */ }
      await c.next('stopped', { timeoutMs: T(2000) }).catch(() => {});
    }
    await Promise.all(this.clients.map((x) => x.close()));
  }
}
