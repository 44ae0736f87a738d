# SPDX-License-Identifier: MIT
"""permessage-deflate (RFC 7692) from a client's side, with Python's zlib, for tests that
send exact bytes: the opening handshake with an offer, the parameters the server agreed
to, messages compressed as RFC 7692 7.2.1 says (raw DEFLATE, a sync flush, the trailing
00 00 ff ff removed, RSV1 on the first frame only) and the server's replies inflated as
7.2.2 says (the 4 bytes appended again).

Each side's context takeover follows the agreement: the client's compressor is reset per
message only when client_no_context_takeover was agreed; the inflater for the server's
replies is fresh per message only when server_no_context_takeover was agreed, so a server
that kept its context anyway would produce references the fresh inflater cannot resolve.
"""

import functools
import json
import random
import zlib

from ws_cases import frame

TAIL = b"\x00\x00\xff\xff"


def parse_agreement(value):
    """Parses a Sec-WebSocket-Extensions response value into a dict of parameters
    (values are ints, flags True). Asserts it is exactly one permessage-deflate element."""
    items = [item.strip() for item in value.split(";")]
    assert items[0] == "permessage-deflate", value
    assert "," not in value, f"more than one extension accepted: {value!r}"
    params = {}
    for item in items[1:]:
        name, eq, arg = item.partition("=")
        name = name.strip()
        assert name not in params, f"parameter {name} twice in {value!r}"
        params[name] = int(arg.strip().strip('"')) if eq else True
    return params


class Agreement:
    """The negotiated parameters, with RFC 7692's defaults for absent ones."""

    def __init__(self, value):
        self.value = value
        self.params = parse_agreement(value)
        self.server_no_context_takeover = bool(self.params.get("server_no_context_takeover"))
        self.client_no_context_takeover = bool(self.params.get("client_no_context_takeover"))
        self.server_bits = self.params.get("server_max_window_bits", 15)
        self.client_bits = self.params.get("client_max_window_bits", 15)


def open_with_offer(server, offer, extra_headers=None):
    """Connects and upgrades with `offer` as Sec-WebSocket-Extensions (None: no header).
    Returns (client, the response's extensions value or None)."""
    client = server.connect_raw()
    headers = dict(extra_headers or {})
    if offer is not None:
        headers["Sec-WebSocket-Extensions"] = offer
    _, resp_headers, _ = client.handshake(headers=headers)
    return client, resp_headers.get("sec-websocket-extensions")


class Compressor:
    """The client's side of one direction: raw DEFLATE with `bits`, one sync flush per
    message (or per fragment), context kept across messages if `takeover`."""

    def __init__(self, bits=15, takeover=True, level=6):
        self.bits, self.takeover, self.level = bits, takeover, level
        self.zobj = self._new()

    def _new(self):
        # zlib refuses a 256-byte window (8 bits) for raw deflate; its 9-bit window never
        # reaches further back than 250 bytes, so it fits an agreed window of 8 bits too.
        return zlib.compressobj(self.level, zlib.DEFLATED, -max(self.bits, 9))

    def pieces(self, chunks):
        """Compresses a message given as chunks, each ending in a sync flush (so the
        server can inflate each as it arrives); returns one compressed piece per chunk,
        the last without the 00 00 ff ff tail (RFC 7692 7.2.1)."""
        if not self.takeover:
            self.zobj = self._new()
        out = [self.zobj.compress(chunk) + self.zobj.flush(zlib.Z_SYNC_FLUSH)
               for chunk in chunks]
        assert out[-1].endswith(TAIL)
        out[-1] = out[-1][:-4]
        if out[-1] == b"" and len(out) == 1:
            out[-1] = b"\x00"  # an empty message is one empty stored-block header (7.2.3.6)
        return out

    def compress(self, data):
        return self.pieces([data])[0]


class Inflater:
    """Inflates the server's compressed replies: persistent if `takeover`, else fresh per
    message."""

    def __init__(self, bits=15, takeover=True):
        self.bits, self.takeover = bits, takeover
        self.zobj = zlib.decompressobj(-bits)

    def inflate(self, payload):
        if not self.takeover:
            self.zobj = zlib.decompressobj(-self.bits)
        data = self.zobj.decompress(payload + TAIL)
        assert self.zobj.unused_data == b"", "data after the end of the DEFLATE stream"
        return data


