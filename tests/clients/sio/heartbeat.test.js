// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 300 --ping-timeout 200 --connect-timeout 1000
// The Engine.IO heartbeat's deadlines, with upstream's short pingInterval/pingTimeout so that
// a case sees them within a second: v4 (a missing pong ends the session; cases of
// socketio/engine.io-protocol's test-suite) and v3 on a plain WebSocket (the server ends the
// session after pingInterval + pingTimeout of silence). Load can only make these closes late,
// and the cases run at the same time, each on its own session. The cases where the client
// must answer in time (pongs taken, sessions kept alive) are in heartbeat_alive.test.js, with
// a pingTimeout five times as long. The other suites run with a long pingTimeout.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./helpers');

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;

describe('Engine.IO heartbeat deadlines', { concurrency: true }, () => {
  // Without a pong, the held GET ends with a close packet at pingInterval + pingTimeout and
  // the sid is unknown afterwards.
  it('v4: closes the session upon ping timeout on HTTP long-polling', async () => {
    const start = Date.now();
    const sid = await H.openPolling();
    const ping = await H.poll(sid);
    assert.deepEqual([ping.status, ping.body], [200, '2']);
    const held = await H.poll(sid);
    assert.deepEqual([held.status, held.body], [200, '1']);
    assert.ok(Date.now() - start >= PING_INTERVAL + PING_TIMEOUT - 50, `closed after ${Date.now() - start} ms`);
    const after = await H.poll(sid);
    assert.equal(after.status, 400);
    assert.deepEqual(JSON.parse(after.body), { code: 1, message: 'Session ID unknown' });
  });

  it('v4: closes the session upon ping timeout on WebSocket', async () => {
    const start = Date.now();
    const [peer] = await H.openWs();
    assert.equal(await peer.next(), '2');
    assert.equal(await peer.closedByServer(), 1005);
    assert.ok(Date.now() - start >= PING_INTERVAL + PING_TIMEOUT - 50, `closed after ${Date.now() - start} ms`);
  });

  it('v3 on a plain WebSocket: closes after pingInterval + pingTimeout without a client ping, and never pings', async () => {
    const start = Date.now();
    const peer = new H.Peer(H.eioUrl('EIO=3&transport=websocket', true));
    const [open, connect, auth] = await peer.take(3);
    assert.equal(open[0], '0');
    assert.equal(connect, '40');
    assert.equal(auth, '42["auth",{}]');
    assert.equal(await peer.closedByServer(), 1005);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 50 && elapsed < 2500, `closed after ${elapsed} ms`);
  });
});
