# SPDX-License-Identifier: MIT
"""eddy's WebSocket client (eddy_client_t), driven through the eddy-ws command-line client,
against eddy's own server (examples), python-websockets (tests/support/ws_peer.py), Node's
`ws` (tests/clients/ws_server.js) and a raw server that sends exact bytes (the client-side
conformance cases)."""

import base64
import hashlib
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from eddyserver import BUILD, ROOT, TIMEOUT, free_port

EDDY_WS = os.path.join(BUILD, "eddy-ws")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
NODE_MODULES = os.path.join(ROOT, "tests", "clients", "node_modules", "ws")


def run_ws(*args, stdin="", timeout=TIMEOUT):
    """Runs eddy-ws to completion: (exit status, stdout lines, stderr)."""
    proc = subprocess.run([EDDY_WS, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout * 2)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


class Lines:
    """A process whose stdout and stderr lines are pumped into queues."""

    def __init__(self, cmd, stdin=None):
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.out, self.err = queue.Queue(), queue.Queue()
        self.err_seen = []
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line.rstrip("\n"))

    def line(self, timeout=TIMEOUT):
        try:
            return self.out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no output line in time") from None

    def wait_err(self, pattern, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.err.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"no stderr line matching {pattern!r}; seen "
                                     f"{self.err_seen!r}") from None
            self.err_seen.append(line)
            if re.search(pattern, line):
                return line

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Peer(Lines):
    """A third-party server (python-websockets or Node ws) printing "listening PORT"."""

    def __init__(self, cmd):
        super().__init__(cmd)
        match = re.match(r"listening (\d+)", self.line())
        assert match, "the peer did not start"
        self.port = int(match.group(1))


@pytest.fixture
def peers():
    started = []

    def start(kind, *args):
        if kind == "python":
            cmd = [PYTHON, os.path.join(ROOT, "tests", "support", "ws_peer.py"), *args]
        else:
            if not os.path.isdir(NODE_MODULES):
                pytest.skip("tests/clients/node_modules/ws is not installed")
            cmd = ["node", os.path.join(ROOT, "tests", "clients", "ws_server.js"), *args]
        peer = Peer(cmd)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        if peer.proc.poll() is None:
            os.kill(peer.proc.pid, signal.SIGCONT)
        peer.stop(signal.SIGKILL)


# ---- against eddy's own server ----


def test_echo_with_eddy_server(start_server):
    server = start_server("echo")
    rc, out, err = run_ws("-w", "0.5", server.url + "/chat?room=1", stdin="hello\nwörld\n")
    assert rc == 0, err
    assert out == ["hello", "wörld"]
    assert "closed: 1000" in err


