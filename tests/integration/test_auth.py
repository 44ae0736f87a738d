# SPDX-License-Identifier: MIT
"""Authentication at connect in the eddy program ([auth], cmd/auth*.c): HS256 tokens
minted by PyJWT (Debian's python3-jwt), checked before the WebSocket upgrade of the
running daemon; key rotation by reload."""

import os
import signal
import subprocess
import time

import jwt
import pytest

from eddyserver import BUILD, SANITIZER_PATTERNS, TIMEOUT, free_port, wait_for
from eddyserver import read_text as read
from wsraw import RawClient

EDDY = os.path.join(BUILD, "eddy")
KEY_A = "key-A: 32 bytes or more of secret"
KEY_B = "key-B: 32 bytes or more of secret"


def token(key, algorithm="HS256", **claims):
    return jwt.encode({"sub": "alice", **claims}, key, algorithm=algorithm)


class Daemon:
    """`eddy serve` with an [auth] section, its log gathered in a file."""

    def __init__(self, tmp, auth, env=None):
        self.tmp, self.port = tmp, free_port()
        self.conf = tmp / "eddy.conf"
        (tmp / "www").mkdir(exist_ok=True)
        self.write(auth)
        self.log_path = tmp / "serve.log"
        self.log = open(self.log_path, "w")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([EDDY, "serve", "-c", str(self.conf)], cwd=tmp,
                                     env=full_env, stdout=self.log, stderr=self.log)
        try:
            wait_for(lambda: "serving files" in read(self.log_path) or
                     self.proc.poll() is not None, "the server to start")
        except AssertionError:
            self.proc.kill()
            self.proc.wait()
            raise
        assert self.proc.poll() is None, read(self.log_path)

    def write(self, auth):
        self.conf.write_text(f"[server]\nport = {self.port}\nworker_num = 2\n"
                             f"[log]\nlog_level = info\n[auth]\n{auth}\n")

    def upgrade(self, path="/ws", headers=None, expect_status=101):
        client = RawClient("127.0.0.1", self.port, timeout=TIMEOUT)
        status, headers, body = client.handshake(path, headers=headers,
                                                 expect_status=expect_status)
        if status == 101:
            client.send_frame(0x1, b"hello")
            assert client.recv_message() == (0x1, b"hello")
            client.close_handshake()
        client.close()
        return headers, body

    def reload(self, auth, expect):
        self.write(auth)
        out = subprocess.run([EDDY, "reload", "-c", str(self.conf)], cwd=self.tmp,
                             capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: expect in read(self.log_path), expect)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=TIMEOUT) == 0
        self.log.close()
        text = read(self.log_path)
        for pattern in SANITIZER_PATTERNS:
            assert pattern not in text, text
        return text


def test_token_in_the_query_or_the_bearer_header_is_accepted(tmp_path):
    server = Daemon(tmp_path, f"enabled = true\nkey = {KEY_A}\n")
    try:
        good = token(KEY_A, exp=int(time.time()) + 60, info={"name": "Alice"})
        server.upgrade(f"/ws?token={good}")
        server.upgrade("/ws", headers={"Authorization": f"Bearer {good}"})
        server.upgrade("/ws", headers={"Authorization": f"bearer {token(KEY_A, sub='bob')}"})
        wait_for(lambda: read(server.log_path).count('accepted as user "alice"') == 2,
                 "two accepted lines for alice")
        wait_for(lambda: 'accepted as user "bob"' in read(server.log_path), "bob's line")
    finally:
        log = server.stop()
    assert "auth: HS256 tokens required" in log
    assert good not in log and KEY_A not in log


def test_missing_bad_and_forbidden_tokens_are_refused_before_the_upgrade(tmp_path):
    server = Daemon(tmp_path, f"enabled = true\nkey = {KEY_A}\naudience = chat\n")
    refused = []
    try:
        headers, body = server.upgrade("/ws", expect_status=401)
        assert headers["www-authenticate"] == 'Bearer realm="eddy"'  # RFC 6750 3.1
        assert body == b"authentication required\n"
        cases = [
            (token(KEY_B, aud="chat"), 401, "bad signature"),
            (token(None, algorithm="none", aud="chat"), 401, "alg none refused"),
            (token(KEY_A, algorithm="HS512", aud="chat"), 401, "alg is not HS256"),
            (token(KEY_A, aud="chat")[:-5], 401, "signature is not 32 bytes of base64url"),
            ("n!t.a.token", 401, "header is not base64url"),
            (token(KEY_A, aud="chat", exp=int(time.time()) - 1), 401, "expired"),
            (token(KEY_A, aud="admin"), 403, "audience not accepted"),
            (token(KEY_A), 403, "no audience in the token"),
        ]
        for bad, status, reason in cases:
            headers, body = server.upgrade(f"/ws?token={bad}", expect_status=status)
            if status == 401:
                assert headers["www-authenticate"] == (
                    f'Bearer realm="eddy", error="invalid_token", error_description="{reason}"')
                assert body == f"invalid token: {reason}\n".encode()
            else:
                assert "www-authenticate" not in headers
                assert body == f"forbidden: {reason}\n".encode()
            refused.append(bad)
        # Both a query token and a header token: a malformed request (RFC 6750 2).
        good = token(KEY_A, aud="chat")
        headers, _ = server.upgrade(f"/ws?token={good}",
                                    headers={"Authorization": f"Bearer {good}"},
                                    expect_status=400)
        assert 'error="invalid_request"' in headers["www-authenticate"]
        server.upgrade(f"/ws?token={good}")
        # Other paths still answer 404, before any token is looked at.
        server.upgrade(f"/elsewhere?token={good}", expect_status=404)
        wait_for(lambda: read(server.log_path).count("auth: refused 127.0.0.1:") == len(cases) + 2,
                 "a notice per refusal")
    finally:
        log = server.stop()
    assert "NOTICE\tauth: refused 127.0.0.1:" in log and ": 401 expired" in log
    assert ": 403 audience not accepted" in log
    for bad in refused:
        assert bad not in log
    assert KEY_A not in log


