# SPDX-License-Identifier: MIT
"""The eddy program's operations surface: /metrics (Prometheus text format 0.0.4) and the
same figures in `eddy status`."""

import re

import pytest

from test_daemon import Serving, eddy, free_port, http, site  # noqa: F401  (site: fixture)
from wsraw import RawClient

# Text exposition format 0.0.4, strictly: HELP and TYPE lines, then samples of that family.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABELS = r'\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*\}'
VALUE = r"-?(?:[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?|Inf|NaN)"
HELP_RE = re.compile(rf"^# HELP ({NAME}) \S.*$")
TYPE_RE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
SAMPLE_RE = re.compile(rf"^({NAME})({LABELS})? ({VALUE})$")


def parse_metrics(text):
    """{(name, labels): value}; fails on any line that is not strictly well-formed."""
    assert text.endswith("\n")
    samples, types, family = {}, {}, None
    for line in text.splitlines():
        if m := HELP_RE.match(line):
            family = m.group(1)
            assert family.startswith("eddy_") and family not in types, line
        elif m := TYPE_RE.match(line):
            assert m.group(1) == family, line
            types[family] = m.group(2)
        elif m := SAMPLE_RE.match(line):
            name, labels, value = m.groups()
            assert name == family and family in types, line
            if types[family] == "counter":
                assert name.endswith("_total"), line
            assert (name, labels or "") not in samples, line
            samples[(name, labels or "")] = float(value)
        else:
            raise AssertionError(f"not a line of the text format: {line!r}")
    return samples


def scrape(port):
    status, headers, body = http(port, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    samples = parse_metrics(text)
    try:  # Debian's python3-prometheus-client, when installed, must agree
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return samples
    parsed = {(s.name, s.labels.get("loop", s.labels.get("kind", ""))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert len(parsed) == len(samples)
    return samples


def test_metrics_scrape_parses_and_counters_move_with_traffic(site):
    tmp, conf = site
    admin = free_port()
    path, port = conf(admin_port=admin)
    server = Serving(tmp, path)
    try:
        before = scrape(admin)
        assert before[("eddy_build_info", '{version="0.1.0"}')] == 1
        assert before[("eddy_ready", "")] == 1
        assert before[("eddy_worker_num", "")] == 2
        assert before[("eddy_process_resident_memory_bytes", "")] > 1 << 20
        assert before[("eddy_process_open_fds", "")] > 3
        assert ("eddy_loop_connections", '{loop="1"}') in before
        assert before[("eddy_connections", '{kind="websocket"}')] == 0

        client = RawClient("127.0.0.1", port)
        client.handshake("/ws")
        for i in range(10):
            client.send_frame(0x1, f"message {i}".encode())
            assert client.recv_message() == (0x1, f"message {i}".encode())
        RawClient("127.0.0.1", port).handshake("/elsewhere", expect_status=404)
        assert http(port, "/")[0] == 200

        during = scrape(admin)
        assert during[("eddy_connections", '{kind="websocket"}')] == 1

        def moved(name, labels=""):
            return during[(name, labels)] - before[(name, labels)]
        # This scrape's connection and the one before it are counted too (admin listener).
        assert moved("eddy_connections_accepted_total") == 4
        assert moved("eddy_http_requests_total") == 4
        assert moved("eddy_websocket_handshakes_total") == 1
        assert moved("eddy_websocket_handshake_failures_total") == 1
        assert moved("eddy_websocket_messages_received_total") == 10
        assert moved("eddy_websocket_messages_sent_total") == 10
        assert moved("eddy_received_bytes_total") >= 10 * (6 + 9)
        assert moved("eddy_sent_bytes_total") >= 10 * (2 + 9)
        assert sum(during[("eddy_loop_websocket_messages_received_total", f'{{loop="{i}"}}')]
                   for i in range(2)) == during[("eddy_websocket_messages_received_total", "")]
        client.close_handshake()

        # `eddy status` shows the same figures (seed 004's infos).
        out = eddy("status", "-c", path, cwd=tmp)
        assert out.returncode == 0, out.stderr
        rows = dict(re.findall(r"^(\w+) +(.*)$", out.stdout, re.M))
        assert int(rows["messages_in"]) == during[("eddy_websocket_messages_received_total", "")]
        for key in ("accepted", "websocket_handshakes", "bytes_out", "memory_rss_bytes",
                    "cpu_seconds", "open_fds", "messages_dropped"):
            assert key in rows, out.stdout
    finally:
        assert server.stop() == 0


def test_metrics_on_the_main_listener_without_an_admin_one(site):
    tmp, conf = site
    path, port = conf()
    server = Serving(tmp, path)
    try:
        assert ("eddy_uptime_seconds", "") in scrape(port)
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("line", [
    "eddy_x 1", "# HELP eddy_x h\n# TYPE eddy_x counter\neddy_x 1",
    '# HELP eddy_x h\n# TYPE eddy_x gauge\neddy_x{a="1"} 1 2 3',
])
def test_the_metrics_parser_is_strict(line):
    with pytest.raises(AssertionError):
        parse_metrics(line + "\n")
