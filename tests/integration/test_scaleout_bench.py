# SPDX-License-Identifier: MIT
"""bench/scaleout/run, the two-node comparison (eddy's examples/socketio --redis against
Node's socket.io 4.8 with @socket.io/redis-adapter), in a short run of its own: the script
cannot rot unnoticed, and each side's numbers come from members on both nodes getting every
emit. Skipped when bench/scaleout's npm packages are not installed (scripts/deps.sh test
installs them), and in a sanitizer build's pass: half of each run is Node's side, and the
plain pass checks the script (about 28 s a pass)."""

import json
import os
import random
import re
import shutil
import subprocess

import pytest

from eddyserver import BUILD, ROOT
from sioserver import SioServer

SCALEOUT = os.path.join(ROOT, "bench", "scaleout")
EDDY_SOCKETIO = os.path.join(BUILD, "examples", "socketio")

pytestmark = [
    pytest.mark.skipif(not os.path.isdir(os.path.join(SCALEOUT, "node_modules",
                                                      "@socket.io", "redis-adapter")),
                       reason="bench/scaleout/node_modules is not installed "
                              "(npm ci --prefix bench/scaleout)"),
    pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "examples", "socketio.c")),
                       reason="examples/socketio.c is not here"),
    pytest.mark.skipif(os.path.basename(BUILD).startswith("san-"),
                       reason="the benchmark script: run in the plain pass"),
]


def load_results(out):
    runs = {}
    with open(os.path.join(out, "results.tsv"), encoding="utf-8") as f:
        for line in f:
            case, server, _, result = line.rstrip("\n").split("\t", 3)
            runs[(case, server)] = json.loads(result)
    return runs


def test_scaleout_bench_quick(tmp_path):
    for tool in ("redis-server", "redis-cli", "node", "taskset", "ss"):
        assert shutil.which(tool), f"{tool} is needed: make deps-test"
    out = str(tmp_path / "out")
    # The script takes the first three ports from here with no socket on them; below the
    # ephemeral range (32768 on), where no client's connection can take one meanwhile.
    env = dict(os.environ, EDDY_SIO_SERVER=EDDY_SOCKETIO,
               EDDY_SCALEOUT_PORT=str(random.randrange(20000, 30000)))
    proc = subprocess.run(
        [os.path.join(SCALEOUT, "run"), "--quick", "--members", "20", "--rates", "100",
         "--seconds", "1", "--idle", "50", "--out", out],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = load_results(out)
    assert set(runs) == {(case, server) for case in ("rate100", "idle")
                         for server in ("eddy", "node")}, proc.stderr[-3000:]
    for server in ("eddy", "node"):
        idle = runs[("idle", server)]
        # Redis was read with all 50 sockets open on the first node.
        assert idle["open"] == 50 and idle["failed"] == 0, server
        assert idle["redis_memory_delta"] is not None and idle["bytes_per_conn"] is not None
    for server in ("eddy", "node"):
        r = runs[("rate100", server)]
        # Every member, 10 on each node, got every emit: a member missing one would leave
        # that emit incomplete (the run stalls with an error) or count as an error.
        assert r["subscribers"] == 20 and r["errors"] == 0 and r["lost"] == 0, server
        assert r["messages"] > 0, server
        assert r["steady_published"] > 0 and r["steady_deliveries"] > 0, server
        # Redis did the cluster's work (each emit crosses it), measured in the window.
        assert r["redis_cpu_s"] > 0 and r["redis_us_per_published"] > 0, server
        assert r["redis_idle_busy"] is not None, server
        # PUBLISH commands Redis ran, per emit: eddy publishes each emit once (its nodes'
        # pings to themselves come on top).
        assert r["redis_publish_calls_per_published"] >= (0.95 if server == "eddy" else 0.01)
        assert r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"], server
    with open(os.path.join(out, "table.md"), encoding="utf-8") as f:
        table = f.read()
    row = next(line for line in table.splitlines()
               if "| Redis CPU µs per published message |" in line)
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] and cells[4] and cells[5], row  # eddy, Node and their ratio


