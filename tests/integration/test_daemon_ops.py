# SPDX-License-Identifier: MIT
"""The eddy program's operations surface: /metrics (Prometheus text format 0.0.4) and the
same figures in `eddy status`."""

import concurrent.futures
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eddyserver import BUILD, ROOT, TIMEOUT
from test_daemon import (EDDY, Serving, alive, assert_clean, eddy, free_port, http, pid_of, read,
                         site, wait_for)  # noqa: F401  (site: fixture)
from wsraw import RawClient

# Text exposition format 0.0.4, strictly: HELP and TYPE lines, then samples of that family.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
LABELS = rf"\{{{LABEL}(?:,{LABEL})*\}}"
VALUE = r"-?(?:[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|Inf|NaN)"
HELP_RE = re.compile(rf"^# HELP ({NAME}) \S.*$")
TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
SAMPLE_RE = re.compile(rf"^({NAME})({LABELS})? ({VALUE})$")


def parse_metrics(text):
    """{(name, labels): value}; fails on any line that is not strictly well-formed."""
    assert text.endswith("\n")
    samples, types, family = {}, {}, None
    for line in text.splitlines():
        if m := HELP_RE.match(line):
            family = m.group(1)
            assert family.startswith("eddy_") and family not in types, line
        elif m := TYPE_RE.match(line):
            assert m.group(1) == family, line
            types[family] = m.group(2)
        elif m := SAMPLE_RE.match(line):
            name, labels, value = m.groups()
            assert name == family and family in types, line
            if types[family] == "counter":
                assert name.endswith("_total"), line
            assert (name, labels or "") not in samples, line
            samples[(name, labels or "")] = float(value)
        else:
            raise AssertionError(f"not a line of the text format: {line!r}")
    return samples


