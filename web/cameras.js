// cameras.js - watching an IP camera from the page: the admin's cameras (GET /api/v1/cameras) in a
// "Watch" picker beside the webcam picker, the session setting `source` ("page" for this device's
// webcam, "camera:<id>" for an IP camera), the camera's latest analysed frame where the webcam
// picture usually is, and the camera's state (camera_state) said plainly. Protocol:
// docs/protocol.md, "Cameras".
//
// The server's settings are the truth: choosing a source sends update_settings (through Controls,
// so it waits for the connection like any setting) and the page follows `source` only when the
// session says so (session, settings_updated). A reload resumes the session, and with it the
// choice.
//
// While a camera is the source the page never opens the webcam: app.js drives a SourceCamera (a
// Camera whose open() only marks the run when a camera is watched), so Start, Stop, resume and the
// status badge work as for the webcam, and the server sends no credits. The picture is the JPEG
// the answer was about: each answer_start carries camera_frame (the sample's seq) and the page
// asks GET /api/v1/cameras/<id>/snapshot?seq=N, so it changes at the analysis rate (one image per
// analysed frame, not a video). With no cameras configured nothing here shows.

import { $, fmtBytes } from './util.js';
import { Camera } from './camera.js';

// How long the webcam's label probe waits to learn whether the session watches a camera (the probe
// opens the webcam for a moment, which a camera watcher must not see).
const SOURCE_WAIT_MS = 3000;
// The picker's states of the other cameras are read again this often (the watched one's come as
// camera_state messages).
const LIST_POLL_MS = 15000;
const ID_RE = /^[a-z0-9_-]{1,32}$/;

/** "camera:<id>" → id, anything else → null. */
export function cameraOf(source) {
  const m = /^camera:(.+)$/.exec(typeof source === 'string' ? source : '');
  return m && ID_RE.test(m[1]) ? m[1] : null;
}

/** A sentence for a camera's state: "Camera lobby is reconnecting: timeout". */
export function describeState(id, state, reason) {
  const r = String(reason || '').trim().replace(/\.+$/, ''); // the sentence ends here, not the reason
  const why = r ? `: ${r}` : '';
  switch (state) {
    case 'live': return `Camera ${id} is live`;
    case 'starting': return `Camera ${id} is starting…`;
    case 'reconnecting': return `Camera ${id} is reconnecting${why}`;
    case 'failed': return `Camera ${id} failed${why}`;
    case 'idle': return `Camera ${id} is idle (nobody watches it)`;
    default: return `Camera ${id}: ${state || 'unknown'}${why}`;
  }
}

/** A short label for the picker: "lobby — reconnecting (timeout)". */
export function optionLabel(cam) {
  const st = cam.state || 'idle';
  const size = cam.width && cam.height ? ` · ${cam.width}×${cam.height}` : '';
  const r = String(cam.reason || '').trim().replace(/\.+$/, '');
  const why = (st === 'reconnecting' || st === 'failed') && r ? ` (${r})` : '';
  return `${cam.id} — ${st}${why}${size}`;
}

/**
 * One camera's analysed frames shown in an <img>: show(id, seq) asks for the sample seq (GET
 * /api/v1/cameras/<id>/snapshot?seq=N: that sample while the server holds it, else the latest),
 * one request at a time, and when asks come faster than answers only the newest is fetched. The
 * picture goes through a blob URL (the response is no-store: the <img> must not ask again).
 * Used by the main page (CameraSources) and by each tile of the wall (wall.js).
 */
export class Snapshot {
  /** img: the <img>; apiFetch(path) → Response; onshown({seq, bytes, width, height}) after each. */
  constructor(img, apiFetch, onshown = null) {
    this.img = img;
    this.apiFetch = apiFetch;
    this.onshown = onshown;
    this.id = null;
    this.url = null;
    this.seq = null; // the sample on screen (X-Frame-Seq)
    this.bytes = 0;
    this.want = null;
    this.busy = false;
    this.shown = 0; // pictures shown since the last clear
    img.addEventListener('load', () => {
      if (!this.url || !img.naturalWidth) return;
      img.hidden = false;
      this.shown++;
      if (this.onshown) this.onshown({ seq: this.seq, bytes: this.bytes, width: img.naturalWidth, height: img.naturalHeight });
    });
  }

