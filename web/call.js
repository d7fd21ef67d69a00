// One session in a room: the join handshake and the two peer connections with the server.
//
// The publisher connection carries the local tracks to the server; this client makes its offers.
// The subscriber connection carries the other participants' tracks; the server makes its offers
// and this client answers. Server messages are handled strictly in arrival order, one at a time,
// so that a candidate never overtakes the offer or answer it belongs to.

import { rtcConfiguration } from './ice.js';

const TARGETS = ['publisher', 'subscriber'];

/**
 * Call state machine on top of a SignalingClient.
 *
 * Events (all CustomEvent, payload in `detail`):
 * - `joined` `{ room, participantId, participants }`
 * - `participant-joined` `{ id, name }`, `participant-left` `{ participantId }`
 * - `track` `{ participantId, track }` when a remote track arrives on the subscriber connection
 * - `track-ended` `{ participantId, trackId }` when the server removes a remote track
 * - `connection-state` `{ target, state }` for each peer connection
 * - `server-error` `{ code, message }` for each `error` message from the server
 * - `failure` `{ message }` for errors inside the client, such as a rejected SDP
 */
export class Call extends EventTarget {
  #signaling;
  #localStream;
  #relay;
  #participantId = null;
  #room = null;
  #connections = { publisher: null, subscriber: null };
  // Server candidates that arrived before the remote description of their connection.
  #pendingRemote = { publisher: [], subscriber: [] };
  // Local candidates gathered before the offer or answer they belong to was sent.
  #pendingLocal = { publisher: [], subscriber: [] };
  #descriptionSent = { publisher: false, subscriber: false };
  #queue = Promise.resolve();
  #closed = false;
  #watchedStreams = new WeakSet();

