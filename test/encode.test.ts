import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assembleBatch, encodeCandidates, encodeHistory, encodeRequest, historyDigest } from '../src/features/encode.js';
import { hashId } from '../src/features/id-hash.js';
import { bucketFor, compileFeaturePlan } from '../src/features/plan.js';
import { validateManifest } from '../src/models/manifest.js';
import { fixtureManifest } from './helpers/fixture-repo.js';
import { sampleRequest } from './helpers/app.js';

const manifest = validateManifest(fixtureManifest('feed-ctr', 1, 'feed', 'ctr', 'a'.repeat(64)), 'test');
const plan = compileFeaturePlan(manifest);

test('one user row per request, req_idx maps candidates to it, histories pad to the batch bucket', () => {
  const a = sampleRequest(3, 10, 1);
  const b = sampleRequest(2, 40, 2);
  const feeds = assembleBatch(plan, [encodeRequest(plan, a), encodeRequest(plan, b)]);
  assert.deepEqual(feeds.hist_ids.dims, [2, 64], 'longest history 40 -> bucket 64');
  assert.deepEqual(Array.from(feeds.hist_len.data as BigInt64Array), [10n, 40n]);
  assert.deepEqual(Array.from(feeds.req_idx.data as BigInt64Array), [0n, 0n, 0n, 1n, 1n]);
  assert.deepEqual(feeds.user_dense.dims, [2, 7]);
  assert.deepEqual(feeds.ad_dense.dims, [5, 6]);
  const ids = feeds.ad_id.data as BigInt64Array;
  assert.equal(ids[3], BigInt(hashId(b.candidates[0].adId, 21, 5003)));
  const hist = feeds.hist_ids.data as BigInt64Array;
  assert.equal(hist[0], BigInt(hashId(a.user.history![0].adId, 11, 5003)), 'left-aligned, oldest first');
  assert.equal(hist[10], 0n, 'padding after the real events');
  assert.equal(hist[64 + 39], BigInt(hashId(b.user.history![39].adId, 11, 5003)));
});

test('long histories keep the newest maxLength events in order', () => {
  const request = sampleRequest(1, 300, 3);
  const encoded = encodeHistory(plan, request.user.history);
  assert.equal(encoded.length, 256);
  assert.equal(encoded.truncated, 44);
  assert.equal(encoded.columns[0][0], hashId(request.user.history![44].adId, 11, 5003));
  assert.equal(encoded.columns[0][255], hashId(request.user.history![299].adId, 11, 5003));
  assert.equal(bucketFor(plan, 0), 16);
  assert.equal(bucketFor(plan, 17), 64);
  assert.equal(bucketFor(plan, 256), 256);
});

test('dense transforms: standardize, log1p, onehot, defaults', () => {
  const request = sampleRequest(1, 0, 4);
  request.user.features = { age_bucket: 5, tenure_days: Math.E - 1, device: 'android' }; // activity missing
  request.context = { hour: 19 };
  request.candidates[0].features = { quality: 1, creative: 'unknown-kind' };
  request.candidates[0].bid = 0;
  const feeds = assembleBatch(plan, [encodeRequest(plan, request)]);
  const user = Array.from(feeds.user_dense.data as Float32Array);
  const expectUser = [(5 - 3) / 2, 0, (1 - 4) / 1.5, 0, 1, 0, (19 - 12) / 7];
  user.forEach((v, i) => assert.ok(Math.abs(v - expectUser[i]) < 1e-6, `user column ${i}: ${v}`));
  const ad = Array.from(feeds.ad_dense.data as Float32Array);
  const expectAd = [(1 - 0.5) / 0.25, 0, 0, 0, (2 - 2) / 1.4, (0 - 0.7) / 0.5];
  ad.forEach((v, i) => assert.ok(Math.abs(v - expectAd[i]) < 1e-6, `ad column ${i}: ${v}`));
});

