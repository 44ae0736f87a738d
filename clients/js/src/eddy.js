// SPDX-License-Identifier: MIT
// eddy.js: a reconnecting WebSocket for browsers (and any runtime with a WebSocket class).
//
// Guarantees: at most one live socket at any moment; reconnection with exponential backoff
// and full jitter, the attempt counter reset only after a stable period; close codes sorted
// into "stop" and "reconnect"; an optional application heartbeat judged by timestamps (never
// by a timer firing on time: background tabs throttle timers); a bounded offline queue
// flushed in order on reconnect; Socket.IO-style `42["event",...]` helpers.

const DEFAULTS = {
  protocols: undefined,
  binaryType: 'arraybuffer',
  // Backoff: attempt n waits a uniform random delay in [minDelay, min(maxDelay, minDelay *
  // factor^n)]: the first retry 500-1000 ms, the ceiling doubling to 10 s (README.md).
  minDelay: 500,
  maxDelay: 10000,
  factor: 2,
  // The attempt counter resets only after a connection stayed open this long.
  stableAfter: 5000,
  // A socket still connecting after this long is abandoned and retried.
  connectTimeout: 10000,
  // Application heartbeat (browsers cannot send ping frames). Off unless interval > 0.
  heartbeat: { interval: 0, timeout: 10000, payload: null },
  queue: { maxCount: 1000, maxBytes: 1024 * 1024, maxAge: 60000, overflow: 'refuse' },
  // Close-code classes; `closeCodes` option entries are consulted before these.
  closeCodes: null,
  autoConnect: true,
};

const DEFAULT_CLOSE_CODES = { 1000: 'stop', 1008: 'stop', '4000-4099': 'stop', default: 'reconnect' };

const OPEN = 1;

// The Socket.IO EVENT packet prefix: Engine.IO message (4) + Socket.IO EVENT (2).
const EVENT_PREFIX = '42';

/** Bytes a message occupies on the wire (UTF-8 for strings), counted without allocating. */
export function messageBytes(data) {
  if (typeof data === 'string') {
    let bytes = 0;
    for (let i = 0; i < data.length; i++) {
      const c = data.charCodeAt(i);
      if (c < 0x80) bytes += 1;
      else if (c < 0x800) bytes += 2;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < data.length &&
               (data.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
        bytes += 4;
        i++;
      } else bytes += 3;
    }
    return bytes;
  }
  if (data == null) return 0;
  if (typeof data.byteLength === 'number') return data.byteLength;
  if (typeof data.size === 'number') return data.size; // Blob
  return 0;
}

/** The reconnect delay for attempt n (1-based), given random() in [0, 1). */
export function backoffDelay(attempt, options, random) {
  const ceiling = Math.min(options.maxDelay, options.minDelay * Math.pow(options.factor, attempt));
  const floor = Math.min(options.minDelay, ceiling);
  return Math.floor(floor + random() * (ceiling - floor));
}

