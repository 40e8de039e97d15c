import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, truncateSync, unlinkSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { defaultRollout, fixtureDir, writeRolloutFile, writeVersion, type VersionSpec } from './helpers/fixture-repo.js';
import { kAdminAuth, sampleRequest, startAppWithRepo } from './helpers/app.js';
import { loadConfig, type Config } from '../src/config.js';
import type { Dirent } from 'node:fs';
import { isDirectory } from '../src/models/loader.js';

async function setup(t: import('node:test').TestContext, overrides: Partial<Config> = {}, versions?: VersionSpec[]) {
  const { app, repo } = await startAppWithRepo(t, overrides, versions);
  return { app, repo, loader: app.ranker.loader, registry: app.ranker.registry };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const rank = async (app: Awaited<ReturnType<typeof setup>>['app'], seed = 1, extra: Record<string, unknown> = {}) => {
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...sampleRequest(12, 20, seed), ...extra } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
};

test('a published version loads in the background, becomes ready, and takes traffic when flagged stable', async (t) => {
  const { app, repo, loader, registry } = await setup(t);
  assert.equal((await rank(app)).models.ctr.version, 1);
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  await loader.scan();
  const v2 = registry.get('feed-ctr', 2)!;
  assert.equal(v2.state, 'ready');
  assert.ok(v2.gate?.passed);
  // Its first deadline checks use the gate's cost per candidate, not a 2 us default.
  assert.equal(app.ranker.pool.expectedRunMs('feed-ctr@2', 100), v2.gate!.msPerCandidate! * 100);
  assert.equal((await rank(app)).models.ctr.version, 1, 'ready is not serving: flags decide');
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 2, 'feed-cvr': 1 }));
  await loader.scan();
  assert.equal((await rank(app)).models.ctr.version, 2);
  // keepVersions (2) keeps v1 loaded for instant rollback; v3 pushes it out.
  assert.equal(registry.get('feed-ctr', 1)!.state, 'ready');
  writeVersion(repo, { name: 'feed-ctr', version: 3, variant: 'v1' });
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 1)!.state, 'unloaded');
  assert.equal(app.ranker.pool.isLoaded('feed-ctr@1'), false);
  // Rolling back to v1 loads it again.
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 1, 'feed-cvr': 1 }));
  await loader.scan();
  assert.equal((await rank(app)).models.ctr.version, 1);
});

test('per-version metrics cover live versions only; unloaded and deleted ones are counted by state', async (t) => {
  const { app, repo, loader, registry } = await setup(t);
  const metrics = async () => (await app.inject({ method: 'GET', url: '/metrics' })).body;
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  writeVersion(repo, { name: 'feed-ctr', version: 3, variant: 'v1' });
  await loader.scan();
  // keepVersions (2): v2 and v3 stay loaded, v1 (stable in the flags) too; nothing unloaded yet.
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 3, 'feed-cvr': 1 }));
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 1)!.state, 'unloaded');
  let body = await metrics();
  assert.doesNotMatch(body, /model_version_state\{model="feed-ctr",version="1"/, 'an unloaded version has no per-version series');
  assert.match(body, /^model_version_state\{model="feed-ctr",version="3",state="ready"\} 1$/m);
  assert.match(body, /^model_versions\{model="feed-ctr",state="unloaded"\} 1$/m);
  assert.match(body, /^model_versions\{model="feed-ctr",state="ready"\} 2$/m);
  // A broken version that is then deleted leaves nothing behind.
  writeVersion(repo, { name: 'feed-ctr', version: 4, variant: 'nan' });
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 4)!.state, 'failed');
  assert.match(await metrics(), /^model_version_state\{model="feed-ctr",version="4",state="failed"\} 1$/m);
  rmSync(path.join(repo, 'feed-ctr', '4'), { recursive: true });
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 4), undefined);
  body = await metrics();
  assert.doesNotMatch(body, /model_version_state\{model="feed-ctr",version="4"/);
  assert.doesNotMatch(body, /^model_versions\{model="feed-ctr",state="failed"\}/m);
});

