# SPDX-License-Identifier: MIT
"""The upgrade callback (eddy_on_upgrade, eddy_upgrade_refuse) and the websocket_origins
setting, on the testbed (--upgrade: see tests/integration/testbed.c), with the python
websockets client and raw sockets."""

import asyncio

import pytest
import websockets

from testbed import connected, open_ws, start_testbed
from test_handshake import one, refused, upgrade_request

ORIGINS = "https://good.example, http://localhost:8080"


def expect_closed_without_open(server, fd):
    """The refused connection gets close (not open); the status it reports is the one
    before the handshake (1, upgrade requested)."""
    server.expect(f"close {fd} 1")


def test_accepted_upgrade_gets_101_open_and_user_data(start_server):
    server = start_testbed(start_server, "--upgrade")

    async def run():
        async with websockets.connect(server.url + "/room?x=1") as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"

    asyncio.run(run())
    fd = connected(server)
    # The callback runs before the 101; open follows it, with the user data it set.
    server.expect(f"upgrade {fd} -", f"open {fd} /room x=1", f"userdata {fd} from-upgrade")
    server.expect(f"message {fd} 1 33 5 hello")
    server.expect(f"close {fd} 3")


def test_refused_upgrade_gets_exact_status_headers_and_body(start_server):
    server = start_testbed(start_server, "--upgrade")
    request, _ = upgrade_request("/?refuse=401")
    status_line, headers, body = refused(server, request)
    assert status_line == "HTTP/1.1 401 Unauthorized"
    assert one(headers, "www-authenticate") == 'Bearer realm="testbed"'
    assert one(headers, "x-why") == "401"
    assert one(headers, "content-type") == "text/plain; charset=utf-8"
    assert one(headers, "connection") == "close"
    assert one(headers, "server") == "eddy"
    assert body == b"refused 401"
    assert not [n for n, _ in headers if n.startswith("sec-websocket")]
    fd = connected(server)
    server.expect(f"upgrade {fd} -")
    expect_closed_without_open(server, fd)


@pytest.mark.parametrize("status,reason", [(403, "Forbidden"), (429, "Too Many Requests"),
                                           (404, "Not Found")])
def test_refused_upgrade_any_4xx(start_server, status, reason):
    server = start_testbed(start_server, "--upgrade")
    request, _ = upgrade_request(f"/?refuse={status}")
    status_line, headers, body = refused(server, request)
    assert status_line == f"HTTP/1.1 {status} {reason}"
    assert body == f"refused {status}".encode()


def test_refused_upgrade_seen_by_python_websockets(start_server):
    server = start_testbed(start_server, "--upgrade")

    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(server.url + "/?refuse=403"):
                pass
        assert info.value.status_code == 403

    asyncio.run(run())
    fd = connected(server)
    server.expect(f"upgrade {fd} -")
    expect_closed_without_open(server, fd)


@pytest.mark.parametrize("returned,status", [(429, 429), (1, 403), (500, 403), (-1, 403)])
def test_returned_value_refuses(start_server, returned, status):
    """A bare return value refuses: a 4xx as it is, anything else as 403."""
    server = start_testbed(start_server, "--upgrade")
    request, _ = upgrade_request(f"/?deny={returned}")
    status_line, headers, body = refused(server, request)
    assert status_line.startswith(f"HTTP/1.1 {status} ")
    assert body == b"WebSocket upgrade refused\n"
    assert one(headers, "content-type") == "text/plain; charset=utf-8"


def test_invalid_refusal_still_refuses(start_server):
    """eddy_upgrade_refuse() with an invalid header returns EDDY_EINVAL; returning that
    refuses with 403 (a mistake never accepts) and the log says why."""
    server = start_testbed(start_server, "--upgrade")
    request, _ = upgrade_request("/?badheader=1")
    status_line, headers, body = refused(server, request)
    assert status_line == "HTTP/1.1 403 Forbidden"
    server.wait_log(r"eddy_upgrade_refuse\(401\): .*refusing with 403")


