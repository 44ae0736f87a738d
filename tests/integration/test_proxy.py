# SPDX-License-Identifier: MIT
"""The eddy program's backend proxy ([proxy], cmd/proxy.c over cmd/backend.c: libcurl's
multi interface on eddy's loops through watches and timers) against a real backend process:
Python's http.server in a thread of the test, answering by the request's query."""

import base64
import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import socketio

from eddyserver import TIMEOUT
from test_daemon import Serving, free_port, http, read, wait_for


class Backend:
    """The application's backend: accepts token=good (200 {"user": "alice"}), fails
    boom (500), answers big with 100 KB, sleeps on slow, refuses the rest (403). A
    Socket.IO CONNECT (a body with "namespace") is decided by its auth's token the same
    way, with data on acceptance and a message and data on refusal. It keeps what it
    received and the client ports it saw (one per connection)."""

    def __init__(self):
        self.seen = []
        self.ports = set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: eddy may reuse the connection

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.seen.append((self.path, self.headers.get("Content-Type"), body))
                    outer.ports.add(self.client_address[1])
                if self.path in ("/event", "/join"):
                    return self.socket_request(body)
                # A Socket.IO CONNECT names its namespace and decides by its auth's token.
                query = body["query"] if "namespace" not in body else \
                    "token=" + str(body["auth"].get("token"))
                status, answer = 403, b'{"error":"refused"}'
                if "namespace" in body and "token=bad" in query:
                    answer = b'{"message":"go away","data":{"code":7}}'
                elif "namespace" in body and "token=good" in query:
                    status, answer = 200, b'{"user":"alice","data":{"plan":"gold"}}'
                elif "slow" in query:
                    time.sleep(1.0)
                    status, answer = 200, b'{"user":"slow"}'
                elif "token=good" in query:
                    status, answer = 200, b'{"user":"alice"}'
                elif "boom" in query:
                    status, answer = 500, b"oops"
                elif "big" in query:
                    status, answer = 200, b"x" * 100000
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def socket_request(self, body):
                """/event: echo answers {"got": args, "user"}, deny 403, boom 500, slow
                sleeps; /join: rooms starting with "ok" are allowed, the rest 403."""
                status, answer = 403, b'{"message":"no"}'
                if self.path == "/join" and body["room"].startswith("ok"):
                    status, answer = 200, b"{}"
                elif self.path == "/event" and body["event"] == "echo":
                    status, answer = 200, json.dumps({"got": body["args"],
                                                      "user": body["user"]}).encode()
                elif self.path == "/event" and body["event"] == "boom":
                    status, answer = 500, b"oops"
                elif self.path == "/event" and body["event"] == "slow":
                    time.sleep(1.0)
                    status, answer = 200, b"{}"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # eddy gave up at its timeout (the slow event)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


