# SPDX-License-Identifier: MIT
"""What README.md tells a new user to type works as written: its Socket.IO example, built
with its command line for a checkout, serves what its comments say; the examples' --help
fits a terminal, eddy --help names what README's command table does, and `eddy config
check` refuses what `eddy serve` would."""

import json
import os
import re
import shlex
import subprocess
import time

import pytest

from eddyserver import BUILD, ROOT, TIMEOUT
from sioserver import CLIENTS, node
from test_packaging import sanitizer_flags

EXAMPLES = ["echo", "seed_disconnect", "push_all", "auth_token", "custom_handshake", "frames",
            "pubsub", "socketio", "chat"]


def readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def checkout_link_command():
    """The README's command for linking against a checkout's static library, as a list."""
    text = re.sub(r"\s+", " ", readme())
    command = re.search(r"from a checkout `(cc app\.c -Iinclude build/libeddy\.a [^`]*)`", text)
    assert command, "README no longer shows how to link from a checkout"
    return shlex.split(command.group(1))


def socketio_example():
    """The README's Socket.IO example (the block that includes eddy_rt.h), on a free port."""
    source = re.search(r"```c\n(#include <eddy_rt.h>\n.*?)```", readme(), re.S).group(1)
    assert 'eddy_server_new("127.0.0.1", 3000)' in source
    return source.replace('eddy_server_new("127.0.0.1", 3000)', 'eddy_server_new("127.0.0.1", 0)')


# Two sockets with a token (user alice) in the example's "lobby" and one without: the chat
# one sends is acknowledged "sent" and reaches the other (socket.to("lobby")), not itself;
# the socket without a token is refused.
CLIENT_SCRIPT = r"""
const { io } = require('socket.io-client');
const url = process.argv[1], out = {};
const opts = (auth) => ({ auth, transports: ['websocket'], reconnection: false });
const a = io(url, opts({ token: 't1' })), b = io(url, opts({ token: 't2' }));
const anonymous = io(url, opts({}));
const done = () => {
  if ('ack' in out && 'b' in out && 'refused' in out) {
    setTimeout(() => { console.log(JSON.stringify(out)); process.exit(0); }, 200);
  }
};
a.on('chat', (...args) => { out.a = args; });
b.on('chat', (...args) => { out.b = args; done(); });
anonymous.on('connect_error', (err) => { out.refused = err.message; done(); });
let connected = 0;
const ready = () => {
  if (++connected === 2) a.emit('chat', 'hello', (answer) => { out.ack = answer; done(); });
};
a.on('connect', ready);
b.on('connect', ready);
setTimeout(() => { console.log(JSON.stringify(out)); process.exit(1); }, 5000);
"""


def test_readme_socketio_example_built_from_a_checkout_serves_its_room(tmp_path):
    source = tmp_path / "app.c"
    source.write_text(socketio_example())
    command = checkout_link_command()
    command[command.index("app.c")] = str(source)
    command[command.index("build/libeddy.a")] = os.path.join(BUILD, "libeddy.a")
    command[command.index("-Iinclude")] = "-I" + os.path.join(ROOT, "include")
    program = tmp_path / "app"
    subprocess.run([*command, *sanitizer_flags(), "-o", str(program)], check=True,
                   timeout=300)
    proc = subprocess.Popen([str(program)], stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + TIMEOUT
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            port = match and match.group(1)
        assert port, "the README's Socket.IO example did not start listening"
        result = subprocess.run([node(), "-e", CLIENT_SCRIPT, f"http://127.0.0.1:{port}"],
                                cwd=CLIENTS, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (result.stdout, result.stderr)
        out = json.loads(result.stdout)
        assert out["ack"] == "sent"
        assert out["b"] == ["hello"], "socket.to('lobby') did not reach the other member"
        assert "a" not in out, "the sender got its own broadcast"
        assert out["refused"] == "not authorized"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_help_fits_80_columns(example):
    out = subprocess.run([os.path.join(BUILD, "examples", example), "--help"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert [line for line in out.splitlines() if len(line) > 80] == []
    assert [line for line in out.splitlines() if line.endswith(" ")] == []


def test_eddy_help_names_the_status_json_option_and_the_live_reload_keys():
    usage = subprocess.run([os.path.join(BUILD, "eddy"), "--help"], capture_output=True,
                           text=True, timeout=10, check=True).stdout
    assert "status [-c FILE] [--json]" in usage
    reload_text = re.sub(r"\s+", " ", usage.split("  reload", 1)[1].split("  config check")[0])
    for key in ("max_connection", "package_max_length", "the TLS certificate", "[auth]",
                "client_rooms", "[api]"):
        assert key in reload_text, key


@pytest.mark.parametrize("lines, ok", [
    ("history_on_join = 5", False),
    ("history_on_join = 5\nhistory_size = 10", True),
    ("history_on_join = 5\nrecovery_max_disconnection = 60", True),
    ("history_on_join = 5\nenabled = false", True),
])
def test_config_check_refuses_what_serve_would_refuse(tmp_path, lines, ok):
    """`eddy config check` is the check README tells users to run: a file it passes must not
    be refused by `eddy serve` (history_on_join without a history was)."""
    conf = tmp_path / "eddy.conf"
    conf.write_text(f"[socketio]\n{lines}\n")
    check = subprocess.run([os.path.join(BUILD, "eddy"), "config", "check", "-c", str(conf)],
                           capture_output=True, text=True, timeout=10)
    if ok:
        assert check.returncode == 0, check.stderr
    else:
        assert check.returncode == 2
        assert "history_on_join needs history_size" in check.stderr
