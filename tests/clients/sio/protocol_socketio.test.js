// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 300 --ping-timeout 5000 --connect-timeout 1000
// The Socket.IO cases of socketio/socket.io-protocol test-suite/test-suite.js, re-expressed
// with node:test + ws against the Socket.IO test application, plus the application's own
// events (refusal, rooms, broadcasts, server-side disconnect, server acks) at the wire level.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./helpers');

function sidOf(packet, prefix) {
  assert.ok(packet.startsWith(prefix), packet);
  const value = JSON.parse(packet.slice(prefix.length));
  assert.deepEqual(Object.keys(value), ['sid']);
  assert.match(value.sid, /^[A-Za-z0-9_-]{20}$/);
  return value.sid;
}

describe('Socket.IO connect', () => {
  it('connects to the main namespace', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40');
    sidOf(await peer.next(), '40');
    assert.equal(await peer.next(), '42["auth",{}]');
    peer.close();
  });

  it('connects to the main namespace with a payload', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40{"token":"123"}');
    sidOf(await peer.next(), '40');
    assert.equal(await peer.next(), '42["auth",{"token":"123"}]');
    peer.close();
  });

  it('connects to a custom namespace', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40/custom,');
    sidOf(await peer.next(), '40/custom,');
    assert.equal(await peer.next(), '42/custom,["auth",{}]');
    peer.close();
  });

  it('connects to a custom namespace with a payload', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40/custom,{"token":"abc"}');
    sidOf(await peer.next(), '40/custom,');
    assert.equal(await peer.next(), '42/custom,["auth",{"token":"abc"}]');
    peer.close();
  });

  it('gives each namespace of one connection its own socket id', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40');
    peer.send('40/custom,');
    const [main, , custom] = await peer.take(4);
    assert.notEqual(sidOf(main, '40'), sidOf(custom, '40/custom,'));
    peer.close();
  });

  it('refuses an unknown namespace', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40/random');
    assert.equal(await peer.next(), '44/random,{"message":"Invalid namespace"}');
    // The Engine.IO session stays open: "/" can still be joined.
    peer.send('40');
    sidOf(await peer.next(), '40');
    peer.close();
  });

  it('refuses a connection whose auth is {"refuse": true} on "/" only', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40{"refuse":true}');
    assert.equal(await peer.next(), '44{"message":"refused"}');
    peer.send('40/custom,{"refuse":true}');
    sidOf(await peer.next(), '40/custom,');
    assert.equal(await peer.next(), '42/custom,["auth",{"refuse":true}]');
    peer.close();
  });

  it('closes the connection upon an invalid handshake', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('4abc');
    assert.equal(await peer.closedByServer(), 1005);
  });

  it('closes the connection if no handshake is received within connectTimeout', async () => {
    const start = Date.now();
    const [peer] = await H.openWs({ pong: true });
    assert.equal(await peer.closedByServer(), 1005);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 900 && elapsed < 2500, `closed after ${elapsed} ms`);
  });
});

describe('Socket.IO disconnect', () => {
  it('disconnects from the main namespace and keeps the Engine.IO session', async () => {
    const peer = await H.connectWs();
    peer.pong = false;
    peer.send('41');
    assert.equal(await peer.next(), '2');
    peer.close();
  });

  it('connects then disconnects from a custom namespace', async () => {
    const peer = await H.connectWs();
    peer.send('40/custom');
    sidOf(await peer.next(), '40/custom,');
    assert.equal(await peer.next(), '42/custom,["auth",{}]');
    peer.send('41/custom');
    peer.send('42["message","message to main namespace"]');
    assert.equal(await peer.next(), '42["message-back","message to main namespace"]');
    peer.close();
  });

  it('disconnects from the server side on server-disconnect', async () => {
    const peer = await H.connectWs();
    peer.send('40/custom,');
    await peer.take(2);
    peer.send('42/custom,["server-disconnect"]');
    assert.equal(await peer.next(), '41/custom,');
    // The other namespace is untouched.
    peer.send('42["message",1]');
    assert.equal(await peer.next(), '42["message-back",1]');
    peer.send('42["server-disconnect"]');
    assert.equal(await peer.next(), '41');
    peer.close();
  });
});

