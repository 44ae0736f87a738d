// SPDX-License-Identifier: MIT
// socket.io-client 4.8 against the Socket.IO test application: events both ways, binary
// attachments, acknowledgements from the server and to the server (with its timeout).
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./client4_helpers');

function emitAck(socket, ...args) {
  return H.within(new Promise((resolve) => socket.emit(...args, (...answer) => resolve(answer))),
                  H.WAIT_MS, `the ack of ${args[0]}`);
}

for (const t of H.TRANSPORTS) {
  describe(`events (${t.name})`, () => {
    it('echoes every argument of "message" as "message-back"', async () => {
      const [socket] = await H.connected('/', t.opts);
      const back = H.once(socket, 'message-back');
      socket.emit('message', 1, 'two', { three: [3, null, true] }, 'é€😀');
      assert.deepEqual(await back, [1, 'two', { three: [3, null, true] }, 'é€😀']);
      socket.close();
    });

    it('echoes binary attachments, nested ones included', async () => {
      const [socket] = await H.connected('/custom', t.opts);
      const back = H.once(socket, 'message-back');
      socket.emit('message', Buffer.from([1, 2, 3]), { nested: Buffer.from('xyz'), n: 7 });
      const [first, second] = await back;
      assert.deepEqual(Buffer.from(first), Buffer.from([1, 2, 3]));
      assert.deepEqual(Buffer.from(second.nested), Buffer.from('xyz'));
      assert.equal(second.n, 7);
      socket.close();
    });

    it('acks "message-with-ack" with all its arguments, binary included', async () => {
      const [socket] = await H.connected('/', t.opts);
      assert.deepEqual(await emitAck(socket, 'message-with-ack', 1, 'a', { b: 2 }), [1, 'a', { b: 2 }]);
      const [bin, text] = await emitAck(socket, 'message-with-ack', Buffer.from([9, 8]), 'x');
      assert.deepEqual(Buffer.from(bin), Buffer.from([9, 8]));
      assert.equal(text, 'x');
      assert.deepEqual(await socket.emitWithAck('message-with-ack', 'promise'), 'promise');
      socket.close();
    });

    it('emit-with-ack: the server waits for the client\'s ack and passes the answer on', async () => {
      const [socket] = await H.connected('/', t.opts);
      socket.on('need-ack', (n, ack) => ack(n + 1));
      assert.deepEqual(await emitAck(socket, 'emit-with-ack'), [43]);
      socket.close();
    });

    it('emit-with-ack: a client that never acks gets "timeout" after about 1 s', async () => {
      const [socket] = await H.connected('/', t.opts);
      let asked = 0;
      socket.on('need-ack', (n) => { asked = n; });  // no ack
      const started = Date.now();
      assert.deepEqual(await emitAck(socket, 'emit-with-ack'), ['timeout']);
      const elapsed = Date.now() - started;
      assert.equal(asked, 42);
      assert.ok(elapsed >= 900 && elapsed < 3000, `answered after ${elapsed} ms`);
      socket.close();
    });

    it('an event without a server handler gets no ack (client-side timeout)', async () => {
      const [socket] = await H.connected('/', t.opts);
      await assert.rejects(socket.timeout(300).emitWithAck('no-such-event', 1));
      socket.close();
    });
  });
}
