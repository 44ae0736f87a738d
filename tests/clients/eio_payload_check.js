// SPDX-License-Identifier: MIT
// Cross-checks eddy's Engine.IO polling payload codecs against the reference parsers:
// engine.io-parser (protocol 4) and engine.io's build/parser-v3 (protocol 3). Every
// ROW/STRICT of the decode table in tests/unit/test_eio_payload.c is decoded by the
// reference the way engine.io's polling transport does (text bodies as Buffer.toString(),
// v3 binary bodies as a Buffer); ROW results must match, STRICT rows must differ (a
// documented difference: the reference delivers more). The reference encoders must produce what
// test_encode expects.
// Run: node tests/clients/eio_payload_check.js   (exit status 1 on any disagreement)
"use strict";
const fs = require("fs");
const path = require("path");
const { literalBytes, stringMacros } = require("./c_literals");
const v4 = require("engine.io-parser");
// Not exported by the package: loaded by path.
const v3 = require(path.join(__dirname, "node_modules", "engine.io", "build", "parser-v3"));

const source = fs.readFileSync(
  path.join(__dirname, "..", "unit", "test_eio_payload.c"),
  "latin1",
);

const macros = stringMacros(source);

// Splits a row's arguments at top-level commas; an argument made of string literals and
// macro names becomes a Buffer, any other one stays a word ("3", "true").
function rowArgs(args) {
  const groups = [[]];
  for (const t of args.match(/"(?:[^"\\]|\\.)*"|[A-Za-z_0-9]+|,/g)) {
    if (t === ",") groups.push([]);
    else groups[groups.length - 1].push(t);
  }
  return groups.map((g) => {
    if (g.length === 1 && !g[0].startsWith('"') && !(g[0] in macros)) return g[0];
    return Buffer.from(g.flatMap((t) => (t.startsWith('"') ? literalBytes(t) : macros[t])));
  });
}

const typeChar = (name) => String(v3.packets[name]);
function describePackets(packets) {
  const parts = [];
  for (const p of packets) {
    if (p.type === "error") {
      parts.push("!");
      break;
    }
    if (typeof p.data === "string" || p.data === undefined)
      parts.push(typeChar(p.type) + ":" + (p.data || ""));
    else parts.push(typeChar(p.type) + "#" + Buffer.from(p.data).toString("hex"));
  }
  return parts.join("|");
}

function reference(protocol, binaryForm, body) {
  if (protocol === 4) return describePackets(v4.decodePayload(body.toString()));
  const packets = [];
  const cb = (packet) => {
    packets.push(packet);
  };
  if (binaryForm) v3.decodePayload(body, cb);
  else v3.decodePayload(body.toString(), cb);
  return describePackets(packets);
}

let failures = 0,
  checked = 0;
const table = source.slice(source.indexOf("static const row_t rows[]"));
// Rows may span lines: match up to the "),\n" that ends them.
for (const m of table.matchAll(/^\s+(ROW|STRICT)\(([\s\S]*?)\),$/gm)) {
  const [protocol, binaryForm, body, want] = rowArgs(m[2]);
  const got = reference(Number(protocol), binaryForm === "true", body);
  const wantText = want.toString("utf8");
  checked++;
  const show = JSON.stringify(body.toString("latin1"));
  if (m[1] === "ROW" && got !== wantText) {
    failures++;
    console.log(`v${protocol}${binaryForm === "true" ? " binary" : ""} ${show}: reference ${JSON.stringify(got)}, table ${JSON.stringify(wantText)}`);
  }
  if (m[1] === "STRICT" && got === wantText) {
    failures++;
    console.log(`STRICT row decodes the same in the reference: ${show} -> ${JSON.stringify(got)}`);
  }
}

// Encoders: what test_encode expects.
function encodeV4(packets) {
  let out;
  v4.encodePayload(packets, (s) => (out = s));
  return Buffer.from(out);
}
function encodeV3(packets, binary) {
  let out;
  if (binary) v3.encodePayloadAsBinary(packets, (b) => (out = b));
  else v3.encodePayload(packets, false, (s) => (out = Buffer.from(s)));
  return out;
}
const bin = Buffer.from([1, 2, 3]);
const expect = [
  [encodeV4([
    { type: "message", data: "hello" },
    { type: "ping" },
    { type: "message", data: bin },
    { type: "message", data: "é" },
  ]), "4hello\x1e2\x1ebAQID\x1e4é"],
  [encodeV3([
    { type: "message", data: "hello" },
    { type: "ping" },
    { type: "message", data: bin },
    { type: "message", data: "😀é" },
    { type: "message", data: Buffer.alloc(0) },
  ], false), "6:4hello1:26:b4AQID4:4😀é2:b4"],
  [encodeV3([
    { type: "message", data: "hello" },
    { type: "message", data: bin },
    { type: "message", data: "é" },
    { type: "noop" },
  ], true), Buffer.concat([
    Buffer.from([0, 6, 255]), Buffer.from("4hello"),
    Buffer.from([1, 4, 255, 4, 1, 2, 3]),
    Buffer.from([0, 3, 255]), Buffer.from("4é"),
    Buffer.from([0, 1, 255]), Buffer.from("6"),
  ])],
  [encodeV3([{ type: "message", data: "abcdefghijk" }], true),
    Buffer.concat([Buffer.from([0, 1, 2, 255]), Buffer.from("4abcdefghijk")])],
  [encodeV3([{ type: "message", data: "abcdefghijk" }], false), "12:4abcdefghijk"],
  [encodeV3([], false), "0:"],
];
for (const [got, want] of expect) {
  checked++;
  const w = Buffer.isBuffer(want) ? want : Buffer.from(want);
  if (!got.equals(w)) {
    failures++;
    console.log(`encoder: reference ${JSON.stringify(got.toString("latin1"))}, expected ${JSON.stringify(w.toString("latin1"))}`);
  }
}

console.log(`eio_payload_check: ${checked} checked, ${failures} disagreements`);
process.exit(failures ? 1 : 0);
