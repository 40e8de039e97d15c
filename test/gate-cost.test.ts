/**
 * The gate's cost per candidate: timed on a request of ranking size, so a run's fixed part (the
 * binding, the user side) is not charged as if it were per candidate.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { compileFeaturePlan } from '../src/features/plan.js';
import type { Feeds } from '../src/features/encode.js';
import { costPerCandidate, kGateCostCandidates } from '../src/models/gate.js';
import { readManifest } from '../src/models/manifest.js';
import { manifestReferenceRequests } from '../src/models/reference.js';
import { makeRepo } from './helpers/fixture-repo.js';

/** A stand-in for the pool whose runs cost `fixedMs` plus `perCandidateMs` per candidate. */
function modelCosting(fixedMs: number, perCandidateMs: number) {
  const batches: Array<{ candidates: number; historyLength: number }> = [];
  return {
    batches,
    async runFeeds(_key: string, feeds: Feeds) {
      const candidates = feeds.ad_id.dims[0];
      batches.push({ candidates, historyLength: feeds.hist_ids.dims[1] });
      return { outputs: {}, runMs: fixedMs + perCandidateMs * candidates };
    },
  };
}

/** The fixture repository's feed-ctr@1: its feature plan and a reference request (64 candidates). */
async function fixtureModel(t: TestContext) {
  const repo = makeRepo();
  t.after(() => repo.cleanup());
  const manifest = await readManifest(path.join(repo.dir, 'feed-ctr', '1'), { name: 'feed-ctr', version: 1 });
  return { plan: compileFeaturePlan(manifest), request: manifestReferenceRequests(manifest, 1)[0] };
}

test('a run\'s fixed part is spread over a ranking-size request, not over the 64 reference candidates', async (t) => {
  const { plan, request } = await fixtureModel(t);
  assert.equal(request.candidates.length, 64);
  // 1 ms per run whatever the batch, 1 us per candidate: timed on 64 candidates this came to 16.6 us
  // per candidate, over a 5 us limit that the model's real per-candidate cost is far under.
  const model = modelCosting(1, 0.001);
  const cost = await costPerCandidate(model, 'feed-ctr@1', plan, request);
  assert.ok(Math.abs(cost - (1 + 0.001 * kGateCostCandidates) / kGateCostCandidates) < 1e-12, String(cost));
  assert.ok(cost < 0.005, `${cost * 1000} us per candidate`);
  // Every history bucket is warmed up and timed three times, each at the full size.
  assert.equal(model.batches.length, plan.historyBuckets.length * 4);
  assert.ok(model.batches.every((b) => b.candidates === kGateCostCandidates), JSON.stringify(model.batches.slice(0, 3)));
  assert.deepEqual([...new Set(model.batches.map((b) => b.historyLength))].sort((a, b) => a - b), [...plan.historyBuckets].sort((a, b) => a - b));
});

test('the worst bucket sets the cost: a model slow per candidate is reported as such', async (t) => {
  const { plan, request } = await fixtureModel(t);
  const slow = {
    async runFeeds(_key: string, feeds: Feeds) {
      // 40 us per candidate, and twice that at the longest bucket.
      const longest = feeds.hist_ids.dims[1] === Math.max(...plan.historyBuckets);
      return { outputs: {}, runMs: feeds.ad_id.dims[0] * (longest ? 0.08 : 0.04) };
    },
  };
  const cost = await costPerCandidate(slow, 'feed-ctr@9', plan, request);
  assert.ok(Math.abs(cost - 0.08) < 1e-12, String(cost));
});

test('timing stops at the first bucket over the limit: a too-slow model holds the shared worker for four runs, not all buckets', async (t) => {
  const { plan, request } = await fixtureModel(t);
  assert.ok(plan.historyBuckets.length > 1, 'the fixture has several buckets');
  const tooSlow = modelCosting(0, 0.2);
  const cost = await costPerCandidate(tooSlow, 'feed-ctr@9', plan, request, 0.05);
  assert.ok(Math.abs(cost - 0.2) < 1e-12, String(cost));
  assert.equal(tooSlow.batches.length, 4, 'one warm-up and three timed runs');
  // Under the limit, every bucket is still timed.
  const fine = modelCosting(0, 0.001);
  await costPerCandidate(fine, 'feed-ctr@1', plan, request, 0.05);
  assert.equal(fine.batches.length, plan.historyBuckets.length * 4);
});

