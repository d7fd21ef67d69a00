// Helpers of the file-transfer tests: deterministic test files, two joined browsers, and
// reading transfers through the page's `window.switchyard.files` hook.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { launchBrowser } from './browser.js';
import { pollUntil } from './poll.js';

const JOIN_TIMEOUT_MS = 15_000;

/** Returns `length` deterministic bytes from a 32-bit xorshift generator seeded with `seed`. */
export function deterministicBytes(length, seed) {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= length; i += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes.writeUInt32LE(state >>> 0, i);
  }
  return bytes;
}

export function sha256Hex(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Returns the SHA-256 of the file at `path`, read as a stream. */
export function sha256File(path) {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** A temporary directory for test files; `remove()` deletes it. */
export async function fileDirectory() {
  const path = await mkdtemp(join(tmpdir(), 'switchyard-files-'));
  return {
    /** Writes `size` deterministic bytes to `name` and returns `{ path, sha256, size }`. */
    write(name, size, seed) {
      const bytes = deterministicBytes(size, seed);
      const filePath = join(path, name);
      writeFileSync(filePath, bytes);
      return { path: filePath, sha256: sha256Hex(bytes), size };
    },
    remove: () => rm(path, { recursive: true, force: true }),
  };
}

/**
 * Opens one browser per name in `room` on `server` with the extra query parameters `query`,
 * and waits until each has joined and sees the others in its file panel. Returns
 * `[{ name, browser, page, id }]`.
 */
export async function joinRoom(server, room, names, query = {}, label = room) {
  const participants = [];
  for (const name of names) {
    const browser = await launchBrowser(`${label}-${name}`);
    participants.push({ name, browser, page: browser.page, id: null });
  }
  for (const participant of participants) {
    const params = new URLSearchParams({ room, name: participant.name, ...query });
    await participant.page.goto(`${server.url}/?${params}`);
  }
  for (const participant of participants) {
    const result = await pollUntil(
      () => participant.page.evaluate(() => ({
        id: window.switchyard.participantId,
        peers: window.switchyard.files?.peers.length ?? 0,
      })),
      (value) => value.id && value.peers === names.length - 1,
      { timeoutMs: JOIN_TIMEOUT_MS },
    );
    assert.ok(result.done, `${participant.name} did not join: ${JSON.stringify(result.value)}\n${server.logTail()}`);
    participant.id = result.value.id;
  }
  return participants;
}

/** Chooses `receiver` in the sender's file panel and sets the file input to `paths`. */
export async function chooseFiles(sender, receiver, paths) {
  await sender.page.selectOption('#file-peer', receiver.id);
  await sender.page.setInputFiles('#file-input', paths);
}

/** Returns the page's transfer snapshots (see transfer.js). */
export function listTransfers(page) {
  return page.evaluate(() => window.switchyard.files.list());
}

/**
 * Polls the page's transfers until `isDone(list)` is true or `timeoutMs` has passed, and fails
 * with the last list otherwise. Returns the last list.
 */
export async function waitForTransfers(page, isDone, timeoutMs, what) {
  const result = await pollUntil(() => listTransfers(page), isDone, { timeoutMs, intervalMs: 200 });
  assert.ok(result.done, `${what}: ${JSON.stringify(result.value, null, 1)}`);
  return result.value;
}

/** Clicks `button` (accept, decline, cancel, save) in the row of the transfer with `key`. */
export async function clickInRow(page, key, button) {
  await page.locator(`li.transfer[data-key="${key}"] button.${button}`).click();
}

/** Returns the SHA-256 of the received Blob of transfer `key`, computed in the page. */
export function receivedDigest(page, key) {
  return page.evaluate(async (key) => {
    const blob = window.switchyard.files.blob(key);
    if (!blob) {
      return null;
    }
    const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
    return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, '0')).join('');
  }, key);
}

/** Returns the `value`, `max` and shown percentage of the progress bar of transfer `key`. */
export function progressBar(page, key) {
  return page.evaluate((key) => {
    const bar = document.querySelector(`li.transfer[data-key="${CSS.escape(key)}"] progress`);
    return bar ? { value: bar.value, max: bar.max, percent: bar.dataset.percent } : null;
  }, key);
}
