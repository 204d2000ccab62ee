// wall.js - the camera wall (/wall): every camera the admin defined, each in a tile with its
// latest analysed frame, its state and its latest answer as it is written, all asked one question.
//
// Each tile is a session of its own on its own WebSocket (ws.js, with per-camera credential keys
// in sessionStorage, so a reload resumes the same sessions) whose `source` is "camera:<id>": the
// server feeds it the camera's samples, sends no credits, and a tile asking what another watcher
// of the same camera asks (same prompt, model and parameters) shares that watcher's inference.
// The wall's prompt, interval and model are one for all tiles, kept in this browser
// (localStorage) and sent to every tile's session (hello settings for a new one, update_settings
// for a resumed one that differs). Pause all stops every tile's session (no more answers; the
// camera's pipeline is the server's business); Resume all starts them again.
//
// Protocol: docs/protocol.md ("Cameras", "Opening", "Server → client").

import { $, h, prefs, byteLength, fmtMs, fmtTime } from './util.js';
import { hydrateIcons, setIcon } from './icons.js';
import { Connection } from './ws.js';
import { renderMarkdown } from './markdown.js';
import { Snapshot, describeState } from './cameras.js';

const LIST_POLL_MS = 15000;
const PREF = { prompt: 'wall.prompt', interval: 'wall.interval_ms', model: 'wall.model', paused: 'wall.paused' };
const INTERVAL_MIN_MS = 100;
const INTERVAL_MAX_MS = 3600000;
const DEFAULT_INTERVAL_MS = 2000;

class AuthError extends Error {}

async function apiFetch(path) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 401) throw new AuthError('unauthorised');
  return res;
}

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}

function fmtSeconds(ms) {
  return String(+(ms / 1000).toFixed(3));
}

// ---- the wall's shared settings ---------------------------------------------------------------

const wall = {
  config: null,
  cameras: [],
  tiles: new Map(), // id → Tile
  settings: { prompt: '', interval_ms: DEFAULT_INTERVAL_MS, model: '' },
  paused: false,
  presets: [],
  maxPromptBytes: 4000,
  pollTimer: null,
};

/** The settings every tile's session should have (model '' = the server's choice). */
function wanted(id) {
  const s = { source: `camera:${id}`, prompt: wall.settings.prompt, interval_ms: wall.settings.interval_ms };
  if (wall.settings.model) {
    s.model = wall.settings.model;
    s.backend = '';
  }
  return s;
}

// ---- one camera's tile ------------------------------------------------------------------------

class Tile {
  constructor(cam) {
    this.id = cam.id;
    this.cam = cam;
    this.state = { state: cam.state || 'idle', reason: cam.reason || '' };
    this.connState = 'connecting';
    this.connReason = null;
    this.started = false;
    this.final = ''; // the last complete answer
    this.live = ''; // the answer being written
    this.streaming = false;
    this.gotDelta = false;
    this.answers = 0;
    this.problem = ''; // a refused setting or an error from the server, until the next answer
    this.helloRetried = false;
    this.renderQueued = false;
    this._build();
    this.snap = new Snapshot(this.img, apiFetch, (info) => this._pictureShown(info));
    const keys = { id: `livevlm.wall.${this.id}.session_id`, secret: `livevlm.wall.${this.id}.resume_secret` };
    this.conn = new Connection(wsUrl(), { keys, helloSettings: () => wanted(this.id) });
    this.conn.addEventListener('state', (ev) => {
      this.connState = ev.detail.state;
      this.connReason = typeof ev.detail.reason === 'string' ? ev.detail.reason : null; // cluster_unavailable
      this._render();
      renderStatus();
    });
    this.conn.addEventListener('session', (ev) => this._session(ev.detail));
    this.conn.addEventListener('message', (ev) => this._message(ev.detail));
    this.conn.addEventListener('socketclose', () => { this.started = false; this.streaming = false; this._render(); });
    this._render();
  }

