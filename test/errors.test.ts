import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Errors } from '../src/errors.js';
import { projectRoot } from '../src/paths.js';

test('docs/ERRORS.md lists exactly the catalogue codes with their statuses', () => {
  const doc = readFileSync(path.join(projectRoot, 'docs', 'ERRORS.md'), 'utf8');
  const documented = new Map([...doc.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]));
  const catalogue = new Map(Object.values(Errors).map((e) => [e.code, e.statusCode]));
  assert.deepEqual(new Map([...documented].sort()), new Map([...catalogue].sort()));
});
