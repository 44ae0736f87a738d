// SPDX-License-Identifier: MIT
// Type declarations for eddy.js (hand-written; keep in step with src/eddy.js).

export type Message = string | ArrayBuffer | ArrayBufferView | Blob;

export type CloseAction = 'stop' | 'reconnect';

/** Codes (1000) or inclusive ranges ("4000-4099") to an action; `default` for the rest. */
export type CloseCodeTable = { [codeOrRange: string]: CloseAction };

export interface HeartbeatOptions {
  /** ms of inbound silence before a ping (or, without payload, before the timeout starts); 0: off. Default 0. */
  interval?: number;
  /** ms to wait for any inbound message after a ping (or after interval). Default 10000. */
  timeout?: number;
  /** The application ping message, e.g. "ping"; null: the server must send on its own. Default null. */
  payload?: Message | null;
}

export interface QueueOptions {
  /** Default 1000. */
  maxCount?: number;
  /** UTF-8 bytes for strings. Default 1048576. */
  maxBytes?: number;
  /** ms; older messages are dropped ('expired'), not sent. 0: no limit. Default 60000. */
  maxAge?: number;
  /** 'refuse': send() returns false; 'drop-oldest': make room. Default 'refuse'. */
  overflow?: 'refuse' | 'drop-oldest';
}

export interface EddyEnvironment {
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
  now?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  random?: () => number;
  window?: { addEventListener(type: string, fn: () => void): void; removeEventListener(type: string, fn: () => void): void } | null;
  document?: { visibilityState: string; addEventListener(type: string, fn: () => void): void; removeEventListener(type: string, fn: () => void): void } | null;
}

export interface EddyOptions {
  protocols?: string | string[];
  /** Default 'arraybuffer'. */
  binaryType?: BinaryType;
  /** Default 500. */
  minDelay?: number;
  /** Default 10000. */
  maxDelay?: number;
  /** Default 2. */
  factor?: number;
  /** ms a connection must stay open before the attempt counter resets. Default 5000. */
  stableAfter?: number;
  /** ms a socket may stay connecting before it is abandoned and retried. Default 10000. */
  connectTimeout?: number;
  heartbeat?: HeartbeatOptions;
  queue?: QueueOptions;
  /** Consulted before the defaults (1000, 1008, 4000-4099 stop; the rest reconnect). */
  closeCodes?: CloseCodeTable | ((code: number) => CloseAction | undefined) | null;
  /** Default true. */
  autoConnect?: boolean;
  /** Replaces the globals (tests, non-browser runtimes). */
  env?: EddyEnvironment;
}

export interface OpenEvent { type: 'open'; attempt: number }
export interface MessageEvent { type: 'message'; data: any }
export interface CloseEvent {
  type: 'close'; code: number; reason: string; wasClean: boolean; willReconnect: boolean;
}
export interface ReconnectingEvent { type: 'reconnecting'; attempt: number; delay: number }
export interface ErrorEvent { type: 'error'; error: unknown }
export interface DropEvent {
  type: 'drop'; reason: 'overflow' | 'expired' | 'closed' | 'stopped'; messages: Message[];
}

export interface EddyEventMap {
  open: OpenEvent;
  message: MessageEvent;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  error: ErrorEvent;
  drop: DropEvent;
}

export type EddyState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export class Eddy {
  constructor(url: string | (() => string), options?: EddyOptions);
  readonly url: string | (() => string);
  readonly state: EddyState;
  /** Failed attempts since the last stable connection. */
  readonly attempt: number;
  /** When the next attempt starts (ms since the epoch), while waiting; else null. */
  readonly retryAt: number | null;
  /** The live socket, or null. */
  readonly socket: WebSocket | null;
  readonly queueSize: number;
  readonly queueBytes: number;

  addEventListener<K extends keyof EddyEventMap>(type: K, listener: (event: EddyEventMap[K]) => void): void;
  removeEventListener<K extends keyof EddyEventMap>(type: K, listener: (event: EddyEventMap[K]) => void): void;

  /** Handlers for incoming 42["event",...args] frames. */
  on(event: string, handler: (...args: any[]) => void): this;
  off(event: string, handler?: (...args: any[]) => void): this;
  /** Sends 42["event",...args]; false when refused (see send). */
  emit(event: string, ...args: any[]): boolean;
  /** Sends now or queues; false when refused (closed, or the queue refuses it). */
  send(data: Message): boolean;

  connect(): void;
  close(code?: number, reason?: string): void;
  reconnect(): void;
  destroy(): void;
}

export function backoffDelay(attempt: number, options: { minDelay: number; maxDelay: number; factor: number }, random: () => number): number;
export function closeAction(code: number, closeCodes?: EddyOptions['closeCodes']): CloseAction;
export function encodeEvent(event: string, args: any[]): string;
export function decodeEvent(data: unknown): { event: string; args: any[] } | null;
export function messageBytes(data: unknown): number;

export default Eddy;
