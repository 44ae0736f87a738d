#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What a permessage-deflate configuration does to message sizes (bench/README "echo-deflate").

    bench/deflate_ratio.py                    # zlib alone: a stream of JSON chat messages
    bench/deflate_ratio.py --server HOST:PORT # a server's replies to the test message

Without --server: 500 JSON chat messages (seeded, so every run prints the same) compressed
as a server sends them with each configuration (level 6): a 15-bit, memLevel 8 stream kept
across messages (eddy's default), a 9-bit, memLevel 1 one kept across messages (what
uWebSockets' DEDICATED_COMPRESSOR compresses with at the commit bench/README names), and
no context takeover (each message alone). With --server: the 1,640-byte message of
tests/integration/test_pubsub.py's test_compressed_fan_out (200 random letters, a
repeated phrase, the 200 letters again) is sent compressed three times to an echo server
that negotiates permessage-deflate (offered with client_no_context_takeover, as eddy-bench
does), and the compressed size of each reply is printed beside what zlib makes of that
message alone with 15/8 and with 9/1. Loopback only; standard library only.
"""
import argparse
import base64
import json
import os
import random
import socket
import string
import struct
import zlib

WORDS = ("alpha beta gamma delta user message room chat hello world eddy socket event "
         "payload timestamp").split()


def chat_messages(n=500, seed=3):
    rnd = random.Random(seed)
    return [json.dumps({"event": "message", "room": f"room-{rnd.randint(1, 5)}",
                        "user": rnd.choice(WORDS) + str(rnd.randint(1, 99)),
                        "text": " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(5, 40))),
                        "ts": 1733500000 + rnd.randint(0, 10**5),
                        "id": rnd.randint(1, 10**9)}).encode() for _ in range(n)]


def deflated(messages, bits, mem_level, keep_context):
    """Total compressed bytes as sent (sync flush, without the 00 00 ff ff tail)."""
    total, stream = 0, None
    for m in messages:
        if stream is None or not keep_context:
            stream = zlib.compressobj(6, zlib.DEFLATED, -bits, mem_level)
        total += len(stream.compress(m) + stream.flush(zlib.Z_SYNC_FLUSH)) - 4
    return total


def test_message():
    rnd = random.Random(7)
    head = "".join(rnd.choice(string.ascii_letters) for _ in range(200))
    return (head + "the same words again and again " * 40 + head).encode()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit("deflate_ratio: the server closed the connection")
        data += chunk
    return data


def server_replies(host, port, message, count=3):
    sock = socket.create_connection((host, port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; "
                  "client_no_context_takeover\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(sock, 1)
    if b" 101 " not in head.split(b"\r\n")[0] or b"permessage-deflate" not in head.lower():
        raise SystemExit("deflate_ratio: no upgrade with permessage-deflate:\n" + head.decode())
    sizes = []
    for _ in range(count):
        # Sent compressed (alone: client_no_context_takeover), as eddy-bench --deflate does:
        # an echo server then answers compressed (eddy's echo example echoes the flag).
        stream = zlib.compressobj(6, zlib.DEFLATED, -15, 8)
        payload = (stream.compress(message) + stream.flush(zlib.Z_SYNC_FLUSH))[:-4]
        mask = os.urandom(4)
        sock.sendall(bytes([0xC1, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask +
                     bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        first, second = recv_exact(sock, 2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", recv_exact(sock, 2))[0]
        recv_exact(sock, length)
        sizes.append((length, bool(first & 0x40)))
    sock.close()
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", help="HOST:PORT of an echo server on loopback")
    args = ap.parse_args()
    if args.server is None:
        messages = chat_messages()
        print(f"500 JSON chat messages, {sum(map(len, messages))} bytes")
        for label, bits, mem, keep in (("15-bit memLevel 8, context kept", 15, 8, True),
                                       ("9-bit memLevel 1, context kept", 9, 1, True),
                                       ("no context takeover", 15, 8, False)):
            print(f"  {label}: {deflated(messages, bits, mem, keep)} bytes")
        return
    host, _, port = args.server.rpartition(":")
    message = test_message()
    alone = {bits: deflated([message], bits, mem, False) for bits, mem in ((15, 8), (9, 1))}
    print(f"test message, {len(message)} bytes: alone with 15/8 {alone[15]}, with 9/1 {alone[9]}")
    for i, (length, compressed) in enumerate(server_replies(host, int(port), message)):
        print(f"  reply {i + 1}: {length} bytes{'' if compressed else ' (not compressed)'}")


if __name__ == "__main__":
    main()
