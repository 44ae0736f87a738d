# SPDX-License-Identifier: MIT
"""Plain HTTP/1.1 through the testbed's request callback (--request): request parsing,
keep-alive and pipelining, response framing, detached responses, and every refusal
(400/408/413/431) with the connection closed afterwards and the server still serving.

Every testbed event prints a line; tests assert those lines exactly, so a request that
reached the callback when it should not have (or twice) fails the test.
"""

import re
import socket
import time

import pytest

from eddyserver import TIMEOUT
from testbed import cmd, connected, open_ws, start_testbed

BAD_REQUEST_PAGE = (b"<html><body><h2>HTTP 400 Bad Request</h2><hr><i>Powered by eddy</i>"
                    b"</body></html>")
DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|"
                     r"Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


class Response:
    def __init__(self, version, status, reason, headers, body=b"", raw_body=b""):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(lower-case name, value)] in order
        self.body = body
        self.raw_body = raw_body  # chunked: the body as framed on the wire

    def values(self, name):
        return [v for n, v in self.headers if n == name.lower()]

    def get(self, name):
        """The single value of a header, or None; fails if it appears more than once."""
        values = self.values(name)
        assert len(values) <= 1, f"header {name} repeated: {values}"
        return values[0] if values else None

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:80]!r}>"


class HttpClient:
    """A raw HTTP/1.1 client: exact bytes out, strict parsing of what comes back."""

    def __init__(self, server, timeout=TIMEOUT):
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def send_bytewise(self, data):
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed by the server; pending {self.buf[:200]!r}")
        self.buf += data

    def read_until(self, sep):
        while sep not in self.buf:
            self._fill()
        out, self.buf = self.buf.split(sep, 1)
        return out + sep

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_only=False):
        raw = self.read_until(b"\r\n\r\n")[:-4].decode("latin-1")
        lines = raw.split("\r\n")
        version, status, reason = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon and name == name.strip(), f"malformed header line {line!r}"
            headers.append((name.lower(), value.strip()))
        resp = Response(version, int(status), reason, headers)
        if head_only or resp.status in (100, 101, 204, 304):
            return resp
        length = resp.get("content-length")
        if length is not None:
            resp.body = self.read_exact(int(length))
        elif resp.get("transfer-encoding") == "chunked":
            raw_body = b""
            while True:
                size_line = self.read_until(b"\r\n")
                raw_body += size_line
                size = int(size_line.split(b";")[0], 16)
                data = self.read_exact(size + 2)
                raw_body += data
                assert data.endswith(b"\r\n")
                if size == 0:
                    break
                resp.body += data[:-2]
            resp.raw_body = raw_body
        else:
            resp.body = self.read_to_eof()
        return resp

    def read_to_eof(self):
        data = self.buf
        self.buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    def expect_eof(self):
        """Asserts that the server closes the connection with nothing more sent."""
        try:
            rest = self.read_to_eof()
        except ConnectionResetError:
            rest = b""
        assert rest == b"", f"unexpected bytes before EOF: {rest[:200]!r}"

    def close(self):
        self.sock.close()


def open_http(server):
    client = HttpClient(server)
    return client, connected(server)


