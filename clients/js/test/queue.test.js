// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Eddy, messageBytes } from '../src/eddy.js';
import { fakeEnv, record } from './fakes.js';

function offlineClient(queue) {
  const fake = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env: fake.env, queue });
  const events = record(client);
  return { ...fake, client, events, drops: () => events.filter((e) => e.type === 'drop') };
}

function reopen({ clock, WebSocket, client }) {
  if (client.retryAt !== null) clock.advance(client.retryAt - clock.time);
  const socket = WebSocket.sockets.at(-1);
  socket.serverOpen();
  return socket;
}

test('queue: messages sent while connecting go out in order on open', () => {
  const t = offlineClient();
  for (let i = 0; i < 5; i++) assert.equal(t.client.send(`m${i}`), true);
  assert.equal(t.client.queueSize, 5);
  const socket = reopen(t);
  assert.deepEqual(socket.sent, ['m0', 'm1', 'm2', 'm3', 'm4']);
  assert.equal(t.client.queueSize, 0);
  assert.equal(t.client.queueBytes, 0);
  t.client.close();
});

test('queue: kept across a reconnect, flushed in order, before what the open listener sends', () => {
  const t = offlineClient();
  t.WebSocket.sockets[0].serverOpen();
  t.client.send('live');
  t.WebSocket.sockets[0].serverClose(1012, 'restart', true);
  t.client.send('a');
  t.client.emit('b', 1);
  const binary = new Uint8Array([1, 2, 3]);
  t.client.send(binary);
  t.client.addEventListener('open', () => t.client.send('from open listener'));
  const socket = reopen(t);
  assert.deepEqual(t.WebSocket.sockets[0].sent, ['live']);
  assert.deepEqual(socket.sent, ['a', '42["b",1]', binary, 'from open listener']);
  assert.equal(t.drops().length, 0);
  t.client.close();
});

test('queue: maxCount with overflow refuse returns false and reports the refused message', () => {
  const t = offlineClient({ maxCount: 3 });
  for (let i = 0; i < 3; i++) assert.equal(t.client.send(`m${i}`), true);
  assert.equal(t.client.send('m3'), false);
  assert.deepEqual(t.drops(), [{ type: 'drop', reason: 'overflow', messages: ['m3'] }]);
  assert.deepEqual(reopen(t).sent, ['m0', 'm1', 'm2']);
  t.client.close();
});

test('queue: maxCount with overflow drop-oldest keeps the newest and reports the oldest', () => {
  const t = offlineClient({ maxCount: 3, overflow: 'drop-oldest' });
  for (let i = 0; i < 5; i++) assert.equal(t.client.send(`m${i}`), true);
  assert.deepEqual(t.drops().map((e) => e.messages), [['m0'], ['m1']]);
  assert.deepEqual(reopen(t).sent, ['m2', 'm3', 'm4']);
  t.client.close();
});

test('queue: maxBytes counts UTF-8 bytes; a message bigger than the bound is refused', () => {
  assert.equal(messageBytes('héllo ✓ 😀'), 1 + 2 + 1 + 1 + 1 + 1 + 3 + 1 + 4);
  assert.equal(messageBytes('\ud800x'), 3 + 1, 'a lone surrogate counts as U+FFFD');
  assert.equal(messageBytes(new Uint8Array(7)), 7);
  assert.equal(messageBytes(new ArrayBuffer(9)), 9);
  const t = offlineClient({ maxBytes: 10, overflow: 'drop-oldest' });
  assert.equal(t.client.send('ééé'), true); // 6 bytes
  assert.equal(t.client.send('xxxx'), true); // 10 in all
  assert.equal(t.client.queueBytes, 10);
  assert.equal(t.client.send('y'), true); // drops 'ééé'
  assert.equal(t.client.queueBytes, 5);
  assert.equal(t.client.send('z'.repeat(11)), false);
  assert.deepEqual(t.drops().map((e) => [e.reason, e.messages]),
                   [['overflow', ['ééé']], ['overflow', ['z'.repeat(11)]]]);
  assert.deepEqual(reopen(t).sent, ['xxxx', 'y']);
  t.client.close();
});

test('queue: messages older than maxAge are dropped, not sent late', () => {
  const t = offlineClient({ maxAge: 1000 });
  t.client.send('old');
  t.clock.jump(600);
  t.client.send('new');
  t.clock.jump(500);
  const socket = reopen(t);
  assert.deepEqual(socket.sent, ['new']);
  assert.deepEqual(t.drops(), [{ type: 'drop', reason: 'expired', messages: ['old'] }]);
  t.client.close();
});

test('queue: close() and a stopping close code drop the queue with a drop event', () => {
  const t = offlineClient();
  t.client.send('a');
  t.client.close();
  assert.deepEqual(t.drops(), [{ type: 'drop', reason: 'closed', messages: ['a'] }]);
  assert.equal(t.client.send('b'), false);
  const u = offlineClient();
  u.WebSocket.sockets[0].serverClose(1006);
  u.client.send('c');
  reopen(u);
  u.WebSocket.sockets.at(-1).serverClose(1006);
  u.client.send('d');
  u.clock.advance(u.client.retryAt - u.clock.time);
  u.WebSocket.sockets.at(-1).serverClose(4001, 'kicked', true);
  assert.deepEqual(u.drops(), [{ type: 'drop', reason: 'stopped', messages: ['d'] }]);
});

test('queue: a socket dying mid-flush keeps the rest queued for the next one', () => {
  const t = offlineClient();
  for (let i = 0; i < 4; i++) t.client.send(`m${i}`);
  let n = 0;
  const socket = t.WebSocket.sockets[0];
  const send = socket.send.bind(socket);
  socket.send = (data) => {
    send(data);
    if (++n === 2) socket.readyState = 2; // the browser began closing it
  };
  socket.serverOpen();
  assert.deepEqual(socket.sent, ['m0', 'm1']);
  assert.equal(t.client.queueSize, 2);
  socket.serverClose(1006);
  assert.deepEqual(reopen(t).sent, ['m2', 'm3']);
  t.client.close();
});

test('queue: a message sent while the open socket is already closing waits for the next one', () => {
  const t = offlineClient();
  const socket = reopen(t);
  socket.readyState = 2; // closing: a browser would discard what is sent now
  assert.equal(t.client.send('late'), true);
  assert.deepEqual(socket.sent, []);
  socket.serverClose(1006);
  assert.deepEqual(reopen(t).sent, ['late']);
  t.client.close();
});
