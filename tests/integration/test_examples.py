# SPDX-License-Identifier: MIT
"""Every example reproduces the output lines of its seed (PHP programs from the Swoole
manual and articles) exactly, and answers its clients as the seed's server does."""

import asyncio
import base64
import hashlib
import os
import re
import struct
import subprocess

import pytest
import websockets

from eddyserver import BUILD, ROOT, assert_echo_serves
from testbed import next_close
from ws_cases import close_payload, connect, frame, next_frame_is_close, payload_of
from wsraw import accept_for

AUTH_KEY = "^www.lulublog.cn&swoole$"


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def token_for(uid):
    """Seed 002: token = md5(md5(uid) . key)."""
    return md5(md5(str(uid)) + AUTH_KEY)


def http_get(server, path, close=True):
    extra = "Connection: close\r\n" if close else ""
    return server.http(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


# ---- echo ----


def test_echo_raw_text_binary_fragmented(start_server):
    server = start_server("echo")
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x1, "héllo".encode())
    assert client.recv_frame() == (True, 0, 0x1, "héllo".encode())
    client.send_frame(0x2, bytes(range(256)))
    assert client.recv_frame() == (True, 0, 0x2, bytes(range(256)))
    client.send_frame(0x1, b"frag", fin=False)
    client.send_frame(0x0, b"men", fin=False)
    client.send_frame(0x0, b"ted", fin=True)
    assert client.recv_frame() == (True, 0, 0x1, b"fragmented")  # one whole message back
    client.send_frame(0x2, b"")
    assert client.recv_frame() == (True, 0, 0x2, b"")
    big = os.urandom(200000)
    client.send_frame(0x2, big)
    assert client.recv_message() == (0x2, big)
    client.close_handshake()
    server.no_output(0.1)  # echo prints nothing


def test_echo_python_websockets(start_server):
    server = start_server("echo")

    async def run():
        async with websockets.connect(server.url) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x00\x01\x02"
            await ws.send(["multi", "part"])  # a fragmented message
            assert await ws.recv() == "multipart"
        assert ws.close_code == 1000

    asyncio.run(run())
    assert_echo_serves(server)


def test_echo_many_clients_at_once(start_server):
    server = start_server("echo")

    async def one(i):
        async with websockets.connect(server.url) as ws:
            for j in range(5):
                await ws.send(f"{i}:{j}")
                assert await ws.recv() == f"{i}:{j}"

    async def run():
        await asyncio.gather(*(one(i) for i in range(20)))

    asyncio.run(run())


# ---- seed_disconnect (seed 000) ----


def test_seed_disconnect_websocket_session(start_server):
    server = start_server("seed_disconnect")
    client = server.connect_raw()
    client.handshake()
    assert client.recv_frame() == (True, 0, 0x1, b"hello, welcome\n")
    client.send_frame(0x1, b"hi")
    server.expect("Message: hi")
    assert client.recv_frame() == (True, 0, 0x1, b"server: hi")
    client.close_handshake()
    server.expect("client-1 is closed, WebSocket status is 3")


def test_seed_disconnect_python_client(start_server):
    server = start_server("seed_disconnect")

    async def run():
        async with websockets.connect(server.url) as ws:
            assert await ws.recv() == "hello, welcome\n"
            await ws.send("from python")
            assert await ws.recv() == "server: from python"

    asyncio.run(run())
    server.expect("Message: from python", "client-1 is closed, WebSocket status is 3")


@pytest.mark.parametrize("args,line", [((), "client-1 is Disconnect"),
                                       (("--no-disconnect",),
                                        "client-1 is not a valid WebSocket connection")])
def test_seed_disconnect_http(start_server, args, line):
    server = start_server("seed_disconnect", *args)
    status, headers, body = split_response(http_get(server, "/"))
    assert status == "HTTP/1.1 200 OK" and body == b"http ok"
    server.expect(line)
    assert http_get(server, "/?close=1", close=False) == b""
    server.expect(line.replace("client-1", "client-2"))
    server.no_output(0.1)


# ---- push_all (seed 003, onRequest) ----


