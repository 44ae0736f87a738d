# SPDX-License-Identifier: MIT
"""Autobahn section 1 (framing): text and binary messages at every payload-length boundary,
echoed exactly by the echo example, whatever the length encoding and however the bytes are
cut into TCP writes; plus the RFC 6455 5.1/5.2 rules Autobahn's client never breaks
(unmasked frames, a 64-bit length with the top bit set)."""

import struct

import pytest

from ws_cases import (connect, echo_roundtrip, expect_failure, frame, payload_of,
                      send_in_chops, shared_server, text_of)

echo = shared_server("echo")

# (Autobahn case number in 1.1.x (text) and 1.2.x (binary), payload length); lengths
# without a case number are ours.
LENGTHS = [(1, 0), (None, 1), (2, 125), (3, 126), (4, 127), (5, 128), (6, 65535),
           (7, 65536), (None, 1 << 20)]


def length_params(section):
    return [pytest.param(n, id=f"autobahn-{section}.{case}-{n}" if case else f"{n}")
            for case, n in LENGTHS]


@pytest.mark.parametrize("n", length_params("1.1"))
def test_text_echoed_exactly(echo, n):
    """Autobahn 1.1.1-1.1.7: a text message of n bytes comes back byte for byte."""
    client = connect(echo)
    echo_roundtrip(client, 0x1, text_of(n))
    client.close_handshake()


@pytest.mark.parametrize("n", length_params("1.2"))
def test_binary_echoed_exactly(echo, n):
    """Autobahn 1.2.1-1.2.7: a binary message of n bytes comes back byte for byte."""
    client = connect(echo)
    echo_roundtrip(client, 0x2, payload_of(n))
    client.close_handshake()


@pytest.mark.parametrize("opcode,payload", [
    pytest.param(0x1, b"*" * 65536, id="autobahn-1.1.8"),
    pytest.param(0x2, b"\xfe" * 65536, id="autobahn-1.2.8"),
])
def test_65536_bytes_sent_in_997_byte_chops(echo, opcode, payload):
    """Autobahn 1.1.8 and 1.2.8: one frame written to the socket 997 bytes at a time."""
    client = connect(echo)
    send_in_chops(client, frame(opcode, payload), 997)
    assert client.recv_message() == (opcode, payload)
    client.close_handshake()


def test_server_uses_minimal_length_encoding(echo):
    client = connect(echo)
    for n, second, ext in ((125, 125, b""), (126, 126, struct.pack("!H", 126)),
                           (65535, 126, struct.pack("!H", 65535)),
                           (65536, 127, struct.pack("!Q", 65536))):
        client.send(frame(0x2, payload_of(n)))
        head = client._take(2 + len(ext))
        assert head == bytes([0x82, second]) + ext, (n, head)
        assert client._take(n) == payload_of(n)
    client.close_handshake()


@pytest.mark.parametrize("n,form", [(0, 16), (5, 16), (125, 16), (0, 64), (5, 64),
                                    (126, 64), (65535, 64)])
def test_non_minimal_length_encoding_accepted(echo, n, form):
    client = connect(echo)
    client.send(frame(0x2, payload_of(n), length_form=form))
    assert client.recv_message() == (0x2, payload_of(n))
    client.close_handshake()


def test_frame_delivered_one_byte_at_a_time(echo):
    client = connect(echo)
    for opcode, payload in ((0x1, text_of(300)), (0x2, payload_of(70000)[:200]),
                            (0x9, b"ping!")):
        data = frame(opcode, payload, length_form=64 if opcode == 0x2 else None)
        send_in_chops(client, data, 1)
        want = (0xA if opcode == 0x9 else opcode, payload)
        assert client.recv_message() == want
    client.close_handshake()


def test_many_frames_in_one_send(echo):
    client = connect(echo)
    messages = [f"message {i}".encode() * (i % 5 + 1) for i in range(100)]
    client.send(b"".join(frame(0x1 if i % 2 else 0x2, m) for i, m in enumerate(messages)))
    for i, m in enumerate(messages):
        assert client.recv_message() == (0x1 if i % 2 else 0x2, m)
    client.close_handshake()


@pytest.mark.parametrize("form", [7, 16, 64])
def test_header_split_at_every_offset(echo, form):
    client = connect(echo)
    payload = text_of(200 if form == 16 else 20 if form == 7 else 70000)
    data = frame(0x1, payload, length_form=form)
    head_len = {7: 6, 16: 8, 64: 14}[form]
    for offset in range(1, min(head_len + 1, 14)):
        # The server reads the first piece by itself: the header straddles two reads.
        client.send_split(data, offset)
        assert client.recv_message() == (0x1, payload), offset
    client.close_handshake()


# ---- RFC 6455 5.1 and 5.2: what Autobahn's client never sends ----


def test_unmasked_frame_fails_1002(echo):
    expect_failure(echo, frame(0x1, b"hello", mask=False), 1002)


def test_unmasked_control_frame_fails_1002(echo):
    expect_failure(echo, frame(0x9, b"hello", mask=False), 1002)


def test_64bit_length_with_top_bit_fails_1002(echo):
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x01\x02\x03\x04"
    expect_failure(echo, head, 1002)


def test_64bit_length_all_ones_fails_1002(echo):
    head = bytes([0x82, 0x80 | 127]) + b"\xff" * 8 + b"\x01\x02\x03\x04"
    expect_failure(echo, head, 1002)
