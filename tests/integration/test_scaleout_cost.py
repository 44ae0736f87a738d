# SPDX-License-Identifier: MIT
"""What a cluster costs Redis (issue 12): a node's sockets cost no Redis channel each (their
ids start with the node's socket tag and one pattern per namespace receives the emits to
all of them), yet an emit to a socket id from another node still arrives, also to a socket
recovered on another node with its old id (another node's tag: a channel of its own).
"""


from eddyserver import TIMEOUT
from test_scaleout import Clients, cluster, redis  # noqa: F401 (fixtures)
import pytest


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close()


def redis_cli(redis, *args):
    return redis.cli(*args).split()


def test_sockets_cost_one_pattern_per_namespace(cluster, redis, clients):
    """20 sockets on node A: one pattern subscription (PUBSUB NUMPAT 1) and none of their
    id channels subscribed; their ids are Socket.IO's 20 characters, share A's 6-character
    tag and are otherwise distinct; an emit from node B to one of them reaches it, once."""
    a, b = cluster(2)
    ids = [clients.connect(f"c{i}", a)["id"] for i in range(20)]
    assert all(len(i) == 20 for i in ids), ids
    assert len({i[:6] for i in ids}) == 1 and len({i[6:] for i in ids}) == 20, ids
    assert redis_cli(redis, "PUBSUB", "NUMPAT") == ["1"]
    numsub = redis_cli(redis, "PUBSUB", "NUMSUB", *[f"eddy:{{/}}:c:{i}" for i in ids])
    assert numsub[1::2] == ["0"] * 20, numsub
    sender = clients.connect("s", b)
    assert sender["id"][:6] != ids[0][:6], (sender["id"], ids[0])
    clients.probe("s", ["c7"], room=ids[7])
    clients.seqs_to_room("s", ids[7], "c7", 5)
    clients.nothing_more("c7")
    clients.nothing_more("c8", within=0.1)


def test_emit_to_a_socket_recovered_on_another_node(cluster, redis, clients):
    """A socket of node A recovers on node B after A's kill -9: it keeps its id, whose tag
    is A's, so B subscribes its channel (PUBSUB NUMSUB 1); an emit from node C reaches it."""
    a, b, c = cluster(3, "--recovery", "60000")
    first = clients.connect("x", a)
    assert first["pid"], first
    assert clients.ack("x", "join", "r") == ["joined"]
    clients.connect("s", c)
    clients.probe("s", ["x"])
    clients.emit("s", "to-room", "r", {"seq": 0})
    last_offset = clients.room_messages("x", 1)[0][1]
    cluster.kill(a)
    clients.wait("x's disconnect", name="x", type="disconnect")
    clients.send(cmd="connect", name="x2", url=b.url, transports=["websocket"],
                 auth={"pid": first["pid"], "offset": last_offset})
    again = clients.wait("x2 to connect", 3 * TIMEOUT, name="x2", type="connect")
    assert again["id"] == first["id"], "not recovered: a new id\n" + "\n".join(b.log_lines)
    assert redis_cli(redis, "PUBSUB", "NUMSUB", f"eddy:{{/}}:c:{first['id']}")[1] == "1"
    clients.probe("s", ["x2"], room=first["id"])
    clients.seqs_to_room("s", first["id"], "x2", 5)
    clients.nothing_more("x2")


def test_no_history_publishes_no_stream_keys(cluster, redis, clients):
    """Nodes without recovery and history (the default) keep no broadcast history in Redis:
    emits to a room across nodes arrive, in order, and leave no stream (:x) nor last-seq
    (:t) key; with --history the same emits leave the room's stream."""
    for options, kept in (((), False), (("--history", "100"), True)):
        redis_cli(redis, "FLUSHALL")
        a, b = cluster(2, *options)
        name = f"m{int(kept)}"
        clients.connect(name, b)
        assert clients.ack(name, "join", "r") == ["joined"]
        sender = f"s{int(kept)}"
        clients.connect(sender, a)
        clients.probe(sender, [name])
        for i in range(10):
            clients.emit(sender, "to-room", "r", {"seq": i})
        assert [s for s, _ in clients.room_messages(name, 10)] == list(range(10))
        keys = sorted(redis_cli(redis, "KEYS", "eddy:{/}:[xt]*"))
        assert (keys == ["eddy:{/}:t:r", "eddy:{/}:x:r"]) if kept else keys == [], keys