def test_push_all(start_server):
    server = start_server("push_all")
    first = server.connect_raw()
    first.handshake()
    server.expect("server: handshake success with fd1")
    first.send_frame(0x1, b"hi")
    server.expect("receive from 1:hi,opcode:1,fin:1")
    assert first.recv_frame() == (True, 0, 0x1, b"this is server")
    second = server.connect_raw()
    second.handshake()
    server.expect("server: handshake success with fd2")
    status, headers, body = split_response(http_get(server, "/?message=hello%20all"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/plain"
    assert body == b"2"  # the HTTP connection asking is not counted
    assert first.recv_frame() == (True, 0, 0x1, b"hello all")
    assert second.recv_frame() == (True, 0, 0x1, b"hello all")
    server.expect("client 3 closed")  # the HTTP connection (no disconnect callback)
    first.close_handshake()
    server.expect("client 1 closed")
    status, headers, body = split_response(http_get(server, "/?message=only"))
    assert body == b"1"
    assert second.recv_frame() == (True, 0, 0x1, b"only")
    server.expect("client 4 closed")
    second.send_frame(0x2, b"bin")
    server.expect("receive from 2:bin,opcode:2,fin:1")
    assert second.recv_frame() == (True, 0, 0x1, b"this is server")
    second.send_frame(0x1, b"frag", fin=False)
    second.send_frame(0x0, b"ment")
    server.expect("receive from 2:fragment,opcode:1,fin:1")
    assert second.recv_frame() == (True, 0, 0x1, b"this is server")


def test_push_all_counts_pushes_queued_under_back_pressure(start_server):
    """A push answered EDDY_QUEUED was sent (queued behind the connection's output): with
    buffer_high_watermark at 1 byte every push is, and each still counts."""
    server = start_server("push_all", settings={"buffer_high_watermark": "1"})
    clients = []
    for fd in (1, 2):
        client = server.connect_raw()
        client.handshake()
        server.expect(f"server: handshake success with fd{fd}")
        clients.append(client)
    status, headers, body = split_response(http_get(server, "/?message=behind"))
    assert (status, body) == ("HTTP/1.1 200 OK", b"2")
    for client in clients:
        assert client.recv_frame() == (True, 0, 0x1, b"behind")


def test_push_all_without_message_parameter(start_server):
    server = start_server("push_all")
    status, headers, body = split_response(http_get(server, "/"))
    assert status == "HTTP/1.1 400 Bad Request"
    assert body == b"missing ?message=\n"
    server.expect("client 1 closed")


def test_push_all_with_no_websockets(start_server):
    server = start_server("push_all")
    status, headers, body = split_response(http_get(server, "/?message=nobody"))
    assert (status, body) == ("HTTP/1.1 200 OK", b"0")
    server.expect("client 1 closed")


# ---- auth_token (seed 002) ----


def test_auth_token_valid(start_server):
    server = start_server("auth_token")
    assert token_for(100) == md5(md5("100") + "^www.lulublog.cn&swoole$")

    async def run():
        url = f"{server.url}/?uid=100&token={token_for(100)}"
        async with websockets.connect(url) as ws:
            await ws.send("This is websocket client.")
            assert await ws.recv() == "Server: This is websocket client."
            await ws.send("again")
            assert await ws.recv() == "Server: again"

    asyncio.run(run())
    server.expect("client 1 closed.")


@pytest.mark.parametrize("query", [
    "",
    "?uid=100",
    f"?token={token_for(100)}",
    f"?uid=101&token={token_for(100)}",
    "?uid=100&token=" + md5(md5("100")),
    f"?uid=100&token={token_for(100).upper()}",
], ids=["nothing", "no token", "no uid", "other uid", "no key", "upper-case token"])
def test_auth_token_invalid_is_refused_before_open(start_server, query):
    server = start_server("auth_token")
    client = server.connect_raw()
    status, headers, body = client.handshake("/" + query, expect_status=403)
    assert body == b"invalid uid or token\n"
    assert headers["connection"] == "close"
    assert "sec-websocket-accept" not in headers
    client.expect_eof()
    server.expect("client 1 closed.")
    # A valid client is still served.
    good = server.connect_raw()
    good.handshake(f"/?uid=7&token={token_for(7)}")
    good.send_frame(0x1, b"hey")
    assert good.recv_frame() == (True, 0, 0x1, b"Server: hey")
    good.close_handshake()
    server.expect("client 2 closed.")


def test_auth_token_heartbeat_closes_idle_client(start_server):
    """--set overrides the example's own heartbeat defaults (30 s and 62 s)."""
    server = start_server("auth_token", settings={"heartbeat_check_interval": 1,
                                                  "heartbeat_idle_time": 1})
    client = server.connect_raw()
    client.handshake(f"/?uid=100&token={token_for(100)}")
    client.send_frame(0x1, b"once")
    assert client.recv_frame() == (True, 0, 0x1, b"Server: once")
    assert next_close(client) == (1000, b"idle timeout")
    client.expect_eof()
    server.expect("client 1 closed.")


# ---- custom_handshake (seed 003, onHandShake) ----


def custom_handshake(server, key, protocol=None):
    client = server.connect_raw()
    request = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n")
    if protocol is not None:
        request += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    client.send((request + "\r\n").encode())
    status, headers, body = client.read_http_response()
    return client, status, headers


def test_custom_handshake_accepts_and_greets(start_server):
    server = start_server("custom_handshake")
    key = base64.b64encode(os.urandom(16)).decode()
    client, status, headers = custom_handshake(server, key)
    assert status == 101
    assert headers["sec-websocket-accept"] == accept_for(key)
    assert headers["sec-websocket-version"] == "13"
    assert headers["upgrade"] == "websocket"
    assert "sec-websocket-protocol" not in headers
    server.expect(f"{key}Client connected")  # the seed's echo has no newline
    assert client.recv_frame() == (True, 0, 0x1, b"hello, welcome\n")
    client.send_frame(0x1, b"echo me")
    assert client.recv_frame() == (True, 0, 0x1, b"echo me")
    client.close_handshake()


def test_custom_handshake_sends_connection_upgrade(start_server):
    server = start_server("custom_handshake")
    key = base64.b64encode(os.urandom(16)).decode()
    client, status, headers = custom_handshake(server, key)
    client.close()
    assert status == 101
    assert headers.get("connection") == "Upgrade"


@pytest.mark.parametrize("offered,answer", [("chat, superchat", "chat"), ("chat", "chat"),
                                            ("superchat,chat", "superchat")])
def test_custom_handshake_subprotocol(start_server, offered, answer):
    server = start_server("custom_handshake")
    key = base64.b64encode(os.urandom(16)).decode()
    client, status, headers = custom_handshake(server, key, offered)
    assert status == 101
    assert headers["sec-websocket-protocol"] == answer
    server.expect(f"{key}Client connected")
    assert client.recv_frame() == (True, 0, 0x1, b"hello, welcome\n")
    client.close()


@pytest.mark.parametrize("key", [
    "AAAAAAAAAAAAAAAAAAAAAB==",      # fails the seed's [AQgw]== rule
    "dGhlIHNhbXBsZSBub25jZQ",        # no padding
    "dGhlIHNhbXBsZSBub25jZQ==x",
    base64.b64encode(os.urandom(15)).decode(),
    "!" * 22 + "==",
], ids=["bad last digit", "unpadded", "trailing byte", "15 bytes", "not base64"])
def test_custom_handshake_refuses_bad_keys(start_server, key):
    server = start_server("custom_handshake")
    client, status, headers = custom_handshake(server, key)
    assert status != 101
    assert "sec-websocket-accept" not in headers
    client.expect_eof()
    server.no_output(0.2)  # neither the key nor "Client connected"
    good_key = base64.b64encode(os.urandom(16)).decode()
    good, status, _ = custom_handshake(server, good_key)
    assert status == 101
    server.expect(f"{good_key}Client connected")


def test_custom_handshake_python_client(start_server):
    server = start_server("custom_handshake")

    async def run():
        async with websockets.connect(server.url, subprotocols=["chat", "superchat"]) as ws:
            assert ws.subprotocol == "chat"
            assert await ws.recv() == "hello, welcome\n"
            await ws.send("py")
            assert await ws.recv() == "py"

    asyncio.run(run())
    assert server.line().endswith("==Client connected")


# ---- frames (seed 003, open_websocket_*_frame) ----


def test_frames_close_frame_reaches_message(start_server):
    server = start_server("frames")
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x1, b"hi")
    server.expect("Message received: hi")
    client.send_frame(0x8, struct.pack("!H", 4001) + b"bye")
    server.expect("Close frame received: Code 4001 Reason bye")
    assert next_close(client) == (4001, b"bye")  # the automatic answer echoes code and reason
    client.expect_eof()


def test_frames_close_without_code(start_server):
    server = start_server("frames")
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x8)
    server.expect("Close frame received: Code 1005 Reason ")
    _, _, opcode, payload = client.recv_frame()
    assert (opcode, payload) == (0x8, b"")
    client.expect_eof()


