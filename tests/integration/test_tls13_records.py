# SPDX-License-Identifier: MIT
"""TLS 1.3 records after the handshake, against an independent peer (RFC 8446 sections 4.6.3,
5, 6 and 7): eddy seals and opens them itself (src/tls13.c, src/tls.c) once OpenSSL has made
the handshake, so these tests speak the record layer from the other side, written here with
python3-cryptography rather than with OpenSSL's record layer.

The peer: Python's ssl makes the handshake (an SSLObject over two MemoryBIOs, fed from and
drained to a plain socket by the test), and writes the traffic secrets to its key log
(SSLContext.keylog_filename: CLIENT_TRAFFIC_SECRET_0, SERVER_TRAFFIC_SECRET_0; the suite is
sslobj.cipher()). From the moment do_handshake() returns, ssl is never used again: every
byte either way is a record of the test's own (AESGCM or ChaCha20Poly1305, nonce = IV XOR
the sequence number, AAD = the record header, keys by HKDF-Expand-Label; KeyUpdate by
"traffic upd").

Sequence numbers need no guessing or counting of what ssl did:
- client -> server: the client's last handshake record (its Finished) is under the
  handshake key and ssl writes nothing after do_handshake() returns, so the application
  key's first record is the test's first, number 0;
- server -> client: the server can send nothing under its application key before it has
  read the client's Finished (eddy sends no 0.5-RTT data), and that Finished is sent only
  after do_handshake() returned: so every application-key record of the server arrives
  after the hand-over, and the test opens them all from number 0. The first ones are
  OpenSSL's session tickets (inner type 22, NewSessionTicket), which the peer checks and
  skips (the test asserts both that the incoming BIO holds nothing at the hand-over and
  that at least one ticket came). A wrong number anywhere fails the AEAD tag at once.

The three TLS 1.3 suites are forced on the server side (its OpenSSL reads OPENSSL_CONF with
a system_default Ciphersuites line; eddy's ssl_ciphers names TLS 1.2 suites only, and
Python's ssl cannot restrict TLS 1.3 suites), and each test checks the suite it got.
"""

import os
import ssl
import struct
import threading
import time

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from eddyserver import TIMEOUT
from sockdiag import wait_for as wait_for_server_socket
from test_tls import wss_client  # a client on Python's own TLS (OpenSSL's record layer)
from wsraw import RawClient, frame

APPLICATION_DATA, ALERT, HANDSHAKE, CHANGE_CIPHER_SPEC = 23, 21, 22, 20
KEY_UPDATE, NEW_SESSION_TICKET = 24, 4
TAG = 16

# name: (AEAD, key length, hash)
SUITES = {
    "TLS_AES_128_GCM_SHA256": (AESGCM, 16, hashes.SHA256),
    "TLS_AES_256_GCM_SHA384": (AESGCM, 32, hashes.SHA384),
    "TLS_CHACHA20_POLY1305_SHA256": (ChaCha20Poly1305, 32, hashes.SHA256),
}


def key_update(request_update=0):
    """A KeyUpdate handshake message: update_not_requested (0) or update_requested (1)."""
    return bytes([KEY_UPDATE, 0, 0, 1, request_update])


def expand_label(hash_cls, secret, label, length):
    """HKDF-Expand-Label(secret, label, "", length) (RFC 8446 section 7.1)."""
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(hash_cls(), length, info).derive(secret)


class Direction:
    """One direction's record protection: its secret, key, IV and next sequence number."""

    def __init__(self, suite, secret):
        self.aead_cls, self.key_len, self.hash_cls = SUITES[suite]
        self.rekey(secret)

    def rekey(self, secret):
        self.secret = secret
        self.aead = self.aead_cls(expand_label(self.hash_cls, secret, b"key", self.key_len))
        self.iv = expand_label(self.hash_cls, secret, b"iv", 12)
        self.seq = 0

    def update(self):
        """The KeyUpdate of RFC 8446 section 7.2: the next secret, its key, from number 0."""
        self.rekey(expand_label(self.hash_cls, self.secret, b"traffic upd",
                                self.hash_cls.digest_size))

    def nonce(self):
        return bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))

    def seal_inner(self, inner, outer_type=APPLICATION_DATA, length=None):
        """A record protecting the inner plaintext inner (content, type, padding); length
        overrides the header's length field (the AAD is the header as sent)."""
        n = len(inner) + TAG if length is None else length
        header = bytes([outer_type, 3, 3]) + n.to_bytes(2, "big")
        body = self.aead.encrypt(self.nonce(), inner, header)
        self.seq += 1
        return header + body

    def seal(self, inner_type, content, padding=0):
        return self.seal_inner(content + bytes([inner_type]) + bytes(padding))

    def open(self, header, body):
        """(inner type, content) of a record; InvalidTag if it does not open under this key
        at this sequence number (which is then not spent)."""
        inner = self.aead.decrypt(self.nonce(), body, header)
        self.seq += 1
        stripped = inner.rstrip(b"\x00")
        assert stripped, "a record of zeros only"
        return stripped[-1], stripped[:-1]


