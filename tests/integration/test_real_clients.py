# SPDX-License-Identifier: MIT
"""Real clients against eddy, plain and TLS, with and without permessage-deflate: Debian's
python3-websockets, Node's `ws` (from tests/clients, installed by `make test`), and headless
Chromium loading a page that eddy serves itself."""

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import tempfile

import pytest
import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from eddyserver import ROOT, TIMEOUT, chromium_binary

CLIENTS = os.path.join(ROOT, "tests", "clients")
MIB = 1024 * 1024


def tls_settings(cert):
    return {"ssl_cert_file": cert[0], "ssl_key_file": cert[1]}


def start_echo(start_server, tls_cert, compression):
    settings = dict(tls_settings(tls_cert))
    if compression:
        settings["websocket_compression"] = "true"
    return start_server("testbed", "--tls-port", "0", settings=settings)


def message_lines(server, count):
    """The testbed's "message <fd> <opcode> <flags> ..." lines for the next count messages."""
    lines = []
    while len(lines) < count:
        line = server.line()
        if line.startswith("message "):
            lines.append(line.split(" "))
    return lines


# ---- python3-websockets ----

PY_MESSAGES = ["hello", "héllo ✓", b"\x00\x01\xff" * 100, "z" * MIB,
               json.dumps([{"id": i, "tag": "same"} for i in range(3000)]), ""]


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_python_websockets(start_server, tls_cert, compression, secure):
    server = start_echo(start_server, tls_cert, compression)
    if secure:
        url = f"wss://localhost:{server.tls_port}/py"
        context = ssl.create_default_context(cafile=tls_cert[0])
    else:
        url, context = f"{server.url}/py", None

    async def run():
        async with websockets.connect(
                url, ssl=context, max_size=4 * MIB,
                compression="deflate" if compression else None) as ws:
            negotiated = ws.response_headers.get("Sec-WebSocket-Extensions")
            for message in PY_MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.close(code=4000, reason="py done")
            return negotiated

    negotiated = asyncio.run(run())
    assert (negotiated == "permessage-deflate") == compression
    assert negotiated is None or compression
    lines = message_lines(server, len(PY_MESSAGES))
    # RSV1 (flag 4) marks what python sent compressed; it compresses everything but tiny
    # messages once deflate is negotiated.
    compressed = [int(parts[3]) & 4 != 0 for parts in lines]
    if compression:
        assert compressed[3] and compressed[4], lines
    else:
        assert not any(compressed)
    server.expect("close 1 3")


def test_python_deflate_parameters(start_server, tls_cert):
    """Restricted windows and no context takeover in both directions."""
    server = start_echo(start_server, tls_cert, True)
    factory = ClientPerMessageDeflateFactory(server_no_context_takeover=True,
                                             client_no_context_takeover=True,
                                             server_max_window_bits=9, client_max_window_bits=10)

    async def run():
        async with websockets.connect(server.url, extensions=[factory], max_size=4 * MIB) as ws:
            header = ws.response_headers["Sec-WebSocket-Extensions"]
            for message in PY_MESSAGES * 3:
                await ws.send(message)
                assert await ws.recv() == message
            return header

    header = asyncio.run(run())
    assert header == ("permessage-deflate; server_no_context_takeover; "
                      "client_no_context_takeover; server_max_window_bits=9; "
                      "client_max_window_bits=10")


# ---- Node ws ----

def node_client(url, *args):
    if shutil.which("node") is None or not os.path.isdir(os.path.join(CLIENTS, "node_modules")):
        pytest.fail("node and tests/clients/node_modules are needed: run `make test`")
    out = subprocess.run(["node", os.path.join(CLIENTS, "ws_client.js"), url, *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_node_ws(start_server, tls_cert, compression, secure):
    server = start_echo(start_server, tls_cert, compression)
    args = ["--deflate"] if compression else []
    if secure:
        url = f"wss://localhost:{server.tls_port}/node"
        args += ["--ca", tls_cert[0]]
    else:
        url = f"{server.url}/node"
    report = node_client(url, *args)
    assert report["error"] is None, report
    assert report["ok"], report
    names = [r["name"] for r in report["results"]]
    assert names == ["text", "binary", "utf8", "json", "text-1mib", "binary-1mib", "empty",
                     "ping", "close"]
    assert report["extensions"] == ("permessage-deflate" if compression else "")
    lines = message_lines(server, 7)
    if compression:
        # ws compresses messages above its 1 KiB threshold: json and the 1 MiB ones.
        assert all(int(lines[i][3]) & 4 for i in (3, 4, 5)), lines
    server.expect("close 1 3")


# ---- Chromium ----

def test_chromium(start_server, tls_cert):
    page = os.path.join(CLIENTS, "browser.html")
    settings = dict(tls_settings(tls_cert), websocket_compression="true")
    server = start_server("testbed", "--request", "--page", page, "--tls-port", "0",
                          settings=settings)
    profile = tempfile.mkdtemp(prefix="eddy-chromium-")
    url = f"http://127.0.0.1:{server.port}/page?tls={server.tls_port}"
    browser = subprocess.Popen(
        [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
         # The test certificate is self-signed; the page connects to 127.0.0.1 only.
         "--ignore-certificate-errors", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report = None
        while report is None:
            line = server.line(timeout=60)
            if line.startswith("report "):
                report = json.loads(line[len("report "):])
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)
    assert [r["url"].split("/")[-1] for r in report] == ["plain", "secure"]
    for run in report:
        assert run["error"] is None, run
        assert run["extensions"].startswith("permessage-deflate"), run
        assert [r["name"] for r in run["results"]] == [
            "text", "utf8", "binary", "compressible", "text-1mib", "binary-1mib"]
        assert all(r["ok"] for r in run["results"]), run
        assert run["close"] == {"code": 1000, "clean": True}, run
    # The browser compressed its messages (RSV1 seen by the server).
    assert any(line.startswith("message ") and int(line.split(" ")[3]) & 4
               for line in server.stdout_seen)
