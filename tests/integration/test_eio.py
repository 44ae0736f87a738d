# SPDX-License-Identifier: MIT
"""Engine.IO (rt/eio.h) through tests/integration/eio_echo.c, byte by byte, with the
differential cases run against Node's reference server too (tests/clients/eio_reference.js,
engine.io 6.6): both must answer the same bytes. Real clients: engine.io-client 6.6.8
(tests/clients/eio_client.js)."""

import base64
import json
import os
import queue
import re
import signal
import socket
import string
import subprocess
import threading
import time

import pytest

from eddyserver import ROOT, TIMEOUT, Server
from wsraw import RawClient

CLIENTS = os.path.join(ROOT, "tests", "clients")
SID_CHARS = set(string.ascii_letters + string.digits + "-_")


class NodeReference:
    """tests/clients/eio_reference.js on 127.0.0.1 with a free port; the same stdout lines
    as eio_echo ("open <sid>", "close <sid> <reason>")."""

    def __init__(self, args):
        self.proc = subprocess.Popen(["node", os.path.join(CLIENTS, "eio_reference.js"),
                                      "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.lines.get(timeout=TIMEOUT)
        self.port = int(re.match(r"listening (\d+)", first).group(1))
        self.host = "127.0.0.1"

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self, timeout=TIMEOUT):
        return self.lines.get(timeout=timeout)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(TIMEOUT)


class Eddy:
    def __init__(self, server):
        self.server = server
        self.port = server.port
        self.host = server.host

    def line(self, timeout=TIMEOUT):
        return self.server.line(timeout)


@pytest.fixture
def engine(start_server):
    """engine(*args, impl="eddy"|"reference") -> a running echo server."""
    refs = []

    def start(*args, impl="eddy", one_loop=False):
        # one_loop: the test orders requests made on different connections. wait_read()
        # proves the server read the first; with one loop it has also acted on it before it
        # reads the next, while with two the other loop may act on the later one first.
        if impl == "reference":
            ref = NodeReference(args)
            refs.append(ref)
            return ref
        if one_loop:
            args = (*args, "--set", "worker_num=1")
        return Eddy(start_server("eio_echo", *args))

    yield start
    for ref in refs:
        ref.stop()


BOTH = pytest.mark.parametrize("impl", ["eddy", "reference"])
FAST = ("--ping-interval", "300", "--ping-timeout", "200")


def ws_connect(srv, query="EIO=4&transport=websocket", expect_status=101):
    client = RawClient(srv.host, srv.port, TIMEOUT)
    status, headers, body = client.handshake(f"/socket.io/?{query}", expect_status=expect_status)
    if status != 101:
        return client, body
    return client, None


def recv_text(client):
    opcode, payload = client.recv_message()
    assert opcode == 0x1, f"expected a text frame, got opcode {opcode}: {payload!r}"
    return payload.decode()


def open_ws(srv, query="EIO=4&transport=websocket"):
    client, _ = ws_connect(srv, query)
    packet = recv_text(client)
    assert packet[0] == "0"
    return client, json.loads(packet[1:])


def expect_bare_close(srv, sid):
    """A WebSocket for sid is accepted and closed at once with a close frame without status."""
    second, _ = ws_connect(srv, f"EIO=4&transport=websocket&sid={sid}")
    assert second.recv_message() == (0x8, b"")
    second.send_frame(0x8)
    second.expect_eof()


def expect_closed(client):
    """Reads until the server's close frame (answering it) or EOF; returns the frames seen
    before (opcode, payload)."""
    seen = []
    try:
        while True:
            opcode, payload = client.recv_message()
            if opcode == 0x8:
                client.send_frame(0x8, payload[:2])
                return seen
            seen.append((opcode, payload))
    except (EOFError, ConnectionResetError):
        return seen


def wait_line(srv, pattern, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        line = srv.line(max(0.01, deadline - time.monotonic()))
        if re.fullmatch(pattern, line):
            return line


# ---- WebSocket, protocol 4 ----


@BOTH
def test_ws_open_packet(engine, impl):
    srv = engine(*FAST, impl=impl)
    client, opened = open_ws(srv)
    assert list(opened) == ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]
    assert opened["upgrades"] == []
    assert (opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]) == (
        300, 200, 1000000)
    assert len(opened["sid"]) == 20 and set(opened["sid"]) <= SID_CHARS
    assert srv.line() == f"open {opened['sid']}"
    client.close()