  async show(id, seq) {
    if (id !== this.id) this.clear(id);
    this.want = seq;
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.want !== null && this.want !== this.seq && this.id === id) {
        const want = this.want;
        this.want = null;
        const res = await this.apiFetch(`/api/v1/cameras/${encodeURIComponent(id)}/snapshot?seq=${want}`);
        if (!res.ok) break; // gone meanwhile: the next analysed frame asks again
        const blob = await res.blob();
        if (this.id !== id) break; // another camera meanwhile
        const got = Number(res.headers.get('x-frame-seq'));
        if (this.url) URL.revokeObjectURL(this.url);
        this.url = URL.createObjectURL(blob);
        this.seq = Number.isFinite(got) && res.headers.get('x-frame-seq') !== null ? got : want;
        this.bytes = blob.size;
        this.img.dataset.seq = String(this.seq);
        this.img.src = this.url;
      }
    } catch {
      // the server went away or the sign-in was lost: the page says so elsewhere; the next asks again
    } finally {
      this.busy = false;
    }
  }

  /** Forget the picture (another camera, or none: id). */
  clear(id = null) {
    if (this.url) URL.revokeObjectURL(this.url);
    this.id = id;
    this.url = null;
    this.seq = null;
    this.want = null;
    this.shown = 0;
    this.img.removeAttribute('src');
    delete this.img.dataset.seq;
    this.img.hidden = true;
  }
}

/**
 * The page's camera: the webcam (Camera), or an IP camera the session watches. `remote` is the
 * camera id while the session's source is a camera; then open() starts nothing but the run,
 * `running` is whether the run was started, and the webcam's label probe is skipped.
 */
export class SourceCamera extends Camera {
  constructor(video) {
    super(video);
    this.remote = null;
    this.remoteOn = false;
    this._sourceKnown = null;
    this.sourceKnown = new Promise((resolve) => { this._sourceKnown = resolve; });
    setTimeout(() => this.sourceIsKnown(), SOURCE_WAIT_MS);
  }

  /** The session's source is known (or it does not matter): the label probe may go on. */
  sourceIsKnown() {
    if (this._sourceKnown) this._sourceKnown();
    this._sourceKnown = null;
  }

  get running() {
    return this.remote ? this.remoteOn : super.running;
  }

  get activeDeviceId() {
    return this.remote ? null : super.activeDeviceId;
  }

  get activeLabel() {
    return this.remote ? `camera ${this.remote}` : super.activeLabel;
  }

  async list(opts = {}) {
    if (opts.probe) await this.sourceKnown;
    return super.list(this.remote ? { ...opts, probe: false } : opts);
  }

  async open(choice) {
    if (this.remote) {
      this.remoteOn = true;
      return null;
    }
    return super.open(choice);
  }

  async switchTo(choice) {
    return this.remote ? null : super.switchTo(choice);
  }

  stop() {
    this.remoteOn = false;
    super.stop();
  }

  /**
   * The session's source changed. Returns what the run needs: 'open-webcam' when a run that
   * watched a camera goes on with the webcam (the caller opens it), else null. A run on the
   * webcam that goes to a camera closes the webcam here and goes on.
   */
  follow(id) {
    const wasRunning = this.running;
    const wasRemote = !!this.remote;
    this.remote = id;
    if (id) {
      if (wasRunning && !wasRemote) super.stop(); // the webcam closes; the run goes on
      this.remoteOn = wasRunning;
      return null;
    }
    this.remoteOn = false;
    return wasRunning && wasRemote ? 'open-webcam' : null;
  }
}

export class CameraSources {
  /**
   * deps: conn (the page's Connection), camera (a SourceCamera), controls (Controls: apply()
   * sends a setting), apiFetch(path) → Response (throws on 401), webcamChoice() → the webcam
   * picker's value, onchange() after the source or the watched camera's state changed (the app
   * redraws its state), onprogress() when the watched camera is live again after trouble,
   * onwebcamfailed(message) when the run could not go on with the webcam.
   */
  constructor(deps) {
    this.deps = deps;
    this.conn = deps.conn;
    this.camera = deps.camera;
    this.cameras = []; // from GET /api/v1/cameras
    this.listed = false; // the list was read once
    this.source = 'page';
    this.state = null; // {state, reason} of the watched camera, from camera_state
    this.pollTimer = null;
    this.el = {
      field: $('sourceField'), select: $('sourceSelect'), hint: $('sourceHint'), wall: $('wallLink'),
      webcamField: $('cameraSelect').closest('.field'), img: $('cameraSnapshot'), wrap: $('videoWrap'),
      note: $('cameraStateNote'), placeholder: $('videoPlaceholderText'),
    };
    this.el.select.addEventListener('change', () => this._chosen());
    this.snap = new Snapshot(this.el.img, deps.apiFetch, (info) => this._pictureShown(info));
    this.conn.addEventListener('session', (ev) => this._session(ev.detail));
    this.conn.addEventListener('message', (ev) => this._message(ev.detail));
    document.addEventListener('visibilitychange', () => { if (!document.hidden) this.refresh(); });
  }

