# SPDX-License-Identifier: MIT
"""The WebSocket opening handshake: the built-in one (echo example) with every refusal
and subprotocol negotiation, and the application's own (testbed --handshake)."""

import asyncio
import base64
import os
import re
import socket

import pytest
import websockets

from eddyserver import TIMEOUT, assert_echo_serves
from testbed import start_testbed
from wsraw import accept_for, frame

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
DATE_RE = re.compile(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")


def new_key(n=16):
    return base64.b64encode(os.urandom(n)).decode()


def upgrade_request(path="/", version="HTTP/1.1", method="GET", fields=None):
    """An upgrade request; `fields` adds, replaces (same name) or, with None, drops
    headers; a list value repeats the header."""
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": new_key(),
        "Sec-WebSocket-Version": "13",
    }
    for name, value in (fields or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    lines = [f"{method} {path} {version}"]
    for name, value in headers.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{name}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), headers


def read_head(client):
    """Reads one response head from a RawClient: (status line, [(lower name, value)])."""
    while b"\r\n\r\n" not in client.buf:
        client._fill()
    head, client.buf = client.buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.lower(), value.strip()))
    return lines[0], headers


def header_values(headers, name):
    return [v for n, v in headers if n == name]


def one(headers, name):
    values = header_values(headers, name)
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


def refused(server, request):
    """Sends a refused upgrade; returns (status line, headers, body) after asserting the
    close that follows."""
    client = server.connect_raw()
    client.send(request)
    status_line, headers = read_head(client)
    body = client._take(int(one(headers, "content-length")))
    client.expect_eof()
    client.close()
    return status_line, headers, body


# ---- success ----


def test_builtin_handshake_response(start_server):
    server = start_server("echo")
    client = server.connect_raw()
    request, _ = upgrade_request(fields={"Sec-WebSocket-Key": RFC_KEY})
    client.send(request)
    status_line, headers = read_head(client)
    assert status_line == "HTTP/1.1 101 Switching Protocols"
    assert one(headers, "upgrade").lower() == "websocket"
    assert one(headers, "connection").lower() == "upgrade"
    assert one(headers, "sec-websocket-accept") == RFC_ACCEPT
    assert one(headers, "sec-websocket-version") == "13"
    assert one(headers, "server") == "eddy"
    assert DATE_RE.match(one(headers, "date"))
    names = {n for n, _ in headers}
    assert not names & {"content-length", "transfer-encoding", "sec-websocket-protocol",
                        "sec-websocket-extensions"}, headers
    assert client.buf == b""
    client.send_frame(0x1, b"after handshake")
    assert client.recv_message() == (0x1, b"after handshake")
    client.close_handshake()


@pytest.mark.parametrize("fields", [
    {"Upgrade": "WebSocket", "Connection": "upgrade"},
    {"Upgrade": "WEBSOCKET", "Connection": "UPGRADE"},
    {"Connection": "keep-alive, Upgrade"},
    {"Connection": "Upgrade,keep-alive"},
    {"Upgrade": "h2c, websocket"},
    {"Connection": ["keep-alive", "Upgrade"]},
    {"Upgrade": None, "upgrade": "websocket", "Sec-WebSocket-Key": None,
     "sec-websocket-key": RFC_KEY, "Sec-WebSocket-Version": None, "SEC-WEBSOCKET-VERSION": "13"},
], ids=["mixed case", "upper case", "connection list", "connection list no space",
        "upgrade list", "two connection fields", "lower-case names"])
def test_handshake_tokens_case_insensitive_and_in_lists(start_server, fields):
    server = start_server("echo")
    client = server.connect_raw()
    request, headers = upgrade_request(fields=fields)
    key = headers.get("Sec-WebSocket-Key") or headers.get("sec-websocket-key")
    client.send(request)
    status_line, resp_headers = read_head(client)
    assert status_line.startswith("HTTP/1.1 101 ")
    assert one(resp_headers, "sec-websocket-accept") == accept_for(key)
    client.send_frame(0x1, b"x")
    assert client.recv_message() == (0x1, b"x")
    client.close_handshake()


