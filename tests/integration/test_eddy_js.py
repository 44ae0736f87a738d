# SPDX-License-Identifier: MIT
"""eddy.js (clients/js) in headless Chromium, driven by playwright-core (tests/clients), against
the echo example: connect, an event out and back, then the server goes away (a graceful stop,
which closes with 1001, or SIGKILL, which leaves the browser a 1006) and comes back on the
same port. The page must show "reconnecting in N s", queue what it sends meanwhile, reconnect,
and flush the queue in order without losing a message. The same for the echo page
www/echo.html, which uses the plain-script build, and for what `make run` starts: the eddy
program with cmd/eddy.conf serving that page itself, stopped and started again."""

import functools
import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

from eddyserver import (BUILD, ROOT, SANITIZER_PATTERNS, TIMEOUT, Server, chromium_binary,
                        free_port)

DRIVER = os.path.join(ROOT, "tests", "clients", "eddy_browser.js")
COUNT = 20


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def page_server():
    """Serves the checkout over HTTP on loopback: the page imports /clients/js/src/eddy.js."""
    handler = functools.partial(QuietHandler, directory=ROOT)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class Driver:
    """The node driver: its JSON step lines, read with timeouts."""

    def __init__(self, mode, url):
        if shutil.which("node") is None or not os.path.isdir(
                os.path.join(ROOT, "tests", "clients", "node_modules", "playwright-core")):
            pytest.fail("node and tests/clients/node_modules are needed: run `make test`")
        self.proc = subprocess.Popen(["node", DRIVER, mode, url, chromium_binary(), str(COUNT)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def step(self, name, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {name!r} step within {timeout}s") from None
        if line is None:
            self.proc.wait(TIMEOUT)
            raise AssertionError(f"driver ended before {name!r}: {self.proc.stderr.read()}")
        got = json.loads(line)
        assert got["step"] == name, got
        return got

    def finish(self):
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


@pytest.mark.parametrize("outage", ["graceful", "sigkill"])
def test_eddy_js_survives_server_restart(start_server, page_server, outage):
    # The killed server is not the fixture's: the fixture asserts a clean exit.
    first = Server("echo") if outage == "sigkill" else start_server("echo")
    port = first.port
    driver = Driver("api", f"{page_server}/tests/clients/eddy_page.html"
                    f"?ws=ws://127.0.0.1:{port}/eddyjs")
    try:
        assert driver.step("echoed", 60)["echoed"] == ["héllo ✓", 42]
        if outage == "graceful":
            first.stop()
        else:
            first.proc.kill()
            first.proc.wait(TIMEOUT)
        queued = driver.step("queued", 30)
        # The page saw the outage, says so, and holds everything sent meanwhile.
        assert queued["state"].startswith("reconnecting in "), queued
        assert queued["queueSize"] == COUNT, queued
        start_server("echo", "--port", str(port))
        done = driver.step("done", 60)
    finally:
        returncode = driver.finish()
        if outage == "sigkill" and first.proc.poll() is None:
            first.proc.kill()
    assert returncode == 0
    log = done["log"]
    # Every queued message came back, once, in the order sent.
    assert log["received"] == log["sent"], log
    assert len(log["sent"]) == COUNT
    assert log["opens"] == 2, log
    assert log["closes"][0] == [1001 if outage == "graceful" else 1006, True], log
    assert all(close[1] for close in log["closes"]), log
    assert log["reconnecting"][0] == 1, log
    assert log["drops"] == [], log
    assert done["state"] == "open" and done["queueSize"] == 0, done
    assert done["errors"] == [], done


def test_demo_page_survives_server_restart(start_server, page_server):
    first = start_server("echo")
    port = first.port
    driver = Driver("demo", f"{page_server}/www/echo.html?ws=ws://127.0.0.1:{port}/ws")
    try:
        assert driver.step("echoed", 60)["items"] == ["first echoed"]
        first.stop()
        queued = driver.step("queued", 30)
        assert queued["status"].startswith("reconnecting in "), queued
        assert queued["queueSize"] == COUNT, queued
        start_server("echo", "--port", str(port))
        done = driver.step("done", 60)
    finally:
        returncode = driver.finish()
    assert returncode == 0
    # Newest first: the offline messages echoed in the order typed, after the first one.
    assert done["items"] == [f"offline {i} echoed" for i in reversed(range(COUNT))] + [
        "first echoed"], done
    assert done["status"] == "connected" and done["queueSize"] == 0, done
    assert done["errors"] == [], done


def start_demo(port, tmp_path, run):
    """What `make run` starts: the eddy program with cmd/eddy.conf, from the checkout (so
    www/ is its document root), on `port` instead of 9501."""
    log = open(tmp_path / f"eddy-{run}.log", "w")
    env = dict(os.environ, EDDY_SERVER_PORT=str(port),
               EDDY_SERVER_PID_FILE=str(tmp_path / "eddy.pid"))
    proc = subprocess.Popen([os.path.join(BUILD, "eddy"), "serve", "-c", "cmd/eddy.conf"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    while "listening on" not in (tmp_path / f"eddy-{run}.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, (
            (tmp_path / f"eddy-{run}.log").read_text())
        time.sleep(0.02)
    return proc


def stop_demo(proc, tmp_path, run):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(TIMEOUT) == 0
    text = (tmp_path / f"eddy-{run}.log").read_text()
    assert not any(pattern in text for pattern in SANITIZER_PATTERNS), text


def test_make_run_demo_survives_daemon_restart(tmp_path):
    port = free_port()
    procs = [start_demo(port, tmp_path, 1)]
    # The page and its script come from the program itself; the page connects to /ws there.
    driver = Driver("demo", f"http://127.0.0.1:{port}/echo.html")
    try:
        assert driver.step("echoed", 60)["items"] == ["first echoed"]
        stop_demo(procs[0], tmp_path, 1)
        queued = driver.step("queued", 30)
        assert queued["status"].startswith("reconnecting in "), queued
        assert queued["queueSize"] == COUNT, queued
        procs.append(start_demo(port, tmp_path, 2))
        done = driver.step("done", 60)
        stop_demo(procs[1], tmp_path, 2)
    finally:
        returncode = driver.finish()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert returncode == 0
    assert done["items"] == [f"offline {i} echoed" for i in reversed(range(COUNT))] + [
        "first echoed"], done
    assert done["status"] == "connected" and done["queueSize"] == 0, done
    assert done["errors"] == [], done
