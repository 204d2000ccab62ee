// app.js - the page's entry point: sign-in, the WebSocket session, camera start/stop, the wiring
// between the server's messages and the cards, and what the status badge says (computeStatus: the
// connection, the run, and the backends' trouble, with the page's own stall watch where the server
// is silent). Protocol: docs/protocol.md.

import { $, prefs, copyText, fmtMs, fmtBytes } from './util.js';
import { hydrateIcons, setIcon } from './icons.js';
import { Connection } from './ws.js';
import { cameraSupported } from './camera.js';
import { SourceCamera, CameraSources } from './cameras.js';
import { FrameSender } from './frames.js';
import { AnswerView } from './answer.js';
import { StatsView } from './stats.js';
import { Controls } from './controls.js';
import { Notices, quotaNotice } from './notices.js';
import { HistoryView } from './history.js';
import { Compare } from './compare.js';
import { startVideo, videoFps } from './video.js';
import { account, whoAmI, showAccount, csrfFetch, toSignIn } from './account.js';

// Settings carried over to a fresh session when the old one was lost (server restart, expiry).
const RESTORABLE = ['prompt', 'max_tokens', 'temperature', 'interval_ms', 'backend', 'model',
  'frame_max_side', 'jpeg_quality', 'stats_interval_ms', 'debug', 'source'];
const PROTOCOL = 1;
// How long a started run may go without any sign of progress (a credit, a queue place, an answer
// starting or growing) before the page says so itself: the server is silent while no backend can
// take a frame (docs/protocol.md has no message for "still waiting"). At least this, and at least
// two frame intervals and a bit.
const STALL_MIN_MS = 6000;
// An answer that started but has not grown for this long is reported the same way.
const ANSWER_STALL_MS = 10000;
// While in doubt about the backends (an error, or a stall), ask GET /api/v1/models this often.
const HEALTH_POLL_MS = 3000;

class AuthError extends Error {}

const state = {
  config: null,
  started: false, // the app view has been wired once
  connState: 'disconnected',
  connReason: null, // why a connected socket waits for its session (state event's reason)
  serverStarted: false,
  wantRun: false,
  cameraOpening: false,
  stopsPending: 0,
  statusError: null,
  fatal: null,
  stoppedOnce: false, // the user stopped a run: the idle badge says "Stopped", not "Ready"
  backends: null, // the last backends list (config or models): [{id, healthy, models, error}]
  lastSettings: null,
  sessionSeen: false,
  pseudoFs: false,
};

// What the current run has shown so far: the badge and the line under the answer are made from it.
const run = {
  progressAt: 0, // last sign of progress (performance.now())
  queue: null, // {position, queued} from `queued`, until the answer starts
  answering: false, // between answer_start and the end of that answer
  answerAt: 0, // answer_start or its last delta
  answers: 0, // answers completed since the run (re)started on this connection
  trouble: null, // {code, message, at}: the last backend error, until an answer grows again
  wasDown: false, // the backends were seen down during this trouble
  pollTimer: null,
  polling: false,
};

function resetRun() {
  run.progressAt = performance.now();
  run.queue = null;
  run.answering = false;
  run.answerAt = 0;
  run.answers = 0;
  run.trouble = null;
  run.wasDown = false;
}

let conn = null;
let notices = null;
let camera = null;
let frames = null;
let answer = null;
let historyView = null; // the History panel (history.js)
let compare = null; // Compare: a second session fed the same frames (compare.js)
let sources = null; // the admin's IP cameras and the session's `source` (cameras.js)
let stats = null;
let controls = null;
let tabChannel = null;

// ---- HTTP ------------------------------------------------------------------------------------

async function apiFetch(path, opts = {}) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store', ...opts });
  if (res.status === 401) throw new AuthError('unauthorised');
  return res;
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch { /* not JSON */ }
  return `HTTP ${res.status}`;
}

// ---- views -----------------------------------------------------------------------------------

function showView(name) {
  document.body.dataset.view = name;
  $('bootView').hidden = name !== 'boot';
  $('loginView').hidden = name !== 'login';
  $('appView').hidden = name !== 'app';
}

let bootRetry = 1000;
async function boot() {
  // Accounts: a page with no sign-in goes to /login; token mode answers 200 and goes on as before.
  if ((await whoAmI()) === 'signin') return;
  let res;
  try {
    res = await apiFetch('/api/v1/config');
  } catch (e) {
    if (e instanceof AuthError) return showLogin();
    return bootFailed('Cannot reach the server. Retrying…');
  }
  if (!res.ok) return bootFailed(`The server answered ${await errorText(res)}. Retrying…`);
  let config;
  try {
    config = await res.json();
  } catch {
    return bootFailed('The server sent an unreadable configuration. Retrying…');
  }
  bootRetry = 1000;
  state.config = config;
  startApp(config);
  showAccount({ signOut: logout });
}

function bootFailed(message) {
  if (document.body.dataset.view === 'app') {
    setFatal(message);
  } else {
    showView('boot');
    $('bootMessage').textContent = message;
  }
  setTimeout(boot, bootRetry);
  bootRetry = Math.min(10000, bootRetry * 2);
}

function showLogin(message) {
  if (conn) conn.stop();
  if (camera && camera.running) stopLocal(false);
  if (account.accounts) return toSignIn(); // accounts sign in on /login
  showView('login');
  const err = $('loginError');
  err.textContent = message || '';
  const submit = $('loginSubmit');
  submit.disabled = false;
  submit.querySelector('.btn-label').textContent = 'Sign in';
  setTimeout(() => $('loginToken').focus(), 0);
}

function tokenFrom(input) {
  const s = input.trim();
  const m = /[?&#]token=([^&#\s]+)/.exec(s);
  return m ? decodeURIComponent(m[1]) : s;
}

async function login(ev) {
  ev.preventDefault();
  const input = $('loginToken');
  const err = $('loginError');
  const submit = $('loginSubmit');
  const token = tokenFrom(input.value);
  if (!token) {
    err.textContent = 'Enter the access token.';
    input.focus();
    return;
  }
  submit.disabled = true;
  submit.querySelector('.btn-label').textContent = 'Signing in…';
  err.textContent = '';
  let res;
  try {
    res = await fetch('/api/v1/login', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }),
    });
  } catch {
    res = null;
  }
  submit.disabled = false;
  submit.querySelector('.btn-label').textContent = 'Sign in';
  if (res && (res.status === 204 || res.status === 200)) {
    input.value = '';
    showView('boot');
    $('bootMessage').textContent = 'Signed in. Loading…';
    boot();
    return;
  }
  if (!res) err.textContent = 'Cannot reach the server.';
  else if (res.status === 401) err.textContent = 'Wrong token';
  else if (res.status === 429) err.textContent = 'Too many attempts, wait a minute';
  else err.textContent = `Sign-in failed: ${await errorText(res)}`;
  input.select();
}

async function logout(everywhere = false) {
  try {
    await csrfFetch(everywhere === true ? '/api/v1/logout?everywhere=1' : '/api/v1/logout',
      { method: 'POST', credentials: 'same-origin', cache: 'no-store' });
  } catch { /* signed out locally anyway */ }
  state.wantRun = false;
  if (camera) stopLocal(false);
  if (conn) conn.stop();
  Connection.forget();
  if (historyView) historyView.forget(); // this session's history leaves this browser with the sign-out
  state.lastSettings = null;
  state.sessionSeen = false;
  showLogin();
}

// ---- status badge ----------------------------------------------------------------------------

function setFatal(message) {
  state.fatal = message;
  renderStatus();
}

function running() {
  return state.wantRun && !!camera && camera.running;
}

function intervalMs() {
  const v = controls && controls.settings ? Number(controls.settings.interval_ms) : NaN;
  return Number.isFinite(v) && v > 0 ? v : 1000;
}

