# SPDX-License-Identifier: MIT
"""Events: seed 000's close/disconnect split (seed_disconnect example), session ids,
connect/start/shutdown, the websocket_status seen in close/disconnect for every way a
connection can end, and the required message callback."""

import os
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from eddyserver import BUILD, TIMEOUT
from testbed import ctypes_env, next_close, open_ws, start_testbed
from wsraw import frame


def http_exchange(server, request):
    """Sends a request on a new connection and returns everything until EOF."""
    return server.http(request)


# ---- seed 000: close vs disconnect (seed_disconnect example) ----


def seed_websocket_client(server):
    client = server.connect_raw()
    client.handshake()
    assert client.recv_message() == (0x1, b"hello, welcome\n")
    return client


def test_seed000_with_disconnect_callback(start_server):
    server = start_server("seed_disconnect")
    client = seed_websocket_client(server)
    client.close_handshake()
    server.expect("client-1 is closed, WebSocket status is 3")
    assert http_exchange(server, b"GET /?close=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") == b""
    server.expect("client-2 is Disconnect")
    server.no_output()


def test_seed000_without_disconnect_callback(start_server):
    server = start_server("seed_disconnect", "--no-disconnect")
    client = seed_websocket_client(server)
    client.close_handshake()
    server.expect("client-1 is closed, WebSocket status is 3")
    assert http_exchange(server, b"GET /?close=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") == b""
    server.expect("client-2 is not a valid WebSocket connection")
    server.no_output()


@pytest.mark.parametrize("args,line", [((), "client-1 is Disconnect"),
                                       (("--no-disconnect",),
                                        "client-1 is not a valid WebSocket connection")])
