// answer.js - the Answer card: the last complete answer (kept readable and copyable while the next
// one streams into the line under it, and replaced when that one is complete), its metrics, the
// markdown/plain switch, the new-text effects (pop-in, glow, fade) and the debug payloads. It keeps
// the server's recent answers only to show the last one after a reload; the History panel is
// history.js.

import { $, fmtMs, fmtInt, num, h, prefs } from './util.js';
import { renderMarkdown, renderPlain, markdownToText } from './markdown.js';

const HISTORY_MAX = 20;
const FADE_AFTER_MS = 2000;

function pretty(payload) {
  if (payload === undefined || payload === null) return null;
  let v = payload;
  if (typeof v === 'string') {
    try { v = JSON.parse(v); } catch { return v; }
  }
  try { return JSON.stringify(v, null, 2); } catch { return String(payload); }
}

// A history entry's wall-clock time in ms since the epoch, whatever form the server used.
function entryTime(e) {
  for (const k of ['wall_ms', 'time_ms', 'ts_ms', 'timestamp', 'time', 'ts', 'created_at', 'finished_at']) {
    const v = e[k];
    if (typeof v === 'number' && Number.isFinite(v)) return v < 1e12 ? v * 1000 : v;
    if (typeof v === 'string' && v) {
      const t = Date.parse(v);
      if (!Number.isNaN(t)) return t;
    }
  }
  return null;
}

const INLINE = new Set(['STRONG', 'EM', 'CODE', 'A', 'DEL', 'SPAN', 'BR']);

// The innermost block that ends the rendered answer: the typing caret goes at its end.
function caretHost(root) {
  let n = root;
  for (;;) {
    const last = n.lastElementChild;
    if (!last) return n;
    if (n.tagName === 'PRE' && last.tagName === 'CODE') return last;
    if (INLINE.has(last.tagName) || last.tagName === 'HR') return n;
    n = last;
  }
}

export class AnswerView {
  constructor() {
    this.card = $('answerCard');
    this.textEl = $('answerText');
    this.nextEl = $('answerNext');
    this.nextLabel = $('answerNextLabel');
    this.nextText = $('answerNextText');
    this.busyEl = $('analysing');
    this.mdBtn = $('markdownToggle');
    this.copyBtn = $('copyBtn');
    this.reqBox = $('requestPayload');
    this.resBox = $('responsePayload');
    this.reqPre = $('requestPayloadText');
    this.resPre = $('responsePayloadText');
    this.metrics = {
      latency: $('metricLatency'), avg: $('metricAvg'), count: $('metricCount'), ttft: $('metricTtft'),
      frameAge: $('metricFrameAge'), queue: $('metricQueue'), model: $('metricModel'), tokens: $('metricTokens'),
      frames: $('metricFrames'),
    };
    this.markdown = prefs.bool('markdownEnabled', true);
    this.effects = { popIn: true, glow: true, fade: true };
    // The answer box shows the last complete answer (`final`, what Copy copies) and keeps it
    // while the next one is written (`live`) in the line under it; the live answer takes the box
    // only while there is no complete answer yet (the first one of a session).
    this.final = '';
    this.finalId = null;
    this.live = '';
    this.liveId = null;
    this.streaming = false; // an answer_start whose answer has not ended yet
    this.gotDelta = false;
    this.running = false; // the camera runs: the line under the answer is shown
    this.status = ''; // what that line says when no answer is being written
    this.lastMetrics = null;
    this.history = [];
    this.debug = false;
    this.placeholder = 'Press Start to analyse what your camera sees.';
    this.renderQueued = false;
    this.fadeTimer = null;
    this.ontext = null; // (text, {final}) for the video overlay
    this._syncMarkdownButton();
    this._renderNow();
  }

  /** The text Copy copies: the last complete answer ('' before there is one). */
  get copyable() {
    return this.final;
  }

  /** What the answer box shows now. */
  get text() {
    return this._liveInBox() ? this.live : this.final;
  }

  _liveInBox() {
    return !this.final && this.streaming && this.gotDelta;
  }

  setEffects(effects) {
    Object.assign(this.effects, effects);
    if (!this.effects.fade) this.textEl.classList.remove('faded');
  }

  setMarkdown(on) {
    this.markdown = !!on;
    prefs.set('markdownEnabled', this.markdown ? 'true' : 'false');
    this._syncMarkdownButton();
    this._renderNow();
  }

  _syncMarkdownButton() {
    this.mdBtn.setAttribute('aria-pressed', this.markdown ? 'true' : 'false');
    this.mdBtn.dataset.mode = this.markdown ? 'markdown' : 'plain';
    this.mdBtn.querySelector('.btn-label').textContent = this.markdown ? 'Markdown' : 'Plain';
    this.mdBtn.title = this.markdown ? 'Showing formatted Markdown: click for plain text' : 'Showing plain text: click for Markdown';
    this.textEl.dataset.mode = this.markdown ? 'markdown' : 'plain';
  }

