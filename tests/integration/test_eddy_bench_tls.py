# SPDX-License-Identifier: MIT
"""eddy-bench --tls, the load generator of the wss benchmarks: after OpenSSL's handshake it
seals and opens the TLS 1.3 records itself (src/tls13.c), or with --openssl-records leaves them
to OpenSSL. Either way every echo comes back intact, with eddy's server (whose records are
tls13.c's too) and with a server on OpenSSL's record layer (Python's ssl), which also sends
session tickets the client must skip; messages larger than a record span several; the
server's close_notify ends a connection as a close, not as an error."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from eddyserver import BUILD, ROOT, free_port, wait_for

BENCH_BUILD = os.path.join(BUILD, "bench")
EDDY_BENCH = os.path.join(BENCH_BUILD, "eddy-bench")

# A wss echo server on Python's ssl (OpenSSL's record layer, two session tickets by default).
PYTHON_WSS = textwrap.dedent("""
    import asyncio, ssl, sys
    import websockets

    async def echo(ws, path=None):
        async for message in ws:
            await ws.send(message)

    async def main():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), ssl=context,
                                    max_size=None, compression=None):
            await asyncio.Future()

    asyncio.run(main())
""")


@pytest.fixture(scope="module")
def eddy_bench():
    """eddy-bench, built from this checkout (two files: a few seconds)."""
    subprocess.run(["make", "--no-print-directory", "-s", f"BENCH_BUILD={BENCH_BUILD}",
                    EDDY_BENCH], cwd=ROOT, check=True, timeout=120)
    return EDDY_BENCH


@pytest.fixture
def eddy_wss(start_server, tls_cert):
    server = start_server("echo", "--tls-port", "0",
                          settings={"ssl_cert_file": tls_cert[0], "ssl_key_file": tls_cert[1],
                                    "worker_num": 1})
    return server.tls_port


@pytest.fixture
def python_wss(tls_cert):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", PYTHON_WSS, str(port), *tls_cert],
                            stderr=subprocess.PIPE, text=True)
    def up():
        assert proc.poll() is None, proc.stderr.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(up, "the Python wss server listening")
        yield port
    finally:
        proc.kill()
        proc.wait()


def run_bench(*args):
    out = subprocess.run([EDDY_BENCH, *args], capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON line (exit {out.returncode}): {out.stdout} {out.stderr}"
    assert out.returncode == 0, out.stderr
    return json.loads(lines[-1])


RECORDS = {"tls13.c": (), "openssl": ("--openssl-records",)}


@pytest.mark.parametrize("records", RECORDS)
@pytest.mark.parametrize("size", [20, 40000], ids=["one-record", "three-records"])
@pytest.mark.parametrize("server", ["eddy", "python-ssl"])
def test_echo_over_tls(eddy_bench, request, server, size, records):
    port = request.getfixturevalue("eddy_wss" if server == "eddy" else "python_wss")
    result = run_bench("echo", "--tls", *RECORDS[records], "-c", "4", "-d", "2", "-s", str(size),
                       "--binary", "-t", "0.5", "--warmup", "0.2", "--port", str(port))
    assert result["tls"].startswith("TLSv1.3 ") and result["tls_records"] == records
    assert result["open"] == 4 and result["errors"] == 0 and result["lost"] == 0
    # Sampled echoes are compared byte for byte with what was sent.
    assert result["messages"] > 0 and result["verified"] >= 4


@pytest.mark.parametrize("records", RECORDS)
def test_handshakes_end_with_the_servers_close_notify(eddy_bench, eddy_wss, records):
    # Each connection upgrades, closes, and waits for the server to close the TCP connection:
    # with tls13.c the server's close_notify alert must read as the end of the stream.
    result = run_bench("handshake", "--tls", *RECORDS[records], "-c", "4", "-t", "0.5",
                       "--warmup", "0.2", "--port", str(eddy_wss))
    assert result["handshakes"] > 0
    assert result["errors"] == 0 and result["close_timeouts"] == 0
