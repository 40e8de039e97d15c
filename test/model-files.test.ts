/**
 * Files of the model repository are read whole, once, and only when they are regular files within
 * their size limit: what the loader hashed is what the workers load.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readManifest, readVerifiedModel } from '../src/models/manifest.js';
import { readRepositoryFile } from '../src/models/repository-files.js';
import type { RankerError } from '../src/errors.js';
import { makeRepo } from './helpers/fixture-repo.js';

function fixtureVersion(t: import('node:test').TestContext) {
  const repo = makeRepo();
  t.after(() => repo.cleanup());
  return path.join(repo.dir, 'feed-ctr', '1');
}

test('the model bytes come back only when their sha256 matches the manifest', async (t) => {
  const dir = fixtureVersion(t);
  const manifest = await readManifest(dir);
  const bytes = await readVerifiedModel(dir, manifest, 64 * 1024 * 1024);
  assert.deepEqual(Buffer.from(bytes), readFileSync(path.join(dir, 'model.onnx')));
  assert.equal(createHash('sha256').update(bytes).digest('hex'), manifest.model.sha256);
  writeFileSync(path.join(dir, 'model.onnx'), Buffer.concat([readFileSync(path.join(dir, 'model.onnx')), Buffer.from([0])]));
  await assert.rejects(readVerifiedModel(dir, manifest, 64 * 1024 * 1024), (e: RankerError) => e.code === 'MODEL_CHECKSUM_MISMATCH');
});

test('a model over MODEL_MAX_BYTES is refused before it is read', async (t) => {
  const dir = fixtureVersion(t);
  const manifest = await readManifest(dir);
  const size = readFileSync(path.join(dir, 'model.onnx')).length;
  await assert.rejects(readVerifiedModel(dir, manifest, size - 1), (e: RankerError) => {
    assert.equal(e.code, 'MODEL_LOAD_FAILED');
    assert.match(e.message, new RegExp(`cannot read model.onnx \\(${size} bytes, over MODEL_MAX_BYTES ${size - 1}\\)`));
    return true;
  });
  assert.equal((await readVerifiedModel(dir, manifest, size)).length, size, 'a model of exactly the limit is read');
});

test('a FIFO is refused at once instead of blocking the read', async (t) => {
  const dir = fixtureVersion(t);
  const fifo = path.join(dir, 'pipe');
  execFileSync('mkfifo', [fifo]);
  const started = Date.now();
  await assert.rejects(readRepositoryFile(fifo, { maxBytes: 1024, limitName: 'the limit' }), /not a regular file/);
  assert.ok(Date.now() - started < 5000);
  await assert.rejects(readRepositoryFile(path.join(dir, 'absent'), { maxBytes: 1024, limitName: 'the limit' }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
});
