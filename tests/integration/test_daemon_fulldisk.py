# SPDX-License-Identifier: MIT
"""A full disk is bad input: `eddy serve` with its log and access log on /dev/full (every
write fails with ENOSPC) keeps serving, counts the lines lost in /metrics, /status and
/admin/stats, says so once on its original stderr, and after the files are rotated and
SIGRTMIN reopens them (Swoole's signal for it) writes how many lines were lost."""

import json
import os
import re
import resource
import signal
import subprocess

from eddyserver import TIMEOUT, free_port, wait_for
from eddyserver import read_text as read
from test_daemon import EDDY, alive, assert_clean, eddy, http, pid_of, site  # noqa: F401
from test_daemon_admin import PASSWORD, get
from test_daemon_ops import scrape
from wsraw import RawClient


def write_conf(tmp, port, admin):
    path = tmp / "eddy.conf"
    path.write_text(f"[server]\nport = {port}\nworker_num = 2\npid_file = eddy.pid\n"
                    f"max_wait_time = 10\n[static]\ndocument_root = {tmp}\n"
                    f"[admin]\nport = {admin}\npassword = {PASSWORD}\n"
                    f"[log]\nlog_level = info\nlog_file = {tmp}/eddy.log\n"
                    f"http_access_log = {tmp}/access.log\n")
    return str(path)


def lost(samples):
    return (samples[("eddy_log_lines_lost_total", '{log="error"}')],
            samples[("eddy_log_lines_lost_total", '{log="access"}')])


def healthy(port):
    try:
        return http(port, "/healthz")[0] == 200
    except OSError:
        return False


def count_after(text, needle):
    """The number after needle in text (the first line that has it), or None."""
    m = re.search(re.escape(needle) + r"(\d+)", text)
    return int(m.group(1)) if m else None


def start(tmp):
    """`eddy serve` of write_conf()'s site in tmp, its stderr in console.txt, once healthy:
    (process, console path, port, admin port)."""
    port, admin = free_port(), free_port()
    conf = write_conf(tmp, port, admin)
    console = tmp / "console.txt"
    with open(console, "w") as out:
        proc = subprocess.Popen([EDDY, "serve", "-c", conf], cwd=tmp, stdout=out, stderr=out)
    try:
        wait_for(lambda: proc.poll() is not None or healthy(admin), "the server to start")
        assert proc.poll() is None, read(console)
    except BaseException:
        proc.kill()
        proc.wait(timeout=TIMEOUT)
        raise
    return proc, console, port, admin


def test_logs_on_a_full_disk_are_counted_told_once_and_recovered_by_sigrtmin(tmp_path):
    (tmp_path / "index.html").write_text("<h1>eddy</h1>\n")
    os.symlink("/dev/full", tmp_path / "eddy.log")
    os.symlink("/dev/full", tmp_path / "access.log")
    proc, console, port, admin = start(tmp_path)
    try:

        # Served while no log line can be written: HTTP and the WebSocket echo.
        for _ in range(5):
            assert http(port, "/")[:3:2] == (200, b"<h1>eddy</h1>\n")
        client = RawClient("127.0.0.1", port)
        client.handshake("/ws")
        client.send_frame(0x1, b"hello")
        assert client.recv_message() == (0x1, b"hello")
        client.close_handshake()
        wait_for(lambda: lost(scrape(admin))[1] >= 6, "the access lines to be counted")
        error_lost, access_lost = lost(scrape(admin))
        assert error_lost >= 1  # "listening on", "serving files"
        # The admin listener's requests are logged too: 5 pages, the upgrade, the scrapes.
        assert access_lost >= 6
        status = json.loads(http(admin, "/status")[2])
        assert status["log_lines_lost"] >= error_lost
        assert status["access_log_lines_lost"] >= access_lost
        stats = json.loads(get(admin, "/admin/stats", password=PASSWORD)[2])
        assert stats["log_lines_lost"] >= error_lost
        assert stats["access_log_lines_lost"] >= access_lost

        # Told once per log on the stderr eddy was started with, not per line.
        text = read(console)
        full = "fail (No space left on device): its lines are lost"
        assert text.count(f"\tWARNING\twrites to the log /dev/full {full}") == 1, text
        assert text.count(f"\tWARNING\twrites to the http_access_log /dev/full {full}") == 1, text
        assert len(text.splitlines()) == 2, text

        # Rotated (logrotate's create mode), then SIGRTMIN: the loss is written down.
        for name in ("eddy.log", "access.log"):
            os.unlink(tmp_path / name)
            (tmp_path / name).write_text("")
        error_lost, _ = lost(scrape(admin))
        proc.send_signal(signal.SIGRTMIN)
        wait_for(lambda: "SIGRTMIN: log files reopened" in read(tmp_path / "eddy.log"),
                 "the reopen")
        log = read(tmp_path / "eddy.log")
        assert count_after(log, f"\tWARNING\tthe log {tmp_path}/eddy.log is written again: ") \
            == error_lost, log
        assert http(port, "/")[0] == 200
        wait_for(lambda: "the http_access_log" in read(tmp_path / "eddy.log"),
                 "the access log's recovery line")
        _, access_lost = lost(scrape(admin))
        log = read(tmp_path / "eddy.log")
        assert count_after(log, f"\tWARNING\tthe http_access_log {tmp_path}/access.log is "
                                "written again: ") == access_lost, log
        assert '"GET / HTTP/1.1" 200 ' in read(tmp_path / "access.log")
        # Counters never go back; nothing more was lost or told; still serving.
        assert lost(scrape(admin)) == (error_lost, access_lost)
        assert len(read(console).splitlines()) == 2
        assert proc.poll() is None
    finally:
        assert stop(proc, console) == 0, read(console)