@BOTH
def test_ws_echo_text_and_binary(engine, impl):
    srv = engine(impl=impl)
    client, _ = open_ws(srv)
    client.send_frame(0x1, "4héllo".encode())
    assert recv_text(client) == "4héllo"
    client.send_frame(0x2, b"\x00\x01\xff")
    assert client.recv_message() == (0x2, b"\x00\x01\xff")
    # A base64 binary message is accepted on WebSocket too; it comes back as binary.
    client.send_frame(0x1, b"b" + base64.b64encode(b"\x01\x02\x03"))
    assert client.recv_message() == (0x2, b"\x01\x02\x03")
    # A close packet is ignored on WebSocket (section 9 of realtime-anchors.md).
    client.send_frame(0x1, b"1")
    client.send_frame(0x1, b"4still")
    assert recv_text(client) == "4still"
    client.close()


@BOTH
def test_ws_heartbeat_keeps_the_session(engine, impl):
    srv = engine(*FAST, impl=impl)
    client, opened = open_ws(srv)
    for _ in range(3):
        started = time.monotonic()
        assert recv_text(client) == "2"
        assert time.monotonic() - started >= 0.2  # about pingInterval after the last pong
        client.send_frame(0x1, b"3")
    client.send_frame(0x1, b"4alive")
    assert recv_text(client) == "4alive"
    client.close()


@BOTH
def test_ws_ping_timeout_closes(engine, impl):
    srv = engine(*FAST, impl=impl)
    client, opened = open_ws(srv)
    assert srv.line() == f"open {opened['sid']}"
    started = time.monotonic()
    seen = expect_closed(client)
    assert seen == [(0x1, b"2")]
    assert time.monotonic() - started >= 0.45  # pingInterval + pingTimeout
    assert wait_line(srv, r"close .*") == f"close {opened['sid']} ping timeout"


@BOTH
@pytest.mark.parametrize("packet,reason", [(b"2", "transport error"), (b"abc", "parse error"),
                                           (b"", "parse error"), (b"7", "parse error")])
def test_ws_bad_packets_close(engine, impl, packet, reason):
    srv = engine(impl=impl)
    client, opened = open_ws(srv)
    client.send_frame(0x1, packet)
    expect_closed(client)
    assert wait_line(srv, r"close .*") == f"close {opened['sid']} {reason}"


@BOTH
@pytest.mark.parametrize("query,message", [
    ("EIO=4&transport=foo", "Transport unknown"),
    ("EIO=4", "Transport unknown"),
    ("EIO=4&transport=websocket&sid=abcdefghijklmnopqrst", "Session ID unknown"),
])
def test_ws_refused_upgrades(engine, impl, query, message):
    srv = engine(impl=impl)
    client, body = ws_connect(srv, query, expect_status=400)
    assert body == message.encode()
    client.close()


@BOTH
def test_ws_second_websocket_with_the_same_sid_is_closed(engine, impl):
    """Accepted (101) and closed without a status: eddy at once, the reference (which takes
    it for an upgrade candidate of a session opened on WebSocket) when upgradeTimeout ends
    without a probe; test_upgrade_from_polling covers an upgraded session (both at once)."""
    srv = engine("--upgrade-timeout", "300", impl=impl)
    client, opened = open_ws(srv)
    expect_bare_close(srv, opened["sid"])
    client.send_frame(0x1, b"4first")
    assert recv_text(client) == "4first"
    client.close()


def test_ws_send_parts_as_one_unit(engine):
    srv = engine()
    client, _ = open_ws(srv)
    client.send_frame(0x1, b"4twice")
    assert recv_text(client) == "4twice"
    assert client.recv_message() == (0x2, b"\x01\x02")


def test_ws_server_close(engine):
    srv = engine()
    client, opened = open_ws(srv)
    client.send_frame(0x1, b"4before")
    client.send_frame(0x1, b"4close-me")
    assert expect_closed(client) == [(0x1, b"4before")]
    assert wait_line(srv, r"close .*") == f"close {opened['sid']} forced close"


