# SPDX-License-Identifier: MIT
"""Autobahn section 5 (fragmentation) against the echo example: fragmented messages are
echoed whole, control frames between fragments are answered at once, and every broken
fragment sequence (fragmented control frames, a continuation with nothing to continue, a
new message inside an unfinished one) fails the connection with 1002 as soon as the bad
frame's header arrives: the fail-fast variants send nothing after it.

"One write" sends the whole sequence with one send(); "frame-wise" gives every frame its
own send(); "octet-wise" every byte. Where Autobahn waits a second for the server, these
tests wait for an event instead (a pong, an echo, the close)."""

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (close_payload, connect, expect_failure, fragments, frame,
                      next_frame_is_close, ping_barrier, send_in_chops, shared_server,
                      text_of)

echo = shared_server("echo")

HELLO = b"Hello, world!"


def send_frames(client, frames, mode):
    """Sends the frames in one write, frame by frame, or byte by byte."""
    if mode == "one-write":
        client.send(b"".join(frames))
    elif mode == "frame-wise":
        for data in frames:
            client.send(data)
    else:
        for data in frames:
            send_in_chops(client, data, 1)


# ---- fragmented control frames (5.1, 5.2) ----


@pytest.mark.parametrize("opcode", [
    pytest.param(0x9, id="autobahn-5.1-ping"),
    pytest.param(0xA, id="autobahn-5.2-pong"),
    pytest.param(0x8, id="close"),
])
def test_fragmented_control_frame_fails_1002(echo, opcode):
    """Autobahn 5.1 and 5.2, fail fast: the first half of a fragmented control frame
    fails the connection; the continuation is never sent."""
    payload = close_payload(1000) if opcode == 0x8 else b"fragment1"
    expect_failure(echo, frame(opcode, payload, fin=False), 1002)


@pytest.mark.parametrize("opcode", [0x9, 0xA])
def test_fragmented_control_frame_and_its_continuation_in_one_write(echo, opcode):
    """Autobahn 5.1 and 5.2 as sent there: both halves in one write; only the close."""
    client = connect(echo)
    client.send(frame(opcode, b"fragment1", fin=False) + frame(0x0, b"fragment2"))
    next_frame_is_close(client, 1002)


# ---- valid fragmented messages (5.3-5.8, 5.19, 5.20) ----


@pytest.mark.parametrize("mode", [
    pytest.param("one-write", id="autobahn-5.3"),
    pytest.param("frame-wise", id="autobahn-5.4"),
    pytest.param("octet-wise", id="autobahn-5.5"),
])
def test_two_fragments_echoed_whole(echo, mode):
    """Autobahn 5.3-5.5: "fragment1" + "fragment2" come back as one text message."""
    client = connect(echo)
    send_frames(client, [frame(0x1, b"fragment1", fin=False), frame(0x0, b"fragment2")], mode)
    assert client.recv_frame() == (True, 0, 0x1, b"fragment1fragment2")
    client.close_handshake()


@pytest.mark.parametrize("mode", [
    pytest.param("one-write", id="autobahn-5.6"),
    pytest.param("frame-wise", id="autobahn-5.7"),
    pytest.param("octet-wise", id="autobahn-5.8"),
])
def test_ping_between_two_fragments(echo, mode):
    """Autobahn 5.6-5.8: the pong comes first, then the whole message."""
    client = connect(echo)
    send_frames(client, [frame(0x1, b"fragment1", fin=False), frame(0x9, b"ping payload"),
                         frame(0x0, b"fragment2")], mode)
    assert client.recv_frame() == (True, 0, 0xA, b"ping payload")
    assert client.recv_frame() == (True, 0, 0x1, b"fragment1fragment2")
    client.close_handshake()


@pytest.mark.parametrize("mode", [
    pytest.param("one-write", id="autobahn-5.19"),
    pytest.param("frame-wise", id="autobahn-5.20"),
])
def test_pings_between_fragments_answered_while_message_is_open(echo, mode):
    """Autobahn 5.19 and 5.20: two fragments and a ping; the pong must come while the
    message is still unfinished (Autobahn waits 1 s here, we wait for the pong). Then two
    more fragments, another ping and the last fragment: pong, then the whole message."""
    client = connect(echo)
    send_frames(client, [frame(0x1, b"fragment1", fin=False),
                         frame(0x0, b"fragment2", fin=False), frame(0x9, b"pongme 1!")], mode)
    assert client.recv_frame() == (True, 0, 0xA, b"pongme 1!")
    send_frames(client, [frame(0x0, b"fragment3", fin=False),
                         frame(0x0, b"fragment4", fin=False), frame(0x9, b"pongme 2!"),
                         frame(0x0, b"fragment5")], mode)
    assert client.recv_frame() == (True, 0, 0xA, b"pongme 2!")
    assert client.recv_frame() == (True, 0, 0x1,
                                   b"fragment1fragment2fragment3fragment4fragment5")
    client.close_handshake()


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_three_fragments_echoed_whole(echo, opcode):
    client = connect(echo)
    client.send(fragments(opcode, [b"frag1", b"frag2", b"frag3"]))
    assert client.recv_message() == (opcode, b"frag1frag2frag3")
    client.close_handshake()


def test_hundred_fragments_with_empty_ones_echoed_whole(echo):
    client = connect(echo)
    parts = [b"" if i % 3 == 0 else f"<{i}>".encode() for i in range(100)]
    client.send(fragments(0x1, parts))
    assert client.recv_message() == (0x1, b"".join(parts))
    client.close_handshake()


def test_binary_fragments_all_empty(echo):
    """The binary twin of Autobahn 6.1.2 (three empty fragments)."""
    client = connect(echo)
    client.send(fragments(0x2, [b"", b"", b""]))
    assert client.recv_message() == (0x2, b"")
    client.close_handshake()


