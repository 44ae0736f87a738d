# SPDX-License-Identifier: MIT
"""Scale-out faults (issue 12), with sequence numbers: a Redis outage (SIGSTOP past the
command timeout) and a connection to Redis cut by a small TCP proxy the test controls.
Local delivery goes on meanwhile; once Redis is back, every member, on the node that
published during the outage and on the others, recovers what it missed exactly once:
nothing lost, nothing twice (the broadcasts a node delivered locally during the outage are
skipped by its members' recoveries), including a member that joined during the outage and
one that disconnected during it.
"""

import signal
import socket
import threading
import time

import pytest

from eddyserver import TIMEOUT, stop_all, wait_for
from sioserver import SioServer
from test_daemon_broker import get, sample
from test_daemon_realtime import Daemon
from test_scaleout import clients, cluster, gaps, redis  # noqa: F401 (fixtures)


class Proxy:
    """A TCP proxy on a free loopback port to 127.0.0.1:target, one thread per direction.
    cut(): closes both sides of every connection and refuses new ones; freeze(): stops
    forwarding (connections stay open, bytes wait); resume(): forwards again."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []
        self.refusing = False
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                down.close()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=TIMEOUT)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            with self.lock:
                self.pairs.append((down, up))
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.refusing = True
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def freeze(self):
        self.flowing.clear()

    def resume(self):
        self.refusing = False
        self.flowing.set()

    def close(self):
        self.closed = True
        self.resume()
        self.cut()
        self.listener.close()


@pytest.fixture
def proxy(redis):  # noqa: F811
    p = Proxy(redis.port)
    yield p
    p.close()


def seqs_of(clients, name, count):
    """The seqs of the next count room messages of name, checked for duplicates."""
    got = [s for s, _ in clients.room_messages(name, count, timeout=3 * TIMEOUT)]
    assert len(set(got)) == len(got), f"{name} got some twice: {gaps(sorted(got))}"
    return got


def settle(clients, sender, members):
    """Every node's interest is active and the last probes are in."""
    clients.probe(sender, members)
    assert clients.ack(sender, "message-with-ack", "sync") == ["sync"]
    for m in members:
        clients.nothing_more(m, 0.3)


def test_outage_exactly_once_on_every_node(cluster, redis, clients):  # noqa: F811
    """Redis frozen past the nodes' command timeout; both nodes publish meanwhile (each
    delivers its own at once, to its own members). Once Redis is back every transport
    closes and each member recovers, on its node: ma (node A) and mb (node B), members all
    along, end with every message exactly once; mj, which connected and joined on A during
    the outage, too (what it had not got comes from history, what A gave it is skipped);
    md, which disconnected from A during the outage and reconnects once Redis is back, gets
    exactly what it had not got."""
    a, b = cluster(2, "--recovery", "60000")
    first = {}
    for name, server in (("ma", a), ("mb", b), ("md", a)):
        first[name] = clients.connect(name, server, reconnection=name != "md")
        assert clients.ack(name, "join", "r") == ["joined"]
    clients.connect("sa", a)
    clients.connect("sb", b)
    settle(clients, "sa", ["ma", "mb", "md"])
    settle(clients, "sb", ["ma", "mb", "md"])
    md_offset = clients.last_offset["md"]
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        a.wait_log("Redis broker down", timeout=3 * TIMEOUT)
        b.wait_log("Redis broker down", timeout=3 * TIMEOUT)
        for i in range(10):
            clients.emit("sa", "to-room", "r", {"seq": i})
            clients.emit("sb", "to-room", "r", {"seq": 100 + i})
        for s in ("sa", "sb"):
            assert clients.ack(s, "message-with-ack", "sync") == ["sync"]
        # Local delivery went on: each node's members got their node's messages at once.
        assert sorted(seqs_of(clients, "ma", 10)) == list(range(10))
        assert sorted(seqs_of(clients, "mb", 10)) == list(range(100, 110))
        assert sorted(seqs_of(clients, "md", 10)) == list(range(10))
        clients.send(cmd="drop", name="md")
        clients.wait("md's disconnect", name="md", type="disconnect")
        clients.connect("mj", a, reconnection=True)
        assert clients.ack("mj", "join", "r") == ["joined"]
        for i in range(10, 20):
            clients.emit("sa", "to-room", "r", {"seq": i})
            clients.emit("sb", "to-room", "r", {"seq": 100 + i})
        for s in ("sa", "sb"):
            assert clients.ack(s, "message-with-ack", "sync") == ["sync"]
        assert sorted(seqs_of(clients, "mj", 10)) == list(range(10, 20))
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    a.wait_log("Redis broker back", timeout=3 * TIMEOUT)
    b.wait_log("Redis broker back", timeout=3 * TIMEOUT)
    everything = sorted(set(range(20)) | set(range(100, 120)))
    for name in ("ma", "mb", "mj"):
        r = clients.wait(f"{name} to reconnect", 3 * TIMEOUT, name=name, type="connect")
        assert r["recovered"], f"{name} not recovered:\n" + "\n".join(a.log_lines + b.log_lines)
    # What each got during the outage, and what its recovery brought: each message once.
    ma = list(range(10)) + seqs_of(clients, "ma", 30)
    mb = list(range(100, 110)) + seqs_of(clients, "mb", 30)
    mj = list(range(10, 20)) + seqs_of(clients, "mj", 30)
    for name, got in (("ma", ma), ("mb", mb), ("mj", mj)):
        assert sorted(got) == everything, f"{name}: {gaps(sorted(got))}"
    again = clients.connect("md2", a, auth={"pid": first["md"]["pid"], "offset": md_offset})
    assert again["id"] == first["md"]["id"], "not recovered:\n" + "\n".join(a.log_lines)
    md = list(range(10)) + seqs_of(clients, "md2", 30)
    assert sorted(md) == everything, gaps(sorted(md))
    for name in ("ma", "mb", "mj", "md2"):
        clients.nothing_more(name, 0.5)


