// SPDX-License-Identifier: MIT
// Drives socket.io-client 4.8 sockets for a Python test: one JSON command per line on
// stdin, one JSON report per line on stdout. The server is argv[2] (http://127.0.0.1:PORT).
//   {"cmd":"connect","name":"a","nsp":"/","auth":{...},"query":{...},"transports":[...],
//    "url":"http://..." (optional: another server than argv[2]),
//    "answer":... (optional: events asking for an ack are answered (answer, name))}
//     -> {"name":"a","type":"connect","id":"...","pid":"..." (with recovery on)} or
//        {"name":"a","type":"connect_error",
//        "message":"...","data":...}
//   {"cmd":"emit","name":"a","event":"join","args":[...],"ack":true}
//     -> {"name":"a","type":"ack","event":"join","args":[...]} (with "ack": true)
//   {"cmd":"close","name":"a"}  {"cmd":"exit"}
//   {"cmd":"drop","name":"a"}: closes the socket's transport as a lost network would (with
//     "reconnection": true at connect, the client reconnects and may recover: its connect
//     report then has "recovered": true)
// Every event a socket receives: {"name":"a","type":"event","event":"...","args":[...]};
// disconnects: {"name":"a","type":"disconnect","reason":"..."}. No reconnection unless asked;
// the process exits on "exit", on stdin's end, or after 60 s whatever happens.
'use strict';
const readline = require('readline');
const { io } = require('socket.io-client');

const url = process.argv[2];
const sockets = new Map();
const report = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
setTimeout(() => process.exit(3), 60000).unref();

function connect(c) {
  const socket = io((c.url || url) + (c.nsp || '/'), {
    reconnection: Boolean(c.reconnection), reconnectionDelay: 100, forceNew: true, timeout: 5000,
    auth: c.auth, query: c.query, transports: c.transports,
  });
  sockets.set(c.name, socket);
  socket.on('connect', () =>
    report({ name: c.name, type: 'connect', id: socket.id, recovered: socket.recovered, pid: socket._pid }));
  socket.on('connect_error', (err) =>
    report({ name: c.name, type: 'connect_error', message: err.message, data: err.data }));
  socket.on('disconnect', (reason) => report({ name: c.name, type: 'disconnect', reason }));
  socket.onAny((event, ...args) => {
    // With "answer" at connect, an event asking for an ack gets [answer, name] back.
    if (typeof args[args.length - 1] === 'function') {
      const ack = args.pop();
      if (c.answer !== undefined) ack(c.answer, c.name);
    }
    report({ name: c.name, type: 'event', event, args });
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const c = JSON.parse(line);
  const socket = sockets.get(c.name);
  if (c.cmd === 'connect') {
    connect(c);
  } else if (c.cmd === 'emit' && c.ack) {
    socket.timeout(5000).emit(c.event, ...(c.args || []), (err, ...args) =>
      report({ name: c.name, type: 'ack', event: c.event, error: err ? err.message : null, args }));
  } else if (c.cmd === 'emit') {
    socket.emit(c.event, ...(c.args || []));
  } else if (c.cmd === 'drop') {
    socket.io.engine.close();
  } else if (c.cmd === 'close') {
    socket.close();
  } else if (c.cmd === 'exit') {
    for (const s of sockets.values()) s.close();
    process.exit(0);
  }
});
rl.on('close', () => process.exit(0));
