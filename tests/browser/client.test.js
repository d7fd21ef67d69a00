// Web client against a scripted signaling server: message order, tiles, errors and close
// handling. The server binary is not needed.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser } from './lib/browser.js';
import { applyAnswer, removeFakeTrack, startFakeRemote } from './lib/fake-remote.js';
import { MOCK_ORIGIN, mockSignaling, serveWebDirectory } from './lib/mock.js';
import { pollUntil } from './lib/poll.js';
import { readReceiveStats } from './lib/stats.js';

const TIMEOUT_MS = 10_000;

describe('web client with scripted signaling', { timeout: 120_000 }, () => {
  let browser;

  before(async () => {
    browser = await launchBrowser('client');
    await serveWebDirectory(browser.context);
  });

  after(async () => {
    await browser?.close();
  });

  async function openPage(query, options) {
    const page = await browser.context.newPage();
    const signaling = await mockSignaling(page, options);
    await page.goto(`${MOCK_ORIGIN}/${query}`);
    return { page, signaling };
  }

  function joined(participants = []) {
    return { type: 'joined', room: 'r1', participantId: 'p-ada', participants, iceServers: [] };
  }

  async function tileNames(page) {
    return page.locator('#grid .tile.remote .name').allTextContents();
  }

  test('URL parameters join at once', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');

    const join = await signaling.nextMessage('join');
    const { id, ...fields } = join;
    assert.match(id, /^r\d+$/, 'join carries no request id');
    assert.deepEqual(fields, { type: 'join', room: 'r1', name: 'Ada' });
    await page.close();
  });

  test('token parameter goes with join', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada&token=t.o.k');

    const join = await signaling.nextMessage('join');
    assert.equal(join.token, 't.o.k');
    await page.close();
  });

  test('token parameter goes with join over SSE', async () => {
    const page = await browser.context.newPage();
    let sendJoin;
    const joinSent = new Promise((resolve) => {
      sendJoin = resolve;
    });
    await page.route(`${MOCK_ORIGIN}/v1/send*`, (route) => {
      sendJoin(JSON.parse(route.request().postData()));
      const error = { type: 'error', code: 'room_full', message: 'room is full' };
      return route.fulfill({ status: 400, body: JSON.stringify(error) });
    });
    await page.goto(`${MOCK_ORIGIN}/?room=r1&name=Ada&token=t.o.k&transport=sse`);

    const timeout = new Promise((_, reject) => {
      setTimeout(() => reject(new Error('no join POST to /v1/send')), TIMEOUT_MS).unref();
    });
    const join = await Promise.race([joinSent, timeout]);
    assert.equal(join.type, 'join');
    assert.equal(join.token, 't.o.k');
    await page.close();
  });

  test('join form joins and updates URL', async () => {
    const { page, signaling } = await openPage('');
    assert.ok(await page.locator('#join-view').isVisible(), 'join form not shown without parameters');
    assert.equal(signaling.received.length, 0);

    await page.fill('#room', 'r2');
    await page.fill('#name', 'Grace Hopper');
    await page.click('#join-form button[type="submit"]');
    const join = await signaling.nextMessage('join');
    const { id, ...fields } = join;
    assert.match(id, /^r\d+$/, 'join carries no request id');
    assert.deepEqual(fields, { type: 'join', room: 'r2', name: 'Grace Hopper' });
    const query = new URL(page.url()).searchParams;
    assert.equal(query.get('room'), 'r2');
    assert.equal(query.get('name'), 'Grace Hopper');
    await page.close();
  });

  test('mute buttons disable local tracks', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.send(joined());
    await signaling.nextMessage('offer');
    const senderEnabled = (kind) =>
      page.evaluate((kind) => {
        const sender = window.switchyard.publisher.getSenders().find((s) => s.track?.kind === kind);
        return sender.track.enabled;
      }, kind);

    await page.click('#mute-audio');
    assert.equal(await senderEnabled('audio'), false);
    assert.equal(await senderEnabled('video'), true);
    assert.equal(await page.getAttribute('#mute-audio', 'aria-pressed'), 'true');
    assert.equal(await page.textContent('#mute-audio'), 'Unmute microphone');

    await page.click('#mute-video');
    assert.equal(await senderEnabled('video'), false);
    assert.equal(await page.textContent('#mute-video'), 'Unmute camera');

    await page.click('#mute-audio');
    assert.equal(await senderEnabled('audio'), true);
    assert.equal(await page.getAttribute('#mute-audio', 'aria-pressed'), 'false');
    await page.close();
  });

  test('local tile shows name and initials', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    const local = page.locator('#grid .tile.local');
    await local.waitFor({ timeout: TIMEOUT_MS });
    assert.equal(await local.locator('.name').textContent(), 'Ada (you)');
    assert.equal(await local.locator('.avatar').textContent(), 'A');
    assert.equal(await local.locator('.avatar').isVisible(), false, 'avatar shown over the camera preview');

    await page.click('#mute-video');
    assert.equal(await local.locator('.avatar').isVisible(), true, 'avatar not shown with the camera muted');
    await page.close();
  });

  test('publisher offer precedes its candidates', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.send(joined());

    const offer = await signaling.nextMessage('offer');
    assert.match(offer.sdp, /^m=audio /m);
    assert.match(offer.sdp, /^m=video /m);
    assert.match(offer.sdp, /^a=sendonly/m);
    const offerIndex = signaling.received.indexOf(offer);
    const candidates = await pollUntil(
      () => signaling.received.filter((message) => message.type === 'candidate'),
      (list) => list.some((message) => message.candidate === ''),
      { timeoutMs: TIMEOUT_MS },
    );
    assert.ok(candidates.done, 'publisher end-of-candidates not sent');
    for (const candidate of candidates.value) {
      assert.equal(candidate.target, 'publisher');
      assert.ok(signaling.received.indexOf(candidate) > offerIndex, 'candidate sent before the offer');
    }
    assert.equal(await page.evaluate(() => window.switchyard.participantId), 'p-ada');
    await page.close();
  });

  test('participant tiles follow joins and leaves', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.send(joined([{ id: 'p-bob', name: 'Bob' }]));
    await page.locator('[data-participant-id="p-bob"]').waitFor({ timeout: TIMEOUT_MS });

    signaling.send({ type: 'participant_joined', participant: { id: 'p-cleo', name: 'Cleo' } });
    await page.locator('[data-participant-id="p-cleo"]').waitFor({ timeout: TIMEOUT_MS });
    assert.deepEqual(await tileNames(page), ['Bob', 'Cleo']);

    signaling.send({ type: 'participant_left', participantId: 'p-bob' });
    await page.locator('[data-participant-id="p-bob"]').waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    assert.deepEqual(await tileNames(page), ['Cleo']);
    assert.deepEqual(await page.evaluate(() => [...window.switchyard.tiles.keys()]), ['p-cleo']);
    await page.close();
  });

  test('rejected join shows join form', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.send({ type: 'error', code: 'invalid_name', message: 'name is too long' });

    const alert = page.locator('#messages .message.error');
    await alert.waitFor({ timeout: TIMEOUT_MS });
    assert.match(await alert.textContent(), /invalid_name: name is too long/);
    await page.locator('#join-view').waitFor({ timeout: TIMEOUT_MS });
    assert.equal(await page.locator('#call-view').isVisible(), false, 'call view still shown');
    assert.equal(await page.locator('#grid .tile').count(), 0);
    assert.equal(await page.inputValue('#name'), 'Ada');
    await page.close();
  });

  test('server error during call is shown', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.send(joined());
    await signaling.nextMessage('offer');
    signaling.send({ type: 'error', code: 'invalid_sdp', message: 'offer is not valid SDP' });

    const alert = page.locator('#messages .message.error');
    await alert.waitFor({ timeout: TIMEOUT_MS });
    assert.match(await alert.textContent(), /invalid_sdp: offer is not valid SDP/);
    assert.ok(await page.locator('#call-view').isVisible(), 'call view left after an error');
    assert.equal(await page.evaluate(() => window.switchyard.participantId), 'p-ada');
    await page.close();
  });

  test('invalid server frame is shown', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.sendRaw('not json');

    const alert = page.locator('#messages .message.error');
    await alert.waitFor({ timeout: TIMEOUT_MS });
    assert.match(await alert.textContent(), /invalid message/);
    await page.close();
  });

  test('WebSocket close is shown as state', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.send(joined());
    signaling.close(4008, 'slow consumer');

    const state = page.locator('#state-signaling .value');
    await page.waitForFunction(() => window.switchyard.states.signaling === 'closed', null, {
      timeout: TIMEOUT_MS,
    });
    assert.equal(await state.textContent(), 'closed (4008)');
    assert.match(await page.locator('#messages').textContent(), /closed with code 4008: slow consumer/);
    assert.ok(await page.locator('#join-view').isVisible(), 'join form not shown after close');
    await page.close();
  });

  test('leave sends leave and shows join form', async () => {
    const { page, signaling } = await openPage('?room=r1&name=Ada');
    await signaling.nextMessage('join');
    signaling.send(joined());
    await signaling.nextMessage('offer');

    await page.click('#leave');
    await signaling.nextMessage('leave');
    assert.ok(await page.locator('#join-view').isVisible(), 'join form not shown after leave');
    assert.equal(await page.locator('#grid .tile').count(), 0);
    assert.equal(await page.evaluate(() => window.switchyard.publisher), null);
    await page.close();
  });

  test('subscriber offer plays remote video', async () => {
    // The client's own candidates are not relayed: the fake peer learns the client's address
    // from its connectivity checks, so the call connects only if the client applied the
    // candidates that arrived before the offer.
    let page;
    const relay = async (message) => {
      if (message.type === 'answer') {
        await applyAnswer(page, message.sdp);
      }
    };
    const opened = await openPage('?room=r1&name=Ada', { onMessage: relay });
    page = opened.page;
    const { signaling } = opened;
    await signaling.nextMessage('join');
    signaling.send(joined([{ id: 'p-bob', name: 'Bob' }]));
    await signaling.nextMessage('offer');

    // Candidates go first, so the client has to hold them until the offer is applied.
    const remote = await startFakeRemote(page, 'p-bob');
    assert.ok(remote.candidates.length > 0, 'fake server peer gathered no candidates');
    for (const candidate of remote.candidates) {
      signaling.send({ type: 'candidate', target: 'subscriber', ...candidate });
    }
    signaling.send({ type: 'track_added', participantId: 'p-bob', trackId: remote.trackId, kind: 'video' });
    signaling.send({ type: 'offer', sdp: remote.sdp });
    await signaling.nextMessage('answer');

    const stats = await pollUntil(
      () => readReceiveStats(page, ['p-bob']),
      (value) => value['p-bob'].videoFramesDecoded > 0,
      { timeoutMs: TIMEOUT_MS },
    );
    assert.ok(stats.done, `no video decoded from p-bob: ${JSON.stringify(stats.value)}`);
    assert.equal(stats.value['p-bob'].name, 'Bob');
    assert.equal(await page.evaluate(() => window.switchyard.subscriber.connectionState), 'connected');
    const subscriberCandidates = signaling.received.filter(
      (message) => message.type === 'candidate' && message.target === 'subscriber',
    );
    assert.ok(subscriberCandidates.length > 0, 'client sent no subscriber candidates');
    const answerIndex = signaling.received.findIndex((message) => message.type === 'answer');
    assert.ok(signaling.received.indexOf(subscriberCandidates[0]) > answerIndex, 'candidate sent before the answer');

    signaling.send({ type: 'track_removed', participantId: 'p-bob', trackId: remote.trackId });
    signaling.send({ type: 'offer', sdp: await removeFakeTrack(page) });
    await signaling.nextMessage('answer');
    await page.locator('[data-participant-id="p-bob"]').waitFor({ state: 'detached', timeout: TIMEOUT_MS });
    await page.close();
  });
});
