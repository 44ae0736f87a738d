# SPDX-License-Identifier: MIT
"""Scale-out over Redis (issue 12): several examples/socketio nodes started with
--redis redis://127.0.0.1:P against one redis-server (started here on a free port, no
persistence) form one cluster. socket.io-client 4.8 sockets (tests/clients/sio_driver.js)
on different nodes; every message carries a sequence number, so the tests prove that
nothing is lost, nothing is duplicated and every node delivers in the same order.
"""

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

import test_daemon_realtime
from eddyserver import TIMEOUT, free_port, stop_all, wait_for
from sioserver import SioServer

pytestmark = pytest.mark.skipif(
    not os.path.exists(os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                                    "socketio.c")), reason="examples/socketio.c is not here")


class Redis:
    """redis-server on a free loopback port, persistence off; restartable on that port.
    Its dir may be set (CONFIG SET, from loopback) to put a disk fault under it."""

    def __init__(self):
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is needed (Debian package redis-server): make deps-test")
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--enable-protected-configs", "local"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, \
                "redis-server did not start"
            time.sleep(0.05)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def cli(self, *args):
        """redis-cli's output for one command (text; an error reply is text too)."""
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, timeout=TIMEOUT, check=True).stdout

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.kill()


@pytest.fixture
def cluster(redis):
    """cluster(n, *options) -> n eddy nodes on redis; cluster.kill(node) for a kill -9."""
    running = []

    class Cluster:
        def __call__(self, n, *options):
            nodes = [SioServer("eddy", ("--redis", redis.url) + options) for _ in range(n)]
            running.extend(nodes)
            return nodes

        def kill(self, server):
            server.proc.kill()
            server.proc.wait()
            running.remove(server)

    yield Cluster()
    stop_all(running)


def gaps(seqs):
    """A short description of a sequence: its runs of consecutive numbers."""
    runs = []
    for s in seqs:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


