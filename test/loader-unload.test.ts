/**
 * Manual load / unload through the admin API: an unload by hand stays until a load by hand or flags
 * that name the version again; routed versions refuse it; unknown models and versions get their own 404s.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kAdminAuth, startAppWithRepo } from './helpers/app.js';
import type { VersionSpec } from './helpers/fixture-repo.js';

const kVersions: VersionSpec[] = [
  { name: 'feed-ctr', version: 1, variant: 'v1' },
  { name: 'feed-ctr', version: 2, variant: 'v1' },
  { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
];

async function setup(t: import('node:test').TestContext) {
  const { app } = await startAppWithRepo(t, {}, kVersions);
  const call = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: object) => app.ranker.admin.inject({ method, url, headers: kAdminAuth, payload });
  const state = (version: number) => app.ranker.registry.get('feed-ctr', version)!.state;
  return { app, call, state };
}

test('a version unloaded by hand stays unloaded across rescans (admin and periodic)', async (t) => {
  const { app, call, state } = await setup(t);
  assert.equal(state(2), 'ready', 'among the newest keepVersions: loaded at start');
  const unload = await call('POST', '/admin/models/feed-ctr/versions/2/unload');
  assert.equal(unload.statusCode, 200, unload.body);
  assert.equal(unload.json().state, 'unloaded');
  assert.equal((await call('POST', '/admin/rescan')).statusCode, 200);
  assert.equal(state(2), 'unloaded', 'POST /admin/rescan does not reload it');
  await app.ranker.loader.scan();
  assert.equal(state(2), 'unloaded', 'the periodic rescan does not reload it');
  assert.equal(app.ranker.pool.isLoaded('feed-ctr@2'), false);
});

test('a load by hand ends a manual unload; the version stays loaded across rescans', async (t) => {
  const { app, call, state } = await setup(t);
  assert.equal((await call('POST', '/admin/models/feed-ctr/versions/2/unload')).statusCode, 200);
  const load = await call('POST', '/admin/models/feed-ctr/versions/2/load');
  assert.equal(load.statusCode, 200, load.body);
  assert.equal(load.json().state, 'ready');
  await call('POST', '/admin/rescan');
  assert.equal(state(2), 'ready');
  assert.equal(app.ranker.pool.isLoaded('feed-ctr@2'), true);
});

test('flags that name a version unloaded by hand load it again, and it is then an ordinary version', async (t) => {
  const { app, call, state } = await setup(t);
  assert.equal((await call('POST', '/admin/models/feed-ctr/versions/2/unload')).statusCode, 200);
  const shadow = await call('PATCH', '/admin/models/feed-ctr/flags', { shadow: [2] });
  assert.equal(shadow.statusCode, 200, shadow.body);
  assert.equal(state(2), 'ready');
  assert.deepEqual(app.ranker.registry.routing.models.get('feed-ctr')!.shadow.map((v) => v.version), [2]);
  // Unflagged again: kept, as one of the newest keepVersions, rather than unloaded by the old manual unload.
  assert.equal((await call('PATCH', '/admin/models/feed-ctr/flags', { shadow: [] })).statusCode, 200);
  await call('POST', '/admin/rescan');
  assert.equal(state(2), 'ready');
});

test('unloading a routed version (stable or shadow) is refused with 409 and changes nothing', async (t) => {
  const { call, state } = await setup(t);
  assert.equal((await call('PATCH', '/admin/models/feed-ctr/flags', { shadow: [2] })).statusCode, 200);
  for (const version of [1, 2]) {
    const res = await call('POST', `/admin/models/feed-ctr/versions/${version}/unload`);
    assert.equal(res.statusCode, 409, res.body);
    assert.equal(res.json().error.code, 'MODEL_VERSION_NOT_READY');
    assert.match(res.json().error.message, /referenced by rollout flags/);
    assert.equal(state(version), 'ready');
  }
});

test('load / unload of an unknown model answer MODEL_NOT_FOUND, of an unknown version MODEL_VERSION_NOT_FOUND', async (t) => {
  const { call } = await setup(t);
  for (const action of ['load', 'unload']) {
    const noModel = await call('POST', `/admin/models/nope/versions/1/${action}`);
    assert.equal(noModel.statusCode, 404, noModel.body);
    assert.equal(noModel.json().error.code, 'MODEL_NOT_FOUND', action);
    const noVersion = await call('POST', `/admin/models/feed-ctr/versions/9/${action}`);
    assert.equal(noVersion.statusCode, 404, noVersion.body);
    assert.equal(noVersion.json().error.code, 'MODEL_VERSION_NOT_FOUND', action);
  }
  // The same answers as GET on the same path.
  assert.equal((await call('GET', '/admin/models/nope/versions/1')).json().error.code, 'MODEL_NOT_FOUND');
});
