// Peer-to-peer connections between two participants, negotiated through the server with
// `peer_signal` messages. The server only relays the offer, answer and candidates; the data goes
// directly between the browsers, or through the TURN relay from `joined.iceServers` when no
// direct path works.
//
// Each connection has a session id chosen by the side that offers it. When both sides offer at
// the same time, the offer from the participant with the greater id wins and the other side
// drops its own. Every connection carries one negotiated data channel, `control` (id 0), and the
// file transfers open more channels on it (see transfer.js).

const CONTROL_CHANNEL_ID = 0;
// A connection that has not opened its control channel after this long is given up.
const CONNECT_TIMEOUT_MS = 20_000;
// A `disconnected` connection that has not recovered after this long counts as lost.
const DISCONNECTED_GRACE_MS = 4_000;
// The path (direct or relayed) is read from getStats this often while the connection is open.
const PATH_POLL_MS = 2_000;

/**
 * One RTCPeerConnection with another participant.
 *
 * Events: `open` when the control channel opens, `close` once when the connection is lost or
 * closed, `message` with the parsed JSON of each control message, `datachannel` with each
 * channel the other side opens, and `path` with `{ path }` (`direct` or `relayed`) when the
 * selected candidate pair changes.
 */
export class PeerLink extends EventTarget {
  /** Session id of this connection. */
  session;
  /** `connecting`, `open` or `closed`. */
  state = 'connecting';
  /** `direct`, `relayed`, or null while unknown. */
  path = null;
  /** True when this side made the offer. */
  offerer;
  #connection;
  #control;
  #sendSignal;
  #pendingCandidates = [];
  #timers = new Set();
  #disconnectedTimer = null;