class Clients(test_daemon_realtime.Clients):
    """socket.io-client sockets in one node process (sio_driver.js); a connect names its
    node's url."""

    def __init__(self):
        super().__init__(1)  # no node of its own: every connect names one
        self.last_offset = {}  # name -> offset of the last room-message it received

    def _pull(self, left):
        r = super()._pull(left)
        if r is not None and r["type"] == "event" and r["event"] == "room-message":
            self.last_offset[r["name"]] = r["args"][-1]
        return r

    def connect(self, name, server, **opts):
        self.send(cmd="connect", name=name, url=server.url, transports=["websocket"], **opts)
        return self.wait(f"{name} to connect", name=name, type="connect")

    def emit(self, name, event, *args):
        self.send(cmd="emit", name=name, event=event, args=list(args))

    def room_messages(self, name, count, timeout=TIMEOUT):
        """The next count room-message events of name: [(seq, offset)], in arrival order."""
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count:
            for r in list(self.seen):
                if r["name"] == name and r["type"] == "event" and r["event"] == "room-message":
                    self.seen.remove(r)
                    if "probe" not in r["args"][0]:
                        got.append((r["args"][0]["seq"], r["args"][-1]))
            left = deadline - time.monotonic()
            assert left > 0 or len(got) >= count, \
                f"{name}: {len(got)} of {count} room messages: {gaps([g[0] for g in got])}"
            if len(got) < count:
                self._pull(left)
        return got

    def seqs_to_room(self, sender, room, receiver, count):
        """Emits seq 0..count-1 to room from sender; receiver gets exactly those, in order."""
        for i in range(count):
            self.emit(sender, "to-room", room, {"seq": i})
        assert [s for s, _ in self.room_messages(receiver, count)] == list(range(count))

    def nothing_more(self, name, within=0.5):
        """No room-message reaches name within `within` seconds (absence only)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self._pull(deadline - time.monotonic())
        extra = [r for r in self.seen if r["name"] == name and r["type"] == "event"
                 and r["event"] == "room-message" and "probe" not in r["args"][0]]
        assert not extra, extra

    def probe(self, sender, receivers, room="r", timeout=TIMEOUT):
        """Emits probes to room from sender until each receiver got one: every node's
        interest in room is active (joins subscribe asynchronously on remote nodes)."""
        numbers = itertools.count()
        self.probe_until(
            lambda: self.emit(sender, "to-room", room, {"probe": next(numbers)}), receivers,
            lambda r: r["event"] == "room-message" and "probe" in r["args"][0], "probe",
            timeout)
        # Probes still in flight arrive later; room_messages() skips them.


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close()


def test_room_broadcast_across_nodes_once_and_in_one_order(cluster, clients):
    """Three nodes; two senders on different nodes emit to a room with members on every
    node: each member gets every message exactly once, and all members (whatever their
    node) get them in the same order, with strictly increasing offsets."""
    a, b, c = cluster(3, "--recovery", "60000")
    members = {"ra": a, "rb": b, "rc": c}
    for name, server in members.items():
        clients.connect(name, server)
        assert clients.ack(name, "join", "r") == ["joined"]
    clients.connect("sa", a)
    clients.connect("sb", b)
    clients.probe("sa", members)
    clients.probe("sb", members)
    n = 100
    for i in range(n):
        clients.emit("sa", "to-room", "r", {"seq": i})
        clients.emit("sb", "to-room", "r", {"seq": n + i})
    orders = {}
    for name in members:
        got = clients.room_messages(name, 2 * n)
        seqs = [s for s, _ in got]
        assert sorted(seqs) == list(range(2 * n)), f"{name} lost or duplicated: {gaps(seqs)}"
        # Each sender's messages in its order.
        assert [s for s in seqs if s < n] == list(range(n))
        assert [s for s in seqs if s >= n] == list(range(n, 2 * n))
        offsets = [o for _, o in got]
        assert len(set(offsets)) == len(offsets)
        orders[name] = (seqs, offsets)
        clients.nothing_more(name, 0.2)
    assert orders["ra"] == orders["rb"] == orders["rc"], "nodes delivered in different orders"


def test_kill9_then_recover_on_another_node(cluster, clients):
    """A member of a room on node A; A is killed (SIGKILL) while messages keep coming from
    node C; the client reconnects to B with its pid and last offset: it gets its old id,
    exactly the messages it missed, in order, then the live ones, none twice. C keeps
    publishing fast while the recovery is under way, so deliveries also arrive while B
    reads the history (held, then merged by position)."""
    a, b, c = cluster(3, "--recovery", "60000", "--history", "50000")
    first = clients.connect("x", a)
    assert first["pid"], first
    assert clients.ack("x", "join", "r") == ["joined"]
    clients.connect("s", c)
    clients.probe("s", ["x"])
    for i in range(20):
        clients.emit("s", "to-room", "r", {"seq": i})
    got = clients.room_messages("x", 20)
    assert [s for s, _ in got] == list(range(20))
    last_offset = got[-1][1]
    cluster.kill(a)
    clients.wait("x's disconnect", name="x", type="disconnect")
    missed, during = 200, 2000
    for i in range(20, 20 + missed):
        clients.emit("s", "to-room", "r", {"seq": i})
    assert clients.ack("s", "message-with-ack", "sync") == ["sync"]
    clients.send(cmd="connect", name="x2", url=b.url, transports=["websocket"],
                 auth={"pid": first["pid"], "offset": last_offset})
    end = 20 + missed + during
    for i in range(20 + missed, end):
        clients.emit("s", "to-room", "r", {"seq": i})
    again = clients.wait("x2 to connect", 3 * TIMEOUT, name="x2", type="connect")
    assert again["id"] == first["id"], "not recovered: a new id\n" + "\n".join(b.log_lines)
    got = clients.room_messages("x2", end - 20, timeout=3 * TIMEOUT)
    assert [s for s, _ in got] == list(range(20, end)), gaps([s for s, _ in got])
    for i in range(end, end + 10):
        clients.emit("s", "to-room", "r", {"seq": i})
    got = clients.room_messages("x2", 10)
    assert [s for s, _ in got] == list(range(end, end + 10))
    clients.nothing_more("x2")


def session_held(redis, pid):
    """Whether Redis holds a session record of pid: live (a field of a node's
    sessions:{tag}:<node> hash) or disconnected (session:{tag}<rest of the pid>)."""
    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(redis.port), *args], capture_output=True,
                              text=True, timeout=TIMEOUT, check=True).stdout.split()
    if cli("EXISTS", f"eddy:session:{{{pid[:8]}}}{pid[8:]}") != ["0"]:
        return True
    return any(cli("HEXISTS", key, pid) == ["1"]
               for key in cli("--scan", "--pattern", "eddy:sessions:{*}:*"))


def test_recovery_after_a_client_close_is_a_fresh_session(cluster, redis, clients):
    """A client that closed its socket itself (a namespace disconnect, final) cannot be
    recovered with its pid and offset on another node: its record is gone, so it gets a
    new id and nothing replayed (never a partial)."""
    a, b = cluster(2, "--recovery", "60000")
    first = clients.connect("x", a)
    assert clients.ack("x", "join", "r") == ["joined"]
    clients.connect("s", b)
    clients.probe("s", ["x"])
    assert session_held(redis, first["pid"])
    clients.send(cmd="close", name="x")
    clients.wait("x's disconnect", name="x", type="disconnect")
    # The client knows at once; node A drops the record when it has read the close.
    deadline = time.monotonic() + TIMEOUT
    while session_held(redis, first["pid"]):
        assert time.monotonic() < deadline, "the closed socket's record is still in Redis"
        time.sleep(0.05)
    for i in range(3):
        clients.emit("s", "to-room", "r", {"seq": i})
    assert clients.ack("s", "message-with-ack", "sync") == ["sync"]
    again = clients.connect("y", b, auth={"pid": first["pid"],
                                          "offset": clients.last_offset["x"]})
    assert again["id"] != first["id"]
    clients.nothing_more("y")


def test_redis_restart_cross_node_delivery_resumes(cluster, redis, clients):
    """Redis is killed and restarted on its port: while it is down, delivery on one node
    goes on; once it is back, the nodes reconnect and deliver to each other again. The
    start logged nothing above INFO (connecting at the start is no outage); the outage and
    the reconnection's subscribing are WARNINGs."""
    a, b = cluster(2)
    for name, server in (("ra", a), ("rb", b)):
        clients.connect(name, server)
        assert clients.ack(name, "join", "r") == ["joined"]
    clients.connect("s", a)
    clients.probe("s", ["ra", "rb"])
    for node in (a, b):
        assert "Redis broker up" in "\n".join(node.log_lines)
        assert not [line for line in node.log_lines
                    if "\tWARNING\t" in line or "\tERROR\t" in line], node.log_lines
    redis.kill()
    a.wait_log("\tWARNING\teddy_rt: Redis broker down")
    clients.seqs_to_room("s", "r", "ra", 5)
    redis.start()
    for node in (a, b):
        node.wait_log("\tWARNING\teddy_rt: Redis broker recovering", timeout=3 * TIMEOUT)
        node.wait_log("Redis broker back", timeout=3 * TIMEOUT)
    clients.probe("s", ["ra", "rb"], timeout=3 * TIMEOUT)
    for i in range(5, 15):
        clients.emit("s", "to-room", "r", {"seq": i})
    assert [s for s, _ in clients.room_messages("ra", 10)] == list(range(5, 15))
    # B also gets what A queued for the broker during the outage, unless A sent it before
    # B subscribed again (then B's members miss it: without recovery, counted as a gap).
    got = []
    while not got or got[-1] != 14:
        got += [s for s, _ in clients.room_messages("rb", 1)]
    assert got[-10:] == list(range(5, 15)) and got[:-10] == sorted(set(got[:-10])), got
    assert set(got[:-10]) <= set(range(5)), got


