// notices.js - the page's error notices (#errorBar): one line per cause, in the page's flow under
// the top bar (never floating over controls). Each says what happened in a sentence and how to fix
// it; the server's own wording, when it adds something, is a smaller detail line; the protocol
// code shows only in the debug view (body[data-debug="true"]). A cause that happens again bumps the
// line's count instead of adding a line, and a cause that is over clears its line (app.js decides
// when: the next good answer clears a backend error, a camera that opens clears a camera error).

import { h, pulse } from './util.js';
import { hydrateIcons } from './icons.js';

const MAX_LINES = 3;
// A line cleared by its cause stays at least this long, so a flaky cause (error, answer, error…)
// does not make the page jump up and down every second.
const MIN_SHOWN_MS = 4000;

const QUOTA_NAMES = { fpm: 'frames per minute', answers_day: 'answers per day', tokens_day: 'tokens per day',
  sessions: 'live sessions' };

/**
 * The notice for a `quota_exceeded` message (docs/protocol.md): "Quota reached: <which>
 * (<used>/<limit>), renews <local time>". Shown under the key 'quota'; the next credit clears it.
 */
export function quotaNotice(msg) {
  const which = `${QUOTA_NAMES[msg.quota] || msg.quota}${msg.scope === 'tenant' ? ' (your organisation)' : ''}`;
  const when = msg.renews_at ? new Date(msg.renews_at) : null;
  const renews = when && !Number.isNaN(when.getTime())
    ? `, renews ${when.toLocaleString([], { dateStyle: when - Date.now() > 3600e3 ? 'short' : undefined, timeStyle: 'short' })}`
    : '';
  return {
    kind: 'warn', code: 'quota_exceeded',
    title: `Quota reached: ${which} (${msg.used}/${msg.limit})${renews}.`,
    fix: msg.renews_at ? 'Answers resume by themselves then; an administrator can raise the quota.'
      : 'Close another session, or ask an administrator to raise the quota.',
  };
}

export class Notices {
  constructor(root) {
    this.root = root;
    this.lines = new Map(); // key → {el, shownAt, count, clearTimer}
  }

  /**
   * Show (or bump) the notice for key. n: {title, fix?, detail?, code?, kind? ('error'|'warn')}.
   * Repeats of the same key count up ("3 times") and take the newest wording.
   */
  show(key, n) {
    let line = this.lines.get(key);
    if (line) {
      clearTimeout(line.clearTimer);
      line.clearTimer = null;
      line.count++;
      this._fill(line, n);
      pulse(line.el, 'bump', 400);
      return;
    }
    const el = h('div', { class: 'error-line', dataset: { key, kind: n.kind || 'error' } });
    line = { el, shownAt: performance.now(), count: 1, clearTimer: null };
    const dismiss = h('button', { class: 'icon-btn icon-btn-sm error-dismiss', type: 'button', 'aria-label': 'Dismiss this message', title: 'Dismiss' },
      h('span', { dataset: { icon: 'close' } }));
    dismiss.addEventListener('click', () => this._remove(key));
    el.append(
      h('span', { class: 'error-icon', dataset: { icon: 'alert' } }),
      h('div', { class: 'error-body' },
        h('p', { class: 'error-title' }),
        h('p', { class: 'error-msg' }),
        h('p', { class: 'error-fix' })),
      h('span', { class: 'error-count' }),
      h('code', { class: 'error-code' }),
      dismiss);
    hydrateIcons(el);
    this.lines.set(key, line);
    this._fill(line, n);
    this.root.appendChild(el);
    while (this.lines.size > MAX_LINES) this._remove(this.lines.keys().next().value);
    this._sync();
  }

  _fill(line, n) {
    const el = line.el;
    el.dataset.code = n.code || '';
    el.dataset.repeat = String(line.count);
    el.querySelector('.error-title').textContent = n.title || 'Something went wrong.';
    const detail = el.querySelector('.error-msg');
    detail.textContent = n.detail || '';
    detail.hidden = !n.detail;
    const fix = el.querySelector('.error-fix');
    fix.textContent = n.fix || '';
    fix.hidden = !n.fix;
    const code = el.querySelector('.error-code');
    code.textContent = n.code || '';
    code.hidden = !n.code;
    const count = el.querySelector('.error-count');
    count.textContent = line.count > 1 ? `${line.count} times` : '';
    count.title = line.count > 1 ? `This happened ${line.count} times` : '';
  }

  /** Change the detail line of key's notice (onlyIfEmpty: keep a detail it already has). */
  setDetail(key, detail, onlyIfEmpty = false) {
    const line = this.lines.get(key);
    if (!line) return;
    const el = line.el.querySelector('.error-msg');
    if (onlyIfEmpty && el.textContent) return;
    el.textContent = detail || '';
    el.hidden = !detail;
  }

  has(key) {
    return this.lines.has(key);
  }

  /** The cause of key is over: remove its line (after MIN_SHOWN_MS at the earliest). */
  clear(key) {
    const line = this.lines.get(key);
    if (!line || line.clearTimer) return;
    const left = MIN_SHOWN_MS - (performance.now() - line.shownAt);
    if (left <= 0) this._remove(key);
    else line.clearTimer = setTimeout(() => this._remove(key), left);
  }

  /** Remove now, whatever its age (the user dismissed it, or a new session started). */
  _remove(key) {
    const line = this.lines.get(key);
    if (!line) return;
    clearTimeout(line.clearTimer);
    line.el.remove();
    this.lines.delete(key);
    this._sync();
  }

  removeNow(key) {
    this._remove(key);
  }

  _sync() {
    this.root.dataset.count = String(this.lines.size);
  }
}
