# SPDX-License-Identifier: MIT
"""eddy_publish_parts (union of topics, except-topics, except fd), multi-part units kept
contiguous under concurrent publishers, eddy_push_parts, and EDDY_WS_FLAG_VOLATILE."""

from testbed import cmd, open_ws, start_testbed
from wsraw import frame

EINVAL, EDROPPED = -3001, -3013


def sync(server, ctl, clients):
    """Subscriptions made from another loop are applied there: once a push posted after
    them has arrived, they are in place."""
    for client, fd in clients:
        cmd(server, ctl, f"push {fd} 1 1 sync")
        assert client.recv_message() == (0x1, b"sync")


def test_publish_parts_reaches_the_union_once_minus_exceptions_on_every_loop(start_server):
    server = start_testbed(start_server, workers=2)
    ctl, _ = open_ws(server)
    clients = [open_ws(server) for _ in range(6)]
    assert {int(cmd(server, ctl, f"loop {fd}")) for _, fd in clients} == {0, 1}
    topics = [["a", "b"], ["a", "b"], ["b"], ["a", "ex"], ["a"], ["c"]]
    for (_, fd), names in zip(clients, topics):
        for name in names + ["marker"]:
            assert cmd(server, ctl, f"sub {fd} {name}") == "0"
    sync(server, ctl, clients)
    except_fd = clients[4][1]
    # a is named twice and counted once: a has 4 subscribers, b 3.
    assert cmd(server, ctl, f"pubparts a,b,a ex {except_fd} - 3 unit") == "7"
    # Published after the unit by the same thread: every client gets it after the unit, so
    # a client whose next message is the marker did not get the unit.
    assert cmd(server, ctl, "pub marker end") == "6"
    unit = [(0x1, b"unit"), (0x2, b"unit/1"), (0x2, b"unit/2")]
    for i, (client, _) in enumerate(clients):
        expected = unit if i in (0, 1, 2) else []  # 3: except-topic, 4: except fd, 5: not in
        got = [client.recv_message() for _ in expected]
        assert got == expected, f"client {i} ({topics[i]})"
        assert client.recv_message() == (0x1, b"end"), f"client {i} ({topics[i]})"


def test_an_except_topic_also_among_the_topics_excludes_its_subscribers(start_server):
    server = start_testbed(start_server, workers=2)
    ctl, _ = open_ws(server)
    (a, fd_a), (b, fd_b) = open_ws(server), open_ws(server)
    for fd, name in ((fd_a, "x"), (fd_b, "x"), (fd_b, "y"), (fd_a, "marker"), (fd_b, "marker")):
        cmd(server, ctl, f"sub {fd} {name}")
    sync(server, ctl, [(a, fd_a), (b, fd_b)])
    assert cmd(server, ctl, "pubparts x,y y 0 - 1 only-a") == "3"
    cmd(server, ctl, "pub marker end")
    assert a.recv_message() == (0x1, b"only-a")
    assert a.recv_message() == (0x1, b"end")
    assert b.recv_message() == (0x1, b"end")


def test_publish_parts_errors(start_server):
    server = start_testbed(start_server)
    ctl, fd = open_ws(server)
    cmd(server, ctl, f"sub {fd} t")
    assert cmd(server, ctl, "pubparts - - 0 - 1 x") == str(EINVAL)  # no topic
    assert cmd(server, ctl, "pubparts nobody - 0 - 2 x") == "0"
    assert cmd(server, ctl, f"pushparts {fd} - 0 x") == str(EINVAL)  # no part
    assert cmd(server, ctl, "pubparts t - 0 - 2 ok") == "1"
    assert ctl.recv_message() == (0x1, b"ok")
    assert ctl.recv_message() == (0x2, b"ok/1")


def test_push_parts_from_its_own_and_another_loop(start_server):
    server = start_testbed(start_server, workers=2)
    ctl, ctl_fd = open_ws(server)
    others = [open_ws(server) for _ in range(3)]
    ctl_loop = cmd(server, ctl, f"loop {ctl_fd}")
    client, fd = next(c for c in others if cmd(server, ctl, f"loop {c[1]}") != ctl_loop)
    assert cmd(server, ctl, f"pushparts {fd} - 3 far") == "0"
    assert [client.recv_message() for _ in range(3)] == [
        (0x1, b"far"), (0x2, b"far/1"), (0x2, b"far/2")]
    assert cmd(server, ctl, f"pushparts {ctl_fd} - 2 near") == "0"
    assert [ctl.recv_message() for _ in range(2)] == [(0x1, b"near"), (0x2, b"near/1")]