def redis_config(redis, *args):
    out = redis.cli("CONFIG", "SET", *args)
    assert out.strip() == "OK", out


def bgsave_status_is(redis, status, what):
    """Starts a BGSAVE and waits until Redis reports it ended with status (ok, err)."""
    assert redis.cli("BGSAVE").strip() == "Background saving started"
    wait_for(lambda: f"rdb_last_bgsave_status:{status}" in redis.cli("INFO", "persistence") and
             "rdb_bgsave_in_progress:0" in redis.cli("INFO", "persistence"), what)


class OutOfMemory:
    """maxmemory reached (1 byte, noeviction): Redis answers OOM to what may grow it."""
    reason = "OOM command not allowed"

    def __init__(self, redis, tmp_path):
        self.redis = redis

    def start(self):
        redis_config(self.redis, "maxmemory", "1")

    def end(self):
        redis_config(self.redis, "maxmemory", "0")


class DiskFull:
    """A disk Redis cannot save to (its dir gone, as a full or failed disk): with a save
    point configured and stop-writes-on-bgsave-error (the default), a failed BGSAVE makes
    Redis answer MISCONF to writes until a save succeeds."""
    reason = "MISCONF Redis is configured to save RDB snapshots"

    def __init__(self, redis, tmp_path):
        self.redis, self.dir = redis, tmp_path / "redis-dir"
        self.dir.mkdir()
        redis_config(redis, "dir", str(self.dir))
        redis_config(redis, "save", "3600 1")

    def start(self):
        self.dir.rmdir()
        bgsave_status_is(self.redis, "err", "the BGSAVE to fail")

    def end(self):
        self.dir.mkdir()
        redis_config(self.redis, "dir", str(self.dir))  # its working directory was the old one
        bgsave_status_is(self.redis, "ok", "a BGSAVE to succeed")


