// The web client's incremental SHA-256 against Node's OpenSSL-backed one, for inputs fed in
// pieces of many sizes. Runs in Node only, without a browser.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';

import { Sha256 } from '../../web/sha256.js';

function reference(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Deterministic bytes from a 32-bit xorshift generator. */
function deterministicBytes(length, seed) {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

test('known digests of FIPS 180-4 examples', () => {
  const cases = [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [
      'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq',
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    ],
  ];
  for (const [text, expected] of cases) {
    const digest = new Sha256().update(new TextEncoder().encode(text)).digestHex();
    assert.equal(digest, expected, JSON.stringify(text));
  }
});

test('lengths around block boundaries match node', () => {
  for (const length of [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4096 + 7]) {
    const bytes = deterministicBytes(length, length);
    assert.equal(new Sha256().update(bytes).digestHex(), reference(bytes), `length ${length}`);
  }
});

test('split input gives the same digest as one piece', () => {
  const bytes = deterministicBytes(300_000, 7);
  const expected = reference(bytes);
  for (const pieceSize of [1, 3, 63, 64, 65, 4096, 65_536, 99_999]) {
    const hash = new Sha256();
    for (let offset = 0; offset < bytes.length; offset += pieceSize) {
      hash.update(bytes.subarray(offset, offset + pieceSize));
    }
    assert.equal(hash.digestHex(), expected, `pieces of ${pieceSize} bytes`);
  }
});

test('ArrayBuffer and offset views are accepted', () => {
  const bytes = deterministicBytes(1000, 3);
  const buffer = bytes.buffer.slice(0);
  assert.equal(new Sha256().update(buffer).digestHex(), reference(bytes));
  const view = new DataView(buffer, 10, 500);
  assert.equal(new Sha256().update(view).digestHex(), reference(bytes.subarray(10, 510)));
});

test('update after digestHex throws', () => {
  const hash = new Sha256();
  hash.digestHex();
  assert.throws(() => hash.update(new Uint8Array(1)), /after digestHex/);
});
