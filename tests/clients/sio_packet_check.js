// SPDX-License-Identifier: MIT
// Cross-checks eddy's Socket.IO packet codec against the reference parser
// (socket.io-parser in node_modules): every OK/BAD/STRICT row of the decode table in
// tests/unit/test_sio_packet.c is decoded by the reference, which must agree (OK: accepted
// with the same type, namespace and id; BAD: rejected; STRICT: accepted, a documented
// difference); and the reference Encoder must produce the strings test_encode expects.
// Run: node tests/clients/sio_packet_check.js   (exit status 1 on any disagreement)
"use strict";
const fs = require("fs");
const path = require("path");
const { literalBytes, stringMacros } = require("./c_literals");
const { Decoder, Encoder, PacketType } = require("socket.io-parser");

const source = fs.readFileSync(
  path.join(__dirname, "..", "unit", "test_sio_packet.c"),
  "latin1",
);

// #define NAME "..." macros used inside rows.
const macros = stringMacros(source);

// The first argument of a row: literals and macro names, concatenated.
function firstArg(args) {
  const bytes = [];
  let i = 0;
  for (;;) {
    while (/\s/.test(args[i])) i++;
    if (args[i] === '"') {
      let j = i + 1;
      while (args[j] !== '"') j += args[j] === "\\" ? 2 : 1;
      bytes.push(...literalBytes(args.slice(i, j + 1)));
      i = j + 1;
    } else if (/[A-Z]/.test(args[i])) {
      const name = /^\w+/.exec(args.slice(i))[0];
      bytes.push(...macros[name]);
      i += name.length;
    } else {
      return { bytes: Buffer.from(bytes), rest: args.slice(i + 1) };
    }
  }
}

const types = {
  SIO_CONNECT: 0,
  SIO_DISCONNECT: 1,
  SIO_EVENT: 2,
  SIO_ACK: 3,
  SIO_CONNECT_ERROR: 4,
  SIO_BINARY_EVENT: 5,
  SIO_BINARY_ACK: 6,
};
const utf8 = new TextDecoder("utf-8", { fatal: true });
let failures = 0,
  checked = 0,
  skipped = 0;

const table = source.slice(source.indexOf("static const row_t rows[]"));
for (const m of table.matchAll(/^\s+(OK|BAD|STRICT)\((.*)\),$/gm)) {
  const kind = m[1];
  const { bytes, rest } = firstArg(m[2]);
  let text;
  try {
    text = utf8.decode(bytes);
  } catch {
    skipped++;
    continue;
  }
  let packet = null,
    error = null;
  try {
    packet = new Decoder().decodeString(text);
  } catch (e) {
    error = e.message;
  }
  checked++;
  const show = JSON.stringify(text);
  if (kind === "BAD") {
    if (!error) {
      failures++;
      console.log(`BAD row accepted by the reference: ${show} -> ${JSON.stringify(packet)}`);
    }
    continue;
  }
  if (error) {
    failures++;
    console.log(`${kind} row rejected by the reference: ${show} (${error})`);
    continue;
  }
  if (kind === "STRICT") continue;
  const [type, nsp, id] = rest.split(",").map((s) => s.trim());
  const want = {
    type: types[type],
    nsp: Buffer.from(literalBytes(nsp)).toString("utf8"),
    id: Number(id.replace(/LL$/, "")),
  };
  const got = {
    type: packet.type,
    nsp: packet.nsp,
    id: packet.id === undefined ? -1 : packet.id,
  };
  if (got.type !== want.type || got.nsp !== want.nsp || got.id !== want.id) {
    failures++;
    console.log(`OK row differs: ${show}: reference ${JSON.stringify(got)}, table ${JSON.stringify(want)}`);
  }
}

// Encoder: the strings test_encode expects.
const ph = (num) => ({ _placeholder: true, num });
const enc = new Encoder();
const encoded = [
  [{ type: PacketType.EVENT, nsp: "/", data: ["hey", "Jude"] }, '2["hey","Jude"]'],
  [{ type: PacketType.EVENT, nsp: "/", data: ["message"] }, '2["message"]'],
  [{ type: PacketType.EVENT, nsp: "/admin", id: 456, data: ['a"b\n', 1, "2"] }, '2/admin,456["a\\"b\\n",1,"2"]'],
  [{ type: PacketType.BINARY_EVENT, nsp: "/admin", attachments: 2, data: ["m", ph(0), ph(1)] },
    '52-/admin,["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'],
  [{ type: PacketType.ACK, nsp: "/", id: 456, data: [1, "2"] }, '3456[1,"2"]'],
  [{ type: PacketType.BINARY_ACK, nsp: "/admin", id: 1, attachments: 1, data: [ph(0)] },
    '61-/admin,1[{"_placeholder":true,"num":0}]'],
  [{ type: PacketType.ACK, nsp: "/", id: 0, data: [] }, "30[]"],
  [{ type: PacketType.CONNECT, nsp: "/", data: { sid: "x" } }, '0{"sid":"x"}'],
  [{ type: PacketType.CONNECT_ERROR, nsp: "/random", data: { message: "Invalid namespace" } },
    '4/random,{"message":"Invalid namespace"}'],
  [{ type: PacketType.DISCONNECT, nsp: "/admin" }, "1/admin,"],
  [{ type: PacketType.DISCONNECT, nsp: "/" }, "1"],
  [{ type: PacketType.EVENT, nsp: "/", data: ["\x01\x1f\x7f"] }, '2["\\u0001\\u001f\x7f"]'],
];
for (const [packet, want] of encoded) {
  checked++;
  const got = enc.encodeAsString(packet);
  if (got !== want) {
    failures++;
    console.log(`encoder: reference ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
}

console.log(`sio_packet_check: ${checked} checked, ${skipped} skipped (not UTF-8), ${failures} disagreements`);
process.exit(failures ? 1 : 0);