def test_frames_ping_answered_once_by_the_application(start_server):
    """Seed 003 answers a ping with a new, empty pong frame (`$pongFrame = new Frame;
    $pongFrame->opcode = WEBSOCKET_OPCODE_PONG; $server->push($frame->fd, $pongFrame)`),
    so the example does too: exactly FIN + pong, no payload, whatever the ping carried."""
    server = start_server("frames")
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x9, b"payload")
    server.expect("Ping frame received: Code 9")
    assert client._take(2) == b"\x8a\x00"
    client.send_frame(0x9)
    server.expect("Ping frame received: Code 9")
    assert client._take(2) == b"\x8a\x00"
    # No automatic pong besides the application's: the next frame is the close answer.
    client.send_frame(0x8, struct.pack("!H", 1000))
    server.expect("Close frame received: Code 1000 Reason ")
    assert client.recv_frame() == (True, 0, 0x8, struct.pack("!H", 1000))
    client.expect_eof()


def test_frames_pong_reaches_message(start_server):
    server = start_server("frames")
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0xA, b"unsolicited")
    server.expect("Pong frame received: Code 10")
    client.send_frame(0x1, "Grüße".encode())
    server.expect("Message received: Grüße")
    client.close_handshake()
    server.expect("Close frame received: Code 1000 Reason ")


