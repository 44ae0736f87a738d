# SPDX-License-Identifier: MIT
"""The closing handshake beyond the echo example: server-initiated eddy_disconnect() with
and without the client's answer, what the close callback reports, close frames delivered
with open_websocket_close_frame, and a real client's close codes. The client-initiated
handshake against the echo example (Autobahn section 7) is in
tests/conformance/test_s07_close.py."""

import asyncio
import time

import pytest
import websockets

from eddyserver import assert_echo_serves
from testbed import start_testbed
from ws_cases import assert_quiet, close_payload, connect, frame, next_frame_is_close


def open_testbed_client(server):
    """Connects to a testbed and returns (client, session id) once open was printed."""
    client = connect(server)
    fd = int(server.line().split()[1])  # "connect <fd>"
    server.expect(f"open {fd} / -")
    return client, fd


# ---- client-initiated, seen by the application ----


def test_data_after_close_in_later_send_ignored(start_server):
    server = start_testbed(start_server, settings={"websocket_close_timeout": "5"})
    client, fd = open_testbed_client(server)
    client.send(frame(0x8, close_payload(1000)))
    fin, rsv, opcode, payload = client.recv_frame()
    assert (opcode, payload) == (0x8, close_payload(1000))
    try:
        client.send(frame(0x1, b"late message"))
    except (BrokenPipeError, ConnectionResetError):
        pass
    client.expect_eof()
    server.expect(f"close {fd} 3")
    server.no_output(0.2)  # no "message" line for the late message


# ---- server-initiated ----


def test_server_disconnect_answered(start_server):
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!disconnect {fd} 4000 bye".encode()))
    fin, rsv, opcode, payload = client.recv_frame()
    assert (fin, rsv, opcode) == (True, 0, 0x8)
    assert payload == close_payload(4000, b"bye")
    server.expect("= 0")
    client.send(frame(0x8, close_payload(4000)))
    client.expect_eof()
    server.expect(f"close {fd} 4")
    assert_echo_serves(server)


def test_server_disconnect_data_after_not_delivered(start_server):
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!disconnect {fd} 1000".encode()))
    assert client.recv_frame() == (True, 0, 0x8, close_payload(1000))
    server.expect("= 0")
    # While the server waits for our close: data is dropped, pings are not answered.
    client.send(frame(0x1, b"not delivered") + frame(0x9, b"no pong"))
    client.send(frame(0x8, b""))
    client.expect_eof()
    server.expect(f"close {fd} 4")


def test_server_disconnect_not_answered_times_out(start_server):
    server = start_testbed(start_server, settings={"websocket_close_timeout": "0.3"})
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!disconnect {fd} 4999 no answer".encode()))
    assert client.recv_frame() == (True, 0, 0x8, close_payload(4999, b"no answer"))
    started = time.monotonic()
    client.expect_eof()
    waited = time.monotonic() - started
    assert 0.2 <= waited < 3, waited
    server.expect("= 0", f"close {fd} 4")
    assert_echo_serves(server)


def test_server_disconnect_with_zero_close_timeout_closes_at_once(start_server):
    """websocket_close_timeout=0: no wait for the peer's answer (Swoole closes right after
    sending its close frame). Waiting forever instead would leak every connection whose
    peer never answers."""
    server = start_testbed(start_server, settings={"websocket_close_timeout": "0"})
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!disconnect {fd} 4000 now".encode()))
    assert client.recv_frame() == (True, 0, 0x8, close_payload(4000, b"now"))
    client.sock.settimeout(2)
    client.expect_eof()  # socket.timeout here: the server is still waiting
    server.expect("= 0", f"close {fd} 4")


def test_pushed_close_frame_starts_closing_handshake(start_server):
    server = start_testbed(start_server, settings={"websocket_close_timeout": "5"})
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!push {fd} 8 1 -".encode()))  # an empty close frame
    assert client.recv_frame() == (True, 0, 0x8, b"")
    server.expect("= 0")
    client.send(frame(0x1, b"dropped"))
    client.send(frame(0x8, b""))
    client.expect_eof()
    server.expect(f"close {fd} 4")


