// SPDX-License-Identifier: MIT
// Shared helpers for the Socket.IO suites in this directory (node:test + ws + fetch).
//
// The server under test is given by SIO_URL (http://127.0.0.1:<port>); it runs the Socket.IO
// test application (tests/clients/sio_reference.js on Node's socket.io, or eddy's
// examples/socketio). tests/integration/test_socketio_suites.py starts it with the options
// named in each test file's `// sio-server:` header line and runs the file with `node --test`.
//
// Every wait here is bounded (WAIT_MS unless given): a test never hangs, and it fails with
// what it was waiting for and what arrived instead.
'use strict';
const WebSocket = require('ws');

const URL = process.env.SIO_URL || 'http://127.0.0.1:3000';
const WS_URL = URL.replace(/^http/, 'ws');
const PATH = '/socket.io/';
// Generous: the machine running the tests may be loaded; a passing wait returns at once.
const WAIT_MS = 5000;

function eioUrl(query, ws = false) {
  return `${ws ? WS_URL : URL}${PATH}?${query}`;
}

// Resolves with the value of `promise`, or rejects after ms with a message naming `what`.
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A raw WebSocket peer with a queue of received messages: text as strings, binary as Buffers.
// pong: answer Engine.IO v4 pings ("2") with "3" and keep them out of the queue, so a session
// outlives pingInterval + pingTimeout without the test counting heartbeats.
class Peer {
  constructor(url, { pong = false, protocols, headers } = {}) {
    this.ws = new WebSocket(url, protocols, { headers, perMessageDeflate: false });
    this.pong = pong;
    this.queue = [];
    this.waiters = [];
    this.closeCode = null;
    this.closed = false;
    this.httpStatus = null;
    this.ws.on('message', (data, isBinary) => {
      const msg = isBinary ? Buffer.from(data) : data.toString();
      if (this.pong && msg === '2') {
        this.ws.send('3');
        return;
      }
      this.queue.push(msg);
      this._wake();
    });
    this.ws.on('unexpected-response', (req, res) => {
      this.httpStatus = res.statusCode;
      let body = '';
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        this.httpBody = body;
        this._closed(null);
      });
      res.on('error', () => this._closed(null));
    });
    this.ws.on('error', () => {});  // the close event follows and tells the outcome
    this.ws.on('close', (code) => this._closed(code));
    this.opened = new Promise((resolve) => this.ws.once('open', resolve));
  }

  _closed(code) {
    if (this.closeCode !== null || this.closed) return;
    this.closeCode = code;
    this.closed = true;
    this._wake();
  }

  _wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  _changed() {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  // The next message; rejects if the connection closes first or nothing arrives in ms.
  async next(ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.queue.length > 0) return this.queue.shift();
      if (this.closed) throw new Error(`connection closed (code ${this.closeCode}) while waiting for a message`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms`);
      await within(this._changed(), left, 'a message').catch(() => {});
    }
  }

  // The next n messages.
  async take(n, ms = WAIT_MS) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.next(ms));
    return out;
  }

  // Waits until the server closes the connection; returns the close code (null when the
  // WebSocket handshake itself was refused with an HTTP status: see httpStatus). Fails if a
  // message arrives first unless allowMessages, or if the close takes longer than ms.
  async closedByServer(ms = WAIT_MS, { allowMessages = false } = {}) {
    const deadline = Date.now() + ms;
    for (;;) {
      if (!allowMessages && this.queue.length > 0) {
        throw new Error(`expected the server to close, got message ${JSON.stringify(String(this.queue[0]))}`);
      }
      if (this.closed) return this.closeCode;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the server did not close within ${ms} ms`);
      await within(this._changed(), left, 'the close').catch(() => {});
    }
  }

  // Asserts that nothing arrives and the connection stays open for ms (used only to prove
  // an absence: an ignored packet).
  async quiet(ms) {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.queue.length > 0) throw new Error(`unexpected message ${JSON.stringify(String(this.queue[0]))}`);
      if (this.closed) throw new Error(`unexpected close (code ${this.closeCode})`);
      const left = deadline - Date.now();
      if (left <= 0) return;
      await within(this._changed(), left, 'quiet').catch(() => {});
    }
  }

  send(data, options) {
    this.ws.send(data, options);
  }

  close() {
    this.ws.terminate();
  }
}

// An Engine.IO v4 WebSocket session: resolves with [peer, open packet object].
async function openWs({ query = 'EIO=4&transport=websocket', pong = false } = {}) {
  const peer = new Peer(eioUrl(query, true), { pong });
  const open = await peer.next();
  if (open[0] !== '0') throw new Error(`expected an open packet, got ${open}`);
  return [peer, JSON.parse(open.slice(1))];
}

