#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/tls_fanout.py: server CPU per message delivered in a WSS fan-out of small frames.

Starts examples/pubsub with a TLS listener (a throw-away self-signed certificate), opens
--subs subscribers over wss and one publisher over ws, then sends --rounds bursts of
--burst messages of --size bytes (each burst in one write, so the server publishes them in
one go and every subscriber's output holds the whole burst), waiting after each burst until
every subscriber has read it. Prints the server's CPU time (user + system, from /proc) per
delivered message over the publishing phase.

Usage: bench/tls_fanout.py [--server build/bench/examples/pubsub] [--subs 50] [--burst 64]
                           [--size 20] [--rounds 200]
"""

import argparse
import base64
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upgrade(sock, path):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit("bench/tls_fanout.py: the server closed during the upgrade")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        sys.exit(f"bench/tls_fanout.py: upgrade refused: {head[:80]!r}")
    return head.split(b"\r\n\r\n", 1)[1]


def masked(payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x82, 0x80 | len(payload)) + mask + body


class Subscriber:
    def __init__(self, port, context):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.buf = upgrade(self.sock, "/sub?topic=bench")

    def read_frames(self, count):
        """Reads count unmasked frames with 7-bit lengths (small payloads)."""
        while count > 0:
            while len(self.buf) >= 2 and len(self.buf) >= 2 + (self.buf[1] & 0x7F):
                self.buf = self.buf[2 + (self.buf[1] & 0x7F):]
                count -= 1
                if count == 0:
                    return
            chunk = self.sock.recv(65536)
            if not chunk:
                sys.exit("bench/tls_fanout.py: a subscriber was closed")
            self.buf += chunk


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="build/bench/examples/pubsub")
    parser.add_argument("--subs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    if not 1 <= args.size <= 125:
        sys.exit("bench/tls_fanout.py: --size must be 1..125")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        server = subprocess.Popen(
            [args.server, "--port", "0", "--tls-port", "0", "--set", "worker_num=1",
             "--set", f"ssl_cert_file={cert}", "--set", f"ssl_key_file={key}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            ports = {}
            deadline = time.monotonic() + 10
            while len(ports) < 2 and time.monotonic() < deadline:
                line = server.stderr.readline()
                match = re.search(r"listening on [^ ]+:(\d+)( \(TLS\))?", line)
                if match:
                    ports["tls" if match.group(2) else "plain"] = int(match.group(1))
            if len(ports) < 2:
                sys.exit("bench/tls_fanout.py: the server did not start")
            # Keep reading its log, so that a full pipe never blocks it.
            threading.Thread(target=server.stderr.read, daemon=True).start()
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            subs = [Subscriber(ports["tls"], context) for _ in range(args.subs)]
            publisher = socket.create_connection(("127.0.0.1", ports["plain"]), timeout=30)
            upgrade(publisher, "/pub?topic=bench")
            burst = masked(b"m" * args.size) * args.burst
            # Warm-up: one burst, which also lets every subscription take effect.
            time.sleep(0.2)
            publisher.sendall(burst)
            for sub in subs:
                sub.read_frames(args.burst)
            start_cpu, start = cpu_seconds(server.pid), time.monotonic()
            for _ in range(args.rounds):
                publisher.sendall(burst)
                for sub in subs:
                    sub.read_frames(args.burst)
            cpu = cpu_seconds(server.pid) - start_cpu
            elapsed = time.monotonic() - start
        finally:
            server.terminate()
            server.wait(timeout=10)
    delivered = args.subs * args.burst * args.rounds
    print(f"wss fan-out: {args.subs} subscribers x {args.rounds} bursts of {args.burst} "
          f"x {args.size} B: {delivered} deliveries in {elapsed:.2f} s, server CPU "
          f"{cpu:.2f} s = {cpu / delivered * 1e9:.0f} ns per delivered message")


if __name__ == "__main__":
    main()
