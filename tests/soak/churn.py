#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Churn soak: thousands of WebSocket connects and closes against one server, with TLS,
permessage-deflate and pub/sub together, then a check that the server's descriptors and
resident memory come back to where they were after a warm-up.

    python3 tests/soak/churn.py [--connections 5000] [--concurrency 64] [--seconds 300]

It runs examples/pubsub from EDDY_BUILD (default build) on 127.0.0.1 with a plain and a TLS
listener and compression on. Each connection is one of: subscriber (stays until a
publication arrives), publisher (publishes to a topic), echo client; over plain or TLS;
with or without compression; closed cleanly or dropped (TCP reset without a close frame).
A warm-up round fills the allocator's and the loops' caches first; its end, once the
descriptor count holds still, is the baseline. Exit status 0 when the descriptor count equals the baseline and RSS grew by less
than --rss-slack-kib, 1 otherwise. The integration test test_soak.py runs a short round.
"""

import argparse
import asyncio
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "support"))

import websockets  # noqa: E402

from eddyserver import Server  # noqa: E402

TOPICS = 8


def make_cert(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Churn:
    def __init__(self, server, tls_context):
        self.server = server
        self.tls_context = tls_context
        self.counts = {"sub": 0, "pub": 0, "echo": 0, "dropped": 0, "tls": 0, "deflate": 0}
        self.failures = []

    def url(self, tls, path):
        if tls:
            return f"wss://127.0.0.1:{self.server.tls_port}{path}"
        return f"ws://127.0.0.1:{self.server.port}{path}"

    async def one(self, rng):
        kind = rng.choice(("sub", "sub", "pub", "echo"))
        tls = rng.random() < 0.5
        compression = "deflate" if rng.random() < 0.5 else None
        drop = rng.random() < 0.25
        topic = f"t{rng.randrange(TOPICS)}"
        path = {"sub": f"/sub?topic={topic}", "pub": f"/pub?topic={topic}", "echo": "/"}[kind]
        self.counts[kind] += 1
        self.counts["tls"] += tls
        self.counts["deflate"] += compression is not None
        ws = await websockets.connect(self.url(tls, path), ssl=self.tls_context if tls else None,
                                      compression=compression, open_timeout=10,
                                      close_timeout=2, max_size=None)
        try:
            if kind == "pub":
                for i in range(rng.randrange(1, 4)):
                    await ws.send(f"{topic} message {i} " + "x" * rng.randrange(0, 2000))
            elif kind == "echo":
                payload = os.urandom(rng.randrange(1, 4000))
                await ws.send(payload)
                got = await asyncio.wait_for(ws.recv(), 10)
                if got != payload:
                    self.failures.append("echo returned other bytes")
            else:
                # A subscriber may or may not see a publication before it leaves: both are
                # part of the churn (deliveries to connections that are closing).
                try:
                    await asyncio.wait_for(ws.recv(), rng.random() * 0.05)
                except asyncio.TimeoutError:
                    pass
        finally:
            if drop:
                self.counts["dropped"] += 1
                ws.transport.abort()
            else:
                await ws.close()

    async def run(self, total, concurrency, seed, deadline):
        rng = random.Random(seed)
        queue = asyncio.Queue()
        for _ in range(total):
            queue.put_nowait(None)

        async def worker():
            while not queue.empty() and time.monotonic() < deadline:
                queue.get_nowait()
                try:
                    await self.one(rng)
                except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                    self.failures.append(f"{type(e).__name__}: {e}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total - queue.qsize()


async def settle(pid, baseline_fds, seconds):
    """Waits for the server to have closed every churned connection (lingering closes
    included): the descriptor count comes back to the baseline or the time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if descriptors(pid) <= baseline_fds:
            return True
        await asyncio.sleep(0.1)
    return descriptors(pid) <= baseline_fds


async def steady(pid, seconds):
    """The server's descriptor count once it has not changed for half a second (the
    warm-up's connections closing, each loop's start-up), or after `seconds`."""
    deadline = time.monotonic() + seconds
    count, since = descriptors(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 0.5:
        await asyncio.sleep(0.05)
        now = descriptors(pid)
        if now != count:
            count, since = now, time.monotonic()
    return count


async def soak(args):
    with tempfile.TemporaryDirectory() as directory:
        cert, key = make_cert(directory)
        server = Server("pubsub", ("--tls-port", "0"), {
            "ssl_cert_file": cert, "ssl_key_file": key, "websocket_compression": "true",
            "worker_num": str(args.workers)})
        try:
            tls_context = ssl.create_default_context(cafile=cert)
            churn = Churn(server, tls_context)
            pid = server.proc.pid
            deadline = time.monotonic() + args.seconds
            await churn.run(args.warmup, args.concurrency, 1, deadline)
            base_fds, base_rss = await steady(pid, 10), rss_kib(pid)
            churn.counts = dict.fromkeys(churn.counts, 0)
            done = await churn.run(args.connections, args.concurrency, 2, deadline)
            settled = await settle(pid, base_fds, 10)
            end_fds, end_rss = descriptors(pid), rss_kib(pid)
        finally:
            server.stop()
    rss_growth = end_rss - base_rss
    print(f"churned {done} connections after a warm-up of {args.warmup}: {churn.counts}")
    print(f"descriptors {base_fds} -> {end_fds}; RSS {base_rss} KiB -> {end_rss} KiB "
          f"({rss_growth:+d} KiB, slack {args.rss_slack_kib} KiB)")
    ok = True
    if done < args.connections:
        print(f"FAIL: only {done} of {args.connections} connections within {args.seconds} s")
        ok = False
    if churn.failures:
        print(f"FAIL: {len(churn.failures)} client failures, first: {churn.failures[0]}")
        ok = False
    if not settled:
        print("FAIL: descriptors did not return to the baseline")
        ok = False
    if rss_growth >= args.rss_slack_kib:
        print("FAIL: resident memory did not return to the baseline")
        ok = False
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=300,
                        help="bound on the whole run (default 300)")
    parser.add_argument("--rss-slack-kib", type=int, default=2048,
                        help="allowed RSS growth after the warm-up (default 2048 KiB)")
    args = parser.parse_args()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
