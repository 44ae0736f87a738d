# SPDX-License-Identifier: MIT
"""Scale-out over several Redis (issue 12): examples/socketio nodes started with
--redis URL1,URL2 shard their namespaces over two redis-servers by consistent hashing. The
ring is computed here too (an independent implementation of rt/rt_ring.c) to predict where
each namespace lives: the keys found on each Redis prove the prediction, so every process
(C nodes, this test) agrees, and the ports are chosen so that both Redis hold namespaces.
Then: broadcasts and recovery across nodes in namespaces of both shards; one Redis killed:
namespaces on the other keep delivering across nodes, the node is not ready (the daemon's
/readyz), and after its restart everything delivers again; one Redis frozen with recovery
on: only the clients of its namespaces reconnect and recover, the others stay connected.
"""

import bisect
import os
import re
import signal
import subprocess
import time

import pytest

from eddyserver import BUILD, TIMEOUT, free_port, stop_all, wait_for
from sioserver import SioServer
from test_daemon_broker import get
from test_daemon_realtime import EDDY, Daemon
from test_scaleout import Clients, Redis

NAMESPACES = ["/", "/custom", "/n1", "/n2", "/n3", "/n4"]
MASK = (1 << 64) - 1


def ring_hash(data):
    """FNV-1a 64 and a multiply-xorshift finaliser, as rt_ring_hash()."""
    h = 0xcbf29ce484222325
    for c in data:
        h = ((h ^ c) * 0x100000001b3) & MASK
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & MASK
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & MASK
    return h ^ (h >> 33)


def ring_owner(shards, key):
    """The index in shards ("host:port/db" names) of the shard that owns key."""
    points = sorted((ring_hash(b"%016x#%d" % (ring_hash(name.encode()), v)), name, i)
                    for i, name in enumerate(shards) for v in range(160))
    at = bisect.bisect_left([p[0] for p in points], ring_hash(key.encode()))
    return points[at % len(points)][2]


def split_ports():
    """Two free ports whose ring puts the namespaces on both (at least two on each)."""
    for _ in range(100):
        ports = [free_port(), free_port()]
        names = [f"127.0.0.1:{p}/0" for p in ports]
        owners = [ring_owner(names, nsp) for nsp in NAMESPACES]
        if ports[0] != ports[1] and min(owners.count(0), owners.count(1)) >= 2:
            return ports, owners
    pytest.fail("no two ports spread the namespaces")


class PortRedis(Redis):
    """Redis (test_scaleout's) on a port chosen by the test."""

    def __init__(self, port):  # noqa: D107 (Redis.__init__ picks its own port)
        self.port = port
        self.proc = None
        self.start()

    def keys(self, pattern):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", "KEYS", pattern],
                             capture_output=True, text=True, timeout=TIMEOUT, check=True)
        return set(out.stdout.split())


@pytest.fixture
def shards():
    """(two Redis, the owner index of each of NAMESPACES)."""
    ports, owners = split_ports()
    pair = [PortRedis(p) for p in ports]
    yield pair, owners
    for r in pair:
        r.kill()


@pytest.fixture
def nodes(shards):
    """nodes(n, *options) -> n eddy nodes on both Redis."""
    running = []

    def start(n, *options):
        urls = ",".join(r.url for r in shards[0])
        started = [SioServer("eddy", ("--redis", urls, "--namespaces", "4") + options)
                   for _ in range(n)]
        running.extend(started)
        return started

    yield start
    stop_all(running)


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close()


def connect_in(clients, name, server, nsp, **opts):
    clients.send(cmd="connect", name=name, url=server.url, nsp=nsp, transports=["websocket"],
                 **opts)
    return clients.wait(f"{name} to connect", name=name, type="connect")


def member_and_sender(clients, a, b, nsp, tag):
    """A member of room r of nsp on node a, a sender on node b, interest active."""
    member, sender = f"m{tag}", f"s{tag}"
    first = connect_in(clients, member, a, nsp)
    assert clients.ack(member, "join", "r") == ["joined"]
    connect_in(clients, sender, b, nsp)
    clients.probe(sender, [member], timeout=3 * TIMEOUT)
    return first, member, sender


