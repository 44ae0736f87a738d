// SPDX-License-Identifier: MIT
// sio-server: --ping-interval 2000 --ping-timeout 5000
// Engine.IO v3 long-polling at the byte level, as socket.io-client 2.x speaks it: payloads
// framed `<length>:<packet>` where length counts UTF-16 code units, binary either base64
// (`b4...`, with b64=1) or in the binary payload form (0x00/0x01, the length as digit bytes,
// 0xff, the packet; application/octet-stream), the implicit `40`, client pings, the upgrade.
// The heartbeat is tolerant so that no test races a ping timeout on a loaded machine.
'use strict';
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const H = require('./helpers');

const Q = 'EIO=3&transport=polling';
const UNKNOWN_SID = { code: 1, message: 'Session ID unknown' };

// The v3 text payload of packets.
function enc(packets) {
  return packets.map((p) => `${p.length}:${p}`).join('');
}

async function getRaw(sid, extra = '') {
  const url = H.eioUrl(`${Q}${extra}&sid=${sid}`);
  const res = await H.within(fetch(url).then(async (r) => ({
    status: r.status, type: r.headers.get('content-type'), bytes: Buffer.from(await r.arrayBuffer()),
  })), H.WAIT_MS, `GET ${url}`);
  res.text = res.bytes.toString('utf8');
  return res;
}

// A v3 polling session past its open packet and implicit connect: its sid.
async function open(extra = '') {
  const res = await H.request(H.eioUrl(Q + extra));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; charset=UTF-8');
  const m = /^(\d+):0(\{.*\})$/.exec(res.body);
  assert.ok(m, res.body);
  assert.equal(Number(m[1]), m[2].length + 1);
  const value = JSON.parse(m[2]);
  assert.deepEqual(Object.keys(value).sort(), ['maxPayload', 'pingInterval', 'pingTimeout', 'sid', 'upgrades']);
  assert.deepEqual(value.upgrades, ['websocket']);
  const connect = await getRaw(value.sid, extra);
  assert.equal(connect.status, 200);
  assert.equal(connect.text, enc(['40', '42["auth",{}]']));
  return value.sid;
}

describe('Engine.IO v3 long-polling', () => {
  it('opens with a framed open packet, then the implicit connect and the auth event', async () => {
    await open();
  });

  it('counts payload lengths in UTF-16 code units', async () => {
    const sid = await open();
    const pushed = await H.post(sid, enc(['42["message","h€llo 😀"]']), { query: Q });
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    const polled = await getRaw(sid);
    assert.equal(polled.type, 'text/plain; charset=UTF-8');
    assert.equal(polled.text, enc(['42["message-back","h€llo 😀"]']));
    assert.ok(polled.text.startsWith('29:'), polled.text);  // 33 bytes of UTF-8
  });

  it('answers a client ping with a pong', async () => {
    const sid = await open();
    const pushed = await H.post(sid, '1:2', { query: Q });
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    assert.equal((await getRaw(sid)).text, '1:3');
  });

  it('sends binary attachments base64-encoded when the client asks b64=1', async () => {
    const sid = await open('&b64=1');
    const pushed = await H.post(sid, enc(['451-["message",{"_placeholder":true,"num":0}]', 'b4AQID']),
                                { query: `${Q}&b64=1` });
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    const polled = await getRaw(sid, '&b64=1');
    assert.equal(polled.type, 'text/plain; charset=UTF-8');
    assert.equal(polled.text, enc(['451-["message-back",{"_placeholder":true,"num":0}]', 'b4AQID']));
  });

  it('sends the binary payload form to a client that takes binary', async () => {
    const sid = await open();
    const pushed = await H.post(sid, enc(['451-["message",{"_placeholder":true,"num":0}]', 'b4AQID']), { query: Q });
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    const polled = await getRaw(sid);
    assert.equal(polled.type, 'application/octet-stream');
    const text = '451-["message-back",{"_placeholder":true,"num":0}]';
    assert.deepEqual(polled.bytes, Buffer.concat([
      Buffer.from([0x00, 5, 0, 0xff]), Buffer.from(text),  // string, 50 characters
      Buffer.from([0x01, 4, 0xff, 0x04, 1, 2, 3]),         // binary, 4 bytes: message type + data
    ]));
  });

  it('closes the session upon a payload whose length is wrong', async () => {
    const sid = await open();
    const pushed = await H.post(sid, '99:42', { query: Q });
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    const polled = await getRaw(sid);
    assert.equal(polled.status, 400);
    assert.deepEqual(JSON.parse(polled.text), UNKNOWN_SID);
  });

  it('closes the session upon a malformed Socket.IO packet', async () => {
    const sid = await open();
    const pushed = await H.post(sid, enc(['42abc']), { query: Q });
    assert.deepEqual([pushed.status, pushed.body], [200, 'ok']);
    const polled = await getRaw(sid);
    assert.equal(polled.status, 200);
    assert.match(polled.text, /^(1:6)?1:1$/);  // the reference: a noop, then the close
    const after = await getRaw(sid);
    assert.deepEqual(JSON.parse(after.text), UNKNOWN_SID);
  });

  it('upgrades to WebSocket with 2probe, a noop to end the GET, then 5', async () => {
    const sid = await open();
    const peer = new H.Peer(H.eioUrl(`EIO=3&transport=websocket&sid=${sid}`, true));
    await H.within(peer.opened, H.WAIT_MS, 'the upgrade');
    peer.send('2probe');
    assert.equal(await peer.next(), '3probe');
    assert.equal((await getRaw(sid)).text, '1:6');
    peer.send('5');
    peer.send('42["message","over ws"]');
    assert.equal(await peer.next(), '42["message-back","over ws"]');
    peer.send('451-["message",{"_placeholder":true,"num":0}]');
    peer.send(Buffer.from([4, 9]));
    assert.deepEqual(await peer.take(2), ['451-["message-back",{"_placeholder":true,"num":0}]', Buffer.from([4, 9])]);
    peer.close();
  });
});
