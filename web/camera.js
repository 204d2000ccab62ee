// camera.js - the browser camera: list devices (unlocking labels with one probe), open the chosen
// one at 1280x720 ideal without audio, switch cameras while running without stopping the
// session, and turn browser errors into sentences a person can act on.
//
// A camera choice is a string: "device:<deviceId>", "facing:user", "facing:environment", or ""
// (the browser's default camera).

const IDEAL = { width: { ideal: 1280 }, height: { ideal: 720 } };

export function cameraSupported() {
  return !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
}

/** A sentence for a getUserMedia / enumerateDevices failure. */
export function describeCameraError(e) {
  if (!cameraSupported()) {
    return 'Camera access needs a secure page: open it over https:// (or http://localhost).';
  }
  const name = e && e.name;
  switch (name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
    case 'SecurityError':
      return 'Camera permission denied. Allow camera access for this site (the icon in the address bar), then try again.';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
      return 'No camera found. Connect a camera and press the refresh button next to the camera list.';
    case 'OverconstrainedError':
      return 'The selected camera is not available any more. Pick another one.';
    case 'NotReadableError':
    case 'TrackStartError':
      return 'The camera could not be started: another application may be using it.';
    case 'AbortError':
      return 'The camera start was interrupted. Try again.';
    default:
      return `Camera error: ${(e && e.message) || name || 'unknown'}`;
  }
}

function constraintsFor(choice) {
  const video = { ...IDEAL };
  if (choice && choice.startsWith('device:')) video.deviceId = { exact: choice.slice(7) };
  else if (choice === 'facing:user' || choice === 'facing:environment') video.facingMode = { ideal: choice.slice(7) };
  return { audio: false, video };
}

export class Camera {
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.probed = false;
    this.lastProblem = null;
    this.onended = null;
  }

  get running() {
    return !!this.stream && this.stream.getVideoTracks().some((t) => t.readyState === 'live');
  }

  /** The deviceId of the live track, if the browser says. */
  get activeDeviceId() {
    const t = this.stream && this.stream.getVideoTracks()[0];
    if (!t || !t.getSettings) return null;
    return t.getSettings().deviceId || null;
  }

  get activeLabel() {
    const t = this.stream && this.stream.getVideoTracks()[0];
    return t ? t.label : '';
  }

  /**
   * List video inputs. With probe=true and no labels yet, open a camera once (and close it) so the
   * browser reveals names. Devices are listed even when the probe fails (no permission yet, camera
   * busy): enumerateDevices still reports them. Returns {devices, problem}; problem is a sentence
   * or null.
   */
  async list({ probe = false } = {}) {
    if (!cameraSupported()) return { devices: [], problem: describeCameraError(null), kind: 'insecure' };
    let problem = null;
    let kind = null;
    let devices = await this._enumerate();
    const unlabeled = devices.length === 0 || devices.every((d) => !d.labeled);
    if (probe && unlabeled && !this.probed && !this.running) {
      this.probed = true;
      try {
        const s = await navigator.mediaDevices.getUserMedia({ audio: false, video: true });
        s.getTracks().forEach((t) => t.stop());
      } catch (e) {
        problem = describeCameraError(e);
        kind = e && e.name === 'NotFoundError' ? 'none' : e && e.name === 'NotAllowedError' ? 'denied' : 'error';
      }
      devices = await this._enumerate();
    }
    if (problem) this.lastProblem = { problem, kind };
    else if (!probe || this.probed) {
      // A later refresh (devicechange) still has no labels: the earlier refusal still holds.
      const stillLocked = devices.length > 0 && devices.every((d) => !d.labeled);
      if (stillLocked && this.lastProblem) ({ problem, kind } = this.lastProblem);
      if (!stillLocked) this.lastProblem = null;
    }
    if (!devices.length && !problem) {
      problem = 'No camera found. Connect a camera and press the refresh button next to the camera list.';
      kind = 'none';
    }
    return { devices, problem, kind };
  }

  async _enumerate() {
    try {
      const all = await navigator.mediaDevices.enumerateDevices();
      return all.filter((d) => d.kind === 'videoinput').map((d, i) => ({
        deviceId: d.deviceId || '',
        label: d.label || `Camera ${i + 1}`,
        labeled: !!d.label,
      }));
    } catch {
      return [];
    }
  }

  /** Open the chosen camera and show it in the <video>. Throws an Error with a friendly message. */
  async open(choice) {
    if (!cameraSupported()) throw new Error(describeCameraError(null));
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(constraintsFor(choice));
    } catch (e) {
      // An exact device that vanished: fall back to any camera rather than failing outright.
      if (e && e.name === 'OverconstrainedError' && choice) {
        try {
          stream = await navigator.mediaDevices.getUserMedia(constraintsFor(''));
        } catch (e2) {
          throw new Error(describeCameraError(e2));
        }
      } else {
        throw new Error(describeCameraError(e));
      }
    }
    this._attach(stream);
    return stream;
  }

  /**
   * Switch to another camera while running: the <video> gets the new stream, the old tracks stop.
   * Phones often cannot open two cameras at once, so on failure the old one is closed first and
   * the new one tried again.
   */
  async switchTo(choice) {
    if (!this.running) return this.open(choice);
    const old = this.stream;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(constraintsFor(choice));
    } catch (first) {
      old.getTracks().forEach((t) => t.stop());
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraintsFor(choice));
      } catch (e) {
        this.stream = null;
        throw new Error(describeCameraError(e));
      }
    }
    this._attach(stream);
    if (old !== stream) old.getTracks().forEach((t) => { t.onended = null; t.stop(); });
    return stream;
  }

  _attach(stream) {
    this.stream = stream;
    for (const t of stream.getVideoTracks()) {
      t.onended = () => {
        if (this.stream === stream && this.onended) this.onended();
      };
    }
    this.video.srcObject = stream;
    const p = this.video.play();
    if (p && p.catch) p.catch(() => { /* autoplay of a muted video is allowed; ignore aborts */ });
  }

  stop() {
    if (this.stream) {
      this.stream.getTracks().forEach((t) => { t.onended = null; t.stop(); });
    }
    this.stream = null;
    this.video.srcObject = null;
  }
}