test("an unloaded version's request counters and latency histograms are removed after METRICS_VERSION_GRACE_MS, and kept when it loads again within it", async (t) => {
  const { app, repo, loader, registry } = await setup(t, { metricsVersionGraceMs: 150 });
  const metrics = async () => (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const v1Series = /^model_(requests_total|score_duration_ms_(bucket|sum|count))\{[^}]*model="feed-ctr",version="1"/m;
  const v3Series = /^model_(requests_total|score_duration_ms_(bucket|sum|count))\{[^}]*model="feed-ctr",version="3"/m;
  await rank(app);
  assert.match(await metrics(), v1Series, 'v1 served a request');
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  writeVersion(repo, { name: 'feed-ctr', version: 3, variant: 'v1' });
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 3, 'feed-cvr': 1 }));
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 1)!.state, 'unloaded');
  await rank(app);
  assert.match(await metrics(), v1Series, 'within the grace the final counts stay for a scrape');
  // Rolling back to v1 within the grace loads it again: its series must survive the pending removal.
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 1, 'feed-cvr': 1 }));
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 1)!.state, 'ready');
  await sleep(300);
  assert.match(await metrics(), v1Series, 'a version loaded again keeps its series');
  // Forward again: v1 unloads (keepVersions 2 keeps v2 and v3) and its series go after the grace.
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 3, 'feed-cvr': 1 }));
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 1)!.state, 'unloaded');
  await sleep(300);
  const body = await metrics();
  assert.doesNotMatch(body, v1Series);
  assert.match(body, v3Series, 'the serving version keeps its series');
  assert.match(body, /^metrics_version_series_retired_total [1-9]\d*$/m);
  // The counters of a retired version start again from zero if it ever serves again: Prometheus
  // reads that as a counter reset, which rate() handles.
  assert.match(body, /^rank_requests_total\{surface="feed",code="200"\} 2$/m, 'surface totals are not per version and stay');
});

test('hidden and temporary directories are ignored', async (t) => {
  const { repo, loader, registry } = await setup(t);
  const dir = writeVersion(repo, { name: 'feed-ctr', version: 7 });
  renameSync(dir, path.join(repo, 'feed-ctr', '.tmp-7'));
  mkdirSync(path.join(repo, '.tmp-feed-ctr'), { recursive: true });
  await loader.scan();
  assert.deepEqual(registry.versions('feed-ctr').map((v) => v.version), [1]);
});

test('a version folder reached through a symbolic link is discovered; files and dangling links named like versions are not', async (t) => {
  const { repo, loader, registry } = await setup(t);
  // The staging area is a hidden folder of the repository: the scan itself ignores it.
  const elsewhere = writeVersion(path.join(repo, '.staging'), { name: 'feed-ctr', version: 5, variant: 'v2' });
  symlinkSync(elsewhere, path.join(repo, 'feed-ctr', '5'));
  writeFileSync(path.join(repo, 'feed-ctr', '6'), 'not a folder');
  symlinkSync(path.join(repo, 'gone'), path.join(repo, 'feed-ctr', '8'));
  await loader.scan();
  assert.deepEqual(registry.versions('feed-ctr').map((v) => v.version), [1, 5]);
  assert.equal(registry.get('feed-ctr', 5)!.state, 'ready');
});

test('a repository entry whose type readdir does not report (DT_UNKNOWN) is stat()ed, not skipped', async (t) => {
  const { repo } = await setup(t);
  const untyped = (name: string) => ({ name, isDirectory: () => false, isFile: () => false, isSymbolicLink: () => false }) as unknown as Dirent;
  assert.equal(await isDirectory(path.join(repo, 'feed-ctr', '1'), untyped('1')), true);
  assert.equal(await isDirectory(path.join(repo, 'feed-ctr', '1', 'manifest.json'), untyped('manifest.json')), false);
  assert.equal(await isDirectory(path.join(repo, 'feed-ctr', '404'), untyped('404')), false, 'vanished');
});

/**
 * The gate's latency limit for the slow class, between the fixtures' costs: the slow fixture took
 * ~35 us per candidate on a fast 2026 Xeon, where the 50 us default let it through, and 115-180 us
 * on a slow host; the normal one 0.8-2.1 us on the slow host (512 candidates, kGateCostCandidates).
 * 7 us, the limit when the gate timed 64 candidates, failed the normal fixture on that host (3.6-15.5
 * us, the run's fixed part spread over 64). 10 us leaves ~4x on either side.
 */
const kSlowGate: Partial<Config> = { gate: { ...loadConfig({}).gate, maxMsPerCandidate: 0.01 } };

