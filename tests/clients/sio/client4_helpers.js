// SPDX-License-Identifier: MIT
// Helpers for the socket.io-client 4.8 suites (client4_*.test.js): the server under test is
// SIO_URL (default http://127.0.0.1:3000), running the Socket.IO test application
// (tests/clients/sio_reference.js or examples/socketio). Every wait is bounded.
'use strict';
const { io } = require('socket.io-client');

const URL = process.env.SIO_URL || 'http://127.0.0.1:3000';
const WAIT_MS = 5000;

// The two ways a real client connects: default transports (polling, then upgrade) and
// WebSocket only.
const TRANSPORTS = [
  { name: 'default transports', opts: {} },
  { name: 'websocket only', opts: { transports: ['websocket'] } },
];

function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A client socket on namespace nsp ('/' or '/custom'); opts are io()'s. No reconnection
// unless asked, so a failing test cannot leave a client retrying.
function client(nsp = '/', opts = {}) {
  return io(URL + nsp, { reconnection: false, forceNew: true, timeout: WAIT_MS, ...opts });
}

// Resolves with the arguments of the next `event` on socket.
function once(socket, event, what = event) {
  return within(new Promise((resolve) => socket.once(event, (...args) => resolve(args))),
                WAIT_MS, what);
}

// Connects and resolves with [socket, args of its first "auth" event].
async function connected(nsp = '/', opts = {}) {
  const socket = client(nsp, opts);
  const auth = once(socket, 'auth', `"auth" on ${nsp}`);
  const error = new Promise((_, reject) => socket.once('connect_error', reject));
  await within(Promise.race([new Promise((r) => socket.once('connect', r)), error]), WAIT_MS,
               `connect to ${nsp}`);
  return [socket, await auth];
}

// Resolves true if `event` arrives on socket within ms, false otherwise.
function arrives(socket, event, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { socket.off(event, on); resolve(false); }, ms);
    function on() { clearTimeout(timer); resolve(true); }
    socket.once(event, on);
  });
}

module.exports = { URL, WAIT_MS, TRANSPORTS, within, client, once, connected, arrives };
