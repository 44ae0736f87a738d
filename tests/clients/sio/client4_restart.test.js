// SPDX-License-Identifier: MIT
// socket.io-client 4.8 against the Socket.IO test application across a server restart: the
// client sees the transport close, keeps trying, and is served again (a new session) by the
// restarted server on the same port. This file starts its own server from SIO_SERVER_CMD (a
// JSON array: the server's command line without --port, as
// tests/integration/test_socketio_suites.py provides it); without it the test is skipped.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const H = require('./client4_helpers');

const CMD = process.env.SIO_SERVER_CMD ? JSON.parse(process.env.SIO_SERVER_CMD) : null;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Starts the server on port; resolves with the child once it logs that it listens.
function start(port) {
  const child = spawn(CMD[0], [...CMD.slice(1), '--port', String(port)],
                      { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return H.within(new Promise((resolve, reject) => {
    const look = (chunk) => {
      out += chunk;
      if (/listening/.test(out)) resolve(child);
    };
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    child.on('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
  }), 10000, `the server to listen on ${port}`);
}

function stop(child) {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', resolve);
    child.kill('SIGTERM');
  });
}

for (const t of H.TRANSPORTS) {
  describe(`server restart (${t.name})`, { skip: CMD === null && 'no SIO_SERVER_CMD' }, () => {
    it('the client reconnects to the restarted server and is served', async () => {
      const port = await freePort();
      let server = await start(port);
      const { io } = require('socket.io-client');
      const socket = io(`http://127.0.0.1:${port}/`, {
        ...t.opts, forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 400,
      });
      try {
        await H.once(socket, 'auth', 'the first connection');
        const firstId = socket.id;
        const lost = H.once(socket, 'disconnect', 'the disconnect at the restart');
        await stop(server);
        const [reason] = await lost;
        assert.ok(['transport close', 'transport error', 'ping timeout'].includes(reason), reason);
        assert.equal(socket.active, true, 'the client gave up');
        server = await start(port);
        await H.once(socket, 'auth', 'the reconnection');
        assert.notEqual(socket.id, firstId);
        const back = H.once(socket, 'message-back');
        socket.emit('message', 'after restart');
        assert.equal((await back)[0], 'after restart');
      } finally {
        socket.close();
        await stop(server);
      }
    });
  });
}
