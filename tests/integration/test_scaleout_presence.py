# SPDX-License-Identifier: MIT
"""Presence across nodes (issues 12 and 13): `eddy serve` daemons on one redis-server record
their sockets' room memberships in Redis (eddy_rt_room_presence(), eddy_rt_rooms()), so the
server API's presence and rooms answer for the whole cluster on any node; a member leaves
the answers when it leaves, disconnects, or its node stops (at once) or dies (kill -9:
within its lease, 3 s unless `[broker] heartbeat_timeout` says otherwise); `eddy status` and the admin page list the cluster's alive nodes.
"""

import base64
import json
import re
import signal
import subprocess
import time
import urllib.request

from eddyserver import TIMEOUT
from test_daemon_realtime import API_KEY, EDDY, JWT_KEY, Clients, Daemon, token
from test_scaleout import redis  # noqa: F401 (the fixture)

# A kill -9'd node's entries must be gone within its lease (3 s) plus a heartbeat (1 s),
# with a second of slack for a loaded machine.
LEASE_BOUND = 5.0


def node_conf(redis_url, name, broker=""):
    return (f"[auth]\nenabled = true\nkey = {JWT_KEY}\n[socketio]\nclient_rooms = team, x\n"
            f"[broker]\nredis_url = {redis_url}\nnode_id = {name}\n{broker}")


def cluster(tmp_path, redis_url, names, suffix="", broker=None):
    """Daemons named names on redis_url; broker maps a name to more [broker] lines."""
    nodes = []
    for name in names:
        (tmp_path / (name + suffix)).mkdir()
        nodes.append(Daemon(tmp_path / (name + suffix),
                            node_conf(redis_url, name, (broker or {}).get(name, ""))))
    return nodes


def presence(daemon, room):
    status, answer, _ = daemon.api("presence", {"room": room})
    assert status == 200, answer
    return answer["result"]


def members(daemon, room):
    """{socket id: (user, node)} of room, as daemon answers it."""
    return {s["id"]: (s["user"], s.get("node")) for s in presence(daemon, room)["sockets"]}


