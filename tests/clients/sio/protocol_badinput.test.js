// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 2000 --ping-timeout 5000 --connect-timeout 1000
// Bad input (issue 11, "Tests"): every malformed packet class, oversized payloads on both
// transports, too many attachments, a client that never sends CONNECT, a polling session
// used from two places, unknown sid. Each answer asserted here is the one measured against
// the reference (socket.io 4.8.4 / engine.io 6.6): on WebSocket the server closes without
// sending anything first, with a close frame that has no status code (the client sees 1005),
// except where ws itself enforces a limit (1009 too big, 1007 invalid UTF-8). The heartbeat
// is slow and tolerant here so that megabyte payloads on a loaded machine never race a ping
// timeout; connectTimeout is short for the never-CONNECT case.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./helpers');

const MAX = 1000000;  // maxHttpBufferSize
const UNKNOWN_SID = { code: 1, message: 'Session ID unknown' };
const BIG_MS = 15000;  // megabyte payloads through a possibly loaded machine

// After a connected "/", sends the frames and expects the server to close with `code`.
async function closesAfter(frames, code = 1005, peer, ms = H.WAIT_MS) {
  peer = peer || await H.connectWs();
  for (const frame of frames) peer.send(frame);
  assert.equal(await peer.closedByServer(ms), code, `after ${JSON.stringify(frames.map((f) => String(f).slice(0, 60)))}`);
}

describe('malformed Engine.IO packets on WebSocket', () => {
  for (const [name, frame] of [
    ['an unknown packet type', '9'],
    ['a packet type that is not a digit', 'abc'],
    ['an empty text frame', ''],
    ['a ping from the client (Engine.IO v4 pings come from the server)', '2'],
  ]) {
    it(`closes upon ${name}`, () => closesAfter([frame]));
  }

  it('closes with 1007 upon invalid UTF-8 in a text frame', async () => {
    const peer = await H.connectWs();
    peer.send(Buffer.from([0x34, 0x32, 0xff]), { binary: false });
    assert.equal(await peer.closedByServer(), 1007);
  });
});

describe('malformed Socket.IO packets on WebSocket', () => {
  const cases = [
    ['an unknown packet type', '47'],
    ['a packet type that is not a digit', '4abc'],
    ['an empty packet', '4'],
    ['invalid JSON', '42["message"'],
    ['an EVENT payload that is an object', '42{}'],
    ['an EVENT payload that is an empty array', '42[]'],
    ['an EVENT name that is an object', '42[{}]'],
    ['an ACK payload that is not an array', '43{}'],
    ['a DISCONNECT with a payload', '41{}'],
    ['a CONNECT payload that is a string', '40/custom,"x"'],
    ['a CONNECT payload that is an array', '40/custom,[1]'],
    ['a CONNECT_ERROR from the client', '44{"message":"x"}'],
    ['an ack id that is not a number', '42abc["message-with-ack",1]'],
    ['a namespace not followed by a comma', '42/custom["message"]'],
    ['more attachments than 10', '4511-["message"]'],
    ['a negative attachment count', '45-1-["message"]'],
    ['an attachment count without its dash', '452["message"]'],
  ];
  for (const name of ['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener']) {
    cases.push([`the reserved event name "${name}"`, `42["${name}"]`]);
  }
  for (const [name, frame] of cases) {
    it(`closes upon ${name}: ${frame}`, () => closesAfter([frame]));
  }

  it('closes upon a text packet while attachments are awaited', () =>
    closesAfter(['451-["message",{"_placeholder":true,"num":0}]', '42["message",1]']));

  it('closes upon a binary frame when no attachment is awaited', () => closesAfter([Buffer.from([1, 2, 3])]));

  it('closes upon a placeholder number beyond the attachments', () =>
    closesAfter(['451-["message",{"_placeholder":true,"num":5}]', Buffer.from([1])]));

  it('takes exactly 10 attachments', async () => {
    const peer = await H.connectWs();
    const placeholders = Array.from({ length: 10 }, (_, i) => `{"_placeholder":true,"num":${i}}`);
    peer.send(`4510-["message",${placeholders.join(',')}]`);
    for (let i = 0; i < 10; i++) peer.send(Buffer.from([i]));
    const got = await peer.take(11);
    assert.equal(got[0], `4510-["message-back",${placeholders.join(',')}]`);
    assert.deepEqual(got.slice(1), Array.from({ length: 10 }, (_, i) => Buffer.from([i])));
    peer.close();
  });
});

