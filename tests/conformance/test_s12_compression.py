# SPDX-License-Identifier: MIT
"""Autobahn section 12 (permessage-deflate, RFC 7692, with Autobahn's default offer)
against the echo example started with websocket_compression=true. Messages are compressed
here with Python's zlib exactly as RFC 7692 7.2.1 says; echo sends back compressed what
came compressed, and the replies are inflated and compared.

Beyond Autobahn: RFC 7692's own example byte sequences (7.2.3), uncompressed messages on a
compressing connection, control frames between compressed fragments, and the failures:
RSV1 where it is not allowed (1002), corrupt DEFLATE data and text that inflates to invalid
UTF-8 (1007, fail fast), and a decompression bomb (1009 once the inflated size passes
package_max_length, whatever the compressed size)."""

import random
import zlib

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (close_payload, expect_failure, frame, next_frame_is_close,
                      ping_barrier, shared_server)
from ws_deflate import (MSG_SIZES, TAIL, Agreement, DeflateClient, Inflater, messages,
                        open_with_offer)

deflate_echo = shared_server("echo", settings={"websocket_compression": "true"})
deflate_small = shared_server("echo", settings={"websocket_compression": "true",
                                                "package_max_length": "65536"})

# Autobahn's default offer (autobahn-python's PerMessageDeflateOffer()).
DEFAULT_OFFER = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
PLAIN_OFFER = "permessage-deflate"


def deflate_client(server, offer=DEFAULT_OFFER):
    client, value = open_with_offer(server, offer)
    assert value is not None, "permessage-deflate was not accepted"
    return DeflateClient(client, Agreement(value))


def raw_deflate(data, bits=15, flush=zlib.Z_SYNC_FLUSH):
    """One message compressed with a fresh context, tail stripped for a sync flush."""
    zobj = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = zobj.compress(data) + zobj.flush(flush)
    return out[:-4] if flush == zlib.Z_SYNC_FLUSH else out


DATASETS = ["json", "bitmap", "prose", "html", "random"]  # Autobahn 12.1-12.5


@pytest.mark.parametrize("name,size,fragment_size", [
    pytest.param(name, size, frag, id=f"autobahn-12.{d}.{i}-{name}-{size}-frag{frag}")
    for d, name in enumerate(DATASETS, start=1)
    for i, (size, frag) in enumerate(MSG_SIZES, start=1)])
def test_compressed_messages_echoed(deflate_echo, name, size, fragment_size):
    """Autobahn 12.x.y: messages of `size` (text or binary per data set) compressed with
    the default offer's agreement (client_no_context_takeover: a fresh compressor per
    message; the server keeps its context), the compressed payload cut into frames of
    fragment_size (0: one frame). Each comes back compressed and intact."""
    dclient = deflate_client(deflate_echo)
    assert dclient.agreement.value == "permessage-deflate; client_no_context_takeover"
    for opcode, msg in messages(name, size):
        dclient.roundtrip(opcode, msg, fragment_size)
    dclient.client.close_handshake()


# ---- RFC 7692 7.2.3: the specification's own examples, byte for byte ----

HELLO_ONE_BLOCK = bytes.fromhex("f248cdc9c90700")
HELLO_SHARED_WINDOW = bytes.fromhex("f200110000")  # the 2nd "Hello" with context takeover
HELLO_STORED = bytes.fromhex("000500faff48656c6c6f00")
HELLO_BFINAL = bytes.fromhex("f348cdc9c9070000")
HELLO_TWO_BLOCKS = bytes.fromhex("f2480500" "0000ffff" "cac9c90700")


