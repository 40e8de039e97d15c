import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeRepo } from './helpers/fixture-repo.js';
import { sampleRequest, startApp } from './helpers/app.js';

test('a worker that dies fails its in-flight batch with WORKER_EXITED and is replaced with every model reloaded', async (t) => {
  const repo = makeRepo([
    { name: 'feed-ctr', version: 1, variant: 'slow' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  const app = await startApp(repo.dir, { gate: { maxMeanShift: 1.5, maxQuantileShift: 2.5, maxMsPerCandidate: 1000 } });
  t.after(async () => {
    await app.close();
    repo.cleanup();
  });
  const body = sampleRequest(1500, 20, 1);
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const inflight = app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  await new Promise((resolve) => setTimeout(resolve, 20));
  await app.ranker.pool.recycleWorker(0);
  const failed = await inflight;
  assert.equal(failed.statusCode, 500);
  assert.equal(failed.json().error.code, 'WORKER_EXITED');
  await app.ranker.pool.whenReady();
  const ok = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(10, 5, 2) });
  assert.equal(ok.statusCode, 200, ok.body);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /inference_worker_exits_total 1/);
});