class Peer(RawClient):
    """A TLS 1.3 client whose records after the handshake are the test's own. As a
    RawClient, send() puts its bytes in one application-data record and the WebSocket
    helpers (handshake, send_frame, recv_message, close_handshake) read the opened
    application data."""

    def __init__(self, port, keylog_path, timeout=TIMEOUT, hold_finished=False):
        """Connects and makes the handshake; with hold_finished the client's Finished goes
        out with the first bytes sent after it, in one segment (as browsers do)."""
        super().__init__("127.0.0.1", port, timeout)
        self.held = b""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.keylog_filename = keylog_path
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sent_bytes = 0  # every byte, the handshake's too (see wait_read)
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.send_bytes(outgoing.read())
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("the server closed during the handshake")
                incoming.write(data)
        if hold_finished:
            self.held = outgoing.read()  # the client's Finished
        else:
            self.send_bytes(outgoing.read())
        assert tls.version() == "TLSv1.3"
        assert incoming.pending == 0 and tls.pending() == 0  # nothing of the server's left
        self.suite = tls.cipher()[0]
        secrets = {}
        with open(keylog_path) as f:
            for line in f:
                if not line.startswith("#"):  # the header Python writes
                    label, _, secret = line.split()
                    secrets[label] = bytes.fromhex(secret)
        self.write = Direction(self.suite, secrets["CLIENT_TRAFFIC_SECRET_0"])
        self.read = Direction(self.suite, secrets["SERVER_TRAFFIC_SECRET_0"])
        self.raw = b""  # server bytes not yet cut into records
        self.tickets = 0
        self.app_seen = False  # application data came: no more tickets
        self.server_updates = 0  # KeyUpdates read by _fill

    # ---- records ----

    def send_bytes(self, data):
        data, self.held = self.held + data, b""
        self.sock.sendall(data)
        self.sent_bytes += len(data)

    def send(self, data):
        """One application-data record (what RawClient's helpers send)."""
        self.send_bytes(self.write.seal(APPLICATION_DATA, data))

    def send_key_update(self, request_update=0):
        """Our KeyUpdate under the current key; the key changes after it."""
        self.send_bytes(self.write.seal(HANDSHAKE, key_update(request_update)))
        self.write.update()

    def next_raw(self):
        """(header, body) of the next record from the server, unopened."""
        while True:
            if len(self.raw) >= 5:
                n = int.from_bytes(self.raw[3:5], "big")
                if len(self.raw) >= 5 + n:
                    header, body = self.raw[:5], self.raw[5:5 + n]
                    self.raw = self.raw[5 + n:]
                    return header, body
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"EOF with {len(self.raw)} bytes of a record")
            self.raw += data

    def next_record(self):
        """(inner type, content) of the next record, opened under the server's current
        key; fails the test if it does not open."""
        header, body = self.next_raw()
        assert header[0] == APPLICATION_DATA and header[1:3] == b"\x03\x03", header
        assert 17 <= len(body) <= 16384 + 1 + TAG, len(body)  # eddy sends no padding
        try:
            return self.read.open(header, body)
        except InvalidTag:
            raise AssertionError(f"server record {self.read.seq} does not open under the "
                                 f"server's current key") from None

    def _fill(self):
        """Application data of the next records into self.buf; skips the session tickets
        before the first, and follows the server's KeyUpdates."""
        while True:
            inner_type, content = self.next_record()
            if inner_type == APPLICATION_DATA:
                self.app_seen = True
                self.buf += content
                if content:
                    return
            elif inner_type == HANDSHAKE and content == key_update(0):
                self.read.update()
                self.server_updates += 1
            elif inner_type == HANDSHAKE and not self.app_seen:
                while content:  # whole NewSessionTicket messages only
                    assert content[0] == NEW_SESSION_TICKET, content[:4]
                    n = 4 + int.from_bytes(content[1:4], "big")
                    assert len(content) >= n
                    content = content[n:]
                    self.tickets += 1
            else:
                raise AssertionError(f"unexpected record {inner_type}: {content[:32]!r}")

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def wait_read(self):
        """Waits until the server has read every byte sent (see RawClient.wait_read)."""
        wait_for_server_socket(
            self.sock, lambda s: s.received == self.sent_bytes and s.unread == 0,
            f"the server did not read all {self.sent_bytes} bytes sent", self.timeout)

    def expect_eof(self, close_notify=True):
        """Asserts the server closes the connection, after its close_notify alert when
        close_notify (a clean close: RawClient.expect_close), else with no record before
        EOF (after a fatal alert, either way)."""
        if close_notify:
            try:
                header, body = self.next_raw()
            except (EOFError, ConnectionResetError):
                return
            self.raw = header + body + self.raw
            assert self.next_record() == (ALERT, b"\x01\x00")
        assert self.raw == b"" and self.buf == b"", f"bytes before EOF: {self.raw[:64]!r}"
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return
        assert data == b"", f"bytes before EOF: {data[:64]!r}"

    def expect_alert(self, description):
        """The next record is the fatal alert description, then the connection ends."""
        assert self.next_record() == (ALERT, bytes([2, description]))
        self.expect_eof(close_notify=False)

    def echo(self, payload, opcode=0x2):
        self.send_frame(opcode, payload)
        assert self.recv_message() == (opcode, payload)