/** The backends this session's frames can go to, from the last list the server gave. */
function relevantBackends() {
  const all = Array.isArray(state.backends) ? state.backends.filter((b) => b && typeof b.id === 'string') : [];
  const s = (controls && controls.settings) || {};
  if (s.backend) return all.filter((b) => b.id === s.backend);
  if (s.model) {
    const serving = all.filter((b) => Array.isArray(b.models) && b.models.some((m) => m === s.model || String(m).split(':')[0] === s.model));
    if (serving.length) return serving;
  }
  return all;
}

/** {none, down, detail}: no backend at all, every relevant one unhealthy, and why. */
function backendHealth() {
  if (!Array.isArray(state.backends)) return { none: false, down: false, detail: '' };
  const rel = relevantBackends();
  const down = rel.length > 0 && rel.every((b) => b.healthy === false);
  const detail = rel.filter((b) => b.healthy === false)
    .map((b) => `${b.id}${b.url_host ? ` (${b.url_host})` : ''}: ${b.error || 'not answering'}`).join('; ');
  return { none: state.backends.length === 0, down, detail };
}

const looksUnreachable = (t) => /cannot reach|connection refused|could not connect|couldn't connect|unreachable|resolve|no route|reset by peer/i.test(t || '');

/**
 * The truth about the session in one state, a badge text, a sentence for the line under the answer
 * and one for the empty answer box. States: connecting, reconnecting, disconnected, error,
 * connected (idle: Ready / Stopped / Requesting camera / Starting), waiting, queued, streaming,
 * backend-down, stalled.
 */
function computeStatus() {
  const open = state.connState === 'open';
  const idlePlaceholder = 'Press Start to analyse what your camera sees.';
  if (state.fatal) return { st: 'error', text: `Error: ${state.fatal}`, next: state.fatal, placeholder: state.fatal };
  if (!open) {
    const away = state.wantRun ? 'Not connected to the server: the analysis resumes when the connection is back.' : idlePlaceholder;
    if (state.connState === 'connecting') return { st: 'connecting', text: 'Connecting…', next: 'Connecting to the server…', placeholder: away };
    if (state.connState === 'reconnecting' && state.connReason) {
      // connected, but the server cannot answer hello yet (a cluster's session store is away): its
      // sentence as it is; the page keeps its session and says hello again by itself
      return { st: 'reconnecting', text: state.connReason, next: state.connReason, placeholder: away,
        title: `${state.connReason} This page keeps its session.` };
    }
    if (state.connState === 'reconnecting') {
      return { st: 'reconnecting', text: 'Disconnected — reconnecting…', next: 'Disconnected from the server — reconnecting…', placeholder: away,
        title: 'The connection to the server was lost. The page reconnects by itself and resumes the same session.' };
    }
    return { st: 'disconnected', text: 'Disconnected', next: 'Disconnected from the server.', placeholder: away };
  }
  if (state.statusError) return { st: 'error', text: `Error: ${state.statusError}`, next: state.statusError, placeholder: idlePlaceholder };
  const health = backendHealth();
  if (state.cameraOpening) return { st: 'connected', text: 'Requesting camera…', next: 'Opening the camera…', placeholder: 'Opening the camera…' };
  if (!running()) {
    let text = state.stoppedOnce ? 'Stopped' : 'Ready';
    let title = state.stoppedOnce ? 'Stopped: press Start to analyse again.' : 'Connected: press Start to analyse what your camera sees.';
    if (health.none) {
      text += ' — no backend';
      title = 'The server has no model backend yet: see the banner.';
    } else if (health.down) {
      text += ' — backend down';
      title = `The model backend is not answering (${health.detail}). Start works, and answers come once it is back.`;
    }
    return { st: 'connected', text, title, next: '', placeholder: idlePlaceholder };
  }
  if (!state.serverStarted) return { st: 'connected', text: 'Starting…', next: 'Starting…', placeholder: 'Starting…' };
  const cam = sources && sources.trouble(); // the watched IP camera is down: no answers, not the backend's fault
  if (cam) return { st: 'camera-down', text: cam.badge, title: cam.sentence, next: cam.sentence, placeholder: cam.sentence };

  const now = performance.now();
  const sinceProgress = now - run.progressAt;
  const stallLimit = run.answering ? ANSWER_STALL_MS : Math.max(STALL_MIN_MS, 2 * intervalMs() + 3000);
  const quiet = run.answering ? now - run.answerAt : sinceProgress;
  const stalled = quiet > stallLimit;
  const keep = run.answers > 0 || answer.copyable ? ' The last answer stays above.' : '';
  if (health.none) {
    return { st: 'waiting', text: 'Waiting for a backend', next: 'Waiting for a backend: the server has none yet.',
      placeholder: 'No answer yet: the server has no model backend (see the banner above). Answers start once one is running.',
      title: 'The server has no model backend configured or detected.' };
  }
  if (run.trouble || (stalled && health.down)) {
    if (health.down) run.wasDown = true;
    const t = run.trouble || { code: 'no_backend', message: '', at: now };
    const secs = Math.round((now - t.at) / 1000);
    const ago = secs >= 2 ? ` (${secs} s)` : '';
    if (run.wasDown && !health.down && Array.isArray(state.backends)) {
      return { st: 'waiting', text: 'Backend back — resuming…', next: 'The backend answers again: the next frame goes to it.',
        placeholder: 'The backend answers again: the first answer is on its way.' };
    }
    const down = health.down || t.code === 'no_backend' || looksUnreachable(t.message);
    const what = down ? 'Backend down' : t.code === 'backend_timeout' ? 'Backend too slow' : 'Backend error';
    const why = down ? `The model backend is not answering${health.detail ? ` (${health.detail})` : ''}.`
      : t.code === 'backend_timeout' ? 'The model backend did not answer in time.' : 'The model backend answered with an error.';
    return { st: 'backend-down', text: `${what} — retrying${ago}`, title: `${why} livevlm keeps trying and resumes by itself.`,
      next: `${what} — retrying.${keep}`,
      placeholder: `No answer yet: ${why.charAt(0).toLowerCase()}${why.slice(1)} livevlm keeps trying and resumes by itself.` };
  }
  if (stalled) {
    const secs = Math.round(quiet / 1000);
    const text = `No answer for ${secs} s — the backend may be ${run.answering ? 'slow or ' : ''}down`;
    return { st: 'stalled', text, next: `${text}.${keep}`, placeholder: `${text}. The page keeps waiting.`,
      title: 'The server has sent nothing for this run for a while: the model backend may be down or overloaded.' };
  }
  if (run.queue && !run.answering) {
    const q = run.queue;
    const text = `In queue #${q.position}${q.queued > 1 ? ` of ${q.queued}` : ''}`;
    return { st: 'queued', text, next: `${text}: waiting for a free model slot.${keep}`, placeholder: `${text}: waiting for a free model slot…`,
      title: 'Your frame waits for a free model slot; slots are shared fairly between users.' };
  }
  if (run.answering || run.answers > 0) {
    const next = !run.answering ? 'Waiting for the next frame…'
      : answer.streaming && answer.gotDelta ? 'Writing the first answer…' : 'The model is looking at the picture…';
    return { st: 'streaming', text: 'Streaming', next,
      placeholder: 'The model is writing the first answer…' };
  }
  return { st: 'waiting', text: 'Waiting for a backend…', next: 'Waiting for a backend to take the frame…', placeholder: 'Waiting for the first answer…' };
}

function renderStatus() {
  const s = computeStatus();
  const badge = $('connectionStatus');
  badge.dataset.state = s.st;
  $('connectionText').textContent = s.text;
  badge.title = s.title || s.text;
  document.body.dataset.connection = s.st;
  if (answer) {
    answer.setRunning(running() || state.cameraOpening, s.next);
    answer.setPlaceholder(s.placeholder);
  }
  updateVideoUi();
  schedulePoll();
}

