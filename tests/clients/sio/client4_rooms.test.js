// SPDX-License-Identifier: MIT
// socket.io-client 4.8 against the Socket.IO test application: rooms (join, leave, emit to a
// room except the sender), emits to the whole namespace, and namespaces keeping their rooms
// apart.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./client4_helpers');

const QUIET_MS = 300;

for (const t of H.TRANSPORTS) {
  describe(`rooms (${t.name})`, () => {
    it('join/leave ack, to-room reaches the room except the sender', async () => {
      const [a] = await H.connected('/', t.opts);
      const [b] = await H.connected('/', t.opts);
      const [c] = await H.connected('/', t.opts);
      const room = `room-${Date.now()}-${Math.random()}`;
      assert.equal(await a.emitWithAck('join', room), 'joined');
      assert.equal(await b.emitWithAck('join', room), 'joined');
      const atA = H.once(a, 'room-message');
      const bQuiet = H.arrives(b, 'room-message', QUIET_MS);
      const cQuiet = H.arrives(c, 'room-message', QUIET_MS);
      b.emit('to-room', room, 'hello', Buffer.from([7]));
      const [text, bin] = await atA;
      assert.equal(text, 'hello');
      assert.deepEqual(Buffer.from(bin), Buffer.from([7]));
      assert.equal(await bQuiet, false, 'the sender got its own room message');
      assert.equal(await cQuiet, false, 'a socket outside the room got the room message');
      // After leaving, a no longer receives the room's messages.
      assert.equal(await a.emitWithAck('leave', room), 'left');
      const aQuiet = H.arrives(a, 'room-message', QUIET_MS);
      c.emit('to-room', room, 'after leave');
      const [atB] = await H.once(b, 'room-message');
      assert.equal(atB, 'after leave');
      assert.equal(await aQuiet, false, 'a socket that left still got the room message');
      for (const s of [a, b, c]) s.close();
    });

    it('a socket id is a room: to-room with an id reaches that socket', async () => {
      const [a] = await H.connected('/', t.opts);
      const [b] = await H.connected('/', t.opts);
      const atA = H.once(a, 'room-message');
      b.emit('to-room', a.id, 'direct');
      assert.deepEqual(await atA, ['direct']);
      a.close();
      b.close();
    });

    it('to-all reaches every socket of the namespace, the sender included, and no other', async () => {
      const [a] = await H.connected('/', t.opts);
      const [b] = await H.connected('/', t.opts);
      const [other] = await H.connected('/custom', t.opts);
      const atA = H.once(a, 'all-message');
      const atB = H.once(b, 'all-message');
      const otherQuiet = H.arrives(other, 'all-message', QUIET_MS);
      a.emit('to-all', 'everyone', 2);
      assert.deepEqual(await atA, ['everyone', 2]);
      assert.deepEqual(await atB, ['everyone', 2]);
      assert.equal(await otherQuiet, false, 'another namespace got the message');
      for (const s of [a, b, other]) s.close();
    });

    it('rooms of one namespace are not rooms of another', async () => {
      const [a] = await H.connected('/custom', t.opts);
      const [b] = await H.connected('/', t.opts);
      const room = `shared-${Date.now()}`;
      assert.equal(await a.emitWithAck('join', room), 'joined');
      const aQuiet = H.arrives(a, 'room-message', QUIET_MS);
      b.emit('to-room', room, 'wrong namespace');
      assert.equal(await aQuiet, false);
      a.close();
      b.close();
    });
  });
}
