# SPDX-License-Identifier: MIT
"""Server methods, driven through the testbed's "!command" messages: push, exist,
is_established, disconnect, close, send, client_info, connection list/count, timers,
defer, per-connection user data and stop."""

import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest

from eddyserver import BUILD, TIMEOUT
from testbed import cmd, ctypes_env, next_close, open_ws, start_testbed
from wsraw import RawClient, frame

ENOTFOUND, ESTATE, ETOOBIG, EINVAL, EUTF8 = -3003, -3004, -3005, -3001, -3007


def open_http(server):
    """A keep-alive HTTP connection that has completed one request; returns (sock, fd)."""
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    sock.sendall(b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"ok /h"):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    line = server.line()
    fd = int(line.split()[1])
    assert line == f"connect {fd}"
    server.expect(f"request {fd} GET /h body=0")
    return sock, fd


def assert_nothing_sent(server, ctl, target, target_fd):
    """Proves target received nothing so far: the next frame it reads is a marker pushed
    now."""
    assert cmd(server, ctl, f"push {target_fd} 1 1 marker") == "0"
    assert target.recv_frame() == (True, 0, 0x1, b"marker")


# ---- push ----


def test_push_text_and_binary_to_another_connection(start_server):
    server = start_testbed(start_server)
    ctl, ctl_fd = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"push {fd} 1 1 hello there") == "0"
    assert target.recv_frame() == (True, 0, 0x1, b"hello there")
    assert cmd(server, ctl, f"push {fd} 2 1 bin") == "0"
    assert target.recv_frame() == (True, 0, 0x2, b"bin")
    assert cmd(server, ctl, f"push {fd} 1 1 -") == "0"  # empty payload
    assert target.recv_frame() == (True, 0, 0x1, b"")
    assert cmd(server, ctl, f"push {ctl_fd} 1 1 self") == "0"
    assert ctl.recv_frame() == (True, 0, 0x1, b"self")


def test_push_fragmented_message(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"push {fd} 1 0 part1,") == "0"
    assert cmd(server, ctl, f"push {fd} 0 0 part2,") == "0"
    assert cmd(server, ctl, f"push {fd} 9 1 in-between") == "0"  # control frames may interleave
    assert cmd(server, ctl, f"push {fd} 0 1 end") == "0"
    assert target.recv_frame() == (False, 0, 0x1, b"part1,")
    assert target.recv_frame() == (False, 0, 0x0, b"part2,")
    assert target.recv_frame() == (True, 0, 0x9, b"in-between")
    assert target.recv_frame() == (True, 0, 0x0, b"end")


def test_push_ping_and_pong(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"push {fd} 9 1 pp") == "0"
    assert target.recv_frame() == (True, 0, 0x9, b"pp")
    assert cmd(server, ctl, f"push {fd} 10 1 qq") == "0"
    assert target.recv_frame() == (True, 0, 0xA, b"qq")
    # The client's pong answer is not a message.
    target.send_frame(0xA, b"pp")
    server.no_output(0.2)


def test_push_return_codes(start_server):
    server = start_testbed(start_server, "--request", settings={"package_max_length": 200})
    ctl, ctl_fd = open_ws(server)
    target, fd = open_ws(server)
    http, http_fd = open_http(server)
    assert cmd(server, ctl, "push 999 1 1 x") == str(ENOTFOUND)
    assert cmd(server, ctl, "push 0 1 1 x") == str(ENOTFOUND)
    assert cmd(server, ctl, f"push {http_fd} 1 1 x") == str(ESTATE)
    assert cmd(server, ctl, f"pushsize {fd} 201") == str(ETOOBIG)
    for opcode in (3, 7, 11, 15, 16, -1):
        assert cmd(server, ctl, f"push {fd} {opcode} 1 x") == str(EINVAL), opcode
    assert cmd(server, ctl, f"push {fd} 9 1 " + "p" * 126) == str(EINVAL)
    assert cmd(server, ctl, f"push {fd} 10 1 " + "p" * 126) == str(EINVAL)
    assert cmd(server, ctl, f"push {fd} 9 0 x") == str(EINVAL)  # control frames need FIN
    assert_nothing_sent(server, ctl, target, fd)
    # The limits themselves are allowed.
    assert cmd(server, ctl, f"pushsize {fd} 200") == "0"
    assert target.recv_frame() == (True, 0, 0x2, b"x" * 200)
    assert cmd(server, ctl, f"push {fd} 9 1 " + "p" * 125) == "0"
    assert target.recv_frame() == (True, 0, 0x9, b"p" * 125)
    # The HTTP connection got nothing and still works.
    http.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"ok /again"):
        chunk = http.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")