def cross_in_order(clients, members):
    """Each namespace's sender (members: nsp -> (first, member, sender)) emits 0-9 to the room
    r: its member gets exactly those, in order."""
    for nsp, (_, member, sender) in members.items():
        for k in range(10):
            clients.emit(sender, "to-room", "r", {"seq": k})
    for nsp, (_, member, _) in members.items():
        got = clients.room_messages(member, 10)
        assert [s for s, _ in got] == list(range(10)), nsp
        clients.nothing_more(member, 0.1)


def recovers_on(clients, node, member_of_nsp, nsp):
    """The member (first, member, sender) of nsp drops its transport; its sender emits 10-14
    to the room r; the member connects again to node with its pid and offset: the same
    socket, 10-14 exactly, nothing more."""
    first, member, sender = member_of_nsp
    last = clients.last_offset[member]
    clients.send(cmd="drop", name=member)
    clients.wait(f"{member}'s disconnect", name=member, type="disconnect")
    for k in range(10, 15):
        clients.emit(sender, "to-room", "r", {"seq": k})
    assert clients.ack(sender, "message-with-ack", "sync") == ["sync"]
    again = connect_in(clients, member + "x", node, nsp,
                       auth={"pid": first["pid"], "offset": last})
    assert again["id"] == first["id"], f"{nsp} not recovered:\n" + "\n".join(node.log_lines)
    got = clients.room_messages(member + "x", 5)
    assert [s for s, _ in got] == list(range(10, 15)), nsp
    clients.nothing_more(member + "x", 0.2)


def test_namespaces_spread_over_two_redis_broadcast_and_recover(shards, nodes, clients):
    """Two nodes on two Redis: a broadcast in every namespace reaches the member on the
    other node once and in order; each namespace's keys are on the Redis the ring names
    (none on the other), both Redis hold some; a client of a namespace of each shard
    recovers on the other node what it missed (its session record on the pid's shard)."""
    (r0, r1), owners = shards
    a, b = nodes(2, "--recovery", "60000")
    members = {}
    for i, nsp in enumerate(NAMESPACES):
        members[nsp] = member_and_sender(clients, a, b, nsp, i)
    cross_in_order(clients, members)
    held = [r0.keys("eddy:{*}:pos"), r1.keys("eddy:{*}:pos")]
    for nsp, owner in zip(NAMESPACES, owners):
        key = f"eddy:{{{nsp}}}:pos"
        assert key in held[owner] and key not in held[1 - owner], (nsp, owner, held)
    assert all(held), held  # both Redis are used

    # Recovery on the other node, in a namespace of each shard.
    for owner in (0, 1):
        nsp = NAMESPACES[owners.index(owner)]
        recovers_on(clients, b, members[nsp], nsp)


def test_one_redis_down_the_other_namespaces_keep_delivering(shards, nodes, clients):
    """One Redis killed: a namespace on the other Redis still delivers across nodes; one
    on the dead Redis does not (its members on the sender's node still get it, locally);
    after the restart both deliver across nodes again."""
    (r0, r1), owners = shards
    a, b = nodes(2)
    live = NAMESPACES[owners.index(0)]
    dead = NAMESPACES[owners.index(1)]
    _, m_live, s_live = member_and_sender(clients, a, b, live, "l")
    _, m_dead, s_dead = member_and_sender(clients, a, b, dead, "d")
    connect_in(clients, "local", b, dead)  # on the sender's node
    assert clients.ack("local", "join", "r") == ["joined"]
    r1.kill()
    a.wait_log("Redis broker down", timeout=2 * TIMEOUT)
    b.wait_log("Redis broker down", timeout=2 * TIMEOUT)
    for k in range(10):
        clients.emit(s_live, "to-room", "r", {"seq": k})
        clients.emit(s_dead, "to-room", "r", {"seq": k})
    assert [s for s, _ in clients.room_messages(m_live, 10)] == list(range(10))
    assert [s for s, _ in clients.room_messages("local", 10)] == list(range(10))
    clients.nothing_more(m_dead, 0.3)  # b queues them for the dead Redis
    r1.start()
    a.wait_log("Redis broker back", timeout=3 * TIMEOUT)
    b.wait_log("Redis broker back", timeout=3 * TIMEOUT)
    # What b queued for the dead Redis reaches a's member once it is back, or not if b sent
    # it before a subscribed again; either way before b's probe that gets through: drop it.
    clients.probe(s_dead, [m_dead], timeout=3 * TIMEOUT)
    clients.probe(s_live, [m_live], timeout=3 * TIMEOUT)
    assert clients.ack(s_dead, "message-with-ack", "sync") == ["sync"]
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        clients._pull(deadline - time.monotonic())
    clients.seen[:] = [r for r in clients.seen if r["name"] != m_dead]
    for k in range(100, 110):
        clients.emit(s_live, "to-room", "r", {"seq": k})
        clients.emit(s_dead, "to-room", "r", {"seq": k})
    assert [s for s, _ in clients.room_messages(m_live, 10)] == list(range(100, 110))
    assert [s for s, _ in clients.room_messages(m_dead, 10)] == list(range(100, 110))