  setPlaceholder(text) {
    if (text === this.placeholder) return;
    this.placeholder = text;
    if (!this.text) this._renderNow();
  }

  /** The camera runs (show the line under the answer) and what that line says meanwhile. */
  setRunning(on, status) {
    const changed = this.running !== !!on || (status !== undefined && status !== this.status);
    this.running = !!on;
    if (status !== undefined) this.status = status;
    if (changed) this._renderNext();
  }

  setDebug(on) {
    this.debug = !!on;
    if (!on) {
      this.reqBox.hidden = true;
      this.resBox.hidden = true;
    }
  }

  /** answer_start: a request went to a backend. The answer on screen stays. */
  start(msg) {
    this.liveId = msg.answer_id ?? null;
    this.live = '';
    this.streaming = true;
    this.gotDelta = false;
    this.busyEl.dataset.active = 'true';
    this.busyEl.setAttribute('aria-hidden', 'false');
    this.card.dataset.busy = 'true';
    this._renderNext();
  }

  /** delta: append streamed text to the answer being written. */
  delta(msg) {
    if (typeof msg.text !== 'string') return;
    if (this.liveId !== null && msg.answer_id !== undefined && msg.answer_id !== this.liveId) {
      if (this.streaming) return;
      this.liveId = msg.answer_id;
    }
    if (!this.gotDelta) {
      this.gotDelta = true;
      this.streaming = true;
      this.live = '';
      if (!this.final) {
        // The first answer of the session is written in the box itself.
        this.textEl.scrollTop = 0;
        this._newText();
        this.textEl.setAttribute('aria-busy', 'true');
      }
    }
    this.live += msg.text;
    this._queueRender();
  }

  /** vlm_response: the whole answer and its metrics; it replaces the one in the box. */
  complete(msg) {
    const text = typeof msg.text === 'string' ? msg.text : this.live;
    const wasInBox = this._liveInBox();
    const changed = text !== this.final;
    this.final = text;
    this.finalId = msg.answer_id ?? this.liveId;
    this.live = '';
    this.streaming = false;
    this.gotDelta = false;
    const m = msg.metrics && typeof msg.metrics === 'object' ? msg.metrics : {};
    this.showMetrics(m);
    this._endBusy();
    this.textEl.scrollTop = 0;
    if (changed && !wasInBox) this._newText();
    this._renderNow();
    if (changed && this.effects.glow) this._pulse('glow', 1400);
    if (this.effects.fade) {
      clearTimeout(this.fadeTimer);
      this.fadeTimer = setTimeout(() => this.textEl.classList.add('faded'), FADE_AFTER_MS);
    }
    this.addHistory({
      answer_id: msg.answer_id, text, wall_ms: Date.now(), latency_ms: num(m.last_latency_ms),
      model: m.model, backend: m.backend,
    });
    if (this.debug) {
      const req = pretty(msg.request_payload);
      const res = pretty(msg.response_payload);
      this.reqPre.textContent = req ?? '(not sent by the server)';
      this.resPre.textContent = res ?? '(not sent by the server)';
      this.reqBox.hidden = false;
      this.resBox.hidden = false;
    }
  }

  /** An error that ends the answer in progress (when it names it, or none is named). */
  failed(msg) {
    if (!this.streaming) return;
    if (msg.answer_id !== undefined && this.liveId !== null && msg.answer_id !== this.liveId) return;
    this._dropLive();
  }

  /** The session stopped (or the socket went): no answer is coming. */
  idle() {
    this._dropLive();
  }

  _dropLive() {
    this.streaming = false;
    this.gotDelta = false;
    this.live = '';
    this._endBusy();
    this._renderNow();
  }

  _endBusy() {
    this.busyEl.dataset.active = 'false';
    this.busyEl.setAttribute('aria-hidden', 'true');
    this.card.dataset.busy = 'false';
    this.textEl.setAttribute('aria-busy', 'false');
  }

  /** Show a metrics object; before any answer every field is "—" (never "0 ms"). */
  showMetrics(m) {
    if (!m || typeof m !== 'object') return;
    this.lastMetrics = m;
    const answered = Number(m.total_inferences) > 0 || 'ttft_ms' in m;
    const ms = (v) => (answered ? fmtMs(v) : '—');
    const set = (el, v) => { if (v !== undefined) el.textContent = v; };
    if ('last_latency_ms' in m || !answered) set(this.metrics.latency, ms(m.last_latency_ms));
    if ('avg_latency_ms' in m || !answered) set(this.metrics.avg, ms(m.avg_latency_ms));
    if ('total_inferences' in m) set(this.metrics.count, answered ? fmtInt(m.total_inferences) : '—');
    if ('ttft_ms' in m || !answered) set(this.metrics.ttft, ms(m.ttft_ms));
    if ('frame_age_ms' in m || !answered) set(this.metrics.frameAge, ms(m.frame_age_ms));
    if ('queue_wait_ms' in m || !answered) set(this.metrics.queue, ms(m.queue_wait_ms));
    if (m.model || m.backend) set(this.metrics.model, [m.backend, m.model].filter(Boolean).join(' / '));
    if ('frames_received' in m) {
      const extra = [];
      if (m.frames_replaced) extra.push(`${fmtInt(m.frames_replaced)} replaced by a newer one`);
      if (m.frames_rejected) extra.push(`${fmtInt(m.frames_rejected)} rejected`);
      set(this.metrics.frames, Number(m.frames_received) > 0 ? fmtInt(m.frames_received) : '—');
      this.metrics.frames.title = `Frames the server received in this session${extra.length ? ` (${extra.join(', ')})` : ''}`;
    }
    if ('tokens' in m) {
      const t = fmtInt(m.tokens);
      set(this.metrics.tokens, m.streamed === false && t !== '—' ? `${t} (not streamed)` : t);
    } else if (!answered) {
      set(this.metrics.tokens, '—');
    }
  }

