# SPDX-License-Identifier: MIT
"""Autobahn section 7 (close handling) against the echo example: the client's close is
answered with the same code (or an empty close for an empty one) and the server closes
the TCP connection; frames after a close are ignored; close payloads of 1 byte, over 125
bytes, with an invalid code or an invalid UTF-8 reason fail the connection (1002, or 1007
for the reason).

Server-initiated closes, the close callback and real clients' closes are covered by
tests/integration/test_close.py."""

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (close_payload, connect, expect_failure, frame, next_frame_is_close,
                      ping_barrier, send_in_chops, shared_server, text_of)

echo = shared_server("echo")

KOSME_INVALID = "\u03ba\u1f79\u03c3\u03bc\u03b5".encode() + b"\xed\xa0\x80edited"

# Autobahn 7.7.1-7.7.13; 1012-1014 (registered since) are ours.
VALID_CODES = [(1, 1000), (2, 1001), (3, 1002), (4, 1003), (5, 1007), (6, 1008), (7, 1009),
               (8, 1010), (9, 1011), (None, 1012), (None, 1013), (None, 1014), (10, 3000),
               (11, 3999), (12, 4000), (13, 4999)]
# Autobahn 7.9.1-7.9.9, then 7.13.1 and 7.13.2 (codes Autobahn leaves undefined: eddy
# fails them with 1002 too); 1015 (never sent, like 1005 and 1006) is ours.
INVALID_CODES = [("7.9.1", 0), ("7.9.2", 999), ("7.9.3", 1004), ("7.9.4", 1005),
                 ("7.9.5", 1006), (None, 1015), ("7.9.6", 1016), ("7.9.7", 1100),
                 ("7.9.8", 2000), ("7.9.9", 2999), ("7.13.1", 5000), ("7.13.2", 65535)]


# ---- 7.1: the closing handshake, and what follows a close ----


def test_message_then_close(echo):
    """Autobahn 7.1.1: the echo, then the close 1000."""
    client = connect(echo)
    client.send(frame(0x1, b"Hello World!") + frame(0x8, close_payload(1000)))
    assert client.recv_frame() == (True, 0, 0x1, b"Hello World!")
    next_frame_is_close(client, 1000)
    assert_echo_serves(echo)


def test_two_close_frames(echo):
    """Autobahn 7.1.2: one answer (1000); the second close is ignored."""
    client = connect(echo)
    client.send(frame(0x8, close_payload(1000)) + frame(0x8, b""))
    next_frame_is_close(client, 1000)


def test_ping_after_close(echo):
    """Autobahn 7.1.3: no pong for a ping that follows the close."""
    client = connect(echo)
    ping_barrier(client)
    client.send(frame(0x8, close_payload(1000)) + frame(0x9, b""))
    next_frame_is_close(client, 1000)


def test_text_after_close(echo):
    """Autobahn 7.1.4: the text after the close is not echoed."""
    client = connect(echo)
    client.send(frame(0x8, close_payload(1000)) + frame(0x1, b"Hello World!"))
    next_frame_is_close(client, 1000)


def test_data_frames_around_close(echo):
    """7.1.1 and 7.1.4 together: the message before the close is echoed, the text and
    ping after it are not."""
    client = connect(echo)
    client.send(frame(0x1, b"before") + frame(0x8, close_payload(1000)) +
                frame(0x1, b"after") + frame(0x9, b"ping after"))
    assert client.recv_frame() == (True, 0, 0x1, b"before")
    next_frame_is_close(client, 1000)  # no echo of "after", no pong
    assert_echo_serves(echo)


def test_close_between_fragments(echo):
    """Autobahn 7.1.5: fragment1, close, fragment2: the close is answered at once and the
    unfinished message is dropped."""
    client = connect(echo)
    client.send(frame(0x1, b"fragment1", fin=False) + frame(0x8, close_payload(1000)) +
                frame(0x0, b"fragment2"))
    next_frame_is_close(client, 1000)
    assert_echo_serves(echo)


def test_close_between_fragments_fails_fast(echo):
    """Autobahn 7.1.5, with fragment2 never sent: the close alone completes the
    handshake."""
    client = connect(echo)
    client.send(frame(0x1, b"fragment1", fin=False))
    ping_barrier(client)
    client.send(frame(0x8, close_payload(1000)))
    next_frame_is_close(client, 1000)


def test_large_message_then_close_then_ping(echo):
    """Autobahn 7.1.6: a 256 KiB message, a small one, the close and a ping back to back.
    eddy handles frames in order: both echoes are complete, then the close; the ping after
    it is not answered."""
    client = connect(echo)
    payload = (b"BAsd7&jh23" * 26215 + b"BAsd7&")[:256 * 1024]
    assert len(payload) == 256 * 1024
    client.send(frame(0x1, payload) + frame(0x1, b"Hello World!") +
                frame(0x8, close_payload(1000)) + frame(0x9, b""))
    assert client.recv_message() == (0x1, payload)
    assert client.recv_frame() == (True, 0, 0x1, b"Hello World!")
    next_frame_is_close(client, 1000)


