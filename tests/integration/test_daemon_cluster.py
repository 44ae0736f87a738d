# SPDX-License-Identifier: MIT
"""The daemon across a Redis cluster (issues 12 and 13): two `eddy serve` nodes on one
redis-server answer for the whole cluster where they used to answer for their own sockets:
history on join and /api/history read the room's stream in Redis (eddy_rt_room_recent()),
a join's and presence(room)'s presence is every node's, /api/disconnect, /api/join and
/api/leave act on the sockets of every node (eddy_rt_disconnect_sockets(),
eddy_rt_sockets_join()), /api/sockets lists every node's sockets (eddy_rt_fetch_sockets()) and
/api/stats counts every node's rooms (eddy_rt_rooms()).
"""

from test_daemon_realtime import JWT_KEY, Clients, Daemon, token
from test_scaleout import redis  # noqa: F401 (the fixture)
from test_scaleout_presence import poll

CHAT = ("[socketio]\nclient_rooms = chat:*, team\nclient_publish = chat:*\n"
        "client_presence = chat:*\nclient_names = true\nhistory_size = 20\n"
        "history_on_join = 3\n")


def node_conf(redis_url, name):
    return (f"{CHAT}[auth]\nenabled = true\nrequired = false\nkey = {JWT_KEY}\n"
            f"[broker]\nredis_url = {redis_url}\nnode_id = {name}\n")


def two_nodes(tmp_path, redis_url):
    nodes = []
    for name in ("node-a", "node-b"):
        (tmp_path / name).mkdir()
        nodes.append(Daemon(tmp_path / name, node_conf(redis_url, name)))
    return nodes


def api_ok(daemon, method, body):
    status, answer, _ = daemon.api(method, body)
    assert status == 200, answer
    return answer["result"]


def test_history_and_presence_on_join_are_every_nodes(tmp_path, redis):  # noqa: F811
    a, b = two_nodes(tmp_path, redis.url)
    clients = Clients(a.port)
    try:
        clients.connect("ann", auth={"name": "ann"}, transports=["websocket"])
        assert clients.ack("ann", "join", "chat:h")[0]["history"] == []
        for i in range(5):
            assert clients.ack("ann", "publish", "chat:h", {"text": f"m{i}"}) == [{"ok": True}]
        # A socket of node b joining gets node a's messages (its last 3) and sees ann.
        bob = clients.connect("bob", auth={"name": "bob"}, transports=["websocket"],
                              url=f"http://127.0.0.1:{b.port}")
        answer = clients.ack("bob", "join", "chat:h")[0]
        assert [h["args"][0]["data"]["text"] for h in answer["history"]] == ["m2", "m3", "m4"]
        assert all(h["event"] == "message" and h["offset"] for h in answer["history"])
        assert answer["presence"]["num_sockets"] == 2
        ids = {s["id"]: s for s in answer["presence"]["sockets"]}
        assert ids[bob]["data"] == {"name": "bob"}  # this node's socket: its data too
        # presence(room) on node a lists node b's socket.
        got = clients.ack("ann", "presence", "chat:h")[0]["presence"]
        assert bob in {s["id"] for s in got["sockets"]}
        # The server API's history on node b: node a's messages, the newest limit events
        # (the API lists the daemon's joined events too: bob's is the last).
        pubs = api_ok(b, "history", {"room": "chat:h", "limit": 3})["publications"]
        assert [p["event"] for p in pubs] == ["message", "message", "joined"]
        assert [p["args"][0]["data"]["text"] for p in pubs[:2]] == ["m3", "m4"]
        assert pubs[1]["offset"] == answer["history"][2]["offset"]
        assert pubs[2]["args"][0]["id"] == bob
    finally:
        clients.close()
        a.stop()
        b.stop()


def test_api_disconnect_join_and_sockets_act_on_every_node(tmp_path, redis):  # noqa: F811
    a, b = two_nodes(tmp_path, redis.url)
    clients = Clients(a.port)
    try:
        mallory = clients.connect("mallory", auth={"token": token("mallory")},
                                  transports=["websocket"], url=f"http://127.0.0.1:{b.port}")
        carol = clients.connect("carol", auth={"token": token("carol")},
                                transports=["websocket"], url=f"http://127.0.0.1:{b.port}")
        dave = clients.connect("dave", auth={"token": token("dave")}, transports=["websocket"])
        # Listing on node a: every node's sockets, with their node and user (once node a
        # has seen node b's lease: within a heartbeat of its start).
        everyone = {mallory: ("mallory", "node-b"), carol: ("carol", "node-b"),
                    dave: ("dave", "node-a")}
        listed, _ = poll("both nodes' sockets", lambda: (lambda r: r if {
            s["id"]: (s["user"], s["node"]) for s in r["sockets"]} == everyone else None)(
                api_ok(a, "sockets", {})))
        assert listed["complete"] is True and listed["missing"] == []
        # A join asked on node a of a socket of node b: a publish to the room reaches it.
        assert api_ok(a, "join", {"socket": carol, "room": "team"}) == {"cluster": True}
        api_ok(a, "emit", {"room": "team", "event": "news", "data": "to the team"})
        assert clients.wait("news on carol", name="carol", type="event",
                            event="news")["args"] == ["to the team"]
        team = api_ok(b, "sockets", {"room": "team"})["sockets"]
        assert [(s["id"], s["rooms"]) for s in team] == [(carol, ["team"])]
        # /api/stats on node a counts node b's room (its sockets count stays node a's).
        def rooms_on_a():
            stats = api_ok(a, "stats", {})
            return [(n["rooms"], n["sockets"]) for n in stats["namespaces"] if n["name"] == "/"]
        poll("node b's room in node a's stats", lambda: rooms_on_a() == [(1, 1)])
        assert api_ok(a, "leave", {"user": "carol", "room": "team"}) == {"cluster": True}
        poll("carol's leave", lambda: api_ok(a, "sockets", {"room": "team"})["sockets"] == [])
        # A disconnect asked on node a of a user connected to node b.
        assert api_ok(a, "disconnect", {"user": "mallory"}) == {"cluster": True}
        clients.wait("mallory's disconnect", name="mallory", type="disconnect")
        left = api_ok(b, "sockets", {})["sockets"]
        assert sorted(s["id"] for s in left) == sorted([carol, dave])
        status, answer, _ = a.api("sockets", {"timeout_ms": 0})
        assert status == 400, answer
    finally:
        clients.close()
        a.stop()
        b.stop()


def test_api_sockets_on_one_node(tmp_path):
    """Without [broker] /api/sockets lists this node's sockets (node ""), complete."""
    server = Daemon(tmp_path, CHAT + f"[auth]\nenabled = true\nkey = {JWT_KEY}\n")
    clients = Clients(server.port)
    try:
        eve = clients.connect("eve", auth={"token": token("eve")}, transports=["websocket"])
        assert clients.ack("eve", "join", "team")[0]["ok"] is True
        listed = api_ok(server, "sockets", {"user": "eve"})
        assert listed == {"sockets": [{"id": eve, "user": "eve", "rooms": ["team"], "node": ""}],
                          "missing": [], "complete": True}
        assert api_ok(server, "sockets", {"room": "nobody"})["sockets"] == []
        status, answer, _ = server.api("sockets", {"socket": eve, "room": "team"})
        assert status == 400, answer
    finally:
        clients.close()
        server.stop()
