/**
 * What the server records about each request: the impression log's rows, the request and shed
 * counters. Each test here failed before its fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kSlowModelsLoad, sampleRequest, startAppWithRepo } from './helpers/app.js';
import { Errors } from '../src/errors.js';

const metricLines = async (app: import('fastify').FastifyInstance, prefix: string) =>
  (await app.inject({ method: 'GET', url: '/metrics' })).body.split('\n').filter((l) => l.startsWith(prefix));

test('the impression log describes the candidate that was ranked, also when two candidates share an adId', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'impressions-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'impressions.jsonl');
  const { app } = await startAppWithRepo(t, { impressionLog: file });
  const body = sampleRequest(6, 5);
  // Same adId, different bids and bid types: the cpc one ranks first, the cpm one (bid 0.01) last.
  body.candidates[0] = { ...body.candidates[0], adId: 777, bid: 5, bidType: 'cpc' };
  body.candidates[1] = { ...body.candidates[1], adId: 777, bid: 0.01, bidType: 'cpm' };
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(res.statusCode, 200, res.body);
  const ranked = res.json().ranked as Array<{ adId: number; ecpm: number }>;
  await app.close();
  const [line] = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(line.shown.length, ranked.length);
  for (let i = 0; i < ranked.length; i++) {
    const shown = line.shown[i];
    assert.equal(shown.adId, ranked[i].adId);
    assert.equal(shown.ecpm, ranked[i].ecpm);
    // eCPM follows from the logged bid: the logged candidate is the one that was scored.
    if (shown.bidType === 'cpm') assert.equal(shown.ecpm, shown.bid, JSON.stringify(shown));
    else if (shown.bidType === 'cpc') assert.ok(Math.abs(shown.ecpm - 1000 * shown.bid * shown.pctr) <= 1e-6 * shown.ecpm, JSON.stringify(shown));
  }
  const dupes = line.shown.filter((s: { adId: number }) => s.adId === 777);
  assert.deepEqual(dupes.map((s: { bid: number; bidType: string }) => [s.bid, s.bidType]).sort(), [[0.01, 'cpm'], [5, 'cpc']]);
});

test('a request whose ctr and cvr calls are both shed counts once in rank_shed_total', async (t) => {
  const { app } = await startAppWithRepo(t);
  const pool = app.ranker.pool;
  const body = sampleRequest(8, 5);
  for (const c of body.candidates) c.bidType = 'cpa';
  for (const [error, reason, status] of [[Errors.OVERLOADED('test: queue full'), 'queue', 503], [Errors.DEADLINE(20), 'deadline', 504]] as const) {
    // Both models' calls fail the way the pool fails them: a full queue, a deadline passed in the queue.
    pool.score = async () => {
      throw error;
    };
    const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
    assert.equal(res.statusCode, status, res.body);
    assert.deepEqual(await metricLines(app, `rank_shed_total{reason="${reason}"}`), [`rank_shed_total{reason="${reason}"} 1`]);
  }
});

test('rank_requests_total counts every answer of /v1/rank: parser, schema and encoding errors too', async (t) => {
  const { app } = await startAppWithRepo(t);
  const ok = sampleRequest(3, 3);
  const json = { 'content-type': 'application/json' };
  const sent = [
    await app.inject({ method: 'POST', url: '/v1/rank', payload: ok }),
    await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...ok, topK: 0 } }),
    await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...ok, surface: 'nope' } }),
    await app.inject({ method: 'POST', url: '/v1/rank', payload: '{', headers: json }),
    await app.inject({ method: 'POST', url: '/v1/rank', payload: 'x', headers: { 'content-type': 'text/plain' } }),
    await app.inject({ method: 'POST', url: '/v1/rank', payload: JSON.stringify({ ...ok, pad: 'x'.repeat(app.ranker.config.bodyLimitBytes) }), headers: json }),
    // columnar form with columns of different lengths: found after validation, before the handler's work
    await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...ok, candidates: { adId: [1, 2], advertiserId: [1], category: [1, 2], bid: [1, 1], bidType: ['cpc', 'cpc'] } } }),
  ];
  assert.deepEqual(sent.map((r) => r.statusCode), [200, 400, 400, 400, 415, 413, 400]);
  assert.deepEqual((await metricLines(app, 'rank_requests_total')).sort(), [
    // a body that never parsed, or whose surface is not a known one, is counted as unparsed
    'rank_requests_total{surface="feed",code="200"} 1',
    'rank_requests_total{surface="feed",code="400"} 2',
    'rank_requests_total{surface="unparsed",code="400"} 2',
    'rank_requests_total{surface="unparsed",code="413"} 1',
    'rank_requests_total{surface="unparsed",code="415"} 1',
  ]);
});

test('error.path escapes feature names as JSON pointer tokens, also names with ":" or "/"', async (t) => {
  const { app } = await startAppWithRepo(t);
  const ok = sampleRequest(3, 3);
  const columns = { adId: [1, 2, 3], advertiserId: [1, 2, 3], category: [1, 2, 3], bid: [1, 1, 1], bidType: ['cpc', 'cpc', 'cpc'] };
  for (const [name, pointer] of [['a:b', '/candidates/features/a:b'], ['x/y', '/candidates/features/x~1y'], ['t~1', '/candidates/features/t~01']]) {
    const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...ok, candidates: { ...columns, features: { [name]: [1, 2] } } } });
    assert.equal(res.statusCode, 400, res.body);
    const error = res.json().error;
    assert.equal(error.path, pointer, res.body);
    assert.equal(error.message, `${pointer}: has 2 entries but /candidates/adId has 3`);
  }
  // A row-form field the schema does not allow, named with a "/": one pointer step.
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...ok, 'odd/field': 1 } });
  assert.equal(res.statusCode, 400, res.body);
  assert.equal(res.json().error.path, '/odd~1field');
});

test('a deadline counts from arrival: time spent waiting for admission is spent from it', async (t) => {
  const { app } = await startAppWithRepo(t, { maxInflightRequests: 1, admissionWaitMs: 2000, admissionWaitQueue: 4 });
  const pool = app.ranker.pool;
  const score = pool.score.bind(pool);
  let calls = 0;
  // The first request's first model call takes 80 ms, so the request holds the only place that long
  // and the second waits in line for it; no other call is slowed.
  pool.score = async (...args: Parameters<typeof score>) => {
    if (calls++ === 0) await new Promise((resolve) => setTimeout(resolve, 80));
    return score(...args);
  };
  const first = app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) });
  await new Promise((resolve) => setImmediate(resolve));
  const started = performance.now();
  const late = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...sampleRequest(5, 5, 2), deadlineMs: 20 } });
  assert.equal((await first).statusCode, 200);
  assert.ok(performance.now() - started >= 60, 'the second request waited for the first');
  assert.equal(late.statusCode, 504, late.body);
  assert.equal(late.json().error.code, 'DEADLINE_EXCEEDED');
  // Served at once, the same request meets its deadline, and its timings count from arrival.
  const onTime = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...sampleRequest(5, 5, 2), deadlineMs: 1000 } });
  assert.equal(onTime.statusCode, 200, onTime.body);
});

// When a request's ctr call failed first, both versions were released at once while the cvr call
// still ran: an unload waiting for the cvr version's requests to drain went ahead under it.
test('a version stays referenced while its call runs, even after the request failed on the other model', async (t) => {
  const { app } = await startAppWithRepo(t, kSlowModelsLoad, [
    { name: 'feed-ctr', version: 1, variant: 'v1' },
    { name: 'feed-cvr', version: 1, variant: 'slow', objective: 'cvr' },
  ]);
  const { pool, registry } = app.ranker;
  const cvr = registry.get('feed-cvr', 1)!;
  // The ctr version is ready but no worker holds it any more: its call fails at once (503), while the
  // slow cvr model takes ~200 ms over these candidates.
  await pool.unload('feed-ctr@1');
  const body = sampleRequest(1500, 5, 3);
  body.candidates.forEach((c) => (c.bidType = 'cpa'));
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(res.statusCode, 503, res.body);
  assert.equal(res.json().error.code, Errors.VERSION_UNAVAILABLE.code);
  assert.equal(cvr.refs, 1, 'the cvr call is still running');
  const until = Date.now() + 10_000;
  while (cvr.refs > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(cvr.refs, 0, 'released once it settled');
});