function parseRange(key) {
  const m = /^(\d+)-(\d+)$/.exec(key);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function lookupCode(table, code) {
  if (!table) return undefined;
  if (Object.prototype.hasOwnProperty.call(table, code)) return table[code];
  for (const key of Object.keys(table)) {
    const range = parseRange(key);
    if (range && code >= range[0] && code <= range[1]) return table[key];
  }
  return undefined;
}

/** 'stop' or 'reconnect' for a close code, per the table (or function) then the defaults. */
export function closeAction(code, closeCodes) {
  if (typeof closeCodes === 'function') {
    const action = closeCodes(code);
    if (action === 'stop' || action === 'reconnect') return action;
    closeCodes = null;
  }
  return lookupCode(closeCodes, code) || lookupCode(DEFAULT_CLOSE_CODES, code) ||
         (closeCodes && closeCodes.default) || DEFAULT_CLOSE_CODES.default;
}

/** Encodes a Socket.IO-style event frame: 42["event",...args]. */
export function encodeEvent(event, args) {
  return EVENT_PREFIX + JSON.stringify([event, ...args]);
}

/** Decodes 42["event",...args] (an ack id after 42 is skipped); null if it is not one. */
export function decodeEvent(data) {
  if (typeof data !== 'string' || !data.startsWith(EVENT_PREFIX)) return null;
  let i = EVENT_PREFIX.length;
  while (i < data.length && data.charCodeAt(i) >= 48 && data.charCodeAt(i) <= 57) i++;
  if (data[i] !== '[') return null;
  let packet;
  try {
    packet = JSON.parse(data.slice(i));
  } catch (e) {
    return null;
  }
  if (!Array.isArray(packet) || typeof packet[0] !== 'string') return null;
  return { event: packet[0], args: packet.slice(1) };
}

function add(map, key, fn) {
  const list = map.get(key);
  if (list) list.push(fn);
  else map.set(key, [fn]);
}

function remove(map, key, fn) {
  const list = map.get(key);
  if (list) map.set(key, list.filter((f) => f !== fn));
}

function report(error) {
  // A throwing listener must not break the client: surface it without unwinding our state.
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else if (typeof console !== 'undefined') console.error(error);
}

export class Eddy {
  /**
   * @param url a ws:// or wss:// URL, or a function returning one (called per attempt, so a
   *        fresh token can go into the query).
   * @param options see DEFAULTS and README.md.
   */
  constructor(url, options = {}) {
    this.url = url;
    this.options = {
      ...DEFAULTS,
      ...options,
      heartbeat: { ...DEFAULTS.heartbeat, ...(options.heartbeat || {}) },
      queue: { ...DEFAULTS.queue, ...(options.queue || {}) },
    };
    const env = options.env || {};
    this._WebSocket = env.WebSocket || globalThis.WebSocket;
    this._now = env.now || (() => Date.now());
    this._setTimeout = env.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = env.clearTimeout || ((handle) => clearTimeout(handle));
    this._random = env.random || Math.random;
    this._window = env.window !== undefined ? env.window
      : (typeof window !== 'undefined' ? window : null);
    this._document = env.document !== undefined ? env.document
      : (typeof document !== 'undefined' ? document : null);

    this.state = 'closed';        // 'connecting' | 'open' | 'reconnecting' | 'closed'
    this.attempt = 0;             // failed attempts since the last stable connection
    this.retryAt = null;          // when the next attempt starts (ms timestamp), if waiting
    this.socket = null;           // the one live socket, or null
    this._openedAt = 0;
    this._connectStartedAt = 0;
    this._lastInbound = 0;
    this._pingSentAt = 0;         // 0: no ping outstanding
    this._timers = {};
    // Maps, not objects: a server may name an event "__proto__" or "constructor".
    this._listeners = new Map();
    this._handlers = new Map();
    this._queue = [];
    this._queueBytes = 0;

    this._onOnline = () => this._online();
    this._onVisibility = () => this._visible();
    if (this._window && this._window.addEventListener)
      this._window.addEventListener('online', this._onOnline);
    if (this._document && this._document.addEventListener)
      this._document.addEventListener('visibilitychange', this._onVisibility);

    if (this.options.autoConnect) this.connect();
  }

  // ---- lifecycle events: open, message, close, reconnecting, error, drop ----

  addEventListener(type, listener) {
    add(this._listeners, type, listener);
  }

  removeEventListener(type, listener) {
    remove(this._listeners, type, listener);
  }

  _fire(type, detail) {
    const event = { type, ...detail };
    for (const listener of (this._listeners.get(type) || []).slice()) {
      try {
        listener.call(this, event);
      } catch (e) {
        report(e);
      }
    }
  }

  // ---- application events: 42["event",...] ----

  on(event, handler) {
    add(this._handlers, event, handler);
    return this;
  }

  /** Removes one handler, or every handler of the event without one. */
  off(event, handler) {
    if (handler) remove(this._handlers, event, handler);
    else this._handlers.delete(event);
    return this;
  }

  emit(event, ...args) {
    return this.send(encodeEvent(event, args));
  }

  // ---- connection control ----

  /** Starts connecting (after close(), or with autoConnect: false). */
  connect() {
    if (this.state !== 'closed') return;
    this.attempt = 0;
    this._open();
  }

  /** Closes for good: no reconnect; the offline queue is dropped (a 'drop' event). */
  close(code = 1000, reason = '') {
    if (this.state === 'closed') return;
    const ws = this.socket;
    this._stopTimers();
    this._detach();
    this.state = 'closed';
    this.retryAt = null;
    if (ws) {
      try {
        ws.close(code, reason);
      } catch (e) {
        ws.close();
      }
    }
    this._dropAll('closed');
    this._fire('close', { code, reason, wasClean: true, willReconnect: false });
  }

  /** Drops the current socket (if any) and connects again now. */
  reconnect() {
    if (this.state === 'closed') return;
    this._lost(1000, 'reconnect requested', true, 0);
    if (this.state === 'reconnecting' && !this.socket) this._open();
  }

  /** Removes the online/visibilitychange listeners; closes. */
  destroy() {
    this.close();
    if (this._window && this._window.removeEventListener)
      this._window.removeEventListener('online', this._onOnline);
    if (this._document && this._document.removeEventListener)
      this._document.removeEventListener('visibilitychange', this._onVisibility);
  }

  // ---- sending and the offline queue ----

  get queueSize() {
    return this._queue.length;
  }

  get queueBytes() {
    return this._queueBytes;
  }

  /**
   * Sends now when open, else queues. Returns false when the message is refused (closed
   * for good, or the queue is full under overflow 'refuse', or it alone exceeds maxBytes).
   */
  send(data) {
    if (this.state === 'closed') return false;
    // Queued, not sent, once the socket is closing: a browser would discard it silently.
    if (this.state === 'open' && this._queue.length === 0 && this.socket.readyState === OPEN) {
      this.socket.send(data);
      return true;
    }
    return this._enqueue(data);
  }

  _enqueue(data) {
    const q = this.options.queue;
    const bytes = messageBytes(data);
    this._expire();
    if (bytes > q.maxBytes || q.maxCount <= 0) {
      this._fire('drop', { reason: 'overflow', messages: [data] });
      return false;
    }
    const full = () => this._queue.length + 1 > q.maxCount || this._queueBytes + bytes > q.maxBytes;
    if (full()) {
      if (q.overflow !== 'drop-oldest') {
        this._fire('drop', { reason: 'overflow', messages: [data] });
        return false;
      }
      const dropped = [];
      while (full()) dropped.push(this._shift());
      this._fire('drop', { reason: 'overflow', messages: dropped });
    }
    this._queue.push({ data, bytes, at: this._now() });
    this._queueBytes += bytes;
    return true;
  }

  _shift() {
    const item = this._queue.shift();
    this._queueBytes -= item.bytes;
    return item.data;
  }

  _expire() {
    const maxAge = this.options.queue.maxAge;
    if (!(maxAge > 0)) return;
    const oldest = this._now() - maxAge;
    const dropped = [];
    while (this._queue.length && this._queue[0].at < oldest) dropped.push(this._shift());
    if (dropped.length) this._fire('drop', { reason: 'expired', messages: dropped });
  }

  _dropAll(reason) {
    if (!this._queue.length) return;
    const dropped = this._queue.map((item) => item.data);
    this._queue = [];
    this._queueBytes = 0;
    this._fire('drop', { reason, messages: dropped });
  }

  _flush() {
    this._expire();
    // A listener may close or drop the socket mid-flush: stop then, keeping the rest.
    while (this._queue.length && this.state === 'open' && this.socket.readyState === OPEN)
      this.socket.send(this._shift());
  }

  // ---- the one live socket ----

  _open() {
    this._stopTimers();
    this.retryAt = null;
    this.state = this.attempt === 0 ? 'connecting' : 'reconnecting';
    const url = typeof this.url === 'function' ? this.url() : this.url;
    let ws;
    try {
      ws = new this._WebSocket(url, this.options.protocols);
    } catch (error) {
      // A malformed URL or a refused scheme: retrying the same URL cannot help.
      this._fire('error', { error });
      this.state = 'closed';
      this._dropAll('stopped');
      this._fire('close', { code: 1006, reason: String(error), wasClean: false,
                            willReconnect: false });
      return;
    }
    if (this.options.binaryType) ws.binaryType = this.options.binaryType;
    this.socket = ws;
    this._connectStartedAt = this._now();
    // _detach() unhooks these from a socket given up on, so its late events (close after
    // error, open after a connect timeout) never reach the client.
    ws.onopen = () => this._opened();
    ws.onmessage = (event) => this._inbound(event.data);
    ws.onerror = (error) => {
      this._fire('error', { error });
      // A close event normally follows; not every implementation sends one, so the socket is
      // given up now and its close, if it comes, is ignored.
      this._lost(1006, '', false);
    };
    ws.onclose = (event) => this._lost(event.code, event.reason, event.wasClean);
    const timeout = this.options.connectTimeout;
    if (timeout > 0) this._at('connect', this._connectStartedAt + timeout, () => {
      this._lost(1006, 'connect timeout', false);
    });
  }

  _opened() {
    const now = this._now();
    this.state = 'open';
    this._openedAt = now;
    this._lastInbound = now;
    this._pingSentAt = 0;
    this._clear('connect');
    this._fire('open', { attempt: this.attempt });
    if (this.state !== 'open') return; // a listener closed it
    this._flush();
    this._scheduleHeartbeat();
  }

  _inbound(data) {
    // Only timestamps here: the heartbeat timer reads them when it fires, so a message costs
    // no timer churn.
    this._lastInbound = this._now();
    this._pingSentAt = 0;
    this._fire('message', { data });
    const packet = decodeEvent(data);
    if (packet) {
      for (const handler of (this._handlers.get(packet.event) || []).slice()) {
        try {
          handler.apply(this, packet.args);
        } catch (e) {
          report(e);
        }
      }
    }
  }

  _detach() {
    const ws = this.socket;
    this.socket = null;
    if (ws) ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    return ws;
  }

  /** The live socket is gone (or given up): close it, then stop or schedule a retry. */
  _lost(code, reason, wasClean, delay) {
    const ws = this._detach();
    if (ws && ws.readyState <= OPEN) {
      try {
        ws.close();
      } catch (e) { /* already closing */ }
    }
    this._stopTimers();
    const now = this._now();
    if (this.state === 'open' && now - this._openedAt >= this.options.stableAfter) this.attempt = 0;
    const willReconnect = closeAction(code, this.options.closeCodes) === 'reconnect' ||
                          delay === 0;
    if (!willReconnect) {
      this.state = 'closed';
      this.retryAt = null;
      this._dropAll('stopped');
      this._fire('close', { code, reason, wasClean, willReconnect });
      return;
    }
    this.state = 'reconnecting';
    this.attempt++;
    if (delay === undefined) delay = backoffDelay(this.attempt, this.options, this._random);
    this.retryAt = now + delay;
    this._fire('close', { code, reason, wasClean, willReconnect });
    if (this.state !== 'reconnecting' || this.socket) return; // a listener acted
    this._fire('reconnecting', { attempt: this.attempt, delay });
    if (this.state !== 'reconnecting' || this.socket || this.retryAt === null) return;
    this._at('retry', this.retryAt, () => this._open());
  }

  // ---- timers: each judged by the clock when it fires, not by firing on time ----

  _at(name, when, fn) {
    this._clear(name);
    const arm = () => {
      const handle = this._setTimeout(() => {
        if (this._timers[name] !== handle) return;
        delete this._timers[name];
        if (this._now() < when) arm(); // fired early: wait for the rest
        else fn();
      }, Math.max(0, when - this._now()));
      this._timers[name] = handle;
    };
    arm();
  }

  _clear(name) {
    if (this._timers[name] !== undefined) {
      this._clearTimeout(this._timers[name]);
      delete this._timers[name];
    }
  }

  _stopTimers() {
    for (const name of Object.keys(this._timers)) this._clear(name);
  }

  _scheduleHeartbeat() {
    const hb = this.options.heartbeat;
    if (!(hb.interval > 0)) return;
    let when = this._lastInbound + hb.interval;
    if (hb.payload == null) when += hb.timeout;
    else if (this._pingSentAt) when = this._pingSentAt + hb.timeout;
    this._at('heartbeat', when, () => this._check());
  }

  /**
   * Liveness by timestamps. With a payload: after `interval` without inbound traffic a ping
   * is sent, and the connection is dead when nothing came in within `timeout` of it. Without
   * one the server must send something every `interval`: dead after interval + timeout of
   * silence. A check that runs much later than planned (a frozen or sleeping page, whose
   * pending network events may not have been delivered yet) pings again rather than judging.
   */
  _check(probe) {
    const hb = this.options.heartbeat;
    if (this.state !== 'open' || !(hb.interval > 0)) return;
    const now = this._now();
    if (hb.payload == null) {
      if (now - this._lastInbound >= hb.interval + hb.timeout) this._dead();
      else this._scheduleHeartbeat();
      return;
    }
    if (this._pingSentAt) {
      const due = this._pingSentAt + hb.timeout;
      if (now >= due && now - due <= hb.timeout) return this._dead();
      if (now < due) return this._scheduleHeartbeat();
      // Late beyond the timeout itself: probe again.
    } else if (!probe && now - this._lastInbound < hb.interval) {
      return this._scheduleHeartbeat();
    }
    this._pingSentAt = now;
    this.socket.send(hb.payload);
    this._scheduleHeartbeat();
  }

  _dead() {
    this._lost(1006, 'heartbeat timeout', false);
  }

  // ---- fast paths ----

  _online() {
    if (this.state === 'reconnecting' && this.retryAt !== null) {
      // The network is back: the backoff built up while it was away no longer applies.
      this.attempt = 0;
      this._open();
    } else if (this.state === 'open') {
      this._check(true);
    }
  }

  _visible() {
    if (!this._document || this._document.visibilityState !== 'visible') return;
    if (this.state === 'open') this._check(true);
    else if (this.state === 'reconnecting' && this.retryAt !== null && this._now() >= this.retryAt)
      this._open(); // the retry timer was throttled in the background
  }
}

export default Eddy;
