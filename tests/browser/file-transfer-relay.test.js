// A 50 MB file between two browsers that may only use relayed candidates (`?relay=udp`, which
// sets `iceTransportPolicy: 'relay'` with the bundled TURN relay's UDP URL). Both browsers
// allocate on the same relay, so it must allow its own loopback relayed addresses as peers,
// which the default peer policy denies.

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
  waitForTransfers,
} from './lib/files.js';
import { startServer } from './lib/server.js';

const MB = 1_000_000;
const OFFER_TIMEOUT_MS = 15_000;
const TRANSFER_TIMEOUT_MS = 180_000;

/** Returns the local and remote candidate types of the selected pair of the link to `peerId`. */
function selectedCandidateTypes(page, peerId) {
  return page.evaluate(async (peerId) => {
    const connection = window.switchyard.files.link(peerId)?.connection;
    if (!connection) {
      return null;
    }
    const report = await connection.getStats();
    let pair = null;
    report.forEach((stats) => {
      if (stats.type === 'transport' && stats.selectedCandidatePairId) {
        pair = report.get(stats.selectedCandidatePairId);
      }
    });
    if (!pair) {
      return null;
    }
    const local = report.get(pair.localCandidateId);
    const remote = report.get(pair.remoteCandidateId);
    return {
      local: local?.candidateType,
      relayProtocol: local?.relayProtocol,
      remote: remote?.candidateType,
    };
  }, peerId);
}

describe('file transfer through the TURN relay', { timeout: 300_000 }, () => {
  let server;
  let files;
  let ada;
  let bob;

  before(async () => {
    server = await startServer({
      logName: 'file-transfer-relay-server.log',
      turnConfig: 'allowed-peer-ranges = ["127.0.0.0/8"]\n',
    });
    files = await fileDirectory();
    [ada, bob] = await joinRoom(server, 'files-relay', ['Ada', 'Bob'], { relay: 'udp' });
  });

  after(async () => {
    for (const participant of [ada, bob]) {
      await participant?.browser.close();
    }
    await server?.stop();
    await files?.remove();
  });

  test('50 MB file arrives intact over the relay', async (t) => {
    const file = files.write('relayed.bin', 50 * MB, 51);
    await chooseFiles(ada, bob, [file.path]);
    const offers = await waitForTransfers(
      bob.page,
      (transfers) => transfers.some((transfer) => transfer.state === 'pending'),
      OFFER_TIMEOUT_MS,
      'Bob did not get the offer',
    );
    const offer = offers.find((transfer) => transfer.state === 'pending');

    const started = performance.now();
    await clickInRow(bob.page, offer.key, 'accept');
    const isFinished = (transfers) =>
      ['complete', 'failed', 'cancelled'].includes(transfers.find((x) => x.id === offer.id)?.state);
    const sentList = await waitForTransfers(ada.page, isFinished, TRANSFER_TIMEOUT_MS, 'Ada did not finish');
    const seconds = (performance.now() - started) / 1000;
    const receivedList = await waitForTransfers(bob.page, isFinished, TRANSFER_TIMEOUT_MS, 'Bob did not finish');
    const sent = sentList.find((transfer) => transfer.id === offer.id);
    const received = receivedList.find((transfer) => transfer.id === offer.id);

    assert.equal(sent.state, 'complete', sent.message);
    assert.equal(received.state, 'complete', received.message);
    assert.equal(received.digest, file.sha256);
    assert.equal(await receivedDigest(bob.page, offer.key), file.sha256);
    assert.equal(sent.path, 'relayed');
    assert.equal(received.path, 'relayed');
    const bar = await progressBar(bob.page, offer.key);
    assert.equal(bar.percent, '100');

    for (const [page, peer] of [[ada.page, bob], [bob.page, ada]]) {
      const types = await selectedCandidateTypes(page, peer.id);
      assert.equal(types?.local, 'relay', JSON.stringify(types));
      assert.equal(types?.relayProtocol, 'udp', JSON.stringify(types));
    }
    assert.equal((await listTransfers(ada.page)).length, 1);

    t.diagnostic(`relayed: 50 MB in ${seconds.toFixed(2)} s, ${(50 / seconds).toFixed(1)} MB/s`);
  });
});
