# SPDX-License-Identifier: MIT
"""What Socket.IO clients may do by themselves on the eddy program ([socketio] client_publish,
client_presence, client_names, history_on_join; cmd/realtime.c): socket.io-client 4.8 sockets
(tests/clients/sio_driver.js) and python-socketio against the running daemon. Each permission
is off by default, refused outside its rooms and to non-members, and the identity the daemon
attaches to a message is the sender's, whatever the client writes."""

import queue
import subprocess

import socketio

from eddyserver import TIMEOUT
from eddyserver import read_text as read
from test_daemon_realtime import EDDY, JWT_KEY, Clients, Daemon, token

CHAT = ("[socketio]\nclient_rooms = chat:*, lobby\nclient_publish = chat:*\n"
        "client_presence = chat:*\nclient_names = true\nhistory_size = 20\n"
        "history_on_join = 3\n")


def message(clients, name):
    return clients.wait(f"a message on {name}", name=name, type="event",
                        event="message")["args"][0]


def test_publish_reaches_the_room_with_the_identity_the_server_knows(tmp_path):
    server = Daemon(tmp_path, CHAT + f"[auth]\nenabled = true\nrequired = false\nkey = {JWT_KEY}\n")
    clients = Clients(server.port)
    try:
        alice = clients.connect("alice", auth={"token": token("alice", data={"role": "admin"}),
                                               "name": "not alice"})
        anon = clients.connect("anon", auth={"name": "Zoé"})
        out = clients.connect("outsider", auth={"name": "out"})
        for name in ("alice", "anon"):
            assert clients.ack(name, "join", "chat:1")[0]["ok"] is True
        assert clients.ack("outsider", "join", "chat:2")[0]["ok"] is True
        # A client claiming another identity in its data gets it as data only: the server's
        # "from" is the sender's socket id, the token's sub and data (the name a socket with
        # a token gives is ignored).
        spoof = {"text": "hi", "from": {"id": anon, "user": "bob"}, "user": "bob"}
        assert clients.ack("alice", "publish", "chat:1", spoof) == [{"ok": True}]
        want = {"room": "chat:1", "data": spoof,
                "from": {"id": alice, "user": "alice", "data": {"role": "admin"}}}
        assert message(clients, "alice") == want  # the sender gets it too
        assert message(clients, "anon") == want
        assert clients.ack("anon", "publish", "chat:1", 42) == [{"ok": True}]
        # An anonymous socket's name is its data; it has no user id.
        want = {"room": "chat:1", "data": 42,
                "from": {"id": anon, "user": None, "data": {"name": "Zoé"}}}
        assert message(clients, "alice") == want
        assert message(clients, "anon") == want
        # Refused: outside client_publish (lobby may be joined, not published to), a room the
        # socket is not in, bad arguments.
        assert clients.ack("alice", "join", "lobby") == [{"ok": True, "history": []}]
        assert clients.ack("alice", "publish", "lobby", "x") == [{"error": "not allowed"}]
        assert clients.ack("alice", "publish", "chat:2", "x") == [{"error": "not in the room"}]
        assert clients.ack("alice", "publish", 5, "x") == [
            {"error": "the first argument must be a room name (a string)"}]
        assert clients.ack("alice", "publish", "chat:1", "x", "y") == [
            {"error": "publish takes a room and one JSON value (no binary)"}]
        # The outsider got nothing from chat:1: its first message is its own, in chat:2.
        assert clients.ack("outsider", "publish", "chat:2", "own") == [{"ok": True}]
        assert clients.events("outsider", "message") == [("message", [{
            "room": "chat:2", "data": "own",
            "from": {"id": out, "user": None, "data": {"name": "out"}}}])]
    finally:
        clients.close()
        server.stop()


def test_permissions_are_off_by_default(tmp_path):
    server = Daemon(tmp_path, "[socketio]\nclient_rooms = chat:*\n")
    clients = Clients(server.port)
    try:
        sid = clients.connect("a", auth={"name": "a"})
        # The join's answer carries neither presence nor history.
        assert clients.ack("a", "join", "chat:1") == [{"ok": True}]
        assert clients.ack("a", "publish", "chat:1", "x") == [{"error": "not allowed"}]
        assert clients.ack("a", "presence", "chat:1") == [{"error": "not allowed"}]
        # Without client_names the name is not the socket's data.
        status, answer, _ = server.api("presence", {"room": "chat:1"})
        assert answer["result"]["sockets"] == [{"id": sid, "user": None}]
        clients.connect("b")
        clients.ack("b", "join", "chat:1")
        assert server.api("emit", {"room": "chat:1", "event": "marker"})[0] == 200
        # No joined event reached a (its first event is the marker).
        assert clients.events("a", "marker") == [("marker", [])]
        assert "clients may publish" not in read(server.log_path)
    finally:
        clients.close()
        server.stop()


