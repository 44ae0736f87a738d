# SPDX-License-Identifier: MIT
"""TLS listeners: start-up checks of the certificate and key, the handshake inside the event
loop (stalled or garbage handshakes cost nobody else anything), protocol versions, ALPN, and
HTTPS and WSS sharing a port while a plain listener runs beside them."""

import os
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from eddyserver import BUILD, TIMEOUT
from testbed import cmd, open_ws
from wsraw import RawClient


def settings_for(cert, **extra):
    return dict({"ssl_cert_file": cert[0], "ssl_key_file": cert[1]}, **extra)


def tls_socket(server, **context_args):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for name, value in context_args.items():
        setattr(context, name, value)
    raw = socket.create_connection(("127.0.0.1", server.tls_port), timeout=TIMEOUT)
    return context.wrap_socket(raw, server_hostname="localhost")


def run_and_fail(*args):
    """Runs the echo example expecting start-up to fail; returns its log."""
    out = subprocess.run([os.path.join(BUILD, "examples", "echo"), "--port", "0", *args],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode != 0
    return out.stderr


def test_start_fails_on_missing_or_bad_files(tls_cert, tmp_path):
    cert, key = tls_cert
    log = run_and_fail("--tls-port", "0", "--set", f"ssl_cert_file={tmp_path}/none.pem",
                       "--set", f"ssl_key_file={key}")
    assert f"ssl_cert_file {tmp_path}/none.pem" in log and "No such file" in log
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_text("not a key")
    log = run_and_fail("--tls-port", "0", "--set", f"ssl_cert_file={cert}", "--set",
                       f"ssl_key_file={unreadable}")
    assert f"ssl_key_file {unreadable}" in log
    log = run_and_fail("--tls-port", "0")
    assert "needs ssl_cert_file and ssl_key_file" in log
    # A key that belongs to another certificate.
    other_key = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(other_key)],
                   check=True, capture_output=True)
    log = run_and_fail("--tls-port", "0", "--set", f"ssl_cert_file={cert}", "--set",
                       f"ssl_key_file={other_key}")
    assert f"ssl_key_file {other_key} does not match ssl_cert_file {cert}" in log


def test_https_and_wss_share_the_port_beside_plain(start_server, tls_cert):
    server = start_server("testbed", "--request", "--tls-port", "0",
                          settings=settings_for(tls_cert))
    assert server.tls_port != server.port
    with tls_socket(server) as sock:
        assert sock.selected_alpn_protocol() is None  # none offered, none chosen
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"ok /hello")
    # ALPN: http/1.1 is chosen; h2 alone is declined without failing the handshake.
    with tls_socket(server) as sock:
        pass
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2", "http/1.1"])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.tls_port)),
                             server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    context.set_alpn_protocols(["h2"])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", server.tls_port)),
                             server_hostname="localhost") as sock:
        assert sock.selected_alpn_protocol() is None
    # Plain HTTP still works on the other listener.
    assert server.http(b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"ok /p")


def test_minimum_protocol_is_tls12(start_server, tls_cert):
    server = start_server("echo", "--tls-port", "0", settings=settings_for(tls_cert))
    with pytest.raises(ssl.SSLError):
        # TLS 1.1 at most (Python's own floor allows no less than that here).
        tls_socket(server, maximum_version=ssl.TLSVersion.TLSv1_1)
    with tls_socket(server, maximum_version=ssl.TLSVersion.TLSv1_2) as sock:
        assert sock.version() == "TLSv1.2"
    with tls_socket(server) as sock:
        assert sock.version() == "TLSv1.3"
    server.wait_log("TLS handshake failed")


def test_tls13_only_setting(start_server, tls_cert):
    server = start_server("echo", "--tls-port", "0",
                          settings=settings_for(tls_cert, ssl_protocols="TLSv1.3"))
    with pytest.raises(ssl.SSLError):
        tls_socket(server, maximum_version=ssl.TLSVersion.TLSv1_2)
    with tls_socket(server) as sock:
        assert sock.version() == "TLSv1.3"


def test_long_ssl_protocols_list_is_read_whole(start_server, tls_cert):
    """A list over 128 bytes used to be cut there silently: its TLSv1.3 was lost."""
    protocols = "TLSv1.2, " * 20 + "TLSv1.3"
    server = start_server("echo", "--tls-port", "0",
                          settings=settings_for(tls_cert, ssl_protocols=protocols))
    with tls_socket(server) as sock:
        assert sock.version() == "TLSv1.3"


