// SPDX-License-Identifier: MIT
// A Node `ws` server for the client tests: an echo on 127.0.0.1 (port 0: any), with
// permessage-deflate when --deflate is given; a message "fragments" is answered with a
// three-fragment message, "close CODE REASON" closes with that code.
// Prints "listening PORT" once ready. Usage: node ws_server.js [--deflate]
'use strict';
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: process.argv.includes('--deflate'),
});
wss.on('listening', () => console.log(`listening ${wss.address().port}`));
wss.on('connection', (ws, req) => {
  console.log(`open ext=${req.headers['sec-websocket-extensions'] || ''}`);
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text === 'fragments') {
      ws.send('frag', { fin: false });
      ws.send('men', { fin: false });
      ws.send('ted', { fin: true });
    } else if (text !== null && text.startsWith('close ')) {
      const parts = text.split(' ');
      ws.close(Number(parts[1]), parts.slice(2).join(' '));
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
