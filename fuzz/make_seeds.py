#!/usr/bin/env python3
"""Writes the seed corpus: the test fixtures plus valid STUN, TURN and ChannelData messages,
and WebSocket frames, valid and each kind of protocol violation.

Run from the fuzz directory: python3 make_seeds.py
The turn_core seeds match the fixed settings of fuzz_targets/turn_core.rs (realm "fuzz",
user "user" with password "pass", nonce key of 32 bytes of 3, clock at 1700000000).
"""

import base64
import hashlib
import hmac
import os
import struct
import zlib

COOKIE = 0x2112A442
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def read_hex_fixture(path):
    seeds = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, *words = line.split()
            data = b"".join(b"\xab" * 12 if w == "TXID" else bytes([int(w, 16)]) for w in words)
            seeds[name] = data
    return seeds


def message_type(method, cls):
    return (method & 0xF) | ((method & 0x70) << 1) | ((method & 0xF80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7)


def attr(typ, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", typ, len(value)) + value + b"\0" * pad


def xor_addr(typ, ip4, port):
    x_port = port ^ (COOKIE >> 16)
    x_ip = bytes(a ^ b for a, b in zip(ip4, struct.pack("!I", COOKIE)))
    return attr(typ, struct.pack("!BBH", 0, 1, x_port) + x_ip)


def message(method, cls, attrs, txid, key=None, fingerprint=False):
    body = b"".join(attrs)
    header = lambda extra: struct.pack("!HHI", message_type(method, cls), len(body) + extra, COOKIE) + txid
    if key is not None:
        mac = hmac.new(key, header(24) + body, hashlib.sha1).digest()
        body += attr(0x0008, mac)
    if fingerprint:
        crc = (zlib.crc32(header(8) + body) ^ 0x5354554E) & 0xFFFFFFFF
        body += attr(0x8028, struct.pack("!I", crc))
    return header(0) + body


def nonce(unix, ip4):
    issued = format(unix, "x")
    mac = hmac.new(b"\x03" * 32, issued.encode() + bytes(ip4), hashlib.sha256).digest()[:12]
    return "obMatJos2wAAA" + issued + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    malformed = read_hex_fixture(os.path.join(FIXTURES, "stun", "malformed.hex"))
    channel_data = read_hex_fixture(os.path.join(FIXTURES, "turn", "channeldata-over-tcp.hex"))
    loopback = bytes([127, 0, 0, 1])
    txid = bytes(range(1, 13))
    key = hashlib.md5(b"user:fuzz:pass").digest()
    auth = [attr(0x0006, b"user"), attr(0x0014, b"fuzz"), attr(0x0015, nonce(1_700_000_000, loopback).encode())]

    binding = message(0x001, 0, [], txid, fingerprint=True)
    allocate = message(0x003, 0, [attr(0x0019, b"\x11\0\0\0"), attr(0x000D, struct.pack("!I", 600))], txid)
    allocate_auth = message(0x003, 0, [attr(0x0019, b"\x11\0\0\0")] + auth, txid, key=key)
    permission = message(0x008, 0, [xor_addr(0x0012, loopback, 5000)], txid)
    channel_bind = message(0x009, 0, [attr(0x000C, b"\x40\0\0\0"), xor_addr(0x0012, loopback, 5000)], txid)
    channel_bind_auth = message(0x009, 0, [attr(0x000C, b"\x40\0\0\0"), xor_addr(0x0012, loopback, 5000)] + auth, txid, key=key)
    send = message(0x006, 1, [xor_addr(0x0012, loopback, 5000), attr(0x0013, b"hello")], txid)
    refresh = message(0x004, 0, [attr(0x000D, b"\0\0\0\0")], txid)
    frame = b"\x40\x00\x00\x05hello\0\0\0"

    stun_dir = os.path.join("corpus", "stun_message")
    for name, data in malformed.items():
        write(stun_dir, name, data)
    for name, data in [("binding", binding), ("allocate", allocate), ("allocate-auth", allocate_auth),
                       ("channel-bind", channel_bind), ("send", send)]:
        write(stun_dir, name, data)

    channel_dir = os.path.join("corpus", "channel_data")
    for name, data in channel_data.items():
        for read_size in (1, 7, 255):
            write(channel_dir, f"{name}-reads-of-{read_size}", bytes([read_size]) + data)
    write(channel_dir, "frame-then-stun", b"\x05" + frame + allocate)

    def record(op, data):
        return bytes([op]) + struct.pack("!H", len(data)) + data

    core_dir = os.path.join("corpus", "turn_core")
    unauthenticated = b"\x00" + b"".join([
        record(0, allocate), record(0, permission), record(0, channel_bind), record(0, frame),
        record(0, send), record(2, b"pong"), record(3, b"\x3c"), record(0, refresh),
    ])
    write(core_dir, "udp-allocate-relay-refresh", unauthenticated)
    authenticated = b"\x01" + b"".join([
        record(0, allocate), record(0, allocate_auth), record(0, channel_bind_auth), record(0, frame),
        record(2, b"pong"), record(3, b"\xff"), record(2, b"late"),
    ])
    write(core_dir, "udp-authenticated-channel", authenticated)
    stream = b"\x00" + b"".join([record(1, allocate), record(1, channel_bind), record(1, frame), record(2, b"pong")])
    write(core_dir, "tcp-allocate-channel", stream)
    for name, data in malformed.items():
        write(core_dir, name, b"\x01" + record(0, data) + record(1, data) + record(0, binding))

    write_websocket_seeds(os.path.join("corpus", "websocket_frames"))


def ws_frame(opcode, payload, fin=True, masked=True, rsv=0, length_bytes=None):
    """Builds a client WebSocket frame. length_bytes forces an extended length of 0, 2 or 8 bytes."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if length_bytes is None and n < 126:
        length_bytes = 0
    elif length_bytes is None and n < 65536:
        length_bytes = 2
    elif length_bytes is None:
        length_bytes = 8
    if length_bytes == 0:
        head = bytes([first, mask_bit | n])
    elif length_bytes == 2:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = b"\x37\xfa\x21\x3d"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def write_websocket_seeds(directory):
    """Seeds for websocket_frames: a limit byte (limit = byte + 1), a split seed, then frames."""
    text, binary, continuation, close, ping, pong = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
    join = b'{"type":"join","room":"fuzz","name":"Ada"}'
    valid = {
        "text": ws_frame(text, b"hello"),
        "join": ws_frame(text, join),
        "binary": ws_frame(binary, b"\x00\x01\x02"),
        "empty-text": ws_frame(text, b""),
        "ping-pong": ws_frame(ping, b"are you there") + ws_frame(pong, b"\x00" * 8),
        "close-empty": ws_frame(close, b""),
        "close-with-reason": ws_frame(close, struct.pack("!H", 1000) + "bye \u00e9".encode()),
        "close-4000": ws_frame(close, struct.pack("!H", 4000)),
        "fragments-with-ping": ws_frame(text, join[:10], fin=False) + ws_frame(continuation, join[10:20], fin=False)
        + ws_frame(ping, b"p") + ws_frame(continuation, join[20:]),
        "utf8-split-across-fragments": ws_frame(text, b"caf\xc3", fin=False) + ws_frame(continuation, b"\xa9"),
        "empty-continuations": ws_frame(binary, b"", fin=False) + ws_frame(continuation, b"", fin=False) * 20
        + ws_frame(continuation, b"x"),
        "length-16-bit": ws_frame(text, b"a" * 200),
        "length-64-bit-for-a-short-frame": ws_frame(text, b"abc", length_bytes=8),
        "length-16-bit-for-a-short-frame": ws_frame(binary, b"abc", length_bytes=2),
        "messages-then-close": ws_frame(text, b"one") + ws_frame(binary, b"two") + ws_frame(close, struct.pack("!H", 1001)),
    }
    violations = {
        "unmasked": ws_frame(text, b"{}", masked=False),
        "reserved-bit": ws_frame(text, b"hi", rsv=0x40),
        "unknown-data-opcode": ws_frame(0x3, b""),
        "unknown-control-opcode": ws_frame(0xB, b""),
        "fragmented-ping": ws_frame(ping, b"", fin=False),
        "long-ping": ws_frame(ping, b"\x00" * 126),
        "lone-continuation": ws_frame(continuation, b"x"),
        "interleaved-message": ws_frame(text, b"a", fin=False) + ws_frame(text, b"b"),
        "close-one-byte": ws_frame(close, b"\x03"),
        "close-code-1005": ws_frame(close, struct.pack("!H", 1005)),
        "close-code-999": ws_frame(close, struct.pack("!H", 999)),
        "close-code-5000": ws_frame(close, struct.pack("!H", 5000)),
        "close-reason-not-utf8": ws_frame(close, struct.pack("!H", 1000) + b"\xff"),
        "text-not-utf8": ws_frame(text, b"\xc3\x28"),
        "fragments-not-utf8": ws_frame(text, b"ok", fin=False) + ws_frame(continuation, b"\xff"),
        "too-large-frame": ws_frame(text, b"a" * 20),
        "too-large-fragments": ws_frame(text, b"a" * 6, fin=False) + ws_frame(continuation, b"a" * 6),
        "length-top-bit": bytes([0x81, 0xFF]) + b"\x80" + b"\x00" * 7 + b"\x37\xfa\x21\x3d",
        "length-2-pow-62": bytes([0x82, 0xFF]) + b"\x40" + b"\x00" * 7 + b"\x37\xfa\x21\x3d",
    }
    # The limit byte: 255 (256 bytes) for valid frames, so the 16-bit length fits, and 9 (10
    # bytes) for violations, so the too-large cases trip it.
    for name, data in valid.items():
        for split_seed in (0, 7):
            write(directory, f"{name}-split-{split_seed}", bytes([255, split_seed]) + data)
    for name, data in violations.items():
        write(directory, name, bytes([9, 3]) + data)


if __name__ == "__main__":
    main()
