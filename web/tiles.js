// Video tiles: one for the local preview and one per remote participant.

/**
 * Grid of participant tiles inside one container element.
 *
 * A remote tile shows a participant's name and plays its audio and video from one MediaStream
 * built here, so that tracks can be added and removed one by one.
 */
export class TileGrid {
  #container;
  #tiles = new Map();
  #localTile = null;
  #onAutoplayBlocked;

  /**
   * @param {HTMLElement} container element that receives the tiles
   * @param {() => void} onAutoplayBlocked called when the browser blocks playback with sound
   */
  constructor(container, onAutoplayBlocked) {
    this.#container = container;
    this.#onAutoplayBlocked = onAutoplayBlocked;
  }

  /** Remote tiles by participant id. */
  get tiles() {
    return this.#tiles;
  }

  /** Shows the local preview, muted so the user does not hear themselves. */
  showLocal(name, stream) {
    this.removeLocal();
    const tile = createTile(name, 'local', `${name} (you)`);
    tile.video.muted = true;
    tile.video.srcObject = stream;
    tile.element.classList.toggle('has-video', stream?.getVideoTracks().length > 0);
    this.#localTile = tile;
    this.#container.prepend(tile.element);
    this.#layout();
  }

  /** Shows or hides the "camera off" placeholder on the local preview. */
  setLocalVideoEnabled(enabled) {
    this.#localTile?.element.classList.toggle('has-video', enabled);
  }

  /** Removes the local preview. */
  removeLocal() {
    this.#localTile?.element.remove();
    this.#localTile = null;
    this.#layout();
  }

  /** Returns the tile of a participant, creating it when missing. */
  ensureTile(participantId, name) {
    let tile = this.#tiles.get(participantId);
    if (!tile) {
      tile = createTile(name, 'remote');
      tile.participantId = participantId;
      tile.element.dataset.participantId = participantId;
      this.#tiles.set(participantId, tile);
      this.#container.append(tile.element);
      this.#layout();
    }
    return tile;
  }

  /** Adds a remote track to its participant's tile and starts playback. */
  addTrack(participantId, name, track) {
    const tile = this.ensureTile(participantId, name);
    if (!tile.stream.getTrackById(track.id)) {
      tile.stream.addTrack(track);
    }
    this.#refreshMedia(tile);
  }

  /** Removes a remote track. A tile whose last track is removed is removed too. */
  removeTrack(participantId, trackId) {
    const tile = this.#tiles.get(participantId);
    const track = tile?.stream.getTrackById(trackId);
    if (!track) {
      return;
    }
    tile.stream.removeTrack(track);
    if (tile.stream.getTracks().length === 0) {
      this.removeParticipant(participantId);
    } else {
      this.#refreshMedia(tile);
    }
  }

  /** Removes a participant's tile, if it has one. */
  removeParticipant(participantId) {
    const tile = this.#tiles.get(participantId);
    if (!tile) {
      return;
    }
    tile.video.srcObject = null;
    tile.element.remove();
    this.#tiles.delete(participantId);
    this.#layout();
  }

  /** Unmutes every remote tile after the user allowed sound with a click. */
  unmuteRemote() {
    for (const tile of this.#tiles.values()) {
      tile.video.muted = false;
    }
  }

  /** Removes every tile, local and remote. */
  clear() {
    for (const participantId of [...this.#tiles.keys()]) {
      this.removeParticipant(participantId);
    }
    this.removeLocal();
  }

  #refreshMedia(tile) {
    tile.element.classList.toggle('has-video', tile.stream.getVideoTracks().length > 0);
    if (tile.video.srcObject !== tile.stream) {
      tile.video.srcObject = tile.stream;
    }
    tile.video.play().catch((error) => {
      if (error.name !== 'NotAllowedError') {
        return;
      }
      // Browsers block playback with sound before the first user gesture. Play muted and let
      // the user turn sound on.
      tile.video.muted = true;
      tile.video.play().catch(() => {});
      this.#onAutoplayBlocked();
    });
  }

  #layout() {
    const count = this.#container.children.length;
    const columns = Math.max(1, Math.ceil(Math.sqrt(count)));
    const rows = Math.max(1, Math.ceil(count / columns));
    this.#container.style.setProperty('--columns', columns);
    this.#container.style.setProperty('--rows', rows);
  }
}

/** Builds a tile whose avatar shows the initials of `name` and whose caption shows `label`. */
function createTile(name, kind, label = name) {
  const element = document.createElement('figure');
  element.className = `tile ${kind}`;

  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;

  const avatar = document.createElement('div');
  avatar.className = 'avatar';
  avatar.setAttribute('aria-hidden', 'true');
  avatar.textContent = initials(name);

  const caption = document.createElement('figcaption');
  caption.className = 'name';
  caption.textContent = label;

  element.append(video, avatar, caption);
  return { participantId: null, name, element, video, stream: new MediaStream() };
}

function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.slice(0, 2).map((word) => [...word][0].toUpperCase());
  return letters.join('') || '?';
}
