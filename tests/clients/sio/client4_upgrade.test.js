// SPDX-License-Identifier: MIT
// socket.io-client 4.8 sockets with default transports (long-polling, then the upgrade to
// WebSocket) connecting in rounds while another client has the namespace broadcast numbered
// messages in a loop: each socket receives every number from its first one exactly once
// and in order, across the switch of transports.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./client4_helpers');

const SOCKETS = 20;
const ROUNDS = 4;
const AFTER_UPGRADE = 20; // numbers each socket must receive on WebSocket

// Resolves once socket upgraded and then received AFTER_UPGRADE more numbers.
function upgradedAndFed(socket, seen) {
  return new Promise((resolve) => {
    let mark = -1;
    const check = () => {
      if (mark < 0 && socket.io.engine.transport.name === 'websocket') mark = seen.length;
      if (mark >= 0 && seen.length >= mark + AFTER_UPGRADE) {
        socket.off('all-message', check);
        resolve();
      }
    };
    socket.on('all-message', check);
  });
}

describe('broadcasts across the upgrade from long-polling', () => {
  it('reach each socket exactly once and in order', async () => {
    const [pump] = await H.connected('/', { transports: ['websocket'] });
    let n = 0;
    let running = true;
    const tick = () => {
      if (!running) return;
      pump.emit('to-all', ++n);
      setTimeout(tick, 1);
    };
    tick();
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const sockets = [];
        const fed = [];
        for (let i = 0; i < SOCKETS; i++) {
          const socket = H.client('/');
          const seen = [];
          socket.on('all-message', (k) => seen.push(k));
          sockets.push({ socket, seen });
          fed.push(upgradedAndFed(socket, seen));
        }
        await H.within(Promise.all(fed), 15000, `round ${round}: every socket upgraded and fed`);
        for (const { socket, seen } of sockets) {
          socket.close();
          for (let i = 1; i < seen.length; i++) {
            assert.equal(seen[i], seen[i - 1] + 1,
                         `round ${round}: ${seen[i]} after ${seen[i - 1]} (${seen.length} received)`);
          }
        }
      }
    } finally {
      running = false;
      pump.close();
    }
  });
});
