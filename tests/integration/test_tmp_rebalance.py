import subprocess, time
from test_scaleout_cluster import *  # noqa
from test_scaleout_cluster import redis_cluster, nodes  # noqa: F811
from test_scaleout import clients  # noqa: F811


def test_rebalance_exp(redis_cluster, nodes, clients):  # noqa: F811
    a, b = nodes(2)
    members = {nsp: member_and_sender(clients, b, a, nsp, i) for i, nsp in enumerate(NAMESPACES)}
    connect_in(clients, "q", a, "/")
    print("before", sockets_seen(clients, "q", 1 + 2))
    cross_in_order(clients, members)
    before = {nsp: redis_cluster.master_of(nsp) for nsp in NAMESPACES}
    new = redis_cluster.add_master()
    r = subprocess.run(["redis-cli", "--cluster", "rebalance", f"127.0.0.1:{redis_cluster.ports[0]}",
                        "--cluster-use-empty-masters", "--cluster-yes"], capture_output=True,
                       text=True, timeout=120)
    print("REBALANCE", r.returncode, r.stdout[-800:], r.stderr[-300:])
    after = {nsp: redis_cluster.master_of(nsp) for nsp in NAMESPACES}
    print("MASTERS before", before, "after", after, "slots", redis_cluster.slots())
    time.sleep(5)
    members2 = {nsp: member_and_sender(clients, b, a, nsp, 10 + i) for i, nsp in enumerate(NAMESPACES)}
    cross_in_order(clients, members2)
    connect_in(clients, "q2", a, "/")
    for name in ("q2",):
        got = clients.ack(name, "x-fetch", {}, 1000)[0]
        print("FETCH", len(got["sockets"]), got["missing"])
    for i, node in enumerate((a, b)):
        clients.connect(f"st{i}", node)
        print("STATUS", clients.ack(f"st{i}", "x-broker")[0])
    print("LOG A\n" + "\n".join(l for l in a.log_lines if "INFO" not in l))
    print("LOG B\n" + "\n".join(l for l in b.log_lines if "INFO" not in l))
