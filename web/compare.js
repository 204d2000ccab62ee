// compare.js - Compare: the same camera frame sent to two models (or to one model with two
// prompts), both answers side by side with their latency, TTFT and tokens, and a running summary.
//
// Page-side only. "A" is the page's own session; "B" is a second session on its own WebSocket
// (ws.js with its own credential keys, so it resumes after a reconnect or a reload like A). B
// follows A's interval, max tokens and temperature; its model (and, when given, its prompt) are
// its own. Frames: B only ever gets the frames A gets. When A sends one while B holds a credit,
// the very same bytes go to B behind B's credit id in the LVF1 header (docs/protocol.md,
// "Frames"). A is never held back: the server asks each session on a fixed cadence, so once both
// run, B's credit is there whenever A's comes; a B slower than the interval gets the next frame
// A sends after it asks (at most an interval later), and a stuck B never stalls the page. Each
// answer is matched to its frame by the order the frames went out (one in flight and one waiting
// per session).
//
// While A watches an IP camera (A's source "camera:<id>", docs/protocol.md "Cameras") A sends no
// frames, so there are none to copy: B's source follows A's, B watches the same camera, and the
// server hands both sessions the camera's samples. Answers are then matched by the sample they
// were about (answer_start.camera_frame), not by order: a pair is one sample, and a session that
// was given a later sample than a pair's will not answer that pair any more. With the same model
// and prompt on both sides the server answers both with one inference (coalescing); normally B
// differs in model or prompt.
//
// Hooks in app.js: mirror(buf) (a frame A sent) and follow(settings) (A's settings applied).
// Everything else is listened for on A's Connection.

import { $, h, prefs, tabStore, fmtMs, fmtInt, fmtBytes, num } from './util.js';
import { hydrateIcons } from './icons.js';
import { Connection } from './ws.js';
import { renderMarkdown, renderPlain } from './markdown.js';
import { cameraOf } from './cameras.js';

const KEYS = { id: 'livevlm.compare.session_id', secret: 'livevlm.compare.resume_secret' };
const ON_KEY = 'livevlm.compare.on'; // per tab, like the sessions: a reload keeps Compare on
const FOR_KEY = 'livevlm.compare.for'; // the page session B was opened next to
const MODEL_PREF = 'compareModel';
const PROMPT_PREF = 'comparePrompt';
const FOLLOWED = ['max_tokens', 'temperature', 'interval_ms'];
const HEADER_BYTES = 16;
const PAIRS_KEPT = 40;
const FIFO_MAX = 3; // frames per session between sent and answered: one in flight, one waiting
const TERMINAL = new Set(['done', 'failed', 'dropped', 'lost', 'cancelled']);
// Errors that drop the frame they answer without an answer having started.
const FRAME_ERRORS = new Set(['no_backend', 'not_started', 'bad_frame', 'frame_too_large']);
const SIDES = ['a', 'b'];

function modelLabel(m) {
  return m.name && m.name !== m.id ? `${m.name} (${m.id})` : m.id;
}

export class Compare {
  /**
   * deps: conn (A's Connection), wsUrl, settings() → A's settings, models() → [{id, name,
   * backend}], config() → /api/v1/config, running() → the camera runs.
   */
  constructor(deps) {
    this.deps = deps;
    this.conn = deps.conn;
    this.on = false;
    this.connB = null;
    this.b = this._freshB();
    this.bState = 'closed';
    this.aId = null;
    this.aStarted = false;
    this.creditB = null; // B's credit waiting for the next frame A sends
    this.modelPref = prefs.get(MODEL_PREF, '') || ''; // the model B chosen last time, if still served
    this.modelB = '';
    this.modelChosen = false; // picked on this page: kept even when not listed
    this.promptB = prefs.get(PROMPT_PREF, '') || '';
    this.message = null; // {text, kind}: a refusal or a problem with B, shown in the card
    this.renderQueued = false;
    this.modelsKey = '';
    this.camera = null; // the IP camera A watches (then B watches it too), or null: B gets A's frames
    this._resetPairs();
    this._build();
    this._listenA();
    window.addEventListener('pagehide', () => { if (this.connB) this.connB.stop(); });
    window.addEventListener('pageshow', (ev) => { if (ev.persisted && this.on) this._openB(); });
    setInterval(() => { if (this.on) { this._sync(); this._render(); } }, 1000);
  }

  _freshB() {
    return { id: null, started: false, startSent: false, stopSent: false, settings: null, hadSession: false, failedOpens: 0 };
  }

