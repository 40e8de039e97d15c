/** A version's manifest can cap its cross-request batches (`serving.maxCandidatesPerBatch`). */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { InferencePool } from '../src/models/pool.js';
import { loadConfig } from '../src/config.js';
import { compileFeaturePlan } from '../src/features/plan.js';
import { encodeRequest } from '../src/features/encode.js';
import { fixtureDir, fixtureManifest } from './helpers/fixture-repo.js';
import { sampleRequest } from './helpers/app.js';

/** Requests per batch when five 6-candidate requests arrive at once at one worker that takes one batch at a time. */
async function batchesOf(t: TestContext, maxCandidatesPerBatch: number | undefined): Promise<number[]> {
  const manifest = fixtureManifest('feed-ctr', 1, 'feed', 'ctr', 'unused');
  if (maxCandidatesPerBatch !== undefined) manifest.serving = { ...manifest.serving, maxCandidatesPerBatch };
  const plan = compileFeaturePlan(manifest);
  const requestsPerBatch: number[] = [];
  const pool = new InferencePool({ ...loadConfig({}, { logLevel: 'silent' }), poolSize: 1, workerQueueDepth: 1 }, { batch: (_key, requests) => requestsPerBatch.push(requests) });
  t.after(() => pool.close());
  await pool.start();
  await pool.load('feed-ctr@1', path.join(fixtureDir, 'v1.onnx'));
  const scores = await Promise.all([1, 2, 3, 4, 5].map((seed) => pool.score('feed-ctr@1', plan, encodeRequest(plan, sampleRequest(6, 5, seed)), 'p', performance.now() + 5000, 5000)));
  assert.ok(scores.every((s) => s.length === 6));
  return requestsPerBatch;
}

test('batches stop at the manifest\'s maxCandidatesPerBatch; without it, at BATCH_MAX_CANDIDATES', async (t) => {
  // The first request goes out alone (the worker was idle); the other four wait for it.
  assert.deepEqual(await batchesOf(t, undefined), [1, 4]);
  // 6 + 6 > 10: one request per batch.
  assert.deepEqual(await batchesOf(t, 10), [1, 1, 1, 1, 1]);
  assert.deepEqual(await batchesOf(t, 12), [1, 2, 2]);
  // A request larger than the cap is still served, alone: requests are never split.
  assert.deepEqual(await batchesOf(t, 4), [1, 1, 1, 1, 1]);
});