const brokenClasses: Array<[string, (repo: string) => void, RegExp, Partial<Config>?]> = [
  ['checksum mismatch', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    m.model.sha256 = sha(path.join(fixtureDir, 'v1.onnx'));
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m));
  }, /sha256 .* does not match/],
  ['truncated onnx (checksum of the truncated file)', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    truncateSync(path.join(dir, 'model.onnx'), 5000);
    const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    m.model.sha256 = sha(path.join(dir, 'model.onnx'));
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m));
  }, /could not be loaded/],
  ['half-written directory (no model.onnx yet)', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    unlinkSync(path.join(dir, 'model.onnx'));
  }, /cannot read model.onnx/],
  ['half-written directory (no manifest yet)', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    unlinkSync(path.join(dir, 'manifest.json'));
  }, /manifest .* cannot be read/],
  ['manifest that is not JSON', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    writeFileSync(path.join(dir, 'manifest.json'), '{"name": "feed-ctr", ');
  }, /is not JSON/],
  ['manifest that breaks the schema', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    m.inputs[0].dtype = 'int8';
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m));
  }, /manifest .* is invalid/],
  ['manifest naming another version', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    m.version = 5;
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m));
  }, /lives in feed-ctr\/2/],
  ['model inputs that disagree with the manifest', (repo) => writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'wrong-inputs' }), /signature: .*category missing/],
  ['NaN outputs', (repo) => writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'nan' }), /finite-probabilities: .* NaN/],
  // Its golden cases (L=16) and the reference batch (other buckets) pass; traffic padded to 64 got NaN.
  ['NaN outputs at one history bucket only', (repo) => writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'nan-bucket' }), /finite-probabilities: .* NaN.* history bucket 64/],
  ['golden.json that checks no value', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    const golden = JSON.parse(readFileSync(path.join(dir, 'golden.json'), 'utf8'));
    const [first] = golden.cases;
    first.outputs.p = { dtype: 'float32', shape: [0], data: [] };
    writeFileSync(path.join(dir, 'golden.json'), JSON.stringify({ cases: [first], requests: [{ body: { ...sampleRequest(1, 5, 1), candidates: [] }, p: [] }] }));
  }, /golden-present: 0 values checked/],
  // A FIFO (or a device) never ends: hashing it held the scan, and every later scan and flag edit, forever.
  ['model.onnx that is not a regular file', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    unlinkSync(path.join(dir, 'model.onnx'));
    execFileSync('mkfifo', [path.join(dir, 'model.onnx')]);
  }, /cannot read model.onnx \(not a regular file\)/],
  ['manifest.json that is not a regular file', (repo) => {
    const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
    unlinkSync(path.join(dir, 'manifest.json'));
    execFileSync('mkfifo', [path.join(dir, 'manifest.json')]);
  }, /manifest .* cannot be read \(not a regular file\)/],
  ['much slower than allowed', (repo) => writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'slow' }), /latency: .* per candidate/, kSlowGate],
  ['score distribution far from the serving version', (repo) => writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'shifted' }), /distribution: mean logit shift/],
];

for (const [name, publish, reason, overrides] of brokenClasses) {
  test(`broken model never reaches traffic: ${name}`, { timeout: 60000 }, async (t) => {
    const { app, repo, loader, registry } = await setup(t, overrides);
    publish(repo);
    // Flag it stable right away: the flag must not take effect.
    writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 2, 'feed-cvr': 1 }));
    await loader.scan();
    const v2 = registry.get('feed-ctr', 2)!;
    assert.equal(v2.state, 'failed');
    assert.match(v2.reason ?? '', reason);
    assert.equal(app.ranker.pool.isLoaded('feed-ctr@2'), false, 'a failed version holds no session');
    assert.equal((await rank(app)).models.ctr.version, 1, 'the previous version keeps serving');
    assert.ok(registry.routing.warnings.some((w) => w.includes('feed-ctr: stable 2 is failed')));
    const admin = (await app.ranker.admin.inject({ method: 'GET', url: '/admin/models/feed-ctr', headers: kAdminAuth })).json();
    assert.equal(admin.versions.find((v: { version: number }) => v.version === 2).state, 'failed');
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /model_load_failures_total\{model="feed-ctr"\} 1/);
  });
}

test('a half-written directory is loaded once its files are complete', async (t) => {
  const { repo, loader, registry } = await setup(t);
  const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  const model = readFileSync(path.join(dir, 'model.onnx'));
  unlinkSync(path.join(dir, 'model.onnx'));
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 2)!.state, 'failed');
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 2)!.state, 'failed', 'unchanged files are not retried');
  writeFileSync(path.join(dir, 'model.onnx'), model);
  await loader.scan();
  assert.equal(registry.get('feed-ctr', 2)!.state, 'ready');
});