def scrape(port):
    status, headers, body = http(port, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    samples = parse_metrics(text)
    # Debian's python3-prometheus-client, the reference parser, must agree.
    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert len(parsed) == len(samples)
    return samples


def test_metrics_scrape_parses_and_counters_move_with_traffic(site):
    tmp, conf = site
    admin = free_port()
    path, port = conf(admin_port=admin)
    server = Serving(tmp, path)
    try:
        before = scrape(admin)
        assert before[("eddy_build_info", '{version="0.1.0"}')] == 1
        assert before[("eddy_ready", "")] == 1
        assert before[("eddy_worker_num", "")] == 2
        assert before[("eddy_process_resident_memory_bytes", "")] > 1 << 20
        assert before[("eddy_process_open_fds", "")] > 3
        assert ("eddy_loop_connections", '{loop="1"}') in before
        assert before[("eddy_connections", '{kind="websocket"}')] == 0

        client = RawClient("127.0.0.1", port)
        client.handshake("/ws")
        for i in range(10):
            client.send_frame(0x1, f"message {i}".encode())
            assert client.recv_message() == (0x1, f"message {i}".encode())
        RawClient("127.0.0.1", port).handshake("/elsewhere", expect_status=404)
        assert http(port, "/")[0] == 200

        during = scrape(admin)
        assert during[("eddy_connections", '{kind="websocket"}')] == 1

        def moved(name, labels=""):
            return during[(name, labels)] - before[(name, labels)]
        # This scrape's connection and the one before it are counted too (admin listener).
        assert moved("eddy_connections_accepted_total") == 4
        assert moved("eddy_http_requests_total") == 4
        assert moved("eddy_websocket_handshakes_total") == 1
        assert moved("eddy_websocket_handshake_failures_total") == 1
        assert moved("eddy_websocket_messages_received_total") == 10
        assert moved("eddy_websocket_messages_sent_total") == 10
        assert moved("eddy_received_bytes_total") >= 10 * (6 + 9)
        assert moved("eddy_sent_bytes_total") >= 10 * (2 + 9)
        assert sum(during[("eddy_loop_websocket_messages_received_total", f'{{loop="{i}"}}')]
                   for i in range(2)) == during[("eddy_websocket_messages_received_total", "")]
        client.close_handshake()

        # `eddy status` shows the same figures (seed 004's infos).
        out = eddy("status", "-c", path, cwd=tmp)
        assert out.returncode == 0, out.stderr
        rows = dict(re.findall(r"^(\w+) +(.*)$", out.stdout, re.M))
        # One column of values, one space after the longest name (websocket_connections).
        starts = {len(m.group(1)) for m in re.finditer(r"^(\w+ +)\S", out.stdout, re.M)}
        assert starts == {max(map(len, rows)) + 1}, out.stdout
        assert int(rows["messages_in"]) == during[("eddy_websocket_messages_received_total", "")]
        for key in ("accepted", "websocket_handshakes", "bytes_out", "memory_rss_bytes",
                    "cpu_seconds", "open_fds", "messages_dropped"):
            assert key in rows, out.stdout
    finally:
        assert server.stop() == 0


def test_metrics_on_the_main_listener_without_an_admin_one(site):
    tmp, conf = site
    path, port = conf()
    server = Serving(tmp, path)
    try:
        assert ("eddy_uptime_seconds", "") in scrape(port)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("line", [
    "eddy_x 1", "# HELP eddy_x h\n# TYPE eddy_x counter\neddy_x 1",
    '# HELP eddy_x h\n# TYPE eddy_x gauge\neddy_x{a="1"} 1 2 3',
])
def test_the_metrics_parser_is_strict(line):
    with pytest.raises(AssertionError):
        parse_metrics(line + "\n")


class ConnectLoop:
    """Connects continuously (one request per connection) on a thread and counts what each
    attempt met: an answer, a refusal, a reset (or a close without an answer)."""

    def __init__(self, port):
        self.port = port
        self.counts = {"ok": 0, "refused": 0, "reset": 0}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _attempt(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
            return "ok" if answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"</h1>\n") \
                else "reset"
        except ConnectionRefusedError:
            return "refused"
        except OSError:  # reset, or timed out
            return "reset"

    def _run(self):
        deadline = time.monotonic() + 60
        while not self.done.is_set() and time.monotonic() < deadline:
            self.counts[self._attempt()] += 1

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.counts


def test_restart_hands_the_listeners_over_without_refusing_a_connection(site):
    tmp, conf = site
    admin = free_port()
    path, port = conf(admin_port=admin)
    assert eddy("start", "-c", path, cwd=tmp).returncode == 0
    old = pid_of(tmp)
    client = RawClient("127.0.0.1", port)
    client.handshake("/ws")
    client.send_frame(0x1, b"before")
    assert client.recv_message() == (0x1, b"before")
    loop = ConnectLoop(port)
    try:
        wait_for(lambda: loop.counts["ok"] >= 20, "the connection loop to get going")

        def answer_close():
            _, _, opcode, payload = client.recv_frame()
            client.send_frame(0x8, payload[:2])
            client.expect_eof()
            return opcode, payload

        # The WebSocket client is told to go away (1001) and answers at once, as a browser
        # does (else the old server waits websocket_close_timeout, 5 s, before it exits).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            closing = pool.submit(answer_close)
            out = eddy("restart", "-c", path, cwd=tmp)
            opcode, payload = closing.result(timeout=TIMEOUT)
        assert out.returncode == 0, out.stdout + out.stderr + read(tmp / "eddy.log")
        assert "> success" in out.stdout
        new = pid_of(tmp)
        assert new != old and alive(new) and not alive(old)
        assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1001
        # It reconnects to the new one.
        again = RawClient("127.0.0.1", port)
        again.handshake("/ws")
        again.send_frame(0x1, b"after")
        assert again.recv_message() == (0x1, b"after")
        again.close_handshake()
        ok_at_restart = loop.counts["ok"]
        wait_for(lambda: loop.counts["ok"] >= ok_at_restart + 20, "connections after it")
    finally:
        counts = loop.stop()
    try:
        assert counts["refused"] == 0 and counts["reset"] == 0, counts
        assert f'"pid":{new}'.encode() in http(admin, "/status")[2]  # admin handed over too
        assert "taken over" in read(tmp / "eddy.log")
    finally:
        assert eddy("stop", "-c", path, cwd=tmp).returncode == 0
    assert_clean(tmp / "eddy.log")


def test_the_connection_loop_counts_refusals_across_a_stop_and_start(site):
    """The measure above can fail: a plain stop and start refuses connections."""
    tmp, conf = site
    path, port = conf()
    assert eddy("start", "-c", path, cwd=tmp).returncode == 0
    loop = ConnectLoop(port)
    try:
        wait_for(lambda: loop.counts["ok"] >= 20, "the connection loop to get going")
        assert eddy("stop", "-c", path, cwd=tmp).returncode == 0
        assert eddy("start", "-c", path, cwd=tmp).returncode == 0
        ok_at_restart = loop.counts["ok"]
        wait_for(lambda: loop.counts["ok"] >= ok_at_restart + 20, "connections after it")
    finally:
        counts = loop.stop()
        eddy("stop", "-c", path, cwd=tmp)
    assert counts["refused"] + counts["reset"] > 0, counts


def test_restart_of_a_stopped_server_starts_it_and_a_failed_one_keeps_the_old(site):
    tmp, conf = site
    path, port = conf()
    out = eddy("restart", "-c", path, cwd=tmp)
    assert out.returncode == 0 and "not running: starting" in out.stdout, out.stderr
    old = pid_of(tmp)
    try:
        # The new process cannot start (the file now names a TLS certificate that is not
        # one): the old one learns it, says so in its log and keeps serving; the pid file
        # still names it.
        bogus = os.path.join(ROOT, "README.md")
        with open(path, "a") as f:
            f.write(f"[tls]\nport = {free_port()}\nssl_cert_file = {bogus}\n"
                    f"ssl_key_file = {bogus}\n")
        started = time.monotonic()
        out = eddy("restart", "-c", path, cwd=tmp)
        assert time.monotonic() - started < 10
        assert out.returncode == 1 and "did not take over" in out.stderr, out.stdout + out.stderr
        assert pid_of(tmp) == old and alive(old) and http(port, "/")[0] == 200
        assert "restart failed" in read(tmp / "eddy.log")
    finally:
        conf(port=port)
        assert eddy("stop", "-c", path, cwd=tmp).returncode == 0


def test_systemd_notifications_ready_reloading_stopping_and_the_new_main_pid(site):
    """sd_notify(3) by hand: what systemd's Type=notify unit (contrib/systemd) relies on."""
    tmp, conf = site
    path, port = conf()
    sock_path = str(tmp / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(sock_path)
        notify.settimeout(TIMEOUT)
        server = Serving(tmp, path, env={"NOTIFY_SOCKET": sock_path})
        restarted = None
        try:
            assert notify.recv(256) == f"READY=1\nMAINPID={server.proc.pid}".encode()
            server.proc.send_signal(signal.SIGHUP)
            assert notify.recv(256) == b"RELOADING=1"
            assert notify.recv(256) == b"READY=1"
            server.proc.send_signal(signal.SIGUSR2)  # what `eddy restart` sends
            message = notify.recv(256).decode()
            restarted = int(message.split("MAINPID=")[1])
            assert message.startswith("READY=1\n") and restarted != server.proc.pid
            assert server.proc.wait(timeout=TIMEOUT) == 0  # drained and exited, silently
            os.kill(restarted, signal.SIGTERM)
            assert notify.recv(256) == b"STOPPING=1"
            wait_for(lambda: not alive(restarted), "the new process to stop")
        finally:
            server.stop()
            if restarted is not None and alive(restarted):
                os.kill(restarted, signal.SIGKILL)


# ---------------------------------------------------------------------------------------
# Man pages and the systemd unit, as `make install` lays them out
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    subprocess.run(["make", "--no-print-directory", "-C", ROOT, "install",
                    "BUILD=" + os.path.relpath(BUILD, ROOT), "DESTDIR=" + str(root),
                    "PREFIX=/usr"], check=True, capture_output=True, timeout=600)
    return root


def default_conf_keys():
    """(section, key) of every key cmd/eddy.conf documents."""
    keys, section = [], None
    with open(os.path.join(ROOT, "cmd", "eddy.conf")) as f:
        for line in f:
            if m := re.match(r"^\[(\w+)\]", line):
                section = m.group(1)
            elif m := re.match(r"^;(\w+) =", line):
                keys.append((section, m.group(1)))
    assert len(keys) > 50
    return keys


def test_man_pages_are_installed_and_render_without_warnings(installed):
    for page in ("man1/eddy.1", "man5/eddy.conf.5"):
        path = installed / "usr/share/man" / page
        assert path.is_file()
        if shutil.which("man"):
            out = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True,
                                 text=True, env=dict(os.environ, MANWIDTH="80"),
                                 timeout=TIMEOUT)
            assert out.returncode == 0 and out.stderr == "", out.stderr
            assert len(out.stdout) > 2000


def roff_text(path):
    """The page's words: font escapes and hyphen escapes out."""
    with open(path) as f:
        return re.sub(r"\\f[BIRP]|\\(?=-)", "", f.read())


def test_eddy_1_names_every_command(installed):
    usage = eddy("--help", cwd=ROOT).stdout
    commands = re.findall(r"^  ((?:config )?[a-z]+)[ \[]", usage, re.M)
    assert {"serve", "start", "stop", "restart", "status", "reload", "config check",
            "config default", "version", "ws"} <= set(commands)
    text = roff_text(installed / "usr/share/man/man1/eddy.1")
    for command in commands:
        assert re.search(rf"^\.(?:TP\n\.)?B {command}$", text, re.M), command
    for signal_name in ("SIGTERM", "SIGHUP", "SIGUSR2"):
        assert signal_name in text


def test_eddy_conf_5_documents_every_key_of_the_default_file(installed):
    text = roff_text(installed / "usr/share/man/man5/eddy.conf.5")
    sections = dict(re.findall(r'^\.SH "\[(\w+)\]"\n(.*?)(?=^\.SH )', text, re.M | re.S))
    for section, key in default_conf_keys():
        assert re.search(rf"^\.BR (?:\w+ \", \" )?{key}\b", sections[section], re.M), \
            (section, key)


def test_systemd_unit_is_installed_with_the_installation_paths(installed):
    unit = (installed / "usr/lib/systemd/system/eddy.service").read_text()
    assert "Type=notify" in unit and "NotifyAccess=all" in unit
    assert "ExecStart=/usr/bin/eddy serve -c /etc/eddy/eddy.conf" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "/usr/local" not in unit
    assert (installed / "etc/eddy/eddy.conf").read_text() == \
        open(os.path.join(ROOT, "cmd", "eddy.conf")).read()
    assert (installed / "usr/share/eddy/www/index.html").is_file()
    socket_unit = installed / "usr/lib/systemd/system/eddy.socket"
    assert "FileDescriptorName=main" in socket_unit.read_text()
    if shutil.which("systemd-analyze"):
        out = subprocess.run(["systemd-analyze", "verify", "--man=no",
                              str(installed / "usr/lib/systemd/system/eddy.service"),
                              str(installed / "usr/lib/systemd/system/eddy.socket")],
                             capture_output=True, text=True, timeout=TIMEOUT)
        # The staged binary is not at /usr/bin: that complaint alone is expected.
        complaints = [line for line in out.stderr.splitlines()
                      if "/usr/bin/eddy is not executable" not in line]
        assert complaints == [], out.stderr


def test_reload_applies_document_root_index_and_websocket_path_live(site):
    tmp, conf = site
    other = tmp / "other"
    other.mkdir()
    (other / "home.html").write_text("other root\n")
    path, port = conf()
    server = Serving(tmp, path)
    try:
        old_ws = RawClient("127.0.0.1", port)
        old_ws.handshake("/ws")
        assert http(port, "/")[2] == b"<h1>eddy</h1>\n"
        conf(port=port, extra=f"worker_num = 3\n[static]\ndocument_root = {other}\n"
                             "index = home.html\n[websocket]\npath = /live")
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload done" in read(server.log_path), "the reload")
        log = read(server.log_path)
        assert "reload: [static] document_root" in log and "reload: [websocket] path /live" in log
        assert "[static] document_root changed; it needs a restart" not in log
        assert "[server] worker_num changed; it needs a restart" in log
        assert http(port, "/")[2] == b"other root\n"
        assert http(port, "/index.html")[0] == 404
        RawClient("127.0.0.1", port).handshake("/ws", expect_status=404)
        live = RawClient("127.0.0.1", port)
        live.handshake("/live")
        live.send_frame(0x1, b"new path")
        assert live.recv_message() == (0x1, b"new path")
        live.close_handshake()
        old_ws.send_frame(0x1, b"still here")  # sessions already open are not affected
        assert old_ws.recv_message() == (0x1, b"still here")
        old_ws.close_handshake()
        # A second reload of the same file changes nothing and reports nothing again.
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: read(server.log_path).count("reload done") == 2, "the second reload")
        second = read(server.log_path).split("reload done")[1]
        assert "document_root" not in second and "needs a restart" in second
    finally:
        assert server.stop() == 0


