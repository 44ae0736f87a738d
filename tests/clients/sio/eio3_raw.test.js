// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 300 --ping-timeout 5000 --connect-timeout 1000
// Engine.IO v3 at the wire level, as a plain WebSocket client speaks it: the laravel-swoole
// style of seed 004 (a browser WebSocket sending `encodeMessage(event, data)` frames, i.e.
// `42` + JSON.stringify([event, data]), reading answers with
// `JSON.parse(str.substring(2))[1]`), with the client keeping the session alive by pinging
// (v3: the client pings, the server answers, and closes after pingInterval + pingTimeout of
// silence; those timings are tested in heartbeat.test.js, with a short pingTimeout).
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./helpers');

const PING_INTERVAL = 300;
const PING_TIMEOUT = 5000;
const EIO3_WS = 'EIO=3&transport=websocket';

// seed 004's client helpers (laravel-swoole's wire format)
function encodeMessage(event, data) {
  return '42' + JSON.stringify([event, data]);
}
function decodeMessage(str) {
  return JSON.parse(str.substring(2))[1] || [];
}

// An EIO3 WebSocket session past its open packet, implicit `40` and auth event; it pings
// every 100 ms (answers dropped) unless ping is false.
async function openEio3({ ping = true } = {}) {
  const peer = new H.Peer(H.eioUrl(EIO3_WS, true));
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
  peer.open = JSON.parse(open.slice(1));
  return peer;
}

describe('Engine.IO v3 on a plain WebSocket', () => {
  it('opens with the v3 open packet and connects "/" implicitly', async () => {
    const peer = await openEio3({ ping: false });
    assert.deepEqual(Object.keys(peer.open).sort(),
                     ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
    assert.deepEqual(peer.open.upgrades, []);
    assert.equal(peer.open.pingInterval, PING_INTERVAL);
    assert.equal(peer.open.pingTimeout, PING_TIMEOUT);
    assert.equal(peer.open.maxPayload, 1000000);
    peer.close();
  });

  it('answers client pings with pongs, and 2probe with a plain 3', async () => {
    const peer = await openEio3({ ping: false });
    peer.send('2');
    assert.equal(await peer.next(), '3');
    peer.send('2probe');
    assert.equal(await peer.next(), '3');
    peer.close();
  });


  it("serves seed 004's encodeMessage frames sent every 50 ms, in order", async () => {
    const peer = await openEio3();
    const data = { holding: 'eyJLQNDqj0y473pCJ6zjMTUyOTk5NzU1MgnVMQ==$d84XkeMCv7umajhMRiU' };
    for (let i = 0; i < 5; i++) {
      peer.send(encodeMessage('message', { ...data, i }));
      const answer = await peer.next();
      assert.equal(answer, `42["message-back",${JSON.stringify({ ...data, i })}]`);
      assert.deepEqual(decodeMessage(answer), { ...data, i });
      await H.sleep(50);
    }
    peer.close();
  });

  it('serves non-ASCII text and escapes', async () => {
    const peer = await openEio3();
    const data = { code: 422, message: '参数错误 "quoted" \\ \u2028' };
    peer.send(encodeMessage('message', data));
    assert.deepEqual(decodeMessage(await peer.next()), data);
    peer.close();
  });

  it('acks, joins rooms and broadcasts in the v3 framing', async () => {
    const room = `raw3-${process.pid}-${Date.now()}`;
    const [a, b] = await Promise.all([openEio3(), openEio3()]);
    a.send('425["message-with-ack",1,"x"]');
    assert.equal(await a.next(), '435[1,"x"]');
    for (const peer of [a, b]) {
      peer.send(`426["join","${room}"]`);
      assert.equal(await peer.next(), '436["joined"]');
    }
    a.send(`42["to-room","${room}",{"n":1}]`);
    assert.equal(await b.next(), '42["room-message",{"n":1}]');
    b.send('42["message","marker"]');
    assert.equal(await b.next(), '42["message-back","marker"]');
    a.send('42["message","marker"]');
    assert.equal(await a.next(), '42["message-back","marker"]');
    for (const peer of [a, b]) peer.close();
  });

  // v3 binary frames carry the Engine.IO packet type first: 0x04 (message).
  it('takes and sends binary attachments as 0x04-prefixed frames', async () => {
    const peer = await openEio3();
    peer.send('451-["message",{"_placeholder":true,"num":0}]');
    peer.send(Buffer.from([4, 1, 2, 3]));
    assert.deepEqual(await peer.take(2),
                     ['451-["message-back",{"_placeholder":true,"num":0}]', Buffer.from([4, 1, 2, 3])]);
    peer.close();
  });

  it('delivers a broadcast to v3 and v4 clients of one room alike', async () => {
    const room = `mixed-${process.pid}-${Date.now()}`;
    const [v3, v4] = await Promise.all([openEio3(), H.connectWs()]);
    v3.send(`421["join","${room}"]`);
    assert.equal(await v3.next(), '431["joined"]');
    v4.send(`421["join","${room}"]`);
    assert.equal(await v4.next(), '431["joined"]');
    const sender = await H.connectWs();
    sender.send(`451-["to-room","${room}","t",{"_placeholder":true,"num":0}]`);
    sender.send(Buffer.from([7, 7]));
    assert.deepEqual(await v3.take(2),
                     ['451-["room-message","t",{"_placeholder":true,"num":0}]', Buffer.from([4, 7, 7])]);
    assert.deepEqual(await v4.take(2),
                     ['451-["room-message","t",{"_placeholder":true,"num":0}]', Buffer.from([7, 7])]);
    for (const peer of [v3, v4, sender]) peer.close();
  });

  it('closes upon a malformed packet', async () => {
    const peer = await openEio3();
    peer.send('42{}');
    assert.equal(await peer.closedByServer(), 1005);
  });
});
