import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { npyHeader, npyValues, parseNpy, writeNpy, writeNpyInt64 } from '../world/npy.js';

test('npy v1.0 header: magic, version, 64-byte aligned, newline-terminated dict', () => {
  for (const shape of [[0], [7], [123456789], [3, 4]]) {
    const h = npyHeader('<f4', shape);
    assert.equal(h.subarray(0, 6).toString('latin1'), '\x93NUMPY');
    assert.equal(h[6], 1);
    assert.equal(h[7], 0);
    assert.equal(h.length % 64, 0);
    assert.equal(h.readUInt16LE(8), h.length - 10);
    assert.equal(h[h.length - 1], 0x0a);
    const text = h.subarray(10).toString('latin1');
    assert.match(text, /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(.*\), \} *\n$/);
  }
  assert.match(npyHeader('<i8', [5]).toString('latin1'), /'shape': \(5,\)/);
  assert.match(npyHeader('<i8', [5, 2]).toString('latin1'), /'shape': \(5, 2\)/);
});

test('int64 columns keep ids up to 2^53-1 exactly; chunked writes round-trip', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'world-npy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ids = [0, 1, 4294967295, 4294967296, 10_000_000_123, 2 ** 53 - 1];
  const n = 200_000;
  writeNpyInt64(join(dir, 'ids.npy'), [n], n, (i) => ids[i % ids.length] + (i % ids.length === 5 ? 0 : i));
  const parsed = parseNpy(readFileSync(join(dir, 'ids.npy')));
  assert.deepEqual(parsed.shape, [n]);
  const values = npyValues(parsed) as BigInt64Array;
  for (let i = 0; i < n; i += 997) {
    const expected = ids[i % ids.length] + (i % ids.length === 5 ? 0 : i);
    assert.equal(values[i], BigInt(expected));
  }
  writeNpy(join(dir, 'm.npy'), '<f4', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
  const m = parseNpy(readFileSync(join(dir, 'm.npy')));
  assert.deepEqual(m.shape, [2, 3]);
  assert.deepEqual(Array.from(npyValues(m) as Float32Array), [1, 2, 3, 4, 5, 6]);
});

test('numpy reads the files directly (skipped when no python3 with numpy)', (t) => {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import numpy'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.skip('no /usr/bin/python3 with numpy');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'world-npy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeNpyInt64(join(dir, 'a.npy'), [3], 3, (i) => [7, 2 ** 53 - 1, 4294967296][i]);
  writeNpy(join(dir, 'b.npy'), '|i1', [2, 2], Int8Array.from([1, -2, 3, -4]));
  writeNpy(join(dir, 'c.npy'), '<f8', [0], new Float64Array(0));
  const script = `import numpy as np, sys
a = np.load(sys.argv[1] + '/a.npy'); b = np.load(sys.argv[1] + '/b.npy'); c = np.load(sys.argv[1] + '/c.npy')
assert a.dtype == np.int64 and a.tolist() == [7, 2**53 - 1, 4294967296], a
assert b.dtype == np.int8 and b.shape == (2, 2) and b.tolist() == [[1, -2], [3, -4]], b
assert c.dtype == np.float64 and c.shape == (0,)
print('ok')`;
  const run = spawnSync('/usr/bin/python3', ['-c', script, dir], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'ok');
});
