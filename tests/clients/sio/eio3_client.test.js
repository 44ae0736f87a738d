// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 300 --ping-timeout 5000
// socket.io-client 2.x (Engine.IO v3, Socket.IO protocol v4; npm socket.io-client@2.5.0 as
// socket.io-client-v2) against the Socket.IO test application, with its default transports
// (polling, then the upgrade to WebSocket) and WebSocket only: connect, namespaces, events,
// acks both ways, binary, rooms, broadcasts, server-side disconnect, reconnection after a
// server restart. The client pings every 300 ms, so every test also proves the v3 heartbeat
// keeps the session; the long pingTimeout keeps a late pong on a loaded machine from failing
// them (heartbeat.test.js tests the heartbeat itself, with a short pingTimeout).
'use strict';
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const io = require('socket.io-client-v2');
const H = require('./helpers');

const clients = [];
after(() => { for (const c of clients) c.close(); });

function once(emitter, event, what = event) {
  return H.within(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
                  H.WAIT_MS, what);
}

// A connected client and the auth object the server emitted on connection.
async function connect(nsp = '/', opts = {}) {
  const socket = io(`${H.URL}${nsp === '/' ? '' : nsp}`,
                    { forceNew: true, reconnection: false, ...opts });
  clients.push(socket);
  const errors = [];
  socket.on('connect_error', (e) => errors.push(e));
  socket.on('error', (e) => errors.push(e));
  const [auth] = await once(socket, 'auth', `the auth event (errors: ${errors.join(', ')})`);
  assert.equal(socket.connected, true);
  socket.authSeen = auth;
  return socket;
}

function emitAck(socket, ...args) {
  return H.within(new Promise((resolve) => socket.emit(...args, (...answer) => resolve(answer))),
                  H.WAIT_MS, `the ack of ${args[0]}`);
}

async function upgraded(socket) {
  if (socket.io.engine.transport.name !== 'websocket') await once(socket.io.engine, 'upgrade');
  assert.equal(socket.io.engine.transport.name, 'websocket');
}

for (const [mode, opts] of [['default transports (polling, then upgrade)', {}],
                            ['WebSocket only', { transports: ['websocket'] }]]) {
  describe(`socket.io-client 2.x, ${mode}`, () => {
    it('connects to "/" and to "/custom", with the query as the namespace auth', async () => {
      const main = await connect('/', opts);
      assert.deepEqual(main.authSeen, {});
      const custom = await connect('/custom', { ...opts, query: { token: 'abc' } });
      assert.deepEqual(custom.authSeen, { token: 'abc' });
      assert.notEqual(main.id, custom.id);
    });

    it('emits events with all arguments back', async () => {
      const socket = await connect('/', opts);
      const back = once(socket, 'message-back');
      socket.emit('message', 1, '2', { 3: [true] }, null);
      assert.deepEqual(await back, [1, '2', { 3: [true] }, null]);
    });

    it('gets acks for its events', async () => {
      const socket = await connect('/', opts);
      assert.deepEqual(await emitAck(socket, 'message-with-ack', 'a', { b: 1 }), ['a', { b: 1 }]);
    });

    it('acks the server\'s emit', async () => {
      const socket = await connect('/', opts);
      socket.on('need-ack', (n, ack) => ack(n + 1));
      assert.deepEqual(await emitAck(socket, 'emit-with-ack'), [43]);
    });

    it('sends and receives binary, also with acks', async () => {
      const socket = await connect('/', opts);
      const back = once(socket, 'message-back');
      socket.emit('message', Buffer.from([1, 2, 3]), { nested: Buffer.from([4]) }, 'text');
      const [buf, obj, text] = await back;
      assert.deepEqual(Buffer.from(buf), Buffer.from([1, 2, 3]));
      assert.deepEqual(Buffer.from(obj.nested), Buffer.from([4]));
      assert.equal(text, 'text');
      const [acked] = await emitAck(socket, 'message-with-ack', Buffer.from([9, 8, 7]));
      assert.deepEqual(Buffer.from(acked), Buffer.from([9, 8, 7]));
    });

    it('joins and leaves rooms; to-room reaches the other members only', async () => {
      const room = `v2-${process.pid}-${Date.now()}-${opts.transports ? 'ws' : 'poll'}`;
      const [a, b, c] = await Promise.all([connect('/', opts), connect('/', opts), connect('/', opts)]);
      for (const s of [a, b, c]) assert.deepEqual(await emitAck(s, 'join', room), ['joined']);
      assert.deepEqual(await emitAck(c, 'leave', room), ['left']);
      const got = { a: [], c: [] };
      a.on('room-message', (...args) => got.a.push(args));
      c.on('room-message', (...args) => got.c.push(args));
      const atB = once(b, 'room-message');
      a.emit('to-room', room, 'hello', Buffer.from([5]));
      const [text, buf] = await atB;
      assert.equal(text, 'hello');
      assert.deepEqual(Buffer.from(buf), Buffer.from([5]));
      // Round trips after the broadcast: anything for a or c would have arrived before.
      await emitAck(a, 'message-with-ack');
      await emitAck(c, 'message-with-ack');
      assert.deepEqual(got, { a: [], c: [] });
    });

    it('receives to-all on its namespace', async () => {
      const [a, b] = await Promise.all([connect('/custom', opts), connect('/custom', opts)]);
      const atA = once(a, 'all-message');
      const atB = once(b, 'all-message');
      a.emit('to-all', { x: 1 });
      assert.deepEqual(await atA, [{ x: 1 }]);
      assert.deepEqual(await atB, [{ x: 1 }]);
    });

    it('is disconnected by server-disconnect with "io server disconnect"', async () => {
      const socket = await connect('/', opts);
      const gone = once(socket, 'disconnect');
      socket.emit('server-disconnect');
      assert.deepEqual(await gone, ['io server disconnect']);
      assert.equal(socket.connected, false);
    });

  });
}

describe('socket.io-client 2.x across a server restart', () => {
  it('reconnects to a server restarted on the same port and is connected again', async () => {
    let server = await H.startServer();
    const socket = io(server.url, { forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
    clients.push(socket);
    try {
      await once(socket, 'auth');
      await upgraded(socket);  // on WebSocket, a dead server is a 'transport close'
      const reasons = [];
      socket.on('disconnect', (reason) => reasons.push(reason));
      const back = once(socket, 'reconnect', 'the reconnection');
      const authAgain = once(socket, 'auth', 'the auth event after the restart');
      await server.stop();
      server = await H.startServer(server.port);
      await back;
      await authAgain;
      assert.deepEqual(reasons, ['transport close']);
      assert.deepEqual(await emitAck(socket, 'message-with-ack', 'again'), ['again']);
    } finally {
      socket.close();
      await server.stop();
    }
  });
});
