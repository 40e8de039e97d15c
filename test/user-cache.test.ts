import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserCache } from '../src/ranking/user-cache.js';
import { compileFeaturePlan } from '../src/features/plan.js';
import { validateManifest } from '../src/models/manifest.js';
import { fixtureManifest } from './helpers/fixture-repo.js';
import { sampleRequest } from './helpers/app.js';

const planFor = (version: number) => compileFeaturePlan(validateManifest(fixtureManifest('feed-ctr', version, 'feed', 'ctr', 'a'.repeat(64)), 'test'));

test('the user cache hits on the same user and history, misses on a new event, and purges an unloaded version', () => {
  const lookups: boolean[] = [];
  const cache = new UserCache(100, 60_000, (hit) => lookups.push(hit));
  const v1 = planFor(1);
  const v2 = planFor(2);
  const request = sampleRequest(3, 40, 1);
  const first = cache.history(v1, request);
  assert.equal(cache.history(v1, request), first, 'same encoded history object on a hit');
  cache.history(v2, request);
  const grown = structuredClone(request);
  grown.user.history!.push({ adId: 9, surface: 'feed', event: 'click', ts: 9e12 });
  assert.notEqual(cache.history(v1, grown), first);
  assert.deepEqual(lookups, [false, true, false, false]);
  assert.equal(cache.size, 3);
  assert.equal(cache.purge('feed-ctr@1'), 2);
  assert.equal(cache.size, 1, 'only feed-ctr@2 entries remain');
  const short = sampleRequest(3, 5, 2);
  cache.history(v1, short);
  assert.equal(lookups.length, 4, 'short histories bypass the cache');
});