@pytest.mark.parametrize("payload", [
    pytest.param(HELLO_ONE_BLOCK, id="7.2.3.1-one-compressed-block"),
    pytest.param(HELLO_STORED, id="7.2.3.3-no-compression"),
    pytest.param(HELLO_BFINAL, id="7.2.3.4-bfinal-set"),
    pytest.param(HELLO_TWO_BLOCKS, id="7.2.3.5-two-blocks"),
])
def test_rfc7692_examples(deflate_echo, payload):
    """Each RFC 7692 7.2.3 encoding of "Hello" is a text message "Hello", echoed
    compressed; the same connection then takes a second one."""
    dclient = deflate_client(deflate_echo)
    for _ in range(2):
        dclient.client.send(frame(0x1, payload, rsv=4))
        assert dclient.recv() == (0x1, b"Hello", True)
    dclient.client.close_handshake()


def test_rfc7692_fragmented_example(deflate_echo):
    """RFC 7692 7.2.3.1 with fragmentation: f2 48 cd | c9 c9 07 00, RSV1 on the first
    frame only."""
    dclient = deflate_client(deflate_echo)
    dclient.client.send(frame(0x1, HELLO_ONE_BLOCK[:3], fin=False, rsv=4) +
                        frame(0x0, HELLO_ONE_BLOCK[3:]))
    assert dclient.recv() == (0x1, b"Hello", True)
    dclient.client.close_handshake()


def test_rfc7692_sharing_the_window(deflate_echo):
    """RFC 7692 7.2.3.2: with client context takeover (a plain offer) the second "Hello"
    is f2 00 11 00 00, a reference into the first message: the server must keep its
    inflater's window. Its own replies use context takeover too: the second one inflates
    with the persistent inflater but not with a fresh one."""
    dclient = deflate_client(deflate_echo, PLAIN_OFFER)
    assert dclient.agreement.value == "permessage-deflate"
    client = dclient.client
    client.send(frame(0x1, HELLO_ONE_BLOCK, rsv=4))
    _, _, _, first = client.recv_frame()
    client.send(frame(0x1, HELLO_SHARED_WINDOW, rsv=4))
    fin, rsv, opcode, second = client.recv_frame()
    assert (fin, rsv, opcode) == (True, 4, 0x1)
    inflater = Inflater(15, takeover=True)
    assert inflater.inflate(first) == b"Hello"
    assert inflater.inflate(second) == b"Hello"
    assert len(second) < len(first)
    with pytest.raises(zlib.error):
        Inflater(15, takeover=False).inflate(second)
    client.close_handshake()


@pytest.mark.parametrize("payload", [
    pytest.param(b"\x00", id="7.2.3.6-empty-stored-block"),
    pytest.param(raw_deflate(b""), id="zlib-empty"),
])
def test_empty_compressed_message(deflate_echo, payload):
    """An empty message, compressed: the reply is an empty message, compressed."""
    dclient = deflate_client(deflate_echo)
    for opcode in (0x1, 0x2):
        dclient.client.send(frame(opcode, payload, rsv=4))
        assert dclient.recv() == (opcode, b"", True)
    dclient.client.close_handshake()


# ---- context takeover on both sides, mixed traffic ----


def test_client_context_takeover_across_many_messages(deflate_echo):
    """A plain offer: our compressor keeps its context for 200 messages that repeat each
    other, so most of them are back-references into earlier messages; the server's
    inflater must follow, and its replies inflate with one persistent inflater."""
    dclient = deflate_client(deflate_echo, PLAIN_OFFER)
    assert not dclient.agreement.client_no_context_takeover
    rng = random.Random(7692)
    vocabulary = [f"word{i} ".encode() * rng.randint(1, 4) for i in range(40)]
    for i in range(200):
        msg = b"".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 30)))
        dclient.roundtrip(0x1 if i % 3 else 0x2, msg, fragment_size=rng.choice((0, 0, 7, 64)))
    dclient.client.close_handshake()


def test_uncompressed_messages_between_compressed_ones(deflate_echo):
    """RSV1 is per message: uncompressed messages on a compressing connection are echoed
    uncompressed and leave both contexts alone."""
    dclient = deflate_client(deflate_echo, PLAIN_OFFER)
    client = dclient.client
    for i in range(10):
        text = f"compressed {i} ".encode() * 20
        dclient.roundtrip(0x1, text)
        plain = f"plain {i}".encode()
        client.send(frame(0x2, plain))
        assert dclient.recv() == (0x2, plain, False)
    client.close_handshake()


