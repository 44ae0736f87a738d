# SPDX-License-Identifier: MIT
"""Without history (recovery off: the default) a broadcast across nodes is one plain
PUBLISH that nothing keeps: a node that does not get it has lost it. Each node numbers its
broadcasts per room channel, and a receiver counts a jump on a channel it held all along
as broadcasts missed (issue 12): /metrics' eddy_broker_messages_missed_total, and a
warning. Two `eddy serve` daemons, B behind a TCP proxy the test cuts while A emits."""

import subprocess

from eddyserver import TIMEOUT, wait_for
from test_daemon_broker import sample
from test_daemon_realtime import Clients, Daemon, read
from test_scaleout import redis  # noqa: F401 (the fixture)
from test_scaleout_faults import proxy  # noqa: F401 (the fixture)
from test_scaleout_plain import emits, got

ROOMS = "[socketio]\nclient_rooms = r1, r2\n"


def numsub(redis, channel):  # noqa: F811
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "PUBSUB", "NUMSUB", channel],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
    return int(out.split()[1])


def test_no_history_broadcasts_lost_on_a_cut_are_counted(tmp_path, redis, proxy):  # noqa: F811
    """A emits to r1 (B's member bob is in it) and r2 (nobody on B): B holds only r1's
    channel, so A's numbers jump at B all the time, and nothing is counted for that. Then
    B's connections are cut; A's 5 broadcasts to r1 meanwhile reach no one on B; B back,
    A's next broadcasts arrive: B counts exactly the 5 (bob is missing those 5), warns
    once naming A, and A counts none."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Daemon(tmp_path / "a", ROOMS + f"[broker]\nredis_url = {redis.url}\nnode_id = node-a\n")
    b = Daemon(tmp_path / "b", ROOMS + f"[broker]\nredis_url = {proxy.url}\nnode_id = node-b\n")
    clients = Clients(b.port)
    try:
        for node in (a, b):
            wait_for(lambda: sample(node.admin_port, "eddy_broker_nodes") == 2, "both alive")
        clients.connect("bob", transports=["websocket"])
        assert clients.ack("bob", "join", "r1") == [{"ok": True}]
        clients.probe_until(lambda: a.api("emit", {"room": "r1", "event": "probe"}), {"bob"},
                            lambda r: r["event"] == "probe", "probe to r1")
        clients.seen = [r for r in clients.seen if r.get("event") != "probe"]

        for i in range(30):  # to r1 and r2 in turn: B hears every other one of A's
            emits(a, ["r1" if i % 2 == 0 else "r2"], "m", [i])
        emits(a, ["r1"], "end", [0])
        assert got(clients, "bob", "end") == list(range(0, 30, 2))
        assert sample(b.admin_port, "eddy_broker_messages_missed_total") == 0

        channel = "eddy:{/}:c:r1"
        assert numsub(redis, channel) == 1  # B's subscription only
        proxy.cut()
        wait_for(lambda: numsub(redis, channel) == 0, "Redis to drop B's subscription")
        emits(a, ["r1"], "m", range(100, 105))  # lost for B: nothing holds them
        proxy.resume()
        wait_for(lambda: numsub(redis, channel) == 1, "B to subscribe again")
        emits(a, ["r1"], "m", range(105, 110))
        emits(a, ["r1"], "end", [1])
        assert got(clients, "bob", "end") == list(range(105, 110))
        assert sample(b.admin_port, "eddy_broker_messages_missed_total") == 5
        assert sample(a.admin_port, "eddy_broker_messages_missed_total") == 0
        warnings = [line for line in read(b.log_path).splitlines()
                    if "never arrived" in line]
        assert len(warnings) == 1 and "5 broadcasts from node node-a" in warnings[0], warnings
    finally:
        clients.close()
        a.stop()
        b.stop()


def numpat(redis):  # noqa: F811
    out = subprocess.run(["redis-cli", "-p", str(redis.port), "PUBSUB", "NUMPAT"],
                         capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout
    return int(out.split()[0])


def test_broadcasts_to_one_socket_lost_on_a_cut_are_counted(tmp_path, redis, proxy):  # noqa: F811
    """A broadcast to one socket goes to its own channel, which its node hears through one
    pattern per namespace: A's 5 broadcasts to bob during the cut are counted at B. Then
    bob leaves (B drops the pattern: no local socket left), A sends 3 more to bob's
    channel that nobody hears, carol connects (B holds the pattern afresh): A's next one to
    bob's channel is a jump of 3 in its numbers, but not a loss, and is not counted."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Daemon(tmp_path / "a", f"[broker]\nredis_url = {redis.url}\nnode_id = node-a\n")
    b = Daemon(tmp_path / "b", f"[broker]\nredis_url = {proxy.url}\nnode_id = node-b\n")
    clients = Clients(b.port)
    try:
        for node in (a, b):
            wait_for(lambda: sample(node.admin_port, "eddy_broker_nodes") == 2, "both alive")
        patterns = numpat(redis)
        bob = clients.connect("bob", transports=["websocket"])
        wait_for(lambda: numpat(redis) == patterns + 1, "B to hold its socket pattern")
        clients.probe_until(lambda: a.api("emit", {"rooms": [bob], "event": "probe"}),
                            {"bob"}, lambda r: r["event"] == "probe", "probe to bob")
        clients.seen = [r for r in clients.seen if r.get("event") != "probe"]
        emits(a, [bob], "m", range(3))
        emits(a, [bob], "end", [0])
        assert got(clients, "bob", "end") == [0, 1, 2]  # B heard them before the cut

        proxy.cut()
        wait_for(lambda: numpat(redis) == patterns, "Redis to drop B's pattern")
        emits(a, [bob], "m", range(100, 105))  # lost for B
        proxy.resume()
        wait_for(lambda: numpat(redis) == patterns + 1, "B to hold its pattern again")
        emits(a, [bob], "m", range(105, 108))
        emits(a, [bob], "end", [1])
        assert got(clients, "bob", "end") == [105, 106, 107]
        assert sample(b.admin_port, "eddy_broker_messages_missed_total") == 5

        clients.send(cmd="close", name="bob")
        wait_for(lambda: numpat(redis) == patterns, "B to drop its pattern")
        emits(a, [bob], "m", range(200, 203))  # nobody holds bob's channel
        carol = clients.connect("carol", transports=["websocket"])
        wait_for(lambda: numpat(redis) == patterns + 1, "B to hold its pattern afresh")
        emits(a, [bob], "m", [203])
        emits(a, [carol], "end", [2])  # after A's last one to bob's channel, on one connection
        assert got(clients, "carol", "end") == []
        assert sample(b.admin_port, "eddy_broker_messages_missed_total") == 5
    finally:
        clients.close()
        a.stop()
        b.stop()
