// SPDX-License-Identifier: MIT
// Compiled (not run) by types.test.js: eddy.d.ts must describe how the client is used.
import Eddy, { Eddy as Named, encodeEvent, decodeEvent, closeAction, backoffDelay } from 'eddy-client';
import type { CloseEvent, DropEvent, EddyOptions } from 'eddy-client';

const options: EddyOptions = {
  minDelay: 500, maxDelay: 10000, factor: 2, stableAfter: 5000, connectTimeout: 10000,
  heartbeat: { interval: 25000, timeout: 10000, payload: 'ping' },
  queue: { maxCount: 10, maxBytes: 1024, maxAge: 1000, overflow: 'drop-oldest' },
  closeCodes: { 1000: 'reconnect', '4100-4199': 'stop', default: 'reconnect' },
};
const eddy: Named = new Eddy(() => 'ws://127.0.0.1/ws', options);
eddy.addEventListener('close', (e: CloseEvent) => {
  const again: boolean = e.willReconnect;
  const code: number = e.code;
  void again; void code;
});
eddy.addEventListener('drop', (e: DropEvent) => e.messages.length);
eddy.addEventListener('reconnecting', (e) => e.attempt + e.delay);
eddy.on('message', (data: unknown) => data).off('message');
const sent: boolean = eddy.emit('chat', { text: 'hi' }, 2) && eddy.send(new Uint8Array(2));
const state: 'connecting' | 'open' | 'reconnecting' | 'closed' = eddy.state;
const retryAt: number | null = eddy.retryAt;
const frame: string = encodeEvent('a', [1]);
const packet = decodeEvent(frame);
if (packet) packet.event.toUpperCase();
const action: 'stop' | 'reconnect' = closeAction(1000, (code) => (code > 4000 ? 'stop' : undefined));
const delay: number = backoffDelay(1, { minDelay: 1, maxDelay: 2, factor: 2 }, Math.random);
eddy.close(1000, 'bye');
void sent; void state; void retryAt; void action; void delay;

// @ts-expect-error: the overflow policy is one of two words
const bad: EddyOptions = { queue: { overflow: 'drop-newest' } };
void bad;