def test_control_frames_between_compressed_fragments(deflate_echo):
    """Pings between the fragments of a compressed message are answered at once; the
    fragments, each its own sync-flushed piece, are sent in separate writes."""
    dclient = deflate_client(deflate_echo)
    client = dclient.client
    chunks = [b"first chunk " * 50, b"", b"second " * 100, b"last"]
    frames = dclient.message_frames(0x1, None, chunks=chunks)
    for i, data in enumerate(frames):
        client.send(data)
        if i < len(frames) - 1:
            ping_barrier(client, f"ping {i}".encode())
    assert dclient.recv() == (0x1, b"".join(chunks), True)
    client.close_handshake()


def test_compressed_fragments_with_empty_frames(deflate_echo):
    """Empty continuation frames inside a compressed message carry nothing and change
    nothing (RFC 7692 7.2.3.5's empty fragments)."""
    dclient = deflate_client(deflate_echo)
    payload = raw_deflate(b"fragmented and compressed " * 40)
    data = (frame(0x2, payload[:10], fin=False, rsv=4) + frame(0x0, b"", fin=False) +
            frame(0x0, payload[10:], fin=False) + frame(0x0, b""))
    dclient.client.send(data)
    assert dclient.recv() == (0x2, b"fragmented and compressed " * 40, True)
    dclient.client.close_handshake()


def test_compressed_message_one_byte_per_write(deflate_echo):
    dclient = deflate_client(deflate_echo)
    msg = "Grüße, ünïcödé " * 30
    for byte in b"".join(dclient.message_frames(0x1, msg.encode(), fragment_size=50)):
        dclient.client.send(bytes([byte]))
    assert dclient.recv() == (0x1, msg.encode(), True)
    dclient.client.close_handshake()


# ---- failures: RSV1 where it does not belong (1002) ----


def test_rsv1_without_negotiation_fails_1002(deflate_echo):
    """Compression is enabled but this client offered nothing: RSV1 means nothing here."""
    client, value = open_with_offer(deflate_echo, None)
    assert value is None
    expect_failure(deflate_echo, frame(0x1, HELLO_ONE_BLOCK, rsv=4), 1002, client=client)


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_rsv1_on_control_frame_fails_1002(deflate_echo, opcode):
    """RFC 7692 6.1: control frames are never compressed."""
    dclient = deflate_client(deflate_echo)
    payload = close_payload(1000) if opcode == 0x8 else b"ctl"
    expect_failure(deflate_echo, frame(opcode, payload, rsv=4), 1002, client=dclient.client)


@pytest.mark.parametrize("first_rsv", [0, 4], ids=["uncompressed-start", "compressed-start"])
def test_rsv1_on_continuation_fails_1002(deflate_echo, first_rsv):
    """RFC 7692 6.1: RSV1 marks the first frame of a message only. Fail fast: the ping
    proves the first fragment was accepted; nothing follows the bad continuation."""
    dclient = deflate_client(deflate_echo)
    client = dclient.client
    first = raw_deflate(b"compressed start " * 10) if first_rsv else b"plain start"
    client.send(frame(0x1, first, fin=False, rsv=first_rsv))
    ping_barrier(client)
    expect_failure(deflate_echo, frame(0x0, HELLO_ONE_BLOCK, rsv=4), 1002, client=client)


@pytest.mark.parametrize("rsv", [2, 1, 6, 7])
def test_rsv2_rsv3_fail_1002_even_with_deflate(deflate_echo, rsv):
    dclient = deflate_client(deflate_echo)
    expect_failure(deflate_echo, frame(0x1, HELLO_ONE_BLOCK, rsv=rsv), 1002,
                   client=dclient.client)