  /**
   * The watched camera's trouble while the run waits on it, for the status badge: {badge,
   * sentence}, or null (no camera watched, or it is live / starting).
   */
  trouble() {
    const id = this.watching;
    const st = this.state;
    if (!id || !st || (st.state !== 'reconnecting' && st.state !== 'failed')) return null;
    return { badge: st.state === 'failed' ? `Camera ${id} failed` : `Camera ${id} reconnecting…`,
      sentence: `${describeState(id, st.state, st.reason)}. No answers until it is back.` };
  }

  /** The camera id the session watches, or null (the webcam). */
  get watching() {
    return cameraOf(this.source);
  }

  /** GET /api/v1/cameras: the picker's list and states. */
  async refresh() {
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
    try {
      const res = await this.deps.apiFetch('/api/v1/cameras');
      if (res.ok) {
        const data = await res.json();
        this.cameras = Array.isArray(data && data.cameras)
          ? data.cameras.filter((c) => c && typeof c.id === 'string' && ID_RE.test(c.id)) : [];
      }
    } catch {
      // unreachable or signed out now: the last list stays (app.js handles a lost sign-in)
    }
    this.listed = true;
    if (!this.cameras.length && !this.watching) this.camera.sourceIsKnown(); // nothing to wait for
    this._render();
    if (this.cameras.length && !document.hidden) this.pollTimer = setTimeout(() => this.refresh(), LIST_POLL_MS);
  }

  // ---- the session's source ------------------------------------------------------------------

  _session(msg) {
    this._follow(msg.settings && typeof msg.settings.source === 'string' ? msg.settings.source : 'page');
    this.camera.sourceIsKnown();
  }

  _message(msg) {
    switch (msg.type) {
      case 'settings_updated':
        if (msg.settings && typeof msg.settings.source === 'string') this._follow(msg.settings.source);
        break;
      case 'camera_state':
        this._cameraState(msg);
        break;
      case 'answer_start':
        if (this.watching && Number.isInteger(msg.camera_frame) && msg.camera_frame >= 0) this.snap.show(this.watching, msg.camera_frame);
        break;
      case 'stopped':
        // A stopped session does not watch its camera any more: no state comes until it starts.
        this.state = null;
        this._render();
        break;
      case 'error':
        if (msg.code === 'invalid_setting' && msg.field === 'source') {
          this.el.select.value = this.source; // the choice goes back to what the session has
          this._hint(`This camera cannot be watched (${msg.message || 'refused'}). Pick another one.`, 'error');
        }
        break;
      default:
        break;
    }
  }

  _chosen() {
    const value = this.el.select.value;
    // "page" and "webrtc" (the page's "send video") are both the webcam: leave that choice alone.
    if (value === this.source || (value === 'page' && !this.watching)) return;
    this._hint(value === 'page' ? 'Switching to this device\'s camera…' : `Switching to camera ${cameraOf(value)}…`, '');
    this.deps.controls.apply({ source: value });
  }

  _follow(source) {
    const prev = this.source;
    this.source = source;
    const id = this.watching;
    if (source === prev && this.camera.remote === id) {
      this._render();
      return;
    }
    if (cameraOf(prev) !== id) {
      this.state = null;
      this._clearPicture();
    }
    const need = this.camera.follow(id);
    this.el.wrap.dataset.source = id ? 'camera' : 'page';
    this._render();
    if (need === 'open-webcam') this._openWebcam();
    if (this.deps.onchange) this.deps.onchange();
  }

  async _openWebcam() {
    try {
      await Camera.prototype.open.call(this.camera, this.deps.webcamChoice());
      this._hint('', '');
    } catch (e) {
      this._hint(e.message, 'error');
      if (this.deps.onwebcamfailed) this.deps.onwebcamfailed(e.message);
    }
    if (this.deps.onchange) this.deps.onchange();
  }

