# SPDX-License-Identifier: MIT
"""Autobahn section 9 (limits and performance) as correctness checks against the echo
example: large messages whole, fragmented and in small TCP writes, and many small
messages one after the other, each echoed intact. Autobahn measures the time these take;
here nothing is timed (speed belongs in bench/). Sizes are Autobahn's, up to 16 MiB, with
package_max_length raised to 16 MiB for them; plus package_max_length itself, enforced
from the frame header (1009 before any payload is buffered)."""

import pytest

from ws_cases import (connect, expect_failure, frame, fragments, ping_barrier, send_in_chops,
                      shared_server)

MIB = 1 << 20
big = shared_server("echo", settings={"package_max_length": str(16 * MIB)})
small = shared_server("echo", settings={"package_max_length": "1000"})


def repeated(pattern, n):
    """Autobahn's payloads: a short pattern repeated to n bytes."""
    return (pattern * (n // len(pattern) + 1))[:n]


TEXT_PATTERN = b"BAsd7&jh23"
BINARY_PATTERN = b"\x00\xfe\x23\xfa\xf0"
SIZES = [64 * 1024, 256 * 1024, MIB, 4 * MIB, 8 * MIB, 16 * MIB]


def expect_echo(client, opcode, payload):
    got_opcode, got = client.recv_message()
    assert got_opcode == opcode
    assert len(got) == len(payload)
    assert got == payload


# ---- 9.1 and 9.2: one large frame ----


@pytest.mark.parametrize("opcode,n", [
    pytest.param(opcode, n, id=f"autobahn-9.{section}.{i}-{n // 1024}KiB")
    for section, opcode in ((1, 0x1), (2, 0x2)) for i, n in enumerate(SIZES, start=1)])
def test_large_message_in_one_frame(big, opcode, n):
    """Autobahn 9.1.1-9.1.6 (text) and 9.2.1-9.2.6 (binary): 64 KiB to 16 MiB."""
    payload = repeated(TEXT_PATTERN if opcode == 0x1 else BINARY_PATTERN, n)
    client = connect(big)
    client.send(frame(opcode, payload))
    expect_echo(client, opcode, payload)
    client.close_handshake()


# ---- 9.3 and 9.4: a 4 MiB message in fragments of 64 bytes to 4 MiB ----

FRAGMENT_SIZES = [64, 256, 1024, 4096, 16384, 65536, 256 * 1024, MIB, 4 * MIB]


@pytest.mark.parametrize("opcode,size", [
    pytest.param(opcode, size, id=f"autobahn-9.{section}.{i}-fragments-of-{size}")
    for section, opcode in ((3, 0x1), (4, 0x2))
    for i, size in enumerate(FRAGMENT_SIZES, start=1)])
def test_large_message_in_fragments(big, opcode, size):
    """Autobahn 9.3.1-9.3.9 (text) and 9.4.1-9.4.9 (binary): 4 MiB in fragments of
    `size` bytes, all written at once."""
    payload = (b"*" if opcode == 0x1 else b"\xfe") * (4 * MIB)
    client = connect(big)
    client.send(fragments(opcode, [payload[i:i + size] for i in range(0, len(payload), size)]))
    expect_echo(client, opcode, payload)
    client.close_handshake()


# ---- 9.5 and 9.6: a 1 MiB frame in small TCP writes ----


@pytest.mark.parametrize("opcode,chop", [
    pytest.param(opcode, chop, id=f"autobahn-9.{section}.{i}-chops-of-{chop}")
    for section, opcode in ((5, 0x1), (6, 0x2))
    for i, chop in enumerate([64, 128, 256, 512, 1024, 2048], start=1)])
def test_large_frame_in_small_writes(big, opcode, chop):
    """Autobahn 9.5.1-9.5.6 (text) and 9.6.1-9.6.6 (binary): one 1 MiB frame written
    `chop` bytes at a time."""
    payload = repeated(TEXT_PATTERN if opcode == 0x1 else BINARY_PATTERN, MIB)
    client = connect(big)
    send_in_chops(client, frame(opcode, payload), chop)
    expect_echo(client, opcode, payload)
    client.close_handshake()


# ---- 9.7 and 9.8: many small messages, one round trip each ----


@pytest.mark.parametrize("opcode,n", [
    pytest.param(opcode, n, id=f"autobahn-9.{section}.{i}-{n}-bytes")
    for section, opcode in ((7, 0x1), (8, 0x2))
    for i, n in enumerate([0, 16, 64, 256, 1024, 4096], start=1)])
def test_thousand_messages_one_at_a_time(big, opcode, n):
    """Autobahn 9.7.1-9.7.6 (text) and 9.8.1-9.8.6 (binary): 1000 messages of n bytes,
    each sent once the previous one came back."""
    client = connect(big)
    for i in range(1000):
        payload = (b"%04d" % i) * (n // 4) if opcode == 0x1 else bytes([i & 0xFF]) * n
        client.send(frame(opcode, payload))
        assert client.recv_frame() == (True, 0, opcode, payload)
    client.close_handshake()


# ---- package_max_length ----


def masked_header(opcode, declared, fin=True):
    """A client frame header announcing `declared` payload bytes (none follow)."""
    return frame(opcode, b"", fin=fin, length=declared,
                 length_form=7 if declared < 126 else 16 if declared < 65536 else 64)


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_message_at_limit_echoed(small, opcode):
    client = connect(small)
    client.send(frame(opcode, b"a" * 1000))
    assert client.recv_message() == (opcode, b"a" * 1000)
    client.close_handshake()


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_message_over_limit_fails_1009(small, opcode):
    expect_failure(small, frame(opcode, b"a" * 1001), 1009)


@pytest.mark.parametrize("declared", [1001, 65536, 1 << 40, (1 << 63) - 1])
def test_oversized_header_alone_fails_1009(small, declared):
    """Only the header is sent: 1009 must come before any payload byte arrives."""
    expect_failure(small, masked_header(0x2, declared), 1009)


def test_fragmented_message_over_limit_fails_at_crossing_fragment(small):
    client = connect(small)
    client.send(frame(0x1, b"a" * 400, fin=False))
    client.send(frame(0x0, b"b" * 400, fin=False))
    client.send(frame(0x0, b"", fin=False))
    ping_barrier(client)  # 800 bytes so far: still fine
    client.send(frame(0x0, b"c" * 200, fin=False))
    ping_barrier(client)  # exactly 1000: still fine
    # One more byte announced crosses the limit: 1009 at the header, no payload sent.
    expect_failure(small, masked_header(0x0, 1), 1009, client=client)


def test_fragmented_message_exactly_at_limit_echoed(small):
    client = connect(small)
    client.send(frame(0x2, b"a" * 500, fin=False) + frame(0x0, b"b" * 500))
    assert client.recv_message() == (0x2, b"a" * 500 + b"b" * 500)
    # The limit is per message: the next message starts counting from zero.
    client.send(frame(0x2, b"c" * 600, fin=False) + frame(0x0, b"d" * 400))
    assert client.recv_message() == (0x2, b"c" * 600 + b"d" * 400)
    client.close_handshake()


def test_control_frames_do_not_count_towards_limit(small):
    client = connect(small)
    client.send(frame(0x1, b"a" * 990, fin=False) + frame(0x9, b"p" * 125))
    assert client.recv_frame() == (True, 0, 0xA, b"p" * 125)
    client.send(frame(0x0, b"b" * 10))
    assert client.recv_message() == (0x1, b"a" * 990 + b"b" * 10)
    client.close_handshake()


@pytest.mark.parametrize("declared", [126, 200, 1 << 40])
def test_oversized_control_frame_is_a_protocol_error_not_1009(small, declared):
    """A control frame over 125 bytes breaks RFC 6455 5.5, whatever the message limit."""
    expect_failure(small, masked_header(0x9, declared), 1002)


def test_message_over_limit_by_16_mib_fails_at_header(big):
    """The large server's limit is enforced too: 16 MiB + 1 gets 1009 from the header."""
    expect_failure(big, masked_header(0x2, 16 * MIB + 1), 1009)
