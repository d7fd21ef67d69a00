// Two browsers in a call, once with the server's default SRTP profiles and once with
// --srtp-aead-only. Chromium lists AES-CM with HMAC-SHA1 first in its DTLS handshake, so by
// default both of a page's connections to the server use it. With --srtp-aead-only, which
// offers AES-128-GCM alone, they use that, and audio and video still flow both ways.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { launchBrowser } from './lib/browser.js';
import { pollUntil } from './lib/poll.js';
import { startServer } from './lib/server.js';
import { readReceiveStats } from './lib/stats.js';

const NAMES = ['Ada', 'Bob'];
const JOIN_TIMEOUT_MS = 15_000;
const MEDIA_TIMEOUT_MS = 15_000;

/**
 * Returns the `srtpCipher` of the transport of each of the page's two peer connections with the
 * server, `{ publisher, subscriber }`, or null for a connection without one yet.
 */
function readSrtpCiphers(page) {
  return page.evaluate(async () => {
    const ciphers = {};
    for (const name of ['publisher', 'subscriber']) {
      const connection = window.switchyard[name];
      ciphers[name] = null;
      if (!connection) {
        continue;
      }
      const report = await connection.getStats();
      report.forEach((stats) => {
        if (stats.type === 'transport' && stats.srtpCipher) {
          ciphers[name] = stats.srtpCipher;
        }
      });
    }
    return ciphers;
  });
}

/**
 * Starts a server with `args`, joins both browsers to one room, waits until each receives the
 * other's audio and video, and returns each page's SRTP ciphers by name.
 */
async function callAndReadCiphers(label, args) {
  const server = await startServer({ logName: `srtp-${label}-server.log`, args });
  const participants = [];
  try {
    for (const name of NAMES) {
      const browser = await launchBrowser(`srtp-${label}-${name}`);
      participants.push({ name, browser, page: browser.page, id: null });
    }
    for (const participant of participants) {
      const query = new URLSearchParams({ room: `srtp-${label}`, name: participant.name });
      await participant.page.goto(`${server.url}/?${query}`);
    }
    for (const participant of participants) {
      const joined = await pollUntil(
        () => participant.page.evaluate(() => window.switchyard.participantId),
        Boolean,
        { timeoutMs: JOIN_TIMEOUT_MS },
      );
      assert.ok(joined.done, `${label}: ${participant.name} did not join\n${server.logTail()}`);
      participant.id = joined.value;
    }

    const ciphers = {};
    for (const participant of participants) {
      const other = participants.find((candidate) => candidate !== participant);
      const media = await pollUntil(
        () => readReceiveStats(participant.page, [other.id]),
        (stats) => stats[other.id].videoFramesDecoded > 0 && stats[other.id].audioPacketsReceived > 0,
        { timeoutMs: MEDIA_TIMEOUT_MS, intervalMs: 500 },
      );
      assert.ok(
        media.done,
        `${label}: ${participant.name} receives no media from ${other.name}: ${JSON.stringify(media.value)}\n${server.logTail()}`,
      );
      ciphers[participant.name] = await readSrtpCiphers(participant.page);
    }
    return ciphers;
  } finally {
    for (const participant of participants) {
      await participant.browser.close();
    }
    await server.stop();
  }
}

describe('SRTP cipher of browser connections', { timeout: 120_000 }, () => {
  test('default profiles give AES-CM', async () => {
    const ciphers = await callAndReadCiphers('default', []);
    for (const name of NAMES) {
      assert.deepEqual(
        ciphers[name],
        { publisher: 'SRTP_AES128_CM_HMAC_SHA1_80', subscriber: 'SRTP_AES128_CM_HMAC_SHA1_80' },
        `${name}'s connections`,
      );
    }
  });

  test('--srtp-aead-only gives AES-128-GCM', async () => {
    const ciphers = await callAndReadCiphers('aead', ['--srtp-aead-only']);
    for (const name of NAMES) {
      assert.deepEqual(
        ciphers[name],
        { publisher: 'SRTP_AEAD_AES_128_GCM', subscriber: 'SRTP_AEAD_AES_128_GCM' },
        `${name}'s connections`,
      );
    }
  });
});