def check_units(messages, expected_units, who):
    """Every text message "<T> <i>" of a unit is followed at once by its binary parts
    "<T> <i>/1" and "<T> <i>/2"; units of one publisher come in order."""
    next_index = {}
    i = 0
    units = 0
    while i < len(messages):
        opcode, data = messages[i]
        assert opcode == 0x1, f"{who}: a part out of its unit at {i}: {data!r}"
        tag, index = data.decode().split(" ")
        if tag.startswith("M"):  # a single message of the plain publisher
            i += 1
            continue
        assert messages[i + 1:i + 3] == [(0x2, data + b"/1"), (0x2, data + b"/2")], \
            f"{who}: unit {data!r} interleaved: {messages[i:i + 4]!r}"
        assert int(index) == next_index.get(tag, 0), f"{who}: {tag} out of order"
        next_index[tag] = int(index) + 1
        units += 1
        i += 3
    assert units == expected_units, who


def test_parts_stay_together_under_concurrent_publishers_and_pushers(start_server):
    server = start_testbed(start_server, workers=2)
    ctl, _ = open_ws(server)
    subs = [open_ws(server) for _ in range(4)]
    assert {int(cmd(server, ctl, f"loop {fd}")) for _, fd in subs} == {0, 1}
    for _, fd in subs:
        cmd(server, ctl, f"sub {fd} u")
    sync(server, ctl, subs)
    n = 1000
    # Three threads publish units, one pushes units to subs[0], one publishes single
    # messages: all race for the same output queues. Started in one read, so they overlap.
    commands = [f"thread pubparts u {n} T{k}" for k in range(3)]
    commands += [f"thread pushparts {subs[0][1]} {n} P", f"thread pub u {n} M"]
    ctl.send(b"".join(frame(0x1, f"!{text}".encode()) for text in commands))
    lines = sorted(server.line() for _ in range(2 * len(commands)))
    assert lines == ["= 0"] * len(commands) + ["thread done"] * len(commands)
    for k, (client, _) in enumerate(subs):
        units = 3 * n + (n if k == 0 else 0)
        messages = [client.recv_message() for _ in range(3 * units + n)]
        check_units(messages, units, f"subscriber {k}")


def test_volatile_skips_a_client_that_does_not_read_while_a_reader_gets_everything(start_server):
    server = start_testbed(start_server)
    ctl, _ = open_ws(server)
    (reader, reader_fd), (sleeper, sleeper_fd) = open_ws(server), open_ws(server)
    for fd in (reader_fd, sleeper_fd):
        cmd(server, ctl, f"sub {fd} v")
    # Volatile messages published back to back in one loop iteration (one read of five
    # commands) reach everyone: nothing was left unsent before them.
    ctl.send(b"".join(frame(0x1, f"!volatile pub v 100 b{i}".encode()) for i in range(5)))
    server.expect(*["= 2"] * 5)
    for client in (reader, sleeper):
        for i in range(5):
            assert client.recv_message() == (0x2, f"b{i}:".encode() + b"v" * (100 - 3))
    # 200 messages of 64 KiB, each waited for by the reader: 12.8 MB, more than the kernel
    # buffers of a client that does not read take.
    size, n = 64 * 1024, 200
    for i in range(n):
        assert cmd(server, ctl, f"volatile pub v {size} {i}") == "2"
        opcode, data = reader.recv_message()
        assert (opcode, data[:data.index(b":")]) == (0x2, str(i).encode())
    # The sleeper is behind: a volatile push to it is dropped, to the reader it is sent.
    assert cmd(server, ctl, f"volatile push {sleeper_fd} 10 x") == str(EDROPPED)
    assert cmd(server, ctl, f"volatile push {reader_fd} 10 x") == "0"
    assert reader.recv_message() == (0x2, b"x:" + b"v" * 8)
    assert cmd(server, ctl, f"pushparts {sleeper_fd} v 2 gone") == str(EDROPPED)
    # Its queue holds at most what one write left unsent plus one message, far from the
    # 6.4 MB high watermark that non-volatile messages would have reached (and then the
    # 8 MB socket_buffer_size, closing it as a slow consumer).
    queued = int(cmd(server, ctl, f"queued {sleeper_fd}"))
    assert queued <= 2 * size, queued
    # Once it reads, it gets whole messages in order, fewer than were published, then a
    # message that is not volatile.
    cmd(server, ctl, "pub v end")
    assert reader.recv_message() == (0x1, b"end")
    got = []
    while True:
        opcode, data = sleeper.recv_message()
        if opcode == 0x1:
            assert data == b"end"
            break
        assert len(data) == size
        got.append(int(data[:data.index(b":")]))
    assert got == sorted(got) and len(set(got)) == len(got)
    assert 0 < len(got) < n, len(got)