def test_socket_activation_takes_the_socket_systemd_passes(site):
    """sd_listen_fds(3) as systemd does it: descriptor 3, LISTEN_FDS, LISTEN_PID, the
    name from FileDescriptorName=. A connection made before eddy runs waits in the
    socket's backlog and is served; the configured port is not bound."""
    tmp, conf = site
    path, config_port = conf()
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        held.listen(16)
        port = held.getsockname()[1]
        early = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        early.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        log_path = tmp / "serve.log"
        with open(log_path, "w") as log:
            # Descriptor 3, as systemd passes it (Python's own are not inherited).
            proc = subprocess.Popen(
                ["sh", "-c", 'LISTEN_PID=$$ exec "$0" serve -c "$1"', EDDY, path],
                cwd=tmp, env=dict(os.environ, LISTEN_FDS="1", LISTEN_FDNAMES="main"),
                stdout=log, stderr=log, close_fds=False,
                preexec_fn=lambda: os.dup2(held.fileno(), 3))
        try:
            answer = b""
            while chunk := early.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"</h1>\n"), answer
            early.close()
            assert "main listener taken over from systemd" in read(log_path)
            assert http(port, "/")[0] == 200
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", config_port), timeout=1).close()
            assert f'"http://127.0.0.1:{port}"'.encode() in http(port, "/status")[2]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=TIMEOUT) == 0
    assert_clean(log_path)


