# SPDX-License-Identifier: MIT
"""Autobahn section 2 (pings and pongs) against the echo example: every ping is answered
with a pong carrying its exact payload, at once and in order; unsolicited pongs are
ignored; a ping over 125 bytes fails the connection with 1002."""

import struct

import pytest

from ws_cases import (close_payload, connect, expect_failure, frame, next_frame_is_close,
                      ping_barrier, send_in_chops, shared_server)

echo = shared_server("echo")


@pytest.mark.parametrize("payload", [
    pytest.param(b"", id="autobahn-2.1-empty"),
    pytest.param(b"Hello, world!", id="autobahn-2.2-text"),
    pytest.param(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", id="autobahn-2.3-binary"),
    pytest.param(b"\xfe" * 125, id="autobahn-2.4-125-bytes"),
    pytest.param(b"\xed\xa0\x80\xc0\xaf", id="invalid-utf8-is-not-checked"),
])
def test_ping_answered_with_same_payload(echo, payload):
    """Autobahn 2.1-2.4: the pong carries the ping's payload byte for byte (it is opaque:
    not UTF-8 checked), then the closing handshake is clean."""
    client = connect(echo)
    ping_barrier(client, payload)
    client.close_handshake()


def test_ping_126_bytes_fails_1002(echo):
    """Autobahn 2.5: a control frame of 126 bytes fails the connection; no pong."""
    expect_failure(echo, frame(0x9, b"\xfe" * 126), 1002)


def test_ping_126_bytes_fails_at_its_header(echo):
    """Autobahn 2.5, fail fast: the header alone announces 126 bytes, so 1002 comes before
    any payload byte is sent."""
    head = frame(0x9, b"", length=126, length_form=16)
    expect_failure(echo, head, 1002)


def test_ping_125_bytes_sent_octet_by_octet(echo):
    """Autobahn 2.6: the ping arrives one byte per TCP write and is still answered."""
    client = connect(echo)
    send_in_chops(client, frame(0x9, b"\xfe" * 125), 1)
    assert client.recv_frame() == (True, 0, 0xA, b"\xfe" * 125)
    client.close_handshake()


def test_ping_split_across_sends_answered(echo):
    client = connect(echo)
    data = frame(0x9, b"\xfe" * 125)
    for cut in (1, 2, 6, 7, 64, 130):
        client.send_split(data, cut)  # the server reads the first piece by itself
        assert client.recv_frame() == (True, 0, 0xA, b"\xfe" * 125)
    client.close_handshake()


@pytest.mark.parametrize("payload", [
    pytest.param(b"", id="autobahn-2.7"),
    pytest.param(b"unsolicited pong payload", id="autobahn-2.8"),
])
def test_unsolicited_pong_then_close_gets_only_the_close(echo, payload):
    """Autobahn 2.7 and 2.8: nothing answers an unsolicited pong; the next frame from the
    server is the answer to our close."""
    client = connect(echo)
    client.send(frame(0xA, payload) + frame(0x8, close_payload(1000)))
    next_frame_is_close(client, 1000)


def test_unsolicited_pong_then_ping_gets_one_pong(echo):
    """Autobahn 2.9: the unsolicited pong is ignored, the ping after it is answered."""
    client = connect(echo)
    client.send(frame(0xA, b"unsolicited pong payload") + frame(0x9, b"ping payload"))
    assert client.recv_frame() == (True, 0, 0xA, b"ping payload")
    client.send(frame(0x1, b"after"))
    assert client.recv_frame() == (True, 0, 0x1, b"after")  # no second pong came first
    client.close_handshake()


def test_unsolicited_pongs_between_data_ignored(echo):
    client = connect(echo)
    client.send(frame(0xA, b"unsolicited") + frame(0xA, b"") + frame(0x1, b"after"))
    # The very next frame is the echo: nothing was sent for the pongs.
    assert client.recv_frame() == (True, 0, 0x1, b"after")
    client.close_handshake()


@pytest.mark.parametrize("chop", [
    pytest.param(None, id="autobahn-2.10-one-write"),
    pytest.param(1, id="autobahn-2.11-octet-wise"),
])
def test_ten_pings_all_answered_in_order(echo, chop):
    """Autobahn 2.10 and 2.11: ten pings with payloads "payload-0".."payload-9" get ten
    pongs, in order."""
    client = connect(echo)
    data = b"".join(frame(0x9, f"payload-{i}".encode()) for i in range(10))
    if chop is None:
        client.send(data)
    else:
        send_in_chops(client, data, chop)
    for i in range(10):
        assert client.recv_frame() == (True, 0, 0xA, f"payload-{i}".encode())
    client.close_handshake()


def test_hundred_pings_before_reading_all_answered(echo):
    """Many pings in flight: the server queues every pong, none is dropped or merged."""
    client = connect(echo)
    client.send(b"".join(frame(0x9, struct.pack("!I", i) * 31) for i in range(100)))
    for i in range(100):
        assert client.recv_frame() == (True, 0, 0xA, struct.pack("!I", i) * 31)
    client.close_handshake()
