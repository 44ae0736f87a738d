// SPDX-License-Identifier: MIT
// socket.io-client 2.5 (Socket.IO v4 over Engine.IO 3) and a plain WebSocket speaking
// laravel-swoole's frames against the Socket.IO test application: the implicit connect to
// /, a namespace's query string as its auth, events, acks, binary.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const io = require('socket.io-client-v2');
const WebSocket = require('ws');
const H = require('./client4_helpers');

function v2(nsp, transports) {
  return io(H.URL + nsp, { transports, reconnection: false, forceNew: true });
}

for (const [name, transports] of [['default transports', ['polling', 'websocket']],
                                   ['websocket only', ['websocket']]]) {
  describe(`socket.io-client 2.x (${name})`, () => {
    it('is connected to / without asking and gets auth {}', async () => {
      const socket = v2('/', transports);
      const [auth] = await H.once(socket, 'auth');
      assert.deepEqual(auth, {});
      socket.close();
    });

    it('sends a namespace\'s query string as its auth', async () => {
      const socket = v2('/custom?token=abc&n=1', transports);
      const [auth] = await H.once(socket, 'auth');
      assert.deepEqual(auth, { token: 'abc', n: '1' });
      socket.close();
    });

    it('echoes events and answers acks', async () => {
      const socket = v2('/', transports);
      await H.once(socket, 'connect');
      const back = H.once(socket, 'message-back');
      socket.emit('message', 1, 'two', { three: 3 });
      assert.deepEqual(await back, [1, 'two', { three: 3 }]);
      const answer = await H.within(new Promise((resolve) =>
        socket.emit('message-with-ack', 'a', 2, (...args) => resolve(args))), H.WAIT_MS, 'ack');
      assert.deepEqual(answer, ['a', 2]);
      socket.close();
    });
  });
}

describe('socket.io-client 2.x binary (websocket only)', () => {
  it('echoes binary attachments with the 0x04 frames of Engine.IO 3', async () => {
    const socket = v2('/', ['websocket']);
    await H.once(socket, 'connect');
    const back = H.once(socket, 'message-back');
    socket.emit('message', Buffer.from([1, 2, 3]), 'x');
    const [bin, text] = await back;
    assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));
    assert.equal(text, 'x');
    socket.close();
  });
});

// Node's XHR makes engine.io-client 3 send binary as base64 (`b4...`); the text packet of a
// binary event goes in one POST, its attachments in the next one (the first POST is still in
// flight when they are written). upgrade: false keeps the default transports on polling.
describe('socket.io-client 2.x binary (default transports, no upgrade)', () => {
  it('echoes binary events, in order, and binary acks over long-polling', async () => {
    const socket = io(H.URL + '/', { reconnection: false, forceNew: true, upgrade: false });
    await H.once(socket, 'connect');
    assert.equal(socket.io.engine.transport.name, 'polling');
    const got = [];
    const both = H.within(new Promise((resolve) => socket.on('message-back', (...args) => {
      got.push(args);
      if (got.length === 2) resolve();
    })), H.WAIT_MS, 'two message-back events');
    socket.emit('message', Buffer.from([1, 2, 3]), { nested: Buffer.from([4]) }, 'first');
    socket.emit('message', 'second', Buffer.from([5]));
    await both;
    assert.deepEqual(Buffer.from(got[0][0]), Buffer.from([1, 2, 3]));
    assert.deepEqual(Buffer.from(got[0][1].nested), Buffer.from([4]));
    assert.equal(got[0][2], 'first');
    assert.equal(got[1][0], 'second');
    assert.deepEqual(Buffer.from(got[1][1]), Buffer.from([5]));
    const acked = await H.within(new Promise((resolve) =>
      socket.emit('message-with-ack', Buffer.from([9, 8]), (...args) => resolve(args))),
    H.WAIT_MS, 'the binary ack');
    assert.deepEqual(Buffer.from(acked[0]), Buffer.from([9, 8]));
    assert.equal(socket.io.engine.transport.name, 'polling');
    socket.close();
  });
});

describe('laravel-swoole frames over a plain WebSocket (EIO=3)', () => {
  it('gets the open packet and 40, and 42["event",data] is served', async () => {
    const ws = new WebSocket(`${H.URL.replace(/^http/, 'ws')}/socket.io/?EIO=3&transport=websocket`);
    const got = [];
    let wake = () => {};
    ws.on('message', (data) => { got.push(data.toString()); wake(); });
    const until = (pred, what) => H.within(new Promise((resolve) => {
      const check = () => { if (pred()) resolve(); else wake = check; };
      check();
    }), H.WAIT_MS, what);
    await until(() => got.length >= 3, 'open, 40 and auth');
    assert.match(got[0], /^0\{"sid":"/);
    assert.equal(got[1], '40');
    assert.equal(got[2], '42["auth",{}]');
    ws.send('42["message",{"text":"hi"}]');
    await until(() => got.length >= 4, 'message-back');
    assert.equal(got[3], '42["message-back",{"text":"hi"}]');
    ws.close();
  });
});
