# SPDX-License-Identifier: MIT
"""examples/chat: users, rooms, presence, history on join and private messages.

The Python clients here speak exactly what the chat page (examples/chat/index.html) sends
over its plain WebSocket: "40" after the Engine.IO open packet, "3" for every "2" ping, and
'42["event",{...}]' events. tests/clients/chat/chat_client4.test.js runs the same chat with
socket.io-client 4.8, and a headless Chromium drives the page itself.
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import websockets

from eddyserver import BUILD, ROOT, TIMEOUT, chromium_binary
from sioserver import CLIENTS, node

PAGE = os.path.join(ROOT, "examples", "chat", "index.html")
# Short heartbeats, so every test also shows the page's pong answers keep a session alive.
PING = ["--ping-interval", "200", "--ping-timeout", "300"]


def start_chat(start_server, *args):
    return start_server("chat", "--page", PAGE, *PING, *args)


class Tab:
    """One browser tab, as the page behaves: answers pings, queues events."""

    def __init__(self, ws):
        self.ws = ws
        self.events = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket")
        opened = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert opened.startswith("0{") and '"pingInterval":200' in opened
        await ws.send("40")
        connected = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert connected.startswith('40{"sid":')
        return cls(ws)

    async def _read(self):
        try:
            async for frame in self.ws:
                if frame == "2":
                    await self.ws.send("3")
                elif frame.startswith("42"):
                    event, data = json.loads(frame[2:])
                    await self.events.put((event, data))
        except websockets.ConnectionClosed:
            pass

    async def emit(self, event, data):
        await self.ws.send("42" + json.dumps([event, data]))

    async def next(self, event, timeout=TIMEOUT):
        """The next event named `event`; other events before it are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event!r} event within {timeout}s")
            try:
                name, data = await asyncio.wait_for(self.events.get(), left)
            except asyncio.TimeoutError:
                raise AssertionError(f"no {event!r} event within {timeout}s") from None
            if name == event:
                return data

    async def request(self, event, data):
        await self.emit(event, data)
        return await self.next(event)

    async def login(self, name):
        answer = await self.request("login", {"name": name})
        assert answer == {"code": 200, "message": "success", "user": name}

    async def close(self):
        await self.ws.close()
        self.task.cancel()

    def pending(self):
        return [self.events.get_nowait() for _ in range(self.events.qsize())]


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 4 * TIMEOUT))