def get(path, host="127.0.0.1", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def check_common_headers(resp, keep_alive=True):
    assert resp.version == "HTTP/1.1"
    assert resp.get("server") == "eddy"
    assert DATE_RE.match(resp.get("date") or ""), resp.get("date")
    assert resp.get("connection") == ("keep-alive" if keep_alive else "close")


def assert_refused(server, request, status, fd=None, client=None):
    """Sends a bad request, asserts `status` with a short text/plain reason and the close,
    that the request callback never ran, and that the server still answers others."""
    if client is None:
        client, fd = open_http(server)
    client.send(request)
    resp = client.response()
    assert resp.status == status, resp
    check_common_headers(resp, keep_alive=False)
    assert resp.get("content-type").startswith("text/plain"), resp
    assert 0 < len(resp.body) < 200 and resp.body.startswith(str(status).encode()), resp
    client.expect_eof()
    client.close()
    server.expect(f"close {fd} 0")
    assert_testbed_serves(server)
    return resp


def assert_testbed_serves(server):
    """A well-behaved client still gets an answer."""
    client, fd = open_http(server)
    client.send(get("/still", extra="Connection: close\r\n"))
    resp = client.response()
    assert (resp.status, resp.body) == (200, b"ok /still")
    client.expect_eof()
    client.close()
    server.expect(f"request {fd} GET /still body=0", f"close {fd} 0")


# ---- request callback basics ----


def test_request_fields_reach_the_callback(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"GET /echo?a=1&q=x%20y%26z+w&empty= HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"x-TeSt: Mixed Case  \r\nCookie: other=1; name=bob; last=2\r\n\r\n")
    resp = client.response()
    assert resp.status == 200 and resp.reason == "OK"
    check_common_headers(resp)
    assert resp.get("x-header") == "Mixed Case"  # trailing whitespace is not part of it
    assert resp.get("x-cookie") == "bob"
    assert resp.get("x-get") == "x y&z w"  # percent-decoded, '+' is a space
    assert resp.get("content-length") == "0" and resp.body == b""
    assert resp.get("content-type") == "text/html"
    server.expect(f"request {fd} GET /echo?a=1&q=x%20y%26z+w&empty= body=0")
    client.close()
    server.expect(f"close {fd} 0")


def test_repeated_query_key_gives_last_repeated_cookie_first(start_server):
    """As Swoole (PHP): ?q=1&q=2 reads 2; Cookie: name=a; name=b reads a."""
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"GET /echo?q=first&q=last HTTP/1.1\r\nHost: x\r\n"
                b"Cookie: name=first; name=second\r\nCookie: name=third\r\n\r\n")
    resp = client.response()
    assert (resp.get("x-get"), resp.get("x-cookie")) == ("last", "first")


def test_informational_status_is_refused_as_final(start_server):
    """status(1xx) is refused (EDDY_EINVAL) outside a handshake: the response stays 200."""
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/status?code=101"))
    resp = client.response()
    assert resp.status == 200 and resp.get("content-length") == "0"


def test_missing_query_header_and_cookie_are_absent(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nCookie: nam=1; names=2\r\n\r\n")
    resp = client.response()
    assert (resp.get("x-cookie"), resp.get("x-header"), resp.get("x-get")) == ("-", "-", "-")
    server.expect(f"request {fd} GET /echo body=0")


def test_path_excludes_query(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/some/where?x=1"))
    resp = client.response()
    assert (resp.status, resp.body) == (200, b"ok /some/where")
    server.expect(f"request {fd} GET /some/where?x=1 body=0")


def test_method_and_content_length_body(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
    resp = client.response()
    assert (resp.status, resp.body) == (200, b"hello world")
    assert resp.get("content-length") == "11"
    server.expect(f"request {fd} PUT /echo body=11")


def test_repeated_identical_content_length_is_accepted(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3"
                b"\r\n\r\nabc")
    assert client.response().body == b"abc"
    server.expect(f"request {fd} POST /echo body=3")


def test_chunked_request_body_with_extensions_and_trailers(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;name=value\r\nhello\r\n6 ; ext\r\n world\r\nA\r\n0123456789\r\n"
                b"0\r\nX-Trailer: yes\r\nAnother: one\r\n\r\n")
    resp = client.response()
    assert (resp.status, resp.body) == (200, b"hello world0123456789")
    server.expect(f"request {fd} POST /echo body=21")
    # The connection stays usable: the trailers were consumed exactly.
    client.send(get("/next"))
    assert client.response().body == b"ok /next"
    server.expect(f"request {fd} GET /next body=0")


def test_expect_100_continue(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\n\r\n")
    assert client.read_exact(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"body")
    resp = client.response()
    assert (resp.status, resp.body) == (200, b"body")
    server.expect(f"request {fd} POST /echo body=4")


def test_expect_100_continue_refused_body_gets_413_not_continue(start_server):
    server = start_testbed(start_server, "--request", settings={"package_max_length": 1000})
    client, fd = open_http(server)
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n"
                b"Expect: 100-continue\r\n\r\n")
    resp = client.response()
    assert resp.status == 413
    client.expect_eof()
    server.expect(f"close {fd} 0")


def test_large_body_arriving_in_pieces(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    body = bytes(range(256)) * 4096  # 1 MiB
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 65536):
        client.send(body[i:i + 65536])
    resp = client.response()
    assert resp.status == 200 and resp.body == body
    server.expect(f"request {fd} POST /echo body={len(body)}")


def test_bodies_in_pieces_interleaved_with_other_requests(start_server):
    # Each request's head is read again when its body completes, after the server has
    # parsed other connections' requests in between: nothing of theirs may leak in.
    server = start_testbed(start_server, "--request")
    first, first_fd = open_http(server)
    other, other_fd = open_http(server)
    first.send(b"POST /echo?q=1 HTTP/1.1\r\nHost: x\r\nX-Who: first\r\n"
               b"Content-Length: 10\r\n\r\nhello")
    chunked, chunked_fd = open_http(server)
    chunked.send(b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n")
    other.send(b"GET /other/path/that/is/longer HTTP/1.1\r\nHost: y\r\n\r\n")
    assert other.response().body == b"ok /other/path/that/is/longer"
    server.expect(f"request {other_fd} GET /other/path/that/is/longer body=0")
    first.send(b" body")
    resp = first.response()
    assert (resp.status, resp.body) == (200, b"hello body")
    server.expect(f"request {first_fd} POST /echo?q=1 body=10")
    chunked.send(b"2\r\nde\r\n0\r\n\r\n")
    assert chunked.response().body == b"abcde"
    server.expect(f"request {chunked_fd} PUT /echo body=5")


def test_tolerated_request_forms(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: x\r\n\r\n")  # leading empty lines
    assert client.response().body == b"ok /lead"
    client.send(b"GET http://example.com/abs?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.response().body == b"ok /abs"
    client.send(b"GET /lf HTTP/1.1\nHost: x\n\n")  # bare LF line ends (RFC 9112 2.2)
    assert client.response().body == b"ok /lf"
    client.send(b"GET /echo?flag&q=%zz HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n"
                b"Cookie: name=second\r\nX-Test: caf\xe9\r\n\r\n")
    resp = client.response()
    assert resp.get("x-cookie") == "second"  # found in a later Cookie field
    assert resp.get("x-get") == "%zz"  # malformed escapes stay as they are
    assert resp.get("x-header") == "caf\xe9"  # obs-text passes
    server.expect(f"request {fd} GET /lead body=0",
                  f"request {fd} GET http://example.com/abs?x=1 body=0",
                  f"request {fd} GET /lf body=0", f"request {fd} GET /echo?flag&q=%zz body=0")


# ---- persistence and pipelining ----


def test_keep_alive_serves_several_requests(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    for path in ("/one", "/two", "/three"):
        client.send(get(path))
        resp = client.response()
        check_common_headers(resp)
        assert resp.body == b"ok " + path.encode()
        server.expect(f"request {fd} GET {path} body=0")
    client.close()
    server.expect(f"close {fd} 0")


def test_pipelined_requests_answered_in_order(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/a") + b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz" +
                get("/chunked") + get("/c", extra="Connection: close\r\n"))
    bodies = [client.response().body for _ in range(4)]
    assert bodies == [b"ok /a", b"xyz", b"one,two,three", b"ok /c"]
    client.expect_eof()
    server.expect(f"request {fd} GET /a body=0", f"request {fd} POST /echo body=3",
                  f"request {fd} GET /chunked body=0", f"request {fd} GET /c body=0",
                  f"close {fd} 0")


def test_many_pipelined_requests_in_one_send(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"".join(get(f"/p{i}") for i in range(200)))
    for i in range(200):
        assert client.response().body == f"ok /p{i}".encode()
    for i in range(200):
        server.expect(f"request {fd} GET /p{i} body=0")


def test_whole_request_one_byte_at_a_time(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send_bytewise(b"POST /echo?q=1 HTTP/1.1\r\nHost: x\r\nX-Test: slow\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n"
                         b"0\r\nT: 1\r\n\r\n")
    resp = client.response()
    assert (resp.status, resp.body, resp.get("x-header")) == (200, b"abcde", "slow")
    client.send_bytewise(b"PATCH /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345" +
                         get("/last"))
    assert client.response().body == b"12345"
    assert client.response().body == b"ok /last"
    server.expect(f"request {fd} POST /echo?q=1 body=5", f"request {fd} PATCH /echo body=5",
                  f"request {fd} GET /last body=0")


def test_http10_closes_by_default(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"GET /old HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
    resp = client.response()
    check_common_headers(resp, keep_alive=False)
    assert resp.body == b"ok /old"
    client.expect_eof()
    server.expect(f"request {fd} GET /old body=0", f"close {fd} 0")


def test_http10_keep_alive_on_request(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    for path in ("/x", "/y"):
        client.send(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
        resp = client.response()
        check_common_headers(resp, keep_alive=True)
        assert resp.body == b"ok " + path.encode()
    server.expect(f"request {fd} GET /x body=0", f"request {fd} GET /y body=0")


def test_http11_connection_close(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/bye", extra="Connection: close\r\n") + get("/never"))
    resp = client.response()
    check_common_headers(resp, keep_alive=False)
    client.expect_eof()
    server.expect(f"request {fd} GET /bye body=0", f"close {fd} 0")


def test_head_gets_headers_only(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"HEAD /thing HTTP/1.1\r\nHost: x\r\n\r\n" + get("/after"))
    resp = client.response(head_only=True)
    assert resp.status == 200
    check_common_headers(resp)
    # The next bytes are the next response: the HEAD answer carried no body.
    assert client.buf == b"" or client.buf.startswith(b"HTTP/1.1 200")
    assert client.response().body == b"ok /after"
    server.expect(f"request {fd} HEAD /thing body=0", f"request {fd} GET /after body=0")


def test_head_of_chunked_response_has_no_chunks(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"HEAD /chunked HTTP/1.1\r\nHost: x\r\n\r\n" + get("/after"))
    resp = client.response(head_only=True)
    assert resp.status == 200
    assert client.response().body == b"ok /after"


# ---- responses ----


def test_chunked_response(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/chunked"))
    resp = client.response()
    check_common_headers(resp)
    assert resp.get("transfer-encoding") == "chunked"
    assert resp.get("content-length") is None
    assert resp.raw_body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
    client.send(get("/again"))
    assert client.response().body == b"ok /again"


def test_chunked_response_to_http10_ends_with_close(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    resp = client.response()
    assert resp.get("transfer-encoding") is None and resp.get("content-length") is None
    assert resp.get("connection") == "close"
    assert resp.body == b"one,two,three"  # delimited by the close


def test_callback_without_end_gives_500(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/noend") + get("/next"))
    resp = client.response()
    assert (resp.status, resp.reason, resp.body) == (500, "Internal Server Error", b"")
    assert resp.get("content-length") == "0"
    assert client.response().body == b"ok /next"
    server.expect(f"request {fd} GET /noend body=0", f"request {fd} GET /next body=0")


@pytest.mark.parametrize("code", [200, 201, 404])
def test_callback_without_end_gives_500_whatever_status_was_set(start_server, code):
    """A status and headers set for a body that never came: the request failed, so 500
    without them (not the status the application meant to send with its body)."""
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get(f"/noend?code={code}") + get("/next"))
    resp = client.response()
    assert (resp.status, resp.reason, resp.body) == (500, "Internal Server Error", b"")
    assert resp.get("x-set") is None
    assert client.response().body == b"ok /next"


@pytest.mark.parametrize("code,reason", [(201, "Created"), (204, "No Content"),
                                         (304, "Not Modified"), (404, "Not Found"),
                                         (503, "Service Unavailable")])
def test_status_code(start_server, code, reason):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get(f"/status?code={code}"))
    resp = client.response()
    assert (resp.status, resp.reason, resp.body) == (code, reason, b"")
    check_common_headers(resp)
    # RFC 9110 8.6: no Content-Length in a 204; a 304's would describe another body.
    assert resp.get("content-length") == (None if code in (204, 304) else "0")
    assert resp.get("transfer-encoding") is None
    client.send(get("/next"))
    assert client.response().body == b"ok /next"


def test_content_type_none(start_server):
    """Content-Type NULL: a bare status without the default text/html; the next answer has it."""
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/status?code=400&bare=1"))
    resp = client.response()
    assert (resp.status, resp.body, resp.get("content-length")) == (400, b"", "0")
    assert resp.get("content-type") is None
    client.send(get("/status?code=400"))
    assert client.response().get("content-type") == "text/html"


@pytest.mark.parametrize("flag,event", [((), "close"), (("--disconnect",), "disconnect")])
def test_response_close_drops_connection_without_bytes(start_server, flag, event):
    server = start_testbed(start_server, "--request", *flag)
    client, fd = open_http(server)
    client.send(get("/close") + get("/never"))
    client.expect_eof()
    server.expect(f"request {fd} GET /close body=0", f"{event} {fd} 0")
    assert_testbed_serves_any(server, event)


def assert_testbed_serves_any(server, event):
    client, fd = open_http(server)
    client.send(get("/still", extra="Connection: close\r\n"))
    assert client.response().body == b"ok /still"
    client.expect_eof()
    server.expect(f"request {fd} GET /still body=0", f"{event} {fd} 0")


def test_detached_response_is_answered_later(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    started = time.monotonic()
    client.send(get("/detach?ms=50"))
    server.expect(f"request {fd} GET /detach?ms=50 body=0")
    resp = client.response()
    assert time.monotonic() - started >= 0.04
    assert (resp.status, resp.body) == (200, b"late")
    check_common_headers(resp)
    server.expect("detached end 0")
    client.send(get("/next"))
    assert client.response().body == b"ok /next"
    server.expect(f"request {fd} GET /next body=0")


def test_pipelined_request_waits_for_detached_response(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/detach?ms=50") + get("/behind") + get("/last"))
    assert client.response().body == b"late"
    assert client.response().body == b"ok /behind"
    assert client.response().body == b"ok /last"
    # /behind reached the callback only after the detached response ended.
    server.expect(f"request {fd} GET /detach?ms=50 body=0", "detached end 0",
                  f"request {fd} GET /behind body=0", f"request {fd} GET /last body=0")


def test_detached_response_after_client_left(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/detach?ms=100"))
    server.expect(f"request {fd} GET /detach?ms=100 body=0")
    client.close()
    # Regression: input is paused while the response is detached, and the connection was
    # no longer watched at all, so the hang-up went unseen and end() returned 0. The
    # hang-up closes it at once (the close event comes before the timer fires), and the
    # response learns it.
    server.expect(f"close {fd} 0", "detached end -3008")
    assert_testbed_serves(server)


def test_detached_response_write_then_end_after_server_closed_it(start_server):
    # Regression: the write on an orphan released it, and the end the application still
    # owes read freed memory (AddressSanitizer: heap-use-after-free).
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/detach?ms=300&write=1"))
    server.expect(f"request {fd} GET /detach?ms=300&write=1 body=0")
    ctl, _ = open_ws(server)
    ctl.send_frame(0x1, f"!close {fd}".encode())
    server.expect("= 0", f"close {fd} 0")
    server.expect("detached write -3008", "detached end -3008")
    client.expect_eof()
    assert_testbed_serves(server)


# ---- without a request callback ----


def test_no_request_callback_gives_swoole_400_page(start_server):
    server = start_testbed(start_server)
    client, fd = open_http(server)
    client.send(get("/anything") + get("/never"))
    resp = client.response()
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 400, "Bad Request")
    assert resp.body == BAD_REQUEST_PAGE
    assert resp.get("connection") == "close"
    assert resp.get("content-length") == str(len(BAD_REQUEST_PAGE))
    client.expect_eof()
    server.expect(f"close {fd} 0")
    # WebSockets are still served.
    ws, _ = open_ws(server)
    ws.send_frame(0x1, b"hi")
    assert ws.recv_message() == (0x1, b"hi")


# ---- malformed heads ----


MALFORMED = {
    "bad request line": b"GARBAGE\r\n\r\n",
    "no target": b"GET HTTP/1.1\r\nHost: x\r\n\r\n",
    "lower-case version": b"GET / http/1.1\r\nHost: x\r\n\r\n",
    "version 2.0": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "version 1.2": b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n",
    "bare CR in value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: one\rtwo\r\n\r\n",
    "bare CR in request line": b"GET /\r HTTP/1.1\r\nHost: x\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    "NUL in value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "non-numeric Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "negative Content-Length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "conflicting Content-Length":
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "conflicting Content-Length list": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
    "huge Content-Length":
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "Transfer-Encoding and Content-Length":
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    "unknown Transfer-Encoding": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "chunked not last": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "missing Host in 1.1": b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two Host headers": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_head_gets_400_and_close(start_server, request_bytes):
    server = start_testbed(start_server, "--request")
    assert_refused(server, request_bytes, 400)


@pytest.mark.parametrize("body", [
    b"5\r\nhello\r\nX\r\n",           # size that is not hex
    b"5\r\nhelloXX\r\n",              # data longer than its size
    b"\r\n",                          # empty size line
    b"-1\r\n",                        # negative size
], ids=["non-hex size", "overlong data", "empty size", "negative size"])
def test_malformed_chunked_body_gets_400(start_server, body):
    server = start_testbed(start_server, "--request")
    assert_refused(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + body, 400)


def test_malformed_second_pipelined_request_after_good_one(start_server):
    server = start_testbed(start_server, "--request")
    client, fd = open_http(server)
    client.send(get("/good") + b"BROKEN\r\n\r\n")
    assert client.response().body == b"ok /good"
    server.expect(f"request {fd} GET /good body=0")
    assert_refused(server, b"", 400, fd=fd, client=client)


# ---- limits and timeouts ----


def test_head_over_default_limit_gets_431(start_server):
    server = start_testbed(start_server, "--request")
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    assert_refused(server, big, 431)


def test_unterminated_head_over_limit_gets_431(start_server):
    server = start_testbed(start_server, "--request")
    assert_refused(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 66000, 431)


def test_head_limit_setting(start_server):
    server = start_testbed(start_server, "--request", settings={"http_max_header_size": 1024})
    client, fd = open_http(server)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Fits: " + b"a" * 900 + b"\r\n\r\n")
    assert client.response().status == 200
    server.expect(f"request {fd} GET / body=0")
    client.close()
    server.expect(f"close {fd} 0")
    assert_refused(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1100 + b"\r\n\r\n",
                   431)


def test_body_over_default_package_max_length_gets_413(start_server):
    server = start_testbed(start_server, "--request")
    # Refused from the head alone, before any body byte arrives.
    assert_refused(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2097153\r\n\r\n", 413)


def test_body_at_package_max_length_is_accepted(start_server):
    server = start_testbed(start_server, "--request", settings={"package_max_length": 1000})
    client, fd = open_http(server)
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000)
    assert client.response().body == b"b" * 1000
    server.expect(f"request {fd} POST /echo body=1000")
    client.close()
    server.expect(f"close {fd} 0")
    assert_refused(server, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413)


def test_chunked_body_over_package_max_length_gets_413(start_server):
    server = start_testbed(start_server, "--request", settings={"package_max_length": 1000})
    chunks = b"".join(b"190\r\n" + b"c" * 400 + b"\r\n" for _ in range(3))  # 1200 bytes
    assert_refused(server, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunks, 413)


def test_slowloris_head_gets_408(start_server):
    server = start_testbed(start_server, "--request", settings={"http_header_timeout": "0.3"})
    client, fd = open_http(server)
    started = time.monotonic()
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
    resp = client.response()
    elapsed = time.monotonic() - started
    assert resp.status == 408 and resp.reason == "Request Timeout"
    assert 0.25 <= elapsed < 3, elapsed
    assert resp.get("connection") == "close"
    assert resp.get("content-type").startswith("text/plain")
    client.expect_eof()
    server.expect(f"close {fd} 0")
    assert_testbed_serves(server)


def test_slow_body_gets_408_at_its_deadline(start_server):
    """http_body_timeout is a deadline for the whole body from the end of the head: a body
    dribbled a byte every 0.3 s gets 408 after 1 s although every read came well within
    it (each partial read used to re-arm the timer, so the connection was held forever)."""
    server = start_testbed(start_server, "--request",
                           settings={"http_header_timeout": "1", "http_body_timeout": "1"})
    ctl, _ = open_ws(server)
    client, fd = open_http(server)
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    started = time.monotonic()
    client.sock.settimeout(0.3)
    sent, seen, answer = 0, [], b""
    while time.monotonic() - started < 4 and not answer:
        try:
            answer = client.sock.recv(4096)
            break
        except socket.timeout:
            pass
        client.sock.sendall(b"b")
        sent += 1
        seen.append(float(cmd(server, ctl, f"recvtime {fd}")))
    elapsed = time.monotonic() - started
    client.sock.settimeout(TIMEOUT)
    assert answer, f"no answer within {elapsed:.1f} s"
    client.buf = answer
    resp = client.response()
    assert (resp.status, resp.get("connection")) == (408, "close")
    assert 0.9 <= elapsed < 1.9, elapsed
    # The server did read the dribble: several partial reads, each one seen by it.
    assert sent >= 3 and len(set(seen)) >= 3, seen
    server.wait_log(r"\tNOTICE\tsession#%d \([^)]*\): 408 Request Timeout: request body not "
                    r"received within http_body_timeout" % fd)
    client.expect_eof()
    server.expect(f"close {fd} 0")


def test_slowloris_on_kept_alive_connection_gets_408(start_server):
    server = start_testbed(start_server, "--request", settings={"http_header_timeout": "0.3"})
    client, fd = open_http(server)
    client.send(get("/first"))
    assert client.response().body == b"ok /first"
    client.send(b"GET /second HTTP/1.1\r\n")
    resp = client.response()
    assert resp.status == 408
    client.expect_eof()
    server.expect(f"request {fd} GET /first body=0", f"close {fd} 0")


def test_connection_sending_nothing_is_closed_after_header_timeout(start_server):
    # Whether a connection that never sent a byte gets a 408 or a silent close is not
    # specified; it must not be kept.
    server = start_testbed(start_server, "--request", settings={"http_header_timeout": "0.3"})
    client, fd = open_http(server)
    started = time.monotonic()
    data = client.read_to_eof()
    assert 0.25 <= time.monotonic() - started < 3
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    server.expect(f"close {fd} 0")


def test_slowloris_dribbling_bytes_still_gets_408(start_server):
    server = start_testbed(start_server, "--request", settings={"http_header_timeout": "0.5"})
    client, fd = open_http(server)
    started = time.monotonic()
    # A byte every 100 ms never completes the head; the deadline is not reset by each byte.
    got = None
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40:
        try:
            client.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        client.sock.settimeout(0.1)
        try:
            data = client.sock.recv(65536)
        except socket.timeout:
            continue
        finally:
            client.sock.settimeout(TIMEOUT)
        got = data
        break
    assert got is not None and got.startswith(b"HTTP/1.1 408 "), got
    assert time.monotonic() - started < 3


def test_idle_keepalive_connection_closed_silently(start_server):
    server = start_testbed(start_server, "--request", settings={"http_keepalive_timeout": "0.3"})
    client, fd = open_http(server)
    client.send(get("/first"))
    assert client.response().body == b"ok /first"
    started = time.monotonic()
    client.expect_eof()
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3, elapsed
    server.expect(f"request {fd} GET /first body=0", f"close {fd} 0")


def test_keepalive_timeout_does_not_cut_a_request_in_progress(start_server):
    server = start_testbed(start_server, "--request",
                           settings={"http_keepalive_timeout": "0.3", "http_header_timeout": 10})
    client, fd = open_http(server)
    client.send(get("/first"))
    assert client.response().body == b"ok /first"
    client.send(b"GET /second HTTP/1.1\r\n")  # started before the keep-alive deadline
    server.expect(f"request {fd} GET /first body=0")
    server.no_output(0.6)  # well past http_keepalive_timeout
    client.send(b"Host: x\r\n\r\n")
    assert client.response().body == b"ok /second"


# ---- addresses ----


def test_remote_address_of_http_connection(start_server):
    server = start_testbed(start_server, "--request")
    http, http_fd = open_http(server)
    http.send(get("/x"))
    assert http.response().status == 200
    server.expect(f"request {http_fd} GET /x body=0")
    ws, _ = open_ws(server)
    ws.send_frame(0x1, f"!info {http_fd}".encode())
    fields = server.line().split()
    assert fields[:5] == ["=", "0", "127.0.0.1", str(http.local_port), str(server.port)]
    assert int(fields[5]) <= int(fields[6]) <= time.time() + 1


def test_connection_after_idling_past_the_header_timeout_is_served(start_server):
    """Regression: the loop read its clock after the callbacks of a wait had run, so a
    connection accepted after the server idled longer than http_header_timeout found its
    timeout already due and was dropped without an answer (Autobahn 12.1.1 after a pause)."""
    server = start_server("echo", settings={"http_header_timeout": "0.5"})
    time.sleep(1.0)  # the condition under test: an idle server, past the timeout
    client = server.connect_raw()
    client.handshake()
    client.send_frame(0x1, b"after idle")
    assert client.recv_message() == (0x1, b"after idle")
    client.close_handshake()