def test_redis_connection_cut_by_a_proxy(proxy, redis, clients, tmp_path):  # noqa: F811
    """Node A reaches Redis through a TCP proxy, node B directly. The proxy cuts A's
    connections (both sides closed, new ones refused): A delivers its own broadcasts to its
    members at once meanwhile, and B goes on with its own. When the proxy forwards again, A
    reconnects and restores its subscriptions; A's members recover what B published
    meanwhile and B's members get what A queued: each message once, everywhere, and live
    delivery across the nodes works again both ways."""
    servers = []
    try:
        a = SioServer("eddy", ("--redis", proxy.url, "--recovery", "60000"))
        servers.append(a)
        b = SioServer("eddy", ("--redis", redis.url, "--recovery", "60000"))
        servers.append(b)
        for name, server in (("ma", a), ("mb", b)):
            clients.connect(name, server, reconnection=True)
            assert clients.ack(name, "join", "r") == ["joined"]
        clients.connect("sa", a)
        clients.connect("sb", b)
        settle(clients, "sa", ["ma", "mb"])
        settle(clients, "sb", ["ma", "mb"])
        proxy.cut()
        a.wait_log("Redis broker down", timeout=3 * TIMEOUT)
        for i in range(10):
            clients.emit("sa", "to-room", "r", {"seq": i})
            clients.emit("sb", "to-room", "r", {"seq": 100 + i})
        # Local delivery on A goes on; B, still connected, delivers its own.
        assert sorted(seqs_of(clients, "ma", 10)) == list(range(10))
        assert sorted(seqs_of(clients, "mb", 10)) == list(range(100, 110))
        proxy.resume()
        a.wait_log("subscriptions restored", timeout=3 * TIMEOUT)
        a.wait_log("Redis broker back", timeout=3 * TIMEOUT)
        r = clients.wait("ma to reconnect", 3 * TIMEOUT, name="ma", type="connect")
        assert r["recovered"], "\n".join(a.log_lines)
        assert sorted(seqs_of(clients, "ma", 10)) == list(range(100, 110))
        assert sorted(seqs_of(clients, "mb", 10)) == list(range(10))
        # Subscriptions restored: live across the nodes again, both ways, once.
        clients.connect("sa2", a)
        clients.probe("sa2", ["mb"])
        clients.probe("sb", ["ma"])
        for i in range(10):
            clients.emit("sa2", "to-room", "r", {"seq": 200 + i})
            clients.emit("sb", "to-room", "r", {"seq": 300 + i})
        want = list(range(200, 210)) + list(range(300, 310))
        for name in ("ma", "mb"):
            assert sorted(seqs_of(clients, name, 20)) == want
            clients.nothing_more(name, 0.5)
    finally:
        stop_all(servers)


def test_daemon_readiness_follows_a_cut_and_a_frozen_connection(proxy, tmp_path):
    """A daemon whose Redis connection goes through the proxy: /readyz answers 503 "broker
    not ready" while the proxy has cut the connection and while it stops forwarding (the
    connection open, nothing answered), 200 again once it forwards; the broker reconnected
    and subscribed again to as many channels as before."""
    d = Daemon(tmp_path, f"[socketio]\nclient_rooms = lobby\n[broker]\nredis_url = {proxy.url}\n")
    try:
        wait_for(lambda: get(d.admin_port, "/readyz") == (200, "ready\n"), "the node to be ready")
        subs = sample(d.admin_port, "eddy_broker_subscriptions")
        assert subs and subs >= 1
        for fault in (proxy.cut, proxy.freeze):
            before = sample(d.admin_port, "eddy_broker_reconnects_total")
            fault()
            wait_for(lambda: get(d.admin_port, "/readyz") == (503, "broker not ready\n"),
                     f"/readyz to answer 503 after {fault.__name__}")
            assert sample(d.admin_port, "eddy_ready") == 0
            proxy.resume()
            wait_for(lambda: get(d.admin_port, "/readyz") == (200, "ready\n"),
                     "/readyz to answer 200 once the proxy forwards again", timeout=3 * TIMEOUT)
            assert sample(d.admin_port, "eddy_broker_up") == 1
            assert sample(d.admin_port, "eddy_broker_reconnects_total") == before + 1
            assert sample(d.admin_port, "eddy_broker_subscriptions") == subs
    finally:
        d.stop()