def test_an_expired_token_is_refused_once_it_expires(tmp_path):
    server = Daemon(tmp_path, f"enabled = true\nkey = {KEY_A}\nleeway = 0\n")
    try:
        expiring = token(KEY_A, exp=int(time.time()) + 2)
        server.upgrade(f"/ws?token={expiring}")

        def refused():
            client = RawClient("127.0.0.1", server.port, timeout=TIMEOUT)
            try:
                client.handshake(f"/ws?token={expiring}", expect_status=401)
                return True
            except AssertionError:  # still accepted (101)
                return False
            finally:
                client.close()

        wait_for(refused, "the token to expire", timeout=TIMEOUT + 3)
        assert ": 401 expired" in read(server.log_path)
    finally:
        server.stop()


def test_reload_rotates_the_key_without_a_restart(tmp_path):
    server = Daemon(tmp_path, f"enabled = true\nkey = {KEY_A}\n")
    pid = server.proc.pid
    try:
        old, new = token(KEY_A, sub="old"), token(KEY_B, sub="new")
        server.upgrade(f"/ws?token={old}")
        server.upgrade(f"/ws?token={new}", expect_status=401)
        # Rotation: the new key signs, the old one is still accepted.
        server.reload(f"enabled = true\nkey = {KEY_B}\nprevious_key = {KEY_A}\n",
                      "reload: [auth] key, previous_key applied")
        server.upgrade(f"/ws?token={new}")
        server.upgrade(f"/ws?token={old}")
        # The old key retired.
        server.reload(f"enabled = true\nkey = {KEY_B}\n", "reload: [auth] previous_key applied")
        server.upgrade(f"/ws?token={new}")
        server.upgrade(f"/ws?token={old}", expect_status=401)
        # An invalid [auth] section is refused by the server too, keeping the running keys.
        server.write("enabled = true\nkey = short\n")
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: "[auth] key: an HS256 key has 32 to 256 bytes" in read(server.log_path),
                 "the refusal")
        server.upgrade(f"/ws?token={new}")
        # Turned off live.
        server.reload("enabled = false\n", "reload: [auth] enabled, key applied")
        server.upgrade("/ws")
        assert server.proc.pid == pid and server.proc.poll() is None
    finally:
        log = server.stop()
    assert "needs a restart" not in log
    assert KEY_A not in log and KEY_B not in log and "short" not in log


def test_optional_tokens_let_anonymous_clients_in_but_not_bad_tokens(tmp_path):
    server = Daemon(tmp_path, f"enabled = true\nrequired = false\nkey = {KEY_A}\n")
    try:
        server.upgrade("/ws")
        server.upgrade(f"/ws?token={token(KEY_A, sub='carol')}")
        server.upgrade(f"/ws?token={token(KEY_B)}", expect_status=401)
        wait_for(lambda: 'accepted as user "carol"' in read(server.log_path), "carol's line")
    finally:
        log = server.stop()
    assert "accepted without a token" in log and ": 401 bad signature" in log


def test_keys_from_the_environment(tmp_path):
    server = Daemon(tmp_path, "enabled = true\n",
                    env={"EDDY_AUTH_KEY": KEY_B, "EDDY_AUTH_PREVIOUS_KEY": KEY_A,
                         "EDDY_AUTH_QUERY_PARAM": "access_token"})
    try:
        server.upgrade(f"/ws?access_token={token(KEY_B)}")
        server.upgrade(f"/ws?access_token={token(KEY_A)}")
        server.upgrade(f"/ws?token={token(KEY_B)}", expect_status=401)
    finally:
        log = server.stop()
    assert KEY_A not in log and KEY_B not in log


@pytest.mark.parametrize("text,line,needle", [
    ("[auth]\nenabled = true\nkey = too-short-secret\n", 3,
     "[auth] key: an HS256 key has 32 to 256 bytes (this one has 16)"),
    ("[auth]\nleeway = -1\n", 2, "[auth] leeway: \"-1\" is not a number of seconds"),
    ("[auth]\nrequired = sometimes\n", 2, "[auth] required: \"sometimes\" is not true or false"),
    ("[auth]\nquery_param = a b\n", 2, "[auth] query_param: \"a b\" is not a parameter name"),
    ("[auth]\nalgorithm = HS512\n", 2, "[auth] algorithm: unknown key"),
    ("[auth]\nenabled = true\n", None, "[auth] enabled needs key (32 to 256 bytes)"),
    ("[auth]\nprevious_key = " + "p" * 32 + "\n", None, "[auth] previous_key needs key"),
])
def test_config_check_refuses_bad_auth_settings(tmp_path, text, line, needle):
    (tmp_path / "bad.conf").write_text(text)
    out = subprocess.run([EDDY, "config", "check", "-c", "bad.conf"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 2
    where = f"bad.conf:{line}: " if line else "bad.conf: "
    assert where in out.stderr and needle in out.stderr, out.stderr
    assert "too-short-secret" not in out.stderr and "p" * 32 not in out.stderr