@BOTH
def test_ws_max_payload(engine, impl):
    srv = engine("--max-payload", "100", impl=impl)
    client, opened = open_ws(srv)
    client.send_frame(0x1, b"4" + b"x" * 99)
    assert recv_text(client) == "4" + "x" * 99
    client.send_frame(0x1, b"4" + b"x" * 100)
    assert client.recv_message() == (0x8, b"\x03\xf1")  # 1009, no reason
    assert wait_line(srv, r"close .*") == f"close {opened['sid']} transport error"


def test_ws_open_refused_by_the_handler(engine):
    srv = engine()
    client, body = ws_connect(srv, "EIO=4&transport=websocket&refuse=1", expect_status=403)
    client.close()


def test_ws_transport_close(engine):
    srv = engine()
    client, opened = open_ws(srv)
    client.close()
    assert wait_line(srv, r"close .*") == f"close {opened['sid']} transport close"


# ---- real clients ----


def run_client(srv, *args):
    out = subprocess.run(["node", os.path.join(CLIENTS, "eio_client.js"), str(srv.port), *args],
                         capture_output=True, text=True, timeout=30)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0, f"client failed: {out.stdout}\n{out.stderr}"
    return events


def test_engine_io_client_websocket_only(engine):
    srv = engine()
    events = run_client(srv, "websocket", "6")
    assert events[0] == {"event": "open", "transport": "websocket"}
    messages = [e for e in events if e["event"] == "message"]
    assert [m["data"] for m in messages] == [
        "hello 0 \U0001F600", [1, 0, 255], "hello 2 \U0001F600", [3, 0, 255],
        "hello 4 \U0001F600", [5, 0, 255]]
    assert events[-1] == {"event": "close", "reason": "forced close"}
    sid = wait_line(srv, r"open .*").split()[1]
    assert wait_line(srv, r"close .*") == f"close {sid} transport close"


# ---- HTTP long-polling ----


def http_send(srv, method, query, body=b"", headers=None):
    """Sends one request on a new connection; returns the client (read the answer with
    client.read_http_response())."""
    client = RawClient(srv.host, srv.port, TIMEOUT)
    fields = {"Host": "127.0.0.1", "Content-Length": str(len(body))}
    fields.update(headers or {})
    head = f"{method} /socket.io/?{query} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    client.send(head.encode() + body)
    return client


def http(srv, method, query, body=b"", headers=None):
    client = http_send(srv, method, query, body, headers)
    try:
        return client.read_http_response()
    finally:
        client.close()


def poll_open(srv, eio=4):
    status, headers, body = http(srv, "GET", f"EIO={eio}&transport=polling")
    assert status == 200, body
    text = body.decode()
    if eio == 3:
        length, _, text = text.partition(":")
        assert int(length) == len(text)
    assert text[0] == "0"
    return json.loads(text[1:])["sid"], headers, json.loads(text[1:])


def poll(srv, sid, eio=4):
    return http(srv, "GET", f"EIO={eio}&transport=polling&sid={sid}")


def push(srv, sid, body, eio=4, headers=None):
    if isinstance(body, str):
        body = body.encode()
    return http(srv, "POST", f"EIO={eio}&transport=polling&sid={sid}", body, headers)


def error_body(code):
    messages = ["Transport unknown", "Session ID unknown", "Bad handshake method",
                "Bad request", "Forbidden"]
    return json.dumps({"code": code, "message": messages[code]}, separators=(",", ":")).encode()


@BOTH
def test_polling_handshake(engine, impl):
    srv = engine(*FAST, impl=impl)
    sid, headers, opened = poll_open(srv)
    assert list(opened) == ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]
    assert opened["upgrades"] == ["websocket"]
    assert headers["content-type"] == "text/plain; charset=UTF-8"
    assert headers["cache-control"] == "no-store"
    assert "access-control-allow-origin" not in headers  # no CORS unless configured
    sid3, _, opened3 = poll_open(srv, eio=3)
    assert opened3["upgrades"] == ["websocket"] and len(sid3) == 20


