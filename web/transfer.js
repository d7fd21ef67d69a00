// Direct file transfer between participants of a room, over WebRTC data channels that
// peer.js opens. docs/file-transfer.md describes the protocol.
//
// The sender reads the file one chunk at a time with `File.slice`, waits whenever the channel
// buffers more than HIGH_WATER_BYTES, and hashes each chunk once with the incremental SHA-256.
// The receiver hashes what arrives, acknowledges every ACK_EVERY_CHUNKS chunks, and collects
// the chunks in Blobs of BLOB_PART_CHUNKS chunks each, so its JavaScript heap keeps at most one
// such part. When the connection drops, both sides keep their state; once a new connection
// opens, the sender offers the file again and the receiver answers with the number of chunks
// it already holds, from which the sender goes on.

import { PeerLink, randomId } from './peer.js';
import { rtcConfiguration } from './ice.js';
import { Sha256 } from './sha256.js';
import {
  CHUNK_BYTES,
  MAX_OFFERED_NAME_CHARS,
  RateMeter,
  chunkCount,
  decodeChunk,
  encodeChunk,
  formatBytes,
  sanitizeFileName,
} from './transfer-files.js';

// The sender stops queueing chunks while the channel buffers more than this many bytes, and
// goes on when the buffer drains to LOW_WATER_BYTES (`bufferedAmountLowThreshold`).
const HIGH_WATER_BYTES = 4 * 1024 * 1024;
const LOW_WATER_BYTES = 1024 * 1024;
const ACK_EVERY_CHUNKS = 16;
// Received chunks are moved into a Blob every 256 chunks (16 MiB).
const BLOB_PART_CHUNKS = 256;
// Reconnect attempts after a lost connection while transfers are unfinished. Attempt n waits
// n × RECONNECT_DELAY_MS, and the participant with the smaller id waits one delay longer, so the
// two sides rarely offer at the same time.
const RECONNECT_DELAY_MS = 1_000;
const MAX_RECONNECTS = 5;
// Progress events for one transfer are sent at most this often.
const PROGRESS_EVENT_MS = 100;

const UNFINISHED = new Set(['offered', 'pending', 'sending', 'receiving', 'interrupted', 'verifying']);

/**
 * File transfers of one session in a room.
 *
 * Events: `change` with `{ transfer }` (a snapshot, see `#snapshot`) whenever a transfer's state
 * or progress changes, `removed` with `{ key }`, `peers` when the list of participants changes,
 * and `notice` with `{ kind, text }` (`kind` is `error` or `info`) for the user.
 */
export class TransferManager extends EventTarget {
  #signaling;
  #relay;
  #selfId = null;
  #iceServers = [];
  #maxFileSize = 0;
  // Participant id to display name, without this participant.
  #peers = new Map();
  #links = new Map();
  #reconnects = new Map();
  // Transfers by `${peerId}/${direction}/${id}`.
  #transfers = new Map();
  // Transfers declined or cancelled, so a repeated offer gets the same answer.
  #closedIds = new Set();
  // Request ids of `peer_signal` requests, to the participant they address.
  #signalRequests = new Map();
  #signalQueue = Promise.resolve();
  #closed = false;
  /**
   * Hooks for tests: `corruptNextChunk` flips one byte of the next chunk sent, and
   * `dropAtChunk` set to N closes every peer connection once an incoming file has N chunks.
   */
  debug = { corruptNextChunk: false, dropAtChunk: null };

  /**
   * @param {SignalingClient} signaling the session's signaling connection
   * @param {{relay?: 'udp'|'tcp'|null}} options `relay` forces the peer connections through
   *   the TURN server over that transport, as for the calls
   */
  constructor(signaling, { relay = null } = {}) {
    super();
    this.#signaling = signaling;
    this.#relay = relay;
    this.onMessage = (event) => this.#onServerMessage(event.detail);
    signaling.addEventListener('message', this.onMessage);
  }

