# SPDX-License-Identifier: MIT
"""The echo example: the most basic end-to-end checks."""

import asyncio
import threading

import pytest
import websockets

from eddyserver import TIMEOUT, assert_echo_serves
from sockdiag import wait_for
from wsraw import frame


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


@pytest.mark.parametrize("batched", [0, 6000])
def test_echoes_arrive_whole_and_in_order_whatever_the_writes_take(start_server, batched):
    """What one read produces for its own connection collects in the loop's 16 KiB cork
    and leaves in one write. With everything sent at once, reads bring more frames than
    the cork holds (its bytes move to the output queue). With the first frames sent 24 at
    a time and nothing read for a while, writes from the cork end short once the socket
    buffers are full (about 4 MB) and the rest waits in the queue. Every echo still
    arrives whole, once, in order."""
    server = start_server("echo", settings={"websocket_compression": "false"})
    client = server.connect_raw()
    client.handshake()
    count, size, batch = 8000, 1000, 24
    payloads = [f"{i:06d}".encode().ljust(size, b"x") for i in range(count)]
    frames = [frame(0x2, p) for p in payloads]

    failures = []

    def send():
        try:
            for i in range(0, batched, batch):
                client.send(b"".join(frames[i:i + batch]))
                client.wait_read()  # a read for each batch
            client.send(b"".join(frames[batched:]))
        except Exception as e:  # noqa: BLE001  (reported by the test below)
            failures.append(e)

    sender = threading.Thread(target=send)
    sender.start()
    # Nothing is read until the server's socket send buffer is full: from then on its
    # writes end short (8 MB of echoes is more than that buffer and ours hold).
    wait_for(client.sock, lambda s: s.wmem_queued >= s.sndbuf,
             "the server's send buffer did not fill", TIMEOUT)
    for i, payload in enumerate(payloads):
        assert client.recv_message() == (0x2, payload), f"echo {i}"
    sender.join()
    assert not failures, failures
    assert_echo_serves(server)
