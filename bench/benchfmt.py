# SPDX-License-Identifier: MIT
"""Number formats shared by the benchmark summaries (bench/summarize.py,
bench/socketio/summarize.py)."""


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