@BOTH
def test_polling_echo(engine, impl):
    srv = engine(impl=impl)
    sid, _, _ = poll_open(srv)
    status, headers, body = push(srv, sid, "4hello\x1e4wörld\x1ebAQID")
    assert (status, body, headers["content-type"]) == (200, b"ok", "text/html")
    status, headers, body = poll(srv, sid)
    assert (status, body) == (200, "4hello\x1e4wörld\x1ebAQID".encode())


@BOTH
def test_polling_get_waits_for_a_packet(engine, impl):
    srv = engine(impl=impl, one_loop=True)
    sid, _, _ = poll_open(srv)
    waiting = http_send(srv, "GET", f"EIO=4&transport=polling&sid={sid}")
    waiting.wait_read()
    assert push(srv, sid, "4later")[2] == b"ok"
    assert waiting.read_http_response()[2] == b"4later"


@BOTH
def test_polling_two_gets_at_once_close_the_session(engine, impl):
    srv = engine(impl=impl, one_loop=True)
    sid, _, _ = poll_open(srv)
    assert srv.line() == f"open {sid}"
    first = http_send(srv, "GET", f"EIO=4&transport=polling&sid={sid}")
    first.wait_read()
    status, headers, body = poll(srv, sid)
    assert (status, body, headers.get("content-type")) == (400, b"", None)
    assert first.read_http_response()[:3:2] == (200, b"1")
    assert poll(srv, sid)[::2] == (400, error_body(1))
    assert wait_line(srv, r"close .*") == f"close {sid} transport error"


@BOTH
@pytest.mark.parametrize("method,query,status,code", [
    ("GET", "EIO=4&transport=polling&sid=abcdefghijklmnopqrst", 400, 1),
    ("POST", "EIO=4&transport=polling&sid=abcdefghijklmnopqrst", 400, 1),
    ("GET", "EIO=4&transport=foo", 400, 0),
    ("GET", "EIO=4", 400, 0),
    ("POST", "EIO=4&transport=polling", 400, 2),
    ("PUT", "EIO=4&transport=polling", 400, 2),
    ("GET", "EIO=4&transport=websocket", 400, 3),
])
def test_polling_error_answers(engine, impl, method, query, status, code):
    srv = engine(impl=impl)
    got_status, headers, body = http(srv, method, query)
    assert (got_status, body) == (status, error_body(code))
    assert headers["content-type"] == "application/json"


@BOTH
def test_polling_session_errors(engine, impl):
    srv = engine(impl=impl)
    sid, _, _ = poll_open(srv)
    # Another protocol revision or transport with this sid is a bad request.
    assert poll(srv, sid, eio=3)[::2] == (400, error_body(3))
    assert http(srv, "GET", f"EIO=4&transport=websocket&sid={sid}")[::2] == (400, error_body(3))
    assert push(srv, sid, "4x")[2] == b"ok"


@BOTH
def test_polling_max_payload(engine, impl):
    srv = engine("--max-payload", "100", impl=impl)
    sid, _, _ = poll_open(srv)
    assert push(srv, sid, "4" + "x" * 99)[2] == b"ok"
    assert poll(srv, sid)[2] == ("4" + "x" * 99).encode()
    assert push(srv, sid, "4" + "x" * 100)[0] == 413
    assert wait_line(srv, r"close .*") == f"close {sid} transport error"
    assert poll(srv, sid)[::2] == (400, error_body(1))


@BOTH
@pytest.mark.parametrize("payload,reason", [
    ("1", "transport close"), ("4a\x1e1", "transport close"), ("x", "parse error"),
    ("", "parse error"), ("2", "transport error")])
def test_polling_packets_that_end_the_session(engine, impl, payload, reason):
    srv = engine(impl=impl)
    sid, _, _ = poll_open(srv)
    assert push(srv, sid, payload)[2] == b"ok"
    assert wait_line(srv, r"close .*") == f"close {sid} {reason}"
    assert poll(srv, sid)[::2] == (400, error_body(1))


def test_polling_binary_post_is_refused_in_v4(engine):
    srv = engine()
    sid, _, _ = poll_open(srv)
    status, _, _ = push(srv, sid, b"4x", headers={"Content-Type": "application/octet-stream"})
    assert status == 400
    assert wait_line(srv, r"close .*") == f"close {sid} transport error"


