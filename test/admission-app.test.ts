/** Admission control in the app: the in-flight bound, its short waiting line, and what a shed request gets. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeRepo } from './helpers/fixture-repo.js';
import { sampleRequest, startApp } from './helpers/app.js';
import type { Config } from '../src/config.js';

async function burst(t: import('node:test').TestContext, overrides: Partial<Config>, count: number) {
  const repo = makeRepo();
  const app = await startApp(repo.dir, overrides);
  t.after(async () => {
    await app.close();
    repo.cleanup();
  });
  const responses = await Promise.all(
    Array.from({ length: count }, (_, i) => app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(40, 20, i + 1) })),
  );
  const shed = (await app.ranker.metrics.shed.get()).values.find((v) => v.labels.reason === 'inflight')?.value ?? 0;
  return { app, responses, codes: responses.map((r) => r.statusCode), shed };
}

test('beyond the in-flight bound, with waiting off, requests are refused at once with 503 and Retry-After', async (t) => {
  const { app, responses, codes, shed } = await burst(t, { maxInflightRequests: 2, admissionWaitMs: 0 }, 6);
  const refused = responses.filter((r) => r.statusCode === 503);
  assert.equal(codes.filter((c) => c === 200).length, 2, JSON.stringify(codes));
  assert.equal(refused.length, 4);
  for (const r of refused) {
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(r.json().error.code, 'SERVER_OVERLOADED');
    assert.match(r.json().error.message, /2 requests in progress/);
  }
  assert.equal(shed, 4);
  // The places were given back: the next request is admitted.
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(10, 5, 99) })).statusCode, 200);
});

test('a burst a little over the bound waits for places instead of being refused', async (t) => {
  const { codes, shed } = await burst(t, { maxInflightRequests: 2, admissionWaitMs: 10_000, admissionWaitQueue: 4 }, 6);
  assert.deepEqual(codes, [200, 200, 200, 200, 200, 200]);
  assert.equal(shed, 0);
});

test('when the waiting line is full, the rest are refused at once', async (t) => {
  const { app, codes, shed } = await burst(t, { maxInflightRequests: 1, admissionWaitMs: 10_000, admissionWaitQueue: 2 }, 5);
  assert.equal(codes.filter((c) => c === 200).length, 3, JSON.stringify(codes));
  assert.equal(codes.filter((c) => c === 503).length, 2);
  assert.equal(shed, 2);
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(10, 5, 99) })).statusCode, 200);
});
