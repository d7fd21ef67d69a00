// A browser that sends a WebSocket message over the size limit must see the documented close
// code 1009, both before joining and in a session, and not an abnormal 1006. The server answers
// with `message_too_large` and a close frame, then closes the socket with the rest of the
// message unread, which sends RST; the close frame has to reach the page first.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser } from './lib/browser.js';
import { startServer } from './lib/server.js';

/** Opens a WebSocket from the page, optionally joins, sends `size` bytes of chat text and
 * returns `{ code, errors }`: the close code and the error codes received. */
function sendOversized(page, { join, size }) {
  return page.evaluate(
    ({ join, size }) =>
      new Promise((resolve) => {
        const socket = new WebSocket(`${location.origin.replace('http', 'ws')}/v1/ws`);
        const errors = [];
        const timer = setTimeout(() => resolve({ code: 'timeout', errors }), 10_000);
        socket.onopen = () => {
          if (join) {
            socket.send(JSON.stringify({ type: 'join', requestId: 'j1', room: 'big', name: 'Ada' }));
          } else {
            socket.send(JSON.stringify({ type: 'chat', text: 'a'.repeat(size) }));
          }
        };
        socket.onmessage = (event) => {
          const message = JSON.parse(event.data);
          if (message.type === 'error') {
            errors.push(message.code);
          }
          if (message.type === 'joined') {
            socket.send(JSON.stringify({ type: 'chat', text: 'a'.repeat(size) }));
          }
        };
        socket.onclose = (event) => {
          clearTimeout(timer);
          resolve({ code: event.code, errors });
        };
      }),
    { join, size },
  );
}

describe('oversized WebSocket messages', () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer({ logName: 'oversized-close.server.log' });
    browser = await launchBrowser('oversized-close');
    await browser.page.goto(`${server.url}/healthz`);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const cases = [
    { label: 'before join, 70 kB', join: false, size: 70_000 },
    { label: 'before join, 1 MiB', join: false, size: 1 << 20 },
    { label: 'in a session, 70 kB', join: true, size: 70_000 },
    { label: 'in a session, 1 MiB', join: true, size: 1 << 20 },
  ];
  for (const { label, join, size } of cases) {
    test(`close code 1009 ${label}`, async () => {
      const result = await sendOversized(browser.page, { join, size });
      const context = `${JSON.stringify(result)}\n${server.logTail()}`;
      assert.equal(result.code, 1009, context);
      assert.ok(result.errors.includes('message_too_large'), context);
    });
  }
});
