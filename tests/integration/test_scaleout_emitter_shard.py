# SPDX-License-Identifier: MIT
"""Socket.IO's Redis emitter with several Redis (issue 12): a backend's npm
@socket.io/redis-emitter may be given any one of the shards' Redis; every node listens on
every shard, so each broadcast reaches the room's members on every node, exactly once,
whichever Redis it was published to."""

import json
import os
import subprocess
import time

import pytest

from eddyserver import TIMEOUT
from test_scaleout_shard import clients, nodes, shards  # noqa: F401 (fixtures)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
EMITTER = os.path.join(ROOT, "tests", "clients", "redis_emitter.js")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(ROOT, "bench", "scaleout", "node_modules", "@socket.io",
                                   "redis-emitter")),
    reason="bench/scaleout/node_modules is not installed (npm ci --prefix bench/scaleout)")


class Emitter:
    """tests/clients/redis_emitter.js: the npm emitter publishing to one Redis."""

    def __init__(self, redis):
        self.proc = subprocess.Popen(["node", EMITTER, redis.url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def emit(self, event, *args, rooms=(), except_=()):
        """Publishes one broadcast; returns once Redis processed it."""
        self.proc.stdin.write(json.dumps({"rooms": list(rooms), "except": list(except_),
                                          "event": event, "args": list(args)}) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "ok\n", "the emitter failed"

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=TIMEOUT)


def no_more(clients, name, within=0.3):
    """No news or end event reaches name within `within` seconds (no duplicate)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        clients._pull(deadline - time.monotonic())
    extra = [r for r in clients.seen if r["name"] == name and r["type"] == "event"
             and r["event"] in ("news", "end")]
    assert not extra, extra


def test_emitter_on_any_shard_reaches_every_node_once(shards, nodes, clients):  # noqa: F811
    """Two nodes on two Redis, the npm emitter publishing to the second Redis of the list,
    then to the first: the room's members on both nodes get every broadcast once, in order,
    the except-room's member none (before, only the first Redis was listened to: nothing
    published to the second arrived)."""
    pair, _ = shards
    a, b = nodes(2, "--redis-emitter", "socket.io")
    for name, server in [("x", a), ("y", b), ("z", b)]:
        clients.connect(name, server)
    for name, room in [("x", "r"), ("y", "r"), ("z", "muted"), ("z", "r")]:
        assert clients.ack(name, "join", room) == ["joined"]
    for redis in (pair[1], pair[0]):
        emitter = Emitter(redis)
        try:
            # Until both nodes' pattern subscriptions on that Redis are active, a probe
            # may reach fewer.
            clients.probe_until(lambda: emitter.emit("probe", rooms=["r"], except_=["muted"]),
                                {"x", "y"}, lambda r: r["event"] == "probe", "emitter probe")
            clients.nothing_more("x", 0.3)
            for r in [r for r in clients.seen if r["type"] == "event" and r["event"] == "probe"]:
                clients.seen.remove(r)
            for i in range(5):
                emitter.emit("news", i, redis.port, rooms=["r"], except_=["muted"])
            emitter.emit("end", redis.port)
        finally:
            emitter.close()
        for name in ("x", "y", "z"):
            got = []
            while not got or got[-1][0] != "end":
                r = clients.wait(f"{name}'s events", name=name, type="event")
                if r["event"] not in ("auth", "probe"):  # auth: the application's greeting
                    got.append((r["event"], r["args"]))
            want = [] if name == "z" else [("news", [i, redis.port]) for i in range(5)]
            assert got == want + [("end", [redis.port])], (name, redis.port, got)
        for name in ("x", "y", "z"):
            no_more(clients, name)
