// SPDX-License-Identifier: MIT
// Reads the C string literals of the unit tests' decode tables (tests/unit/*.c), for the
// scripts that replay those tables against the reference parsers
// (eio_payload_check.js, sio_packet_check.js).
"use strict";

// C string literal, quotes included -> bytes (the escapes the tables use).
function literalBytes(lit) {
  const out = [];
  for (let i = 1; i < lit.length - 1; i++) {
    const c = lit[i];
    if (c !== "\\") {
      out.push(c.charCodeAt(0));
      continue;
    }
    const e = lit[++i];
    if (e === "x") {
      let h = "";
      while (/[0-9a-fA-F]/.test(lit[i + 1])) h += lit[++i];
      out.push(parseInt(h, 16) & 0xff);
    } else {
      const map = { n: 10, t: 9, r: 13, '"': 34, "\\": 92, "'": 39, 0: 0 };
      if (!(e in map)) throw new Error("unhandled escape \\" + e);
      out.push(map[e]);
    }
  }
  return out;
}

// The source's `#define NAME "..."` macros: name -> bytes.
function stringMacros(source) {
  const macros = {};
  for (const m of source.matchAll(/^#define (\w+)\s+("(?:[^"\\]|\\.)*")$/gm))
    macros[m[1]] = literalBytes(m[2]);
  return macros;
}

module.exports = { literalBytes, stringMacros };