def test_listen_fds_naming_no_socket_is_ignored(site):
    """LISTEN_FDS=1 with nothing listening on descriptor 3 (the event loop's epoll
    descriptor may get that number): ignored, never closed, so the server still serves on
    its configured port and stops on SIGTERM."""
    tmp, conf = site
    path, port = conf()
    log_path = tmp / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$0" serve -c "$1"', EDDY, path],
                                cwd=tmp, env=dict(os.environ, LISTEN_FDS="1"), stdout=log,
                                stderr=log)
    try:
        wait_for(lambda: "serving files" in read(log_path) or proc.poll() is not None,
                 "the server to start")
        assert http(port, "/")[0] == 200
        assert "descriptor 3 is not a listening socket" in read(log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0


def test_restart_hands_over_the_tls_and_admin_listeners_too(site, tls_cert):
    tmp, conf = site
    cert, key = tls_cert
    tls_port, admin = free_port(), free_port()
    path, port = conf(admin_port=admin)
    with open(path, "a") as f:
        f.write(f"[tls]\nport = {tls_port}\nssl_cert_file = {cert}\nssl_key_file = {key}\n")
    assert eddy("start", "-c", path, cwd=tmp).returncode == 0
    try:
        out = eddy("restart", "-c", path, cwd=tmp)
        assert out.returncode == 0, out.stdout + out.stderr + read(tmp / "eddy.log")
        log = read(tmp / "eddy.log")
        for name in ("main", "tls", "admin"):
            assert f"{name} listener taken over" in log
        context = ssl.create_default_context(cafile=cert)
        with socket.create_connection(("127.0.0.1", tls_port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert tls.recv(12) == b"HTTP/1.1 200"
        assert f'"pid":{pid_of(tmp)}'.encode() in http(admin, "/status")[2]
    finally:
        assert eddy("stop", "-c", path, cwd=tmp).returncode == 0
    assert_clean(tmp / "eddy.log")


def test_restart_of_a_stopping_server_fails_at_once(site):
    tmp, conf = site
    admin = free_port()
    path, port = conf(admin_port=admin, extra="shutdown_delay = 30")
    assert eddy("start", "-c", path, cwd=tmp).returncode == 0
    pid = pid_of(tmp)
    try:
        os.kill(pid, signal.SIGTERM)  # draining: /readyz 503 for shutdown_delay
        wait_for(lambda: http(admin, "/readyz")[0] == 503, "the drain")
        started = time.monotonic()
        out = eddy("restart", "-c", path, cwd=tmp)
        assert out.returncode == 1 and "did not take over" in out.stderr, out.stdout + out.stderr
        assert time.monotonic() - started < 10  # told by /status, not after 30 s
        assert "restart refused: the server is stopping" in read(tmp / "eddy.log")
    finally:
        os.kill(pid, signal.SIGTERM)  # a second one ends the delay
        wait_for(lambda: not alive(pid), "the server to stop")