// While a run is in trouble or silent, ask the server about its backends (their health, and the
// models a backend that came back lists) until answers flow again.
function schedulePoll() {
  const st = $('connectionStatus').dataset.state;
  const want = state.connState === 'open' && running() && state.serverStarted &&
    (st === 'backend-down' || st === 'stalled' || (st === 'waiting' && run.trouble !== null));
  if (!want) {
    clearTimeout(run.pollTimer);
    run.pollTimer = null;
    return;
  }
  if (run.pollTimer || run.polling) return;
  run.pollTimer = setTimeout(async () => {
    run.pollTimer = null;
    if (state.connState !== 'open' || !running()) return;
    run.polling = true;
    try {
      await loadModels(false, true);
    } finally {
      run.polling = false;
      renderStatus();
    }
  }, firstPollDelay());
}

// The first look at the backends comes soon after the trouble starts, later ones every few seconds.
function firstPollDelay() {
  if (run.trouble && !run.trouble.polled) {
    run.trouble.polled = true;
    return 300;
  }
  return HEALTH_POLL_MS;
}

// A once-a-second tick while running: the stall check and the "(12 s)" counters.
setInterval(() => {
  if (running() && state.connState === 'open') renderStatus();
}, 1000);

// ---- errors ----------------------------------------------------------------------------------

/**
 * The errors that end this page's session for good (ws.js ENDS_SESSION stays closed on the four account ones): the
 * status line's words (setFatal) and the notice's title and fix (describeError).
 */
const SESSION_ENDED = {
  too_many_sessions: { status: 'too many livevlm pages are open from this address',
    title: 'Too many livevlm pages are open from this address.',
    fix: 'Close other livevlm tabs or windows, then reload this page.' },
  kicked_by_admin: { status: 'an administrator ended this session; reload the page to start a new one',
    title: 'An administrator ended this session.', fix: 'Reload the page to start a new session.' },
  account_disabled: { status: 'Your account was disabled or removed. Ask an administrator.',
    title: 'Your account was disabled or removed.', fix: 'Ask an administrator.' },
  key_revoked: { status: 'the API key of this connection was revoked or has expired',
    title: 'The API key of this connection was revoked or has expired.', fix: 'Use another key.' },
  signed_out: { status: 'you were signed out; reload the page to sign in again',
    title: 'You were signed out.', fix: 'Reload the page to sign in again.' },
};

/** A server error (or one of the page's own) as a notice: a sentence, the fix, the detail. */
function describeError(code, message) {
  const detail = message || '';
  const model = controls && controls.settings && controls.settings.model;
  const ended = Object.hasOwn(SESSION_ENDED, code) ? SESSION_ENDED[code] : null;
  if (ended) return { key: 'sessions', code, title: ended.title, detail, fix: ended.fix };
  switch (code) {
    case 'no_backend': {
      const h = backendHealth();
      return { key: 'backend', code, title: `No model backend can answer right now${model ? ` (model ${model})` : ''}.`,
        detail: h.detail || '',
        fix: 'livevlm keeps retrying and resumes by itself when the backend is back. If it does not come back, start the backend or pick another model.' };
    }
    case 'backend_error':
      if (looksUnreachable(detail)) {
        return { key: 'backend', code, title: 'The model backend cannot be reached.', detail,
          fix: 'livevlm keeps retrying and resumes by itself when it is back. Check that the backend (Ollama, vLLM, …) is running.' };
      }
      return { key: 'backend', code, title: 'The model backend answered with an error.', detail,
        fix: 'livevlm tries again with the next frame. If this repeats, check the backend\'s log, or pick another model.' };
    case 'backend_timeout':
      return { key: 'backend', code, title: 'The model backend did not answer in time.', detail,
        fix: 'livevlm tries again with the next frame. A smaller model, fewer max tokens or a longer interval helps if this repeats.' };
    case 'bad_frame':
      return { key: 'frame', code, title: 'A camera frame could not be read by the server and was skipped.', detail,
        fix: 'If this repeats, pick another camera or lower the frame size.' };
    case 'frame_too_large':
      return { key: 'frame', code, title: 'A camera frame was too large for the server and was skipped.', detail,
        fix: 'Lower the frame size or the JPEG quality (Analysis → Advanced).' };
    case 'frame':
      return { key: 'frame', code: '', title: 'A camera frame could not be sent.', detail,
        fix: 'Lower the frame size or the JPEG quality (Analysis → Advanced) if this repeats.' };
    case 'not_started':
      return { key: 'run', code, title: 'The server was not analysing when a frame arrived.', detail: '',
        fix: 'Press Stop, then Start again.' };
    case 'rate_limited':
      return { key: 'rate', code, kind: 'warn', title: 'The server is slowing this page down: too many frames or messages.', detail,
        fix: 'A longer interval between frames avoids this. Analysis goes on at the allowed pace.' };
    case 'invalid_setting':
      return { key: 'setting', code, title: 'A setting was not accepted.', detail,
        fix: 'The field concerned says which values are allowed.' };
    case 'camera': {
      const [first, ...rest] = detail.split(/(?<=\.) /);
      return { key: 'camera', code: '', title: first || 'The camera stopped.', detail: '',
        fix: rest.join(' ') || 'Press Start to open it again, or pick another camera.' };
    }
    case 'protocol':
      return { key: 'protocol', code: '', title: 'This page and the server speak different protocol versions.', detail,
        fix: 'Reload the page (after an upgrade, the new page comes with it).' };
    case 'bad_message':
    case 'unknown_type':
    case 'hello_required':
    case 'message_too_large':
      return { key: 'page', code, title: 'The server refused a message from this page.', detail,
        fix: 'Reload the page; if this repeats, the page and the server may be different versions.' };
    default:
      return { key: code || 'error', code, title: 'Something went wrong on the server.', detail, fix: 'If this repeats, reload the page.' };
  }
}

function showError(code, message) {
  const n = describeError(code, message);
  if (n.key === 'backend' && notices.has('backend') && !n.detail) {
    // "no_backend" after "cannot reach …": keep the more telling detail.
    n.detail = notices.root.querySelector('[data-key="backend"] .error-msg')?.textContent || '';
  }
  notices.show(n.key, n);
}

function clearErrors(key) {
  notices.clear(key);
}

// ---- the app ---------------------------------------------------------------------------------