  /** Largest file size in bytes the server allows, 0 before `joined`. */
  get maxFileSize() {
    return this.#maxFileSize;
  }

  /** The other participants as `[id, name]` pairs, in join order. */
  get peers() {
    return [...this.#peers];
  }

  /** Snapshots of every transfer. */
  list() {
    return [...this.#transfers.values()].map((transfer) => this.#snapshot(transfer));
  }

  /** The current peer connection with `peerId`, or null. */
  link(peerId) {
    return this.#links.get(peerId) ?? null;
  }

  /**
   * Offers `file` to participant `peerId`. Returns the transfer's key, or null when the file
   * cannot be sent, and then a `notice` gives the reason.
   */
  send(peerId, file) {
    const name = this.#peers.get(peerId);
    if (name === undefined) {
      this.#notice('error', 'Choose a participant to send the file to.');
      return null;
    }
    if (this.#maxFileSize > 0 && file.size > this.#maxFileSize) {
      this.#notice(
        'error',
        `"${file.name}" is ${formatBytes(file.size)}, but this server allows files up to ` +
          `${formatBytes(this.#maxFileSize)}.`,
      );
      return null;
    }
    const transfer = {
      key: null,
      id: randomId(),
      peerId,
      direction: 'send',
      name: file.name,
      size: file.size,
      mime: file.type,
      chunks: chunkCount(file.size),
      state: 'offered',
      file,
      hash: new Sha256(),
      hashedChunks: 0,
      digest: null,
      generation: 0,
      channel: null,
      confirmedChunks: 0,
      bytesSent: 0,
      resumedFrom: [],
      message: null,
      meter: new RateMeter(),
    };
    transfer.key = transferKey(peerId, 'send', transfer.id);
    this.#transfers.set(transfer.key, transfer);
    this.#changed(transfer, true);
    this.#offer(transfer);
    return transfer.key;
  }

  /** Accepts an incoming transfer. */
  accept(key) {
    const transfer = this.#transfers.get(key);
    if (transfer?.direction !== 'receive' || transfer.state !== 'pending') {
      return;
    }
    transfer.state = 'receiving';
    transfer.message = null;
    this.#control(transfer.peerId, { type: 'file_accept', id: transfer.id, from: 0 });
    this.#changed(transfer, true);
  }

  /** Declines an incoming transfer; nothing of it is kept. */
  decline(key) {
    const transfer = this.#transfers.get(key);
    if (transfer?.direction !== 'receive' || transfer.state !== 'pending') {
      return;
    }
    this.#control(transfer.peerId, { type: 'file_decline', id: transfer.id });
    this.#closedIds.add(transfer.id);
    this.#forget(transfer);
  }

  /** Cancels an unfinished transfer in either direction and tells the other side. */
  cancel(key) {
    const transfer = this.#transfers.get(key);
    if (!transfer || !UNFINISHED.has(transfer.state)) {
      return;
    }
    this.#control(transfer.peerId, { type: 'file_cancel', id: transfer.id });
    this.#finish(transfer, 'cancelled', 'Cancelled.');
  }

  /** Forgets a finished transfer, or declines or cancels an unfinished one first. */
  remove(key) {
    const transfer = this.#transfers.get(key);
    if (!transfer) {
      return;
    }
    if (transfer.state === 'pending') {
      this.decline(key);
      return;
    }
    if (UNFINISHED.has(transfer.state)) {
      this.cancel(key);
    }
    this.#forget(transfer);
  }

  #forget(transfer) {
    transfer.generation += 1;
    clearTimeout(transfer.changeTimer);
    this.#release(transfer);
    this.#transfers.delete(transfer.key);
    this.dispatchEvent(new CustomEvent('removed', { detail: { key: transfer.key } }));
  }

  /** The received file of a completed incoming transfer as a Blob, or null. */
  blob(key) {
    return this.#transfers.get(key)?.blob ?? null;
  }

