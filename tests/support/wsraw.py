# SPDX-License-Identifier: MIT
"""A raw-socket WebSocket client for tests that must send exact bytes, malformed ones
included, and observe exactly what comes back (close codes, EOF, HTTP statuses)."""

import base64
import hashlib
import os
import socket
import struct

from sockdiag import wait_for

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def mask_bytes(payload, key):
    """XORs payload with the 4-byte key (fast enough for multi-megabyte payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None, length_form=None,
          mask_key=None):
    """Encodes one client frame.

    length overrides the declared payload length (to lie); length_form forces the length
    encoding: 7 (in the second byte), 16 or 64 bits, minimal or not.
    """
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length is None else length
    if length_form is None:
        length_form = 7 if n < 126 else 16 if n < 65536 else 64
    mask_bit = 0x80 if mask else 0
    if length_form == 7:
        head = struct.pack("!BB", first, mask_bit | n)
    elif length_form == 16:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


class RawClient:
    sent = 0  # bytes sent with send(), which the server's kernel counts too

    def __init__(self, host, port, timeout=10.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    # ---- bytes ----

    def send(self, data):
        self.sock.sendall(data)
        self.sent += len(data)

    def wait_read(self):
        """Waits until the server has read everything sent so far (its kernel received
        every byte and holds none unread), so what is sent next reaches it in a later
        read. Fails the test if that does not happen within the timeout."""
        wait_for(self.sock, lambda s: s.received == self.sent and s.unread == 0,
                 f"the server did not read all {self.sent} bytes sent", self.timeout)

    def send_split(self, data, *cuts):
        """Sends data cut at the given offsets so that every cut falls between two reads
        of the server: each piece but the last is read in full before the next is sent."""
        bounds = [0, *cuts, len(data)]
        for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
            self.send(data[start:end])
            if i < len(cuts):
                self.wait_read()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def _take(self, n):
        if len(self.buf) < n:
            # Collect the pieces and join once: appending to self.buf chunk by chunk is
            # quadratic, which multi-megabyte messages (Autobahn section 9) would feel.
            pieces, have = [self.buf], len(self.buf)
            try:
                while have < n:
                    data = self.sock.recv(max(65536, min(n - have, 1 << 22)))
                    if not data:
                        raise EOFError("connection closed by the server")
                    pieces.append(data)
                    have += len(data)
            finally:
                # Kept on a timeout or EOF too, so a failing test can show what did arrive.
                self.buf = b"".join(pieces)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def expect_eof(self):
        """Asserts the server closes the connection (after any buffered bytes)."""
        assert self.buf == b"", f"unexpected bytes before EOF: {self.buf[:64]!r}"
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                raise AssertionError(f"unexpected bytes before EOF: {data[:64]!r}")
        except ConnectionResetError:
            return

    def close(self):
        self.sock.close()

    # ---- HTTP ----

    def read_http_response(self):
        """Returns (status, headers with lower-case names, body) of one response."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                chunk = self._take(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        return status, headers, body

    def handshake(self, path="/", headers=None, key=None, expect_status=101):
        """Sends an upgrade request; returns (status, headers, body). Checks the accept
        value when the status is 101."""
        key = key or base64.b64encode(os.urandom(16)).decode()
        fields = {
            "Host": "127.0.0.1",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        for name, value in (headers or {}).items():
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        request = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.send(request.encode())
        status, resp_headers, body = self.read_http_response()
        assert status == expect_status, f"status {status}, body {body!r}"
        if status == 101:
            assert resp_headers["sec-websocket-accept"] == accept_for(key)
        return status, resp_headers, body

    # ---- frames ----

    def send_frame(self, opcode, payload=b"", **kwargs):
        self.send(frame(opcode, payload, **kwargs))

    def recv_frame(self):
        """Returns (fin, rsv, opcode, payload) of the next frame from the server, which
        must be unmasked."""
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, self._take(n)

    def recv_message(self):
        """Returns (opcode, payload) of the next message or control frame, reassembling
        fragments."""
        fin, _, opcode, payload = self.recv_frame()
        if opcode >= 0x8:
            return opcode, payload
        while not fin:
            fin, _, cont, more = self.recv_frame()
            if cont >= 0x8:
                continue
            assert cont == 0, f"expected a continuation frame, got opcode {cont}"
            payload += more
        return opcode, payload

    def expect_close(self, code=None):
        """Reads frames until a close frame, asserts its code, then that the server closes
        the TCP connection. Returns (code, reason)."""
        while True:
            fin, _, opcode, payload = self.recv_frame()
            if opcode == 0x8:
                break
        got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        reason = payload[2:].decode("utf-8")
        if code is not None:
            assert got == code, f"close code {got} ({reason!r}), expected {code}"
        self.expect_eof()
        return got, reason

    def close_handshake(self, code=1000, reason=b""):
        """Performs a client-initiated closing handshake."""
        self.send_frame(0x8, struct.pack("!H", code) + reason)
        got, _ = self.expect_close()
        assert got == code
        self.close()
