// Transport for the Switchyard signaling protocol: a WebSocket, or Server-Sent Events with
// POST requests when the WebSocket cannot be opened.
//
// Every message is one JSON object with a `type` field. This module numbers requests, drops
// server messages it has already seen, acknowledges the rest, and resumes the session on a new
// connection when the WebSocket drops. The meaning of each message lives in call.js.

// Sequence numbers acknowledged at the latest after this many messages or this delay.
const ACK_EVERY_MESSAGES = 16;
const ACK_DELAY_MS = 250;
// Resume attempts after a lost WebSocket, with this delay before each. Together they stay
// inside the server's default grace period of 20 s.
const RESUME_DELAYS_MS = [0, 500, 1_000, 2_000, 4_000, 8_000];
// Close codes after which the session is over, so resuming is pointless.
const FINAL_CLOSE_CODES = new Set([1000, 1001, 1009, 4001, 4003]);

/** Returns the WebSocket signaling URL on the server that served this page. */
export function signalingUrl(location) {
  const url = new URL('/v1/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

/**
 * One signaling session with the server, over whichever transport works.
 *
 * Events:
 * - `message` with `detail` set to the parsed server message, once per sequence number.
 * - `state` with `detail` `{ state, code, reason, transport }`, where `state` is `connecting`,
 *   `open`, `reconnecting` or `closed`; `code` and `reason` are set on `closed` only.
 * - `invalid` with `detail` `{ data, error }` when a frame is not a JSON object with a `type`.
 * - `session-lost` when the server can no longer continue the session; join again.
 */
export class SignalingClient extends EventTarget {
  #url;
  #transport = null;
  #state = 'idle';
  #nextRequest = 1;
  #lastSeq = 0;
  #ackedSeq = 0;
  #ackTimer = null;
  #resumeToken = null;
  #closing = false;
  // Requests sent but not yet answered, by id, re-sent after a resume.
  #unanswered = new Map();

  /**
   * @param {string} url WebSocket URL of `/v1/ws`; the SSE endpoints are on the same host.
   * @param {{ transport?: 'auto' | 'websocket' | 'sse' }} options
   */
  constructor(url, { transport = 'auto' } = {}) {
    super();
    this.#url = url;
    this.preferred = transport;
  }

  /** Current state: `idle`, `connecting`, `open`, `reconnecting` or `closed`. */
  get state() {
    return this.#state;
  }

  /** `websocket` or `sse` once connected, else null. */
  get transport() {
    return this.#transport?.kind ?? null;
  }

  /** Sequence number of the last server message handled. */
  get lastSeq() {
    return this.#lastSeq;
  }

  /**
   * Opens the connection: the WebSocket, or SSE when the WebSocket closes before it opens.
   * Resolves once a transport is ready and rejects when none is.
   */
  async connect() {
    this.#setState('connecting');
    if (this.preferred !== 'sse') {
      try {
        this.#transport = await WebSocketTransport.open(this.#url, this.#handlers());
        this.#setState('open');
        return;
      } catch (error) {
        if (this.preferred === 'websocket') {
          this.#setState('closed', error.code ?? 1006, error.message);
          throw error;
        }
        console.warn('switchyard: WebSocket failed, falling back to Server-Sent Events', error);
      }
    }
    this.#transport = new SseTransport(this.#url, this.#handlers());
    this.#setState('open');
  }

  /**
   * Sends a request with a new request id and returns the id. While reconnecting the request
   * waits, and after a resume it is sent again; the server runs it at most once.
   */
  request(message) {
    const id = `r${this.#nextRequest++}`;
    const frame = { ...message, id };
    this.#unanswered.set(id, frame);
    this.#transport?.send(frame);
    return id;
  }

  /** Sends a message that is not a request, such as `ack`. Returns false when nothing was sent. */
  send(message) {
    return this.#transport?.send(message) ?? false;
  }

  /** Closes the connection with a normal close code. */
  close(reason = 'client closed') {
    this.#closing = true;
    clearTimeout(this.#ackTimer);
    this.#transport?.close(reason);
  }

  #handlers() {
    return {
      frame: (data) => this.#receive(data),
      lost: (code, reason) => this.#onLost(code, reason),
      token: () => this.#resumeToken,
      setToken: (token) => {
        this.#resumeToken = token;
      },
      lastSeq: () => this.#lastSeq,
      sessionLost: () => this.#sessionLost(),
    };
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
    if (typeof message.seq === 'number') {
      if (message.seq <= this.#lastSeq) {
        return;
      }
      this.#lastSeq = message.seq;
      this.#scheduleAck();
    }
    if (message.requestId !== undefined) {
      this.#unanswered.delete(message.requestId);
    }
    if (message.type === 'joined' && message.resumeToken) {
      this.#resumeToken = message.resumeToken;
    }
    if (message.type === 'resumed') {
      this.#onResumed(message);
      return;
    }
    this.#dispatch('message', message);
  }

  #scheduleAck() {
    if (this.#lastSeq - this.#ackedSeq >= ACK_EVERY_MESSAGES) {
      this.#sendAck();
      return;
    }
    if (this.#ackTimer === null) {
      this.#ackTimer = setTimeout(() => this.#sendAck(), ACK_DELAY_MS);
    }
  }

  #sendAck() {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    if (this.#lastSeq > this.#ackedSeq && this.send({ type: 'ack', seq: this.#lastSeq })) {
      this.#ackedSeq = this.#lastSeq;
    }
  }

  #onResumed(message) {
    if (!message.resumed) {
      this.#sessionLost();
      return;
    }
    this.#setState('open');
    for (const frame of this.#unanswered.values()) {
      // The session exists, so a join still waiting for its reply was handled: over SSE the
      // stream opens with `resumed` and then replays `joined`. Sending it again would get
      // `already_joined`.
      if (frame.type !== 'join') {
        this.#transport?.send(frame);
      }
    }
  }

  async #onLost(code, reason) {
    if (this.#closing || !this.#resumeToken || FINAL_CLOSE_CODES.has(code)) {
      this.#setState('closed', code, reason);
      return;
    }
    this.#setState('reconnecting');
    for (const delay of RESUME_DELAYS_MS) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (this.#closing) {
        return;
      }
      try {
        this.#transport = await WebSocketTransport.open(this.#url, this.#handlers());
      } catch (error) {
        console.warn('switchyard: reconnecting the WebSocket failed', error);
        continue;
      }
      this.#transport.sendFirst({ type: 'resume', token: this.#resumeToken, lastSeq: this.#lastSeq });
      return;
    }
    this.#setState('closed', code, reason);
  }

  #sessionLost() {
    this.#resumeToken = null;
    this.#closing = true;
    this.#transport?.close('session lost');
    this.#dispatch('session-lost', {});
  }

  #setState(state, code = null, reason = null) {
    this.#state = state;
    this.#dispatch('state', { state, code, reason, transport: this.transport });
  }

  #dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** One WebSocket. Messages sent before `open` or after `close` are dropped. */