  _cameraState(msg) {
    if (typeof msg.camera !== 'string') return;
    const cam = this.cameras.find((c) => c.id === msg.camera);
    if (cam) {
      cam.state = msg.state;
      cam.reason = msg.reason || '';
    }
    if (msg.camera === this.watching) {
      const was = this.state && this.state.state;
      this.state = { state: String(msg.state || ''), reason: String(msg.reason || '') };
      // Back after trouble: the time without answers was the camera's, not the backend's.
      if (this.state.state === 'live' && was !== 'live' && this.deps.onprogress) this.deps.onprogress();
    }
    this._render();
    if (msg.camera === this.watching && this.deps.onchange) this.deps.onchange();
  }

  // ---- the picture ------------------------------------------------------------------------------

  _pictureShown({ seq, bytes, width, height }) {
    if (!this.watching) return;
    this.el.wrap.dataset.picture = 'true';
    // The box takes the picture's shape, as it does for the webcam.
    this.el.wrap.style.setProperty('--video-ar', (width / height).toFixed(4));
    const info = $('videoInfo');
    info.textContent = `${width}×${height} (camera ${this.watching})`;
    info.closest('.meta-item').hidden = false;
    $('frameInfo').textContent = `#${seq} · ${fmtBytes(bytes)}`;
  }

  _clearPicture() {
    this.snap.clear(this.watching);
    this.el.wrap.dataset.picture = 'false';
    $('videoInfo').closest('.meta-item').hidden = true;
    $('frameInfo').textContent = '—';
  }

  // ---- drawing --------------------------------------------------------------------------------

  _hint(text, kind) {
    this.el.hint.textContent = text;
    this.el.hint.dataset.kind = kind || '';
  }

  _render() {
    const id = this.watching;
    const show = this.cameras.length > 0 || !!id;
    const el = this.el;
    el.field.hidden = !show;
    el.wall.hidden = this.cameras.length === 0;
    el.webcamField.hidden = !!id;
    el.wrap.dataset.source = id ? 'camera' : 'page';
    if (show) {
      const opts = [new Option('This device\'s camera (webcam)', 'page')];
      for (const c of this.cameras) opts.push(new Option(optionLabel(c), `camera:${c.id}`));
      if (id && !this.cameras.some((c) => c.id === id)) opts.push(new Option(`${id} — not listed`, this.source));
      // Rebuilt only when it changed, so an open list is left alone.
      const key = JSON.stringify(opts.map((o) => [o.value, o.text]));
      if (key !== this.optionsKey) {
        this.optionsKey = key;
        el.select.replaceChildren(...opts);
      }
      el.select.value = id ? this.source : 'page';
      if (id) {
        const cam = this.cameras.find((c) => c.id === id);
        const st = this.state || (cam ? { state: cam.state, reason: cam.reason } : null);
        const words = st && st.state ? `${describeState(id, st.state, st.reason)}.` : `Watching camera ${id}.`;
        if (el.hint.dataset.kind !== 'error' || el.hint.textContent.startsWith('Switching')) this._hint(`${words} The webcam stays off.`, '');
      } else if (el.hint.dataset.kind !== 'error') {
        this._hint('', '');
      }
    }
    // (app.js writes the webcam's own sentences there; this one is only for a watched camera)
    if (id) el.placeholder.textContent = `IP camera ${id}`;
    else if (el.placeholder.textContent.startsWith('IP camera ')) el.placeholder.textContent = 'Camera is off';
    this._renderNote();
  }

  /** The line over the picture: the watched camera's trouble, or nothing while it is live. */
  _renderNote() {
    const id = this.watching;
    const st = this.state;
    const note = this.el.note;
    let text = '';
    let kind = '';
    if (id && st) {
      if (st.state === 'reconnecting' || st.state === 'failed') {
        text = `${describeState(id, st.state, st.reason)}.`;
        text += st.state === 'failed' ? ' Ask the administrator to check it.' : ' Answers resume when it is back.';
        kind = st.state === 'failed' ? 'error' : 'warn';
      } else if (st.state === 'starting' && this.camera.running) {
        text = `${describeState(id, st.state, st.reason)}`;
        kind = 'info';
      }
    }
    if (note.textContent !== text) note.textContent = text;
    note.dataset.kind = kind;
    note.dataset.state = st ? st.state : '';
    note.hidden = !text;
  }
}
