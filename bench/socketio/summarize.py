#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns bench/socketio/run's results.tsv into one markdown table: medians across rounds,
eddy against Node's socket.io, and the issue's targets (met / not met).

Usage: bench/socketio/summarize.py OUT_DIR
Reads OUT_DIR/results.tsv (scenario, server, round, eddy-bench JSON), OUT_DIR/env.txt and
OUT_DIR/notes.txt; prints markdown on stdout."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchfmt import (bytes_, median, micros, per_cpu_s, pick, print_lines,  # noqa: E402
                      print_problems, rate, table_row)

# A run whose server or load generator waited for a CPU more than this share of the time was
# disturbed by other processes: left out of the median unless every round was.
WAIT_LIMIT = 0.10
SERVERS = [("eddy", "eddy"), ("node", "Node socket.io")]


# Each row: (scenario, what, metric, value of one run, formatter, target). A target is
# (kind, bound, text): "ratio_max": eddy / Node at most bound; "ratio_min": at least bound;
# "abs_max": eddy's value at most bound.
ROWS = [
    ("echo", "emit echo, 100 clients × {inflight} `message` in flight × 20 B",
     "server CPU µs per echoed event", lambda r: r.get("server_us_per_msg"), micros,
     ("ratio_max", 0.1, "eddy ≤ 1/10 of Node")),
    ("echo", "", "events/s", lambda r: r.get("msg_per_s"), rate, None),
    ("echo", "", "server / load-generator CPU busy", None, None, None),
    ("echo-16", "emit echo, 100 clients × {inflight} `message` in flight × 20 B",
     "server CPU µs per echoed event", lambda r: r.get("server_us_per_msg"), micros,
     ("ratio_max", 0.1, "eddy ≤ 1/10 of Node")),
    ("echo-16", "", "events/s", lambda r: r.get("msg_per_s"), rate, None),
    ("echo-16", "", "server / load-generator CPU busy", None, None, None),
    ("broadcast-1k", "room broadcast to 1k sockets (`to-room`, 16 in flight, 20 B)",
     "delivered messages per server CPU-second", per_cpu_s, rate,
     ("ratio_min", 10, "eddy ≥ 10× Node")),
    ("broadcast-1k", "", "delivered messages/s", lambda r: r.get("steady_per_s"), rate, None),
    ("broadcast-1k", "", "server / load-generator CPU busy", None, None, None),
    ("broadcast-10k", "room broadcast to 10k sockets (`to-room`, 16 in flight, 20 B)",
     "delivered messages per server CPU-second", per_cpu_s, rate,
     ("ratio_min", 10, "eddy ≥ 10× Node")),
    ("broadcast-10k", "", "delivered messages/s", lambda r: r.get("steady_per_s"), rate, None),
    ("broadcast-10k", "", "server / load-generator CPU busy", None, None, None),
    ("idle", "idle: {open} connected, handshaken sockets",
     "server RSS bytes per socket (userland)", lambda r: r.get("bytes_per_conn"), bytes_,
     ("abs_max", 1024, "eddy ≤ 1,024 B")),
    ("idle", "", "kernel slab bytes per connection (whole machine, both ends)",
     lambda r: r.get("slab_bytes_per_conn"), bytes_, None),
]


def load(out):
    runs = {}
    with open(os.path.join(out, "results.tsv"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 3)
            if len(parts) == 4:
                runs.setdefault((parts[0], parts[1]), []).append(json.loads(parts[3]))
    return runs


def disturbed(r):
    return max(r.get("server_cpu_wait") or 0, r.get("client_cpu_wait") or 0) > WAIT_LIMIT


def main():
    out = sys.argv[1]
    runs = load(out)
    print_lines(os.path.join(out, "env.txt"))
    print()
    print("| scenario | metric | eddy | Node socket.io | eddy / Node | target | |")
    print("|---|---|---|---|---|---|---|")
    any_mark = False
    for scen, what, metric, fn, fmt, target in ROWS:
        if not any(runs.get((scen, server)) for server, _ in SERVERS):
            continue
        sample = (runs.get((scen, "eddy")) or runs.get((scen, "node")) or [{}])[0]
        label = what.format(inflight=sample.get("inflight", 1),
                            open=f"{sample.get('open', 5000):,}")
        cells, vals, marks = [], {}, {}
        for server, _ in SERVERS:
            rows, all_disturbed = pick(runs.get((scen, server), []), disturbed)
            marks[server] = all_disturbed
            if fn is None:  # busy shares
                # Broadcasts: the server's share over the steady window.
                s = median(rows, lambda r: r.get("steady_server_busy", r.get("server_busy")))
                c = median(rows, lambda r: r.get("client_busy"))
                cells.append(f"{s:.0%} / {c:.0%}" if s is not None and c is not None else "")
                continue
            v = median(rows, fn)
            vals[server] = v
            mark = " †" if all_disturbed else ""
            any_mark |= all_disturbed
            cells.append(fmt(v) + mark if v is not None else "")
        print(table_row(label, metric, cells, vals.get("eddy"), vals.get("node"),
                        runs.get((scen, "eddy"), []), runs.get((scen, "node"), []), fn, target))
    print()
    print("Medians over rounds; eddy / Node is the ratio of the medians (separate runs, one "
          "after the other on the same pinned CPUs). Server CPU is utime + stime of the server "
          "process from /proc/PID/stat over the measured window; deliveries are counted at "
          "the clients.")
    if any_mark:
        print(f"† every round of this cell had the server or the load generator waiting for a "
              f"CPU more than {WAIT_LIMIT:.0%} of the time (other processes on the machine); "
              "CPU per message is the less disturbed metric.")
    print_problems(runs, ("errors", "lost", "failed"))
    path = os.path.join(out, "notes.txt")
    if os.path.exists(path) and os.path.getsize(path) > 0:
        print()
        print_lines(path)


if __name__ == "__main__":
    main()
