// ws.js - the WebSocket protocol client (docs/protocol.md): hello / resume, automatic reconnect
// with backoff, keep-alive pings, and the per-tab session credentials in sessionStorage.
//
// Events (CustomEvent, detail as noted):
//   state    {state: 'connecting'|'open'|'reconnecting'|'closed', attempt, delay, reason?}
//            reason: the server's sentence when the socket is open but hello cannot be answered
//            yet (cluster_unavailable: the cluster's session store is unreachable); the same
//            hello is said again by itself, the session is never dropped
//   session  the `session` message (after hello or resume)
//   message  any other server message (objects with a string `type`)
//   socketclose {code, reason, opened, hadSession}
//   rtt      {ms}
//
// A page may hold a second session (compare.js): opts.keys names the sessionStorage keys of its
// credentials, opts.helloSettings() the settings a new session of it is created with.

import { tabStore } from './util.js';

const SID_KEY = 'livevlm.session_id';
const SECRET_KEY = 'livevlm.resume_secret';
const PAGE_KEYS = { id: SID_KEY, secret: SECRET_KEY };
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
// cluster_unavailable: hello again on the same socket after 2 s, then 4 s, then every 8 s (under
// the server's 10 s hello deadline, which counts from its last answer)
const UNAVAILABLE_FIRST_MS = 2000;
const UNAVAILABLE_MAX_MS = 8000;
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 50000;

// Errors after which the session is gone for good: an administrator ended it, or the account or
// key behind it was taken away (app.js SESSION_ENDED words them).
const ENDS_SESSION = new Set(['kicked_by_admin', 'account_disabled', 'key_revoked', 'signed_out']);

export class Connection extends EventTarget {
  constructor(url, opts = {}) {
    super();
    this.url = url;
    this.keys = opts.keys || PAGE_KEYS;
    this.helloSettings = typeof opts.helloSettings === 'function' ? opts.helloSettings : null;
    this.ws = null;
    this.want = false;
    this.hasSession = false;
    this.backoff = BACKOFF_MIN_MS;
    this.attempt = 0;
    this.retryTimer = null;
    this.helloTimer = null;
    this.helloBackoff = UNAVAILABLE_FIRST_MS;
    this.pingTimer = null;
    this.lastRx = 0;
    this.pongSeen = false;
    this.everHadSession = false;
    this.onOnline = () => { if (this.want && !this.ws) this.reconnectNow(); };
    window.addEventListener('online', this.onOnline);
  }

  /** Stored credentials of this tab's session (or of the one under keys), or null. */
  static stored(keys = PAGE_KEYS) {
    const id = tabStore.get(keys.id);
    const secret = tabStore.get(keys.secret);
    return id && secret ? { session_id: id, resume_secret: secret } : null;
  }

  static forget(keys = PAGE_KEYS) {
    tabStore.set(keys.id, null);
    tabStore.set(keys.secret, null);
  }

  get sessionId() {
    return tabStore.get(this.keys.id);
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN && this.hasSession;
  }

  start() {
    this.want = true;
    if (!this.ws) this._connect();
  }