# ---- failures: data that does not inflate (1007) ----


@pytest.mark.parametrize("payload", [
    pytest.param(b"\xff\xff\xff\xff", id="reserved-block-type"),
    pytest.param(bytes.fromhex("0005001234") + b"Hello", id="stored-length-mismatch"),
    pytest.param(HELLO_SHARED_WINDOW, id="reference-before-the-start"),
    pytest.param(bytes.fromhex("f348cdc9c90700") + b"\xff", id="garbage-after-bfinal"),
])
def test_corrupt_deflate_data_fails_1007(deflate_echo, payload):
    """Data that is not a valid DEFLATE stream fails with 1007 (eddy's choice: it is an
    invalid payload, like invalid UTF-8). A back-reference on a fresh connection points
    before the stream's start."""
    dclient = deflate_client(deflate_echo, PLAIN_OFFER)
    expect_failure(deflate_echo, frame(0x2, payload, rsv=4), 1007, client=dclient.client)


def test_reference_into_a_context_the_client_gave_up_fails_1007(deflate_echo):
    """client_no_context_takeover was agreed, so the server resets its inflater after
    each message: a second message referring to the first cannot inflate."""
    dclient = deflate_client(deflate_echo)
    assert dclient.agreement.client_no_context_takeover
    client = dclient.client
    client.send(frame(0x1, HELLO_ONE_BLOCK, rsv=4))
    assert dclient.recv() == (0x1, b"Hello", True)
    client.send(frame(0x1, HELLO_SHARED_WINDOW, rsv=4))
    next_frame_is_close(client, 1007)


def test_corrupt_first_fragment_fails_fast(deflate_echo):
    """The first fragment is already not DEFLATE: 1007 before the rest is sent."""
    dclient = deflate_client(deflate_echo)
    expect_failure(deflate_echo, frame(0x1, b"\xff\xff\xff\xff", fin=False, rsv=4), 1007,
                   client=dclient.client)


def test_compressed_text_inflating_to_invalid_utf8_fails_1007(deflate_echo):
    dclient = deflate_client(deflate_echo)
    payload = raw_deflate(b"valid start \xed\xa0\x80 edited")
    expect_failure(deflate_echo, frame(0x1, payload, rsv=4), 1007, client=dclient.client)


def test_compressed_text_invalid_utf8_fails_fast_in_first_fragment(deflate_echo):
    """The first fragment, sync-flushed so it inflates on its own, holds invalid UTF-8:
    the close 1007 comes before any further fragment is sent."""
    dclient = deflate_client(deflate_echo)
    first = dclient.message_frames(0x1, None, chunks=[b"ok so far \xf4\x90\x80\x80", b"rest"])[0]
    expect_failure(deflate_echo, first, 1007, client=dclient.client)


def test_compressed_text_invalid_utf8_fails_fast_inside_a_frame(deflate_echo):
    """Autobahn 6.4.3 for compressed text: one frame announces the whole compressed
    message; its first part (sync-flushed, so it inflates on its own) already inflates to
    invalid UTF-8, and the close 1007 comes before the rest of the frame is sent."""
    dclient = deflate_client(deflate_echo)
    head_part, rest = dclient.compressor.pieces([b"ok so far \xed\xa0\x80", b"x" * 500])
    data = frame(0x1, head_part + rest, rsv=4)
    cut = len(data) - len(rest)
    expect_failure(deflate_echo, data[:cut], 1007, client=dclient.client)


def test_compressed_binary_is_not_validated(deflate_echo):
    dclient = deflate_client(deflate_echo)
    dclient.roundtrip(0x2, b"\xed\xa0\x80\xff\xfe" * 100)
    dclient.client.close_handshake()


# ---- failures: decompression bombs (1009) ----


