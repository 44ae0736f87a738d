"""Logging: connection lifecycle lines at debug (a refused handshake with its status and
reason), frames at trace, and the filtering of both by log_level (names and Swoole's
numbers)."""

import re

import pytest


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
    server.wait_log(rf'\tDEBUG\tsession#{fd}: close frame sent: 1000 ""$')
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

