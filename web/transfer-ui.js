// The file panel: choose a participant and a file (or drop one), accept or decline incoming
// files, follow each transfer's progress, speed and time left, and save received files.

import { formatBytes, formatDuration } from './transfer-files.js';

// A saved file's object URL is revoked this long after the download started.
const REVOKE_URL_MS = 60_000;

const STATE_LABELS = {
  offered: 'waiting for an answer',
  pending: 'offered to you',
  sending: 'sending',
  receiving: 'receiving',
  interrupted: 'interrupted',
  verifying: 'checking',
  complete: 'complete',
  declined: 'declined',
  cancelled: 'cancelled',
  failed: 'failed',
};
const ACTIVE_STATES = new Set(['sending', 'receiving']);
const UNFINISHED_STATES = new Set(['offered', 'pending', 'sending', 'receiving', 'interrupted', 'verifying']);

/** Binds the file panel's elements to the TransferManager of the current session. */
export class TransferPanel {
  #elements;
  #manager = null;
  #rows = new Map();
  #showMessage;
  #listeners = [];

  /**
   * @param {{panel, peer, input, drop, list}} elements the panel, the participant `<select>`,
   *   the file `<input>`, the drop zone and the transfer list
   * @param {(kind: string, text: string) => void} showMessage shows a message to the user
   */
  constructor(elements, showMessage) {
    this.#elements = elements;
    this.#showMessage = showMessage;
    elements.input.addEventListener('change', () => {
      this.#sendFiles(elements.input.files);
      elements.input.value = '';
    });
    elements.drop.addEventListener('dragover', (event) => {
      event.preventDefault();
      elements.drop.classList.add('dragging');
    });
    elements.drop.addEventListener('dragleave', () => elements.drop.classList.remove('dragging'));
    elements.drop.addEventListener('drop', (event) => {
      event.preventDefault();
      elements.drop.classList.remove('dragging');
      this.#sendFiles(event.dataTransfer?.files);
    });
  }