def test_eddy_ws_is_a_subcommand_of_the_eddy_program(start_server):
    """`eddy ws` is the same client as eddy-ws (a link to the eddy program)."""
    assert os.path.realpath(EDDY_WS) == os.path.realpath(os.path.join(BUILD, "eddy"))
    server = start_server("echo")
    proc = subprocess.run([os.path.join(BUILD, "eddy"), "ws", "-w", "0.5", server.url + "/"],
                          input="via the subcommand\n", capture_output=True, text=True,
                          timeout=TIMEOUT * 2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["via the subcommand"]
    assert "closed: 1000" in proc.stderr
    usage = subprocess.run([os.path.join(BUILD, "eddy"), "--help"], capture_output=True,
                           text=True, timeout=TIMEOUT)
    assert "  ws [options] URL" in usage.stdout


def test_compression_both_ways_with_eddy_server(start_server):
    server = start_server("echo", settings={"websocket_compression": "true",
                                            "websocket_compression_threshold": "1"})
    text = "compressible " * 200
    rc, out, err = run_ws("-c", "-w", "0.5", server.url, stdin=text + "\n")
    assert rc == 0, err
    assert "connected (compressed)" in err
    assert out == [text]


def test_binary_messages(start_server):
    server = start_server("echo")
    rc, out, err = run_ws("-b", "-x", "-w", "0.5", server.url, stdin="AB\n")
    assert rc == 0, err
    assert out == ["4142"]


def test_tls_verification(start_server, tls_cert):
    cert, key = tls_cert
    server = start_server("echo", "--tls-port", "0",
                          settings={"ssl_cert_file": cert, "ssl_key_file": key})
    url = f"wss://localhost:{server.tls_port}/"
    rc, out, err = run_ws("--ca", cert, "-w", "0.5", url, stdin="secure\n")
    assert rc == 0, err
    assert out == ["secure"]
    # By address: the certificate names 127.0.0.1 too.
    rc, out, err = run_ws("--ca", cert, "-w", "0.5", f"wss://127.0.0.1:{server.tls_port}/",
                          stdin="by ip\n")
    assert rc == 0, err
    assert out == ["by ip"]
    # The system store does not know this self-signed certificate.
    rc, out, err = run_ws("-w", "0.5", url, stdin="x\n")
    assert rc == 1
    assert "certificate verification failed" in err
    assert out == []
    rc, out, err = run_ws("-k", "-w", "0.5", url, stdin="insecure\n")
    assert rc == 0, err
    assert out == ["insecure"]


# ---- against python-websockets and Node ws ----


def test_tls_name_mismatch_with_python_websockets(peers, tmp_path):
    """A certificate trusted (--ca) but for another name fails verification."""
    cert, key = str(tmp_path / "other.pem"), str(tmp_path / "other.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=other.example", "-addext",
                    "subjectAltName=DNS:other.example,IP:127.0.0.2"],
                   check=True, capture_output=True)
    peer = peers("python", "--cert", cert, "--key", key)
    rc, out, err = run_ws("--ca", cert, "-w", "0.5", f"wss://127.0.0.1:{peer.port}/",
                          stdin="x\n")
    assert rc == 1
    assert "certificate verification failed" in err and "mismatch" in err
    rc, out, err = run_ws("-k", "-w", "0.5", f"wss://127.0.0.1:{peer.port}/", stdin="tls\n")
    assert rc == 0, err
    assert out == ["tls"]


def make_cert(directory, name, san):
    cert, key = str(directory / f"{name}.pem"), str(directory / f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", f"/CN={name}", "-addext",
                    f"subjectAltName={san}"], check=True, capture_output=True)
    return cert, key


def test_tls_client_certificate_with_python_websockets(peers, tmp_path):
    server_cert, server_key = make_cert(tmp_path, "localhost", "DNS:localhost,IP:127.0.0.1")
    client_cert, client_key = make_cert(tmp_path, "client", "DNS:client.example")
    peer = peers("python", "--cert", server_cert, "--key", server_key, "--client-ca",
                 client_cert)
    url = f"wss://localhost:{peer.port}/"
    rc, out, err = run_ws("--ca", server_cert, "--cert", client_cert, "--key", client_key,
                          "-w", "0.5", url, stdin="mutual\n")
    assert rc == 0, err
    assert out == ["mutual"]
    # Without one the server refuses the handshake.
    rc, out, err = run_ws("--ca", server_cert, "-w", "0.5", url, stdin="x\n")
    assert rc == 1
    assert out == []


def test_handshake_variants_with_python_websockets(peers):
    peer = peers("python", "--subprotocols", "v2,v3")
    rc, out, err = run_ws("-H", "X-Test: yes", "-o", "https://app.example", "-s", "v1, v2",
                          "-w", "0.5", f"ws://localhost:{peer.port}/room/7?token=a%20b",
                          stdin="hi\n")
    assert rc == 0, err
    assert out == ["hi"]
    assert "subprotocol v2" in err
    opened = peer.line()
    assert "path=/room/7?token=a%20b" in opened
    assert "subprotocol=v2" in opened and "origin=https://app.example" in opened
    assert "x-test=yes" in opened


def test_ipv6_literal_with_python_websockets(peers):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    peer = peers("python", "--host", "::1")
    rc, out, err = run_ws("-w", "0.5", f"ws://[::1]:{peer.port}/", stdin="six\n")
    assert rc == 0, err
    assert out == ["six"]