@pytest.mark.parametrize("fault", [OutOfMemory, DiskFull], ids=["oom", "misconf"])
def test_redis_refusing_writes_is_an_outage(cluster, redis, clients, tmp_path, fault):
    """Redis refuses writes (its maxmemory reached: OOM; a disk it cannot save to:
    MISCONF): each node's heartbeat (its lease) is refused, so the node says so (WARNING
    with Redis' reason) and is down, not ready, though its connections stay. The
    broadcasts Redis refuses meanwhile (with history) are counted dropped, logged at most
    once a second, the others summed up in one line. Once Redis accepts writes, the nodes
    are up and ready again (the gap closes the clients' transports, as after an outage)
    and broadcasts cross. Before, both nodes stayed ready while every broadcast was
    refused, and each refusal was a WARNING line."""
    fault = fault(redis, tmp_path)
    a, b = cluster(2, "--recovery", "60000")
    clients.connect("m", b)
    assert clients.ack("m", "join", "r") == ["joined"]
    clients.connect("s", a)
    clients.probe("s", ["m"])
    reason = re.escape(fault.reason)
    fault.start()
    try:
        for node in (a, b):
            node.wait_log(r"\tWARNING\trt_broker: Redis 127\.0\.0\.1:\d+ refuses this node's "
                          rf"heartbeat \({reason}")
            # The layer says what a refusing Redis means: not "delivered on this node only",
            # since what Redis still runs (a plain PUBLISH) crosses.
            node.wait_log(r"\tWARNING\teddy_rt: Redis broker down: it refuses this node's "
                          r"writes, so broadcasts are delivered on this node and may not reach "
                          r"the others")
            assert not [line for line in node.log_lines
                        if "Redis broker down" in line and "on this node only" in line], \
                "\n".join(node.log_lines)
        for i in range(20):
            clients.emit("s", "to-room", "r", {"seq": i})
            time.sleep(0.005)
        summed = a.wait_log(r"rt_broker: (\d+) more refusals in the last \d+ ms, not logged "
                            rf"\(the last: publish refused: {reason}", timeout=3 * TIMEOUT)
        # The first refusal alone is a line, the next 19 (within a second) are summed up.
        upto = next(i for i, line in enumerate(a.log_lines) if summed.group(0) in line)
        refused = [line for line in a.log_lines[:upto] if " refused: " in line]
        assert len(refused) == 1 and "\trt_broker: publish refused: " in refused[0], \
            "\n".join(a.log_lines)
        assert summed.group(1) == "19", summed.group(0)
        for i, node in enumerate((a, b)):
            clients.connect(f"during-{i}", node)
            assert clients.ack(f"during-{i}", "x-broker")[0]["ready"] is False
        assert clients.ack("during-0", "x-broker")[0]["dropped"] == 20
    finally:
        fault.end()
    for node in (a, b):
        node.wait_log(r"\tNOTICE\trt_broker: Redis 127\.0\.0\.1:\d+ accepts this node's "
                      r"heartbeat again after \d+ ms", timeout=3 * TIMEOUT)
    clients.wait("m's transport to close", 3 * TIMEOUT, name="m", type="disconnect")
    for i, node in enumerate((a, b)):
        clients.connect(f"after-{i}", node)
        assert clients.ack(f"after-{i}", "x-broker")[0]["ready"] is True
    clients.connect("m2", b)
    assert clients.ack("m2", "join", "r") == ["joined"]
    clients.connect("s2", a)
    clients.probe("s2", ["m2"])
    clients.seqs_to_room("s2", "r", "m2", 5)