function startApp(config) {
  if (!state.started) {
    state.started = true;
    wireApp();
  }
  applyConfig(config);
  showView('app');
  if (config.protocol !== undefined && config.protocol !== PROTOCOL) {
    showError('protocol', `The server speaks protocol ${config.protocol}; this page was written for protocol ${PROTOCOL}. Reload the page after an upgrade.`);
  }
  state.fatal = null;
  renderStatus();
  loadModels(false);
  loadStats();
  refreshCameras(true);
  sources.refresh();
  checkDuplicateTab().then(() => conn.start());
}

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws`;
}

function wireApp() {
  camera = new SourceCamera($('video')); // the webcam, or the IP camera the session watches
  answer = new AnswerView();
  historyView = new HistoryView({ getSettings: () => (controls && controls.settings) || {} });
  historyView.setMarkdown(answer.markdown);
  notices = new Notices($('errorBar'));
  stats = new StatsView();
  controls = new Controls({
    send: (change) => conn.isOpen && conn.send({ type: 'update_settings', settings: change }),
    onApplied: settingsApplied,
  });
  frames = new FrameSender($('video'), (buf) => {
    if (!conn.sendBinary(buf)) return false;
    if (compare) compare.mirror(buf); // the same bytes to Compare's second session
    return true;
  }, () => controls.settings || state.config.defaults || {});
  frames.onsent = frameSent;
  frames.onproblem = (why) => showError('frame', why);
  conn = new Connection(wsUrl());

  conn.addEventListener('state', (ev) => {
    state.connState = ev.detail.state;
    state.connReason = typeof ev.detail.reason === 'string' ? ev.detail.reason : null;
    renderStatus();
  });
  conn.addEventListener('session', (ev) => onSession(ev.detail));
  conn.addEventListener('message', (ev) => onMessage(ev.detail));
  conn.addEventListener('socketclose', (ev) => onSocketClose(ev.detail));
  conn.addEventListener('rtt', (ev) => { $('rtt').textContent = fmtMs(ev.detail.ms); });
  compare = new Compare({ conn, wsUrl: wsUrl(), settings: () => controls.settings || {}, models: () => controls.models,
    config: () => state.config || {}, running });
  sources = new CameraSources({ conn, camera, controls, apiFetch, webcamChoice: () => $('cameraSelect').value,
    onchange: () => { renderStatus(); syncVideo(); }, onprogress: progress, onwebcamfailed: (message) => { showError('camera', message); stopLocal(true); } });

  camera.onended = () => {
    showError('camera', 'The camera stopped (unplugged, or taken by another application).');
    stopLocal(true);
  };
  answer.ontext = updateOverlay;

  $('startBtn').addEventListener('click', startRun);
  $('stopBtn').addEventListener('click', () => stopLocal(true));
  $('cameraSelect').addEventListener('change', cameraChosen);
  $('refreshCameras').addEventListener('click', () => refreshCameras(true, true));
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', () => refreshCameras(false));
  }
  $('refreshModels').addEventListener('click', () => loadModels(true));
  $('markdownToggle').addEventListener('click', () => {
    answer.setMarkdown(!answer.markdown);
    historyView.setMarkdown(answer.markdown);
  });
  $('copyBtn').addEventListener('click', copyAnswer);
  $('copySessionBtn').addEventListener('click', copySession);
  $('mirrorBtn').addEventListener('click', () => setMirror(!prefs.bool('mirror', false)));
  $('fullscreenBtn').addEventListener('click', toggleFullscreen);
  $('logoutBtn').addEventListener('click', logout);
  $('themeToggle').addEventListener('click', cycleTheme);
  $('video').addEventListener('loadedmetadata', videoInfo);
  $('video').addEventListener('resize', videoInfo);
  if (typeof ResizeObserver === 'function') new ResizeObserver(fitPicture).observe($('videoWrap'));
  else window.addEventListener('resize', fitPicture);
  if (wideQuery) {
    if (wideQuery.addEventListener) wideQuery.addEventListener('change', arrangeLayout);
    else if (wideQuery.addListener) wideQuery.addListener(arrangeLayout);
  }
  document.addEventListener('fullscreenchange', syncFullscreen);
  document.addEventListener('webkitfullscreenchange', syncFullscreen);
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || $('settingsModal').open || !isFullscreen()) return;
    // Browsers leave real full screen on Esc themselves; this covers the CSS version and
    // browsers that pass the key through.
    ev.preventDefault();
    toggleFullscreen();
  });
  wireSettingsModal();
  setMirror(prefs.bool('mirror', false));
  applyLocalPrefs();
  updateVideoUi();
}

function applyConfig(config) {
  $('serverVersion').textContent = config.version ? `v${config.version}` : '';
  $('protocolVersion').textContent = String(config.protocol ?? 1);
  const limits = config.limits || {};
  if (Number.isFinite(limits.max_frame_bytes)) frames.maxBytes = limits.max_frame_bytes;
  if (Number.isFinite(limits.max_frame_side)) $('frameMaxSide').max = String(Math.min(4096, limits.max_frame_side));
  controls.setPresets(config.presets, limits.max_prompt_bytes);
  if (!controls.settings && config.defaults) controls.setSession(config.defaults);
  controls.setModels([], config.backends || []);
  if (Array.isArray(config.backends)) state.backends = config.backends;
  updateBanner(config.backends, config.no_backend_help);
}

function updateBanner(backends, help) {
  const none = Array.isArray(backends) && backends.length === 0;
  const banner = $('noBackendBanner');
  banner.hidden = !none;
  if (none) {
    $('noBackendText').textContent = help || (state.config && state.config.no_backend_help) ||
      'The server has no model backend configured and found none running locally. Start one (Ollama, vLLM, SGLang, llama.cpp, LM Studio) or configure one on the server, then press the refresh button next to the model list.';
  }
}

/** GET /api/v1/models: the model list, and the backends' health. quiet: a background look. */
async function loadModels(refresh, quiet = false) {
  const btn = $('refreshModels');
  if (!quiet) {
    btn.dataset.loading = 'true';
    btn.setAttribute('aria-busy', 'true');
  }
  try {
    const res = await apiFetch(`/api/v1/models${refresh ? '?refresh=1' : ''}`);
    if (!res.ok) throw new Error(await errorText(res));
    const data = await res.json();
    const backends = Array.isArray(data.backends) ? data.backends : (state.config.backends || []);
    controls.setModels(data.models, backends);
    if (Array.isArray(data.backends)) {
      state.backends = data.backends;
      updateBanner(data.backends);
      const h = backendHealth();
      if (h.detail) notices.setDetail('backend', h.detail, true);
    }
    renderStatus();
  } catch (e) {
    if (e instanceof AuthError) return authLost();
    if (!quiet) $('modelHint').textContent = `Could not load the models: ${e.message}`;
  } finally {
    if (!quiet) {
      btn.dataset.loading = 'false';
      btn.removeAttribute('aria-busy');
    }
  }
}

async function loadStats() {
  try {
    const res = await apiFetch('/api/v1/stats');
    if (res.ok) stats.update(await res.json());
  } catch (e) {
    if (e instanceof AuthError) authLost();
  }
}

function authLost() {
  showLogin('You were signed out (the token changed or the sign-in expired). Sign in again.');
}

// Two tabs are two sessions: a duplicated tab inherits sessionStorage, so ask whether a live tab
// already holds this session id and start a fresh one if so.
async function checkDuplicateTab() {
  if (!('BroadcastChannel' in window)) return;
  if (!tabChannel) {
    tabChannel = new BroadcastChannel('livevlm-tabs');
    tabChannel.onmessage = (ev) => {
      const m = ev.data || {};
      if (m.type === 'who' && m.id && conn && conn.hasSession && conn.sessionId === m.id) tabChannel.postMessage({ type: 'mine', id: m.id });
    };
  }
  const stored = Connection.stored();
  if (!stored) return;
  const taken = await new Promise((resolve) => {
    const onMsg = (ev) => {
      if (ev.data && ev.data.type === 'mine' && ev.data.id === stored.session_id) {
        tabChannel.removeEventListener('message', onMsg);
        resolve(true);
      }
    };
    tabChannel.addEventListener('message', onMsg);
    tabChannel.postMessage({ type: 'who', id: stored.session_id });
    setTimeout(() => {
      tabChannel.removeEventListener('message', onMsg);
      resolve(false);
    }, 250);
  });
  if (taken) Connection.forget();
}

// ---- session and messages --------------------------------------------------------------------

function onSession(msg) {
  state.fatal = null;
  if (state.statusError && /connect/i.test(state.statusError)) state.statusError = null;
  const id = String(msg.session_id || '');
  const short = id.slice(0, 8);
  const sid = $('sessionId');
  sid.textContent = short || '—';
  sid.dataset.sessionId = id;
  sid.title = `Session ${id}`;
  $('footerSession').textContent = short || '—';
  $('footerSession').title = id;
  $('sessionChip').hidden = !id;
  document.body.dataset.sessionResumed = msg.resumed ? 'true' : 'false';

  const previous = state.sessionSeen ? state.lastSettings : null;
  state.sessionSeen = true;
  if (!msg.resumed) { // a new session: the old one's video went with it; try video afresh
    closeVideo();
    video.failed = false;
  }
  controls.setSession(msg.settings || {});
  answer.setHistory(msg.history);
  historyView.setSession(id, msg.history);
  answer.restoreLast();
  if (msg.metrics) answer.showMetrics(msg.metrics);

  // A lost session comes back with defaults: put back what this page had, plus offline edits.
  const restore = {};
  if (!msg.resumed && previous && msg.settings) {
    for (const f of RESTORABLE) {
      if (f in previous && JSON.stringify(previous[f]) !== JSON.stringify(msg.settings[f])) restore[f] = previous[f];
    }
    if (restore.source === 'webrtc') delete restore.source; // set by the video's offer, not restored
  }
  Object.assign(restore, controls.takeDeferred());
  if (Object.keys(restore).length) controls.apply(restore);

  state.serverStarted = !!msg.started;
  state.stopsPending = 0;
  resetRun();
  if (state.wantRun && camera.running) {
    conn.send({ type: 'start' });
  } else if (msg.started && !state.wantRun && !state.cameraOpening) {
    // Started by an earlier page of this tab that is gone: nobody here sends frames.
    if (conn.send({ type: 'stop' })) state.stopsPending++;
  }
  renderStatus();
}

function onSocketClose(info) {
  state.serverStarted = false;
  frames.reset();
  resetRun();
  $('queuePos').closest('.meta-item').hidden = true;
  if (answer.streaming) answer.idle();
  if (!info.opened || info.code === 1008) {
    // The upgrade failed or the server refused: find out whether the sign-in is still valid.
    apiFetch('/api/v1/config').then((res) => {
      if (res.ok && state.fatal && /reach/.test(state.fatal)) setFatal(null);
    }).catch((e) => {
      if (e instanceof AuthError) authLost();
    });
  }
}

function progress() {
  run.progressAt = performance.now();
}

function showQueue(text) {
  $('queuePos').textContent = text;
  $('queuePos').closest('.meta-item').hidden = !text;
}

function onMessage(msg) {
  historyView.onMessage(msg); // answers, with their prompt and frame
  switch (msg.type) {
    case 'settings_updated':
      controls.updated(msg.settings || {});
      break;
    case 'started':
      state.serverStarted = true;
      state.statusError = null;
      resetRun();
      syncVideo();
      renderStatus();
      break;
    case 'stopped':
      state.serverStarted = false;
      frames.reset();
      answer.idle();
      resetRun();
      showQueue('');
      if (state.stopsPending > 0) {
        state.stopsPending--;
      } else if (state.wantRun) {
        // Another page on this session stopped it.
        stopLocal(false);
      }
      renderStatus();
      break;
    case 'credit':
      progress();
      notices.clear('quota'); // credits again: the quota renewed or was raised
      // while the video is being set up it will answer (the source becomes webrtc); kept for a
      // fallback to frames
      if (video.pending || video.handle) video.heldCredit = Number(msg.credit_id) >>> 0;
      else if (state.wantRun && camera.running) frames.credit(Number(msg.credit_id) >>> 0);
      break;
    case 'queued': {
      // the frame waits behind others for a backend slot: say where it stands
      progress();
      const position = Math.max(1, Number(msg.position) || 1);
      run.queue = { position, queued: Math.max(position, Number(msg.queued) || 1) };
      showQueue(`#${run.queue.position} of ${run.queue.queued}`);
      renderStatus();
      break;
    }
    case 'quota_exceeded':
      progress();
      notices.show('quota', quotaNotice(msg));
      break;
    case 'frame_dropped':
      progress();
      run.queue = null;
      showQueue(`frame too old (${fmtMs(msg.age_ms)}), skipped`);
      renderStatus();
      break;
    case 'answer_start':
      progress();
      run.queue = null;
      run.answering = true;
      run.answerAt = performance.now();
      showQueue('');
      answer.start(msg);
      renderStatus();
      break;
    case 'delta':
      run.answerAt = performance.now();
      progress();
      answer.delta(msg);
      if (run.trouble) {
        // The backend writes again (a request that only starts proves nothing: it may fail at once).
        run.trouble = null;
        run.wasDown = false;
        renderStatus();
      }
      break;
    case 'answer_cancelled':
      // settings changed or the slot went to another user: the next answer_start follows
      progress();
      run.answering = false;
      answer.failed(msg);
      renderStatus();
      break;
    case 'vlm_response':
      progress();
      run.answering = false;
      run.answers++;
      run.trouble = null;
      answer.complete(msg);
      // A good answer: whatever was wrong with the backend or the frames is over.
      for (const key of ['backend', 'frame', 'run', 'rate']) clearErrors(key);
      backendAnswered(msg.metrics && msg.metrics.backend);
      renderStatus();
      break;
    case 'error':
      onError(msg);
      break;
    case 'gpu_stats':
      stats.update(msg.stats);
      break;
    default:
      break; // unknown types are ignored (protocol rule)
  }
}

