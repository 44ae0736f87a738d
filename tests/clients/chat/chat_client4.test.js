// SPDX-License-Identifier: MIT
// examples/chat with socket.io-client 4.8 (tests/integration/test_chat.py starts the chat and
// runs this file with CHAT_URL=http://127.0.0.1:<port>): login answered with emit and ack,
// one user on two tabs is present once, history on join, private messages to every tab,
// presence when the last tab disconnects. Each case runs on the default transports
// (long-polling, then the upgrade) and on WebSocket only; every wait is bounded.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { io } = require('socket.io-client');

const URL = process.env.CHAT_URL || 'http://127.0.0.1:9501';
const WAIT_MS = 5000;

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function next(socket, event, accept = () => true) {
  return within(new Promise((resolve) => {
    const on = (data) => {
      if (!accept(data)) return;
      socket.off(event, on);
      resolve(data);
    };
    socket.on(event, on);
  }), `${event} on ${socket.id}`);
}

async function tab(name, transports) {
  const socket = io(URL, { forceNew: true, reconnection: false, transports });
  await within(new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  }), 'connect');
  const answer = await within(socket.emitWithAck('login', { name }), 'login ack');
  assert.deepEqual(answer, { code: 200, message: 'success', user: name });
  return socket;
}

for (const transports of [undefined, ['websocket']]) {
  const label = transports ? 'websocket' : 'default transports';
  const room = transports ? 'ws-room' : 'polling-room';

  test(`two users, three tabs (${label})`, async () => {
    const emitted = [];
    const alice1 = await tab('alice', transports);
    alice1.on('login', (a) => emitted.push(a)); // the seed 004 style answer, also emitted
    const alice2 = await tab('alice', transports);
    const bob = await tab('bob', transports);
    try {
      let joined = await within(alice1.emitWithAck('join', { room }), 'join');
      assert.deepEqual(joined.users, ['alice']);
      for (const text of ['one', 'two']) {
        const said = next(alice1, 'message', (m) => m.text === text);
        assert.deepEqual(await within(alice1.emitWithAck('say', { room, text }), 'say'),
                         { code: 200 });
        assert.equal((await said).room, room);
      }
      joined = await within(alice2.emitWithAck('join', { room }), 'join');
      assert.deepEqual(joined.users, ['alice']);

      const seen = next(alice1, 'presence', (p) => p.user === 'bob');
      joined = await within(bob.emitWithAck('join', { room }), 'join');
      assert.deepEqual(joined.users.slice().sort(), ['alice', 'bob']);
      assert.deepEqual(joined.history.map((m) => [m.seq, m.from, m.text]),
                       [[1, 'alice', 'one'], [2, 'alice', 'two']]);
      assert.deepEqual((await seen).users.slice().sort(), ['alice', 'bob']);

      const whispers = [alice1, alice2, bob].map((s) => next(s, 'private'));
      await within(bob.emitWithAck('tell', { to: 'alice', text: 'psst' }), 'tell');
      for (const w of await Promise.all(whispers))
        assert.deepEqual([w.from, w.to, w.text], ['bob', 'alice', 'psst']);

      const gone = next(bob, 'presence', (p) => p.user === 'alice');
      alice2.disconnect();
      alice1.disconnect();
      assert.deepEqual(await gone, { room, user: 'alice', joined: false, users: ['bob'] });
      const rooms = await within(bob.emitWithAck('rooms', {}), 'rooms');
      assert.deepEqual(rooms.rooms.find((r) => r.name === room), { name: room, users: 1, seq: 2 });
      assert.equal(emitted.length, 0); // answers came before the listener, none after
    } finally {
      for (const s of [alice1, alice2, bob]) s.disconnect();
    }
  });
}
