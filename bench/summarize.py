#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns bench/run's results.tsv into one markdown table of medians across rounds.

Usage: bench/summarize.py OUT_DIR SERVER... (servers in column order, eddy first)
Reads OUT_DIR/results.tsv (scenario, server, round, JSON from eddy-bench or the runner),
OUT_DIR/env.txt and OUT_DIR/notes.txt; prints markdown on stdout."""

import json
import os
import statistics
import sys

from benchfmt import bytes_, micros, rate

WAIT_LIMIT = 0.10

TITLES = {"eddy": "eddy", "node": "node ws", "python": "python websockets",
          "lws": "libwebsockets", "uws": "uWebSockets", "epoll": "bare epoll",
          "uring": "bare io_uring"}

# The versus-uws scenarios (issue 9 section 5): (scenario, label, uWebSockets peer, kind,
# eddy's server). kind "echo": target eddy's server CPU per message at most 0.9× the peer's;
# kind "fanout": eddy's delivered frames per server CPU-second at least 1.5× the peer's.
# Compressed echo pairs like with like (bench/run's eddy-deflate-* servers): no context
# takeover with SHARED_COMPRESSOR, a 9-bit memLevel 1 stream per connection with
# DEDICATED_COMPRESSOR (what it compresses with), and eddy's defaults beside the latter.
VERSUS = [
    ("echo-wss-20", "wss echo (TLS 1.3), 100 × 1 × 20 B", "uws", "echo", "eddy"),
    ("echo-wss-1k", "wss echo (TLS 1.3), 100 × 1 × 1 KiB", "uws", "echo", "eddy"),
    ("echo-deflate", "deflate echo, 100 × 1 × 1 KiB text, no server context takeover",
     "uws-shared", "echo", "eddy-nct"),
    ("echo-deflate", "deflate echo, 100 × 1 × 1 KiB text, a 9-bit memLevel 1 stream each",
     "uws-dedicated", "echo", "eddy-9"),
    ("echo-deflate", "deflate echo, 100 × 1 × 1 KiB text, eddy's defaults (15-bit memLevel 8 "
     "stream each)", "uws-dedicated", "echo", "eddy"),
    ("publish-uws-1k", "fan-out to 1k subscribers, 16 × 16 B in flight", "uws", "fanout", "eddy"),
    ("publish-uws-10k", "fan-out to 10k subscribers, 16 × 16 B in flight", "uws", "fanout",
     "eddy"),
    ("echo-wss-shared", "wss echo 20 B, both at once on CPU 0", "uws", "echo", "eddy"),
    ("echo-deflate-shared", "deflate echo 1 KiB, no server context takeover, all four at once "
     "on CPU 0", "uws-shared", "echo", "eddy-nct"),
    ("echo-deflate-shared", "deflate echo 1 KiB, a 9-bit memLevel 1 stream each, all four at "
     "once on CPU 0", "uws-dedicated", "echo", "eddy-9"),
    ("publish-uws-shared", "fan-out to 1k subscribers, both at once on CPU 0", "uws", "fanout",
     "eddy"),
]
PEERS = {"uws": "uWebSockets", "uws-shared": "uWebSockets SHARED_COMPRESSOR",
         "uws-dedicated": "uWebSockets DEDICATED_COMPRESSOR"}


def latency(v):
    return f"{v / 1e3:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def per_core(v):
    return rate(1e6 / v) if v > 0 else "-"


# (scenario, label, [(json key, metric label, formatter, show ratio)])
ECHO = [("msg_per_s", "msg/s", rate, True),
        ("server_us_per_msg", "server CPU µs/msg", micros, True),
        ("busy", "server / load-generator CPU busy", None, False)]
ROWS = [
    ("echo-20", "echo 100 conns × 1 in flight × 20 B", ECHO),
    ("echo-20x16", "echo 100 × 16 in flight × 20 B", ECHO),
    ("echo-1k", "echo 100 × 1 in flight × 1 KiB", ECHO),
    ("echo-20-shared", "echo 100 × 1 × 20 B, eddy and uWebSockets at once on CPU 0", ECHO),
    ("handshake", "handshake (connect, upgrade, close), 100 concurrent",
     [("msg_per_s", "handshakes/s", rate, True),
      ("server_us_per_msg", "server CPU µs/handshake", micros, True),
      ("busy", "server / load-generator CPU busy", None, False)]),
    ("idle-10k", "idle {conns} connections", [("bytes_per_conn", "server RSS bytes/conn", bytes_, True)]),
    ("idle-50k", "idle {conns} connections", [("bytes_per_conn", "server RSS bytes/conn", bytes_, True)]),
    ("publish-1k-lockstep", "publish to 1k subscribers, lockstep",
     [("p50_us", "latency p50", latency, False), ("p99_us", "latency p99", latency, False),
      ("max_us", "latency max", latency, False), ("frames_per_s", "frames/s delivered", rate, False)]),
    ("publish-1k-window", "publish to 1k subscribers, 16 messages in flight",
     [("frames_per_s", "frames/s delivered", rate, False),
      ("server_us_per_msg", "server CPU µs/frame", micros, False),
      ("per_core", "frames per server CPU-second", None, False)]),
    ("publish-10k-lockstep", "publish to 10k subscribers, lockstep",
     [("p50_us", "latency p50", latency, False), ("p99_us", "latency p99", latency, False),
      ("max_us", "latency max", latency, False), ("frames_per_s", "frames/s delivered", rate, False)]),
    ("publish-10k-window", "publish to 10k subscribers, 16 messages in flight",
     [("frames_per_s", "frames/s delivered", rate, False),
      ("server_us_per_msg", "server CPU µs/frame", micros, False),
      ("per_core", "frames per server CPU-second", None, False)]),
    ("uws-load-test", "uWS benchmarks/load_test, 100 × 1 × 20 B binary",
     [("msg_per_s", "msg/s", rate, True), ("server_us_per_msg", "server CPU µs/msg", micros, True)]),
]


def main():
    out, servers = sys.argv[1], sys.argv[2:]
    results = {}  # (scenario, server) -> [json, ...]
    with open(os.path.join(out, "results.tsv")) as f:
        for line in f:
            scen, server, _round, blob = line.rstrip("\n").split("\t", 3)
            try:
                results.setdefault((scen, server), []).append(json.loads(blob))
            except json.JSONDecodeError:
                pass

    # Rounds in which the server or the load generator waited for a CPU more than
    # WAIT_LIMIT of the time were disturbed by other processes: the median is taken over the
    # other rounds, or over all of them (and the cell marked) when every round was disturbed.
    # In echo-20-shared the two servers (and the two load generators) wait for each other by
    # design.
    def disturbed(r):
        if "-shared/" in r.get("label", ""):
            return False
        return max(r.get("server_cpu_wait") or 0, r.get("client_cpu_wait") or 0) > WAIT_LIMIT

    def runs(scen, server):
        rows = results.get((scen, server), [])
        clean = [r for r in rows if not disturbed(r)]
        return clean or rows

    def marked(scen, server):
        rows = results.get((scen, server), [])
        return bool(rows) and all(disturbed(r) for r in rows)

    def med(scen, server, key):
        vals = [r[key] for r in runs(scen, server) if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def spread(scen, server, key):
        vals = [r[key] for r in runs(scen, server) if r.get(key) is not None]
        if len(vals) < 2 or statistics.median(vals) == 0:
            return None
        return (max(vals) - min(vals)) / statistics.median(vals)

    def rounds(scen, server):
        return len(runs(scen, server))

    dropped = sum(len(rows) - len(runs(scen, server))
                  for (scen, server), rows in results.items())
    any_marked = False

    print("| scenario | metric | " + " | ".join(TITLES[s] for s in servers) + " |")
    print("|---|---|" + "---|" * len(servers))
    for scen, label, metrics in ROWS:
        present = [s for s in servers if (scen, s) in results]
        if not present:
            continue
        conns = next((r.get("open") or r.get("conns") for s in present
                      for r in results[(scen, s)]), "")
        label = label.format(conns=f"{conns:,}" if isinstance(conns, int) else conns)
        for i, (key, name, fmt, ratio) in enumerate(metrics):
            cells = []
            # The first metric of a scenario says when its median uses fewer rounds than ran.
            def used(s):
                total, kept = len(results.get((scen, s), [])), len(runs(scen, s))
                return f" [{kept}/{total}]" if i == 0 and kept < total else ""
            base = med(scen, "eddy", key) if key not in ("busy", "per_core") else None
            for s in servers:
                mark = " †" if marked(scen, s) else ""
                any_marked |= bool(mark)
                if key == "busy":
                    sb, cb = med(scen, s, "server_busy"), med(scen, s, "client_busy")
                    cells.append(f"{sb * 100:.0f}% / {cb * 100:.0f}%{mark}" if sb is not None
                                 and cb is not None else "")
                    continue
                if key == "per_core":
                    v = med(scen, s, "server_us_per_msg")
                    cells.append(per_core(v) if v is not None else "")
                    continue
                v = med(scen, s, key)
                if v is None:
                    cells.append("")
                elif s == "eddy" or not ratio or not base:
                    cells.append(fmt(v) + mark + used(s))
                else:
                    cells.append(f"{fmt(v)} ({v / base:.2f}×){mark}{used(s)}")
            print(f"| {label if i == 0 else ''} | {name} | " + " | ".join(cells) + " |")

    print()
    print("Medians of the rounds; (N×) is peer / eddy for the same metric, so above 1× a peer")
    print("uses more CPU per message (or memory per connection) than eddy, or moves more")
    print("messages per second. CPU is utime + stime of the server process from /proc/PID/stat.")
    if dropped:
        print(f"{dropped} run(s) in which the server or the load generator waited for a CPU more")
        print(f"than {WAIT_LIMIT:.0%} of the time (other processes on the machine) were left out of")
        print("the medians; [k/n] after a scenario's first value says its median uses k of n")
        print("rounds.")
    if any_marked:
        print("† every round of this cell was disturbed that way: treat it as unreliable.")
    print()
    targets = []
    for scen, label, _ in ROWS[:3]:
        e, n, u = (med(scen, s, "server_us_per_msg") for s in ("eddy", "node", "uws"))
        if e and n:
            targets.append(f"{label}: node ws / eddy server CPU per message {n / e:.2f} "
                           f"(target at least 2.5): {'met' if n / e >= 2.5 else 'NOT met'}")
        if e and u:
            targets.append(f"{label}: eddy {e:.2f} µs vs uWebSockets {u:.2f} µs per message "
                           f"(target below): {'met' if e < u else 'NOT met'}")
    # The shared case pairs the two servers of each round (same machine state).
    by_round = {s: {r.get("label", "").split("/")[-1]: r["server_us_per_msg"]
                    for r in runs("echo-20-shared", s) if r.get("server_us_per_msg")}
                for s in ("eddy", "uws")}
    ratios = [by_round["uws"][k] / by_round["eddy"][k]
              for k in sorted(by_round["eddy"]) if k in by_round["uws"]]
    if ratios:
        r = statistics.median(ratios)
        each = ", ".join(f"{x:.3f}" for x in ratios)
        targets.append(f"echo 20 B, both on CPU 0 at once: uWebSockets / eddy server CPU per "
                       f"message {r:.3f}, median of the rounds' ratios ({each}) (target above "
                       f"1): {'met' if r > 1 else 'NOT met'}")
    e, u = med("uws-load-test", "eddy", "server_us_per_msg"), med("uws-load-test", "uws",
                                                                  "server_us_per_msg")
    if e and u:
        targets.append(f"uWS load_test: eddy {e:.2f} µs vs uWebSockets {u:.2f} µs per message "
                       f"(target below): {'met' if e < u else 'NOT met'}")
    for scen in ("idle-10k", "idle-50k"):
        e, u = med(scen, "eddy", "bytes_per_conn"), med(scen, "uws", "bytes_per_conn")
        conns = next((r.get("open") for r in results.get((scen, "eddy"), [])), "?")
        if e and u:
            targets.append(f"idle {conns} connections: eddy {e:.0f} B vs uWebSockets {u:.0f} B "
                           f"per connection (target below): {'met' if e < u else 'NOT met'}")
    v = med("publish-10k-window", "eddy", "server_us_per_msg")
    if v:
        d = med("publish-10k-window", "eddy", "frames_per_s")
        targets.append(f"fan-out to 10k subscribers: {1e6 / v / 1e6:.2f}M frames per server "
                       f"CPU-second ({d / 1e6:.2f}M/s delivered here) (target over 1M on one "
                       f"core): {'met' if 1e6 / v > 1e6 else 'NOT met'}")
    if targets:
        print("Targets of the issue, from these medians:")
        print()
        for t in targets:
            print(f"- {t}")
        print()
    versus(results, runs, med, marked)
    spreads = []
    for scen, label, metrics in ROWS:
        for s in servers:
            for key in ("msg_per_s", "server_us_per_msg", "bytes_per_conn", "p99_us"):
                sp = spread(scen, s, key)
                if sp is not None:
                    spreads.append((sp, scen, s, key, rounds(scen, s)))
    if spreads:
        spreads.sort(reverse=True)
        worst = ", ".join(f"{scen} {TITLES[s]} {key} {sp * 100:.0f}%"
                          for sp, scen, s, key, _ in spreads[:6])
        print(f"Spread across rounds, (max - min) / median, largest: {worst}.")
        print()
    for name in ("notes.txt", "env.txt"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            if text:
                print("```")
                print(text)
                print("```")


def versus(results, runs, med, marked):
    """Prints the eddy vs uWebSockets table of the versus-uws scenarios with their targets.
    Separate runs take the ratio of the medians; the *-shared runs the median of each round's
    ratio (both servers measured at the same time)."""
    rows = []
    for scen, label, peer, kind, mine in VERSUS:
        e, u = med(scen, mine, "server_us_per_msg"), med(scen, peer, "server_us_per_msg")
        if e is None and u is None:
            continue
        how = "median of rounds"
        if scen.endswith("-shared"):
            by_round = {s: {r.get("label", "").split("/")[-1]: r["server_us_per_msg"]
                            for r in runs(scen, s) if r.get("server_us_per_msg")}
                        for s in (mine, peer)}
            pairs = [by_round[mine][k] / by_round[peer][k]
                     for k in sorted(by_round[mine]) if k in by_round[peer]]
            ratio = statistics.median(pairs) if pairs else None
            how = "median of the rounds' ratios"
        else:
            ratio = e / u if e and u else None
        errors = sum(r.get("errors", 0) for s in (mine, peer) for r in results.get((scen, s), []))
        if kind == "echo":
            metric = "server CPU µs/msg"
            cells = [micros(e) if e else "", micros(u) if u else ""]
            shown = ratio
            target, met = "eddy ≤ 0.9× uWS", ratio is not None and ratio <= 0.9
        else:
            metric = "delivered frames per server CPU-second"
            cells = [per_core(e) if e else "", per_core(u) if u else ""]
            shown = 1 / ratio if ratio else None
            target, met = "eddy ≥ 1.5× uWS", shown is not None and shown >= 1.5
        verdict = "" if shown is None else ("met" if met else "**NOT met**")
        if marked(scen, mine) or marked(scen, peer):
            verdict += " †"
        if errors:
            verdict += f" ({errors} errors)"
        rows.append(f"| {label} | {PEERS[peer]} | {metric} | {cells[0]} | {cells[1]} | "
                    f"{'' if shown is None else f'{shown:.2f}'} ({how}) | {target} | {verdict} |")
    if not rows:
        return
    print("eddy side by side with uWebSockets (issue 9 section 5): CPU is the server process's")
    print("utime + stime; the ratio is eddy / uWebSockets (CPU per message for echo, frames per")
    print("CPU-second for fan-out).")
    print()
    print("| scenario | peer | metric | eddy | uWebSockets | eddy / uWS | target | |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print()
    if any("†" in row for row in rows):
        print("† every round of this separate run had the server or the load generator waiting for")
        print(f"a CPU more than {WAIT_LIMIT:.0%} of the time (other processes): trust the rows measured")
        print("at once on CPU 0 more (they are not screened: their servers wait for each other).")
        print()


if __name__ == "__main__":
    main()
