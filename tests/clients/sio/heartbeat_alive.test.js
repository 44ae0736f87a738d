// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 300 --ping-timeout 1000 --connect-timeout 1000
// The Engine.IO heartbeat keeps answering peers alive: v4 pongs are taken (the server pings
// every pingInterval), a v3 client's pings keep its session beyond pingInterval +
// pingTimeout, and socket.io-client 2.x stays connected across several of its own pings.
// pingInterval is upstream's 300 ms, so that a case sees several heartbeats within a second;
// pingTimeout is 1000 ms, not 200: here the client must answer in time, and a machine loaded
// by other work held a process past 200 ms (heartbeat.test.js tests the deadlines with
// 200 ms). The cases wait out heartbeats, each on its own session: they run at the same time.
'use strict';
const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const io = require('socket.io-client-v2');
const H = require('./helpers');

const PING_INTERVAL = 300;
const PING_TIMEOUT = 1000;

// An EIO3 WebSocket session past its open packet, implicit `40` and auth event, pinging
// every 100 ms and dropping the answers.
async function openEio3() {
  const peer = new H.Peer(H.eioUrl('EIO=3&transport=websocket', true));
  const [open, connect, auth] = await peer.take(3);
  assert.equal(open[0], '0');
  assert.equal(connect, '40');
  assert.equal(auth, '42["auth",{}]');
  const timer = setInterval(() => { if (!peer.closed) peer.send('2'); }, 100);
  peer.ws.on('close', () => clearInterval(timer));
  const push = peer.queue.push.bind(peer.queue);
  peer.queue.push = (msg) => (msg === '3' ? peer.queue.length : push(msg));
  return peer;
}

const clients = [];
after(() => { for (const c of clients) c.close(); });

function once(emitter, event, what = event) {
  return H.within(new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
                  H.WAIT_MS, what);
}

describe('Engine.IO heartbeat with answering peers', { concurrency: true }, () => {
  it('v4: sends ping packets on HTTP long-polling and takes pongs', async () => {
    const sid = await H.openPolling();
    for (let i = 0; i < 3; i++) {
      const polled = await H.poll(sid);
      assert.deepEqual([polled.status, polled.body], [200, '2']);
      const pushed = await H.post(sid, '3');
      assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    }
  });

  it('v4: sends ping packets on WebSocket and takes pongs', async () => {
    const [peer] = await H.openWs();
    for (let i = 0; i < 3; i++) {
      assert.equal(await peer.next(), '2');
      peer.send('3');
    }
    peer.close();
  });

  it('v3 on a plain WebSocket: keeps a pinging client beyond pingInterval + pingTimeout', async () => {
    const peer = await openEio3();
    await peer.quiet(PING_INTERVAL + PING_TIMEOUT + 300);
    peer.send('42["message","alive"]');
    assert.equal(await peer.next(), '42["message-back","alive"]');
    peer.close();
  });

  for (const [mode, opts] of [['default transports (polling, then upgrade)', {}],
                              ['WebSocket only', { transports: ['websocket'] }]]) {
    it(`socket.io-client 2.x, ${mode}: keeps the session across several heartbeats`, async () => {
      const socket = io(H.URL, { forceNew: true, reconnection: false, ...opts });
      clients.push(socket);
      await once(socket, 'auth');
      if (socket.io.engine.transport.name !== 'websocket') {
        await once(socket.io.engine, 'upgrade');
      }
      assert.equal(socket.io.engine.transport.name, 'websocket');
      const closes = [];
      socket.on('disconnect', (reason) => closes.push(reason));
      // Beyond pingInterval + pingTimeout, the server's limit without a client ping, and
      // several of the client's pings (every pingInterval).
      await H.sleep(PING_INTERVAL + PING_TIMEOUT + 300);
      assert.deepEqual(closes, []);
      const answer = await H.within(new Promise((resolve) =>
        socket.emit('message-with-ack', 'ok', (...args) => resolve(args))), H.WAIT_MS, 'the ack');
      assert.deepEqual(answer, ['ok']);
    });
  }
});
