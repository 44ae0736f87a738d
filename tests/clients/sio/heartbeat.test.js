// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 300 --ping-timeout 200 --connect-timeout 1000
// The Engine.IO heartbeat itself, with upstream's short pingInterval/pingTimeout so that a
// case sees several periods within a second: v4 (the server pings, a missing pong ends the
// session; cases of socketio/engine.io-protocol's test-suite), v3 on a plain WebSocket (the
// client pings, the server answers and ends the session after pingInterval + pingTimeout of
// silence) and socket.io-client 2.x kept alive by its own pings. The other suites run with a
// long pingTimeout, so that a late pong on a loaded machine fails only the cases here.
'use strict';
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const io = require('socket.io-client-v2');
const H = require('./helpers');

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;

describe('Engine.IO heartbeat', () => {
  it('sends ping packets on HTTP long-polling and takes pongs', async () => {
    const sid = await H.openPolling();
    for (let i = 0; i < 3; i++) {
      const polled = await H.poll(sid);
      assert.deepEqual([polled.status, polled.body], [200, '2']);
      const pushed = await H.post(sid, '3');
      assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    }
  });

  // Without a pong, the held GET ends with a close packet at pingInterval + pingTimeout and
  // the sid is unknown afterwards.
  it('closes the session upon ping timeout on HTTP long-polling', async () => {
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

  it('sends ping packets on WebSocket and takes pongs', async () => {
    const [peer] = await H.openWs();
    for (let i = 0; i < 3; i++) {
      assert.equal(await peer.next(), '2');
      peer.send('3');
    }
    peer.close();
  });

  it('closes the session upon ping timeout on WebSocket', async () => {
    const start = Date.now();
    const [peer] = await H.openWs();
    assert.equal(await peer.next(), '2');
    assert.equal(await peer.closedByServer(), 1005);
    assert.ok(Date.now() - start >= PING_INTERVAL + PING_TIMEOUT - 50, `closed after ${Date.now() - start} ms`);
  });
});
// An EIO3 WebSocket session past its open packet, implicit `40` and auth event; with ping, it
// pings every 100 ms and drops the answers.
async function openEio3({ ping = true } = {}) {
  const peer = new H.Peer(H.eioUrl('EIO=3&transport=websocket', true));
  const [open, connect, auth] = await peer.take(3);
  assert.equal(open[0], '0');
  assert.equal(connect, '40');
  assert.equal(auth, '42["auth",{}]');
  if (ping) {
    const timer = setInterval(() => { if (!peer.closed) peer.send('2'); }, 100);
    peer.ws.on('close', () => clearInterval(timer));
    const push = peer.queue.push.bind(peer.queue);
    peer.queue.push = (msg) => (msg === '3' ? peer.queue.length : push(msg));
  }
  return peer;
}

describe('Engine.IO v3 heartbeat on a plain WebSocket', () => {
  it('closes after pingInterval + pingTimeout without a client ping, and never pings', async () => {
    const start = Date.now();
    const peer = await openEio3({ ping: false });
    assert.equal(await peer.closedByServer(), 1005);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 50 && elapsed < 2500, `closed after ${elapsed} ms`);
  });

  it('keeps a pinging client beyond pingInterval + pingTimeout', async () => {
    const peer = await openEio3();
    await peer.quiet(2 * (PING_INTERVAL + PING_TIMEOUT));
    peer.send('42["message","alive"]');
    assert.equal(await peer.next(), '42["message-back","alive"]');
    peer.close();
  });
});

const clients = [];
after(() => { for (const c of clients) c.close(); });

function once(emitter, event, what = event) {
  return H.within(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
                  H.WAIT_MS, what);
}

for (const [mode, opts] of [['default transports (polling, then upgrade)', {}],
                            ['WebSocket only', { transports: ['websocket'] }]]) {
  describe(`socket.io-client 2.x heartbeat, ${mode}`, () => {
    it('keeps the session across several heartbeats', async () => {
      const socket = io(H.URL, { forceNew: true, reconnection: false, ...opts });
      clients.push(socket);
      await once(socket, 'auth');
      if (socket.io.engine.transport.name !== 'websocket') {
        await once(socket.io.engine, 'upgrade');
      }
      assert.equal(socket.io.engine.transport.name, 'websocket');
      const closes = [];
      socket.on('disconnect', (reason) => closes.push(reason));
      await H.sleep(1200);  // more than two pingInterval + pingTimeout periods
      assert.deepEqual(closes, []);
      const answer = await H.within(new Promise((resolve) =>
        socket.emit('message-with-ack', 'ok', (...args) => resolve(args))), H.WAIT_MS, 'the ack');
      assert.deepEqual(answer, ['ok']);
    });
  });
}