def test_handshake_with_query_and_extra_headers(start_server):
    server = start_server("echo")
    client = server.connect_raw()
    client.handshake("/chat/room?x=1&y=2", headers={"Origin": "http://example.com",
                                                     "Sec-WebSocket-Extensions": "x-unknown",
                                                     "User-Agent": "test"})
    client.send_frame(0x2, b"\x00\xff")
    assert client.recv_message() == (0x2, b"\x00\xff")


def test_frames_in_same_packet_as_upgrade_are_processed(start_server):
    server = start_server("echo")
    client = server.connect_raw()
    request, headers = upgrade_request()
    client.send(request + frame(0x1, b"early") + frame(0x2, b"\x01\x02") +
                frame(0x9, b"ping!"))
    status_line, resp_headers = read_head(client)
    assert status_line.startswith("HTTP/1.1 101 ")
    assert one(resp_headers, "sec-websocket-accept") == accept_for(headers["Sec-WebSocket-Key"])
    assert client.recv_message() == (0x1, b"early")
    assert client.recv_message() == (0x2, b"\x01\x02")
    assert client.recv_message() == (0xA, b"ping!")
    client.close_handshake()


def test_upgrade_request_one_byte_at_a_time(start_server):
    server = start_server("echo")
    client = server.connect_raw()
    request, headers = upgrade_request()
    for b in request + frame(0x1, b"slow"):
        client.send(bytes([b]))
    status_line, _ = read_head(client)
    assert status_line.startswith("HTTP/1.1 101 ")
    assert client.recv_message() == (0x1, b"slow")


def test_python_websockets_client_connects(start_server):
    server = start_server("echo", settings={"websocket_subprotocol": "chat"})

    async def run():
        async with websockets.connect(server.url + "/path?q=1", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("über")
            assert await ws.recv() == "über"
            await ws.send(b"\x00" * 70000)
            assert await ws.recv() == b"\x00" * 70000
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, TIMEOUT)
        assert ws.close_code == 1000

    asyncio.run(run())


# ---- refusals ----

FAILURES = {
    "POST": (dict(method="POST", fields={"Content-Length": "0"}), 400),
    "HEAD": (dict(method="HEAD"), 400),
    "HTTP/1.0": (dict(version="HTTP/1.0"), 400),
    "missing key": (dict(fields={"Sec-WebSocket-Key": None}), 400),
    "empty key": (dict(fields={"Sec-WebSocket-Key": ""}), 400),
    "key not base64": (dict(fields={"Sec-WebSocket-Key": "not base64 at all!!!!!=="}), 400),
    "duplicate key": (dict(fields={"Sec-WebSocket-Key": [new_key(), new_key()]}), 400),
    "key of 15 bytes": (dict(fields={"Sec-WebSocket-Key": new_key(15)}), 400),
    "key of 17 bytes": (dict(fields={"Sec-WebSocket-Key": new_key(17)}), 400),
    "key of 16 bytes unpadded": (dict(fields={"Sec-WebSocket-Key": RFC_KEY.rstrip("=")}), 400),
    "no Connection upgrade": (dict(fields={"Connection": "keep-alive"}), 400),
    "no Connection header": (dict(fields={"Connection": None}), 400),
    "version 8": (dict(fields={"Sec-WebSocket-Version": "8"}), 426),
    "version 14": (dict(fields={"Sec-WebSocket-Version": "14"}), 426),
    "missing version": (dict(fields={"Sec-WebSocket-Version": None}), 426),
    "two versions": (dict(fields={"Sec-WebSocket-Version": ["13", "8"]}), 426),
}