class WebSocketTransport {
  kind = 'websocket';
  #socket;
  #handlers;
  #resuming = false;
  #queue = [];

  constructor(socket, handlers) {
    this.#socket = socket;
    this.#handlers = handlers;
    socket.addEventListener('message', (event) => handlers.frame(event.data));
    socket.addEventListener('close', (event) => handlers.lost(event.code, event.reason));
  }

  /** Resolves with an open transport, or rejects with the close event's code and reason. */
  static open(url, handlers) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      const failed = (event) => {
        const error = new Error(`WebSocket to ${url} closed with code ${event.code} before it opened`);
        error.code = event.code;
        reject(error);
      };
      socket.addEventListener('close', failed);
      socket.addEventListener('open', () => {
        socket.removeEventListener('close', failed);
        resolve(new WebSocketTransport(socket, handlers));
      });
    });
  }

  /** Sends `resume` and holds other messages until the reply arrives. */
  sendFirst(message) {
    this.#resuming = true;
    this.#socket.send(JSON.stringify(message));
    this.#socket.addEventListener('message', () => this.#flush(), { once: true });
  }

  send(message) {
    if (this.#socket.readyState !== WebSocket.OPEN) {
      return false;
    }
    if (this.#resuming) {
      this.#queue.push(message);
      return true;
    }
    this.#socket.send(JSON.stringify(message));
    return true;
  }

  close(reason) {
    if (this.#socket.readyState < WebSocket.CLOSING) {
      this.#socket.close(1000, reason);
    }
  }

  #flush() {
    this.#resuming = false;
    for (const message of this.#queue.splice(0)) {
      this.send(message);
    }
  }
}

/**
 * Server-Sent Events for server messages and POST requests for client messages. `join` goes
 * first and returns the resume token; the event stream opens with it. A reconnecting
 * `EventSource` sends `Last-Event-ID`, so the server resumes from there.
 */
class SseTransport {
  kind = 'sse';
  #base;
  #handlers;
  #source = null;
  #outgoing = [];
  #posting = false;
  #closed = false;

  constructor(wsUrl, handlers) {
    const base = new URL(wsUrl);
    base.protocol = base.protocol === 'wss:' ? 'https:' : 'http:';
    this.#base = base;
    this.#handlers = handlers;
  }

  send(message) {
    if (this.#closed) {
      return false;
    }
    this.#outgoing.push(message);
    this.#post();
    return true;
  }

  close(reason) {
    this.#closed = true;
    this.#source?.close();
    this.#handlers.lost(1000, reason);
  }

  // Sends queued messages, one POST at a time, so that they arrive in order.
  async #post() {
    if (this.#posting) {
      return;
    }
    this.#posting = true;
    try {
      while (this.#outgoing.length > 0 && !this.#closed) {
        const token = this.#handlers.token();
        if (!token) {
          await this.#join(this.#outgoing.shift());
          continue;
        }
        const batch = this.#outgoing.splice(0);
        const response = await fetch(this.#endpoint('/v1/send', { token }), {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(batch),
        });
        if (response.status === 404) {
          this.#handlers.sessionLost();
          return;
        }
        if (!response.ok) {
          this.#handlers.frame(await response.text());
        }
      }
    } catch (error) {
      console.error('switchyard: POST to the server failed', error);
      this.#closed = true;
      this.#source?.close();
      this.#handlers.lost(1006, error.message);
    } finally {
      this.#posting = false;
    }
  }

  // Sends `join` without a session, then opens the event stream with the token it returns.
  async #join(message) {
    const response = await fetch(this.#endpoint('/v1/send', {}), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(message),
    });
    const body = await response.text();
    if (!response.ok) {
      this.#handlers.frame(body);
      return;
    }
    const { resumeToken } = JSON.parse(body);
    this.#handlers.setToken(resumeToken);
    this.#openStream(resumeToken);
  }

  #openStream(token) {
    const url = this.#endpoint('/v1/events', { token, lastSeq: this.#handlers.lastSeq() });
    const source = new EventSource(url);
    this.#source = source;
    source.addEventListener('message', (event) => this.#handlers.frame(event.data));
    source.addEventListener('error', () => {
      // EventSource reconnects by itself unless the server answered with an error status.
      if (source.readyState === EventSource.CLOSED && !this.#closed) {
        this.#handlers.sessionLost();
      }
    });
  }

  #endpoint(path, params) {
    const url = new URL(path, this.#base);
    for (const [key, value] of Object.entries(params)) {
      url.searchParams.set(key, String(value));
    }
    return url.toString();
  }
}