def shard_log(server, what, redis):
    """The namespaces a node's log line "Redis broker <what> ... on shard <redis>" lists."""
    match = server.wait_log(rf"Redis broker {what}[^:]* on shard 127\.0\.0\.1:{redis.port}/0 "
                            r"\(namespaces ([^)]*)\)", timeout=3 * TIMEOUT)
    return set(match.group(1).split(", "))


def test_one_redis_frozen_only_its_namespaces_deliver_locally_and_recover(shards, nodes,
                                                                          clients):
    """Recovery on; the Redis of namespace A frozen (SIGSTOP) past the command timeout,
    the Redis of namespace B ("/") not. The nodes log the frozen shard's address and its
    namespaces (A's, not B's). Meanwhile B's broadcasts still go through its Redis: the
    members on both nodes, the sender's own included, get every one once, in order, with
    an offset (before, a node with any Redis down delivered every namespace's broadcasts
    locally, without offset). A's deliver on the sender's node only (la gets them, ma on
    the other node does not). Once A's Redis is back, A's clients reconnect and recover:
    ma gets exactly what it missed, la nothing twice; B's clients stay connected all
    along (no disconnect, no new connect: same transport, same sid) and keep receiving
    (before, every transport of the node was closed); a fetchSockets() in B during the
    outage lists the other node's sockets (before: this node's only, status closed)."""
    pair, owners = shards
    a, b = nodes(2, "--recovery", "60000")
    nsp_b = "/"  # the example's commands across nodes (x-fetch) are on "/"
    frozen = pair[1 - owners[0]]
    nsp_a = NAMESPACES[owners.index(1 - owners[0])]
    first = {}
    for name, server, nsp in (("ma", a, nsp_a), ("la", b, nsp_a), ("mb", a, nsp_b),
                              ("lb", b, nsp_b)):
        first[name] = connect_in(clients, name, server, nsp, reconnection=nsp == nsp_a)
        assert clients.ack(name, "join", "r") == ["joined"]
    first["sa"] = connect_in(clients, "sa", b, nsp_a, reconnection=True)
    connect_in(clients, "sb", b, nsp_b)
    clients.probe("sa", ["ma", "la"], timeout=3 * TIMEOUT)
    clients.probe("sb", ["mb", "lb"], timeout=3 * TIMEOUT)
    assert clients.ack("sa", "message-with-ack", "sync") == ["sync"]
    assert clients.ack("sb", "message-with-ack", "sync") == ["sync"]
    for name in ("ma", "la", "mb", "lb"):
        clients.nothing_more(name, 0.3)
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        for server in (a, b):
            listed = shard_log(server, "down", frozen)
            assert nsp_a in listed and nsp_b not in listed, (listed, nsp_a, nsp_b)
        for k in range(20):
            clients.emit("sb", "to-room", "r", {"seq": k})
        for k in range(10):
            clients.emit("sa", "to-room", "r", {"seq": k})
        for name in ("mb", "lb"):
            got = clients.room_messages(name, 20, timeout=3 * TIMEOUT)
            assert [s for s, _ in got] == list(range(20)), name
            assert all(isinstance(o, str) for _, o in got), f"{name}: delivered without offset"
            assert len({o for _, o in got}) == 20
        assert [s for s, _ in clients.room_messages("la", 10)] == list(range(10))
        clients.nothing_more("ma", 0.3)
        # Commands across nodes in B still reach the other node (fetchSockets).
        answer = clients.ack("sb", "x-fetch", {}, 3000)[0]
        assert answer["status"] == 0 and first["mb"]["id"] in \
            {s["id"] for s in answer["sockets"]}, answer
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    for server in (a, b):
        shard_log(server, "back", frozen)
    for name in ("ma", "la", "sa"):
        r = clients.wait(f"{name} to reconnect", 3 * TIMEOUT, name=name, type="connect")
        assert r["recovered"] and r["id"] == first[name]["id"], \
            f"{name} not recovered:\n" + "\n".join(a.log_lines + b.log_lines)
    assert sorted(s for s, _ in clients.room_messages("ma", 10, timeout=3 * TIMEOUT)) == \
        list(range(10))
    for k in range(100, 110):
        clients.emit("sb", "to-room", "r", {"seq": k})
        clients.emit("sa", "to-room", "r", {"seq": k})
    for name in ("mb", "lb", "ma", "la"):
        assert [s for s, _ in clients.room_messages(name, 10)] == list(range(100, 110)), name
        clients.nothing_more(name, 0.2)
    moved = [r for r in clients.seen
             if r["name"] in ("mb", "lb", "sb") and r["type"] in ("connect", "disconnect")]
    assert not moved, moved