  /** Close for good (logout, auth lost). */
  stop() {
    this.want = false;
    this.everHadSession = false;
    this.backoff = BACKOFF_MIN_MS;
    this.attempt = 0;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this._stopHelloRetry();
    this._stopPing();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      this.hasSession = false;
      try { ws.close(1000, 'bye'); } catch { /* already closing */ }
    }
    this._emit('state', { state: 'closed' });
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.want && !this.ws) this._connect();
  }

  /** Send a JSON message; false when there is no open session to send it on. */
  send(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    if (!this.hasSession && obj.type !== 'hello') return false;
    try {
      this.ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Send a binary message (a frame); false when not possible. */
  sendBinary(buf) {
    if (!this.isOpen) return false;
    try {
      this.ws.send(buf);
      return true;
    } catch {
      return false;
    }
  }

  get bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt++;
    this._emit('state', { state: this.everHadSession ? 'reconnecting' : 'connecting', attempt: this.attempt });
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this._scheduleRetry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      this.lastRx = performance.now();
      this.pongSeen = false;
      this._hello();
      this._startPing();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastRx = performance.now();
      if (typeof ev.data !== 'string') return; // the server sends no binary messages
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
      this._handle(msg);
    };
    ws.onerror = () => { /* a close event follows with the details */ };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this._dropped(ev.code, ev.reason, opened);
    };
  }

  // The current socket is gone (closed by either side, or given up on by the watchdog).
  _dropped(code, reason, opened) {
    const hadSession = this.hasSession;
    this.ws = null;
    this.hasSession = false;
    this._stopHelloRetry();
    this._stopPing();
    this._emit('socketclose', { code, reason, opened, hadSession });
    if (this.want) this._scheduleRetry();
    else this._emit('state', { state: 'closed' });
  }

  _hello() {
    const cred = Connection.stored(this.keys);
    this.ws.send(JSON.stringify(cred ? { type: 'hello', ...cred } : this._freshHello()));
  }

  // hello for a new session, with the settings it should start with when the owner gives some.
  _freshHello() {
    const settings = this.helloSettings ? this.helloSettings() : null;
    return settings && typeof settings === 'object' ? { type: 'hello', settings } : { type: 'hello' };
  }

  _handle(msg) {
    if (msg.type === 'session') {
      if (typeof msg.session_id === 'string') tabStore.set(this.keys.id, msg.session_id);
      if (typeof msg.resume_secret === 'string') tabStore.set(this.keys.secret, msg.resume_secret);
      this.hasSession = true;
      this.everHadSession = true;
      this.backoff = BACKOFF_MIN_MS;
      this._stopHelloRetry();
      this.helloBackoff = UNAVAILABLE_FIRST_MS;
      this.attempt = 0;
      this._emit('state', { state: 'open' });
      this._emit('session', msg);
      return;
    }
    if (msg.type === 'error' && msg.code === 'session_not_found' && !this.hasSession) {
      // The old session expired (or the server restarted): start a fresh one.
      Connection.forget(this.keys);
      try { this.ws.send(JSON.stringify(this._freshHello())); } catch { /* close handles it */ }
      this._emit('message', msg);
      return;
    }
    if (msg.type === 'error' && msg.code === 'cluster_unavailable' && !this.hasSession) {
      // A cluster's session store is unreachable for a moment: the socket stays open and the
      // session (its id and secret stay stored) is resumed by the same hello a little later.
      this._retryHello(typeof msg.message === 'string' ? msg.message : '');
      return;
    }
    if (msg.type === 'error' && msg.code === 'session_moved') {
      // Another server of the cluster serves this session now and this socket closes: the
      // ordinary reconnect resumes it wherever the connection lands.
      return;
    }
    if (msg.type === 'error' && ENDS_SESSION.has(msg.code)) {
      // An administrator ended this session, or the account or key behind it was taken away:
      // reconnecting would only start another one behind their back (or be refused). Stay
      // closed, forget it, and let the page say why (a reload starts afresh).
      this.want = false;
      Connection.forget(this.keys);
      this._emit('message', msg);
      return;
    }
    if (msg.type === 'pong') {
      this.pongSeen = true;
      if (typeof msg.t === 'number') this._emit('rtt', { ms: performance.now() - msg.t });
      return;
    }
    this._emit('message', msg);
  }

  // Say hello again on this socket after a bounded backoff, and tell the page why it waits.
  _retryHello(reason) {
    const delay = this.helloBackoff;
    this.helloBackoff = Math.min(UNAVAILABLE_MAX_MS, this.helloBackoff * 2);
    this._emit('state', { state: 'reconnecting', attempt: this.attempt, delay,
      reason: reason || 'The session store is unreachable right now; the page retries by itself.' });
    clearTimeout(this.helloTimer);
    const ws = this.ws;
    this.helloTimer = setTimeout(() => {
      this.helloTimer = null;
      if (this.ws !== ws || !ws || ws.readyState !== WebSocket.OPEN || this.hasSession) return;
      try { this._hello(); } catch { /* closing: the reconnect takes over */ }
    }, delay);
  }

  _stopHelloRetry() {
    clearTimeout(this.helloTimer);
    this.helloTimer = null;
  }

  _scheduleRetry() {
    const delay = this.backoff;
    this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
    this._emit('state', { state: 'reconnecting', attempt: this.attempt, delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.want && !this.ws) this._connect();
    }, delay);
  }

  _startPing() {
    this._stopPing();
    this.pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      // Only trust the silence watchdog once this server has answered a ping.
      if (this.pongSeen && performance.now() - this.lastRx > SILENCE_LIMIT_MS) {
        const ws = this.ws;
        this._dropped(4000, 'no answer from the server', true);
        try { ws.close(4000, 'silent'); } catch { /* ignore */ }
        return;
      }
      if (this.hasSession) this.send({ type: 'ping', t: performance.now() });
    }, PING_EVERY_MS);
    // A first ping soon after the session starts measures the round trip early.
    setTimeout(() => { if (this.hasSession) this.send({ type: 'ping', t: performance.now() }); }, 1500);
  }

  _stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }
}
