# SPDX-License-Identifier: MIT
"""Scale-out over a Redis Cluster on TLS (issue 12): rediss+cluster:// against six Debian
redis-servers in cluster mode with TLS only (--port 0 --tls-port P, tls-cluster and
tls-replication on: the cluster bus and replication are TLS too), three masters with a
replica each joined by `redis-cli --tls --cluster create --cluster-replicas 1`,
certificates from test_scaleout_tls's throwaway CA (SAN IP:127.0.0.1, DNS:localhost). No
node has a plain port, so the topology read, the slot ask and every master's connections
went through TLS. One cluster serves the module: a test that changes the nodes' settings
(CONFIG SET) puts them back, a CLUSTER FAILOVER leaves three masters with a replica each,
and the kill -9 failover comes last.
"""

import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from eddyserver import BUILD, TIMEOUT, free_port, stop_all, wait_for
from sioserver import SioServer
from test_scaleout import clients, pytestmark  # noqa: F401 (fixture, skip mark)
from test_scaleout_cluster import (FAILOVER_BOUND, NODE_TIMEOUT_MS, cluster_ports,
                                   refused_at_start, slot_of)
from test_scaleout_sentinel import crosses_again, two_sided_room
from test_scaleout_shard import NAMESPACES, config_check_urls, cross_in_order, member_and_sender
from test_scaleout_tls import answers, issue, make_certs


def resp(data):
    """A RESP2 reply in bytes, parsed: (value, rest); ValueError if data is not all of
    it."""
    kind, line, rest = data[:1], *data[1:].split(b"\r\n", 1)
    if kind == b"*":
        items = []
        for _ in range(int(line)):
            item, rest = resp(rest)
            items.append(item)
        return items, rest
    if kind == b"$":
        n = int(line)
        if len(rest) < n + 2:
            raise ValueError("a part of a bulk string")
        return (None, rest) if n < 0 else (rest[:n].decode(), rest[n + 2:])
    return (int(line) if kind == b":" else line.decode()), rest


