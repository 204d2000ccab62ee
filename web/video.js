// video.js - "Send video": the page streams its camera to livevlm over WebRTC (POST /offer,
// docs/protocol.md "WebRTC video") instead of answering credits with JPEGs. livevlm samples the
// video at the session's interval itself. Non-trickle, as the server answers: the offer is posted
// once ICE gathering is complete (bounded), and the answer carries all of the server's candidates.

const GATHER_MS = 5000;    // post what was gathered after this long
const CONNECT_MS = 15000;  // the connection must be up this long after the answer

/** Wait until pc has gathered its candidates, or ms passed. */
function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() { if (pc.iceGatheringState === 'complete') done(); }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The frame rate to send for an analysis every intervalMs: about two pictures per interval (so a
 * fresh one is there when livevlm samples), at least 1 fps, at most 30. livevlm decodes every
 * picture it gets, so this is what keeps its CPU per stream low. */
export function videoFps(intervalMs) {
  const ms = Number(intervalMs) > 0 ? Number(intervalMs) : 1000;
  return Math.min(30, Math.max(1, Math.round((2000 / ms) * 10) / 10));
}

/**
 * Stream the video track of `stream` to livevlm for session `sessionId`.
 * onState(state, detail): 'offering' | 'connecting' | 'live' | 'failed' | 'ended' | 'stopped'.
 * maxFramerate (optional): the encoder's frame-rate cap (RTCRtpEncodingParameters.maxFramerate).
 * Resolves a handle {pc, stop(), setMaxFramerate(fps), replaceTrack(track)} once the server
 * answered; rejects with an Error whose .code is the server's error code (or 'network', 'no_track')
 * when the offer fails: the caller falls back to sending frames.
 */
export async function startVideo({ stream, sessionId, onState = () => {}, fetchImpl = fetch, maxFramerate = 0 }) {
  const track = stream && stream.getVideoTracks()[0];
  if (!track) throw Object.assign(new Error('no camera track to send'), { code: 'no_track' });
  const pc = new RTCPeerConnection({ iceServers: [] });
  let stopped = false;
  let sender = null;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    try { pc.close(); } catch { /* closed */ }
    onState('stopped');
  };
  try {
    // send only: livevlm sends nothing back (its answer is recvonly)
    const init = { direction: 'sendonly', streams: [stream] };
    if (maxFramerate > 0) init.sendEncodings = [{ maxFramerate }];
    sender = pc.addTransceiver(track, init).sender;
    onState('offering');
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, GATHER_MS);
    let r;
    try {
      r = await fetchImpl('/offer', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: 'offer', session_id: sessionId }),
      });
    } catch (e) {
      throw Object.assign(new Error(`the offer did not reach the server: ${e.message}`), { code: 'network' });
    }
    let body = null;
    try { body = await r.json(); } catch { /* not JSON */ }
    if (!r.ok || !body || body.type !== 'answer') {
      const err = (body && body.error) || {};
      throw Object.assign(new Error(err.message || `the server refused the video (HTTP ${r.status})`),
        { code: err.code || `http_${r.status}`, status: r.status });
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: body.sdp });
    onState('connecting');
  } catch (e) {
    stop();
    throw e;
  }
  const timer = setTimeout(() => {
    if (!stopped && pc.connectionState !== 'connected') onState('failed', 'no connection to the server');
  }, CONNECT_MS);
  pc.addEventListener('connectionstatechange', () => {
    if (stopped) return;
    const st = pc.connectionState;
    if (st === 'connected') { clearTimeout(timer); onState('live'); }
    else if (st === 'failed') onState('failed', 'the connection failed');
    else if (st === 'closed') onState('ended');
  });
  return {
    pc,
    stop: () => { clearTimeout(timer); stop(); },
    /** A new frame-rate cap (the interval changed); resolves false when the browser refused it. */
    async setMaxFramerate(fps) {
      try {
        const params = sender.getParameters();
        if (!params.encodings || !params.encodings.length) return false;
        for (const e of params.encodings) e.maxFramerate = fps;
        await sender.setParameters(params);
        return true;
      } catch {
        return false;
      }
    },
    /** Send another camera's track (the webcam was switched) without negotiating again. */
    replaceTrack: (t) => sender.replaceTrack(t),
  };
}
