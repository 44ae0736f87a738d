// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

test('eddy.d.ts type-checks a use of every part of the API (tsc --strict)', () => {
  assert.ok(existsSync(tsc), 'typescript is missing: npm ci --prefix clients/js (make test does)');
  const out = spawnSync(process.execPath, [
    tsc, '--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext',
    '--moduleResolution', 'nodenext', '--lib', 'es2022,dom',
    join(root, 'test', 'types.ts'),
  ], { encoding: 'utf8', cwd: root });
  assert.equal(out.status, 0, out.stdout + out.stderr);
});
