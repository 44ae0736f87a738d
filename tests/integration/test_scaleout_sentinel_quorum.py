# SPDX-License-Identifier: MIT
"""Scale-out through three real sentinels (issue 12): a master, its replica and three
sentinels (Debian's redis-server --sentinel) monitoring it with quorum 2, as a production
Sentinel deployment runs. The failover then needs the sentinels to agree (ODOWN by quorum,
a leader elected by a majority), and the broker must find the new master through whichever
sentinel still answers.
"""

import time

import pytest

from eddyserver import wait_for
from test_scaleout import clients  # noqa: F401 (fixture)
from test_scaleout_sentinel import (DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, MASTER, Process,
                                    answers, crosses_again, master_and_replica,  # noqa: F401
                                    master_of, pytestmark, two_sided_room)
from sioserver import SioServer

QUORUM_CONF = """port {port}
bind 127.0.0.1
daemonize no
dir {dir}
sentinel monitor mymaster 127.0.0.1 %d 2
sentinel down-after-milliseconds mymaster %d
sentinel failover-timeout mymaster %d
"""
# A failover by three sentinels: down-after, the quorum's agreement (a sentinel asks the
# others about every second), the leader's election (a failed vote retries after twice
# failover-timeout), the promotion, then the broker's backoff (at most 5 s).
QUORUM_FAILOVER_BOUND = 25


def fields(reply):
    """A flat [field, value, ...] reply (SENTINEL MASTER) as a dict."""
    return dict(zip(reply[::2], reply[1::2])) if reply else {}


@pytest.fixture
def quorum_setup(tmp_path):
    """A master, its replica (in sync) and three sentinels, quorum 2, that know the replica
    and each other."""
    running = []
    try:
        master, replica = master_and_replica(tmp_path, running)
        sentinels = []
        for i in range(3):
            s = Process(tmp_path, f"sentinel{i}", conf=QUORUM_CONF % (
                master.port, DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS))
            running.append(s)
            sentinels.append(s)

        def all_known():
            for s in sentinels:
                info = fields(answers(s.port, "SENTINEL", "MASTER", MASTER))
                if info.get("num-other-sentinels") != "2" or info.get("num-slaves") != "1":
                    return False
            return True
        # Sentinels find each other through hello messages on the master (every 2 s).
        wait_for(all_known, "each sentinel to know the replica and the two others",
                 timeout=20)
        yield master, replica, sentinels
    finally:
        for p in reversed(running):
            p.kill()


def test_failover_by_three_sentinels(quorum_setup, clients):  # noqa: F811
    """Two examples/socketio nodes given the three sentinels. Broadcasts cross the nodes;
    kill -9 of the first-listed sentinel (the one every node asked first and asks first
    again), then kill -9 of the master: the two remaining sentinels (quorum 2) agree it is
    down and promote the replica; every node, finding the first sentinel dead, asks the
    next, moves to the new master (logged by that sentinel's address) and broadcasts cross
    the nodes again within QUORUM_FAILOVER_BOUND seconds of the kill; nothing crashed."""
    master, replica, sentinels = quorum_setup
    first, others = sentinels[0], sentinels[1:]
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + \
          f"/{MASTER}"
    nodes = []
    try:
        nodes = [SioServer("eddy", ("--redis", url)) for _ in range(2)]
        for node in nodes:
            node.wait_log(rf"sentinel 127\.0\.0\.1:{first.port}: master {MASTER} is "
                          rf"127\.0\.0\.1:{master.port}")
        a, b = nodes
        two_sided_room(clients, a, b)

        first.kill()
        killed = time.monotonic()
        master.kill()
        wait_for(lambda: all(master_of(s) == replica.port for s in others),
                 "the two remaining sentinels to promote the replica",
                 timeout=QUORUM_FAILOVER_BOUND)
        crosses_again(clients, killed, QUORUM_FAILOVER_BOUND, "quorum failover")
        others_ports = "|".join(str(s.port) for s in others)
        moved = rf"sentinel 127\.0\.0\.1:(?:{others_ports}): master {MASTER} moved from " \
                rf"127\.0\.0\.1:{master.port} to 127\.0\.0\.1:{replica.port}"
        for node in nodes:
            node.wait_log(moved)
        assert all(node.proc.poll() is None for node in nodes)
    finally:
        for node in nodes:
            node.stop()

