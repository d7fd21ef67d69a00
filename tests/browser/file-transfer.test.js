// Direct file transfer between two browsers in one room: a 50 MB file arrives intact over the
// direct path, a declined file leaves nothing behind, a transfer cut mid-way resumes from the
// last confirmed chunk, several files go at once, either side can cancel, and empty files,
// unusual names, files over the limit and damaged chunks are handled.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  chooseFiles,
  clickInRow,
  fileDirectory,
  joinRoom,
  listTransfers,
  progressBar,
  receivedDigest,
  sha256File,
  waitForTransfers,
} from './lib/files.js';
import { startServer } from './lib/server.js';

const MB = 1_000_000;
const CHUNK_BYTES = 64 * 1024 - 4;
// The server's limit for this test, handed to the clients in `joined.maxFileSize`.
const MAX_FILE_SIZE = 60 * MB;
const OFFER_TIMEOUT_MS = 15_000;
const TRANSFER_TIMEOUT_MS = 120_000;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('direct file transfer', { timeout: 600_000 }, () => {
  let server;
  let files;
  let ada;
  let bob;

  before(async () => {
    server = await startServer({
      logName: 'file-transfer-server.log',
      args: ['--max-file-size', String(MAX_FILE_SIZE)],
    });
    files = await fileDirectory();
    [ada, bob] = await joinRoom(server, 'files', ['Ada', 'Bob']);
  });

  after(async () => {
    for (const participant of [ada, bob]) {
      await participant?.browser.close();
    }
    await server?.stop();
    await files?.remove();
  });

  /** Sends `paths` from Ada to Bob and returns Bob's pending transfers for them. */
  async function offerToBob(paths) {
    const before = new Set((await listTransfers(bob.page)).map((transfer) => transfer.key));
    await chooseFiles(ada, bob, paths);
    const list = await waitForTransfers(
      bob.page,
      (transfers) => transfers.filter((t) => !before.has(t.key) && t.state === 'pending').length === paths.length,
      OFFER_TIMEOUT_MS,
      'Bob did not get the offers',
    );
    return list.filter((transfer) => !before.has(transfer.key));
  }

  async function waitFinished(page, id, what) {
    const list = await waitForTransfers(
      page,
      (transfers) => ['complete', 'failed', 'cancelled'].includes(transfers.find((t) => t.id === id)?.state),
      TRANSFER_TIMEOUT_MS,
      what,
    );
    return list.find((transfer) => transfer.id === id);
  }

  test('50 MB file arrives intact over the direct path', async (t) => {
    const file = files.write('fifty.bin', 50 * MB, 50);
    const [offer] = await offerToBob([file.path]);
    assert.equal(offer.size, file.size);
    assert.equal(offer.savedName, 'fifty.bin');

    const started = performance.now();
    await clickInRow(bob.page, offer.key, 'accept');
    const sent = await waitFinished(ada.page, offer.id, 'Ada did not finish sending');
    const seconds = (performance.now() - started) / 1000;
    const received = await waitFinished(bob.page, offer.id, 'Bob did not finish receiving');

    assert.equal(sent.state, 'complete', sent.message);
    assert.equal(received.state, 'complete', received.message);
    assert.equal(received.digest, file.sha256, 'digest computed by the receiver');
    assert.equal(await receivedDigest(bob.page, offer.key), file.sha256, 'digest of the received Blob');
    assert.equal(sent.path, 'direct');
    assert.equal(received.path, 'direct');
    for (const [page, key] of [[ada.page, sent.key], [bob.page, received.key]]) {
      const bar = await progressBar(page, key);
      assert.equal(bar.value, bar.max, JSON.stringify(bar));
      assert.equal(bar.percent, '100');
    }
    const shownPath = await bob.page.locator(`li.transfer[data-key="${offer.key}"] .transfer-path`).textContent();
    assert.equal(shownPath, 'direct');

    const [download] = await Promise.all([
      bob.page.waitForEvent('download'),
      clickInRow(bob.page, offer.key, 'save'),
    ]);
    assert.equal(download.suggestedFilename(), 'fifty.bin');
    assert.equal(await sha256File(await download.path()), file.sha256, 'digest of the saved file');

    t.diagnostic(`direct: 50 MB in ${seconds.toFixed(2)} s, ${(50 / seconds).toFixed(1)} MB/s`);
  });

  test('declined transfer leaves nothing behind', async () => {
    const file = files.write('declined.bin', 2 * MB, 2);
    const [offer] = await offerToBob([file.path]);
    await clickInRow(bob.page, offer.key, 'decline');

    const list = await waitForTransfers(
      ada.page,
      (transfers) => transfers.find((t) => t.id === offer.id)?.state === 'declined',
      OFFER_TIMEOUT_MS,
      'Ada did not see the decline',
    );
    const sent = list.find((transfer) => transfer.id === offer.id);
    assert.equal(sent.bytesSent, 0, 'no chunk was sent');
    const atBob = (await listTransfers(bob.page)).filter((transfer) => transfer.id === offer.id);
    assert.deepEqual(atBob, [], 'Bob keeps no record of the declined file');
    assert.equal(await bob.page.locator(`li.transfer[data-key="${offer.key}"]`).count(), 0);
    assert.equal(await receivedDigest(bob.page, offer.key), null);
  });

  test('cut transfer resumes from the last confirmed chunk', async () => {
    const file = files.write('resumed.bin', 30 * MB, 30);
    const [offer] = await offerToBob([file.path]);
    // Bob closes both peer connections once 160 chunks (about a third) have arrived.
    const cutAtChunk = 160;
    await bob.page.evaluate((chunk) => {
      window.switchyard.files.debug.dropAtChunk = chunk;
    }, cutAtChunk);
    await clickInRow(bob.page, offer.key, 'accept');

    const sent = await waitFinished(ada.page, offer.id, 'Ada did not finish the resumed transfer');
    const received = await waitFinished(bob.page, offer.id, 'Bob did not finish the resumed transfer');
    assert.equal(sent.state, 'complete', sent.message);
    assert.equal(received.state, 'complete', received.message);
    assert.equal(received.digest, file.sha256);
    assert.equal(await receivedDigest(bob.page, offer.key), file.sha256);

    assert.ok(sent.resumedFrom.length >= 1, `the transfer never resumed: ${JSON.stringify(sent)}`);
    const resumedAt = sent.resumedFrom[0];
    assert.ok(resumedAt >= cutAtChunk, `resumed at chunk ${resumedAt}, before the cut at ${cutAtChunk}`);
    // Starting over would send the whole file again after the cut. Resuming sends again only
    // what was in flight when the connection dropped.
    const resentBytes = sent.bytesSent - file.size;
    assert.ok(
      resentBytes < resumedAt * CHUNK_BYTES,
      `sent ${sent.bytesSent} bytes for a ${file.size}-byte file resumed at chunk ${resumedAt}`,
    );
  });

  test('several files at once, progress reaches 100 %', async () => {
    const first = files.write('first.bin', 6 * MB, 61);
    const second = files.write('second.bin', 9 * MB, 62);
    const offers = await offerToBob([first.path, second.path]);
    for (const offer of offers) {
      await clickInRow(bob.page, offer.key, 'accept');
    }
    for (const offer of offers) {
      const expected = offer.savedName === 'first.bin' ? first : second;
      const received = await waitFinished(bob.page, offer.id, `Bob did not finish ${offer.savedName}`);
      assert.equal(received.state, 'complete', received.message);
      assert.equal(received.digest, expected.sha256, offer.savedName);
      const bar = await progressBar(bob.page, offer.key);
      assert.equal(bar.percent, '100', offer.savedName);
      const sent = await waitFinished(ada.page, offer.id, `Ada did not finish ${offer.savedName}`);
      assert.equal(sent.state, 'complete', sent.message);
      const senderBar = await progressBar(ada.page, sent.key);
      assert.equal(senderBar.percent, '100', offer.savedName);
    }
  });

  test('receiver and sender can cancel', async () => {
    const file = files.write('cancelled.bin', 40 * MB, 40);

    // Bob accepts and cancels at once, from the buttons of the row.
    const [offer] = await offerToBob([file.path]);
    await bob.page.evaluate((key) => {
      const row = document.querySelector(`li.transfer[data-key="${CSS.escape(key)}"]`);
      row.querySelector('button.accept').click();
      row.querySelector('button.cancel').click();
    }, offer.key);
    const atAda = await waitFinished(ada.page, offer.id, 'Ada did not see the cancel');
    assert.equal(atAda.state, 'cancelled');
    const atBob = (await listTransfers(bob.page)).find((transfer) => transfer.id === offer.id);
    assert.equal(atBob.state, 'cancelled');
    assert.equal(await receivedDigest(bob.page, offer.key), null);

    // Ada withdraws an offer that Bob has not answered yet.
    const [second] = await offerToBob([file.path]);
    const sentKey = (await listTransfers(ada.page)).find((transfer) => transfer.id === second.id).key;
    await clickInRow(ada.page, sentKey, 'cancel');
    const atBobAfter = await waitFinished(bob.page, second.id, 'Bob did not see the withdrawn offer');
    assert.equal(atBobAfter.state, 'cancelled');
  });

  test('empty file arrives with the digest of no bytes', async () => {
    const file = files.write('empty.txt', 0, 1);
    const [offer] = await offerToBob([file.path]);
    await clickInRow(bob.page, offer.key, 'accept');
    const received = await waitFinished(bob.page, offer.id, 'Bob did not finish the empty file');
    assert.equal(received.state, 'complete', received.message);
    assert.equal(received.digest, EMPTY_SHA256);
    assert.equal(received.size, 0);
    const bar = await progressBar(bob.page, offer.key);
    assert.equal(bar.percent, '100');
  });

  test('unusual file name is sanitised on save', async () => {
    const name = `../секрет\\ファイル ${'долгое имя '.repeat(30)}\u202Etxt.exe\u0007.txt`;
    // The drop zone gets a file with this name, as a drag and drop would deliver it.
    await ada.page.selectOption('#file-peer', bob.id);
    await ada.page.evaluate((name) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([new Uint8Array(1000).fill(7)], name, { type: 'text/plain' }));
      const drop = document.getElementById('file-drop');
      drop.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, name);
    const list = await waitForTransfers(
      bob.page,
      (transfers) => transfers.some((t) => t.state === 'pending' && t.name === name),
      OFFER_TIMEOUT_MS,
      'Bob did not get the oddly named file',
    );
    const offer = list.find((transfer) => transfer.name === name);
    const saved = offer.savedName;
    assert.doesNotMatch(saved, /[/\\\u0000-\u001f\u202e]/u, saved);
    assert.ok(!saved.startsWith('.'), saved);
    assert.ok(saved.endsWith('.txt'), saved);
    assert.ok(new TextEncoder().encode(saved).length <= 200, `${saved} is longer than 200 bytes`);
    assert.ok(saved.startsWith('_секрет_ファイル'), saved);

    await clickInRow(bob.page, offer.key, 'accept');
    const received = await waitFinished(bob.page, offer.id, 'Bob did not finish the oddly named file');
    assert.equal(received.state, 'complete', received.message);
    const [download] = await Promise.all([
      bob.page.waitForEvent('download'),
      clickInRow(bob.page, offer.key, 'save'),
    ]);
    assert.doesNotMatch(download.suggestedFilename(), /[/\\]/u);
    await download.delete();
  });

  test('file over the server limit is refused with a message', async () => {
    const file = files.write('too-large.bin', MAX_FILE_SIZE + 1, 3);
    const before = (await listTransfers(ada.page)).length;
    await chooseFiles(ada, bob, [file.path]);
    const alert = ada.page.locator('#messages .message.error', { hasText: 'allows files up to' });
    await alert.first().waitFor({ timeout: OFFER_TIMEOUT_MS });
    assert.equal((await listTransfers(ada.page)).length, before, 'no transfer was started');
  });

  test('damaged chunk fails the digest check', async () => {
    const file = files.write('damaged.bin', 3 * MB, 9);
    await ada.page.evaluate(() => {
      window.switchyard.files.debug.corruptNextChunk = true;
    });
    const [offer] = await offerToBob([file.path]);
    await clickInRow(bob.page, offer.key, 'accept');
    const received = await waitFinished(bob.page, offer.id, 'Bob did not finish the damaged file');
    assert.equal(received.state, 'failed');
    assert.match(received.message, /SHA-256 digest does not match/);
    assert.equal(received.hasBlob, false, 'the damaged file is not offered for saving');
    const sent = await waitFinished(ada.page, offer.id, 'Ada did not hear about the mismatch');
    assert.equal(sent.state, 'failed');
    const alert = bob.page.locator('#messages .message.error', { hasText: 'SHA-256' });
    await alert.first().waitFor({ timeout: OFFER_TIMEOUT_MS });
  });
});
