"""UTF-8 handling of text messages and close reasons (Autobahn section 6): valid text at
every boundary code point is echoed; invalid text fails with 1007 at the first bad byte,
even before the rest of the frame or message arrives; binary is never validated."""

import time

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (close_payload, connect, expect_failure, frame, next_frame_is_close,
                      ping_barrier, shared_server)

echo = shared_server("echo")

VALID = {
    "empty": b"",
    "ascii": b"Hello-\x00-\x7f",
    "U+007F": "\u007f".encode(),
    "U+0080": "\u0080".encode(),
    "U+07FF": "\u07ff".encode(),
    "U+0800": "\u0800".encode(),
    "U+D7FF": "\ud7ff".encode(),
    "U+E000": "\ue000".encode(),
    "U+FFFD": "\ufffd".encode(),
    "U+FFFF": "\uffff".encode(),
    "U+10000": "\U00010000".encode(),
    "U+10FFFF": "\U0010ffff".encode(),
    "kosme": "\u03ba\u1f79\u03c3\u03bc\u03b5".encode(),
    "mixed": "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!! \U0001f600".encode(),
    "long": ("\u00e9\u4e2d\U0001f600a" * 2000).encode(),
    "noncharacter U+FDD0": "\ufdd0".encode(),
}

INVALID = {
    "overlong 2-byte /": b"\xc0\xaf",
    "overlong 2-byte U+007F": b"\xc1\xbf",
    "overlong 3-byte /": b"\xe0\x80\xaf",
    "overlong 3-byte U+07FF": b"\xe0\x9f\xbf",
    "overlong 4-byte /": b"\xf0\x80\x80\xaf",
    "overlong 4-byte U+FFFF": b"\xf0\x8f\xbf\xbf",
    "surrogate U+D800": b"\xed\xa0\x80",
    "surrogate U+DBFF": b"\xed\xaf\xbf",
    "surrogate U+DC00": b"\xed\xb0\x80",
    "surrogate U+DFFF": b"\xed\xbf\xbf",
    "surrogate pair": b"\xed\xa0\x80\xed\xb0\x80",
    "U+110000": b"\xf4\x90\x80\x80",
    "F5 lead": b"\xf5\x80\x80\x80",
    "0xFE": b"\xfe",
    "0xFF": b"\xff",
    "FE FE FF FF": b"\xfe\xfe\xff\xff",
    "lone continuation 0x80": b"\x80",
    "lone continuation 0xBF": b"\xbf",
    "continuation after ascii": b"abc\x80def",
    "lead then ascii": b"\xc3a",
    "5-byte form": b"\xf8\x88\x80\x80\x80",
    "truncated 2-byte at end": b"abc\xc3",
    "truncated 3-byte at end": b"abc\xe2\x82",
    "truncated 4-byte at end": b"abc\xf0\x9f\x98",
    "surrogate prefix ED A0": b"\xed\xa0",
    "above U+10FFFF prefix F4 90": b"\xf4\x90",
    "overlong prefix E0 80": b"\xe0\x80",
    "kosme then invalid": "\u03ba\u1f79\u03c3\u03bc\u03b5".encode() + b"\xed\xa0\x80edited",
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_text_echoed(echo, name):
    client = connect(echo)
    client.send(frame(0x1, VALID[name]))
    assert client.recv_message() == (0x1, VALID[name])
    client.close_handshake()


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_text_fails_1007(echo, name):
    expect_failure(echo, frame(0x1, INVALID[name]), 1007)


@pytest.mark.parametrize("name", ["surrogate U+D800", "0xFF", "truncated 3-byte at end"])
def test_invalid_text_in_fragmented_message_fails_1007(echo, name):
    client = connect(echo)
    client.send(frame(0x1, b"valid start ", fin=False))
    ping_barrier(client)
    client.send(frame(0x0, b"middle ", fin=False))
    expect_failure(echo, frame(0x0, INVALID[name]), 1007, client=client)


@pytest.mark.parametrize("name", ["overlong 2-byte /", "surrogate U+DFFF", "U+110000", "0xFE",
                                  "lone continuation 0x80", "surrogate prefix ED A0",
                                  "above U+10FFFF prefix F4 90", "overlong prefix E0 80"])
def test_fail_fast_in_first_fragment(echo, name):
    """The first fragment (no FIN) carries the bad bytes; 1007 must come without any
    further fragment being sent."""
    client = connect(echo)
    expect_failure(echo, frame(0x1, b"ok so far " + INVALID[name], fin=False), 1007,
                   client=client)


def test_fail_fast_inside_a_frame(echo):
    """A frame announces 1000 bytes; the bad byte comes among the first ten, and 1007 must
    arrive while the rest of the frame is still missing."""
    client = connect(echo)
    payload = b"abcd\xed\xa0\x80" + b"z" * 993
    data = frame(0x1, payload)
    expect_failure(echo, data[:6 + 10], 1007, client=client)


def test_fail_fast_text_frame_not_final_truncated_is_not_an_error(echo):
    """A fragment may end inside a sequence: that is not invalid until the message ends."""
    client = connect(echo)
    client.send(frame(0x1, b"euro \xe2\x82", fin=False))
    ping_barrier(client)
    client.send(frame(0x0, b"\xac!"))
    assert client.recv_message() == (0x1, "euro \u20ac!".encode())
    client.close_handshake()


# Cut where the first part is still a valid prefix (an impossible prefix already fails
# the first fragment, see test_fail_fast_in_first_fragment).
@pytest.mark.parametrize("bad,cut", [(b"\xed\xa0\x80", 1), (b"\xf4\x90\x80\x80", 1),
                                     (b"\xf0\x80\x80\xaf", 1), (b"\xe2\x82\x41", 1),
                                     (b"\xe2\x82\x41", 2), (b"\xf0\x9f\x98\x41", 3)])
def test_invalid_sequence_split_across_fragments_fails_1007(echo, bad, cut):
    client = connect(echo)
    client.send(frame(0x1, b"x" + bad[:cut], fin=False))
    ping_barrier(client)  # the first half alone is not (yet) an error
    expect_failure(echo, frame(0x0, bad[cut:] + b"y"), 1007, client=client)


SPLIT_TEXT = "a\u00b5\u20ac\U0001f600\U0010ffff\u0800z".encode()


def test_valid_text_split_across_fragments_at_every_byte(echo):
    client = connect(echo)
    for cut in range(len(SPLIT_TEXT) + 1):
        client.send(frame(0x1, SPLIT_TEXT[:cut], fin=False) + frame(0x0, SPLIT_TEXT[cut:]))
        assert client.recv_message() == (0x1, SPLIT_TEXT), cut
    client.close_handshake()


def test_valid_text_in_one_byte_fragments(echo):
    client = connect(echo)
    client.send(b"".join(frame(0x1 if i == 0 else 0x0, SPLIT_TEXT[i:i + 1],
                               fin=i == len(SPLIT_TEXT) - 1) for i in range(len(SPLIT_TEXT))))
    assert client.recv_message() == (0x1, SPLIT_TEXT)
    client.close_handshake()


def test_valid_text_split_across_tcp_sends_at_every_byte(echo):
    client = connect(echo)
    data = frame(0x1, SPLIT_TEXT)
    header = 6
    for cut in range(header, len(data)):
        client.send(data[:cut])
        time.sleep(0.002)  # pacing only: let the server read the first piece by itself
        client.send(data[cut:])
        assert client.recv_message() == (0x1, SPLIT_TEXT), cut
    client.close_handshake()


def test_valid_text_one_byte_per_send(echo):
    client = connect(echo)
    data = frame(0x1, SPLIT_TEXT)
    for i in range(len(data)):
        client.send(data[i:i + 1])
    assert client.recv_message() == (0x1, SPLIT_TEXT)
    client.close_handshake()


def test_invalid_text_in_one_byte_fragments_fails_at_the_bad_byte(echo):
    """Autobahn 6.4-style: one byte per fragment, each sent on its own; nothing after the
    fragment holding the impossible byte is sent."""
    client = connect(echo)
    text = "\u03ba\u1f79".encode() + b"\xed\xa0\x80"  # the 2nd byte of ED A0 is impossible
    bad_at = len(text) - 2
    for i in range(bad_at):
        client.send(frame(0x1 if i == 0 else 0x0, text[i:i + 1], fin=False))
    ping_barrier(client)
    expect_failure(echo, frame(0x0, text[bad_at:bad_at + 1], fin=False), 1007, client=client)


@pytest.mark.parametrize("payload", [b"\xff\xfe\x00\xc0\xaf\xed\xa0\x80", b"\x80", b"abc\xc3"])
def test_binary_is_not_validated(echo, payload):
    client = connect(echo)
    client.send(frame(0x2, payload))
    assert client.recv_message() == (0x2, payload)
    client.send(frame(0x2, payload[:1], fin=False) + frame(0x0, payload[1:]))
    assert client.recv_message() == (0x2, payload)
    client.close_handshake()


def test_utf8_state_resets_between_messages(echo):
    """A binary message ending in a partial sequence must not taint the next text."""
    client = connect(echo)
    client.send(frame(0x2, b"\xe2\x82") + frame(0x1, b"\xacabc"))
    assert client.recv_message() == (0x2, b"\xe2\x82")
    next_frame_is_close(client, 1007)
    assert_echo_serves(echo)


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xed\xa0\x80", b"\xc0\xaf", b"trunc\xe2\x82"])
def test_close_reason_invalid_utf8_fails_1007(echo, reason):
    expect_failure(echo, frame(0x8, close_payload(1000, reason)), 1007)


def test_close_reason_valid_utf8_echoed_code(echo):
    client = connect(echo)
    client.send(frame(0x8, close_payload(1000, "\u00e9t\u00e9 \U0001f600".encode())))
    next_frame_is_close(client, 1000)


def test_text_in_ping_is_not_validated(echo):
    """Control frame payloads other than the close reason are opaque bytes."""
    client = connect(echo)
    ping_barrier(client, b"\xff\xfe\xed\xa0\x80")
    client.close_handshake()