class PyClient:
    """A python-socketio client recording the events it gets."""

    def __init__(self, port, name):
        self.sio = socketio.Client(reconnection=False)
        self.events = queue.Queue()
        for event in ("joined", "left", "message"):
            self.sio.on(event, lambda arg, event=event: self.events.put((event, arg)))
        self.sio.connect(f"http://127.0.0.1:{port}", transports=["websocket"],
                         auth={"name": name}, wait_timeout=TIMEOUT)

    def call(self, *args):
        return self.sio.call(*args, timeout=TIMEOUT)

    def next(self):
        return self.events.get(timeout=TIMEOUT)


def test_presence_joined_left_and_disconnect(tmp_path):
    server = Daemon(tmp_path, CHAT)
    clients = Clients(server.port)
    py = None
    try:
        assert ("socketio: clients may publish to chat:*, see who is in chat:*, name "
                "themselves; joins carry the last 3 events") in read(server.log_path)
        a = clients.connect("a", auth={"name": "ann"})
        answer = clients.ack("a", "join", "chat:p")[0]
        assert answer["presence"] == {"num_sockets": 1, "num_users": 0, "sockets": [
            {"id": a, "user": None, "data": {"name": "ann"}}]}
        py = PyClient(server.port, "py")
        answer = py.call("join", "chat:p")
        assert answer["ok"] is True
        assert sorted(s["data"]["name"] for s in answer["presence"]["sockets"]) == ["ann", "py"]
        b = py.sio.get_sid("/")
        joined = clients.wait("joined", name="a", type="event", event="joined")["args"]
        assert joined == [{"room": "chat:p", "id": b, "user": None, "data": {"name": "py"}}]
        # Asked: members of a client_presence room only.
        assert py.call("presence", "chat:p")["presence"]["num_sockets"] == 2
        assert py.call("presence", "chat:q") == {"error": "not in the room"}
        # Not a client_presence room: no presence in the answer.
        assert py.call("join", "lobby") == {"ok": True, "history": []}
        assert py.call("presence", "lobby") == {"error": "not allowed"}
        # The python client goes away without leaving: its rooms hear it.
        py.sio.disconnect()
        py = None
        left = clients.wait("left", name="a", type="event", event="left")["args"]
        assert left == [{"room": "chat:p", "id": b, "user": None, "data": {"name": "py"}}]
        assert clients.ack("a", "presence", "chat:p")[0]["presence"]["num_sockets"] == 1
        # A leave by the server API is announced too.
        c = clients.connect("c", auth={"name": "cy"})
        clients.ack("c", "join", "chat:p")
        clients.wait("joined", name="a", type="event", event="joined")
        assert server.api("leave", {"socket": c, "room": "chat:p"})[1] == {
            "result": {"sockets": 1}}
        left = clients.wait("left", name="a", type="event", event="left")["args"]
        assert left == [{"room": "chat:p", "id": c, "user": None, "data": {"name": "cy"}}]
    finally:
        if py is not None:
            py.sio.disconnect()
        clients.close()
        server.stop()


def test_history_on_join_gives_the_last_messages_without_presence_events(tmp_path):
    server = Daemon(tmp_path, CHAT)
    clients = Clients(server.port)
    try:
        a = clients.connect("a", auth={"name": "ann"})
        clients.ack("a", "join", "chat:h")
        assert clients.ack("a", "join", "chat:h")[0]["history"] == []
        for i in range(5):
            assert clients.ack("a", "publish", "chat:h", {"text": f"m{i}"}) == [{"ok": True}]
            if i == 2:  # a joined event in the room's history
                clients.connect("b", auth={"name": "bo"})
                clients.ack("b", "join", "chat:h")
        clients.connect("late", auth={"name": "late"})
        answer = clients.ack("late", "join", "chat:h")[0]
        history = answer["history"]
        assert [h["event"] for h in history] == ["message"] * 3
        assert [h["args"][0]["data"]["text"] for h in history] == ["m2", "m3", "m4"]
        assert history[0]["args"][0]["from"] == {"id": a, "user": None,
                                                 "data": {"name": "ann"}}
        assert all(isinstance(h["offset"], str) and h["offset"] for h in history)
        assert answer["presence"]["num_sockets"] == 3
        # A room the server API emitted to: its events are history too.
        server.api("emit", {"room": "chat:api", "event": "news", "data": 1})
        assert clients.ack("late", "join", "chat:api")[0]["history"][0]["event"] == "news"
    finally:
        clients.close()
        server.stop()


