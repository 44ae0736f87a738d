// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

test('dist/eddy.js and www/eddy.js are up to date with src/eddy.js', () => {
  const out = spawnSync(process.execPath, [join(root, 'build.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
});

test('the plain-script build defines window.Eddy with the helpers', () => {
  const context = { window: null };
  context.window = context;
  vm.runInNewContext(readFileSync(join(root, 'dist', 'eddy.js'), 'utf8'), context);
  assert.equal(typeof context.Eddy, 'function');
  assert.equal(context.Eddy.encodeEvent('a', [1]), '42["a",1]');
  assert.equal(JSON.stringify(context.Eddy.decodeEvent('42["a",1]')), '{"event":"a","args":[1]}');
  assert.equal(context.Eddy.closeAction(1000), 'stop');
});
