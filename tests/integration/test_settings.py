# SPDX-License-Identifier: MIT
"""Settings: refusal of unknown keys and bad values (exit 2 with the key and value
logged), log_level and log_file, and the limits package_max_length and max_connection."""

import os
import re
import signal
import socket
import subprocess

import pytest

from eddyserver import BUILD, TIMEOUT, assert_echo_serves, free_port
from testbed import cmd, open_ws, start_testbed
from wsraw import RawClient

LOG_LINE = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \*\d+\.\d+\]\t(DEBUG|TRACE|INFO|NOTICE|WARNING|ERROR)\t"


def program(name):
    path = os.path.join(BUILD, "examples", name)
    return path if os.path.exists(path) else os.path.join(BUILD, "tests", name)


def run_refused(*settings):
    """Runs the echo example with the settings; it must exit before serving."""
    cmd = [program("echo"), "--host", "127.0.0.1", "--port", "0"]
    for setting in settings:
        cmd += ["--set", setting]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert "listening" not in result.stderr
    return result


class Quiet:
    """The testbed started without relying on the INFO "listening" line: it listens on a
    port chosen here and prints "start" to stdout once it runs."""

    def __init__(self, *settings):
        self.port = free_port()
        cmd = [program("testbed"), "--host", "127.0.0.1", "--port", str(self.port)]
        for setting in settings:
            cmd += ["--set", setting]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if line != "start\n":
            self.proc.kill()
            raise AssertionError(f"testbed did not start: {line!r} "
                                 f"{self.proc.stderr.read()!r}")

    def stop(self):
        """Stops the server; returns (stdout rest, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert self.proc.returncode == 0, err
        return out, err


@pytest.fixture
def quiet_servers():
    servers = []

    def start(*settings):
        server = Quiet(*settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def ws_echo(port, text=b"ping"):
    client = RawClient("127.0.0.1", port, TIMEOUT)
    client.handshake()
    client.send_frame(0x1, text)
    assert client.recv_message() == (0x1, text)
    client.close_handshake()


# ---- refusals ----


@pytest.mark.parametrize("key", ["no_such_key", "Worker_Num", "worker_num ", ""])
def test_unknown_key_exits_2(key):
    result = run_refused(f"{key}=1")
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if f'unknown setting "{key}"' in l]
    assert len(lines) == 1, result.stderr
    assert "\tERROR\t" in lines[0]


@pytest.mark.parametrize("key,value", [
    ("open_tcp_nodelay", "maybe"),
    ("open_websocket_ping_frame", ""),
    ("open_websocket_close_frame", "2"),
    ("package_max_length", "-5"),
    ("package_max_length", "10k"),
    ("package_max_length", ""),
    ("package_max_length", "0"),
    ("backlog", "abc"),
    ("max_connection", "0"),
    ("heartbeat_check_interval", "-1"),
    ("heartbeat_idle_time", "1.5s"),
    ("websocket_close_timeout", "soon"),
    ("http_header_timeout", "-0.5"),
    ("http_keepalive_timeout", "1e999"),
    ("http_max_header_size", "100"),
    ("log_level", "loud"),
    ("log_level", "7"),
    ("worker_num", "0"),
])
def test_bad_value_exits_2(key, value):
    result = run_refused(f"{key}={value}")
    assert result.returncode == 2, result.stderr
    want = f'setting {key}: invalid value "{value}" (expected'
    lines = [l for l in result.stderr.splitlines() if want in l]
    assert len(lines) == 1, result.stderr
    assert "\tERROR\t" in lines[0]


def test_long_log_line_is_not_truncated():
    """Log lines used to be cut at 1 KiB; this one carries a 3000-byte value."""
    value = "x" * 3000
    result = run_refused(f"backlog={value}")
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if "setting backlog" in l]
    assert len(lines) == 1, result.stderr
    assert f'setting backlog: invalid value "{value}" (expected' in lines[0]


def test_first_bad_setting_stops_the_rest():
    result = run_refused("package_max_length=1000", "nope=1", "backlog=x")
    assert result.returncode == 2
    assert 'unknown setting "nope"' in result.stderr
    assert "backlog" not in result.stderr


@pytest.mark.parametrize("settings", [
    {"open_tcp_nodelay": "yes", "open_websocket_ping_frame": "OFF",
     "open_websocket_pong_frame": "0", "open_websocket_close_frame": "False"},
    {"log_level": "2", "backlog": "1", "max_connection": "1048576", "worker_num": "1"},
    {"log_level": "INFO", "http_header_timeout": "0.3", "websocket_close_timeout": "0",
     "http_keepalive_timeout": "86400", "heartbeat_check_interval": "0"},
    {"websocket_subprotocol": "", "package_max_length": "1"},
], ids=["booleans", "numbers", "seconds", "edges"])
def test_good_values_are_accepted(start_server, settings):
    server = start_server("echo", settings=settings)
    if settings.get("package_max_length") != "1":
        assert_echo_serves(server)
    else:
        client = server.connect_raw()
        client.handshake()
        client.send_frame(0x1, b"a")
        assert client.recv_message() == (0x1, b"a")


# ---- logging ----


def test_log_line_format(start_server):
    server = start_server("echo")
    match = server.wait_log(LOG_LINE + r"eddy [0-9.]+ listening on 127\.0\.0\.1:(\d+)$")
    assert int(match.group(2)) == server.port
    assert f"*{server.proc.pid}." in match.group(0)


def test_log_level_warning_suppresses_info(quiet_servers):
    server = quiet_servers("log_level=warning", "max_connection=1")
    first = RawClient("127.0.0.1", server.port, TIMEOUT)
    first.handshake()
    refused = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    assert refused.recv(100) == b""  # over max_connection: a WARNING
    refused.close()
    first.close_handshake()
    out, err = server.stop()
    lines = err.splitlines()
    assert lines and all("\tWARNING\t" in l or "\tERROR\t" in l for l in lines), err
    assert any("too many connections" in l for l in lines)
    assert "listening" not in err and "eddy stopped" not in err


def test_log_level_none_logs_nothing(quiet_servers):
    server = quiet_servers("log_level=none", "max_connection=1")
    first = RawClient("127.0.0.1", server.port, TIMEOUT)
    first.handshake()
    refused = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    assert refused.recv(100) == b""
    first.close_handshake()
    out, err = server.stop()
    assert err == ""


def test_log_level_debug_includes_info(start_server):
    server = start_server("echo", settings={"log_level": "debug"})
    assert_echo_serves(server)


def test_log_file(quiet_servers, tmp_path):
    path = tmp_path / "eddy.log"
    path.write_text("existing line\n")
    server = quiet_servers(f"log_file={path}")
    ws_echo(server.port)
    out, err = server.stop()
    assert err == ""
    lines = path.read_text().splitlines()
    assert lines[0] == "existing line"  # appended to, not truncated
    assert any(f"listening on 127.0.0.1:{server.port}" in l for l in lines), lines
    assert "eddy stopped" in lines[-1]
    assert all(re.match(LOG_LINE, l) for l in lines[1:]), lines


# ---- limits ----


def test_package_max_length_websocket_message(start_server):
    server = start_server("echo", settings={"package_max_length": 1024})
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x2, b"a" * 1024)
    assert client.recv_message() == (0x2, b"a" * 1024)
    client.send_frame(0x2, b"b" * 1025)
    client.expect_close(1009)
    # Fragments count together.
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x1, b"c" * 600, fin=False)
    client.send_frame(0x0, b"c" * 600, fin=True)
    client.expect_close(1009)
    assert_echo_serves(server)


def test_package_max_length_http_body(start_server):
    server = start_server("testbed", "--request", settings={"package_max_length": 1024})
    ok = server.http(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: 1024\r\n\r\n" + b"a" * 1024)
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"\r\n\r\n" + b"a" * 1024)
    refused = server.http(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n")
    assert refused.startswith(b"HTTP/1.1 413 ")


def test_max_connection(start_server):
    server = start_server("echo", settings={"max_connection": 2})
    first = server.connect_raw()
    first.handshake()
    second = server.connect_raw()
    second.handshake()
    third = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    third.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert third.recv(100) == b""
    except ConnectionResetError:
        pass  # closed with the request unread: a reset is EOF too
    third.close()
    line = server.wait_log(r"\tWARNING\t.*too many connections").string
    assert "127.0.0.1" in line
    # The two admitted clients are unaffected, and a freed slot is usable again.
    second.send_frame(0x1, b"two")
    assert second.recv_message() == (0x1, b"two")
    first.close_handshake()
    assert_echo_serves(server)
    second.close_handshake()


def test_log_lines_name_the_loop_that_logged(start_server):
    """"[date *pid.loop]": a line logged by loop 1 says .1, by loop 0 .0 (it said .0 for
    every loop)."""
    server = start_testbed(start_server, settings={"log_level": "debug"}, workers=2)
    by_loop = {}
    clients = []
    while len(by_loop) < 2 and len(clients) < 16:
        client, fd = open_ws(server)
        clients.append(client)
        if len(clients) == 1:
            ctl = client
            continue
        by_loop.setdefault(int(cmd(server, ctl, f"loop {fd}")), (client, fd))
    assert set(by_loop) == {0, 1}
    pid = server.proc.pid
    for loop, (client, fd) in sorted(by_loop.items()):
        client.close()  # no close frame: the loop sees EOF and logs it
        server.wait_log(rf"^\[[^]]* \*{pid}\.{loop}\]\tDEBUG\tsession#{fd} is closed by client")