def test_pushed_close_frame_with_invalid_code_refused(start_server):
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!push {fd} 8 1 ab".encode()))  # code 0x6162: invalid
    server.expect("= -3001")
    client.send(frame(0x1, b"still open"))
    assert client.recv_frame() == (True, 0, 0x1, b"still open")
    client.close_handshake()


@pytest.mark.parametrize("code,reason,why", [
    (-1, "", "code"), (0, "", "code"), (999, "x", "code"), (1004, "", "code"),
    (1005, "", "code"), (1006, "", "code"), (1015, "", "code"), (1016, "", "code"),
    (2999, "", "code"), (5000, "", "code"), (65536 + 1000, "", "code"),
    (4000, "r" * 124, "reason")])
def test_server_disconnect_invalid_arguments(start_server, code, reason, why):
    """Codes RFC 6455 7.4 does not let an endpoint send (reserved, never sent, or out of
    range) and over-long reasons are refused with EDDY_EINVAL, and the log says why."""
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!disconnect {fd} {code} {reason}".rstrip().encode()))
    server.expect("= -3001")
    server.wait_log(rf"eddy_disconnect\({fd}\) refused: .*{why}")
    # Nothing was sent: the connection is still open and echoing.
    client.send(frame(0x1, b"still open"))
    assert client.recv_message() == (0x1, b"still open")
    client.close_handshake()


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_server_disconnect_every_code_an_endpoint_may_send(start_server, code):
    """RFC 6455 7.4.1 and the IANA registry: 1000-1003, 1007-1014 and 3000-4999 reach the
    client as given."""
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!disconnect {fd} {code} why".encode()))
    assert client.recv_frame() == (True, 0, 0x8, close_payload(code, b"why"))
    server.expect("= 0")
    client.send(frame(0x8, close_payload(code)))
    client.expect_eof()
    server.expect(f"close {fd} 4")


def test_server_disconnect_123_byte_reason(start_server):
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.send(frame(0x1, f"!disconnect {fd} 4001 {'r' * 123}".encode()))
    assert client.recv_frame() == (True, 0, 0x8, close_payload(4001, b"r" * 123))
    server.expect("= 0")
    client.send(frame(0x8, close_payload(4001)))
    client.expect_eof()
    server.expect(f"close {fd} 4")


def test_client_close_reports_status_3(start_server):
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.close_handshake(1000)
    server.expect(f"close {fd} 3")


def test_tcp_close_without_close_frame_reports_status_3(start_server):
    server = start_testbed(start_server)
    client, fd = open_testbed_client(server)
    client.close()
    server.expect(f"close {fd} 3")
    assert_echo_serves(server)


# ---- close frames delivered to the message callback ----


def test_close_frame_delivered_and_answered_with_frames_example(start_server):
    server = start_server("frames")
    client = connect(server)
    client.send(frame(0x8, close_payload(1000, b"bye")))
    next_frame_is_close(client, 1000)
    server.expect("Close frame received: Code 1000 Reason bye")


def test_empty_close_frame_delivered_as_1005(start_server):
    server = start_server("frames")
    client = connect(server)
    client.send(frame(0x8, b""))
    assert client.recv_frame() == (True, 0, 0x8, b"")
    client.expect_eof()
    server.expect("Close frame received: Code 1005 Reason ")


def test_invalid_close_frame_not_delivered(start_server):
    server = start_server("frames")
    client = connect(server)
    client.send(frame(0x8, close_payload(1005)))
    next_frame_is_close(client, 1002)
    server.no_output(0.2)


def test_close_frame_delivered_with_testbed_setting(start_server):
    server = start_testbed(start_server, settings={"open_websocket_close_frame": "true"})
    client, fd = open_testbed_client(server)
    client.send(frame(0x8, close_payload(4321, b"why not")))
    next_frame_is_close(client, 4321)
    server.expect(f"control {fd} 8 0 code 4321 reason why not", f"close {fd} 3")