test('history enums map to index + 1 and unknown or missing ids to 0', () => {
  const encoded = encodeHistory(plan, [
    { adId: 1, surface: 'reels', event: 'conversion', ts: 1 },
    { adId: 2, category: 7, surface: 'feed', event: 'impression', ts: 2 },
  ]);
  const [ids, categories, surfaces, events] = encoded.columns;
  assert.deepEqual(Array.from(surfaces), [3, 1]);
  assert.deepEqual(Array.from(events), [3, 1]);
  assert.equal(categories[0], 0, 'missing category is padding');
  assert.equal(categories[1], hashId(7, 12, 257));
  assert.ok(ids[0] >= 1 && ids[0] < 5003);
});

test('the history digest changes when the history grows or its newest event changes', () => {
  const h = sampleRequest(1, 50, 5).user.history!;
  const d = historyDigest(h);
  assert.equal(historyDigest([...h]), d);
  assert.notEqual(historyDigest([...h, { ...h[0], ts: 9e12 }]), d);
  assert.notEqual(historyDigest([...h.slice(0, -1), { ...h[49], adId: h[49].adId + 1 }]), d);
});

test('a non-numeric dense feature is a 400 that points at the client\'s candidate, also from a subset', () => {
  const request = sampleRequest(4, 0, 5);
  request.candidates[2].features = { quality: 'high' };
  const pointerOf = (run: () => unknown): string | undefined => {
    try {
      run();
    } catch (error) {
      assert.equal((error as { statusCode?: number }).statusCode, 400);
      return (error as Error).message;
    }
    assert.fail('expected a 400');
  };
  assert.match(pointerOf(() => encodeCandidates(plan, request))!, /\/candidates\/2\/features\/quality/);
  // The cvr model encodes the cpa subset: its candidate 0 is the client's candidate 2.
  const subset = { ...request, candidates: [request.candidates[2], request.candidates[3]] };
  assert.match(pointerOf(() => encodeCandidates(plan, subset, [2, 3]))!, /\/candidates\/2\/features\/quality/);
  request.candidates[2].features = { quality: 0.5 };
  request.user.features = { activity: 'busy' };
  assert.match(pointerOf(() => encodeRequest(plan, request))!, /\/user\/features\/activity/);
});

test('a onehot on candidate.bid reads the bid, not a feature that happens to be named bid', () => {
  const raw = fixtureManifest('feed-ctr', 1, 'feed', 'ctr', 'a'.repeat(64));
  const adDense = raw.inputs.find((input) => input.name === 'ad_dense')!;
  const source = adDense.source as { features: Array<{ field: string; transform: string; values?: number[] }> };
  source.features[3] = { field: 'candidate.bid', transform: 'onehot', values: [0.5, 2] };
  adDense.shape = ['N', 7];
  const bidPlan = compileFeaturePlan(validateManifest(raw, 'test'));
  const request = sampleRequest(2, 0, 6);
  request.candidates[0].bid = 0.5;
  request.candidates[0].features = { quality: 0.5, bid: 2 };
  request.candidates[1].bid = 2;
  request.candidates[1].features = { quality: 0.5 };
  const ad = Array.from(assembleBatch(bidPlan, [encodeRequest(bidPlan, request)]).ad_dense.data as Float32Array);
  assert.deepEqual(ad.slice(5, 7), [1, 0], 'bid 0.5 -> first slot, whatever features.bid says');
  assert.deepEqual(ad.slice(12, 14), [0, 1], 'bid 2 -> second slot');
});

test('a onehot value of the wrong type is a 400; an unlisted value of the right type is an unseen category', () => {
  const request = sampleRequest(2, 0, 8);
  const messageOf = (run: () => unknown): string => {
    try {
      run();
    } catch (error) {
      assert.equal((error as { statusCode?: number }).statusCode, 400);
      return (error as Error).message;
    }
    return assert.fail('expected a 400');
  };
  request.candidates[1].features = { quality: 0.5, creative: 2 };
  assert.match(messageOf(() => encodeCandidates(plan, request)), /\/candidates\/1\/features\/creative.*must be a string for this model, got a number/);
  request.candidates[1].features = { quality: 0.5, creative: 'hologram' };
  const ad = Array.from(encodeCandidates(plan, request).dense[0]);
  assert.deepEqual(ad.slice(7, 10), [0, 0, 0], 'unseen creative: all zeros');
  request.user.features = { device: 1 };
  assert.match(messageOf(() => encodeRequest(plan, request)), /\/user\/features\/device.*must be a string/);
});