def test_seed000_plain_request_then_client_close(start_server, args, line):
    server = start_server("seed_disconnect", *args)
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while not data.endswith(b"http ok"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        # A request ended normally fires nothing while the connection stays open.
        server.no_output()
    server.expect(line)
    server.no_output()  # once
    assert_echo_like_seed_serves(server, 2)


def assert_echo_like_seed_serves(server, fd):
    client = seed_websocket_client(server)
    client.send_frame(0x1, b"still")
    assert client.recv_message() == (0x1, b"server: still")
    server.expect("Message: still")
    client.close_handshake()
    server.expect(f"client-{fd} is closed, WebSocket status is 3")


def test_seed000_failed_handshake_is_a_disconnect(start_server):
    server = start_server("seed_disconnect")
    reply = http_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    server.expect("client-1 is Disconnect")
    assert_echo_like_seed_serves(server, 2)


# ---- session ids ----


def test_session_ids_start_at_one_increase_and_are_never_reused(start_server):
    server = start_testbed(start_server, "--request")
    first, fd1 = open_ws(server)
    second, fd2 = open_ws(server)
    assert (fd1, fd2) == (1, 2)
    first.close_handshake()
    server.expect("close 1 3")
    http_exchange(server, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    server.expect("connect 3", "request 3 GET /x body=0", "close 3 0")
    third, fd3 = open_ws(server)
    assert fd3 == 4  # not 1, although 1 is free again
    for expected in range(5, 12):
        client, fd = open_ws(server)
        assert fd == expected
        client.close_handshake()
        server.expect(f"close {fd} 3")
    third.send_frame(0x1, b"!list")
    server.expect("= 2 4")


def test_connect_fires_on_accept_before_any_byte(start_server):
    server = start_testbed(start_server)
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT):
        server.expect("connect 1")
    server.expect("close 1 0")


def test_start_is_the_first_event(start_server):
    server = start_server("testbed")
    assert server.line() == "start"
    server.no_output(0.1)


# ---- shutdown ----


def test_shutdown_closes_everything_then_fires_shutdown(start_server):
    server = start_testbed(start_server, "--request")
    ws, ws_fd = open_ws(server)
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as http:
        http.sendall(b"GET /keep HTTP/1.1\r\nHost: x\r\n\r\n")
        server.expect("connect 2", "request 2 GET /keep body=0")
        server.proc.send_signal(signal.SIGTERM)
        code, _ = next_close(ws)
        assert code == 1001
        ws.send_frame(0x8, struct.pack("!H", 1001))
        ws.expect_eof()
        data = b""
        while True:
            chunk = http.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
    server.expect_set("close 1 4", "close 2 0")
    server.expect("shutdown")
    assert server.proc.wait(TIMEOUT) == 0
    server.wait_log(r"\tINFO\teddy stopped")


def test_shutdown_does_not_wait_past_close_timeout(start_server):
    server = start_testbed(start_server, settings={"websocket_close_timeout": "0.3"})
    ws, ws_fd = open_ws(server)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code, _ = next_close(ws)  # never answered
    assert code == 1001
    server.expect("close 1 4", "shutdown")
    assert server.proc.wait(TIMEOUT) == 0
    assert time.monotonic() - started < 3


# ---- websocket_status in close/disconnect ----


@pytest.mark.parametrize("flag", [(), ("--disconnect",)], ids=["close only", "with disconnect"])
def test_close_status_client_close_is_3(start_server, flag):
    server = start_testbed(start_server, *flag)
    client, fd = open_ws(server)
    client.close_handshake(1000, b"bye")
    server.expect(f"close {fd} 3")  # established WebSockets always get close


@pytest.mark.parametrize("flag", [(), ("--disconnect",)], ids=["close only", "with disconnect"])
def test_close_status_abrupt_tcp_close_is_3(start_server, flag):
    server = start_testbed(start_server, *flag)
    client, fd = open_ws(server)
    client.close()
    server.expect(f"close {fd} 3")


def test_close_status_abrupt_close_mid_frame_is_3(start_server):
    server = start_testbed(start_server)
    client, fd = open_ws(server)
    client.send(frame(0x1, b"x" * 100)[:20])
    client.close()
    server.expect(f"close {fd} 3")
    server.no_output(0.1)  # and no message


@pytest.mark.parametrize("flag", [(), ("--disconnect",)], ids=["close only", "with disconnect"])
def test_close_status_server_disconnect_is_4(start_server, flag):
    server = start_testbed(start_server, *flag)
    client, fd = open_ws(server)
    client.send_frame(0x1, f"!disconnect {fd} 4000 done".encode())
    server.expect("= 0")
    code, reason = next_close(client)
    assert (code, reason) == (4000, b"done")
    client.send_frame(0x8, struct.pack("!H", 4000))
    client.expect_eof()
    server.expect(f"close {fd} 4")


def test_close_status_pushed_close_frame_is_4(start_server):
    server = start_testbed(start_server)
    client, fd = open_ws(server)
    # A close frame pushed with push(): code 4001 (0x0FA1) has no printable form, so
    # the command pushes an empty close frame.
    client.send_frame(0x1, f"!push {fd} 8 1 -".encode())
    server.expect("= 0")
    _, _, opcode, payload = client.recv_frame()
    assert (opcode, payload) == (0x8, b"")
    client.send_frame(0x8)
    client.expect_eof()
    server.expect(f"close {fd} 4")


def test_close_status_protocol_error_is_3(start_server):
    server = start_testbed(start_server)
    client, fd = open_ws(server)
    client.send_frame(0x1, b"unmasked", mask=False)
    client.expect_close(1002)
    server.expect(f"close {fd} 3")


@pytest.mark.parametrize("flag,event", [((), "close"), (("--disconnect",), "disconnect")])
def test_close_status_plain_http_is_0(start_server, flag, event):
    server = start_testbed(start_server, "--request", *flag)
    reply = http_exchange(server, b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")
    server.expect("connect 1", "request 1 GET /p body=0", f"{event} 1 0")


@pytest.mark.parametrize("flag,event", [((), "close"), (("--disconnect",), "disconnect")])
def test_close_status_http_without_request_callback_is_0(start_server, flag, event):
    server = start_testbed(start_server, *flag)
    reply = http_exchange(server, b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    server.expect("connect 1", f"{event} 1 0")


@pytest.mark.parametrize("flag,event", [((), "close"), (("--disconnect",), "disconnect")])
def test_close_status_failed_handshake_is_1(start_server, flag, event):
    server = start_testbed(start_server, *flag)
    reply = http_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Key: AAAA\r\n"
                                  b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")
    server.expect("connect 1", f"{event} 1 1")
    client, fd = open_ws(server)
    assert fd == 2


@pytest.mark.parametrize("flag,event", [((), "close"), (("--disconnect",), "disconnect")])
def test_close_status_response_close_is_0(start_server, flag, event):
    server = start_testbed(start_server, "--request", *flag)
    assert http_exchange(server, b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    server.expect("connect 1", "request 1 GET /close body=0", f"{event} 1 0")


def test_close_status_heartbeat_is_3(start_server):
    server = start_testbed(start_server, settings={"heartbeat_check_interval": 1,
                                                   "heartbeat_idle_time": 1})
    client, fd = open_ws(server)
    code, reason = next_close(client)
    assert (code, reason) == (1000, b"idle timeout")
    client.expect_eof()
    server.expect(f"close {fd} 3")


def test_heartbeat_closes_idle_http_connection(start_server):
    server = start_testbed(start_server, "--request", settings={"heartbeat_check_interval": 1,
                                                                "heartbeat_idle_time": 1})
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok /a")
    server.expect("connect 1", "request 1 GET /a body=0", "close 1 0")


# ---- the message callback is required ----

NO_MESSAGE_CALLBACK = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.eddy_server_new.restype = ctypes.c_void_p
lib.eddy_server_new.argtypes = [ctypes.c_char_p, ctypes.c_int]
lib.eddy_server_start.argtypes = [ctypes.c_void_p]
lib.eddy_server_free.argtypes = [ctypes.c_void_p]
srv = lib.eddy_server_new(b"127.0.0.1", 0)
print(lib.eddy_server_start(srv), flush=True)
lib.eddy_server_free(srv)
"""


def test_server_without_message_callback_does_not_start():
    # Every example sets a message callback, so this drives the library through ctypes.
    lib = os.path.join(BUILD, "libeddy.so")
    if not os.path.exists(lib):
        pytest.skip("no shared library in the build")
    result = subprocess.run([sys.executable, "-c", NO_MESSAGE_CALLBACK, lib],
                            capture_output=True, text=True, timeout=TIMEOUT,
                            env=ctypes_env(lib))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "-3012"  # EDDY_ENOCALLBACK
    assert "\tERROR\t" in result.stderr and "message" in result.stderr
    assert "listening" not in result.stderr