@pytest.mark.parametrize("kwargs,status", list(FAILURES.values()), ids=list(FAILURES))
def test_builtin_handshake_refusals(start_server, kwargs, status):
    server = start_server("echo")
    request, _ = upgrade_request(**kwargs)
    status_line, headers, body = refused(server, request)
    reason = {400: "Bad Request", 426: "Upgrade Required"}[status]
    assert status_line == f"HTTP/1.1 {status} {reason}"
    assert one(headers, "connection").lower() == "close"
    assert one(headers, "content-type").startswith("text/plain")
    assert not header_values(headers, "sec-websocket-accept")
    assert not header_values(headers, "upgrade")
    assert body.startswith(b"WebSocket handshake failed: ") and body.endswith(b"\n"), body
    assert len(body) < 200
    if status == 426:
        assert header_values(headers, "sec-websocket-version") == ["13"]
    else:
        assert not header_values(headers, "sec-websocket-version")
    assert_echo_serves(server)


def test_refused_handshake_frames_after_it_are_ignored(start_server):
    server = start_server("echo")
    request, _ = upgrade_request(fields={"Sec-WebSocket-Version": "8"})
    client = server.connect_raw()
    client.send(request + frame(0x1, b"must not echo"))
    status_line, headers = read_head(client)
    assert status_line.startswith("HTTP/1.1 426 ")
    client._take(int(one(headers, "content-length")))
    client.expect_eof()
    assert_echo_serves(server)


# ---- subprotocols ----


@pytest.mark.parametrize("ours,offered,answer", [
    ("chat", "chat", "chat"),
    ("chat", None, None),
    ("chat", "superchat, chat", "chat"),
    ("chat", "superchat", None),
    ("chat", "CHAT", None),  # subprotocol names are case-sensitive (RFC 6455 11.3.4)
    ("chat", "chatty", None),
    ("a,b", "b, a", "a"),
    ("a,b", "b", "b"),
    ("a, b", "b", "b"),
    ("a,b", "c", None),
], ids=["offered", "not offered", "offered in list", "other only", "other case", "prefix",
        "server preference", "second of ours", "ours with spaces", "none common"])
def test_subprotocol_negotiation(start_server, ours, offered, answer):
    server = start_server("echo", settings={"websocket_subprotocol": ours})
    fields = {"Sec-WebSocket-Protocol": offered} if offered is not None else {}
    request, headers = upgrade_request(fields=fields)
    client = server.connect_raw()
    client.send(request)
    status_line, resp_headers = read_head(client)
    client.send_frame(0x1, b"ok")
    echoed = client.recv_message()
    client.close()
    assert status_line.startswith("HTTP/1.1 101 ")
    assert header_values(resp_headers, "sec-websocket-protocol") == ([answer] if answer else [])
    assert echoed == (0x1, b"ok")


def test_long_subprotocol_name_is_answered(start_server):
    """Names of 128 bytes and more used to be skipped silently (a 128-byte copy buffer)."""
    long_name = "p" * 300
    server = start_server("echo", settings={"websocket_subprotocol": f"{'q' * 200},{long_name}"})
    request, _ = upgrade_request(fields={"Sec-WebSocket-Protocol": f"x, {long_name}"})
    client = server.connect_raw()
    client.send(request)
    status_line, resp_headers = read_head(client)
    client.close()
    assert status_line.startswith("HTTP/1.1 101 ")
    assert header_values(resp_headers, "sec-websocket-protocol") == [long_name]


def test_subprotocol_offered_in_two_fields(start_server):
    server = start_server("echo", settings={"websocket_subprotocol": "chat"})
    request, _ = upgrade_request(fields={"Sec-WebSocket-Protocol": ["superchat", "chat"]})
    client = server.connect_raw()
    client.send(request)
    status_line, resp_headers = read_head(client)
    assert header_values(resp_headers, "sec-websocket-protocol") == ["chat"]


def test_no_subprotocol_setting_answers_none(start_server):
    server = start_server("echo")
    request, _ = upgrade_request(fields={"Sec-WebSocket-Protocol": "chat"})
    client = server.connect_raw()
    client.send(request)
    _, resp_headers = read_head(client)
    assert header_values(resp_headers, "sec-websocket-protocol") == []


# ---- the application's handshake (testbed --handshake) ----