  /** Closes every peer connection at once, as if the network dropped. For tests. */
  dropConnections() {
    for (const link of this.#links.values()) {
      link.close('dropped on request');
    }
  }

  /** Closes every peer connection and stops all transfers without telling anyone. */
  close() {
    this.#closed = true;
    this.#signaling.removeEventListener('message', this.onMessage);
    for (const link of this.#links.values()) {
      link.close('left the room');
    }
    for (const transfer of this.#transfers.values()) {
      transfer.generation += 1;
      this.#release(transfer);
    }
    this.#links.clear();
  }

  // --- Server messages ---

  #onServerMessage(message) {
    if (this.#closed) {
      return;
    }
    switch (message.type) {
      case 'joined':
        this.#selfId = message.participantId;
        this.#iceServers = message.iceServers ?? [];
        this.#maxFileSize = message.maxFileSize ?? 0;
        for (const participant of message.participants ?? []) {
          this.#peers.set(participant.id, participant.name);
        }
        this.#emit('peers', {});
        return;
      case 'participant_joined':
        this.#peers.set(message.participant.id, message.participant.name);
        this.#emit('peers', {});
        return;
      case 'participant_left':
        this.#onPeerLeft(message.participantId);
        return;
      case 'peer_signal':
        this.#signalQueue = this.#signalQueue
          .then(() => this.#onPeerSignal(message))
          .catch((error) => console.error('switchyard: handling a peer signal failed', error));
        return;
      case 'ok':
      case 'error':
        this.#onReply(message);
        return;
      default:
    }
  }

