#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Turns bench/scaleout/run --probe's logs into tables: where Redis' CPU goes over each rate
case's steady window, per second and per emit, for eddy's two nodes and Node's two side by
side (medians over rounds; each round's figures in brackets).

Usage: bench/scaleout/probe.py OUT_DIR
Reads OUT_DIR/logs/rate<R>-<server>-<round>.{probe0,probe1,pids,perf,strace,monitor}: INFO
at both ends of the window (CPU, reads and writes processed, traffic, commandstats), CLIENT
LIST and the connections' owners (ss -tnp), perf stat counts or strace's reads and writes
per connection, and MONITOR's commands over the warm-up (their sizes as sent, in RESP)."""

import collections
import glob
import os
import re
import statistics
import sys

# Commands the probe itself sends (and eddy-bench's INFO): left out of the command rows.
PROBE_COMMANDS = {"info", "client|list", "pubsub|channels", "pubsub|numsub", "pubsub|numpat",
                  "monitor"}
SERVERS = ["eddy", "node"]


def parse_snapshot(path):
    """INFO fields, commandstats, clients and socket owners of one snapshot."""
    snap = {"info": {}, "cmd": {}, "clients": [], "owners": {}, "channels": {}}
    section = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# time "):
                snap["time"] = float(line.split()[2])
            elif line.startswith("# numpat "):
                snap["numpat"] = int(line.split()[2] or 0)
            elif line in ("# clients", "# sockets", "# channels"):
                section = line[2:]
            elif line.startswith("# "):
                section = None
            elif line.startswith("cmdstat_"):
                name, rest = line[len("cmdstat_"):].split(":", 1)
                kv = dict(p.split("=") for p in rest.split(","))
                snap["cmd"][name] = (int(kv["calls"]), int(kv["usec"]))
            elif section == "clients" and line.startswith("id="):
                snap["clients"].append(dict(p.split("=", 1) for p in line.split(" ") if "=" in p))
            elif section == "sockets":
                m = re.search(r"\S+:(\d+)\s+\S+:\d+\s+users:\(\(\"[^\"]*\",pid=(\d+)", line)
                if m:
                    snap["owners"][m.group(1)] = int(m.group(2))
            elif section == "channels" and line:
                name, _, n = line.rpartition(" ")
                snap["channels"][name] = int(n) if n.isdigit() else 0
            elif ":" in line and section is None:
                k, v = line.split(":", 1)
                snap["info"][k] = v
    return snap


def roles(log, snap):
    """Redis' fd -> 'A cmd', 'A sub', 'B cmd', 'B sub' or 'other'."""
    pids = {}
    with open(log.removesuffix(".idle") + ".pids") as f:
        words = f.readline().split()[1:]
    for name, pid in zip(words[::2], words[1::2]):
        pids[int(pid)] = {"nodeA": "A", "nodeB": "B"}.get(name, name)
    out = {}
    for c in snap["clients"]:
        port = c["addr"].rsplit(":", 1)[1]
        who = pids.get(snap["owners"].get(port), "other")
        sub = int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0
        out[int(c["fd"])] = f"{who} {'sub' if sub else 'cmd'}" if who in "AB" else "other"
    return out


def resp_size(args):
    return len(f"*{len(args)}\r\n") + sum(len(f"${len(a)}\r\n") + len(a) + 2 for a in args)


ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def unquote(s):
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            if s[i + 1] == "x":
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += ESCAPES.get(s[i + 1], s[i + 1].encode())
            i += 2
        else:
            out += s[i].encode()
            i += 1
    return bytes(out)


def monitor_sizes(path, secs=1.0):
    """Median RESP size of each kind of command over MONITOR's last `secs` seconds."""
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r'([0-9.]+) \[\d+ [^\]]+\] (.*)', line)
                if m:
                    args = [unquote(a) for a in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2))]
                    rows.append((float(m.group(1)), args))
    except OSError:
        return {}
    if not rows:
        return {}
    end = rows[-1][0]
    sizes = collections.defaultdict(list)
    for t, args in rows:
        if t < end - secs or not args:
            continue
        kind = args[0].decode(errors="replace").upper()
        if kind == "PUBLISH" and len(args) > 1:
            ch = re.sub(r"[0-9a-f]{16}", "<id>", args[1].decode(errors="replace"))
            kind += " " + ch
        sizes[kind].append(resp_size(args))
    return {k: statistics.median(v) for k, v in sizes.items()}


def strace_counts(path, fd_role, secs):
    """Per role: reads, writes and bytes written per second; epoll_wait returns per second."""
    per = collections.defaultdict(lambda: [0, 0, 0])
    waits = 0
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError:
        return None
    with f:
        for line in f:
            m = re.search(r"\b(read|write|writev|epoll_wait)\((\d+),.*= (-?\d+)", line)
            if not m:
                continue
            call, fd, ret = m.group(1), int(m.group(2)), int(m.group(3))
            if call == "epoll_wait":
                waits += 1
                continue
            role = fd_role.get(fd, "other")
            if call == "read":
                per[role][0] += 1
            else:
                per[role][1] += 1
                per[role][2] += max(ret, 0)
    out = {f"strace: {r}: reads/s": v[0] / secs for r, v in per.items()}
    out.update({f"strace: {r}: writes/s": v[1] / secs for r, v in per.items()})
    out.update({f"strace: {r}: bytes per write": v[2] / v[1] for r, v in per.items() if v[1]})
    out["strace: epoll_wait/s"] = waits / secs
    return out