def test_reload_reopens_the_access_log_too(tmp_path):
    (tmp_path / "index.html").write_text("<h1>eddy</h1>\n")
    proc, console, port, admin = start(tmp_path)
    try:
        assert http(port, "/")[0] == 200
        wait_for(lambda: "GET / HTTP/1.1" in read(tmp_path / "access.log"), "the access line")
        # logrotate's create mode, then `eddy reload`'s SIGHUP.
        os.rename(tmp_path / "access.log", tmp_path / "access.log.1")
        os.rename(tmp_path / "eddy.log", tmp_path / "eddy.log.1")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload done" in read(tmp_path / "eddy.log"), "the reload")
        assert http(port, "/index.html")[0] == 200
        wait_for(lambda: "GET /index.html" in read(tmp_path / "access.log"), "the new file")
        assert "GET /index.html" not in read(tmp_path / "access.log.1")
        assert read(console) == ""
    finally:
        assert stop(proc, console) == 0, read(console)


def serve(tmp, path, **popen):
    """`eddy serve`, its stderr in console.txt, once it serves."""
    console = tmp / "console.txt"
    with open(console, "w") as out:
        proc = subprocess.Popen([EDDY, "serve", "-c", path], cwd=tmp, stdout=out, stderr=out,
                                **popen)
    wait_for(lambda: proc.poll() is not None or "serving files" in read(console),
             "the server to start")
    assert proc.poll() is None, read(console)
    return proc, console


def stop(proc, console):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=TIMEOUT)
    assert_clean(console)
    return rc


def test_a_log_over_the_file_size_limit_is_counted_and_does_not_kill_the_server(site):
    tmp, conf = site
    admin = free_port()
    path, port = conf(admin_port=admin)
    proc, console = serve(tmp, path)
    try:
        # Appends to the log fail with EFBIG from now on, and raise SIGXFSZ.
        size = os.path.getsize(console)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
        proc.send_signal(signal.SIGHUP)  # its lines cannot be written
        wait_for(lambda: proc.poll() is not None or lost(scrape(admin))[0] >= 2,
                 "the reload's lines to be counted")
        assert proc.poll() is None, f"killed by signal {-proc.returncode}"
        assert http(port, "/")[0] == 200
        assert os.path.getsize(console) == size
    finally:
        assert stop(proc, console) == 0


def test_a_restart_that_cannot_write_the_pid_file_does_not_take_over(site):
    tmp, conf = site
    path, port = conf()
    # SIGXFSZ ignored from the start, so that only the pid file decides (a build that
    # does not ignore it itself would die of the log's first write otherwise).
    proc, console = serve(tmp, path,
                          preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    old = pid_of(tmp)
    try:
        assert old == proc.pid
        # The old process and the new one it starts write files of 3 bytes at most: the
        # new pid file is cut ("12345\n"), the log takes nothing more.
        resource.prlimit(old, resource.RLIMIT_FSIZE, (3, resource.RLIM_INFINITY))
        out = eddy("restart", "-c", path, cwd=tmp)
        assert out.returncode == 1 and "did not take over" in out.stderr, out.stdout + out.stderr
        # The pid file names the process that serves, so `eddy stop` stops it.
        assert pid_of(tmp) == old and alive(old) and http(port, "/")[0] == 200
        assert not [name for name in os.listdir(tmp) if name.endswith(".tmp")]
        resource.prlimit(old, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        out = eddy("stop", "-c", path, cwd=tmp)
        assert out.returncode == 0, out.stdout + out.stderr
        assert proc.wait(timeout=TIMEOUT) == 0 and not os.path.exists(tmp / "eddy.pid")
    finally:
        stop(proc, console)
