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
