# SPDX-License-Identifier: MIT
"""Pub/sub rooms and broadcast across loops: subscribe, unsubscribe, publish from loops
and from an application thread, subscriber counts, cleanup on close, order per publisher,
compressed fan-out, and the error cases."""

import asyncio
import random
import resource
import socket
import string
import struct
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from testbed import cmd, open_ws, start_testbed
from wsraw import frame

ENOTFOUND, ESTATE, ETOOBIG = -3003, -3004, -3005


def test_publish_reaches_subscribers_on_every_loop(start_server):
    server = start_testbed(start_server, workers=2)
    ctl, _ = open_ws(server)
    subs = [open_ws(server) for _ in range(4)]
    other, other_fd = open_ws(server)
    loops = {int(cmd(server, ctl, f"loop {fd}")) for _, fd in subs}
    assert loops == {0, 1}
    for _, fd in subs:
        assert cmd(server, ctl, f"sub {fd} room") == "0"
    assert cmd(server, ctl, f"sub {subs[0][1]} room") == "0"  # twice is once
    # A subscribe from another loop counts at once and is settled by the owning loop (the
    # duplicate gives its count back): wait until every loop has applied them.
    for client, fd in subs:
        cmd(server, ctl, f"push {fd} 1 1 sync")
        assert client.recv_message() == (0x1, b"sync")
    assert cmd(server, ctl, "subs room") == "4"
    assert cmd(server, ctl, "pub room hello all") == "4"
    for client, _ in subs:
        assert client.recv_message() == (0x1, b"hello all")
    # Not a subscriber: nothing for it (its next message is the echo of a later send).
    other.send_frame(0x1, b"ping-through")
    assert other.recv_message() == (0x1, b"ping-through")
    server.expect(f"message {other_fd} 1 33 12 ping-through")
    assert cmd(server, ctl, "pub nobody x") == "0"


def test_unsubscribe_and_close_end_subscriptions(start_server):
    server = start_testbed(start_server, workers=2)
    ctl, _ = open_ws(server)
    (a, fd_a), (b, fd_b) = open_ws(server), open_ws(server)
    cmd(server, ctl, f"sub {fd_a} t")
    cmd(server, ctl, f"sub {fd_b} t")
    assert cmd(server, ctl, f"unsub {fd_a} t") == "0"
    assert cmd(server, ctl, f"unsub {fd_a} t") == "0"  # no longer subscribed: still fine
    # a lives on the other loop: once a push posted after the unsubscribes has arrived,
    # they have been applied there.
    cmd(server, ctl, f"push {fd_a} 1 1 sync")
    assert a.recv_message() == (0x1, b"sync")
    assert cmd(server, ctl, "subs t") == "1"
    assert cmd(server, ctl, "pub t one") == "1"
    assert b.recv_message() == (0x1, b"one")
    b.close_handshake()
    server.expect(f"close {fd_b} 3")
    assert cmd(server, ctl, "subs t") == "0"
    assert cmd(server, ctl, "pub t two") == "0"
    a.send_frame(0x1, b"still here")
    assert a.recv_message() == (0x1, b"still here")
    server.expect(f"message {fd_a} 1 33 10 still here")


def test_subscribe_errors(start_server):
    server = start_testbed(start_server, "--request", workers=2)
    ctl, _ = open_ws(server)
    http = server.connect_raw()
    http.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    http.read_http_response()
    http_fd = int(server.line().split()[1])
    server.line()  # request
    assert cmd(server, ctl, f"sub {http_fd} room") == str(ESTATE)
    assert cmd(server, ctl, "sub 999 room") == str(ENOTFOUND)
    sub, fd = open_ws(server)
    cmd(server, ctl, f"sub {fd} big")
    limit = 2 * 1024 * 1024
    assert cmd(server, ctl, f"pubsize big {limit + 1}") == str(ETOOBIG)
    assert cmd(server, ctl, f"pubsize big {limit}") == "1"
    assert sub.recv_message() == (0x2, b"p" * limit)