def wss_echo(server):
    """A WebSocket echo over TLS, with the raw client's framing on the TLS socket."""
    sock = tls_socket(server)
    client = RawClient.__new__(RawClient)
    client.sock, client.buf = sock, b""
    client.handshake()
    client.send_frame(0x1, b"over tls")
    assert client.recv_message() == (0x1, b"over tls")
    client.close_handshake()


def still_open(sock):
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True


def read_to_eof(sock):
    sock.settimeout(TIMEOUT)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_stalled_and_garbage_handshakes_cost_nobody_else(start_server, tls_cert):
    server = start_server("echo", "--tls-port", "0",
                          settings=settings_for(tls_cert, http_header_timeout="2"))
    stalled = [socket.create_connection(("127.0.0.1", server.tls_port)) for _ in range(20)]
    half = socket.create_connection(("127.0.0.1", server.tls_port))
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
    garbage = socket.create_connection(("127.0.0.1", server.tls_port))
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
    # Garbage is refused at once: at most an alert record (content type 21), then EOF.
    data = read_to_eof(garbage)
    assert data == b"" or data[0] == 0x15
    server.wait_log("TLS handshake failed")
    # Everyone else is served while the stalled handshakes are still pending.
    wss_echo(server)
    assert all(still_open(sock) for sock in stalled + [half])
    # They are dropped when http_header_timeout expires, and service goes on.
    for sock in stalled + [half]:
        assert read_to_eof(sock) == b""
    wss_echo(server)
    for sock in stalled + [garbage, half]:
        sock.close()


class RecordCounter:
    """A TCP proxy that does not speak TLS: it forwards one connection both ways and counts
    the TLS records the server sends, by content type (0x17: application data)."""

    def __init__(self, port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.server_port = port
        self.records = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def count(self, content_type):
        with self.lock:
            return self.records.get(content_type, 0)

    def _run(self):
        client, _ = self.listener.accept()
        # Small fixed buffers (no autotuning): the proxy holds little of what is in flight,
        # so a subscriber that does not read soon stops the server's writes.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        upstream = socket.socket()
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        upstream.connect(("127.0.0.1", self.server_port))
        pending = b""  # server bytes not yet parsed into whole record headers
        record_left = 0  # bytes of the current record still to come
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([client, upstream], [], [], 0.5)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    client.close()
                    upstream.close()
                    return
                if sock is client:
                    upstream.sendall(data)
                    continue
                # Count first, then forward: once the client read the bytes, they are counted.
                pending += data
                with self.lock:
                    while True:
                        if record_left:
                            used = min(record_left, len(pending))
                            record_left -= used
                            pending = pending[used:]
                        if record_left or len(pending) < 5:
                            break
                        kind = pending[0]
                        self.records[kind] = self.records.get(kind, 0) + 1
                        record_left = int.from_bytes(pending[3:5], "big")
                        pending = pending[5:]
                client.sendall(data)


def wss_client(port, maximum_version=None):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if maximum_version is not None:
        context.maximum_version = maximum_version
    client = RawClient.__new__(RawClient)
    client.timeout = TIMEOUT
    client.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT),
        server_hostname="localhost")
    client.buf = b""
    return client


def test_a_fan_out_of_small_frames_goes_out_in_few_tls_records(start_server, tls_cert):
    """The pieces of one write are packed into full-size TLS records, not one record (and
    one SSL_write) per frame."""
    # A large buffer: the 8 MB below stays under the high watermark (no drain event).
    server = start_server("testbed", "--tls-port", "0",
                          settings=settings_for(tls_cert, worker_num="1",
                                                socket_buffer_size="64000000"))
    server.expect("start")
    ctl, _ = open_ws(server)
    proxy = RecordCounter(server.tls_port)
    sub = wss_client(proxy.port)
    sub.handshake()
    fd = int(server.line().split()[1])
    server.expect(f"open {fd} / -")
    assert cmd(server, ctl, f"sub {fd} room") == "0"
    # A round trip first, so that session tickets and the 101 are counted already.
    assert cmd(server, ctl, "pub room warm") == "1"
    assert sub.recv_message() == (0x1, b"warm")
    before = proxy.count(0x17)
    # 64 publications in one callback: one write of 64 frames of 22 bytes.
    assert cmd(server, ctl, "pubmany room 64 20") == "1"
    for i in range(64):
        assert sub.recv_message() == (0x2, bytes([i]) * 20)
    records = proxy.count(0x17) - before
    assert 1 <= records <= 2, records
    # Large and small frames mixed, more than the socket takes while the subscriber is not
    # reading: writes stop half-way (SSL_ERROR_WANT_WRITE) and resume; all arrive intact.
    assert cmd(server, ctl, "pubmany room 160 50000") == "1"
    assert cmd(server, ctl, "pubmany room 64 20") == "1"
    assert cmd(server, ctl, "pubmany room 3 70000") == "1"
    # Once the server has written all the socket takes, its queue holds still (bounded
    # wait), and it is not empty: the socket took only part of it.
    queued, deadline = int(cmd(server, ctl, f"queued {fd}")), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = int(cmd(server, ctl, f"queued {fd}"))
        if now == queued:
            break
        queued = now
    assert queued > 0
    for count, size in ((160, 50000), (64, 20), (3, 70000)):
        for i in range(count):
            assert sub.recv_message() == (0x2, bytes([i]) * size)


