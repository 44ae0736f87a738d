#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns bench/scaleout/run's results.tsv into one markdown table: per publish rate, medians
across rounds for eddy's two nodes and Node's two, their ratio, and the issue's targets.

Usage: bench/scaleout/summarize.py OUT_DIR
Reads OUT_DIR/results.tsv (case "rate<N>", server, round, eddy-bench JSON), OUT_DIR/env.txt
and OUT_DIR/notes.txt; prints markdown on stdout."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchfmt import (fmt_ratio, median, micros, per_cpu_s, pick, print_lines,  # noqa: E402
                      print_problems, rate, table_row)

# Over this share of the window spent waiting for a CPU, summed over the two nodes, a run
# was disturbed (the two nodes share CPU 0, so they also wait for each other: the bound is
# looser than bench/socketio's 10%).
WAIT_LIMIT = 0.5
SERVERS = [("eddy", "eddy"), ("node", "Node")]


def published_per_s(r):
    n, s = r.get("steady_published"), r.get("steady_seconds")
    return n / s if n and s else None


def redis_per_published(r):
    """Redis CPU per emit over the steady window, less what Redis used idle (measured for a
    second before the run, the nodes up) over as long."""
    cpu, idle, secs, n = (r.get(k) for k in ("redis_cpu_s", "redis_idle_busy", "steady_seconds",
                                              "steady_published"))
    if cpu is None or idle is None or not secs or not n:
        return None
    return (cpu - idle * secs) * 1e6 / n


def above_idle(v):
    """Below the idle figure's noise (0.1-0.2% of a CPU, measured over 1 s) shows as 0."""
    return micros(v) if v > 0 else "≈ 0"


def millis(v):
    return f"{v / 1e3:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def share(v):
    return f"{v:.1%}" if v < 0.1 else f"{v:.0%}"


# Each row: (metric, value of one run, formatter, target). A target is (kind, bound, text):
# "ratio_min": eddy / Node at least bound; "ratio_max": at most bound.
ROWS = [
    ("emits published per second (achieved)", published_per_s, rate, None),
    ("delivered messages per server CPU-second (both nodes)", per_cpu_s, rate,
     ("ratio_min", 10, "eddy ≥ 10× Node")),
    ("delivered messages/s", lambda r: r.get("steady_per_s"), rate, None),
    ("delivery latency p50", lambda r: r.get("p50_us"), millis, None),
    ("delivery latency p99", lambda r: r.get("p99_us"), millis, None),
    ("Redis CPU µs per published message", lambda r: r.get("redis_us_per_published"), micros,
     ("ratio_max", 1, "eddy ≤ Node")),
    ("the same, less Redis' idle CPU", redis_per_published, above_idle, None),
    ("Redis traffic per published message: bytes in / out",
     lambda r: r.get("redis_in_bytes_per_published"), None, None),
    ("PUBLISH commands Redis ran per emit (fewer than 1: the server fell behind)",
     lambda r: r.get("redis_publish_calls_per_published"), lambda v: f"{v:.2f}", None),
    ("Redis command time per call of its busiest command (commandstats)",
     lambda r: (r.get("busiest") or {}).get("us_per_call"), micros, None),
    ("Redis CPU idle (nodes up, nothing published)", lambda r: r.get("redis_idle_busy"), share,
     None),
    ("CPU busy: nodes (sum) / Redis / load generator", None, None, None),
]


def busiest_command(path):
    """From a case's INFO commandstats: the command Redis spent the most time in (per emit:
    eddy's EVALSHA, the adapter's PUBLISH) and its µs per call."""
    best = None
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.startswith("cmdstat_"):
                    continue
                name, _, fields = line.strip().partition(":")
                kv = dict(item.split("=", 1) for item in fields.split(","))
                usec = float(kv["usec"])
                if best is None or usec > best["usec"]:
                    best = {"name": name[len("cmdstat_"):], "usec": usec,
                            "us_per_call": float(kv["usec_per_call"])}
    except OSError:
        return None
    return best


