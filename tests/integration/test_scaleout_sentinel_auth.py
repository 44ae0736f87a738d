# SPDX-License-Identifier: MIT
"""Sentinel with ACL users (issue 12): a master whose clients log in as an ACL user and a
sentinel that does the same (Redis 6 ACLs, Debian's redis-server), both passwords holding
the bytes that delimit a URL, percent-encoded in the redis+sentinel:// URL as
redis+sentinel://user:password@sentinel/master?sentinel_username=...&sentinel_password=...
"""

from urllib.parse import quote

from eddyserver import wait_for
from test_scaleout_sentinel import MASTER, Process, answers, pytestmark  # noqa: F401
from sioserver import SioServer

MASTER_PASSWORD = "P?@/%&w:"
SENTINEL_PASSWORD = "S?@/%&x="
# The default user may only PING (the fixtures' readiness) and count the nodes' leases.
DEFAULT_USER = ["--user", "default", "on", "nopass", "-@all", "+ping", "+zcard", "~eddy:nodes"]


def test_acl_users_of_master_and_sentinel(tmp_path):
    """A node given the wrong sentinel password is refused (logged as "AUTH refused", no
    password in its log) and joins no cluster; a node given the right user names and
    passwords asks the sentinel as its ACL user (allowed only get-master-addr-by-name and
    SUBSCRIBE), connects to the master as the master's ACL user and holds its lease there;
    neither password appears in its log."""
    running = []
    nodes = []
    try:
        master = Process(tmp_path, "master", *DEFAULT_USER, "--user", "app", "on",
                         ">" + MASTER_PASSWORD, "~*", "&*", "+@all")
        running.append(master)
        sentinel = Process(tmp_path, "sentinel", conf=(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n"
            "user default on nopass -@all +ping\n"
            f"user watcher on >{SENTINEL_PASSWORD} -@all +ping "
            "+sentinel|get-master-addr-by-name +subscribe &*\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
            f"sentinel auth-user {MASTER} app\n"
            f"sentinel auth-pass {MASTER} {MASTER_PASSWORD}\n"))
        running.append(sentinel)

        def url(sentinel_password):
            return (f"redis+sentinel://app:{quote(MASTER_PASSWORD, safe='')}@127.0.0.1:"
                    f"{sentinel.port}/{MASTER}?sentinel_username=watcher&sentinel_password="
                    f"{quote(sentinel_password, safe='')}")

        wrong = SioServer("eddy", ("--redis", url("not" + SENTINEL_PASSWORD)))
        nodes.append(wrong)
        wrong.wait_log(rf"sentinel 127\.0\.0\.1:{sentinel.port}: AUTH refused")
        assert answers(master.port, "ZCARD", "eddy:nodes") == 0

        node = SioServer("eddy", ("--redis", url(SENTINEL_PASSWORD)))
        nodes.append(node)
        node.wait_log(rf"connected to Redis master {MASTER} \(127\.0\.0\.1:{master.port}\)")
        wait_for(lambda: answers(master.port, "ZCARD", "eddy:nodes") == 1,
                 "the node's lease on the master")
        for n in nodes:
            assert n.proc.poll() is None
            text = "\n".join(n.log_lines)
            for secret in (MASTER_PASSWORD, SENTINEL_PASSWORD,
                           quote(MASTER_PASSWORD, safe=""), quote(SENTINEL_PASSWORD, safe="")):
                assert secret not in text
    finally:
        for n in nodes:
            n.stop()
        for p in reversed(running):
            p.kill()