// A worker that exits while a version is validated is the server's trouble, not the model's: the
// version was marked failed for good (its files never change), with no way back but a re-publish.
test('a version whose load or gate a worker exit cut short is retried on the next scan', async (t) => {
  const { app, repo, loader, registry } = await setup(t, { poolSize: 1 });
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  let recycled = false;
  registry.on('state', (entry: { key: string; state: string }) => {
    if (entry.key === 'feed-ctr@2' && entry.state === 'validating' && !recycled) {
      recycled = true;
      void app.ranker.pool.recycleWorker(0);
    }
  });
  await loader.scan();
  const v2 = registry.get('feed-ctr', 2)!;
  assert.ok(recycled);
  assert.equal(v2.state, 'failed');
  assert.match(v2.reason ?? '', /retried on the next scan/);
  await app.ranker.pool.whenReady();
  await loader.scan();
  assert.equal(v2.state, 'ready', v2.reason ?? '');
  assert.equal(app.ranker.pool.isLoaded('feed-ctr@2'), true);
});

test('a version whose every run kills its worker stops being retried after three scans, until its files change', async (t) => {
  const { app, repo, loader, registry } = await setup(t, { poolSize: 1 });
  const dir = writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  let loads = 0;
  registry.on('state', (entry: { key: string; state: string }) => {
    if (entry.key === 'feed-ctr@2' && entry.state === 'loading') loads++;
  });
  // As a model that crashes the runtime would: the worker exits before its batch, which fails with
  // WORKER_EXITED ("no worker running", say, is retried every scan: it says nothing about the model).
  const pool = app.ranker.pool;
  const runFeeds = pool.runFeeds.bind(pool);
  pool.runFeeds = (key, ...rest) => {
    if (key === 'feed-ctr@2') void pool.recycleWorker(0);
    return runFeeds(key, ...rest);
  };
  for (let scan = 1; scan <= 5; scan++) {
    await loader.scan();
    await app.ranker.pool.whenReady();
  }
  const v2 = registry.get('feed-ctr', 2)!;
  assert.equal(loads, 4, 'the first load and three retries');
  assert.equal(v2.state, 'failed');
  assert.match(v2.reason ?? '', /4 times in a row; retried when its files change/);
  assert.equal((await rank(app)).models.ctr.version, 1);
  writeFileSync(path.join(dir, 'golden.json'), readFileSync(path.join(dir, 'golden.json')));
  utimesSync(path.join(dir, 'golden.json'), new Date(), new Date(Date.now() + 5000));
  await loader.scan();
  assert.equal(loads, 5, 'changed files are tried again');
});

test('bad rollout flags keep the last good flags and say why', async (t) => {
  const { app, repo, loader, registry } = await setup(t);
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 2, 'feed-cvr': 1 }));
  await loader.scan();
  assert.equal((await rank(app)).models.ctr.version, 2);
  const bad: Array<[string, RegExp]> = [
    ['{ not json', /is not JSON/],
    [JSON.stringify({ salt: 's', routes: { feed: { ctr: 'feed-ctr', cvr: 'feed-cvr' } }, models: { 'feed-ctr': { stable: 0 } } }), /stable must be >= 1/],
    [JSON.stringify({ ...defaultRollout(), routes: { feed: { ctr: 'feed-ctr', cvr: 'nope' } } }), /names "nope", which has no entry/],
    [JSON.stringify({ ...defaultRollout(), models: { 'feed-ctr': { stable: 1, canary: { version: 2, percent: 150 } }, 'feed-cvr': { stable: 1 } } }), /percent must be <= 100/],
    [JSON.stringify({ ...defaultRollout(), models: { 'feed-ctr': { stable: 1, canary: { version: 1, percent: 5 } }, 'feed-cvr': { stable: 1 } } }), /canary\/version equals stable/],
  ];
  for (const [text, why] of bad) {
    writeRolloutFile(repo, text);
    await loader.scan();
    assert.match(loader.rolloutError ?? '', why);
    assert.equal((await rank(app)).models.ctr.version, 2, 'last good flags still apply');
  }
  const admin = (await app.ranker.admin.inject({ method: 'GET', url: '/admin/rollout', headers: kAdminAuth })).json();
  assert.match(admin.rolloutError, /canary\/version equals stable/);
  assert.equal(admin.rollout.models['feed-ctr'].stable, 2);
  assert.equal(registry.rollout!.models['feed-ctr'].stable, 2);
});

