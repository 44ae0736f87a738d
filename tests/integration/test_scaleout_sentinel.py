# SPDX-License-Identifier: MIT
"""Scale-out through Redis Sentinel (issue 12): a master, its replica and a sentinel
(Debian's redis-server, `--sentinel`; free loopback ports, persistence off, a small
down-after-milliseconds), eddy nodes given redis+sentinel://SENTINELS/mymaster. The broker
asks the sentinels for the master on every connection: after a kill -9 of the master and
the sentinel's promotion of the replica, broadcasts cross nodes again, within a bound.
"""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from eddyserver import BUILD, TIMEOUT, free_port, wait_for
from test_daemon_broker import get, sample
from test_daemon_realtime import Daemon
from test_scaleout import clients  # noqa: F401 (fixture)
from test_scaleout_shard import config_check_urls
from sioserver import SioServer

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                                    "socketio.c")), reason="examples/socketio.c is not here")

MASTER = "mymaster"
# Sentinel's failure detection and failover, kept small so the test stays short.
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 3000
# The bound on a failover as eddy sees it: the sentinel notices the master is down
# (DOWN_AFTER_MS), elects itself and promotes the replica (about a second, measured), then
# the broker's next reconnection (its backoff is at most 5 s) finds the new master.
FAILOVER_BOUND = 15


def command(port, *args, timeout=2):
    """One Redis command on a fresh connection: the reply, decoded (RESP2: strings, ints,
    None, lists; an error as a RuntimeError)."""
    out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                            for a in map(str, args))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")

        def read():
            line = f.readline().rstrip(b"\r\n")
            kind, rest = line[:1], line[1:].decode()
            if kind == b"+":
                return rest
            if kind == b"-":
                raise RuntimeError(rest)
            if kind == b":":
                return int(rest)
            if kind == b"$":
                return None if rest == "-1" else f.read(int(rest) + 2)[:-2].decode()
            if kind == b"*":
                return None if rest == "-1" else [read() for _ in range(int(rest))]
            raise RuntimeError(f"unexpected reply {line!r}")
        return read()


def answers(port, *args):
    try:
        return command(port, *args)
    except (OSError, RuntimeError):
        return None


class Process:
    """redis-server with the given arguments on a free loopback port, persistence off."""

    def __init__(self, tmp, name, *args, conf=None):
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is needed (Debian package redis-server): make deps-test")
        self.port = free_port()
        argv = ["redis-server"]
        if conf is not None:
            # A sentinel rewrites its configuration file: it must be its own, writable.
            path = tmp / f"{name}.conf"
            path.write_text(conf.format(port=self.port, dir=tmp))
            argv += [str(path), "--sentinel"]
        else:
            argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(tmp), *args]
        self.log = open(tmp / f"{name}.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: answers(self.port, "PING") == "PONG" or self.proc.poll() is not None,
                 f"{name} to answer PING")
        assert self.proc.poll() is None, f"{name} exited: {(tmp / f'{name}.log').read_text()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


SENTINEL_CONF = """port {port}
bind 127.0.0.1
daemonize no
dir {dir}
sentinel monitor mymaster 127.0.0.1 %d 1
sentinel down-after-milliseconds mymaster %d
sentinel failover-timeout mymaster %d
"""


def master_and_replica(tmp_path, running):
    """Starts a master and its replica, appended to running (to be killed by the caller),
    and waits until the replica is in sync."""
    master = Process(tmp_path, "master")
    running.append(master)
    replica = Process(tmp_path, "replica", "--replicaof", "127.0.0.1", str(master.port))
    running.append(replica)
    wait_for(lambda: "master_link_status:up" in (answers(replica.port, "INFO",
                                                         "replication") or ""),
             "the replica to sync")
    return master, replica