  _build() {
    const id = this.id;
    const titleId = `tile-${id}-title`;
    this.badge = h('span', { class: 'chip wall-state', dataset: { state: this.state.state } });
    this.img = h('img', { class: 'wall-img', alt: `Latest analysed frame of camera ${id}`, hidden: true });
    this.waiting = h('p', { class: 'wall-waiting' });
    this.note = h('p', { class: 'camera-state-note wall-note', role: 'status', hidden: true });
    this.answerEl = h('div', { class: 'wall-answer md-body', tabindex: '0', role: 'region',
      'aria-label': `Answer about camera ${id}`, 'aria-busy': 'false', dataset: { empty: 'true' } });
    this.meta = h('p', { class: 'wall-meta' });
    this.root = h('article', { class: 'card wall-tile', 'aria-labelledby': titleId, dataset: { camera: id, answers: '0' } },
      h('header', { class: 'card-head' },
        h('h2', { id: titleId }, h('span', { class: 'head-icon', dataset: { icon: 'camera' } }), id),
        this.badge),
      h('div', { class: 'wall-picture' }, this.img, this.waiting),
      this.note, this.answerEl, this.meta);
    hydrateIcons(this.root);
  }

  start() {
    this.conn.start();
  }

  /** The wall's settings changed: tell this tile's session (a closed one gets them on its hello). */
  apply(change) {
    if (this.conn.isOpen) this.conn.send({ type: 'update_settings', settings: change });
  }

  setPaused(paused) {
    if (!this.conn.isOpen) return;
    if (paused && this.started) this.conn.send({ type: 'stop' });
    if (!paused && !this.started) this.conn.send({ type: 'start' });
  }

  _session(msg) {
    const have = msg.settings || {};
    const want = wanted(this.id);
    const change = {};
    for (const [k, v] of Object.entries(want)) if (have[k] !== v) change[k] = v;
    if (Object.keys(change).length) this.conn.send({ type: 'update_settings', settings: change });
    this.started = !!msg.started;
    if (Array.isArray(msg.history) && msg.history.length && !this.final) {
      const last = msg.history[msg.history.length - 1];
      if (last && typeof last.text === 'string') this.final = last.text;
    }
    this.setPaused(wall.paused);
    this._render();
  }

  _message(msg) {
    switch (msg.type) {
      case 'started':
        this.started = true;
        break;
      case 'stopped':
        this.started = false;
        this.streaming = false;
        break;
      case 'camera_state':
        if (msg.camera === this.id) {
          this.state = { state: String(msg.state || ''), reason: String(msg.reason || '') };
          this.cam.state = this.state.state;
          this.cam.reason = this.state.reason;
          renderStatus();
        }
        break;
      case 'answer_start':
        this.streaming = true;
        this.gotDelta = false;
        this.live = '';
        this.answerAt = performance.now();
        if (Number.isInteger(msg.camera_frame) && msg.camera_frame >= 0) this.snap.show(this.id, msg.camera_frame);
        break;
      case 'delta':
        if (typeof msg.text === 'string') {
          this.live += msg.text;
          this.gotDelta = true;
        }
        break;
      case 'vlm_response':
        this.streaming = false;
        this.final = typeof msg.text === 'string' ? msg.text : this.live;
        this.live = '';
        this.answers++;
        this.problem = '';
        this.metrics = msg.metrics || null;
        this.answeredAt = Date.now();
        break;
      case 'answer_cancelled':
        this.streaming = false;
        this.live = '';
        break;
      case 'error':
        this._error(msg);
        break;
      default:
        return; // settings_updated, queued, pong, gpu_stats…: nothing to show
    }
    this._queueRender();
  }

  _error(msg) {
    const code = typeof msg.code === 'string' ? msg.code : 'error';
    const text = typeof msg.message === 'string' ? msg.message : '';
    if (code === 'invalid_setting' && !this.conn.hasSession) {
      // A new session refused the wall's settings (a model gone from every backend): start it
      // with its camera only, and say which setting the server refused.
      fieldProblem(msg.field, text);
      if (msg.field !== 'source' && !this.helloRetried) {
        this.helloRetried = true;
        this.conn.send({ type: 'hello', settings: { source: `camera:${this.id}` } });
        return;
      }
    }
    if (code === 'invalid_setting') fieldProblem(msg.field, text);
    if (msg.answer_id !== undefined || ['backend_error', 'backend_timeout', 'no_backend'].includes(code)) {
      this.streaming = false;
      this.live = '';
    }
    const what = {
      no_backend: 'No model backend can answer right now; the wall resumes by itself.',
      backend_error: 'The model backend answered with an error.',
      backend_timeout: 'The model backend did not answer in time.',
      too_many_sessions: 'Too many livevlm pages are open from this address: close some, then reload.',
      invalid_setting: msg.field === 'source' ? `Camera ${this.id} cannot be watched (${text}).` : `A setting was refused (${text}).`,
    }[code] || `Error: ${text || code}`;
    this.problem = what;
  }

