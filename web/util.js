// util.js - small helpers shared by the page's modules: element lookup, local preferences,
// clipboard, number formatting and short visual feedback.

/** Element by id (throws early and clearly when the markup and the code disagree). */
export function $(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing element #${id}`);
  return e;
}

/** Local preferences (localStorage; quietly in-memory when storage is blocked). */
const memory = new Map();
export const prefs = {
  get(key, fallback = null) {
    try {
      const v = localStorage.getItem(key);
      return v === null ? fallback : v;
    } catch {
      return memory.has(key) ? memory.get(key) : fallback;
    }
  },
  set(key, value) {
    try {
      if (value === null || value === undefined) localStorage.removeItem(key);
      else localStorage.setItem(key, String(value));
    } catch {
      memory.set(key, value);
    }
  },
  bool(key, fallback) {
    const v = this.get(key, null);
    return v === null ? fallback : v === 'true';
  },
};

/** Per-tab storage (sessionStorage), same shape. */
export const tabStore = {
  get(key) {
    try { return sessionStorage.getItem(key); } catch { return null; }
  },
  set(key, value) {
    try {
      if (value === null || value === undefined) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, String(value));
    } catch { /* storage blocked: the session simply does not survive a reload */ }
  },
};

/** Copy text to the clipboard; resolves true on success. Falls back to a hidden textarea. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch { /* fall through to the old way */ }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.className = 'offscreen';
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  ta.remove();
  return ok;
}

/** Add a class for a moment (restarting the animation when it is already there). */
export function pulse(el, cls, ms) {
  if (!el) return;
  el.classList.remove(cls);
  void el.offsetWidth; // restart CSS animation
  el.classList.add(cls);
  clearTimeout(el[`_${cls}Timer`]);
  el[`_${cls}Timer`] = setTimeout(() => el.classList.remove(cls), ms);
}

export function fmtMs(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  const n = Number(v);
  if (n >= 10000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.round(n)} ms`;
}

export function fmtInt(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  return Math.round(Number(v)).toLocaleString();
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function fmtTime(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** UTF-8 byte length of a string. */
const encoder = new TextEncoder();
export function byteLength(s) {
  return encoder.encode(s).length;
}

/** Build an element: h('div', {class: 'x', text: 'hi', dataset: {a: 1}}, child...). */
export function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// ---- the accounts pages' shared rules (login.js, account.js) ------------------------------------

/** The server's password rules (lv_acctreq.h LV_ACCTREQ_PASSWORD_MIN, LV_ACCTREQ_PASSWORD_MAX). */
export const PASSWORD_MIN = 10; // characters (code points)
export const PASSWORD_MAX_BYTES = 256;

/** What is wrong with a new password before it is sent, or null. tooShort: the page's sentence for
 * one under PASSWORD_MIN characters (the sign-in page asks to choose one, a change speaks of the new). */
export function passwordProblem(pw, tooShort) {
  if ([...pw].length < PASSWORD_MIN) return tooShort;
  if (byteLength(pw) > PASSWORD_MAX_BYTES) return `A password has at most ${PASSWORD_MAX_BYTES} bytes.`;
  if (/[\u0000-\u001f\u007f]/.test(pw)) return 'A password may not hold control characters.';
  return null;
}

/** The sentence for a 429 on a sign-in or a password change (res: the answer, e: its error object):
 * the account locked, or the address over its failures, until a local clock time. */
export function tooManyAttempts(res, e) {
  const retry = Number(res.headers.get('Retry-After')) || Number(e.retry_after_s) || 60;
  const until = new Date(Date.now() + retry * 1000)
    .toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (e.code === 'account_locked') return `Too many wrong passwords for this account: it is locked until ${until}.`;
  return `Too many failed attempts from this address. Try again at ${until}.`;
}
