# SPDX-License-Identifier: MIT
"""A broadcast without history (recovery off, history 0: the default) costs Redis what
Socket.IO's Redis adapter's does (issue 12): one plain PUBLISH per target room, no script,
no HINCRBY, no key, counted by Redis itself (INFO commandstats). It still reaches the
members on every node once each, in order, also a socket in two of its target rooms, and a
node cut from Redis delivers its own broadcasts at once and never again when its queued
publishes reach Redis (two `eddy serve` daemons: their server API emits to several rooms).
"""

import time

from eddyserver import wait_for
from test_daemon_broker import sample
from test_daemon_realtime import Clients, Daemon
from test_scaleout import redis  # noqa: F401 (the fixture)
from test_scaleout_faults import proxy  # noqa: F401 (the fixture)

ROOMS = "[socketio]\nclient_rooms = r1, r2\n"


def calls(redis):  # noqa: F811
    """{command: calls} since the last CONFIG RESETSTAT (INFO commandstats)."""
    out = {}
    for line in redis.cli("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            out[name] = int(fields.split("calls=")[1].split(",")[0])
    return out


def daemons(tmp_path, urls):
    nodes = []
    for i, url in enumerate(urls):
        (tmp_path / str(i)).mkdir()
        nodes.append(Daemon(tmp_path / str(i), ROOMS + f"[broker]\nredis_url = {url}\n"))
    for node in nodes:
        wait_for(lambda: sample(node.admin_port, "eddy_broker_nodes") == len(urls),
                 "every node alive")
    return nodes


def members(clients, placement):
    """Connects each member to its node and joins its rooms."""
    for name, node, rooms in placement:
        clients.connect(name, url=f"http://127.0.0.1:{node.port}", transports=["websocket"])
        for room in rooms:
            assert clients.ack(name, "join", room) == [{"ok": True}]


def settle(clients, senders, names):
    """Probes every room from every sender until each member got one: every node's
    interest is active; then forgets the probes."""
    for node in senders:
        for room in ("r1", "r2"):
            clients.probe_until(lambda: node.api("emit", {"room": room, "event": "probe"}),
                                {n for n, rooms in names if room in rooms},
                                lambda r: r["event"] == "probe", f"probe to {room}")
    clients.seen = [r for r in clients.seen if r.get("event") != "probe"]


def emits(node, rooms, event, numbers):
    for i in numbers:
        status, answer, _ = node.api("emit", {"rooms": rooms, "event": event, "args": [i]})
        assert (status, answer) == (200, {"result": {}}), answer


def got(clients, name, until):
    """The numbers of name's "m" events up to until, in arrival order (late probes aside)."""
    return [args[0] for event, args in clients.events(name, until) if event == "m"]


def nothing_more(clients):
    """No event but a late probe arrives within 0.3 s."""
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        clients._pull(deadline - time.monotonic())
    extra = [r for r in clients.seen if r["type"] == "event" and r["event"] != "probe"]
    assert extra == [], extra


def test_no_history_broadcast_is_one_publish_per_room(tmp_path, redis):  # noqa: F811
    """Node A emits 40 broadcasts to rooms r1 and r2, node B 20 to r1: ab (on A, in both
    rooms) and bb (on B, in both) get each once, in order; b1 (on B, in r1) gets those to
    r1. Redis ran a PUBLISH per target room and no script or HINCRBY for them (heartbeats
    aside: one EVALSHA and one PUBLISH per node and second), and keeps no position key."""
    a, b = daemons(tmp_path, [redis.url, redis.url])
    clients = Clients(a.port)
    try:
        placement = [("ab", a, ["r1", "r2"]), ("bb", b, ["r1", "r2"]), ("b1", b, ["r1"])]
        members(clients, placement)
        settle(clients, [a, b], [(n, r) for n, _, r in placement])
        redis.cli("CONFIG", "RESETSTAT")
        start = time.monotonic()
        emits(a, ["r1", "r2"], "m", range(40))
        emits(a, ["r1", "r2"], "end-a", [0])
        for name in ("ab", "bb", "b1"):
            assert got(clients, name, "end-a") == list(range(40)), name
        emits(b, ["r1"], "m", range(100, 120))
        emits(b, ["r1"], "end-b", [0])
        for name in ("ab", "bb", "b1"):
            assert got(clients, name, "end-b") == list(range(100, 120)), name
        stats, elapsed = calls(redis), time.monotonic() - start
        beats = 2 * (int(elapsed) + 2)  # both nodes' heartbeats, rounded up
        assert stats.get("hincrby", 0) == 0 and stats.get("eval", 0) == 0, stats
        assert stats.get("evalsha", 0) <= beats, (stats, elapsed)
        sent = 41 * 2 + 21
        assert sent <= stats["publish"] <= sent + beats, (stats, elapsed)
        assert redis.cli("EXISTS", "eddy:{/}:pos").strip() == "0"
        nothing_more(clients)
    finally:
        clients.close()
        a.stop()
        b.stop()


def test_no_history_outage_delivers_own_broadcasts_once(tmp_path, redis, proxy):  # noqa: F811
    """Node A reaches Redis through a proxy that cuts it off: A's 10 broadcasts to r1 and
    r2 meanwhile reach its member ab (in both rooms) at once, once each; when the proxy
    forwards again, A's queued publishes reach B's member bb once each, in order, and ab
    never gets them a second time (their echo is skipped); live delivery then works again,
    once each."""
    a, b = daemons(tmp_path, [proxy.url, redis.url])
    clients = Clients(a.port)
    try:
        placement = [("ab", a, ["r1", "r2"]), ("bb", b, ["r1", "r2"])]
        members(clients, placement)
        settle(clients, [a], [(n, r) for n, _, r in placement])
        proxy.cut()
        wait_for(lambda: "Redis broker down" in a.log_path.read_text(), "A to see Redis down")
        emits(a, ["r1", "r2"], "m", range(10))
        emits(a, ["r1", "r2"], "end-1", [0])
        assert got(clients, "ab", "end-1") == list(range(10))
        proxy.resume()
        wait_for(lambda: "Redis broker back" in a.log_path.read_text(), "A to be back")
        assert got(clients, "bb", "end-1") == list(range(10))
        emits(a, ["r1", "r2"], "m", range(10, 20))
        emits(a, ["r1", "r2"], "end-2", [0])
        for name in ("ab", "bb"):
            assert got(clients, name, "end-2") == list(range(10, 20)), name
        nothing_more(clients)
    finally:
        clients.close()
        a.stop()
        b.stop()
