import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sampleRequest, startAppWithRepo } from './helpers/app.js';

type Mutate = (body: Record<string, any>) => unknown;

// [name, mutation, expected status, expected JSON path]
const cases: Array<[string, Mutate, number, string]> = [
  ['missing surface', (b) => delete b.surface, 400, '/surface'],
  ['surface not in the enum', (b) => (b.surface = 'tv'), 400, '/surface'],
  ['missing user', (b) => delete b.user, 400, '/user'],
  ['user id as a string', (b) => (b.user.id = '12'), 400, '/user/id'],
  ['user id negative', (b) => (b.user.id = -1), 400, '/user/id'],
  ['user id fractional', (b) => (b.user.id = 1.5), 400, '/user/id'],
  ['user id above 2^53-1', (b) => (b.user.id = 2 ** 53), 400, '/user/id'],
  ['null is not a number', (b) => (b.candidates[0].bid = null), 400, '/candidates/0/bid'],
  ['bid as a string', (b) => (b.candidates[1].bid = '1.5'), 400, '/candidates/1/bid'],
  ['negative bid', (b) => (b.candidates[2].bid = -0.1), 400, '/candidates/2/bid'],
  ['unknown bid type', (b) => (b.candidates[0].bidType = 'cpx'), 400, '/candidates/0/bidType'],
  ['missing adId', (b) => delete b.candidates[3].adId, 400, '/candidates/3/adId'],
  ['advertiserId out of range', (b) => (b.candidates[0].advertiserId = 2 ** 60), 400, '/candidates/0/advertiserId'],
  ['empty candidates', (b) => (b.candidates = []), 400, '/candidates'],
  ['too many candidates', (b) => (b.candidates = Array.from({ length: 2001 }, (_, i) => ({ ...b.candidates[0], adId: i }))), 400, '/candidates'],
  ['candidates neither rows nor columns', (b) => (b.candidates = 'all'), 400, '/candidates'],
  ['candidates as an object without the columns', (b) => (b.candidates = { a: 1 }), 400, '/candidates/adId'],
  ['unknown top-level field', (b) => (b.extra = 1), 400, '/extra'],
  ['unknown candidate field', (b) => (b.candidates[0].colour = 'red'), 400, '/candidates/0/colour'],
  ['history event enum', (b) => (b.user.history[2].event = 'like'), 400, '/user/history/2/event'],
  ['history without ts', (b) => delete b.user.history[0].ts, 400, '/user/history/0/ts'],
  ['history too long', (b) => (b.user.history = Array.from({ length: 4097 }, () => b.user.history[0])), 400, '/user/history'],
  ['feature value is an object', (b) => (b.user.features.age_bucket = { x: 1 }), 400, '/user/features/age_bucket'],
  ['too many feature entries', (b) => (b.candidates[0].features = Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`f${i}`, i]))), 400, '/candidates/0/features'],
  ['feature string over 128 characters', (b) => (b.candidates[1].features.creative = 'x'.repeat(129)), 400, '/candidates/1/features/creative'],
  ['feature value null', (b) => (b.candidates[2].features.quality = null), 400, '/candidates/2/features/quality'],
  ['numeric feature sent as string', (b) => (b.user.features.age_bucket = 'three'), 400, '/user/features/age_bucket'],
  // Finite doubles that become Infinity in a float32 tensor once standardized (NaN scores follow).
  ['candidate feature beyond float32 once standardized', (b) => (b.candidates[4].features.quality = 1e39), 400, '/candidates/4/features/quality'],
  ['user feature beyond float32 once standardized', (b) => (b.user.features.activity = -1e300), 400, '/user/features/activity'],
  ['bid beyond the float32 range', (b) => (b.candidates[2].bid = 1e39), 400, '/candidates/2/bid'],
  ['topK zero', (b) => (b.topK = 0), 400, '/topK'],
  ['topK above the candidate limit', (b) => (b.topK = 2001), 400, '/topK'],
  ['deadline not positive', (b) => (b.deadlineMs = 0), 400, '/deadlineMs'],
  ['pin with a path-like name', (b) => (b.pin = { '../x': 1 }), 400, '/pin/..~1x'],
  ['pin with a name outside the pattern', (b) => (b.pin = { 'feed-ctr': 1, 'Feed-CTR': 2 }), 400, '/pin/Feed-CTR'],
  ['pin version zero', (b) => (b.pin = { 'feed-ctr': 0 }), 400, '/pin/feed-ctr'],
];

test('every bad-input class answers 400 with the JSON path of the offending field', async (t) => {
  const { app } = await startAppWithRepo(t);
  for (const [name, mutate, status, path] of cases) {
    const body = structuredClone(sampleRequest(6, 5, 2)) as unknown as Record<string, any>;
    mutate(body);
    const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
    assert.equal(res.statusCode, status, `${name}: ${res.body}`);
    const error = res.json().error;
    assert.equal(error.path, path, `${name}: path in ${JSON.stringify(error)}`);
    assert.equal(error.code, 'RANK_BAD_REQUEST', name);
  }
  // The server is still healthy after all of that.
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(6, 5, 2) })).statusCode, 200);
});

