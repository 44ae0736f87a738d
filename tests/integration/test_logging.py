# SPDX-License-Identifier: MIT
"""Logging: connection lifecycle lines at debug (a refused handshake with its status and
reason), frames at trace, the filtering of both by log_level (names and Swoole's numbers),
and the access log (http_access_log): its line format, parsed, for plain requests,
upgrades, refusals and dropped responses."""

import datetime
import os
import re
import subprocess
import time

import pytest

from eddyserver import BUILD, TIMEOUT
from testbed import start_testbed

ACCESS_LINE = re.compile(
    r'^(?P<addr>\S+) - - \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
    r'"(?P<request>[^"]*)" (?P<status>\d+) (?P<bytes>\d+) (?P<seconds>\d+\.\d{6})$')


def refused_upgrade(server, headers):
    """Sends an upgrade request with the given header lines; returns the status."""
    request = ("GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
               "".join(f"{h}\r\n" for h in headers) + "\r\n").encode()
    reply = server.http(request)
    return int(reply.split(b" ", 2)[1])


def websocket_session(server, path="/chat"):
    """A WebSocket that sends a text message, a ping, and closes with 1000 "bye"."""
    client = server.connect_raw()
    client.handshake(path)
    client.send_frame(0x1, b"hi")
    assert client.recv_message() == (0x1, b"hi")
    client.send_frame(0x9, b"ping")
    assert client.recv_message() == (0xA, b"ping")
    client.close_handshake(1000, b"bye")


def test_lifecycle_lines_at_debug(start_server):
    server = start_server("echo", settings={"log_level": "debug", "worker_num": "1"})
    websocket_session(server)
    accepted = server.wait_log(r"\tDEBUG\tsession#(\d+) \(127\.0\.0\.1:\d+\): accepted on port "
                               r"(\d+)$")
    assert int(accepted.group(2)) == server.port
    fd = accepted.group(1)
    server.wait_log(rf"\tDEBUG\tsession#{fd}: WebSocket open on /chat$")
    server.wait_log(rf'\tDEBUG\tsession#{fd}: close frame received: 1000 "bye"$')
    server.wait_log(rf'\tDEBUG\tsession#{fd}: close frame sent: 1000 "bye"$')
    server.wait_log(rf"\tDEBUG\tsession#{fd}: WebSocket connection closed$")

    # Refused handshakes: the status sent and the reason.
    assert refused_upgrade(server, ["Sec-WebSocket-Version: 13"]) == 400
    server.wait_log(r"\tDEBUG\tsession#\d+ \(127\.0\.0\.1:\d+\): WebSocket handshake refused "
                    r"with 400: missing Sec-WebSocket-Key$")
    assert refused_upgrade(server, ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                    "Sec-WebSocket-Version: 8"]) == 426
    server.wait_log(r"\tDEBUG\tsession#\d+ \(127\.0\.0\.1:\d+\): WebSocket handshake refused "
                    r"with 426: unsupported Sec-WebSocket-Version")
    server.wait_log(r"\tDEBUG\tsession#\d+: HTTP connection closed$")


# (log_level, lifecycle lines expected, frame lines expected): names and Swoole's numbers
# (0 is SWOOLE_LOG_DEBUG, 1 SWOOLE_LOG_TRACE, 2 SWOOLE_LOG_INFO).
LEVELS = [("trace", True, True), ("1", True, True), ("debug", True, False),
          ("0", True, False), ("info", False, False), ("2", False, False)]


@pytest.mark.parametrize("level,debug,trace", LEVELS)
def test_debug_and_trace_filtering(start_server, level, debug, trace):
    server = start_server("echo", settings={"log_level": level, "worker_num": "1"})
    websocket_session(server)
    assert refused_upgrade(server, ["Sec-WebSocket-Version: 13"]) == 400
    server.stop()  # the log is complete
    log = "\n".join(server.log_lines)
    assert ("\tDEBUG\t" in log) == debug, log
    assert ("accepted on port" in log) == debug
    assert ("WebSocket handshake refused with 400" in log) == debug
    assert ("\tTRACE\t" in log) == trace, log
    if trace:
        assert re.search(r"\tTRACE\tsession#\d+: frame received: text fin, 2 bytes$", log, re.M)
        assert re.search(r"\tTRACE\tsession#\d+: frame received: ping fin, 4 bytes$", log, re.M)
        assert re.search(r"\tTRACE\tsession#\d+: frame queued: pong fin, 4 bytes$", log, re.M)
        assert re.search(r"\tTRACE\tsession#\d+: frame received: close fin, 5 bytes$", log, re.M)
    # The access log is off by default.
    assert not any(ACCESS_LINE.match(line) for line in server.log_lines)


