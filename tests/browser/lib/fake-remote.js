// A peer connection inside the page under test that plays the server's side of the subscriber
// connection. It sends a canvas video track, so a test can check the client's answer, candidate
// buffering and track handling without the real server.

/**
 * Creates the fake server peer with one sendonly video track whose media stream id is
 * `participantId`, and makes the first offer.
 *
 * Returns `{ sdp, candidates, trackId }`. The SDP has no candidates in it; they are returned
 * separately so the test decides when the client sees them.
 */
export function startFakeRemote(page, participantId) {
  return page.evaluate(async (participantId) => {
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 180;
    const context = canvas.getContext('2d');
    let frame = 0;
    const timer = setInterval(() => {
      context.fillStyle = `hsl(${(frame * 7) % 360} 70% 50%)`;
      context.fillRect(0, 0, canvas.width, canvas.height);
      frame += 1;
    }, 66);
    const stream = canvas.captureStream(15);
    const track = stream.getVideoTracks()[0];

    const pc = new RTCPeerConnection();
    const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    const gathered = new Promise((resolve) => {
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          resolve();
        }
      });
    });
    const candidates = [];
    pc.addEventListener('icecandidate', (event) => {
      if (event.candidate?.candidate) {
        candidates.push(event.candidate.toJSON());
      }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await Promise.race([gathered, new Promise((resolve) => setTimeout(resolve, 5_000))]);

    const toWire = (sdp) =>
      sdp
        .replaceAll(stream.id, participantId)
        .split('\r\n')
        .filter((line) => !line.startsWith('a=candidate:') && line !== 'a=end-of-candidates')
        .join('\r\n');
    window.fakeRemote = { pc, transceiver, timer, toWire };
    return { sdp: toWire(pc.localDescription.sdp), candidates, trackId: track.id };
  }, participantId);
}

/** Applies the client's answer to the fake server peer. */
export function applyAnswer(page, sdp) {
  return page.evaluate((sdp) => window.fakeRemote.pc.setRemoteDescription({ type: 'answer', sdp }), sdp);
}

/** Stops sending the video track and returns the renegotiation offer that removes it. */
export function removeFakeTrack(page) {
  return page.evaluate(async () => {
    const { pc, transceiver, timer, toWire } = window.fakeRemote;
    clearInterval(timer);
    pc.removeTrack(transceiver.sender);
    await pc.setLocalDescription(await pc.createOffer());
    return toWire(pc.localDescription.sdp);
  });
}
