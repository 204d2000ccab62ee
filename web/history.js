// history.js - the History panel: each answer of this session with the prompt it was asked with
// and a thumbnail of the frame it was about, searchable as you type (answer text and prompt),
// downloadable as JSON, CSV or Markdown, and kept in this browser per session (IndexedDB), so a
// reload of the same session (or the page's automatic resume) keeps prompts and pictures.
//
// Where each part comes from (docs/protocol.md):
// - the server's `session` message carries its last 20 answers: answer_id, text, latency_ms,
//   wall_ms; no prompt, no picture. Answers this page never saw are shown from it, marked so;
// - the prompt is the session's prompt as the server confirmed it (settings_updated) when the
//   answer started (`answer_start`, which carries answer_id): a prompt change cancels the answer in
//   progress and asks again, so a complete answer was always asked with the prompt of its start;
// - the thumbnail is drawn from the frame this page sent (FrameSender's canvas, right after the
//   send), scaled to THUMB_WIDTH px. The frame an answer is about is found by its age:
//   `answer_start.frame_age_ms` against the time each recent frame was grabbed;
// - while the session watches an IP camera (source "camera:<id>") the page sends no frames: the
//   answer's `answer_start.camera_frame` names the camera's sample, which is fetched from GET
//   /api/v1/cameras/<id>/snapshot?seq=N at once (the server holds only its last 8 samples, and a
//   long answer could outlive them) and scaled down as a sent frame is. A snapshot whose
//   X-Frame-Seq is not that sample (gone already: the server answers the newest) is not kept: a
//   wrong picture is worse than none.
// Thumbnails stay in this browser: they are never sent anywhere (a camera's come from the server).

import { h, fmtMs, fmtTime, num } from './util.js';
import { cameraOf } from './cameras.js';
import { renderMarkdown, renderPlain, markdownToText } from './markdown.js';

/** The bounds on what is kept, in memory and in storage (docs/history.md). */
export const LIMITS = {
  entries: 200, // answers kept per session (the oldest go first)
  thumbs: 60, // answers that keep their thumbnail (the newest)
  sessionBytes: 4 * 1024 * 1024, // text + prompts + thumbnails of one session, estimated
  sessions: 8, // sessions kept in this browser (the least recently used go first)
  maxAgeMs: 7 * 24 * 3600 * 1000, // a session's history is dropped after a week without answers
  thumbWidth: 160,
  thumbQuality: 0.7,
  thumbMaxBytes: 24 * 1024, // a thumbnail bigger than this is not kept
  jsonThumbBytes: 16 * 1024, // thumbnails up to this size go into the JSON download as data URLs
  jsonThumbTotal: 2 * 1024 * 1024, // and no more than this in all
};
const THUMB_WIDTH = LIMITS.thumbWidth;
const RECENT_FRAMES = 6; // frames sent lately, candidates for the next answer_start
const PENDING_MAX = 16;
const SNAPSHOT_MAX_BYTES = 8 * 1024 * 1024; // a camera's JPEG bigger than this is not decoded for a thumbnail
const CLEAR_CONFIRM_MS = 4000;

const NO_PICTURE = {
  server: 'No picture: this answer came before this page was loaded, and the server keeps only the text.',
  evicted: `Picture not kept: only the newest ${LIMITS.thumbs} answers keep theirs.`,
  none: 'No picture: the frame of this answer was not sent by this page (another tab of this session, or before a reload).',
  camera: 'No picture: the server no longer held this camera frame when the page asked for it.',
};
const NO_PROMPT = 'Prompt not known: this answer came before this page was loaded, and the server keeps only the text.';

// ---- pure helpers (exports) ------------------------------------------------------------------

const isoTime = (ms) => (Number.isFinite(ms) ? new Date(ms).toISOString() : null);

/** Lower case without accents, for matching. */
function fold(s) {
  return String(s || '').normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
}

/** The search terms of a query: every one must occur in the answer text or the prompt. */
export function searchTerms(query) {
  return fold(query).split(/\s+/).filter(Boolean);
}