class TlsRedisCluster:
    """Three TLS-only masters in cluster mode with a replica each, joined and ok."""

    def __init__(self, tmp, certs):
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is needed (Debian package redis-server): make deps-test")
        self.certs = certs
        self.ports = cluster_ports(6)
        self.procs = {}
        for port in self.ports:
            self.procs[port] = subprocess.Popen(
                ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                 "--tls-cluster", "yes", "--tls-replication", "yes",
                 "--tls-cert-file", certs["server.pem"], "--tls-key-file", certs["server.key"],
                 "--tls-ca-cert-file", certs["ca.pem"], "--tls-auth-clients", "no",
                 "--cluster-enabled", "yes", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                 "--cluster-config-file", str(tmp / f"nodes-{port}.conf"), "--dir", str(tmp),
                 "--save", "", "--appendonly", "no"],
                stdout=open(tmp / f"redis-{port}.log", "w"), stderr=subprocess.STDOUT)
        for port in self.ports:
            wait_for(lambda: answers(port, certs, "PING") == b"+PONG\r\n",
                     f"redis-server {port} to answer PING over TLS")
        subprocess.run(["redis-cli", "--tls", "--cacert", certs["ca.pem"], "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in self.ports], "--cluster-replicas", "1",
                        "--cluster-yes"],
                       check=True, capture_output=True, timeout=4 * TIMEOUT)
        for port in self.ports:
            wait_for(lambda: b"cluster_state:ok" in (answers(port, certs, "CLUSTER", "INFO")
                                                     or b""),
                     f"node {port}: cluster_state:ok", timeout=3 * TIMEOUT)

    def alive(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def command(self, port, *args):
        """One command's reply, parsed ("no answer" on an error). The certificate is
        checked against the CA only: a test may give the nodes one for another name."""
        ctx = ssl.create_default_context(cafile=self.certs["ca.pem"])
        ctx.check_hostname = False
        ctx.load_cert_chain(self.certs["client.pem"], self.certs["client.key"])
        out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                                for a in map(str, args))
        data = b""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                with ctx.wrap_socket(raw) as s:
                    s.sendall(out)
                    while True:
                        chunk = s.recv(65536)
                        if not chunk:
                            return "no answer"
                        data += chunk
                        try:
                            return resp(data)[0]
                        except ValueError:
                            continue
        except OSError:
            return "no answer"

    def slots(self, via=None):
        """[(first, last, master endpoint, master port, [replica ports])] as CLUSTER SLOTS
        answers."""
        reply = self.command(via or self.alive()[0], "CLUSTER", "SLOTS")
        return [(a, b, m[0], m[1], [r[1] for r in rest])
                for a, b, m, *rest in (reply if isinstance(reply, list) else [])]

    def masters(self):
        """{port: [(first, last)]} as CLUSTER SLOTS names them."""
        out = {}
        for a, b, _, m, _ in self.slots():
            out.setdefault(m, []).append((a, b))
        return out

    def master_of(self, nsp, via=None):
        slot = slot_of(nsp)
        return next((m for a, b, _, m, _ in self.slots(via) if a <= slot <= b), None)

    def master_and_replica(self, nsp):
        """The ports of the master of nsp's slot and of its replica, once it is in sync."""
        owner = self.master_of(nsp)
        wait_for(lambda: all(rs for *_, rs in self.slots()), "every master's replica listed")
        replica = next(r for _, _, _, m, rs in self.slots() if m == owner for r in rs)
        wait_for(lambda: "master_link_status:up" in self.command(replica, "INFO",
                                                                  "replication"),
                 "the replica to sync")
        return owner, replica

    def config_set(self, *pairs):
        """CONFIG SET pairs on every node."""
        for port in self.alive():
            assert self.command(port, "CONFIG", "SET", *pairs) == "OK", (port, pairs)

    def url(self, ca, seeds="127.0.0.1", query=""):
        """rediss+cluster:// with two masters as seeds written seeds:P, verified with the
        CA ca, query appended."""
        return ("rediss+cluster://" + ",".join(f"{seeds}:{p}" for p in sorted(self.masters())[:2])
                + f"?ssl_ca_certs={ca}" + query)

    def kill(self, port):
        self.procs[port].kill()
        self.procs[port].wait()

    def close(self):
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """make_certs(), and localhost.pem: a server certificate for DNS:localhost only."""
    tmp = tmp_path_factory.mktemp("certs")
    out = make_certs(tmp)
    issue(tmp, "localhost", "DNS:localhost")
    out.update({name: str(tmp / name) for name in ("localhost.pem", "localhost.key")})
    return out


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certs):
    c = TlsRedisCluster(tmp_path_factory.mktemp("cluster"), certs)
    yield c
    c.close()


@pytest.fixture
def nodes():
    """nodes(url, n, recovery=True) -> n examples/socketio nodes on url; stopped at
    teardown."""
    running = []

    def start(url, n, recovery=True):
        options = ("--redis", url, "--namespaces", "4") + (("--recovery", "60000") if recovery
                                                           else ())
        started = [SioServer("eddy", options) for _ in range(n)]
        running.extend(started)
        return started

    yield start
    stop_all(running)


def never_connected(tmp_path, url, patterns):
    """examples/socketio --redis url until its log matches every one of patterns, it
    connects to Redis or it exits (killed then): asserts that its log matches them and that
    it never connected to Redis; its log."""
    path = tmp_path / "socketio.log"
    with open(path, "w") as out:
        proc = subprocess.Popen([os.path.join(BUILD, "examples", "socketio"), "--port",
                                 str(free_port()), "--redis", url],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: proc.poll() is not None or "connected to Redis" in path.read_text()
                     or all(re.search(p, path.read_text()) for p in patterns),
                     "the log to say why")
        finally:
            proc.kill()
            proc.wait()
    log = path.read_text()
    assert "connected to Redis" not in log, log
    for p in patterns:
        assert re.search(p, log), (p, log)
    return log