  _pictureShown({ width, height }) {
    this.root.style.setProperty('--tile-ar', (width / height).toFixed(4));
    this._render();
  }

  _queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this._render();
    });
  }

  _render() {
    const st = this.state;
    this.root.dataset.state = st.state;
    this.root.dataset.answers = String(this.answers);
    this.root.dataset.streaming = this.streaming ? 'true' : 'false';
    this.badge.dataset.state = st.state;
    this.badge.textContent = st.state || 'unknown';
    this.badge.title = describeState(this.id, st.state, st.reason);

    // The line under the picture: the camera's trouble, the connection's, or the server's.
    let note = '';
    let kind = '';
    if (this.connState !== 'open') {
      note = this.connState === 'reconnecting' ? this.connReason || 'Not connected to the server: reconnecting…' : 'Connecting…';
      kind = 'info';
    } else if (st.state === 'reconnecting' || st.state === 'failed') {
      note = `${describeState(this.id, st.state, st.reason)}.`;
      kind = st.state === 'failed' ? 'error' : 'warn';
    } else if (this.problem) {
      note = this.problem;
      kind = 'warn';
    }
    this.note.textContent = note;
    this.note.dataset.kind = kind;
    this.note.hidden = !note;

    this.waiting.hidden = this.snap.shown > 0;
    // (the camera's trouble itself is said once, in the line under the picture)
    this.waiting.textContent = wall.paused ? 'Paused' : st.state === 'reconnecting' || st.state === 'failed'
      ? 'No picture from this camera' : 'Waiting for the first analysed frame…';

    const text = this.streaming && this.gotDelta ? this.live : this.final;
    const key = `${this.streaming && this.gotDelta ? 'L' : 'F'}${text}`;
    if (key !== this.shownKey) {
      this.shownKey = key;
      if (text) {
        this.answerEl.replaceChildren(renderMarkdown(text));
        this.answerEl.dataset.empty = 'false';
      } else {
        this.answerEl.replaceChildren(h('p', { class: 'placeholder', text: wall.paused ? 'Paused.' : 'No answer yet.' }));
        this.answerEl.dataset.empty = 'true';
      }
    }
    this.answerEl.setAttribute('aria-busy', this.streaming ? 'true' : 'false');
    this.answerEl.dataset.streaming = this.streaming ? 'true' : 'false';

    const parts = [];
    if (this.streaming) parts.push(this.gotDelta ? 'writing…' : 'looking at the picture…');
    const m = this.metrics;
    if (m && Number.isFinite(m.last_latency_ms)) parts.push(`latency ${fmtMs(m.last_latency_ms)}`);
    if (this.answeredAt) parts.push(fmtTime(this.answeredAt));
    if (m && m.model) parts.push(m.model);
    if (this.answers) parts.push(`${this.answers} answer${this.answers === 1 ? '' : 's'}`);
    this.meta.textContent = parts.join(' · ');
  }
}

// ---- the controls -----------------------------------------------------------------------------

function fieldMsg(field) {
  return { prompt: $('wallPromptMsg'), interval_ms: $('wallIntervalMsg'), model: $('wallModelMsg') }[field] || null;
}

function setFieldMsg(field, text, kind = '') {
  const el = fieldMsg(field);
  if (!el) return;
  el.textContent = text;
  el.dataset.kind = kind;
  el.closest('.field').classList.toggle('invalid', kind === 'error');
}

/** A session refused one of the wall's settings: said once, at the field. */
function fieldProblem(field, text) {
  if (field === 'source' || !fieldMsg(field)) return;
  setFieldMsg(field, `The server did not accept this (${text || 'refused'}).`, 'error');
}

/** Change the wall's settings: kept in this browser and sent to every tile. */
function applyWall(change) {
  Object.assign(wall.settings, change);
  if ('prompt' in change) prefs.set(PREF.prompt, change.prompt);
  if ('interval_ms' in change) prefs.set(PREF.interval, String(change.interval_ms));
  if ('model' in change) prefs.set(PREF.model, change.model);
  for (const f of Object.keys(change)) {
    setFieldMsg(f, 'Applied to every camera.', 'info');
    setTimeout(() => { if (fieldMsg(f) && fieldMsg(f).dataset.kind === 'info') setFieldMsg(f, '', ''); }, 2500);
  }
  const sent = { ...change };
  if ('model' in sent) sent.backend = '';
  for (const t of wall.tiles.values()) t.apply(sent);
}

