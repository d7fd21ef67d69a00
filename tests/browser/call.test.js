// Three browsers in one room through the real switchyard binary: every participant receives
// the others' audio and video, and a participant that leaves disappears from the others' grids.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { launchBrowser } from './lib/browser.js';
import { REPO_ROOT, artifactPath } from './lib/paths.js';
import { pollUntil } from './lib/poll.js';
import { startServer } from './lib/server.js';
import { readReceiveStats } from './lib/stats.js';

const ROOM = 'e2e-room';
const NAMES = ['Ada', 'Bob', 'Cleo'];
const JOIN_TIMEOUT_MS = 15_000;
const MEDIA_TIMEOUT_MS = 10_000;
const LEAVE_TIMEOUT_MS = 10_000;
// The README's screenshot is replaced only on request, so a test run leaves the tree unchanged.
const SCREENSHOT_PATH = process.env.UPDATE_SCREENSHOT === '1'
  ? join(REPO_ROOT, 'docs', 'screenshot.png')
  : artifactPath('screenshot.png');

describe('three-party call through the server', { timeout: 180_000 }, () => {
  let server;
  const participants = [];

  before(async () => {
    server = await startServer();
    for (const name of NAMES) {
      const browser = await launchBrowser(`call-${name}`);
      participants.push({ name, browser, page: browser.page, id: null });
    }
    for (const participant of participants) {
      const query = new URLSearchParams({ room: ROOM, name: participant.name });
      await participant.page.goto(`${server.url}/?${query}`);
    }
    for (const participant of participants) {
      participant.id = await waitForParticipantId(participant);
    }
  });

  after(async () => {
    for (const participant of participants) {
      await participant.browser.close();
    }
    await server?.stop();
  });

  async function waitForParticipantId({ name, page }) {
    const result = await pollUntil(
      () => page.evaluate(() => window.switchyard.participantId),
      Boolean,
      { timeoutMs: JOIN_TIMEOUT_MS },
    );
    const messages = await page.locator('#messages').textContent();
    assert.ok(result.done, `${name} got no participant id; messages: ${messages}\n${server.logTail()}`);
    return result.value;
  }

  test('all receive audio and video', async () => {
    const checks = participants.map(async (participant) => {
      const others = participants.filter((other) => other !== participant);
      const ids = others.map((other) => other.id);
      const result = await pollUntil(
        () => readReceiveStats(participant.page, ids),
        (stats) => ids.every((id) => stats[id].videoFramesDecoded > 0 && stats[id].audioPacketsReceived > 0),
        { timeoutMs: MEDIA_TIMEOUT_MS, intervalMs: 500 },
      );
      return { participant, others, result };
    });

    for (const { participant, others, result } of await Promise.all(checks)) {
      const states = await participant.page.evaluate(() => window.switchyard.states);
      for (const other of others) {
        const stats = result.value[other.id];
        const context = `${participant.name} from ${other.name}: ${JSON.stringify(stats)}, states ${JSON.stringify(states)}`;
        assert.ok(stats.tile, `no tile; ${context}`);
        assert.equal(stats.name, other.name, `wrong tile name; ${context}`);
        assert.ok(stats.videoFramesDecoded > 0, `no video frames decoded; ${context}`);
        assert.ok(stats.audioPacketsReceived > 0, `no audio packets received; ${context}`);
      }
    }

    mkdirSync(dirname(SCREENSHOT_PATH), { recursive: true });
    await participants[0].page.screenshot({ path: SCREENSHOT_PATH });
  });

  test('leaving removes the tile elsewhere', async () => {
    const [first, second, leaving] = participants;
    await leaving.page.click('#leave');

    for (const participant of [first, second]) {
      const result = await pollUntil(
        () => participant.page.evaluate((id) => ({
          inHook: window.switchyard.tiles.has(id),
          inPage: document.querySelector(`[data-participant-id="${id}"]`) !== null,
        }), leaving.id),
        (tile) => !tile.inHook && !tile.inPage,
        { timeoutMs: LEAVE_TIMEOUT_MS },
      );
      assert.equal(result.value.inHook, false, `${participant.name} still has ${leaving.name} in the hook`);
      assert.equal(result.value.inPage, false, `${participant.name} still shows the tile of ${leaving.name}`);
    }

    assert.ok(await leaving.page.locator('#join-view').isVisible(), 'join form not shown after leave');
    assert.equal(await leaving.page.evaluate(() => window.switchyard.participantId), null);
    const remaining = await first.page.evaluate(() => [...window.switchyard.tiles.keys()]);
    assert.deepEqual(remaining, [second.id]);
  });
});
