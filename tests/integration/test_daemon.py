# SPDX-License-Identifier: MIT
"""The eddy program (cmd/): configuration, static files, the WebSocket echo service, and
the start/status/reload/stop lifecycle with its pid file, run in a temporary directory."""

import os
import shutil
import re
import signal
import socket
import ssl
import struct
import tempfile
import subprocess
import time

import pytest

from eddyserver import BUILD, ROOT, SANITIZER_PATTERNS, TIMEOUT, free_port, wait_for
from eddyserver import read_text as read
from wsraw import RawClient

EDDY = os.path.join(BUILD, "eddy")


def eddy(*args, cwd, env=None, timeout=TIMEOUT * 3):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([EDDY, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def assert_clean(log_path):
    """No sanitizer report in a server's log (sanitizer builds write them there)."""
    text = read(log_path)
    for pattern in SANITIZER_PATTERNS:
        assert pattern not in text, text


def http(port, path, method="GET"):
    """One request with the path sent as is (no client-side normalisation)."""
    client = RawClient("127.0.0.1", port, timeout=TIMEOUT)
    try:
        client.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        if method == "HEAD":
            while b"\r\n\r\n" not in client.buf:
                client._fill()
            head = client.buf.split(b"\r\n\r\n")[0].decode()
            return int(head.split(" ")[1]), head, b""
        return client.read_http_response()
    finally:
        client.close()


@pytest.fixture
def site(tmp_path):
    """A document root with a few files, a secret beside it, and a config file maker."""
    www = tmp_path / "www"
    (www / "sub").mkdir(parents=True)
    (www / "index.html").write_text("<h1>eddy</h1>\n")
    (www / "app.js").write_text("console.log(1)\n")
    (www / "sub" / "index.html").write_text("sub\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    os.symlink(tmp_path / "secret.txt", www / "link.txt")

    def conf(extra="", name="eddy.conf", port=None, admin_port=0, log_level="info"):
        port = port or free_port()
        text = (f"[server]\nport = {port}\nworker_num = 2\npid_file = eddy.pid\n"
                f"max_wait_time = 10\n{extra}\n[admin]\nport = {admin_port}\n"
                f"[log]\nlog_level = {log_level}\n")
        (tmp_path / name).write_text(text)
        return str(tmp_path / name), port

    return tmp_path, conf


class Serving:
    """`eddy serve` in the foreground, its log on stderr gathered in a file."""

    def __init__(self, cwd, conf, env=None):
        self.log_path = os.path.join(cwd, "serve.log")
        self.log = open(self.log_path, "w")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([EDDY, "serve", "-c", conf], cwd=cwd, env=full_env,
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: "serving files" in read(self.log_path) or self.proc.poll() is not None,
                 "the server to start")
        assert self.proc.poll() is None, read(self.log_path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=TIMEOUT)
        self.log.close()
        assert_clean(self.log_path)
        return rc


def test_serve_static_files_and_websocket_echo(site):
    tmp, conf = site
    path, port = conf()
    server = Serving(tmp, path)
    try:
        status, headers, body = http(port, "/")
        assert (status, body) == (200, b"<h1>eddy</h1>\n")
        assert headers["content-type"] == "text/html; charset=utf-8"
        status, headers, body = http(port, "/app.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        status, head, _ = http(port, "/app.js", method="HEAD")
        assert status == 200 and "Content-Length: 15" in head
        assert http(port, "/sub/")[2] == b"sub\n"
        status, headers, _ = http(port, "/sub")
        assert status == 301 and headers["location"] == "/sub/"
        assert http(port, "/missing.html")[0] == 404
        assert http(port, "/", method="POST")[0] == 405
        # Path traversal, plain and encoded, and a symbolic link leading out of the root.
        for attempt in ("/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
                        "/sub/..%2F..%2Fsecret.txt", "/sub/../../secret.txt", "/..%5csecret.txt",
                        "/%00/index.html", "/link.txt", "/./index.html", "/%2"):
            status, _, body = http(port, attempt)
            assert status == 404 and b"secret" not in body, attempt
        # Health on the main listener when there is no admin listener.
        assert http(port, "/healthz")[:3:2] == (200, b"ok\n")
        assert http(port, "/readyz")[0] == 200

        client = RawClient("127.0.0.1", port)
        client.handshake("/ws")
        client.send_frame(0x1, b"hello")
        assert client.recv_message() == (0x1, b"hello")
        client.send_frame(0x2, b"\x00\x01\xff")
        assert client.recv_message() == (0x2, b"\x00\x01\xff")
        client.close_handshake()
        RawClient("127.0.0.1", port).handshake("/elsewhere", expect_status=404)
    finally:
        assert server.stop() == 0


def test_admin_listener_serves_health_and_status_only(site):
    tmp, conf = site
    admin = free_port()
    path, port = conf(admin_port=admin)
    server = Serving(tmp, path)
    try:
        status, headers, body = http(admin, "/status")
        assert status == 200 and headers["content-type"] == "application/json"
        assert b'"state":"running"' in body and f'"pid":{server.proc.pid}'.encode() in body
        assert http(admin, "/healthz")[0] == 200
        assert http(admin, "/index.html")[0] == 404  # no files on the admin listener
        assert http(port, "/status")[0] == 404  # no status on the public one
        RawClient("127.0.0.1", admin).handshake("/ws", expect_status=404)
    finally:
        assert server.stop() == 0


def test_default_config_is_the_committed_file_and_valid(tmp_path):
    out = eddy("config", "default", cwd=tmp_path)
    assert out.returncode == 0
    with open(os.path.join(ROOT, "cmd", "eddy.conf")) as f:
        assert out.stdout == f.read()
    check = eddy("config", "check", "-c", os.path.join(ROOT, "cmd", "eddy.conf"), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    # Every commented key, uncommented, is accepted too (the file documents real keys).
    lines = [line[1:] if re.match(r"^;\w+ =( .*)?$", line) else line
             for line in out.stdout.splitlines()]
    assert sum(line != orig for line, orig in zip(lines, out.stdout.splitlines())) > 50
    (tmp_path / "all.conf").write_text("\n".join(lines) + "\n")
    check = eddy("config", "check", "-c", "all.conf", cwd=tmp_path)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("text,line,needle", [
    ("[server]\nport = 70000\n", 2, "[server] port: \"70000\" is not a port"),
    ("[server]\nworker_num = 2\nwrker_num = 2\n", 3, "[server] wrker_num: unknown key"),
    ("[server]\nworker_num = 0\n", 2, "[server] worker_num: bad value \"0\""),
    ("\n[log]\nlog_level = loud\n", 3, "[log] log_level: bad value"),
    ("[server]\nlog_level = debug\n", 2, "[server] log_level: belongs in [log]"),
    ("[nope]\nkey = 1\n", 2, "unknown section [nope]"),
    ("[server]\nport 9501\n", 2, "syntax error"),
    ("[websocket]\npath = ws\n", 2, "[websocket] path"),
    ("[server]\nwebsocket_origins = " + "x" * 300 + "\n", 2, "line longer than 198 bytes"),
])
def test_config_check_refuses_with_file_and_line(tmp_path, text, line, needle):
    (tmp_path / "bad.conf").write_text(text)
    out = eddy("config", "check", "-c", "bad.conf", cwd=tmp_path)
    assert out.returncode == 2
    assert f"bad.conf:{line}: " in out.stderr and needle in out.stderr, out.stderr
    # serve refuses the same file before binding anything.
    assert eddy("serve", "-c", "bad.conf", cwd=tmp_path).returncode == 2


def test_environment_overrides_the_file(site):
    tmp, conf = site
    path, file_port = conf()
    env_port = free_port()
    server = Serving(tmp, path, env={"EDDY_SERVER_PORT": str(env_port)})
    try:
        assert http(env_port, "/")[0] == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", file_port), timeout=1).close()
    finally:
        assert server.stop() == 0
    out = eddy("config", "check", "-c", path, cwd=tmp, env={"EDDY_SERVER_WORKER_NUM": "x"})
    assert out.returncode == 2 and "EDDY_SERVER_WORKER_NUM" in out.stderr
    out = eddy("config", "check", "-c", path, cwd=tmp, env={"EDDY_LOG_COLOUR": "1"})
    assert out.returncode == 2 and "[log] colour: unknown key" in out.stderr


def pid_of(tmp):
    return int(read(os.path.join(tmp, "eddy.pid")))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (our own dead child) is not alive.
    return read(f"/proc/{pid}/stat").split(")")[-1].split()[0:1] != ["Z"]


def test_start_status_stop_lifecycle(site):
    tmp, conf = site
    path, port = conf()
    out = eddy("start", "-c", path, cwd=tmp)
    assert out.returncode == 0, out.stderr + read(tmp / "eddy.log")
    assert "eddy started: http://127.0.0.1:" in out.stdout
    pid = pid_of(tmp)
    try:
        assert alive(pid) and http(port, "/")[0] == 200
        status = eddy("status", "-c", path, cwd=tmp)
        assert status.returncode == 0, status.stderr
        assert re.search(rf"^pid +{pid}$", status.stdout, re.M) and "running" in status.stdout
        assert re.search(r"^worker_num +2$", status.stdout, re.M), status.stdout
        assert "connections" in status.stdout
        again = eddy("start", "-c", path, cwd=tmp)
        assert again.returncode == 1 and "already running" in again.stderr
        assert pid_of(tmp) == pid
    finally:
        stop = eddy("stop", "-c", path, cwd=tmp)
    assert stop.returncode == 0 and "> success" in stop.stdout, stop.stderr
    assert not alive(pid) and not os.path.exists(tmp / "eddy.pid")
    assert eddy("status", "-c", path, cwd=tmp).returncode == 3
    assert eddy("stop", "-c", path, cwd=tmp).returncode == 3
    assert eddy("reload", "-c", path, cwd=tmp).returncode == 3
    assert_clean(tmp / "eddy.log")


def test_start_fails_on_a_busy_port_and_says_where_to_look(site):
    tmp, conf = site
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        path, _ = conf(port=busy.getsockname()[1])
        out = eddy("start", "-c", path, cwd=tmp)
    assert out.returncode == 1 and "eddy.log" in out.stderr
    assert "Address already in use" in read(tmp / "eddy.log") or "in use" in read(tmp / "eddy.log")
    assert not os.path.exists(tmp / "eddy.pid")


@pytest.mark.parametrize("occupant", ["dead", "other_program"])
def test_stale_pid_file_is_replaced(site, occupant):
    tmp, conf = site
    path, port = conf()
    sleeper = None
    if occupant == "dead":
        done = subprocess.run(["true"])
        assert done.returncode == 0
        stale = subprocess.Popen(["true"])
        stale.wait()
        stale_pid = stale.pid
    else:
        sleeper = subprocess.Popen(["sleep", "60"])
        stale_pid = sleeper.pid
    (tmp / "eddy.pid").write_text(f"{stale_pid}\n")
    try:
        assert eddy("status", "-c", path, cwd=tmp).returncode == 3
        out = eddy("start", "-c", path, cwd=tmp)
        assert out.returncode == 0, out.stderr + read(tmp / "eddy.log")
        assert pid_of(tmp) != stale_pid
        stop = eddy("stop", "-c", path, cwd=tmp)
        assert stop.returncode == 0, stop.stderr
        if sleeper is not None:
            assert sleeper.poll() is None  # the other program was never signalled
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()


def test_reload_changes_log_level_and_keeps_running_on_a_bad_config(site):
    tmp, conf = site
    path, port = conf(log_level="info")
    assert eddy("start", "-c", path, cwd=tmp).returncode == 0
    log = tmp / "eddy.log"
    pid = pid_of(tmp)
    try:
        http(port, "/")
        assert "DEBUG" not in read(log)
        conf(port=port, log_level="debug", extra="worker_num = 3")
        out = eddy("reload", "-c", path, cwd=tmp)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: "reload done" in read(log), "the reload")
        assert "log_level info -> debug" in read(log)
        assert "[server] worker_num changed; it needs a restart" in read(log)
        http(port, "/")
        wait_for(lambda: "DEBUG" in read(log), "a debug line after the reload")

        # An invalid file: `eddy reload` refuses it itself, and a SIGHUP sent anyway is
        # refused by the server, which keeps running with what it has.
        (tmp / "eddy.conf").write_text(read(path).replace("log_level = debug",
                                                          "log_level = loud"))
        out = eddy("reload", "-c", path, cwd=tmp)
        assert out.returncode == 2 and "eddy.conf:" in out.stderr and "log_level" in out.stderr
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "reload refused" in read(log), "the refusal")
        assert "eddy.conf:" in read(log).split("reload refused")[1]
        assert alive(pid) and http(port, "/")[0] == 200
        assert b'"log_level":"debug"' in http(port, "/status")[2]
    finally:
        conf(port=port)  # a valid file again, for stop
        assert eddy("stop", "-c", path, cwd=tmp).returncode == 0
    assert_clean(tmp / "eddy.log")


def test_stop_closes_websockets_with_1001_and_exits_in_time(site):
    tmp, conf = site
    path, port = conf()
    assert eddy("start", "-c", path, cwd=tmp).returncode == 0
    pid = pid_of(tmp)
    client = RawClient("127.0.0.1", port)
    client.handshake("/ws")
    client.send_frame(0x1, b"ping")
    assert client.recv_message() == (0x1, b"ping")
    started = time.monotonic()
    stop = subprocess.Popen([EDDY, "stop", "-c", path], cwd=tmp, stdout=subprocess.PIPE,
                            text=True)
    fin, _, opcode, payload = client.recv_frame()
    assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1001
    assert payload[2:] == b"server shutting down"
    client.send_frame(0x8, payload[:2])  # answer the close: the drain ends at once
    client.expect_eof()
    assert stop.wait(timeout=TIMEOUT) == 0
    assert "> success" in stop.stdout.read()
    assert time.monotonic() - started < 5  # well within max_wait_time and close timeout
    assert not alive(pid)
    assert "Terminated: shutting down" in read(tmp / "eddy.log")
    assert_clean(tmp / "eddy.log")


def test_stop_reports_failure_when_the_server_outlives_max_wait_time(site):
    tmp, conf = site
    path, port = conf(extra="websocket_close_timeout = 30")
    (tmp / "eddy.conf").write_text(read(path).replace("max_wait_time = 10",
                                                      "max_wait_time = 0.5"))
    assert eddy("start", "-c", path, cwd=tmp).returncode == 0
    pid = pid_of(tmp)
    client = RawClient("127.0.0.1", port)
    client.handshake("/ws")  # never answers the close: the server waits for it
    try:
        out = eddy("stop", "-c", path, cwd=tmp)
        assert out.returncode == 1 and "Unable to stop" in out.stderr
        assert alive(pid)
    finally:
        client.close()  # the server's drain ends with the connection
        wait_for(lambda: not alive(pid), "the server to exit")


def test_tls_listener_serves_the_same_files_and_echo(site, tls_cert):
    tmp, conf = site
    cert, key = tls_cert
    tls_port = free_port()
    path, port = conf()
    with open(path, "a") as f:
        f.write(f"[tls]\nport = {tls_port}\nssl_cert_file = {cert}\nssl_key_file = {key}\n")
    server = Serving(tmp, path)
    try:
        context = ssl.create_default_context(cafile=cert)
        with socket.create_connection(("127.0.0.1", tls_port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := tls.recv(4096):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"console.log(1)\n")
        status = http(port, "/status")[2]
        assert f'"https://127.0.0.1:{tls_port}"'.encode() in status
    finally:
        assert server.stop() == 0


def test_tls_port_without_certificate_is_refused(tmp_path):
    (tmp_path / "tls.conf").write_text("[tls]\nport = 9443\n")
    out = eddy("config", "check", "-c", "tls.conf", cwd=tmp_path)
    assert out.returncode == 2 and "needs ssl_cert_file and ssl_key_file" in out.stderr


def test_shutdown_delay_reports_not_ready_while_still_serving(site):
    tmp, conf = site
    admin = free_port()
    path, port = conf(admin_port=admin, extra="shutdown_delay = 30")
    server = Serving(tmp, path)
    assert http(admin, "/readyz")[0] == 200
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: http(admin, "/readyz")[0] == 503, "/readyz to answer 503")
    assert b'"state":"draining"' in http(admin, "/status")[2]
    assert http(admin, "/healthz")[0] == 200 and http(port, "/")[0] == 200
    client = RawClient("127.0.0.1", port)
    client.handshake("/ws")
    # A second SIGTERM ends the delay: the stop proceeds at once (the 30 s are not waited).
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    _, _, opcode, payload = client.recv_frame()
    assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1001
    client.send_frame(0x8, payload[:2])
    client.expect_eof()
    assert server.stop() == 0
    assert time.monotonic() - started < 5
    assert "stopping now" in read(server.log_path)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to act as another user")
def test_pid_file_check_as_another_user_reads_the_command_line(site):
    """Another user's /proc/PID/exe cannot be read: the check falls back on argv[0], so a
    stale pid now owned by another program is still recognised as stale."""
    tmp, conf = site
    shared = tempfile.mkdtemp(prefix="eddy-pid-")
    os.chmod(shared, 0o755)
    path, port = conf(extra=f"pid_file = {shared}/eddy.pid")
    path = shutil.copy(path, shared)  # where the other user can read it
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", EDDY]
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(f"{shared}/eddy.pid", "w") as f:
            f.write(f"{sleeper.pid}\n")
        out = subprocess.run([*as_nobody, "status", "-c", path], cwd=shared,
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 3, out.stdout + out.stderr
        assert eddy("start", "-c", path, cwd=tmp).returncode == 0
        out = subprocess.run([*as_nobody, "status", "-c", path], cwd=shared,
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0 and "running" in out.stdout, out.stdout + out.stderr
        assert eddy("stop", "-c", path, cwd=tmp).returncode == 0
    finally:
        sleeper.kill()
        sleeper.wait()
        shutil.rmtree(shared, ignore_errors=True)