def test_records_arriving_together_are_all_read(start_server, tls_cert):
    """With read-ahead OpenSSL takes every record the socket holds in one read, so the socket
    is empty while records wait decrypted-to-be in OpenSSL's buffer: each must be echoed
    without the socket signalling again."""
    server = start_server("echo", "--tls-port", "0",
                          settings=settings_for(tls_cert, worker_num="1"))
    client = wss_client(server.tls_port)
    client.handshake()
    raw = client.sock
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    for i in range(40):  # one TLS record each, held back by the cork
        client.send_frame(0x2, bytes([i]) * (1 + i * 50))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    for i in range(40):
        assert client.recv_message() == (0x2, bytes([i]) * (1 + i * 50))
    client.close_handshake()


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_record_buffers_stay_while_busy_and_go_when_quiet(start_server, tls_cert, version):
    """TLS 1.2: OpenSSL's record buffers (about 34 KiB a connection) are kept while a
    connection trades messages, not freed and reallocated around every record, and freed
    once it has been quiet for a sweep (1-2 s), so idle TLS connections stay small. TLS 1.3:
    eddy's record layer uses its loop's buffers, so a busy connection has none of its
    own, and OpenSSL's connection object is freed after the handshake: an idle connection
    costs about 3 KB (14 KB over TLS 1.2)."""
    server = start_server("testbed", "--tls-port", "0",
                          settings=settings_for(tls_cert, worker_num="1"))
    server.expect("start")
    ctl, _ = open_ws(server)
    heap = lambda: int(cmd(server, ctl, "heap"))  # noqa: E731
    if heap() == 0:
        pytest.skip("mallinfo2 counts nothing here (a sanitizer replaced malloc)")
    # The loop's own record buffers (TLS 1.3: 128 KiB) come with the first wss message it
    # serves. A connection that trades one first makes them before the baseline, so the
    # figures below are per connection whether malloc maps those buffers or not.
    warm = wss_client(server.tls_port, getattr(ssl.TLSVersion, version))
    warm.handshake()
    fd = int(server.line().split()[1])
    server.expect(f"open {fd} / -")
    warm.send_frame(0x2, b"x" * 100)
    assert warm.recv_message() == (0x2, b"x" * 100)
    assert server.line().startswith("message ")
    warm.close_handshake()
    assert server.line().startswith(f"close {fd} ")
    before = heap()
    clients = []
    for _ in range(30):
        client = wss_client(server.tls_port, getattr(ssl.TLSVersion, version))
        client.handshake()
        assert client.sock.version() == version.replace("_", ".")
        fd = int(server.line().split()[1])
        server.expect(f"open {fd} / -")
        clients.append(client)
    time.sleep(2.5)  # the handshakes' buffers are swept first
    quiet = heap()
    for client in clients:
        client.send_frame(0x2, b"x" * 100)
        assert client.recv_message() == (0x2, b"x" * 100)
        assert server.line().startswith("message ")
    busy = heap()
    if version == "TLSv1_3":
        assert (quiet - before) / len(clients) < 4500, (before, quiet)
        assert (busy - quiet) / len(clients) < 1000, (quiet, busy)
        for client in clients:
            client.close_handshake()
        return
    assert (busy - quiet) / len(clients) > 16000, (quiet, busy)
    deadline, now = time.monotonic() + 10, busy
    while time.monotonic() < deadline:
        now = heap()
        if (now - quiet) / len(clients) < 2000:
            break
        time.sleep(0.1)
    assert (now - quiet) / len(clients) < 2000, (quiet, busy, now)
    for client in clients:
        client.close_handshake()
