# SPDX-License-Identifier: MIT
"""`eddy reload` applies the engine's live limits (max_connection, package_max_length), the
TLS certificate (a real TLS client compares the certificate it is served) and the [socketio]
and [api] keys that can change while running; the others are reported as needing a
restart."""

import signal
import socket
import ssl
import subprocess

from eddyserver import TIMEOUT
from test_daemon import Serving, free_port, http, read, site, wait_for  # noqa: F401 (site)
from test_daemon_realtime import API_KEY, Clients, Daemon
from wsraw import RawClient


def reload(server, count):
    """SIGHUP, then waits for the count-th "reload done"; returns that reload's log."""
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: read(server.log_path).count("reload done") >= count, f"reload {count}")
    return read(server.log_path).split("reload done")[count - 1]


def refused_at_accept(port):
    """True if the server closes a new connection without answering a request on it."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return sock.recv(64) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def test_reload_lowers_max_connection_and_package_max_length(site):
    tmp, conf = site
    path, port = conf(extra="max_connection = 100\npackage_max_length = 100000")
    server = Serving(tmp, path)
    try:
        first = RawClient("127.0.0.1", port)
        first.handshake("/ws")
        first.send_frame(0x1, b"x" * 5000)
        assert first.recv_message() == (0x1, b"x" * 5000)
        assert not refused_at_accept(port)
        conf(port=port, extra="max_connection = 2\npackage_max_length = 1000\nworker_num = 3")
        log = reload(server, 1)
        assert "reload: [server] max_connection 2" in log
        assert "reload: [server] package_max_length 1000" in log
        assert "max_connection changed; it needs a restart" not in log
        assert "[server] worker_num changed; it needs a restart" in log
        second = RawClient("127.0.0.1", port)
        second.handshake("/ws")  # the second connection: at the new limit
        assert refused_at_accept(port)
        assert "too many connections (max_connection=2)" in read(server.log_path)
        # The session opened before the reload gets the new message limit.
        first.send_frame(0x1, b"y" * 900)
        assert first.recv_message() == (0x1, b"y" * 900)
        first.send_frame(0x1, b"x" * 5000)
        first.expect_close(1009)
        second.send_frame(0x1, b"z" * 1001)
        second.expect_close(1009)
        # Unset again: the defaults come back.
        conf(port=port, extra="worker_num = 3")
        log = reload(server, 2)
        assert "reload: [server] max_connection " in log
        assert "reload: [server] package_max_length 2097152" in log
        status, _, body = http(port, "/status")
        assert status == 200
        third = RawClient("127.0.0.1", port)
        third.handshake("/ws")
        third.send_frame(0x1, b"x" * 5000)
        assert third.recv_message() == (0x1, b"x" * 5000)
        third.close_handshake()
    finally:
        assert server.stop() == 0


def test_reload_turns_keep_alive_pings_on_and_their_timeout_drops_a_silent_peer(site):
    tmp, conf = site
    path, port = conf()
    server = Serving(tmp, path)
    try:
        quiet = RawClient("127.0.0.1", port)  # opened before: no pings (interval 0)
        quiet.handshake("/ws")
        conf(port=port, extra="websocket_ping_interval = 0.2")
        log = reload(server, 1)
        assert "reload: [server] websocket_ping_interval 0.2" in log
        assert quiet.recv_frame()[2] == 0x9  # a ping, on a session opened before the reload
        quiet.send_frame(0xA, b"")
        # With a timeout, a peer that answers nothing is dropped (no close frame).
        conf(port=port, extra="websocket_ping_interval = 0.2\nwebsocket_ping_timeout = 0.3")
        reload(server, 2)
        silent = RawClient("127.0.0.1", port)
        silent.handshake("/ws")
        while True:  # pings until the drop, then EOF
            try:
                assert silent.recv_frame()[2] == 0x9
            except (EOFError, ConnectionResetError):
                break
        assert "no answer to a ping in 300 ms, dropped" in read(server.log_path)
        quiet.close()
    finally:
        assert server.stop() == 0


def make_cert(directory, name):
    cert, key = str(directory / f"{name}.pem"), str(directory / f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "1", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return cert, key


def der(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class TlsClient:
    """A TLS connection that sends keep-alive requests; peer is the certificate served."""

    def __init__(self, port):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = context.wrap_socket(raw)
        self.peer = self.sock.getpeercert(binary_form=True)

    def get(self):
        self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while not reply.endswith(b"ok\n"):
            data = self.sock.recv(4096)
            assert data, "closed"
            reply += data
        return reply.split(b" ")[1] == b"200"

    def close(self):
        self.sock.close()


def test_reload_swaps_the_tls_certificate_for_new_connections(site):
    tmp, conf = site
    first, second = make_cert(tmp, "first"), make_cert(tmp, "second")
    tls_port = free_port()

    def write(cert, key, log_level="info"):
        path, port = conf(port=main_port, log_level=log_level)
        with open(path, "a") as f:
            f.write(f"[tls]\nport = {tls_port}\nssl_cert_file = {cert}\nssl_key_file = {key}\n")
        return path

    main_port = free_port()
    server = Serving(tmp, write(*first))
    try:
        old = TlsClient(tls_port)
        assert old.peer == der(first[0]) and old.get()
        write(*second)
        log = reload(server, 1)
        assert f"reload: [tls] certificate {second[0]} and key {second[1]} loaded" in log
        assert "ssl_cert_file changed; it needs a restart" not in log
        new = TlsClient(tls_port)
        assert new.peer == der(second[0]) and new.get()
        new.close()
        assert old.get()  # made before the reload: goes on with the first certificate
        # A renewal writes new files under the same names: a reload reads them again.
        with open(second[0], "w") as out, open(first[0]) as src:
            out.write(src.read())
        with open(second[1], "w") as out, open(first[1]) as src:
            out.write(src.read())
        reload(server, 2)
        renewed = TlsClient(tls_port)
        assert renewed.peer == der(first[0]) and renewed.get()
        renewed.close()
        # A key of another certificate, or a file that is no certificate: refused whole
        # (the log level change with it is not applied), the running certificate served.
        other = make_cert(tmp, "other")
        (tmp / "garbage.pem").write_text("not a certificate\n")
        for cert, key in ((other[0], first[1]), (str(tmp / "garbage.pem"), other[1])):
            write(cert, key, log_level="warning")
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: read(server.log_path).count("reload refused") == 1 + (
                cert != other[0]), "the refusal")
            kept = TlsClient(tls_port)
            assert kept.peer == der(first[0]) and kept.get()
            kept.close()
        assert "reload refused, the running configuration is kept: [tls]" in read(
            server.log_path)
        assert http(main_port, "/status")[2].count(b'"log_level":"info"') == 1
        assert old.get()
        old.close()
    finally:
        assert server.stop() == 0


NEW_API_KEY = "the new api key, sixteen bytes+"


def test_reload_applies_client_rooms_and_the_api_key(tmp_path):
    server = Daemon(tmp_path, "[socketio]\nclient_rooms = lobby\n")
    clients = Clients(server.port)
    try:
        clients.connect("anon")
        assert clients.ack("anon", "join", "chat:1") == [{"error": "not allowed"}]
        assert server.api("stats")[0] == 200
        text = read(server.conf).replace(f"key = {API_KEY}", f"key = {NEW_API_KEY}")
        server.conf.write_text(text.replace("client_rooms = lobby",
                                            "client_rooms = chat:*\nping_interval = 5"))
        log = reload(server, 1)
        assert "reload: [socketio] client_rooms chat:* (for the next join)" in log
        assert "reload: [api] key applied" in log
        assert NEW_API_KEY not in read(server.log_path) and API_KEY not in read(server.log_path)
        assert "[socketio] ping_interval changed; it needs a restart" in log
        assert "client_rooms changed; it needs a restart" not in log
        # The socket connected before the reload joins under the new permissions.
        assert clients.ack("anon", "join", "chat:1") == [{"ok": True}]
        assert clients.ack("anon", "join", "lobby") == [{"error": "not allowed"}]
        assert server.api("stats")[0] == 401
        assert server.api("stats", key=NEW_API_KEY)[0] == 200
        # No key at all: the API is off (its path goes to the static files).
        server.conf.write_text(read(server.conf).replace(f"key = {NEW_API_KEY}", "key ="))
        assert "the server API is off" in reload(server, 2)
        assert http(server.admin_port, "/api/stats", method="POST")[0] == 404
    finally:
        clients.close()
        server.stop()