def test_push_to_closed_and_closing_connections(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"disconnect {fd} 1000") == "0"
    assert cmd(server, ctl, f"push {fd} 1 1 late") == str(ESTATE)  # close already sent
    assert next_close(target) == (1000, b"")
    target.send_frame(0x8, struct.pack("!H", 1000))
    target.expect_eof()
    server.expect(f"close {fd} 4")
    assert cmd(server, ctl, f"push {fd} 1 1 gone") == str(ENOTFOUND)


# ---- exist / is_established ----


def test_exist_and_is_established(start_server):
    server = start_testbed(start_server, "--request")
    ctl, ctl_fd = open_ws(server)
    http, http_fd = open_http(server)
    assert cmd(server, ctl, f"exist {ctl_fd}") == "true"
    assert cmd(server, ctl, f"established {ctl_fd}") == "true"
    assert cmd(server, ctl, f"exist {http_fd}") == "true"
    assert cmd(server, ctl, f"established {http_fd}") == "false"
    for unknown in (0, 999):
        assert cmd(server, ctl, f"exist {unknown}") == "false"
        assert cmd(server, ctl, f"established {unknown}") == "false"
    http.close()
    server.expect(f"close {http_fd} 0")
    assert cmd(server, ctl, f"exist {http_fd}") == "false"
    assert cmd(server, ctl, f"established {http_fd}") == "false"


def test_established_false_once_closing(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"disconnect {fd} 4000") == "0"
    assert cmd(server, ctl, f"established {fd}") == "false"
    assert cmd(server, ctl, f"info {fd}").split()[0] == "4"


# ---- disconnect ----


@pytest.mark.parametrize("code,reason", [(1000, None), (1000, "normal"), (4000, "x"),
                                         (4999, "é" * 61 + "a"), (4500, "r" * 123)])
def test_disconnect_sends_close_and_waits_for_the_client(start_server, code, reason):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    command = f"disconnect {fd} {code}" + (f" {reason}" if reason else "")
    assert cmd(server, ctl, command) == "0"
    got = next_close(target)
    assert got == (code, (reason or "").encode())
    server.no_output(0.2)  # not closed before the client answers
    assert cmd(server, ctl, f"exist {fd}") == "true"
    target.send_frame(0x8, struct.pack("!H", code))
    target.expect_eof()
    server.expect(f"close {fd} 4")


@pytest.mark.parametrize("code,reason", [
    (999, None), (1004, None), (1005, None), (1006, None), (1015, None), (2999, None),
    (5000, None), (0, None), (-1, None),
    (1000, "r" * 124), (4000, "é" * 62),  # 124 bytes of valid UTF-8
])
def test_disconnect_invalid_arguments_send_nothing(start_server, code, reason):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    command = f"disconnect {fd} {code}" + (f" {reason}" if reason else "")
    assert cmd(server, ctl, command) == str(EINVAL)
    assert cmd(server, ctl, f"established {fd}") == "true"
    assert_nothing_sent(server, ctl, target, fd)
    target.send_frame(0x1, b"alive")
    server.expect(f"message {fd} 1 33 5 alive")


def test_disconnect_unknown_and_http_connections(start_server):
    server = start_testbed(start_server, "--request")
    ctl, _ = open_ws(server)
    http, http_fd = open_http(server)
    assert cmd(server, ctl, "disconnect 999 1000") == str(ENOTFOUND)
    assert cmd(server, ctl, f"disconnect {http_fd} 1000") == str(ESTATE)


def test_disconnect_twice(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"disconnect {fd} 4000 first") == "0"
    assert cmd(server, ctl, f"disconnect {fd} 4001 second") == str(ESTATE)
    assert next_close(target) == (4000, b"first")
    target.send_frame(0x8, struct.pack("!H", 4000))
    target.expect_eof()
    server.expect(f"close {fd} 4")


def test_disconnect_data_after_close_is_not_delivered(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"disconnect {fd} 1000") == "0"
    assert next_close(target) == (1000, b"")
    target.send_frame(0x1, b"too late")
    target.send_frame(0x9, b"ping too late")
    target.send_frame(0x8, struct.pack("!H", 1000))
    target.expect_eof()  # and no pong
    server.expect(f"close {fd} 4")  # and no message line


def test_disconnect_close_timeout_when_client_never_answers(start_server):
    server = start_testbed(start_server, settings={"websocket_close_timeout": "0.3"})
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    started = time.monotonic()
    assert cmd(server, ctl, f"disconnect {fd} 4000 timeout") == "0"
    assert next_close(target) == (4000, b"timeout")
    target.expect_eof()
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3, elapsed
    server.expect(f"close {fd} 4")


# ---- close / send ----


def test_close_drops_the_connection(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"close {fd}") == "0"
    target.expect_eof()
    server.expect(f"close {fd} 3")
    assert cmd(server, ctl, f"close {fd}") == str(ENOTFOUND)
    assert cmd(server, ctl, "close 999") == str(ENOTFOUND)


