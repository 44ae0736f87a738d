# SPDX-License-Identifier: MIT
"""Autobahn section 6 (UTF-8 handling) against the echo example: valid text at every
boundary code point is echoed; invalid text fails with 1007 at the first byte that makes
it invalid, even before the rest of the frame or message arrives ("fail fast": the tests
send nothing after that byte); binary is never validated.

The 6.5-6.23 tables are Autobahn's (from Markus Kuhn's UTF-8 decoder stress test), case
numbers included; every invalid one is also sent fail-fast, cut right after its first
impossible byte (computed by ws_cases.utf8_scan, not by eddy)."""

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (assert_quiet, connect, expect_failure, fragments, frame,
                      next_frame_is_close, ping_barrier, send_in_chops, shared_server,
                      utf8_scan)

echo = shared_server("echo")

KOSME = "\u03ba\u1f79\u03c3\u03bc\u03b5".encode()  # ce ba e1 bd b9 cf 83 ce bc ce b5
HELLO_UTF8 = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!".encode()


def autobahn_tables():
    """Autobahn's createUtf8TestSequences(), as (case, valid, payload) with cases 6.5.1
    onwards."""
    groups = []
    groups.append([(True, b"hello\x24world"), (True, b"hello\xc2\xa2world"),
                   (True, b"hello\xe2\x82\xacworld"), (True, b"hello\xf0\xa4\xad\xa2world"),
                   (True, KOSME)])  # 6.5 some valid UTF-8
    groups.append([(utf8_scan(KOSME[:i]) == (None, True), KOSME[:i])
                   for i in range(1, len(KOSME) + 1)])  # 6.6 all prefixes of a valid text
    groups.append([(True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"),
                   (True, b"\xf0\x90\x80\x80")])  # 6.7 first sequence of each length
    groups.append([(False, b"\xf8\x88\x80\x80\x80"),
                   (False, b"\xfc\x84\x80\x80\x80\x80")])  # 6.8 first 5/6-byte forms
    groups.append([(True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"),
                   (True, b"\xf4\x8f\xbf\xbf")])  # 6.9 last sequence of each length
    groups.append([(False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
                   (False, b"\xfd\xbf\xbf\xbf\xbf\xbf")])  # 6.10 last 4/5/6-byte forms
    groups.append([(True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
                   (True, b"\xf4\x8f\xbf\xbf"),
                   (False, b"\xf4\x90\x80\x80")])  # 6.11 other boundary conditions
    groups.append([(False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"),
                   (False, b"\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf"),
                   (False, b"\x80\xbf\x80\xbf\x80"), (False, b"\x80\xbf\x80\xbf\x80\xbf"),
                   (False, bytes(range(0x80, 0xbf)))])  # 6.12 unexpected continuations
    groups.append([(False, b"".join(bytes([c, 0x20]) for c in range(lo, hi)))
                   for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb),
                                  (0xfc, 0xfd))])  # 6.13 lonely start characters
    missing = [b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80",
               b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf",
               b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf"]
    groups.append([(False, k) for k in missing])  # 6.14 last continuation byte missing
    groups.append([(False, b"".join(missing))])  # 6.15 concatenated incomplete sequences
    groups.append([(False, b"\xfe"), (False, b"\xff"),
                   (False, b"\xfe\xfe\xff\xff")])  # 6.16 impossible bytes
    groups.append([(False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
                   (False, b"\xf8\x80\x80\x80\xaf"),
                   (False, b"\xfc\x80\x80\x80\x80\xaf")])  # 6.17 overlong ASCII
    groups.append([(False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
                   (False, b"\xf8\x87\xbf\xbf\xbf"),
                   (False, b"\xfc\x83\xbf\xbf\xbf\xbf")])  # 6.18 maximum overlongs
    groups.append([(False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
                   (False, b"\xf8\x80\x80\x80\x80"),
                   (False, b"\xfc\x80\x80\x80\x80\x80")])  # 6.19 overlong NUL
    single = [b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
              b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf"]
    groups.append([(False, s) for s in single])  # 6.20 single UTF-16 surrogates
    groups.append([(False, hi + lo)
                   for hi in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf")
                   for lo in (b"\xed\xb0\x80", b"\xed\xbf\xbf")])  # 6.21 paired surrogates
    nonchars = [b"\xef\xbf\xbe", b"\xef\xbf\xbf"]
    for z1 in (0xf0, 0xf1, 0xf2, 0xf3, 0xf4):
        for z2 in (0x8f, 0x9f, 0xaf, 0xbf):
            if z1 == 0xf4 and z2 != 0x8f:
                continue  # above U+10FFFF
            for z3 in (0xbe, 0xbf):
                seq = bytes([z1, z2, 0xbf, z3])
                if seq not in (b"\xf0\x8f\xbf\xbe", b"\xf0\x8f\xbf\xbf"):  # overlong
                    nonchars.append(seq)
    groups.append([(True, s) for s in nonchars])  # 6.22 noncharacters (valid UTF-8)
    groups.append([(True, bytes([0xef, 0xbf, c])) for c in range(0xb9, 0xc0)])  # 6.23 specials
    cases = []
    for g, group in enumerate(groups, start=5):
        for i, (valid, payload) in enumerate(group, start=1):
            cases.append((f"6.{g}.{i}", valid, payload))
    return cases


AUTOBAHN = autobahn_tables()

# Ours, beyond Autobahn's tables.
EXTRA_VALID = {
    "ascii-with-NUL-and-DEL": b"Hello-\x00-\x7f",
    "mixed-with-emoji": HELLO_UTF8 + " \U0001f600".encode(),
    "long": ("\u00e9\u4e2d\U0001f600a" * 2000).encode(),
    "noncharacter-U+FDD0": "\ufdd0".encode(),
}
EXTRA_INVALID = {
    "F5-lead": b"\xf5\x80\x80\x80",
    "continuation-after-ascii": b"abc\x80def",
    "lead-then-ascii": b"\xc3a",
    "truncated-2-byte-at-end": b"abc\xc3",
    "truncated-3-byte-at-end": b"abc\xe2\x82",
    "truncated-4-byte-at-end": b"abc\xf0\x9f\x98",
    "surrogate-prefix-ED-A0": b"\xed\xa0",
    "above-U+10FFFF-prefix-F4-90": b"\xf4\x90",
    "overlong-prefix-E0-80": b"\xe0\x80",
}

VALID_PARAMS = ([pytest.param(p, id=f"autobahn-{c}") for c, v, p in AUTOBAHN if v] +
                [pytest.param(p, id=k) for k, p in EXTRA_VALID.items()])
INVALID_PARAMS = ([pytest.param(p, id=f"autobahn-{c}") for c, v, p in AUTOBAHN if not v] +
                  [pytest.param(p, id=k) for k, p in EXTRA_INVALID.items()])


def test_tables_agree_with_the_reference_validator():
    """The tables' verdicts are those of a strict validator (guards the tables)."""
    for case, valid, payload in AUTOBAHN:
        assert (utf8_scan(payload) == (None, True)) == valid, case
    assert sum(1 for _, valid, _ in AUTOBAHN if valid) == 63
    assert sum(1 for _, valid, _ in AUTOBAHN if not valid) == 69


# ---- 6.1: empty fragments ----


@pytest.mark.parametrize("parts,want", [
    pytest.param([b""], b"", id="autobahn-6.1.1"),
    pytest.param([b"", b"", b""], b"", id="autobahn-6.1.2"),
    pytest.param([b"", b"middle frame payload", b""], b"middle frame payload",
                 id="autobahn-6.1.3"),
])
def test_empty_fragments(echo, parts, want):
    """Autobahn 6.1.1-6.1.3: empty text, three empty fragments, empty-full-empty."""
    client = connect(echo)
    client.send(fragments(0x1, parts))
    assert client.recv_frame() == (True, 0, 0x1, want)
    client.close_handshake()


# ---- 6.2: valid text, whole and fragmented on and inside code points ----


def test_valid_text_in_one_frame(echo):
    """Autobahn 6.2.1."""
    client = connect(echo)
    client.send(frame(0x1, HELLO_UTF8))
    assert client.recv_frame() == (True, 0, 0x1, HELLO_UTF8)
    client.close_handshake()


def test_valid_text_in_two_fragments_on_a_code_point_boundary(echo):
    """Autobahn 6.2.2."""
    first = "Hello-\u00b5@\u00df\u00f6\u00e4".encode()
    second = "\u00fc\u00e0\u00e1-UTF-8!!".encode()
    client = connect(echo)
    client.send(frame(0x1, first, fin=False) + frame(0x0, second))
    assert client.recv_frame() == (True, 0, 0x1, first + second)
    client.close_handshake()


SPLIT_TEXT = "a\u00b5\u20ac\U0001f600\U0010ffff\u0800z".encode()


@pytest.mark.parametrize("text", [
    pytest.param(HELLO_UTF8, id="autobahn-6.2.3"),
    pytest.param(KOSME, id="autobahn-6.2.4"),
    pytest.param(SPLIT_TEXT, id="with-4-byte-sequences"),
])
def test_valid_text_in_one_byte_fragments(echo, text):
    """Autobahn 6.2.3 and 6.2.4: one byte per fragment, so fragments end inside code
    points."""
    client = connect(echo)
    client.send(fragments(0x1, [text[i:i + 1] for i in range(len(text))]))
    assert client.recv_frame() == (True, 0, 0x1, text)
    client.close_handshake()


def test_valid_text_split_across_fragments_at_every_byte(echo):
    client = connect(echo)
    for cut in range(len(SPLIT_TEXT) + 1):
        client.send(frame(0x1, SPLIT_TEXT[:cut], fin=False) + frame(0x0, SPLIT_TEXT[cut:]))
        assert client.recv_message() == (0x1, SPLIT_TEXT), cut
    client.close_handshake()


def test_valid_text_split_across_tcp_sends_at_every_byte(echo):
    client = connect(echo)
    data = frame(0x1, SPLIT_TEXT)
    header = 6
    for cut in range(header, len(data)):
        client.send_split(data, cut)  # the server reads the first piece by itself
        assert client.recv_message() == (0x1, SPLIT_TEXT), cut
    client.close_handshake()


def test_valid_text_one_byte_per_send(echo):
    client = connect(echo)
    send_in_chops(client, frame(0x1, SPLIT_TEXT), 1)
    assert client.recv_message() == (0x1, SPLIT_TEXT)
    client.close_handshake()


def test_fragment_ending_inside_a_sequence_is_not_an_error(echo):
    """A fragment may end inside a sequence: that is not invalid until the message ends."""
    client = connect(echo)
    client.send(frame(0x1, b"euro \xe2\x82", fin=False))
    ping_barrier(client)
    client.send(frame(0x0, b"\xac!"))
    assert client.recv_message() == (0x1, "euro \u20ac!".encode())
    client.close_handshake()


# ---- 6.3: invalid text, whole and fragmented ----

INVALID_6_3 = KOSME + b"\xed\xa0\x80" + b"edited"  # invalid at byte 12 (0xa0)


def test_invalid_text_in_one_frame(echo):
    """Autobahn 6.3.1."""
    expect_failure(echo, frame(0x1, INVALID_6_3), 1007)


def test_invalid_text_in_one_byte_fragments_in_one_write(echo):
    """Autobahn 6.3.2: one byte per fragment, all written at once: the close 1007 is the
    only answer."""
    client = connect(echo)
    client.send(fragments(0x1, [INVALID_6_3[i:i + 1] for i in range(len(INVALID_6_3))]))
    next_frame_is_close(client, 1007)
    assert_echo_serves(echo)


def test_invalid_text_in_one_byte_fragments_fails_at_the_bad_byte(echo):
    """Autobahn 6.3.2, fail fast: one byte per fragment, each sent on its own; the close
    comes with the fragment holding 0xa0 (the 2nd byte of ED A0 is impossible), before
    any later fragment is sent."""
    client = connect(echo)
    bad_at = len(KOSME) + 1
    for i in range(bad_at):
        client.send(frame(0x1 if i == 0 else 0x0, INVALID_6_3[i:i + 1], fin=False))
    ping_barrier(client)  # everything so far is a valid prefix
    expect_failure(echo, frame(0x0, INVALID_6_3[bad_at:bad_at + 1], fin=False), 1007,
                   client=client)


@pytest.mark.parametrize("name", ["surrogate", "0xFF", "truncated"])
def test_invalid_text_in_last_fragment_fails_1007(echo, name):
    bad = {"surrogate": b"\xed\xa0\x80", "0xFF": b"\xff", "truncated": b"abc\xe2\x82"}[name]
    client = connect(echo)
    client.send(frame(0x1, b"valid start ", fin=False))
    ping_barrier(client)
    client.send(frame(0x0, b"middle ", fin=False))
    expect_failure(echo, frame(0x0, bad), 1007, client=client)


# ---- 6.4: fail fast ----

PART1 = KOSME  # valid
PART2 = b"\xf4\x90\x80\x80"  # U+110000: invalid at its 2nd byte, the message's 12th
PART3 = b"edited"
MESSAGE_6_4 = PART1 + PART2 + PART3


@pytest.mark.parametrize("first,second", [
    pytest.param(PART1, PART2, id="autobahn-6.4.1"),
    pytest.param(MESSAGE_6_4[:12], MESSAGE_6_4[12:13], id="autobahn-6.4.2"),
])
def test_fail_fast_on_the_fragment_that_makes_the_text_invalid(echo, first, second):
    """Autobahn 6.4.1 and 6.4.2: the first fragment is valid and accepted (the pong for a
    ping sent after it proves the server read it and did not close); the second makes
    the text invalid and must get 1007 at once. The third fragment is never sent."""
    client = connect(echo)
    client.send(frame(0x1, first, fin=False))
    ping_barrier(client)
    client.send(frame(0x0, second, fin=False))
    next_frame_is_close(client, 1007)
    assert_echo_serves(echo)


@pytest.mark.parametrize("first,second", [
    pytest.param(PART1, PART2, id="autobahn-6.4.3"),
    pytest.param(MESSAGE_6_4[:12], MESSAGE_6_4[12:13], id="autobahn-6.4.4"),
])
def test_fail_fast_inside_one_frame(echo, first, second):
    """Autobahn 6.4.3 and 6.4.4: the same, in chops of ONE frame announcing the whole
    message. No ping fits inside a frame, so the first chop's acceptance is shown by
    silence; the close 1007 must come after the second chop, with the rest of the frame
    never sent."""
    client = connect(echo)
    head_and_payload = frame(0x1, MESSAGE_6_4)
    head = head_and_payload[:len(head_and_payload) - len(MESSAGE_6_4)]
    payload = head_and_payload[len(head):]
    client.send(head + payload[:len(first)])
    assert_quiet(client, 0.1)
    client.send(payload[len(first):len(first) + len(second)])
    next_frame_is_close(client, 1007)
    assert_echo_serves(echo)


# ---- 6.5-6.23: Autobahn's tables ----


@pytest.mark.parametrize("payload", VALID_PARAMS)
def test_valid_text_echoed(echo, payload):
    client = connect(echo)
    client.send(frame(0x1, payload))
    assert client.recv_frame() == (True, 0, 0x1, payload)
    client.close_handshake()


@pytest.mark.parametrize("payload", INVALID_PARAMS)
def test_invalid_text_fails_1007(echo, payload):
    client = connect(echo)
    client.send(frame(0x1, payload))
    next_frame_is_close(client, 1007)


@pytest.mark.parametrize("payload", INVALID_PARAMS)
def test_invalid_text_fails_fast_in_first_fragment(echo, payload):
    """The payload cut right after its first impossible byte, sent as a first fragment
    without FIN: 1007 must come with nothing more sent. A payload that is only incomplete
    (a valid prefix) is accepted as a fragment (a ping proves it) and fails once an empty
    last fragment ends the message."""
    bad_at, _ = utf8_scan(payload)
    client = connect(echo)
    if bad_at is not None:
        client.send(frame(0x1, payload[:bad_at + 1], fin=False))
    else:
        client.send(frame(0x1, payload, fin=False))
        ping_barrier(client)
        client.send(frame(0x0, b""))
    next_frame_is_close(client, 1007)


# Cut where the first part is still a valid prefix (an impossible prefix already fails
# the first fragment, see test_invalid_text_fails_fast_in_first_fragment).
@pytest.mark.parametrize("bad,cut", [(b"\xed\xa0\x80", 1), (b"\xf4\x90\x80\x80", 1),
                                     (b"\xf0\x80\x80\xaf", 1), (b"\xe2\x82\x41", 1),
                                     (b"\xe2\x82\x41", 2), (b"\xf0\x9f\x98\x41", 3)])
def test_invalid_sequence_split_across_fragments_fails_1007(echo, bad, cut):
    client = connect(echo)
    client.send(frame(0x1, b"x" + bad[:cut], fin=False))
    ping_barrier(client)  # the first half alone is not (yet) an error
    expect_failure(echo, frame(0x0, bad[cut:] + b"y"), 1007, client=client)


def test_fail_fast_inside_a_frame_announcing_more(echo):
    """A frame announces 1000 bytes; the bad byte comes among the first ten, and 1007 must
    arrive while the rest of the frame is still missing."""
    client = connect(echo)
    payload = b"abcd\xed\xa0\x80" + b"z" * 993
    data = frame(0x1, payload)
    expect_failure(echo, data[:6 + 10], 1007, client=client)


# ---- binary is not text ----


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
