# SPDX-License-Identifier: MIT
"""worker_num loop threads: connections spread over loops, methods called on one loop for
a connection of another, calls from the application's own threads, task workers, and an
orderly stop of every loop."""


import pytest

from testbed import cmd, open_ws, start_testbed

ENOTFOUND, ESTATE = -3003, -3004


def loops_of(server, ctl, fds):
    return [int(cmd(server, ctl, f"loop {fd}")) for fd in fds]


def test_connections_are_handed_to_loops_in_turn(start_server):
    server = start_testbed(start_server, workers=2)
    clients = [open_ws(server) for _ in range(4)]
    fds = [fd for _, fd in clients]
    assert fds == [1, 2, 3, 4]  # ids increase across loops
    ctl = clients[0][0]
    assert loops_of(server, ctl, fds) == [0, 1, 0, 1]


def test_reuse_port_spreads_connections_too(start_server):
    server = start_testbed(start_server, workers=2, settings={"enable_reuse_port": "true"})
    clients = [open_ws(server) for _ in range(24)]
    loops = loops_of(server, clients[0][0], [fd for _, fd in clients])
    # The kernel hashes connections over the loops' sockets: all on one loop would have
    # a chance of 2 ** -23.
    assert set(loops) == {0, 1}


def test_methods_reach_a_connection_on_another_loop(start_server):
    server = start_testbed(start_server, workers=2)
    a, fd_a = open_ws(server)
    b, fd_b = open_ws(server)
    assert loops_of(server, a, [fd_a, fd_b]) == [0, 1]
    assert cmd(server, a, f"push {fd_b} 1 1 across loops") == "0"
    assert b.recv_message() == (0x1, b"across loops")
    assert cmd(server, a, f"exist {fd_b}") == "true"
    assert cmd(server, a, f"established {fd_b}") == "true"
    info = cmd(server, a, f"info {fd_b}").split()
    assert info[0] == "3" and info[1] == "127.0.0.1"
    assert int(info[2]) == b.sock.getsockname()[1]
    assert cmd(server, a, f"send {fd_b} raw") == "0"
    assert b.sock.recv(3) == b"raw"
    assert cmd(server, a, f"userdata {fd_b}") == "0 same"
    # disconnect from elsewhere: no longer established as soon as it returns.
    assert cmd(server, a, f"disconnect {fd_b} 4001 bye") == "0"
    assert cmd(server, a, f"established {fd_b}") == "false"
    assert cmd(server, a, f"push {fd_b} 1 1 late") == str(ESTATE)
    fin, _, opcode, payload = b.recv_frame()
    assert (opcode, payload) == (0x8, b"\x0f\xa1bye")
    b.send_frame(0x8, b"\x0f\xa1")  # the answer completes the closing handshake
    b.expect_eof()
    server.expect(f"close {fd_b} 4")
    assert cmd(server, a, f"exist {fd_b}") == "false"
    assert cmd(server, a, f"push {fd_b} 1 1 gone") == str(ENOTFOUND)


def test_close_from_another_loop_is_immediate_for_everyone(start_server):
    server = start_testbed(start_server, workers=2)
    a, fd_a = open_ws(server)
    b, fd_b = open_ws(server)
    a.send_frame(0x1, f"!close {fd_b}".encode())
    a.send_frame(0x1, f"!exist {fd_b}".encode())
    a.send_frame(0x1, b"!count")
    a.send_frame(0x1, b"!list")
    lines = [server.line() for _ in range(5)]
    results = [l for l in lines if l.startswith("=")]
    assert results == ["= 0", "= false", "= 1", f"= {fd_a}"]
    assert f"close {fd_b} 3" in lines
    b.expect_eof()


def test_application_thread_pushes_in_order(start_server):
    server = start_testbed(start_server, workers=2)
    a, fd_a = open_ws(server)
    b, fd_b = open_ws(server)
    assert cmd(server, a, f"thread push {fd_b} 300 n") == "0"
    for i in range(300):
        assert b.recv_message() == (0x1, f"n {i}".encode())
    server.expect("thread done")


def test_tasks_run_off_the_loop_and_finish_on_it(start_server):
    server = start_testbed(start_server, workers=2, settings={"task_worker_num": "2"})
    a, _ = open_ws(server)
    slow = cmd(server, a, "task 300 slow")
    fast = cmd(server, a, "task 10 fast")
    assert int(slow) > 0 and int(fast) > int(slow)
    # The loop is not blocked by the slow task: it answers at once.
    assert cmd(server, a, "count") == "1"
    server.expect(f"finish {fast} fast", f"finish {slow} slow")


def test_no_task_workers_means_no_task(start_server):
    server = start_testbed(start_server, workers=2)
    a, _ = open_ws(server)
    assert cmd(server, a, "task 1 x") == "0"


def test_queued_tasks_finish_before_the_server_stops(start_server):
    # websocket_close_timeout 0: the stop does not wait for a's close frame, so only the
    # queued tasks can hold it (with the 5 s default they would be done anyway).
    server = start_testbed(start_server, workers=2,
                           settings={"task_worker_num": "1", "websocket_close_timeout": "0"})
    a, _ = open_ws(server)
    first = cmd(server, a, "task 200 first")
    second = cmd(server, a, "task 10 second")
    a.send_frame(0x1, b"!stop")
    lines = []
    while "shutdown" not in lines:
        lines.append(server.line())
    assert lines.index(f"finish {first} first") < lines.index(f"finish {second} second")
    assert lines.index(f"finish {second} second") < lines.index("shutdown")


def test_stop_closes_every_loop_cleanly(start_server):
    server = start_testbed(start_server, workers=3)
    clients = [open_ws(server) for _ in range(6)]
    assert sorted(set(loops_of(server, clients[0][0], [fd for _, fd in clients]))) == [0, 1, 2]
    clients[0][0].send_frame(0x1, b"!stop")
    server.expect("= 0")
    for client, fd in clients:
        fin, _, opcode, payload = client.recv_frame()
        assert opcode == 0x8 and payload[:2] == b"\x03\xe9"  # 1001, going away
        client.send_frame(0x8, payload[:2])
        client.expect_eof()
    lines = sorted(server.line() for _ in range(6))
    assert lines == sorted(f"close {fd} 4" for _, fd in clients)
    server.expect("shutdown")
    assert server.proc.wait(timeout=10) == 0


@pytest.mark.parametrize("workers", ["1", "2", "4"])
def test_many_clients_over_many_loops(start_server, workers):
    """200 clients, each echoing 20 messages, whatever the number of loops."""
    import asyncio
    import websockets

    server = start_server("echo", settings={"worker_num": workers})

    async def one(n):
        async with websockets.connect(server.url) as ws:
            for i in range(20):
                await ws.send(f"{n}:{i}")
                assert await ws.recv() == f"{n}:{i}"

    async def run():
        await asyncio.gather(*(one(n) for n in range(200)))

    asyncio.run(run())