let recheckAt = -Infinity;

/** A backend answered: it is healthy; when the list said otherwise, read it again. */
function backendAnswered(id) {
  if (!Array.isArray(state.backends)) return;
  const b = state.backends.find((x) => x && x.id === id);
  if (b) {
    b.healthy = true;
    b.error = null;
  }
  const now = performance.now();
  if (state.backends.some((x) => x && x.healthy === false) && !run.polling && !(now - recheckAt < 10000)) {
    recheckAt = now;
    run.polling = true;
    loadModels(false, true).finally(() => { run.polling = false; });
  }
}

function onError(msg) {
  const code = typeof msg.code === 'string' ? msg.code : 'error';
  const message = typeof msg.message === 'string' ? msg.message : '';
  if (Object.hasOwn(SESSION_ENDED, code)) {
    setFatal(SESSION_ENDED[code].status);
    showError(code, message);
    return;
  }
  switch (code) {
    case 'session_not_found':
      return; // handled by the connection: a fresh session follows
    case 'invalid_setting':
      // Said at the field itself; only a setting without a control here gets a notice.
      if (!controls.invalid(msg)) showError(code, msg.field ? controls.explain(msg.field, message) : message);
      return;
    case 'not_started':
      if (!state.wantRun) return; // a frame raced a stop: nothing to say
      break;
    case 'video_ended':
      // this page's video ended (a video it no longer sends needs no word): frames take over
      if (video.handle || video.pending) videoFailed(message);
      return;
    case 'backend_error':
    case 'backend_timeout':
    case 'no_backend':
      run.answering = false;
      run.queue = null;
      showQueue('');
      if (!run.trouble) {
        run.trouble = { code, message, at: performance.now() };
      } else if (code !== 'no_backend' || !run.trouble.message) {
        // A later no_backend says less than the "cannot reach …" before it: keep that one.
        Object.assign(run.trouble, { code, message });
      }
      break;
    default:
      break;
  }
  if (['backend_error', 'backend_timeout', 'no_backend'].includes(code) || msg.answer_id !== undefined) answer.failed(msg);
  showError(code, message);
  renderStatus();
}

function settingsApplied(settings, changed) {
  state.lastSettings = { ...settings };
  video.pageAsked = false;
  if (changed.has('interval_ms') && video.handle) video.handle.setMaxFramerate(videoFps(settings.interval_ms));
  syncVideo();
  if (compare) compare.follow(settings); // the second session keeps A's pace and lengths
  const echo = $('promptEcho');
  const p = typeof settings.prompt === 'string' ? settings.prompt : '';
  echo.textContent = p.length > 600 ? `${p.slice(0, 600)}…` : p;
  echo.title = p;
  stats.setPaused(settings.stats_interval_ms === 0);
  answer.setDebug(!!settings.debug);
  document.body.dataset.debug = settings.debug ? 'true' : 'false';
  if (changed.has('model') || changed.has('backend')) {
    // Another model or backend: the old one's trouble is not this one's.
    notices.removeNow('backend');
    run.trouble = null;
    run.wasDown = false;
  }
  if (changed.size) renderStatus();
}

