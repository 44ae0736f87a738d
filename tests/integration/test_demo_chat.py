# SPDX-License-Identifier: MIT
"""The demo chat `make run` serves (www/index.html over socket.io-client, the eddy program with
cmd/eddy.conf) in headless Chromium (tests/clients/chat_demo_browser.js): two pages chat in
a room and see each other online, a third one gets the messages from the history on join
and its departure is seen, one goes to another room and back, and across `eddy restart` (SIGUSR2) a page shows the reconnecting
banner, keeps what is typed meanwhile, reconnects, and no message is lost or shown twice."""

import os
import queue
import shutil
import subprocess
import threading

import pytest

from eddyserver import BUILD, ROOT, SANITIZER_PATTERNS, TIMEOUT, chromium_binary, free_port
from eddyserver import read_text as read
from test_eddy_js import Driver

EDDY = os.path.join(BUILD, "eddy")
SOCKET_IO = os.path.join(ROOT, "www", "vendor", "socket.io.min.js")
COUNT = 5


class ChatDriver(Driver):
    """test_eddy_js's driver reader, on chat_demo_browser.js."""

    def __init__(self, url):  # pylint: disable=super-init-not-called (another script)
        self.proc = subprocess.Popen(
            ["node", os.path.join(ROOT, "tests", "clients", "chat_demo_browser.js"), url,
             chromium_binary(), str(COUNT)], cwd=os.path.join(ROOT, "tests", "clients"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()


def eddy(tmp_path, port, *args):
    env = dict(os.environ, EDDY_SERVER_PORT=str(port), EDDY_SERVER_PID_FILE=str(
        tmp_path / "eddy.pid"), EDDY_LOG_LOG_FILE=str(tmp_path / "eddy.log"))
    return subprocess.run([EDDY, *args, "-c", "cmd/eddy.conf"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_demo_chat_rooms_presence_history_and_a_restart(tmp_path):
    if not os.path.isfile(SOCKET_IO):
        pytest.fail("www/vendor/socket.io.min.js is missing: run `make www-assets`")
    if shutil.which("node") is None:
        pytest.fail("node is needed: run `make test`")
    port = free_port()
    started = eddy(tmp_path, port, "start")
    assert started.returncode == 0, started.stderr + read(tmp_path / "eddy.log")
    driver = ChatDriver(f"http://127.0.0.1:{port}")
    try:
        assert driver.step("online", 60) == {"step": "online", "ann": ["ann", "bob"],
                                             "bob": ["ann", "bob"]}
        both = ["ann: hello from ann", "bob: hi ann"]
        assert driver.step("chatted", 30) == {"step": "chatted", "ann": both, "bob": both}
        history = driver.step("history", 30)
        assert history["cy"] == both and history["ann"] == ["ann", "bob", "cy"]
        assert driver.step("left", 30)["ann"] == ["ann", "bob"]
        assert driver.step("rooms", 30) == {"step": "rooms", "annSaw": both, "bob": both}
        driver.step("restart", 10)
        restarted = eddy(tmp_path, port, "restart")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        banner = driver.step("banner", 30)
        done = driver.step("done", 60)
    finally:
        returncode = driver.finish()
        stopped = eddy(tmp_path, port, "stop")
    assert returncode == 0
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert banner["banner"].startswith("Reconnecting"), banner
    # Every message, once, in the order typed, delivered on both pages; nothing pending.
    everything = both + [f"ann: during {i}" for i in range(COUNT)]
    assert done["ann"] == everything and done["bob"] == everything, done
    assert done["online"] == ["ann", "bob"] and done["banners"] == [None, None], done
    assert done["errors"] == [], done
    log = read(tmp_path / "eddy.log")
    assert "taken over" in log
    assert not any(pattern in log for pattern in SANITIZER_PATTERNS), log
