"""RFC 6455 framing (Autobahn sections 1-5, 9 and 10 in spirit) against the echo example,
with exact bytes from a raw client: payload lengths and their encodings, arbitrary TCP
splits, control frames, fragmentation, and every reserved bit, opcode and length that
must fail the connection with 1002."""

import random
import struct
import time
import zlib

import pytest

from eddyserver import assert_echo_serves
from ws_cases import (close_payload, connect, echo_roundtrip, expect_failure, frame,
                      next_frame_is_close, ping_barrier, shared_server)

echo = shared_server("echo")
frames_example = shared_server("frames")

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20]


def payload_of(n, seed=0):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def text_of(n):
    return (b"abcdefghijklmnopqrstuvwxyz0123456789" * (n // 36 + 1))[:n]


# ---- lengths and encodings (sections 1 and 9) ----


@pytest.mark.parametrize("n", LENGTHS)
def test_text_echoed_exactly(echo, n):
    client = connect(echo)
    echo_roundtrip(client, 0x1, text_of(n))
    client.close_handshake()


@pytest.mark.parametrize("n", LENGTHS)
def test_binary_echoed_exactly(echo, n):
    client = connect(echo)
    echo_roundtrip(client, 0x2, payload_of(n))
    client.close_handshake()


def test_server_uses_minimal_length_encoding(echo):
    client = connect(echo)
    for n, second, ext in ((125, 125, b""), (126, 126, struct.pack("!H", 126)),
                           (65535, 126, struct.pack("!H", 65535)),
                           (65536, 127, struct.pack("!Q", 65536))):
        client.send(frame(0x2, payload_of(n)))
        head = client._take(2 + len(ext))
        assert head == bytes([0x82, second]) + ext, (n, head)
        assert client._take(n) == payload_of(n)
    client.close_handshake()


@pytest.mark.parametrize("n,form", [(0, 16), (5, 16), (125, 16), (0, 64), (5, 64),
                                    (126, 64), (65535, 64)])
def test_non_minimal_length_encoding_accepted(echo, n, form):
    client = connect(echo)
    client.send(frame(0x2, payload_of(n), length_form=form))
    assert client.recv_message() == (0x2, payload_of(n))
    client.close_handshake()


def test_frame_delivered_one_byte_at_a_time(echo):
    client = connect(echo)
    for opcode, payload in ((0x1, text_of(300)), (0x2, payload_of(70000)[:200]),
                            (0x9, b"ping!")):
        data = frame(opcode, payload, length_form=64 if opcode == 0x2 else None)
        for i in range(len(data)):
            client.send(data[i:i + 1])
        want = (0xA if opcode == 0x9 else opcode, payload)
        assert client.recv_message() == want
    client.close_handshake()


def test_many_frames_in_one_send(echo):
    client = connect(echo)
    messages = [f"message {i}".encode() * (i % 5 + 1) for i in range(100)]
    client.send(b"".join(frame(0x1 if i % 2 else 0x2, m) for i, m in enumerate(messages)))
    for i, m in enumerate(messages):
        assert client.recv_message() == (0x1 if i % 2 else 0x2, m)
    client.close_handshake()


@pytest.mark.parametrize("form", [7, 16, 64])
def test_header_split_at_every_offset(echo, form):
    client = connect(echo)
    payload = text_of(200 if form == 16 else 20 if form == 7 else 70000)
    data = frame(0x1, payload, length_form=form)
    head_len = {7: 6, 16: 8, 64: 14}[form]
    for offset in range(1, min(head_len + 1, 14)):
        client.send(data[:offset])
        # Pacing, not synchronisation: give the server a chance to read the first piece
        # on its own so the header really straddles two reads. The test is valid either way.
        time.sleep(0.002)
        client.send(data[offset:])
        assert client.recv_message() == (0x1, payload), offset
    client.close_handshake()


# ---- control frames (sections 2 and 3) ----


@pytest.mark.parametrize("n", [0, 1, 125])
def test_ping_answered_with_same_payload(echo, n):
    client = connect(echo)
    ping_barrier(client, payload_of(n, seed=3))
    client.close_handshake()


def test_ping_split_across_sends_answered(echo):
    client = connect(echo)
    data = frame(0x9, payload_of(125))
    for cut in (1, 2, 6, 7, 64, 130):
        client.send(data[:cut])
        time.sleep(0.002)  # pacing only, as above
        client.send(data[cut:])
        assert client.recv_frame() == (True, 0, 0xA, payload_of(125))
    client.close_handshake()


def test_unsolicited_pong_ignored(echo):
    client = connect(echo)
    client.send(frame(0xA, b"unsolicited") + frame(0xA, b"") + frame(0x1, b"after"))
    # The very next frame is the echo: nothing was sent for the pongs.
    assert client.recv_frame() == (True, 0, 0x1, b"after")
    client.close_handshake()


def test_ping_126_bytes_fails_1002(echo):
    expect_failure(echo, frame(0x9, payload_of(126)), 1002)


def test_close_126_bytes_fails_1002(echo):
    expect_failure(echo, frame(0x8, struct.pack("!H", 1000) + b"x" * 124), 1002)


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_fragmented_control_frame_fails_1002(echo, opcode):
    payload = struct.pack("!H", 1000) if opcode == 0x8 else b"frag"
    expect_failure(echo, frame(opcode, payload, fin=False), 1002)


def test_ping_frames_delivered_with_open_websocket_ping_frame(frames_example):
    server = frames_example
    client = connect(server)
    client.send(frame(0x9, b"hand made"))
    assert client.recv_frame() == (True, 0, 0xA, b"hand made")
    server.expect("Ping frame received: Code 9")
    client.send(frame(0xA, b"p"))
    server.expect("Pong frame received: Code 10")
    client.send(frame(0x1, b"text"))
    server.expect("Message received: text")
    client.close_handshake()
    server.expect("Close frame received: Code 1000 Reason ")


# ---- protocol violations (sections 3 and 4) ----


def test_unmasked_frame_fails_1002(echo):
    expect_failure(echo, frame(0x1, b"hello", mask=False), 1002)


def test_unmasked_control_frame_fails_1002(echo):
    expect_failure(echo, frame(0x9, b"hello", mask=False), 1002)


@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("opcode", [0x1, 0x2, 0x9])
def test_rsv_bits_fail_1002(echo, rsv, opcode):
    expect_failure(echo, frame(opcode, b"Hello", rsv=rsv), 1002)


def test_rsv_bit_on_continuation_fails_1002(echo):
    client = connect(echo)
    client.send(frame(0x1, b"start", fin=False))
    expect_failure(echo, frame(0x0, b"end", rsv=2), 1002, client=client)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_fails_1002(echo, opcode):
    expect_failure(echo, frame(opcode, b"reserved"), 1002)


@pytest.mark.parametrize("opcode", [3, 0xB])
def test_reserved_opcode_inside_fragmented_message_fails_1002(echo, opcode):
    client = connect(echo)
    client.send(frame(0x1, b"start", fin=False))
    expect_failure(echo, frame(opcode, b"", fin=True), 1002, client=client)


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start_fails_1002(echo, fin):
    expect_failure(echo, frame(0x0, b"orphan", fin=fin), 1002)


def test_continuation_after_finished_message_fails_1002(echo):
    client = connect(echo)
    client.send(frame(0x1, b"whole"))
    assert client.recv_message() == (0x1, b"whole")
    expect_failure(echo, frame(0x0, b"orphan"), 1002, client=client)


@pytest.mark.parametrize("second", [0x1, 0x2])
def test_new_data_frame_during_fragmented_message_fails_1002(echo, second):
    client = connect(echo)
    client.send(frame(0x1, b"start", fin=False))
    expect_failure(echo, frame(second, b"new"), 1002, client=client)


def test_64bit_length_with_top_bit_fails_1002(echo):
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x01\x02\x03\x04"
    expect_failure(echo, head, 1002)


def test_64bit_length_all_ones_fails_1002(echo):
    head = bytes([0x82, 0x80 | 127]) + b"\xff" * 8 + b"\x01\x02\x03\x04"
    expect_failure(echo, head, 1002)


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


def test_no_frames_after_protocol_error(echo):
    client = connect(echo)
    client.send(frame(0x3, b"") + frame(0x1, b"after the error") + frame(0x9, b"p"))
    next_frame_is_close(client, 1002)


# ---- fragmentation (section 5) ----


def fragments(opcode, parts):
    out = b""
    for i, part in enumerate(parts):
        out += frame(opcode if i == 0 else 0x0, part, fin=i == len(parts) - 1)
    return out


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


@pytest.mark.parametrize("opcode", [0x1, 0x2])
def test_all_fragments_empty(echo, opcode):
    client = connect(echo)
    client.send(fragments(opcode, [b"", b"", b""]))
    assert client.recv_message() == (opcode, b"")
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


def test_ping_between_fragments_answered_before_message_completes(echo):
    client = connect(echo)
    client.send(frame(0x1, b"first ", fin=False) + frame(0x9, b"in between"))
    # The pong arrives while the message is still incomplete.
    assert client.recv_frame() == (True, 0, 0xA, b"in between")
    client.send(frame(0xA, b"unsolicited") + frame(0x0, b"second ", fin=False) +
                frame(0x9, b"again") + frame(0x0, b"third"))
    assert client.recv_frame() == (True, 0, 0xA, b"again")
    assert client.recv_frame() == (True, 0, 0x1, b"first second third")
    client.close_handshake()


def test_close_between_fragments_closes_at_once(echo):
    client = connect(echo)
    client.send(frame(0x1, b"partial", fin=False) + frame(0x8, close_payload(1000)))
    next_frame_is_close(client, 1000)
    assert_echo_serves(echo)


def test_control_frames_between_fragments_with_frames_example(frames_example):
    server = frames_example
    client = connect(server)
    client.send(frame(0x1, b"Hello, ", fin=False) + frame(0x9, b"mid"))
    assert client.recv_frame() == (True, 0, 0xA, b"mid")
    server.expect("Ping frame received: Code 9")
    client.send(frame(0xA, b"") + frame(0x0, b"world"))
    server.expect("Pong frame received: Code 10", "Message received: Hello, world")
    client.send(frame(0x1, b"to be cut", fin=False) + frame(0x8, close_payload(1001, b"bye")))
    server.expect("Close frame received: Code 1001 Reason bye")
    next_frame_is_close(client, 1001)
    server.no_output(0.1)  # the partial message is never delivered


def test_ten_pings_in_one_send_all_answered_in_order(echo):
    client = connect(echo)
    client.send(b"".join(frame(0x9, f"ping {i}".encode()) for i in range(10)))
    for i in range(10):
        assert client.recv_frame() == (True, 0, 0xA, f"ping {i}".encode())
    client.close_handshake()


def test_large_message_then_close_then_ping(echo):
    """Autobahn 7.1.6: the echo is complete, then the close; the ping after it is not
    answered."""
    client = connect(echo)
    payload = text_of(256 * 1024)
    client.send(frame(0x1, payload) + frame(0x8, close_payload(1000)) + frame(0x9, b"late"))
    assert client.recv_message() == (0x1, payload)
    next_frame_is_close(client, 1000)


def test_64k_message_in_1300_byte_fragments(echo):
    """Autobahn 10.1.1."""
    client = connect(echo)
    for opcode, payload in ((0x1, text_of(65536)), (0x2, payload_of(65536))):
        parts = [payload[i:i + 1300] for i in range(0, len(payload), 1300)]
        client.send(fragments(opcode, parts))
        assert client.recv_message() == (opcode, payload)
    client.close_handshake()


def test_frames_behind_a_split_upgrade_request(echo):
    """The request head arrives in two pieces and frames follow the head in the second
    one: they are handled as soon as the upgrade completes."""
    client = echo.connect_raw()
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    client.send(request[:40])
    time.sleep(0.002)  # pacing only: let the server read the first piece by itself
    client.send(request[40:] + frame(0x1, b"early") + frame(0x2, payload_of(300)) +
                frame(0x9, b"p"))
    status, headers, _ = client.read_http_response()
    assert status == 101
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert client.recv_frame() == (True, 0, 0x1, b"early")
    assert client.recv_frame() == (True, 0, 0x2, payload_of(300))
    assert client.recv_frame() == (True, 0, 0xA, b"p")
    client.close_handshake()


# ---- RSV1 and permessage-deflate (RFC 7692): RSV1 is legal only once negotiated ----


def test_rsv1_fails_1002_when_compression_enabled_but_not_negotiated(start_server):
    server = start_server("echo", settings={"websocket_compression": "true"})
    client = server.connect_raw()
    _, headers, _ = client.handshake()  # no Sec-WebSocket-Extensions offered
    assert "sec-websocket-extensions" not in headers
    expect_failure(server, deflate_frame(0x1, b"Hello"), 1002, client=client)


def deflate_frame(opcode, data, fin=True, rsv=4):
    comp = zlib.compressobj(wbits=-15)
    body = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return frame(opcode, body[:-4], fin=fin, rsv=rsv)


def deflate_client(server):
    client = server.connect_raw()
    _, headers, _ = client.handshake(headers={
        "Sec-WebSocket-Extensions": "permessage-deflate; client_no_context_takeover"})
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
    return client


def test_compressed_message_echoed_compressed(start_server):
    server = start_server("echo", settings={"websocket_compression": "true"})
    client = deflate_client(server)
    inflater = zlib.decompressobj(wbits=-15)
    for text in (b"Hello, compressed world! " * 20, b"", b"again " * 100):
        client.send(deflate_frame(0x1, text))
        fin, rsv, opcode, payload = client.recv_frame()
        assert (fin, opcode) == (True, 0x1)
        if rsv == 4:
            payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
        assert payload == text
    client.close_handshake()


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_rsv1_on_control_frame_fails_1002_even_with_deflate(start_server, opcode):
    server = start_server("echo", settings={"websocket_compression": "true"})
    client = deflate_client(server)
    payload = close_payload(1000) if opcode == 0x8 else b"ctl"
    expect_failure(server, frame(opcode, payload, rsv=4), 1002, client=client)


def test_rsv1_on_continuation_fails_1002_even_with_deflate(start_server):
    server = start_server("echo", settings={"websocket_compression": "true"})
    client = deflate_client(server)
    client.send(frame(0x1, b"plain start", fin=False))
    expect_failure(server, frame(0x0, b"end", rsv=4), 1002, client=client)


@pytest.mark.parametrize("rsv", [2, 1, 6])
def test_rsv2_rsv3_fail_1002_even_with_deflate(start_server, rsv):
    server = start_server("echo", settings={"websocket_compression": "true"})
    client = deflate_client(server)
    expect_failure(server, deflate_frame(0x1, b"Hello", rsv=rsv), 1002, client=client)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_in_random_splits(echo, seed):
    """A seeded random mix of whole and fragmented text/binary messages with pings and
    unsolicited pongs between (and inside) them, sent as one byte stream cut at random
    points. Everything comes back in order and intact."""
    rng = random.Random(seed)
    stream, expected = [], []
    for n in range(120):
        opcode = rng.choice((0x1, 0x2))
        size = rng.choice((0, 1, 5, 125, 126, 127, 1000, 3000, 65535, 65536))
        if opcode == 0x1:
            payload = ("\u00e9\u20ac\U0001f600" * (size // 9 + 1)).encode()[:size]
            payload = payload.decode("utf-8", "ignore").encode()
        else:
            payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
            payload = payload[:size]
        cuts = sorted(rng.sample(range(len(payload) + 1), min(rng.randint(0, 4),
                                                               len(payload) + 1)))
        parts = [payload[a:b] for a, b in zip([0] + cuts, cuts + [len(payload)])]
        for i, part in enumerate(parts):
            stream.append(frame(opcode if i == 0 else 0x0, part, fin=i == len(parts) - 1,
                                length_form=rng.choice((None, None, 64))))
            if i == len(parts) - 1:
                expected.append((opcode, payload))  # the echo leaves once the last part is in
            if rng.random() < 0.2:
                ping = f"ping {n}.{i}".encode()
                stream.append(frame(0x9, ping))
                expected.append((0xA, ping))  # answered at once, even mid-message
            if rng.random() < 0.1:
                stream.append(frame(0xA, b"unsolicited"))
    data = b"".join(stream)
    client = connect(echo)
    pos = 0
    got = []

    def drain_ready():
        # Read what is already there so neither side blocks on full buffers.
        client.sock.setblocking(False)
        try:
            while True:
                chunk = client.sock.recv(1 << 20)
                if not chunk:
                    raise EOFError("server closed the connection")
                client.buf += chunk
        except BlockingIOError:
            pass
        finally:
            client.sock.settimeout(10)

    while pos < len(data):
        step = rng.choice((1, 2, 3, 7, 13, 100, 1000, 4096, 30000, 65536))
        client.send(data[pos:pos + step])
        pos += step
        drain_ready()
    for want in expected:
        got = client.recv_message()
        assert got[0] == want[0] and got[1] == want[1], (want[0], len(want[1]), got[0],
                                                           len(got[1]))
    client.close_handshake()


def test_control_frames_in_pieces_delivered_with_frames_example(frames_example):
    """Control frames that arrive in pieces are assembled before delivery (125-byte ping,
    close with a 123-byte reason), then answered."""
    server = frames_example
    client = connect(server)
    ping = frame(0x9, payload_of(125))
    for i in range(0, len(ping), 5):
        client.send(ping[i:i + 5])
    assert client.recv_frame() == (True, 0, 0xA, payload_of(125))
    server.expect("Ping frame received: Code 9")
    close = frame(0x8, close_payload(4000, b"R" * 123))
    for i in range(0, len(close), 7):
        client.send(close[i:i + 7])
    server.expect("Close frame received: Code 4000 Reason " + "R" * 123)
    next_frame_is_close(client, 4000)