test('non-finite numbers, malformed JSON, wrong content type and oversized bodies are rejected', async (t) => {
  const { app } = await startAppWithRepo(t, { bodyLimitBytes: 64 * 1024 });
  const good = JSON.stringify(sampleRequest(3, 2, 4));
  // JSON.parse turns 1e400 into Infinity: it must not pass as a bid.
  const infinite = good.replace(/"bid":[0-9.]+/, '"bid":1e400');
  const r1 = await app.inject({ method: 'POST', url: '/v1/rank', payload: infinite, headers: { 'content-type': 'application/json' } });
  assert.equal(r1.statusCode, 400, r1.body);
  assert.equal(r1.json().error.path, '/candidates/0/bid');
  const r2 = await app.inject({ method: 'POST', url: '/v1/rank', payload: '{"surface": "feed",', headers: { 'content-type': 'application/json' } });
  assert.equal(r2.statusCode, 400);
  assert.equal(r2.json().error.code, 'RANK_BAD_REQUEST');
  const r3 = await app.inject({ method: 'POST', url: '/v1/rank', payload: good, headers: { 'content-type': 'text/plain' } });
  assert.equal(r3.statusCode, 415);
  const big = sampleRequest(1500, 10, 5);
  const r4 = await app.inject({ method: 'POST', url: '/v1/rank', payload: big });
  assert.equal(r4.statusCode, 413);
  assert.equal(r4.json().error.code, 'RANK_BODY_TOO_LARGE');
  const r5 = await app.inject({ method: 'POST', url: '/v1/rank', payload: '', headers: { 'content-type': 'application/json' } });
  assert.equal(r5.statusCode, 400);
  const proto = good.replace('"user":{', '"user":{"__proto__":{"polluted":1},');
  const r6 = await app.inject({ method: 'POST', url: '/v1/rank', payload: proto, headers: { 'content-type': 'application/json' } });
  assert.equal(r6.statusCode, 400);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('a value too large for the model is the client\'s error: 400, and nothing counted against the model', async (t) => {
  // Before: activity 1e39 became Infinity in the tensor, the scores NaN, and the request a 500
  // INFERENCE_FAILED counted against the serving version (enough of them roll a canary back);
  // a cpa bid of 1e308 gave an eCPM of Infinity, written as null.
  const { app } = await startAppWithRepo(t);
  const huge = sampleRequest(6, 5, 3);
  huge.user.features!.activity = 1e39;
  const r1 = await app.inject({ method: 'POST', url: '/v1/rank', payload: huge });
  assert.equal(r1.statusCode, 400, r1.body);
  assert.match(r1.json().error.message, /^\/user\/features\/activity: 1e\+39 is out of range for this model/);
  const bigBid = sampleRequest(6, 5, 3);
  bigBid.candidates.forEach((c) => (c.bidType = 'cpa'));
  bigBid.candidates[0].bid = 1e308;
  const r2 = await app.inject({ method: 'POST', url: '/v1/rank', payload: bigBid });
  assert.equal(r2.statusCode, 400, r2.body);
  // The largest values that fit are scored, and every eCPM is a number.
  const largest = sampleRequest(6, 5, 3);
  largest.candidates.forEach((c) => (c.bidType = 'cpa'));
  largest.candidates[0].bid = 3.4e38;
  largest.user.features!.activity = 1e30;
  const r3 = await app.inject({ method: 'POST', url: '/v1/rank', payload: largest });
  assert.equal(r3.statusCode, 200, r3.body);
  assert.ok(r3.json().ranked.every((r: { ecpm: unknown }) => typeof r.ecpm === 'number' && Number.isFinite(r.ecpm)), r3.body);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.doesNotMatch(metrics, /model_requests_total\{[^}]*outcome="(?!ok")/, 'no scoring outcome other than ok');
});

test('missing features take the manifest default; unused features are ignored', async (t) => {
  const { app } = await startAppWithRepo(t);
  const base = sampleRequest(8, 5, 9);
  base.user.features = { age_bucket: 3, tenure_days: 30, device: 'ios' }; // activity missing -> default (its mean)
  const withDefault = (await app.inject({ method: 'POST', url: '/v1/rank', payload: base })).json();
  const explicit = structuredClone(base);
  explicit.user.features!.activity = 0.5;
  explicit.user.features!.unused_by_model = 'whatever';
  const withExplicit = (await app.inject({ method: 'POST', url: '/v1/rank', payload: explicit })).json();
  assert.deepEqual(withDefault.ranked, withExplicit.ranked);
});
