/** The columnar request form: same answers as rows, and every malformed column answers 400 with its path. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toColumnarForm, toRowForm, type RankRequestBody } from '../src/features/columnar.js';
import { sampleRequest, startAppWithRepo } from './helpers/app.js';

type Body = Record<string, any>;

test('toColumnarForm and toRowForm are inverses, keeping missing features and categories missing', () => {
  const request = sampleRequest(12, 9, 3);
  delete request.candidates[4].features!.quality;
  delete request.candidates[7].features;
  delete request.user.history![2].category;
  const columnar = toColumnarForm(request);
  assert.ok(!Array.isArray(columnar.candidates) && !Array.isArray(columnar.user.history));
  const columns = columnar.candidates as { features: Record<string, unknown[]> };
  assert.equal(columns.features.quality[4], null);
  assert.deepEqual(toRowForm(structuredClone(columnar)), request);
  // A body already in row form is passed through untouched.
  assert.equal(toRowForm(request as RankRequestBody), request);
});

test('/v1/rank answers the columnar form exactly like the row form, mixed forms included', async (t) => {
  const { app } = await startAppWithRepo(t);
  const request = sampleRequest(40, 25, 5);
  // Missing values become nulls in columns: a feature, and a history event's category.
  delete request.candidates[4].features!.quality;
  delete request.user.history![2].category;
  const rank = async (payload: unknown) => {
    const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: payload as Body });
    assert.equal(res.statusCode, 200, res.body);
    return res.json().ranked;
  };
  const rows = await rank(request);
  const columnar = toColumnarForm(request);
  assert.deepEqual(await rank(columnar), rows);
  assert.deepEqual(await rank({ ...columnar, user: request.user }), rows, 'columnar candidates, history rows');
  assert.deepEqual(await rank({ ...request, user: columnar.user }), rows, 'row candidates, columnar history');
});

// [name, mutation of the columnar body, expected JSON path]
type PathCase = [string, (b: Body) => unknown, string];

/** Each mutated columnar body answers 400 RANK_BAD_REQUEST at the expected path, message included. */
async function assertPaths(app: Awaited<ReturnType<typeof startAppWithRepo>>['app'], cases: PathCase[]): Promise<void> {
  for (const [name, mutate, path] of cases) {
    const body = structuredClone(toColumnarForm(sampleRequest(10, 6, 2))) as Body;
    mutate(body);
    const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
    assert.equal(res.statusCode, 400, `${name}: ${res.body}`);
    const error = res.json().error;
    assert.equal(error.code, 'RANK_BAD_REQUEST', name);
    assert.equal(error.path, path, `${name}: ${error.message}`);
    assert.ok(error.message.startsWith(`${path}: `), error.message);
  }
}

const cases: PathCase[] = [
  ['a column shorter than adId', (b) => b.candidates.bid.pop(), '/candidates/bid'],
  ['a feature column of another length', (b) => b.candidates.features.quality.push(0.5), '/candidates/features/quality'],
  ['a history column shorter than adId', (b) => b.user.history.ts.pop(), '/user/history/ts'],
  ['a history category column of another length', (b) => b.user.history.category.push(3), '/user/history/category'],
  ['a bad value inside a column', (b) => (b.candidates.bidType[2] = 'cpx'), '/candidates/bidType/2'],
  ['null where a value is required', (b) => (b.candidates.bid[1] = null), '/candidates/bid/1'],
  ['a missing required column', (b) => delete b.candidates.advertiserId, '/candidates/advertiserId'],
  ['an unknown column', (b) => (b.candidates.colour = ['red']), '/candidates/colour'],
  ['empty candidate columns', (b) => Object.keys(b.candidates).forEach((k) => k !== 'features' && (b.candidates[k] = [])), '/candidates/adId'],
  ['too many candidates', (b) => (b.candidates.adId = Array.from({ length: 2001 }, (_, i) => i)), '/candidates/adId'],
  ['a feature column that is not an array', (b) => (b.candidates.features.quality = 0.5), '/candidates/features/quality'],
  ['a history event outside the enum', (b) => (b.user.history.event[0] = 'like'), '/user/history/event/0'],
  ['a string in the category column', (b) => (b.user.history.category[1] = 'shoes'), '/user/history/category/1'],
  ['a feature string over 128 characters', (b) => (b.candidates.features.creative[2] = 'x'.repeat(129)), '/candidates/features/creative/2'],
  ['a boolean feature value', (b) => (b.candidates.features.quality[3] = true), '/candidates/features/quality/3'],
];

test('a value rejected while encoding is pointed at in the columns it came in', async (t) => {
  // Feature encoding reads the row form; its errors pointed at rows (/candidates/3/features/quality)
  // although the client had sent columns.
  const { app } = await startAppWithRepo(t);
  await assertPaths(app, [
    ['a string where the model wants a number', (b) => (b.candidates.features.quality[3] = 'high'), '/candidates/features/quality/3'],
    ['a number beyond float32 once standardized', (b) => (b.candidates.features.price_tier[5] = -1e39), '/candidates/features/price_tier/5'],
  ]);
  // Row-form candidates with columnar history keep their row paths.
  const mixed = structuredClone(toColumnarForm(sampleRequest(10, 6, 2))) as Body;
  const rows = sampleRequest(10, 6, 2);
  rows.candidates[3].features!.quality = 'high';
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...mixed, candidates: rows.candidates } });
  assert.equal(res.json().error.path, '/candidates/3/features/quality');
});

test('every malformed column answers 400 with the JSON path of the offending column or value', async (t) => {
  const { app } = await startAppWithRepo(t);
  await assertPaths(app, cases);
});
