"""The echo example: the most basic end-to-end checks."""

import asyncio

import websockets

from eddyserver import assert_echo_serves


def test_echo_text_and_binary(start_server):
    server = start_server("echo")

    async def run():
        async with websockets.connect(server.url) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01\x02")
            assert await ws.recv() == b"\x00\x01\x02"

    asyncio.run(run())
    assert_echo_serves(server)