def perf_counts(path, secs):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                p = line.strip().split(",")
                if len(p) > 2 and p[0] and p[0][0].isdigit():
                    name = p[2].replace("syscalls:sys_enter_", "")
                    out[f"perf: {name}" + (" ms/s" if name == "task-clock" else "/s")] = \
                        float(p[0]) / secs
    except OSError:
        pass
    return out


def case_figures(log, rate):
    """One probed window's figures; rate 0: the idle window before a case."""
    s0, s1 = parse_snapshot(log + ".probe0"), parse_snapshot(log + ".probe1")
    secs = s1["time"] - s0["time"]
    d = lambda k: float(s1["info"][k]) - float(s0["info"][k])  # noqa: E731
    emits = rate * secs or float("nan")
    fig = {
        "window (s)": secs,
        "Redis CPU µs/s (INFO: user + sys)": (d("used_cpu_user") + d("used_cpu_sys")) * 1e6 / secs,
        "Redis CPU µs per emit": (d("used_cpu_user") + d("used_cpu_sys")) * 1e6 / emits,
        "Redis CPU user ms/s": d("used_cpu_user") * 1e3 / secs,
        "Redis CPU kernel ms/s": d("used_cpu_sys") * 1e3 / secs,
        "reads processed/s (Redis' read events)": d("total_reads_processed") / secs,
        "writes processed/s (Redis' client writes)": d("total_writes_processed") / secs,
        "bytes in/s": d("total_net_input_bytes") / secs,
        "bytes out/s": d("total_net_output_bytes") / secs,
        "bytes in per emit": d("total_net_input_bytes") / emits,
        "bytes out per emit": d("total_net_output_bytes") / emits,
        "subscriber connections": sum(1 for c in s0["clients"]
                                      if int(c.get("sub", 0)) + int(c.get("psub", 0)) > 0),
    }
    room = [n for ch, n in s0["channels"].items() if ch.endswith(":bench")]
    fig["subscribers of the room's channel (eddy)"] = max(room) if room else 0
    fig["patterns (each matched against every PUBLISH's channel)"] = s0.get("numpat", 0)
    total_calls = total_usec = 0
    for name, (calls, usec) in s1["cmd"].items():
        c0, u0 = s0["cmd"].get(name, (0, 0))
        if name in PROBE_COMMANDS or calls == c0:
            continue
        fig[f"cmd {name}: calls/s"] = (calls - c0) / secs
        fig[f"cmd {name}: µs/s"] = (usec - u0) / secs
        total_calls += calls - c0
        total_usec += usec - u0
    fig["commands/s (all but the probe's)"] = total_calls / secs
    fig["command time µs/s (commandstats)"] = total_usec / secs
    fig.update(perf_counts(log + ".perf", secs))
    if "perf: task-clock ms/s" in fig:
        fig["perf: task-clock µs per emit"] = fig["perf: task-clock ms/s"] * 1e3 * secs / emits
    st = strace_counts(log + ".strace", roles(log, s0), secs)
    if st:
        fig.update(st)
    for kind, size in monitor_sizes(log + ".monitor").items():
        fig[f"size (RESP bytes) of {kind}"] = size
    return fig


def fmt(v):
    if v is None or v != v:
        return ""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    cases = collections.defaultdict(lambda: collections.defaultdict(list))
    for path in sorted(glob.glob(os.path.join(out, "logs", "rate*-*-*.probe1"))):
        log = path[:-len(".probe1")]
        m = re.match(r"rate(\d+)-(\w+)-(\d+)(\.idle)?$", os.path.basename(log))
        if not m or not os.path.exists(log + ".probe0"):
            continue
        rate = 0 if m.group(4) else int(m.group(1))
        try:
            fig = case_figures(log, rate)
        except (KeyError, ValueError, OSError, ZeroDivisionError) as e:
            print(f"{log}: {e}", file=sys.stderr)
            continue
        cases[(int(m.group(1)), bool(m.group(4)))][m.group(2)].append(fig)
    for rate, idle in sorted(cases, key=lambda c: (c[0], not c[1])):
        runs = cases[(rate, idle)]
        what = (f"nodes up, nothing published (before each {rate} emits/s case)" if idle
                else f"{rate} emits/s")
        print(f"\n### {what}: Redis over the probed window (median [rounds])\n")
        print("| figure | eddy | Node |")
        print("|---|---|---|")
        keys = []
        for s in SERVERS:
            for fig in runs.get(s, []):
                keys += [k for k in fig if k not in keys]
        for k in keys:
            cells = []
            for s in SERVERS:
                vals = [f.get(k) for f in runs.get(s, [])]
                got = [v for v in vals if v is not None]
                if not got:
                    cells.append("")
                    continue
                each = ", ".join(fmt(v) if v is not None else "-" for v in vals)
                cells.append(f"{fmt(statistics.median(got))} [{each}]" if len(vals) > 1
                             else fmt(got[0]))
            print(f"| {k} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