def test_frames_ping_inside_fragmented_message(start_server):
    server = start_server("frames")
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x1, b"first ", fin=False)
    client.send_frame(0x9, b"mid")
    server.expect("Ping frame received: Code 9")
    assert client.recv_frame() == (True, 0, 0xA, b"")
    client.send_frame(0x0, b"second")
    server.expect("Message received: first second")


def test_frames_control_frames_between_fragments(start_server):
    """A pong and a close between fragments reach message; the partial message is never
    delivered once the close came."""
    server = start_server("frames")
    client = connect(server)
    client.send(frame(0x1, b"Hello, ", fin=False) + frame(0x9, b"mid"))
    assert client.recv_frame() == (True, 0, 0xA, b"")  # the seed's empty pong
    server.expect("Ping frame received: Code 9")
    client.send(frame(0xA, b"") + frame(0x0, b"world"))
    server.expect("Pong frame received: Code 10", "Message received: Hello, world")
    client.send(frame(0x1, b"to be cut", fin=False) + frame(0x8, close_payload(1001, b"bye")))
    server.expect("Close frame received: Code 1001 Reason bye")
    next_frame_is_close(client, 1001)
    server.no_output(0.1)  # the partial message is never delivered


def test_frames_control_frames_in_pieces(start_server):
    """Control frames that arrive in pieces are assembled before delivery (125-byte ping,
    close with a 123-byte reason), then answered."""
    server = start_server("frames")
    client = connect(server)
    ping = frame(0x9, payload_of(125))
    for i in range(0, len(ping), 5):
        client.send(ping[i:i + 5])
    assert client.recv_frame() == (True, 0, 0xA, b"")  # the seed's empty pong
    server.expect("Ping frame received: Code 9")
    close = frame(0x8, close_payload(4000, b"R" * 123))
    for i in range(0, len(close), 7):
        client.send(close[i:i + 7])
    server.expect("Close frame received: Code 4000 Reason " + "R" * 123)
    next_frame_is_close(client, 4000)