def test_close_after_push_delivers_queued_bytes_first(start_server):
    server = start_testbed(start_server)
    ctl, ctl_fd = open_ws(server)
    ctl.send_frame(0x1, f"!pushsize {ctl_fd} 100000".encode())
    ctl.send_frame(0x1, f"!close {ctl_fd}".encode())
    server.expect("= 0", "= 0")
    assert ctl.recv_frame() == (True, 0, 0x2, b"x" * 100000)
    ctl.expect_eof()
    server.expect(f"close {ctl_fd} 3")


def test_close_http_connection(start_server):
    server = start_testbed(start_server, "--request", "--disconnect")
    ctl, _ = open_ws(server)
    http, http_fd = open_http(server)
    assert cmd(server, ctl, f"close {http_fd}") == "0"
    assert http.recv(10) == b""
    server.expect(f"disconnect {http_fd} 0")


def test_send_raw_bytes(start_server):
    server = start_testbed(start_server, "--request")
    ctl, _ = open_ws(server)
    target, fd = open_ws(server)
    assert cmd(server, ctl, f"send {fd} raw bytes") == "0"
    assert target._take(9) == b"raw bytes"
    http, http_fd = open_http(server)
    assert cmd(server, ctl, f"send {http_fd} hello") == "0"
    assert http.recv(5) == b"hello"
    assert cmd(server, ctl, "send 999 x") == str(ENOTFOUND)


# ---- client_info ----


def test_client_info(start_server):
    server = start_testbed(start_server, "--request")
    before = int(time.time())
    ctl, ctl_fd = open_ws(server)
    http, http_fd = open_http(server)
    after = int(time.time()) + 1
    fields = cmd(server, ctl, f"info {ctl_fd}").split()
    status, ip, port, server_port, connect, last = fields
    assert (status, ip, int(port), int(server_port)) == (
        "3", "127.0.0.1", ctl.sock.getsockname()[1], server.port)
    assert before <= int(connect) <= int(last) <= after + 1
    fields = cmd(server, ctl, f"info {http_fd}").split()
    assert fields[:4] == ["0", "127.0.0.1", str(http.getsockname()[1]), str(server.port)]
    assert cmd(server, ctl, "info 999") == str(ENOTFOUND)


# ---- connection list and count ----


def test_list_and_count(start_server):
    server = start_testbed(start_server, "--request")
    ctl, ctl_fd = open_ws(server)
    second, fd2 = open_ws(server)
    http, http_fd = open_http(server)
    third, fd3 = open_ws(server)
    assert cmd(server, ctl, "count") == "4"
    assert cmd(server, ctl, "list") == f"{ctl_fd} {fd2} {http_fd} {fd3}"
    second.close_handshake()
    server.expect(f"close {fd2} 3")
    http.close()
    server.expect(f"close {http_fd} 0")
    assert cmd(server, ctl, "count") == "2"
    assert cmd(server, ctl, "list") == f"{ctl_fd} {fd3}"


def test_closing_connection_is_not_listed(start_server):
    server = start_testbed(start_server)
    ctl, ctl_fd = open_ws(server)
    target, fd = open_ws(server)
    # In one packet, so the close is still pending (not yet reaped) during count and list.
    ctl.send(frame(0x1, f"!close {fd}".encode()) + frame(0x1, b"!count") + frame(0x1, b"!list"))
    lines = [server.line() for _ in range(4)]
    assert [l for l in lines if l.startswith("=")] == ["= 0", "= 1", f"= {ctl_fd}"]
    assert f"close {fd} 3" in lines


# ---- timers and defer ----


