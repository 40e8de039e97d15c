/**
 * Faults in the inference pool: concurrent loads, a replacement worker that cannot reload a version or
 * cannot start at all, deadlines of queued requests, and queue admission. Each test bounds how long
 * a promise may stay pending, so a regression fails instead of hanging the suite.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InferencePool, type PoolObserver } from '../src/models/pool.js';
import { loadConfig, type Config } from '../src/config.js';
import { compileFeaturePlan } from '../src/features/plan.js';
import { assembleBatch, encodeRequest } from '../src/features/encode.js';
import type { RankerError } from '../src/errors.js';
import { fixtureDir, fixtureManifest, makeRepo, type Variant } from './helpers/fixture-repo.js';
import { kSlowModelsLoad, sampleRequest, startApp, startAppWithRepo } from './helpers/app.js';

const plan = compileFeaturePlan(fixtureManifest('feed-ctr', 1, 'feed', 'ctr', 'unused'));

/** Pool options straight from defaults plus `overrides`, not re-validated (a queue bound of 10, say). */
function poolOptions(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}, { logLevel: 'silent' }), poolSize: 1, ...overrides };
}

async function startPool(t: TestContext, overrides: Partial<Config> = {}, observer: PoolObserver = {}): Promise<InferencePool> {
  const pool = new InferencePool(poolOptions(overrides), observer);
  t.after(() => pool.close());
  await pool.start();
  return pool;
}

/** Copies of fixture models in a directory the test may delete from. */
function modelFiles(t: TestContext, variants: Variant[]): Record<string, string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pool-faults-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files: Record<string, string> = {};
  for (const v of variants) {
    files[v] = path.join(dir, `${v}.onnx`);
    copyFileSync(path.join(fixtureDir, `${v}.onnx`), files[v]);
  }
  return files;
}

type Outcome<T> = { state: 'resolved'; value: T; ms: number } | { state: 'rejected'; error: RankerError; ms: number } | { state: 'pending'; ms: number };