def test_custom_handshake_101_has_the_applications_headers(start_server):
    # The testbed sets Upgrade, Connection and Sec-WebSocket-Accept; all of them must be
    # sent (RFC 6455 4.2.2: a 101 without "Connection: Upgrade" is refused by clients).
    server = start_testbed(start_server, "--handshake")
    client = server.connect_raw()
    request, headers = upgrade_request(fields={"Sec-WebSocket-Key": RFC_KEY})
    client.send(request)
    status_line, resp_headers = read_head(client)
    client.close()  # before asserting, so a failure does not hold up the server's stop
    assert status_line == "HTTP/1.1 101 Switching Protocols"
    assert one(resp_headers, "sec-websocket-accept") == RFC_ACCEPT
    assert one(resp_headers, "upgrade") == "websocket"
    assert not header_values(resp_headers, "content-length")
    assert not header_values(resp_headers, "transfer-encoding")
    assert one(resp_headers, "connection") == "Upgrade"


def test_custom_handshake_establishes_without_open(start_server):
    server = start_testbed(start_server, "--handshake")
    client = server.connect_raw()
    client.handshake("/custom?x=1")
    server.expect("connect 1", "handshake 1")
    client.send_frame(0x1, b"!established 1")
    server.expect("= true")  # no "open" line before it
    client.send_frame(0x1, b"hello")
    server.expect("message 1 1 33 5 hello")
    assert client.recv_message() == (0x1, b"hello")
    client.close_handshake()
    server.expect("close 1 3")


@pytest.mark.parametrize("flag,event", [((), "close"), (("--disconnect",), "disconnect")])
@pytest.mark.parametrize("key", [None, "short"], ids=["no key", "bad key"])
def test_custom_handshake_refusal(start_server, flag, event, key):
    server = start_testbed(start_server, "--handshake", *flag)
    request, _ = upgrade_request(fields={"Sec-WebSocket-Key": key})
    client = server.connect_raw()
    client.send(request + frame(0x1, b"ignored"))
    status_line, headers = read_head(client)
    assert status_line == "HTTP/1.1 403 Forbidden"
    assert one(headers, "connection").lower() == "close"
    assert client._take(int(one(headers, "content-length"))) == b"bad key"
    client.expect_eof()
    server.expect("connect 1", "handshake 1", f"{event} 1 1")
    # The next client is served normally.
    good = server.connect_raw()
    good.handshake()
    server.expect("connect 2", "handshake 2")
    good.send_frame(0x1, b"fine")
    assert good.recv_message() == (0x1, b"fine")
    server.expect("message 2 1 33 4 fine")
    good.close_handshake()
    server.expect("close 2 3")


def test_custom_handshake_is_not_used_for_plain_requests(start_server):
    server = start_testbed(start_server, "--handshake", "--request")
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nok /plain")
    server.expect("connect 1", "request 1 GET /plain body=0", "close 1 0")


def test_upgrade_after_plain_request_on_same_connection(start_server):
    server = start_testbed(start_server, "--request")
    client = server.connect_raw()
    client.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = client.read_http_response()
    assert (status, body) == (200, b"ok /first")
    server.expect("connect 1", "request 1 GET /first body=0")
    client.handshake("/ws")
    server.expect("open 1 /ws -")
    client.send_frame(0x1, b"!established 1")
    server.expect("= true")
    client.close_handshake()
    server.expect("close 1 3")


def test_pipelined_upgrade_behind_plain_request(start_server):
    server = start_testbed(start_server, "--request")
    client = server.connect_raw()
    request, headers = upgrade_request("/ws")
    client.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + request + frame(0x1, b"early"))
    status, _, body = client.read_http_response()
    assert (status, body) == (200, b"ok /first")
    status_line, resp_headers = read_head(client)
    assert status_line.startswith("HTTP/1.1 101 ")
    assert one(resp_headers, "sec-websocket-accept") == accept_for(headers["Sec-WebSocket-Key"])
    assert client.recv_message() == (0x1, b"early")
    server.expect("connect 1", "request 1 GET /first body=0", "open 1 /ws -",
                  "message 1 1 33 5 early")