@BOTH
def test_polling_heartbeat(engine, impl):
    srv = engine(*FAST, impl=impl)
    sid, _, _ = poll_open(srv)
    for _ in range(3):
        assert poll(srv, sid)[2] == b"2"
        assert push(srv, sid, "3")[2] == b"ok"
    assert push(srv, sid, "4alive")[2] == b"ok"
    assert poll(srv, sid)[2] == b"4alive"


@BOTH
def test_polling_ping_timeout(engine, impl):
    srv = engine(*FAST, impl=impl)
    sid, _, _ = poll_open(srv)
    assert poll(srv, sid)[2] == b"2"
    assert wait_line(srv, r"close .*") == f"close {sid} ping timeout"
    assert push(srv, sid, "3")[::2] == (400, error_body(1))


def test_polling_server_close(engine):
    srv = engine()
    sid, _, _ = poll_open(srv)
    assert push(srv, sid, "4before\x1e4close-me")[2] == b"ok"
    assert poll(srv, sid)[2] == b"4before\x1e1"
    assert wait_line(srv, r"close .*") == f"close {sid} forced close"
    assert poll(srv, sid)[::2] == (400, error_body(1))


def test_polling_hang_up_on_a_waiting_get(engine):
    srv = engine()
    sid, _, _ = poll_open(srv)
    waiting = http_send(srv, "GET", f"EIO=4&transport=polling&sid={sid}")
    waiting.wait_read()
    waiting.close()
    assert wait_line(srv, r"close .*") == f"close {sid} transport error"


# ---- upgrade ----


@BOTH
def test_upgrade_from_polling(engine, impl):
    srv = engine(impl=impl, one_loop=True)
    sid, _, _ = poll_open(srv)
    waiting = http_send(srv, "GET", f"EIO=4&transport=polling&sid={sid}")
    waiting.wait_read()
    ws, _ = ws_connect(srv, f"EIO=4&transport=websocket&sid={sid}")
    ws.send_frame(0x1, b"2probe")
    assert recv_text(ws) == "3probe"
    assert waiting.read_http_response()[2] == b"6"  # the noop releases the waiting GET
    ws.send_frame(0x1, b"5")
    ws.send_frame(0x1, b"4upgraded")
    assert recv_text(ws) == "4upgraded"
    assert poll(srv, sid)[::2] == (400, error_body(3))
    assert push(srv, sid, "4x")[::2] == (400, error_body(3))
    # A second WebSocket for the upgraded session is closed at once.
    expect_bare_close(srv, sid)
    ws.send_frame(0x1, b"4still")
    assert recv_text(ws) == "4still"


def test_upgrade_queued_packets_move_to_the_websocket(engine):
    srv = engine()
    sid, _, _ = poll_open(srv)
    ws, _ = ws_connect(srv, f"EIO=4&transport=websocket&sid={sid}")
    ws.send_frame(0x1, b"2probe")
    assert recv_text(ws) == "3probe"
    # Sent while no GET waits: queued for polling, then delivered on the WebSocket.
    assert push(srv, sid, "4queued")[2] == b"ok"
    ws.send_frame(0x1, b"5")
    assert recv_text(ws) == "4queued"
    assert wait_line(srv, r"upgrade .*") == f"upgrade {sid}"


def test_upgrade_timeout_keeps_polling(engine):
    srv = engine("--upgrade-timeout", "200")
    sid, _, _ = poll_open(srv)
    ws, _ = ws_connect(srv, f"EIO=4&transport=websocket&sid={sid}")
    expect_closed(ws)  # no probe within upgradeTimeout
    assert push(srv, sid, "4polling")[2] == b"ok"
    assert poll(srv, sid)[2] == b"4polling"


@pytest.mark.parametrize("impl", ["eddy", "reference"])
def test_engine_io_client_default_transports(engine, impl):
    srv = engine(impl=impl)
    events = run_client(srv, "polling,websocket", "6")
    assert events[0] == {"event": "open", "transport": "polling"}
    assert {"event": "upgrade", "transport": "websocket"} in events
    messages = [e for e in events if e["event"] == "message"]
    assert [m["data"] for m in messages] == [
        "hello 0 \U0001F600", [1, 0, 255], "hello 2 \U0001F600", [3, 0, 255],
        "hello 4 \U0001F600", [5, 0, 255]]
    assert events[-1] == {"event": "close", "reason": "forced close"}


