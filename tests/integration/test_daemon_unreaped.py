# SPDX-License-Identifier: MIT
"""`eddy stop`, `restart` and `status` with a server that has exited but whose parent has not
reaped it yet (a zombie): it is stopped. Here the parent is the test itself, which does not
wait for its `eddy serve` child until the end, as a container's PID 1 that never reaps would
not (on a VM, PID 1 reaped a daemon 1.2 s late: every `eddy stop` took 1.6 s)."""

import re
import subprocess

from eddyserver import TIMEOUT
from test_daemon import EDDY, Serving, alive, eddy, pid_of, read, site  # noqa: F401  (site)


def state(pid):
    """The state letter of /proc/PID/stat (after the command name, which may hold ')')."""
    return read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0]


def run_bounded(*args, cwd):
    """An eddy command that must end within TIMEOUT: its (returncode, stdout, stderr)."""
    proc = subprocess.Popen([EDDY, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"eddy {args[0]} still waits after {TIMEOUT} s: {out}{err}")
    return proc.returncode, out, err


def unreaped_site(site):
    """A config whose stop would wait 60 s for a server it counts as running."""
    tmp, conf = site
    path, port = conf()
    (tmp / "eddy.conf").write_text(read(path).replace("max_wait_time = 10",
                                                      "max_wait_time = 60"))
    return tmp, path, port


def test_stop_counts_an_exited_unreaped_server_as_stopped(site):
    tmp, path, port = unreaped_site(site)
    server = Serving(tmp, path)  # our child: it stays a zombie until server.stop() reaps it
    pid = server.proc.pid
    try:
        assert pid_of(tmp) == pid
        rc, out, err = run_bounded("stop", "-c", path, cwd=tmp)
        assert rc == 0 and "> success" in out, out + err
        assert state(pid) == "Z"  # exited, not reaped: the case at hand
        assert "Terminated: shutting down" in read(server.log_path)
        # A pid file left naming the zombie (as after a crash) names no running eddy.
        (tmp / "eddy.pid").write_text(f"{pid}\n")
        status = eddy("status", "-c", path, cwd=tmp)
        assert status.returncode == 3 and re.match(r"state +stopped", status.stdout), status
        assert eddy("stop", "-c", path, cwd=tmp).returncode == 3
        assert state(pid) == "Z"
    finally:
        assert server.stop() == 0


def test_restart_counts_the_exited_unreaped_old_server_as_gone(site):
    tmp, path, port = unreaped_site(site)
    server = Serving(tmp, path)
    old = server.proc.pid
    try:
        rc, out, err = run_bounded("restart", "-c", path, cwd=tmp)
        assert rc == 0 and "> success" in out, out + err + read(server.log_path)
        new = pid_of(tmp)
        assert new != old and alive(new) and state(old) == "Z"
    finally:
        rc, out, err = run_bounded("stop", "-c", path, cwd=tmp)
        assert rc == 0, out + err
        assert server.stop() == 0
