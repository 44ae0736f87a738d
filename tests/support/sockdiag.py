# SPDX-License-Identifier: MIT
"""What the kernel knows about the server's end of a loopback TCP connection, read with
Linux sock_diag (the netlink interface `ss` uses), so tests can observe the server's reads
and writes without any help from the program under test.

The server's socket is looked up by its exact address pair (our peer is its source, we are
its destination), so other connections on the machine do not matter.
"""

import collections
import socket
import struct
import time

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
INET_DIAG_INFO = 2  # struct tcp_info
INET_DIAG_SKMEMINFO = 7  # the SK_MEMINFO_* array
TCPI_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received in struct tcp_info (Linux 4.1+)

SocketState = collections.namedtuple("SocketState", "received unread unsent wmem_queued sndbuf")
SocketState.__doc__ = """The server socket: bytes its kernel received from us (received), of
those not yet read by the server (unread), bytes written by the server and not yet acked by
us (unsent), and its send buffer use and size (writes end short once wmem_queued reaches
sndbuf)."""


def server_socket(sock):
    """The SocketState of the server's end of the connected TCP socket sock."""
    family = sock.family
    here, there = sock.getsockname(), sock.getpeername()
    sockid = (struct.pack("!HH", there[1], here[1]) +
              socket.inet_pton(family, there[0]).ljust(16, b"\0") +
              socket.inet_pton(family, here[0]).ljust(16, b"\0") +
              struct.pack("=I", 0) + b"\xff" * 8)  # any interface, no cookie
    ext = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_SKMEMINFO - 1))
    request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, ext, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, 1, 0, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        nl.sendall(header + request)
        reply = nl.recv(65536)
    length, kind = struct.unpack_from("=IH", reply)
    if kind == NLMSG_ERROR:
        (err,) = struct.unpack_from("=i", reply, 16)
        raise OSError(-err, "sock_diag found no server socket for this connection")
    # struct inet_diag_msg: 4 bytes, the 48-byte sockid, then expires rqueue wqueue uid inode.
    _, unread, unsent, _, _ = struct.unpack_from("=5I", reply, 16 + 4 + 48)
    received = wmem_queued = sndbuf = None
    pos = 16 + 72
    while pos + 4 <= length:
        attr_len, attr_type = struct.unpack_from("=HH", reply, pos)
        if attr_len < 4:
            break
        if attr_type == INET_DIAG_INFO and attr_len - 4 >= TCPI_BYTES_RECEIVED + 8:
            (received,) = struct.unpack_from("=Q", reply, pos + 4 + TCPI_BYTES_RECEIVED)
        elif attr_type == INET_DIAG_SKMEMINFO:
            # SK_MEMINFO_RMEM_ALLOC, RCVBUF, WMEM_ALLOC, SNDBUF, FWD_ALLOC, WMEM_QUEUED, ...
            sndbuf, wmem_queued = struct.unpack_from("=12xI4xI", reply, pos + 4)
        pos += (attr_len + 3) & ~3
    assert received is not None and sndbuf is not None, "sock_diag answered without tcp_info"
    return SocketState(received, unread, unsent, wmem_queued, sndbuf)


def wait_for(sock, condition, what, timeout):
    """Polls the server socket until condition(state) holds; returns that state. Fails the
    test with `what` and the last state after timeout seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.0002
    while True:
        state = server_socket(sock)
        if condition(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s; server socket: {state}")
        time.sleep(pause)  # polling a condition, bounded by the deadline
        pause = min(pause * 2, 0.02)