def test_engine_io_client_polling_only(engine):
    srv = engine()
    events = run_client(srv, "polling", "6")
    assert all(e.get("transport", "polling") == "polling" for e in events)
    assert len([e for e in events if e["event"] == "message"]) == 6


# ---- protocol 3 (socket.io-client 2.x, laravel-swoole's wire format) ----

V3_WS = "EIO=3&transport=websocket"


@BOTH
def test_v3_ws_open_and_client_pings(engine, impl):
    srv = engine(*FAST, impl=impl)
    client, opened = open_ws(srv, V3_WS)
    assert list(opened) == ["sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"]
    for _ in range(3):
        client.send_frame(0x1, b"2")
        assert recv_text(client) == "3"
        time.sleep(0.2)  # the server never pings in v3: only client pings keep it alive
    client.send_frame(0x1, b"2probe")  # on a direct WebSocket: a plain pong
    assert recv_text(client) == "3"
    client.send_frame(0x1, b"4hello")
    assert recv_text(client) == "4hello"
    client.close()


@BOTH
def test_v3_ws_binary_has_a_type_byte(engine, impl):
    srv = engine(impl=impl)
    client, _ = open_ws(srv, V3_WS)
    client.send_frame(0x2, b"\x04\x01\x02")
    assert client.recv_message() == (0x2, b"\x04\x01\x02")
    client.send_frame(0x1, b"b4" + base64.b64encode(b"\xff"))
    assert client.recv_message() == (0x2, b"\x04\xff")
    client.close()


@BOTH
def test_v3_ws_silence_times_out(engine, impl):
    srv = engine(*FAST, impl=impl)
    client, opened = open_ws(srv, V3_WS)
    started = time.monotonic()
    assert expect_closed(client) == []  # no server ping in v3
    assert time.monotonic() - started >= 0.45
    assert wait_line(srv, r"close .*") == f"close {opened['sid']} ping timeout"


@BOTH
def test_v3_ws_server_pong_is_an_error(engine, impl):
    srv = engine(impl=impl)
    client, opened = open_ws(srv, V3_WS)
    client.send_frame(0x1, b"3")
    expect_closed(client)
    assert wait_line(srv, r"close .*") == f"close {opened['sid']} transport error"


@BOTH
def test_v3_polling_text_payloads(engine, impl):
    srv = engine(impl=impl)
    sid, headers, _ = poll_open(srv, eio=3)
    assert headers["content-type"] == "text/plain; charset=UTF-8"
    # Lengths count UTF-16 code units: "4h\u00e9\U0001F600" is 1 + 2 + 2.
    body = "6:4hello5:4h\u00e9\U0001F6001:2"
    assert push(srv, sid, body, eio=3)[2] == b"ok"
    assert poll(srv, sid, eio=3)[2] == "6:4hello5:4h\u00e9\U0001F6001:3".encode()


@BOTH
def test_v3_polling_base64_binary(engine, impl):
    srv = engine(impl=impl)
    status, _, body = http(srv, "GET", "EIO=3&transport=polling&b64=1")
    sid = json.loads(body.decode().partition(":")[2][1:])["sid"]
    assert push(srv, sid, "6:4hello10:b4AQIDBA==", eio=3)[2] == b"ok"
    got = http(srv, "GET", f"EIO=3&transport=polling&b64=1&sid={sid}")[2]
    assert got == b"6:4hello10:b4AQIDBA=="


@BOTH
def test_v3_polling_binary_payloads(engine, impl):
    srv = engine(impl=impl)
    sid, _, _ = poll_open(srv, eio=3)
    # The binary form: 0 (text) or 1 (binary), the length as digit bytes, 0xff, the packet.
    payload = b"\x00\x06\xff4hello" + b"\x01\x03\xff\x04\x01\x02"
    assert push(srv, sid, payload, eio=3,
                headers={"Content-Type": "application/octet-stream"})[2] == b"ok"
    status, headers, body = poll(srv, sid, eio=3)
    assert headers["content-type"] == "application/octet-stream"
    assert body == payload


