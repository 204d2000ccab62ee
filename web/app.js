// app.js - the page's entry point: sign-in, the WebSocket session, camera start/stop, and the
// wiring between the server's messages and the cards. Protocol: docs/protocol.md.

import { $, prefs, copyText, pulse, fmtMs, fmtBytes, h } from './util.js';
import { hydrateIcons, setIcon } from './icons.js';
import { Connection } from './ws.js';
import { Camera, cameraSupported } from './camera.js';
import { FrameSender } from './frames.js';
import { AnswerView } from './answer.js';
import { StatsView } from './stats.js';
import { Controls } from './controls.js';

// Settings carried over to a fresh session when the old one was lost (server restart, expiry).
const RESTORABLE = ['prompt', 'max_tokens', 'temperature', 'interval_ms', 'backend', 'model',
  'frame_max_side', 'jpeg_quality', 'stats_interval_ms', 'debug'];
const ERROR_LINES_MAX = 4;
const PROTOCOL = 1;

class AuthError extends Error {}

const state = {
  config: null,
  started: false, // the app view has been wired once
  connState: 'disconnected',
  serverStarted: false,
  wantRun: false,
  cameraOpening: false,
  stopsPending: 0,
  statusError: null,
  fatal: null,
  lastSettings: null,
  sessionSeen: false,
  pseudoFs: false,
};

let conn = null;
let camera = null;
let frames = null;
let answer = null;
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

async function logout() {
  try {
    await fetch('/api/v1/logout', { method: 'POST', credentials: 'same-origin', cache: 'no-store' });
  } catch { /* signed out locally anyway */ }
  state.wantRun = false;
  if (camera) stopLocal(false);
  if (conn) conn.stop();
  Connection.forget();
  state.lastSettings = null;
  state.sessionSeen = false;
  showLogin();
}

// ---- status badge ----------------------------------------------------------------------------

function setFatal(message) {
  state.fatal = message;
  renderStatus();
}

function renderStatus() {
  let st;
  let text;
  const open = state.connState === 'open';
  if (state.fatal) {
    st = 'error';
    text = `Error: ${state.fatal}`;
  } else if (open && state.statusError) {
    st = 'error';
    text = `Error: ${state.statusError}`;
  } else if (open) {
    if (state.cameraOpening) {
      st = 'connected';
      text = 'Requesting camera…';
    } else if (state.wantRun && state.serverStarted && camera.running) {
      st = 'streaming';
      text = 'Streaming';
    } else if (state.wantRun) {
      st = 'connected';
      text = 'Starting…';
    } else {
      st = 'connected';
      text = 'Connected';
    }
  } else if (state.connState === 'connecting') {
    st = 'connecting';
    text = 'Connecting…';
  } else if (state.connState === 'reconnecting') {
    st = 'reconnecting';
    text = 'Reconnecting…';
  } else {
    st = 'disconnected';
    text = 'Disconnected';
  }
  const badge = $('connectionStatus');
  badge.dataset.state = st;
  $('connectionText').textContent = text;
  badge.title = text;
  document.body.dataset.connection = st;
  if (answer) answer.setRunning(state.wantRun && !!camera && camera.running, st === 'streaming' ? 'Waiting for the next answer…' : text);
  updateVideoUi();
}

// ---- errors ----------------------------------------------------------------------------------

const ERROR_HELP = {
  no_backend: 'No healthy backend serves this model. Pick another model or check the backends.',
  backend_timeout: 'The model backend did not answer in time.',
  not_started: 'A frame arrived while the session was stopped.',
};

function showError(code, message) {
  const bar = $('errorBar');
  const text = message || ERROR_HELP[code] || 'Something went wrong.';
  for (const line of bar.children) {
    if (line.dataset.code === code && line.dataset.message === text) {
      const n = Number(line.dataset.repeat || '1') + 1;
      line.dataset.repeat = String(n);
      line.querySelector('.error-count').textContent = `×${n}`;
      pulse(line, 'bump', 400);
      return;
    }
  }
  const dismiss = h('button', { class: 'icon-btn icon-btn-sm error-dismiss', type: 'button', 'aria-label': `Dismiss the ${code} error`, title: 'Dismiss' });
  dismiss.appendChild(h('span', { dataset: { icon: 'close' } }));
  const line = h('div', { class: 'error-line', role: 'alert', dataset: { code, message: text, repeat: '1' } },
    h('span', { class: 'error-icon', dataset: { icon: 'alert' } }),
    h('code', { class: 'error-code', text: code }),
    h('span', { class: 'error-msg', text }),
    h('span', { class: 'error-count' }),
    dismiss);
  dismiss.addEventListener('click', () => {
    line.remove();
    syncErrorCount();
  });
  hydrateIcons(line);
  bar.appendChild(line);
  while (bar.children.length > ERROR_LINES_MAX) bar.firstElementChild.remove();
  syncErrorCount();
}

