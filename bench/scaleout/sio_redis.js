// SPDX-License-Identifier: MIT
// The Socket.IO test application of tests/clients/sio_reference.js (socket.io 4.8 from
// tests/clients) with @socket.io/redis-adapter on the `redis` client (both pinned in this
// directory's package-lock.json): Node's side of bench/scaleout/run. Several of these on one
// Redis are one cluster, as examples/socketio --redis nodes are.
//
// Usage: node sio_redis.js --redis redis://127.0.0.1:PORT [sio_reference.js's options]
'use strict';
const { createClient } = require('redis');
const { createAdapter } = require('@socket.io/redis-adapter');
const reference = require('../../tests/clients/sio_reference.js');

async function main() {
  const opts = reference.parseArgs(process.argv, { '--redis': 'redis' });
  if (!opts.redis) {
    console.error(`usage: ${process.argv[1]} --redis URL [sio_reference.js options]`);
    process.exit(2);
  }
  const pub = createClient({ url: opts.redis });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) client.on('error', (err) => console.error(`redis: ${err}`));
  await Promise.all([pub.connect(), sub.connect()]);
  const { httpServer } = reference.createServer(opts, { adapter: createAdapter(pub, sub) });
  reference.listen(httpServer, opts);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
