// answer.js - the Answer card: the live answer (streamed deltas, then the final text), its metrics,
// the markdown/plain switch, copy, the new-text effects (pop-in, glow, fade), the debug payloads
// and the history of recent answers.

import { $, fmtMs, fmtInt, fmtTime, num, h, prefs } from './util.js';
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
    this.busyEl = $('analysing');
    this.mdBtn = $('markdownToggle');
    this.reqBox = $('requestPayload');
    this.resBox = $('responsePayload');
    this.reqPre = $('requestPayloadText');
    this.resPre = $('responsePayloadText');
    this.historyBox = $('history');
    this.historyList = $('historyList');
    this.historyCount = $('historyCount');
    this.historyEmpty = $('historyEmpty');
    this.metrics = {
      latency: $('metricLatency'), avg: $('metricAvg'), count: $('metricCount'), ttft: $('metricTtft'),
      frameAge: $('metricFrameAge'), queue: $('metricQueue'), model: $('metricModel'), tokens: $('metricTokens'),
      frames: $('metricFrames'),
    };
    this.markdown = prefs.bool('markdownEnabled', true);
    this.effects = { popIn: true, glow: true, fade: true };
    this.text = '';
    this.answerId = null;
    this.streaming = false;
    this.lastFinal = '';
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

  setEffects(effects) {
    Object.assign(this.effects, effects);
    if (!this.effects.fade) this.textEl.classList.remove('faded');
  }

  setMarkdown(on) {
    this.markdown = !!on;
    prefs.set('markdownEnabled', this.markdown ? 'true' : 'false');
    this._syncMarkdownButton();
    this._renderNow();
    this._renderHistory();
  }

  _syncMarkdownButton() {
    this.mdBtn.setAttribute('aria-pressed', this.markdown ? 'true' : 'false');
    this.mdBtn.dataset.mode = this.markdown ? 'markdown' : 'plain';
    this.mdBtn.querySelector('.btn-label').textContent = this.markdown ? 'Markdown' : 'Plain';
    this.mdBtn.title = this.markdown ? 'Showing formatted Markdown: click for plain text' : 'Showing plain text: click for Markdown';
    this.textEl.dataset.mode = this.markdown ? 'markdown' : 'plain';
  }

  setPlaceholder(text) {
    this.placeholder = text;
    if (!this.text) this._renderNow();
  }

  setDebug(on) {
    this.debug = !!on;
    if (!on) {
      this.reqBox.hidden = true;
      this.resBox.hidden = true;
    }
  }

  /** answer_start: a request went to a backend. */
  start(msg) {
    this.answerId = msg.answer_id ?? null;
    this.streaming = true;
    this.gotDelta = false;
    this.pendingText = '';
    this.busyEl.dataset.active = 'true';
    this.busyEl.setAttribute('aria-hidden', 'false');
    this.card.dataset.busy = 'true';
    this.textEl.setAttribute('aria-busy', 'true');
    if (msg.frame_age_ms !== undefined) this.metrics.frameAge.textContent = fmtMs(msg.frame_age_ms);
    if (msg.queue_wait_ms !== undefined) this.metrics.queue.textContent = fmtMs(msg.queue_wait_ms);
    if (msg.model) this.metrics.model.textContent = [msg.backend, msg.model].filter(Boolean).join(' / ');
  }

  /** delta: append streamed text to the answer being written. */
  delta(msg) {
    if (typeof msg.text !== 'string') return;
    if (this.answerId !== null && msg.answer_id !== undefined && msg.answer_id !== this.answerId) {
      if (!this.streaming) this.answerId = msg.answer_id; else return;
    }
    if (!this.gotDelta) {
      // The previous answer stays on screen until the new one has its first words.
      this.gotDelta = true;
      this.streaming = true;
      this.text = '';
      this.textEl.scrollTop = 0;
      this._newText();
    }
    this.text += msg.text;
    this._queueRender();
  }

  /** vlm_response: the whole answer and its metrics. */
  complete(msg) {
    const text = typeof msg.text === 'string' ? msg.text : this.text;
    const changed = text !== this.lastFinal;
    if (!this.gotDelta || this.answerId !== msg.answer_id) {
      if (changed) this._newText();
    }
    this.text = text;
    this.answerId = msg.answer_id ?? this.answerId;
    this.streaming = false;
    this.gotDelta = false;
    const m = msg.metrics && typeof msg.metrics === 'object' ? msg.metrics : {};
    this.showMetrics(m);
    this._endBusy();
    this._renderNow();
    if (changed && this.effects.glow) this._pulse('glow', 1400);
    this.lastFinal = text;
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
    if (msg.answer_id !== undefined && this.answerId !== null && msg.answer_id !== this.answerId) return;
    this.streaming = false;
    this.gotDelta = false;
    this._endBusy();
    this._renderNow();
  }

  /** The session stopped: no answer is coming. */
  idle() {
    this.streaming = false;
    this.gotDelta = false;
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
      this._renderNow();
    });
  }

  _renderNow() {
    const el = this.textEl;
    const text = this.text;
    // While streaming, keep the newest words in view unless the reader scrolled up.
    const follow = el.scrollHeight - el.scrollTop - el.clientHeight < 32;
    el.dataset.empty = text ? 'false' : 'true';
    el.dataset.streaming = this.streaming && this.gotDelta ? 'true' : 'false';
    if (!text) {
      el.replaceChildren(h('span', { class: 'placeholder', text: this.placeholder }));
    } else if (this.markdown) {
      el.replaceChildren(renderMarkdown(text));
    } else {
      el.replaceChildren(renderPlain(text));
    }
    if (this.streaming && this.gotDelta && this.markdown && text) caretHost(el).classList.add('caret');
    if (this.streaming && follow) el.scrollTop = el.scrollHeight;
    if (this.ontext) this.ontext(this.markdown ? markdownToText(text) : text, { final: !this.streaming });
  }

  /** Send the current text to the overlay again (its position or visibility changed). */
  refreshOverlay() {
    if (this.ontext) this.ontext(this.markdown ? markdownToText(this.text) : this.text, { final: !this.streaming });
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
    this._renderHistory();
  }

  /** Show the newest history answer when nothing else is on screen (after a reload). */
  restoreLast() {
    if (this.text || !this.history.length) return;
    this.text = this.history[this.history.length - 1].text;
    this.lastFinal = this.text;
    this._renderNow();
    if (this.effects.fade) this.textEl.classList.add('faded');
  }

  addHistory(entry) {
    if (entry.answer_id !== undefined && this.history.some((e) => e.answer_id === entry.answer_id && e.answer_id !== undefined)) return;
    this.history.push(entry);
    if (this.history.length > HISTORY_MAX) this.history.splice(0, this.history.length - HISTORY_MAX);
    this._renderHistory();
  }

  _renderHistory() {
    const items = [];
    for (let k = this.history.length - 1; k >= 0; k--) {
      const e = this.history[k];
      const meta = [];
      if (e.wall_ms) meta.push(h('time', { dateTime: new Date(e.wall_ms).toISOString(), text: fmtTime(e.wall_ms) }));
      if (e.latency_ms !== null && e.latency_ms !== undefined) meta.push(h('span', { class: 'hist-lat', text: fmtMs(e.latency_ms) }));
      if (e.model) meta.push(h('span', { class: 'hist-model', text: e.model }));
      const plain = this.markdown ? markdownToText(e.text) : e.text;
      const firstLine = plain.split('\n').find((l) => l.trim()) || '(empty answer)';
      const body = h('div', { class: 'hist-text md-body', dataset: { mode: this.markdown ? 'markdown' : 'plain' } });
      body.appendChild(this.markdown ? renderMarkdown(e.text) : renderPlain(e.text));
      const details = h('details', { class: 'hist-item' },
        h('summary', {}, h('span', { class: 'hist-meta' }, ...meta), h('span', { class: 'hist-preview', text: firstLine })),
        body);
      items.push(h('li', { dataset: { answerId: String(e.answer_id ?? '') } }, details));
    }
    this.historyList.replaceChildren(...items);
    this.historyCount.textContent = String(this.history.length);
    this.historyEmpty.hidden = this.history.length > 0;
    this.historyBox.dataset.count = String(this.history.length);
  }
}