  /**
   * @param {SignalingClient} signaling an open signaling connection
   * @param {MediaStream|null} localStream tracks to publish, or null to join without publishing
   * @param {{relay?: 'udp'|'tcp'|null}} options `relay` forces both connections through the
   *   TURN server over that transport (see `rtcConfiguration` in ice.js)
   */
  constructor(signaling, localStream, { relay = null } = {}) {
    super();
    this.#signaling = signaling;
    this.#localStream = localStream;
    this.#relay = relay;
    signaling.addEventListener('message', (event) => this.#enqueue(event.detail));
  }

  /** Id the server assigned at join, or null before `joined`. */
  get participantId() {
    return this.#participantId;
  }

  /** Room name the server confirmed, or null before `joined`. */
  get room() {
    return this.#room;
  }

  /** Publisher RTCPeerConnection, or null before `joined` and when nothing is published. */
  get publisher() {
    return this.#connections.publisher;
  }

  /** Subscriber RTCPeerConnection, or null before `joined`. */
  get subscriber() {
    return this.#connections.subscriber;
  }

  /**
   * Sends `join`, with the join token when one is given. The rest of the session follows from
   * the server's replies.
   */
  join(room, name, token = null) {
    const message = { type: 'join', room, name };
    if (token) {
      message.token = token;
    }
    this.#signaling.request(message);
  }

  /** Sends `leave` and closes both peer connections. */
  leave() {
    if (!this.#closed) {
      this.#signaling.request({ type: 'leave' });
    }
    this.close();
  }

  /** Closes both peer connections without telling the server. */
  close() {
    this.#closed = true;
    for (const target of TARGETS) {
      this.#connections[target]?.close();
      this.#emit('connection-state', { target, state: 'closed' });
    }
  }

  #enqueue(message) {
    this.#queue = this.#queue
      .then(() => this.#handle(message))
      .catch((error) => {
        console.error(`switchyard: handling "${message.type}" failed`, error);
        this.#emit('failure', { message: `Handling "${message.type}" failed: ${error.message}` });
      });
  }

  async #handle(message) {
    if (this.#closed) {
      return;
    }
    switch (message.type) {
      case 'joined':
        return this.#onJoined(message);
      case 'participant_joined':
        return this.#emit('participant-joined', message.participant);
      case 'participant_left':
        return this.#emit('participant-left', { participantId: message.participantId });
      case 'answer':
        return this.#onAnswer(message);
      case 'offer':
        return this.#onOffer(message);
      case 'candidate':
        return this.#onCandidate(message);
      case 'track_added':
        // The track itself arrives with the next subscriber offer, through `ontrack`.
        return;
      case 'track_removed':
        return this.#emit('track-ended', {
          participantId: message.participantId,
          trackId: message.trackId,
        });
      case 'error':
        return this.#emit('server-error', { code: message.code, message: message.message });
      case 'ok':
        // Success reply to a request that has no other reply.
        return;
      case 'peer_signal':
        // Peer-to-peer connections for file transfers; transfer.js handles them.
        return;
      default:
        console.warn('switchyard: ignored server message of unknown type', message.type);
    }
  }

  async #onJoined(message) {
    this.#participantId = message.participantId;
    this.#room = message.room;
    const configuration = rtcConfiguration(message.iceServers, this.#relay);
    if (this.#relay && configuration.iceServers.length === 0) {
      this.#emit('failure', {
        message: `The server offers no TURN server over ${this.#relay}, so relay=${this.#relay} cannot connect.`,
      });
    }

    this.#connections.subscriber = this.#createConnection('subscriber', configuration);
    this.#connections.subscriber.addEventListener('track', (event) => this.#onTrack(event));
    this.#emit('joined', {
      room: message.room,
      participantId: message.participantId,
      participants: message.participants ?? [],
    });

    const tracks = this.#localStream?.getTracks() ?? [];
    if (tracks.length === 0) {
      return;
    }
    const publisher = this.#createConnection('publisher', configuration);
    this.#connections.publisher = publisher;
    for (const track of tracks) {
      publisher.addTransceiver(track, { direction: 'sendonly', streams: [this.#localStream] });
    }
    const offer = await publisher.createOffer();
    await publisher.setLocalDescription(offer);
    this.#signaling.request({ type: 'offer', sdp: publisher.localDescription.sdp });
    this.#markDescriptionSent('publisher');
  }

  async #onAnswer({ sdp }) {
    const publisher = this.#connections.publisher;
    if (!publisher) {
      throw new Error('received an answer but no publisher offer was sent');
    }
    await publisher.setRemoteDescription({ type: 'answer', sdp });
    await this.#applyPendingCandidates('publisher');
  }

  async #onOffer({ sdp }) {
    const subscriber = this.#connections.subscriber;
    if (!subscriber) {
      throw new Error('received a subscriber offer before "joined"');
    }
    await subscriber.setRemoteDescription({ type: 'offer', sdp });
    await this.#applyPendingCandidates('subscriber');
    const answer = await subscriber.createAnswer();
    await subscriber.setLocalDescription(answer);
    this.#signaling.request({ type: 'answer', sdp: subscriber.localDescription.sdp });
    this.#markDescriptionSent('subscriber');
  }

  async #onCandidate(message) {
    const target = message.target ?? 'publisher';
    if (!TARGETS.includes(target)) {
      throw new Error(`candidate for unknown target "${target}"`);
    }
    const connection = this.#connections[target];
    if (!connection) {
      console.warn(`switchyard: dropped a ${target} candidate because that connection does not exist`);
      return;
    }
    const candidate = {
      candidate: message.candidate ?? '',
      sdpMid: message.sdpMid ?? null,
      sdpMLineIndex: message.sdpMLineIndex ?? null,
      usernameFragment: message.usernameFragment ?? null,
    };
    if (!connection.remoteDescription) {
      this.#pendingRemote[target].push(candidate);
      return;
    }
    await this.#addCandidate(connection, target, candidate);
  }

  async #applyPendingCandidates(target) {
    const pending = this.#pendingRemote[target].splice(0);
    for (const candidate of pending) {
      await this.#addCandidate(this.#connections[target], target, candidate);
    }
  }

  async #addCandidate(connection, target, candidate) {
    try {
      await connection.addIceCandidate(candidate);
    } catch (error) {
      // A single bad candidate does not end the session: ICE goes on with the others.
      const label = candidate.candidate === '' ? 'end-of-candidates' : candidate.candidate;
      console.warn(`switchyard: could not add ${target} candidate "${label}"`, error);
    }
  }

  #createConnection(target, configuration) {
    const connection = new RTCPeerConnection(configuration);
    connection.addEventListener('icecandidate', (event) => {
      this.#sendLocalCandidate(target, event.candidate);
    });
    connection.addEventListener('connectionstatechange', () => {
      this.#emit('connection-state', { target, state: connection.connectionState });
    });
    this.#emit('connection-state', { target, state: connection.connectionState });
    return connection;
  }

  #sendLocalCandidate(target, candidate) {
    // A null candidate means gathering finished; the protocol sends that as an empty string.
    const message = {
      type: 'candidate',
      target,
      candidate: candidate?.candidate ?? '',
      sdpMid: candidate?.sdpMid ?? null,
      sdpMLineIndex: candidate?.sdpMLineIndex ?? null,
    };
    if (candidate?.usernameFragment) {
      message.usernameFragment = candidate.usernameFragment;
    }
    if (this.#descriptionSent[target]) {
      this.#signaling.request(message);
    } else {
      this.#pendingLocal[target].push(message);
    }
  }

  #markDescriptionSent(target) {
    this.#descriptionSent[target] = true;
    for (const message of this.#pendingLocal[target].splice(0)) {
      this.#signaling.request(message);
    }
  }

  #onTrack(event) {
    const stream = event.streams[0];
    if (!stream) {
      console.warn('switchyard: remote track without a media stream, cannot map it to a participant');
      return;
    }
    const participantId = stream.id;
    const track = event.track;
    this.#emit('track', { participantId, track });

    // Renegotiation that removes a track takes it out of its stream. One listener per stream.
    if (!this.#watchedStreams.has(stream)) {
      this.#watchedStreams.add(stream);
      stream.addEventListener('removetrack', (removed) => {
        this.#emit('track-ended', { participantId, trackId: removed.track.id });
      });
    }
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
