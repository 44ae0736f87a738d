// SPDX-License-Identifier: MIT
// A Node `ws` client for the integration tests: connects to the URL given, exchanges a
// fixed set of messages with an echo server and prints one JSON line with the outcome.
// Usage: node ws_client.js URL [--deflate] [--ca FILE]
'use strict';
const fs = require('fs');
const WebSocket = require('ws');

const url = process.argv[2];
const deflate = process.argv.includes('--deflate');
const caIndex = process.argv.indexOf('--ca');
const options = {
  perMessageDeflate: deflate,
  maxPayload: 4 * 1024 * 1024,
};
if (caIndex > 0) options.ca = fs.readFileSync(process.argv[caIndex + 1]);

const mib = 1024 * 1024;
const binary = Buffer.alloc(256);
for (let i = 0; i < 256; i++) binary[i] = i;
const json = JSON.stringify({ items: Array.from({ length: 5000 }, (_, i) => ({ id: i, name: `item ${i}` })) });
const cases = [
  { name: 'text', data: 'hello from node' },
  { name: 'binary', data: binary },
  { name: 'utf8', data: 'héllo wörld ✓ 😀' },
  { name: 'json', data: json },
  { name: 'text-1mib', data: 'x'.repeat(mib) },
  { name: 'binary-1mib', data: Buffer.alloc(mib, 7) },
  { name: 'empty', data: '' },
];

const ws = new WebSocket(url, options);
const results = [];
let index = 0;
const timer = setTimeout(() => finish('timeout'), 20000);

function finish(error) {
  clearTimeout(timer);
  console.log(JSON.stringify({
    ok: !error && results.every((r) => r.ok),
    error: error || null,
    extensions: ws.extensions || '',
    results,
  }));
  process.exit(0);
}

function sendNext() {
  if (index === cases.length) {
    ws.ping(Buffer.from('are you there'));
    return;
  }
  const c = cases[index];
  ws.send(c.data, { binary: Buffer.isBuffer(c.data) });
}

ws.on('open', sendNext);
ws.on('message', (data, isBinary) => {
  const c = cases[index];
  const expected = Buffer.isBuffer(c.data) ? c.data : Buffer.from(c.data, 'utf8');
  results.push({ name: c.name, ok: isBinary === Buffer.isBuffer(c.data) && expected.equals(data) });
  index++;
  sendNext();
});
ws.on('pong', (data) => {
  results.push({ name: 'ping', ok: data.toString() === 'are you there' });
  ws.close(4001, 'node done');
});
ws.on('close', (code, reason) => {
  results.push({ name: 'close', ok: code === 4001, code, reason: reason.toString() });
  finish(null);
});
ws.on('error', (err) => finish(String(err)));
