#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Server memory per connection with permessage-deflate: idle (negotiated, nothing sent yet),
and active (after one compressed message each way), for several compression settings.

Usage: bench/deflate_memory.py [BUILD_DIR] [CONNECTIONS]
Prints a table of bytes per connection (RSS delta of the server divided by connections)."""

import asyncio
import os
import re
import subprocess
import sys

import websockets

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500
MESSAGE = "".join(f'{{"id":{i},"name":"user {i}","active":true}}' for i in range(200))

CONFIGS = [
    ("off", {}),
    ("deflate, context takeover", {"websocket_compression": "true"}),
    ("deflate, no context takeover", {
        "websocket_compression": "true",
        "websocket_compression_server_no_context_takeover": "true",
        "websocket_compression_client_no_context_takeover": "true"}),
    ("deflate, 10-bit windows, memLevel 4", {
        "websocket_compression": "true",
        "websocket_compression_window_bits": "10",
        "websocket_compression_client_window_bits": "10",
        "websocket_compression_mem_level": "4"}),
]


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


async def measure(settings):
    args = [os.path.join(BUILD, "examples", "echo"), "--port", "0"]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    port = int(re.search(r"listening on [^ ]+:(\d+)", proc.stderr.readline()).group(1))
    try:
        compression = "deflate" if settings else None
        # A first connection warms up the loop's shared buffers, which are not per connection.
        async with websockets.connect(f"ws://127.0.0.1:{port}", compression=compression) as ws:
            await ws.send(MESSAGE)
            await ws.recv()
        base = rss(proc.pid)
        conns = [await websockets.connect(f"ws://127.0.0.1:{port}", compression=compression)
                 for _ in range(N)]
        idle = rss(proc.pid)
        for ws in conns:
            await ws.send(MESSAGE)
        for ws in conns:
            await ws.recv()
        active = rss(proc.pid)
        for ws in conns:
            await ws.close()
        return (idle - base) / N, (active - base) / N
    finally:
        proc.terminate()
        proc.wait()


async def main():
    print(f"{N} connections, echo example from {BUILD}; bytes per connection (server RSS)")
    print(f"| {'compression':38} | {'idle':>9} | {'active':>9} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 11}|")
    for name, settings in CONFIGS:
        idle, active = await measure(settings)
        print(f"| {name:38} | {idle:9.0f} | {active:9.0f} |")


asyncio.run(main())