  _newText() {
    clearTimeout(this.fadeTimer);
    this.textEl.classList.remove('faded');
    if (this.effects.popIn) this._pulse('pop', 450);
  }

  _pulse(cls, ms) {
    const el = this.textEl;
    el.classList.remove(cls);
    void el.offsetWidth;
    el.classList.add(cls);
    clearTimeout(el[`_${cls}`]);
    el[`_${cls}`] = setTimeout(() => el.classList.remove(cls), ms);
  }

  _queueRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      if (this._liveInBox()) this._renderNow();
      else this._renderNext();
    });
  }

  _renderNow() {
    this._renderBox();
    this._renderNext();
  }

  /** The answer box: the last complete answer, else the first one being written, else a sentence. */
  _renderBox() {
    const el = this.textEl;
    const live = this._liveInBox();
    const text = live ? this.live : this.final;
    // While the first answer streams, keep its newest words in view unless the reader scrolled up.
    const follow = el.scrollHeight - el.scrollTop - el.clientHeight < 32;
    el.dataset.empty = text ? 'false' : 'true';
    el.dataset.streaming = live ? 'true' : 'false';
    if (!text) {
      el.replaceChildren(h('span', { class: 'placeholder', text: this.placeholder }));
    } else if (this.markdown) {
      el.replaceChildren(renderMarkdown(text));
    } else {
      el.replaceChildren(renderPlain(text));
    }
    if (live && this.markdown) caretHost(el).classList.add('caret');
    if (live && follow) el.scrollTop = el.scrollHeight;
    this.copyBtn.disabled = !this.final;
    this.copyBtn.title = this.final ? 'Copy the last complete answer' : 'Nothing to copy yet: no answer is complete';
    if (this.ontext) this.ontext(this.markdown ? markdownToText(text) : text, { final: !live });
  }

  /** The line under the box: the next answer as it is written, or what the page is waiting for. */
  _renderNext() {
    // Only under a kept answer: before the first one, the box itself says what is going on.
    const show = !!this.final && (this.running || this.streaming);
    this.nextEl.hidden = !show;
    if (!show) return;
    const writing = this.streaming && this.gotDelta && !!this.final;
    this.nextEl.dataset.state = writing ? 'writing' : 'status';
    this.nextLabel.hidden = !writing;
    if (writing) {
      this.nextText.textContent = this.markdown ? markdownToText(this.live) : this.live;
      this.nextText.scrollTop = this.nextText.scrollHeight;
    } else {
      this.nextText.textContent = this.status;
    }
  }

  /** Send the current text to the overlay again (its position or visibility changed). */
  refreshOverlay() {
    if (this.ontext) this.ontext(this.markdown ? markdownToText(this.text) : this.text, { final: !this._liveInBox() });
  }

  /** Replace the history (from the session message), oldest first as the server sends it. */
  setHistory(list) {
    this.history = [];
    if (Array.isArray(list)) {
      for (const e of list.slice(-HISTORY_MAX)) {
        if (!e || typeof e !== 'object' || typeof e.text !== 'string') continue;
        this.history.push({
          answer_id: e.answer_id, text: e.text, wall_ms: entryTime(e),
          latency_ms: num(e.latency_ms) ?? num(e.metrics && e.metrics.last_latency_ms),
          model: e.model, backend: e.backend,
        });
      }
    }
  }

  /** Show the newest history answer when nothing else is on screen (after a reload). */
  restoreLast() {
    if (this.final || !this.history.length) return;
    const last = this.history[this.history.length - 1];
    this.final = last.text;
    this.finalId = last.answer_id ?? null;
    this._renderNow();
    if (this.effects.fade) this.textEl.classList.add('faded');
  }

  addHistory(entry) {
    if (entry.answer_id !== undefined && this.history.some((e) => e.answer_id === entry.answer_id && e.answer_id !== undefined)) return;
    this.history.push(entry);
    if (this.history.length > HISTORY_MAX) this.history.splice(0, this.history.length - HISTORY_MAX);
  }
}
