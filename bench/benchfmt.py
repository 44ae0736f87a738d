# SPDX-License-Identifier: MIT
"""Number formats and table pieces shared by the benchmark summaries (bench/summarize.py,
bench/socketio/summarize.py, bench/scaleout/summarize.py)."""

import os
import statistics


def rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def micros(v):
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def bytes_(v):
    return f"{v:,.0f}"


# ---- shared by the eddy-against-Node summaries (bench/socketio, bench/scaleout) ----

def fmt_ratio(v):
    return f"{v:.3f}" if v < 1 else f"{v:.1f}×"


def per_cpu_s(r):
    """Deliveries per server CPU-second over eddy-bench's steady window."""
    us = r.get("steady_server_us_per_delivery")
    return 1e6 / us if us else None


def pick(rows, disturbed):
    """The runs a median is taken over, and whether they were all disturbed."""
    clean = [r for r in rows if not disturbed(r)]
    return (clean, False) if clean else (rows, bool(rows))


def median(rows, fn):
    vals = [v for v in (fn(r) for r in rows) if v is not None]
    return statistics.median(vals) if vals else None


def ratio_cell(e, n, eddy_rows, node_rows, fn):
    """eddy / Node of the medians, then each round's own ratio (eddy and Node ran one after
    the other in it); "" without both values."""
    if e is None or not n or n <= 0 or e <= 0:
        return ""
    text = fmt_ratio(e / n)
    per_round = []
    for er, nr in zip(eddy_rows, node_rows):
        ev, nv = fn(er), fn(nr)
        if ev is not None and nv and nv > 0 and ev > 0:
            per_round.append(fmt_ratio(ev / nv))
    if len(per_round) > 1:
        text += f" (rounds {', '.join(per_round)})"
    return text


def verdict(kind, bound, e, n):
    """"met" / "**NOT met**" for a target ("ratio_min", "ratio_max": eddy / Node against
    bound; "abs_max": eddy's value at most bound); "" when it cannot be told."""
    if kind == "abs_max":
        ok = e <= bound if e is not None else None
    elif e is None or not n or n <= 0:
        ok = None
    else:
        ok = e / n >= bound if kind == "ratio_min" else e / n <= bound
    return "" if ok is None else ("met" if ok else "**NOT met**")


def table_row(label, metric, cells, e, n, eddy_rows, node_rows, fn, target):
    """One row of an eddy-against-Node table: the two cells, eddy / Node (with fn: see
    ratio_cell), the target's text and its verdict (target: (kind, bound, text) or None)."""
    ratio = ratio_cell(e, n, eddy_rows, node_rows, fn) if fn is not None else ""
    kind, bound, text = target if target is not None else (None, None, "")
    mark = verdict(kind, bound, e, n) if target is not None else ""
    return f"| {label} | {metric} | {cells[0]} | {cells[1]} | {ratio} | {text} | {mark} |"


def print_lines(path, prefix="- "):
    """Prints the non-empty lines of path (if it exists), each after prefix."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    print(f"{prefix}{line.strip()}")


def print_problems(runs, fields):
    """The runs' errors: one clause per (case, server) with any of fields non-zero."""
    problems = []
    for (case, server), rows in sorted(runs.items()):
        counts = [sum(r.get(k) or 0 for r in rows) for k in fields]
        if any(counts):
            problems.append(f"{case}/{server}: " +
                            ", ".join(f"{c} {k}" for c, k in zip(counts, fields)))
    print()
    print("Errors: " + ("; ".join(problems) if problems else "none in any run") + ".")
