# SPDX-License-Identifier: MIT
"""The eddy program's Socket.IO endpoint ([socketio], cmd/realtime.c) and server API ([api],
cmd/api.c, `eddy publish`): socket.io-client 4.8 sockets (tests/clients/sio_driver.js)
against the running daemon, tokens minted by PyJWT, the API called over HTTP and by the
command."""

import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import jwt

from eddyserver import BUILD, SANITIZER_PATTERNS, TIMEOUT
from sioserver import CLIENTS, node
from test_auth import free_port, read, wait_for

EDDY = os.path.join(BUILD, "eddy")
JWT_KEY = "jwt key: 32 bytes or more of secret"
API_KEY = "api key: sixteen bytes or more"


def token(sub="alice", key=JWT_KEY, **claims):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 60, **claims}, key,
                      algorithm="HS256")


class Daemon:
    """`eddy serve` with an admin listener, [socketio] and [api]; sections appended as given."""

    def __init__(self, tmp, extra=""):
        self.tmp, self.port, self.admin_port = tmp, free_port(), free_port()
        self.conf = tmp / "eddy.conf"
        (tmp / "www").mkdir(exist_ok=True)
        self.conf.write_text(
            f"[server]\nport = {self.port}\nworker_num = 2\n[admin]\nport = {self.admin_port}\n"
            f"[log]\nlog_level = info\n[api]\nkey = {API_KEY}\n{extra}\n")
        self.log_path = tmp / "serve.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([EDDY, "serve", "-c", str(self.conf)], cwd=tmp,
                                     stdout=self.log, stderr=self.log)
        try:
            wait_for(lambda: "serving files" in read(self.log_path) or
                     self.proc.poll() is not None, "the server to start")
        except AssertionError:
            self.proc.kill()
            self.proc.wait()
            raise
        assert self.proc.poll() is None, read(self.log_path)

    def api(self, method, body=None, key=API_KEY, raw=None, http_method="POST"):
        """Calls the API: (status, decoded JSON answer)."""
        data = raw if raw is not None else json.dumps(body or {}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/api/{method}",
                                     data=data if http_method == "POST" else None,
                                     method=http_method)
        if key is not None:
            req.add_header("Authorization", f"apikey {key}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read()), err.headers

    def publish(self, *args, env=None):
        full = dict(os.environ)
        full.update(env or {})
        return subprocess.run([EDDY, *args[:1], "-c", str(self.conf), *args[1:]], cwd=self.tmp,
                              env=full, capture_output=True, text=True, timeout=TIMEOUT)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=TIMEOUT) == 0
        self.log.close()
        text = read(self.log_path)
        for pattern in SANITIZER_PATTERNS:
            assert pattern not in text, text
        return text