function syncErrorCount() {
  const bar = $('errorBar');
  bar.dataset.count = String(bar.children.length);
}

function clearErrors(code) {
  for (const line of [...$('errorBar').children]) if (!code || line.dataset.code === code) line.remove();
  syncErrorCount();
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
  checkDuplicateTab().then(() => conn.start());
}

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws`;
}

function wireApp() {
  camera = new Camera($('video'));
  answer = new AnswerView();
  stats = new StatsView();
  controls = new Controls({
    send: (change) => conn.isOpen && conn.send({ type: 'update_settings', settings: change }),
    onApplied: settingsApplied,
  });
  frames = new FrameSender($('video'), (buf) => conn.sendBinary(buf), () => controls.settings || state.config.defaults || {});
  frames.onsent = frameSent;
  frames.onproblem = (why) => showError('frame', why);
  conn = new Connection(wsUrl());

  conn.addEventListener('state', (ev) => {
    state.connState = ev.detail.state;
    renderStatus();
  });
  conn.addEventListener('session', (ev) => onSession(ev.detail));
  conn.addEventListener('message', (ev) => onMessage(ev.detail));
  conn.addEventListener('socketclose', (ev) => onSocketClose(ev.detail));
  conn.addEventListener('rtt', (ev) => { $('rtt').textContent = fmtMs(ev.detail.ms); });

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
  $('markdownToggle').addEventListener('click', () => answer.setMarkdown(!answer.markdown));
  $('copyBtn').addEventListener('click', copyAnswer);
  $('copySessionBtn').addEventListener('click', copySession);
  $('mirrorBtn').addEventListener('click', () => setMirror(!prefs.bool('mirror', false)));
  $('fullscreenBtn').addEventListener('click', toggleFullscreen);
  $('logoutBtn').addEventListener('click', logout);
  $('themeToggle').addEventListener('click', cycleTheme);
  $('video').addEventListener('loadedmetadata', videoInfo);
  $('video').addEventListener('resize', videoInfo);
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

async function loadModels(refresh) {
  const btn = $('refreshModels');
  btn.dataset.loading = 'true';
  btn.setAttribute('aria-busy', 'true');
  try {
    const res = await apiFetch(`/api/v1/models${refresh ? '?refresh=1' : ''}`);
    if (!res.ok) throw new Error(await errorText(res));
    const data = await res.json();
    const backends = Array.isArray(data.backends) ? data.backends : (state.config.backends || []);
    controls.setModels(data.models, backends);
    if (Array.isArray(data.backends)) updateBanner(data.backends);
  } catch (e) {
    if (e instanceof AuthError) return authLost();
    $('modelHint').textContent = `Could not load the models: ${e.message}`;
  } finally {
    btn.dataset.loading = 'false';
    btn.removeAttribute('aria-busy');
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
  controls.setSession(msg.settings || {});
  answer.setHistory(msg.history);
  answer.restoreLast();
  if (msg.metrics) answer.showMetrics(msg.metrics);

  // A lost session comes back with defaults: put back what this page had, plus offline edits.
  const restore = {};
  if (!msg.resumed && previous && msg.settings) {
    for (const f of RESTORABLE) {
      if (f in previous && JSON.stringify(previous[f]) !== JSON.stringify(msg.settings[f])) restore[f] = previous[f];
    }
  }
  Object.assign(restore, controls.takeDeferred());
  if (Object.keys(restore).length) controls.apply(restore);

  state.serverStarted = !!msg.started;
  state.stopsPending = 0;
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

function onMessage(msg) {
  switch (msg.type) {
    case 'settings_updated':
      controls.updated(msg.settings || {});
      break;
    case 'started':
      state.serverStarted = true;
      state.statusError = null;
      renderStatus();
      break;
    case 'stopped':
      state.serverStarted = false;
      frames.reset();
      answer.idle();
      if (state.stopsPending > 0) {
        state.stopsPending--;
      } else if (state.wantRun) {
        // Another page on this session stopped it.
        stopLocal(false);
      }
      renderStatus();
      break;
    case 'credit':
      if (state.wantRun && camera.running) frames.credit(Number(msg.credit_id) >>> 0);
      break;
    case 'queued':
      // the frame waits behind others for a backend slot: say where it stands
      $('queuePos').textContent = `#${Number(msg.position) || 1} of ${Number(msg.queued) || 1}`;
      $('queuePos').closest('.meta-item').hidden = false;
      break;
    case 'frame_dropped':
      $('queuePos').textContent = `frame too old (${fmtMs(msg.age_ms)}), skipped`;
      $('queuePos').closest('.meta-item').hidden = false;
      break;
    case 'answer_start':
      $('queuePos').closest('.meta-item').hidden = true;
      answer.start(msg);
      break;
    case 'delta':
      answer.delta(msg);
      break;
    case 'answer_cancelled':
      // settings changed or the slot went to another user: the next answer_start follows
      answer.failed(msg);
      break;
    case 'vlm_response':
      answer.complete(msg);
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

