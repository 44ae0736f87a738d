# SPDX-License-Identifier: MIT
"""Client-side cost of python-websockets' client: the same exchange as eddy_client.c
(MESSAGES of SIZE bytes, WINDOW in flight, binary), CPU per message from getrusage.

Usage: websockets_client.py URL [MESSAGES [SIZE [WINDOW]]]"""

import asyncio
import resource
import sys
import time

import websockets


def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def main(url, total, size, window):
    payload = b"x" * size
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        cpu0, t0 = cpu(), time.monotonic()
        sent = min(window, total)
        for _ in range(sent):
            await ws.send(payload)
        for _ in range(total):
            await ws.recv()
            if sent < total:
                sent += 1
                await ws.send(payload)
        used, wall = cpu() - cpu0, time.monotonic() - t0
    print(f"python-websockets {total} messages of {size} bytes: {used / total * 1e6:.2f} us CPU "
          f"per message, {total / wall:.0f} messages/s")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], *(int(a) for a in args[1:4])))
