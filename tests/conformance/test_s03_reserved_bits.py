# SPDX-License-Identifier: MIT
"""Autobahn section 3 (reserved bits) against the echo example, which negotiates no
extension: any RSV bit fails the connection with 1002 as soon as the frame header is read.
Frames before the bad one are answered first; nothing after it is answered."""

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (close_payload, connect, expect_failure, frame, next_frame_is_close,
                      send_in_chops, shared_server)

echo = shared_server("echo")

HELLO = b"Hello, world!"


def rsv_case_id(opcode, rsv):
    autobahn = {(0x1, 1): "3.1", (0x2, 5): "3.5", (0x9, 6): "3.6", (0x8, 7): "3.7"}
    case = autobahn.get((opcode, rsv))
    return f"{'autobahn-' + case + '-' if case else ''}opcode{opcode:x}-rsv{rsv}"


@pytest.mark.parametrize("opcode,rsv", [
    pytest.param(opcode, rsv, id=rsv_case_id(opcode, rsv))
    for opcode in (0x1, 0x2, 0x8, 0x9, 0xA) for rsv in range(1, 8)])
def test_rsv_bits_fail_1002(echo, opcode, rsv):
    """Autobahn 3.1 (text, RSV=1), 3.5 (binary, RSV=5), 3.6 (ping, RSV=6), 3.7 (close,
    RSV=7), and every other combination: the close 1002 is the only answer."""
    payload = {0x1: HELLO, 0x2: b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 0x8: b"",
               0x9: HELLO, 0xA: HELLO}[opcode]
    expect_failure(echo, frame(opcode, payload, rsv=rsv), 1002)


def test_valid_message_then_rsv2_then_ping_in_one_write(echo):
    """Autobahn 3.2: the first message is echoed, the RSV=2 frame fails the connection,
    and the ping after it gets no pong (the close is the last frame)."""
    client = connect(echo)
    client.send(frame(0x1, HELLO) + frame(0x1, HELLO, rsv=2) + frame(0x9))
    assert client.recv_frame() == (True, 0, 0x1, HELLO)
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


def test_valid_message_then_rsv3_in_frame_wise_writes(echo):
    """Autobahn 3.3, fail fast: frame by frame, each written on its own. The echo arrives
    before the bad frame is sent; the close 1002 arrives before the ping would be sent."""
    client = connect(echo)
    client.send(frame(0x1, HELLO))
    assert client.recv_frame() == (True, 0, 0x1, HELLO)
    client.send(frame(0x1, HELLO, rsv=3))
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


def test_valid_message_then_rsv4_in_octet_wise_writes(echo):
    """Autobahn 3.4, fail fast: every byte written on its own. The close 1002 comes once
    the bad frame's header is complete (2 bytes and the mask), before its payload."""
    client = connect(echo)
    send_in_chops(client, frame(0x1, HELLO), 1)
    assert client.recv_frame() == (True, 0, 0x1, HELLO)
    bad = frame(0x1, HELLO, rsv=4)
    send_in_chops(client, bad[:6], 1)
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


def test_rsv_bit_on_continuation_fails_1002(echo):
    client = connect(echo)
    client.send(frame(0x1, b"start", fin=False))
    expect_failure(echo, frame(0x0, b"end", rsv=2), 1002, client=client)


def test_valid_messages_before_protocol_error_echoed_first(echo):
    """uWebSockets drops the valid messages that share a packet with a bad frame; the
    RFC wants them handled in order, then the failure."""
    client = connect(echo)
    client.send(frame(0x1, b"one") + frame(0x2, b"two") + frame(0x9, b"ping") +
                frame(0x1, b"three") + frame(0x1, b"bad", rsv=4) + frame(0x1, b"never"))
    assert client.recv_frame() == (True, 0, 0x1, b"one")
    assert client.recv_frame() == (True, 0, 0x2, b"two")
    assert client.recv_frame() == (True, 0, 0xA, b"ping")
    assert client.recv_frame() == (True, 0, 0x1, b"three")
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


def test_close_with_rsv_after_valid_close_is_ignored(echo):
    """After the client's close the server answers and closes; a bad frame after it is
    never read, so the close code is the one echoed (1000), not 1002."""
    client = connect(echo)
    client.send(frame(0x8, close_payload(1000)) + frame(0x8, b"", rsv=7))
    next_frame_is_close(client, 1000)
