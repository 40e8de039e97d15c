/**
 * Concurrent flag writes: rollout.json stays valid JSON, and concurrent edits of different models
 * (admin PATCH, PUT, automatic canary rollback) all survive instead of the last writer's merge winning.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kAdminAuth, startAppWithRepo } from './helpers/app.js';
import { defaultRollout, kTwoVersionsEach, type VersionSpec } from './helpers/fixture-repo.js';
import { writeRollout, type Rollout } from '../src/models/rollout.js';


const onDisk = (repo: string) => JSON.parse(readFileSync(path.join(repo, 'rollout.json'), 'utf8')) as Rollout;

test('writeRollout: writes in the same millisecond all succeed, leave valid JSON (the last one) and no temp files', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rollout-write-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const long = { ...defaultRollout(), salt: 'x'.repeat(500) };
  const short = defaultRollout();
  for (let i = 0; i < 30; i++) {
    const results = await Promise.allSettled([writeRollout(dir, long), writeRollout(dir, short)]);
    assert.deepEqual(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok')), ['ok', 'ok'], `iteration ${i}`);
    assert.deepEqual(JSON.parse(readFileSync(path.join(dir, 'rollout.json'), 'utf8')), short, `iteration ${i}: the later write stays`);
  }
  assert.deepEqual(readdirSync(dir), ['rollout.json'], 'no temp file left behind');
});

test('two concurrent PATCH /admin/models/{name}/flags on different models both take effect', async (t) => {
  const { app, repo } = await startAppWithRepo(t, {}, kTwoVersionsEach);
  const patch = (name: string, payload: object) => app.ranker.admin.inject({ method: 'PATCH', url: `/admin/models/${name}/flags`, headers: kAdminAuth, payload });
  const [a, b] = await Promise.all([patch('feed-ctr', { stable: 2 }), patch('feed-cvr', { shadow: [2] })]);
  assert.equal(a.statusCode, 200, a.body);
  assert.equal(b.statusCode, 200, b.body);
  const expected = { 'feed-ctr': { stable: 2 }, 'feed-cvr': { stable: 1, shadow: [2] } };
  assert.deepEqual(onDisk(repo).models, expected, 'both edits persisted');
  assert.deepEqual(app.ranker.registry.rollout!.models, expected, 'both edits applied');
  assert.equal(app.ranker.registry.routing.models.get('feed-ctr')!.stable.version, 2);
});

test('an automatic canary rollback concurrent with a PATCH of another model: both survive', async (t) => {
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].canary = { version: 2, percent: 50 };
  const { app, repo } = await startAppWithRepo(t, {}, kTwoVersionsEach);
  // The fixture repo is written with the default flags; start from a live canary instead.
  assert.deepEqual(await app.ranker.loader.setRollout(rollout), []);
  const [, patched] = await Promise.all([
    app.ranker.loader.rollbackCanary('feed-ctr', 2),
    app.ranker.admin.inject({ method: 'PATCH', url: '/admin/models/feed-cvr/flags', headers: kAdminAuth, payload: { shadow: [2] } }),
  ]);
  assert.equal(patched.statusCode, 200, patched.body);
  const expected = { 'feed-ctr': { stable: 1, canary: { version: 2, percent: 0 } }, 'feed-cvr': { stable: 1, shadow: [2] } };
  assert.deepEqual(onDisk(repo).models, expected);
  assert.deepEqual(app.ranker.registry.rollout!.models, expected);
  assert.equal(app.ranker.registry.routing.models.get('feed-ctr')!.canary, null, 'canary no longer routed');
});

test('concurrent PUT /admin/rollout: both answer 200 and the file is valid JSON matching the applied flags', async (t) => {
  const { app, repo } = await startAppWithRepo(t);
  const long: Rollout = { ...defaultRollout(), salt: 'a-longer-salt-' + 'x'.repeat(40), models: { ...defaultRollout().models, 'feed-ctr': { stable: 1, shadow: [1] } } };
  const short = defaultRollout();
  for (let i = 0; i < 5; i++) {
    const results = await Promise.all([long, short].map((payload) => app.ranker.admin.inject({ method: 'PUT', url: '/admin/rollout', headers: kAdminAuth, payload })));
    assert.deepEqual(results.map((r) => r.statusCode), [200, 200], results.map((r) => r.body).join(' | '));
    const persisted = onDisk(repo);
    assert.ok([JSON.stringify(long), JSON.stringify(short)].includes(JSON.stringify(persisted)), 'one of the two bodies, whole');
    assert.deepEqual(app.ranker.registry.rollout, persisted, 'what is applied is what is on disk');
    assert.equal(app.ranker.loader.rolloutError, null);
  }
});

test('flags rejected after the write name the reason once, without a doubled "rollout flags rejected:" prefix', async (t) => {
  const { app, repo } = await startAppWithRepo(t);
  const loader = app.ranker.loader;
  const scan = loader.scan.bind(loader);
  // Another writer (another process) leaves bad flags between this write and the rescan that follows.
  loader.scan = () => {
    writeFileSync(path.join(repo, 'rollout.json'), '{"salt": ');
    loader.scan = scan;
    return scan();
  };
  const res = await app.ranker.admin.inject({ method: 'PUT', url: '/admin/rollout', headers: kAdminAuth, payload: defaultRollout() });
  assert.equal(res.statusCode, 422, res.body);
  const { code, message } = res.json().error;
  assert.equal(code, 'ROLLOUT_INVALID');
  assert.match(message, /^rollout flags rejected: \S*rollout\.json is not JSON/);
  assert.equal(message.match(/rollout flags rejected/g)!.length, 1, message);
});

test('the automatic rollback zeroes only the canary it judged: a newer canary named meanwhile keeps serving', async (t) => {
  const versions: VersionSpec[] = [...kTwoVersionsEach, { name: 'feed-ctr', version: 3, variant: 'v1' }];
  const { app, repo } = await startAppWithRepo(t, {}, versions);
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].canary = { version: 2, percent: 50 };
  await app.ranker.loader.setRollout(rollout);
  // An operator (or another process) replaces the failing canary before the monitor's rollback of v2
  // gets its turn in the flag queue.
  const replaced = await app.ranker.admin.inject({ method: 'PATCH', url: '/admin/models/feed-ctr/flags', headers: kAdminAuth, payload: { canary: { version: 3, percent: 20 } } });
  assert.equal(replaced.statusCode, 200, replaced.body);
  const rolledBack = await app.ranker.loader.rollbackCanary('feed-ctr', 2);
  assert.equal(rolledBack.written, false, 'nothing to roll back: v2 is no longer the canary');
  assert.deepEqual(onDisk(repo).models['feed-ctr'], { stable: 1, canary: { version: 3, percent: 20 } });
});

test('a rollback already done (by another process) writes nothing and says so', async (t) => {
  const { app, repo } = await startAppWithRepo(t, {}, kTwoVersionsEach);
  const rollout = defaultRollout();
  rollout.models['feed-ctr'].canary = { version: 2, percent: 50 };
  await app.ranker.loader.setRollout(rollout);
  assert.equal((await app.ranker.loader.rollbackCanary('feed-ctr', 2)).written, true);
  const before = readFileSync(path.join(repo, 'rollout.json'), 'utf8');
  assert.equal((await app.ranker.loader.rollbackCanary('feed-ctr', 2)).written, false);
  assert.equal(readFileSync(path.join(repo, 'rollout.json'), 'utf8'), before);
});

test('PUT /admin/rollout with a null body is refused (422), not taken for "no change"', async (t) => {
  const { app } = await startAppWithRepo(t);
  const res = await app.ranker.admin.inject({ method: 'PUT', url: '/admin/rollout', headers: { ...kAdminAuth, 'content-type': 'application/json' }, payload: 'null' });
  assert.equal(res.statusCode, 422, res.body);
  assert.equal(res.json().error.code, 'ROLLOUT_INVALID');
});