test('canary share follows the percent, is stable per user, and pins override it', async (t) => {
  const { app, repo, loader } = await setup(t);
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].canary = { version: 2, percent: 30 };
  writeRolloutFile(repo, rollout);
  await loader.scan();
  let canary = 0;
  const users = 600;
  const armOf = new Map<number, string>();
  for (let u = 0; u < users; u++) {
    const body = sampleRequest(2, 0, 1);
    body.user.id = 10_000 + u * 7919;
    const out = (await app.inject({ method: 'POST', url: '/v1/rank', payload: body })).json();
    if (out.models.ctr.arm === 'canary') {
      canary++;
      assert.equal(out.models.ctr.version, 2);
    } else assert.equal(out.models.ctr.version, 1);
    armOf.set(body.user.id, out.models.ctr.arm);
  }
  const share = canary / users;
  t.diagnostic(`canary share ${share.toFixed(3)} for 30%`);
  assert.ok(Math.abs(share - 0.3) < 0.06, `share ${share}`);
  for (const [id, arm] of [...armOf].slice(0, 50)) {
    const body = sampleRequest(2, 0, 3);
    body.user.id = id;
    assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: body })).json().models.ctr.arm, arm, 'same user, same arm');
  }
  const pinned = await rank(app, 1, { pin: { 'feed-ctr': 2 } });
  assert.deepEqual(pinned.models.ctr, { name: 'feed-ctr', version: 2, arm: 'pinned' });
  const badPin = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...sampleRequest(3, 1, 1), pin: { 'feed-ctr': 9 } } });
  assert.equal(badPin.statusCode, 404);
});

test('shadow versions score off the critical path; only their deltas are recorded', async (t) => {
  const { app, repo, loader } = await setup(t);
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].shadow = [2];
  writeRolloutFile(repo, rollout);
  await loader.scan();
  const before = await rank(app, 5);
  assert.equal(before.models.ctr.version, 1);
  for (let i = 0; i < 5; i++) await rank(app, 5 + i);
  await app.ranker.shadow.idle();
  const summary = app.ranker.shadow.summaries().find((s) => s.shadow === 'feed-ctr@2');
  assert.ok(summary, 'shadow scored');
  assert.ok(summary.requests >= 1);
  assert.ok(summary.meanAbsDelta > 0, 'different weights give different scores');
  const admin = (await app.ranker.admin.inject({ method: 'GET', url: '/admin/shadow', headers: kAdminAuth })).json();
  assert.equal(admin.summaries[0].shadow, 'feed-ctr@2');
});

test('a canary whose scores drift past the threshold is rolled back automatically, persisted, and explained', async (t) => {
  const { app, repo, loader, registry } = await setup(t, {
    canary: { minRequests: 20, maxErrorRate: 0.02, maxP99Ratio: 3, maxMeanScoreShift: 0.0001, windowMs: 60_000 },
  });
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].canary = { version: 2, percent: 50 };
  writeRolloutFile(repo, rollout);
  await loader.scan();
  for (let u = 0; u < 200 && registry.routing.models.get('feed-ctr')!.canary; u++) {
    const body = sampleRequest(4, 3, u);
    body.user.id = 50_000 + u * 104729;
    await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
    await new Promise((resolve) => setImmediate(resolve));
  }
  await loader.scan();
  assert.equal(registry.routing.models.get('feed-ctr')!.canary, null, 'canary no longer routed');
  const persisted = JSON.parse(readFileSync(path.join(repo, 'rollout.json'), 'utf8'));
  assert.deepEqual(persisted.models['feed-ctr'].canary, { version: 2, percent: 0 });
  const verdict = app.ranker.canary.verdicts.find((v) => v.rolledBack)!;
  assert.equal(verdict.canaryVersion, 2);
  assert.match(verdict.reasons.join(), /mean score logit/);
  assert.ok(verdict.numbers.requests[1] >= 20);
  const after = await rank(app, 3);
  assert.equal(after.models.ctr.arm, 'stable');
});

test('an old version drains its in-flight requests before its sessions are released', async (t) => {
  const { repo, loader, registry, app } = await setup(t, { keepVersions: 1 });
  const v1 = registry.get('feed-ctr', 1)!;
  registry.acquire(v1); // a request still scoring on v1
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 2, 'feed-cvr': 1 }));
  const scan = loader.scan();
  for (let i = 0; i < 200 && v1.state !== 'draining'; i++) await new Promise((resolve) => setTimeout(resolve, 25));
  assert.equal(v1.state, 'draining');
  assert.equal(app.ranker.pool.isLoaded('feed-ctr@1'), true, 'session kept while in flight');
  assert.equal((await rank(app)).models.ctr.version, 2, 'new requests already use v2');
  registry.release(v1);
  await scan;
  assert.equal(v1.state, 'unloaded');
  assert.equal(app.ranker.pool.isLoaded('feed-ctr@1'), false);
});

