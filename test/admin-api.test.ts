/**
 * The admin API's answers to bad input and its load/unload operations (found by a review that
 * reproduced each with a script; every test here failed before its fix).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kAdminAuth, kSlowModelsLoad, sampleRequest, startAppWithRepo } from './helpers/app.js';
import { defaultRollout, kTwoVersionsEach, writeRolloutFile, writeVersion } from './helpers/fixture-repo.js';
import { validateRollout } from '../src/models/rollout.js';

const kJson = { ...kAdminAuth, 'content-type': 'application/json' };

// The admin instance used Fastify's default validator: types coerced, unknown keys dropped. A typo
// answered 200 as a no-op, `true` became version 1 and `false` deleted the canary.
test('flag edits are validated strictly: wrong types and unknown fields are 400s that change nothing', async (t) => {
  const { app } = await startAppWithRepo(t, {}, kTwoVersionsEach, defaultRollout({ 'feed-ctr': 2, 'feed-cvr': 1 }));
  const { admin } = app.ranker;
  const set = await admin.inject({ method: 'PATCH', url: '/admin/models/feed-ctr/flags', headers: kJson, payload: JSON.stringify({ canary: { version: 1, percent: 10 } }) });
  assert.equal(set.statusCode, 200, set.body);
  const before = set.json().flags;
  assert.deepEqual(before, { stable: 2, canary: { version: 1, percent: 10 } });
  const bad: Array<[unknown, string]> = [
    [{ stabel: 1 }, '/stabel'],
    [{ stable: true }, '/stable'],
    [{ stable: '1' }, '/stable'],
    [{ canary: false }, '/canary'],
    [{ shadow: '1' }, '/shadow'],
    [{ canary: { version: 1, percent: 10, precent: 50 } }, '/canary'],
  ];
  for (const [body, where] of bad) {
    const res = await admin.inject({ method: 'PATCH', url: '/admin/models/feed-ctr/flags', headers: kJson, payload: JSON.stringify(body) });
    assert.equal(res.statusCode, 400, `${JSON.stringify(body)}: ${res.body}`);
    assert.equal(res.json().error.code, 'RANK_BAD_REQUEST');
    assert.ok(res.json().error.path.startsWith(where), `${JSON.stringify(body)}: ${res.body}`);
  }
  const after = (await admin.inject({ method: 'GET', url: '/admin/models/feed-ctr', headers: kAdminAuth })).json().flags;
  assert.deepEqual(after, before);
});

// A percent-encoding error is answered before routing, past setErrorHandler: it came back in
// Fastify's shape (`error` a string, code FST_ERR_BAD_URL), on the admin port before the token check.
test('a malformed URL answers 400 BAD_URL in the API error shape on both ports', async (t) => {
  const { app } = await startAppWithRepo(t);
  for (const [api, instance, headers] of [
    ['ranking', app, {}],
    ['admin, no token', app.ranker.admin, {}],
    ['admin', app.ranker.admin, kAdminAuth],
  ] as const) {
    const res = await instance.inject({ method: 'GET', url: '/v2/models/%E0%A4%A', headers });
    assert.equal(res.statusCode, 400, `${api}: ${res.body}`);
    assert.equal(res.json().error.code, 'BAD_URL', `${api}: ${res.body}`);
    assert.equal(typeof res.json().error.message, 'string');
  }
});

// Flags were looked up as plain-object members: `constructor` (a plain model name) found
// Object.prototype.constructor, so a route to it passed validation and took the surface down (503).
test('a model named like an Object prototype member has no flags unless the flags give it some', async (t) => {
  assert.throws(
    () => validateRollout({ salt: 's', routes: { feed: { ctr: 'constructor', cvr: 'feed-cvr' } }, models: { 'feed-cvr': { stable: 1 } } }),
    (error: Error & { code?: string }) => error.code === 'ROLLOUT_INVALID' && /constructor/.test(error.message),
  );
  const { app } = await startAppWithRepo(t);
  const { admin } = app.ranker;
  const put = await admin.inject({
    method: 'PUT',
    url: '/admin/rollout',
    headers: kJson,
    payload: JSON.stringify({ salt: 'test', routes: { feed: { ctr: 'constructor', cvr: 'feed-cvr' } }, models: { 'feed-ctr': { stable: 1 }, 'feed-cvr': { stable: 1 } } }),
  });
  assert.equal(put.statusCode, 422, put.body);
  assert.equal(put.json().error.code, 'ROLLOUT_INVALID');
  const patch = await admin.inject({ method: 'PATCH', url: '/admin/models/constructor/flags', headers: kJson, payload: '{}' });
  assert.equal(patch.statusCode, 404, patch.body);
  assert.equal(patch.json().error.code, 'MODEL_NOT_FOUND');
  const rank = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) });
  assert.equal(rank.statusCode, 200, 'the last good flags still serve');
});

// A failed load answered 200 with state "failed"; docs/ERRORS.md promises the failure's own 422.
test('a load by hand that fails the gate answers 422 MODEL_GATE_FAILED naming the check', async (t) => {
  const { app } = await startAppWithRepo(t, {}, [
    { name: 'feed-ctr', version: 1, variant: 'v1' },
    { name: 'feed-ctr', version: 2, variant: 'nan' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  const res = await app.ranker.admin.inject({ method: 'POST', url: '/admin/models/feed-ctr/versions/2/load', headers: kAdminAuth });
  assert.equal(res.statusCode, 422, res.body);
  assert.equal(res.json().error.code, 'MODEL_GATE_FAILED');
  assert.match(res.json().error.message, /finite-probabilities/);
  const state = (await app.ranker.admin.inject({ method: 'GET', url: '/admin/models/feed-ctr/versions/2', headers: kAdminAuth })).json();
  assert.equal(state.state, 'failed');
  const ok = await app.ranker.admin.inject({ method: 'POST', url: '/admin/models/feed-ctr/versions/1/load', headers: kAdminAuth });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.json().state, 'ready');
});

// A load that arrived while an unload waited for in-flight requests reloaded the version and answered
// "ready"; the unload then removed it anyway, and pinned requests got 409 until the next rescan.
test('a load by hand during an unload drain waits for it and leaves the version ready', async (t) => {
  const { app } = await startAppWithRepo(t, {}, kTwoVersionsEach, defaultRollout({ 'feed-ctr': 1, 'feed-cvr': 1 }));
  const { admin, registry } = app.ranker;
  const post = (url: string) => admin.inject({ method: 'POST', url, headers: kAdminAuth });
  const v2 = registry.get('feed-ctr', 2)!;
  const state = () => v2.state;
  assert.equal(state(), 'ready');
  registry.acquire(v2); // an in-flight request pinned to v2
  const unloading = post('/admin/models/feed-ctr/versions/2/unload');
  while (state() !== 'draining') await new Promise((resolve) => setTimeout(resolve, 5));
  const loading = post('/admin/models/feed-ctr/versions/2/load');
  await new Promise((resolve) => setTimeout(resolve, 50));
  registry.release(v2);
  const unload = await unloading;
  assert.equal(unload.statusCode, 200, unload.body);
  assert.equal(unload.json().state, 'unloaded');
  const load = await loading;
  assert.equal(load.statusCode, 200, load.body);
  assert.equal(load.json().state, 'ready');
  assert.equal(state(), 'ready', 'the later call wins');
  const pinned = await app.inject({ method: 'POST', url: '/v1/rank', payload: { ...sampleRequest(5, 5, 1), pin: { 'feed-ctr': 2 } } });
  assert.equal(pinned.statusCode, 200, pinned.body);
});

// Loads by hand shared the flag queue, so an automatic canary rollback waited for a whole load (its
// scan and gate); and a rollback's flags took effect only after the scan, which waits behind one
// that is loading a version.
test('a canary rollback takes effect at once while a load by hand is gating a slow version', async (t) => {
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].canary = { version: 2, percent: 50 };
  const { app, repo } = await startAppWithRepo(t, kSlowModelsLoad, kTwoVersionsEach, rollout);
  const { loader, registry } = app.ranker;
  // A canary at 0% routes nobody: the routing table then has no canary for the model.
  const canaryPercent = () => registry.routing.models.get('feed-ctr')?.canary?.percent ?? 0;
  assert.equal(canaryPercent(), 50);
  writeVersion(repo, { name: 'feed-ctr', version: 3, variant: 'slow' });
  let loaded = false;
  const load = loader.loadByHand('feed-ctr', 3).finally(() => (loaded = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const rollback = loader.rollbackCanary('feed-ctr', 2);
  while (canaryPercent() !== 0 && !loaded) await new Promise((resolve) => setTimeout(resolve, 2));
  assert.equal(loaded, false, 'the rollback took effect while the load was still running');
  assert.equal(canaryPercent(), 0);
  assert.equal((await rollback).written, true);
  assert.equal((await load).state, 'ready');
  assert.equal(canaryPercent(), 0, 'the scan that finished the load did not restore the flags it had read before');
});

// A scan took its wanted/referenced snapshot before draining old versions one by one; flags this
// loader wrote meanwhile (in effect at once) routed one of those versions, which was then unloaded
// anyway: 503s until a rescan reloaded it.
test('a version that flags route while a scan is unloading old ones is kept', async (t) => {
  const rollout = defaultRollout({ 'feed-ctr': 3, 'feed-cvr': 1 });
  rollout.models['feed-ctr'].canary = { version: 1, percent: 10 };
  rollout.models['feed-ctr'].shadow = [2];
  const versions = [1, 2, 3].map((version) => ({ name: 'feed-ctr', version, variant: 'v1' as const }));
  const { app, repo } = await startAppWithRepo(t, { keepVersions: 1 }, [...versions, { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' }], rollout);
  const { loader, registry } = app.ranker;
  const v = (n: number) => registry.get('feed-ctr', n)!;
  const v2States: string[] = [];
  registry.on('state', (entry) => entry === v(2) && v2States.push(entry.state));
  registry.acquire(v(1)); // a canary request in flight on version 1
  writeRolloutFile(repo, defaultRollout({ 'feed-ctr': 3, 'feed-cvr': 1 })); // another writer drops canary and shadow
  const scan = loader.scan();
  while (v(1).state !== 'draining') await new Promise((resolve) => setTimeout(resolve, 1));
  const edit = loader.updateFlags('feed-ctr', { stable: 2 });
  while (registry.routing.models.get('feed-ctr')!.stable.version !== 2) await new Promise((resolve) => setTimeout(resolve, 1));
  registry.release(v(1));
  const statuses = new Set<number>();
  let done = false;
  void edit.finally(() => (done = true));
  while (!done) statuses.add((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) })).statusCode);
  await edit;
  await scan;
  assert.deepEqual([...statuses], [200]);
  assert.deepEqual(v2States, [], 'version 2 was never drained or unloaded');
  assert.equal(v(2).state, 'ready');
  assert.equal(v(1).state, 'unloaded');
});

// With two edits, the second waited for the first one's scan, which waited behind a scan gating a
// slow version: only the first rollback took effect at once.
test('two canary rollbacks during a slow load both take effect at once', async (t) => {
  const rollout = defaultRollout({ 'feed-ctr': 1, 'feed-cvr': 1 });
  rollout.models['feed-ctr'].canary = { version: 2, percent: 50 };
  rollout.models['feed-cvr'].canary = { version: 2, percent: 50 };
  const { app, repo } = await startAppWithRepo(t, kSlowModelsLoad, [
    ...kTwoVersionsEach,
    { name: 'feed-cvr', version: 2, variant: 'v2', objective: 'cvr' },
  ], rollout);
  const { loader, registry } = app.ranker;
  const percent = (name: string) => registry.routing.models.get(name)?.canary?.percent ?? 0;
  assert.equal(percent('feed-ctr'), 50);
  assert.equal(percent('feed-cvr'), 50);
  writeVersion(repo, { name: 'feed-ctr', version: 3, variant: 'slow' });
  let scanned = false;
  const scan = loader.scan().finally(() => (scanned = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const rollbacks = Promise.all([loader.rollbackCanary('feed-ctr', 2), loader.rollbackCanary('feed-cvr', 2)]);
  while ((percent('feed-ctr') !== 0 || percent('feed-cvr') !== 0) && !scanned) await new Promise((resolve) => setTimeout(resolve, 2));
  assert.equal(scanned, false, 'both took effect while the slow version was still loading');
  await scan;
  assert.deepEqual((await rollbacks).map((r) => r.written), [true, true]);
  assert.equal(percent('feed-ctr') + percent('feed-cvr'), 0);
});

// The routing table keeps the entries it was built from; a review saw a routed version answer 200
// while it was being loaded and gated again (after a race that unloaded it, since fixed).
test('a routed version that is not ready (loading, validating) answers 503, not unvalidated scores', async (t) => {
  const { app } = await startAppWithRepo(t);
  const { registry } = app.ranker;
  const stable = registry.get('feed-ctr', 1)!;
  registry.setState(stable, 'validating');
  const res = await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) });
  assert.equal(res.statusCode, 503, res.body);
  assert.equal(res.json().error.code, 'MODEL_VERSION_UNAVAILABLE');
  registry.setState(stable, 'ready');
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) })).statusCode, 200);
});

test('a canary that is not ready sends its users to stable', async (t) => {
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].canary = { version: 2, percent: 100 };
  const { app } = await startAppWithRepo(t, {}, kTwoVersionsEach, rollout);
  const { registry } = app.ranker;
  const rank = async () => (await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(5, 5, 1) })).json().models.ctr;
  assert.equal((await rank()).version, 2);
  registry.setState(registry.get('feed-ctr', 2)!, 'loading');
  assert.deepEqual(await rank(), { name: 'feed-ctr', version: 1, arm: 'stable' });
});