class DeflateClient:
    """A RawClient on a connection that negotiated permessage-deflate."""

    def __init__(self, client, agreement, compress_level=6):
        self.client = client
        self.agreement = agreement
        self.compressor = Compressor(agreement.client_bits,
                                     not agreement.client_no_context_takeover, compress_level)
        self.inflater = Inflater(agreement.server_bits, not agreement.server_no_context_takeover)

    def message_frames(self, opcode, data, fragment_size=0, chunks=None):
        """The frames of one compressed message. fragment_size > 0 cuts the compressed
        payload into frames of that size (Autobahn's autoFragmentSize); chunks instead
        compresses the given chunks with one sync flush each, one frame per chunk."""
        if chunks is not None:
            parts = self.compressor.pieces(chunks)
        else:
            payload = self.compressor.compress(data)
            size = fragment_size or len(payload) or 1
            parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        return [frame(opcode if i == 0 else 0x0, part, fin=i == len(parts) - 1,
                      rsv=4 if i == 0 else 0)
                for i, part in enumerate(parts)]

    def send(self, opcode, data, fragment_size=0):
        self.client.send(b"".join(self.message_frames(opcode, data, fragment_size)))

    def recv(self):
        """The next message from the server as (opcode, data, compressed). A compressed
        reply must carry RSV1 on its first frame only."""
        fin, rsv, opcode, payload = self.client.recv_frame()
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            raise AssertionError(f"expected a data frame, got a close frame: code {code}, "
                                 f"reason {payload[2:]!r}")
        assert opcode in (0x1, 0x2), f"expected a data frame, got opcode {opcode}"
        assert rsv in (0, 4), f"RSV bits {rsv:03b} on a data frame"
        compressed = rsv == 4
        while not fin:
            fin, more_rsv, cont, more = self.client.recv_frame()
            assert cont == 0 and more_rsv == 0, (cont, more_rsv)
            payload += more
        if compressed:
            payload = self.inflater.inflate(payload)
        return opcode, payload, compressed

    def roundtrip(self, opcode, data, fragment_size=0):
        """Sends data compressed; asserts it comes back compressed and intact."""
        self.send(opcode, data, fragment_size)
        got_opcode, got, compressed = self.recv()
        assert (got_opcode, compressed) == (opcode, True)
        assert len(got) == len(data)
        assert got == data


# ---- test data for Autobahn sections 12 and 13 (Autobahn ships files; these are
# generated, of the same kinds) ----


@functools.lru_cache(maxsize=None)
def dataset(name):
    """(is_binary, data): text is str (sliced by characters, as Autobahn does), binary is
    bytes."""
    rng = random.Random(name)
    if name == "json":  # 12.1: "Large JSON data file" (text)
        cities = ["K\u00f6ln", "M\u00fcnchen", "Z\u00fcrich", "Paris", "\u6771\u4eac",
                  "S\u00e3o Paulo", "Reykjav\u00edk"]
        records = [{"id": i, "name": f"user{rng.randrange(10000)}", "city": rng.choice(cities),
                    "score": round(rng.random() * 100, 3), "active": rng.random() < 0.5,
                    "tags": rng.sample(["a", "bb", "ccc", "dddd", "\u00e9t\u00e9", "\u2603"], 3)}
                   for i in range(2500)]
        return False, json.dumps(records, ensure_ascii=False, indent=1)
    if name == "bitmap":  # 12.2: "Lena Picture, Bitmap 512x512 bw" (binary)
        return True, bytes(((x * y) // 97 + (x ^ y) // 5 + rng.getrandbits(3)) & 0xFF
                           for y in range(256) for x in range(512))
    if name == "prose":  # 12.3: "Goethe's Faust I (German)", sent as binary
        words = ("Habe nun ach Philosophie Juristerei und Medizin und leider auch Theologie "
                 "durchaus studiert mit hei\u00dfem Bem\u00fch'n da steh ich nun ich armer "
                 "Tor und bin so klug als wie zuvor").split()
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
                 for _ in range(4000)]
        return True, "\n".join(lines).encode()
    if name == "html":  # 12.4: "Large HTML file" (text)
        rows = "".join(f'<tr class="r{i % 3}"><td>{i}</td><td>{rng.random():.6f}</td>'
                       f"<td>caf\u00e9 \u2192 {rng.randrange(1 << 20):x}</td></tr>\n"
                       for i in range(3000))
        return False, f"<!DOCTYPE html><html><body><table>\n{rows}</table></body></html>"
    if name == "random":  # 12.5: "A larger PDF" (binary, barely compressible)
        return True, rng.randbytes(200000)
    raise KeyError(name)


# Autobahn's MSG_SIZES: (message size, auto-fragment size of the compressed payload).
MSG_SIZES = [(16, 0), (64, 0), (256, 0), (1024, 0), (4096, 0), (8192, 0), (16384, 0),
             (32768, 0), (65536, 0), (131072, 0), (8192, 256), (16384, 256), (32768, 256),
             (65536, 256), (131072, 256), (131072, 1024), (131072, 4096), (131072, 32768)]


def messages(name, size):
    """Autobahn's sendOne(): consecutive slices of the data, wrapping around."""
    binary, data = dataset(name)
    count = max(3, min(50, 128 * 1024 // size))  # Autobahn sends 1000 of each
    pos = 0
    for _ in range(count):
        end = (pos + size) % len(data)
        msg = data[pos:end] if end > pos else data[pos:] + data[:end]
        pos = end
        yield (0x2, msg) if binary else (0x1, msg.encode())