# ---- a real client ----


@pytest.mark.parametrize("code,reason", [(1000, ""), (1001, "bye"), (4001, "custom"),
                                         (3000, "\u00e9t\u00e9")])
def test_websockets_client_close_codes(start_server, code, reason):
    server = start_testbed(start_server, settings={"open_websocket_close_frame": "true"})

    async def run():
        async with websockets.connect(server.url) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.close(code=code, reason=reason)
            assert ws.close_code == code
            return ws

    asyncio.run(asyncio.wait_for(run(), 10))
    fd = int(server.line().split()[1])
    server.expect(f"open {fd} / -")
    assert server.line().startswith(f"message {fd} 1 ")  # flags are not this test's concern
    server.expect(f"control {fd} 8 0 code {code} reason {reason}", f"close {fd} 3")


def test_websockets_client_sees_server_disconnect(start_server):
    server = start_testbed(start_server)

    async def run():
        async with websockets.connect(server.url) as ws:
            await ws.send("!disconnect 1 4002 see you")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4002
            assert ws.close_reason == "see you"

    asyncio.run(asyncio.wait_for(run(), 10))
    server.expect("connect 1", "open 1 / -", "= 0", "close 1 4")


def test_websockets_client_sees_protocol_error_code(start_server):
    server = start_server("echo", settings={"package_max_length": "10"})

    async def run():
        async with websockets.connect(server.url) as ws:
            await ws.send("x" * 11)
            with pytest.raises(websockets.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009

    asyncio.run(asyncio.wait_for(run(), 10))
    # assert_echo_serves' message is over this server's 10-byte limit: a shorter one.
    client = connect(server)
    client.send(frame(0x1, b"short"))
    assert client.recv_message() == (0x1, b"short")
    client.close_handshake()




# ---- keep-alive pings (websocket_ping_interval, websocket_ping_timeout) ----

PING_SETTINGS = {"websocket_ping_interval": "0.3", "websocket_ping_timeout": "0.3"}


@pytest.mark.parametrize("answer", ["pong", "text"])
def test_keepalive_pings_answered_keep_the_connection(start_server, answer):
    """A client that answers every ping (with a pong, or with any frame: all input counts)
    gets a ping each interval and stays connected through four of them."""
    server = start_testbed(start_server, settings=PING_SETTINGS)
    client, fd = open_testbed_client(server)
    for i in range(4):
        assert client.recv_frame() == (True, 0, 0x9, b"")
        if answer == "pong":
            client.send(frame(0xA, b""))
        else:
            client.send(frame(0x1, f"alive {i}".encode()))
            assert client.recv_frame() == (True, 0, 0x1, f"alive {i}".encode())
    client.send(frame(0x1, b"still open"))
    fin, _, opcode, payload = client.recv_frame()
    while opcode == 0x9:  # a ping may come first
        client.send(frame(0xA, b""))
        fin, _, opcode, payload = client.recv_frame()
    assert (opcode, payload) == (0x1, b"still open")
    client.close_handshake()


def test_keepalive_ping_unanswered_drops_the_connection(start_server):
    """A client that never answers gets one ping, then, websocket_ping_timeout later (not
    before, and within one more period), the TCP connection is dropped with no close
    frame."""
    server = start_testbed(start_server, settings=PING_SETTINGS)
    client, fd = open_testbed_client(server)
    assert client.recv_frame() == (True, 0, 0x9, b"")
    pinged = time.monotonic()
    client.expect_eof()  # no second ping and no close frame before the drop
    waited = time.monotonic() - pinged
    assert 0.25 <= waited <= 2.0, waited
    server.wait_log(rf"session#{fd}: no answer to a ping in 300 ms, dropped")
    server.expect(f"close {fd} 3")


def test_keepalive_pings_off_by_default(start_server):
    server = start_testbed(start_server, settings={"websocket_ping_timeout": "0.2"})
    client, fd = open_testbed_client(server)
    assert_quiet(client, within=0.6)
    client.close_handshake()