CONF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_section
[ssl_section]
system_default = system_default_section
[system_default_section]
Ciphersuites = {suite}
"""


@pytest.fixture
def tls13_server(start_server, tls_cert, tmp_path, monkeypatch):
    """tls13_server(suite=None, **settings) -> the echo example on a TLS port (its OpenSSL
    limited to suite when given) and a peer factory connect() -> an upgraded Peer."""

    def start(suite=None, **settings):
        if suite is not None:
            conf = tmp_path / f"openssl-{suite}.cnf"
            conf.write_text(CONF.format(suite=suite))
            monkeypatch.setenv("OPENSSL_CONF", str(conf))  # the server's environment only
        server = start_server("echo", "--tls-port", "0",
                              settings=dict({"ssl_cert_file": tls_cert[0],
                                             "ssl_key_file": tls_cert[1],
                                             "worker_num": "1",
                                             "websocket_compression": "false"}, **settings))
        monkeypatch.delenv("OPENSSL_CONF", raising=False)
        count = iter(range(1 << 30))

        def connect(upgrade=True, hold_finished=False):
            peer = Peer(server.tls_port, str(tmp_path / f"keylog-{next(count)}"),
                        hold_finished=hold_finished)
            if suite is not None:
                assert peer.suite == suite
            if upgrade:
                peer.handshake()
                assert peer.tickets >= 1  # OpenSSL's tickets came first, numbered from 0
            return peer

        return server, connect

    return start


def record_error(server, text):
    """The server logged, at info level, that it ended a session for text."""
    server.wait_log(rf"\tINFO\tsession#\d+: read failed: TLS 1.3 record: {text}$")


# ---- records as they may legally arrive ----


@pytest.fixture(params=[None, *SUITES])
def suite(request):
    return request.param


def test_echo_under_each_suite_with_padding_and_empty_records(tls13_server, suite):
    """Padded records, empty application-data records between others, a message cut across
    records and many records in one send are all read as the data they carry; eddy's own
    records are numbered on from its session tickets."""
    server, connect = tls13_server(suite)
    peer = connect()
    if suite is None:
        assert peer.suite in SUITES
    peer.echo(b"plain")
    w = peer.write
    # 100 bytes of padding; empty records before, between and after (one padded too).
    data = frame(0x1, b"padded")
    peer.send_bytes(w.seal(APPLICATION_DATA, b"") + w.seal(APPLICATION_DATA, data, padding=100) +
                    w.seal(APPLICATION_DATA, b"", padding=7) + w.seal(APPLICATION_DATA, b""))
    assert peer.recv_message() == (0x1, b"padded")
    # One message cut into five records, one of them empty, the header split too.
    data = frame(0x2, bytes(range(256)) * 4)
    cuts = [0, 1, 3, 300, 300, len(data)]
    peer.send_bytes(b"".join(w.seal(APPLICATION_DATA, data[a:b], padding=i * 3)
                             for i, (a, b) in enumerate(zip(cuts, cuts[1:]))))
    assert peer.recv_message() == (0x2, bytes(range(256)) * 4)
    # Sixty records in one send: a message each, every third padded, empty ones between.
    burst = b""
    for i in range(60):
        burst += w.seal(APPLICATION_DATA, frame(0x2, bytes([i]) * (i * 37 + 1)),
                        padding=(i % 3 == 0) * 50)
        if i % 5 == 0:
            burst += w.seal(APPLICATION_DATA, b"")
    peer.send_bytes(burst)
    for i in range(60):
        assert peer.recv_message() == (0x2, bytes([i]) * (i * 37 + 1))
    peer.close_handshake()


def test_records_one_byte_per_read(tls13_server):
    """Every byte of the upgrade request, of padded and empty records and of a KeyUpdate
    reaches the server in a read of its own (the test waits until the server's socket holds
    nothing unread before sending the next), and the records still open."""
    server, connect = tls13_server()
    peer = connect(upgrade=False)  # with TCP_NODELAY, as every RawClient
    w = peer.write

    def trickle(data):
        for i in range(len(data)):
            peer.send_bytes(data[i:i + 1])
            peer.wait_read()

    request = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    trickle(w.seal(APPLICATION_DATA, request[:40]) + w.seal(APPLICATION_DATA, request[40:]))
    status, headers, _ = peer.read_http_response()
    assert status == 101 and headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    data = frame(0x1, b"one byte at a time")
    trickle(w.seal(APPLICATION_DATA, b"") + w.seal(APPLICATION_DATA, data[:5], padding=20) +
            w.seal(APPLICATION_DATA, data[5:]))
    assert peer.recv_message() == (0x1, b"one byte at a time")
    # A KeyUpdate asking for ours, then a message under the new key, byte by byte.
    ku = w.seal(HANDSHAKE, key_update(1))
    w.update()
    trickle(ku + w.seal(APPLICATION_DATA, frame(0x1, b"after the update")))
    assert peer.next_record() == (HANDSHAKE, key_update(0))
    peer.read.update()
    assert peer.recv_message() == (0x1, b"after the update")
    peer.close_handshake()


def test_first_records_in_the_segment_of_the_finished(tls13_server):
    """The client's Finished and its first records in one segment (browsers send the
    request right behind their Finished): the records OpenSSL did not read are the record
    layer's first, numbered from 0, a KeyUpdate among them included."""
    server, connect = tls13_server()
    peer = connect(hold_finished=True)  # the upgrade request goes with the Finished
    peer.echo(b"first")
    peer = connect(upgrade=False, hold_finished=True)
    w = peer.write
    request = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    burst = (w.seal(APPLICATION_DATA, request) + w.seal(APPLICATION_DATA, frame(0x1, b"one")) +
             w.seal(HANDSHAKE, key_update(1)))
    w.update()
    peer.send_bytes(burst + w.seal(APPLICATION_DATA, frame(0x1, b"two")))
    assert peer.read_http_response()[0] == 101
    assert peer.recv_message() == (0x1, b"one")
    assert peer.recv_message() == (0x1, b"two")
    assert peer.server_updates == 1  # the one asked for
    peer.close_handshake()