def load(out):
    runs = {}
    with open(os.path.join(out, "results.tsv"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 3)
            if len(parts) == 4:
                r = json.loads(parts[3])
                r["busiest"] = busiest_command(os.path.join(
                    out, "logs", f"{parts[0]}-{parts[1]}-{parts[2]}.commandstats"))
                runs.setdefault((parts[0], parts[1]), []).append(r)
    return runs


def disturbed(r):
    return (r.get("server_cpu_wait") or 0) > WAIT_LIMIT or (r.get("client_cpu_wait") or 0) > 0.2


IDLE_ROWS = [
    ("Redis memory per socket (used_memory)",
     lambda r: r["redis_memory_delta"] / r["open"] if r.get("open") else None,
     lambda v: f"{v:,.0f} B"),
    ("Redis channels and patterns per socket",
     lambda r: r["redis_channels_delta"] / r["open"] if r.get("open") else None,
     lambda v: f"{v:.2f}"),
    ("node RSS per socket", lambda r: r.get("bytes_per_conn"), lambda v: f"{v:,.0f} B"),
]


def idle_table(runs):
    if not any(c == "idle" for c, _ in runs):
        return
    sample = (runs.get(("idle", "eddy")) or runs.get(("idle", "node")))[0]
    print()
    print(f"| {sample.get('open', 0):,} idle sockets on one node of the cluster | eddy | Node "
          "| eddy / Node |")
    print("|---|---|---|---|")
    for metric, fn, fmt in IDLE_ROWS:
        vals = {s: median(runs.get(("idle", s), []), fn) for s, _ in SERVERS}
        e, n = vals.get("eddy"), vals.get("node")
        ratio = fmt_ratio(e / n) if e is not None and n else ""
        cells = [fmt(v) if v is not None else "" for v in (e, n)]
        print(f"| {metric} | {cells[0]} | {cells[1]} | {ratio} |")


def main():
    out = sys.argv[1]
    runs = load(out)
    print_lines(os.path.join(out, "env.txt"))
    print()
    cases = sorted({c for c, _ in runs if c.startswith("rate")}, key=lambda c: int(c[4:]))
    members = next((r[0].get("subscribers") for (c, _), r in runs.items()
                    if r and c.startswith("rate")), 0)
    print("| sender's rate | metric | eddy (2 nodes) | Node (2 nodes) | eddy / Node | target | |")
    print("|---|---|---|---|---|---|---|")
    any_mark = False
    for case in cases:
        label = f"{int(case[4:]):,} emits/s to {members:,} members"
        for metric, fn, fmt, target in ROWS:
            cells, vals = [], {}
            for server, _ in SERVERS:
                rows, all_disturbed = pick(runs.get((case, server), []), disturbed)
                if metric.startswith("Redis traffic"):
                    i = median(rows, lambda r: r.get("redis_in_bytes_per_published"))
                    o = median(rows, lambda r: r.get("redis_out_bytes_per_published"))
                    cells.append(f"{i:,.0f} / {o:,.0f}" if i is not None and o is not None
                                 else "")
                    continue
                if fn is None:
                    s = median(rows, lambda r: r.get("steady_server_busy"))
                    rb = median(rows, lambda r: r.get("redis_busy"))
                    c = median(rows, lambda r: r.get("client_busy"))
                    cells.append(" / ".join(share(v) if v is not None else "?"
                                            for v in (s, rb, c)) if rows else "")
                    continue
                v = median(rows, fn)
                vals[server] = v
                mark = " †" if all_disturbed else ""
                any_mark |= all_disturbed
                names = {(r.get("busiest") or {}).get("name") for r in rows}
                if "commandstats" in metric and len(names) == 1 and None not in names:
                    mark = f" ({names.pop().upper()})" + mark
                cells.append(fmt(v) + mark if v is not None else "")
            print(table_row(label, metric, cells, vals.get("eddy"), vals.get("node"),
                            runs.get((case, "eddy"), []), runs.get((case, "node"), []),
                            fn if fmt is not None else None, target))
            label = ""
    print()
    print("Medians over rounds. Each case: a fresh redis-server, two nodes on it (CPU 0), the "
          "room's members alternating between them, the sender on the first node, eddy-bench "
          "on CPU 1 with Redis. Over the steady window: server CPU is utime + stime of both "
          "nodes from /proc/PID/stat, Redis CPU is INFO cpu's used_cpu_user + used_cpu_sys, "
          "divided by the emits the sender made in the window (less Redis' idle CPU, measured "
          "for 1 s before with the nodes up, in the row below it); the busiest command's time "
          "per call is from INFO commandstats over the whole case. Latency is each "
          "delivery's receive time minus the sender's clock in the payload. A server that "
          "cannot keep up falls behind by at most 1,023 emits (eddy-bench's window), which "
          "then sets its latency.")
    if any_mark:
        print(f"† every round of this cell was disturbed: the nodes waited for a CPU more than "
              f"{WAIT_LIMIT:.0%} of the time (summed) or the load generator more than 20%.")
    idle_table(runs)
    print_problems(runs, ("errors", "lost"))
    print_lines(os.path.join(out, "notes.txt"))


if __name__ == "__main__":
    main()