def parse_access_log(lines):
    entries = []
    for line in lines:
        match = ACCESS_LINE.match(line)
        assert match, f"not an access log line: {line!r}"
        entry = match.groupdict()
        when = datetime.datetime.strptime(entry["time"], "%d/%b/%Y:%H:%M:%S %z")
        assert abs(time.time() - when.timestamp()) < 120, entry
        assert entry["addr"] == "127.0.0.1"
        entries.append((entry["request"], int(entry["status"]), int(entry["bytes"]),
                        float(entry["seconds"])))
    return entries


def test_access_log_file(start_server, tmp_path):
    path = tmp_path / "access.log"
    server = start_testbed(start_server, "--request",
                           settings={"http_access_log": str(path)})
    close = b"Connection: close\r\n\r\n"
    assert server.http(b"GET /status?code=404 HTTP/1.1\r\nHost: x\r\n" + close).startswith(
        b"HTTP/1.1 404 ")
    assert server.http(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + close).endswith(b"ok /hello")
    server.http(b"HEAD /hello HTTP/1.0\r\nHost: x\r\n\r\n")
    assert server.http(b"GET /chunked HTTP/1.1\r\nHost: x\r\n" + close).startswith(b"HTTP/1.1 200")
    assert server.http(b"GET /detach?ms=100 HTTP/1.1\r\nHost: x\r\n" + close).endswith(b"late")
    assert server.http(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    # A quote and raw UTF-8 in the target: escaped, so the line stays parseable.
    assert server.http(b'GET /a"b\xc3\xa9 HTTP/1.1\r\nHost: x\r\n' + close).startswith(
        b"HTTP/1.1 200 ")
    assert refused_upgrade(server, ["Sec-WebSocket-Version: 13"]) == 400
    assert server.http(b"NOT HTTP\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    client = server.connect_raw()
    client.handshake("/ws?room=1")
    client.close_handshake()
    server.stop()  # the lines are written by the next loop iteration, and at the stop

    entries = parse_access_log(path.read_text().splitlines())
    by_request = {}
    for request, status, size, seconds in entries:
        by_request.setdefault(request, []).append((status, size, seconds))
    assert by_request["GET /status?code=404 HTTP/1.1"] == [(404, 0, pytest.approx(0, abs=0.1))]
    assert by_request["GET /hello HTTP/1.1"][0][:2] == (200, 9)
    assert by_request["HEAD /hello HTTP/1.0"][0][:2] == (200, 0)  # no body on the wire
    assert by_request["GET /chunked HTTP/1.1"][0][:2] == (200, 13)
    status, size, seconds = by_request["GET /detach?ms=100 HTTP/1.1"][0]
    assert (status, size) == (200, 4) and 0.09 <= seconds < TIMEOUT
    assert by_request["GET /close HTTP/1.1"][0][:2] == (0, 0)  # dropped without an answer
    assert by_request["GET /a\\x22b\\xc3\\xa9 HTTP/1.1"][0][:2] == (200, 9)
    refused = by_request["GET /chat HTTP/1.1"][0]
    assert refused[0] == 400 and refused[1] > 0
    assert by_request["-"][0][:1] == (400,)  # could not be parsed
    assert by_request["GET /ws?room=1 HTTP/1.1"][0][:2] == (101, 0)
    assert len(entries) == 10, entries


def test_access_log_handshake_callback(start_server, tmp_path):
    """Upgrades answered by the application's handshake callback: 101, or its refusal."""
    path = tmp_path / "access.log"
    server = start_testbed(start_server, "--handshake", settings={"http_access_log": str(path)})
    client = server.connect_raw()
    client.handshake("/custom")
    client.close_handshake()
    assert refused_upgrade(server, ["Sec-WebSocket-Version: 13"]) == 403  # no key: "bad key"
    server.stop()
    entries = parse_access_log(path.read_text().splitlines())
    assert [e[:3] for e in entries] == [("GET /custom HTTP/1.1", 101, 0),
                                        ("GET /chat HTTP/1.1", 403, 7)]


@pytest.mark.parametrize("destination", ["stderr", "-"])
def test_access_log_stderr(start_server, destination):
    server = start_server("echo", settings={"http_access_log": destination, "worker_num": "2"})
    client = server.connect_raw()
    client.handshake("/x")
    client.close_handshake()
    line = server.wait_log(r'^127\.0\.0\.1 - - \[.*\] "GET /x HTTP/1\.1" 101 0 \d+\.\d{6}$')
    assert ACCESS_LINE.match(line.string)


def test_access_log_unwritable_path_refuses_start(tmp_path):
    path = tmp_path / "missing-dir" / "access.log"
    result = subprocess.run([os.path.join(BUILD, "examples", "echo"), "--host", "127.0.0.1",
                             "--port", "0", "--set", f"http_access_log={path}"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0
    assert f"cannot open http_access_log {path}" in result.stderr
    assert "listening" not in result.stderr
