# SPDX-License-Identifier: MIT
"""What an idle cluster costs Redis (issue 12): a node's background work (its lease, the
alive nodes, the readiness round trip's ping to itself, the renewal of the session records
it holds) is one pipelined write of plain commands a second, whatever its number of
sockets: Redis reads from each node once a second. A node that publishes sends it with a
publish: Redis then wakes up for the publishes only.
"""

import re
import subprocess
import threading
import time

from eddyserver import TIMEOUT
from test_scaleout import cluster, redis  # noqa: F401 (fixtures)
from test_scaleout_cost import clients, redis_cli  # noqa: F401 (clients: a fixture)

WINDOW = 3.0  # seconds of MONITOR; heartbeats come every second


class Monitor:
    """Redis MONITOR from start() to stop(): commands as (time, source, [words]), source
    being the client's address, or 'lua' for a command a script called."""

    def __init__(self, redis):
        self.proc = subprocess.Popen(["redis-cli", "-p", str(redis.port), "MONITOR"],
                                     stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout),
                                       daemon=True)
        self.reader.start()

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.reader.join(TIMEOUT)
        out = []
        for line in self.lines:
            m = re.match(r'([0-9.]+) \[\d+ ([^\]]+)\] (.*)', line)
            if m:
                out.append((float(m.group(1)), m.group(2),
                            re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(3))))
        return out


def monitor(redis, seconds):
    """The commands Redis runs for `seconds` (Monitor.stop()'s list)."""
    mon = Monitor(redis)
    time.sleep(seconds)
    return mon.stop()


def by_client(seen):
    """The commands seen, per client address: [(time, words)]; MONITOR's and INFO's left
    out."""
    top = {}
    for t, source, words in seen:
        if source != "lua" and words and words[0].upper() not in ("MONITOR", "INFO"):
            top.setdefault(source, []).append((t, words))
    return top


HEARTBEAT = ["TIME", "ZADD", "ZREMRANGEBYSCORE", "ZRANGE", "PUBLISH"]


def reads(redis):
    """Redis' read events so far (INFO stats total_reads_processed)."""
    info = redis_cli(redis, "INFO", "stats")
    return int(next(w for w in info if w.startswith("total_reads_processed:")).split(":")[1])


def test_idle_node_sends_one_pipelined_heartbeat_per_second(cluster, redis, clients):
    """Two nodes with recovery on and 20 sockets in a room, idle for 3 s under MONITOR:
    each node sends, once a second, its lease (TIME for Redis' clock, ZADD, ZREMRANGEBYSCORE
    of the expired ones, ZRANGE of the alive ones; no script), its ping to its own channel
    (PUBLISH) and two PEXPIRE renewing its session records (it holds one pid tag), nothing
    else and nothing per socket; and each heartbeat is one read for Redis (at most
    one per heartbeat plus the test's own clients, not one per command batch)."""
    a, b = cluster(2, "--recovery", "60000")
    for i in range(20):
        name = f"c{i}"
        clients.connect(name, (a, b)[i % 2])
        assert clients.ack(name, "join", "r") == ["joined"]
    deadline = time.monotonic() + TIMEOUT
    # Both nodes hold live records (one hash each, under their own tags).
    while len(redis_cli(redis, "KEYS", "eddy:sessions:{*}:*")) < 2:
        assert time.monotonic() < deadline, redis_cli(redis, "KEYS", "*")
        time.sleep(0.05)
    time.sleep(0.2)  # the last joins' broker jobs
    reads0 = reads(redis)
    seen = monitor(redis, WINDOW)
    read = reads(redis) - reads0
    assert not [words for _, source, words in seen if source == "lua"], seen
    top = by_client(seen)
    assert len(top) == 2, top
    beats = 0
    for source, calls in top.items():
        names = [w[0].upper() for _, w in calls]
        n = names.count("TIME")
        assert 2 <= n <= WINDOW + 1, (source, calls)
        assert names == (HEARTBEAT + ["PEXPIRE", "PEXPIRE"]) * n, (source, calls)
        assert all(w[1].startswith("eddy:node:") for _, w in calls if w[0].upper() == "PUBLISH")
        beats += n
    # Two INFO clients and MONITOR's own, and a heartbeat of each node between the first
    # INFO and MONITOR's start, or between its end and the second INFO.
    assert read <= beats + 3 + 2 * 2, (read, beats)


def busy_sender(cluster, redis, clients, seconds):
    """Two nodes, "member" on the second in room r, "sender" on the first emitting to r 20
    times a second for seconds under MONITOR (each broadcast arrives, in order): MONITOR's
    commands by client, and the one client that published to a room (the sender's node)."""
    a, b = cluster(2)
    clients.connect("member", b)
    assert clients.ack("member", "join", "r") == ["joined"]
    clients.connect("sender", a)
    clients.probe("sender", ["member"])
    mon = Monitor(redis)
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        clients.emit("sender", "to-room", "r", {"seq": i})
        i += 1
        time.sleep(0.05)
    seen = mon.stop()
    assert [s for s, _ in clients.room_messages("member", i)] == list(range(i))
    top = by_client(seen)
    sender = [calls for calls in top.values()
              if any(w[0].upper() == "PUBLISH" and not w[1].startswith("eddy:node:")
                     for _, w in calls)]
    assert len(sender) == 1, top
    return top, sender


def test_busy_node_heartbeat_rides_along_its_publishes(cluster, redis, clients):
    """A node publishing 20 emits a second (to a room with a member on the other node) for
    3 s under MONITOR: each of its heartbeats was sent with one of its publishes (the
    heartbeat's TIME comes right after a broadcast's PUBLISH of the same client, within
    2 ms: one read for Redis); a heartbeat on its own timer would follow a publish that
    closely about once in 25. The idle node still beats on its own."""
    top, sender = busy_sender(cluster, redis, clients, WINDOW)
    calls = sender[0]
    beats = [k for k, (_, w) in enumerate(calls) if w[0].upper() == "TIME"]
    assert len(beats) >= 2, calls
    for k in beats:
        assert [w[0].upper() for _, w in calls[k:k + 5]] == HEARTBEAT, calls[k - 1:k + 5]
        t_prev, prev = calls[k - 1] if k else (0, ["-"])
        assert prev[0].upper() == "PUBLISH" and not prev[1].startswith("eddy:node:"), \
            calls[k - 1:k + 5]
        assert calls[k][0] - t_prev < 0.002, calls[k - 1:k + 5]
    idle = [calls for calls in top.values() if calls is not sender[0]]
    assert len(idle) == 1 and sum(w[0].upper() == "TIME" for _, w in idle[0]) >= 2, top


def test_busy_node_beats_once_a_second(cluster, redis, clients):
    """A node publishing 20 emits a second for 5 s under MONITOR: its heartbeats, each sent
    early with a publish, still come once a second on average (mean interval 0.9-1.1 s).
    When a beat sent early set the next one a period after it was sent rather than after it
    was due, a busy node beat every 0.75-0.8 s: a third more lease commands for Redis."""
    top, sender = busy_sender(cluster, redis, clients, 5.0)
    beats = [t for t, w in sender[0] if w[0].upper() == "TIME"]
    assert len(beats) >= 4, beats
    mean = (beats[-1] - beats[0]) / (len(beats) - 1)
    assert 0.9 <= mean <= 1.1, [round(t - beats[0], 3) for t in beats]