def test_timer_after(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    started = time.monotonic()
    first = int(cmd(server, ctl, "after 100 later"))
    second = int(cmd(server, ctl, "after 30 sooner"))
    assert first > 0 and second > 0 and first != second
    server.expect(f"timer {second} sooner", f"timer {first} later")
    assert time.monotonic() - started >= 0.09
    server.no_output(0.2)


def test_timer_tick_fires_n_times(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    timer = int(cmd(server, ctl, "tick 30 3 beat"))
    server.expect(*[f"timer {timer} beat"] * 3)
    server.no_output(0.2)
    assert cmd(server, ctl, f"clear {timer}") == "false"  # it cleared itself


def test_timer_clear(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    doomed = int(cmd(server, ctl, "after 150 never"))
    ticker = int(cmd(server, ctl, "tick 40 100 tick"))
    assert cmd(server, ctl, f"clear {doomed}") == "true"
    assert cmd(server, ctl, f"clear {doomed}") == "false"
    server.expect(f"timer {ticker} tick")
    assert cmd(server, ctl, f"clear {ticker}") == "true"
    server.no_output(0.3)  # neither the cleared one-shot nor the ticker fires
    assert cmd(server, ctl, "clear 999999") == "false"
    assert cmd(server, ctl, "clear 0") == "false"
    fired = int(cmd(server, ctl, "after 10 done"))
    server.expect(f"timer {fired} done")
    assert cmd(server, ctl, f"clear {fired}") == "false"
    assert fired not in (doomed, ticker)


def test_timer_edge_intervals(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    assert cmd(server, ctl, "tick 0 1 never") == "0"  # a tick needs ms > 0
    zero = int(cmd(server, ctl, "after 0 now"))
    assert zero > 0
    server.expect(f"timer {zero} now")
    server.no_output(0.1)


def test_timers_outlive_the_connection_that_set_them(start_server):
    server = start_testbed(start_server)
    ctl, ctl_fd = open_ws(server)
    timer = int(cmd(server, ctl, "after 100 orphan"))
    ctl.close_handshake()
    server.expect(f"close {ctl_fd} 3", f"timer {timer} orphan")


def test_defer_runs_after_the_callback_in_order(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    assert cmd(server, ctl, "defer one") == "0"
    server.expect("defer one")
    # Two commands in one packet: both run in one iteration, the deferred calls after.
    ctl.send(b"".join(frame(0x1, t) for t in (b"!defer a", b"!defer b")))
    lines = [server.line() for _ in range(4)]
    assert lines[0] == "= 0"
    assert [l for l in lines if l.startswith("defer")] == ["defer a", "defer b"]
    assert lines.index("defer a") > 0


# ---- user data ----


def test_per_connection_user_data(start_server):
    server = start_testbed(start_server)
    ctl, ctl_fd = open_ws(server)
    other, other_fd = open_ws(server)
    assert cmd(server, ctl, f"userdata {other_fd}") == "0 same"
    assert cmd(server, ctl, "userdata 999") == f"{ENOTFOUND} none"


# ---- stop ----


def test_stop_from_a_callback(start_server):
    server = start_testbed(start_server)
    ctl, ctl_fd = open_ws(server)
    other, other_fd = open_ws(server)
    assert cmd(server, ctl, "stop") == "0"
    for client in (ctl, other):
        assert next_close(client)[0] == 1001
        client.send_frame(0x8, struct.pack("!H", 1001))
        client.expect_eof()
    server.expect_set(f"close {ctl_fd} 4", f"close {other_fd} 4")
    server.expect("shutdown")
    assert server.proc.wait(TIMEOUT) == 0


# ---- disconnect with a reason that is not UTF-8 (through ctypes) ----

# Testbed commands are text messages, which must be valid UTF-8, so they cannot carry a
# reason that is not; this small server drives the library through ctypes instead.
CTYPES_SERVER = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
class Frame(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_uint64), ("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]
MSG = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(Frame), ctypes.c_void_p)
lib.eddy_server_new.restype = ctypes.c_void_p
lib.eddy_server_new.argtypes = [ctypes.c_char_p, ctypes.c_int]
lib.eddy_on_message.argtypes = [ctypes.c_void_p, MSG]
lib.eddy_disconnect.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
for name in ("eddy_server_start", "eddy_server_stop", "eddy_server_free"):
    getattr(lib, name).argtypes = [ctypes.c_void_p]
srv = lib.eddy_server_new(b"127.0.0.1", 0)
def on_message(s, frame, user_data):
    f = frame.contents
    if ctypes.string_at(f.data, f.len) == b"stop":
        lib.eddy_server_stop(srv)
        return
    for reason in (b"\xff", b"bad \xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"ok \xc3\xa9"):
        print(lib.eddy_disconnect(srv, f.fd, 1000, reason), flush=True)
callback = MSG(on_message)
lib.eddy_on_message(srv, callback)
rc = lib.eddy_server_start(srv)
lib.eddy_server_free(srv)
sys.exit(rc)
"""


def test_disconnect_reason_must_be_utf8():
    lib = os.path.join(BUILD, "libeddy.so")
    proc = subprocess.Popen([sys.executable, "-c", CTYPES_SERVER, lib], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ctypes_env(lib))
    try:
        port = None
        for line in proc.stderr:
            match = re.search(r"listening on [^ ]+:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the ctypes server did not start"
        client = RawClient("127.0.0.1", port, TIMEOUT)
        client.handshake()
        client.send_frame(0x1, b"go")
        results = [proc.stdout.readline().strip() for _ in range(5)]
        assert results == [str(EUTF8)] * 4 + ["0"]
        assert next_close(client) == (1000, "ok é".encode())  # the only close frame sent
        client.send_frame(0x8, struct.pack("!H", 1000))
        client.expect_eof()
        stopper = RawClient("127.0.0.1", port, TIMEOUT)
        stopper.handshake()
        stopper.send_frame(0x1, b"stop")
        assert next_close(stopper)[0] == 1001
        stopper.send_frame(0x8, struct.pack("!H", 1001))
        stopper.expect_eof()
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