def test_broadcasts_cross_on_every_master_over_tls(tls_cluster, certs, nodes,  # noqa: F811
                                                   clients):
    """Two nodes on rediss+cluster:// read the topology over TLS (CLUSTER SLOTS names the
    masters' TLS ports), connect to every master over TLS (each certificate verified
    against the test's CA and 127.0.0.1) and exchange broadcasts in namespaces of all three
    masters, once and in order, each namespace's keys on the master of its slot."""
    masters = tls_cluster.masters()
    assert len(masters) == 3 and set(masters) < set(tls_cluster.ports)
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


def test_a_wrong_ca_is_refused(tls_cluster, certs):
    """A CA that did not sign the cluster's certificates: every seed's handshake is refused
    with OpenSSL's reason in the log, no topology comes of it; the node starts anyway, keeps
    asking (attempt 2 logged the same reasons) and never connects."""
    node = SioServer("eddy", ("--redis", tls_cluster.url(certs["other_ca.pem"])))
    try:
        for port in sorted(tls_cluster.masters())[:2]:
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


def test_masters_certificates_checked_against_the_announced_address(tls_cluster, certs,
                                                                     nodes, tmp_path):
    """Every node serves a certificate for DNS:localhost only, the cluster announcing its
    nodes as 127.0.0.1. Seeds written localhost:P pass (the seed's certificate is checked
    against the seed's name), but each master's is checked against the address CLUSTER
    SLOTS names, 127.0.0.1: refused (IP address mismatch, logged per master) and the node
    is never connected. ssl_servername=localhost names the certificate of every connection,
    seeds written 127.0.0.1 and masters alike: accepted. Once the cluster announces its
    nodes by host name (cluster-announce-hostname localhost, preferred endpoint hostname),
    the masters' certificates match what CLUSTER SLOTS names: accepted. With no endpoint
    (unknown-endpoint: NULL, "the endpoint you asked") the masters are reached at the seed's
    name, localhost, their certificates checked against it: accepted."""
    tls_cluster.config_set("tls-cert-file", certs["localhost.pem"],
                           "tls-key-file", certs["localhost.key"])
    try:
        masters = sorted(tls_cluster.masters())
        by_seed_name = tls_cluster.url(certs["ca.pem"], seeds="localhost")
        mismatch = r"TLS handshake: certificate verify failed: IP address mismatch"
        log = never_connected(tmp_path, by_seed_name, [
            rf"cannot connect to Redis 127\.0\.0\.1:{p} \(slot \d+\) \({mismatch}\)"
            for p in masters])
        assert "Redis Cluster seed" not in log, log  # the seeds passed

        [named] = nodes(tls_cluster.url(certs["ca.pem"], query="&ssl_servername=localhost"), 1)
        for p in masters:
            named.wait_log(rf"connected to Redis 127\.0\.0\.1:{p} \(slot \d+\)")

        tls_cluster.config_set("cluster-announce-hostname", "localhost",
                               "cluster-preferred-endpoint-type", "hostname")
        wait_for(lambda: all({m for _, _, m, _, _ in tls_cluster.slots(p)} == {"localhost"}
                             for p in masters), "CLUSTER SLOTS to name the masters localhost")
        [by_name] = nodes(by_seed_name, 1)
        for p in masters:
            by_name.wait_log(rf"connected to Redis localhost:{p} \(slot \d+\)")
        assert not any("certificate verify failed" in line for line in by_name.log_lines)

        # No endpoint (NULL): each node is reached at the endpoint asked, the seed's name.
        tls_cluster.config_set("cluster-preferred-endpoint-type", "unknown-endpoint")
        wait_for(lambda: all({m for _, _, m, _, _ in tls_cluster.slots(p)} == {None}
                             for p in masters), "CLUSTER SLOTS to name no endpoint")
        [by_seed] = nodes(by_seed_name, 1)
        for p in masters:
            by_seed.wait_log(rf"connected to Redis localhost:{p} \(slot \d+\)")
    finally:
        tls_cluster.config_set("tls-cert-file", certs["server.pem"],
                               "tls-key-file", certs["server.key"],
                               "cluster-announce-hostname", "",
                               "cluster-preferred-endpoint-type", "ip")
        wait_for(lambda: all({m for _, _, m, _, _ in tls_cluster.slots(p)} == {"127.0.0.1"}
                             for p in tls_cluster.alive()),
                 "CLUSTER SLOTS to name the masters 127.0.0.1 again")


