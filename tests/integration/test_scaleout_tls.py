# SPDX-License-Identifier: MIT
"""Scale-out over TLS (issue 12): rediss:// and rediss+sentinel:// against Debian's
redis-server with TLS only (--port 0 --tls-port P) and a throwaway CA, server certificate
(SAN IP:127.0.0.1, DNS:localhost) and client certificate made with openssl in the test's
tmp dir. Redis has no plain port, so whatever crosses nodes went through TLS.
"""

import random
import shutil
import socket
import ssl
import string
import subprocess
import time

import pytest

from eddyserver import TIMEOUT, free_port, wait_for
from test_daemon_broker import get
from test_daemon_realtime import Daemon
from test_scaleout import clients, pytestmark  # noqa: F401 (fixture, skip mark)
from sioserver import SioServer

MASTER = "mymaster"


def openssl(tmp, *args):
    subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True,
                   timeout=TIMEOUT)


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def issue(tmp, name, san=None):
    """name.key and name.pem, signed by tmp's ca.pem (subjectAltName san, if any)."""
    ext = []
    if san is not None:
        (tmp / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        ext = ["-extfile", f"{name}.ext"]
    openssl(tmp, "req", *EC, "-subj", f"/CN=eddy test {name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
    openssl(tmp, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", *ext, "-out", f"{name}.pem")


def make_certs(tmp):
    """CA, server (127.0.0.1, localhost) and client certificates, and a CA that signed
    neither, in tmp: {name: path}."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed (Debian package openssl)")
    for ca in ("ca", "other_ca"):
        openssl(tmp, "req", "-x509", *EC, "-days", "1", "-subj", f"/CN=eddy test {ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    issue(tmp, "server", "IP:127.0.0.1,DNS:localhost")
    issue(tmp, "client")
    return {name: str(tmp / name) for name in (
        "ca.pem", "other_ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture
def certs(tmp_path):
    """make_certs() in the test's tmp dir."""
    return make_certs(tmp_path)


def command(port, certs, *args):
    """One command over TLS (client certificate presented), its reply line(s) decoded
    loosely: an int for ":n", else the raw bytes."""
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    ctx.load_cert_chain(certs["client.pem"], certs["client.key"])
    out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                            for a in map(str, args))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(out)
            reply = s.recv(65536)
    return int(reply[1:].split(b"\r\n")[0]) if reply.startswith(b":") else reply


def answers(port, certs, *args):
    try:
        return command(port, certs, *args)
    except (OSError, ValueError):
        return None


class TlsRedis:
    """redis-server (or a sentinel, given its configuration) listening on TLS only."""

    def __init__(self, tmp, certs, name, auth_clients="no", sentinel_conf=None):
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is needed (Debian package redis-server): make deps-test")
        self.port = free_port()
        tls = {"port": "0", "tls-port": str(self.port), "bind": "127.0.0.1", "dir": str(tmp),
               "tls-cert-file": certs["server.pem"], "tls-key-file": certs["server.key"],
               "tls-ca-cert-file": certs["ca.pem"], "tls-auth-clients": auth_clients}
        if sentinel_conf is None:
            argv = ["redis-server", "--save", "", "--appendonly", "no"]
            for key, value in tls.items():
                argv += ["--" + key, value]
        else:
            # A sentinel rewrites its configuration file: its own, writable.
            path = tmp / f"{name}.conf"
            path.write_text("".join(f"{k} {v}\n" for k, v in tls.items()) +
                            "daemonize no\n" + sentinel_conf)
            argv = ["redis-server", str(path), "--sentinel"]
        self.log = open(tmp / f"{name}.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: answers(self.port, certs, "PING") == b"+PONG\r\n" or
                 self.proc.poll() is not None, f"{name} to answer PING over TLS")
        assert self.proc.poll() is None, (tmp / f"{name}.log").read_text()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def tls_redis(tmp_path, certs):
    """tls_redis(name, auth_clients="no", sentinel_conf=None) -> TlsRedis; killed at
    teardown."""
    running = []

    def start(name, auth_clients="no", sentinel_conf=None):
        r = TlsRedis(tmp_path, certs, name, auth_clients, sentinel_conf)
        running.append(r)
        return r

    yield start
    for r in reversed(running):
        r.kill()


@pytest.fixture
def nodes():
    """nodes(url, ...) -> an examples/socketio node per URL; stopped at teardown."""
    running = []

    def start(*urls):
        started = [SioServer("eddy", ("--redis", url)) for url in urls]
        running.extend(started)
        return started

    yield start
    for n in running:
        n.stop()


def leases(redis, certs):
    return answers(redis.port, certs, "ZCARD", "eddy:nodes")


def crosses(clients, a, b):
    """Members on both nodes get each other's broadcasts, exactly once and in order."""
    for name, server in (("ma", a), ("mb", b)):
        clients.connect(name, server)
        assert clients.ack(name, "join", "r") == ["joined"]
    clients.probe("ma", ["mb"])
    clients.probe("mb", ["ma"])
    clients.seqs_to_room("ma", "r", "mb", 20)
    clients.seqs_to_room("mb", "r", "ma", 20)
    # A broadcast of many TLS records (16 KiB each) both ways: written in parts, read in
    # parts on the subscription connection that poll() watches.
    big = "".join(random.choices(string.ascii_letters, k=300_000))
    clients.emit("ma", "to-room", "r", {"seq": 1000, "big": big})
    deadline = time.monotonic() + TIMEOUT
    while not any(r["name"] == "mb" and r["type"] == "event" and r["event"] == "room-message"
                  and r["args"][0].get("big") == big for r in clients.seen):
        left = deadline - time.monotonic()
        assert left > 0, "the 300 kB broadcast did not cross"
        clients._pull(left)


def test_broadcasts_cross_two_nodes_over_tls(tls_redis, certs, nodes, clients):
    """Two nodes on rediss:// (verified against the test's CA, the IP address in the
    certificate's names) hold their leases on a TLS-only Redis and exchange broadcasts."""
    redis = tls_redis("redis")
    url = f"rediss://127.0.0.1:{redis.port}?ssl_ca_certs={certs['ca.pem']}"
    a, b = nodes(url, url)
    for n in (a, b):
        n.wait_log(rf"connected to Redis 127\.0\.0\.1:{redis.port}")
    wait_for(lambda: leases(redis, certs) == 2, "both nodes' leases")
    crosses(clients, a, b)


def test_unverified_certificates_are_refused_unless_insecure(tls_redis, certs, nodes):
    """A certificate from another CA and a name the certificate does not hold (localhost
    asked as redis.example) are refused with OpenSSL's reason in the log, retried with the
    backoff, no lease, no crash; ssl_cert_reqs=none connects anyway, with a warning."""
    redis = tls_redis("redis")
    base = f"rediss://127.0.0.1:{redis.port}"
    wrong_ca, wrong_name, insecure = nodes(
        f"{base}?ssl_ca_certs={certs['other_ca.pem']}",
        f"rediss://localhost:{redis.port}?ssl_ca_certs={certs['ca.pem']}"
        "&ssl_servername=redis.example",
        f"{base}?ssl_cert_reqs=none&ssl_ca_certs={certs['other_ca.pem']}")
    wrong_ca.wait_log(rf"cannot connect to Redis 127\.0\.0\.1:{redis.port} \(TLS handshake: "
                      r"certificate verify failed: (unable to get local issuer certificate|"
                      r"self-signed certificate in certificate chain)\); retrying with backoff")
    wrong_name.wait_log(r"cannot connect to Redis localhost:\d+ \(TLS handshake: certificate "
                        r"verify failed: hostname mismatch\)")
    insecure.wait_log(r"WARNING\s+rt_broker: TLS to Redis without certificate verification")
    insecure.wait_log(rf"connected to Redis 127\.0\.0\.1:{redis.port}")
    wait_for(lambda: leases(redis, certs) == 1, "the insecure node's lease")
    assert wrong_ca.proc.poll() is None and wrong_name.proc.poll() is None
    assert leases(redis, certs) == 1
    for n in (wrong_ca, wrong_name):
        assert not any("connected to Redis" in line for line in n.log_lines)


def test_daemon_with_a_wrong_ca_is_not_ready(tmp_path, tls_redis, certs):
    """The eddy program takes a rediss:// [broker] redis_url; with a CA that did not sign
    Redis' certificate it stays up, /readyz answers 503 and its log says why."""
    redis = tls_redis("redis")
    (tmp_path / "d").mkdir()
    d = Daemon(tmp_path / "d", f"[broker]\nredis_url = rediss://127.0.0.1:{redis.port}"
               f"?ssl_ca_certs={certs['other_ca.pem']}\n")
    try:
        wait_for(lambda: "certificate verify failed" in d.log_path.read_text(),
                 "the handshake failure in the log")
        assert get(d.admin_port, "/readyz") == (503, "broker not ready\n")
        assert leases(redis, certs) == 0
    finally:
        d.stop()


def test_mutual_tls(tls_redis, certs, nodes):
    """Redis with tls-auth-clients yes: a node without a client certificate is refused and
    its log says Redis asked for one; a node given ssl_certfile and ssl_keyfile connects."""
    redis = tls_redis("redis", auth_clients="yes")
    base = f"rediss://127.0.0.1:{redis.port}?ssl_ca_certs={certs['ca.pem']}"
    without, with_cert = nodes(
        base, f"{base}&ssl_certfile={certs['client.pem']}&ssl_keyfile={certs['client.key']}")
    without.wait_log(r"cannot connect to Redis .*\(Redis asked for a client certificate: "
                     r"ssl_certfile=\)")
    with_cert.wait_log(rf"connected to Redis 127\.0\.0\.1:{redis.port}")
    wait_for(lambda: leases(redis, certs) == 1, "the lease of the node with a certificate")


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_plain_redis_on_a_tls_url(tmp_path, certs, nodes):
    """rediss:// to a Redis without TLS: the handshake fails within the I/O timeout, and
    the log suggests the port has no TLS."""
    port = free_port()
    plain = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening(port), "the plain Redis to listen")
        (node,) = nodes(f"rediss://127.0.0.1:{port}?ssl_ca_certs={certs['ca.pem']}")
        node.wait_log(rf"cannot connect to Redis 127\.0\.0\.1:{port} \(TLS handshake: .*"
                      r"a port without TLS\?\)")
    finally:
        plain.kill()
        plain.wait()


def test_sentinel_and_master_over_tls(tls_redis, certs, nodes, clients):
    """rediss+sentinel://: a sentinel on TLS only (tls-replication yes: it watches the
    master over TLS too) names the TLS-only master; two nodes ask it over TLS, connect to
    the master over TLS and exchange broadcasts."""
    master = tls_redis("master")
    sentinel = tls_redis("sentinel", sentinel_conf=(
        f"tls-replication yes\nsentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"))
    url = (f"rediss+sentinel://127.0.0.1:{sentinel.port}/{MASTER}"
           f"?ssl_ca_certs={certs['ca.pem']}")
    a, b = nodes(url, url)
    for n in (a, b):
        n.wait_log(rf"connected to Redis master {MASTER} \(127\.0\.0\.1:{master.port}\)")
    wait_for(lambda: leases(master, certs) == 2, "both nodes' leases on the master")
    crosses(clients, a, b)
