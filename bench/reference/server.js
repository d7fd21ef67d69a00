// Reference signaling server for the benchmarks, built the classic way: Node.js with the `ws`
// package, relaying every room message through Redis Pub/Sub so that any number of Node
// processes could serve one room. It speaks the subset of Switchyard's protocol that the load
// generator uses (docs/protocol.md): `join` gets `joined`, `chat` is published to the room's
// Redis channel and sent to every member with the sender's id and the server time, `ack` is
// accepted and ignored, and `leave` closes the connection.
//
// It keeps no session state beyond room membership: no sequence numbers, no outbox for
// resume, no roster in `joined` and no presence events.
//
// Settings (environment): HOST (default 127.0.0.1), PORT (default 8090), REDIS_URL (default
// redis://127.0.0.1:6379).
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const { WebSocketServer } = require('ws');
const { createClient } = require('redis');

const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number(process.env.PORT || 8090);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

// Same limits as Switchyard's defaults: 64 KiB per client message, 4096 bytes per chat text,
// a ping every 10 s. A client that lets more than 1 MiB of frames pile up is disconnected.
const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_CHAT_BYTES = 4096;
const PING_INTERVAL_MS = 10_000;
const MAX_BUFFERED_BYTES = 1024 * 1024;

// Local members of each room, by room name. A room is subscribed in Redis while it has any.
const rooms = new Map();

async function main() {
  const publisher = createClient({ url: REDIS_URL });
  const subscriber = publisher.duplicate();
  for (const client of [publisher, subscriber]) {
    client.on('error', (error) => console.error('redis:', error.message));
  }
  await publisher.connect();
  await subscriber.connect();

  const server = http.createServer((request, response) => {
    response.writeHead(404).end();
  });
  const wss = new WebSocketServer({ server, path: '/v1/ws', maxPayload: MAX_MESSAGE_BYTES });
  wss.on('connection', (ws) => accept(ws, publisher, subscriber));

  const pings = setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.alive) {
        ws.terminate();
        continue;
      }
      ws.alive = false;
      ws.ping();
    }
  }, PING_INTERVAL_MS);

  server.listen(PORT, HOST, () => console.log(`listening on ${HOST}:${PORT}`));
  const stop = () => {
    clearInterval(pings);
    wss.close();
    server.close();
    Promise.allSettled([publisher.quit(), subscriber.quit()]).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// Sets up one client connection.
function accept(ws, publisher, subscriber) {
  ws.alive = true;
  ws.room = null;
  ws.participantId = null;
  ws.on('pong', () => {
    ws.alive = true;
  });
  ws.on('message', (data, isBinary) => {
    ws.alive = true;
    if (isBinary) {
      sendError(ws, undefined, 'invalid_json', 'binary frames are not accepted');
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      sendError(ws, undefined, 'invalid_json', 'the message is not valid JSON');
      return;
    }
    handle(ws, message, publisher, subscriber).catch((error) => {
      console.error('request failed:', error.message);
      sendError(ws, message.id, 'internal_error', 'the request failed, try again');
    });
  });
  ws.on('close', () => {
    leave(ws, subscriber).catch((error) => console.error('leave failed:', error.message));
  });
  ws.on('error', () => {});
}

async function handle(ws, message, publisher, subscriber) {
  const { id } = message;
  switch (message.type) {
    case 'join':
      return join(ws, message, subscriber);
    case 'chat':
      return chat(ws, message, publisher);
    case 'ack':
      return undefined;
    case 'leave':
      send(ws, { requestId: id, type: 'ok' });
      ws.close(1000, 'left');
      return undefined;
    default:
      return sendError(ws, id, 'unknown_type', 'unknown message type');
  }
}

async function join(ws, message, subscriber) {
  const { id, room } = message;
  if (ws.room !== null) {
    return sendError(ws, id, 'already_joined', 'this connection has already joined a room');
  }
  if (typeof room !== 'string' || room.length === 0 || room.length > 64) {
    return sendError(ws, id, 'invalid_name', 'room must be 1 to 64 characters');
  }
  ws.room = room;
  ws.participantId = crypto.randomBytes(16).toString('hex');
  let members = rooms.get(room);
  if (members === undefined) {
    members = new Set();
    rooms.set(room, members);
    await subscriber.subscribe(channelOf(room), (frame) => fanOut(room, frame));
  }
  members.add(ws);
  return send(ws, {
    requestId: id,
    type: 'joined',
    room,
    participantId: ws.participantId,
    participants: [],
    iceServers: [],
  });
}

async function chat(ws, message, publisher) {
  const { id, text } = message;
  if (ws.room === null) {
    return sendError(ws, id, 'not_joined', 'send `join` before any other message');
  }
  if (typeof text !== 'string' || text.length === 0) {
    return sendError(ws, id, 'invalid_message', 'chat text must be a non-empty string');
  }
  if (Buffer.byteLength(text) > MAX_CHAT_BYTES) {
    return sendError(ws, id, 'text_too_long', `chat text is over ${MAX_CHAT_BYTES} bytes`);
  }
  const frame = JSON.stringify({ type: 'chat', from: ws.participantId, text, ts: Date.now() });
  await publisher.publish(channelOf(ws.room), frame);
  return send(ws, { requestId: id, type: 'ok' });
}

// Sends one message from the room's Redis channel to every local member. The frame is
// encoded once and the same buffer goes to every member.
function fanOut(room, frame) {
  const members = rooms.get(room);
  if (members === undefined) {
    return;
  }
  const data = Buffer.from(frame);
  for (const ws of members) {
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      ws.close(4008, 'slow consumer');
      continue;
    }
    ws.send(data, { binary: false });
  }
}

async function leave(ws, subscriber) {
  const members = ws.room === null ? undefined : rooms.get(ws.room);
  if (members === undefined) {
    return;
  }
  members.delete(ws);
  if (members.size === 0) {
    rooms.delete(ws.room);
    await subscriber.unsubscribe(channelOf(ws.room));
  }
}

function channelOf(room) {
  return `room:${room}`;
}

function send(ws, message) {
  ws.send(JSON.stringify(message));
}

function sendError(ws, requestId, code, text) {
  send(ws, { requestId, type: 'error', code, message: text });
}

main().catch((error) => {
  console.error('reference server failed to start:', error);
  process.exit(1);
});