function onError(msg) {
  const code = typeof msg.code === 'string' ? msg.code : 'error';
  const message = typeof msg.message === 'string' ? msg.message : '';
  switch (code) {
    case 'session_not_found':
      return; // handled by the connection: a fresh session follows
    case 'invalid_setting':
      controls.invalid(msg);
      showError(code, msg.field ? `${msg.field}: ${message || 'invalid value'}` : message);
      return;
    case 'too_many_sessions':
      setFatal(message || 'too many sessions for this address');
      showError(code, message);
      return;
    case 'not_started':
      if (!state.wantRun) return; // a frame raced a stop: nothing to say
      break;
    default:
      break;
  }
  if (['backend_error', 'backend_timeout', 'no_backend'].includes(code) || msg.answer_id !== undefined) answer.failed(msg);
  showError(code, message);
}

function settingsApplied(settings, changed) {
  state.lastSettings = { ...settings };
  const echo = $('promptEcho');
  const p = typeof settings.prompt === 'string' ? settings.prompt : '';
  echo.textContent = p.length > 600 ? `${p.slice(0, 600)}…` : p;
  echo.title = p;
  stats.setPaused(settings.stats_interval_ms === 0);
  answer.setDebug(!!settings.debug);
  if (changed.has('model') || changed.has('backend')) clearErrors('no_backend');
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
  clearErrors('camera');
  state.wantRun = true;
  state.cameraOpening = true;
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
  answer.setPlaceholder('Waiting for the first answer…');
  conn.send({ type: 'start' }); // when offline, the session message re-sends it
  renderStatus();
}

/** Stop analysing: tell the server (when tell), close the camera. */
function stopLocal(tell) {
  state.wantRun = false;
  state.cameraOpening = false;
  camera.stop();
  frames.reset();
  if (tell && conn && conn.send({ type: 'stop' })) state.stopsPending++;
  answer.idle();
  answer.setPlaceholder('Press Start to analyse what your camera sees.');
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
  if (!running) $('videoInfo').textContent = '';
}

function videoInfo() {
  const v = $('video');
  if (v.videoWidth) $('videoInfo').textContent = `${v.videoWidth}×${v.videoHeight}`;
}

function frameSent(info) {
  $('framesSent').textContent = String(frames.sent);
  $('frameInfo').textContent = `${fmtBytes(info.bytes)} · encode ${Math.round(info.encodeMs)} ms`;
  $('videoInfo').textContent = `${info.sourceWidth}×${info.sourceHeight} → ${info.width}×${info.height}`;
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

function applyLocalPrefs() {
  const order = prefs.get('layoutOrder', 'camera-first') === 'answer-first' ? 'answer-first' : 'camera-first';
  $('layout').dataset.order = order;
  $('layoutCameraFirst').checked = order === 'camera-first';
  $('layoutAnswerFirst').checked = order === 'answer-first';
  const pos = prefs.get('overlayPosition', 'none');
  $('overlayPosition').value = ['none', 'top', 'bottom'].includes(pos) ? pos : 'none';
  const effects = { popIn: prefs.bool('popIn', true), glow: prefs.bool('glow', true), fade: prefs.bool('fade', true) };
  $('popInToggle').checked = effects.popIn;
  $('glowToggle').checked = effects.glow;
  $('fadeToggle').checked = effects.fade;
  answer.setEffects(effects);
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
