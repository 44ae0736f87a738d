# SPDX-License-Identifier: MIT
"""Autobahn section 10 (miscellaneous) against the echo example: a 64 KiB message
auto-fragmented into 1300-byte frames (10.1.1), plus mixed streams no single Autobahn case
covers: random messages, fragments, pings and pongs cut at random points, and frames
pipelined behind an upgrade request that arrives in pieces."""

import random

import pytest

from ws_cases import connect, fragments, frame, payload_of, shared_server, text_of

echo = shared_server("echo")


@pytest.mark.parametrize("opcode,payload", [
    pytest.param(0x1, b"*" * 65536, id="autobahn-10.1.1-text"),
    pytest.param(0x2, payload_of(65536), id="binary"),
    pytest.param(0x1, text_of(65536), id="text-varied"),
])
def test_64k_message_in_1300_byte_fragments(echo, opcode, payload):
    """Autobahn 10.1.1: 65536 bytes in 1300-byte frames (50 full ones and 536 bytes in
    the 51st), echoed as one message."""
    parts = [payload[i:i + 1300] for i in range(0, len(payload), 1300)]
    assert len(parts) == 51 and len(parts[-1]) == 536
    client = connect(echo)
    client.send(fragments(opcode, parts))
    assert client.recv_frame() == (True, 0, opcode, payload)
    client.close_handshake()


def test_frames_behind_a_split_upgrade_request(echo):
    """The request head arrives in two pieces and frames follow the head in the second
    one: they are handled as soon as the upgrade completes."""
    client = echo.connect_raw()
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    # The server reads the first piece by itself, so the head is incomplete at first.
    client.send_split(request + frame(0x1, b"early") + frame(0x2, payload_of(300)) +
                      frame(0x9, b"p"), 40)
    status, headers, _ = client.read_http_response()
    assert status == 101
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert client.recv_frame() == (True, 0, 0x1, b"early")
    assert client.recv_frame() == (True, 0, 0x2, payload_of(300))
    assert client.recv_frame() == (True, 0, 0xA, b"p")
    client.close_handshake()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_in_random_splits(echo, seed):
    """A seeded random mix of whole and fragmented text/binary messages with pings and
    unsolicited pongs between (and inside) them, sent as one byte stream cut at random
    points. Everything comes back in order and intact."""
    rng = random.Random(seed)
    stream, expected = [], []
    for n in range(120):
        opcode = rng.choice((0x1, 0x2))
        size = rng.choice((0, 1, 5, 125, 126, 127, 1000, 3000, 65535, 65536))
        if opcode == 0x1:
            payload = ("\u00e9\u20ac\U0001f600" * (size // 9 + 1)).encode()[:size]
            payload = payload.decode("utf-8", "ignore").encode()
        else:
            payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
            payload = payload[:size]
        cuts = sorted(rng.sample(range(len(payload) + 1), min(rng.randint(0, 4),
                                                               len(payload) + 1)))
        parts = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
        for i, part in enumerate(parts):
            stream.append(frame(opcode if i == 0 else 0x0, part, fin=i == len(parts) - 1,
                                length_form=rng.choice((None, None, 64))))
            if i == len(parts) - 1:
                expected.append((opcode, payload))  # the echo leaves once the last part is in
            if rng.random() < 0.2:
                ping = f"ping {n}.{i}".encode()
                stream.append(frame(0x9, ping))
                expected.append((0xA, ping))  # answered at once, even mid-message
            if rng.random() < 0.1:
                stream.append(frame(0xA, b"unsolicited"))
    data = b"".join(stream)
    client = connect(echo)
    pos = 0
    got = []

    def drain_ready():
        # Read what is already there so neither side blocks on full buffers.
        client.sock.setblocking(False)
        try:
            while True:
                chunk = client.sock.recv(1 << 20)
                if not chunk:
                    raise EOFError("server closed the connection")
                client.buf += chunk
        except BlockingIOError:
            pass
        finally:
            client.sock.settimeout(10)

    while pos < len(data):
        step = rng.choice((1, 2, 3, 7, 13, 100, 1000, 4096, 30000, 65536))
        client.send(data[pos:pos + step])
        pos += step
        drain_ready()
    for want in expected:
        got = client.recv_message()
        assert got[0] == want[0] and got[1] == want[1], (want[0], len(want[1]), got[0],
                                                           len(got[1]))
    client.close_handshake()