def test_mutual_tls(tls_cluster, certs, nodes, clients, tmp_path):  # noqa: F811
    """tls-auth-clients yes on every node: without a client certificate the seeds refuse
    the topology read, logged with the hint (Redis asked for a client certificate:
    ssl_certfile=), and the node never connects; with ssl_certfile and ssl_keyfile two nodes
    connect to every master and broadcasts cross them."""
    tls_cluster.config_set("tls-auth-clients", "yes")
    try:
        masters = sorted(tls_cluster.masters())
        url = tls_cluster.url(certs["ca.pem"])
        hint = r"\(Redis asked for a client certificate: ssl_certfile=\)"
        never_connected(tmp_path, url, [rf"Redis Cluster seed 127\.0\.0\.1:{p}: .*{hint}"
                                        for p in masters[:2]])

        a, b = nodes(url + f"&ssl_certfile={certs['client.pem']}"
                     f"&ssl_keyfile={certs['client.key']}", 2)
        for n in (a, b):
            for p in masters:
                n.wait_log(rf"connected to Redis 127\.0\.0\.1:{p} \(slot \d+\)")
        members = {nsp: member_and_sender(clients, a, b, nsp, i)
                   for i, nsp in enumerate(NAMESPACES)}
        cross_in_order(clients, members)
    finally:
        tls_cluster.config_set("tls-auth-clients", "no")


def test_manual_failover_over_tls(tls_cluster, certs, nodes, clients):  # noqa: F811
    """CLUSTER FAILOVER on the replica of "/"'s master: the old master, still running, is
    demoted with the nodes' TLS connections open; both nodes follow the promoted replica
    (logged) and broadcasts cross them again, each once. The cluster keeps three masters
    with a replica each."""
    owner, replica = tls_cluster.master_and_replica("/")
    a, b = nodes(tls_cluster.url(certs["ca.pem"]), 2, recovery=False)
    two_sided_room(clients, a, b)
    started = time.monotonic()
    assert tls_cluster.command(replica, "CLUSTER", "FAILOVER") == "OK"
    wait_for(lambda: tls_cluster.master_of("/", via=replica) == replica,
             "the replica to take over", timeout=FAILOVER_BOUND)
    crosses_again(clients, started, FAILOVER_BOUND, "TLS manual failover")
    for node in (a, b):
        node.wait_log(rf"slot \d+ moved from 127\.0\.0\.1:{owner} to 127\.0\.0\.1:{replica}")
    assert all(node.proc.poll() is None for node in (a, b))


def test_master_killed_replica_promoted_over_tls(tls_cluster, certs, nodes,  # noqa: F811
                                                 clients):
    """kill -9 of the master of "/" (the module's last test: the cluster stays without
    it): the cluster promotes its replica over the TLS bus, both nodes find it (logged:
    the slot moved; its certificate checked against the replica's address) and broadcasts
    cross the nodes both ways again, each once, within FAILOVER_BOUND seconds of the kill.
    Nothing crashed."""
    owner, replica = tls_cluster.master_and_replica("/")
    a, b = nodes(tls_cluster.url(certs["ca.pem"]), 2, recovery=False)
    two_sided_room(clients, a, b)
    killed = time.monotonic()
    tls_cluster.kill(owner)
    wait_for(lambda: tls_cluster.master_of("/", via=replica) == replica,
             "the cluster to promote the replica", timeout=FAILOVER_BOUND)
    crosses_again(clients, killed, FAILOVER_BOUND, "TLS cluster failover")
    for node in (a, b):
        node.wait_log(rf"slot \d+ moved from 127\.0\.0\.1:{owner} to 127\.0\.0\.1:{replica}")
        node.wait_log(rf"Redis 127\.0\.0\.1:{replica} \(slot \d+\) connected again")
    assert all(node.proc.poll() is None for node in (a, b))