def test_callback_may_close_the_connection(start_server):
    server = start_testbed(start_server, "--upgrade")
    client = server.connect_raw()
    client.send(upgrade_request("/?close=1")[0])
    client.expect_eof()
    fd = connected(server)
    server.expect(f"upgrade {fd} -")
    expect_closed_without_open(server, fd)


def test_invalid_upgrade_is_refused_before_the_callback(start_server):
    """eddy's own checks come first: the callback only sees valid upgrades."""
    server = start_testbed(start_server, "--upgrade")
    request, _ = upgrade_request("/", fields={"Sec-WebSocket-Key": None})
    status_line, _, _ = refused(server, request)
    assert status_line == "HTTP/1.1 400 Bad Request"
    fd = connected(server)
    expect_closed_without_open(server, fd)


def test_refusal_skips_the_handshake_callback(start_server):
    server = start_testbed(start_server, "--upgrade", "--handshake")
    request, _ = upgrade_request("/?refuse=403")
    status_line, _, body = refused(server, request)
    assert (status_line, body) == ("HTTP/1.1 403 Forbidden", b"refused 403")
    fd = connected(server)
    server.expect(f"upgrade {fd} -")
    expect_closed_without_open(server, fd)
    # Accepted, the handshake callback answers.
    client = server.connect_raw()
    client.handshake("/")
    fd = connected(server)
    server.expect(f"upgrade {fd} -", f"handshake {fd}")
    client.close_handshake()


# ---- websocket_origins ----


@pytest.mark.parametrize("origin", ["https://good.example", "HTTPS://Good.Example",
                                    "http://localhost:8080"])
def test_listed_origin_is_accepted(start_server, origin):
    server = start_testbed(start_server, "--upgrade", settings={"websocket_origins": ORIGINS})

    async def run():
        async with websockets.connect(server.url, origin=origin) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"

    asyncio.run(run())
    fd = connected(server)
    server.expect(f"upgrade {fd} {origin}", f"open {fd} / -")


@pytest.mark.parametrize("origin", ["https://evil.example", "https://good.example.evil",
                                    "https://good.example:443", "http://localhost", "null",
                                    ""])
def test_unlisted_origin_gets_403_without_the_callback(start_server, origin):
    server = start_testbed(start_server, "--upgrade", settings={"websocket_origins": ORIGINS})
    request, _ = upgrade_request("/", fields={"Origin": origin})
    status_line, headers, body = refused(server, request)
    assert status_line == "HTTP/1.1 403 Forbidden"
    assert b"Origin not allowed" in body
    fd = connected(server)
    expect_closed_without_open(server, fd)  # no "upgrade" line: the callback never ran


def test_unlisted_origin_seen_by_python_websockets(start_server):
    server = start_testbed(start_server, settings={"websocket_origins": ORIGINS})

    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as info:
            async with websockets.connect(server.url, origin="https://evil.example"):
                pass
        assert info.value.status_code == 403

    asyncio.run(run())


def test_missing_origin_is_accepted(start_server):
    server = start_testbed(start_server, settings={"websocket_origins": ORIGINS})
    client, _ = open_ws(server)
    client.close_handshake()


def test_several_origins_are_refused(start_server):
    server = start_testbed(start_server, settings={"websocket_origins": ORIGINS})
    request, _ = upgrade_request(
        "/", fields={"Origin": ["https://good.example", "https://evil.example"]})
    status_line, _, _ = refused(server, request)
    assert status_line == "HTTP/1.1 403 Forbidden"


@pytest.mark.parametrize("setting", [None, "", " , "])
def test_no_origin_list_allows_every_origin(start_server, setting):
    settings = {} if setting is None else {"websocket_origins": setting}
    server = start_testbed(start_server, settings=settings)
    client, _ = open_ws(server, headers={"Origin": "https://anywhere.example"})
    client.close_handshake()
