// SPDX-License-Identifier: MIT
// sio-server: --recovery 5000
// socket.io-client 4.8 against the Socket.IO test application run with connection state
// recovery (--recovery MS, maxDisconnectionDuration): a client whose transport drops gets
// back its id and rooms and exactly the events it missed, in order, with socket.recovered
// true. SIO_RECOVERY=0 says the server runs without recovery: the client then reconnects
// afresh (recovered not true, a new id).
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./client4_helpers');

// Without SIO_RECOVERY (a run by hand) the header's --recovery is assumed.
const RECOVERY = process.env.SIO_RECOVERY !== '0';

function recording(socket, events) {
  const got = [];
  for (const event of events) {
    socket.on(event, (...args) => got.push([event, ...args]));
  }
  return got;
}

for (const t of H.TRANSPORTS) {
  describe(`recovery (${t.name})`, () => {
    it('a dropped transport is recovered with exactly the missed events, in order', async () => {
      const opts = { ...t.opts, reconnection: true, reconnectionDelay: 500,
                     reconnectionDelayMax: 500, randomizationFactor: 0 };
      const [a] = await H.connected('/', opts);
      const [b] = await H.connected('/', t.opts);
      const room = `recover-${Date.now()}-${Math.random()}`;
      assert.equal(await a.emitWithAck('join', room), 'joined');
      const firstId = a.id;
      const got = recording(a, ['room-message', 'all-message']);
      const dropped = H.once(a, 'disconnect');
      a.io.engine.close();
      await dropped;
      // While a is away: one event to its room, one to everyone; the ack makes sure the
      // server has handled both before a comes back.
      b.emit('to-room', room, 'missed-1');
      b.emit('to-all', 'missed-2');
      assert.equal(await b.emitWithAck('message-with-ack', 'sync'), 'sync');
      await H.once(a, 'connect', 'the reconnection');
      if (!RECOVERY) {
        assert.notEqual(a.recovered, true);
        assert.notEqual(a.id, firstId);
        a.close();
        b.close();
        return;
      }
      assert.equal(a.recovered, true);
      assert.equal(a.id, firstId);
      // The missed events came before the CONNECT reply; each has its offset as an extra
      // last argument (a string), as Socket.IO sends them.
      assert.deepEqual(got.map((e) => e.slice(0, 2)), [['room-message', 'missed-1'],
                                                        ['all-message', 'missed-2']]);
      for (const e of got) assert.equal(typeof e[e.length - 1], 'string');
      // The room membership came back too.
      const again = H.once(a, 'room-message');
      b.emit('to-room', room, 'live');
      assert.equal((await again)[0], 'live');
      a.close();
      b.close();
    });

    it('a server-side disconnect is final: no recovery afterwards', async () => {
      const [a] = await H.connected('/', t.opts);
      const pid = a._pid;
      a.emit('server-disconnect');
      await H.once(a, 'disconnect');
      // A new client presenting the old pid is connected afresh.
      const [c] = await H.connected('/', { ...t.opts, auth: { pid, offset: a._lastOffset } });
      assert.notEqual(c.recovered, true);
      assert.notEqual(c.id, a.id);
      c.close();
      a.close();
    });
  });
}