@pytest.fixture
def dead_backend():
    """The URL of a backend that refuses connections: its port is bound and never listens,
    so no listener of the server can be given it (a port free_port() found free could be)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{holder.getsockname()[1]}"
    holder.close()


def serve(tmp_path, proxy, workers=1, level="info"):
    port = free_port()
    (tmp_path / "www").mkdir(exist_ok=True)
    (tmp_path / "eddy.conf").write_text(
        f"[server]\nport = {port}\nworker_num = {workers}\npid_file = eddy.pid\n"
        f"[static]\ndocument_root = www\n[proxy]\n{proxy}\n[log]\nlog_level = {level}\n")
    return Serving(str(tmp_path), str(tmp_path / "eddy.conf")), port


@contextlib.contextmanager
def serving(tmp_path, proxy, workers=1, level="info"):
    """serve() for a with block: (server, port), and a clean stop (status 0) after it."""
    srv, port = serve(tmp_path, proxy, workers, level)
    try:
        yield srv, port
    finally:
        assert srv.stop() == 0


def get(port, path, headers=""):
    """A GET with extra header lines; (status, body)."""
    from wsraw import RawClient
    client = RawClient("127.0.0.1", port, timeout=10)
    try:
        client.send(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
                    .encode())
        status, _, body = client.read_http_response()
        return status, body
    finally:
        client.close()


def test_proxy_forwards_and_answers(tmp_path, backend):
    with serving(tmp_path, f"connect_url = {backend.url}/eddy/connect") as (srv, port):
        status, body = get(port, "/connect?token=good&room=a%20b", "X-Test: one \"two\"\r\n")
        assert (status, json.loads(body)) == (200, {"user": "alice"})
        path, ctype, sent = backend.seen[0]
        assert (path, ctype) == ("/eddy/connect", "application/json")
        assert sent["query"] == "token=good&room=a%20b"
        assert sent["headers"]["X-Test"] == 'one "two"'
        assert sent["remote"].startswith("127.0.0.1:")
        assert get(port, "/connect?token=bad")[0] == 403
        for _ in range(5):
            assert get(port, "/connect?token=good")[0] == 200
        # One loop, one connection to the backend, reused by all seven requests.
        assert len(backend.seen) == 7 and len(backend.ports) == 1, backend.ports
        # Other paths are not the proxy's.
        assert http(port, "/other")[0] == 404
    assert "proxy: 7 requests, 1 connections" in read(srv.log_path)


def test_proxy_errors_are_distinct_and_counted(tmp_path, backend):
    with serving(tmp_path, f"connect_url = {backend.url}/c\n"
                           "timeout = 0.3\nmax_body = 65536") as (srv, port):
        assert get(port, "/connect?boom")[0] == 502
        assert get(port, "/connect?big")[0] == 502
        started = time.monotonic()
        assert get(port, "/connect?slow")[0] == 504
        assert time.monotonic() - started < 0.9  # the timeout, not the backend's 1 s
        assert get(port, "/connect?boom")[0] == 502
        log = wait_for(lambda: (lambda t: "timeout (status 0; 1 so far)" in t and t)(
            read(srv.log_path)), "the timeout's log line")
        assert "server error (status 500; 2 so far)" in log, log
        assert "body too big (status 0; 1 so far)" in log, log
    assert "1 timeouts, 2 server errors, 1 too big" in read(srv.log_path)


def test_proxy_dead_backend_refused(tmp_path, dead_backend):
    with serving(tmp_path, f"connect_url = {dead_backend}/c") as (srv, port):
        assert get(port, "/connect?token=good")[0] == 502
        assert get(port, "/connect?token=good")[0] == 502
        wait_for(lambda: "connection refused (status 0; 2 so far)" in read(srv.log_path),
                 "the refusals' log line")
    assert "2 refused" in read(srv.log_path)


def test_proxy_concurrency_bound(tmp_path, backend):
    with serving(tmp_path, f"connect_url = {backend.url}/c\n"
                           "timeout = 5\nmax_requests = 2", workers=1) as (srv, port):
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(get, port, "/connect?slow") for _ in range(2)]
            # Both slow requests are in flight (the backend holds them) before the third.
            wait_for(lambda: len(backend.seen) == 2, "two requests at the backend")
            started = time.monotonic()
            assert get(port, "/connect?token=good")[0] == 503
            # Refused at once, not queued; and the one loop, which holds both requests,
            # goes on serving everything else meanwhile.
            assert http(port, "/other")[0] == 404
            assert time.monotonic() - started < 0.5
            assert [f.result(timeout=10)[0] for f in slow] == [200, 200]
        # The bound frees up as answers come.
        assert get(port, "/connect?token=good")[0] == 200
    assert "1 busy" in read(srv.log_path)


def test_proxy_config_refused(tmp_path):
    (tmp_path / "bad.conf").write_text("[proxy]\nconnect_url = ftp://x\n")
    from test_daemon import eddy
    r = eddy("config", "check", "-c", str(tmp_path / "bad.conf"), cwd=str(tmp_path))
    assert r.returncode == 2 and "[proxy] connect_url" in r.stderr, r.stderr


def test_proxy_stop_with_requests_in_flight(tmp_path, backend):
    """A stop while the backend holds requests: the daemon exits in time, cleanly (no
    sanitizer report, no leak: the detached responses are closed), the requests canceled."""
    srv, port = serve(tmp_path, f"connect_url = {backend.url}/c\n"
                                "timeout = 5", workers=2)
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(get, port, "/connect?slow") for _ in range(2)]
        wait_for(lambda: len(backend.seen) == 2, "two requests at the backend")
        started = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - started < 5
        for f in pending:
            try:
                f.result(timeout=10)
            except (OSError, EOFError):
                pass  # the connection closed without an answer
    assert "proxy: 2 requests" in read(srv.log_path)
    assert "2 canceled" in read(srv.log_path)


# ---- WebSocket upgrades on [websocket] path, their 101 held for the backend's answer ----

def ws_upgrade(port, query):
    """Sends an upgrade on /ws?query with a masked text frame right behind it (sent before
    any answer: it must wait, then be echoed); (status, body, echoed or None)."""
    import base64
    import os
    from wsraw import RawClient, frame
    client = RawClient("127.0.0.1", port, timeout=10)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        client.send((f"GET /ws?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\nX-Test: up\r\n\r\n").encode()
                    + frame(0x1, b"early"))
        status, _, body = client.read_http_response()
        if status != 101:
            client.expect_eof()
            return status, body, None
        return status, body, client.recv_message()[1]
    finally:
        client.close()


def test_proxy_upgrade_accepted_or_refused_by_the_backend(tmp_path, backend):
    with serving(tmp_path, f"connect_url = {backend.url}/eddy/connect") as (srv, port):
        # Accepted: the 101 came after the backend's 200, and the frame the client sent
        # before it waited and was echoed.
        assert ws_upgrade(port, "token=good") == (101, b"", b"early")
        path, ctype, sent = backend.seen[0]
        assert (path, ctype) == ("/eddy/connect", "application/json")
        assert sent["query"] == "token=good"
        assert sent["headers"]["X-Test"] == "up" and sent["headers"]["Upgrade"] == "websocket"
        assert sent["remote"].startswith("127.0.0.1:")
        wait_for(lambda: "accepted as user alice" in read(srv.log_path), "the acceptance")
        # Refused: the backend's status and body.
        status, body, echoed = ws_upgrade(port, "token=bad")
        assert (status, json.loads(body), echoed) == (403, {"error": "refused"}, None)
    assert "proxy: 2 requests" in read(srv.log_path)


def test_proxy_upgrade_backend_failures(tmp_path, backend):
    with serving(tmp_path, f"connect_url = {backend.url}/c\n"
                           "timeout = 0.3") as (srv, port):
        assert ws_upgrade(port, "boom")[:2] == (502, b"backend error\n")
        started = time.monotonic()
        assert ws_upgrade(port, "slow")[:2] == (504, b"backend timeout\n")
        assert time.monotonic() - started < 0.9
        wait_for(lambda: "upgrade: http://127.0.0.1" in read(srv.log_path), "the log line")
    assert "1 timeouts, 1 server errors" in read(srv.log_path)


def test_proxy_upgrade_dead_backend(tmp_path, dead_backend):
    with serving(tmp_path, f"connect_url = {dead_backend}/c") as (srv, port):
        assert ws_upgrade(port, "token=good")[:2] == (502, b"backend error\n")
    assert "1 refused" in read(srv.log_path)


def test_proxy_upgrade_busy(tmp_path, backend):
    with serving(tmp_path, f"connect_url = {backend.url}/c\n"
                           "timeout = 5\nmax_requests = 1") as (srv, port):
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(ws_upgrade, port, "slow")
            wait_for(lambda: len(backend.seen) == 1, "one upgrade at the backend")
            assert ws_upgrade(port, "token=good")[:2] == (503, b"backend busy\n")
            assert slow.result(timeout=10) == (101, b"", b"early")


def test_proxy_upgrade_client_gone_while_pending(tmp_path, backend):
    """A client that hangs up while the backend decides: its connection closes at once; the
    late acceptance is harmless (the daemon goes on serving)."""
    from wsraw import RawClient
    with serving(tmp_path, f"connect_url = {backend.url}/c\n"
                           "timeout = 5", level="debug") as (srv, port):
        client = RawClient("127.0.0.1", port, timeout=10)
        client.send(b"GET /ws?slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n")
        wait_for(lambda: len(backend.seen) == 1, "the upgrade at the backend")
        client.close()
        wait_for(lambda: "hung up while its response was pending" in read(srv.log_path),
                 "the hang-up noticed while pending")
        wait_for(lambda: "left before the answer" in read(srv.log_path),
                 "the late answer, harmless")
        assert ws_upgrade(port, "token=good") == (101, b"", b"early")



# ---- Socket.IO CONNECTs: the decision deferred to the backend (eddy_rt_defer) ----

def sio_daemon(tmp_path, proxy):
    from test_daemon_realtime import Clients, Daemon
    server = Daemon(tmp_path, f"[socketio]\nnamespaces = /, /chat\n[proxy]\n{proxy}\n")
    return server, Clients(server.port)


def test_proxy_socketio_connect_accepted_or_refused_by_the_backend(tmp_path, backend):
    server, clients = sio_daemon(tmp_path, f"connect_url = {backend.url}/sio")
    try:
        sid = clients.connect("a", nsp="/chat", auth={"token": "good", "x": [1]},
                              query={"room": "r 1"})
        path, _, sent = backend.seen[0]
        assert path == "/sio"
        assert (sent["namespace"], sent["sid"], sent["auth"]) == \
            ("/chat", sid, {"token": "good", "x": [1]})
        assert sent["query"]["room"] == "r 1" and sent["query"]["EIO"] == "4"
        assert "user-agent" in {k.lower() for k in sent["headers"]}
        assert sent["remote"] == "127.0.0.1"
        # The backend's user and data are the socket's.
        assert server.api("join", {"namespace": "/chat", "room": "t", "user": "alice"})[1] == \
            {"result": {"sockets": 1}}
        result = server.api("presence", {"namespace": "/chat", "room": "t"})[1]["result"]
        assert result["sockets"] == [{"id": sid, "user": "alice", "data": {"plan": "gold"}}]
        # Refused: CONNECT_ERROR with the backend's message and data.
        refused = clients.refused("b", auth={"token": "bad"})
        assert (refused["message"], refused["data"]) == ("go away", {"code": 7})
    finally:
        clients.close()
        server.stop()


def test_proxy_socketio_connect_backend_failures(tmp_path, backend):
    server, clients = sio_daemon(tmp_path, f"connect_url = {backend.url}/c\n"
                                           "timeout = 0.3")
    try:
        started = time.monotonic()
        assert clients.refused("slow", auth={"token": "slow"})["message"] == "backend timeout"
        assert time.monotonic() - started < 0.9 + 0.5
        assert clients.refused("boom", auth={"token": "boom"})["message"] == "backend error"
    finally:
        clients.close()
        text = server.stop()
    assert "socket.io connect: http://127.0.0.1" in text


def test_proxy_socketio_connect_dead_backend(tmp_path, dead_backend):
    server, clients = sio_daemon(tmp_path, f"connect_url = {dead_backend}/c")
    try:
        assert clients.refused("a", auth={"token": "good"})["message"] == "backend error"
    finally:
        clients.close()
        text = server.stop()
    assert "connection refused" in text



# ---- Socket.IO events (event_url: the answer is the ack) and joins (join_url) ----

def test_proxy_socketio_events_and_joins(tmp_path, backend):
    base = backend.url
    server, clients = sio_daemon(tmp_path, f"event_url = {base}/event\njoin_url = {base}/join\n"
                                           "timeout = 0.3\n[socketio]\nclient_rooms = lobby")
    try:
        sid = clients.connect("a", nsp="/chat")
        assert clients.ack("a", "echo", 1, "two", {"x": None}) == [
            {"got": [1, "two", {"x": None}], "user": None}]
        path, _, sent = backend.seen[-1]
        assert (path, sent["namespace"], sent["sid"], sent["event"]) == \
            ("/event", "/chat", sid, "echo")
        assert clients.ack("a", "deny") == [{"error": "refused", "status": 403}]
        assert clients.ack("a", "boom") == [{"error": "backend error"}]
        assert clients.ack("a", "slow") == [{"error": "backend timeout"}]
        # Joins: client_rooms first (no request), then the backend.
        before = len(backend.seen)
        assert clients.ack("a", "join", "lobby") == [{"ok": True}]
        assert len(backend.seen) == before
        assert clients.ack("a", "join", "ok-1") == [{"ok": True}]
        assert backend.seen[-1][2]["room"] == "ok-1" and backend.seen[-1][0] == "/join"
        assert clients.ack("a", "join", "secret") == [{"error": "not allowed"}]
        rooms = server.api("rooms", {"namespace": "/chat"})[1]["result"]["rooms"]
        assert sorted(r["name"] for r in rooms) == ["lobby", "ok-1"]
    finally:
        clients.close()
        text = server.stop()
    assert "server error (status 500" in text and "timeout (status 0" in text


def test_proxy_socketio_binary_event_forwards_its_attachments(tmp_path, backend):
    """A binary event (python-socketio's BINARY_EVENT) reaches the backend with its
    placeholders in args and the attachments, base64, in "attachments"."""
    from test_daemon_realtime import Daemon
    server = Daemon(tmp_path, f"[socketio]\nnamespaces = /, /chat\n[proxy]\n"
                              f"event_url = {backend.url}/event\n")
    client = socketio.Client()
    try:
        client.connect(f"http://127.0.0.1:{server.port}", namespaces=["/chat"],
                       transports=["websocket"])
        answer = client.call("echo", (b"\x00\xffbin", "text", b""), namespace="/chat",
                             timeout=TIMEOUT)
        path, _, sent = backend.seen[-1]
        assert (path, sent["event"]) == ("/event", "echo")
        assert sent["args"] == [{"_placeholder": True, "num": 0}, "text",
                                {"_placeholder": True, "num": 1}]
        assert [base64.b64decode(a) for a in sent["attachments"]] == [b"\x00\xffbin", b""]
        assert answer["got"] == sent["args"]
    finally:
        client.disconnect()
        server.stop()


def test_proxy_socketio_events_dead_backend(tmp_path, dead_backend):
    base = dead_backend
    server, clients = sio_daemon(tmp_path, f"event_url = {base}/event\njoin_url = {base}/join")
    try:
        clients.connect("a")
        assert clients.ack("a", "echo", 1) == [{"error": "backend error"}]
        assert clients.ack("a", "join", "ok-1") == [{"error": "backend error"}]
    finally:
        clients.close()
        server.stop()
