# SPDX-License-Identifier: MIT
"""Autobahn section 4 (opcodes): the reserved non-control opcodes 3-7 and control opcodes
11-15 fail the connection with 1002, with or without a payload, alone or after a valid
message; nothing after the bad frame is answered."""

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (connect, expect_failure, frame, next_frame_is_close, send_in_chops,
                      shared_server)

echo = shared_server("echo")

HELLO = b"Hello, world!"


@pytest.mark.parametrize("opcode,payload", [
    pytest.param(3, b"", id="autobahn-4.1.1-op3-empty"),
    pytest.param(4, b"reserved opcode payload", id="autobahn-4.1.2-op4-payload"),
    pytest.param(5, b"", id="op5-empty"),
    pytest.param(6, b"reserved opcode payload", id="op6-payload"),
    pytest.param(7, b"reserved opcode payload", id="op7-payload"),
    pytest.param(11, b"", id="autobahn-4.2.1-op11-empty"),
    pytest.param(12, b"reserved opcode payload", id="autobahn-4.2.2-op12-payload"),
    pytest.param(13, b"", id="op13-empty"),
    pytest.param(14, b"reserved opcode payload", id="op14-payload"),
    pytest.param(15, b"reserved opcode payload", id="op15-payload"),
])
def test_reserved_opcode_fails_1002(echo, opcode, payload):
    """Autobahn 4.1.1, 4.1.2, 4.2.1, 4.2.2 (and the same for every other reserved
    opcode): the frame alone fails the connection."""
    expect_failure(echo, frame(opcode, payload), 1002)


@pytest.mark.parametrize("opcode,payload,chop", [
    pytest.param(5, b"", None, id="autobahn-4.1.3"),
    pytest.param(6, HELLO, None, id="autobahn-4.1.4"),
    pytest.param(7, HELLO, 1, id="autobahn-4.1.5-octet-wise"),
    pytest.param(13, b"", None, id="autobahn-4.2.3"),
    pytest.param(14, HELLO, None, id="autobahn-4.2.4"),
    pytest.param(15, HELLO, 1, id="autobahn-4.2.5-octet-wise"),
])
def test_text_then_reserved_opcode_then_ping(echo, opcode, payload, chop):
    """Autobahn 4.1.3-4.1.5 and 4.2.3-4.2.5: the text is echoed, the reserved opcode fails
    the connection with 1002, and the ping after it gets no pong."""
    client = connect(echo)
    data = frame(0x1, HELLO) + frame(opcode, payload) + frame(0x9)
    if chop is None:
        client.send(data)
    else:
        try:
            send_in_chops(client, data, chop)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may already have closed: its answer is still to be read
    assert client.recv_frame() == (True, 0, 0x1, HELLO)
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


@pytest.mark.parametrize("opcode", [7, 15])
def test_reserved_opcode_fails_fast_at_its_header(echo, opcode):
    """4.1.5/4.2.5, fail fast: the close 1002 comes once the header is complete, before
    the frame's payload and the ping are sent."""
    client = connect(echo)
    client.send(frame(0x1, HELLO))
    assert client.recv_frame() == (True, 0, 0x1, HELLO)
    send_in_chops(client, frame(opcode, HELLO)[:6], 1)
    next_frame_is_close(client, 1002)


@pytest.mark.parametrize("opcode", [3, 0xB])
def test_reserved_opcode_inside_fragmented_message_fails_1002(echo, opcode):
    client = connect(echo)
    client.send(frame(0x1, b"start", fin=False))
    expect_failure(echo, frame(opcode, b"", fin=True), 1002, client=client)


def test_no_frames_answered_after_reserved_opcode(echo):
    """The bad frame comes first: the text and ping behind it in the same write are never
    answered."""
    client = connect(echo)
    client.send(frame(0x3, b"") + frame(0x1, b"after the error") + frame(0x9, b"p"))
    next_frame_is_close(client, 1002)
