// Page controller: join form, call controls, connection state and the test hook.
//
// Opening `/?room=R&name=N` joins room R as N without a click. Adding `&relay=udp` or
// `&relay=tcp` sends all media through the server's TURN relay over that transport, and
// `&token=T` sends the join token T with `join`, on either transport.

import { Call } from './call.js';
import { RELAY_TRANSPORTS } from './ice.js';
import { SignalingClient, signalingUrl } from './signaling.js';
import { TileGrid } from './tiles.js';
import { TransferManager } from './transfer.js';
import { TransferPanel } from './transfer-ui.js';

// Older messages are dropped once this many are on screen.
const MAX_MESSAGES = 5;

const view = {
  joinView: document.getElementById('join-view'),
  joinForm: document.getElementById('join-form'),
  callView: document.getElementById('call-view'),
  roomLabel: document.getElementById('room-label'),
  grid: document.getElementById('grid'),
  muteAudio: document.getElementById('mute-audio'),
  muteVideo: document.getElementById('mute-video'),
  leave: document.getElementById('leave'),
  enableSound: document.getElementById('enable-sound'),
  messages: document.getElementById('messages'),
  states: {
    signaling: document.getElementById('state-signaling'),
    publisher: document.getElementById('state-publisher'),
    subscriber: document.getElementById('state-subscriber'),
  },
};

const grid = new TileGrid(view.grid, () => {
  view.enableSound.hidden = false;
});

const states = { signaling: 'idle', publisher: 'none', subscriber: 'none' };

const files = new TransferPanel(
  {
    peer: document.getElementById('file-peer'),
    input: document.getElementById('file-input'),
    drop: document.getElementById('file-drop'),
    list: document.getElementById('transfers'),
  },
  (kind, text) => showMessage(kind, text),
);

// The current session, or null while the join form is shown.
let session = null;

/** Joins a room: opens the camera and microphone, connects signaling and sends `join`. */
async function join(room, name) {
  if (session) {
    return;
  }
  session = {
    room, name, signaling: null, call: null, transfers: null, localStream: null, names: new Map(),
  };
  const current = session;
  resetConnectionStates();
  showCallView(room);

  const localStream = await openLocalMedia();
  if (session !== current) {
    stopStream(localStream);
    return;
  }
  current.localStream = localStream;
  if (localStream) {
    grid.showLocal(name, localStream);
  }

  // `?transport=sse` or `?transport=websocket` skips the automatic choice.
  const transport = new URLSearchParams(window.location.search).get('transport') ?? 'auto';
  const signaling = new SignalingClient(signalingUrl(window.location), { transport });
  const relay = readRelayParameter();
  const call = new Call(signaling, localStream, { relay });
  current.signaling = signaling;
  current.call = call;
  current.transfers = new TransferManager(signaling, { relay });
  files.attach(current.transfers);
  wireSignaling(current, signaling);
  wireCall(current, call);

  try {
    await signaling.connect();
  } catch (error) {
    console.error('switchyard: signaling connection failed', error);
    return;
  }
  call.join(room, name, readTokenParameter());
}

/** Sends `leave`, closes everything and shows the join form again. */
function leave() {
  if (!session) {
    return;
  }
  const { call, signaling } = session;
  call?.leave();
  signaling?.close('leave');
  endSession();
}

function endSession() {
  if (!session) {
    return;
  }
  session.call?.close();
  session.transfers?.close();
  files.detach();
  stopStream(session.localStream);
  session = null;
  grid.clear();
  resetControls();
  view.callView.hidden = true;
  view.joinView.hidden = false;
  view.roomLabel.hidden = true;
  document.title = 'Switchyard';
}

async function openLocalMedia() {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (error) {
    console.error('switchyard: getUserMedia failed', error);
    showMessage(
      'error',
      `Camera and microphone are not available (${error.name}). Joining without sending media.`,
    );
    return null;
  }
}

function wireSignaling(current, signaling) {
  signaling.addEventListener('state', ({ detail }) => {
    let label = detail.state === 'closed' ? `closed (${detail.code})` : detail.state;
    if (detail.state === 'open' && detail.transport === 'sse') {
      label = 'open (SSE)';
    }
    setState('signaling', detail.state, label);
    if (detail.state === 'closed' && session === current) {
      const reason = detail.reason ? `: ${detail.reason}` : '';
      showMessage('error', `Connection to the server closed with code ${detail.code}${reason}.`);
      endSession();
    }
  });
  signaling.addEventListener('session-lost', () => {
    if (session !== current) {
      return;
    }
    // The server could not continue the session, so start over instead of running on
    // partial state.
    showMessage('error', 'The connection to the server was lost. Joining again.');
    endSession();
    join(current.room, current.name);
  });
  signaling.addEventListener('invalid', ({ detail }) => {
    console.error('switchyard: invalid signaling frame', detail.data, detail.error);
    showMessage('error', `The server sent an invalid message: ${detail.error.message}.`);
  });
}

function wireCall(current, call) {
  call.addEventListener('joined', ({ detail }) => {
    view.roomLabel.textContent = detail.room;
    for (const participant of detail.participants) {
      current.names.set(participant.id, participant.name);
      grid.ensureTile(participant.id, participant.name);
    }
  });
  call.addEventListener('participant-joined', ({ detail }) => {
    current.names.set(detail.id, detail.name);
    grid.ensureTile(detail.id, detail.name);
  });
  call.addEventListener('participant-left', ({ detail }) => {
    current.names.delete(detail.participantId);
    grid.removeParticipant(detail.participantId);
  });
  call.addEventListener('track', ({ detail }) => {
    const name = current.names.get(detail.participantId) ?? 'Participant';
    grid.addTrack(detail.participantId, name, detail.track);
  });
  call.addEventListener('track-ended', ({ detail }) => {
    grid.removeTrack(detail.participantId, detail.trackId);
  });
  call.addEventListener('connection-state', ({ detail }) => {
    setState(detail.target, detail.state, detail.state);
  });
  call.addEventListener('server-error', ({ detail }) => {
    showMessage('error', `Server error ${detail.code}: ${detail.message}`);
    // Before `joined` the only request is `join`, so an error now means the server rejected it.
    if (call.participantId === null && session === current) {
      leave();
    }
  });
  call.addEventListener('failure', ({ detail }) => {
    showMessage('error', detail.message);
  });
}

