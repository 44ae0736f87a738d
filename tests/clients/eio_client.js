// SPDX-License-Identifier: MIT
// engine.io-client 6.6.8 against an Engine.IO echo server (tests/integration/eio_echo.c or
// eio_reference.js): opens a session with the given transports, sends text and binary
// messages, and prints one JSON line per event: {"event":"open","transport":...},
// {"event":"upgrade","transport":...}, {"event":"message","data":...,"binary":...},
// {"event":"close","reason":...}. Exits 0 after `count` echoes and a clean close, 1 on a
// timeout (10 s) or an error.
//
// With --v3 the client is engine.io-client 3.5 (Engine.IO protocol 3, the one
// socket.io-client 2.x bundles).
//
// Usage: node eio_client.js <port> <transports, comma-separated> [count] [--wait-upgrade]
//          [--v3]
'use strict';
const v3 = process.argv.includes('--v3');
const Socket = v3 ? require('socket.io-client-v2/node_modules/engine.io-client')
                  : require('engine.io-client').Socket;

const [port, transportList, countArg] = process.argv.slice(2);
const count = Number(countArg || 4);
const waitUpgrade = process.argv.includes('--wait-upgrade');
const transports = transportList.split(',');
const print = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const socket = new Socket(`ws://127.0.0.1:${port}`, { path: '/socket.io/', transports });
const timer = setTimeout(() => {
  print({ event: 'timeout' });
  process.exit(1);
}, 10000);
let received = 0;
let sent = 0;

function sendNext() {
  // Alternate text (with a character outside the BMP) and binary.
  if (sent % 2 === 0) socket.send(`hello ${sent} \u{1F600}`);
  else socket.send(Buffer.from([sent, 0, 255]));
  sent++;
}

socket.on('open', () => {
  print({ event: 'open', transport: socket.transport.name });
  if (!waitUpgrade) sendNext();
});
socket.on('upgrade', (transport) => {
  print({ event: 'upgrade', transport: transport.name });
  if (waitUpgrade) sendNext();
});
socket.on('message', (data) => {
  const binary = typeof data !== 'string';
  print({ event: 'message', binary, data: binary ? Array.from(Buffer.from(data)) : data,
          transport: socket.transport.name });
  if (++received < count) sendNext();
  else socket.close();
});
socket.on('error', (err) => {
  print({ event: 'error', message: String(err) });
  process.exit(1);
});
socket.on('close', (reason) => {
  print({ event: 'close', reason });
  clearTimeout(timer);
  process.exit(received === count ? 0 : 1);
});