def test_bad_names_are_refused_at_connect(tmp_path):
    server = Daemon(tmp_path, CHAT)
    clients = Clients(server.port)
    try:
        for i, name in enumerate(["", "x" * 65, "a\nb", 7, None]):
            refused = clients.refused(f"n{i}", auth={"name": name})
            assert refused["message"] == "invalid name", (name, refused)
        clients.connect("ok", auth={"name": "x" * 64})
        clients.connect("none")
        # No name: no data.
        assert clients.ack("none", "join", "chat:n")[0]["presence"]["sockets"][0][
            "data"] is None
    finally:
        clients.close()
        server.stop()


def test_history_on_join_needs_a_history_and_bad_values_are_refused(tmp_path):
    conf = tmp_path / "eddy.conf"
    conf.write_text("[socketio]\nhistory_on_join = 5\n")
    (tmp_path / "www").mkdir()
    run = subprocess.run([EDDY, "serve", "-c", str(conf)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert run.returncode != 0
    assert "[socketio] history_on_join needs history_size" in run.stderr
    for line, why in [("client_publish = a*b", "not a list of rooms"),
                      ("client_presence = ,", "not a list of rooms"),
                      ("client_names = maybe", "not true or false"),
                      ("history_on_join = 1001", "not a count (0-1000")]:
        conf.write_text(f"[socketio]\n{line}\n")
        check = subprocess.run([EDDY, "config", "check", "-c", str(conf)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=TIMEOUT)
        assert check.returncode == 2, check
        assert f"eddy.conf:2: [socketio] {line.split()[0]}" in check.stderr, check.stderr
        assert why in check.stderr, check.stderr


def test_a_recovered_socket_keeps_its_token_data(tmp_path):
    """A recovered socket skips the connect check (Socket.IO's skipMiddlewares), so its
    token's data claim is read again from the token it reconnects with."""
    server = Daemon(tmp_path, CHAT + f"recovery_max_disconnection = 30\n[auth]\nenabled = true\n"
                                     f"key = {JWT_KEY}\n")
    clients = Clients(server.port)
    try:
        clients.connect("a", auth={"token": token("ann")})
        clients.ack("a", "join", "chat:r")
        b = clients.connect("b", auth={"token": token("bo", info={"plan": "gold"})},
                            reconnection=True)
        clients.ack("b", "join", "chat:r")
        clients.send(cmd="drop", name="b")
        again = clients.wait("b to reconnect", name="b", type="connect")
        assert again["id"] == b and again["recovered"] is True, again
        presence = clients.ack("a", "presence", "chat:r")[0]["presence"]
        assert {s["id"]: (s["user"], s.get("data")) for s in presence["sockets"]}[b] == \
            ("bo", {"plan": "gold"}), presence
    finally:
        clients.close()
        server.stop()


def test_a_recovered_socket_is_announced_again_with_its_name(tmp_path):
    server = Daemon(tmp_path, CHAT + "recovery_max_disconnection = 30\n")
    clients = Clients(server.port)
    try:
        clients.connect("a", auth={"name": "ann"})
        clients.ack("a", "join", "chat:r")
        b = clients.connect("b", auth={"name": "bo"}, reconnection=True)
        clients.ack("b", "join", "chat:r")
        clients.ack("b", "join", "chat:solo")
        who = {"room": "chat:r", "id": b, "user": None, "data": {"name": "bo"}}
        assert clients.wait("joined", name="a", type="event", event="joined")["args"][0] == who
        # (Each event carries its offset last, with recovery on.)
        # b's transport is lost: it leaves its rooms, then comes back with its state (same
        # id, same rooms) without a join of its own, and the room hears it is back.
        clients.send(cmd="drop", name="b")
        assert clients.wait("left", name="a", type="event", event="left")["args"][0] == who
        again = clients.wait("b to reconnect", name="b", type="connect")
        assert again["id"] == b and again["recovered"] is True, again
        assert clients.wait("joined", name="a", type="event", event="joined")["args"][0] == who
        presence = clients.ack("a", "presence", "chat:r")[0]["presence"]
        assert sorted(s["data"]["name"] for s in presence["sockets"]) == ["ann", "bo"]
        assert clients.ack("b", "publish", "chat:r", "back") == [{"ok": True}]
        assert message(clients, "a")["from"] == {"id": b, "user": None, "data": {"name": "bo"}}
        # The daemon's rooms table counts it again: the room only b is in is listed.
        rooms = server.api("rooms", {})[1]["result"]["rooms"]
        assert sorted(r["name"] for r in rooms) == ["chat:r", "chat:solo"], rooms
    finally:
        clients.close()
        server.stop()