// ---- camera and run --------------------------------------------------------------------------

async function refreshCameras(probe, userAsked = false) {
  const sel = $('cameraSelect');
  const hint = $('cameraHint');
  const btn = $('refreshCameras');
  btn.dataset.loading = 'true';
  if (userAsked) camera.probed = false;
  const { devices, problem } = await camera.list({ probe });
  btn.dataset.loading = 'false';
  const saved = prefs.get('camera', '');
  const labeled = devices.some((d) => d.labeled && d.deviceId);
  const opts = [];
  if (labeled) {
    for (const d of devices) if (d.deviceId) opts.push(new Option(d.label, `device:${d.deviceId}`));
  } else {
    opts.push(new Option(devices.length ? 'Default camera' : 'Default camera (none found yet)', ''));
    devices.forEach((d, i) => { if (d.deviceId) opts.push(new Option(d.label || `Camera ${i + 1}`, `device:${d.deviceId}`)); });
  }
  const touch = window.matchMedia && window.matchMedia('(pointer: coarse)').matches;
  const hasFacing = devices.some((d) => /back|rear|environment|front|user/i.test(d.label));
  if (touch && !hasFacing) {
    opts.push(new Option('Front camera', 'facing:user'));
    opts.push(new Option('Rear camera', 'facing:environment'));
  }
  sel.replaceChildren(...opts);
  const active = camera.activeDeviceId ? `device:${camera.activeDeviceId}` : null;
  const values = opts.map((o) => o.value);
  if (active && values.includes(active)) sel.value = active;
  else if (saved && values.includes(saved)) sel.value = saved;
  else sel.value = values[0] ?? '';
  sel.disabled = !cameraSupported();
  if (problem) {
    hint.textContent = devices.length ? `${problem} (${devices.length} camera${devices.length === 1 ? '' : 's'} listed.)` : problem;
    hint.dataset.kind = 'error';
  } else {
    hint.textContent = `${devices.length} camera${devices.length === 1 ? '' : 's'} found.`;
    hint.dataset.kind = '';
  }
  $('videoPlaceholderText').textContent = !cameraSupported() ? 'Camera needs a secure (https) page'
    : problem && !devices.length ? 'No camera available' : 'Camera is off';
}

async function cameraChosen() {
  const sel = $('cameraSelect');
  prefs.set('camera', sel.value);
  if (!camera.running) return;
  const hint = $('cameraHint');
  hint.textContent = 'Switching camera…';
  hint.dataset.kind = '';
  try {
    await camera.switchTo(sel.value);
    if (video.handle && camera.stream) await video.handle.replaceTrack(camera.stream.getVideoTracks()[0]);
    hint.textContent = `Using ${camera.activeLabel || 'the selected camera'}.`;
  } catch (e) {
    hint.textContent = e.message;
    hint.dataset.kind = 'error';
    showError('camera', e.message);
    if (!camera.running) stopLocal(true);
  }
  updateVideoUi();
}

async function startRun() {
  if (state.cameraOpening || (state.wantRun && camera.running)) return;
  state.statusError = null;
  state.wantRun = true;
  state.cameraOpening = true;
  video.failed = false; // each Start tries the video again (when chosen)
  resetRun();
  renderStatus();
  const needLabels = [...$('cameraSelect').options].every((o) => !o.value.startsWith('device:'));
  try {
    await camera.open($('cameraSelect').value);
  } catch (e) {
    state.wantRun = false;
    state.cameraOpening = false;
    state.statusError = e.message.split(/(?<=\w)\. /)[0].replace(/\.$/, '');
    const hint = $('cameraHint');
    hint.textContent = e.message;
    hint.dataset.kind = 'error';
    showError('camera', e.message);
    renderStatus();
    return;
  }
  state.cameraOpening = false;
  notices.removeNow('camera'); // the camera works: an earlier camera problem is over
  if ($('cameraHint').dataset.kind === 'error') {
    $('cameraHint').textContent = `Using ${camera.activeLabel || 'the selected camera'}.`;
    $('cameraHint').dataset.kind = '';
  }
  if (!state.wantRun) { // stopped while the permission prompt was up
    camera.stop();
    renderStatus();
    return;
  }
  if (needLabels) refreshCameras(false);
  else {
    const active = camera.activeDeviceId;
    if (active && [...$('cameraSelect').options].some((o) => o.value === `device:${active}`)) $('cameraSelect').value = `device:${active}`;
  }
  resetRun();
  conn.send({ type: 'start' }); // when offline, the session message re-sends it
  renderStatus();
}

/** Stop analysing: tell the server (when tell), close the camera. */
function stopLocal(tell) {
  const wasRunning = state.wantRun || state.cameraOpening;
  state.wantRun = false;
  state.cameraOpening = false;
  if (wasRunning) state.stoppedOnce = true;
  camera.stop();
  frames.cancel(); // a frame being encoded now is not sent: the run is over
  syncVideo(); // the video closes and the session's source goes back to the page
  if (tell && conn && conn.send({ type: 'stop' })) state.stopsPending++;
  answer.idle();
  resetRun();
  showQueue('');
  // A stopped run cannot repeat its frame or pacing problems; a backend problem stays until an
  // answer shows it is over (or it is dismissed).
  for (const key of ['frame', 'run', 'rate']) clearErrors(key);
  if (state.pseudoFs) setPseudoFullscreen(false);
  renderStatus();
}

function updateVideoUi() {
  if (!camera) return;
  const running = camera.running && state.wantRun;
  const wrap = $('videoWrap');
  wrap.dataset.streaming = running ? 'true' : 'false';
  wrap.dataset.opening = state.cameraOpening ? 'true' : 'false';
  const start = $('startBtn');
  start.hidden = running;
  start.disabled = state.cameraOpening;
  start.querySelector('.btn-label').textContent = state.cameraOpening ? 'Starting…' : 'Start';
  start.setAttribute('aria-busy', state.cameraOpening ? 'true' : 'false');
  $('stopBtn').hidden = !running && !state.cameraOpening;
  $('videoLive').hidden = !(running && state.serverStarted);
  if (!running) showVideoInfo('');
}

// ---- send video (video.js) ---------------------------------------------------------------------
// "Send video": the webcam streams to the server over WebRTC (POST /offer) and the server picks
// the frames; "Send frames": one JPEG per credit. A preference of this browser (Settings); a
// watched IP camera wins over both. When the video cannot be set up or ends, the run goes on with
// frames and the page says so once, with the reason.

const video = {
  handle: null, // startVideo's handle while the video is up
  pending: false, // an offer is on its way
  failed: false, // fell back to frames for this run (until the next Start or a new session)
  token: 0, // moved on by closeVideo: an offer that answers later is dropped
  heldCredit: 0, // a credit that came while the video was being set up
  pageAsked: false, // source "page" was asked for and the server has not answered yet
};

function sendVideoChosen() {
  return prefs.get('sendMode', 'frames') === 'video';
}

// (not tied to the socket: the video goes on while the WebSocket reconnects to the same session)
function videoWanted() {
  return sendVideoChosen() && !video.failed && state.wantRun && camera.running && !camera.remote;
}

/** Open or close the video to match the choice and the run; a session left on "webrtc" with no
 * video from this page goes back to the page's frames. */
function syncVideo() {
  if (!camera || !conn || !controls) return;
  if (videoWanted()) {
    if (!video.handle && !video.pending && conn.hasSession) openVideo();
    return;
  }
  if (video.handle || video.pending) closeVideo();
  const source = controls.settings && controls.settings.source;
  if (source === 'webrtc' && !video.pageAsked && conn.isOpen) {
    video.pageAsked = true;
    controls.apply({ source: 'page' });
  }
}