def test_emit_to_a_socket_on_another_node(cluster, clients):
    """A socket's own room reaches it from any node: io.to(socket id) on node A reaches
    the socket on node B, once."""
    a, b = cluster(2)
    target = clients.connect("t", b)
    clients.connect("s", a)
    clients.probe("s", ["t"], room=target["id"])
    clients.seqs_to_room("s", target["id"], "t", 10)
    clients.nothing_more("t")


def test_outage_gap_makes_clients_recover(cluster, redis, clients):
    """With recovery on, a Redis outage (SIGSTOP: Redis keeps its data) that ends with a
    gap closes the transports of the nodes' clients: a client of B reconnects with its pid
    and last offset and gets what node A published during the outage (queued, published
    once Redis was back), once. (After a restart that lost Redis' data the same client is
    answered "not recovered": another epoch.)"""
    a, b = cluster(2, "--recovery", "60000")
    x = clients.connect("x", b)
    assert clients.ack("x", "join", "r") == ["joined"]
    clients.connect("s", a)
    clients.probe("s", ["x"])
    assert clients.ack("s", "message-with-ack", "sync") == ["sync"]
    clients.nothing_more("x", 0.3)  # the last probes are in
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        b.wait_log("Redis broker down")
        a.wait_log("Redis broker down")
        for i in range(5):
            clients.emit("s", "to-room", "r", {"seq": i})
        assert clients.ack("s", "message-with-ack", "sync") == ["sync"]
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    b.wait_log("Redis broker back", timeout=3 * TIMEOUT)
    clients.wait("x's transport to close", 3 * TIMEOUT, name="x", type="disconnect")
    # If B was subscribed again before A published what it queued, x got some of it live
    # before its transport closed: the recovery then starts after those.
    early = [r["args"][0]["seq"] for r in clients.seen if r["name"] == "x" and
             r["type"] == "event" and r["event"] == "room-message" and
             "probe" not in r["args"][0]]
    assert early == list(range(len(early))), early
    again = clients.connect("x2", b, auth={"pid": x["pid"], "offset": clients.last_offset["x"]})
    assert again["id"] == x["id"], "not recovered:\n" + "\n".join(b.log_lines)
    rest = clients.room_messages("x2", 5 - len(early), timeout=3 * TIMEOUT)
    assert [s for s, _ in rest] == list(range(len(early), 5))
    clients.nothing_more("x2")


