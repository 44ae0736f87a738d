// SPDX-License-Identifier: MIT
// The Socket.IO test application (issue: real-time layer) on Node's reference server,
// socket.io 4.8: examples/socketio implements the same application in C. Tests run their
// scripted sessions against both (differential tests), and bench/ measures both.
//
// Usage: node sio_reference.js [--host H] [--port P] [--ping-interval MS]
//          [--ping-timeout MS] [--connect-timeout MS] [--recovery MS]
// --recovery MS turns on connection state recovery with that maxDisconnectionDuration
// (default off). Once it accepts connections it logs "listening on <host>:<port>" on stderr,
// the line eddy's examples log, so one harness pattern starts either server.
// bench/scaleout/sio_redis.js requires this file to run the same application with the Redis
// adapter.
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const defaults = { host: '127.0.0.1', port: 3000, pingInterval: 25000, pingTimeout: 20000,
                   connectTimeout: 45000, recovery: 0 };
const names = { '--host': 'host', '--port': 'port', '--ping-interval': 'pingInterval',
                '--ping-timeout': 'pingTimeout', '--connect-timeout': 'connectTimeout',
                '--recovery': 'recovery' };

// The options above from argv; `extra` maps more flags to keys (string values) for a script
// reusing this application (bench/scaleout/sio_redis.js: --redis).
function parseArgs(argv, extra = {}) {
  const opts = { ...defaults };
  const all = { ...names, ...extra };
  for (let i = 2; i < argv.length; i += 2) {
    const key = all[argv[i]];
    if (!key || i + 1 >= argv.length) {
      const more = Object.keys(extra).map((flag) => ` [${flag} VALUE]`).join('');
      console.error(`usage: ${argv[1]} [--host H] [--port P] [--ping-interval MS] ` +
                    `[--ping-timeout MS] [--connect-timeout MS] [--recovery MS]${more}`);
      process.exit(2);
    }
    opts[key] = key === 'host' || !(key in defaults) ? argv[i + 1] : Number(argv[i + 1]);
  }
  return opts;
}

function app(nsp) {
  nsp.on('connection', (socket) => {
    socket.emit('auth', socket.handshake.auth);
    socket.on('message', (...args) => socket.emit('message-back', ...args));
    socket.on('message-with-ack', (...args) => {
      const ack = args.pop();
      if (typeof ack === 'function') ack(...args);
    });
    socket.on('join', (room, ack) => {
      socket.join(room);
      if (typeof ack === 'function') ack('joined');
    });
    socket.on('leave', (room, ack) => {
      socket.leave(room);
      if (typeof ack === 'function') ack('left');
    });
    socket.on('to-room', (room, ...args) => socket.to(room).emit('room-message', ...args));
    socket.on('to-all', (...args) => nsp.emit('all-message', ...args));
    socket.on('server-disconnect', () => socket.disconnect());
    socket.on('emit-with-ack', (ack) => {
      socket.timeout(1000).emit('need-ack', 42, (err, answer) => {
        if (typeof ack === 'function') ack(err ? 'timeout' : answer);
      });
    });
  });
}

// The application on a new socket.io Server; serverOptions are added to its options (an
// adapter, say). Returns { httpServer, io }, not yet listening.
function createServer(opts, serverOptions = {}) {
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    pingInterval: opts.pingInterval,
    pingTimeout: opts.pingTimeout,
    connectTimeout: opts.connectTimeout,
    allowEIO3: true,
    connectionStateRecovery: opts.recovery > 0
      ? { maxDisconnectionDuration: opts.recovery, skipMiddlewares: true } : undefined,
    ...serverOptions,
  });
  io.of('/').use((socket, next) => {
    const auth = socket.handshake.auth;
    if (auth && auth.refuse === true) next(new Error('refused'));
    else next();
  });
  app(io.of('/'));
  app(io.of('/custom'));
  return { httpServer, io };
}

// Listens on opts.host:opts.port, then logs the line the harnesses wait for.
function listen(httpServer, opts) {
  httpServer.listen(opts.port, opts.host, () => {
    const { address, port } = httpServer.address();
    console.error(`socket.io ${require('socket.io/package.json').version} listening on ${address}:${port}`);
  });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
}

module.exports = { parseArgs, createServer, listen };

if (require.main === module) {
  const opts = parseArgs(process.argv);
  listen(createServer(opts).httpServer, opts);
}