@pytest.mark.parametrize("size", [65535, 65536])
def test_inflated_size_up_to_the_limit_echoed(deflate_small, size):
    """package_max_length=65536 limits the inflated message: 65536 zeros (a few dozen
    compressed bytes) are fine."""
    dclient = deflate_client(deflate_small)
    dclient.roundtrip(0x2, b"\x00" * size)
    dclient.client.close_handshake()


@pytest.mark.parametrize("size", [65537, 16 << 20])
def test_decompression_bomb_fails_1009(deflate_small, size):
    """A payload of a few dozen (or thousand) bytes inflating past package_max_length:
    1009, without the server inflating it all."""
    payload = raw_deflate(b"\x00" * size)
    assert len(payload) < 20000
    dclient = deflate_client(deflate_small)
    expect_failure(deflate_small, frame(0x2, payload, rsv=4), 1009, client=dclient.client)


def test_decompression_bomb_fails_fast_inside_its_frame(deflate_small):
    """The frame announces a 16 MiB bomb's whole compressed payload; its first 2000
    bytes already inflate past 65536, so 1009 comes before the rest is sent."""
    payload = raw_deflate(b"\x00" * (16 << 20))
    assert len(payload) > 4000
    data = frame(0x2, payload, rsv=4)
    dclient = deflate_client(deflate_small)
    expect_failure(deflate_small, data[:len(data) - len(payload) + 2000], 1009,
                   client=dclient.client)


def test_decompression_bomb_in_fragments_fails_at_crossing_fragment(deflate_small):
    """Each fragment inflates to 30000 bytes: the third crosses 65536 and gets 1009 at
    once; the fourth is never sent."""
    dclient = deflate_client(deflate_small)
    client = dclient.client
    frames = dclient.message_frames(0x2, None, chunks=[b"\x00" * 30000] * 4)
    client.send(frames[0])
    client.send(frames[1])
    ping_barrier(client)  # 60000 inflated bytes: still fine
    client.send(frames[2])
    next_frame_is_close(client, 1009)
    assert_echo_serves(deflate_small)


def test_incompressible_message_at_the_limit_echoed(deflate_small):
    """package_max_length limits the inflated size (eddy's documentation): 65536 random
    bytes are at the limit even though their compressed form (stored blocks) is a few
    bytes longer."""
    data = random.Random(1009).randbytes(65536)
    dclient = deflate_client(deflate_small)
    assert len(dclient.compressor.compress(data)) > 65536
    dclient.roundtrip(0x2, data)
    dclient.client.close_handshake()


def test_incompressible_last_fragment_reaching_the_limit_echoed(deflate_small):
    """The same for a fragment: 60000 inflated bytes so far, then a fragment of 5536
    random bytes whose compressed form is longer than the 5536 bytes left."""
    rng = random.Random(1010)
    chunks = [rng.randbytes(60000), rng.randbytes(5536)]
    dclient = deflate_client(deflate_small)
    frames = dclient.message_frames(0x2, None, chunks=chunks)
    assert len(frames[1]) > 5536 + 6
    dclient.client.send(b"".join(frames))
    assert dclient.recv() == (0x2, b"".join(chunks), True)
    dclient.client.close_handshake()


def test_inflate_limit_is_per_message(deflate_small):
    dclient = deflate_client(deflate_small, PLAIN_OFFER)
    for i in range(5):
        dclient.roundtrip(0x2, bytes([i]) * 60000)
    dclient.client.close_handshake()


def test_tail_is_not_sent_by_the_server(deflate_echo):
    """RFC 7692 7.2.1: the server strips 00 00 ff ff from what it sends."""
    dclient = deflate_client(deflate_echo)
    for text in (b"a", b"Hello, compressed world! " * 20):
        dclient.client.send(frame(0x1, raw_deflate(text), rsv=4))
        fin, rsv, opcode, payload = dclient.client.recv_frame()
        assert (fin, rsv, opcode) == (True, 4, 0x1)
        assert not payload.endswith(TAIL)
        assert dclient.inflater.inflate(payload) == text
    dclient.client.close_handshake()
