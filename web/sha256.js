// Incremental SHA-256 (FIPS 180-4, https://nvlpubs.nist.gov/nistpubs/FIPS/NIST.FIPS.180-4.pdf).
//
// WebCrypto's `crypto.subtle.digest` takes the whole input at once, so hashing a large file with
// it would need the whole file in memory. This hasher takes the input in pieces of any size.

// Round constants: the first 32 bits of the fractional parts of the cube roots of the first 64
// primes (section 4.2.2).
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

// Initial hash value (section 5.3.3).
const INITIAL = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

const BLOCK_BYTES = 64;

/** SHA-256 over input given in pieces with `update`, finished once with `digestHex`. */
export class Sha256 {
  #state = new Int32Array(INITIAL);
  #schedule = new Int32Array(64);
  // Bytes of an incomplete block left over from the last `update`.
  #pending = new Uint8Array(BLOCK_BYTES);
  #pendingLength = 0;
  #totalBytes = 0;
  #finished = false;

  /** Adds `data` (a Uint8Array, ArrayBuffer or ArrayBuffer view) to the hashed input. */
  update(data) {
    if (this.#finished) {
      throw new Error('Sha256.update called after digestHex');
    }
    const bytes = toBytes(data);
    this.#totalBytes += bytes.length;
    let offset = 0;

    if (this.#pendingLength > 0) {
      const take = Math.min(BLOCK_BYTES - this.#pendingLength, bytes.length);
      this.#pending.set(bytes.subarray(0, take), this.#pendingLength);
      this.#pendingLength += take;
      offset = take;
      if (this.#pendingLength < BLOCK_BYTES) {
        return this;
      }
      this.#compress(this.#pending, 0);
      this.#pendingLength = 0;
    }

    while (offset + BLOCK_BYTES <= bytes.length) {
      this.#compress(bytes, offset);
      offset += BLOCK_BYTES;
    }
    this.#pending.set(bytes.subarray(offset), 0);
    this.#pendingLength = bytes.length - offset;
    return this;
  }

  /** Pads the input (section 5.1.1) and returns the digest as 64 lowercase hex digits. */
  digestHex() {
    if (this.#finished) {
      throw new Error('Sha256.digestHex called twice');
    }
    const bitLength = this.#totalBytes * 8;
    const zeros = (BLOCK_BYTES + 56 - ((this.#totalBytes + 1) % BLOCK_BYTES)) % BLOCK_BYTES;
    const padding = new Uint8Array(1 + zeros + 8);
    padding[0] = 0x80;
    // The length is a 64-bit big-endian bit count; JavaScript numbers are exact up to 2^53.
    const view = new DataView(padding.buffer);
    view.setUint32(padding.length - 8, Math.floor(bitLength / 0x1_0000_0000));
    view.setUint32(padding.length - 4, bitLength >>> 0);
    this.update(padding);
    this.#finished = true;

    let hex = '';
    for (const word of this.#state) {
      hex += (word >>> 0).toString(16).padStart(8, '0');
    }
    return hex;
  }

  // Processes one 64-byte block starting at `offset` (section 6.2.2).
  #compress(bytes, offset) {
    const w = this.#schedule;
    for (let i = 0; i < 16; i += 1) {
      const j = offset + i * 4;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i += 1) {
      const x = w[i - 15];
      const y = w[i - 2];
      const sigma0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const sigma1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + sigma0 + w[i - 7] + sigma1) | 0;
    }

    const state = this.#state;
    let a = state[0];
    let b = state[1];
    let c = state[2];
    let d = state[3];
    let e = state[4];
    let f = state[5];
    let g = state[6];
    let h = state[7];
    for (let i = 0; i < 64; i += 1) {
      const sum1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const choose = (e & f) ^ (~e & g);
      const t1 = (h + sum1 + choose + K[i] + w[i]) | 0;
      const sum0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const majority = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (sum0 + majority) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    state[0] = (state[0] + a) | 0;
    state[1] = (state[1] + b) | 0;
    state[2] = (state[2] + c) | 0;
    state[3] = (state[3] + d) | 0;
    state[4] = (state[4] + e) | 0;
    state[5] = (state[5] + f) | 0;
    state[6] = (state[6] + g) | 0;
    state[7] = (state[7] + h) | 0;
  }
}

function toBytes(data) {
  if (data instanceof Uint8Array) {
    return data;
  }
  if (data instanceof ArrayBuffer) {
    return new Uint8Array(data);
  }
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError('Sha256.update expects an ArrayBuffer or an ArrayBuffer view');
}
