// SPDX-License-Identifier: MIT
// Node `ws` echo server for bench/run: every message goes back with its opcode.
// Usage: node ws_echo.js PORT [HOST]. Prints one line when listening, nothing afterwards.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9502);
const host = process.argv[3] || '127.0.0.1';

// perMessageDeflate is off by default in ws 8 (as in eddy); stated here for the reader.
const wss = new WebSocketServer({ host, port, perMessageDeflate: false, backlog: 511 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.log(`ws ${require('ws/package.json').version} listening on ${host}:${port}`));
const stop = () => process.exit(0);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
