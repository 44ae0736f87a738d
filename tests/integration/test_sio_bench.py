# SPDX-License-Identifier: MIT
"""eddy-bench --sio, the load generator of bench/socketio/run, against the Socket.IO test
application: every mode completes its Socket.IO handshakes and measures without errors, so the
benchmark's numbers come from working sessions. Against Node's socket.io 4.8
(tests/clients/sio_reference.js), and against examples/socketio when it is built."""

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import threading

import pytest

from eddyserver import BUILD, ROOT
from sioserver import SIO_SERVERS, SioServer

BENCH_BUILD = os.path.join(BUILD, "bench")
EDDY_BENCH = os.path.join(BENCH_BUILD, "eddy-bench")


@pytest.fixture(scope="module")
def eddy_bench():
    """eddy-bench, built from this checkout (one file: a couple of seconds)."""
    subprocess.run(["make", "--no-print-directory", "-s", f"BENCH_BUILD={BENCH_BUILD}",
                    EDDY_BENCH], cwd=ROOT, check=True, timeout=120)
    return EDDY_BENCH


@pytest.fixture(params=SIO_SERVERS)
def sio_server(request):
    server = SioServer(request.param)
    yield server.port, server.proc.pid
    server.stop()


def run_bench(binary, *args):
    out = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON line (exit {out.returncode}): {out.stdout} {out.stderr}"
    return out.returncode, json.loads(lines[-1]), out.stderr


def test_sio_echo(eddy_bench, sio_server):
    port, pid = sio_server
    rc, result, err = run_bench(eddy_bench, "echo", "--sio", "-c", "10", "-d", "2", "-s", "20",
                                "-t", "0.5", "--warmup", "0.2", "--port", str(port),
                                "--server-pid", str(pid))
    assert rc == 0, err
    assert result["sio"] is True and result["open"] == 10
    assert result["errors"] == 0 and result["lost"] == 0
    # The first message-back of each connection is compared byte for byte.
    assert result["messages"] > 0 and result["verified"] >= 10
    assert result["server_us_per_msg"] > 0


@pytest.mark.parametrize("with_pid", [True, False], ids=["server-pid", "no-server-pid"])
def test_sio_broadcast(eddy_bench, sio_server, with_pid):
    port, pid = sio_server
    args = ["--server-pid", str(pid)] if with_pid else []
    rc, result, err = run_bench(eddy_bench, "publish", "--sio", "-c", "20", "-n", "50", "-s",
                                "24", "--inflight", "4", "-t", "10", "--port", str(port), *args)
    assert rc == 0, err
    # Every subscriber joined (with the ack) before the sender started: all 50 emits reach
    # all 20 of them, the 5 warm-up ones left out of the counts.
    assert result["subscribers"] == 20 and result["messages"] == 45
    assert result["deliveries"] == 45 * 20
    assert result["errors"] == 0
    # The steady window opens once, when the 5th emit has reached everyone: at most the 4 in
    # flight then (80 deliveries) were partly delivered before it (it used to reopen at every
    # turn of the loop without --server-pid, keeping only the last few deliveries).
    assert result["steady_deliveries"] >= 45 * 20 - 4 * 20
    assert result["client_busy"] > 0
    if with_pid:  # CPU time comes in 10 ms ticks: a fast server may show none here
        assert result["steady_server_us_per_delivery"] is not None


def test_sio_idle(eddy_bench, sio_server):
    port, pid = sio_server
    rc, result, err = run_bench(eddy_bench, "idle", "--sio", "-c", "50", "--hold", "0",
                                "--settle", "0.2", "--port", str(port), "--server-pid",
                                str(pid))
    assert rc == 0, err
    assert result["open"] == 50 and result["failed"] == 0
    assert result["bytes_per_conn"] is not None


@pytest.mark.parametrize("kind", SIO_SERVERS)
def test_sio_idle_answers_pings(eddy_bench, kind):
    """Server pings every 100 ms with 200 ms to answer: sockets that did not answer `2` with
    `3` would be closed by the server during the 1.5 s of settling and counted lost."""
    server = SioServer(kind, ("--ping-interval", "100", "--ping-timeout", "200"))
    try:
        rc, result, err = run_bench(eddy_bench, "idle", "--sio", "-c", "20", "--hold", "0",
                                    "--settle", "1.5", "--port", str(server.port))
    finally:
        server.stop()
    assert rc == 0, err
    assert result["open"] == 20


class FakeSioServer:
    """A scripted Socket.IO server on a free port, a thread per connection: after the
    upgrade it sends the Engine.IO open packet, then answers CONNECT with CONNECT_ERROR
    ("refuse", as a server whose middleware refuses), or with the CONNECT reply and the auth
    event, acks every join and never delivers what is emitted to the room ("mute")."""

    OPEN = (b'0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,'
            b'"maxPayload":1000000}')

    def __init__(self, mode):
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, data = data.split(b"\r\n\r\n", 1)
            key = re.search(rb"Sec-WebSocket-Key: *([^\r]+)", head, re.I).group(1)
            accept = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                         b"\r\n\r\n")

            def text(payload):
                conn.sendall(bytes([0x81, len(payload)]) + payload)

            text(self.OPEN)
            while True:
                # The client's frames: masked, short (under 126 bytes) in these tests.
                while len(data) < 2 or len(data) < 6 + (data[1] & 0x7f):
                    more = conn.recv(4096)
                    if not more:
                        return
                    data += more
                n = data[1] & 0x7f
                mask, body = data[2:6], data[6:6 + n]
                data = data[6 + n:]
                packet = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
                if packet == b"40" and self.mode == "refuse":
                    text(b'44{"message":"refused"}')
                elif packet == b"40":
                    text(b'40{"sid":"def"}')
                    text(b'42["auth",{}]')
                elif packet.startswith(b'420["join"'):  # id 0: an ack is wanted
                    text(b"430[\"joined\"]")

    def stop(self):
        self.listener.close()


def test_sio_refused_connect_is_not_open(eddy_bench):
    """A CONNECT answered with CONNECT_ERROR fails the connection: the run reports it failed
    and exits non-zero instead of counting a socket that never joined the namespace."""
    server = FakeSioServer("refuse")
    try:
        rc, result, err = run_bench(eddy_bench, "idle", "--sio", "-c", "1", "--hold", "0",
                                    "--setup-timeout", "5", "--port", str(server.port))
    finally:
        server.stop()
    assert rc != 0
    assert result["open"] == 0 and result["failed"] == 1
    assert "CONNECT_ERROR" in err


def test_sio_broadcast_that_never_arrives(eddy_bench):
    """Nothing emitted to the room arrives: the run gives up after --stall seconds with an
    error and reports no message, not a negative count (it printed "-3 messages" and a
    negative rate when fewer than the warm-up messages completed)."""
    server = FakeSioServer("mute")
    try:
        rc, result, err = run_bench(eddy_bench, "publish", "--sio", "-c", "5", "-n", "50", "-s",
                                    "20", "--inflight", "4", "--publish-warmup", "3",
                                    "--stall", "0.5", "-t", "10", "--port", str(server.port))
    finally:
        server.stop()
    assert rc != 0
    assert "no message completed for" in err
    assert result["errors"] == 1 and result["messages"] == 0
    assert result["deliveries"] == 0 and result["steady_seconds"] is None