def test_port2_puts_every_second_member_on_the_other_server(tmp_path):
    """Two servers that are not a cluster: with --port2 half the room is on a server the
    emits never reach, so no emit completes and the run stops with an error; without it
    every member is on the sender's server and the run completes."""
    bench = os.path.join(BUILD, "bench", "eddy-bench")
    subprocess.run(["make", "--no-print-directory", "-s", f"BENCH_BUILD={BUILD}/bench",
                    bench], cwd=ROOT, check=True, timeout=120)
    a, b = SioServer("reference"), SioServer("reference")
    try:
        common = [bench, "publish", "--sio", "-c", "4", "-n", "20", "-s", "20", "--inflight",
                  "2", "--publish-warmup", "2", "--stall", "1", "-t", "10", "--port",
                  str(a.port), "--server-pid", str(a.proc.pid), "--server-pid",
                  str(b.proc.pid)]
        alone = subprocess.run(common, capture_output=True, text=True, timeout=60)
        split = subprocess.run(common + ["--port2", str(b.port)], capture_output=True,
                               text=True, timeout=60)
    finally:
        a.stop()
        b.stop()
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout.splitlines()[-1])["deliveries"] == 18 * 4
    assert split.returncode != 0
    assert "no message completed for" in split.stderr


def perf_counts():
    """Whether perf stat can count a process's syscalls here (not in every container)."""
    try:
        proc = subprocess.run(["perf", "stat", "-x,", "-e", "syscalls:sys_enter_write", "--",
                               "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and "sys_enter_write" in proc.stderr


@pytest.mark.skipif(not perf_counts(), reason="perf stat cannot count syscalls here")
def test_scaleout_bench_probe(tmp_path):
    """--probe perf over eddy's side: probe.md has, for the idle window and the rate's steady
    window, Redis' CPU, its syscalls (perf stat) and commands (commandstats), in which the
    nodes' heartbeats show (ZADD), and the size of a broadcast's PUBLISH (MONITOR)."""
    out = str(tmp_path / "out")
    env = dict(os.environ, EDDY_SIO_SERVER=EDDY_SOCKETIO,
               EDDY_SCALEOUT_PORT=str(random.randrange(20000, 30000)))
    proc = subprocess.run(
        [os.path.join(SCALEOUT, "run"), "--quick", "--servers", "eddy", "--members", "20",
         "--rates", "100", "--seconds", "3", "--idle", "0", "--idle-seconds", "2", "--probe",
         "perf", "--out", out],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "probe.md"), encoding="utf-8") as f:
        sections = f.read().split("\n### ")[1:]
    assert [s.split(":")[0] for s in sections] == [
        "nodes up, nothing published (before each 100 emits/s case)", "100 emits/s"], sections
    for section in sections:
        rows = {}
        for line in section.splitlines():
            cells = [c.strip() for c in line.split("|")]
            if len(cells) == 5 and cells[2] and cells[1] not in ("figure", "---"):
                rows[cells[1]] = float(cells[2].split()[0].replace(",", ""))
        assert rows["perf: task-clock ms/s"] > 0 and rows["perf: epoll_wait/s"] > 0, rows
        assert rows["cmd zadd: calls/s"] > 0, rows  # the nodes' leases
    assert "| size (RESP bytes) of PUBLISH eddy:{/}:c:bench |" in sections[1]


def test_cluster_leases(tmp_path):
    """bench/scaleout/cluster_leases.py (what an idle namespace costs a Redis Cluster) in a
    short run: its table has a row per count, and the heartbeats' 3 commands per node and
    namespace each second (ZADD, ZREMRANGEBYSCORE, ZRANGE) show in the difference (Redis'
    CPU over 3 s is noise: its idle cluster bus costs more than 8 namespaces)."""
    env = dict(os.environ, EDDY_SIO_SERVER=EDDY_SOCKETIO,
               EDDY_SCALEOUT_PORT=str(random.randrange(20000, 30000)))
    proc = subprocess.run(
        [os.path.join(SCALEOUT, "cluster_leases.py"), "--namespaces", "1,9", "--seconds", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("|")[1].strip() for line in proc.stdout.splitlines()
            if line.startswith("| ") and line[2].isdigit()]
    assert rows == ["3", "11"], proc.stdout
    per = re.search(r"Per node and namespace each second: (-?\d+\.\d) µs of Redis CPU, "
                    r"(\d+\.\d) commands", proc.stdout)
    # A heartbeat more or less in one master's window moves the figure by about 0.25.
    assert per and 1.5 <= float(per.group(2)) <= 4.5, proc.stdout
