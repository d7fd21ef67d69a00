// Pieces of the file-transfer protocol that need no connection: chunk framing, file-name
// sanitising, and the numbers shown in the progress display.

/**
 * Payload bytes per chunk. Every chunk but the last of a file is exactly this long, so a chunk
 * message with its header is 64 KiB, well under the 256 KiB that Chromium announces in
 * `a=max-message-size`.
 */
export const CHUNK_BYTES = 64 * 1024 - 4;

/** Bytes before each chunk's payload: the chunk index as a 32-bit big-endian integer. */
export const CHUNK_HEADER_BYTES = 4;

/** Maximum length in UTF-8 bytes of a saved file name. Most file systems allow 255. */
export const MAX_SAVED_NAME_BYTES = 200;

/** Maximum length in characters of a file name that a receiver accepts in an offer. */
export const MAX_OFFERED_NAME_CHARS = 4096;

/** Returns the number of chunks of a file of `size` bytes; an empty file has none. */
export function chunkCount(size) {
  return Math.ceil(size / CHUNK_BYTES);
}

/** Builds the binary message for chunk `index` with `payload` (an ArrayBuffer). */
export function encodeChunk(index, payload) {
  const frame = new Uint8Array(CHUNK_HEADER_BYTES + payload.byteLength);
  new DataView(frame.buffer).setUint32(0, index);
  frame.set(new Uint8Array(payload), CHUNK_HEADER_BYTES);
  return frame;
}

/**
 * Splits a received binary message into `{ index, payload }`, where `payload` is a Uint8Array
 * view into `frame`, or returns null when the message is too short to hold a header.
 */
export function decodeChunk(frame) {
  if (!(frame instanceof ArrayBuffer) || frame.byteLength < CHUNK_HEADER_BYTES) {
    return null;
  }
  const index = new DataView(frame).getUint32(0);
  return { index, payload: new Uint8Array(frame, CHUNK_HEADER_BYTES) };
}

// Characters that no file system or shell should get in a name: path separators, characters
// Windows reserves, C0 and C1 controls, and the bidirectional overrides and isolates that can
// make `txt.exe` look like `exe.txt`.
const UNSAFE_CHARACTERS = /[/\\<>:"|?*\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
// Device names that Windows opens instead of a file, with any extension.
const WINDOWS_DEVICE_NAME = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/iu;
// An extension kept when a long name is shortened: a dot and up to 16 characters.
const EXTENSION = /\.[^.]{1,16}$/u;

/**
 * Returns a name that is safe to save a received file under. The result is one path component
 * without separators, control or bidirectional-override characters. It is not hidden, not a
 * Windows device name, at most MAX_SAVED_NAME_BYTES bytes of UTF-8 with its extension kept, and
 * never empty.
 */
export function sanitizeFileName(name) {
  let clean = String(name ?? '').normalize('NFC').replace(UNSAFE_CHARACTERS, '_');
  // Leading dots hide a file on Unix and make `..`; trailing dots and spaces vanish on Windows.
  clean = clean.replace(/^[\s.]+/u, '').replace(/[\s.]+$/u, '');
  if (WINDOWS_DEVICE_NAME.test(clean)) {
    clean = `_${clean}`;
  }
  clean = truncateUtf8(clean, MAX_SAVED_NAME_BYTES);
  return clean === '' ? 'download' : clean;
}

function truncateUtf8(name, maxBytes) {
  const encoder = new TextEncoder();
  if (encoder.encode(name).length <= maxBytes) {
    return name;
  }
  const extension = name.match(EXTENSION)?.[0] ?? '';
  const stem = Array.from(name.slice(0, name.length - extension.length));
  const budget = maxBytes - encoder.encode(extension).length;
  let kept = '';
  let bytes = 0;
  for (const character of stem) {
    const length = encoder.encode(character).length;
    if (bytes + length > budget) {
      break;
    }
    kept += character;
    bytes += length;
  }
  return kept + extension;
}

/** Formats a byte count with a binary-prefixed unit, such as `1.5 MiB`. */
export function formatBytes(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** Formats a duration in seconds as `45 s`, `3 min 20 s` or `2 h 5 min`. */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) {
    return 'unknown';
  }
  const whole = Math.max(0, Math.ceil(seconds));
  if (whole < 60) {
    return `${whole} s`;
  }
  if (whole < 3600) {
    return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  }
  return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
}

/**
 * Rate estimate of a byte counter: an exponentially weighted moving average over samples at
 * least SAMPLE_MS apart, in bytes per second.
 */
export class RateMeter {
  static SAMPLE_MS = 500;
  // Weight of the newest sample.
  static SMOOTHING = 0.3;
  #lastTime = null;
  #lastBytes = 0;
  bytesPerSecond = 0;

  /** Records that the counter is at `bytes` at time `now` in milliseconds. */
  update(bytes, now = performance.now()) {
    if (this.#lastTime === null || bytes < this.#lastBytes) {
      this.#lastTime = now;
      this.#lastBytes = bytes;
      return;
    }
    const elapsed = now - this.#lastTime;
    if (elapsed < RateMeter.SAMPLE_MS) {
      return;
    }
    const rate = ((bytes - this.#lastBytes) * 1000) / elapsed;
    this.bytesPerSecond = this.bytesPerSecond === 0
      ? rate
      : RateMeter.SMOOTHING * rate + (1 - RateMeter.SMOOTHING) * this.bytesPerSecond;
    this.#lastTime = now;
    this.#lastBytes = bytes;
  }

  /** Forgets the samples, for example after a pause, so the next rate starts fresh. */
  reset() {
    this.#lastTime = null;
    this.bytesPerSecond = 0;
  }
}