def test_two_redis_frozen_each_shard_recovers_on_its_own_return(shards, nodes, clients):
    """Recovery on; both Redis frozen, broadcasts in a namespace of each (delivered on the
    sender's node only, numbered there until their shard answers). Only X's Redis
    resumes: X's clients reconnect and recover what they missed, exactly once, although
    Y's broadcasts still wait for their Redis (X's gap waits only for X's own, and each
    client's session record is on its namespace's Redis: its pid is drawn so); Y's
    clients are not disconnected meanwhile. Then Y's Redis resumes and Y's clients
    recover too."""
    pair, owners = shards
    a, b = nodes(2, "--recovery", "60000")
    nsps = {"x": NAMESPACES[owners.index(0)], "y": NAMESPACES[owners.index(1)]}
    first = {}
    for k, nsp in nsps.items():
        for name, server in ((f"m{k}", a), (f"l{k}", b)):
            first[name] = connect_in(clients, name, server, nsp, reconnection=True)
            assert clients.ack(name, "join", "r") == ["joined"]
        first[f"s{k}"] = connect_in(clients, f"s{k}", b, nsp, reconnection=True)
        clients.probe(f"s{k}", [f"m{k}", f"l{k}"], timeout=3 * TIMEOUT)
    # Each socket's session record is on its namespace's Redis (placed by its pid).
    shard_names = [f"127.0.0.1:{r.port}/0" for r in pair]
    for name, got in first.items():
        assert ring_owner(shard_names, got["pid"]) == (name[1] == "y"), (name, got["pid"])
        assert clients.ack(f"s{k}", "message-with-ack", "sync") == ["sync"]
    for name in ("mx", "lx", "my", "ly"):
        clients.nothing_more(name, 0.3)
    stopped = list(pair)
    for r in stopped:
        r.proc.send_signal(signal.SIGSTOP)
    try:
        for server in (a, b):
            for r in pair:
                shard_log(server, "down", r)
        for k in ("x", "y"):
            for i in range(5):
                clients.emit(f"s{k}", "to-room", "r", {"seq": i})
            assert [s for s, _ in clients.room_messages(f"l{k}", 5)] == list(range(5))
        pair[0].proc.send_signal(signal.SIGCONT)
        stopped.remove(pair[0])
        for name in ("mx", "lx", "sx"):
            r = clients.wait(f"{name} to reconnect", 3 * TIMEOUT, name=name, type="connect")
            assert r["recovered"] and r["id"] == first[name]["id"], \
                f"{name} not recovered:\n" + "\n".join(a.log_lines + b.log_lines)
        assert sorted(s for s, _ in clients.room_messages("mx", 5)) == list(range(5))
        clients.nothing_more("lx", 0.3)
        moved = [r for r in clients.seen if r["name"] in ("my", "ly", "sy") and
                 r["type"] in ("connect", "disconnect")]
        assert not moved, moved
    finally:
        for r in stopped:
            r.proc.send_signal(signal.SIGCONT)
    for name in ("my", "ly", "sy"):
        r = clients.wait(f"{name} to reconnect", 3 * TIMEOUT, name=name, type="connect")
        assert r["recovered"] and r["id"] == first[name]["id"], \
            f"{name} not recovered:\n" + "\n".join(a.log_lines + b.log_lines)
    assert sorted(s for s, _ in clients.room_messages("my", 5, timeout=3 * TIMEOUT)) == \
        list(range(5))
    for name in ("mx", "lx", "my", "ly"):
        clients.nothing_more(name, 0.3)