test('admin API: bearer token, plain identifiers, flags, load/unload, rescan', async (t) => {
  const { app, repo } = await setup(t);
  const admin = app.ranker.admin;
  assert.equal((await admin.inject({ method: 'GET', url: '/admin/models' })).statusCode, 401);
  assert.equal((await admin.inject({ method: 'GET', url: '/admin/models', headers: { authorization: 'Bearer wrong-token-0123456789' } })).statusCode, 401);
  assert.equal((await admin.inject({ method: 'GET', url: '/admin/models', headers: { authorization: 'test-token-0123456789' } })).statusCode, 401);
  for (const bad of ['..%2F..%2Fetc', 'Feed-CTR', 'feed_ctr']) {
    const res = await admin.inject({ method: 'GET', url: `/admin/models/${bad}`, headers: kAdminAuth });
    assert.equal(res.statusCode, 400, bad);
    assert.equal(res.json().error.code, 'ADMIN_BAD_IDENTIFIER');
  }
  // The router normalizes a dot-segment away before any handler sees it.
  const dots = await admin.inject({ method: 'GET', url: '/admin/models/%2e%2e', headers: kAdminAuth });
  assert.equal(dots.statusCode, 404);
  assert.equal(dots.json().error.code, 'NOT_FOUND');
  assert.equal((await admin.inject({ method: 'POST', url: '/admin/models/feed-ctr/versions/1e3/load', headers: kAdminAuth })).statusCode, 400);
  writeVersion(repo, { name: 'feed-ctr', version: 2, variant: 'v2' });
  const rescan = await admin.inject({ method: 'POST', url: '/admin/rescan', headers: kAdminAuth });
  assert.equal(rescan.statusCode, 200);
  const patch = await admin.inject({ method: 'PATCH', url: '/admin/models/feed-ctr/flags', headers: kAdminAuth, payload: { canary: { version: 2, percent: 10 } } });
  assert.equal(patch.statusCode, 200, patch.body);
  assert.deepEqual(JSON.parse(readFileSync(path.join(repo, 'rollout.json'), 'utf8')).models['feed-ctr'].canary, { version: 2, percent: 10 });
  const same = await admin.inject({ method: 'PATCH', url: '/admin/models/feed-ctr/flags', headers: kAdminAuth, payload: { stable: 2 } });
  assert.equal(same.statusCode, 422, 'canary equal to stable is rejected');
  assert.equal(JSON.parse(readFileSync(path.join(repo, 'rollout.json'), 'utf8')).models['feed-ctr'].stable, 1, 'rejected flags are not persisted');
  const refused = await admin.inject({ method: 'POST', url: '/admin/models/feed-ctr/versions/1/unload', headers: kAdminAuth });
  assert.equal(refused.statusCode, 409, 'a flagged version cannot be unloaded');
  const list = (await admin.inject({ method: 'GET', url: '/admin/models', headers: kAdminAuth })).json();
  assert.deepEqual(list.models['feed-ctr'].serving, { stable: 1, canary: { version: 2, percent: 10 }, shadow: [] });
  assert.ok(list.models['feed-ctr'].versions[1].gate.checks.length >= 5);
  assert.equal(existsSync(path.join(repo, 'rollout.json')), true);
  const one = await admin.inject({ method: 'GET', url: '/admin/models/feed-ctr/versions/2', headers: kAdminAuth });
  assert.equal(one.statusCode, 200, one.body);
  assert.deepEqual(one.json(), { name: 'feed-ctr', ...list.models['feed-ctr'].versions[1] }, 'one version reads as in the listing');
  const missing = await admin.inject({ method: 'GET', url: '/admin/models/feed-ctr/versions/9', headers: kAdminAuth });
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.json().error.code, 'MODEL_VERSION_NOT_FOUND');
  const noModel = await admin.inject({ method: 'GET', url: '/admin/models/feed-xyz/versions/1', headers: kAdminAuth });
  assert.equal(noModel.json().error.code, 'MODEL_NOT_FOUND');
  assert.equal((await admin.inject({ method: 'GET', url: '/admin/models/feed-ctr/versions/01', headers: kAdminAuth })).statusCode, 400);
  assert.equal((await admin.inject({ method: 'GET', url: '/admin/models/feed-ctr/versions/2' })).statusCode, 401);
});
