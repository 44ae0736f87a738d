// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Eddy } from '../src/eddy.js';
import { fakeEnv, record } from './fakes.js';

function openClient(heartbeat) {
  const fake = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env: fake.env, heartbeat });
  const events = record(client);
  const socket = fake.WebSocket.sockets[0];
  socket.serverOpen();
  return { ...fake, client, events, socket, closes: () => events.filter((e) => e.type === 'close') };
}

const PING = { interval: 1000, timeout: 500, payload: 'ping' };

test('heartbeat: a ping after interval of silence; no reply within timeout: dead, reconnect', () => {
  const t = openClient(PING);
  t.clock.advance(999);
  assert.deepEqual(t.socket.sent, []);
  t.clock.advance(1);
  assert.deepEqual(t.socket.sent, ['ping']);
  t.clock.advance(499);
  assert.equal(t.client.state, 'open');
  t.clock.advance(1);
  assert.deepEqual(t.closes(), [{ type: 'close', code: 1006, reason: 'heartbeat timeout',
                                  wasClean: false, willReconnect: true }]);
  assert.equal(t.socket.closeCalls.length, 1, 'the dead socket is closed locally');
  t.clock.advance(t.client.retryAt - t.clock.time);
  assert.equal(t.WebSocket.sockets.length, 2);
  t.client.close();
});

test('heartbeat: any inbound message counts as liveness and postpones the ping', () => {
  const t = openClient(PING);
  for (let i = 0; i < 10; i++) {
    t.clock.advance(900);
    t.socket.serverMessage(`data ${i}`);
  }
  assert.deepEqual(t.socket.sent, []);
  for (let i = 1; i <= 10; i++) {
    t.clock.advance(1000);
    assert.equal(t.socket.sent.length, i, 'a ping after each second of silence');
    t.clock.advance(400);
    t.socket.serverMessage('pong');
  }
  assert.equal(t.closes().length, 0);
  t.client.close();
});

test('heartbeat: throttled timers firing late do not kill a connection that answered', () => {
  const t = openClient(PING);
  t.clock.advance(1000); // ping sent
  t.clock.jump(200);
  t.socket.serverMessage('pong'); // network events are not throttled
  t.clock.jump(60000); // the timer fires a minute late (intensive throttling)
  t.clock.advance(0);
  assert.equal(t.client.state, 'open');
  assert.equal(t.closes().length, 0);
  t.client.close();
});

test('heartbeat: a check far later than planned (frozen page) pings again before judging', () => {
  const t = openClient(PING);
  t.clock.advance(1000); // ping sent, no answer yet
  t.clock.jump(3600000); // the page was frozen for an hour
  t.clock.advance(0);
  assert.equal(t.client.state, 'open', 'not judged on a stale ping');
  assert.deepEqual(t.socket.sent, ['ping', 'ping']);
  t.clock.advance(500);
  assert.equal(t.closes().length, 1, 'the fresh ping went unanswered: dead');
  t.client.close();
});

test('heartbeat: without a payload the server must send within interval + timeout', () => {
  const t = openClient({ interval: 1000, timeout: 500 });
  t.clock.advance(1400);
  t.socket.serverMessage('tick');
  t.clock.advance(1499);
  assert.equal(t.client.state, 'open');
  assert.deepEqual(t.socket.sent, []);
  t.clock.advance(1);
  assert.equal(t.closes().length, 1);
  assert.equal(t.closes()[0].reason, 'heartbeat timeout');
  t.client.close();
});

test('heartbeat: visibilitychange to visible probes at once', () => {
  const t = openClient({ interval: 30000, timeout: 500, payload: 'ping' });
  t.clock.advance(2000);
  t.document.dispatch('visibilitychange');
  assert.deepEqual(t.socket.sent, ['ping']);
  t.clock.advance(500);
  assert.equal(t.closes().length, 1, 'a half-open socket is found within timeout');
  t.client.close();
});

test('heartbeat: off by default; fast paths then leave an open socket alone', () => {
  const t = openClient(undefined);
  t.clock.advance(3600000);
  t.document.dispatch('visibilitychange');
  t.window.dispatch('online');
  assert.equal(t.client.state, 'open');
  assert.deepEqual(t.socket.sent, []);
  t.client.close();
});
