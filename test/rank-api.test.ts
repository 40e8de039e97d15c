import { test } from 'node:test';
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fixtureDir, makeRepo } from './helpers/fixture-repo.js';
import { inferInputs, kSlowModelsLoad, sampleRequest, startApp, startAppWithRepo } from './helpers/app.js';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../src/config.js';
import { rankSchemas } from '../src/routes/rank-schema.js';

async function withApp(t: import('node:test').TestContext, versions?: Parameters<typeof makeRepo>[0], overrides: Partial<Config> = {}): Promise<FastifyInstance> {
  return (await startAppWithRepo(t, overrides, versions)).app;
}

test('ranks by eCPM with the documented formulas and stamps model versions', async (t) => {
  const app = await withApp(t);
  const body = sampleRequest(30, 40, 7);
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(res.statusCode, 200);
  const out = res.json();
  assert.equal(out.requestId, 'test-7');
  assert.deepEqual(out.models.ctr, { name: 'feed-ctr', version: 1, arm: 'stable' });
  assert.deepEqual(out.models.cvr, { name: 'feed-cvr', version: 1, arm: 'stable' });
  assert.equal(out.ranked.length, 30);
  const byId = new Map(body.candidates.map((c) => [c.adId, c]));
  for (let i = 0; i < out.ranked.length; i++) {
    const r = out.ranked[i];
    const c = byId.get(r.adId)!;
    assert.equal(r.rank, i + 1);
    if (i > 0) assert.ok(out.ranked[i - 1].ecpm >= r.ecpm, 'sorted by ecpm descending');
    assert.ok(r.pctr > 0 && r.pctr < 1);
    // Scores and eCPM are printed to 9 significant digits (src/ranking/digits.ts): the formula
    // holds to the rounding of its three printed factors.
    if (c.bidType === 'cpc') assert.ok(Math.abs(r.ecpm - 1000 * c.bid * r.pctr) <= 2e-8 * r.ecpm);
    if (c.bidType === 'cpm') assert.equal(r.ecpm, c.bid);
    if (c.bidType === 'cpa') {
      assert.ok(r.pcvr > 0 && r.pcvr < 1, 'cpa candidates carry pcvr');
      assert.ok(Math.abs(r.ecpm - 1000 * c.bid * r.pctr * r.pcvr) <= 3e-8 * r.ecpm);
    } else {
      assert.equal(r.pcvr, undefined);
    }
  }
  assert.ok(out.timings.totalMs > 0);
  for (const [name, ms] of Object.entries(out.timings as Record<string, number>)) assert.equal(ms, Math.round(ms * 1000) / 1000, `${name} ${ms} to the microsecond`);
  // No score is printed with more than 9 significant digits (a float32 widened to a double prints 17).
  const printed = [...res.body.matchAll(/"(pctr|pcvr|ecpm)":([-0-9.e+]+)/g)].map((m) => m[2]);
  assert.ok(printed.length >= 60, `${printed.length} scores found in the body`);
  for (const text of printed) {
    const digits = Number(text).toExponential().split('e')[0].replace(/[-.]/g, '');
    assert.ok(digits.length <= 9, `${text} has ${digits.length} significant digits`);
  }
});

test('the cvr model scores only the cpa candidates', async (t) => {
  const app = await withApp(t);
  const body = sampleRequest(30, 10, 21); // bid types cycle cpc, cpa, cpm: 10 cpa
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(res.statusCode, 200);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /inference_batch_candidates_sum\{model="feed-cvr"\} 10\n/);
  assert.match(metrics, /inference_batch_candidates_sum\{model="feed-ctr"\} 30\n/);
  for (const r of res.json().ranked) assert.equal(r.pcvr !== undefined, body.candidates.find((c) => c.adId === r.adId)!.bidType === 'cpa');
});