describe('namespace state violations on WebSocket', () => {
  it('closes upon an EVENT before any CONNECT', async () => {
    const [peer] = await H.openWs({ pong: true });
    await closesAfter(['42["message",1]'], 1005, peer);
  });

  it('closes upon a binary frame before any CONNECT', async () => {
    const [peer] = await H.openWs({ pong: true });
    await closesAfter([Buffer.from([1])], 1005, peer);
  });

  it('closes upon a DISCONNECT before any CONNECT', async () => {
    const [peer] = await H.openWs({ pong: true });
    await closesAfter(['41'], 1005, peer);
  });

  it('closes upon a namespace without its leading slash', async () => {
    const [peer] = await H.openWs({ pong: true });
    await closesAfter(['40custom,'], 1005, peer);
  });

  it('closes upon a second CONNECT to the same namespace', () => closesAfter(['40']));

  it('closes upon an EVENT for a namespace the client has not joined', () =>
    closesAfter(['42/custom,["message",1]']));

  // The reference handles a DISCONNECT one tick later than the packets after it in the same
  // read, so a round trip on another namespace orders them first.
  it('closes upon an EVENT for a namespace the client has left', async () => {
    const peer = await H.connectWs();
    peer.send('40/custom,');
    await peer.take(2);
    peer.send('41');
    peer.send('42/custom,["message",1]');
    assert.equal(await peer.next(), '42/custom,["message-back",1]');
    await closesAfter(['42["message",1]'], 1005, peer);
  });

  it('closes upon an EVENT for a namespace that was refused', async () => {
    const [peer] = await H.openWs({ pong: true });
    peer.send('40/random,');
    assert.equal(await peer.next(), '44/random,{"message":"Invalid namespace"}');
    await closesAfter(['42/random,["message",1]'], 1005, peer);
  });
});

describe('oversized payloads (maxHttpBufferSize 1e6)', () => {
  const overhead = '42["message",""]'.length;

  it('takes a WebSocket message of exactly maxHttpBufferSize bytes', async () => {
    const peer = await H.connectWs();
    const data = 'x'.repeat(MAX - overhead);
    peer.send(`42["message","${data}"]`);
    assert.equal(await peer.next(BIG_MS), `42["message-back","${data}"]`);
    peer.close();
  });

  it('closes with 1009 upon a WebSocket text message one byte larger', () =>
    closesAfter([`42["message","${'x'.repeat(MAX - overhead + 1)}"]`], 1009, undefined, BIG_MS));

  it('closes with 1009 upon a binary attachment larger than maxHttpBufferSize', () =>
    closesAfter(['451-["message",{"_placeholder":true,"num":0}]', Buffer.alloc(MAX + 1)], 1009, undefined,
                BIG_MS));

  it('takes a polling POST body of exactly maxHttpBufferSize bytes', async () => {
    const sid = await H.connectPolling();
    const data = 'x'.repeat(MAX - overhead);
    const pushed = await H.post(sid, `42["message","${data}"]`, { ms: BIG_MS });
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    const polled = await H.pollPackets(sid, { ms: BIG_MS });
    assert.deepEqual(polled.packets, [`42["message-back","${data}"]`]);
  });

  it('answers 413 with an empty body to a larger POST and closes the session', async () => {
    for (const body of [`42["message","${'x'.repeat(MAX - overhead + 1)}"]`,
                        `b${Buffer.alloc(750001).toString('base64')}`]) {
      const sid = await H.connectPolling();
      const pushed = await H.post(sid, body, { ms: BIG_MS });
      assert.deepEqual([pushed.status, pushed.body], [413, '']);
      const polled = await H.poll(sid);
      assert.equal(polled.status, 400);
      assert.deepEqual(JSON.parse(polled.body), UNKNOWN_SID);
    }
  });
});