  #onReply(message) {
    const peerId = this.#signalRequests.get(message.requestId);
    if (peerId === undefined) {
      return;
    }
    this.#signalRequests.delete(message.requestId);
    if (message.type !== 'error') {
      return;
    }
    const name = this.#peers.get(peerId) ?? 'the participant';
    const reason = `The server did not pass the connection request to ${name} on: ` +
      `${message.code}, ${message.message}`;
    this.#failPeer(peerId, reason);
    this.#links.get(peerId)?.close(reason);
  }

  #onPeerLeft(peerId) {
    const name = this.#peers.get(peerId) ?? 'The participant';
    this.#peers.delete(peerId);
    this.#emit('peers', {});
    this.#failPeer(peerId, `${name} left the room.`);
    this.#links.get(peerId)?.close('the participant left');
    this.#links.delete(peerId);
  }

  async #onPeerSignal({ from, session, signal }) {
    if (!this.#peers.has(from) || typeof session !== 'string' || !signal) {
      return;
    }
    const link = this.#links.get(from);
    if (link && link.session === session) {
      await link.handleSignal(signal);
      return;
    }
    if (signal.kind !== 'offer') {
      // A late answer or candidate of a connection that was replaced.
      return;
    }
    // Both sides offered at once: the offer of the participant with the greater id wins.
    if (link?.state === 'connecting' && link.offerer && this.#selfId > from) {
      return;
    }
    const replacement = this.#createLink(from, session, false);
    link?.close('replaced by a new connection');
    await replacement.handleSignal(signal);
  }

  // --- Peer connections ---

  #ensureLink(peerId) {
    const link = this.#links.get(peerId);
    if (link && link.state !== 'closed') {
      return link;
    }
    const created = this.#createLink(peerId, randomId(), true);
    created.start().catch((error) => {
      console.error('switchyard: creating a peer offer failed', error);
      created.close(`creating the offer failed: ${error.message}`);
    });
    return created;
  }

  #createLink(peerId, session, offerer) {
    const link = new PeerLink({
      session,
      offerer,
      configuration: rtcConfiguration(this.#iceServers, this.#relay),
      sendSignal: (signal) => this.#sendSignal(peerId, session, signal),
    });
    this.#links.set(peerId, link);
    link.addEventListener('open', () => this.#onLinkOpen(peerId, link));
    link.addEventListener('close', ({ detail }) => this.#onLinkClose(peerId, link, detail.reason));
    link.addEventListener('message', ({ detail }) => this.#onControl(peerId, link, detail));
    link.addEventListener('datachannel', ({ detail }) => this.#onChannel(peerId, detail.channel));
    link.addEventListener('path', () => {
      for (const transfer of this.#transfersWith(peerId)) {
        this.#changed(transfer, true);
      }
    });
    return link;
  }

  #sendSignal(peerId, session, signal) {
    if (this.#closed) {
      return;
    }
    const id = this.#signaling.request({ type: 'peer_signal', to: peerId, session, signal });
    this.#signalRequests.set(id, peerId);
  }

  #onLinkOpen(peerId, link) {
    if (this.#links.get(peerId) !== link) {
      return;
    }
    this.#reconnects.delete(peerId);
    // Offer every unfinished outgoing file again: the receiver answers with what it holds.
    for (const transfer of this.#transfersWith(peerId)) {
      if (transfer.direction === 'send' && UNFINISHED.has(transfer.state)) {
        this.#sendOffer(transfer, link);
      }
    }
  }

  #onLinkClose(peerId, link, reason) {
    for (const transfer of this.#transfersWith(peerId)) {
      if (transfer.link === link && ['sending', 'receiving', 'verifying'].includes(transfer.state)) {
        this.#interrupt(transfer, reason);
      }
    }
    if (this.#links.get(peerId) !== link || this.#closed) {
      return;
    }
    const unfinished = this.#transfersWith(peerId).some((t) => UNFINISHED.has(t.state));
    if (!unfinished || !this.#peers.has(peerId)) {
      return;
    }
    const attempt = (this.#reconnects.get(peerId) ?? 0) + 1;
    if (attempt > MAX_RECONNECTS) {
      const name = this.#peers.get(peerId);
      this.#failPeer(peerId, `Could not reconnect to ${name} after ${MAX_RECONNECTS} attempts.`);
      return;
    }
    this.#reconnects.set(peerId, attempt);
    const delay = RECONNECT_DELAY_MS * (attempt + (this.#selfId < peerId ? 1 : 0));
    setTimeout(() => {
      if (!this.#closed && this.#peers.has(peerId)) {
        this.#ensureLink(peerId);
      }
    }, delay);
  }

  #interrupt(transfer, reason) {
    transfer.generation += 1;
    transfer.channel?.close();
    transfer.channel = null;
    transfer.link = null;
    transfer.state = 'interrupted';
    transfer.message = `Connection lost (${reason}); resuming when it is back.`;
    transfer.meter.reset();
    this.#changed(transfer, true);
  }

  // --- Control messages ---

  #control(peerId, message) {
    return this.#links.get(peerId)?.sendControl(message) ?? false;
  }

  #onControl(peerId, link, message) {
    const id = typeof message?.id === 'string' ? message.id : null;
    if (!id) {
      return;
    }
    const outgoing = this.#transfers.get(transferKey(peerId, 'send', id));
    const incoming = this.#transfers.get(transferKey(peerId, 'receive', id));
    switch (message.type) {
      case 'file_offer':
        return this.#onOffer(peerId, link, message, incoming);
      case 'file_accept':
        return this.#onAccept(peerId, link, message, outgoing);
      case 'file_decline':
        if (outgoing && UNFINISHED.has(outgoing.state)) {
          this.#finish(outgoing, 'declined', `${this.#peerName(peerId)} declined the file.`);
        }
        return;
      case 'file_ack':
        if (outgoing && Number.isInteger(message.chunks)) {
          outgoing.confirmedChunks = Math.min(
            outgoing.chunks,
            Math.max(outgoing.confirmedChunks, message.chunks),
          );
          this.#changed(outgoing);
        }
        return;
      case 'file_done':
        return this.#onDone(peerId, message, outgoing);
      case 'file_cancel': {
        const transfer = outgoing ?? incoming;
        if (transfer && UNFINISHED.has(transfer.state)) {
          this.#finish(transfer, 'cancelled', `${this.#peerName(peerId)} cancelled the transfer.`);
        } else if (!transfer) {
          this.#closedIds.add(id);
        }
        return;
      }
      default:
        console.warn('switchyard: ignored control message of unknown type', message.type);
    }
  }

  // --- Sending ---

  #offer(transfer) {
    const link = this.#ensureLink(transfer.peerId);
    if (link.state === 'open') {
      this.#sendOffer(transfer, link);
    }
  }

  #sendOffer(transfer, link) {
    link.sendControl({
      type: 'file_offer',
      id: transfer.id,
      name: transfer.name,
      size: transfer.size,
      mime: transfer.mime,
      chunkSize: CHUNK_BYTES,
    });
  }

  #onAccept(peerId, link, message, transfer) {
    if (!transfer) {
      link.sendControl({ type: 'file_cancel', id: message.id });
      return;
    }
    if (!UNFINISHED.has(transfer.state)) {
      if (transfer.state !== 'complete') {
        link.sendControl({ type: 'file_cancel', id: transfer.id });
      }
      return;
    }
    const from = message.from;
    if (!Number.isInteger(from) || from < 0 || from > transfer.chunks) {
      link.sendControl({ type: 'file_cancel', id: transfer.id });
      this.#finish(transfer, 'failed', `${this.#peerName(peerId)} asked for chunk ${from}, which does not exist.`);
      return;
    }
    if (transfer.link === link && transfer.state === 'sending') {
      // A repeated accept on the connection that is already sending.
      return;
    }
    if (from > 0 || transfer.resumedFrom.length > 0) {
      transfer.resumedFrom.push(from);
    }
    this.#sendChunks(transfer, link, from).catch((error) => {
      console.error('switchyard: sending a file failed', error);
      this.#finish(transfer, 'failed', `Reading or sending the file failed: ${error.message}`);
    });
  }

  async #sendChunks(transfer, link, from) {
    const generation = ++transfer.generation;
    const current = () => transfer.generation === generation;
    transfer.link = link;
    transfer.state = 'sending';
    transfer.message = null;
    transfer.confirmedChunks = Math.max(transfer.confirmedChunks, from);
    transfer.meter.reset();
    this.#changed(transfer, true);

    const channel = link.createChannel(`file:${transfer.id}`);
    transfer.channel = channel;
    channel.bufferedAmountLowThreshold = LOW_WATER_BYTES;
    if (!(await channelOpened(channel)) || !current()) {
      return;
    }

    // Chunks below `from` that were never read (possible only after a repeated accept) are
    // hashed without being sent, so the digest still covers the whole file.
    while (transfer.hashedChunks < from) {
      transfer.hash.update(await readChunk(transfer.file, transfer.hashedChunks));
      transfer.hashedChunks += 1;
    }
    // The next chunk is read while the current one waits for buffer space.
    let nextRead = from < transfer.chunks ? readChunk(transfer.file, from) : null;
    for (let index = from; index < transfer.chunks; index += 1) {
      const read = nextRead;
      nextRead = index + 1 < transfer.chunks ? readChunk(transfer.file, index + 1) : null;
      if (channel.bufferedAmount > HIGH_WATER_BYTES && !(await drained(channel))) {
        return;
      }
      const payload = await read;
      if (!current()) {
        return;
      }
      if (index === transfer.hashedChunks) {
        transfer.hash.update(payload);
        transfer.hashedChunks += 1;
      }
      const frame = encodeChunk(index, payload);
      if (this.debug.corruptNextChunk && frame.length > 4) {
        this.debug.corruptNextChunk = false;
        frame[frame.length - 1] ^= 0xff;
      }
      if (!trySend(channel, frame)) {
        return;
      }
      transfer.bytesSent += payload.byteLength;
      this.#changed(transfer);
    }

    transfer.digest ??= transfer.hash.digestHex();
    if (!trySend(channel, JSON.stringify({ type: 'end', chunks: transfer.chunks, sha256: transfer.digest }))) {
      return;
    }
    transfer.state = 'verifying';
    transfer.message = `Waiting for ${this.#peerName(transfer.peerId)} to check the SHA-256 digest.`;
    this.#changed(transfer, true);
  }

  #onDone(peerId, message, transfer) {
    if (!transfer || !UNFINISHED.has(transfer.state)) {
      return;
    }
    transfer.confirmedChunks = transfer.chunks;
    if (message.ok === true && message.sha256 === transfer.digest) {
      this.#finish(transfer, 'complete', `Delivered; ${this.#peerName(peerId)} verified the SHA-256 digest.`);
    } else {
      this.#finish(
        transfer,
        'failed',
        `${this.#peerName(peerId)} received the file, but its SHA-256 digest does not match.`,
      );
    }
  }

  // --- Receiving ---

  #onOffer(peerId, link, message, transfer) {
    const { id } = message;
    if (transfer) {
      this.#answerRepeatedOffer(link, transfer);
      return;
    }
    if (this.#closedIds.has(id)) {
      link.sendControl({ type: 'file_cancel', id });
      return;
    }
    const problem = this.#checkOffer(message);
    if (problem) {
      link.sendControl({ type: 'file_decline', id, reason: problem });
      this.#notice('error', `${this.#peerName(peerId)} offered a file that was declined: ${problem}`);
      return;
    }
    const created = {
      key: transferKey(peerId, 'receive', id),
      id,
      peerId,
      direction: 'receive',
      name: message.name,
      savedName: sanitizeFileName(message.name),
      size: message.size,
      mime: typeof message.mime === 'string' ? message.mime : '',
      chunks: chunkCount(message.size),
      state: 'pending',
      hash: new Sha256(),
      receivedChunks: 0,
      receivedBytes: 0,
      parts: [],
      pendingParts: [],
      blob: null,
      digest: null,
      generation: 0,
      channel: null,
      link: null,
      message: null,
      meter: new RateMeter(),
    };
    this.#transfers.set(created.key, created);
    this.#changed(created, true);
  }

  /** Returns why an offer cannot be accepted, or null when it can. */
  #checkOffer({ name, size, chunkSize }) {
    if (typeof name !== 'string' || name.length > MAX_OFFERED_NAME_CHARS) {
      return `the file name is missing or longer than ${MAX_OFFERED_NAME_CHARS} characters`;
    }
    if (!Number.isSafeInteger(size) || size < 0) {
      return 'the file size is invalid';
    }
    if (chunkSize !== CHUNK_BYTES) {
      return `chunks of ${chunkSize} bytes are not supported, only ${CHUNK_BYTES}`;
    }
    if (this.#maxFileSize > 0 && size > this.#maxFileSize) {
      return `"${name}" is ${formatBytes(size)}, over this server's limit of ${formatBytes(this.#maxFileSize)}`;
    }
    return null;
  }

  #answerRepeatedOffer(link, transfer) {
    switch (transfer.state) {
      case 'receiving':
      case 'interrupted':
      case 'verifying':
        transfer.generation += 1;
        transfer.channel?.close();
        transfer.channel = null;
        transfer.link = link;
        transfer.state = 'receiving';
        transfer.message = null;
        link.sendControl({ type: 'file_accept', id: transfer.id, from: transfer.receivedChunks });
        this.#changed(transfer, true);
        return;
      case 'complete':
      case 'failed':
        link.sendControl({ type: 'file_done', id: transfer.id, ok: transfer.state === 'complete', sha256: transfer.digest });
        return;
      case 'cancelled':
        link.sendControl({ type: 'file_cancel', id: transfer.id });
        return;
      default:
      // Still waiting for the user to accept or decline.
    }
  }

  #onChannel(peerId, channel) {
    const id = channel.label.startsWith('file:') ? channel.label.slice('file:'.length) : null;
    const transfer = id ? this.#transfers.get(transferKey(peerId, 'receive', id)) : null;
    if (!transfer || transfer.state !== 'receiving') {
      channel.close();
      return;
    }
    transfer.channel?.close();
    transfer.channel = channel;
    transfer.link = this.#links.get(peerId) ?? null;
    const generation = ++transfer.generation;
    channel.addEventListener('message', ({ data }) => {
      if (transfer.generation !== generation) {
        return;
      }
      if (typeof data === 'string') {
        this.#onEnd(transfer, data);
      } else {
        this.#onChunk(transfer, data);
      }
    });
  }

  #onChunk(transfer, data) {
    const chunk = decodeChunk(data);
    const expectedBytes = Math.min(CHUNK_BYTES, transfer.size - transfer.receivedChunks * CHUNK_BYTES);
    if (!chunk || chunk.index !== transfer.receivedChunks || chunk.payload.byteLength !== expectedBytes) {
      const got = chunk ? `chunk ${chunk.index} of ${chunk.payload.byteLength} bytes` : 'a malformed chunk';
      this.#protocolError(transfer, `expected chunk ${transfer.receivedChunks} of ${expectedBytes} bytes, got ${got}`);
      return;
    }
    transfer.hash.update(chunk.payload);
    transfer.pendingParts.push(chunk.payload);
    transfer.receivedChunks += 1;
    transfer.receivedBytes += chunk.payload.byteLength;
    if (transfer.pendingParts.length >= BLOB_PART_CHUNKS) {
      transfer.parts.push(new Blob(transfer.pendingParts));
      transfer.pendingParts = [];
    }
    if (transfer.receivedChunks % ACK_EVERY_CHUNKS === 0) {
      this.#control(transfer.peerId, { type: 'file_ack', id: transfer.id, chunks: transfer.receivedChunks });
    }
    this.#changed(transfer);
    if (this.debug.dropAtChunk === transfer.receivedChunks) {
      this.debug.dropAtChunk = null;
      this.dropConnections();
    }
  }

  #onEnd(transfer, data) {
    let end;
    try {
      end = JSON.parse(data);
    } catch {
      end = null;
    }
    if (end?.type !== 'end' || typeof end.sha256 !== 'string') {
      this.#protocolError(transfer, 'the end message is malformed');
      return;
    }
    if (transfer.receivedChunks !== transfer.chunks) {
      this.#protocolError(transfer, `the file ended after ${transfer.receivedChunks} of ${transfer.chunks} chunks`);
      return;
    }
    this.#control(transfer.peerId, { type: 'file_ack', id: transfer.id, chunks: transfer.receivedChunks });
    transfer.digest = transfer.hash.digestHex();
    const ok = transfer.digest === end.sha256.toLowerCase();
    if (ok) {
      transfer.blob = new Blob([...transfer.parts, ...transfer.pendingParts], { type: transfer.mime });
    }
    transfer.parts = [];
    transfer.pendingParts = [];
    this.#control(transfer.peerId, { type: 'file_done', id: transfer.id, ok, sha256: transfer.digest });
    if (ok) {
      this.#finish(transfer, 'complete', 'Received; the SHA-256 digest matches.');
    } else {
      this.#finish(
        transfer,
        'failed',
        `The SHA-256 digest does not match the sender's: the file was damaged on the way and was discarded.`,
      );
    }
  }

  #protocolError(transfer, detail) {
    this.#control(transfer.peerId, { type: 'file_cancel', id: transfer.id });
    this.#finish(transfer, 'failed', `Transfer stopped: ${detail}.`);
  }

  // --- Shared ---

  #finish(transfer, state, message) {
    transfer.generation += 1;
    transfer.state = state;
    transfer.message = message;
    transfer.channel?.close();
    transfer.channel = null;
    if (state !== 'complete') {
      this.#closedIds.add(transfer.id);
      this.#release(transfer);
    }
    if (state === 'complete' && transfer.direction === 'send') {
      transfer.confirmedChunks = transfer.chunks;
      transfer.file = null;
    }
    this.#changed(transfer, true);
    if (state === 'failed') {
      this.#notice('error', `${transfer.name}: ${message}`);
    }
  }

  /** Drops the received data and the file reference of a transfer. */
  #release(transfer) {
    transfer.parts = [];
    transfer.pendingParts = [];
    transfer.blob = null;
    transfer.file = null;
  }

  #failPeer(peerId, message) {
    for (const transfer of this.#transfersWith(peerId)) {
      if (UNFINISHED.has(transfer.state)) {
        this.#finish(transfer, 'failed', message);
      }
    }
  }

  #transfersWith(peerId) {
    return [...this.#transfers.values()].filter((transfer) => transfer.peerId === peerId);
  }

  #peerName(peerId) {
    return this.#peers.get(peerId) ?? 'The other participant';
  }

  /** Emits `change` for `transfer` now, or at most every PROGRESS_EVENT_MS unless `now`. */
  #changed(transfer, now = false) {
    if (now) {
      clearTimeout(transfer.changeTimer);
      transfer.changeTimer = null;
      this.#emit('change', { transfer: this.#snapshot(transfer) });
      return;
    }
    if (transfer.changeTimer) {
      return;
    }
    transfer.changeTimer = setTimeout(() => {
      transfer.changeTimer = null;
      if (this.#transfers.has(transfer.key)) {
        this.#emit('change', { transfer: this.#snapshot(transfer) });
      }
    }, PROGRESS_EVENT_MS);
  }

  #snapshot(transfer) {
    const done = transfer.direction === 'send'
      ? Math.min(transfer.size, transfer.confirmedChunks * CHUNK_BYTES)
      : transfer.receivedBytes;
    const finished = transfer.state === 'complete';
    transfer.meter.update(done);
    const speed = transfer.meter.bytesPerSecond;
    let secondsLeft = Infinity;
    if (finished) {
      secondsLeft = 0;
    } else if (speed > 0) {
      secondsLeft = (transfer.size - done) / speed;
    }
    return Object.freeze({
      key: transfer.key,
      id: transfer.id,
      peerId: transfer.peerId,
      peerName: this.#peers.get(transfer.peerId) ?? null,
      direction: transfer.direction,
      name: transfer.name,
      savedName: transfer.savedName ?? null,
      size: transfer.size,
      state: transfer.state,
      doneBytes: finished ? transfer.size : done,
      bytesPerSecond: speed,
      secondsLeft,
      path: this.#links.get(transfer.peerId)?.path ?? null,
      message: transfer.message,
      digest: transfer.digest,
      bytesSent: transfer.bytesSent ?? null,
      resumedFrom: [...(transfer.resumedFrom ?? [])],
      hasBlob: Boolean(transfer.blob),
    });
  }

  #notice(kind, text) {
    this.#emit('notice', { kind, text });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function transferKey(peerId, direction, id) {
  return `${peerId}/${direction}/${id}`;
}

function readChunk(file, index) {
  const start = index * CHUNK_BYTES;
  return file.slice(start, Math.min(file.size, start + CHUNK_BYTES)).arrayBuffer();
}

/** Resolves true once `channel` is open, or false when it closes first. */
function channelOpened(channel) {
  if (channel.readyState === 'open') {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    channel.addEventListener('open', () => resolve(true), { once: true });
    channel.addEventListener('close', () => resolve(false), { once: true });
  });
}

/** Resolves true when `channel`'s buffer drained to its low threshold, false when it closed. */
function drained(channel) {
  return new Promise((resolve) => {
    channel.addEventListener('bufferedamountlow', () => resolve(true), { once: true });
    channel.addEventListener('close', () => resolve(false), { once: true });
  });
}

function trySend(channel, data) {
  if (channel.readyState !== 'open') {
    return false;
  }
  try {
    channel.send(data);
    return true;
  } catch (error) {
    console.warn('switchyard: sending on a data channel failed', error);
    return false;
  }
}