/** A CSV field (RFC 4180): quoted when it holds a quote, comma, CR or LF, or edge spaces. */
export function csvField(v) {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A CSV text field that a spreadsheet must not run as a formula: a leading = + - @ tab or CR gets a '. */
export function csvText(v) {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return csvField(/^[=+\-@\t\r]/.test(s) ? `'${s}` : s);
}

/** One line of text escaped so that Markdown shows exactly its characters. */
export function mdEscapeLine(line) {
  let s = String(line).replace(/[\\`*_[\]<>#|~&$]/g, '\\$&');
  s = s.replace(/^(\s*)([-+=])/, '$1\\$2'); // a list bullet, a setext underline, a rule
  s = s.replace(/^(\s*\d+)([.)])/, '$1\\$2'); // an ordered list
  // Leading blanks would make an indented code block: spell them as character references.
  s = s.replace(/^[ \t]+/, (m) => m.replace(/ /g, '&#32;').replace(/\t/g, '&#9;'));
  return s;
}

/**
 * Text as a Markdown block quote that shows exactly its characters: each line escaped, the line
 * breaks kept (a backslash at the end of a line is a hard break), blank lines kept.
 */
export function mdQuote(text) {
  const lines = String(text ?? '').replace(/\r\n?/g, '\n').split('\n');
  return lines.map((line, i) => {
    if (!line.trim()) return '>';
    const more = i + 1 < lines.length && lines[i + 1].trim() !== '';
    return `> ${mdEscapeLine(line)}${more ? '\\' : ''}`;
  }).join('\n');
}

function stamp(ms) {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

function blobToDataUrl(blob) {
  return new Promise((resolve) => {
    const r = new FileReader();
    r.onload = () => resolve(typeof r.result === 'string' ? r.result : null);
    r.onerror = () => resolve(null);
    r.readAsDataURL(blob);
  });
}

// ---- storage ---------------------------------------------------------------------------------

/**
 * IndexedDB: store `entries` keyed [sid, answer_id] (index `sid`), store `sessions` keyed sid
 * ({sid, updated, clearedThrough}). Every call resolves (null or false when storage is blocked or
 * fails): the history then lives in memory only, for as long as the page.
 */
class HistoryStore {
  constructor() {
    this.db = null;
    this.ok = typeof indexedDB !== 'undefined';
    this.ready = this.ok ? this._open() : Promise.resolve(null);
  }

  _open() {
    return new Promise((resolve) => {
      let req;
      try {
        req = indexedDB.open('livevlm-history', 1);
      } catch {
        this.ok = false;
        resolve(null);
        return;
      }
      const timer = setTimeout(() => { this.ok = false; resolve(null); }, 5000);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains('entries')) {
          db.createObjectStore('entries', { keyPath: ['sid', 'answer_id'] }).createIndex('sid', 'sid');
        }
        if (!db.objectStoreNames.contains('sessions')) db.createObjectStore('sessions', { keyPath: 'sid' });
      };
      req.onsuccess = () => {
        clearTimeout(timer);
        this.db = req.result;
        this.db.onversionchange = () => { this.db.close(); this.db = null; };
        resolve(this.db);
      };
      req.onerror = () => {
        clearTimeout(timer);
        this.ok = false;
        resolve(null);
      };
    });
  }

  async _tx(mode, fn) {
    const db = await this.ready;
    if (!db || !this.db) return null;
    return new Promise((resolve) => {
      try {
        const tx = db.transaction(['entries', 'sessions'], mode);
        const out = fn(tx.objectStore('entries'), tx.objectStore('sessions')) || {};
        tx.oncomplete = () => resolve(out);
        tx.onerror = () => { this.ok = false; resolve(null); };
        tx.onabort = () => { this.ok = false; resolve(null); };
      } catch {
        this.ok = false;
        resolve(null);
      }
    });
  }

  /** {records, meta} of one session. */
  load(sid) {
    return this._tx('readonly', (entries, sessions) => {
      const out = { records: [], meta: null };
      entries.index('sid').getAll(sid).onsuccess = (ev) => { out.records = ev.target.result || []; };
      sessions.get(sid).onsuccess = (ev) => { out.meta = ev.target.result || null; };
      return out;
    });
  }

  /** Put records, delete answer ids, and note the session as used (meta: {clearedThrough}). */
  write(sid, { put = [], del = [], meta = {} }) {
    return this._tx('readwrite', (entries, sessions) => {
      for (const r of put) entries.put(r);
      for (const id of del) entries.delete([sid, id]);
      sessions.put({ ...meta, sid, updated: Date.now() });
    });
  }

  /** Forget one session entirely. */
  dropSession(sid) {
    return this._tx('readwrite', (entries, sessions) => {
      entries.delete(IDBKeyRange.bound([sid], [sid, []]));
      sessions.delete(sid);
    });
  }

  /** Forget the sessions beyond LIMITS.sessions (least recently used first) and those too old. */
  async prune(keep) {
    const all = await this._tx('readonly', (entries, sessions) => {
      const out = { list: [] };
      sessions.getAll().onsuccess = (ev) => { out.list = ev.target.result || []; };
      return out;
    });
    if (!all) return;
    const now = Date.now();
    const old = all.list.filter((s) => s.sid !== keep).sort((a, b) => (b.updated || 0) - (a.updated || 0))
      .filter((s, i) => i >= LIMITS.sessions - 1 || !(now - (s.updated || 0) < LIMITS.maxAgeMs));
    for (const s of old) await this.dropSession(s.sid);
  }
}

// ---- the panel -------------------------------------------------------------------------------

/**
 * An entry: {answer_id, text, prompt (null: not known), wall_ms, latency_ms, model, backend,
 * source ('page': this page saw it; 'server': from the session message only), camera (the IP
 * camera whose frame it was about, or null), thumb (a JPEG Blob or null), thumbW, thumbH, noThumb
 * (why there is none: a NO_PICTURE key)}; in memory also url
 * (the thumbnail's object URL), el (its <li>), hay (folded text for search).
 */
export class HistoryView {
  /** getSettings() → the session's settings as the server confirmed them (for the prompt). */
  constructor({ getSettings }) {
    this.getSettings = getSettings;
    this.store = new HistoryStore();
    this.sid = null;
    this.meta = { clearedThrough: null };
    this.entries = new Map();
    this.pending = new Map(); // answer_id → {prompt, frame, model, backend}
    this.frames = []; // the frames sent lately: {grabbedAt, ready (Promise<Blob|null>), w, h}
    this.markdown = true;
    this.query = '';
    this.terms = [];
    this.loading = null;
    this.saving = null; // the chain of IndexedDB writes
    this.thumbCanvas = null;
    this.clearArmed = null;

    this.box = document.getElementById('history');
    this.list = document.getElementById('historyList');
    this.count = document.getElementById('historyCount');
    this.empty = document.getElementById('historyEmpty');
    this.search = document.getElementById('historySearch');
    this.status = document.getElementById('historyStatus');
    this.note = document.getElementById('historyNote');
    this.clearBtn = document.getElementById('historyClear');
    this.exportBtns = [...this.box.querySelectorAll('[data-export]')];

    this.search.addEventListener('input', () => this.setQuery(this.search.value));
    this.search.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && this.search.value) {
        ev.preventDefault();
        ev.stopPropagation();
        this.search.value = '';
        this.setQuery('');
      }
    });
    for (const b of this.exportBtns) b.addEventListener('click', () => this.download(b.dataset.export));
    this.clearBtn.addEventListener('click', () => this._clearClicked());
    this._renderAll();
  }

  // ---- hooks for app.js ----------------------------------------------------------------------

  /** A frame went to the server: keep a thumbnail of it until an answer claims it. */
  frameSent(canvas, info = {}) {
    try {
      this._frameSent(canvas, info);
    } catch (e) {
      console.error('history: a frame thumbnail failed', e); // the live view goes on regardless
    }
  }

  _frameSent(canvas, info) {
    if (!canvas || !canvas.width || !canvas.height) return;
    const now = performance.now();
    const t = this._thumbOf(canvas, canvas.width, canvas.height);
    if (!t) return; // a browser that cannot draw the frame canvas: answers go without pictures
    const grabbedAt = now - (Number(info.captureAgeMs) || 0);
    this.frames.push({ grabbedAt, ...t });
    if (this.frames.length > RECENT_FRAMES) this.frames.shift();
  }

  /**
   * A picture (a canvas or an ImageBitmap of sw×sh) scaled to THUMB_WIDTH px at most:
   * {ready (Promise<Blob|null>: null when over LIMITS.thumbMaxBytes), w, h}, or null when the
   * browser cannot draw it. toBlob copies the picture at the call: the canvas can be drawn on again.
   */
  _thumbOf(src, sw, sh) {
    const w = Math.min(THUMB_WIDTH, sw);
    const hh = Math.max(1, Math.round((sh * w) / sw));
    try {
      if (!this.thumbCanvas) this.thumbCanvas = document.createElement('canvas');
      const c = this.thumbCanvas;
      c.width = w;
      c.height = hh;
      const ctx = c.getContext('2d', { alpha: false });
      ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(src, 0, 0, w, hh);
      const ready = new Promise((resolve) => {
        c.toBlob((b) => resolve(b && b.size <= LIMITS.thumbMaxBytes ? b : null), 'image/jpeg', LIMITS.thumbQuality);
      });
      return { ready, w, h: hh };
    } catch {
      return null;
    }
  }

  /**
   * The thumbnail of a camera's sample: fetched now, while the server still holds it (the last 8
   * samples). Resolves {blob, w, h}, or null when the sample is gone, the server is unreachable,
   * or the picture cannot be decoded (the answer then says it has no picture).
   */
  async _cameraThumb(id, seq) {
    try {
      const res = await fetch(`/api/v1/cameras/${encodeURIComponent(id)}/snapshot?seq=${seq}`,
        { credentials: 'same-origin', cache: 'no-store' });
      if (!res.ok) return null;
      if (Number(res.headers.get('x-frame-seq')) !== seq) return null; // another sample: not this answer's
      const blob = await res.blob();
      if (!blob.size || blob.size > SNAPSHOT_MAX_BYTES || typeof createImageBitmap !== 'function') return null;
      const bmp = await createImageBitmap(blob);
      try {
        const t = this._thumbOf(bmp, bmp.width, bmp.height);
        if (!t) return null;
        const thumb = await t.ready;
        return thumb ? { blob: thumb, w: t.w, h: t.h } : null;
      } finally {
        bmp.close();
      }
    } catch {
      return null; // the live view goes on; this answer goes without a picture
    }
  }

  /** Every server message (only answers and their ends matter here). */
  onMessage(msg) {
    try {
      this._onMessage(msg);
    } catch (e) {
      console.error('history: an answer could not be recorded', e); // the live view goes on regardless
    }
  }

  _onMessage(msg) {
    switch (msg && msg.type) {
      case 'answer_start': this._started(msg); break;
      case 'vlm_response': this._completed(msg); break;
      case 'answer_cancelled': this.pending.delete(msg.answer_id); break;
      case 'error': if (msg.answer_id !== undefined) this.pending.delete(msg.answer_id); break;
      default: break;
    }
  }

  /** The session message: its id and the server's history (oldest first). */
  setSession(sid, serverHistory) {
    sid = String(sid || '');
    if (sid !== this.sid) {
      // Another session (the first, or a lost one replaced): its own history.
      this._reset();
      this.sid = sid;
      this.loading = this._load(sid, serverHistory).catch((e) => console.error('history: the kept history could not be read', e));
      return this.loading;
    }
    // The same session again (a reconnect): after what this browser kept is read.
    this.loading = this.loading.then(() => { if (this.sid === sid) this._mergeServer(serverHistory); })
      .catch((e) => console.error('history: the server\'s history could not be merged', e));
    return this.loading;
  }

  setMarkdown(on) {
    this.markdown = !!on;
    for (const e of this.entries.values()) this._fillBody(e);
  }

  /** Sign-out: this session's history leaves this browser. */
  forget() {
    const sid = this.sid;
    this._reset();
    this.sid = null;
    if (sid) this.saving = (this.saving || Promise.resolve()).then(() => this.store.dropSession(sid));
    this._renderAll();
  }

  // ---- answers -------------------------------------------------------------------------------

  _prompt() {
    const s = this.getSettings() || {};
    return typeof s.prompt === 'string' ? s.prompt : null;
  }

  _started(msg) {
    const id = msg.answer_id;
    if (id === undefined || id === null) return;
    // A camera's frame: the sample is fetched now (camera), not looked for among the frames sent.
    const cam = cameraOf((this.getSettings() || {}).source);
    const seq = msg.camera_frame;
    const camera = cam && Number.isInteger(seq) && seq >= 0 ? this._cameraThumb(cam, seq) : null;
    this.pending.set(id, {
      prompt: this._prompt(), frame: camera ? null : this._frameFor(num(msg.frame_age_ms)), camera, cameraId: camera ? cam : null,
      model: msg.model ?? null, backend: msg.backend ?? null,
    });
    while (this.pending.size > PENDING_MAX) this.pending.delete(this.pending.keys().next().value);
  }

  /**
   * The frame an answer that starts now is about: the one whose age now best matches the age the
   * server reports (that age leaves out the upload and this message's trip, so the match is the
   * frame that is a little older than said, never much younger).
   */
  _frameFor(ageMs) {
    const now = performance.now();
    let best = null;
    let bestLag = Infinity;
    for (const f of this.frames) {
      const seen = now - f.grabbedAt;
      const lag = ageMs === null ? seen : seen - ageMs;
      if (lag < -250 || lag > (ageMs === null ? 60000 : 10000)) continue;
      if (Math.abs(lag) < bestLag) {
        best = f;
        bestLag = Math.abs(lag);
      }
    }
    return best;
  }

  _completed(msg) {
    const id = msg.answer_id;
    if (id === undefined || id === null || typeof msg.text !== 'string') return;
    const p = this.pending.get(id);
    this.pending.delete(id);
    const m = msg.metrics && typeof msg.metrics === 'object' ? msg.metrics : {};
    const old = this.entries.get(id);
    if (old) this._remove(old); // the same id again (a server that lost its count): the new one wins
    const e = {
      answer_id: id, text: msg.text, prompt: p ? p.prompt : this._prompt(), wall_ms: Date.now(),
      latency_ms: num(m.last_latency_ms), model: m.model ?? p?.model ?? null, backend: m.backend ?? p?.backend ?? null,
      source: 'page', thumb: null, thumbW: 0, thumbH: 0, noThumb: p && (p.frame || p.camera) ? null : 'none',
      camera: p ? p.cameraId : null,
    };
    this._add(e);
    this._enforce([e]);
    if (p && p.camera) {
      p.camera.then((t) => {
        if (this.entries.get(id) !== e) return; // gone meanwhile
        if (t) {
          this._setThumb(e, t.blob, t.w, t.h);
        } else {
          e.noThumb = 'camera';
          this._fillThumb(e);
        }
        this._enforce([e]);
      });
    } else if (p && p.frame) {
      p.frame.ready.then((blob) => {
        if (this.entries.get(id) !== e) return; // gone meanwhile
        if (blob) {
          this._setThumb(e, blob, p.frame.w, p.frame.h);
        } else {
          e.noThumb = 'none';
          this._fillThumb(e);
        }
        this._enforce([e]);
      });
    }
  }

  // ---- the list ------------------------------------------------------------------------------

  _reset() {
    for (const e of this.entries.values()) this._releaseUrl(e);
    this.entries.clear();
    this.pending.clear();
    this.frames = [];
    this.meta = { clearedThrough: null };
    this.list.replaceChildren();
  }

  async _load(sid, serverHistory) {
    const stored = await this.store.load(sid);
    if (this.sid !== sid) return;
    if (stored) {
      this.meta = { clearedThrough: stored.meta ? stored.meta.clearedThrough ?? null : null };
      for (const r of stored.records) {
        if (typeof r.text !== 'string') continue;
        const have = this.entries.get(r.answer_id);
        if (have && !(have.source === 'server' && have.text === r.text)) continue; // a live answer is newer
        if (have) this._remove(have); // the server's copy of it: what was kept here says more
        const e = {
          answer_id: r.answer_id, text: r.text, prompt: r.prompt ?? null, wall_ms: num(r.wall_ms),
          latency_ms: num(r.latency_ms), model: r.model ?? null, backend: r.backend ?? null,
          source: r.source === 'server' ? 'server' : 'page', thumb: null, thumbW: 0, thumbH: 0,
          noThumb: r.noThumb || null, camera: cameraOf(`camera:${r.camera}`),
        };
        if (r.thumb instanceof ArrayBuffer && r.thumb.byteLength) {
          e.thumb = new Blob([r.thumb], { type: 'image/jpeg' });
          e.thumbW = r.thumbW || THUMB_WIDTH;
          e.thumbH = r.thumbH || 0;
        } else if (!e.noThumb) {
          e.noThumb = e.source === 'server' ? 'server' : 'none';
        }
        this._add(e, false);
      }
    }
    this._mergeServer(serverHistory);
    this._place();
    this._renderAll();
    this.store.prune(sid);
  }

  /** The server's history: fill in what this page lacks; an answer it never saw comes without picture. */
  _mergeServer(list) {
    if (!Array.isArray(list)) return;
    const added = [];
    const cleared = this.meta.clearedThrough;
    for (const s of list) {
      if (!s || typeof s !== 'object' || typeof s.text !== 'string') continue;
      const id = s.answer_id;
      if (id === undefined || id === null) continue;
      if (cleared !== null && typeof id === 'number' && id <= cleared) continue;
      const mine = this.entries.get(id);
      if (mine && mine.text === s.text) {
        let changed = false;
        if (mine.latency_ms === null && num(s.latency_ms) !== null) { mine.latency_ms = num(s.latency_ms); changed = true; }
        if (mine.wall_ms === null && num(s.wall_ms) !== null) { mine.wall_ms = num(s.wall_ms); changed = true; }
        if (changed) added.push(mine);
        continue;
      }
      if (mine) this._remove(mine); // not the answer this page kept under that id: the server's is the truth
      const e = {
        answer_id: id, text: s.text, prompt: null, wall_ms: num(s.wall_ms), latency_ms: num(s.latency_ms),
        model: s.model ?? null, backend: s.backend ?? null, source: 'server', thumb: null, thumbW: 0, thumbH: 0,
        noThumb: 'server', camera: null,
      };
      this._add(e, false);
      added.push(e);
    }
    if (added.length) {
      this._place();
      this._enforce(added);
      this._renderAll();
    }
  }

  /** Newest first (answer ids grow within a session). */
  _sorted() {
    return [...this.entries.values()].sort((a, b) => {
      const x = typeof a.answer_id === 'number' ? a.answer_id : -1;
      const y = typeof b.answer_id === 'number' ? b.answer_id : -1;
      return y - x || (b.wall_ms || 0) - (a.wall_ms || 0);
    });
  }

  _add(e, render = true) {
    e.hay = fold(`${e.prompt || ''}\n${e.text}`);
    this.entries.set(e.answer_id, e);
    this._build(e);
    if (render) {
      this._place();
      this._renderAll();
    }
  }

  _remove(e) {
    this._releaseUrl(e);
    if (e.el) e.el.remove();
    this.entries.delete(e.answer_id);
  }

  _setThumb(e, blob, w, hh) {
    e.thumb = blob;
    e.thumbW = w;
    e.thumbH = hh;
    e.noThumb = null;
    this._fillThumb(e);
  }

  /** Keep the bounds (LIMITS), then store what changed (changed: entries to write). */
  _enforce(changed = []) {
    const put = new Set(changed);
    const del = [];
    let thumbs = 0;
    let bytes = 0;
    this._sorted().forEach((e, i) => {
      if (e.thumb) {
        if (thumbs >= LIMITS.thumbs) {
          e.thumb = null;
          e.noThumb = 'evicted';
          this._fillThumb(e);
          put.add(e);
        } else {
          thumbs++;
        }
      }
      bytes += 2 * (e.text.length + (e.prompt ? e.prompt.length : 0)) + (e.thumb ? e.thumb.size : 0) + 200;
      if (i > 0 && (i >= LIMITS.entries || bytes > LIMITS.sessionBytes)) {
        this._remove(e);
        put.delete(e);
        del.push(e.answer_id);
      }
    });
    if (del.length) this._renderAll();
    this._save([...put], del);
  }

  /**
   * Store entries (as they are now) and delete answer ids. Writes are chained, so that they reach
   * IndexedDB in the order they were made (a thumbnail is read out before its write).
   */
  _save(entries, del) {
    if (!this.sid) return;
    const sid = this.sid;
    const meta = { ...this.meta };
    const snap = entries.filter((e) => this.entries.get(e.answer_id) === e).map((e) => ({
      sid, answer_id: e.answer_id, text: e.text, prompt: e.prompt, wall_ms: e.wall_ms, latency_ms: e.latency_ms,
      model: e.model, backend: e.backend, source: e.source, thumb: e.thumb, thumbW: e.thumbW, thumbH: e.thumbH,
      noThumb: e.noThumb, camera: e.camera,
    }));
    if (!snap.length && !del.length) return;
    this.saving = (this.saving || Promise.resolve()).then(async () => {
      for (const r of snap) {
        try { r.thumb = r.thumb ? await r.thumb.arrayBuffer() : null; } catch { r.thumb = null; }
      }
      const ok = await this.store.write(sid, { put: snap, del, meta });
      if (!ok) this._renderNote();
    });
  }

  // ---- rendering -----------------------------------------------------------------------------

  /** The <li> of an entry: a summary line (thumbnail, time, latency, prompt, first line) and the whole answer. */
  _build(e) {
    const open = e.el ? e.el.querySelector('details').open : false;
    const thumb = h('span', { class: 'hist-thumb' });
    const meta = h('span', { class: 'hist-meta' });
    if (e.wall_ms) meta.append(h('time', { dateTime: isoTime(e.wall_ms), text: fmtTime(e.wall_ms) }));
    if (e.latency_ms !== null) meta.append(h('span', { class: 'hist-lat', text: fmtMs(e.latency_ms) }));
    if (e.model) meta.append(h('span', { class: 'hist-model', text: e.model }));
    meta.append(h('span', { class: 'hist-id', text: `#${e.answer_id}` }));
    const promptLine = e.prompt !== null
      ? h('span', { class: 'hist-prompt', title: e.prompt }, h('span', { class: 'hist-label', text: 'Prompt ' }), (e.prompt.split('\n').find((l) => l.trim()) || e.prompt))
      : h('span', { class: 'hist-prompt hist-unknown', text: 'Prompt not known' });
    const preview = h('span', { class: 'hist-preview' });
    const summary = h('summary', {}, thumb, h('span', { class: 'hist-head' }, meta, promptLine, preview));
    const figure = h('figure', { class: 'hist-figure' });
    const promptFull = h('p', { class: 'hist-prompt-full' }, h('span', { class: 'hist-label', text: 'Prompt' }),
      h('span', { class: e.prompt !== null ? 'hist-prompt-text' : 'hist-prompt-text hist-unknown', text: e.prompt ?? NO_PROMPT }));
    const text = h('div', { class: 'hist-text md-body' });
    const body = h('div', { class: 'hist-body' }, figure, h('div', { class: 'hist-words' }, promptFull, text));
    const details = h('details', { class: 'hist-item', open }, summary, body);
    const li = h('li', { dataset: { answerId: String(e.answer_id), source: e.source } }, details);
    if (e.el) e.el.replaceWith(li);
    e.el = li;
    e.parts = { thumb, figure, preview, text };
    this._fillThumb(e);
    this._fillBody(e);
    this._match(e);
  }

  /**
   * Let go of an entry's thumbnail URL: its images stop loading first (an image still loading from
   * a revoked URL fails loudly), and the URL is revoked a moment later.
   */
  _releaseUrl(e) {
    if (!e.url) return;
    const url = e.url;
    e.url = null;
    if (e.el) for (const img of e.el.querySelectorAll('img')) if (img.getAttribute('src') === url) img.removeAttribute('src');
    setTimeout(() => URL.revokeObjectURL(url), 2000);
  }

  _fillThumb(e) {
    if (!e.parts) return;
    const { thumb, figure } = e.parts;
    if (e.url && !e.thumb) this._releaseUrl(e);
    if (e.thumb) {
      if (!e.url) e.url = URL.createObjectURL(e.thumb);
      const size = e.thumbH ? { width: e.thumbW, height: e.thumbH } : {};
      thumb.dataset.state = 'picture';
      thumb.replaceChildren(h('img', { src: e.url, alt: '', decoding: 'async', ...size }));
      figure.replaceChildren(h('img', { src: e.url, alt: `The frame answer ${e.answer_id} is about`, decoding: 'async', ...size }),
        h('figcaption', { class: 'muted small', text: e.camera ? `The frame of camera ${e.camera} (thumbnail)` : 'The frame sent (thumbnail)' }));
      thumb.title = '';
    } else {
      const why = NO_PICTURE[e.noThumb] || NO_PICTURE.none;
      thumb.dataset.state = 'none';
      thumb.replaceChildren(h('span', { text: 'no picture' }));
      thumb.title = why;
      figure.replaceChildren(h('figcaption', { class: 'hist-nopic muted small', text: why }));
    }
    if (e.el) e.el.dataset.thumb = e.thumb ? 'true' : 'false';
  }

  _fillBody(e) {
    if (!e.parts) return;
    const { preview, text } = e.parts;
    const plain = this.markdown ? markdownToText(e.text) : e.text;
    preview.textContent = plain.split('\n').find((l) => l.trim()) || '(empty answer)';
    text.dataset.mode = this.markdown ? 'markdown' : 'plain';
    text.replaceChildren(this.markdown ? renderMarkdown(e.text) : renderPlain(e.text));
  }

  /** Put the entries' <li>s in order, newest first, moving only those out of place. */
  _place() {
    const sorted = this._sorted();
    let at = this.list.firstElementChild;
    for (const e of sorted) {
      if (e.el === at) {
        at = at.nextElementSibling;
      } else {
        this.list.insertBefore(e.el, at);
      }
    }
  }

  _match(e) {
    const hit = this.terms.every((t) => e.hay.includes(t));
    if (e.el) e.el.hidden = !hit;
    return hit;
  }

  setQuery(q) {
    this.query = q;
    this.terms = searchTerms(q);
    this._renderAll();
  }

  /** The entries that match the search, newest first. */
  shown() {
    return this._sorted().filter((e) => this.terms.every((t) => e.hay.includes(t)));
  }

  _renderAll() {
    const total = this.entries.size;
    let shown = 0;
    for (const e of this.entries.values()) if (this._match(e)) shown++;
    this.count.textContent = String(total);
    this.box.dataset.count = String(total);
    this.empty.hidden = total > 0;
    const q = this.query.trim();
    let status = '';
    if (q && total) {
      status = shown ? `${shown} of ${total} answer${total === 1 ? '' : 's'} match “${q}”; downloads take these.`
        : `No answer matches “${q}”.`;
    }
    if (this.status.textContent !== status) this.status.textContent = status;
    for (const b of this.exportBtns) b.disabled = shown === 0;
    this.clearBtn.disabled = total === 0;
    this._renderNote();
  }

  _renderNote() {
    const text = this.store.ok
      ? `Kept in this browser for this session: the last ${LIMITS.entries} answers, pictures for the last ${LIMITS.thumbs}. Pictures never leave this browser.`
      : 'Not kept after a reload: this browser does not let the page store data.';
    if (this.note.textContent !== text) this.note.textContent = text;
  }

  // ---- clear ---------------------------------------------------------------------------------

  _clearClicked() {
    const btn = this.clearBtn;
    const label = btn.querySelector('.btn-label') || btn;
    if (!this.clearArmed) {
      label.textContent = 'Clear? Press again';
      btn.dataset.armed = 'true';
      this.status.textContent = 'Press Clear again to delete this session\'s history from this browser.';
      this.clearArmed = setTimeout(() => this._disarm(), CLEAR_CONFIRM_MS);
      return;
    }
    this._disarm();
    const ids = [...this.entries.keys()].filter((k) => typeof k === 'number');
    const top = ids.length ? Math.max(...ids) : null;
    if (top !== null) this.meta.clearedThrough = Math.max(top, this.meta.clearedThrough ?? top);
    const del = [...this.entries.keys()];
    for (const e of [...this.entries.values()]) this._remove(e);
    this._renderAll();
    this.status.textContent = 'History cleared from this browser.';
    this._save([], del);
    this.search.focus();
  }

  _disarm() {
    clearTimeout(this.clearArmed);
    this.clearArmed = null;
    const btn = this.clearBtn;
    (btn.querySelector('.btn-label') || btn).textContent = 'Clear';
    btn.dataset.armed = 'false';
  }

  // ---- downloads -----------------------------------------------------------------------------

  /** Download the entries shown (all of them, or those matching the search), oldest first. */
  async download(kind) {
    const entries = this.shown().reverse();
    if (!entries.length) return;
    const now = Date.now();
    const base = `livevlm-history-${(this.sid || 'session').slice(0, 8)}-${stamp(now)}`;
    let body;
    let type;
    let ext;
    if (kind === 'json') {
      body = await this.toJson(entries, now);
      type = 'application/json';
      ext = 'json';
    } else if (kind === 'csv') {
      body = this.toCsv(entries);
      type = 'text/csv;charset=utf-8';
      ext = 'csv';
    } else {
      body = this.toMarkdown(entries, now);
      type = 'text/markdown;charset=utf-8';
      ext = 'md';
    }
    const url = URL.createObjectURL(new Blob([body], { type }));
    const a = h('a', { href: url, download: `${base}.${ext}`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    this.status.textContent = `Downloaded ${entries.length} answer${entries.length === 1 ? '' : 's'} as ${ext === 'md' ? 'Markdown' : ext.toUpperCase()}.`;
  }

  /** JSON: times in ISO 8601 (UTC); small thumbnails as data URLs. */
  async toJson(entries, now = Date.now()) {
    let budget = LIMITS.jsonThumbTotal;
    const out = [];
    for (const e of entries) {
      const item = {
        answer_id: e.answer_id, time: isoTime(e.wall_ms), prompt: e.prompt, text: e.text, latency_ms: e.latency_ms,
        model: e.model, backend: e.backend, source: e.source, camera: e.camera || null, thumbnail: null,
      };
      if (e.thumb && e.thumb.size <= LIMITS.jsonThumbBytes && e.thumb.size <= budget) {
        item.thumbnail = await blobToDataUrl(e.thumb);
        budget -= e.thumb.size;
      }
      if (!item.thumbnail) item.thumbnail_note = e.thumb ? 'left out: too large for this file' : NO_PICTURE[e.noThumb] || NO_PICTURE.none;
      out.push(item);
    }
    return `${JSON.stringify({
      format: 'livevlm-history', version: 1, session_id: this.sid, exported_at: isoTime(now), count: out.length,
      entries: out,
    }, null, 2)}\n`;
  }

  /** CSV (RFC 4180, CRLF, UTF-8 with a BOM for spreadsheets); no thumbnails. */
  toCsv(entries) {
    const rows = [['answer_id', 'time', 'prompt', 'text', 'latency_ms', 'model', 'backend', 'source'].join(',')];
    for (const e of entries) {
      rows.push([csvField(e.answer_id), csvField(isoTime(e.wall_ms)), csvText(e.prompt), csvText(e.text),
        csvField(e.latency_ms), csvText(e.model), csvText(e.backend), csvField(e.source)].join(','));
    }
    return `\uFEFF${rows.join('\r\n')}\r\n`;
  }

  /** Markdown: each answer under its own heading; prompt and answer quoted and escaped to show as written. */
  toMarkdown(entries, now = Date.now()) {
    const sid = this.sid || '';
    const out = ['# livevlm history', '',
      `Session \`${sid.replace(/`/g, '')}\` · exported ${isoTime(now)} · ${entries.length} answer${entries.length === 1 ? '' : 's'}, oldest first.`,
      'Pictures are not in this file: each answer names its thumbnail by answer id (the JSON download carries them).', ''];
    for (const e of entries) {
      out.push(`## Answer ${mdEscapeLine(String(e.answer_id))}`, '');
      const facts = [];
      if (e.wall_ms) facts.push(isoTime(e.wall_ms));
      if (e.latency_ms !== null) facts.push(`latency ${Math.round(e.latency_ms)} ms`);
      if (e.model) facts.push(`model ${mdEscapeLine(e.model)}${e.backend ? ` (backend ${mdEscapeLine(e.backend)})` : ''}`);
      facts.push(e.thumb ? `picture: thumbnail of answer ${mdEscapeLine(String(e.answer_id))}` : mdEscapeLine(NO_PICTURE[e.noThumb] || NO_PICTURE.none));
      out.push(facts.join(' · '), '');
      out.push('**Prompt**', '', e.prompt !== null ? mdQuote(e.prompt) : `*${mdEscapeLine(NO_PROMPT)}*`, '');
      out.push('**Answer**', '', e.text ? mdQuote(e.text) : '*(empty answer)*', '');
    }
    return `${out.join('\n')}`;
  }
}
