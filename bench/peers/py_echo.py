#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""python3-websockets (Debian's 10.4) asyncio echo server for bench/run.

Usage: py_echo.py PORT [HOST]. Prints one line when listening, nothing afterwards.
Compression and keepalive pings are off, as in eddy's defaults."""

import asyncio
import signal
import sys

import websockets


async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9503
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    stop = asyncio.get_running_loop().create_future()
    for signo in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signo, stop.set_result, None)
    async with websockets.serve(echo, host, port, compression=None, ping_interval=None,
                                max_size=2**21, backlog=511):
        print(f"websockets {websockets.__version__} listening on {host}:{port}", flush=True)
        await stop


asyncio.run(main())