test('topK keeps the best K; cvr model is skipped when no candidate bids cpa', async (t) => {
  const app = await withApp(t);
  const body = sampleRequest(20, 10, 3);
  const full = (await app.inject({ method: 'POST', url: '/v1/rank', payload: body })).json();
  const top = (await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...body, topK: 5 } })).json();
  assert.deepEqual(top.ranked, full.ranked.slice(0, 5));
  const cpcOnly = { ...body, candidates: body.candidates.map((c) => ({ ...c, bidType: 'cpc' as const })) };
  const res = (await app.inject({ method: 'POST', url: '/v1/rank', payload: cpcOnly })).json();
  assert.equal(res.models.cvr, undefined);
});

test('raw tensor inference (v2 infer) reproduces the golden outputs', async (t) => {
  const app = await withApp(t);
  const golden = JSON.parse(readFileSync(path.join(fixtureDir, 'v1.golden.json'), 'utf8'));
  for (const c of golden.cases) {
    const inputs = inferInputs(c.inputs);
    const res = await app.inject({ method: 'POST', url: '/v2/models/feed-ctr/versions/1/infer', payload: { inputs } });
    assert.equal(res.statusCode, 200, res.body);
    const p = res.json().outputs.find((o: { name: string }) => o.name === 'p').data as number[];
    const expected = c.outputs.p.data as number[];
    assert.equal(p.length, expected.length);
    for (let i = 0; i < p.length; i++) assert.ok(Math.abs(p[i] - expected[i]) <= 1e-5 + 1e-4 * Math.abs(expected[i]), `value ${i}`);
  }
  const meta = (await app.inject({ method: 'GET', url: '/v2/models/feed-ctr' })).json();
  assert.equal(meta.name, 'feed-ctr');
  assert.ok(meta.inputs.some((i: { name: string; datatype: string }) => i.name === 'hist_ids' && i.datatype === 'INT64'));
  assert.equal((await app.inject({ method: 'GET', url: '/v2/models/feed-ctr/versions/1/ready' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/v2/models/nope' })).statusCode, 404);
  const noVersion = await app.inject({ method: 'GET', url: '/v2/models/feed-ctr/versions/9' });
  assert.equal(noVersion.statusCode, 404);
  assert.equal(noVersion.json().error.code, 'MODEL_VERSION_NOT_FOUND');
  const noModel = await app.inject({ method: 'GET', url: '/v2/models/nope/versions/1' });
  assert.equal(noModel.statusCode, 404);
  assert.equal(noModel.json().error.code, 'MODEL_NOT_FOUND');
});

test('raw tensors that break the manifest answer 400 at their path, before the runtime sees them', async (t) => {
  // Before, ONNX Runtime caught these as a failed run: 500 INFERENCE_FAILED and an error log line
  // for a caller's mistake; a float beyond float32 came back as NaN scores written as null, and a
  // negative id inside the table's size was scored as an id counted from the end.
  const app = await withApp(t);
  const golden = JSON.parse(readFileSync(path.join(fixtureDir, 'v1.golden.json'), 'utf8'));
  type Input = { name: string; shape: number[]; data: number[] };
  const base = inferInputs(golden.cases[0].inputs) as Input[];
  const at = (inputs: Input[], name: string) => inputs.findIndex((i) => i.name === name);
  const cases: Array<[string, (inputs: Input[]) => void, (inputs: Input[]) => string, RegExp]> = [
    ['an id beyond its hash buckets', (x) => (x[at(x, 'ad_id')].data[0] = 5003), (x) => `/inputs/${at(x, 'ad_id')}/data/0`, /outside \[0, 5002\]/],
    ['a negative id', (x) => (x[at(x, 'advertiser_id')].data[1] = -3), (x) => `/inputs/${at(x, 'advertiser_id')}/data/1`, /outside/],
    ['an enum index past its values', (x) => (x[at(x, 'hist_event')].data[0] = 4), (x) => `/inputs/${at(x, 'hist_event')}/data/0`, /outside \[0, 3\]/],
    ['a history length past L', (x) => (x[at(x, 'hist_len')].data[0] = 10_000), (x) => `/inputs/${at(x, 'hist_len')}/data/0`, /history_length/],
    ['a request index past R', (x) => (x[at(x, 'req_idx')].data[0] = 9), (x) => `/inputs/${at(x, 'req_idx')}/data/0`, /request_index/],
    ['a float beyond float32', (x) => (x[at(x, 'ad_dense')].data[2] = 1e39), (x) => `/inputs/${at(x, 'ad_dense')}/data/2`, /does not fit float32/],
    ['a fixed width that differs', (x) => {
      const d = x[at(x, 'ad_dense')];
      d.shape = [d.shape[0] * 2, d.shape[1] / 2];
    }, (x) => `/inputs/${at(x, 'ad_dense')}/shape/0`, /N is/],
    ['N that differs between inputs', (x) => {
      const c = x[at(x, 'category')];
      c.data.push(1);
      c.shape = [c.shape[0] + 1];
    }, (x) => `/inputs/${Math.max(at(x, 'ad_id'), at(x, 'category'))}/shape/0`, /N is \d+ here but \d+ at/],
    ['an input given twice', (x) => x.push(structuredClone(x[0])), (x) => `/inputs/${x.length - 1}/name`, /also \/inputs\/0/],
  ];
  for (const [name, mutate, path, message] of cases) {
    const inputs = structuredClone(base);
    mutate(inputs);
    const res = await app.inject({ method: 'POST', url: '/v2/models/feed-ctr/versions/1/infer', payload: { inputs } });
    assert.equal(res.statusCode, 400, `${name}: ${res.body}`);
    const error = res.json().error;
    assert.equal(error.path, path(inputs), `${name}: ${error.message}`);
    assert.match(error.message, message, name);
  }
  const ok = await app.inject({ method: 'POST', url: '/v2/models/feed-ctr/versions/1/infer', payload: { inputs: base } });
  assert.equal(ok.statusCode, 200, ok.body);
});

test('2000 candidates with a 4096-event history are scored; the history is truncated to the model and said so', async (t) => {
  const app = await withApp(t);
  const body = sampleRequest(2000, 4096, 11);
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(res.statusCode, 200, res.body.slice(0, 300));
  const out = res.json();
  assert.equal(out.ranked.length, 2000);
  assert.equal(out.historyTruncated, 4096 - 256);
  assert.equal(new Set(out.ranked.map((r: { adId: number }) => r.adId)).size, 2000);
});

test('concurrent requests are batched together without mixing results', async (t) => {
  // All 24 admitted at once (the default in-flight cap would shed most of them).
  const app = await withApp(t, undefined, { maxInflightRequests: 24 });
  const bodies = Array.from({ length: 24 }, (_, i) => sampleRequest(10 + (i % 7) * 13, (i * 37) % 300, 100 + i));
  const alone: Array<{ ranked: Array<{ adId: number; pctr: number }> }> = [];
  for (const b of bodies) alone.push((await app.inject({ method: 'POST', url: '/v1/rank', payload: b })).json());
  const together = await Promise.all(bodies.map((b) => app.inject({ method: 'POST', url: '/v1/rank', payload: b })));
  for (let i = 0; i < bodies.length; i++) {
    assert.equal(together[i].statusCode, 200);
    const a = alone[i].ranked;
    const b = together[i].json().ranked;
    assert.equal(b.length, a.length);
    for (let k = 0; k < a.length; k++) {
      assert.equal(b[k].adId, a[k].adId);
      assert.ok(Math.abs(b[k].pctr - a[k].pctr) < 1e-6, `request ${i} candidate ${k}`);
    }
  }
  // Batching did happen: some session.run carried more than one request.
  const metrics = await app.ranker.metrics.batchRequests.get();
  const multi = metrics.values.find((v) => v.metricName === 'inference_batch_requests_bucket' && v.labels.le === 1)!;
  const total = metrics.values.find((v) => v.metricName === 'inference_batch_requests_count')!;
  assert.ok(total.value > multi.value, 'at least one batch merged several requests');
});

test('the event loop keeps turning while a worker scores a slow model', async (t) => {
  const { app } = await startAppWithRepo(t, kSlowModelsLoad, [
    { name: 'feed-ctr', version: 1, variant: 'slow' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  assert.equal(app.ranker.registry.get('feed-ctr', 1)?.state, 'ready');
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  histogram.enable();
  const started = performance.now();
  const body = sampleRequest(1500, 100, 5);
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  const elapsed = performance.now() - started;
  histogram.disable();
  clearInterval(timer);
  assert.equal(res.statusCode, 200);
  const scoreMs = res.json().timings.scoreMs;
  t.diagnostic(`scoring took ${scoreMs.toFixed(1)} ms; event loop delay p99 ${(histogram.percentile(99) / 1e6).toFixed(2)} ms, max ${(histogram.max / 1e6).toFixed(2)} ms; ${ticks} timer ticks in ${elapsed.toFixed(0)} ms`);
  // Structural, not a timing budget: timers fired while session.run was busy in the worker,
  // which cannot happen if inference blocks the main thread.
  assert.ok(ticks >= 3, `timers kept firing during scoring (${ticks})`);
});

test('unknown surface is 404 naming the known ones; a surface without a ready model is 503', async (t) => {
  const app = await withApp(t);
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1, 'reels') });
  assert.equal(res.statusCode, 404);
  assert.equal(res.json().error.code, 'RANK_UNKNOWN_SURFACE');
  assert.match(res.json().error.message, /known surfaces: feed/);
  // Remove every version from routing: no model -> 503 and not ready.
  const repo = makeRepo([{ name: 'feed-ctr', version: 1, variant: 'nan' }, { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' }]);
  const broken = await startApp(repo.dir);
  t.after(async () => {
    await broken.close();
    repo.cleanup();
  });
  const r503 = await broken.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) });
  assert.equal(r503.statusCode, 503, 'feed is routed but its ctr model has no ready version');
  assert.equal(r503.json().error.code, 'MODEL_UNAVAILABLE');
  assert.ok(r503.headers['retry-after']);
  assert.equal((await broken.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode, 503);
  assert.equal((await broken.inject({ method: 'GET', url: '/v2/health/live' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode, 200);
});

test('a full inference queue sheds with 503 + Retry-After and counts it', async (t) => {
  const repo = makeRepo();
  const app = await startApp(repo.dir, { maxQueuedCandidates: 300, poolSize: 1, workerQueueDepth: 1 });
  t.after(async () => {
    await app.close();
    repo.cleanup();
  });
  const bodies = Array.from({ length: 12 }, (_, i) => sampleRequest(200, 10, 300 + i));
  const results = await Promise.all(bodies.map((b) => app.inject({ method: 'POST', url: '/v1/rank', payload: b })));
  const shed = results.filter((r) => r.statusCode === 503);
  assert.ok(shed.length > 0, 'some requests were shed');
  assert.ok(results.some((r) => r.statusCode === 200), 'the rest were served');
  assert.equal(shed[0].json().error.code, 'SERVER_OVERLOADED');
  assert.equal(shed[0].headers['retry-after'], '1');
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /rank_shed_total\{reason="queue"\} [1-9]/);
});

test('metrics are exposed in Prometheus text', async (t) => {
  const app = await withApp(t);
  await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) });
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 200);
  assert.match(res.body, /rank_requests_total\{surface="feed",code="200"\} 1/);
  assert.match(res.body, /model_execution_provider\{model="feed-ctr",version="1",provider="cpu"\} 1/);
  assert.match(res.body, /model_version_state\{model="feed-ctr",version="1",state="ready"\} 1/);
});

test('the answer carries exactly the fields its response schema documents', async (t) => {
  const app = await withApp(t);
  const { properties } = rankSchemas(app.ranker.config).response[200];
  const out = (await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...sampleRequest(30, 40, 8), topK: 12 } })).json();
  for (const key of Object.keys(out)) assert.ok(key in properties, `top-level field ${key} is documented`);
  assert.deepEqual(Object.keys(out.models).sort(), ['ctr', 'cvr']);
  for (const stamp of Object.values(out.models)) assert.deepEqual(Object.keys(stamp as object).sort(), Object.keys(properties.models.properties.ctr.properties).sort());
  assert.deepEqual(Object.keys(out.timings).sort(), Object.keys(properties.timings.properties).sort());
  const itemFields = Object.keys(properties.ranked.items.properties);
  assert.equal(out.ranked.length, 12);
  for (const item of out.ranked) {
    const expected = itemFields.filter((f) => f !== 'pcvr' || item.pcvr !== undefined);
    assert.deepEqual(Object.keys(item).sort(), expected.sort());
  }
  assert.ok(out.ranked.some((item: { pcvr?: number }) => item.pcvr !== undefined), 'a cpa candidate carries pcvr');
});

