#!/usr/bin/env python3
"""Writes the seed corpus: the test fixtures plus valid STUN, TURN and ChannelData messages.

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


if __name__ == "__main__":
    main()
