// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Eddy, backoffDelay } from '../src/eddy.js';
import { fakeEnv, record } from './fakes.js';

const defaults = { minDelay: 500, maxDelay: 10000, factor: 2 };

test('backoff: attempt n lies in [min, min(max, min*factor^n)]', () => {
  const ceilings = [1000, 2000, 4000, 8000, 10000, 10000, 10000];
  ceilings.forEach((ceiling, i) => {
    const attempt = i + 1;
    assert.equal(backoffDelay(attempt, defaults, () => 0), 500);
    assert.equal(backoffDelay(attempt, defaults, () => 0.999999), ceiling - 1);
  });
  assert.equal(backoffDelay(1000, defaults, () => 0.999999), 9999, 'no overflow at huge n');
  assert.equal(backoffDelay(1, { minDelay: 0, maxDelay: 0, factor: 2 }, () => 0.7), 0);
});

test('backoff: full jitter is uniform over the window', () => {
  const n = 20000;
  const buckets = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    const delay = backoffDelay(3, defaults, Math.random); // window [500, 4000)
    assert.ok(delay >= 500 && delay < 4000, `delay ${delay}`);
    buckets[Math.floor((delay - 500) / 875)]++;
  }
  for (const count of buckets) {
    // Each quarter holds 25%; 5000 expected, sd ~61: 4500-5500 is beyond 8 sd.
    assert.ok(count > 4500 && count < 5500, `buckets ${buckets}`);
  }
});

test('backoff: retries follow the schedule and attempts count up while connections fail', () => {
  const { clock, WebSocket, env } = fakeEnv(() => 0.999999);
  const client = new Eddy('ws://x/', { env });
  const events = record(client);
  const delays = [];
  for (let i = 0; i < 6; i++) {
    const socket = WebSocket.sockets[i];
    socket.serverClose(1006);
    const ev = events.filter((e) => e.type === 'reconnecting').at(-1);
    assert.equal(ev.attempt, i + 1);
    delays.push(ev.delay);
    assert.equal(client.state, 'reconnecting');
    assert.equal(client.retryAt, clock.time + ev.delay);
    clock.advance(ev.delay - 1);
    assert.equal(WebSocket.sockets.length, i + 1, 'not before the delay');
    clock.advance(1);
    assert.equal(WebSocket.sockets.length, i + 2, 'at the delay');
  }
  assert.deepEqual(delays, [999, 1999, 3999, 7999, 9999, 9999]);
  client.close();
});

test('backoff: the counter resets only after the connection stayed up stableAfter', () => {
  const { clock, WebSocket, env } = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env, stableAfter: 5000 });
  WebSocket.sockets[0].serverClose(1006);
  assert.equal(client.attempt, 1);
  clock.advance(500);
  // Opens, but drops after 4999 ms: not stable, the count goes on.
  WebSocket.sockets[1].serverOpen();
  clock.advance(4999);
  WebSocket.sockets[1].serverClose(1006);
  assert.equal(client.attempt, 2);
  clock.advance(500);
  // Up for 5000 ms: stable, the next failure is attempt 1 again.
  WebSocket.sockets[2].serverOpen();
  clock.advance(5000);
  WebSocket.sockets[2].serverClose(1006);
  assert.equal(client.attempt, 1);
  client.close();
});

test('online: reconnects at once and forgets the backoff', () => {
  const { clock, WebSocket, window, env } = fakeEnv(() => 0.999999);
  const client = new Eddy('ws://x/', { env });
  for (let i = 0; i < 4; i++) {
    WebSocket.sockets[i].serverClose(1006);
    clock.advance(client.retryAt - clock.time);
  }
  WebSocket.sockets[4].serverClose(1006);
  assert.equal(client.attempt, 5);
  window.dispatch('online');
  assert.equal(WebSocket.sockets.length, 6, 'a new socket without waiting');
  assert.equal(client.attempt, 0);
  assert.equal(client.retryAt, null);
  assert.equal(WebSocket.live().length, 1);
  client.close();
});

test('visibilitychange: a retry whose timer was throttled starts when the tab shows', () => {
  const { clock, WebSocket, document, env } = fakeEnv(() => 0);
  const client = new Eddy('ws://x/', { env });
  WebSocket.sockets[0].serverClose(1006);
  document.visibilityState = 'hidden';
  clock.jump(60000); // the timer did not fire: background throttling
  assert.equal(WebSocket.sockets.length, 1);
  document.visibilityState = 'visible';
  document.dispatch('visibilitychange');
  assert.equal(WebSocket.sockets.length, 2);
  clock.advance(10000); // the throttled timer was cancelled: no second socket
  assert.equal(WebSocket.sockets.length, 2);
  client.close();
});

test('a retry timer that fires early waits for the rest of the delay', () => {
  const { clock, WebSocket, env } = fakeEnv(() => 0.5);
  const client = new Eddy('ws://x/', { env });
  WebSocket.sockets[0].serverClose(1006);
  const [id, timer] = [...clock.timers][0];
  clock.timers.delete(id);
  clock.advance(100);
  timer.fn(); // early: the clock says the delay has not passed
  assert.equal(WebSocket.sockets.length, 1);
  clock.advance(client.retryAt - clock.time - 1);
  assert.equal(WebSocket.sockets.length, 1);
  clock.advance(1);
  assert.equal(WebSocket.sockets.length, 2);
  client.close();
});