def msgpack(v):
    """The msgpack encoding of v (None, bool, int 0-127, str, bytes, list, dict): enough for
    Socket.IO's emitter format, as @socket.io/redis-emitter's notepack writes it."""
    if v is None:
        return b"\xc0"
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        assert 0 <= v < 128
        return bytes([v])
    if isinstance(v, str):
        raw = v.encode()
        return (bytes([0xa0 | len(raw)]) if len(raw) < 32 else b"\xd9" + bytes([len(raw)])) + raw
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(msgpack(x) for x in v)
    return bytes([0x80 | len(v)]) + b"".join(msgpack(k) + msgpack(x) for k, x in v.items())


def emitter_publish(redis, data, rooms=(), except_=(), nsp="/"):
    """PUBLISHes one broadcast as @socket.io/redis-emitter does (key socket.io): returns how
    many subscribers Redis delivered it to."""
    packet = {"type": 5 if any(isinstance(d, bytes) for d in data) else 2, "data": data,
              "nsp": nsp}
    msg = msgpack(["emitter", packet, {"rooms": list(rooms), "except": list(except_),
                                       "flags": {}}])
    channel = f"socket.io#{nsp}#" + (f"{rooms[0]}#" if len(rooms) == 1 else "")
    parts = [b"PUBLISH", channel.encode(), msg]
    cmd = b"*3\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", redis.port), timeout=TIMEOUT) as s:
        s.sendall(cmd)
        answer = s.recv(64)
    assert answer.startswith(b":"), answer
    return int(answer[1:].split(b"\r\n")[0])


def test_emitter_broadcasts_reach_room_members_on_every_node(cluster, redis, clients):
    """A broadcast another program publishes in Socket.IO's Redis emitter format (a PHP
    or Python backend, seed 004's) reaches the room's members on every node once, binary
    attachments included, and nobody outside the room or in an except-room."""
    a, b = cluster(2, "--redis-emitter", "socket.io")
    for name, server in [("x", a), ("y", b), ("z", b)]:
        clients.connect(name, server)
    assert clients.ack("x", "join", "r") == ["joined"]
    assert clients.ack("y", "join", "r") == ["joined"]
    assert clients.ack("z", "join", "muted") == ["joined"]
    assert clients.ack("z", "join", "r") == ["joined"]
    # Until both nodes' pattern subscriptions are active, a probe may reach fewer.
    clients.probe_until(lambda: emitter_publish(redis, ["probe"], rooms=["r"], except_=["muted"]),
                        {"x", "y"}, lambda r: r["event"] == "probe", "emitter probe")
    clients.nothing_more("x", 0.3)
    for r in [r for r in clients.seen if r["type"] == "event" and r["event"] == "probe"]:
        clients.seen.remove(r)
    for i in range(5):
        emitter_publish(redis, ["news", i, {"n": "ü"}], rooms=["r"], except_=["muted"])
    emitter_publish(redis, ["blob", b"\x00\x01\xff"], rooms=["r"], except_=["muted"])
    emitter_publish(redis, ["end"])
    for name in ("x", "y"):
        got = []
        while not got or got[-1][0] != "end":
            r = clients.wait(f"{name}'s events", name=name, type="event")
            if r["event"] != "auth":  # the test application's greeting
                got.append((r["event"], r["args"]))
        assert got[:5] == [("news", [i, {"n": "ü"}]) for i in range(5)], got
        assert got[5:] == [("blob", [{"type": "Buffer", "data": [0, 1, 255]}]), ("end", [])], got
    got = []
    while not got or got[-1][0] != "end":
        r = clients.wait("z's events", name="z", type="event")
        if r["event"] not in ("auth", "probe"):
            got.append((r["event"], r["args"]))
    assert got == [("end", [])], got  # in the except-room: nothing for room r
