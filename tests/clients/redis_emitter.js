// SPDX-License-Identifier: MIT
// Publishes broadcasts with the real npm @socket.io/redis-emitter (and the npm redis client),
// as a Node backend would, for a Python test. argv[2] is the Redis URL (redis://host:port).
// One JSON command per line on stdin:
//   {"rooms":["r"],"except":["muted"],"nsp":"/","event":"news","args":[1,{"n":"ü"}]}
// prints "ok" once Redis has processed that PUBLISH (a PING after it on the same connection
// answered). The packages come from bench/scaleout/node_modules (npm ci --prefix
// bench/scaleout). Exits on stdin's end or after 60 s whatever happens.
'use strict';
const path = require('path');
const readline = require('readline');
const modules = path.join(__dirname, '..', '..', 'bench', 'scaleout', 'node_modules');
const { Emitter } = require(path.join(modules, '@socket.io', 'redis-emitter'));
const { createClient } = require(path.join(modules, 'redis'));

setTimeout(() => process.exit(3), 60000).unref();

async function main() {
  const client = createClient({ url: process.argv[2] });
  client.on('error', (e) => {
    process.stderr.write(`redis: ${e.message}\n`);
    process.exit(2);
  });
  await client.connect();
  const emitter = new Emitter(client);
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const c = JSON.parse(line);
    let op = emitter.of(c.nsp || '/');
    for (const room of c.rooms || []) op = op.to(room);
    for (const room of c.except || []) op = op.except(room);
    op.emit(c.event, ...(c.args || []));
    await client.ping(); // the publish went first on this connection: it was processed
    process.stdout.write('ok\n');
  }
  await client.quit();
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});
