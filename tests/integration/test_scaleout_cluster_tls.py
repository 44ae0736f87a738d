# SPDX-License-Identifier: MIT
"""Scale-out over a Redis Cluster on TLS (issue 12): rediss+cluster:// against three
Debian redis-servers in cluster mode with TLS only (--port 0 --tls-port P, tls-cluster and
tls-replication on: the cluster bus is TLS too), joined by `redis-cli --tls --cluster
create`, certificates from test_scaleout_tls's throwaway CA (SAN IP:127.0.0.1). No node
has a plain port, so the topology read, the slot ask and every master's connections went
through TLS.
"""

import re
import shutil
import subprocess

import pytest

from eddyserver import TIMEOUT, stop_all, wait_for
from sioserver import SioServer
from test_scaleout import clients, pytestmark  # noqa: F401 (fixture, skip mark)
from test_scaleout_cluster import cluster_ports, refused_at_start, slot_of
from test_scaleout_shard import NAMESPACES, config_check_urls, cross_in_order, member_and_sender
from test_scaleout_tls import answers, certs  # noqa: F401 (fixture)


class TlsRedisCluster:
    """Three TLS-only masters in cluster mode, joined and ok."""

    def __init__(self, tmp, certs):
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is needed (Debian package redis-server): make deps-test")
        self.certs = certs
        self.ports = cluster_ports(3)
        self.procs = {}
        for port in self.ports:
            self.procs[port] = subprocess.Popen(
                ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                 "--tls-cluster", "yes", "--tls-replication", "yes",
                 "--tls-cert-file", certs["server.pem"], "--tls-key-file", certs["server.key"],
                 "--tls-ca-cert-file", certs["ca.pem"], "--tls-auth-clients", "no",
                 "--cluster-enabled", "yes",
                 "--cluster-config-file", str(tmp / f"nodes-{port}.conf"), "--dir", str(tmp),
                 "--save", "", "--appendonly", "no"],
                stdout=open(tmp / f"redis-{port}.log", "w"), stderr=subprocess.STDOUT)
        for port in self.ports:
            wait_for(lambda: answers(port, certs, "PING") == b"+PONG\r\n",
                     f"redis-server {port} to answer PING over TLS")
        subprocess.run(["redis-cli", "--tls", "--cacert", certs["ca.pem"], "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in self.ports], "--cluster-yes"],
                       check=True, capture_output=True, timeout=4 * TIMEOUT)
        for port in self.ports:
            wait_for(lambda: b"cluster_state:ok" in (answers(port, certs, "CLUSTER", "INFO")
                                                     or b""),
                     f"node {port}: cluster_state:ok", timeout=3 * TIMEOUT)

    def masters(self):
        """{port: [(first, last)]} as CLUSTER NODES (asked over TLS) names them."""
        text = answers(self.ports[0], self.certs, "CLUSTER", "NODES").decode()
        out = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8 or "master" not in fields[2]:
                continue
            port = int(re.match(r"[^:]*:(\d+)", fields[1]).group(1))
            out[port] = [tuple(int(x) for x in (r.split("-") * 2)[:2]) for r in fields[8:]
                         if not r.startswith("[")]
        return out

    def master_of(self, nsp):
        slot = slot_of(nsp)
        return next(p for p, ranges in self.masters().items()
                    if any(a <= slot <= b for a, b in ranges))

    def url(self, ca):
        return ("rediss+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2]) +
                f"?ssl_ca_certs={ca}")

    def close(self):
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def tls_cluster(tmp_path, certs):  # noqa: F811
    c = TlsRedisCluster(tmp_path, certs)
    yield c
    c.close()


@pytest.fixture
def nodes():
    """nodes(url, n) -> n examples/socketio nodes on url; stopped at teardown."""
    running = []

    def start(url, n):
        started = [SioServer("eddy", ("--redis", url, "--namespaces", "4", "--recovery", "60000"))
                   for _ in range(n)]
        running.extend(started)
        return started

    yield start
    stop_all(running)


def test_broadcasts_cross_on_every_master_over_tls(tls_cluster, certs, nodes,  # noqa: F811
                                                   clients):
    """Two nodes on rediss+cluster:// read the topology over TLS (CLUSTER SLOTS names the
    masters' TLS ports), connect to every master over TLS (each certificate verified
    against the test's CA and 127.0.0.1) and exchange broadcasts in namespaces of all three
    masters, once and in order, each namespace's keys on the master of its slot."""
    masters = tls_cluster.masters()
    assert sorted(masters) == sorted(tls_cluster.ports)
    owners = {nsp: tls_cluster.master_of(nsp) for nsp in NAMESPACES}
    assert set(owners.values()) == set(masters)
    a, b = nodes(tls_cluster.url(certs["ca.pem"]), 2)
    for n in (a, b):
        for port in masters:
            n.wait_log(rf"connected to Redis 127\.0\.0\.1:{port} \(slot \d+\)")
    members = {nsp: member_and_sender(clients, a, b, nsp, i) for i, nsp in enumerate(NAMESPACES)}
    cross_in_order(clients, members)
    for nsp, owner in owners.items():
        assert answers(owner, certs, "EXISTS", f"eddy:{{{nsp}}}:pos") == 1, (nsp, owner)
    assert all(n.proc.poll() is None for n in (a, b))


def test_a_wrong_ca_is_refused(tls_cluster, certs):  # noqa: F811
    """A CA that did not sign the cluster's certificates: every seed's handshake is refused
    with OpenSSL's reason in the log, no topology comes of it; the node starts anyway, keeps
    asking (attempt 2 logged the same reasons) and never connects."""
    node = SioServer("eddy", ("--redis", tls_cluster.url(certs["other_ca.pem"])))
    try:
        for port in tls_cluster.ports[:2]:
            node.wait_log(rf"Redis Cluster seed 127\.0\.0\.1:{port}: TLS handshake: "
                          r"certificate verify failed: (unable to get local issuer "
                          r"certificate|self-signed certificate in certificate chain)")
        node.wait_log(r"no Redis Cluster seed gave the topology \(attempt 2\)", 3 * TIMEOUT)
        assert node.proc.poll() is None
        assert not any("connected to Redis" in line for line in node.log_lines)
    finally:
        node.stop()


def test_tls_cluster_urls_checked(tmp_path):
    """The daemon's config check accepts rediss+cluster:// with its seeds and TLS
    parameters; the layer refuses a path in one, and TLS parameters on redis+cluster://, at
    start (examples/socketio exits, logged)."""
    config_check_urls(tmp_path, [("rediss+cluster://127.0.0.1:1,127.0.0.1:2?ssl_ca_certs=/x",
                                  True),
                                 ("rediss+cluster://:secret@127.0.0.1:1", True),
                                 ("rediss+cluster://", False)])
    for url, why in [("rediss+cluster://127.0.0.1:1/1", "a path in a rediss+cluster"),
                     ("redis+cluster://127.0.0.1:1?ssl_ca_certs=/x", "need rediss+cluster")]:
        refused_at_start(url, why)