test('scores that are NaN or outside [0, 1] at serving time fail the request as a model error, never reach the answer', async (t) => {
  const app = await withApp(t);
  const pool = app.ranker.pool;
  const score = pool.score.bind(pool);
  let poison = (scores: Float32Array) => scores;
  pool.score = async (...args: Parameters<typeof pool.score>) => poison(await score(...args));
  poison = (scores) => (scores.fill(Number.NaN, 3, 5), scores);
  const nan = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(20, 10, 9) });
  assert.equal(nan.statusCode, 500, nan.body);
  assert.equal(nan.json().error.code, 'INFERENCE_FAILED');
  assert.match(nan.json().error.message, /feed-c[tv]r@1 failed: 2 of \d+ scores are NaN, infinite or outside \[0, 1\]/);
  poison = (scores) => (scores.fill(1.5, 0, 1), scores);
  const high = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(20, 10, 10) });
  assert.equal(high.statusCode, 500, high.body);
  assert.match(high.json().error.message, /1 of \d+ scores are NaN, infinite or outside/);
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /model_requests_total\{model="feed-ctr",version="1",arm="stable",outcome="INFERENCE_FAILED"\} 2/);
  poison = (scores) => scores;
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(20, 10, 11) })).statusCode, 200);
});

test('historyTruncated counts the events dropped by whichever scoring model keeps fewer', async (t) => {
  const repo = makeRepo();
  t.after(() => repo.cleanup());
  const cvrManifest = path.join(repo.dir, 'feed-cvr', '1', 'manifest.json');
  const manifest = JSON.parse(readFileSync(cvrManifest, 'utf8'));
  manifest.history = { maxLength: 64, buckets: [16, 64] };
  writeFileSync(cvrManifest, JSON.stringify(manifest));
  const app = await startApp(repo.dir);
  t.after(() => app.close());
  const body = sampleRequest(6, 100, 12);
  body.candidates.forEach((c, i) => (c.bidType = i === 0 ? 'cpa' : 'cpc'));
  const out = (await app.inject({ method: 'POST', url: '/v1/rank', payload: body })).json();
  assert.equal(out.models.cvr?.name, 'feed-cvr', JSON.stringify(out).slice(0, 300));
  assert.equal(out.historyTruncated, 100 - 64, 'the cvr model keeps 64 of 100 events; ctr keeps all');
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const ctrOnly = (await app.inject({ method: 'POST', url: '/v1/rank', payload: body })).json();
  assert.equal(ctrOnly.historyTruncated, undefined, 'no cpa candidate: only ctr scored, nothing dropped');
});
