# SPDX-License-Identifier: MIT
"""Autobahn section 13 (permessage-deflate parameters, RFC 7692 7.1): each of Autobahn's
offer sets gets an exact Sec-WebSocket-Extensions answer from the echo example (started
with websocket_compression=true), and messages then flow under the agreed parameters:
replies inflate with the agreed server window (a server that used a larger one would
produce distances this inflater rejects), with a fresh inflater per message when
server_no_context_takeover was agreed, and our compressor keeps or drops its context as
agreed. Offers the server must decline (a window it cannot honour, unknown or repeated
parameters, bad values) get a 101 without the extension, and RSV1 then fails with 1002.

eddy answers parameters in a fixed order: server_no_context_takeover,
client_no_context_takeover, server_max_window_bits, client_max_window_bits."""

import base64
import os

import pytest

from ws_cases import frame, next_frame_is_close, shared_server
from ws_deflate import MSG_SIZES, Agreement, DeflateClient, messages, open_with_offer
from wsraw import accept_for

deflate_echo = shared_server("echo", settings={"websocket_compression": "true"})

BASE = "permessage-deflate; client_no_context_takeover; client_max_window_bits"

# Autobahn 13.1-13.7: the client's offers (autobahn-python's PerMessageDeflateOffer with
# requestNoContextTakeover / requestMaxWindowBits), and eddy's exact answer.
AUTOBAHN_OFFERS = [
    ("13.1", BASE, "permessage-deflate; client_no_context_takeover"),
    ("13.2", BASE + "; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    ("13.3", BASE + "; server_max_window_bits=9",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=9"),
    ("13.4", BASE + "; server_max_window_bits=15",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=15"),
    ("13.5", BASE + "; server_no_context_takeover; server_max_window_bits=9",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=9"),
    ("13.6", BASE + "; server_no_context_takeover; server_max_window_bits=15",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=15"),
    ("13.7", ", ".join([BASE + "; server_no_context_takeover; server_max_window_bits=9",
                        BASE + "; server_no_context_takeover", BASE]),
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=9"),
]

# Ours: other acceptable offers.
OTHER_OFFERS = [
    ("plain", "permessage-deflate", "permessage-deflate"),
    ("client-bits-10", "permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; client_max_window_bits=10"),
    ("client-bits-quoted", 'permessage-deflate; client_max_window_bits="10"',
     "permessage-deflate; client_max_window_bits=10"),
    ("client-bits-15", "permessage-deflate; client_max_window_bits=15", "permessage-deflate"),
    ("client-bits-8", "permessage-deflate; client_max_window_bits=8",
     "permessage-deflate; client_max_window_bits=8"),
    ("server-bits-12", "permessage-deflate; server_max_window_bits=12",
     "permessage-deflate; server_max_window_bits=12"),
    ("both-no-context-takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    ("all-parameters", "permessage-deflate; client_max_window_bits=11; "
     "server_max_window_bits=10; client_no_context_takeover; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=10; client_max_window_bits=11"),
    ("no-space-after-semicolon", "permessage-deflate;client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover"),
    ("declined-then-plain", "permessage-deflate; server_max_window_bits=8, permessage-deflate",
     "permessage-deflate"),
    ("unknown-extension-first", "x-webkit-deflate-frame, permessage-deflate",
     "permessage-deflate"),
    ("unknown-parameter-then-valid",
     "permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
]

DECLINED_OFFERS = [
    ("server-bits-8", "permessage-deflate; server_max_window_bits=8"),
    ("server-bits-8-with-others", BASE + "; server_no_context_takeover; server_max_window_bits=8"),
    ("unknown-parameter", "permessage-deflate; foo"),
    ("unknown-parameter-with-value", "permessage-deflate; foo=1"),
    ("duplicate-server-no-context-takeover",
     "permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
    ("duplicate-client-no-context-takeover",
     "permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
    ("duplicate-client-bits",
     "permessage-deflate; client_max_window_bits=10; client_max_window_bits=11"),
    ("duplicate-server-bits",
     "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"),
    ("server-bits-without-value", "permessage-deflate; server_max_window_bits"),
    ("server-bits-16", "permessage-deflate; server_max_window_bits=16"),
    ("server-bits-leading-zero", "permessage-deflate; server_max_window_bits=09"),
    ("server-bits-not-a-number", "permessage-deflate; server_max_window_bits=ten"),
    ("client-bits-7", "permessage-deflate; client_max_window_bits=7"),
    ("client-bits-16", "permessage-deflate; client_max_window_bits=16"),
    ("flag-with-a-value", "permessage-deflate; server_no_context_takeover=1"),
    ("unknown-extension", "x-webkit-deflate-frame"),
    ("empty", ""),
]


@pytest.mark.parametrize("offer,answer", [
    pytest.param(offer, answer, id=f"autobahn-{case}") for case, offer, answer in AUTOBAHN_OFFERS
] + [pytest.param(offer, answer, id=name) for name, offer, answer in OTHER_OFFERS])
def test_offer_answered_exactly(deflate_echo, offer, answer):
    """The 101 carries exactly this Sec-WebSocket-Extensions value; a compressed message
    then round-trips under the agreement."""
    client, value = open_with_offer(deflate_echo, offer)
    assert value == answer
    dclient = DeflateClient(client, Agreement(value))
    for i in range(3):
        dclient.roundtrip(0x1, f"message {i} under {answer} ".encode() * 30)
    client.close_handshake()


@pytest.mark.parametrize("offer", [pytest.param(offer, id=name)
                                   for name, offer in DECLINED_OFFERS])
def test_offer_declined(deflate_echo, offer):
    """RFC 7692 5: a server declines an offer it cannot accept as is; the handshake still
    succeeds, without the extension. Then RSV1 means nothing: 1002."""
    client, value = open_with_offer(deflate_echo, offer)
    assert value is None
    client.send(frame(0x1, b"plain"))
    assert client.recv_frame() == (True, 0, 0x1, b"plain")
    client.send(frame(0x1, bytes.fromhex("f248cdc9c90700"), rsv=4))
    next_frame_is_close(client, 1002)


def test_offers_in_two_header_lines(deflate_echo):
    """Sec-WebSocket-Extensions may be repeated: the first acceptable offer wins, wherever
    it is."""
    key = base64.b64encode(os.urandom(16)).decode()
    client = deflate_echo.connect_raw()
    client.send((f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n"
                 f"Sec-WebSocket-Extensions: x-unknown; a=1\r\n"
                 f"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n"
                 f"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
                 f"\r\n").encode())
    status, headers, _ = client.read_http_response()
    assert status == 101
    assert headers["sec-websocket-accept"] == accept_for(key)
    assert headers["sec-websocket-extensions"] == "permessage-deflate; client_no_context_takeover"
    DeflateClient(client, Agreement(headers["sec-websocket-extensions"])).roundtrip(0x1, b"ok")
    client.close_handshake()


def test_compression_off_ignores_offers(start_server):
    """Without websocket_compression, no offer is accepted and RSV1 fails with 1002."""
    server = start_server("echo", settings={"websocket_compression": "false"})
    client, value = open_with_offer(server, BASE)
    assert value is None
    client.send(frame(0x1, bytes.fromhex("f248cdc9c90700"), rsv=4))
    next_frame_is_close(client, 1002)


# ---- Autobahn 13.x.y: messages under each agreement ----


@pytest.mark.parametrize("offer,answer,size,fragment_size", [
    pytest.param(offer, answer, size, frag, id=f"autobahn-{case}.{i}-{size}-frag{frag}")
    for case, offer, answer in AUTOBAHN_OFFERS
    for i, (size, frag) in enumerate(MSG_SIZES, start=1)
] + [
    pytest.param(OTHER_OFFERS[0][1], OTHER_OFFERS[0][2], size, frag,
                 id=f"plain-offer-{size}-frag{frag}")
    for size, frag in MSG_SIZES[::3]
])
def test_messages_under_agreement(deflate_echo, offer, answer, size, fragment_size):
    """Autobahn 13.x.y: Autobahn's JSON data in messages of `size`, the compressed payload
    cut into frames of fragment_size (0: one frame), echoed intact. The agreement decides
    the inflater's window and whether it, and our compressor, keep their context."""
    client, value = open_with_offer(deflate_echo, offer)
    assert value == answer
    dclient = DeflateClient(client, Agreement(value))
    for opcode, msg in messages("json", size):
        dclient.roundtrip(opcode, msg, fragment_size)
    client.close_handshake()


# ---- the server's own settings ----

server_side_no_context = shared_server("echo", settings={
    "websocket_compression": "true",
    "websocket_compression_server_no_context_takeover": "true",
    "websocket_compression_client_window_bits": "10"})

client_side_no_context = shared_server("echo", settings={
    "websocket_compression": "true",
    "websocket_compression_client_no_context_takeover": "true",
    "websocket_compression_window_bits": "10"})


@pytest.mark.parametrize("offer,answer", [
    pytest.param("permessage-deflate", "permessage-deflate; server_no_context_takeover",
                 id="plain"),
    pytest.param("permessage-deflate; client_max_window_bits",
                 "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
                 id="client-bits"),
    pytest.param("permessage-deflate; client_max_window_bits=9",
                 "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
                 id="client-bits-9"),
])
def test_server_no_context_takeover_setting(server_side_no_context, offer, answer):
    """websocket_compression_server_no_context_takeover is announced even when not asked
    for, and honoured: every reply inflates on its own. The client window is limited to
    websocket_compression_client_window_bits when the client allows it."""
    client, value = open_with_offer(server_side_no_context, offer)
    assert value == answer
    dclient = DeflateClient(client, Agreement(value))
    for opcode, msg in messages("json", 4096):
        dclient.roundtrip(opcode, msg)
    client.close_handshake()


@pytest.mark.parametrize("offer,answer", [
    pytest.param("permessage-deflate", "permessage-deflate; client_no_context_takeover",
                 id="plain"),
    pytest.param("permessage-deflate; server_max_window_bits=12",
                 "permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
                 id="server-bits-12"),
    pytest.param("permessage-deflate; server_max_window_bits=9",
                 "permessage-deflate; client_no_context_takeover; server_max_window_bits=9",
                 id="server-bits-9"),
])
def test_client_no_context_takeover_setting(client_side_no_context, offer, answer):
    """websocket_compression_client_no_context_takeover is announced, so our compressor
    starts afresh per message; server_max_window_bits is answered with the smaller of the
    offer and websocket_compression_window_bits."""
    client, value = open_with_offer(client_side_no_context, offer)
    assert value == answer
    dclient = DeflateClient(client, Agreement(value))
    for opcode, msg in messages("json", 4096):
        dclient.roundtrip(opcode, msg)
    client.close_handshake()
