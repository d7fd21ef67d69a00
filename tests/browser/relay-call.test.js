// Two browsers in a call that must go through the server's bundled TURN relay: `?relay=udp`
// and `?relay=tcp` make the web client use only relayed candidates and only that transport's
// TURN URL. Each browser's selected candidate pairs must have a local `relay` candidate over
// that transport, and each must decode the other's video.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser } from './lib/browser.js';
import { pollUntil } from './lib/poll.js';
import { startServer } from './lib/server.js';
import { readReceiveStats } from './lib/stats.js';

const NAMES = ['Ada', 'Bob'];
const JOIN_TIMEOUT_MS = 15_000;
const MEDIA_TIMEOUT_MS = 20_000;

/**
 * Returns the local candidate of the selected candidate pair of the page's `target` connection
 * (`publisher` or `subscriber`), as `{ candidateType, relayProtocol, protocol, address, port }`,
 * or null while no pair is selected.
 */
function readSelectedLocalCandidate(page, target) {
  return page.evaluate(async (target) => {
    const connection = window.switchyard[target];
    if (!connection) {
      return null;
    }
    const report = await connection.getStats();
    let pairId = null;
    report.forEach((stats) => {
      if (stats.type === 'transport' && stats.selectedCandidatePairId) {
        pairId = stats.selectedCandidatePairId;
      }
    });
    const pair = pairId ? report.get(pairId) : null;
    const local = pair ? report.get(pair.localCandidateId) : null;
    if (!local) {
      return null;
    }
    const { candidateType, relayProtocol, protocol, address, port } = local;
    return { candidateType, relayProtocol, protocol, address, port };
  }, target);
}

for (const transport of ['udp', 'tcp']) {
  describe(`call through the TURN relay over ${transport}`, { timeout: 120_000 }, () => {
    let server;
    const participants = [];

    before(async () => {
      server = await startServer({ logName: `relay-${transport}-server.log` });
      for (const name of NAMES) {
        const browser = await launchBrowser(`relay-${transport}-${name}`);
        participants.push({ name, browser, page: browser.page, id: null });
      }
      for (const participant of participants) {
        const query = new URLSearchParams({
          room: `relay-${transport}`,
          name: participant.name,
          relay: transport,
        });
        await participant.page.goto(`${server.url}/?${query}`);
      }
      for (const participant of participants) {
        const result = await pollUntil(
          () => participant.page.evaluate(() => window.switchyard.participantId),
          Boolean,
          { timeoutMs: JOIN_TIMEOUT_MS },
        );
        assert.ok(result.done, `${participant.name} got no participant id\n${server.logTail()}`);
        participant.id = result.value;
      }
    });

    after(async () => {
      for (const participant of participants) {
        await participant.browser.close();
      }
      await server?.stop();
    });

    test('media flows over relayed candidates', async () => {
      const checks = participants.map(async (participant) => {
        const other = participants.find((candidate) => candidate !== participant);
        const result = await pollUntil(
          async () => ({
            publisher: await readSelectedLocalCandidate(participant.page, 'publisher'),
            subscriber: await readSelectedLocalCandidate(participant.page, 'subscriber'),
            received: (await readReceiveStats(participant.page, [other.id]))[other.id],
          }),
          (value) => value.publisher && value.subscriber && value.received.videoFramesDecoded > 0,
          { timeoutMs: MEDIA_TIMEOUT_MS, intervalMs: 500 },
        );
        return { participant, other, value: result.value };
      });

      for (const { participant, other, value } of await Promise.all(checks)) {
        const states = await participant.page.evaluate(() => window.switchyard.states);
        const context = `${participant.name}: ${JSON.stringify(value)}, states ${JSON.stringify(states)}`;
        for (const target of ['publisher', 'subscriber']) {
          const local = value[target];
          assert.ok(local, `no selected candidate pair on the ${target} connection; ${context}`);
          assert.equal(local.candidateType, 'relay', `${target} local candidate is not relayed; ${context}`);
          assert.equal(local.relayProtocol, transport, `${target} relay protocol; ${context}`);
        }
        assert.ok(
          value.received.videoFramesDecoded > 0,
          `${participant.name} decoded no video from ${other.name}; ${context}`,
        );
      }
    });
  });
}
