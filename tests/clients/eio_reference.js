// SPDX-License-Identifier: MIT
// The Engine.IO echo application on Node's reference server (engine.io 6.6, the one
// socket.io 4.8 uses): every message packet goes back to the session that sent it, text as
// text and binary as binary. tests/integration/eio_echo.c is the same application on eddy's
// Engine.IO layer; tests run their scripted sessions against both (differential tests).
//
// Usage: node eio_reference.js [--host H] [--port P] [--ping-interval MS]
//          [--ping-timeout MS] [--upgrade-timeout MS] [--max-payload BYTES]
//          [--no-polling]
// Both Engine.IO versions are accepted (allowEIO3), on the path /socket.io/, HTTP
// compression off (eddy does not compress polling responses). Prints "listening <port>"
// once it accepts connections, and "open <sid>", "close <sid> <reason>" per session.
'use strict';
const http = require('http');
const { Server } = require('engine.io');

const opts = { host: '127.0.0.1', port: 3000, pingInterval: 25000, pingTimeout: 20000,
               upgradeTimeout: 10000, maxPayload: 1e6, polling: true };
const names = { '--host': 'host', '--port': 'port', '--ping-interval': 'pingInterval',
                '--ping-timeout': 'pingTimeout', '--upgrade-timeout': 'upgradeTimeout',
                '--max-payload': 'maxPayload' };
for (let i = 2; i < process.argv.length; i += 2) {
  if (process.argv[i] === '--no-polling') {
    opts.polling = false;
    i--;
    continue;
  }
  const key = names[process.argv[i]];
  if (!key || i + 1 >= process.argv.length) {
    console.error(`usage: ${process.argv[1]} [--host H] [--port P] [--ping-interval MS] ` +
                  '[--ping-timeout MS] [--upgrade-timeout MS] [--max-payload BYTES] ' +
                  '[--no-polling]');
    process.exit(2);
  }
  opts[key] = key === 'host' ? process.argv[i + 1] : Number(process.argv[i + 1]);
}

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const engine = new Server({
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  upgradeTimeout: opts.upgradeTimeout,
  maxHttpBufferSize: opts.maxPayload,
  transports: opts.polling ? ['polling', 'websocket'] : ['websocket'],
  allowEIO3: true,
  httpCompression: false,
});
engine.attach(httpServer, { path: '/socket.io/' });
engine.on('connection', (socket) => {
  console.log(`open ${socket.id}`);
  socket.on('message', (data) => socket.send(data));
  socket.on('close', (reason) => console.log(`close ${socket.id} ${reason}`));
});
httpServer.listen(opts.port, opts.host, () => {
  console.log(`listening ${httpServer.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