# ---- the command line every example shares (examples/example.h) ----

EXAMPLES = ["auth_token", "custom_handshake", "echo", "frames", "pubsub", "push_all",
            "seed_disconnect", "socketio"]


def run_example(example, *args):
    """Runs an example that is expected to exit at once (bad arguments, --help, --version)."""
    return subprocess.run([os.path.join(BUILD, "examples", example), *args],
                          capture_output=True, text=True, timeout=10)


def test_every_example_is_covered():
    assert sorted(os.listdir(os.path.join(BUILD, "examples"))) == EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("args", [["--bogus"], ["--port", "0", "--verbose"], ["stray"],
                                  ["-p", "9000"], ["--no-such-flag=1"]])
def test_examples_refuse_unknown_arguments(example, args):
    result = run_example(example, *args)
    assert result.returncode == 2, result
    unknown = [arg for arg in args if arg not in ("--port", "0")][0]
    assert f"{example}: " in result.stderr and unknown in result.stderr, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("option", ["--port", "--tls-port"])
@pytest.mark.parametrize("value", ["abc", "-1", "65536", "99999999999999999999", "", "80x",
                                   " 80", "+80", "0x50"])
def test_examples_refuse_bad_ports(option, value):
    result = run_example("echo", option, value)
    assert result.returncode == 2, result
    assert f"{option} wants a port number from 0 to 65535, got '{value}'" in result.stderr


@pytest.mark.parametrize("args", [["--port"], ["--set"], ["--host"], ["--set", "no_equals"],
                                  ["--tls-port"]])
def test_examples_refuse_missing_or_malformed_values(args):
    result = run_example("echo", *args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("echo: "), result.stderr


def test_examples_accept_the_highest_port(start_server):
    """65535 is a port (it may be taken here, so only the parse is checked: a refused
    port exits 2 before the server exists)."""
    result = run_example("echo", "--port", "65535", "--set", "worker_num=nonsense")
    assert result.returncode == 2
    assert "wants a port number" not in result.stderr
    assert "worker_num" in result.stderr


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_print_help(example):
    result = run_example(example, "--help")
    assert result.returncode == 0, result
    out = result.stdout
    assert out.startswith(f"usage: {example} [OPTION]...\n")
    for option in ("--host ADDR", "--port N", "--tls-port N", "--set KEY=VALUE", "--help",
                   "--version"):
        assert option in out
    assert ("eddy's defaults, this example's\ndefaults, then each --set in the order given"
            in out)
    assert result.stderr == ""


def test_help_lists_the_examples_own_options_and_defaults():
    echo = run_example("echo", "--help").stdout
    assert "  websocket_compression=true\n  package_max_length=67108864\n" in echo
    seed = run_example("seed_disconnect", "--help").stdout
    assert "--no-disconnect" in seed and "This example's defaults: none." in seed
    assert "heartbeat_idle_time=62" in run_example("auth_token", "--help").stdout


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_print_version(example):
    with open(os.path.join(ROOT, "include", "eddy.h")) as f:
        version = re.search(r'#define EDDY_VERSION_STRING\s+"([^"]+)"', f.read()).group(1)
    result = run_example(example, "--version")
    assert result.returncode == 0, result
    assert result.stdout == f"{example} (eddy {version})\n"


def negotiated_extensions(server):
    client = server.connect_raw()
    _, headers, _ = client.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    client.close()
    return headers.get("sec-websocket-extensions")


def test_set_overrides_the_examples_default(start_server):
    """echo offers compression by default; --set websocket_compression=false turns it off,
    and of two --set for one key the last wins."""
    assert negotiated_extensions(start_server("echo")) == "permessage-deflate"
    off = start_server("echo", settings={"websocket_compression": "false"})
    assert negotiated_extensions(off) is None
    last = start_server("echo", "--set", "websocket_compression=false", "--set",
                        "websocket_compression=true")
    assert negotiated_extensions(last) == "permessage-deflate"