def test_chat_serves_its_page(start_server):
    server = start_chat(start_server)
    raw = server.http(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/html" in head
    with open(PAGE, "rb") as f:
        assert body == f.read()
    assert server.http(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") \
        .startswith(b"HTTP/1.1 404")


def test_chat_refuses_a_missing_page(start_server):
    result = subprocess.run([os.path.join(BUILD, "examples", "chat"), "--port", "0",
                             "--page", "/nonexistent/page.html"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert "cannot read the page /nonexistent/page.html" in result.stderr


def test_chat_two_users_three_tabs(start_server):
    """alice has two tabs, bob one: presence lists users once, history replays what was said
    before in order with positions, a private message reaches both of alice's tabs, and
    presence says alice left only when her last tab closed."""
    server = start_chat(start_server)

    async def scenario():
        alice1, alice2, bob = [await Tab.open(server) for _ in range(3)]
        await alice1.login("alice")
        await alice2.login("alice")
        await bob.login("bob")

        joined = await alice1.request("join", {"room": "lobby"})
        assert joined["code"] == 200 and joined["users"] == ["alice"]
        assert joined["history"] == [] and joined["seq"] == 0
        for text in ["first", "second \"quoted\"", "third ✓"]:
            await alice1.emit("say", {"room": "lobby", "text": text})
            said = await alice1.next("message")
            assert said["text"] == text and said["from"] == "alice"

        # alice's second tab: she is already present, so nobody is told she joined.
        joined = await alice2.request("join", {"room": "lobby"})
        assert joined["users"] == ["alice"]
        assert [(m["seq"], m["text"]) for m in joined["history"]] == \
            [(1, "first"), (2, "second \"quoted\""), (3, "third ✓")]

        joined = await bob.request("join", {"room": "lobby"})
        assert sorted(joined["users"]) == ["alice", "bob"]
        assert [m["seq"] for m in joined["history"]] == [1, 2, 3]
        assert joined["seq"] == 3
        # The layer's positions come with them: one offset per message, all different.
        offsets = [m["offset"] for m in joined["history"]]
        assert all(isinstance(o, str) and o for o in offsets) and len(set(offsets)) == 3
        for tab in (alice1, alice2):
            presence = await tab.next("presence")
            assert presence["user"] == "bob" and presence["joined"] is True
            assert sorted(presence["users"]) == ["alice", "bob"]

        await bob.emit("say", {"room": "lobby", "text": "hello"})
        for tab in (alice1, alice2, bob):
            said = await tab.next("message")
            assert (said["seq"], said["from"], said["text"]) == (4, "bob", "hello")

        await bob.emit("tell", {"to": "alice", "text": "psst"})
        for tab in (alice1, alice2, bob):  # both of alice's tabs, and bob's copy
            whisper = await tab.next("private")
            assert (whisper["from"], whisper["to"], whisper["text"]) == ("bob", "alice", "psst")

        rooms = await bob.request("rooms", {})
        assert rooms["rooms"] == [{"name": "lobby", "users": 2, "seq": 4}]

        # One of alice's tabs closes: she is still here (no presence event, still listed).
        await alice2.close()
        await bob.emit("say", {"room": "lobby", "text": "still there?"})
        await bob.next("message")
        assert all(name != "presence" for name, _ in bob.pending())
        rooms = await bob.request("rooms", {})
        assert rooms["rooms"][0]["users"] == 2

        # Her last tab leaves the room: bob is told at once, and she is no longer listed.
        left = await alice1.request("leave", {"room": "lobby"})
        assert left == {"code": 200, "room": "lobby"}
        presence = await bob.next("presence")
        assert presence == {"room": "lobby", "user": "alice", "joined": False, "users": ["bob"]}
        await alice1.emit("say", {"room": "lobby", "text": "ghost"})
        assert (await alice1.next("say"))["code"] == 403
        await alice1.close()
        await bob.close()

    run(scenario())


def test_chat_disconnect_updates_presence_without_ghosts(start_server):
    """A tab that closes its connection, and a client process that is killed outright,
    are gone from the room's presence within the deadline."""
    server = start_chat(start_server)
    # A client in another process, killed with SIGKILL: the kernel closes its socket.
    script = f"""
import asyncio, json, sys, websockets
async def main():
    ws = await websockets.connect("ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket")
    await ws.recv(); await ws.send("40"); await ws.recv()
    await ws.send('42["login",{{"name":"carol"}}]')
    await ws.send('42["join",{{"room":"lobby"}}]')
    async for frame in ws:
        if frame == "2":
            await ws.send("3")
        elif frame.startswith('42["join"'):
            print("joined", flush=True)
asyncio.run(main())
"""

    async def scenario():
        bob = await Tab.open(server)
        await bob.login("bob")
        await bob.request("join", {"room": "lobby"})

        dave = await Tab.open(server)
        await dave.login("dave")
        await dave.request("join", {"room": "lobby"})
        assert (await bob.next("presence"))["user"] == "dave"
        await dave.close()
        presence = await bob.next("presence")
        assert presence == {"room": "lobby", "user": "dave", "joined": False, "users": ["bob"]}

        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                text=True)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), TIMEOUT)
            assert line == "joined\n"
            presence = await bob.next("presence")
            assert presence["user"] == "carol" and presence["joined"] is True
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            presence = await bob.next("presence", timeout=2)
            assert presence == {"room": "lobby", "user": "carol", "joined": False,
                                "users": ["bob"]}
            assert time.monotonic() - killed_at < 2
        finally:
            proc.kill()
            proc.wait()
        rooms = await bob.request("rooms", {})
        assert rooms["rooms"] == [{"name": "lobby", "users": 1, "seq": 0}]
        await bob.close()

    run(scenario())


def test_chat_typing_is_sent_to_the_others_in_the_room(start_server):
    server = start_chat(start_server)

    async def scenario():
        alice, bob = await Tab.open(server), await Tab.open(server)
        await alice.login("alice")
        await bob.login("bob")
        await alice.request("join", {"room": "lobby"})
        await bob.request("join", {"room": "lobby"})
        await bob.emit("typing", {"room": "lobby", "typing": True})
        assert await alice.next("typing") == {"room": "lobby", "user": "bob", "typing": True}
        await bob.emit("typing", {"room": "lobby", "typing": False})
        assert await alice.next("typing") == {"room": "lobby", "user": "bob", "typing": False}
        # The sender is not told of its own typing: a request after it is answered first.
        await bob.request("rooms", {})
        assert all(name != "typing" for name, _ in bob.pending())
        await alice.close()
        await bob.close()

    run(scenario())


@pytest.mark.parametrize("event,data,code", [
    ("join", {"room": "lobby"}, 401),
    ("say", {"room": "lobby", "text": "x"}, 401),
    ("tell", {"to": "bob", "text": "x"}, 401),
])
def test_chat_requires_login(start_server, event, data, code):
    server = start_chat(start_server)

    async def scenario():
        tab = await Tab.open(server)
        assert (await tab.request(event, data))["code"] == code
        await tab.close()

    run(scenario())


def test_chat_refusals(start_server):
    server = start_chat(start_server)

    async def scenario():
        tab = await Tab.open(server)
        for bad in ["", "a b", "x" * 33, "<script>", 5]:
            answer = await tab.request("login", {"name": bad})
            assert answer["code"] == 422, bad
        await tab.login("alice")
        assert (await tab.request("login", {"name": "bob"}))["code"] == 409
        await tab.login("alice")  # the same name again is fine
        assert (await tab.request("join", {"room": "two words"}))["code"] == 422
        assert (await tab.request("say", {"room": "lobby", "text": "x"}))["code"] == 403
        assert (await tab.request("leave", {"room": "lobby"}))["code"] == 404
        await tab.request("join", {"room": "lobby"})
        assert (await tab.request("say", {"room": "lobby", "text": ""}))["code"] == 422
        too_long = {"room": "lobby", "text": "y" * 1999}
        assert (await tab.request("say", too_long))["code"] == 422
        assert (await tab.request("tell", {"to": "nobody", "text": "x"}))["code"] == 404
        await tab.close()

    run(scenario())


def test_chat_history_keeps_the_last_n_messages(start_server):
    server = start_chat(start_server, "--history", "3")

    async def scenario():
        alice, bob = await Tab.open(server), await Tab.open(server)
        await alice.login("alice")
        await bob.login("bob")
        await alice.request("join", {"room": "r"})
        for i in range(1, 6):
            await alice.emit("say", {"room": "r", "text": f"m{i}"})
            assert (await alice.next("message"))["seq"] == i
        joined = await bob.request("join", {"room": "r"})
        assert [(m["seq"], m["text"]) for m in joined["history"]] == \
            [(3, "m3"), (4, "m4"), (5, "m5")]
        await alice.close()
        await bob.close()

    run(scenario())


def test_chat_socket_io_client(start_server):
    """tests/clients/chat/chat_client4.test.js: socket.io-client 4.8 against the chat, with
    its default transports (long-polling, then the upgrade) and WebSocket only."""
    server = start_chat(start_server)
    suite = os.path.join(CLIENTS, "chat", "chat_client4.test.js")
    env = dict(os.environ, CHAT_URL=f"http://127.0.0.1:{server.port}")
    result = subprocess.run([node(), "--test", "--test-reporter=tap", "--test-timeout=20000",
                             suite], cwd=CLIENTS, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_chat_page_in_headless_chromium(start_server):
    """tests/clients/chat/chat_browser.js: the page itself, two people in Chromium: history on
    join, presence both ways, typing, a private message, leaving by closing the tab."""
    if not os.path.isdir(os.path.join(CLIENTS, "node_modules", "playwright-core")):
        pytest.fail("tests/clients/node_modules (playwright-core) is needed: run `make test`")
    server = start_chat(start_server)
    driver = os.path.join(CLIENTS, "chat", "chat_browser.js")
    result = subprocess.run([node(), driver, f"http://127.0.0.1:{server.port}/",
                             chromium_binary()], cwd=CLIENTS, capture_output=True, text=True,
                            timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["steps"] == [
        "alice said", {"history": True, "users": ["alice (you)", "bob"]}, "typing", "private",
        {"left": True, "users": ["alice (you)"]}]


def test_chat_join_while_messages_flow_misses_none(start_server):
    """bob joins while alice sends 300 messages, on another loop (two workers): every seq
    from 1 to 300 reaches him, in the join's history or live, and what arrives live after
    the history is in order."""
    server = start_chat(start_server, "--history", "1000", "--set", "worker_num=2")
    count = 300

    async def scenario():
        alice, bob = await Tab.open(server), await Tab.open(server)
        await alice.login("alice")
        await bob.login("bob")
        await alice.request("join", {"room": "flow"})
        for i in range(count):
            await alice.emit("say", {"room": "flow", "text": f"m{i + 1}"})
            if i == count // 3:
                await bob.emit("join", {"room": "flow"})
        joined, live, early = None, [], []
        deadline = time.monotonic() + 2 * TIMEOUT
        # Under load bob's join may be answered after the last message: its history then
        # holds them all and nothing more comes live.
        while joined is None or max(joined["seq"], *live, 0) < count:
            name, data = await asyncio.wait_for(bob.events.get(), deadline - time.monotonic())
            if name == "join":
                joined = data
            elif name == "message":
                (live if joined else early).append(data["seq"])
        history = [m["seq"] for m in joined["history"]]
        assert history == list(range(1, len(history) + 1))
        # Live before the answer: only messages the history holds too.
        assert all(seq <= joined["seq"] for seq in early)
        fresh = [seq for seq in live if seq > joined["seq"]]
        assert fresh == list(range(joined["seq"] + 1, count + 1))
        await alice.close()
        await bob.close()

    run(scenario())