describe('bad input on HTTP long-polling', () => {
  it('answers 400 "Session ID unknown" to GET and POST with an unknown sid', async () => {
    for (const res of [await H.poll('unknownsid0000000000'), await H.post('unknownsid0000000000', '40')]) {
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('content-type'), 'application/json');
      assert.deepEqual(JSON.parse(res.body), UNKNOWN_SID);
    }
  });

  it('refuses a WebSocket with an unknown sid with HTTP 400', async () => {
    const peer = new H.Peer(H.eioUrl('EIO=4&transport=websocket&sid=unknownsid0000000000', true));
    assert.equal(await peer.closedByServer(), null);
    assert.deepEqual([peer.httpStatus, peer.httpBody], [400, 'Session ID unknown']);
  });

  // Engine.IO-level errors end the session at once: the next GET finds no session.
  for (const [name, body] of [['an invalid packet', 'abc'], ['a ping from the client', '2']]) {
    it(`accepts the POST, then closes the session, upon ${name}`, async () => {
      const sid = await H.connectPolling();
      const pushed = await H.post(sid, body);
      assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
      const polled = await H.poll(sid);
      assert.equal(polled.status, 400);
      assert.deepEqual(JSON.parse(polled.body), UNKNOWN_SID);
    });
  }

  // Socket.IO-level errors close the Engine.IO session: the next GET gets the close packet
  // (the reference sends "6\x1e1", a noop before it), the one after finds no session.
  for (const [name, body] of [['an invalid Socket.IO packet', '42{}'],
                              ['more attachments than 10', '4511-["message"]'],
                              ['an EVENT for a namespace not joined', '42/custom,["message",1]']]) {
    it(`closes the session upon ${name}`, async () => {
      const sid = await H.connectPolling();
      const pushed = await H.post(sid, body);
      assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
      const polled = await H.poll(sid);
      assert.equal(polled.status, 200);
      assert.match(polled.body, /^(6\x1e)?1$/);
      const after = await H.poll(sid);
      assert.equal(after.status, 400);
      assert.deepEqual(JSON.parse(after.body), UNKNOWN_SID);
    });
  }

  it('ends a held GET with a close packet when a bad packet closes the session', async () => {
    const sid = await H.connectPolling();
    const held = H.poll(sid);
    await H.sleep(50);  // let the GET be held before the POST
    const pushed = await H.post(sid, '42{}');
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    const polled = await held;
    assert.deepEqual([polled.status, polled.body], [200, '1']);
  });

  it('closes a polling session that never sends CONNECT after connectTimeout', async () => {
    const start = Date.now();
    const sid = await H.openPolling();
    let polled;
    for (let i = 0; i < 10; i++) {
      polled = await H.poll(sid);
      if (polled.body !== '2') break;
      await H.post(sid, '3');
    }
    assert.deepEqual([polled.status, polled.body], [200, '1']);
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 900 && elapsed < 2500, `closed after ${elapsed} ms`);
    const after = await H.poll(sid);
    assert.deepEqual(JSON.parse(after.body), UNKNOWN_SID);
  });

  it('closes the session used from two places (two concurrent GETs)', async () => {
    const sid = await H.connectPolling();
    const both = await Promise.all([H.poll(sid), H.poll(sid)]);
    both.sort((a, b) => a.status - b.status);
    assert.deepEqual(both.map((r) => [r.status, r.body]), [[200, '1'], [400, '']]);
    assert.equal(both[1].headers.get('content-type'), null);
    const after = await H.poll(sid);
    assert.equal(after.status, 400);
    assert.deepEqual(JSON.parse(after.body), UNKNOWN_SID);
  });
});
