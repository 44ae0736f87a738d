# SPDX-License-Identifier: MIT
"""Debian's python3-socketio 5.7.2 (python3-engineio 4.3.4), an independent Socket.IO v5
implementation, against every Socket.IO server (sioserver.SIO_SERVERS): connect with auth
and refusal, namespaces, events, acks both ways, binary, rooms, broadcasts, server-side
disconnect.

WebSocket transport, and once with the default transports (long-polling, then the upgrade;
python-engineio's long-polling needs python3-requests, which scripts/deps.sh installs). The
short heartbeat (pingInterval 500 ms) makes the client's pong handling part of every test.
"""

import queue
import time

import pytest
import socketio

from eddyserver import TIMEOUT
from sioserver import SIO_SERVERS

EVENTS = ("auth", "message-back", "room-message", "all-message")


@pytest.fixture(params=SIO_SERVERS)
def server(request, start_sio_server):
    return start_sio_server(request.param, "--ping-interval", "500", "--ping-timeout", "500")


class Client:
    """A connected python-socketio client recording the application's events per namespace."""

    def __init__(self, server, namespaces=("/",), auth=None, ack_answer=None,
                 transports=("websocket",)):
        self.sio = socketio.Client(reconnection=False)
        self.events = {ns: queue.Queue() for ns in namespaces}
        self.disconnects = queue.Queue()
        self.connect_errors = queue.Queue()
        for ns in namespaces:
            for event in EVENTS:
                self.sio.on(event, self._recorder(ns, event), namespace=ns)
            self.sio.on("disconnect", lambda ns=ns: self.disconnects.put(ns), namespace=ns)
            self.sio.on("connect_error", lambda data, ns=ns: self.connect_errors.put((ns, data)),
                        namespace=ns)
            # The server's emit-with-ack asks with need-ack(42); the answer goes back as the
            # handler's return value.
            self.sio.on("need-ack", lambda n: ack_answer if ack_answer is not None else n + 1,
                        namespace=ns)
        self.sio.connect(server.url, transports=list(transports), namespaces=list(namespaces),
                         auth=auth, wait_timeout=TIMEOUT)

    def _recorder(self, ns, event):
        return lambda *args: self.events[ns].put((event, list(args)))

    def expect(self, event, ns="/"):
        """The next application event on ns: it must be `event`; returns its arguments."""
        try:
            got, args = self.events[ns].get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no {event!r} event on {ns} within {TIMEOUT}s") from None
        assert got == event, (got, args)
        return args

    def nothing_more(self, ns="/"):
        """No event arrived on ns before an ack round trip made after whatever was sent."""
        assert self.sio.call("message-with-ack", "marker", namespace=ns, timeout=TIMEOUT) == \
            "marker"
        assert self.events[ns].empty(), self.events[ns].get()

    def close(self):
        self.sio.disconnect()


@pytest.fixture
def clients(server):
    made = []

    def make(*args, **kwargs):
        client = Client(server, *args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_connect_with_auth_and_namespaces(clients):
    client = clients(namespaces=("/", "/custom"), auth={"token": "123", "n": [1, None]})
    assert client.expect("auth") == [{"token": "123", "n": [1, None]}]
    assert client.expect("auth", "/custom") == [{"token": "123", "n": [1, None]}]
    assert client.sio.get_sid("/") != client.sio.get_sid("/custom")


def test_connect_refused_on_main_namespace_only(server):
    refused = socketio.Client(reconnection=False)
    errors = queue.Queue()
    refused.on("connect_error", errors.put)
    # wait=False: with wait, connect() only gives up on a refused namespace after wait_timeout.
    refused.connect(server.url, transports=["websocket"], auth={"refuse": True}, wait=False)
    assert errors.get(timeout=TIMEOUT) == {"message": "refused"}
    assert "/" not in refused.namespaces
    refused.disconnect()
    custom = Client(server, namespaces=("/custom",), auth={"refuse": True})
    assert custom.expect("auth", "/custom") == [{"refuse": True}]
    custom.close()


def test_events_and_binary(clients):
    client = clients(namespaces=("/", "/custom"))
    client.expect("auth")
    client.expect("auth", "/custom")
    client.sio.emit("message", (1, "2", {"3": [True]}, "ünïcode"))
    assert client.expect("message-back") == [1, "2", {"3": [True]}, "ünïcode"]
    client.sio.emit("message", (b"\x00\x01\xff", {"nested": [b"ab"]}), namespace="/custom")
    assert client.expect("message-back", "/custom") == [b"\x00\x01\xff", {"nested": [b"ab"]}]


def test_acks_both_ways(clients):
    client = clients()
    client.expect("auth")
    assert client.sio.call("message-with-ack", (1, {"a": "b"}), timeout=TIMEOUT) == \
        (1, {"a": "b"})
    assert client.sio.call("message-with-ack", b"\x01\x02", timeout=TIMEOUT) == b"\x01\x02"
    # emit-with-ack: the server waits for this client's ack (need-ack 42 -> 43) and acks it.
    assert client.sio.call("emit-with-ack", timeout=TIMEOUT) == 43


def test_rooms_and_broadcasts(clients):
    a, b, c = clients(), clients(), clients()
    for client in (a, b, c):
        client.expect("auth")
    room = "python-room"
    for client in (a, b):
        assert client.sio.call("join", room, timeout=TIMEOUT) == "joined"
    a.sio.emit("to-room", (room, "hi", b"\x07"))
    assert b.expect("room-message") == ["hi", b"\x07"]
    assert b.sio.call("leave", room, timeout=TIMEOUT) == "left"
    c.sio.emit("to-room", (room, "second"))
    assert a.expect("room-message") == ["second"]
    a.sio.emit("to-all", ("everyone",))
    for client in (a, b, c):
        assert client.expect("all-message") == ["everyone"]
    for client in (a, b, c):
        client.nothing_more()


def test_server_disconnect(clients):
    client = clients(namespaces=("/", "/custom"))
    client.expect("auth")
    client.expect("auth", "/custom")
    client.sio.emit("server-disconnect", namespace="/custom")
    assert client.disconnects.get(timeout=TIMEOUT) == "/custom"
    # "/" is still connected on the same Engine.IO session.
    client.sio.emit("message", "still")
    assert client.expect("message-back") == ["still"]


def test_default_transports_polling_then_upgrade(clients):
    """Long-polling first (the handshake, the connect, events and binary both ways while the
    client may still poll), then the upgrade to WebSocket, and the session goes on."""
    client = clients(namespaces=("/", "/custom"), transports=("polling", "websocket"),
                     auth={"token": "p"})
    assert client.expect("auth") == [{"token": "p"}]
    assert client.expect("auth", "/custom") == [{"token": "p"}]
    client.sio.emit("message", (1, b"\x00\xff", {"n": [b"ab"]}))
    assert client.expect("message-back") == [1, b"\x00\xff", {"n": [b"ab"]}]
    assert client.sio.call("message-with-ack", b"\x01", namespace="/custom",
                           timeout=TIMEOUT) == b"\x01"
    deadline = time.monotonic() + TIMEOUT
    while client.sio.transport() != "websocket":
        assert time.monotonic() < deadline, "no upgrade to WebSocket"
        time.sleep(0.02)
    client.sio.emit("message", ("after", b"\x07"), namespace="/custom")
    assert client.expect("message-back", "/custom") == ["after", b"\x07"]
    assert client.sio.call("emit-with-ack", timeout=TIMEOUT) == 43
    client.nothing_more()
