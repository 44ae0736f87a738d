# SPDX-License-Identifier: MIT
"""A real client (python websockets 10.4) against eddy: ping/pong, large and fragmented
messages, close codes, many sequential connections, and session ids."""

import asyncio
import time

import pytest
import websockets

from eddyserver import assert_echo_serves

MIB = 1 << 20


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_ping_pong(start_server):
    server = start_server("echo")

    async def go():
        async with websockets.connect(server.url) as ws:
            for payload in (b"", b"abc", b"\xff" * 125):
                pong = await ws.ping(payload)
                await asyncio.wait_for(pong, 5)
            # Many pings in flight: each waiter resolves.
            waiters = [await ws.ping(f"p{i}".encode()) for i in range(50)]
            await asyncio.wait_for(asyncio.gather(*waiters), 5)
            await ws.send("after pings")
            assert await ws.recv() == "after pings"

    run(go())


def test_server_pong_frames_delivered_with_frames_example(start_server):
    server = start_server("frames")

    async def go():
        async with websockets.connect(server.url) as ws:
            # The example's pong is empty (as seed 003's), so only an empty ping matches it.
            pong = await ws.ping(b"")
            await asyncio.wait_for(pong, 5)  # answered by the application itself
            await ws.send("hello")

    run(go())
    server.expect("Ping frame received: Code 9", "Message received: hello",
                  "Close frame received: Code 1000 Reason ")


@pytest.mark.parametrize("size", [MIB - 1, MIB])
def test_large_text_and_binary(start_server, size):
    server = start_server("echo")
    text = ("0123456789abcdef" * (size // 16 + 1))[:size]

    async def go():
        async with websockets.connect(server.url, max_size=MIB) as ws:
            await ws.send(text)
            assert await ws.recv() == text
            await ws.send(text.encode())
            assert await ws.recv() == text.encode()

    run(go())


def test_message_of_exactly_the_default_limit(start_server):
    """package_max_length defaults to 2 MiB: a 2 MiB message is accepted (the client's
    own max_size must be raised to receive the echo)."""
    server = start_server("echo")
    data = bytes(range(256)) * (2 * MIB // 256)
    assert len(data) == 2 * MIB

    async def go():
        async with websockets.connect(server.url, max_size=4 * MIB) as ws:
            await ws.send(data)
            assert await ws.recv() == data

    run(go())


def test_message_over_the_default_limit_closed_1009(start_server):
    # testbed keeps the library's default package_max_length (echo raises it for Autobahn).
    server = start_server("testbed")

    async def go():
        async with websockets.connect(server.url, max_size=4 * MIB) as ws:
            await ws.send(b"x" * (2 * MIB + 1))
            with pytest.raises(websockets.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009

    run(go())
    assert_echo_serves(server)


def test_fragmented_send_from_list(start_server):
    server = start_server("echo")

    async def go():
        async with websockets.connect(server.url) as ws:
            await ws.send(["frag1 ", "", "frag2 ", "\u20ac\U0001f600"])
            assert await ws.recv() == "frag1 frag2 \u20ac\U0001f600"
            await ws.send([b"\x00\x01", b"\x02" * 70000, b""])
            assert await ws.recv() == b"\x00\x01" + b"\x02" * 70000

    run(go())


def test_fragmented_send_from_async_iterator(start_server):
    server = start_server("echo")
    parts = [f"part {i};" for i in range(100)]

    async def fragments():
        for part in parts:
            await asyncio.sleep(0)  # let the fragments leave in separate writes
            yield part

    async def go():
        async with websockets.connect(server.url) as ws:
            await ws.send(fragments())
            assert await ws.recv() == "".join(parts)
            await ws.ping()  # the connection is healthy afterwards

    run(go())


def test_fragmented_send_with_ping_in_between(start_server):
    """websockets lets a ping go out while a fragmented message is being sent; the pong
    comes back before the message is complete."""
    server = start_server("echo")

    async def go():
        async with websockets.connect(server.url) as ws:
            pong_seen = asyncio.Event()

            async def fragments():
                yield "first,"
                waiter = await ws.ping(b"mid-message")
                await asyncio.wait_for(waiter, 5)
                pong_seen.set()
                yield "second"

            await ws.send(fragments())
            assert pong_seen.is_set()
            assert await ws.recv() == "first,second"

    run(go())


@pytest.mark.parametrize("code,reason", [(1000, ""), (1001, "going"), (3000, "app"),
                                         (4001, "custom"), (4999, "r" * 123)])
def test_close_codes_echoed(start_server, code, reason):
    server = start_server("echo")

    async def go():
        ws = await websockets.connect(server.url)
        await ws.send("x")
        assert await ws.recv() == "x"
        await ws.close(code=code, reason=reason)
        assert ws.close_code == code  # the server's close echoes the code

    run(go())


def test_server_stop_closes_with_1001(start_server):
    server = start_server("testbed")

    async def go():
        async with websockets.connect(server.url) as ws:
            await ws.send("!stop")
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await ws.recv()
            assert ws.close_code == 1001

    run(go())
    assert server.proc.wait(10) == 0


def test_500_sequential_connections(start_server):
    server = start_server("echo")

    async def go():
        for i in range(500):
            async with websockets.connect(server.url) as ws:
                await ws.send(f"cycle {i}")
                assert await ws.recv() == f"cycle {i}"

    started = time.monotonic()
    run(go(), timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"500 connect/echo/close cycles took {elapsed:.1f}s"
    assert_echo_serves(server)


def test_session_ids_increase_and_are_not_reused(start_server):
    """Ids start at 1, increase by one per connection and are never reused, while an
    older connection stays open; !list shows exactly the live ones."""
    server = start_server("testbed")
    server.expect("start")

    async def go():
        held = await websockets.connect(server.url)  # id 1, open throughout
        for n in range(2, 22):
            async with websockets.connect(server.url) as ws:
                await ws.send("!list")
                # The client's close waits for the server's TCP close, so the previous
                # connection is gone by now: only 1 and this one are live.
                await ws.send("!count")
        await held.close()

    run(go())
    ids, closed, lists = [], [], []
    while len(closed) < 21:
        words = server.line().split()
        if words[0] == "connect":
            ids.append(int(words[1]))
        elif words[0] == "close":
            closed.append(int(words[1]))
        elif words[0] == "=":
            lists.append(words[1:])
    assert ids == list(range(1, 22)), ids
    assert closed == list(range(2, 22)) + [1], closed
    assert lists == [x for n in range(2, 22) for x in (["1", str(n)], ["2"])], lists
