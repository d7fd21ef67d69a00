// WebSocket transport for the Switchyard signaling protocol.
//
// Every frame is one JSON object with a `type` field. This module only moves messages; the
// meaning of each message lives in call.js.

/** Returns the signaling URL on the server that served this page. */
export function signalingUrl(location) {
  const url = new URL('/v1/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

/**
 * One WebSocket connection to the signaling server.
 *
 * Events:
 * - `message` with `detail` set to the parsed server message.
 * - `state` with `detail` `{ state, code, reason }`, where `state` is `connecting`, `open` or
 *   `closed`; `code` and `reason` are set on `closed` only.
 * - `invalid` with `detail` `{ data, error }` when a frame is not a JSON object with a `type`.
 */
export class SignalingClient extends EventTarget {
  #url;
  #socket = null;
  #state = 'idle';

  constructor(url) {
    super();
    this.#url = url;
  }

  /** Current state: `idle`, `connecting`, `open` or `closed`. */
  get state() {
    return this.#state;
  }

  /** Opens the connection. Resolves once it is open and rejects if it closes first. */
  connect() {
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    this.#setState('connecting');

    return new Promise((resolve, reject) => {
      socket.addEventListener('open', () => {
        this.#setState('open');
        resolve();
      });
      socket.addEventListener('close', (event) => {
        this.#setState('closed', event.code, event.reason);
        reject(new Error(`WebSocket to ${this.#url} closed with code ${event.code}`));
      });
      socket.addEventListener('message', (event) => this.#receive(event.data));
    });
  }

  /** Sends one message. Returns false when the connection is not open, so nothing was sent. */
  send(message) {
    if (this.#socket?.readyState !== WebSocket.OPEN) {
      console.warn('switchyard: signaling is not open, dropped message', message.type);
      return false;
    }
    this.#socket.send(JSON.stringify(message));
    return true;
  }

  /** Closes the connection with a normal close code. */
  close(reason = 'client closed') {
    if (this.#socket && this.#socket.readyState < WebSocket.CLOSING) {
      this.#socket.close(1000, reason);
    }
  }

  #receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (error) {
      this.#dispatch('invalid', { data, error });
      return;
    }
    if (message === null || typeof message !== 'object' || typeof message.type !== 'string') {
      this.#dispatch('invalid', { data, error: new Error('missing "type" field') });
      return;
    }
    this.#dispatch('message', message);
  }

  #setState(state, code = null, reason = null) {
    this.#state = state;
    this.#dispatch('state', { state, code, reason });
  }

  #dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