@pytest.fixture
def sentinel_setup(tmp_path):
    """A master, its replica (in sync) and a sentinel that knows both."""
    running = []
    try:
        master, replica = master_and_replica(tmp_path, running)
        sentinel = Process(tmp_path, "sentinel", conf=SENTINEL_CONF % (
            master.port, DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS))
        running.append(sentinel)

        def knows_replica():
            replicas = answers(sentinel.port, "SENTINEL", "REPLICAS", MASTER) or []
            return any(str(replica.port) in r for r in replicas)
        wait_for(knows_replica, "the sentinel to discover the replica")
        yield master, replica, sentinel
    finally:
        for p in reversed(running):
            p.kill()


def master_of(sentinel):
    addr = answers(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
    return int(addr[1]) if addr else None


def cross(clients, base, n=5):  # noqa: F811
    """sa (node a) and sb (node b) emit n messages each to room r: its members ra and rb
    (one on each node) get all 2n, each once."""
    for i in range(n):
        clients.emit("sa", "to-room", "r", {"seq": base + i})
        clients.emit("sb", "to-room", "r", {"seq": base + n + i})
    for name in ("ra", "rb"):
        seqs = sorted(s for s, _ in clients.room_messages(name, 2 * n))
        assert seqs == list(range(base, base + 2 * n)), f"{name}: {seqs}"


def two_sided_room(clients, a, b):  # noqa: F811
    """Room r with member ra on node a and rb on node b, senders sa on a and sb on b, each
    node's interest active (probed); then a first cross()."""
    for name, node in (("ra", a), ("rb", b)):
        clients.connect(name, node)
        assert clients.ack(name, "join", "r") == ["joined"]
    clients.connect("sa", a)
    clients.connect("sb", b)
    clients.probe("sa", ["ra", "rb"])
    clients.probe("sb", ["ra", "rb"])
    cross(clients, 0)


def crosses_again(clients, killed, bound, what):  # noqa: F811
    """After a failover (the master killed at monotonic time killed, the replica promoted
    now): probes cross both ways within bound seconds of the kill, then 2 x 5 messages
    exactly once; prints the times."""
    promoted = time.monotonic() - killed
    clients.probe("sa", ["ra", "rb"], timeout=bound)
    clients.probe("sb", ["ra", "rb"], timeout=bound)
    crossed = time.monotonic() - killed
    print(f"{what}: promoted after {promoted:.1f} s, broadcasts cross after {crossed:.1f} s")
    assert crossed < bound
    cross(clients, 100)
    clients.nothing_more("ra")
    clients.nothing_more("rb", within=0)


def test_failover_through_sentinel(sentinel_setup, clients, tmp_path):  # noqa: F811
    """Two examples/socketio nodes and a daemon on redis+sentinel:// (a dead sentinel listed
    first: the broker asks the next). Broadcasts cross the nodes; kill -9 of the master: the
    daemon's /readyz answers 503; once the sentinel promoted the replica, every node finds
    it (logged, eddy_broker_master_switches_total 1) and broadcasts cross the nodes again
    within FAILOVER_BOUND seconds of the kill; /readyz answers 200; nothing crashed."""
    master, replica, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{sentinel.port}/{MASTER}"
    nodes = []
    daemon = None
    try:
        nodes = [SioServer("eddy", ("--redis", url)) for _ in range(2)]
        for node in nodes:
            node.wait_log(rf"master {MASTER} is 127\.0\.0\.1:{master.port}")
        daemon = Daemon(tmp_path, f"[socketio]\nclient_rooms = lobby\n[broker]\n"
                        f"redis_url = {url}\n")
        wait_for(lambda: get(daemon.admin_port, "/readyz") == (200, "ready\n"),
                 "the daemon to be ready")
        a, b = nodes
        two_sided_room(clients, a, b)

        killed = time.monotonic()
        master.kill()
        wait_for(lambda: get(daemon.admin_port, "/readyz") == (503, "broker not ready\n"),
                 "/readyz to answer 503 without a master")
        wait_for(lambda: master_of(sentinel) == replica.port,
                 "the sentinel to promote the replica", timeout=FAILOVER_BOUND)
        # Probes cross both ways once both nodes are on the new master.
        crosses_again(clients, killed, FAILOVER_BOUND, "failover")
        moved = rf"master {MASTER} moved from 127\.0\.0\.1:{master.port} to " \
                rf"127\.0\.0\.1:{replica.port}"
        for node in nodes:
            node.wait_log(moved)
        wait_for(lambda: get(daemon.admin_port, "/readyz") == (200, "ready\n"),
                 "/readyz to answer 200 on the new master", timeout=FAILOVER_BOUND)
        assert sample(daemon.admin_port, "eddy_broker_master_switches_total") == 1
        assert all(node.proc.poll() is None for node in nodes)
    finally:
        if daemon is not None:
            daemon.stop()
        for node in nodes:
            node.stop()


class FakeSentinel:
    """A sentinel that names the master the test says (address None: it knows none), so a
    test can make it stale or move the master by hand; switch() announces a move to the
    connections subscribed to +switch-master, as a sentinel does after a failover."""

    def __init__(self):
        self.address = None
        self.asked = 0
        self.watchers = []  # (connection, self.asked when it subscribed)
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                f = conn.makefile("rb")
                while True:
                    head = f.readline()
                    if not head.startswith(b"*"):
                        break
                    args = []
                    for _ in range(int(head[1:])):
                        n = int(f.readline()[1:])
                        args.append(f.read(n + 2)[:-2].decode())
                    verb = [a.lower() for a in args[:2]]
                    with self.lock:
                        if verb == ["sentinel", "get-master-addr-by-name"]:
                            self.asked += 1
                            addr = self.address
                            conn.sendall(b"*-1\r\n" if addr is None else
                                         b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%d\r\n"
                                         % (len(str(addr)), addr))
                        elif verb == ["subscribe", "+switch-master"]:
                            conn.sendall(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master"
                                         b"\r\n:1\r\n")
                            self.watchers.append((conn, self.asked))
                        else:
                            conn.sendall(b"-ERR unknown command\r\n")
            except (OSError, ValueError):
                pass
            with self.lock:
                self.watchers = [w for w in self.watchers if w[0] is not conn]

    def watched_since(self, asked):
        """Whether a connection subscribed to +switch-master after the asked-th question."""
        with self.lock:
            return any(n >= asked for _, n in self.watchers)

    def switch(self, old, new):
        with self.lock:
            self.address = new
            text = f"{MASTER} 127.0.0.1 {old} 127.0.0.1 {new}".encode()
            for conn, _ in self.watchers:
                conn.sendall(b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%d\r\n%s\r\n"
                             % (len(text), text))

    def close(self):
        self.sock.close()


def test_stale_answers_and_a_demoted_master(tmp_path):
    """Against a sentinel that answers what the test says: a node told of a replica does not
    use it (ROLE says slave; logged) and asks again; told of the master, it joins the
    cluster there (its lease is on that Redis). The master is then demoted by hand to a
    replica of the other (REPLICAOF: the node's connection stays open): its next heartbeat
    gets READONLY, the node asks the sentinel again and moves to the new master."""
    fake = FakeSentinel()
    running = []
    node = None
    try:
        a = Process(tmp_path, "a")
        running.append(a)
        b = Process(tmp_path, "b", "--replicaof", "127.0.0.1", str(a.port))
        running.append(b)
        fake.address = b.port
        node = SioServer("eddy", ("--redis", f"redis+sentinel://127.0.0.1:{fake.port}/"
                                  f"{MASTER}"))
        node.wait_log(r"not a master \(ROLE: slave\)")
        fake.address = a.port
        wait_for(lambda: answers(a.port, "ZCARD", "eddy:nodes") == 1,
                 "the node's lease on the master")
        node.wait_log(rf"connected to Redis master {MASTER} \(127\.0\.0\.1:{a.port}\)")

        assert command(b.port, "REPLICAOF", "NO", "ONE") == "OK"
        command(b.port, "DEL", "eddy:nodes")  # what a replicated, if anything
        fake.address = b.port
        assert command(a.port, "REPLICAOF", "127.0.0.1", str(b.port)) == "OK"
        node.wait_log(r"connection lost: no longer the master: READONLY")
        node.wait_log(rf"master {MASTER} moved from 127\.0\.0\.1:{a.port} to "
                      rf"127\.0\.0\.1:{b.port}")
        wait_for(lambda: answers(b.port, "ZCARD", "eddy:nodes") == 1,
                 "the node's lease on the new master")
        assert node.proc.poll() is None
    finally:
        if node is not None:
            node.stop()
        for p in reversed(running):
            p.kill()
        fake.close()


def test_switch_master_ends_the_backoff(tmp_path):
    """A node whose sentinel names a master that does not answer retries with a growing
    backoff, meanwhile subscribed to +switch-master on that sentinel: the announcement of
    a new master ends the wait (logged), the node asks again at once (well before its
    backoff of 0.8 s or more would have) and joins the cluster on the new master."""
    fake = FakeSentinel()
    running = []
    node = None
    try:
        a = Process(tmp_path, "a")
        running.append(a)
        dead = free_port()
        fake.address = dead
        node = SioServer("eddy", ("--redis", f"redis+sentinel://127.0.0.1:{fake.port}/"
                                  f"{MASTER}"))
        # Five failed attempts: the wait after the fifth is 0.8-1.6 s.
        wait_for(lambda: fake.watched_since(5), "the node to wait after its fifth attempt")
        asked = fake.asked
        switched = time.monotonic()
        fake.switch(dead, a.port)
        wait_for(lambda: fake.asked > asked, "the node to ask again")
        again = time.monotonic() - switched
        node.wait_log(rf"\+switch-master {MASTER} 127\.0\.0\.1 {dead} 127\.0\.0\.1 {a.port}")
        assert again < 0.6, f"asked again {again:.2f} s after the announcement"
        wait_for(lambda: answers(a.port, "ZCARD", "eddy:nodes") == 1,
                 "the node's lease on the new master")
        node.wait_log(rf"master {MASTER} moved from 127\.0\.0\.1:{dead} to "
                      rf"127\.0\.0\.1:{a.port}")
        assert node.proc.poll() is None
    finally:
        if node is not None:
            node.stop()
        for p in reversed(running):
            p.kill()
        fake.close()


def test_sentinel_urls_checked(tmp_path):
    """`eddy config check` takes redis+sentinel:// URLs, alone or as shards of a list, and
    refuses a sentinel list with an empty host (password not quoted); examples/socketio
    refuses a malformed one at start, saying why."""
    config_check_urls(tmp_path,
                      [("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/1", True),
                       ("redis+sentinel://a/m,redis://b:6380,redis+sentinel://c,d/n", True),
                       ("redis+sentinel://:secret@a,,b/m", False), ("redis+sentinel://", False)])
    proc = subprocess.run([os.path.join(BUILD, "examples", "socketio"), "--port",
                           str(free_port()), "--redis",
                           "redis+sentinel://:secret@127.0.0.1:26379/my master"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "the master name is not" in out and "secret" not in out


def test_two_sentinel_shards(tmp_path, clients):  # noqa: F811
    """One sentinel monitoring two masters, m1 and m2; two nodes given both as shards
    (redis+sentinel://S/m1,redis+sentinel://S/m2): each node holds its lease on both masters
    (found through the sentinel) and broadcasts cross the nodes."""
    running = []
    nodes = []
    try:
        m1 = Process(tmp_path, "m1")
        running.append(m1)
        m2 = Process(tmp_path, "m2")
        running.append(m2)
        sentinel = Process(tmp_path, "sentinel", conf=(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n"
            f"sentinel monitor m1 127.0.0.1 {m1.port} 1\n"
            f"sentinel monitor m2 127.0.0.1 {m2.port} 1\n"))
        running.append(sentinel)
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/m1," \
              f"redis+sentinel://127.0.0.1:{sentinel.port}/m2"
        nodes = [SioServer("eddy", ("--redis", url)) for _ in range(2)]
        for m in (m1, m2):
            wait_for(lambda: answers(m.port, "ZCARD", "eddy:nodes") == 2,
                     f"both nodes' leases on {m.port}")
        a, b = nodes
        two_sided_room(clients, a, b)
    finally:
        for node in nodes:
            node.stop()
        for p in reversed(running):
            p.kill()