def poll(what, predicate, within=TIMEOUT):
    """predicate's first true value within `within` seconds (and how long it took)."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value, time.monotonic() - start
        assert time.monotonic() - start < within, f"{what}: not within {within} s"
        time.sleep(0.05)


def admin_stats(daemon):
    req = urllib.request.Request(f"http://127.0.0.1:{daemon.admin_port}/admin/stats")
    cred = base64.b64encode(f"ops:{API_KEY}".encode()).decode()
    req.add_header("Authorization", f"Basic {cred}")
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())


def status_json(daemon):
    out = subprocess.run([EDDY, "status", "--json", "-c", str(daemon.conf)], cwd=daemon.tmp,
                         capture_output=True, text=True, timeout=TIMEOUT)
    return json.loads(out.stdout)


def test_presence_and_rooms_answer_for_every_node(tmp_path, redis):  # noqa: F811
    a, b = cluster(tmp_path, redis.url, ["node-a", "node-b"])
    clients = Clients(a.port)
    try:
        alice = clients.connect("alice", auth={"token": token("alice")}, transports=["websocket"])
        bob = clients.connect("bob", auth={"token": token("bob")}, transports=["websocket"],
                              url=f"http://127.0.0.1:{b.port}")
        tab2 = clients.connect("tab2", auth={"token": token("alice")}, transports=["websocket"],
                               url=f"http://127.0.0.1:{b.port}")
        for name in ("alice", "bob", "tab2"):
            assert clients.ack(name, "join", "team") == [{"ok": True}]
        assert clients.ack("bob", "join", "x") == [{"ok": True}]
        everyone = {alice: ("alice", "node-a"), bob: ("bob", "node-b"),
                    tab2: ("alice", "node-b")}
        # Node a sees b's members and b sees a's: the same answer on both.
        for node in (a, b):
            poll("every member in the answer", lambda: members(node, "team") == everyone)
            result = presence(node, "team")
            assert (result["num_sockets"], result["num_users"]) == (3, 2)
            assert result["users"] == ["alice", "bob"]
            status, answer, _ = node.api("rooms", {})
            assert status == 200, answer
            assert answer["result"]["rooms"] == [
                {"name": "team", "sockets": 3, "users": 2},
                {"name": "x", "sockets": 1, "users": 1}]
        # A leave and a disconnect on b leave a's answer.
        assert clients.ack("bob", "leave", "team") == [{"ok": True}]
        poll("bob's leave on node a",
             lambda: members(a, "team") == {alice: everyone[alice], tab2: everyone[tab2]})
        assert members(a, "x") == {bob: everyone[bob]}
        clients.send(cmd="close", name="tab2")
        poll("tab2's disconnect on node a", lambda: members(a, "team") == {alice: everyone[alice]})
        status, answer, _ = a.api("rooms", {})
        assert answer["result"]["rooms"] == [{"name": "team", "sockets": 1, "users": 1},
                                             {"name": "x", "sockets": 1, "users": 1}]
        # Both nodes listed by each: the admin page's data and `eddy status`.
        # (each node's list is its last heartbeat's: within a second of the other's start)
        for node, me, other in ((a, "node-a", "node-b"), (b, "node-b", "node-a")):
            stats, _ = poll(f"{me} listing {other}",
                            lambda: (lambda s: s if len(s["nodes"]) == 2 else None)(
                                admin_stats(node)))
            assert [n.get("id") for n in stats["nodes"]] == [me, other]
            assert stats["nodes"][0]["pid"] == node.proc.pid
            assert status_json(node)["cluster_nodes"] == ["node-a", "node-b"]
        out = subprocess.run([EDDY, "status", "-c", str(a.conf)], cwd=a.tmp,
                             capture_output=True, text=True, timeout=TIMEOUT)
        # The second name in the values' column, under the first.
        m = re.search(r"^(cluster_nodes +)node-a\n( +)node-b$", out.stdout, re.M)
        assert m and len(m.group(1)) == len(m.group(2)), out.stdout
    finally:
        clients.close()
        a.stop()
        b.stop()


def team_on_three_nodes(clients, a, b, c):
    """alice on node a, bob on b and carol on c joined "team", as node a sees: their ids."""
    alice = clients.connect("alice", auth={"token": token("alice")}, transports=["websocket"])
    bob = clients.connect("bob", auth={"token": token("bob")}, transports=["websocket"],
                          url=f"http://127.0.0.1:{b.port}")
    carol = clients.connect("carol", auth={"token": token("carol")},
                            transports=["websocket"], url=f"http://127.0.0.1:{c.port}")
    for name in ("alice", "bob", "carol"):
        assert clients.ack(name, "join", "team") == [{"ok": True}]
    poll("the three members on node a", lambda: set(members(a, "team")) == {alice, bob, carol})
    poll("three nodes alive", lambda: len(admin_stats(a)["nodes"]) == 3)
    return alice, bob, carol


def test_members_of_a_killed_node_vanish_within_its_lease(tmp_path, redis):  # noqa: F811
    a, b, c = cluster(tmp_path, redis.url, ["node-a", "node-b", "node-c"])
    clients = Clients(a.port)
    try:
        alice, bob, carol = team_on_three_nodes(clients, a, b, c)
        # kill -9: no goodbye; its entries stay in Redis but its lease runs out.
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait()
        _, took = poll("node b's member to vanish", lambda: set(members(a, "team")) == {alice, carol},
                       within=LEASE_BOUND)
        print(f"kill -9: node b's member gone from node a's answer after {took:.2f} s")
        assert members(c, "team") == {alice: ("alice", "node-a"), carol: ("carol", "node-c")}
        assert a.api("rooms", {})[1]["result"]["rooms"] == [
            {"name": "team", "sockets": 2, "users": 2}]
        poll("node b gone from the node list",
             lambda: [n.get("id") for n in admin_stats(a)["nodes"]] == ["node-a", "node-c"],
             within=LEASE_BOUND)
        assert status_json(a)["cluster_nodes"] == ["node-a", "node-c"]
        # A clean stop removes the node's lease at once: well within a heartbeat.
        c.stop()
        _, took = poll("node c's member to vanish", lambda: set(members(a, "team")) == {alice},
                       within=1.5)
        print(f"clean stop: node c's member gone after {took:.2f} s")
    finally:
        clients.close()
        a.stop()
        if c.proc.poll() is None:
            c.stop()


def test_each_nodes_heartbeat_settings_decide_when_its_members_vanish(tmp_path, redis):  # noqa: F811
    # Node b beats every 0.25 s on a 0.75 s lease, node c every second on an 8 s lease, node a
    # keeps the defaults (1 s, 3 s). With the defaults a killed node's entries would go
    # between 2 and 3 s after the kill: b's must go well before, c's well after.
    a, b, c = cluster(tmp_path, redis.url, ["node-a", "node-b", "node-c"], broker={
        "node-b": "heartbeat_interval = 0.25\nheartbeat_timeout = 0.75\n",
        "node-c": "heartbeat_timeout = 8\n"})
    clients = Clients(a.port)
    try:
        alice, bob, carol = team_on_three_nodes(clients, a, b, c)
        for node in (b, c):
            node.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        for node in (b, c):
            node.proc.wait()
        _, took = poll("node b's member to vanish",
                       lambda: set(members(a, "team")) == {alice, carol}, within=1.7)
        print(f"kill -9: node b's member (0.75 s lease) gone after {took:.2f} s")
        while time.monotonic() - killed < 4:
            assert set(members(a, "team")) == {alice, carol}, "node c's member left early"
            time.sleep(0.2)
        _, took = poll("node c's member to vanish", lambda: set(members(a, "team")) == {alice},
                       within=8 + LEASE_BOUND - 4)
        print(f"kill -9: node c's member (8 s lease) gone after {time.monotonic() - killed:.2f} s")
        # (node a's list is its last heartbeat's)
        poll("node c gone from the node list",
             lambda: [n.get("id") for n in admin_stats(a)["nodes"]] == ["node-a"], within=1.5)
    finally:
        clients.close()
        a.stop()


def test_heartbeat_settings_are_checked(tmp_path):
    conf = tmp_path / "eddy.conf"
    for lines, why in [("heartbeat_interval = 0.01",
                        '[broker] heartbeat_interval: "0.01" is not a number of seconds (0.05-600'),
                       ("heartbeat_timeout = 4000",
                        '[broker] heartbeat_timeout: "4000" is not a number of seconds (0.1-3600'),
                       ("heartbeat_interval = 2\nheartbeat_timeout = 3",
                        "[broker] heartbeat_timeout must be at least twice heartbeat_interval"),
                       ("heartbeat_timeout = 1.5",
                        "[broker] heartbeat_timeout must be at least twice heartbeat_interval")]:
        conf.write_text(f"[server]\nport = 0\n[broker]\n{lines}\n")
        out = subprocess.run([EDDY, "config", "check", "-c", str(conf)], capture_output=True,
                             text=True, timeout=TIMEOUT)
        assert out.returncode == 2, lines
        assert why in out.stderr, out.stderr


def test_presence_is_recorded_again_after_redis_lost_it(tmp_path, redis):  # noqa: F811
    a, b = cluster(tmp_path, redis.url, ["node-a", "node-b"])
    clients = Clients(a.port)
    try:
        bob = clients.connect("bob", auth={"token": token("bob")}, transports=["websocket"],
                              url=f"http://127.0.0.1:{b.port}")
        assert clients.ack("bob", "join", "team") == [{"ok": True}]
        poll("bob on node a", lambda: members(a, "team") == {bob: ("bob", "node-b")})
        # A restarted Redis (no persistence) has no presence at all: each node records its
        # members again once it is back (bob stays connected: recovery is off).
        redis.kill()
        status, answer, _ = a.api("presence", {"room": "team"})
        assert status == 503, answer
        redis.start()
        poll("bob on node a again", lambda: (lambda r: r is not None and r.get("sockets") and
                                             members(a, "team") == {bob: ("bob", "node-b")})(
            a.api("presence", {"room": "team"})[1].get("result")))
        assert a.api("rooms", {})[1]["result"]["rooms"] == [
            {"name": "team", "sockets": 1, "users": 1}]
    finally:
        clients.close()
        a.stop()
        b.stop()


def test_a_node_restarted_under_its_id_forgets_its_old_members(tmp_path, redis):  # noqa: F811
    a, b = cluster(tmp_path, redis.url, ["node-a", "node-b"])
    clients = Clients(a.port)
    b2 = None
    try:
        alice = clients.connect("alice", auth={"token": token("alice")}, transports=["websocket"])
        bob = clients.connect("bob", auth={"token": token("bob")}, transports=["websocket"],
                              url=f"http://127.0.0.1:{b.port}")
        for name in ("alice", "bob"):
            assert clients.ack(name, "join", "team") == [{"ok": True}]
        poll("both members on node a", lambda: set(members(a, "team")) == {alice, bob})
        # kill -9, and nobody reads "team" until node b is back under the same id: its old
        # entries are still in Redis, and would count as alive again.
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait()
        poll("node b's lease to run out",
             lambda: [n.get("id") for n in admin_stats(a)["nodes"]] == ["node-a"],
             within=LEASE_BOUND)
        b2, = cluster(tmp_path, redis.url, ["node-b"], suffix="-again")
        poll("node b back", lambda: [n.get("id") for n in admin_stats(a)["nodes"]] ==
             ["node-a", "node-b"])
        _, took = poll("bob's ghost to go", lambda: set(members(a, "team")) == {alice})
        print(f"restarted node b forgot its old member after {took:.2f} s")
        assert a.api("rooms", {})[1]["result"]["rooms"] == [
            {"name": "team", "sockets": 1, "users": 1}]
    finally:
        clients.close()
        a.stop()
        if b2 is not None:
            b2.stop()