  _resetPairs() {
    this.seq = 0;
    this.pairs = new Map(); // n → {n, bytes, at, a: side|null, b: side|null} (n: a camera's sample seq, camera set)
    this.lastSeq = { a: -1, b: -1 }; // the newest camera sample each session started an answer about
    this.fifo = { a: [], b: [] }; // pair numbers sent to each session and not started yet
    this.live = { a: null, b: null }; // the answer being written: {n, id, text, model}
    this.queue = { a: null, b: null };
    this.shown = null; // the pair on screen: the newest one both sessions are done with
    this.stats = { n: 0, latA: 0, latB: 0, ttftA: 0, ttftB: 0, ttftN: 0, fasterA: 0, fasterB: 0 };
  }

  // ---- the card ------------------------------------------------------------------------------

  _build() {
    const root = $('compareCard');
    this.root = root;
    const metric = (side, key, label, title) => h('div', { class: 'metric', title },
      h('dt', { text: label }), h('dd', { id: `compare${key}${side.toUpperCase()}`, text: '—' }));
    const pane = (side) => h('section', { class: 'compare-pane', dataset: { side }, 'aria-label': `Model ${side.toUpperCase()}` },
      h('header', { class: 'pane-head', id: `compareHead${side.toUpperCase()}` },
        h('span', { class: 'side-badge', text: side.toUpperCase(), title: `Model ${side.toUpperCase()}` }),
        h('span', { class: 'pane-model', id: `compareModel${side.toUpperCase()}Name`, text: '—' }),
        h('span', { class: 'pane-faster', hidden: true })),
      h('div', { class: 'pane-text md-body', tabindex: '0', role: 'region', 'aria-label': `Answer of model ${side.toUpperCase()}`,
        dataset: { empty: 'true' } }),
      h('dl', { class: 'pane-metrics metrics', 'aria-label': `Metrics of model ${side.toUpperCase()}'s answer` },
        metric(side, 'Latency', 'Latency', 'From the moment the server received the frame until the answer was complete'),
        metric(side, 'Ttft', 'TTFT', 'Time to first token: request sent to the model → its first word'),
        metric(side, 'Tokens', 'Tokens', 'Tokens (about words) in the answer')),
      h('p', { class: 'pane-next', 'aria-hidden': 'true' }));
    const stat = (id, label, title) => h('div', { class: 'metric', title }, h('dt', { text: label }), h('dd', { id, text: '—' }));

    this.toggle = h('input', { type: 'checkbox', id: 'compareToggle', 'aria-describedby': 'compareIntro' });
    this.modelSel = h('select', { id: 'compareModel', 'aria-describedby': 'compareModelHint' });
    this.promptEl = h('textarea', { id: 'comparePrompt', rows: '2', spellcheck: 'true', placeholder: 'Same prompt as A',
      'aria-describedby': 'comparePromptHelp' });
    this.statusEl = h('p', { class: 'compare-status', id: 'compareStatus', role: 'status', 'aria-live': 'polite' });
    root.replaceChildren(
      h('header', { class: 'card-head' },
        h('h2', { id: 'compareTitle' }, h('span', { class: 'head-icon', dataset: { icon: 'sliders' } }), 'Compare'),
        h('label', { class: 'switch compare-switch' }, this.toggle, h('span', { class: 'switch-track', 'aria-hidden': 'true' }),
          h('span', { text: 'Two models side by side' }))),
      h('p', { class: 'compare-intro muted', id: 'compareIntro',
        text: 'Sends each camera frame to a second model too (or to the same model with another prompt), and shows both answers about the same picture with their latencies.' }),
      this.statusEl,
      h('div', { class: 'compare-body', id: 'compareBody', hidden: true },
        h('div', { class: 'compare-setup' },
          h('div', { class: 'field' },
            h('label', { for: 'compareModel', text: 'Model B' }),
            this.modelSel,
            h('p', { class: 'field-msg', id: 'compareModelHint' })),
          h('div', { class: 'field' },
            h('label', { for: 'comparePrompt', text: 'Prompt B (optional)' }),
            this.promptEl,
            h('p', { class: 'muted small', id: 'comparePromptHelp', text: 'Empty: the same prompt as A. Ctrl+Enter or leave the field to apply.' }))),
        h('dl', { class: 'compare-summary metrics', 'aria-label': 'Summary of the answers compared' },
          stat('compareCount', 'Compared', 'Frames both models answered'),
          stat('compareMeanA', 'Mean latency A', 'Mean latency of model A over the frames compared'),
          stat('compareMeanB', 'Mean latency B', 'Mean latency of model B over the frames compared'),
          stat('compareFaster', 'Faster', 'Which model answered first more often, over the frames compared')),
        h('p', { class: 'compare-frame', id: 'compareFrame' }),
        h('div', { class: 'compare-panes' }, pane('a'), pane('b'))));
    hydrateIcons(root);
    this.bodyEl = $('compareBody');
    this.frameEl = $('compareFrame');
    this.panes = {};
    for (const side of SIDES) {
      const el = root.querySelector(`.compare-pane[data-side="${side}"]`);
      const S = side.toUpperCase();
      this.panes[side] = {
        el, text: el.querySelector('.pane-text'), next: el.querySelector('.pane-next'), faster: el.querySelector('.pane-faster'),
        model: $(`compareModel${S}Name`), lat: $(`compareLatency${S}`), ttft: $(`compareTtft${S}`), tokens: $(`compareTokens${S}`),
      };
    }
    this.promptEl.value = this.promptB;
    this.toggle.addEventListener('change', () => this.setOn(this.toggle.checked));
    // The way in from the Model panel: the card may be below the fold on a wide screen.
    this.openBtn = document.getElementById('compareOpen');
    if (this.openBtn) {
      this.openBtn.addEventListener('click', () => {
        if (!this.on) this.setOn(true);
        const still = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
        this.root.scrollIntoView({ behavior: still ? 'auto' : 'smooth', block: 'start' });
        (this.on ? this.modelSel : this.toggle).focus({ preventScroll: true });
      });
    }
    this.modelSel.addEventListener('focus', () => this._fillModels());
    this.modelSel.addEventListener('change', () => {
      this.modelB = this.modelSel.value;
      this.modelChosen = true;
      this.modelPref = this.modelB;
      prefs.set(MODEL_PREF, this.modelB || null);
      this._choiceChanged();
    });
    const applyPrompt = () => {
      const v = this.promptEl.value.trim() ? this.promptEl.value : '';
      if (v === this.promptB) return;
      this.promptB = v;
      prefs.set(PROMPT_PREF, v || null);
      this._choiceChanged();
    };
    this.promptEl.addEventListener('change', applyPrompt);
    this.promptEl.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        applyPrompt();
      }
    });
    this._render();
  }

  /** Fill the model B list; until one is picked here, B gets the default (which may change). */
  _fillModels() {
    const seen = new Set();
    const list = (this.deps.models() || []).filter((m) => m && typeof m.id === 'string' && !seen.has(m.id) && seen.add(m.id));
    const a = this._modelA();
    const key = JSON.stringify([list.map((m) => m.id), this.modelB, a]);
    if (key === this.modelsKey) return;
    if (!this.modelChosen) {
      // The model chosen last time when it is served, else another model than A's, else A's own
      // (then B should get its own prompt).
      const other = list.find((m) => m.id !== a);
      const pick = list.some((m) => m.id === this.modelPref) ? this.modelPref : other ? other.id : a || (list[0] ? list[0].id : '');
      if (pick !== this.modelB) {
        this.modelB = pick;
        if (this.on) {
          this._resetStats();
          this._reconcile();
        }
      }
    }
    this.modelsKey = JSON.stringify([list.map((m) => m.id), this.modelB, a]);
    const opts = list.map((m) => new Option(m.id === a ? `${modelLabel(m)} — same as A` : modelLabel(m), m.id));
    if (this.modelB && !list.some((m) => m.id === this.modelB)) opts.unshift(new Option(`${this.modelB} (not listed)`, this.modelB));
    if (!opts.length) opts.push(new Option('Automatic (first vision model)', ''));
    this.modelSel.replaceChildren(...opts);
    this.modelSel.value = this.modelB;
  }

  _modelA() {
    const s = this.deps.settings() || {};
    return typeof s.model === 'string' ? s.model : '';
  }

  // ---- on and off ----------------------------------------------------------------------------

  /** Turn Compare on or off (the switch, or a restore after a reload). */
  setOn(on) {
    on = !!on;
    if (on === this.on) {
      this.toggle.checked = on;
      return;
    }
    if (on) {
      const limits = (this.deps.config() || {}).limits || {};
      const cap = Number(limits.max_sessions_per_ip);
      if (Number.isFinite(cap) && cap < 2) {
        this.toggle.checked = false;
        this._say(`This server allows only ${cap} session per address, and Compare needs a second one. ` +
          'The operator can raise --max-sessions-per-ip.', 'error');
        return;
      }
      this.on = true;
      this.message = null;
      tabStore.set(ON_KEY, '1');
      this._resetPairs();
      this.modelsKey = '';
      this._fillModels();
      this._openB();
    } else {
      this.on = false;
      tabStore.set(ON_KEY, null);
      this._closeB(true);
    }
    this.toggle.checked = this.on;
    this._render();
  }

  _openB() {
    if (!this.connB) {
      this.connB = new Connection(this.deps.wsUrl, { keys: KEYS, helloSettings: () => this._desired() });
      this.connB.addEventListener('state', (ev) => {
        this.bState = ev.detail.state;
        this._render();
      });
      this.connB.addEventListener('session', (ev) => this._onSessionB(ev.detail));
      this.connB.addEventListener('message', (ev) => this._onMessageB(ev.detail));
      this.connB.addEventListener('socketclose', (ev) => this._onCloseB(ev.detail));
    }
    this.b = this._freshB();
    this.connB.start();
  }

  /** Close B's socket; forget: B's session is over for this page (Compare turned off). */
  _closeB(forget) {
    this.creditB = null;
    if (this.connB) this.connB.stop();
    this.b = this._freshB();
    this.bState = 'closed';
    this._lose('b');
    if (forget) {
      Connection.forget(KEYS);
      tabStore.set(FOR_KEY, null);
    }
  }

  /** B cannot have a session (refused): Compare goes off and the card says why. */
  _refuse(text) {
    this.on = false;
    tabStore.set(ON_KEY, null);
    this._closeB(true);
    this.toggle.checked = false;
    this._say(text, 'error');
  }

  _say(text, kind) {
    this.message = text ? { text, kind: kind || 'info' } : null;
    this._render();
  }

  /** Model B or prompt B changed: B takes it now (or opens again when its settings were refused). */
  _choiceChanged() {
    this.modelsKey = '';
    this._fillModels();
    this._resetStats();
    if (!this.on) return;
    if (this.message && this.message.kind === 'error') this.message = null;
    if (this.connB && this.connB.isOpen) this._reconcile();
    else if (!this.connB || !this.connB.want) this._openB();
    this._render();
  }

  _resetStats() {
    this.stats = { n: 0, latA: 0, latB: 0, ttftA: 0, ttftB: 0, ttftN: 0, fasterA: 0, fasterB: 0 };
    this.shown = null;
  }

  /** The settings B should have: A's pace and lengths, B's model, B's prompt (or A's). */
  _desired() {
    const a = this.deps.settings() || {};
    const s = { model: this.modelB || '', backend: '', stats_interval_ms: 0, debug: false };
    const prompt = this.promptB || a.prompt;
    if (typeof prompt === 'string' && prompt) s.prompt = prompt;
    for (const f of FOLLOWED) if (a[f] !== undefined) s[f] = a[f];
    // A's camera, or the page: B only gets frames A sends (a WebRTC video of A's is not copied).
    if (typeof a.source === 'string') s.source = cameraOf(a.source) ? a.source : 'page';
    return s;
  }

  /** Send B whatever differs from what it has. */
  _reconcile() {
    if (!this.connB || !this.connB.isOpen || !this.b.settings) return;
    const want = this._desired();
    const change = {};
    for (const [k, v] of Object.entries(want)) {
      if (JSON.stringify(this.b.settings[k]) !== JSON.stringify(v)) change[k] = v;
    }
    if (Object.keys(change).length) this.connB.send({ type: 'update_settings', settings: change });
  }

  // ---- hooks (app.js) ------------------------------------------------------------------------

  /** A's settings were applied: B follows its pace, lengths, source and (without its own) prompt. */
  follow(settings) {
    const a = settings || {};
    const camera = typeof a.source === 'string' ? cameraOf(a.source) : this.camera;
    if (camera !== this.camera) {
      // Frames copied from the page and a camera's samples are not the same pictures: start over.
      this.camera = camera;
      this.creditB = null;
      this._resetPairs();
    }
    if (!this.on) return;
    if (this.lastA && (this.lastA.model !== a.model || (!this.promptB && this.lastA.prompt !== a.prompt))) this._resetStats();
    this.lastA = { model: a.model, prompt: a.prompt };
    this._fillModels();
    this._reconcile();
    this._render();
  }

  /** A sent a frame (buf: LVF1 header + JPEG): the same bytes go to B behind B's credit. */
  mirror(buf) {
    if (!this.on || this.camera || !(buf instanceof ArrayBuffer) || buf.byteLength <= HEADER_BYTES) return;
    let toB = false;
    if (this.creditB !== null && this._pairing()) {
      const copy = buf.slice(0);
      new DataView(copy).setUint32(4, this.creditB >>> 0, false);
      toB = this.connB.sendBinary(copy);
      if (toB) this.creditB = null;
    }
    const n = ++this.seq;
    this.pairs.set(n, { n, bytes: buf.byteLength - HEADER_BYTES, at: Date.now(), a: { state: 'sent' }, b: toB ? { state: 'sent' } : null });
    this._push('a', n);
    if (toB) this._push('b', n);
    for (const k of this.pairs.keys()) {
      if (this.pairs.size <= PAIRS_KEPT) break;
      if (k !== this.shown) this.pairs.delete(k);
    }
    this._queueRender();
  }

  /**
   * The pair of a camera's sample seq that side starts an answer about (made when the first of the
   * two starts it). Each session is handed the camera's samples in order, so the pairs older than
   * seq that side had not started are dropped for it, and a pair made now is dropped at once for
   * the other side when that one already went past it. null when side already answered that
   * sample (a camera hands a session the same sample again when no newer one came): that answer
   * is shown as it is written but not paired twice.
   */
  _cameraPair(side, seq) {
    const other = side === 'a' ? 'b' : 'a';
    let p = this.pairs.get(seq);
    if (p && p[side] && TERMINAL.has(p[side].state)) return null;
    if (!p) {
      p = { n: seq, bytes: null, camera: this.camera, at: Date.now(), a: { state: 'sent' }, b: { state: 'sent' } };
      if (this.lastSeq[other] > seq) p[other] = { state: 'dropped', why: 'this model was given a later camera frame' };
      this.pairs.set(seq, p);
      for (const k of this.pairs.keys()) {
        if (this.pairs.size <= PAIRS_KEPT) break;
        if (k !== this.shown && k !== seq) this.pairs.delete(k);
      }
    }
    for (const [k, q] of this.pairs) {
      if (k < seq && q[side] && q[side].state === 'sent') this._settle(side, k, { state: 'dropped', why: 'this model was given a later camera frame' });
    }
    this.lastSeq[side] = Math.max(this.lastSeq[side], seq);
    return seq;
  }

  _push(side, n) {
    const q = this.fifo[side];
    q.push(n);
    // More than a session can hold means an answer was missed: the oldest will never come.
    while (q.length > FIFO_MAX) this._settle(side, q.shift(), { state: 'lost' });
  }

  _pairing() {
    return this.on && !!this.connB && this.connB.isOpen && this.b.started;
  }

  // ---- A's session (listened to on its Connection) -------------------------------------------

  _listenA() {
    this.conn.addEventListener('session', (ev) => {
      const msg = ev.detail || {};
      this.aId = typeof msg.session_id === 'string' ? msg.session_id : null;
      this.aStarted = !!msg.started;
      const bound = tabStore.get(FOR_KEY);
      if (this.connB && this.connB.isOpen) {
        if (this.aId) tabStore.set(FOR_KEY, this.aId);
      } else if (bound && bound !== this.aId) {
        // B's stored session went with another page session (a duplicated tab, a lost session).
        Connection.forget(KEYS);
        tabStore.set(FOR_KEY, null);
      }
      if (!this.on && tabStore.get(ON_KEY) === '1') this.setOn(true); // a reload: Compare was on
      else if (this.on && (!this.connB || !this.connB.want)) this._openB();
      this._sync();
    });
    this.conn.addEventListener('state', (ev) => {
      // Signed out or the sign-in was lost: B goes with A (and comes back with it).
      if (ev.detail.state === 'closed' && this.connB && this.connB.want) {
        this._closeB(false);
        this._render();
      }
    });
    this.conn.addEventListener('socketclose', () => {
      this.aStarted = false;
      this._lose('a');
      this._sync();
      this._queueRender();
    });
    this.conn.addEventListener('message', (ev) => {
      const msg = ev.detail;
      if (msg.type === 'started' || msg.type === 'stopped') {
        this.aStarted = msg.type === 'started';
        this._sync();
      }
      if (this.on) this._answerEvent('a', msg);
    });
  }

  // ---- B's session ---------------------------------------------------------------------------

  _onSessionB(msg) {
    this.b.id = typeof msg.session_id === 'string' ? msg.session_id : null;
    this.b.started = !!msg.started;
    this.b.startSent = false;
    this.b.stopSent = false;
    this.b.settings = msg.settings && typeof msg.settings === 'object' ? msg.settings : {};
    this.b.hadSession = true;
    this.b.failedOpens = 0;
    if (this.aId) tabStore.set(FOR_KEY, this.aId);
    if (this.message && this.message.kind !== 'error') this.message = null;
    this._reconcile();
    this._sync();
    this._render();
  }

  _onMessageB(msg) {
    switch (msg.type) {
      case 'started':
        this.b.started = true;
        this.b.startSent = false;
        this._sync();
        break;
      case 'stopped':
        this.b.started = false;
        this.b.stopSent = false;
        this.creditB = null;
        this._sync();
        break;
      case 'settings_updated':
        this.b.settings = msg.settings && typeof msg.settings === 'object' ? msg.settings : this.b.settings;
        if (this.message && /setting/i.test(this.message.text)) this.message = null;
        break;
      case 'credit':
        this.creditB = Number(msg.credit_id) >>> 0;
        break;
      case 'error':
        this._onErrorB(msg);
        break;
      default:
        break;
    }
    this._answerEvent('b', msg);
    this._queueRender();
  }

  _onErrorB(msg) {
    const code = typeof msg.code === 'string' ? msg.code : '';
    const detail = typeof msg.message === 'string' ? msg.message : '';
    if (code === 'too_many_sessions') {
      const cap = Number(((this.deps.config() || {}).limits || {}).max_sessions_per_ip);
      this._refuse('The server refused a second session: this address already has as many livevlm sessions open as it allows' +
        `${Number.isFinite(cap) ? ` (${cap})` : ''}. Close another livevlm tab or window, then turn Compare on again.`);
      return;
    }
    if (code === 'invalid_setting') {
      const what = msg.field === 'model' ? `model ${this.modelB || '(automatic)'}` : msg.field === 'prompt' ? 'prompt B' : `B's ${msg.field || 'setting'}`;
      if (!this.b.hadSession || !this.connB.isOpen) {
        // hello was refused: nothing to resume, B stays closed until the choice changes.
        this.connB.stop();
        this.bState = 'closed';
        this._say(`The server did not accept ${what} for B${detail ? ` (${detail})` : ''}. Pick another model or prompt for B.`, 'error');
      } else {
        this._say(`The server did not accept ${what} for B${detail ? ` (${detail})` : ''}; B keeps its previous settings.`, 'error');
      }
    }
  }

  _onCloseB(info) {
    this.b.started = false;
    this.b.startSent = false;
    this.b.stopSent = false;
    this.creditB = null;
    this._lose('b');
    if (!info.opened && this.on) {
      this.b.failedOpens++;
      if (this.b.failedOpens >= 3 && this.conn.isOpen) {
        this._say('The server does not let this page open a second connection (it may limit connections per address). ' +
          'Compare keeps trying; close other livevlm tabs to make room.', 'error');
      }
    } else if (info.code === 1008 && /session/i.test(info.reason || '') && this.on) {
      this._refuse('The server refused a second session from this address. Close another livevlm tab or window, then turn Compare on again.');
    }
    this._render();
  }

  /** Start B while A runs, stop it when A does. */
  _sync() {
    const c = this.connB;
    if (!this.on || !c || !c.isOpen) return;
    const want = this.aStarted && this.deps.running();
    if (want && !this.b.started && !this.b.startSent) {
      if (c.send({ type: 'start' })) {
        this.b.startSent = true;
        this.b.stopSent = false;
      }
    } else if (!want && (this.b.started || this.b.startSent) && !this.b.stopSent) {
      if (c.send({ type: 'stop' })) {
        this.b.stopSent = true;
        this.b.startSent = false;
      }
    }
  }

  // ---- answers, matched to their frames ------------------------------------------------------

  _answerEvent(side, msg) {
    switch (msg.type) {
      case 'queued':
        this.queue[side] = Math.max(1, Number(msg.position) || 1);
        break;
      case 'frame_dropped':
        this.queue[side] = null;
        if (this.fifo[side].length) this._settle(side, this.fifo[side].shift(), { state: 'dropped', why: 'the frame got too old while it waited, and was skipped' });
        break;
      case 'answer_start': {
        this.queue[side] = null;
        const seq = msg.camera_frame;
        let n = null;
        if (this.camera) n = Number.isInteger(seq) && seq >= 0 ? this._cameraPair(side, seq) : null;
        else if (this.fifo[side].length) n = this.fifo[side].shift();
        this.live[side] = { n, id: msg.answer_id ?? null, text: '', model: typeof msg.model === 'string' ? msg.model : '' };
        const p = n !== null ? this.pairs.get(n) : null;
        if (p && p[side]) p[side] = { state: 'writing', model: this.live[side].model };
        break;
      }
      case 'delta': {
        const l = this.live[side];
        if (l && typeof msg.text === 'string' && (l.id === null || msg.answer_id === undefined || msg.answer_id === l.id)) l.text += msg.text;
        break;
      }
      case 'vlm_response': {
        const l = this.live[side];
        this.live[side] = null;
        const m = msg.metrics && typeof msg.metrics === 'object' ? msg.metrics : {};
        if (l && l.n !== null) {
          this._settle(side, l.n, { state: 'done', text: typeof msg.text === 'string' ? msg.text : l.text, metrics: m,
            model: m.model || l.model });
        }
        break;
      }
      case 'answer_cancelled': {
        const l = this.live[side];
        this.live[side] = null;
        if (l && l.n !== null) {
          // Its frame is sent again (settings changed, or the slot went to another user), unless a
          // newer frame waits: then that one is answered instead. A camera's sample waits for the
          // session's next answer_start (the same sample again, or a later one: _cameraPair).
          const p = this.pairs.get(l.n);
          if (this.camera) {
            if (p && p[side]) p[side] = { state: 'sent' };
          } else if (!this.fifo[side].length) this.fifo[side].unshift(l.n);
          else this._settle(side, l.n, { state: 'cancelled', why: 'the answer was cancelled' });
        }
        break;
      }
      case 'error': {
        const code = typeof msg.code === 'string' ? msg.code : '';
        const why = typeof msg.message === 'string' && msg.message ? msg.message : code;
        const l = this.live[side];
        if (l && (msg.answer_id !== undefined ? msg.answer_id === l.id : /^backend_/.test(code))) {
          this.live[side] = null;
          if (l.n !== null) this._settle(side, l.n, { state: 'failed', text: l.text, why });
        } else if (FRAME_ERRORS.has(code) || /^backend_/.test(code) || (code === 'rate_limited' && msg.dropped === undefined)) {
          // (rate_limited with `dropped` is about text messages; without it, a frame over --user-fpm)
          if (this.fifo[side].length) this._settle(side, this.fifo[side].shift(), { state: 'failed', why });
        }
        break;
      }
      default:
        return;
    }
    this._queueRender();
  }

  /** A socket went: what it had in flight or waiting will not be answered on this page. */
  _lose(side) {
    const l = this.live[side];
    this.live[side] = null;
    this.queue[side] = null;
    if (l && l.n !== null) this._settle(side, l.n, { state: 'lost' });
    for (const n of this.fifo[side].splice(0)) this._settle(side, n, { state: 'lost' });
  }

  _settle(side, n, result) {
    const p = this.pairs.get(n);
    if (!p || !p[side]) return;
    p[side] = result;
    const other = p[side === 'a' ? 'b' : 'a'];
    if (!other || !TERMINAL.has(other.state) || !TERMINAL.has(p.a.state)) return;
    if (p.a.state !== 'done' && p.b.state !== 'done') return;
    // Both sessions are done with this frame: it is the one on screen (unless a newer one is).
    if (p.a.state === 'done' && p.b.state === 'done') {
      const la = num(p.a.metrics.last_latency_ms);
      const lb = num(p.b.metrics.last_latency_ms);
      if (la !== null && lb !== null) {
        const s = this.stats;
        s.n++;
        s.latA += la;
        s.latB += lb;
        if (la < lb) s.fasterA++;
        else if (lb < la) s.fasterB++;
        const ta = num(p.a.metrics.ttft_ms);
        const tb = num(p.b.metrics.ttft_ms);
        if (ta !== null && tb !== null) {
          s.ttftA += ta;
          s.ttftB += tb;
          s.ttftN++;
        }
      }
    }
    if (this.shown === null || n > this.shown) this.shown = n;
  }

  // ---- drawing -------------------------------------------------------------------------------

  _queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this._render();
    });
  }

  _statusText() {
    if (this.message) return this.message;
    if (!this.on) return null;
    const c = this.connB;
    const short = this.b.id ? ` (session ${this.b.id.slice(0, 8)})` : '';
    if (!c || this.bState === 'closed') return { text: 'Session B is closed.', kind: 'info' };
    if (this.bState === 'connecting') return { text: 'Opening session B…', kind: 'info' };
    if (this.bState === 'reconnecting' || !c.isOpen) return { text: 'Session B lost its connection — reconnecting…', kind: 'warn' };
    if (!this.deps.running()) return { text: `Session B is ready${short}. Press Start: each frame goes to both models.`, kind: 'info' };
    if (!this.b.started) return { text: `Starting session B${short}…`, kind: 'info' };
    if (this.camera) return { text: `Both sessions watch camera ${this.camera}${short}.`, kind: 'info' };
    return { text: `Both sessions get the same frames${short}.`, kind: 'info' };
  }

  _render() {
    const st = this._statusText();
    this.statusEl.textContent = st ? st.text : '';
    this.statusEl.dataset.kind = st ? st.kind : '';
    this.statusEl.hidden = !st;
    this.root.dataset.on = this.on ? 'true' : 'false';
    this.bodyEl.hidden = !this.on;
    if (this.openBtn) this.openBtn.textContent = this.on ? 'Show the comparison' : 'Compare with a second model…';
    if (!this.on) return;
    this._fillModels();
    const hint = $('compareModelHint');
    hint.textContent = this.modelB && this.modelB === this._modelA() && !this.promptB
      ? 'Same model and prompt as A: pick another model, or give B its own prompt.' : '';

    const s = this.stats;
    $('compareCount').textContent = s.n ? fmtInt(s.n) : '—';
    $('compareMeanA').textContent = s.n ? fmtMs(s.latA / s.n) : '—';
    $('compareMeanB').textContent = s.n ? fmtMs(s.latB / s.n) : '—';
    const faster = $('compareFaster');
    if (!s.n) faster.textContent = '—';
    else if (s.fasterA === s.fasterB) faster.textContent = 'even';
    else faster.textContent = `${s.fasterA > s.fasterB ? 'A' : 'B'} (${Math.max(s.fasterA, s.fasterB)} of ${s.n})`;
    faster.parentElement.title = s.n
      ? `A answered first ${s.fasterA} times, B ${s.fasterB} times, over ${s.n} frames${s.ttftN ? `; mean TTFT A ${fmtMs(s.ttftA / s.ttftN)}, B ${fmtMs(s.ttftB / s.ttftN)}` : ''}`
      : 'Which model answered first more often, over the frames compared';

    const p = this.shown !== null ? this.pairs.get(this.shown) : null;
    if (p && p.camera) {
      this.frameEl.textContent = `Camera ${p.camera}, frame #${p.n} · both answers are about this picture`;
      this.frameEl.dataset.pair = String(p.n);
      this.frameEl.dataset.camera = p.camera;
      delete this.frameEl.dataset.bytes;
    } else if (p) {
      this.frameEl.textContent = `Frame #${p.n} · ${fmtBytes(p.bytes)} · both answers are about this picture`;
      this.frameEl.dataset.pair = String(p.n);
      this.frameEl.dataset.bytes = String(p.bytes);
      delete this.frameEl.dataset.camera;
    } else {
      this.frameEl.textContent = this.deps.running() ? 'Waiting for the first frame both models answer…' : 'No frame compared yet.';
      delete this.frameEl.dataset.pair;
      delete this.frameEl.dataset.bytes;
      delete this.frameEl.dataset.camera;
    }
    const lat = {};
    for (const side of SIDES) lat[side] = p && p[side] && p[side].state === 'done' ? num(p[side].metrics.last_latency_ms) : null;
    for (const side of SIDES) this._renderPane(side, p, lat);
  }

  _renderPane(side, p, lat) {
    const v = this.panes[side];
    const r = p ? p[side] : null;
    const l = this.live[side];
    const markdown = prefs.bool('markdownEnabled', true);
    const model = (r && r.model) || (l && l.model) || (side === 'a' ? this._modelA() : this.modelB) || 'automatic';
    v.model.textContent = model;
    v.model.title = model;
    let text = '';
    let placeholder = '';
    if (r && r.state === 'done') text = r.text || '';
    else if (r) placeholder = r.why ? `No answer to this frame: ${r.why}.` : 'No answer to this frame.';
    else if (l && l.text) text = l.text; // nothing compared yet: the first answer as it is written
    else placeholder = this.deps.running() ? 'Waiting for the first answer…' : 'Press Start to compare.';
    if (v.text.dataset.shown !== `${p ? p.n : ''}|${text}|${placeholder}|${markdown}`) {
      v.text.dataset.shown = `${p ? p.n : ''}|${text}|${placeholder}|${markdown}`;
      v.text.dataset.empty = text ? 'false' : 'true';
      v.text.dataset.mode = markdown ? 'markdown' : 'plain';
      if (!text) v.text.replaceChildren(h('span', { class: 'placeholder', text: placeholder }));
      else v.text.replaceChildren(markdown ? renderMarkdown(text) : renderPlain(text));
    }
    const m = r && r.state === 'done' ? r.metrics : null;
    v.lat.textContent = m ? fmtMs(m.last_latency_ms) : '—';
    v.ttft.textContent = m ? fmtMs(m.ttft_ms) : '—';
    v.tokens.textContent = m ? fmtInt(m.tokens) : '—';
    const other = side === 'a' ? 'b' : 'a';
    const ahead = lat[side] !== null && lat[other] !== null && lat[side] < lat[other];
    v.faster.hidden = !ahead;
    v.faster.textContent = ahead ? `faster by ${fmtMs(lat[other] - lat[side])}` : '';
    v.el.dataset.faster = ahead ? 'true' : 'false';
    // The line under the pane: the next answer being written, or what this side waits for.
    let next = '';
    if (l && (p || !l.text) && l.n !== null) next = l.text ? `Next (frame #${l.n}): ${l.text}` : `Frame #${l.n}: the model is looking at it…`;
    else if (this.queue[side]) next = `Next frame waits for a model slot (#${this.queue[side]} in line).`;
    else if (this.fifo[side].length) next = `Frame #${this.fifo[side][0]} sent, waiting for its turn…`;
    v.next.textContent = next;
    v.next.hidden = !next;
  }
}