# ---- 7.3: close payload lengths ----


def test_close_without_payload_answered_with_empty_close(echo):
    """Autobahn 7.3.1: an empty close (no code) is answered with an empty close."""
    client = connect(echo)
    client.send(frame(0x8, b""))
    next_frame_is_close(client, None)
    assert_echo_serves(echo)


def test_one_byte_close_payload_fails_1002(echo):
    """Autobahn 7.3.2."""
    expect_failure(echo, frame(0x8, b"a"), 1002)


def test_close_1000_echoed_then_tcp_closed(echo):
    """Autobahn 7.3.3."""
    client = connect(echo)
    client.send(frame(0x8, close_payload(1000)))
    next_frame_is_close(client, 1000, reason="")
    assert_echo_serves(echo)


def test_close_with_code_and_reason_echoes_code_and_reason(echo):
    """Autobahn 7.3.4: the answer echoes the code and the reason, as Swoole's does; the
    exact bytes: FIN + close, 14 payload bytes, unmasked."""
    client = connect(echo)
    client.send(frame(0x8, close_payload(1000, b"Hello World!")))
    assert client._take(16) == b"\x88\x0e\x03\xe8Hello World!"
    client.expect_eof()
    client.close()


@pytest.mark.parametrize("code,reason", [
    pytest.param(1000, b"*" * 123, id="autobahn-7.3.5"),
    pytest.param(4000, ("\u20ac" * 41).encode(), id="multibyte"),  # 123 bytes of 3-byte chars
])
def test_close_with_123_byte_reason(echo, code, reason):
    """Autobahn 7.3.5: a reason of 123 bytes makes the largest legal close payload."""
    assert len(reason) == 123
    client = connect(echo)
    client.send(frame(0x8, close_payload(code, reason)))
    next_frame_is_close(client, code)


def test_close_with_124_byte_reason_fails_1002(echo):
    """Autobahn 7.3.6: 126 payload bytes are too many for a control frame."""
    expect_failure(echo, frame(0x8, close_payload(1000, b"*" * 124)), 1002)


def test_close_with_124_byte_reason_fails_at_its_header(echo):
    """Autobahn 7.3.6, fail fast: the header announcing 126 bytes is enough."""
    expect_failure(echo, frame(0x8, b"", length=126, length_form=16), 1002)


def test_close_split_across_sends(echo):
    client = connect(echo)
    send_in_chops(client, frame(0x8, close_payload(3000, b"split")), 1)
    next_frame_is_close(client, 3000)


# ---- 7.5: the reason must be UTF-8 ----


@pytest.mark.parametrize("reason", [
    pytest.param(KOSME_INVALID, id="autobahn-7.5.1"),
    pytest.param(b"\xff", id="0xFF"),
    pytest.param(b"\xc0\xaf", id="overlong"),
    pytest.param(b"trunc\xe2\x82", id="truncated"),
])
def test_close_reason_invalid_utf8_fails_1007(echo, reason):
    """Autobahn 7.5.1 (which accepts 1002 or 1007): eddy answers 1007."""
    expect_failure(echo, frame(0x8, close_payload(1000, reason)), 1007)


def test_close_reason_valid_utf8(echo):
    client = connect(echo)
    client.send(frame(0x8, close_payload(1000, "\u00e9t\u00e9 \U0001f600".encode())))
    next_frame_is_close(client, 1000)


# ---- 7.7, 7.9, 7.13: close codes ----


@pytest.mark.parametrize("code", [
    pytest.param(code, id=f"autobahn-7.7.{case}-{code}" if case else f"{code}")
    for case, code in VALID_CODES])
def test_valid_close_code_echoed(echo, code):
    """Autobahn 7.7.1-7.7.13: a valid code is answered with the same code."""
    client = connect(echo)
    client.send(frame(0x8, close_payload(code)))
    next_frame_is_close(client, code)


@pytest.mark.parametrize("code", [
    pytest.param(code, id=f"autobahn-{case}-{code}" if case else f"{code}")
    for case, code in INVALID_CODES])
def test_invalid_close_code_fails_1002(echo, code):
    """Autobahn 7.9.1-7.9.9 (and 7.13.1/7.13.2: 5000 and 65535)."""
    client = connect(echo)
    client.send(frame(0x8, close_payload(code)))
    next_frame_is_close(client, 1002)


def test_invalid_close_code_with_reason_fails_1002(echo):
    expect_failure(echo, frame(0x8, close_payload(1005, b"reason")), 1002)


def test_close_after_a_large_message_in_pieces(echo):
    """The close arrives in the same write as the end of a large message: the message is
    delivered whole first."""
    client = connect(echo)
    payload = text_of(300000)
    data = frame(0x1, payload)
    client.send(data[:100000])
    client.send(data[100000:] + frame(0x8, close_payload(1001)))
    assert client.recv_message() == (0x1, payload)
    next_frame_is_close(client, 1001)
