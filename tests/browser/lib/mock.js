// Serves web/ and a scripted signaling endpoint from inside Playwright, without the server.
//
// Requests never leave the browser because Playwright fulfills them in route handlers.

import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

import { WEB_DIR } from './paths.js';
import { pollUntil } from './poll.js';

/**
 * Origin the mocked pages load from. Loopback makes it a secure context, which getUserMedia
 * requires. Nothing listens on the port because Playwright fulfills every request.
 */
export const MOCK_ORIGIN = 'http://127.0.0.1:18080';

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** Fulfills every HTTP request to MOCK_ORIGIN in `context` with the matching file of web/. */
export async function serveWebDirectory(context) {
  await context.route(`${MOCK_ORIGIN}/**`, async (route) => {
    const { pathname } = new URL(route.request().url());
    const relative = normalize(pathname === '/' ? '/index.html' : pathname);
    if (relative.includes('..')) {
      return route.fulfill({ status: 400, body: 'invalid path' });
    }
    try {
      const body = await readFile(join(WEB_DIR, relative));
      const contentType = CONTENT_TYPES[extname(relative)] ?? 'application/octet-stream';
      return route.fulfill({ status: 200, body, contentType });
    } catch {
      return route.fulfill({ status: 404, body: 'not found' });
    }
  });
}

/**
 * Replaces `/v1/ws` on `page` with a scripted server.
 *
 * Returns `{ received, send, sendRaw, close, nextMessage }`. `received` lists every parsed
 * client message. `send` sends one server message and `sendRaw` sends a text frame unchanged.
 * `close` closes the socket with a code. `nextMessage(type)` waits up to `timeoutMs` for the
 * next unread message of that type.
 */
export async function mockSignaling(page, { onMessage = () => {} } = {}) {
  const received = [];
  const consumed = new Set();
  let socket = null;

  await page.routeWebSocket(`${MOCK_ORIGIN.replace('http', 'ws')}/v1/ws`, (route) => {
    socket = route;
    route.onMessage(async (data) => {
      const message = JSON.parse(String(data));
      received.push(message);
      await onMessage(message);
    });
  });

  return {
    received,
    send(message) {
      this.sendRaw(JSON.stringify(message));
    },
    sendRaw(text) {
      if (!socket) {
        throw new Error('the page has not opened the signaling WebSocket');
      }
      socket.send(text);
    },
    close(code, reason) {
      socket?.close({ code, reason });
    },
    async nextMessage(type, { timeoutMs = 10_000 } = {}) {
      const find = () => received.find((message) => message.type === type && !consumed.has(message));
      const result = await pollUntil(find, Boolean, { timeoutMs, intervalMs: 50 });
      if (!result.done) {
        const types = received.map((message) => message.type).join(', ') || 'none';
        throw new Error(`no "${type}" message within ${timeoutMs} ms; received: ${types}`);
      }
      consumed.add(result.value);
      return result.value;
    },
  };
}
