# SPDX-License-Identifier: MIT
"""The eddy program's [broker] section: two `eddy serve` processes on one redis-server form one
cluster (the server API's emit on one reaches sockets on the other, and so does a broadcast
in Socket.IO's Redis emitter format), /readyz and
eddy_broker_ready follow the node's own round trip through Redis (503 while Redis is
frozen, 200 again after), `eddy status` names the broker, and bad values are refused with
file and line.
"""

import base64
import json
import re
import subprocess
import urllib.error
import urllib.request

from eddyserver import TIMEOUT, wait_for
from test_daemon_realtime import API_KEY, EDDY, Clients, Daemon
from test_scaleout import emitter_publish, redis  # noqa: F401 (redis: the fixture)


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def sample(port, name):
    """The value of the metric name (no labels) on the node's /metrics, or None."""
    text = get(port, "/metrics")[1]
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def admin_broker(port):
    """The broker object of the node's /admin/stats (the admin page's figures)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/stats")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"ops:{API_KEY}".encode()).decode())
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return json.loads(resp.read())["broker"]


def test_two_daemons_on_one_redis_form_one_cluster(tmp_path, redis):  # noqa: F811
    broker = (f"[socketio]\nclient_rooms = lobby\n[broker]\nredis_url = {redis.url}\n"
              "emitter_prefix = socket.io\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Daemon(tmp_path / "a", broker + "node_id = node-a\n")
    b = Daemon(tmp_path / "b", broker + "node_id = node-b\n")
    clients = Clients(b.port)
    try:
        for node in (a, b):
            wait_for(lambda: get(node.admin_port, "/readyz") == (200, "ready\n"),
                     "the node to be ready (its round trip through Redis)")
        wait_for(lambda: sample(a.admin_port, "eddy_broker_nodes") == 2, "both nodes alive")
        clients.connect("bob", transports=["websocket"])
        assert clients.ack("bob", "join", "lobby") == [{"ok": True}]
        # b subscribes to lobby's channel after the join's ack (README: a node subscribes to a
        # room's channel while it has local members): emits to lobby reach b once it has.
        clients.probe_until(lambda: a.api("emit", {"room": "lobby", "event": "probe"}), {"bob"},
                            lambda r: r["event"] == "probe", "probe to lobby")
        # Emitted through node a's API, delivered by node b to its socket.
        for i in range(3):
            status, answer, _ = a.api("emit", {"room": "lobby", "event": "news", "args": [i]})
            assert (status, answer) == (200, {"result": {}})
        status, answer, _ = a.api("emit", {"event": "end"})
        assert status == 200
        # Probes still in flight come before the news (one publisher, one channel).
        got = [e for e in clients.events("bob", "end") if e[0] != "probe"]
        assert got == [("news", [0]), ("news", [1]), ("news", [2]), ("end", [])]
        # A backend publishing as Socket.IO's Redis emitter does: both nodes listen (2
        # subscribers); b delivers to its member of lobby.
        assert emitter_publish(redis, ["from-php", {"n": 1}], rooms=["lobby"]) == 2
        assert clients.events("bob", "from-php") == [("from-php", [{"n": 1}])]
        assert sample(a.admin_port, "eddy_broker_up") == 1
        assert sample(b.admin_port, "eddy_broker_delivered_total") >= 4
        assert sample(a.admin_port, "eddy_broker_presence_repairs_total") == 0
        assert sample(a.admin_port, "eddy_broker_retried_total") == 0
        assert sample(a.admin_port, "eddy_broker_slots_moved_total") == 0
        assert sample(b.admin_port, "eddy_broker_messages_missed_total") == 0
        # The admin page shows the same figures.
        shown = admin_broker(b.admin_port)
        assert shown["state"] == "up" and shown["ready"] is True and shown["nodes"] == 2
        assert shown["delivered"] >= 4 and shown["dropped"] == 0 and shown["slots_moved"] == 0
        assert shown["subscriptions"] >= 1 and 0 <= shown["round_trip_age_ms"] < 3000

        out = subprocess.run([EDDY, "status", "-c", str(a.conf)], cwd=a.tmp,
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert re.search(r"^broker +up$", out.stdout, re.M), out.stdout
        assert re.search(r"^broker_nodes +2$", out.stdout, re.M), out.stdout

        # Redis frozen: the round trip stops, the node says so; back when Redis is.
        redis.proc.send_signal(19)  # SIGSTOP
        try:
            wait_for(lambda: get(a.admin_port, "/readyz") == (503, "broker not ready\n"),
                     "/readyz to answer 503 while Redis is frozen")
            assert sample(a.admin_port, "eddy_ready") == 0
            assert sample(a.admin_port, "eddy_broker_ready") == 0
            assert get(a.admin_port, "/healthz")[0] == 200  # alive all the same
            assert admin_broker(a.admin_port)["ready"] is False
        finally:
            redis.proc.send_signal(18)  # SIGCONT
        wait_for(lambda: get(a.admin_port, "/readyz") == (200, "ready\n"),
                 "/readyz to answer 200 once Redis answers again")
    finally:
        clients.close()
        a.stop()
        b.stop()


def test_daemon_without_broker_reports_none_and_stays_ready(tmp_path):
    server = Daemon(tmp_path)
    try:
        assert get(server.admin_port, "/readyz") == (200, "ready\n")
        assert sample(server.admin_port, "eddy_broker_up") is None
        assert admin_broker(server.admin_port) is None
        out = subprocess.run([EDDY, "status", "-c", str(server.conf)], cwd=server.tmp,
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert re.search(r"^broker +none$", out.stdout, re.M), out.stdout
    finally:
        server.stop()


def test_broker_values_are_checked_with_file_and_line(tmp_path):
    for line, why in [("redis_url = http://secret@x", "is not redis://"),
                      ("node_id = a b", "is not 1-64 of"),
                      ("redis_prefix = {x}", "is not 1-63 of"),
                      ("redis_host = x", "unknown key")]:
        conf = tmp_path / "eddy.conf"
        conf.write_text(f"[broker]\n{line}\n")
        out = subprocess.run([EDDY, "config", "check", "-c", str(conf)], capture_output=True,
                             text=True, timeout=TIMEOUT)
        assert out.returncode == 2 and f"{conf}:2: [broker]" in out.stderr and why in out.stderr, \
            out.stderr
        assert "secret" not in out.stderr