@BOTH
def test_v3_polling_duplicate_get_and_client_close(engine, impl):
    srv = engine(impl=impl, one_loop=True)
    sid, _, _ = poll_open(srv, eio=3)
    first = http_send(srv, "GET", f"EIO=3&transport=polling&sid={sid}")
    first.wait_read()
    assert poll(srv, sid, eio=3)[0] == 400
    assert first.read_http_response()[2] == b"1:1"
    sid, _, _ = poll_open(srv, eio=3)
    waiting = http_send(srv, "GET", f"EIO=3&transport=polling&sid={sid}")
    waiting.wait_read()
    assert push(srv, sid, "1:1", eio=3)[2] == b"ok"
    assert waiting.read_http_response()[2] == b"1:6"
    assert poll(srv, sid, eio=3)[0] == 400


@BOTH
def test_v3_upgrade(engine, impl):
    srv = engine(impl=impl, one_loop=True)
    sid, _, _ = poll_open(srv, eio=3)
    waiting = http_send(srv, "GET", f"EIO=3&transport=polling&sid={sid}")
    waiting.wait_read()
    ws, _ = ws_connect(srv, f"EIO=3&transport=websocket&sid={sid}")
    ws.send_frame(0x1, b"2probe")
    assert recv_text(ws) == "3probe"
    assert waiting.read_http_response()[2] == b"1:6"
    ws.send_frame(0x1, b"5")
    ws.send_frame(0x1, b"4hello")
    assert recv_text(ws) == "4hello"
    assert poll(srv, sid, eio=3)[0] == 400


@pytest.mark.parametrize("transports", ["websocket", "polling,websocket", "polling"])
def test_engine_io_client_v3(engine, transports):
    srv = engine()
    events = run_client(srv, transports, "6", "--v3")
    messages = [e for e in events if e["event"] == "message"]
    assert [m["data"] for m in messages] == [
        "hello 0 \U0001F600", [1, 0, 255], "hello 2 \U0001F600", [3, 0, 255],
        "hello 4 \U0001F600", [5, 0, 255]]
    if transports == "polling,websocket":
        assert {"event": "upgrade", "transport": "websocket"} in events


@BOTH
def test_upgrade_get_after_the_probe_gets_a_noop(engine, impl):
    # The client polls again after its probe was answered (or the probe overtook the GET):
    # the GET must not wait for pingInterval, or the upgrade stalls.
    srv = engine(impl=impl)
    sid, _, _ = poll_open(srv)
    ws, _ = ws_connect(srv, f"EIO=4&transport=websocket&sid={sid}")
    ws.send_frame(0x1, b"2probe")
    assert recv_text(ws) == "3probe"
    assert poll(srv, sid)[2] == b"6"
    ws.send_frame(0x1, b"5")
    ws.send_frame(0x1, b"4upgraded")
    assert recv_text(ws) == "4upgraded"


# ---- sends from other threads ----


def test_send_from_an_application_thread_websocket(engine):
    srv = engine()
    client, _ = open_ws(srv)
    client.send_frame(0x1, b"4burst 500")
    for i in range(500):
        assert recv_text(client) == f"4burst {i}"
    assert recv_text(client) == "4burst-done"


def test_send_from_an_application_thread_polling(engine):
    # Successive GETs arrive on new connections (so on either loop) while a thread sends:
    # every message comes once, in order.
    srv = engine()
    sid, _, _ = poll_open(srv)
    assert push(srv, sid, "4burst 500")[2] == b"ok"
    got = []
    deadline = time.monotonic() + TIMEOUT
    while "burst-done" not in got and time.monotonic() < deadline:
        status, _, body = poll(srv, sid)
        assert status == 200
        got += [p[1:] for p in body.decode().split("\x1e") if p[0] == "4"]
    assert got == [f"burst {i}" for i in range(500)] + ["burst-done"]