@pytest.mark.parametrize("kind", ["python", "node"])
def test_compression_and_fragments_with_third_party_servers(peers, kind):
    peer = peers(kind, "--compression" if kind == "python" else "--deflate")
    text = "abc" * 3000
    rc, out, err = run_ws("-c", "-w", "0.5", f"ws://127.0.0.1:{peer.port}/",
                          stdin=f"{text}\nfragments\n")
    assert rc == 0, err
    assert "connected (compressed)" in err
    assert out == [text, "fragmented"]
    assert "permessage-deflate" in peer.line()


@pytest.mark.parametrize("kind", ["python", "node"])
@pytest.mark.parametrize("code,reason,status", [(1000, "done", 0), (4001, "bye", 3),
                                                (1001, "away", 3)])
def test_server_close_codes(peers, kind, code, reason, status):
    peer = peers(kind)
    rc, out, err = run_ws("-w", "5", f"ws://127.0.0.1:{peer.port}/",
                          stdin=f"close {code} {reason}\n")
    assert rc == status, err
    assert f"closed: {code} {reason}" in err
    assert "no closing handshake" not in err


def test_client_closes_after_count(peers):
    peer = peers("python")
    rc, out, err = run_ws("-n", "2", "-w", "5", f"ws://127.0.0.1:{peer.port}/",
                          stdin="a\nb\nc\n")
    assert rc == 0, err
    assert out[:2] == ["a", "b"]


def test_connection_lost_is_1006(peers):
    peer = peers("python")
    client = Lines([EDDY_WS, f"ws://127.0.0.1:{peer.port}/"], stdin=subprocess.PIPE)
    try:
        client.wait_err("connected")
        peer.stop(signal.SIGKILL)
        assert client.proc.wait(TIMEOUT) == 4
        client.wait_err(r"closed: 1006 \(no closing handshake\)")
    finally:
        client.stop(signal.SIGKILL)


def test_connect_errors():
    port = free_port()
    rc, out, err = run_ws(f"ws://127.0.0.1:{port}/")
    assert rc == 1 and "Connection refused" in err
    rc, out, err = run_ws("ws://name.invalid/")
    assert rc == 1 and "cannot resolve name.invalid" in err
    rc, out, err = run_ws("http://127.0.0.1/")
    assert rc == 2 and "not a ws:// or wss:// URL" in err


# ---- reconnection, heartbeat, offline queue ----


def test_reconnect_across_restart_flushes_the_offline_queue_in_order(peers):
    port = free_port()
    peer = peers("python", "--port", str(port))
    client = Lines([EDDY_WS, "--reconnect", "--reconnect-min", "0.05", "--reconnect-max", "0.2",
                    f"ws://127.0.0.1:{port}/"], stdin=subprocess.PIPE)
    try:
        client.wait_err("connected")
        client.proc.stdin.write("one\n")
        client.proc.stdin.flush()
        assert client.line() == "one"
        peer.stop(signal.SIGKILL)
        client.wait_err(r"closed: 1006")
        client.wait_err(r"reconnecting \(attempt 1\)")
        for word in ("two", "three", "four"):
            client.proc.stdin.write(word + "\n")
            client.proc.stdin.flush()
            client.wait_err("queued while disconnected")
        # At least one attempt failed while the server was down (refused).
        client.wait_err("Connection refused")
        peers("python", "--port", str(port))
        client.wait_err("connected")
        assert [client.line(), client.line(), client.line()] == ["two", "three", "four"]
        client.proc.stdin.write("five\n")
        client.proc.stdin.flush()
        assert client.line() == "five"
        client.proc.stdin.close()
        assert client.proc.wait(TIMEOUT) == 0
    finally:
        client.stop(signal.SIGKILL)


def test_stop_code_ends_reconnection(peers):
    peer = peers("python", "--close", "1008", "policy")
    rc, out, err = run_ws("--reconnect", "--reconnect-min", "0.05", "-w", "5",
                          f"ws://127.0.0.1:{peer.port}/")
    assert rc == 3, err
    assert "closed: 1008 policy" in err
    assert "reconnecting" not in err


