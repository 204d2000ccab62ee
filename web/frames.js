// frames.js - answers the server's credits with camera frames: grab the current video picture,
// scale it so its longest side fits settings.frame_max_side, encode JPEG, and send one binary
// message = 16-byte LVF1 header + JPEG (docs/protocol.md, "Frames"). At most one encode is in
// flight; a credit that arrives meanwhile is answered right after. Frames are never mirrored.

const HEADER_BYTES = 16;
const MAGIC = [0x4c, 0x56, 0x46, 0x31]; // "LVF1"
const U32_MAX = 0xffffffff;
const READY_WAIT_MS = 5000;

/** The 16-byte header followed by the JPEG bytes, as one ArrayBuffer. */
export function packFrame(creditId, captureAgeMs, jpeg) {
  const bytes = new Uint8Array(HEADER_BYTES + jpeg.byteLength);
  bytes.set(MAGIC, 0);
  const view = new DataView(bytes.buffer);
  view.setUint32(4, Math.max(0, Math.min(U32_MAX, creditId >>> 0)), false);
  view.setUint32(8, Math.max(0, Math.min(U32_MAX, Math.round(captureAgeMs))), false);
  view.setUint32(12, 0, false);
  bytes.set(new Uint8Array(jpeg), HEADER_BYTES);
  return bytes.buffer;
}

/** Target size: longest side at most maxSide, never upscaled, even numbers of at least 2 px. */
export function fitSize(w, h, maxSide) {
  const scale = Math.min(1, maxSide / Math.max(w, h));
  return {
    width: Math.max(2, Math.round(w * scale)),
    height: Math.max(2, Math.round(h * scale)),
  };
}

export class FrameSender {
  /**
   * video: the <video> playing the camera; send(buffer) → bool sends one binary message;
   * getSettings() → {frame_max_side, jpeg_quality}; maxBytes: the server's frame cap.
   */
  constructor(video, send, getSettings) {
    this.video = video;
    this.send = send;
    this.getSettings = getSettings;
    this.maxBytes = 4 * 1024 * 1024;
    this.busy = false;
    this.pending = null;
    this.retryTimer = null;
    this.canvas = null;
    this.ctx = null;
    this.offscreen = typeof OffscreenCanvas === 'function';
    this.sent = 0;
    this.skipped = 0;
    this.epoch = 0; // cancel() moves it on: an encode begun before is not sent
    this.last = null; // {width, height, bytes, encodeMs, captureAgeMs}
    this.onsent = null;
    this.onproblem = null;
  }

  /** A credit from the server: grab and send now, or right after the encode in flight. */
  credit(creditId) {
    clearTimeout(this.retryTimer); // a newer credit supersedes one still waiting for a picture
    this.retryTimer = null;
    if (this.busy) {
      this.pending = creditId;
      return;
    }
    this._grab(creditId);
  }

  reset() {
    this.pending = null;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** The camera stopped: forget waiting credits and drop the frame being encoded, if any. */
  cancel() {
    this.reset();
    this.epoch++;
  }

  // The server may hold back further credits until this one is answered, so a credit that comes
  // before the camera shows a picture (start-up, camera switch) waits for one instead of being
  // dropped.
  _waitForPicture(creditId, since) {
    clearTimeout(this.retryTimer);
    if (performance.now() - since > READY_WAIT_MS) {
      this.skipped++;
      return;
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.busy) this.pending = creditId;
      else this._grab(creditId, since);
    }, 100);
  }

  _surface(w, h) {
    if (!this.canvas) {
      if (this.offscreen) {
        try {
          this.canvas = new OffscreenCanvas(w, h);
          this.ctx = this.canvas.getContext('2d', { alpha: false });
          if (!this.ctx || typeof this.canvas.convertToBlob !== 'function') throw new Error('no 2d');
        } catch {
          this.offscreen = false;
          this.canvas = null;
        }
      }
      if (!this.canvas) {
        this.canvas = document.createElement('canvas');
        this.ctx = this.canvas.getContext('2d', { alpha: false });
      }
    }
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== h) this.canvas.height = h;
    return this.ctx;
  }

  _encode(quality) {
    if (this.offscreen) return this.canvas.convertToBlob({ type: 'image/jpeg', quality });
    return new Promise((resolve, reject) => {
      this.canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('encode failed'))), 'image/jpeg', quality);
    });
  }

  async _grab(creditId, since = performance.now()) {
    this.busy = true;
    const epoch = this.epoch;
    try {
      const v = this.video;
      if (!v.videoWidth || !v.videoHeight || v.readyState < 2) {
        this._waitForPicture(creditId, since);
        return;
      }
      // Read now: the camera may be closed while the picture is encoded (then it reads 0x0).
      const sourceWidth = v.videoWidth;
      const sourceHeight = v.videoHeight;
      const s = this.getSettings();
      const maxSide = Math.max(16, Number(s.frame_max_side) || 768);
      const quality = Math.min(1, Math.max(0.05, (Number(s.jpeg_quality) || 80) / 100));
      const { width, height } = fitSize(sourceWidth, sourceHeight, maxSide);
      const ctx = this._surface(width, height);
      const grabbedAt = performance.now();
      ctx.drawImage(v, 0, 0, width, height);
      const blob = await this._encode(quality);
      if (blob.type && blob.type !== 'image/jpeg') throw new Error(`this browser encoded ${blob.type}, not JPEG`);
      const jpeg = await blob.arrayBuffer();
      if (epoch !== this.epoch) return; // stopped meanwhile: the frame is not wanted any more
      if (jpeg.byteLength + HEADER_BYTES > this.maxBytes) {
        this.skipped++;
        if (this.onproblem) this.onproblem(`frame of ${jpeg.byteLength} bytes is over the server's cap; lower the frame size or JPEG quality`);
        return;
      }
      const encodeMs = performance.now() - grabbedAt;
      const captureAgeMs = performance.now() - grabbedAt;
      if (this.send(packFrame(creditId, captureAgeMs, jpeg))) {
        this.sent++;
        this.last = { width, height, bytes: jpeg.byteLength, encodeMs, captureAgeMs,
          sourceWidth, sourceHeight };
        if (this.onsent) this.onsent(this.last);
      } else {
        this.skipped++;
      }
    } catch (e) {
      if (epoch !== this.epoch) return; // a frame nobody waits for any more failed: say nothing
      this.skipped++;
      if (this.onproblem) this.onproblem(e && e.message ? e.message : String(e));
    } finally {
      this.busy = false;
      if (this.pending !== null) { // (cancel() empties it: what is here is for the run now)
        const next = this.pending;
        this.pending = null;
        this._grab(next);
      }
    }
  }
}