def test_upgraded_session_handlers_run_on_the_websocket_loop(engine):
    # The handshake's connection and the WebSocket land on different loops (accepted
    # connections go to the two loops in turn); the heartbeat set up on the first must move
    # to the second with the upgrade, so the close handler runs on the WebSocket's loop.
    srv = engine(*FAST, "--print-threads", "--set", "worker_num=2")
    sid, _, _ = poll_open(srv)
    ws, _ = ws_connect(srv, f"EIO=4&transport=websocket&sid={sid}")
    ws.send_frame(0x1, b"2probe")
    assert recv_text(ws) == "3probe"
    ws.send_frame(0x1, b"5")
    upgrade_thread = wait_line(srv, rf"thread {sid} upgrade \d+").split()[3]
    assert recv_text(ws) == "2"  # no pong: the session times out
    close_thread = wait_line(srv, rf"thread {sid} close \d+").split()[3]
    assert wait_line(srv, r"close .*") == f"close {sid} ping timeout"
    assert close_thread == upgrade_thread


def test_volatile_send(engine):
    srv = engine(one_loop=True)
    sid, _, _ = poll_open(srv)
    # No GET waits: the volatile message is dropped (EDDY_EDROPPED, -3013).
    assert push(srv, sid, "4volatile")[2] == b"ok"
    assert poll(srv, sid)[2] == b"4after -3013"
    # A GET waits: it is sent.
    waiting = http_send(srv, "GET", f"EIO=4&transport=polling&sid={sid}")
    waiting.wait_read()
    assert push(srv, sid, "4volatile")[2] == b"ok"
    assert waiting.read_http_response()[2] == b"4v\x1e4after 0"
    client, _ = open_ws(srv)
    client.send_frame(0x1, b"4volatile")
    assert recv_text(client) == "4v"
    assert recv_text(client) == "4after 0"


@BOTH
def test_ws_packet_while_a_pong_is_awaited_extends_the_wait_once(engine, impl):
    # engine.io socket.js: any packet but a pong, received while a pong is awaited, restarts
    # the pingTimeout wait once per ping.
    srv = engine("--ping-interval", "300", "--ping-timeout", "400", impl=impl)
    client, opened = open_ws(srv)
    assert recv_text(client) == "2"
    pinged = time.monotonic()
    time.sleep(0.25)
    client.send_frame(0x1, b"4x")  # the wait now ends 400 ms from here, not from the ping
    assert recv_text(client) == "4x"
    time.sleep(max(0.0, pinged + 0.55 - time.monotonic()))
    client.send_frame(0x1, b"3")  # 550 ms after the ping: late without the extension
    client.send_frame(0x1, b"4alive")
    assert recv_text(client) == "4alive"
    client.close()


def test_random_input_is_answered_not_crashed_on(engine):
    # Seeded garbage in every place a client controls (POST bodies of both revisions, text
    # and binary, WebSocket frames, queries); the server answers each and still serves.
    import random
    rng = random.Random(11)
    alphabet = b"0123456789b:\x1e\x00\x01\xff\x04\xc3\xa9=/+-_ abcXYZ"
    srv = engine("--max-payload", "2000")
    for i in range(150):
        eio = rng.choice([3, 4])
        body = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        sid, _, _ = poll_open(srv, eio=eio)
        headers = {"Content-Type": "application/octet-stream"} if rng.random() < 0.3 else None
        status, _, _ = push(srv, sid, body, eio=eio, headers=headers)
        assert status in (200, 400)
        # (A GET that names the live session would wait for a packet: only bad ones.)
        method = rng.choice(["GET", "POST"])
        suffix = rng.choice(["&sid=x", "&transport=websocket"] +
                            (["", "&b64=1", "&EIO=9"] if method == "POST" else []))
        status, _, _ = http(srv, method, f"EIO={eio}&transport=polling&sid={sid}" + suffix)
        assert status in (200, 400)
    for i in range(60):
        client, _ = open_ws(srv, rng.choice(["EIO=3&transport=websocket",
                                             "EIO=4&transport=websocket"]))
        for _ in range(5):
            payload = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
            opcode = 0x2 if rng.random() < 0.4 else 0x1
            if opcode == 0x1:
                payload = payload.decode("utf-8", "replace").encode()
            client.send_frame(opcode, payload)
        client.close()
    client, _ = open_ws(srv)
    client.send_frame(0x1, b"4still serving")
    assert recv_text(client) == "4still serving"
