# SPDX-License-Identifier: MIT
"""Running eddy's servers for the integration and conformance tests.

Every test runs real example servers from the build directory (EDDY_BUILD, default
"build") on 127.0.0.1 with --port 0; the chosen port is read from the server's start-up
log line. Tests wait for events (an output line, a frame, EOF) with timeouts, never for
fixed sleeps.

The fixtures are defined here and imported by tests/integration/conftest.py and
tests/conformance/conftest.py, which also put this directory on sys.path, so test modules
import helpers as `from eddyserver import ...`, `from wsraw import ...`,
`from ws_cases import ...`.
"""

import os
import queue
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from wsraw import RawClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
BUILD = os.path.join(ROOT, os.environ.get("EDDY_BUILD", "build"))
TIMEOUT = float(os.environ.get("EDDY_TEST_TIMEOUT", "10"))

# Lines that mean a sanitizer found a bug in the server.
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                      "WARNING: ThreadSanitizer")


class Server:
    """A running example server: its port, its stdout lines and its log."""

    def __init__(self, example, args=(), settings=None, program=None):
        """Starts build/examples/<example> (or build/tests/<example>), or the command line
        `program` (a list) when given; either gets --host 127.0.0.1 --port 0 and args."""
        if program is None:
            path = os.path.join(BUILD, "examples", example)
            if not os.path.exists(path):
                path = os.path.join(BUILD, "tests", example)  # test programs (testbed)
            program = [path]
        cmd = list(program) + ["--host", "127.0.0.1", "--port", "0"]
        for key, value in (settings or {}).items():
            cmd += ["--set", f"{key}={value}"]
        cmd += list(args)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.example = example
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True, errors="replace")
        self.stdout = queue.Queue()
        self.stdout_seen = []
        self.log_lines = []
        self._log_cond = threading.Condition()
        self._pumps = [threading.Thread(target=self._pump_stdout, daemon=True),
                       threading.Thread(target=self._pump_stderr, daemon=True)]
        for pump in self._pumps:
            pump.start()
        match = self.wait_log(r"listening on [^ ]+:(\d+)")
        self.port = int(match.group(1))
        self.host = "127.0.0.1"
        self.tls_port = None
        if "--tls-port" in args:
            self.tls_port = int(self.wait_log(r"listening on [^ ]+:(\d+) \(TLS\)").group(1))

    def _pump_stdout(self):
        for line in self.proc.stdout:
            self.stdout.put(line.rstrip("\n"))

    def _pump_stderr(self):
        for line in self.proc.stderr:
            with self._log_cond:
                self.log_lines.append(line.rstrip("\n"))
                self._log_cond.notify_all()

    @property
    def url(self):
        return f"ws://{self.host}:{self.port}"

    def wait_log(self, pattern, timeout=TIMEOUT):
        """Waits for a log line (stderr) matching the regex; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._log_cond:
            seen = 0
            while True:
                for line in self.log_lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.log_lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and seen == len(self.log_lines):
                    if left > 0:
                        # The process ended; give the pump a moment to deliver the rest.
                        self._log_cond.wait(0.2)
                        if len(self.log_lines) > seen:
                            continue
                    raise AssertionError(f"no log line matching {pattern!r}; log:\n" +
                                         "\n".join(self.log_lines))
                self._log_cond.wait(left)

    def line(self, timeout=TIMEOUT):
        """The next stdout line."""
        try:
            line = self.stdout.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout}s; seen so far: "
                                 f"{self.stdout_seen!r}") from None
        self.stdout_seen.append(line)
        return line

    def expect(self, *expected, timeout=TIMEOUT):
        """Asserts the next stdout lines are exactly `expected`, in order."""
        for want in expected:
            got = self.line(timeout)
            assert got == want, f"expected output {want!r}, got {got!r}"

    def expect_set(self, *expected, timeout=TIMEOUT):
        """Asserts the next len(expected) stdout lines are `expected` in any order."""
        got = sorted(self.line(timeout) for _ in expected)
        assert got == sorted(expected)

    def no_output(self, within=0.3):
        """Asserts nothing is printed for `within` seconds (used only to prove absence)."""
        try:
            line = self.stdout.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected output line {line!r}")

    def connect_raw(self, timeout=TIMEOUT):
        return RawClient(self.host, self.port, timeout)

    def http(self, request, timeout=TIMEOUT):
        """Sends raw request bytes and returns everything received until EOF."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(request)
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks)

    def stop(self):
        """Stops with SIGTERM; asserts a clean exit and a sanitizer-clean log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.example} did not stop on SIGTERM")
        # The pumps end at EOF on the pipes, once the process is gone: then the log is
        # complete.
        for pump in self._pumps:
            pump.join(TIMEOUT)
        bad = [l for l in self.log_lines if any(p in l for p in SANITIZER_PATTERNS)]
        assert not bad, "sanitizer report:\n" + "\n".join(self.log_lines)
        assert self.proc.returncode == 0, (
            f"{self.example} exited with {self.proc.returncode}; log:\n" +
            "\n".join(self.log_lines))


def chromium_binary():
    """The headless browser the real-client tests drive."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed (Debian package chromium): run `make test`")


