// SPDX-License-Identifier: MIT
// socket.io-client 4.8 against the Socket.IO test application: connecting to namespaces,
// the auth payload, refusals, and several namespaces on one connection; with the default
// transports (polling, then the upgrade) and WebSocket only.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { Manager } = require('socket.io-client');
const H = require('./client4_helpers');

for (const t of H.TRANSPORTS) {
  describe(`connect (${t.name})`, () => {
    it('connects to / and receives its auth object back', async () => {
      const [socket, [auth]] = await H.connected('/', { ...t.opts, auth: { token: 'abc', n: 1 } });
      assert.deepEqual(auth, { token: 'abc', n: 1 });
      assert.equal(typeof socket.id, 'string');
      assert.equal(socket.id.length, 20);
      socket.close();
    });

    it('connects to /custom without auth and receives {}', async () => {
      const [socket, [auth]] = await H.connected('/custom', t.opts);
      assert.deepEqual(auth, {});
      socket.close();
    });

    it('refuses {refuse: true} on / with "refused", and the client does not retry', async () => {
      const socket = H.client('/', { ...t.opts, reconnection: true, auth: { refuse: true } });
      const [err] = await H.once(socket, 'connect_error');
      assert.equal(err.message, 'refused');
      assert.equal(socket.active, false);
      assert.equal(await H.arrives(socket, 'connect', 500), false);
      socket.close();
    });

    it('accepts {refuse: true} on /custom (only / refuses)', async () => {
      const [socket, [auth]] = await H.connected('/custom', { ...t.opts, auth: { refuse: true } });
      assert.deepEqual(auth, { refuse: true });
      socket.close();
    });

    it('refuses a namespace the server does not have with "Invalid namespace"', async () => {
      const socket = H.client('/nowhere', t.opts);
      const [err] = await H.once(socket, 'connect_error');
      assert.equal(err.message, 'Invalid namespace');
      socket.close();
    });

    it('multiplexes / and /custom on one Engine.IO connection', async () => {
      const manager = new Manager(H.URL, { ...t.opts, reconnection: false, timeout: H.WAIT_MS });
      const root = manager.socket('/', { auth: { which: 'root' } });
      const custom = manager.socket('/custom', { auth: { which: 'custom' } });
      const [[a], [b]] = await Promise.all([H.once(root, 'auth'), H.once(custom, 'auth')]);
      assert.deepEqual(a, { which: 'root' });
      assert.deepEqual(b, { which: 'custom' });
      assert.notEqual(root.id, custom.id);
      // Leaving one namespace keeps the other working on the same connection.
      custom.disconnect();
      root.emit('message', 'still here');
      const [back] = await H.once(root, 'message-back');
      assert.equal(back, 'still here');
      root.disconnect();
      manager.engine.close();
    });
  });
}
