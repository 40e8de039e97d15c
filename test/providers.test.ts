import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeRepo } from './helpers/fixture-repo.js';
import { kAdminAuth, sampleRequest, startApp } from './helpers/app.js';

test('a provider that cannot start falls back explicitly to cpu, visibly in the admin API and metrics', async (t) => {
  const repo = makeRepo();
  const app = await startApp(repo.dir, { executionProviders: ['cuda', 'cpu'] });
  t.after(async () => {
    await app.close();
    repo.cleanup();
  });
  const v1 = app.ranker.registry.get('feed-ctr', 1)!;
  assert.equal(v1.state, 'ready');
  assert.equal(v1.load!.provider, 'cpu');
  assert.equal(v1.load!.fallbacks[0].provider, 'cuda');
  assert.match(v1.load!.fallbacks[0].error, /cuda|CUDA|shared library/i);
  const admin = (await app.ranker.admin.inject({ method: 'GET', url: '/admin/models/feed-ctr', headers: kAdminAuth })).json();
  assert.equal(admin.versions[0].provider, 'cpu');
  assert.equal(admin.versions[0].providerFallbacks[0].provider, 'cuda');
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) })).statusCode, 200);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /model_execution_provider\{model="feed-ctr",version="1",provider="cpu"\} 1/);
});
