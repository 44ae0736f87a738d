# SPDX-License-Identifier: MIT
"""Helpers shared by the RFC 6455 tests (tests/conformance and the protocol parts of
tests/integration): fast frame encoding, strict close checks, and module-scoped servers so
that long parametrized lists do not start a server per case.

Every helper bounds its reads with the RawClient timeout; none sleeps to synchronise.
"""

import socket
import struct

import pytest

from eddyserver import Server, assert_echo_serves
from wsraw import frame  # noqa: F401  (the cases import it from here)


def payload_of(n, seed=0):
    """n bytes of binary payload (every byte value occurs)."""
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def text_of(n):
    """n bytes of ASCII text."""
    return (b"abcdefghijklmnopqrstuvwxyz0123456789" * (n // 36 + 1))[:n]


def fragments(opcode, parts, **kwargs):
    """The frames of one message split into parts: opcode first, continuations after, FIN
    on the last."""
    return b"".join(frame(opcode if i == 0 else 0x0, part, fin=i == len(parts) - 1, **kwargs)
                    for i, part in enumerate(parts))


def send_in_chops(client, data, size):
    """Sends data in pieces of `size` bytes, one send() each (Autobahn's "chopsize")."""
    for i in range(0, len(data), size):
        client.send(data[i:i + size])


def assert_quiet(client, within=0.2):
    """Asserts the server sends nothing for `within` seconds. Only for proving absence
    where no event can show it (e.g. mid-frame); never to wait for something."""
    client.sock.settimeout(within)
    try:
        data = client.sock.recv(65536)
    except socket.timeout:
        return
    finally:
        client.sock.settimeout(client.timeout)
    raise AssertionError(f"unexpected bytes from the server: {data[:64]!r}")


def utf8_scan(data):
    """Validates data as UTF-8 the strict way (RFC 3629, Unicode table 3-7), byte by byte.
    Returns (index of the first byte that no valid text can contain at that point, or None;
    True if data ends on a character boundary)."""
    need, lo, hi = 0, 0x80, 0xBF
    for i, b in enumerate(data):
        if need == 0:
            if b < 0x80:
                continue
            if 0xC2 <= b <= 0xDF:
                need, lo, hi = 1, 0x80, 0xBF
            elif b == 0xE0:
                need, lo, hi = 2, 0xA0, 0xBF
            elif b == 0xED:
                need, lo, hi = 2, 0x80, 0x9F
            elif 0xE1 <= b <= 0xEF:
                need, lo, hi = 2, 0x80, 0xBF
            elif b == 0xF0:
                need, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= b <= 0xF3:
                need, lo, hi = 3, 0x80, 0xBF
            elif b == 0xF4:
                need, lo, hi = 3, 0x80, 0x8F
            else:
                return i, False
        else:
            if not lo <= b <= hi:
                return i, False
            need, lo, hi = need - 1, 0x80, 0xBF
    return None, need == 0


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