def test_retry_code_reconnects_until_max_attempts(peers):
    peer = peers("python", "--close", "1012", "restart")
    rc, out, err = run_ws("--reconnect", "--reconnect-min", "0.05", "--reconnect-max", "0.1",
                          "--reconnect-attempts", "3", "-w", "5", f"ws://127.0.0.1:{peer.port}/")
    assert rc == 6, err
    assert err.count("closed: 1012 restart") == 4
    assert "reconnecting (attempt 3)" in err and "attempt 4" not in err


def test_attempts_count_from_zero_after_the_connection_stayed_up(peers):
    """Connections that last longer than --reconnect-reset start the count again: with at
    most 2 attempts, a server that closes every connection after 0.3 s is reconnected to
    again and again (each time attempt 1); one that closes at once is given up on."""
    peer = peers("python", "--close", "1012", "--close-after", "0.3")
    client = Lines([EDDY_WS, "--reconnect", "--reconnect-min", "0.01", "--reconnect-max",
                    "0.02", "--reconnect-attempts", "2", "--reconnect-reset", "0.2",
                    f"ws://127.0.0.1:{peer.port}/"], stdin=subprocess.PIPE)
    try:
        for _ in range(4):
            client.wait_err(r"closed: 1012")
            client.wait_err(r"reconnecting \(attempt 1\)")
        assert client.proc.poll() is None
        assert not any("attempt 2" in line for line in client.err_seen)
    finally:
        client.stop(signal.SIGKILL)
    rc, out, err = run_ws("--reconnect", "--reconnect-min", "0.01", "--reconnect-attempts", "2",
                          "--reconnect-reset", "10", "-w", "5",
                          f"ws://127.0.0.1:{peer.port}/")
    assert rc == 6, err
    assert "reconnecting (attempt 2)" in err


def test_heartbeat_detects_a_stopped_server(peers):
    peer = peers("python")
    client = Lines([EDDY_WS, "--ping-interval", "0.3", "--ping-timeout", "0.5",
                    f"ws://127.0.0.1:{peer.port}/"], stdin=subprocess.PIPE)
    try:
        client.wait_err("connected")
        # Pings answered: still up after several intervals.
        time.sleep(1.2)
        assert client.proc.poll() is None
        os.kill(peer.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        assert client.proc.wait(TIMEOUT) == 4
        assert time.monotonic() - started < 3
        client.wait_err("no pong nor any other frame")
    finally:
        os.kill(peer.proc.pid, signal.SIGCONT)
        client.stop(signal.SIGKILL)


# ---- client-side conformance: exact bytes from a raw server ----


def accept_for(key):
    return base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


class RawServer:
    """Accepts one connection, answers the handshake with `answer(key)` bytes, then sends
    `frames`, and records everything the client sends until it closes."""

    def __init__(self, answer, frames=b""):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.request = b""
        self.thread = threading.Thread(target=self._run, args=(answer, frames), daemon=True)
        self.thread.start()

    def _run(self, answer, frames):
        conn, _ = self.sock.accept()
        conn.settimeout(TIMEOUT)
        with conn:
            while b"\r\n\r\n" not in self.request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.request += chunk
            key = re.search(rb"Sec-WebSocket-Key: (\S+)", self.request).group(1).decode()
            conn.sendall(answer(key) + frames)
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    self.received += chunk
                    # A server closes the TCP connection once the client's close frame is in.
                    if any(opcode == 8 for opcode, _, _ in self.client_frames()):
                        break
            except OSError:
                pass

    def client_frames(self):
        """The client's frames: (opcode, payload, masked)."""
        data, frames = self.received, []
        while len(data) >= 2:
            opcode, masked, length = data[0] & 0xF, bool(data[1] & 0x80), data[1] & 0x7F
            pos = 2
            if length == 126:
                length, pos = struct.unpack(">H", data[2:4])[0], 4
            elif length == 127:
                length, pos = struct.unpack(">Q", data[2:10])[0], 10
            mask = data[pos:pos + 4] if masked else b"\0\0\0\0"
            pos += 4 if masked else 0
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[pos:pos + length]))
            frames.append((opcode, payload, masked))
            data = data[pos + length:]
        return frames

    def close(self):
        self.thread.join(TIMEOUT)
        self.sock.close()