describe('Socket.IO messages', () => {
  it('sends a plain-text packet', async () => {
    const peer = await H.connectWs();
    peer.send('42["message",1,"2",{"3":[true]}]');
    assert.equal(await peer.next(), '42["message-back",1,"2",{"3":[true]}]');
    peer.close();
  });

  it('sends a packet with binary attachments', async () => {
    const peer = await H.connectWs();
    peer.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    peer.send(Uint8Array.from([1, 2, 3]));
    peer.send(Uint8Array.from([4, 5, 6]));
    assert.deepEqual(await peer.take(3), [
      '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      Buffer.from([1, 2, 3]), Buffer.from([4, 5, 6]),
    ]);
    peer.close();
  });

  it('sends a plain-text packet with an ack', async () => {
    const peer = await H.connectWs();
    peer.send('42456["message-with-ack",1,"2",{"3":[false]}]');
    assert.equal(await peer.next(), '43456[1,"2",{"3":[false]}]');
    peer.close();
  });

  it('sends a packet with binary attachments and an ack', async () => {
    const peer = await H.connectWs();
    peer.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
    peer.send(Uint8Array.from([1, 2, 3]));
    peer.send(Uint8Array.from([4, 5, 6]));
    assert.deepEqual(await peer.take(3), [
      '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
      Buffer.from([1, 2, 3]), Buffer.from([4, 5, 6]),
    ]);
    peer.close();
  });

  it('sends on a custom namespace with an ack', async () => {
    const peer = await H.connectWs({ nsp: '/custom' });
    peer.send('42/custom,7["message-with-ack","x"]');
    assert.equal(await peer.next(), '43/custom,7["x"]');
    peer.close();
  });

  it('acks with the largest exact ack id (2^53 - 1)', async () => {
    const peer = await H.connectWs();
    peer.send('429007199254740991["message-with-ack",1]');
    assert.equal(await peer.next(), '439007199254740991[1]');
    peer.close();
  });

  it('waits for the client ack of a server emit (emit-with-ack)', async () => {
    const peer = await H.connectWs();
    peer.send('421["emit-with-ack"]');
    const need = /^42(\d+)\["need-ack",42\]$/.exec(await peer.next());
    assert.ok(need);
    peer.send(`43${need[1]}["answer"]`);
    assert.equal(await peer.next(), '431["answer"]');
    peer.close();
  });

  it('acks "timeout" when the client does not ack within 1 s', async () => {
    const peer = await H.connectWs();
    const start = Date.now();
    peer.send('422["emit-with-ack"]');
    assert.match(await peer.next(), /^42\d+\["need-ack",42\]$/);
    assert.equal(await peer.next(), '432["timeout"]');
    assert.ok(Date.now() - start >= 950, `timed out after ${Date.now() - start} ms`);
    peer.close();
  });

  it('ignores an event name that is a number and an ack for an unknown id', async () => {
    const peer = await H.connectWs();
    peer.send('42[1,2]');
    peer.send('43999[1]');
    peer.send('42["message","after"]');
    assert.equal(await peer.next(), '42["message-back","after"]');
    peer.close();
  });

  it('closes the connection upon an unknown packet type', async () => {
    const peer = await H.connectWs();
    peer.send('4abc');
    assert.equal(await peer.closedByServer(), 1005);
  });

  it('closes the connection upon an invalid payload format', async () => {
    const peer = await H.connectWs();
    peer.send('42{}');
    assert.equal(await peer.closedByServer(), 1005);
  });

  it('closes the connection upon an invalid ack id', async () => {
    const peer = await H.connectWs();
    peer.send('42abc["message-with-ack",1,"2",{"3":[false]}]');
    assert.equal(await peer.closedByServer(), 1005);
  });
});

describe('Socket.IO rooms and broadcasts', () => {
  it('sends to-room to the other members of the room only', async () => {
    const room = `room-${process.pid}-${Date.now()}`;
    const [a, b, c] = await Promise.all([H.connectWs(), H.connectWs(), H.connectWs()]);
    for (const peer of [a, b]) {
      peer.send(`421["join","${room}"]`);
      assert.equal(await peer.next(), '431["joined"]');
    }
    a.send(`42["to-room","${room}",1,{"x":"y"}]`);
    assert.equal(await b.next(), '42["room-message",1,{"x":"y"}]');
    b.send('422["leave","' + room + '"]');
    assert.equal(await b.next(), '432["left"]');
    c.send(`42["to-room","${room}","second"]`);
    assert.equal(await a.next(), '42["room-message","second"]');
    // Neither the sender of the first nor b (left) nor c (never joined) got anything else:
    // a marker round trip on each proves the queue is empty up to now.
    for (const peer of [a, b, c]) {
      peer.send('42["message","marker"]');
      assert.equal(await peer.next(), '42["message-back","marker"]');
      peer.close();
    }
  });

  it('sends to-all to every socket of the namespace, sender included, and no other namespace', async () => {
    const [a, b, other] = await Promise.all([
      H.connectWs({ nsp: '/custom' }), H.connectWs({ nsp: '/custom' }), H.connectWs(),
    ]);
    a.send('42/custom,["to-all","hi",2]');
    assert.equal(await a.next(), '42/custom,["all-message","hi",2]');
    assert.equal(await b.next(), '42/custom,["all-message","hi",2]');
    other.send('42["message","marker"]');
    assert.equal(await other.next(), '42["message-back","marker"]');
    for (const peer of [a, b, other]) peer.close();
  });

  it('sends a room broadcast with binary attachments once to each member', async () => {
    const room = `bin-${process.pid}-${Date.now()}`;
    const [a, b] = await Promise.all([H.connectWs(), H.connectWs()]);
    b.send(`421["join","${room}"]`);
    assert.equal(await b.next(), '431["joined"]');
    a.send(`451-["to-room","${room}",{"_placeholder":true,"num":0}]`);
    a.send(Uint8Array.from([9, 8]));
    assert.deepEqual(await b.take(2), ['451-["room-message",{"_placeholder":true,"num":0}]', Buffer.from([9, 8])]);
    for (const peer of [a, b]) peer.close();
  });
});