function showCallView(room) {
  view.joinView.hidden = true;
  view.callView.hidden = false;
  view.roomLabel.textContent = room;
  view.roomLabel.hidden = false;
  document.title = `${room} · Switchyard`;
}

function toggleTrack(kind, button) {
  const tracks = kind === 'audio'
    ? session?.localStream?.getAudioTracks()
    : session?.localStream?.getVideoTracks();
  if (!tracks?.length) {
    return;
  }
  const muted = button.getAttribute('aria-pressed') !== 'true';
  for (const track of tracks) {
    track.enabled = !muted;
  }
  button.setAttribute('aria-pressed', String(muted));
  button.textContent = button.dataset[muted ? 'labelOn' : 'labelOff'];
  if (kind === 'video') {
    grid.setLocalVideoEnabled(!muted);
  }
}

function resetControls() {
  for (const button of [view.muteAudio, view.muteVideo]) {
    button.setAttribute('aria-pressed', 'false');
    button.textContent = button.dataset.labelOff;
  }
  view.enableSound.hidden = true;
}

function resetConnectionStates() {
  for (const target of ['publisher', 'subscriber']) {
    setState(target, 'none', 'none');
  }
}

function setState(name, state, label) {
  states[name] = state;
  const element = view.states[name];
  element.dataset.state = state;
  element.querySelector('.value').textContent = label;
}

function showMessage(kind, text) {
  const item = document.createElement('div');
  item.className = `message ${kind}`;
  item.setAttribute('role', kind === 'error' ? 'alert' : 'status');

  const body = document.createElement('span');
  body.textContent = text;
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'dismiss';
  dismiss.setAttribute('aria-label', 'Dismiss');
  dismiss.textContent = '×';
  dismiss.addEventListener('click', () => item.remove());

  item.append(body, dismiss);
  view.messages.append(item);
  while (view.messages.children.length > MAX_MESSAGES) {
    view.messages.firstElementChild.remove();
  }
}

function stopStream(stream) {
  for (const track of stream?.getTracks() ?? []) {
    track.stop();
  }
}

/**
 * Returns the transport of `?relay=udp` or `?relay=tcp`, which sends all media through the TURN
 * server over that transport, or null when the parameter is absent or invalid.
 */
function readRelayParameter() {
  const relay = new URLSearchParams(window.location.search).get('relay');
  if (relay === null || RELAY_TRANSPORTS.includes(relay)) {
    return relay;
  }
  showMessage('error', `Ignored relay=${relay}: expected relay=udp or relay=tcp.`);
  return null;
}

/** Returns the join token from `?token=...`, or null when the parameter is absent or empty. */
function readTokenParameter() {
  return new URLSearchParams(window.location.search).get('token') || null;
}

function readJoinParameters() {
  const params = new URLSearchParams(window.location.search);
  return { room: (params.get('room') ?? '').trim(), name: (params.get('name') ?? '').trim() };
}

function installTestHook() {
  const hook = {
    get participantId() {
      return session?.call?.participantId ?? null;
    },
    get room() {
      return session?.call?.room ?? null;
    },
    get publisher() {
      return session?.call?.publisher ?? null;
    },
    get subscriber() {
      return session?.call?.subscriber ?? null;
    },
    get states() {
      return { ...states };
    },
    /** `websocket` or `sse` while connected, else null. */
    get transport() {
      return session?.signaling?.transport ?? null;
    },
    get lastSeq() {
      return session?.signaling?.lastSeq ?? 0;
    },
    /** The session's TransferManager (see transfer.js), or null. */
    get files() {
      return session?.transfers ?? null;
    },
    /** Snapshot of the remote tiles: participant id to `{ name, element, stream }`. */
    get tiles() {
      const entries = [...grid.tiles].map(([id, tile]) => [
        id,
        Object.freeze({ name: tile.name, element: tile.element, stream: tile.stream }),
      ]);
      return new Map(entries);
    },
  };
  Object.defineProperty(window, 'switchyard', { value: Object.freeze(hook) });
}

function start() {
  installTestHook();
  resetControls();
  resetConnectionStates();

  view.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const form = new FormData(view.joinForm);
    const room = String(form.get('room')).trim();
    const name = String(form.get('name')).trim();
    if (!room || !name) {
      return;
    }
    const url = new URL(window.location.href);
    url.searchParams.set('room', room);
    url.searchParams.set('name', name);
    window.history.replaceState(null, '', url);
    join(room, name);
  });
  view.muteAudio.addEventListener('click', () => toggleTrack('audio', view.muteAudio));
  view.muteVideo.addEventListener('click', () => toggleTrack('video', view.muteVideo));
  view.leave.addEventListener('click', leave);
  view.enableSound.addEventListener('click', () => {
    grid.unmuteRemote();
    view.enableSound.hidden = true;
  });
  window.addEventListener('pagehide', leave);

  const { room, name } = readJoinParameters();
  view.joinForm.elements.room.value = room;
  view.joinForm.elements.name.value = name;
  if (room && name) {
    join(room, name);
  }
}

start();