def test_large_messages_in_full_and_padded_records(tls13_server):
    """Records of the largest sizes: 2^14 bytes of content, and 2^14 + 256 bytes of
    ciphertext (content and padding), sent in uneven pieces; eddy's records carry at most
    2^14 bytes."""
    server, connect = tls13_server()
    peer = connect()
    w = peer.write
    payload = os.urandom(150000)
    data = frame(0x2, payload)
    records, off, i = b"", 0, 0
    while off < len(data):
        records += w.seal(APPLICATION_DATA, data[off:off + 16384], padding=239 * (i % 2))
        off, i = off + 16384, i + 1
    assert records[3:5] == (16384 + 1 + TAG).to_bytes(2, "big")
    second = 5 + 16384 + 1 + TAG
    assert records[second + 3:second + 5] == (16640).to_bytes(2, "big")  # the longest legal
    pos = 0
    for step in (3, 1000, 16645, 5, 40000, 7000):
        peer.send_bytes(records[pos:pos + step])
        pos += step
        time.sleep(0.005)
    peer.send_bytes(records[pos:])
    assert peer.recv_message() == (0x2, payload)
    peer.echo(b"after")
    peer.close_handshake()


# ---- KeyUpdate ----


def test_client_key_update_not_requested(tls13_server, suite):
    """The server reads on with the client's next key; its own key stays (the echo opens
    under it, numbered on)."""
    server, connect = tls13_server(suite)
    peer = connect()
    peer.echo(b"before")
    server_secret, server_seq = peer.read.secret, peer.read.seq
    peer.send_key_update(0)
    assert peer.write.seq == 0
    peer.echo(b"after one update")
    assert peer.read.secret == server_secret and peer.read.seq == server_seq + 1
    # Several in a row, in one send, then data in the same send.
    w = peer.write
    burst = b""
    for _ in range(4):
        burst += w.seal(HANDSHAKE, key_update(0))
        w.update()
    peer.send_bytes(burst + w.seal(APPLICATION_DATA, frame(0x1, b"after four")))
    assert peer.recv_message() == (0x1, b"after four")
    assert peer.read.secret == server_secret
    peer.close_handshake()


