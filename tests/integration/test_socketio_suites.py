# SPDX-License-Identifier: MIT
"""The Socket.IO suites (tests/clients/sio/*.test.js, node:test) against every Socket.IO server.

Each suite file runs with `node --test` against its own freshly started server: the reference
(Node's socket.io 4.8) always (in the plain pass: conftest.py skips it under sanitizers), and
eddy's examples/socketio as soon as examples/socketio.c is in the checkout
(sioserver.SIO_SERVERS). The server options come from the file's header:

    // sio-server: --ping-interval 300 --ping-timeout 200 --connect-timeout 1000
    // sio-env: NAME=value ...

The file sees SIO_URL=http://127.0.0.1:<port>, SIO_SERVER=reference|eddy, SIO_RECOVERY=1 when
the server runs with --recovery, SIO_SERVER_CMD (a JSON array: the command line of the same
server with the same options, less --port, for a file that starts its own, e.g. to restart
one) and the sio-env variables. A suite file passes when node's
test runner exits 0; its TAP output (and the server's log) is shown when it does not.
"""

import glob
import json
import os
import subprocess

import pytest

from sioserver import CLIENTS, SIO_SERVERS, node, suite_header

SUITES = sorted(glob.glob(os.path.join(CLIENTS, "sio", "*.test.js")))
# A whole file against one server takes a few seconds; this bounds a hung one.
SUITE_TIMEOUT = 120


def test_suites_exist():
    """The glob found the suites: a moved directory cannot turn this test into no test."""
    names = {os.path.basename(path) for path in SUITES}
    assert {"protocol_engineio.test.js", "protocol_socketio.test.js",
            "protocol_badinput.test.js", "eio3_client.test.js", "eio3_raw.test.js",
            "eio3_polling.test.js", "heartbeat.test.js", "heartbeat_alive.test.js"} <= names


@pytest.mark.parametrize("suite", SUITES, ids=os.path.basename)
@pytest.mark.parametrize("kind", SIO_SERVERS)
def test_suite(start_sio_server, kind, suite):
    options, extra_env = suite_header(suite)
    server = start_sio_server(kind, *options)
    env = dict(os.environ, SIO_URL=server.url, SIO_SERVER=kind,
               SIO_SERVER_CMD=json.dumps(server.command), **extra_env)
    if server.recovery:
        env["SIO_RECOVERY"] = "1"
    cmd = [node(), "--test", "--test-reporter=tap", "--test-timeout=20000", suite]
    try:
        run = subprocess.run(cmd, cwd=CLIENTS, env=env, capture_output=True, text=True,
                             timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{os.path.basename(suite)} did not finish within {SUITE_TIMEOUT}s:\n"
                    f"{e.stdout or ''}")
    if run.returncode != 0:
        # Lines cut short: a failed assertion on a megabyte payload prints the payload.
        tap = "\n".join(line[:300] for line in run.stdout.splitlines())
        failed = [line.strip() for line in tap.splitlines() if "not ok" in line]
        pytest.fail(f"{os.path.basename(suite)} against {kind} ({' '.join(options)}): "
                    f"failing: {failed}\n{tap}\n{run.stderr[-4000:]}\n"
                    "server log:\n" + "\n".join(server.log_lines[-50:]))