async function openVideo() {
  const token = ++video.token;
  video.pending = true;
  notices.removeNow('video');
  const fps = videoFps(controls.settings && controls.settings.interval_ms);
  let handle = null;
  let error = null;
  try {
    handle = await startVideo({ stream: camera.stream, sessionId: conn.sessionId, maxFramerate: fps, fetchImpl: csrfFetch,
      onState: (st, detail) => { if (token === video.token) videoState(st, detail, fps); } });
  } catch (e) {
    error = e;
  }
  if (token !== video.token) { // closed meanwhile
    if (handle) handle.stop();
    return;
  }
  video.pending = false;
  if (error) videoFailed(error.message || 'the server did not answer the offer');
  else video.handle = handle;
}

function closeVideo() {
  video.token++;
  video.pending = false;
  const h = video.handle;
  video.handle = null;
  if (h) h.stop();
}

function videoState(st, detail, fps) {
  if (st === 'live') $('frameInfo').textContent = `video · up to ${fps} fps`;
  else if (st === 'failed') videoFailed(detail || 'the connection failed');
  else if (st === 'ended') videoFailed('the connection was closed');
}

/** The video could not be set up, or ended: frames take over (said once, with the reason). */
function videoFailed(reason) {
  if (video.failed) return;
  video.failed = true;
  closeVideo();
  const why = String(reason || '').trim().replace(/\.+$/, '');
  notices.show('video', { kind: 'warn', code: '', title: 'Sending frames instead of video.',
    detail: why ? `The video could not be used: ${why}.` : '',
    fix: 'Answers go on: the page now sends a picture for each answer. Press Start again to retry the video, or choose "Send frames" in Settings.' });
  syncVideo(); // the session's source goes back to the page
  const held = video.heldCredit;
  video.heldCredit = 0;
  if (held && state.wantRun && camera.running) frames.credit(held);
}

/** Settings → "How the webcam reaches the server" changed. */
function sendModeChosen(mode) {
  prefs.set('sendMode', mode === 'video' ? 'video' : 'frames');
  video.failed = false;
  if (mode !== 'video') notices.removeNow('video');
  syncVideo();
}

/** The camera's size (→ the size of the frames sent) under the picture; '' hides it. */
function showVideoInfo(text) {
  $('videoInfo').textContent = text;
  $('videoInfo').closest('.meta-item').hidden = !text;
}

function videoInfo() {
  const v = $('video');
  if (!v.videoWidth || !v.videoHeight) return;
  // The box takes the picture's shape: no black bars around it.
  $('videoWrap').style.setProperty('--video-ar', (v.videoWidth / v.videoHeight).toFixed(4));
  fitPicture();
  if (camera && camera.running && state.wantRun) showVideoInfo(`${v.videoWidth}×${v.videoHeight}`);
}

/**
 * Where the picture lies in its box: the bars left and right (--pic-x) or above and below
 * (--pic-y) when the box is not the picture's shape (full screen), so the answer drawn on the
 * camera view lies over the picture, not over a bar.
 */
function fitPicture() {
  const wrap = $('videoWrap');
  const v = $('video');
  let x = 0;
  let y = 0;
  if (v.videoWidth && v.videoHeight && wrap.clientWidth && wrap.clientHeight) {
    const s = Math.min(wrap.clientWidth / v.videoWidth, wrap.clientHeight / v.videoHeight);
    x = Math.max(0, (wrap.clientWidth - v.videoWidth * s) / 2);
    y = Math.max(0, (wrap.clientHeight - v.videoHeight * s) / 2);
  }
  wrap.style.setProperty('--pic-x', `${Math.floor(x)}px`);
  wrap.style.setProperty('--pic-y', `${Math.floor(y)}px`);
}

function frameSent(info) {
  historyView.frameSent(frames.canvas, info); // its thumbnail, before the canvas is drawn on again
  $('framesSent').textContent = String(frames.sent);
  $('frameInfo').textContent = `${fmtBytes(info.bytes)} · encode ${Math.round(info.encodeMs)} ms`;
  if (camera.running && state.wantRun && info.sourceWidth && info.sourceHeight) {
    showVideoInfo(`${info.sourceWidth}×${info.sourceHeight} → ${info.width}×${info.height}`);
  }
}

// ---- video card: mirror, fullscreen, overlay ---------------------------------------------------

function setMirror(on) {
  prefs.set('mirror', on ? 'true' : 'false');
  $('videoWrap').dataset.mirror = on ? 'true' : 'false';
  const btn = $('mirrorBtn');
  btn.setAttribute('aria-pressed', on ? 'true' : 'false');
  btn.title = on ? 'Mirrored preview (frames sent are not mirrored): click to show as the camera sees' : 'Mirror the preview (display only)';
}

function fsElement() {
  return document.fullscreenElement || document.webkitFullscreenElement || null;
}

function isFullscreen() {
  return fsElement() === $('videoWrap') || state.pseudoFs;
}

async function toggleFullscreen() {
  const wrap = $('videoWrap');
  if (isFullscreen()) {
    if (fsElement()) {
      try { await (document.exitFullscreen || document.webkitExitFullscreen).call(document); } catch { /* already out */ }
    }
    setPseudoFullscreen(false);
    return;
  }
  const req = wrap.requestFullscreen || wrap.webkitRequestFullscreen;
  if (req && (document.fullscreenEnabled || document.webkitFullscreenEnabled)) {
    try {
      await req.call(wrap);
      return;
    } catch { /* refused: use the CSS version */ }
  }
  setPseudoFullscreen(true);
}

function setPseudoFullscreen(on) {
  state.pseudoFs = on;
  document.body.classList.toggle('pseudo-fullscreen', on);
  syncFullscreen();
}

function syncFullscreen() {
  const fs = isFullscreen();
  requestAnimationFrame(fitPicture);
  const wrap = $('videoWrap');
  wrap.dataset.fullscreen = fs ? 'true' : 'false';
  const btn = $('fullscreenBtn');
  btn.setAttribute('aria-pressed', fs ? 'true' : 'false');
  btn.setAttribute('aria-label', fs ? 'Leave full screen' : 'Full screen');
  setIcon(btn.querySelector('[data-icon]'), fs ? 'minimize' : 'maximize');
  applyOverlayPosition();
}

function applyOverlayPosition() {
  const pos = prefs.get('overlayPosition', 'none');
  const fs = isFullscreen();
  const eff = pos === 'top' || pos === 'bottom' ? pos : fs ? 'bottom' : 'none';
  $('videoWrap').dataset.overlay = eff;
  if (answer) answer.refreshOverlay();
}

function updateOverlay(text) {
  const wrap = $('videoWrap');
  const on = wrap.dataset.overlay !== 'none';
  const overlay = $('videoOverlay');
  overlay.dataset.empty = text ? 'false' : 'true';
  if (!on) return;
  $('videoOverlayText').textContent = text || '';
  const parts = [];
  const lat = $('metricLatency').textContent;
  const count = $('metricCount').textContent;
  if (lat !== '—') parts.push(`Latency ${lat}`);
  if (count !== '—') parts.push(`Count ${count}`);
  const fa = $('metricFrameAge').textContent;
  if (fa !== '—') parts.push(`Frame age ${fa}`);
  $('videoOverlayMeta').textContent = parts.join(' · ');
}

// ---- copy ------------------------------------------------------------------------------------

async function copyAnswer() {
  const btn = $('copyBtn');
  // Always the last complete answer, never the one being written.
  const text = answer.copyable;
  const ok = text ? await copyText(text) : false;
  feedback(btn, ok);
}

async function copySession() {
  const id = $('sessionId').dataset.sessionId;
  feedback($('copySessionBtn'), id ? await copyText(id) : false);
}