def test_fragments_in_separate_sends(echo):
    client = connect(echo)
    parts = [text_of(1000), b"", text_of(70000), b"x"]
    for i, part in enumerate(parts):
        client.send(frame(0x1 if i == 0 else 0x0, part, fin=i == len(parts) - 1))
        if i < len(parts) - 1:
            ping_barrier(client)  # the server holds the partial message, answers the ping
    assert client.recv_message() == (0x1, b"".join(parts))
    client.close_handshake()


def test_ping_and_unsolicited_pong_between_fragments(echo):
    client = connect(echo)
    client.send(frame(0x1, b"first ", fin=False) + frame(0x9, b"in between"))
    # The pong arrives while the message is still incomplete.
    assert client.recv_frame() == (True, 0, 0xA, b"in between")
    client.send(frame(0xA, b"unsolicited") + frame(0x0, b"second ", fin=False) +
                frame(0x9, b"again") + frame(0x0, b"third"))
    assert client.recv_frame() == (True, 0, 0xA, b"again")
    assert client.recv_frame() == (True, 0, 0x1, b"first second third")
    client.close_handshake()


# ---- a continuation with nothing to continue (5.9-5.17) ----


@pytest.mark.parametrize("fin", [
    pytest.param(True, id="autobahn-5.9-fin"),
    pytest.param(False, id="autobahn-5.12-no-fin"),
])
def test_orphan_continuation_then_text_in_one_write(echo, fin):
    """Autobahn 5.9 and 5.12: the continuation fails the connection; the text message
    sent right behind it is never echoed."""
    client = connect(echo)
    client.send(frame(0x0, b"non-continuation payload", fin=fin) + frame(0x1, HELLO))
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


@pytest.mark.parametrize("fin,mode", [
    pytest.param(True, "frame-wise", id="autobahn-5.10-fin-frame-wise"),
    pytest.param(True, "octet-wise", id="autobahn-5.11-fin-octet-wise"),
    pytest.param(False, "frame-wise", id="autobahn-5.13-no-fin-frame-wise"),
    pytest.param(False, "octet-wise", id="autobahn-5.14-no-fin-octet-wise"),
])
def test_orphan_continuation_fails_fast(echo, fin, mode):
    """Autobahn 5.10, 5.11, 5.13, 5.14, fail fast: the close 1002 arrives after the
    orphan continuation alone (octet-wise: after its header alone); the text message
    Autobahn sends next is never sent."""
    client = connect(echo)
    data = frame(0x0, b"non-continuation payload", fin=fin)
    if mode == "frame-wise":
        client.send(data)
    else:
        send_in_chops(client, data[:6], 1)
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


def test_continuation_after_complete_fragmented_message_one_write(echo):
    """Autobahn 5.15: fragment1 + fragment2 make a complete message, which is echoed; the
    continuation after it fails the connection and the text after that is not echoed."""
    client = connect(echo)
    client.send(frame(0x1, b"fragment1", fin=False) + frame(0x0, b"fragment2") +
                frame(0x0, b"fragment3", fin=False) + frame(0x1, b"fragment4"))
    assert client.recv_frame() == (True, 0, 0x1, b"fragment1fragment2")
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


def test_continuation_after_complete_fragmented_message_fails_fast(echo):
    """Autobahn 5.15, fail fast: after the echo, the orphan continuation alone gets 1002."""
    client = connect(echo)
    client.send(frame(0x1, b"fragment1", fin=False) + frame(0x0, b"fragment2"))
    assert client.recv_frame() == (True, 0, 0x1, b"fragment1fragment2")
    expect_failure(echo, frame(0x0, b"fragment3", fin=False), 1002, client=client)


def test_continuation_after_finished_unfragmented_message_fails_1002(echo):
    client = connect(echo)
    client.send(frame(0x1, b"whole"))
    assert client.recv_message() == (0x1, b"whole")
    expect_failure(echo, frame(0x0, b"orphan"), 1002, client=client)


@pytest.mark.parametrize("fin", [
    pytest.param(False, id="autobahn-5.16"),
    pytest.param(True, id="autobahn-5.17"),
])
def test_orphan_continuation_then_valid_fragmented_message_twice(echo, fin):
    """Autobahn 5.16 and 5.17: (orphan continuation, text fragment, last fragment) twice,
    in one write. The first frame fails the connection: nothing is echoed."""
    client = connect(echo)
    triple = (frame(0x0, b"fragment1", fin=fin) + frame(0x1, b"fragment2", fin=False) +
              frame(0x0, b"fragment3"))
    client.send(triple * 2)
    next_frame_is_close(client, 1002)
    assert_echo_serves(echo)


# ---- a new message inside an unfinished one (5.18) ----


@pytest.mark.parametrize("second", [
    pytest.param(0x1, id="autobahn-5.18-text"),
    pytest.param(0x2, id="binary"),
])
def test_new_data_frame_during_fragmented_message_fails_1002(echo, second):
    """Autobahn 5.18: a text fragment followed by another text (or binary) frame instead
    of a continuation. Fail fast: the first fragment is accepted (a ping proves it), the
    second frame alone gets 1002."""
    client = connect(echo)
    client.send(frame(0x1, b"fragment1", fin=False))
    ping_barrier(client)
    expect_failure(echo, frame(second, b"fragment2"), 1002, client=client)


def test_two_text_frames_as_fragments_in_one_write(echo):
    """Autobahn 5.18 as sent there: both frames in one write; only the close comes back."""
    client = connect(echo)
    client.send(frame(0x1, b"fragment1", fin=False) + frame(0x1, b"fragment2"))
    next_frame_is_close(client, 1002)
