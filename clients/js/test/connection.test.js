// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Eddy, closeAction } from '../src/eddy.js';
import { fakeEnv, record } from './fakes.js';

function failingSocket(order) {
  const { clock, WebSocket, env } = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env });
  const events = record(client);
  const socket = WebSocket.sockets[0];
  socket.serverOpen();
  for (const what of order) {
    if (what === 'error') socket.serverError();
    else socket.serverClose(1006);
  }
  return { clock, WebSocket, client, events };
}

for (const order of [['error', 'close'], ['close', 'error'], ['error'], ['close'],
                     ['error', 'error', 'close', 'close']]) {
  test(`one live socket: ${order.join(' then ')} schedules exactly one reconnect`, () => {
    const { clock, WebSocket, client, events } = failingSocket(order);
    assert.equal(events.filter((e) => e.type === 'close').length, 1, 'one close event');
    assert.equal(events.filter((e) => e.type === 'reconnecting').length, 1);
    assert.equal(WebSocket.live().length, 0);
    clock.advance(client.retryAt - clock.time);
    assert.equal(WebSocket.sockets.length, 2, 'one new socket, not two');
    assert.equal(WebSocket.live().length, 1);
    client.close();
  });
}

test('one live socket: a socket given up on by connect timeout is ignored when it opens late', () => {
  const { clock, WebSocket, env } = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env, connectTimeout: 3000 });
  const events = record(client);
  const slow = WebSocket.sockets[0];
  clock.advance(3000);
  assert.deepEqual(slow.closeCalls.length, 1, 'the slow socket was closed');
  clock.advance(500);
  assert.equal(WebSocket.sockets.length, 2);
  // The old socket's events arrive late: none may reach the client.
  slow.serverOpen();
  slow.serverMessage('stale');
  slow.serverError();
  slow.serverClose(1000);
  assert.equal(client.state, 'reconnecting');
  assert.deepEqual(events.map((e) => e.type), ['close', 'reconnecting']);
  WebSocket.sockets[1].serverOpen();
  assert.equal(client.state, 'open');
  assert.equal(client.socket, WebSocket.sockets[1]);
  assert.equal(WebSocket.sockets.length, 2);
  client.close();
});

test('one live socket: close() and reconnect() never leave two sockets open', () => {
  const { clock, WebSocket, env } = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env });
  WebSocket.sockets[0].serverOpen();
  client.reconnect();
  client.reconnect();
  assert.equal(WebSocket.live().length, 1);
  WebSocket.sockets.at(-1).serverOpen();
  client.close();
  assert.equal(WebSocket.live().length, 0);
  clock.advance(60000);
  assert.equal(WebSocket.live().length, 0);
  client.connect();
  client.connect();
  assert.equal(WebSocket.live().length, 1);
  client.close();
});

test('close codes: the default classes', () => {
  for (const code of [1000, 1008, 4000, 4050, 4099]) assert.equal(closeAction(code), 'stop', code);
  for (const code of [1001, 1006, 1009, 1011, 1012, 1013, 1002, 3000, 3001, 4100, 4200, 4999])
    assert.equal(closeAction(code), 'reconnect', code);
});

test('close codes: a table overrides and extends the defaults; a function decides alone', () => {
  const table = { 1000: 'reconnect', '4100-4199': 'stop', 3503: 'stop' };
  assert.equal(closeAction(1000, table), 'reconnect');
  assert.equal(closeAction(4150, table), 'stop');
  assert.equal(closeAction(3503, table), 'stop');
  assert.equal(closeAction(1008, table), 'stop', 'defaults still apply');
  assert.equal(closeAction(1006, table), 'reconnect');
  assert.equal(closeAction(1006, { default: 'stop' }), 'stop');
  assert.equal(closeAction(1000, (code) => (code === 1000 ? 'reconnect' : 'stop')), 'reconnect');
  assert.equal(closeAction(1000, () => undefined), 'stop', 'no answer: the defaults');
});

for (const [code, action] of [[1000, 'stop'], [1008, 'stop'], [4001, 'stop'], [1001, 'reconnect'],
                              [1006, 'reconnect'], [1011, 'reconnect'], [1012, 'reconnect'],
                              [1013, 'reconnect'], [4201, 'reconnect']]) {
  test(`close codes: ${code} from the server → ${action}`, () => {
    const { clock, WebSocket, env } = fakeEnv(() => 0);
    const client = new Eddy('ws://x/', { env });
    const events = record(client);
    WebSocket.sockets[0].serverOpen();
    WebSocket.sockets[0].serverClose(code, 'bye', true);
    assert.equal(client.send('queued later'), action === 'reconnect');
    const close = events.find((e) => e.type === 'close');
    assert.deepEqual(close, { type: 'close', code, reason: 'bye', wasClean: true,
                              willReconnect: action === 'reconnect' });
    clock.advance(action === 'stop' ? 60000 : client.retryAt - clock.time);
    if (action === 'stop') {
      assert.equal(client.state, 'closed');
      assert.equal(WebSocket.sockets.length, 1);
      assert.equal(client.send('refused'), false);
    } else {
      assert.equal(WebSocket.sockets.length, 2);
      WebSocket.sockets[1].serverOpen();
      assert.deepEqual(WebSocket.sockets[1].sent, ['queued later'], 'the queue survived');
    }
    client.close();
  });
}

test('close codes: the table option is used by the client', () => {
  const { clock, WebSocket, env } = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env, closeCodes: { 1001: 'stop' } });
  WebSocket.sockets[0].serverOpen();
  WebSocket.sockets[0].serverClose(1001, 'going away', true);
  clock.advance(60000);
  assert.equal(client.state, 'closed');
  assert.equal(WebSocket.sockets.length, 1);
});

test('url: a function is called per attempt', () => {
  const { clock, WebSocket, env } = fakeEnv(() => 0);
  let n = 0;
  const client = new Eddy(() => `ws://x/?try=${++n}`, { env });
  WebSocket.sockets[0].serverClose(1006);
  clock.advance(1000);
  assert.deepEqual(WebSocket.sockets.map((s) => s.url), ['ws://x/?try=1', 'ws://x/?try=2']);
  client.close();
});

test('a WebSocket constructor that throws stops the client with an error event', () => {
  const { env } = fakeEnv();
  env.WebSocket = class { constructor() { throw new SyntaxError('bad url'); } };
  const client = new Eddy('nope', { env });
  const events = record(client);
  assert.equal(client.state, 'closed');
  client.connect();
  assert.deepEqual(events.map((e) => e.type), ['error', 'close']);
  assert.equal(events[1].willReconnect, false);
});
