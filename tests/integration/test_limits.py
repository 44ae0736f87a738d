# SPDX-License-Identifier: MIT
"""Limits and robustness beyond the protocol: the heartbeat, max_connection, a client that
stops reading, many concurrent clients, and garbage input. Autobahn section 9 and
package_max_length are in tests/conformance/test_s09_limits.py."""

import asyncio
import os
import random
import resource
import select
import socket
import struct
import time

import websockets

from eddyserver import TIMEOUT, assert_echo_serves
from ws_cases import connect, frame, next_frame_is_close, skip_until


# ---- heartbeat ----


def test_heartbeat_closes_idle_websocket_keeps_active_one(start_server):
    server = start_server("testbed", settings={"heartbeat_check_interval": "1",
                                               "heartbeat_idle_time": "1"})
    server.expect("start")
    # Taken before the upgrade request leaves: the server cannot have heard from the idle
    # client earlier, so the silence it measures is at least what is measured from here,
    # however slow the handshake (the bound does not depend on scheduling).
    idle_since = time.monotonic()
    idle = connect(server)
    server.expect("connect 1", "open 1 / -")
    active = connect(server)
    server.expect("connect 2", "open 2 / -")
    idle_close = None
    deadline = time.monotonic() + 2.8
    i = 0
    while time.monotonic() < deadline:
        # The active client talks every 300 ms (pacing is the point of this test); the
        # wait in between watches the idle client, so its close is seen when it comes.
        active.send(frame(0x1, f"tick {i}".encode()))
        assert active.recv_message() == (0x1, f"tick {i}".encode())
        i += 1
        watched = [idle.sock] if idle_close is None else []
        if select.select(watched, [], [], 0.3)[0]:
            # Not before heartbeat_idle_time (1 s) of silence: the server's clock counts
            # whole milliseconds, hence the 2 ms.
            assert time.monotonic() - idle_since >= 0.998
            idle_close = next_frame_is_close(idle, 1000, reason="idle timeout")
    if idle_close is None:
        next_frame_is_close(idle, 1000, reason="idle timeout")
    # The idle one got "close 1 3"; the active one is still there.
    lines = [server.line() for _ in range(i + 1)]
    assert "close 1 3" in lines, lines
    active.send(frame(0x1, b"!exist 2"))
    assert server.line() == "= true"
    active.close_handshake()
    server.expect("close 2 3")


def test_heartbeat_closes_idle_http_connection(start_server):
    server = start_server("echo", settings={"heartbeat_check_interval": "1",
                                            "heartbeat_idle_time": "1"})
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    started = time.monotonic()
    assert sock.recv(100) == b""  # closed silently, without a response
    assert time.monotonic() - started < 5
    sock.close()
    assert_echo_serves(server)


def test_heartbeat_takes_fractional_seconds(start_server):
    """heartbeat_check_interval 0.2 s, heartbeat_idle_time 0.5 s: an idle connection is
    closed after 0.5 s of silence and within 0.5 + 0.2 s (plus scheduling slack)."""
    server = start_server("echo", settings={"heartbeat_check_interval": "0.2",
                                            "heartbeat_idle_time": "0.5"})
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    started = time.monotonic()
    assert sock.recv(100) == b""
    waited = time.monotonic() - started
    assert 0.45 <= waited < 1.5, waited
    sock.close()
    server.wait_log(r"\tINFO\tsession#1: idle for 0\.5 s, closed by heartbeat")


def test_heartbeat_idle_time_alone_checks_nothing(start_server):
    """As Swoole: without heartbeat_check_interval there is no check (heartbeat_idle_time
    alone used to start one every idle/2 s), and the log says so at start."""
    server = start_server("testbed", settings={"heartbeat_idle_time": "0.4"})
    server.wait_log(r"\tINFO\theartbeat_idle_time is set without heartbeat_check_interval")
    server.expect("start")
    client = connect(server)
    server.expect("connect 1", "open 1 / -")
    # Three idle times of silence: a check would have closed it.
    time.sleep(1.2)
    client.send(frame(0x1, b"!exist 1"))
    assert server.line() == "= true"
    client.close_handshake()
    server.expect("close 1 3")


def test_heartbeat_interval_longer_than_idle_time_is_halved(start_server):
    """As Swoole: interval 5 s with idle time 0.4 s checks every 0.2 s (with a warning)."""
    server = start_server("echo", settings={"heartbeat_check_interval": "5",
                                            "heartbeat_idle_time": "0.4"})
    server.wait_log(r"\tWARNING\theartbeat_check_interval 5 s is longer than "
                    r"heartbeat_idle_time 0\.4 s: checking every 0\.2 s")
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    started = time.monotonic()
    assert sock.recv(100) == b""
    assert time.monotonic() - started < 2
    sock.close()


# ---- max_connection ----


def test_max_connection_refuses_extra_connections(start_server):
    server = start_server("testbed", settings={"max_connection": "2"})
    server.expect("start")
    first = connect(server)
    second = connect(server)
    server.expect("connect 1", "open 1 / -", "connect 2", "open 2 / -")
    third = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    try:
        data = third.recv(100)
    except ConnectionResetError:
        data = b""
    assert data == b"", data
    third.close()
    server.wait_log(r"\tWARNING\t.*too many connections")
    # The two admitted connections are unaffected.
    for n, client in ((1, first), (2, second)):
        client.send(frame(0x1, b"ok"))
        assert client.recv_message() == (0x1, b"ok")
        assert server.line().startswith(f"message {n} 1 ")
    first.close_handshake()
    server.expect("close 1 3")
    # A slot is free again.
    assert_echo_serves(server)


