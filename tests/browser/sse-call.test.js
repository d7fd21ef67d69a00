// Two browsers join a call through a proxy that rejects WebSocket upgrades: the web client
// falls back to Server-Sent Events by itself, and audio and video flow as over a WebSocket.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser } from './lib/browser.js';
import { pollUntil } from './lib/poll.js';
import { startServer } from './lib/server.js';
import { readReceiveStats } from './lib/stats.js';
import { startWebSocketBlockingProxy } from './lib/ws-blocking-proxy.js';

const ROOM = 'sse-room';
const NAMES = ['Ada', 'Bob'];
const JOIN_TIMEOUT_MS = 15_000;
const MEDIA_TIMEOUT_MS = 15_000;

describe('call over Server-Sent Events', { timeout: 120_000 }, () => {
  let server;
  let proxy;
  const participants = [];

  before(async () => {
    server = await startServer({ logName: 'sse-server.log' });
    proxy = await startWebSocketBlockingProxy(server.url);
    for (const name of NAMES) {
      const browser = await launchBrowser(`sse-${name}`);
      participants.push({ name, browser, page: browser.page, id: null });
    }
    for (const participant of participants) {
      const query = new URLSearchParams({ room: ROOM, name: participant.name });
      await participant.page.goto(`${proxy.url}/?${query}`);
    }
  });

  after(async () => {
    for (const participant of participants) {
      await participant.browser.close();
    }
    await proxy?.close();
    await server?.stop();
  });

  test('client falls back to SSE and joins', async () => {
    for (const participant of participants) {
      const result = await pollUntil(
        () => participant.page.evaluate(() => window.switchyard.participantId),
        Boolean,
        { timeoutMs: JOIN_TIMEOUT_MS },
      );
      const messages = await participant.page.locator('#messages').textContent();
      assert.ok(result.done, `${participant.name} got no participant id; messages: ${messages}\n${server.logTail()}`);
      participant.id = result.value;
      const transport = await participant.page.evaluate(() => window.switchyard.transport);
      assert.equal(transport, 'sse', `${participant.name} is not on SSE`);
    }
    assert.ok(proxy.rejectedUpgrades() >= NAMES.length, 'the proxy rejected no WebSocket upgrade');
  });

  test('media flows both ways over SSE signaling', async () => {
    for (const participant of participants) {
      const other = participants.find((candidate) => candidate !== participant);
      const result = await pollUntil(
        () => readReceiveStats(participant.page, [other.id]),
        (stats) => stats[other.id].videoFramesDecoded > 0 && stats[other.id].audioPacketsReceived > 0,
        { timeoutMs: MEDIA_TIMEOUT_MS, intervalMs: 500 },
      );
      const states = await participant.page.evaluate(() => window.switchyard.states);
      const context = `${participant.name} from ${other.name}: ${JSON.stringify(result.value)}, states ${JSON.stringify(states)}`;
      assert.ok(result.done, `no media; ${context}`);
    }
    const lastSeq = await participants[0].page.evaluate(() => window.switchyard.lastSeq);
    assert.ok(lastSeq > 1, `sequence numbers did not advance: ${lastSeq}`);
  });

  test('joining over SSE shows no server error', async () => {
    for (const participant of participants) {
      const messages = await participant.page.locator('#messages').textContent();
      assert.ok(!messages.includes('Server error'), `${participant.name} saw: ${messages}`);
    }
  });
});
