import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeRepo } from './helpers/fixture-repo.js';
import { sampleRequest, startApp } from './helpers/app.js';

test('smoke', async (t) => {
  const repo = makeRepo();
  const app = await startApp(repo.dir);
  t.after(async () => { await app.close(); repo.cleanup(); });
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest() });
  console.log(res.statusCode, res.body.slice(0, 600));
  console.log(JSON.stringify(app.ranker.registry.all().map(v => [v.key, v.state, v.reason, v.gate?.checks.map(c=>c.name+':'+c.passed+':'+c.detail)])));
  assert.equal(res.statusCode, 200);
});
