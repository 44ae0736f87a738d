# SPDX-License-Identifier: MIT
"""The test harness's own guarantees, checked against a plain Python server whose reads are
known: RawClient.send_split puts every cut between two reads of the server even when the
server is slow to read (as under load, where pacing sends with sleeps merges them)."""

import socket
import threading

from eddyserver import TIMEOUT
from wsraw import RawClient


def test_send_split_puts_every_cut_between_two_reads():
    listener = socket.create_server(("127.0.0.1", 0))
    reads = []
    first_read = threading.Event()

    def serve():
        conn, _ = listener.accept()
        with conn:
            # A slow server: its first read comes late, after the client may have sent
            # every piece (a sleep between sends would not keep them apart).
            first_read.wait(0.2)
            while sum(reads) < 10:
                data = conn.recv(100)
                if not data:
                    break
                reads.append(len(data))

    server = threading.Thread(target=serve)
    server.start()
    client = RawClient("127.0.0.1", listener.getsockname()[1], TIMEOUT)
    try:
        client.send_split(b"0123456789", 1, 3, 6)
    finally:
        first_read.set()
        server.join(TIMEOUT)
        client.close()
        listener.close()
    assert reads == [1, 2, 3, 4]