/** How `promise` settled within `ms`, and after how long. */
async function within<T>(promise: Promise<T>, ms: number): Promise<Outcome<T>> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  try {
    const value = await Promise.race([promise, pending]);
    if (value === 'pending') return { state: 'pending', ms: performance.now() - started };
    return { state: 'resolved', value: value as T, ms: performance.now() - started };
  } catch (error) {
    return { state: 'rejected', error: error as RankerError, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

function score(pool: InferencePool, key: string, n: number, deadlineMs = 2000, seed = 1) {
  return pool.score(key, plan, encodeRequest(plan, sampleRequest(n, 5, seed)), 'p', performance.now() + deadlineMs, deadlineMs);
}

/** Keep the only worker busy for a second or more (the slow fixture costs ~0.13 ms per candidate). */
function occupy(pool: InferencePool, key: string) {
  return pool.runFeeds(key, assembleBatch(plan, [encodeRequest(plan, sampleRequest(8000, 5, 99))]));
}

test('two concurrent loads of one version both settle, and the worker keeps scoring', async (t) => {
  const files = modelFiles(t, ['v1']);
  const pool = await startPool(t);
  const [a, b] = await Promise.all([within(pool.load('feed-ctr@1', files.v1), 5000), within(pool.load('feed-ctr@1', files.v1), 5000)]);
  assert.equal(a.state, 'resolved', 'first load settles');
  assert.equal(b.state, 'resolved', 'second load settles');
  assert.equal(pool.isLoaded('feed-ctr@1'), true);
  const scored = await within(score(pool, 'feed-ctr@1', 20), 3000);
  assert.equal(scored.state, 'resolved', 'the worker still takes work after the loads');
  assert.equal(scored.state === 'resolved' && scored.value.length, 20);
});

test('a replacement worker that cannot reload one version serves the others and fails that one at once', async (t) => {
  const files = modelFiles(t, ['v1', 'v2']);
  const failed: Array<{ key: string; heldBy: number }> = [];
  const pool = await startPool(t, {}, { reloadFailed: (key, _id, _error, heldBy) => failed.push({ key, heldBy }) });
  await pool.load('feed-ctr@1', files.v1);
  await pool.load('feed-cvr@1', files.v2);
  rmSync(files.v2);
  await pool.recycleWorker(0, 1);
  await pool.whenReady(5000);
  assert.deepEqual(failed, [{ key: 'feed-cvr@1', heldBy: 0 }]);

  const ok = await within(score(pool, 'feed-ctr@1', 10), 3000);
  assert.equal(ok.state, 'resolved', 'the version that reloaded is served');
  const attempts: Array<Promise<unknown>> = [score(pool, 'feed-cvr@1', 10, 200), pool.runFeeds('feed-cvr@1', assembleBatch(plan, [encodeRequest(plan, sampleRequest(5, 5, 2))]))];
  for (const attempt of attempts) {
    const lost = await within(attempt, 1000);
    assert.equal(lost.state, 'rejected', 'a version no worker holds fails instead of waiting');
    if (lost.state !== 'rejected') continue;
    assert.equal(lost.error.code, 'MODEL_VERSION_UNAVAILABLE', 'not the model\'s fault: a 503, not counted against a canary');
    assert.equal(lost.error.statusCode, 503);
    assert.match(lost.error.message, /no running inference worker holds feed-cvr@1/);
  }
});

test('/v1/rank while no worker holds the canary: its users get stable; a pin to it answers 503 with Retry-After', async (t) => {
  const repo = makeRepo([
    { name: 'feed-ctr', version: 1, variant: 'v1' },
    { name: 'feed-ctr', version: 2, variant: 'v1' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  const app = await startApp(repo.dir, { adminToken: 'test-token-0123456789' });
  t.after(async () => {
    await app.close();
    repo.cleanup();
  });
  const flags = await app.ranker.admin.inject({
    method: 'PATCH',
    url: '/admin/models/feed-ctr/flags',
    headers: { authorization: 'Bearer test-token-0123456789' },
    payload: { canary: { version: 2, percent: 100 } },
  });
  assert.equal(flags.statusCode, 200, flags.body);
  const rank = (pin?: Record<string, number>) => app.inject({ method: 'POST', url: '/v1/rank', payload: { ...sampleRequest(10, 5, 4), ...(pin ? { pin } : {}) } });
  const before = await rank();
  assert.equal(before.statusCode, 200, before.body);
  assert.deepEqual(before.json().models.ctr, { name: 'feed-ctr', version: 2, arm: 'canary' });

  // The worker dies and its replacement cannot reload the canary: the pool retries the reload in the
  // background. The loader hands workers verified bytes, which a replacement always can reload, so
  // the canary's session is recreated here from a path that then goes away.
  const files = modelFiles(t, ['v1']);
  await app.ranker.pool.load('feed-ctr@2', files.v1);
  rmSync(files.v1);
  await app.ranker.pool.recycleWorker(0, 1);
  await app.ranker.pool.whenReady(5000);
  assert.equal(app.ranker.pool.mayServe('feed-ctr@2'), false);

  const during = await rank();
  assert.equal(during.statusCode, 200, during.body);
  assert.deepEqual(during.json().models.ctr, { name: 'feed-ctr', version: 1, arm: 'stable' }, 'canary users fall back to stable');
  const pinned = await rank({ 'feed-ctr': 2 });
  assert.equal(pinned.statusCode, 503, pinned.body);
  assert.equal(pinned.headers['retry-after'], '1');
  assert.equal(pinned.json().error.code, 'MODEL_VERSION_UNAVAILABLE');
  // The flags still name it: the admin API says what is happening, and OIP readiness says not ready.
  const admin = await app.ranker.admin.inject({ method: 'GET', url: '/admin/models', headers: { authorization: 'Bearer test-token-0123456789' } });
  assert.ok(admin.json().warnings.some((w: string) => /feed-ctr@2 \(canary\) is held by no inference worker; its users get feed-ctr@1/.test(w)), admin.body);
  const ready = await app.inject({ method: 'GET', url: '/v2/models/feed-ctr/versions/2/ready' });
  assert.equal(ready.statusCode, 503, ready.body);
  assert.equal((await app.inject({ method: 'GET', url: '/v2/models/feed-ctr/versions/1/ready' })).statusCode, 200);
});

test('a failed reload is tried again: once the file is back, the version is served without an operator', async (t) => {
  const files = modelFiles(t, ['v1', 'v2']);
  const attempts: number[] = [];
  const pool = await startPool(t, {}, { reloadFailed: (_key, _id, _error, _heldBy, attempt) => attempts.push(attempt) });
  await pool.load('feed-cvr@1', files.v2);
  const saved = `${files.v2}.saved`;
  copyFileSync(files.v2, saved);
  rmSync(files.v2);
  await pool.recycleWorker(0, 1);
  await pool.whenReady(5000);
  assert.deepEqual(attempts, [1]);
  assert.equal((await within(score(pool, 'feed-cvr@1', 10, 200), 1000)).state, 'rejected', 'not served while no worker holds it');
  // The file comes back (a publisher replacing it, a transient failure): the next retry loads it.
  copyFileSync(saved, files.v2);
  const started = performance.now();
  let served = false;
  while (!served && performance.now() - started < 4000) {
    served = (await within(score(pool, 'feed-cvr@1', 10, 500), 1000)).state === 'resolved';
    if (!served) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.ok(served, `served again after the file came back (failed attempts: ${attempts.join(', ')})`);
});

test('with two workers, a version one replacement lacks is routed to the worker that holds it', async (t) => {
  const files = modelFiles(t, ['v1', 'v2']);
  const pool = await startPool(t, { poolSize: 2 });
  await pool.load('feed-cvr@1', files.v2);
  rmSync(files.v2);
  await pool.recycleWorker(0, 1);
  await pool.whenReady(5000);
  const results = await within(Promise.all(Array.from({ length: 6 }, (_, i) => score(pool, 'feed-cvr@1', 10, 2000, i + 1))), 5000);
  assert.equal(results.state, 'resolved', results.state === 'rejected' ? results.error.message : 'every request is scored by the worker holding the version');
});

test('a worker that cannot start is retried with a growing delay, not in a tight loop', async (t) => {
  const attempts: number[] = [];
  let exits = 0;
  const pool = new InferencePool(poolOptions(), { startFailed: (_id, _code, _attempt, retryInMs) => attempts.push(retryInMs), workerExit: () => exits++ }, new URL('file:///nonexistent/pool-faults-worker.js'));
  t.after(() => pool.close());
  await assert.rejects(pool.start());
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.ok(attempts.length >= 3 && attempts.length <= 6, `attempts: ${attempts.join(', ')}`);
  assert.deepEqual(attempts.slice(0, 3), [100, 200, 400]);
  assert.equal(exits, attempts.length, 'each start failure is reported once');
});

test('a queued request fails at its deadline while no worker frees up', async (t) => {
  const files = modelFiles(t, ['v1', 'slow']);
  const pool = await startPool(t, { workerQueueDepth: 1 });
  await pool.load('slow@1', files.slow);
  await pool.load('feed-ctr@1', files.v1);
  let busyDone = false;
  const busy = occupy(pool, 'slow@1').finally(() => (busyDone = true));
  const queued = await within(score(pool, 'feed-ctr@1', 10, 50), 1500);
  assert.equal(queued.state, 'rejected', 'rejected while the worker is still busy');
  assert.equal(busyDone, false, 'the busy batch had not finished: the deadline, not a dispatch, failed it');
  if (queued.state === 'rejected') {
    assert.equal(queued.error.code, 'DEADLINE_EXCEEDED');
    assert.equal(queued.error.statusCode, 504);
    assert.ok(queued.ms >= 40, `not before its deadline (${queued.ms.toFixed(0)} ms)`);
  }
  await busy;
  assert.equal(pool.queuedCandidates, 0);
  const after = await within(score(pool, 'feed-ctr@1', 10), 3000);
  assert.equal(after.state, 'resolved', 'the pool serves afterwards');
});

// With WORKER_QUEUE_DEPTH 2 a batch is sent to a worker that is still running one; the deadline checks
// counted only the queue, so such a request was accepted and answered 200 long after its deadline.
test('work already sent to the worker counts toward a deadline: the estimate and the dispatch check see it', async (t) => {
  const files = modelFiles(t, ['v1', 'slow']);
  const pool = await startPool(t, { workerQueueDepth: 2 });
  await pool.load('slow@1', files.slow);
  await pool.load('feed-ctr@1', files.v1);
  await score(pool, 'slow@1', 100); // a cost per candidate for the slow version, from a real batch
  const quiet = pool.estimateMs('feed-ctr@1', 10);
  let busyDone = false;
  // ~1 s here (~0.13 ms per candidate): far past the deadline below on a host several times faster.
  const busy = score(pool, 'slow@1', 8000, 10_000).finally(() => (busyDone = true));
  const expected = pool.estimateMs('feed-ctr@1', 10);
  assert.ok(expected > quiet + 100, `the running batch is in the estimate: ${expected.toFixed(1)} ms (quiet: ${quiet.toFixed(1)} ms)`);
  const late = await within(score(pool, 'feed-ctr@1', 10, 100), 3000);
  assert.equal(late.state, 'rejected', late.state === 'resolved' ? `answered after ${late.ms.toFixed(0)} ms, past its 100 ms deadline` : 'refused');
  assert.equal(busyDone, false, 'refused at once, not after the running batch');
  if (late.state === 'rejected') assert.equal(late.error.code, 'DEADLINE_EXCEEDED');
  await busy;
});

// With two workers each running a batch, the dispatch check used the backlog of the worker with the
// fewest batches (the first on a tie), which ran a long one: the request was refused while the other
// worker freed up well inside its deadline.
test('a request goes to the worker that will start it soonest, and its deadline is judged by that one', async (t) => {
  const files = modelFiles(t, ['v1', 'slow']);
  const pool = await startPool(t, { poolSize: 2, workerQueueDepth: 2 });
  await pool.load('slow@1', files.slow);
  await pool.load('feed-ctr@1', files.v1);
  await score(pool, 'slow@1', 100);
  await score(pool, 'feed-ctr@1', 100);
  const long = score(pool, 'slow@1', 8000, 20_000); // ~1 s
  const short = score(pool, 'slow@1', 200, 20_000, 2); // ~30 ms
  const outcome = await within(score(pool, 'feed-ctr@1', 10, 200, 3), 3000);
  assert.equal(outcome.state, 'resolved', outcome.state === 'rejected' ? `refused: ${outcome.error.code}` : 'answered');
  assert.ok(outcome.ms < 200, `within its deadline (${outcome.ms.toFixed(0)} ms)`);
  await Promise.all([long, short]);
});

// The cost per candidate came from every batch: one of a single candidate put a run's whole fixed part
// on it and raised the estimate for a 300-candidate request ~40x.
test('a tiny batch does not inflate the cost per candidate that estimates are made from', async (t) => {
  const files = modelFiles(t, ['v1']);
  const pool = await startPool(t);
  await pool.load('feed-ctr@1', files.v1);
  for (let i = 0; i < 5; i++) await score(pool, 'feed-ctr@1', 300, 2000, i);
  const before = pool.expectedRunMs('feed-ctr@1', 300)!;
  assert.ok(before > 0);
  for (let i = 0; i < 5; i++) await score(pool, 'feed-ctr@1', 1, 2000, 10 + i);
  const after = pool.expectedRunMs('feed-ctr@1', 300)!;
  assert.equal(after, before, `${before.toFixed(3)} ms before the single-candidate batches, ${after.toFixed(3)} ms after`);
});

// Background work (shadows) waits for an idle worker for up to 5 s, holding its version's reference:
// an unload's drain waited that long, and flag edits queued behind the unload with it.
test('background work waiting for a draining version is failed at once', async (t) => {
  const files = modelFiles(t, ['v1', 'slow']);
  const pool = await startPool(t);
  await pool.load('slow@1', files.slow);
  await pool.load('feed-ctr@1', files.v1);
  const busy = score(pool, 'slow@1', 8000, 20_000); // ~1 s: no idle worker meanwhile
  const waiting = within(pool.scoreInBackground('feed-ctr@1', plan, encodeRequest(plan, sampleRequest(50, 5, 1)), 'p', performance.now() + 5000), 3000);
  await new Promise((resolve) => setTimeout(resolve, 20));
  pool.cancelBackground('feed-ctr@1');
  const outcome = await waiting;
  assert.equal(outcome.state, 'rejected');
  assert.ok(outcome.ms < 500, `failed at once (${outcome.ms.toFixed(0)} ms), not at its deadline`);
  if (outcome.state === 'rejected') assert.equal(outcome.error.code, 'MODEL_VERSION_UNAVAILABLE');
  await busy;
});

// Only batches of 64 or more taught the cost per candidate: a version held to smaller batches
// (BATCH_MAX_CANDIDATES, its manifest) never got one, and deadline checks counted ~0 for it.
test('a version whose batches are capped below 64 candidates still learns its cost per candidate', async (t) => {
  const files = modelFiles(t, ['v1']);
  const pool = await startPool(t, { batchMaxCandidates: 32 });
  await pool.load('feed-ctr@1', files.v1);
  assert.equal(pool.expectedRunMs('feed-ctr@1', 32), null);
  for (let i = 0; i < 3; i++) await score(pool, 'feed-ctr@1', 32, 2000, i);
  assert.ok((pool.expectedRunMs('feed-ctr@1', 32) ?? 0) > 0);
});

test('the 504 names the deadline the request asked for, not the time left when it was queued', async (t) => {
  const files = modelFiles(t, ['v1']);
  const pool = await startPool(t);
  await pool.load('feed-ctr@1', files.v1);
  // A request given 20 ms whose time ran out before it reached the pool (encoding, a busy event loop).
  const late = pool.score('feed-ctr@1', plan, encodeRequest(plan, sampleRequest(10, 5, 3)), 'p', performance.now() - 1, 20);
  const outcome = await within(late, 1000);
  assert.equal(outcome.state, 'rejected');
  if (outcome.state === 'rejected') {
    assert.equal(outcome.error.code, 'DEADLINE_EXCEEDED');
    assert.equal(outcome.error.message, 'deadline of 20 ms cannot be met');
  }
});

test('/v1/rank queued behind a busy worker answers 504 with its own deadlineMs, on time', async (t) => {
  const { app } = await startAppWithRepo(t, { workerQueueDepth: 1, ...kSlowModelsLoad }, [
    { name: 'feed-ctr', version: 1, variant: 'v1' },
    { name: 'feed-ctr', version: 2, variant: 'slow' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  assert.equal(app.ranker.pool.isLoaded('feed-ctr@2'), true, 'the slow version is loaded to keep the worker busy');
  let busyDone = false;
  const busy = occupy(app.ranker.pool, 'feed-ctr@2').finally(() => (busyDone = true));
  const body = { ...sampleRequest(500, 20, 4), deadlineMs: 100 };
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const reply = await within(app.inject({ method: 'POST', url: '/v1/rank', payload: body }), 1500);
  assert.equal(reply.state, 'resolved');
  assert.equal(busyDone, false, 'answered before the busy batch finished');
  if (reply.state === 'resolved') {
    assert.equal(reply.value.statusCode, 504, reply.value.body);
    assert.equal(reply.value.json().error.message, 'deadline of 100 ms cannot be met');
  }
  await busy;
});

// A request with cpa candidates needs the ctr and the cvr model; the early check added up two
// estimates that each included the worker's backlog, so it was refused when its deadline lay between
// the real wait and twice the backlog.
test('/v1/rank counts the worker backlog once for a request that needs both models', async (t) => {
  const { app } = await startAppWithRepo(t, kSlowModelsLoad, [
    { name: 'feed-ctr', version: 1, variant: 'v1' },
    { name: 'feed-ctr', version: 2, variant: 'slow' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  const { pool, registry } = app.ranker;
  const slow = registry.get('feed-ctr', 2)!;
  const stable = registry.get('feed-ctr', 1)!;
  const busyWith = (n: number) => pool.score(slow.key, slow.plan!, encodeRequest(slow.plan!, sampleRequest(n, 5, 5)), slow.outputName, performance.now() + 20_000);
  await busyWith(200); // a cost per candidate for the slow version
  const busy = busyWith(4000);
  const body = { ...sampleRequest(30, 20, 2), deadlineMs: 0 };
  body.candidates.forEach((c) => (c.bidType = 'cpa'));
  const backlog = pool.estimateMs(stable.key, 30);
  assert.ok(backlog > 100, `the busy batch is in the estimate (${backlog.toFixed(0)} ms)`);
  body.deadlineMs = Math.round(backlog * 1.4 + 20);
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: body });
  assert.equal(res.statusCode, 200, `deadline ${body.deadlineMs} ms for a wait of ~${backlog.toFixed(0)} ms: ${res.body}`);
  assert.ok(res.json().models.cvr, 'both models scored it');
  await busy;
});

test('an empty queue admits a request larger than the queue bound; a non-empty one still sheds', async (t) => {
  const files = modelFiles(t, ['v1', 'slow']);
  const pool = await startPool(t, { workerQueueDepth: 1, maxQueuedCandidates: 10 });
  await pool.load('feed-ctr@1', files.v1);
  await pool.load('slow@1', files.slow);
  const alone = await within(score(pool, 'feed-ctr@1', 20), 3000);
  assert.equal(alone.state, 'resolved', alone.state === 'rejected' ? alone.error.message : 'admitted');
  assert.equal(alone.state === 'resolved' && alone.value.length, 20);

  const busy = occupy(pool, 'slow@1');
  const waiting = score(pool, 'feed-ctr@1', 5, 10_000);
  const shed = await within(score(pool, 'feed-ctr@1', 20, 10_000), 1000);
  assert.equal(shed.state, 'rejected');
  if (shed.state === 'rejected') {
    assert.equal(shed.error.code, 'SERVER_OVERLOADED');
    assert.equal(shed.error.message, 'server overloaded: 5 candidates queued');
  }
  await busy;
  assert.equal((await waiting).length, 5);
});