# ---- fixtures (imported by the conftest.py files) ----


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1, made with the openssl command:
    returns (cert_path, key_path)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def start_server():
    """start_server(example, *args, settings={...}) -> Server; all stopped at teardown."""
    servers = []

    def start(example, *args, settings=None):
        server = Server(example, args, settings)
        servers.append(server)
        return server

    yield start
    stop_all(servers)


def stop_all(servers):
    """A start_* fixture's teardown: stops every server, then fails the test with all of
    their complaints (sanitizer reports, exit status) at once."""
    errors = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


def ephemeral_ports():
    """The kernel's range of local ports for outgoing connections (ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def worker_share():
    """(index, count) of this pytest-xdist worker, (0, 1) when the tests run in one process:
    free_port() gives worker `index` the ports with port % count == index. A Redis Cluster
    node's bus port (its port + 10000) stays in its port's share when count divides 10000,
    as the Makefile's default of two workers does."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return 0, 1
    return int(worker[2:]) % count, count


FREE_PORT_FLOOR = 10000
_free_port_cursor = None


def free_port():
    """A loopback TCP port free at the time of the call, for a server started after it.

    Taken below the kernel's ephemeral range: a port the kernel handed out for a bind to 0
    can be given to a client's outgoing connection before the server binds it (CI saw a
    daemon under TSan fail with "Address already in use" that way). Successive calls walk
    the range from a random start, so a run does not hand out one port twice while the
    first user may still be starting. Under pytest-xdist (the Makefile runs two workers)
    each worker hands out only its own share of the range (see worker_share), so two
    workers never hand out one port either."""
    global _free_port_cursor
    low, _ = ephemeral_ports()
    if low - FREE_PORT_FLOOR < 1000:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    span = low - FREE_PORT_FLOOR
    index, count = worker_share()
    if _free_port_cursor is None:
        _free_port_cursor = random.randrange(span)
    for _ in range(span):
        port = FREE_PORT_FLOOR + _free_port_cursor % span
        _free_port_cursor += 1
        if port % count != index:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {FREE_PORT_FLOOR}-{low - 1}")


def wait_for(predicate, what, timeout=TIMEOUT):
    """Polls predicate() until it returns something true, and returns that; fails with
    `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read_text(path):
    """A file's text, or "" while it does not exist (a log or pid file not written yet)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def assert_echo_serves(server):
    """A well-behaved client still gets an echo: the server survived whatever came before."""
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x1, b"still serving")
    opcode, payload = client.recv_message()
    assert (opcode, payload) == (0x1, b"still serving")
    client.close_handshake()
