// SPDX-License-Identifier: MIT
// Client-side cost of Node's ws client: the same exchange as eddy_client.c (MESSAGES of
// SIZE bytes, WINDOW in flight, binary), CPU per message from process.cpuUsage().
// Usage: node ws_client.js URL [MESSAGES [SIZE [WINDOW]]]
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '../../tests/clients/node_modules/ws'));

const [url, total = 200000, size = 20, window = 1] = [process.argv[2], ...process.argv.slice(3).map(Number)];
const payload = Buffer.alloc(size, 'x');
const ws = new WebSocket(url, { perMessageDeflate: false });
let sent = 0, received = 0, cpu0, t0;
ws.on('open', () => {
  cpu0 = process.cpuUsage();
  t0 = process.hrtime.bigint();
  for (; sent < Math.min(window, total); sent++) ws.send(payload, { binary: true });
});
ws.on('message', () => {
  if (++received === total) {
    const cpu = process.cpuUsage(cpu0);
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(`node-ws ${total} messages of ${size} bytes: ` +
      `${((cpu.user + cpu.system) / total).toFixed(2)} us CPU per message, ` +
      `${(total / wall).toFixed(0)} messages/s`);
    ws.terminate();
    return;
  }
  if (sent < total) { sent++; ws.send(payload, { binary: true }); }
});
ws.on('error', (e) => { console.error(`node-ws: ${e.message}`); process.exit(1); });
