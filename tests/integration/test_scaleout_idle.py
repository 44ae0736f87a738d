# SPDX-License-Identifier: MIT
"""What an idle cluster costs Redis (issue 12): a node's background work (its lease, the
alive nodes, the readiness round trip's ping to itself, the renewal of the session records
it holds) is one pipelined write a second, whatever its number of sockets: Redis reads from
each node once a second.
"""

import re
import subprocess
import threading
import time

from eddyserver import TIMEOUT
from test_scaleout import cluster, redis  # noqa: F401 (fixtures)
from test_scaleout_cost import clients, redis_cli  # noqa: F401 (clients: a fixture)

WINDOW = 3.0  # seconds of MONITOR; heartbeats come every second


def monitor(redis, seconds):
    """The commands Redis runs for `seconds`: (source, [words]) where source is the client's
    address, or 'lua' for a command a script called."""
    proc = subprocess.Popen(["redis-cli", "-p", str(redis.port), "MONITOR"],
                            stdout=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    time.sleep(seconds)
    proc.kill()
    proc.wait()
    reader.join(TIMEOUT)
    out = []
    for line in lines:
        m = re.match(r'[0-9.]+ \[\d+ ([^\]]+)\] (.*)', line)
        if m:
            out.append((m.group(1), re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))))
    return out


def reads(redis):
    """Redis' read events so far (INFO stats total_reads_processed)."""
    info = redis_cli(redis, "INFO", "stats")
    return int(next(w for w in info if w.startswith("total_reads_processed:")).split(":")[1])


def test_idle_node_sends_one_pipelined_heartbeat_per_second(cluster, redis, clients):
    """Two nodes with recovery on and 20 sockets in a room, idle for 3 s under MONITOR:
    each node sends, once a second, the heartbeat script (EVALSHA), its ping to its own
    channel (PUBLISH) and two PEXPIRE renewing its session records (it holds one pid tag),
    nothing else and nothing per socket; and each heartbeat is one read for Redis (at most
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
    top = {}
    for source, words in seen:
        if source != "lua" and words and words[0].upper() not in ("MONITOR", "INFO"):
            top.setdefault(source, []).append(words)
    assert len(top) == 2, top
    beats = 0
    for source, calls in top.items():
        names = [c[0].upper() for c in calls]
        n = names.count("EVALSHA")
        assert 2 <= n <= WINDOW + 1, (source, calls)
        assert names == ["EVALSHA", "PUBLISH", "PEXPIRE", "PEXPIRE"] * n, (source, calls)
        assert all(c[1].startswith("eddy:node:") for c in calls if c[0].upper() == "PUBLISH")
        beats += n
    # Two INFO clients and MONITOR's own, and a heartbeat of each node between the first
    # INFO and MONITOR's start, or between its end and the second INFO.
    assert read <= beats + 3 + 2 * 2, (read, beats)
