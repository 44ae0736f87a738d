// SPDX-License-Identifier: MIT
// A fake clock and a fake WebSocket for the unit tests: everything eddy.js touches of its
// environment, driven by hand.

export class FakeClock {
  constructor() {
    this.time = 1_000_000;
    this.timers = new Map();
    this.seq = 0;
    this.now = () => this.time;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { fn, at: this.time + Math.max(0, ms) });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
  }

  /** Lets ms pass, firing each timer when it is due, in order. */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let next = null;
      for (const entry of this.timers) {
        if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.time = Math.max(this.time, next[1].at);
      next[1].fn();
    }
    this.time = end;
  }

  /** Lets ms pass with no timer firing (a throttled or frozen page). */
  jump(ms) {
    this.time += ms;
  }
}

export class FakeEventTarget {
  constructor() {
    this.listeners = {};
  }
  addEventListener(type, fn) {
    (this.listeners[type] || (this.listeners[type] = [])).push(fn);
  }
  removeEventListener(type, fn) {
    this.listeners[type] = (this.listeners[type] || []).filter((l) => l !== fn);
  }
  dispatch(type) {
    for (const fn of this.listeners[type] || []) fn({ type });
  }
}

/** A WebSocket class recording its instances; the test plays the network and the server. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closeCalls = [];
      sockets.push(this);
    }
    send(data) {
      // As browsers do: throw while connecting, discard silently once closing.
      if (this.readyState === 0) throw new Error('InvalidStateError: still CONNECTING');
      if (this.readyState === 1) this.sent.push(data);
    }
    close(code, reason) {
      this.closeCalls.push([code, reason]);
      if (this.readyState < 2) this.readyState = 2;
    }
    // ---- the test's side ----
    serverOpen() {
      this.readyState = 1;
      if (this.onopen) this.onopen({ type: 'open' });
    }
    serverMessage(data) {
      if (this.onmessage) this.onmessage({ type: 'message', data });
    }
    serverClose(code = 1006, reason = '', wasClean = false) {
      this.readyState = 3;
      if (this.onclose) this.onclose({ type: 'close', code, reason, wasClean });
    }
    serverError() {
      if (this.onerror) this.onerror({ type: 'error' });
    }
  }
  FakeWebSocket.sockets = sockets;
  /** Sockets the client has not given up on (not closed by it, not closed by the server). */
  FakeWebSocket.live = () => sockets.filter((s) => s.readyState <= 1 && !s.closeCalls.length);
  return FakeWebSocket;
}

/** An environment for `new Eddy(url, {env})` plus the fakes behind it. */
export function fakeEnv(random = () => 0.5) {
  const clock = new FakeClock();
  const WebSocket = fakeWebSocketClass();
  const window = new FakeEventTarget();
  const document = new FakeEventTarget();
  document.visibilityState = 'visible';
  return {
    clock, WebSocket, window, document,
    env: {
      WebSocket, window, document, random,
      now: clock.now, setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout,
    },
  };
}

/** Records every lifecycle event of a client, in order. */
export function record(client) {
  const events = [];
  for (const type of ['open', 'message', 'close', 'reconnecting', 'error', 'drop'])
    client.addEventListener(type, (event) => events.push(event));
  return events;
}