def test_client_key_update_requested(tls13_server, suite):
    """update_requested: the server's next record is its KeyUpdate (update_not_requested)
    under its old key; what follows is under its next key, from number 0."""
    server, connect = tls13_server(suite)
    peer = connect()
    peer.echo(b"before")
    for round_ in range(3):
        old_secret = peer.read.secret
        peer.send_key_update(1)
        peer.send_frame(0x1, b"round %d" % round_)
        assert peer.next_record() == (HANDSHAKE, key_update(0))
        peer.read.update()
        assert peer.read.secret != old_secret
        assert peer.next_record() == (APPLICATION_DATA, frame(0x1, b"round %d" % round_,
                                                              mask=False))
        assert peer.read.seq == 1
    # Two requests before the server writes, with a not-requested one between: it owes
    # one KeyUpdate, which comes before its next record.
    w = peer.write
    burst = b""
    for request in (1, 0, 1):
        burst += w.seal(HANDSHAKE, key_update(request))
        w.update()
    peer.send_bytes(burst + w.seal(APPLICATION_DATA, frame(0x1, b"three")))
    assert peer.next_record() == (HANDSHAKE, key_update(0))
    peer.read.update()
    assert peer.recv_message() == (0x1, b"three")
    peer.echo(b"and on")
    peer.close_handshake()


def test_key_update_cut_across_records(tls13_server):
    """A handshake message may be cut across records (RFC 8446 section 5.1): a KeyUpdate
    requesting the server's, in two records, then in five of a byte each."""
    server, connect = tls13_server()
    peer = connect()
    peer.echo(b"before")
    w = peer.write
    message = key_update(1)
    peer.send_bytes(w.seal(HANDSHAKE, message[:2]) + w.seal(HANDSHAKE, message[2:]))
    w.update()
    peer.send_frame(0x1, b"after two pieces")
    assert peer.next_record() == (HANDSHAKE, key_update(0))
    peer.read.update()
    assert peer.recv_message() == (0x1, b"after two pieces")
    burst = b"".join(w.seal(HANDSHAKE, message[i:i + 1]) for i in range(5))
    w.update()
    peer.send_bytes(burst + w.seal(APPLICATION_DATA, frame(0x1, b"after five")))
    assert peer.next_record() == (HANDSHAKE, key_update(0))
    peer.read.update()
    assert peer.recv_message() == (0x1, b"after five")
    peer.close_handshake()


def test_a_record_under_the_old_key_after_key_update_is_bad_record_mac(tls13_server):
    server, connect = tls13_server()
    peer = connect()
    peer.echo(b"before")
    old = Direction(peer.suite, peer.write.secret)
    old.seq = peer.write.seq + 1  # the number it would have after the KeyUpdate
    peer.send_key_update(0)
    peer.send_bytes(old.seal(APPLICATION_DATA, frame(0x1, b"old key")))
    peer.expect_alert(20)
    record_error(server, "bad record MAC")


# ---- records the server refuses ----


