/** The V8 heap flags of src/runtime-flags.ts reach every launcher of the server (NODE_OPTIONS refuses them). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../src/paths.js';
import { kServerNodeFlags, missingServerNodeFlags } from '../src/runtime-flags.js';

const read = (file: string) => readFileSync(path.join(projectRoot, file), 'utf8');

test('missingServerNodeFlags names the flags execArgv lacks, whatever value or spelling it uses', () => {
  assert.deepEqual(missingServerNodeFlags([], ''), [...kServerNodeFlags]);
  assert.deepEqual(missingServerNodeFlags([...kServerNodeFlags, '--inspect'], ''), []);
  // An operator's own value counts as set; V8 accepts underscores too.
  assert.deepEqual(missingServerNodeFlags(['--max_semi_space_size=16', '--initial-old-space-size=512'], ''), []);
  assert.deepEqual(missingServerNodeFlags(['--max-semi-space-size=64'], ''), ['--initial-old-space-size=128']);
  // A flag that NODE_OPTIONS sets (as .npmrc does for npm scripts) is in effect though not in execArgv.
  assert.deepEqual(missingServerNodeFlags(['--initial-old-space-size=128'], ' --max-semi-space-size=64  --enable-source-maps'), []);
});

test('npm start, the container image and the closed-loop script start node with the flags', () => {
  const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start;
  const dockerCmd = read('deploy/Dockerfile').split('\n').find((l) => l.startsWith('CMD '));
  assert.ok(dockerCmd, 'the Dockerfile has a CMD');
  const cmd = JSON.parse(dockerCmd.slice(4)) as string[];
  const closedLoop = read('scripts/closed-loop.sh').split('\n').find((l) => l.includes('dist/src/main.js'));
  assert.ok(closedLoop, 'the closed-loop script starts the server');
  for (const flag of kServerNodeFlags) {
    assert.ok(start.split(' ').includes(flag), `package.json start has ${flag}: ${start}`);
    assert.ok(cmd.indexOf(flag) > 0 && cmd.indexOf(flag) < cmd.indexOf('dist/src/main.js'), `Dockerfile CMD has ${flag} before the script: ${dockerCmd}`);
    assert.ok(closedLoop.split(' ').includes(flag), `scripts/closed-loop.sh has ${flag}`);
  }
});