  /**
   * @param {object} options
   * @param {string} options.session session id
   * @param {boolean} options.offerer whether this side makes the offer
   * @param {RTCConfiguration} options.configuration ICE servers and transport policy
   * @param {(signal: object) => void} options.sendSignal sends `{kind, ...}` to the other side
   */
  constructor({ session, offerer, configuration, sendSignal }) {
    super();
    this.session = session;
    this.offerer = offerer;
    this.#sendSignal = sendSignal;
    this.#connection = new RTCPeerConnection(configuration);
    this.#control = this.#connection.createDataChannel('control', {
      negotiated: true,
      id: CONTROL_CHANNEL_ID,
      ordered: true,
    });
    this.#wire();
    this.#later(() => this.#fail('the connection did not open in time'), CONNECT_TIMEOUT_MS);
  }

  /** The RTCPeerConnection, for getStats and tests. */
  get connection() {
    return this.#connection;
  }

  /** Creates and sends the offer. Only for the offering side. */
  async start() {
    const offer = await this.#connection.createOffer();
    await this.#connection.setLocalDescription(offer);
    this.#sendSignal({ kind: 'offer', sdp: this.#connection.localDescription.sdp });
  }

  /** Applies a signal of this link's session from the other side. */
  async handleSignal(signal) {
    if (this.state === 'closed') {
      return;
    }
    switch (signal.kind) {
      case 'offer':
        await this.#connection.setRemoteDescription({ type: 'offer', sdp: signal.sdp });
        await this.#applyPendingCandidates();
        await this.#connection.setLocalDescription(await this.#connection.createAnswer());
        this.#sendSignal({ kind: 'answer', sdp: this.#connection.localDescription.sdp });
        return;
      case 'answer':
        await this.#connection.setRemoteDescription({ type: 'answer', sdp: signal.sdp });
        await this.#applyPendingCandidates();
        return;
      case 'candidate': {
        const candidate = {
          candidate: signal.candidate ?? '',
          sdpMid: signal.sdpMid ?? null,
          sdpMLineIndex: signal.sdpMLineIndex ?? null,
          usernameFragment: signal.usernameFragment ?? null,
        };
        if (!this.#connection.remoteDescription) {
          this.#pendingCandidates.push(candidate);
          return;
        }
        await this.#addCandidate(candidate);
        return;
      }
      default:
        console.warn('switchyard: ignored peer signal of unknown kind', signal.kind);
    }
  }

  /** Sends one control message as JSON. Returns false when the channel is not open. */
  sendControl(message) {
    if (this.#control.readyState !== 'open') {
      return false;
    }
    this.#control.send(JSON.stringify(message));
    return true;
  }

  /** Opens a new data channel for one transfer. */
  createChannel(label) {
    const channel = this.#connection.createDataChannel(label, { ordered: true });
    channel.binaryType = 'arraybuffer';
    return channel;
  }

  /** Closes the connection. `close` fires once, with `reason`. */
  close(reason = 'closed') {
    if (this.state === 'closed') {
      return;
    }
    this.state = 'closed';
    for (const timer of this.#timers) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    this.#timers.clear();
    this.#connection.close();
    this.dispatchEvent(new CustomEvent('close', { detail: { reason } }));
  }

  #wire() {
    const connection = this.#connection;
    connection.addEventListener('icecandidate', ({ candidate }) => {
      // A null candidate means gathering finished; the protocol sends that as an empty string.
      const signal = {
        kind: 'candidate',
        candidate: candidate?.candidate ?? '',
        sdpMid: candidate?.sdpMid ?? null,
        sdpMLineIndex: candidate?.sdpMLineIndex ?? null,
      };
      if (candidate?.usernameFragment) {
        signal.usernameFragment = candidate.usernameFragment;
      }
      this.#sendSignal(signal);
    });
    connection.addEventListener('connectionstatechange', () => this.#onConnectionState());
    connection.addEventListener('datachannel', ({ channel }) => {
      channel.binaryType = 'arraybuffer';
      this.dispatchEvent(new CustomEvent('datachannel', { detail: { channel } }));
    });

    this.#control.addEventListener('open', () => this.#onOpen());
    this.#control.addEventListener('close', () => this.#fail('the data channel closed'));
    this.#control.addEventListener('message', ({ data }) => {
      let message;
      try {
        message = JSON.parse(data);
      } catch (error) {
        console.warn('switchyard: ignored a control message that is not JSON', error);
        return;
      }
      this.dispatchEvent(new CustomEvent('message', { detail: message }));
    });
  }

  #onOpen() {
    if (this.state !== 'connecting') {
      return;
    }
    this.state = 'open';
    for (const timer of this.#timers) {
      clearTimeout(timer);
    }
    this.#timers.clear();
    this.#disconnectedTimer = null;
    this.dispatchEvent(new CustomEvent('open'));
    this.#updatePath();
    const poll = setInterval(() => this.#updatePath(), PATH_POLL_MS);
    this.#timers.add(poll);
  }

  #onConnectionState() {
    const state = this.#connection.connectionState;
    if (state === 'failed' || state === 'closed') {
      this.#fail(`the peer connection ${state}`);
      return;
    }
    if (state === 'disconnected' && this.#disconnectedTimer === null) {
      this.#disconnectedTimer = this.#later(() => {
        if (this.#connection.connectionState === 'disconnected') {
          this.#fail('the peer connection stayed disconnected');
        }
      }, DISCONNECTED_GRACE_MS);
      return;
    }
    if (state === 'connected' && this.#disconnectedTimer !== null) {
      clearTimeout(this.#disconnectedTimer);
      this.#timers.delete(this.#disconnectedTimer);
      this.#disconnectedTimer = null;
    }
  }

  #fail(reason) {
    this.close(reason);
  }

  /** Reads the selected candidate pair and emits `path` when it changed. */
  async #updatePath() {
    let path = null;
    try {
      path = await readPath(this.#connection);
    } catch (error) {
      console.warn('switchyard: getStats failed', error);
    }
    if (path && path !== this.path && this.state === 'open') {
      this.path = path;
      this.dispatchEvent(new CustomEvent('path', { detail: { path } }));
    }
  }

  async #applyPendingCandidates() {
    for (const candidate of this.#pendingCandidates.splice(0)) {
      await this.#addCandidate(candidate);
    }
  }

  async #addCandidate(candidate) {
    try {
      await this.#connection.addIceCandidate(candidate);
    } catch (error) {
      // One bad candidate does not end the connection: ICE goes on with the others.
      console.warn('switchyard: could not add a peer candidate', candidate.candidate, error);
    }
  }

  #later(callback, delayMs) {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      callback();
    }, delayMs);
    this.#timers.add(timer);
    return timer;
  }
}

/**
 * Returns `relayed` when the selected candidate pair of `connection` has a relayed candidate on
 * either side, `direct` when it has none, or null while no pair is selected.
 */
export async function readPath(connection) {
  const report = await connection.getStats();
  let pairId = null;
  report.forEach((stats) => {
    if (stats.type === 'transport' && stats.selectedCandidatePairId) {
      pairId = stats.selectedCandidatePairId;
    }
  });
  const pair = pairId ? report.get(pairId) : null;
  if (!pair) {
    return null;
  }
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  const relayed = local?.candidateType === 'relay' || remote?.candidateType === 'relay';
  return relayed ? 'relayed' : 'direct';
}

/** Returns a random id of 32 hex digits. */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}