function feedback(btn, ok) {
  const iconEl = btn.querySelector('[data-icon]');
  btn.dataset.copied = ok ? 'true' : 'failed';
  setIcon(iconEl, ok ? 'check' : 'close');
  clearTimeout(btn._copyTimer);
  btn._copyTimer = setTimeout(() => {
    btn.dataset.copied = 'false';
    setIcon(iconEl, 'copy');
  }, 1000);
}

// ---- theme -----------------------------------------------------------------------------------

const darkQuery = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;

function themeMode() {
  const t = prefs.get('theme');
  return t === 'light' || t === 'dark' ? t : 'auto';
}

function applyTheme() {
  const mode = themeMode();
  const eff = mode === 'auto' ? (darkQuery && darkQuery.matches ? 'dark' : 'light') : mode;
  document.documentElement.dataset.theme = eff;
  document.body.dataset.theme = eff;
  document.body.dataset.themeMode = mode;
  const btn = $('themeToggle');
  btn.dataset.mode = mode;
  const label = { auto: 'Auto', light: 'Light', dark: 'Dark' }[mode];
  const next = { auto: 'Light', light: 'Dark', dark: 'Auto' }[mode];
  $('themeLabel').textContent = label;
  btn.setAttribute('aria-label', `Theme: ${label}${mode === 'auto' ? ' (follows the system)' : ''}. Click for ${next}.`);
  btn.title = `Theme: ${label}${mode === 'auto' ? ` (now ${eff})` : ''}`;
  setIcon(btn.querySelector('.theme-icon'), { auto: 'monitor', light: 'sun', dark: 'moon' }[mode]);
  const meta = document.querySelector('meta[name="theme-color"]');
  if (meta) meta.content = eff === 'dark' ? '#0e1116' : '#f5f7f9';
  if (stats) stats.redraw();
}

function cycleTheme() {
  const next = { auto: 'light', light: 'dark', dark: null }[themeMode()];
  prefs.set('theme', next);
  applyTheme();
}

// ---- settings dialog (local preferences + stats interval + debug) ------------------------------

// ---- layout order ----------------------------------------------------------------------------

// Two columns and more: the controls are the left column, read first.
const wideQuery = window.matchMedia ? window.matchMedia('(min-width: 1000px)') : null;

/**
 * Put the cards in the page in the order they are seen, so that Tab (and a screen reader) follows
 * the eye: on a wide screen the controls column, then camera and answer (or answer and camera);
 * in one column (a phone) camera and answer above the controls. CSS places them; nothing is
 * reordered with `order`. The video element never moves (moving it could pause it).
 */
function arrangeLayout() {
  const layout = $('layout');
  const stage = layout.querySelector('.stage');
  const aside = $('controls');
  const videoCard = $('videoCard');
  const answerCard = $('answerCard');
  const focused = document.activeElement;
  if (layout.dataset.order === 'answer-first') {
    if (answerCard.nextElementSibling !== videoCard) stage.insertBefore(answerCard, videoCard);
  } else if (videoCard.nextElementSibling !== answerCard) {
    stage.insertBefore(answerCard, videoCard.nextElementSibling);
  }
  const wide = !wideQuery || wideQuery.matches;
  if (wide && aside.nextElementSibling !== stage) layout.insertBefore(aside, stage);
  else if (!wide && stage.nextElementSibling !== aside) layout.insertBefore(aside, stage.nextElementSibling);
  // A moved element loses the focus: give it back.
  if (focused && focused !== document.body && document.activeElement !== focused && document.contains(focused)) {
    focused.focus({ preventScroll: true });
  }
}

function applyLocalPrefs() {
  const order = prefs.get('layoutOrder', 'camera-first') === 'answer-first' ? 'answer-first' : 'camera-first';
  $('layout').dataset.order = order;
  arrangeLayout();
  $('layoutCameraFirst').checked = order === 'camera-first';
  $('layoutAnswerFirst').checked = order === 'answer-first';
  const pos = prefs.get('overlayPosition', 'none');
  $('overlayPosition').value = ['none', 'top', 'bottom'].includes(pos) ? pos : 'none';
  const effects = { popIn: prefs.bool('popIn', true), glow: prefs.bool('glow', true), fade: prefs.bool('fade', true) };
  $('popInToggle').checked = effects.popIn;
  $('glowToggle').checked = effects.glow;
  $('fadeToggle').checked = effects.fade;
  answer.setEffects(effects);
  const sendVideo = sendVideoChosen();
  $('sendFrames').checked = !sendVideo;
  $('sendVideo').checked = sendVideo;
  const colorful = prefs.bool('colorfulFocus', false);
  $('accentToggle').checked = colorful;
  document.body.dataset.accents = colorful ? 'colorful' : 'plain';
  applyOverlayPosition();
}

function wireSettingsModal() {
  const modal = $('settingsModal');
  const openBtn = $('settingsBtn');
  const open = () => {
    if (typeof modal.showModal === 'function') modal.showModal();
    else modal.setAttribute('open', '');
    document.body.classList.add('modal-open');
    const first = modal.querySelector('input:checked, input, select, button');
    if (first) first.focus();
  };
  const close = () => {
    if (!modal.open) return;
    if (typeof modal.close === 'function') modal.close();
    else modal.removeAttribute('open');
  };
  modal.addEventListener('close', () => {
    document.body.classList.remove('modal-open');
    openBtn.focus();
  });
  openBtn.addEventListener('click', open);
  $('settingsClose').addEventListener('click', close);
  $('settingsDone').addEventListener('click', close);
  // A click on the dialog itself (not its box) is a click on the backdrop.
  modal.addEventListener('click', (ev) => { if (ev.target === modal) close(); });
  modal.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      close();
      return;
    }
    if (ev.key !== 'Tab') return;
    const items = [...modal.querySelectorAll('button, input, select, textarea, [tabindex]:not([tabindex="-1"])')]
      .filter((e) => !e.disabled && e.offsetParent !== null);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (ev.shiftKey && document.activeElement === first) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && document.activeElement === last) {
      ev.preventDefault();
      first.focus();
    }
  });

  for (const r of document.querySelectorAll('input[name="layoutOrder"]')) {
    r.addEventListener('change', () => {
      prefs.set('layoutOrder', r.value);
      applyLocalPrefs();
    });
  }
  for (const r of document.querySelectorAll('input[name="sendMode"]')) {
    r.addEventListener('change', () => { if (r.checked) sendModeChosen(r.value); });
  }
  $('overlayPosition').addEventListener('change', () => {
    prefs.set('overlayPosition', $('overlayPosition').value);
    applyLocalPrefs();
  });
  const toggles = { popInToggle: 'popIn', glowToggle: 'glow', fadeToggle: 'fade', accentToggle: 'colorfulFocus' };
  for (const [id, key] of Object.entries(toggles)) {
    $(id).addEventListener('change', () => {
      prefs.set(key, $(id).checked ? 'true' : 'false');
      applyLocalPrefs();
    });
  }
}

// ---- start -----------------------------------------------------------------------------------

function init() {
  hydrateIcons();
  applyTheme();
  if (darkQuery) {
    const onChange = () => { if (themeMode() === 'auto') applyTheme(); };
    if (darkQuery.addEventListener) darkQuery.addEventListener('change', onChange);
    else if (darkQuery.addListener) darkQuery.addListener(onChange);
  }
  $('loginForm').addEventListener('submit', login);
  // The server normally trades /?token=… for a cookie with a redirect; if the page still sees a
  // token in its address (a proxy rewrote it, a bookmark), sign in with it and drop it from the URL.
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  if (token) {
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
    fetch('/api/v1/login', {
      method: 'POST', credentials: 'same-origin', cache: 'no-store',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }),
    }).catch(() => null).finally(boot);
    return;
  }
  boot();
}

init();