def namespaces_up(port):
    """{namespace: (shard, up)} from the node's eddy_broker_namespace_up metric."""
    text = get(port, "/metrics")[1]
    return {m[1]: (m[2], int(m[3])) for m in re.finditer(
        r'^eddy_broker_namespace_up\{namespace="([^"]*)",shard="([^"]*)"\} (\d)$', text, re.M)}


def test_daemon_on_two_redis_not_ready_while_one_is_down(tmp_path, shards):
    """The eddy program with [broker] redis_url listing both Redis: ready (its round trip
    through each works), 503 "broker not ready" while one Redis is down, ready again after
    its restart. /metrics names each namespace's shard (as the ring places it) and says
    which deliver on this node only: 0 for those of the Redis that is down, 1 for the
    others, all 1 again once it is back."""
    (r0, r1), owners = shards
    server = Daemon(tmp_path, f"[socketio]\nnamespaces = {', '.join(NAMESPACES)}\n"
                    f"[broker]\nredis_url = {r0.url},{r1.url}\n")
    names = [f"127.0.0.1:{r.port}/0" for r in (r0, r1)]
    try:
        wait_for(lambda: get(server.admin_port, "/readyz") == (200, "ready\n"),
                 "the node to be ready on both Redis")
        assert namespaces_up(server.admin_port) == {
            nsp: (names[owner], 1) for nsp, owner in zip(NAMESPACES, owners)}
        r1.kill()
        wait_for(lambda: get(server.admin_port, "/readyz") == (503, "broker not ready\n"),
                 "/readyz to answer 503 with one Redis down")
        down = {nsp: (names[owner], int(owner == 0)) for nsp, owner in zip(NAMESPACES, owners)}
        wait_for(lambda: namespaces_up(server.admin_port) == down,
                 "the namespaces of the Redis that is down to be listed 0")
        r1.start()
        wait_for(lambda: get(server.admin_port, "/readyz") == (200, "ready\n"),
                 "/readyz to answer 200 once the Redis is back", timeout=3 * TIMEOUT)
        wait_for(lambda: all(up for _, up in namespaces_up(server.admin_port).values()),
                 "every namespace to be listed 1 again")
    finally:
        server.stop()


def config_check_urls(tmp_path, cases):
    """`eddy config check` with each (redis_url, ok) of cases: accepted when ok, else refused
    naming the file and line of [broker] without quoting the password ("secret")."""
    conf = tmp_path / "eddy.conf"
    for value, ok in cases:
        conf.write_text(f"[broker]\nredis_url = {value}\n")
        out = subprocess.run([EDDY, "config", "check", "-c", str(conf)], capture_output=True,
                             text=True, timeout=TIMEOUT)
        assert (out.returncode == 0) == ok, (value, out.stderr)
        if not ok:
            assert f"{conf}:2: [broker]" in out.stderr and "secret" not in out.stderr


def test_a_bad_url_in_the_list_is_refused(tmp_path):
    """A list with a malformed URL: the daemon's config check names file and line (no
    password quoted); the layer refuses it at start (examples/socketio exits, logged). A
    well-formed list is accepted."""
    config_check_urls(tmp_path, [("redis://127.0.0.1:1,redis://127.0.0.1:2", True),
                                 ("redis://127.0.0.1:1,http://secret@x", False),
                                 ("redis://127.0.0.1:1,", False), ("redis://a,,redis://b", False)])
    proc = subprocess.run([os.path.join(BUILD, "examples", "socketio"), "--port",
                           str(free_port()), "--redis",
                           "redis://127.0.0.1:1,redis://127.0.0.1:99999"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode != 0 and "bad redis_url number 2" in proc.stdout + proc.stderr
