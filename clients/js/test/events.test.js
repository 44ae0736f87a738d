// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Eddy, encodeEvent, decodeEvent } from '../src/eddy.js';
import { fakeEnv, record } from './fakes.js';

test('emit: 42["event",...args] text frames', () => {
  assert.equal(encodeEvent('chat', [{ text: 'hé "x"' }, 2]), '42["chat",{"text":"hé \\"x\\""},2]');
  assert.equal(encodeEvent('ping', []), '42["ping"]');
  const { WebSocket, env } = fakeEnv();
  const client = new Eddy('ws://x/', { env });
  WebSocket.sockets[0].serverOpen();
  assert.equal(client.emit('loginCheck', { holding: 'abc' }), true);
  assert.deepEqual(WebSocket.sockets[0].sent, ['42["loginCheck",{"holding":"abc"}]']);
  client.close();
});

test('on: incoming 42 frames reach the handlers of their event, with all arguments', () => {
  const { WebSocket, env } = fakeEnv();
  const client = new Eddy('ws://x/', { env });
  const events = record(client);
  const got = [];
  const first = (...args) => got.push(['first', ...args]);
  client.on('message', first);
  client.on('message', (...args) => got.push(['second', ...args]));
  client.on('other', (...args) => got.push(['other', ...args]));
  const socket = WebSocket.sockets[0];
  socket.serverOpen();
  socket.serverMessage('42["message",{"code":200,"message":"success"}]');
  socket.serverMessage('42["other",1,"two",[3]]');
  socket.serverMessage('427["other","with ack id"]');
  client.off('message', first);
  socket.serverMessage('42["message","after off"]');
  assert.deepEqual(got, [
    ['first', { code: 200, message: 'success' }], ['second', { code: 200, message: 'success' }],
    ['other', 1, 'two', [3]], ['other', 'with ack id'], ['second', 'after off'],
  ]);
  // Every frame is also a plain message event.
  assert.equal(events.filter((e) => e.type === 'message').length, 4);
  client.close();
});

test('on: malformed frames are ignored safely', () => {
  const bad = ['42', '42[', '42["x"', '42{"a":1}', '42[1,2]', '42[]', '42null', '4["x"]',
               '2', '', '43["x"]', '42 ["x"]', '42a["x"]', '42["x",]', new ArrayBuffer(4),
               null, '42' + '['.repeat(100000)];
  for (const frame of bad) assert.equal(decodeEvent(frame), null, String(frame).slice(0, 20));
  const { WebSocket, env } = fakeEnv();
  const client = new Eddy('ws://x/', { env });
  let called = 0;
  client.on('x', () => called++);
  const socket = WebSocket.sockets[0];
  socket.serverOpen();
  for (const frame of bad) socket.serverMessage(frame);
  socket.serverMessage('42["x"]');
  // Event names that are Object.prototype's own names reach no handler and break nothing.
  for (const name of ['__proto__', 'constructor', 'hasOwnProperty', 'toString'])
    socket.serverMessage(`42["${name}",1]`);
  assert.equal(called, 1);
  assert.equal(client.state, 'open');
  client.close();
});

test('lifecycle event names that are Object.prototype names are plain names', () => {
  const { WebSocket, env } = fakeEnv();
  const client = new Eddy('ws://x/', { env });
  client.addEventListener('toString', () => {});
  client.removeEventListener('constructor', () => {});
  client.off('valueOf');
  WebSocket.sockets[0].serverOpen();
  assert.equal(client.state, 'open');
  client.close();
});

test('a throwing listener or handler does not break the client or the other listeners', (t) => {
  const reported = [];
  const saved = globalThis.reportError;
  globalThis.reportError = (e) => reported.push(e.message);
  t.after(() => { globalThis.reportError = saved; });
  const { WebSocket, env } = fakeEnv();
  const client = new Eddy('ws://x/', { env });
  let after = 0;
  client.on('x', () => { throw new Error('handler'); });
  client.on('x', () => after++);
  client.addEventListener('open', () => { throw new Error('listener'); });
  client.addEventListener('open', () => after++);
  const socket = WebSocket.sockets[0];
  socket.serverOpen();
  socket.serverMessage('42["x"]');
  assert.equal(after, 2);
  assert.deepEqual(reported, ['listener', 'handler']);
  client.close();
});