def bad_tag(peer):
    record = bytearray(peer.write.seal(APPLICATION_DATA, frame(0x1, b"tampered")))
    record[-1] ^= 1
    return bytes(record)


def bad_ciphertext(peer):
    record = bytearray(peer.write.seal(APPLICATION_DATA, frame(0x1, b"tampered")))
    record[7] ^= 0x80
    return bytes(record)


def bad_header(peer):
    """The header is the AAD: a version changed after sealing fails the tag."""
    record = bytearray(peer.write.seal(APPLICATION_DATA, frame(0x1, b"x")))
    record[2] = 1
    return bytes(record)


def outer_type(value):
    def make(peer):
        return peer.write.seal_inner(frame(0x1, b"x") + b"\x17", outer_type=value)
    return make


def header_only(length):
    return lambda peer: bytes([APPLICATION_DATA, 3, 3]) + length.to_bytes(2, "big")


def inner(content, inner_type, padding=0):
    return lambda peer: peer.write.seal(inner_type, content, padding)


REFUSED = [
    # (id, record maker, alert, log text)
    ("tampered-tag", bad_tag, 20, "bad record MAC"),
    ("tampered-ciphertext", bad_ciphertext, 20, "bad record MAC"),
    ("tampered-header", bad_header, 20, "bad record MAC"),
    ("outer-type-22", outer_type(HANDSHAKE), 10, "unexpected message"),
    ("outer-type-21", outer_type(ALERT), 10, "unexpected message"),
    ("outer-type-20", outer_type(CHANGE_CIPHER_SPEC), 10, "unexpected message"),
    ("length-16641", header_only(16641), 22, "record overflow"),
    ("length-65535", header_only(65535), 22, "record overflow"),
    ("length-16", header_only(16), 50, "decode error"),
    ("length-0", header_only(0), 50, "decode error"),
    ("content-2^14+1", inner(bytes(16384) + b"\x01", APPLICATION_DATA), 22, "record overflow"),
    ("all-zeros", lambda peer: peer.write.seal_inner(bytes(40)), 10, "unexpected message"),
    ("one-zero", lambda peer: peer.write.seal_inner(b"\x00"), 10, "unexpected message"),
    ("inner-type-20", inner(b"\x01", CHANGE_CIPHER_SPEC), 10, "unexpected message"),
    ("inner-type-24", inner(b"\x01\x00\x00\x00", 24), 10, "unexpected message"),
    ("inner-type-99", inner(b"data", 99), 10, "unexpected message"),
    ("empty-handshake", inner(b"", HANDSHAKE), 10, "unexpected message"),
    ("new-session-ticket", inner(b"\x04\x00\x00\x04abcd", HANDSHAKE), 10, "unexpected message"),
    ("finished", inner(b"\x14\x00\x00\x20" + bytes(32), HANDSHAKE), 10, "unexpected message"),
    ("key-update-length-2", inner(b"\x18\x00\x00\x02\x00\x00", HANDSHAKE), 50, "decode error"),
    ("key-update-length-0", inner(b"\x18\x00\x00\x00", HANDSHAKE), 50, "decode error"),
    ("key-update-cut-then-data",
     lambda peer: peer.write.seal(HANDSHAKE, b"\x18\x00\x00\x01")
     + peer.write.seal(APPLICATION_DATA, frame(0x1, b"x")), 10, "unexpected message"),
    ("key-update-value-2", inner(key_update(2), HANDSHAKE), 47, "illegal parameter"),
    ("key-update-value-255", inner(key_update(255), HANDSHAKE), 47, "illegal parameter"),
    ("alert-3-bytes", inner(b"\x02\x28\x00", ALERT), 50, "decode error"),
    ("alert-1-byte", inner(b"\x01", ALERT), 50, "decode error"),
    ("alert-empty", inner(b"", ALERT), 50, "decode error"),
]


