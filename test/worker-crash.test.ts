import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fixtureDir, makeRepo } from './helpers/fixture-repo.js';
import { kSlowModelsLoad, sampleRequest, startApp, startAppWithRepo } from './helpers/app.js';
import { assembleBatch, encodeRequest } from '../src/features/encode.js';
import type { RankerError } from '../src/errors.js';

test('a worker that dies fails the batches sent to it with WORKER_EXITED and is replaced with every model reloaded', async (t) => {
  const { app } = await startAppWithRepo(t, { poolSize: 1 });
  const plan = app.ranker.registry.get('feed-ctr', 1)!.plan!;
  // The worker exits at this point of its message stream (as a crash would); the batch posted right
  // after it lands on a worker that is gone.
  const exited = app.ranker.pool.recycleWorker(0, 1);
  const lost = app.ranker.pool.runFeeds('feed-ctr@1', assembleBatch(plan, [encodeRequest(plan, sampleRequest(50, 20, 1))]));
  await assert.rejects(lost, (error: RankerError) => error.code === 'WORKER_EXITED' && error.statusCode === 500);
  await exited;
  // The only worker is gone and its replacement is still reloading: not ready for traffic.
  assert.equal(app.ranker.pool.readyWorkers, 0);
  assert.equal((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode, 503);
  await app.ranker.pool.whenReady();
  assert.equal((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode, 200);
  const ok = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(10, 5, 2) });
  assert.equal(ok.statusCode, 200, ok.body);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /inference_worker_exits_total 1/);
});

// A re-publish (rsync, a rename over the file) replaced a ready version's model.onnx after its gate:
// a replacement worker reloaded the file by path, unchecked, and served what the gate never saw.
test('a replacement worker loads the bytes the gate passed, not what model.onnx holds by then', async (t) => {
  const { app, repo } = await startAppWithRepo(t, { poolSize: 1 });
  const body = sampleRequest(20, 150, 7);
  const before = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(before.statusCode, 200, before.body);
  const dir = path.join(repo, 'feed-ctr', '1');
  copyFileSync(path.join(fixtureDir, 'nan.onnx'), path.join(repo, 'replacement.onnx'));
  renameSync(path.join(repo, 'replacement.onnx'), path.join(dir, 'model.onnx'));
  await app.ranker.pool.recycleWorker(0);
  await app.ranker.pool.whenReady();
  const after = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(after.statusCode, 200, after.body);
  assert.deepEqual(after.json().ranked, before.json().ranked, 'the same session as before the worker was replaced');
});

test('closing the app while a slow batch runs waits for it instead of aborting the process', async (t) => {
  const repo = makeRepo([
    { name: 'feed-ctr', version: 1, variant: 'slow' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  t.after(() => repo.cleanup());
  const app = await startApp(repo.dir, kSlowModelsLoad);
  const body = sampleRequest(1500, 20, 3);
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const plan = app.ranker.registry.get('feed-ctr', 1)!.plan!;
  const inflight = app.ranker.pool.runFeeds('feed-ctr@1', assembleBatch(plan, [encodeRequest(plan, body)]));
  await new Promise((resolve) => setTimeout(resolve, 10));
  await app.close();
  const result = await inflight;
  assert.equal(result.outputs.p.length, 1500, 'the running batch finished before the worker exited');
});