function syncPreset() {
  const p = wall.presets.find((x) => x.prompt === $('wallPrompt').value);
  $('wallPreset').value = p ? p.id : '';
}

function applyPrompt() {
  const text = $('wallPrompt').value;
  if (text === wall.settings.prompt) return;
  if (!text.trim()) {
    setFieldMsg('prompt', 'The prompt cannot be empty: write a question about the pictures, or pick a preset.', 'error');
    return;
  }
  const n = byteLength(text);
  if (n > wall.maxPromptBytes) {
    setFieldMsg('prompt', `The prompt is ${n} bytes long; the most allowed is ${wall.maxPromptBytes} bytes.`, 'error');
    return;
  }
  applyWall({ prompt: text });
}

function applyInterval() {
  const input = $('wallInterval');
  const v = Number(input.value.trim());
  if (input.value.trim() === '' || !Number.isFinite(v) || v * 1000 < INTERVAL_MIN_MS || v * 1000 > INTERVAL_MAX_MS) {
    setFieldMsg('interval_ms', `Enter a number of seconds from ${input.min} to ${input.max}.`, 'error');
    return;
  }
  const ms = Math.round(v * 1000);
  if (ms !== wall.settings.interval_ms) applyWall({ interval_ms: ms });
  else setFieldMsg('interval_ms', '', '');
}

function wireControls() {
  const prompt = $('wallPrompt');
  $('wallPreset').addEventListener('change', () => {
    const p = wall.presets.find((x) => x.id === $('wallPreset').value);
    if (!p) return;
    prompt.value = p.prompt;
    applyPrompt();
  });
  prompt.addEventListener('input', () => { syncPreset(); setFieldMsg('prompt', '', ''); });
  prompt.addEventListener('blur', applyPrompt);
  prompt.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      applyPrompt();
    }
  });
  $('wallInterval').addEventListener('change', applyInterval);
  $('wallModel').addEventListener('change', () => applyWall({ model: $('wallModel').value }));
  $('wallPause').addEventListener('click', () => setPaused(!wall.paused));
  $('wallControls').addEventListener('submit', (ev) => ev.preventDefault());
}

function setPaused(paused) {
  wall.paused = paused;
  prefs.set(PREF.paused, paused ? 'true' : null);
  const btn = $('wallPause');
  btn.setAttribute('aria-pressed', paused ? 'true' : 'false');
  btn.querySelector('.btn-label').textContent = paused ? 'Resume all' : 'Pause all';
  setIcon(btn.querySelector('[data-icon]'), paused ? 'play' : 'stop');
  for (const t of wall.tiles.values()) {
    t.setPaused(paused);
    t._render();
  }
  renderStatus();
}

function fillModels(models) {
  const sel = $('wallModel');
  const seen = new Set();
  const opts = [new Option('Automatic (first vision model)', '')];
  for (const m of models) {
    if (!m || typeof m.id !== 'string' || seen.has(m.id)) continue;
    seen.add(m.id);
    opts.push(new Option(m.name && m.name !== m.id ? `${m.name} (${m.id})` : m.id, m.id));
  }
  const cur = wall.settings.model;
  if (cur && !seen.has(cur)) opts.push(new Option(`${cur} (not listed)`, cur));
  sel.replaceChildren(...opts);
  sel.value = cur;
}

// ---- the page ---------------------------------------------------------------------------------

function renderStatus() {
  const badge = $('wallStatus');
  const text = $('wallStatusText');
  const tiles = [...wall.tiles.values()];
  if (!tiles.length) return;
  const live = tiles.filter((t) => t.state.state === 'live').length;
  const open = tiles.filter((t) => t.connState === 'open').length;
  let st = 'streaming';
  let words = `${tiles.length} camera${tiles.length === 1 ? '' : 's'} · ${live} live`;
  if (open < tiles.length) {
    st = 'reconnecting';
    words += ` · ${tiles.length - open} not connected`;
  } else if (wall.paused) {
    st = 'connected';
    words += ' · paused';
  } else if (live < tiles.length) {
    st = 'backend-down';
  }
  badge.dataset.state = st;
  text.textContent = words;
}

function showMessage(parts) {
  const el = $('wallMessage');
  el.replaceChildren(...parts);
  el.hidden = false;
  $('wallControls').hidden = true;
  const badge = $('wallStatus');
  badge.dataset.state = 'error';
}

