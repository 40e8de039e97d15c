import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserCache } from '../src/ranking/user-cache.js';
import { encodeHistory, historyDigest } from '../src/features/encode.js';
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

test('a history that differs anywhere the encoder reads gets its own cache entry, not another history\'s tensors', () => {
  const cache = new UserCache(100, 60_000);
  const plan = planFor(1);
  const base = sampleRequest(3, 40, 7);
  const variants: Array<[string, (events: NonNullable<typeof base.user.history>) => void]> = [
    ['first event surface', (events) => { events[0].surface = events[0].surface === 'reels' ? 'feed' : 'reels'; }],
    ['first event type', (events) => { events[0].event = 'conversion'; }],
    ['first event category', (events) => { events[0].category = (events[0].category ?? 0) + 1; }],
    ['a middle category filled in later', (events) => { delete events[7].category; }],
    ['an adId between the sampled events', (events) => { events[13].adId += 1; }],
    ['the last event category', (events) => { events[39].category = (events[39].category ?? 0) + 1; }],
  ];
  cache.history(plan, base);
  for (const [what, change] of variants) {
    const other = structuredClone(base);
    change(other.user.history!);
    assert.deepEqual(cache.history(plan, other).columns, encodeHistory(plan, other.user.history).columns, what);
  }
  const sameEventsNewTimes = structuredClone(base);
  for (const event of sameEventsNewTimes.user.history!) event.ts += 1;
  assert.equal(historyDigest(sameEventsNewTimes.user.history), historyDigest(base.user.history), 'ts is not encoded, so it does not split entries');
  assert.notEqual(historyDigest([{ adId: 2 ** 32, surface: 'feed', event: 'click', ts: 0 }]), historyDigest([{ adId: 0, surface: 'feed', event: 'click', ts: 0 }]), 'both halves of a 53-bit id count');
});
