#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Server memory per idle wss connection, over TLS 1.2 and TLS 1.3.

Usage: bench/tls_memory.py [BUILD_DIR] [CONNECTIONS]
Starts BUILD_DIR/examples/echo (default build) with a TLS listener and a throw-away P-256
certificate, opens CONNECTIONS (default 500) WebSocket connections over each TLS version,
waits until the once-a-second sweep has freed what quiet connections hold, and prints the
server's RSS growth per connection. A fresh server per version, so that neither inherits
the other's heap."""

import asyncio
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time

import websockets

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 500


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def certificate(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True,
                   capture_output=True)
    return cert, key


async def hold(port, version, count):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    conns = []
    for _ in range(count):
        conns.append(await websockets.connect(f"wss://127.0.0.1:{port}/", ssl=context,
                                              compression=None))
    return conns


def measure(cert, key, version):
    server = subprocess.Popen(
        [os.path.join(BUILD, "examples", "echo"), "--port", "0", "--tls-port", "0",
         "--set", "worker_num=1", "--set", "log_level=info",
         "--set", f"ssl_cert_file={cert}", "--set", f"ssl_key_file={key}"],
        stderr=subprocess.PIPE, text=True)
    try:
        port = None
        while port is None:
            line = server.stderr.readline()
            if not line:
                raise SystemExit("the echo example exited: " + str(server.wait()))
            found = re.search(r"listening on .*:(\d+) \(TLS\)", line)
            port = int(found.group(1)) if found else None
        time.sleep(0.5)
        before = rss(server.pid)
        loop = asyncio.new_event_loop()
        conns = loop.run_until_complete(hold(port, version, N))
        time.sleep(3)  # the sweep frees quiet connections' record buffers (TLS 1.2)
        after = rss(server.pid)
        for conn in conns:
            loop.run_until_complete(conn.close())
        loop.close()
        return (after - before) / N
    finally:
        server.terminate()
        server.wait()


def main():
    with tempfile.TemporaryDirectory() as directory:
        cert, key = certificate(directory)
        print(f"| {N} idle wss connections, examples/echo, one loop | server RSS per connection |")
        print("|---|---|")
        for name, version in (("TLS 1.2", ssl.TLSVersion.TLSv1_2),
                              ("TLS 1.3", ssl.TLSVersion.TLSv1_3)):
            print(f"| {name} | {measure(cert, key, version):,.0f} B |")


main()