def test_out_of_descriptors_sheds_backlog_then_serves_again(start_server):
    # Regression: out of descriptors, accepting only paused and retried, so the clients
    # beyond the limit waited in the backlog with no answer. Now they are accepted on the
    # spare descriptor and closed at once, and new clients are served once descriptors
    # are free again.
    server = start_server("testbed")
    server.expect("start")
    pid = server.proc.pid
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 2, hard))
    admitted = [socket.create_connection((server.host, server.port), timeout=TIMEOUT)
                for _ in range(2)]
    server.expect("connect 1", "connect 2")
    extra = [socket.create_connection((server.host, server.port), timeout=TIMEOUT)
             for _ in range(3)]
    for client in extra:
        try:
            data = client.recv(100)  # times out (fails) if the connection hangs
        except ConnectionResetError:
            data = b""
        assert data == b"", data
        client.close()
    server.wait_log(r"\tWARNING\t.*accept: Too many open files; closed \d+ pending")
    for client in admitted:
        client.close()
    server.expect_set("close 1 0", "close 2 0")
    assert_echo_serves(server)


# ---- back-pressure ----


def test_client_that_stops_reading_does_not_stall_others(start_server):
    # A buffer large enough for all of it: slow-consumer policies are test_backpressure's.
    server = start_server("testbed", settings={"package_max_length": "8000000",
                                               "socket_buffer_size": "64000000"})
    server.expect("start")
    stalled = connect(server)
    server.expect("connect 1", "open 1 / -")
    other = connect(server)
    server.expect("connect 2", "open 2 / -")
    for _ in range(4):
        other.send(frame(0x1, b"!pushsize 1 5000000"))
        server.expect("= 0")
    # The server holds ~20 MB for the stalled client and still serves everyone else.
    for i in range(20):
        other.send(frame(0x2, bytes([i]) * 1000))
        assert other.recv_message() == (0x2, bytes([i]) * 1000)
    third = connect(server)
    third.send(frame(0x1, b"third"))
    assert third.recv_message() == (0x1, b"third")
    third.close_handshake()
    # Once the stalled client reads, its data is intact.
    opcode, payload = stalled.recv_message()
    assert opcode == 0x2 and len(payload) == 5000000 and payload == b"x" * 5000000
    # Going away with ~15 MB still queued for it harms nobody.
    stalled.close()
    skip_until(server, "close 1 3")
    other.send(frame(0x1, b"!exist 1"))
    server.expect("= false")
    other.close_handshake()
    assert_echo_serves(server)


# ---- many clients ----


def test_200_concurrent_clients_echo(start_server):
    server = start_server("echo")

    connected = 0
    all_connected = asyncio.Event()

    async def one(n):
        nonlocal connected
        async with websockets.connect(server.url, max_queue=None) as ws:
            connected += 1
            if connected == 200:
                all_connected.set()
            await all_connected.wait()  # all 200 are open at the same time
            for i in range(20):
                msg = f"client {n} message {i} " + "x" * (n % 50)
                await ws.send(msg if i % 2 else msg.encode())
                assert await ws.recv() == (msg if i % 2 else msg.encode())

    async def run():
        await asyncio.gather(*(one(n) for n in range(200)))

    asyncio.run(asyncio.wait_for(run(), 30))
    assert_echo_serves(server)


# ---- garbage ----


def test_garbage_instead_of_handshake(start_server):
    server = start_server("echo")
    rng = random.Random(6455)
    for _ in range(40):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))
        with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
    assert_echo_serves(server)


def test_garbage_after_handshake(start_server):
    server = start_server("echo")
    rng = random.Random(1007)
    codes = set()
    for n in range(60):
        client = connect(server)
        size = rng.randint(1, 3000)
        data = bytes(rng.getrandbits(8) for _ in range(size))
        if n % 2:
            # Frame-shaped garbage: a masked header with a random opcode, RSV and length
            # byte gets past the first checks more often than pure noise.
            data = bytes([rng.getrandbits(8), 0x80 | rng.getrandbits(7)]) + data
        try:
            client.send(data)
            client.sock.shutdown(socket.SHUT_WR)
            while True:
                fin, rsv, opcode, payload = client.recv_frame()
                if opcode == 0x8:
                    if len(payload) >= 2:
                        codes.add(struct.unpack("!H", payload[:2])[0])
                    client.expect_eof()
                    break
                assert opcode in (0x1, 0x2, 0xA), opcode  # echoes, pongs
        except (EOFError, ConnectionResetError, BrokenPipeError):
            pass
        client.close()
    assert codes, "no garbage was ever refused with a close frame"
    assert codes <= {1000, 1002, 1007, 1009}, codes
    assert_echo_serves(server)


def test_handshake_and_frames_in_one_send(start_server):
    """Frames pipelined behind the upgrade request are handled as soon as it completes."""
    server = start_server("echo")
    client = server.connect_raw()
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
               "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    client.send(request + frame(0x1, b"early") + frame(0x9, b"p"))
    status, headers, _ = client.read_http_response()
    assert status == 101
    assert client.recv_frame() == (True, 0, 0x1, b"early")
    assert client.recv_frame() == (True, 0, 0xA, b"p")
    client.close_handshake()