class Clients:
    """socket.io-client sockets in one node process (sio_driver.js)."""

    def __init__(self, port):
        self.proc = subprocess.Popen([node(), os.path.join(CLIENTS, "sio_driver.js"),
                                      f"http://127.0.0.1:{port}"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=CLIENTS)
        self.reports, self.seen = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.reports.put(json.loads(line))

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def _pull(self, left):
        """Moves the next report, if one comes within left seconds, to seen; returns it."""
        try:
            r = self.reports.get(timeout=max(left, 0.001))
        except queue.Empty:
            return None
        self.seen.append(r)
        return r

    def wait(self, what, timeout=TIMEOUT, **match):
        """The first report (seen or arriving) with every field of match."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.seen:
                if all(r.get(k) == v for k, v in match.items()):
                    self.seen.remove(r)
                    return r
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}; seen {self.seen[-20:]}"
            self._pull(left)

    def probe_until(self, send, names, is_probe, what, timeout=TIMEOUT):
        """Calls send() every 0.2 s until each of names received an event is_probe(report)
        accepts (subscriptions on other nodes become active asynchronously); the probes
        seen are consumed."""
        pending, deadline = set(names), time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"no {what} reached {pending}"
            send()
            until = time.monotonic() + 0.2
            while pending and time.monotonic() < until:
                for r in list(self.seen):
                    if r["type"] == "event" and is_probe(r):
                        self.seen.remove(r)
                        pending.discard(r["name"])
                self._pull(until - time.monotonic())

    def connect(self, name, **opts):
        self.send(cmd="connect", name=name, **opts)
        r = self.wait(f"{name} to connect", name=name, type="connect")
        return r["id"]

    def refused(self, name, **opts):
        self.send(cmd="connect", name=name, **opts)
        return self.wait(f"{name} to be refused", name=name, type="connect_error")

    def ack(self, name, event, *args):
        self.send(cmd="emit", name=name, event=event, args=list(args), ack=True)
        return self.wait(f"{name}'s ack of {event}", name=name, type="ack", event=event)["args"]

    def events(self, name, until):
        """The events name received, in order, up to the event until (included)."""
        last = self.wait(f"{until} on {name}", name=name, type="event", event=until)
        got = [r for r in self.seen if r["name"] == name and r["type"] == "event"]
        for r in got:
            self.seen.remove(r)
        return [(r["event"], r["args"]) for r in got + [last]]

    def close(self):
        try:
            self.send(cmd="exit")
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_socketio_connect_checks_the_token_in_the_auth_payload_or_the_query(tmp_path):
    server = Daemon(tmp_path, f"[auth]\nenabled = true\nkey = {JWT_KEY}\n")
    clients = Clients(server.port)
    try:
        sid = clients.connect("alice", auth={"token": token(info={"name": "Alice"})})
        clients.connect("bob", query={"token": token("bob")}, transports=["websocket"])
        nobody = clients.refused("nobody")
        assert nobody["message"] == "authentication required"
        assert nobody["data"] == {"status": 401, "reason": "no token"}
        forged = clients.refused("forged", auth={"token": token(key="another key, also 32 bytes long")})
        assert forged["message"] == "invalid token: bad signature"
        expired = clients.refused("expired", auth={"token": token(exp=int(time.time()) - 10)})
        assert expired["message"] == "invalid token: expired"
        # The token's sub is the socket's user, its info claim the socket's data.
        status, answer, _ = server.api("presence", {"room": sid})
        assert status == 200, answer
        assert answer["result"]["sockets"] == [{"id": sid, "user": "alice",
                                                "data": {"name": "Alice"}}]
        assert answer["result"]["users"] == ["alice"]
        # A rooms claim joins the socket to those rooms as it connects (client_rooms is
        # empty: the client could not join them itself).
        carol = clients.connect("carol", auth={"token": token("carol", rooms=["team", "x:1"])})
        for room in ("team", "x:1"):
            status, answer, _ = server.api("presence", {"room": room})
            assert [s["id"] for s in answer["result"]["sockets"]] == [carol]
        assert server.api("emit", {"room": "team", "event": "hello", "data": 1})[0] == 200
        assert clients.events("carol", "hello") == [("hello", [1])]
        assert clients.ack("carol", "leave", "team") == [{"error": "not allowed"}]
        bad = clients.refused("bad", auth={"token": token("dave", rooms="team")})
        assert bad["message"] == "invalid token: rooms is not an array of at most 64 room names"
    finally:
        clients.close()
        log = server.stop()
    assert "socketio: refused 127.0.0.1 on /: 401 no token" in log
    assert "socketio: refused 127.0.0.1 on /: 401 bad signature" in log
    assert JWT_KEY not in log and API_KEY not in log


def test_without_auth_sockets_connect_anonymously_and_join_only_allowed_rooms(tmp_path):
    server = Daemon(tmp_path, "[socketio]\nclient_rooms = chat:*, lobby\n")
    clients = Clients(server.port)
    try:
        sid = clients.connect("anon")
        assert clients.ack("anon", "join", "chat:42") == [{"ok": True}]
        assert clients.ack("anon", "join", "lobby") == [{"ok": True}]
        assert clients.ack("anon", "join", "lobby2") == [{"error": "not allowed"}]
        assert clients.ack("anon", "join", "secret") == [{"error": "not allowed"}]
        assert clients.ack("anon", "join", 7) == [
            {"error": "the first argument must be a room name (a string)"}]
        status, answer, _ = server.api("rooms", {})
        assert status == 200
        assert sorted(r["name"] for r in answer["result"]["rooms"]) == ["chat:42", "lobby"]
        assert clients.ack("anon", "leave", "lobby") == [{"ok": True}]
        status, answer, _ = server.api("presence", {"room": "chat:42"})
        assert answer["result"]["sockets"] == [{"id": sid, "user": None}]
        status, answer, _ = server.api("rooms", {})
        assert [r["name"] for r in answer["result"]["rooms"]] == ["chat:42"]
    finally:
        clients.close()
        server.stop()


def test_no_client_joins_by_default(tmp_path):
    server = Daemon(tmp_path)
    clients = Clients(server.port)
    try:
        clients.connect("anon")
        assert clients.ack("anon", "join", "lobby") == [{"error": "not allowed"}]
        assert server.api("rooms", {})[1]["result"]["rooms"] == []
    finally:
        clients.close()
        server.stop()


def test_api_and_eddy_publish_reach_the_right_sockets(tmp_path):
    server = Daemon(tmp_path, f"[auth]\nenabled = true\nkey = {JWT_KEY}\n"
                              "[socketio]\nclient_rooms = chat:*\n")
    clients = Clients(server.port)
    try:
        # Each socket on one transport for the whole test: a broadcast that meets a socket
        # in its upgrade from polling to WebSocket was seen delivered twice (1 run in ~60,
        # under load), a fault of the layer this test is not about.
        tab1 = clients.connect("tab1", auth={"token": token("alice")}, transports=["polling"])
        clients.connect("tab2", auth={"token": token("alice")}, transports=["websocket"])
        bob = clients.connect("bob", auth={"token": token("bob")}, transports=["websocket"])
        assert clients.ack("tab1", "join", "chat:1") == [{"ok": True}]

        def emit(body):
            status, answer, _ = server.api("emit", body)
            assert (status, answer) == (200, {"result": {}})

        emit({"room": "chat:1", "event": "to-room", "args": [1, {"x": "y"}]})
        emit({"user": "alice", "event": "to-alice", "data": "hi"})
        emit({"socket": bob, "event": "to-bob", "args": []})
        emit({"rooms": ["chat:1"], "users": ["bob"], "event": "union"})
        emit({"except_rooms": ["chat:1"], "event": "all-but-room"})
        out = server.publish("publish", "--user", "alice", "by-command", '"text"', "[1,2]")
        assert (out.returncode, out.stdout) == (0, '{"result":{}}\n'), out.stderr
        out = server.publish("publish", "--socket", tab1, "to-tab1")
        assert out.returncode == 0, out.stderr
        emit({"event": "end"})

        assert clients.events("tab1", "end") == [
            ("to-room", [1, {"x": "y"}]), ("to-alice", ["hi"]), ("union", []),
            ("by-command", ["text", [1, 2]]), ("to-tab1", []), ("end", [])]
        assert clients.events("tab2", "end") == [
            ("to-alice", ["hi"]), ("all-but-room", []), ("by-command", ["text", [1, 2]]),
            ("end", [])]
        assert clients.events("bob", "end") == [
            ("to-bob", []), ("union", []), ("all-but-room", []), ("end", [])]

        status, answer, _ = server.api("emit", {"socket": "A" * 20, "event": "x"})
        assert (status, answer["error"]["message"]) == (404, "no such socket")
        out = server.publish("publish", "--socket", "A" * 20, "x")
        assert out.returncode == 4 and "no such socket" in out.stderr
    finally:
        clients.close()
        server.stop()


def test_api_key_is_required_and_bad_calls_are_answered_in_json(tmp_path):
    server = Daemon(tmp_path)
    try:
        status, answer, headers = server.api("stats", key=None)
        assert status == 401 and headers["WWW-Authenticate"] == 'apikey realm="eddy"'
        assert answer["error"]["status"] == 401
        assert server.api("stats", key="wrong key, long enough")[0] == 401
        assert server.api("stats", key=API_KEY[:-1])[0] == 401
        assert server.api("stats")[0] == 200
        assert server.api("stats", http_method="GET")[0] == 405
        assert server.api("nosuch", {})[:2] == (404, {"error": {"status": 404,
                                                                "message": "no such method"}})
        assert server.api("emit", raw=b"{not json")[0] == 400
        assert server.api("emit", raw=b"[1]")[0] == 400
        assert server.api("emit", {"room": "r"})[1]["error"]["message"] == "event is required"
        assert server.api("emit", {"event": "e", "args": 3})[0] == 400
        assert server.api("emit", {"event": "e", "namespace": "/nope"})[0] == 404
        assert server.api("emit", raw=b'{"event":"' + b"x" * 70000 + b'"}')[0] == 413
        # The API is on the admin listener only when there is one.
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}/api/stats", data=b"{}",
                                     headers={"Authorization": f"apikey {API_KEY}"})
        try:
            urllib.request.urlopen(req, timeout=TIMEOUT)
            raise AssertionError("the public listener answered the API")
        except urllib.error.HTTPError as err:
            assert err.code in (404, 405)
        out = server.publish("publish", "ev", env={"EDDY_API_KEY": "wrong key, long enough"})
        assert out.returncode == 4 and '"status":401' in out.stderr
        out = server.publish("publish", "ev", "{bad")
        assert out.returncode == 2 and "is not a JSON value" in out.stderr
    finally:
        log = server.stop()
    assert "api: refused 127.0.0.1" in log and API_KEY not in log


def test_eddy_publish_without_a_key_or_a_server(tmp_path):
    conf = tmp_path / "eddy.conf"
    conf.write_text(f"[server]\nport = {free_port()}\n")
    out = subprocess.run([EDDY, "publish", "-c", str(conf), "ev"], capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 2 and "no [api] key" in out.stderr
    conf.write_text(f"[server]\nport = {free_port()}\n[api]\nkey = {API_KEY}\n")
    out = subprocess.run([EDDY, "publish", "-c", str(conf), "ev"], capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 1 and "cannot connect" in out.stderr
    conf.write_text("[api]\nkey = short\n")
    out = subprocess.run([EDDY, "config", "check", "-c", str(conf)], capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.returncode == 2 and "[api] key: an API key has 16 to 256 bytes" in out.stderr
    assert "short" not in out.stderr


def test_presence_history_rooms_stats_and_disconnect(tmp_path):
    server = Daemon(tmp_path, f"[auth]\nenabled = true\nkey = {JWT_KEY}\n"
                              "[socketio]\nnamespaces = /, /chat\nhistory_size = 2\n")
    clients = Clients(server.port)
    try:
        a1 = clients.connect("a1", nsp="/chat", auth={"token": token("alice")})
        a2 = clients.connect("a2", nsp="/chat", auth={"token": token("alice")})
        b = clients.connect("b", nsp="/chat", auth={"token": token("bob", data=[1])})
        clients.connect("other", auth={"token": token("carol")})
        # Server-side joins: every tab of alice, and one socket of bob's.
        assert server.api("join", {"namespace": "/chat", "room": "team", "user": "alice"})[1] == \
            {"result": {"sockets": 2}}
        assert server.api("join", {"namespace": "/chat", "room": "team", "socket": b})[1] == \
            {"result": {"sockets": 1}}
        status, answer, _ = server.api("presence", {"namespace": "/chat", "room": "team"})
        result = answer["result"]
        assert (result["num_sockets"], result["num_users"]) == (3, 2)
        assert sorted(s["id"] for s in result["sockets"]) == sorted([a1, a2, b])
        assert sorted(result["users"]) == ["alice", "bob"]
        assert [s.get("data") for s in result["sockets"] if s["id"] == b] == [[1]]
        assert server.api("rooms", {"namespace": "/chat"})[1]["result"]["rooms"] == [
            {"name": "team", "sockets": 3, "users": 2}]

        for n in range(3):
            server.api("emit", {"namespace": "/chat", "room": "team", "event": "msg",
                                "args": [n]})
        status, answer, _ = server.api("history", {"namespace": "/chat", "room": "team"})
        pubs = answer["result"]["publications"]
        assert [(p["event"], p["args"]) for p in pubs] == [("msg", [1]), ("msg", [2])]
        assert all(isinstance(p["offset"], str) and p["offset"] for p in pubs)
        assert pubs[0]["offset"] != pubs[1]["offset"]
        assert len(server.api("history", {"namespace": "/chat", "room": "team",
                                          "limit": 1})[1]["result"]["publications"]) == 1
        assert server.api("history", {"namespace": "/chat", "room": "none"})[1] == \
            {"result": {"publications": []}}
        # Without a room: what was emitted to the whole namespace.
        server.api("emit", {"namespace": "/chat", "event": "all", "data": "x"})
        pubs = server.api("history", {"namespace": "/chat"})[1]["result"]["publications"]
        assert [(p["event"], p["args"]) for p in pubs] == [("all", ["x"])]

        stats = server.api("stats")[1]["result"]
        assert stats["namespaces"] == [{"name": "/", "sockets": 1, "rooms": 0},
                                       {"name": "/chat", "sockets": 3, "rooms": 1}]

        assert server.api("leave", {"namespace": "/chat", "room": "team", "socket": a2})[1] == \
            {"result": {"sockets": 1}}
        assert server.api("disconnect", {"namespace": "/chat", "user": "alice"})[1] == \
            {"result": {"disconnected": 2}}
        assert clients.wait("a1's disconnect", name="a1", type="disconnect")["reason"] == \
            "io server disconnect"
        clients.wait("a2's disconnect", name="a2", type="disconnect")
        result = server.api("presence", {"namespace": "/chat", "room": "team"})[1]["result"]
        assert [s["id"] for s in result["sockets"]] == [b] and result["users"] == ["bob"]
        assert server.api("disconnect", {"namespace": "/chat", "socket": b, "close": True})[1] \
            == {"result": {"disconnected": 1}}
        clients.wait("b's disconnect", name="b", type="disconnect")
        # The room has no member left, its history stays for history_ttl.
        assert server.api("rooms", {"namespace": "/chat"})[1]["result"]["rooms"] == []
        assert server.api("stats")[1]["result"]["namespaces"][1] == \
            {"name": "/chat", "sockets": 0, "rooms": 0}
        assert len(server.api("history", {"namespace": "/chat", "room": "team"})[1]
                   ["result"]["publications"]) == 2
    finally:
        clients.close()
        server.stop()


def test_socketio_settings_are_checked_with_file_and_line(tmp_path):
    conf = tmp_path / "eddy.conf"
    for line, why in [("namespaces = chat", '"chat" is not a list of namespaces'),
                      ("ping_interval = 0", '"0" is not a number of seconds'),
                      ("client_rooms = a*b", '"a*b" is not a list of rooms'),
                      ("history_size = -1", '"-1" is not a count'),
                      ("max_http_buffer_size = 10", '"10" is not a byte count'),
                      ("enabled = maybe", '"maybe" is not true or false'),
                      ("pingInterval = 5", "unknown key")]:
        conf.write_text(f"[server]\nport = 0\n[socketio]\n{line}\n")
        out = subprocess.run([EDDY, "config", "check", "-c", str(conf)], capture_output=True,
                             text=True, timeout=TIMEOUT)
        key = line.split(" =")[0]
        assert out.returncode == 2, line
        assert f"{conf}:4: [socketio] {key}: {why}" in out.stderr, out.stderr


def test_socketio_disabled_leaves_the_path_to_the_static_files(tmp_path):
    server = Daemon(tmp_path, "[socketio]\nenabled = false\n")
    try:
        url = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling"
        try:
            urllib.request.urlopen(url, timeout=TIMEOUT)
            raise AssertionError("the Socket.IO endpoint answered")
        except urllib.error.HTTPError as err:
            assert err.code == 404
        status, answer, _ = server.api("emit", {"event": "e"})
        assert status == 503 and "enabled = false" in answer["error"]["message"]
        assert server.api("stats")[1]["result"]["namespaces"] == []
    finally:
        server.stop()
