#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What a namespace costs a Redis Cluster when nothing is sent: each node's lease in each
namespace it serves lives in the namespace's slot, renewed every heartbeat (ZADD,
ZREMRANGEBYSCORE, ZRANGE on the namespace's master; rt/rt_broker.h "Redis Cluster").

Starts a 3-master cluster (Debian's redis-server, no persistence, on loopback), then for
each count N two idle nodes of examples/socketio --redis redis+cluster://... --namespaces N
(namespaces /, /custom and /n1../nN), waits until every namespace holds both nodes' leases,
and reads the masters' INFO (CPU, commandstats) and the nodes' CPU over the window. Prints
one markdown table, and Redis' CPU per node and namespace each second between the smallest
and the largest count.

Usage: bench/scaleout/cluster_leases.py [--namespaces N1,N2,...] [--seconds T]
  --namespaces   the counts N (default 2,200)
  --seconds      the measured window per count (default 20), after 2 s of heartbeats
Environment: EDDY_SIO_SERVER=path (default build/examples/socketio: make examples),
EDDY_SCALEOUT_PORT (default 19621): ports are taken from there, the first free ones."""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.environ.get("EDDY_SIO_SERVER", os.path.join(ROOT, "build", "examples", "socketio"))
MASTERS = 3
NODES = 2


def free_ports(first, n):
    ports, port = [], first
    while len(ports) < n:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                # the cluster bus is the port + 10000
                with socket.socket() as bus:
                    bus.bind(("127.0.0.1", port + 10000))
                ports.append(port)
            except OSError:
                pass
        port += 1
    return ports


def redis(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *map(str, args)], capture_output=True,
                         text=True, timeout=10)
    return out.stdout


def wait_for(what, test, timeout=20):
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            sys.exit(f"cluster_leases: timed out waiting for {what}")
        time.sleep(0.1)


def info(port, section):
    fields = {}
    for line in redis(port, "INFO", section).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def snapshot(masters, nodes):
    """Redis CPU (µs, all masters), commands and their time (µs) but INFO's, nodes' CPU."""
    cpu = calls = usec = 0.0
    for port in masters:
        c = info(port, "cpu")
        cpu += (float(c["used_cpu_sys"]) + float(c["used_cpu_user"])) * 1e6
        for name, value in info(port, "commandstats").items():
            if name.startswith("cmdstat_") and name != "cmdstat_info":
                stats = dict(kv.split("=") for kv in value.split(","))
                calls += int(stats["calls"])
                usec += float(stats["usec"])
    ticks = os.sysconf("SC_CLK_TCK")
    node_cpu = 0.0
    for proc in nodes:
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        node_cpu += (int(fields[11]) + int(fields[12])) * 1e6 / ticks
    return cpu, calls, usec, node_cpu


def leases(masters):
    """{lease key: members} over the masters."""
    found = {}
    for port in masters:
        for key in redis(port, "--scan", "--pattern", "eddy:{*}:l").split():
            found[key] = int(redis(port, "ZCARD", key).strip() or 0)
    return found


def stop(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(n, masters, node_ports, seconds):
    seeds = ",".join(f"127.0.0.1:{p}" for p in masters)
    nodes = [subprocess.Popen([SERVER, "--host", "127.0.0.1", "--port", str(port), "--redis",
                               f"redis+cluster://{seeds}", "--namespaces", str(n), "--set",
                               "log_level=error"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for port in node_ports]
    try:
        want = n + 2  # "/" and "/custom" too

        def leased():
            if any(node.poll() is not None for node in nodes):
                sys.exit(f"cluster_leases: {SERVER} exited")
            return sorted(leases(masters).values()) == [NODES] * want
        wait_for(f"{want} namespaces leased by {NODES} nodes", leased, timeout=30)
        time.sleep(2)
        before = snapshot(masters, nodes)
        time.sleep(seconds)
        after = snapshot(masters, nodes)
        cpu, calls, usec, node_cpu = ((b - a) / seconds for a, b in zip(before, after))
        return {"namespaces": want, "cpu": cpu, "calls": calls, "usec": usec,
                "node_cpu": node_cpu / NODES}
    finally:
        stop(nodes)
        # The nodes remove their leases when stopped; the next count starts clean.
        wait_for("the leases to go", lambda: not leases(masters))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--namespaces", default="2,200")
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    counts = sorted(int(n) for n in args.namespaces.split(","))
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"cluster_leases: {tool} is needed (Debian package redis-server)")
    if not os.access(SERVER, os.X_OK):
        sys.exit(f"cluster_leases: {SERVER} is not built (make examples)")
    ports = free_ports(int(os.environ.get("EDDY_SCALEOUT_PORT", "19621")), MASTERS + NODES)
    masters, node_ports = ports[:MASTERS], ports[MASTERS:]
    tmp = tempfile.mkdtemp(prefix="eddy-cluster-leases-")
    procs = [subprocess.Popen(["redis-server", "--port", str(p), "--bind", "127.0.0.1",
                               "--cluster-enabled", "yes", "--cluster-config-file",
                               f"nodes-{p}.conf", "--dir", tmp, "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
             for p in masters]
    try:
        for p in masters:
            wait_for(f"redis-server {p}", lambda p=p: redis(p, "PING").strip() == "PONG")
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in masters],
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for p in masters:
            wait_for(f"cluster_state:ok on {p}",
                     lambda p=p: "cluster_state:ok" in redis(p, "CLUSTER", "INFO"))
        rows = [measure(n, masters, node_ports, args.seconds) for n in counts]
    finally:
        stop(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"Idle Redis Cluster ({MASTERS} masters), {NODES} idle nodes, {args.seconds:g} s "
          "windows\n")
    print("| namespaces | Redis CPU, µs/s | commands/s | command time, µs/s | "
          "node CPU, µs/s each |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['namespaces']} | {r['cpu']:,.0f} | {r['calls']:,.0f} | {r['usec']:,.0f} | "
              f"{r['node_cpu']:,.0f} |")
    if len(rows) > 1:
        added = (rows[-1]["namespaces"] - rows[0]["namespaces"]) * NODES
        print(f"\nPer node and namespace each second: "
              f"{(rows[-1]['cpu'] - rows[0]['cpu']) / added:.1f} µs of Redis CPU, "
              f"{(rows[-1]['calls'] - rows[0]['calls']) / added:.1f} commands, "
              f"{(rows[-1]['usec'] - rows[0]['usec']) / added:.2f} µs of command time")


if __name__ == "__main__":
    main()