async function pollCameras() {
  clearTimeout(wall.pollTimer);
  try {
    const res = await apiFetch('/api/v1/cameras');
    if (res.ok) {
      const data = await res.json();
      for (const c of (data && Array.isArray(data.cameras) ? data.cameras : [])) {
        const t = c && wall.tiles.get(c.id);
        // The session's own camera_state is newer while its socket is open.
        if (t && t.connState !== 'open') t.state = { state: String(c.state || ''), reason: String(c.reason || '') };
        if (t) t._render();
      }
      renderStatus();
    }
  } catch { /* the tiles' sockets say when the server is gone */ }
  wall.pollTimer = setTimeout(pollCameras, LIST_POLL_MS);
}

async function boot() {
  hydrateIcons();
  let config;
  let cameras;
  try {
    const res = await apiFetch('/api/v1/config');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    config = await res.json();
    const cres = await apiFetch('/api/v1/cameras');
    if (!cres.ok) throw new Error(`HTTP ${cres.status} for the camera list`);
    cameras = ((await cres.json()).cameras || []).filter((c) => c && typeof c.id === 'string');
  } catch (e) {
    $('wallStatusText').textContent = e instanceof AuthError ? 'Signed out' : 'Server unreachable';
    if (e instanceof AuthError) {
      showMessage(['You are not signed in. ', h('a', { href: '/', text: 'Sign in on the main page' }), ', then come back to the wall.']);
    } else {
      showMessage([`The server could not be asked for its cameras (${e.message}). `, h('a', { href: '/wall', text: 'Try again' }), '.']);
      setTimeout(boot, 5000);
    }
    return;
  }
  $('wallMessage').hidden = true;
  wall.config = config;
  wall.cameras = cameras;
  const defaults = config.defaults || {};
  const limits = config.limits || {};
  if (Number.isFinite(limits.max_prompt_bytes)) wall.maxPromptBytes = limits.max_prompt_bytes;
  wall.presets = Array.isArray(config.presets) ? config.presets.filter((p) => p && typeof p.prompt === 'string') : [];
  const storedInterval = Number(prefs.get(PREF.interval, ''));
  wall.settings = {
    prompt: prefs.get(PREF.prompt, '') || defaults.prompt || (wall.presets[0] && wall.presets[0].prompt) || 'Describe what is happening in this picture.',
    interval_ms: Number.isInteger(storedInterval) && storedInterval >= INTERVAL_MIN_MS && storedInterval <= INTERVAL_MAX_MS
      ? storedInterval : Math.max(DEFAULT_INTERVAL_MS, Number(defaults.interval_ms) || 0),
    model: prefs.get(PREF.model, '') || '',
  };
  wall.paused = prefs.bool(PREF.paused, false);

  if (!cameras.length) {
    $('wallStatusText').textContent = 'No cameras';
    showMessage(['This server has no cameras. An administrator adds them with ', h('code', { text: '--camera ID=rtsp://host/path' }),
      ' (or a ', h('code', { text: 'camera = ID=URL' }), ' line in the config file). ', h('a', { href: '/', text: 'Back to the main page' }), '.']);
    return;
  }
  const presetSel = $('wallPreset');
  presetSel.replaceChildren(new Option('Custom prompt', ''), ...wall.presets.map((p) => new Option(p.label || p.id, p.id)));
  $('wallPrompt').value = wall.settings.prompt;
  syncPreset();
  $('wallInterval').value = fmtSeconds(wall.settings.interval_ms);
  fillModels([]);
  $('wallControls').hidden = false;
  wireControls();
  setPaused(wall.paused);

  const grid = $('wallGrid');
  for (const cam of cameras) {
    const t = new Tile(cam);
    wall.tiles.set(cam.id, t);
    grid.appendChild(t.root);
  }
  grid.dataset.count = String(cameras.length);
  renderStatus();
  for (const t of wall.tiles.values()) t.start();
  wall.pollTimer = setTimeout(pollCameras, LIST_POLL_MS);
  window.addEventListener('pagehide', () => { for (const t of wall.tiles.values()) t.conn.stop(); });
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) for (const t of wall.tiles.values()) t.start(); });

  try {
    const res = await apiFetch('/api/v1/models');
    if (res.ok) fillModels((await res.json()).models || []);
  } catch { /* the automatic choice stays */ }
}

boot();
