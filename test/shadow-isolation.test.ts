/**
 * Shadow scoring must not delay primary traffic (a review measured p50 2.8 -> 21.4 ms with a slow
 * shadow, and requests answered 200 past their deadline): it runs only on an idle worker, behind every
 * request, and not at all when its run is expected to be long.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kSlowModelsLoad, sampleRequest, startAppWithRepo } from './helpers/app.js';
import { defaultRollout, type VersionSpec } from './helpers/fixture-repo.js';
import { assembleBatch, encodeRequest } from '../src/features/encode.js';
import type { Config } from '../src/config.js';

async function appWithShadow(t: import('node:test').TestContext, shadowVariant: VersionSpec['variant'], overrides: Partial<Config> = {}, extra: VersionSpec[] = []) {
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].shadow = [2];
  const versions: VersionSpec[] = [
    { name: 'feed-ctr', version: 1, variant: 'v1' },
    { name: 'feed-ctr', version: 2, variant: shadowVariant },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
    ...extra,
  ];
  return (await startAppWithRepo(t, { poolSize: 1, ...overrides }, versions, rollout)).app;
}

test('a shadow scoring waits behind a request that arrives after it, even where the worker would take both', async (t) => {
  // feed-ctr@3, the slow fixture (loaded as one of the newest two), keeps the only worker busy for ~1 s.
  const app = await appWithShadow(t, 'v2', kSlowModelsLoad, [{ name: 'feed-ctr', version: 3, variant: 'slow' }]);
  const { pool, registry, shadow } = app.ranker;
  const stable = registry.get('feed-ctr', 1)!;
  const candidate = registry.get('feed-ctr', 2)!;
  const slow = registry.get('feed-ctr', 3)!;
  assert.equal(slow.state, 'ready');
  const body = sampleRequest(300, 50, 4);
  const busy = pool.runFeeds(slow.key, assembleBatch(slow.plan!, [encodeRequest(slow.plan!, sampleRequest(8000, 5, 5))]));
  shadow.schedule(body, { version: stable, scores: new Float32Array(body.candidates.length) }, [candidate]);
  await new Promise((resolve) => setImmediate(resolve)); // the shadow has asked the pool by now
  const primary = await pool.score(stable.key, stable.plan!, encodeRequest(stable.plan!, body), stable.outputName, performance.now() + 5000);
  assert.equal(primary.length, 300);
  assert.equal(shadow.summaries().length, 0, 'the request was answered before the shadow ran');
  await busy;
  await shadow.idle();
  assert.equal(shadow.summaries()[0]?.requests, 1, 'the shadow ran afterwards');
});

test('a shadow whose run is expected to take longer than SHADOW_MAX_RUN_MS is skipped and counted', async (t) => {
  // The slow fixture is ~100x a student's cost per candidate; the gate limit is raised so that it loads.
  const app = await appWithShadow(t, 'slow', kSlowModelsLoad);
  const body = sampleRequest(200, 20, 6);
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const ranked = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(ranked.statusCode, 200, ranked.body);
  await app.ranker.shadow.idle();
  assert.equal(app.ranker.shadow.summaries().length, 0, 'not run');
  assert.equal(app.ranker.shadow.dropped, 1);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /shadow_dropped_total\{reason="too_slow"\} 1/);
  // Raised past its cost, the same shadow runs.
  const generous = await appWithShadow(t, 'slow', { ...kSlowModelsLoad, shadowMaxRunMs: 1000 });
  assert.equal((await generous.inject({ method: 'POST', url: '/v1/rank', payload: body })).statusCode, 200);
  await generous.ranker.shadow.idle();
  assert.equal(generous.ranker.shadow.summaries()[0]?.requests, 1);
});
