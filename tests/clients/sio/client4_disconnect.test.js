// SPDX-License-Identifier: MIT
// socket.io-client 4.8 against the Socket.IO test application: a disconnect from the server
// side ("io server disconnect", no reconnection) and from the client side.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./client4_helpers');

for (const t of H.TRANSPORTS) {
  describe(`disconnect (${t.name})`, () => {
    it('server-disconnect: the client sees "io server disconnect" and does not reconnect', async () => {
      const [socket] = await H.connected('/', { ...t.opts, reconnection: true,
                                                reconnectionDelay: 100, reconnectionDelayMax: 200 });
      const gone = H.once(socket, 'disconnect');
      socket.emit('server-disconnect');
      const [reason] = await gone;
      assert.equal(reason, 'io server disconnect');
      assert.equal(socket.active, false);
      assert.equal(await H.arrives(socket, 'connect', 1000), false, 'the client reconnected');
      socket.close();
    });

    it('server-disconnect of one namespace leaves the other namespace connected', async () => {
      const [root] = await H.connected('/', t.opts);
      const custom = root.io.socket('/custom');
      await H.once(custom, 'auth');
      const gone = H.once(custom, 'disconnect');
      custom.emit('server-disconnect');
      const [reason] = await gone;
      assert.equal(reason, 'io server disconnect');
      root.emit('message', 'alive');
      assert.deepEqual(await H.once(root, 'message-back'), ['alive']);
      root.close();
    });

    it('a client disconnect leaves the other clients served', async () => {
      const [a] = await H.connected('/', t.opts);
      const [b] = await H.connected('/', t.opts);
      a.disconnect();
      b.emit('message', 'after a left');
      assert.deepEqual(await H.once(b, 'message-back'), ['after a left']);
      b.close();
    });
  });
}
