# SPDX-License-Identifier: MIT
"""Running the Socket.IO test application (issue 11) for the Socket.IO suites.

Two servers implement the same application with the same options (--host --port
--ping-interval --ping-timeout --connect-timeout --recovery MS) and both log
"listening on <host>:<port>" once they accept connections:
- "reference": Node's socket.io 4.8 running tests/clients/sio_reference.js;
- "eddy": build/examples/socketio (EDDY_BUILD), from examples/socketio.c.

SIO_SERVERS lists "eddy" exactly when examples/socketio.c is in the checkout, so every
suite runs against eddy from the moment the example is merged. Tests parametrize over it
and start servers with the start_sio_server fixture (stopped at teardown).
"""

import os
import re
import shutil

import pytest

from eddyserver import BUILD, ROOT, Server, stop_all

CLIENTS = os.path.join(ROOT, "tests", "clients")
SIO_SERVERS = ["reference"] + (["eddy"] if os.path.exists(
    os.path.join(ROOT, "examples", "socketio.c")) else [])


def node():
    """The node binary; the suites need it and tests/clients/node_modules."""
    path = shutil.which("node")
    if path is None or not os.path.isdir(os.path.join(CLIENTS, "node_modules")):
        pytest.fail("node and tests/clients/node_modules are needed: run `make test`")
    return path


class SioServer(Server):
    """A running Socket.IO test application: kind, options, url (http://127.0.0.1:<port>)."""

    def __init__(self, kind, options=()):
        if kind == "reference":
            program = [node(), os.path.join(CLIENTS, "sio_reference.js")]
        elif kind == "eddy":
            program = [os.path.join(BUILD, "examples", "socketio")]
        else:
            raise ValueError(f"unknown Socket.IO server {kind!r}")
        super().__init__("socketio", options, program=program)
        self.kind = kind
        self.options = list(options)
        # The command line of another server like this one, less --port: for a test that
        # starts its own (a restart on the same port, say).
        self.command = program + ["--host", "127.0.0.1"] + self.options

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def recovery(self):
        return "--recovery" in self.options


@pytest.fixture
def start_sio_server():
    """start_sio_server(kind, *options) -> SioServer; all stopped at teardown."""
    servers = []

    def start(kind, *options):
        server = SioServer(kind, options)
        servers.append(server)
        return server

    yield start
    stop_all(servers)


HEADER = re.compile(r"^//\s*sio-(server|env):(.*)$")


def suite_header(path):
    """The `// sio-server: OPTIONS` and `// sio-env: NAME=VALUE ...` lines among the first 10
    lines of a suite file: (server options list, extra environment dict)."""
    options, env = [], {}
    with open(path, encoding="utf-8") as f:
        for _, line in zip(range(10), f):
            match = HEADER.match(line.strip())
            if not match:
                continue
            words = match.group(2).split()
            if match.group(1) == "server":
                options += words
            else:
                env.update(word.split("=", 1) for word in words)
    return options, env