@pytest.mark.parametrize("make, alert, text", [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_refused_record(tls13_server, make, alert, text):
    """The fatal alert, sealed under the server's current key at its next number, then EOF,
    and the reason in the log."""
    server, connect = tls13_server()
    peer = connect()
    peer.echo(b"before")
    peer.send_bytes(make(peer))
    peer.expect_alert(alert)
    record_error(server, text)


def test_key_update_sharing_its_record_is_refused(tls13_server):
    """A KeyUpdate must end its record (RFC 8446 section 5.1: the key changes after it),
    else unexpected_message."""
    server, connect = tls13_server()
    peer = connect()
    peer.send_bytes(peer.write.seal(HANDSHAKE, key_update(0) + key_update(0)))
    peer.expect_alert(10)
    record_error(server, "unexpected message")


def test_refusal_after_a_requested_update_is_under_the_servers_current_key(tls13_server):
    """A refused record right after an update_requested: the alert is under whichever key
    the server writes with (its KeyUpdate may precede it or not: an alert is not
    application data), and opens there."""
    server, connect = tls13_server()
    peer = connect()
    peer.echo(b"before")
    peer.send_key_update(1)
    peer.send_bytes(bad_tag(peer))
    inner_type, content = peer.next_record()
    if (inner_type, content) == (HANDSHAKE, key_update(0)):
        peer.read.update()
        inner_type, content = peer.next_record()
    assert (inner_type, content) == (ALERT, b"\x02\x14")
    peer.expect_eof(close_notify=False)
    record_error(server, "bad record MAC")


# ---- alerts from the client ----


def test_close_notify_ends_the_stream(tls13_server):
    """close_notify: the server reads no further (a record after it in the same send is
    ignored) and closes; its own close_notify may come first. No error is logged."""
    server, connect = tls13_server()
    peer = connect()
    peer.echo(b"before")
    peer.send_bytes(peer.write.seal(ALERT, b"\x01\x00") +
                    peer.write.seal(APPLICATION_DATA, frame(0x1, b"ignored")))
    peer.expect_eof(close_notify=True)  # and not the echo of "ignored"
    peer.close()
    # The next connection is served, and nothing was logged for this one.
    other = connect()
    other.echo(b"next")
    other.close_handshake()
    assert not [line for line in server.log_lines if "read failed" in line], server.log_lines


def test_user_canceled_is_ignored(tls13_server):
    server, connect = tls13_server()
    peer = connect()
    peer.send_bytes(peer.write.seal(ALERT, b"\x01\x5a"))
    peer.echo(b"still here")
    peer.close_handshake()


@pytest.mark.parametrize("alert", [b"\x02\x28", b"\x02\x50", b"\x01\x2a"],
                         ids=["fatal-40", "fatal-80", "warning-42"])
def test_peer_alert_closes(tls13_server, alert):
    """Any other alert ends the connection at once, with no record from the server (after
    a fatal alert nothing is sent), and its description is logged."""
    server, connect = tls13_server()
    peer = connect()
    peer.echo(b"before")
    peer.send_bytes(peer.write.seal(ALERT, alert))
    peer.expect_eof(close_notify=False)
    record_error(server, f"the peer sent alert {alert[1]}")


# ---- others are not disturbed ----


def test_a_refused_client_disturbs_no_other(tls13_server):
    """While one connection holds half a bad record and is then refused, another on the
    same loop (an OpenSSL client) and one of ours keep being echoed, before, between and
    after, also while refusals run in a thread beside them."""
    server, connect = tls13_server()
    good = wss_client(server.tls_port)
    good.handshake()
    good.send_frame(0x1, b"first")
    assert good.recv_message() == (0x1, b"first")
    ours = connect()
    ours.echo(b"ours first")
    bad = connect()
    record = bad_tag(bad)
    bad.send_bytes(record[:20])
    bad.wait_read()
    for i in range(5):
        good.send_frame(0x2, bytes([i]) * 1000)
        assert good.recv_message() == (0x2, bytes([i]) * 1000)
        ours.echo(bytes([i]) * 2000)
    bad.send_bytes(record[20:])
    bad.expect_alert(20)
    record_error(server, "bad record MAC")

    failures = []

    def refuse_many():
        try:
            for _ in range(10):
                peer = connect()
                peer.send_bytes(peer.write.seal_inner(bytes(30)))
                peer.expect_alert(10)
                peer.close()
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    thread = threading.Thread(target=refuse_many, daemon=True)
    thread.start()
    count = 0
    while thread.is_alive() or count < 20:
        good.send_frame(0x1, b"during %d" % count)
        assert good.recv_message() == (0x1, b"during %d" % count)
        ours.echo(b"ours %d" % count)
        count += 1
        if count > 10000:
            break
    thread.join(TIMEOUT)
    assert not thread.is_alive() and not failures, failures
    good.close_handshake()
    ours.close_handshake()