  /** Shows the transfers of `manager`, replacing any earlier one. */
  attach(manager) {
    this.detach();
    this.#manager = manager;
    const on = (type, handler) => {
      manager.addEventListener(type, handler);
      this.#listeners.push([type, handler]);
    };
    on('change', ({ detail }) => this.#render(detail.transfer));
    on('removed', ({ detail }) => this.#removeRow(detail.key));
    on('peers', () => this.#renderPeers());
    on('notice', ({ detail }) => this.#showMessage(detail.kind, detail.text));
    this.#renderPeers();
  }

  /** Forgets the current manager and clears the list. */
  detach() {
    for (const [type, handler] of this.#listeners.splice(0)) {
      this.#manager?.removeEventListener(type, handler);
    }
    this.#manager = null;
    for (const key of [...this.#rows.keys()]) {
      this.#removeRow(key);
    }
    this.#renderPeers();
  }

  #sendFiles(files) {
    if (!this.#manager || !files || files.length === 0) {
      return;
    }
    const peerId = this.#elements.peer.value;
    for (const file of files) {
      this.#manager.send(peerId, file);
    }
  }

  #renderPeers() {
    const select = this.#elements.peer;
    const selected = select.value;
    const peers = this.#manager?.peers ?? [];
    select.replaceChildren();
    if (peers.length === 0) {
      select.append(new Option('nobody else is here', ''));
    }
    for (const [id, name] of peers) {
      select.append(new Option(name, id));
    }
    if (peers.some(([id]) => id === selected)) {
      select.value = selected;
    }
    select.disabled = peers.length === 0;
    this.#elements.input.disabled = peers.length === 0;
  }

  #render(transfer) {
    let row = this.#rows.get(transfer.key);
    if (!row) {
      row = this.#createRow(transfer);
      this.#rows.set(transfer.key, row);
      this.#elements.list.prepend(row.element);
    }
    const { element, progress, status, path, buttons } = row;
    element.dataset.state = transfer.state;
    progress.max = Math.max(1, transfer.size);
    progress.value = transfer.size === 0 && transfer.state === 'complete' ? 1 : transfer.doneBytes;
    const percent = Math.floor((progress.value / progress.max) * 100);
    progress.textContent = `${percent} %`;
    progress.dataset.percent = String(percent);
    status.textContent = describe(transfer, percent);
    path.textContent = transfer.path ?? '';
    path.hidden = !transfer.path;
    path.dataset.path = transfer.path ?? '';

    buttons.accept.hidden = transfer.state !== 'pending';
    buttons.decline.hidden = transfer.state !== 'pending';
    buttons.cancel.hidden = !UNFINISHED_STATES.has(transfer.state) || transfer.state === 'pending';
    buttons.save.hidden = !(transfer.direction === 'receive' && transfer.hasBlob);
    buttons.dismiss.hidden = UNFINISHED_STATES.has(transfer.state);
  }

  #createRow(transfer) {
    const element = document.createElement('li');
    element.className = 'transfer';
    element.dataset.key = transfer.key;
    element.dataset.direction = transfer.direction;

    const title = document.createElement('div');
    title.className = 'transfer-title';
    const name = document.createElement('span');
    name.className = 'transfer-name';
    // The receiver shows the name the file would be saved under.
    name.textContent = transfer.savedName ?? transfer.name;
    name.title = transfer.name;
    const meta = document.createElement('span');
    meta.className = 'transfer-meta';
    const arrow = transfer.direction === 'send' ? 'to' : 'from';
    meta.textContent = `${formatBytes(transfer.size)} ${arrow} ${transfer.peerName ?? 'a participant'}`;
    const path = document.createElement('span');
    path.className = 'transfer-path';
    title.append(name, meta, path);

    const progress = document.createElement('progress');
    progress.className = 'transfer-progress';
    const status = document.createElement('div');
    status.className = 'transfer-status';
    status.setAttribute('aria-live', 'polite');

    const actions = document.createElement('div');
    actions.className = 'transfer-actions';
    const button = (label, className, onClick) => {
      const control = document.createElement('button');
      control.type = 'button';
      control.className = className;
      control.textContent = label;
      control.addEventListener('click', onClick);
      actions.append(control);
      return control;
    };
    const key = transfer.key;
    const buttons = {
      accept: button('Accept', 'primary accept', () => this.#manager?.accept(key)),
      decline: button('Decline', 'decline', () => this.#manager?.decline(key)),
      save: button('Save', 'primary save', () => this.#save(key)),
      cancel: button('Cancel', 'danger cancel', () => this.#manager?.cancel(key)),
      dismiss: button('Dismiss', 'dismiss-transfer', () => this.#manager?.remove(key)),
    };

    element.append(title, progress, status, actions);
    return { element, progress, status, path, buttons };
  }

  #save(key) {
    const blob = this.#manager?.blob(key);
    const transfer = this.#manager?.list().find((candidate) => candidate.key === key);
    if (!blob || !transfer) {
      return;
    }
    const url = URL.createObjectURL(blob);
    const link = document.createElement('a');
    link.href = url;
    link.download = transfer.savedName;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), REVOKE_URL_MS);
  }

  #removeRow(key) {
    this.#rows.get(key)?.element.remove();
    this.#rows.delete(key);
  }
}

/** Returns the status line of a transfer: state, share, speed and time left, or its message. */
function describe(transfer, percent) {
  const label = STATE_LABELS[transfer.state] ?? transfer.state;
  if (ACTIVE_STATES.has(transfer.state)) {
    const speed = transfer.bytesPerSecond > 0 ? `${formatBytes(transfer.bytesPerSecond)}/s` : 'starting';
    const left = transfer.bytesPerSecond > 0 ? `${formatDuration(transfer.secondsLeft)} left` : '';
    return [`${label} ${percent} %`, speed, left].filter(Boolean).join(' · ');
  }
  return transfer.message ? `${label}: ${transfer.message}` : label;
}
