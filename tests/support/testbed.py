# SPDX-License-Identifier: MIT
"""Driving the testbed server (tests/integration/testbed.c): starting it, opening
connections whose ids it prints, running its "!" commands; and helpers for clients that
talk to eddy through ctypes."""

import re
import struct
import subprocess
import os


def start_testbed(start_server, *args, settings=None, workers=1):
    """Starts the testbed with `workers` loops unless settings name worker_num. One loop
    is the default: most tests check the order of lines printed for several connections,
    which several loop threads do not define (test_threads covers those)."""
    settings = dict(settings or {})
    settings.setdefault("worker_num", str(workers))
    server = start_server("testbed", *args, settings=settings)
    server.expect("start")
    return server


def connected(server):
    """Reads the "connect N" line of a new connection and returns N."""
    line = server.line()
    match = re.fullmatch(r"connect (\d+)", line)
    assert match, f"expected a connect line, got {line!r}"
    return int(match.group(1))


def open_ws(server, path="/", headers=None):
    """Opens a WebSocket to the testbed; returns (client, fd). With several loops the
    "connect" and "open" lines of one connection are in order, but lines of different
    connections may interleave: open connections one by one."""
    client = server.connect_raw()
    client.handshake(path, headers=headers)
    fd = connected(server)
    server.expect(f"open {fd} {path} -")
    return client, fd


def cmd(server, client, text):
    """Runs a testbed command and returns its result (the text after "= ")."""
    client.send_frame(0x1, ("!" + text).encode())
    line = server.line()
    assert line.startswith("="), line
    return line[2:] if len(line) > 1 else ""


def next_close(client):
    """Skips frames up to the server's close; returns (code or None, reason bytes)."""
    while True:
        _, _, opcode, payload = client.recv_frame()
        if opcode == 0x8:
            return (struct.unpack("!H", payload[:2])[0] if payload else None), payload[2:]


def ctypes_env(lib):
    """Environment for a Python process loading lib through ctypes: a sanitizer runtime
    the library links to must be loaded first (and Python's own leaks are not ours)."""
    env = dict(os.environ)
    deps = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    for line in deps.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if name.startswith(("libasan", "libtsan")):
            env["LD_PRELOAD"] = rest.split(" (")[0]
            env["ASAN_OPTIONS"] = "detect_leaks=0"
    return env
