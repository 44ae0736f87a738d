# SPDX-License-Identifier: MIT
"""The eddy program's observability: the Socket.IO, server API and event-loop families of
/metrics (checked by a strict parser and by Debian's python3-prometheus-client, with real
python-socketio clients and raw Engine.IO ones), the admin page on the [admin] listener
(HTTP Basic with [admin] password or the [api] key, compiled into the program; one test
drives it in headless Chromium), and [log] format = json."""

import base64
import http.client
import json
import os
import queue
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import socketio

from eddyserver import ROOT, TIMEOUT, chromium_binary
from test_daemon import EDDY
from test_daemon_ops import parse_metrics
from test_daemon_realtime import API_KEY, Daemon
from prometheus_client.parser import text_string_to_metric_families
from wsraw import RawClient

PASSWORD = "admin password: twelve bytes or more"


def get(port, path, user=None, password=None, method="GET"):
    """(status, headers, body) of one request to 127.0.0.1:port."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if password is not None:
        cred = base64.b64encode(f"{user or 'admin'}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {cred}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def scrape(port):
    status, headers, body = get(port, "/metrics")
    assert status == 200
    text = body.decode()
    samples = parse_metrics(text)
    parsed = [s for family in text_string_to_metric_families(text) for s in family.samples]
    assert len(parsed) == len(samples)
    return samples


def wait_until(what, predicate):
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def refused(client, port, namespace="/", **kwargs):
    """The connect_error data of client's refused connect to namespace. wait=False:
    python-socketio's connect() gives up on a refused namespace only after wait_timeout;
    the refusal itself comes at once. The client is disconnected after, as connect() does
    when it gives up."""
    errors = queue.Queue()
    client.on("connect_error", errors.put, namespace=namespace)
    client.connect(f"http://127.0.0.1:{port}", namespaces=[namespace], transports=["websocket"],
                   wait=False, **kwargs)
    data = errors.get(timeout=TIMEOUT)
    assert namespace not in client.namespaces
    client.disconnect()
    return data


def conns(m, eio, transport):
    return m[("eddy_socketio_connections", f'{{eio="{eio}",transport="{transport}"}}')]


def test_socketio_metrics_follow_real_clients(tmp_path):
    d = Daemon(tmp_path, "[socketio]\nclient_rooms = chat:*\nnamespaces = /, /chat\n")
    ws, polling = socketio.Client(), socketio.Client()
    lost = socketio.Client(reconnection=False)
    try:
        before = scrape(d.admin_port)
        assert conns(before, 4, "websocket") == conns(before, 4, "polling") == 0
        ws.connect(f"http://127.0.0.1:{d.port}", transports=["websocket"], namespaces=["/", "/chat"])
        polling.connect(f"http://127.0.0.1:{d.port}", transports=["polling"])
        assert ws.call("join", "chat:1", timeout=TIMEOUT) == {"ok": True}
        assert polling.call("join", "chat:1", timeout=TIMEOUT) == {"ok": True}
        for i in range(5):
            ws.emit("ignored", i)
        assert refused(lost, d.port, "/nowhere") == {"message": "Invalid namespace"}
        assert d.api("emit", {"room": "chat:1", "event": "news", "data": 1})[0] == 200
        assert d.api("emit", {"socket": ws.get_sid("/"), "event": "news"})[0] == 200
        assert d.api("rooms", key="wrong key, sixteen bytes")[0] == 401
        assert d.api("nosuch")[0] == 404

        # A loop's lag is sampled 500 ms after its first connection (README: /metrics).
        m = wait_until("the seven events and a lag sample", lambda: (
            lambda m: m if m[("eddy_socketio_events_received_total", "")] == 7 and any(
                k[0] == "eddy_loop_lag_seconds" for k in m) else None)(scrape(d.admin_port)))

        def moved(name, labels=""):
            return m[(name, labels)] - before.get((name, labels), 0)
        assert conns(m, 4, "websocket") == 1 and conns(m, 4, "polling") == 1
        assert conns(m, 3, "websocket") == conns(m, 3, "polling") == 0
        assert moved("eddy_socketio_handshakes_total", '{eio="4",transport="websocket"}') == 2
        assert moved("eddy_socketio_handshakes_total", '{eio="4",transport="polling"}') == 1
        assert moved("eddy_socketio_connects_total") == 3  # ws: / and /chat; polling: /
        assert moved("eddy_socketio_connect_refusals_total",
                     '{reason="invalid_namespace"}') == 1
        assert m[("eddy_socketio_events_sent_total", "")] == 3  # two join acks, the emit
        assert m[("eddy_socketio_broadcasts_total", "")] == 1
        assert m[("eddy_socketio_sockets", '{namespace="/"}')] == 2
        assert m[("eddy_socketio_sockets", '{namespace="/chat"}')] == 1
        assert m[("eddy_socketio_rooms", '{namespace="/"}')] == 1
        api = {k[1]: v for k, v in m.items() if k[0] == "eddy_api_requests_total"}
        assert api == {'{method="emit",status="200"}': 2, '{method="rooms",status="401"}': 1,
                       '{method="other",status="404"}': 1}
        # Every loop that took a connection measures its lag, in seconds.
        lags = [v for k, v in m.items() if k[0] == "eddy_loop_lag_seconds"]
        assert lags and all(0 <= v < 1 for v in lags)
        assert all(m[("eddy_loop_lag_max_seconds", k[1])] >= v
                   for k, v in m.items() if k[0] == "eddy_loop_lag_seconds")

        ws.disconnect()
        polling.disconnect()
        after = wait_until("the sessions to close", lambda: (
            lambda m: m if conns(m, 4, "websocket") + conns(m, 4, "polling") == 0 else None)(
                scrape(d.admin_port)))
        assert after[("eddy_socketio_sockets", '{namespace="/"}')] == 0
        assert after[("eddy_socketio_rooms", '{namespace="/"}')] == 0
    finally:
        for c in (ws, polling, lost):
            c.disconnect()
        d.stop()


def test_upgrades_and_engine_io_3_clients_are_counted_apart(tmp_path):
    """socket.io-client 2.x (Engine.IO 3), raw: a polling handshake, then the upgrade."""
    d = Daemon(tmp_path)
    try:
        status, _, body = get(d.port, "/socket.io/?EIO=3&transport=polling")
        assert status == 200
        sid = json.loads(body[body.index(b"{"):body.index(b"}") + 1])["sid"]
        m = scrape(d.admin_port)
        assert conns(m, 3, "polling") == 1 and conns(m, 3, "websocket") == 0
        client = RawClient("127.0.0.1", d.port)
        client.handshake(f"/socket.io/?EIO=3&transport=websocket&sid={sid}")
        client.send_frame(0x1, b"2probe")
        assert client.recv_message() == (0x1, b"3probe")
        client.send_frame(0x1, b"5")
        m = wait_until("the upgrade", lambda: (
            lambda m: m if conns(m, 3, "websocket") == 1 else None)(scrape(d.admin_port)))
        assert conns(m, 3, "polling") == 0
        assert m[("eddy_socketio_upgrades_total", '{eio="3"}')] == 1
        assert m[("eddy_socketio_handshakes_total", '{eio="3",transport="polling"}')] == 1
        client.close()
        wait_until("the session to close", lambda: conns(scrape(d.admin_port), 3, "websocket") == 0)
        # Engine.IO's refusals, by code: an unknown transport, a session that has ended
        # (polling and WebSocket), a handshake by POST.
        assert get(d.port, "/socket.io/?EIO=4&transport=carrier-pigeon")[0] == 400
        assert get(d.port, f"/socket.io/?EIO=3&transport=polling&sid={sid}")[0] == 400
        RawClient("127.0.0.1", d.port).handshake(
            f"/socket.io/?EIO=3&transport=websocket&sid={sid}", expect_status=400)
        assert get(d.port, "/socket.io/?EIO=4&transport=polling", method="POST")[0] == 400
        m = scrape(d.admin_port)
        errors = {k[1]: v for k, v in m.items() if k[0] == "eddy_socketio_request_errors_total"}
        assert errors['{code="0",reason="transport_unknown"}'] == 1
        assert errors['{code="1",reason="session_id_unknown"}'] == 2
        assert errors['{code="2",reason="bad_handshake_method"}'] == 1
        assert errors['{code="3",reason="bad_request"}'] == 0
    finally:
        d.stop()


def sio_ws(port, auth=None):
    """A raw Socket.IO v5 client on WebSocket connected to "/": (client, CONNECT reply)."""
    client = RawClient("127.0.0.1", port)
    client.handshake("/socket.io/?EIO=4&transport=websocket")
    assert client.recv_message()[1].startswith(b"0{")
    client.send_frame(0x1, b"40" + (json.dumps(auth).encode() if auth else b""))
    return client, json.loads(client.recv_message()[1][2:])


def test_recovery_outcomes_are_counted(tmp_path):
    d = Daemon(tmp_path, "[socketio]\nrecovery_max_disconnection = 30\n")
    try:
        first, reply = sio_ws(d.port)
        first.sock.close()  # the transport is lost: the session is kept for 30 s
        wait_until("the lost session", lambda: conns(scrape(d.admin_port), 4, "websocket") == 0)
        again, back = sio_ws(d.port, {"pid": reply["pid"]})
        assert back["sid"] == reply["sid"]
        stranger, fresh = sio_ws(d.port, {"pid": "p" * 20})
        assert fresh["sid"] != reply["sid"]
        m = scrape(d.admin_port)
        assert m[("eddy_socketio_recoveries_total", '{outcome="recovered"}')] == 1
        assert m[("eddy_socketio_recoveries_total", '{outcome="not_recovered"}')] == 1
        assert m[("eddy_socketio_connects_total", "")] == 3
        again.close()
        stranger.close()
    finally:
        d.stop()


def test_connect_refusals_are_counted_by_reason(tmp_path):
    key = "jwt key: 32 bytes or more of secret"
    d = Daemon(tmp_path, f"[auth]\nenabled = true\nkey = {key}\n")
    clients = [socketio.Client(reconnection=False) for _ in range(2)]
    try:
        assert refused(clients[0], d.port)["message"] == "authentication required"
        assert refused(clients[1], d.port, auth={"token": "not.a.token"})["message"].startswith(
            "invalid token: ")
        m = wait_until("two refusals", lambda: (lambda m: m if m[(
            "eddy_socketio_connect_refusals_total", '{reason="unauthorized"}')] == 2 else None)(
                scrape(d.admin_port)))
        assert m[("eddy_socketio_connect_refusals_total", '{reason="other"}')] == 0
        assert m[("eddy_socketio_connects_total", "")] == 0
    finally:
        for c in clients:
            c.disconnect()
        d.stop()


def test_admin_page_needs_the_password_or_the_api_key(tmp_path):
    d = Daemon(tmp_path, f"[admin]\npassword = {PASSWORD}\n")
    try:
        for path in ("/admin", "/admin/stats"):
            status, headers, body = get(d.admin_port, path)
            assert status == 401 and b"authentication required" in body
            assert headers["WWW-Authenticate"].startswith('Basic realm="eddy admin"')
            assert headers["Cache-Control"] == "no-store"
            assert get(d.admin_port, path, password=PASSWORD + "x")[0] == 401
            assert get(d.admin_port, path, password=PASSWORD[:-1])[0] == 401
        status, headers, body = get(d.admin_port, "/admin", password=PASSWORD)
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        page = body.decode()
        # The page is cmd/admin/index.html, compiled in; it loads nothing from elsewhere.
        with open(os.path.join(ROOT, "cmd", "admin", "index.html")) as f:
            assert page == f.read()
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in page and "<script src" not in page
        # The API key works as the password too; the user name is not checked.
        status, headers, body = get(d.admin_port, "/admin/stats", user="ops", password=API_KEY)
        assert status == 200 and headers["Cache-Control"] == "no-store"
        stats = json.loads(body)
        assert stats["nodes"][0]["pid"] == d.proc.pid
        assert stats["connections"] >= 1 and len(stats["loops"]) == 2
        assert stats["socketio"]["namespaces"][0]["name"] == "/"
        assert get(d.admin_port, "/admin", password=PASSWORD, method="POST")[0] == 405
        # Only on the admin listener: the main one serves its files there.
        assert get(d.port, "/admin", password=PASSWORD)[0] == 404
        log = d.stop()
        assert "admin: refused 127.0.0.1" in log and PASSWORD[:12] not in log
    finally:
        if d.proc.poll() is None:
            d.stop()


def test_admin_stats_spells_its_floats_with_six_significant_digits(tmp_path):
    """The loop lag (ms) as 0.549391, not Jansson's default 17 digits (0.54939099999999996)."""
    d = Daemon(tmp_path, f"[admin]\npassword = {PASSWORD}\n")
    try:
        def with_lag():
            get(d.port, "/")  # connections on the main listener's loops
            floats = []
            stats = json.loads(get(d.admin_port, "/admin/stats", password=PASSWORD)[2],
                               parse_float=lambda text: floats.append(text) or float(text))
            lags = [loop["lag_ms"] for loop in stats["loops"] if loop["lag_ms"] is not None]
            return floats if lags and all(isinstance(lag, float) for lag in lags) else None

        # A loop's lag is sampled 500 ms after its first connection.
        floats = wait_until("a loop's lag sample", with_lag)
        for text in floats:
            digits = text.lower().split("e")[0].lstrip("-").replace(".", "").lstrip("0")
            assert len(digits) <= 6, floats
    finally:
        d.stop()


