"""Helpers shared by the RFC 6455 conformance tests (test_frames, test_utf8, test_close,
test_limits, test_clients): fast frame encoding, strict close checks, and module-scoped
servers so that long parametrized lists do not start a server per case.

Every helper bounds its reads with the RawClient timeout; none sleeps to synchronise.
"""

import os
import struct

import pytest

from conftest import Server, assert_echo_serves


def mask_bytes(payload, key):
    """XORs payload with the 4-byte key (fast enough for multi-megabyte payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None, length_form=None,
          mask_key=None):
    """Encodes one client frame.

    length overrides the declared payload length (to lie); length_form forces the length
    encoding: 7 (in the second byte), 16 or 64 bits, minimal or not.
    """
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length is None else length
    if length_form is None:
        length_form = 7 if n < 126 else 16 if n < 65536 else 64
    mask_bit = 0x80 if mask else 0
    if length_form == 7:
        head = struct.pack("!BB", first, mask_bit | n)
    elif length_form == 16:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code=None, reason=b""):
    return b"" if code is None else struct.pack("!H", code) + reason


def connect(server):
    """A RawClient that completed the opening handshake."""
    client = server.connect_raw()
    client.handshake()
    return client


def next_frame_is_close(client, code, reason=None):
    """Asserts the very next frame from the server is a close frame with this code (None:
    an empty close payload) and optionally this reason, then that the server closes the
    TCP connection. Unlike RawClient.expect_close, no data frame may come first."""
    fin, rsv, opcode, payload = client.recv_frame()
    assert opcode == 0x8, f"expected a close frame, got opcode {opcode} {payload[:60]!r}"
    assert fin and rsv == 0
    got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    assert len(payload) != 1, "close payload of one byte"
    got_reason = payload[2:].decode("utf-8")  # must be valid UTF-8
    assert got == code, f"close code {got} ({got_reason!r}), expected {code}"
    if reason is not None:
        assert got_reason == reason
    client.expect_eof()
    client.close()
    return got, got_reason


def expect_failure(server, data, code, client=None):
    """Sends data on a fresh WebSocket (or client), asserts the server answers with a close
    frame carrying code and closes TCP, then that it still serves a well-behaved client."""
    client = client or connect(server)
    client.send(data)
    next_frame_is_close(client, code)
    assert_echo_serves(server)


def echo_roundtrip(client, opcode, payload):
    client.send(frame(opcode, payload))
    got = client.recv_message()
    assert got[0] == opcode
    assert len(got[1]) == len(payload)
    assert got[1] == payload


def ping_barrier(client, payload=b"barrier"):
    """Proves the server has processed everything sent before: a ping is answered only
    after earlier input was consumed. Asserts the next frame is the matching pong."""
    client.send(frame(0x9, payload))
    fin, rsv, opcode, got = client.recv_frame()
    assert (fin, rsv, opcode, got) == (True, 0, 0xA, payload), (opcode, got[:60])


def skip_until(server, want, limit=1000):
    """Reads stdout lines until one equals want (at most limit lines); returns those
    skipped."""
    skipped = []
    for _ in range(limit):
        line = server.line()
        if line == want:
            return skipped
        skipped.append(line)
    raise AssertionError(f"no line {want!r} among {skipped[-20:]!r}")


def shared_server(example, *args, settings=None):
    """A module-scoped fixture running one server for every test of a module; it is
    stopped (and checked for a clean, sanitizer-free exit) when the module ends."""

    @pytest.fixture(scope="module")
    def fixture():
        server = Server(example, args, settings)
        try:
            yield server
        finally:
            server.stop()

    return fixture