def upgrade(key, extra=""):
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(key)}\r\n{extra}\r\n").encode()


def run_against(answer, frames=b"", args=()):
    server = RawServer(answer, frames)
    try:
        rc, out, err = run_ws(*args, "-w", "5", f"ws://127.0.0.1:{server.port}/")
    finally:
        server.close()
    return rc, out, err, server


@pytest.mark.parametrize("name,frames,code", [
    ("masked frame", b"\x81\x85abcd" + bytes(c ^ b"abcd"[i % 4] for i, c in
                                               enumerate(b"hello")), 1002),
    ("invalid utf-8", b"\x81\x02\xc3\x28", 1007),
    ("reserved bit", b"\xc1\x01a", 1002),
    ("reserved opcode", b"\x83\x00", 1002),
    ("oversized", b"\x82\x7f" + struct.pack(">Q", 3 * 1024 * 1024), 1009),
    ("close code 1005", b"\x88\x02\x03\xed", 1002),
    ("close code 999", b"\x88\x02\x03\xe7", 1002),
    ("close reason not utf-8", b"\x88\x04\x03\xe8\xc3\x28", 1007),
    ("fragmented ping", b"\x09\x00", 1002),
])
def test_server_protocol_errors_get_the_rfc_close_code(name, frames, code):
    rc, out, err, server = run_against(upgrade, frames)
    assert rc == 5, err
    assert f"closed: {code}" in err
    sent = server.client_frames()
    assert sent and sent[-1][0] == 8 and struct.unpack(">H", sent[-1][1][:2])[0] == code
    assert all(masked for _, _, masked in sent)


def test_request_is_a_valid_upgrade():
    rc, out, err, server = run_against(upgrade, b"\x88\x02\x03\xe8")
    assert rc == 0, err
    head = server.request.decode()
    assert head.startswith("GET / HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n" in head
    assert "Upgrade: websocket\r\n" in head and "Sec-WebSocket-Version: 13\r\n" in head
    key = re.search(r"Sec-WebSocket-Key: (\S+)", head).group(1)
    assert len(base64.b64decode(key)) == 16


def test_client_close_without_the_servers_close_frame():
    """eddy-ws closes with 1000 after the end of input; the server drops the TCP connection
    without its close frame: the closing handshake did not complete (1006)."""
    server = RawServer(upgrade)
    try:
        rc, out, err = run_ws("-w", "0.2", f"ws://127.0.0.1:{server.port}/")
    finally:
        server.close()
    assert rc == 4, err
    assert "closed: 1006 (no closing handshake)" in err
    sent = server.client_frames()
    assert sent[-1][0] == 8 and struct.unpack(">H", sent[-1][1][:2])[0] == 1000


def test_no_answer_times_out():
    rc, out, err, _ = run_against(lambda key: b"", args=("--connect-timeout", "0.3"))
    assert rc == 1
    assert "no handshake answer within connect_timeout" in err


def test_200_instead_of_101():
    def answer(key):
        return b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nnot a socket"
    rc, out, err, _ = run_against(answer)
    assert rc == 1
    assert "answered 200 instead of 101" in err and "not a socket" in err


@pytest.mark.parametrize("answer,why", [
    (lambda key: upgrade("wrong key"), "bad Sec-WebSocket-Accept"),
    (lambda key: upgrade(key).replace(b"Upgrade: websocket\r\n", b""), "without Upgrade"),
    (lambda key: upgrade(key, "Sec-WebSocket-Protocol: nope\r\n"), "subprotocol"),
    (lambda key: upgrade(key, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
     "extension that was not offered"),
])
def test_bad_101_answers(answer, why):
    rc, out, err, server = run_against(answer)
    assert rc == 1
    assert why in err
    assert server.client_frames() == []