def get_from(source, port, path, password, headers=None, method="GET"):
    """(status, headers) of one request to 127.0.0.1:port sent from address source."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT,
                                      source_address=(source, 0))
    try:
        hdrs = dict(headers or {})
        if password is not None:
            cred = base64.b64encode(f"admin:{password}".encode()).decode()
            hdrs["Authorization"] = f"Basic {cred}"
        conn.request(method, path, headers=hdrs)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.headers
    finally:
        conn.close()


def test_wrong_passwords_and_keys_are_throttled_per_address(tmp_path):
    """Ten wrong tries from one address (admin password or API key, counted together) and
    it is answered 429 with Retry-After, right credentials or not; another address is not."""
    d = Daemon(tmp_path, f"[admin]\npassword = {PASSWORD}\n")
    try:
        for i in range(5):
            assert get_from("127.0.0.3", d.admin_port, "/admin/stats", "wrong" * 3)[0] == 401
            status, _ = get_from("127.0.0.3", d.admin_port, "/api/stats", None,
                                 {"Authorization": "apikey wrong-key"}, method="POST")
            assert status == 401
        # Asking without credentials (a browser's first request) is not a wrong try.
        assert get_from("127.0.0.4", d.admin_port, "/admin", None)[0] == 401
        status, headers = get_from("127.0.0.3", d.admin_port, "/admin/stats", PASSWORD)
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
        status, headers = get_from("127.0.0.3", d.admin_port, "/api/stats", None,
                                   {"Authorization": f"apikey {API_KEY}"}, method="POST")
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60
        assert get_from("127.0.0.4", d.admin_port, "/admin/stats", PASSWORD)[0] == 200
        assert get_from("127.0.0.4", d.admin_port, "/api/stats", None,
                        {"Authorization": f"apikey {API_KEY}"}, method="POST")[0] == 200
        log = d.stop()
        assert "127.0.0.3 refused for 60 s after 10 wrong tries" in log
    finally:
        if d.proc.poll() is None:
            d.stop()


def test_admin_page_is_off_without_a_password_or_api_key(tmp_path):
    d = Daemon(tmp_path, "[api]\nkey =\n")
    try:
        status, _, body = get(d.admin_port, "/admin", password="anything at all")
        assert status == 404 and b"the admin page is off" in body
    finally:
        d.stop()


def test_short_admin_password_and_bad_log_format_are_refused(tmp_path):
    for text, needle in (("[admin]\npassword = hunter2x\n", "[admin] password: a password has 12"),
                         ("[log]\nformat = xml\n", "[log] format: the format is text or json")):
        conf = tmp_path / "eddy.conf"
        conf.write_text(text)
        out = subprocess.run([EDDY, "config", "check", "-c", str(conf)], capture_output=True,
                             text=True, timeout=TIMEOUT)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
        assert "hunter2x" not in out.stderr  # a password is never quoted


def test_json_log_lines_and_recent_errors(tmp_path):
    d = Daemon(tmp_path, f"[admin]\npassword = {PASSWORD}\n[log]\nformat = json\n"
                         "[proxy]\nconnect_url = http://127.0.0.1:9/connect\n")
    try:
        status, _, _ = get(d.port, "/connect")  # nobody listens on port 9: a warning
        assert status == 502
        stats = wait_until("the warning", lambda: (lambda s: s if s["errors"] else None)(
            json.loads(get(d.admin_port, "/admin/stats", password=PASSWORD)[2])))
        assert stats["errors"][-1]["level"] == "warning"
        assert "proxy:" in stats["errors"][-1]["message"]
        m = scrape(d.admin_port)
        assert m[("eddy_proxy_requests_total", '{outcome="refused"}')] == 1
    finally:
        log = d.stop()
    lines = [json.loads(line) for line in log.splitlines()]
    assert {tuple(sorted(line)) for line in lines} == {
        ("level", "loop", "message", "pid", "time")}
    assert any(line["level"] == "warning" and line["message"].startswith("proxy:")
               for line in lines)
    assert all(line["time"].endswith("Z") and line["pid"] == d.proc.pid for line in lines)


def test_admin_page_in_chromium_shows_the_connection_count_change(tmp_path):
    """Logs in (HTTP Basic), waits for the page's figures, opens three WebSocket connections
    and sees the count change and the chart grow, drawn by the page from /admin/stats."""
    if shutil.which("node") is None or not os.path.isdir(
            os.path.join(ROOT, "tests", "clients", "node_modules", "playwright-core")):
        pytest.fail("node and tests/clients/node_modules are needed: run `make test`")
    d = Daemon(tmp_path, f"[admin]\npassword = {PASSWORD}\n")
    driver = subprocess.Popen(
        ["node", os.path.join(ROOT, "tests", "clients", "admin_browser.js"),
         f"http://127.0.0.1:{d.admin_port}/admin", chromium_binary(), "ops", PASSWORD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clients = []
    try:
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        loaded = json.loads(line)
        assert loaded["step"] == "loaded" and loaded["polylines"] == 2
        assert loaded["broker"] == "none"  # no [broker] redis_url
        for _ in range(3):
            c = RawClient("127.0.0.1", d.port)
            c.handshake("/ws")
            clients.append(c)
        line = driver.stdout.readline()
        assert line, driver.stderr.read()
        changed = json.loads(line)
        assert changed["step"] == "changed", changed
        assert changed["connections"] >= loaded["connections"] + 3
        assert changed["points"] > loaded["points"]
        assert changed["errors"] == [] and changed["foreign"] == []
        assert driver.wait(timeout=TIMEOUT) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for c in clients:
            c.close()
        d.stop()