// A Socket.IO connection on the WebSocket transport: Engine.IO open, CONNECT to nsp with
// auth, the CONNECT reply and the application's "auth" event consumed. Pings are answered.
async function connectWs({ nsp = '/', auth, query } = {}) {
  const [peer] = await openWs({ query, pong: true });
  const prefix = nsp === '/' ? '' : `${nsp},`;
  peer.send(`40${prefix}${auth === undefined ? '' : JSON.stringify(auth)}`);
  const reply = await peer.next();
  if (!reply.startsWith(`40${prefix}{`)) throw new Error(`expected a CONNECT reply, got ${reply}`);
  const auth_ = await peer.next();
  if (!auth_.startsWith(`42${prefix}["auth",`)) throw new Error(`expected the auth event, got ${auth_}`);
  peer.sid = JSON.parse(reply.slice(2 + prefix.length)).sid;
  return peer;
}

// HTTP long-polling requests of one Engine.IO session.
// One HTTP request, its whole answer bounded in time: { status, body, headers }.
async function request(url, init = {}, ms = WAIT_MS) {
  const what = `${init.method || 'GET'} ${url.slice(URL.length)}`;
  const ac = new AbortController();
  try {
    return await within((async () => {
      const res = await fetch(url, { ...init, signal: ac.signal });
      return { status: res.status, body: await res.text(), headers: res.headers };
    })(), ms, what);
  } finally {
    ac.abort();
  }
}

async function poll(sid, { query = 'EIO=4&transport=polling', ms = WAIT_MS } = {}) {
  return request(eioUrl(`${query}&sid=${sid}`), {}, ms);
}

async function post(sid, body, { query = 'EIO=4&transport=polling', ms = WAIT_MS } = {}) {
  return request(eioUrl(`${query}&sid=${sid}`), { method: 'POST', body }, ms);
}

// A GET whose Engine.IO v4 pings are answered (POST "3") and left out: { status, packets }
// (packets of a 200 answer split at the record separator; the raw body otherwise).
async function pollPackets(sid, options = {}) {
  const res = await poll(sid, options);
  if (res.status !== 200) return { status: res.status, packets: [res.body] };
  const packets = res.body.split('\x1e');
  const pings = packets.filter((p) => p === '2').length;
  for (let i = 0; i < pings; i++) await post(sid, '3');
  return { status: res.status, packets: packets.filter((p) => p !== '2') };
}

async function openPolling(query = 'EIO=4&transport=polling') {
  const res = await request(eioUrl(query));
  if (res.status !== 200 || res.body[0] !== '0') throw new Error(`handshake failed: ${res.status} ${res.body}`);
  return JSON.parse(res.body.slice(1)).sid;
}

// A Socket.IO connection on long-polling: returns the Engine.IO sid after CONNECT to "/"
// and after reading the CONNECT reply and the auth event.
async function connectPolling(auth) {
  const sid = await openPolling();
  const posted = await post(sid, auth === undefined ? '40' : `40${JSON.stringify(auth)}`);
  if (posted.status !== 200) throw new Error(`CONNECT POST failed: ${posted.status}`);
  const packets = [];
  while (packets.length < 2) {
    const got = await pollPackets(sid);
    if (got.status !== 200) throw new Error(`poll failed: ${got.status} ${got.packets}`);
    packets.push(...got.packets.filter((p) => p !== '6'));
  }
  if (!packets[0].startsWith('40{') || !packets[1].startsWith('42["auth",')) {
    throw new Error(`unexpected connect answer ${JSON.stringify(packets)}`);
  }
  return sid;
}

// Starts another server like the one under test (SIO_SERVER_CMD, from the harness) on port
// (0: any); resolves with { port, url, stop() } once it logs "listening on <host>:<port>".
// stop() sends SIGTERM and resolves when the process has exited.
function startServer(port = 0) {
  const { spawn } = require('node:child_process');
  const cmd = JSON.parse(process.env.SIO_SERVER_CMD || 'null');
  if (!cmd) throw new Error('SIO_SERVER_CMD is not set (run through test_socketio_suites.py)');
  const proc = spawn(cmd[0], [...cmd.slice(1), '--port', String(port)],
                     { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  let log = '';
  const listening = new Promise((resolve, reject) => {
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      const m = /listening on \S+:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    });
    exited.then((code) => reject(new Error(`server exited (${code}) before listening: ${log}`)));
  });
  return within(listening, WAIT_MS, 'the server to listen').then((p) => ({
    port: p,
    url: `http://127.0.0.1:${p}`,
    stop() {
      proc.kill('SIGTERM');
      return within(exited, WAIT_MS, 'the server to exit');
    },
  }), (e) => { proc.kill('SIGKILL'); throw e; });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

module.exports = {
  URL, WS_URL, PATH, WAIT_MS, eioUrl, within, request, Peer, openWs, connectWs, poll, post, pollPackets,
  openPolling, connectPolling, startServer, sleep,
};
