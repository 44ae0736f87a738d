# SPDX-License-Identifier: MIT
"""bench/instructions (callgrind, user-space instructions per echoed message) against the eddy
program's /ws echo: --sio-idle N holds N idle Engine.IO sessions open through both runs, and
the count fails with a clear line when the server has no Socket.IO endpoint to hold them on.
Skipped without valgrind, and in sanitizer builds (valgrind cannot run them)."""

import os
import re
import shutil
import subprocess

import pytest

from eddyserver import BUILD, ROOT, free_port

EDDY = os.path.join(BUILD, "eddy")
INSTRUCTIONS = os.path.join(ROOT, "bench", "instructions")
EDDY_BENCH = os.path.join(ROOT, "build", "bench", "eddy-bench")  # where the script looks

pytestmark = pytest.mark.skipif(
    shutil.which("valgrind") is None or os.path.basename(BUILD).startswith("san-"),
    reason="needs valgrind and a build without sanitizers")


@pytest.fixture(scope="module")
def eddy_bench():
    # The Makefile's target is the relative path.
    subprocess.run(["make", "--no-print-directory", "-s", os.path.relpath(EDDY_BENCH, ROOT)],
                   cwd=ROOT, check=True, timeout=120)


def count(tmp_path, socketio, *options):
    port = free_port()
    conf = tmp_path / "eddy.conf"
    conf.write_text(f"[server]\nhost = 127.0.0.1\nport = {port}\nworker_num = 1\n"
                    f"[log]\nlog_level = warning\n"
                    f"[socketio]\nenabled = {'true' if socketio else 'false'}\n")
    return subprocess.run([INSTRUCTIONS, "--port", str(port), "--path", "/ws", *options, "--",
                           EDDY, "serve", "-c", str(conf)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)


def test_sio_idle_counts_beside_engine_io_sessions(tmp_path, eddy_bench):
    out = count(tmp_path, True, "--sio-idle", "3")
    assert out.returncode == 0, out.stderr
    found = re.search(r"echo beside 3 idle Engine\.IO sessions: (\d+) instructions per message",
                      out.stdout)
    assert found, out.stdout
    assert 100 < int(found.group(1)) < 10000


def test_sio_idle_without_socketio_fails_clearly(tmp_path, eddy_bench):
    out = count(tmp_path, False, "--sio-idle", "3")
    assert out.returncode == 1
    assert "--sio-idle: eddy-bench:" in out.stderr and "101" in out.stderr
    assert "the runs did not count more messages in 4 s than in 1 s" in out.stderr