def test_messages_of_one_publisher_arrive_in_order(start_server):
    server = start_testbed(start_server, workers=2)
    ctl, _ = open_ws(server)
    subs = [open_ws(server) for _ in range(3)]
    for _, fd in subs:
        cmd(server, ctl, f"sub {fd} seq")
    # An application thread publishes; the loops deliver.
    assert cmd(server, ctl, "thread pub seq 500 m") == "0"
    for client, _ in subs:
        for i in range(500):
            assert client.recv_message() == (0x1, f"m {i}".encode())
    server.expect("thread done")


def test_own_output_of_one_read_keeps_its_order_with_publications(start_server):
    # Three commands in one read, all writing to the connection being read: a push (into
    # the loop's cork), a publication it subscribes to (a shared frame: the cork moves to
    # the output queue first) and another push (behind it in the queue).
    server = start_testbed(start_server)
    ctl, fd = open_ws(server)
    assert cmd(server, ctl, f"sub {fd} mine") == "0"
    ctl.send(b"".join(frame(0x1, text.encode()) for text in
                      (f"!push {fd} 1 1 first", "!pub mine second", f"!push {fd} 1 1 third")))
    server.expect("= 0", "= 1", "= 0")
    for text in (b"first", b"second", b"third"):
        assert ctl.recv_message() == (0x1, text)


def test_fan_out_written_in_pieces_arrives_whole_and_in_order(start_server):
    # 200 shared frames of 30 000 bytes queued at once to one subscriber (6 MB, more than
    # the socket takes): they leave over many partial writes, which end inside frames and
    # between them; a message pushed after them follows them.
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    sub, fd = open_ws(server)
    assert cmd(server, ctl, f"sub {fd} big") == "0"
    assert cmd(server, ctl, "pubmany big 200 30000") == "1"
    assert cmd(server, ctl, f"push {fd} 1 1 after") == "0"
    for i in range(200):
        assert sub.recv_message() == (0x2, bytes([i % 256]) * 30000), f"message {i}"
    assert sub.recv_message() == (0x1, b"after")


def test_subscriber_reset_while_queued_behind_a_long_fan_out(start_server):
    # A publication to 3000 subscribers queues them all for writing, which goes 256
    # connections per flush, a few flushes per loop iteration. The last subscriber resets
    # its connection at once: the loop reads the reset while that subscriber is still
    # queued far down the list, and closes it. Its memory must outlive its place in the
    # list (AddressSanitizer would see a use after free); everyone else gets the message.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 6100:
        pytest.skip(f"needs 6100 file descriptors per process, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < 6100:
        # This process and the server (which inherits the limit) hold 3000 sockets each.
        resource.setrlimit(resource.RLIMIT_NOFILE, (6100, hard))
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    subs = [open_ws(server) for _ in range(3000)]
    for _, fd in subs:
        assert cmd(server, ctl, f"sub {fd} all") == "0"
    victim, victim_fd = subs.pop()
    victim.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ctl.send_frame(0x1, b"!pub all hello")
    victim.sock.close()  # a reset, right behind the publication
    assert server.line() == "= 3000"
    server.expect(f"close {victim_fd} 3")
    for client, _ in subs:
        assert client.recv_message() == (0x1, b"hello")
    ctl.send_frame(0x1, b"still serving")
    assert ctl.recv_message() == (0x1, b"still serving")


def test_broadcast_reaches_established_websockets_only(start_server):
    server = start_testbed(start_server, "--request", workers=2)
    ctl, _ = open_ws(server)
    clients = [open_ws(server) for _ in range(3)]
    http = server.connect_raw()
    http.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    http.read_http_response()
    server.line(), server.line()
    assert cmd(server, ctl, "bcast to everyone") == "0"
    for client, _ in [(ctl, 0)] + clients:
        assert client.recv_message() == (0x1, b"to everyone")
    http.send(b"GET /y HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = http.read_http_response()
    assert (status, body) == (200, b"ok /y")  # nothing else arrived before the answer


def inflate_message(payload, decompressor):
    """Inflates 64 bytes at a time: a match farther back than the decompressor's window
    then fails ("invalid distance too far back"), as in a client that inflates into a
    small buffer (zlib checks distances against what the window holds, not the bits)."""
    out, data = b"", payload + b"\x00\x00\xff\xff"
    while data:
        out += decompressor.decompress(data, 64)
        data = decompressor.unconsumed_tail
    return out


def test_compressed_fan_out(start_server):
    """Subscribers without server context takeover get one shared compressed frame each;
    those whose compression keeps context get the plain frame. The window is fitted to
    the message but never exceeds what a subscriber allowed."""
    server = start_testbed(start_server, workers=2, settings={"websocket_compression": "true"})
    ctl, _ = open_ws(server)
    fresh, fd_fresh = open_ws(server, headers={
        "Sec-WebSocket-Extensions": "permessage-deflate; server_no_context_takeover"})
    narrow, fd_narrow = open_ws(server, headers={
        "Sec-WebSocket-Extensions":
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"})
    keeping, fd_keeping = open_ws(server, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    plain, fd_plain = open_ws(server)
    for fd in (fd_fresh, fd_narrow, fd_keeping, fd_plain):
        cmd(server, ctl, f"sub {fd} news")
    # 1.6 KB, ending with its first 200 bytes: a match 1,440 bytes back, farther than a
    # 10-bit window reaches.
    rnd = random.Random(7)
    head = "".join(rnd.choice(string.ascii_letters) for _ in range(200))
    text = head + "the same words again and again " * 40 + head
    for _ in range(2):
        assert cmd(server, ctl, f"pubz news {text}") == "4"
        for client, bits in ((fresh, 15), (narrow, 10)):
            fin, rsv, opcode, payload = client.recv_frame()
            assert (fin, rsv, opcode) == (True, 4, 0x1) and len(payload) < len(text)
            # No context: every message inflates on its own, within the agreed window.
            assert inflate_message(payload, zlib.decompressobj(-bits)) == text.encode()
        for client in (keeping, plain):
            assert client.recv_frame() == (True, 0, 0x1, text.encode())


def test_python_clients_subscribe_and_receive(start_server):
    """Real clients, compressed or not, as subscribers of a room fed by publish."""
    server = start_testbed(start_server, workers=2, settings={
        "websocket_compression": "true",
        "websocket_compression_server_no_context_takeover": "true"})
    ctl, _ = open_ws(server)

    async def run():
        factory = ClientPerMessageDeflateFactory(server_no_context_takeover=True)
        clients = [await websockets.connect(server.url, extensions=[factory]),
                   await websockets.connect(server.url, compression=None)]
        fds = []
        for _ in clients:
            fds.append(int(server.line().split()[1]))
            server.line()
        for fd in fds:
            cmd(server, ctl, f"sub {fd} live")
        for i in range(20):
            assert cmd(server, ctl, f"pubz live update {i} " + "x" * 200) == "2"
        for ws in clients:
            for i in range(20):
                assert await ws.recv() == f"update {i} " + "x" * 200
            await ws.close()

    asyncio.run(run())


# ---- fragmented pushes are one unit (RFC 6455 5.4) ----


def test_publication_waits_for_the_fragmented_message_being_pushed(start_server):
    """A publication (and a whole pushed message) that comes while the application is
    pushing a fragmented message waits until its last fragment went out; a ping may come
    between the fragments. Before eddy tracked the message, the publication landed between
    the fragments, which a client must fail with 1002."""
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    client, fd = open_ws(server)
    assert cmd(server, ctl, f"sub {fd} room") == "0"
    assert cmd(server, ctl, f"push {fd} 1 0 first") == "0"  # text, no FIN
    assert client.recv_frame() == (False, 0, 0x1, b"first")
    assert cmd(server, ctl, "pub room news") == "1"
    assert cmd(server, ctl, f"push {fd} 2 1 whole") == "0"  # binary, FIN: waits too
    assert cmd(server, ctl, f"push {fd} 9 1 ping") == "0"  # control frames do not wait
    assert cmd(server, ctl, f"push {fd} 0 0 -middle") == "0"
    assert cmd(server, ctl, f"push {fd} 0 1 -last") == "0"
    assert client.recv_frame() == (True, 0, 0x9, b"ping")
    assert client.recv_frame() == (False, 0, 0x0, b"-middle")
    assert client.recv_frame() == (True, 0, 0x0, b"-last")
    assert client.recv_frame() == (True, 0, 0x1, b"news")
    assert client.recv_frame() == (True, 0, 0x2, b"whole")
    # The message is over: a publication goes out at once again.
    assert cmd(server, ctl, "pub room after") == "1"
    assert client.recv_frame() == (True, 0, 0x1, b"after")


def test_fragmented_push_to_the_connection_being_read(start_server):
    """The same when the fragments go to the connection whose message is being handled
    (its output collects in the loop's cork first): the publication still follows the
    last fragment."""
    server = start_testbed(start_server)
    client, fd = open_ws(server)
    assert cmd(server, client, f"sub {fd} room") == "0"
    assert cmd(server, client, f"push {fd} 2 0 one") == "0"
    assert cmd(server, client, "pub room news") == "1"
    assert cmd(server, client, f"push {fd} 0 1 -two") == "0"
    assert client.recv_frame() == (False, 0, 0x2, b"one")
    assert client.recv_frame() == (True, 0, 0x0, b"-two")
    assert client.recv_frame() == (True, 0, 0x1, b"news")


def test_fragment_pushes_out_of_turn_are_refused(start_server):
    """A continuation with no fragmented message begun, and a second fragmented message
    begun before the first ended, are refused with EDDY_ESTATE (and logged)."""
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    client, fd = open_ws(server)
    assert cmd(server, ctl, f"push {fd} 0 1 stray") == str(ESTATE)
    assert cmd(server, ctl, f"push {fd} 1 0 one") == "0"
    assert cmd(server, ctl, f"push {fd} 2 0 two") == str(ESTATE)
    assert cmd(server, ctl, f"push {fd} 0 1 -done") == "0"
    assert client.recv_message() == (0x1, b"one-done")
    client.send_frame(0x1, b"still fine")
    assert client.recv_message() == (0x1, b"still fine")


def test_python_client_gets_fragmented_push_then_publication(start_server):
    """The same with a real client (python websockets), publications from another loop."""
    server = start_testbed(start_server, workers=2)
    ctl, _ = open_ws(server)

    async def run():
        async with websockets.connect(server.url) as ws:
            fd = int(server.line().split()[1])
            server.expect(f"open {fd} / -")
            assert cmd(server, ctl, f"sub {fd} room") == "0"
            # A push posted after the subscribe: once it arrived, the subscription holds.
            assert cmd(server, ctl, f"push {fd} 1 1 sync") in ("0", "")
            assert await ws.recv() == "sync"
            assert cmd(server, ctl, f"push {fd} 1 0 part-one") == "0"
            assert cmd(server, ctl, "pub room news") == "1"
            assert cmd(server, ctl, f"push {fd} 0 1 -part-two") == "0"
            assert await asyncio.wait_for(ws.recv(), 5) == "part-one-part-two"
            assert await asyncio.wait_for(ws.recv(), 5) == "news"

    asyncio.run(run())


def test_compressed_fan_out_across_loops(start_server):
    """Many compressed subscribers on four loops, with three window sizes: each gets every
    publication, compressed for its window, intact and in order. The loops compress each
    (publication, window) once with no lock, racing to publish the frame; this is the test
    to run under SANITIZE=thread."""
    server = start_testbed(start_server, workers=4, settings={"websocket_compression": "true"})
    ctl, _ = open_ws(server)
    subs = []
    for i in range(24):
        bits = (15, 12, 9)[i % 3]
        subs.append(open_ws(server, headers={
            "Sec-WebSocket-Extensions":
                f"permessage-deflate; server_no_context_takeover; server_max_window_bits={bits}"}))
    loops = {int(cmd(server, ctl, f"loop {fd}")) for _, fd in subs}
    assert loops == {0, 1, 2, 3}
    for client, fd in subs:
        assert cmd(server, ctl, f"sub {fd} wide") == "0"
    for client, fd in subs:  # once this push arrived, the subscription is applied
        cmd(server, ctl, f"push {fd} 1 1 sync")
        assert client.recv_message() == (0x1, b"sync")
    texts = [f"message {n} " + "compressible words " * (20 + n) for n in range(12)]
    for text in texts:
        assert cmd(server, ctl, f"pubz wide {text}") == str(len(subs))
    for client, _ in subs:
        for text in texts:
            fin, rsv, opcode, payload = client.recv_frame()
            assert (fin, rsv, opcode) == (True, 4, 0x1) and len(payload) < len(text)
            assert inflate_message(payload, zlib.decompressobj(-15)) == text.encode()
