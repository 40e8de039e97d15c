/**
 * The closed loop's bookkeeping (scripts/closed-loop.sh, scripts/loop-summary.mjs): the "serving"
 * version is the one rollout.json routes, not the newest on disk, the summary refuses to compare
 * against a version that did not serve the labeled impressions, and it reports the days the teacher
 * was really trained on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeNpy, writeNpyInt64 } from '../world/npy.js';
import { hashId } from '../src/features/id-hash.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const node = (script: string, args: string[]) => spawnSync(process.execPath, [join(root, 'scripts', script), ...args], { encoding: 'utf8' });

function tempDir(t: { after: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'loop-summary-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('stable-version.mjs reads the stable version from rollout.json, not the newest on disk', (t) => {
  const repo = join(tempDir(t), 'repo');
  for (const v of ['1', '2', '3']) mkdirSync(join(repo, 'feed-ctr', v), { recursive: true });
  writeFileSync(join(repo, 'rollout.json'), JSON.stringify({ salt: 's', routes: {}, models: { 'feed-ctr': { stable: 2, canary: { version: 3, percent: 5 } } } }));
  const r = node('stable-version.mjs', [repo, 'feed-ctr']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '2');
  const missing = node('stable-version.mjs', [repo, 'reels-ctr']);
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /rollout\.json has no stable version for reels-ctr/);
  // closed-loop.sh takes OLDV from it (it used to be `ls | sort -n | tail -1`: 3 here)
  assert.match(readFileSync(join(root, 'scripts', 'closed-loop.sh'), 'utf8'), /OLDV=\$\(node scripts\/stable-version\.mjs "\$WORK\/repo" "\$TASK"\)/);
});

/** A closed-loop work dir with one labeled day (8) served by feed-ctr `servedVersion`, and a run. */
function workDir(dir: string, servedVersion: number, metrics: Record<string, unknown> = {}): string {
  const work = join(dir, 'work');
  const shard = join(work, 'labeled', 'd8', 'day-008');
  mkdirSync(shard, { recursive: true });
  mkdirSync(join(work, 'state'), { recursive: true });
  mkdirSync(join(work, 'run'), { recursive: true });
  const n = 40;
  const pctr = Float32Array.from({ length: n }, (_, i) => 0.01 + i / 1000);
  const click = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
  writeNpy(join(shard, 'imp_served_pctr.npy'), '<f4', [n], pctr);
  writeNpy(join(shard, 'imp_click.npy'), '|u1', [n], click);
  writeNpy(join(shard, 'imp_model.npy'), '<i2', [n], new Int16Array(n));
  writeNpy(join(shard, 'imp_model_version.npy'), '<i4', [n], new Int32Array(n).fill(servedVersion));
  writeNpy(join(shard, 'imp_arm.npy'), '|i1', [n], new Int8Array(n));
  // 10 users (ids 1000..1009), 4 impressions each
  writeNpyInt64(join(shard, 'user_id.npy'), [10], 10, (u) => 1000 + u);
  writeNpy(join(shard, 'imp_user_row.npy'), '<i4', [n], Int32Array.from({ length: n }, (_, i) => i % 10));
  const index = { shards: [{ day: 8, dir: 'day-008', impressions: n, clickRate: 0.3, oracle: { clickAuc: 0.8 } }], labeler: { labeled: n, models: ['feed-ctr'], arms: ['stable'] } };
  writeFileSync(join(work, 'labeled', 'd8', 'index.json'), JSON.stringify(index));
  // The run's split says teacher days 0-5; the reused teacher was trained on days 0-2.
  writeFileSync(join(work, 'state', 'pipeline.log'), '[   0.1s] days: teacher [0, 1, 2, 3, 4, 5] students [0, 1, 2, 3, 4, 5, 6] adapter [6] eval [7, 8]\n');
  const meta = { teacherDays: [0, 1, 2], teacherVersion: 'teacher-20261201T000000Z-tiny', studentDays: [0, 1, 2, 3, 4, 5, 6], adapterDays: [6], evalDays: [7, 8] };
  writeFileSync(join(work, 'run', 'results.json'), JSON.stringify({ meta }));
  for (const v of ['3', '4']) {
    mkdirSync(join(work, 'repo', 'feed-ctr', v), { recursive: true });
    const lineage = { distillation: 'kd', metrics: { auc: 0.7, evalDays: '8-8', evalRows: n, ...metrics } };
    writeFileSync(join(work, 'repo', 'feed-ctr', v, 'manifest.json'), JSON.stringify({ lineage }));
  }
  return work;
}

test('the summary compares with the version that served the labeled days, and fails loudly otherwise', (t) => {
  const dir = tempDir(t);
  const work = workDir(dir, 2);
  const ok = node('loop-summary.mjs', [work, 'feed-ctr', '2', '3', 'ready', '8']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /as served by v2/);

  const wrong = node('loop-summary.mjs', [work, 'feed-ctr', '3', '4', 'ready', '8']);
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, /day 8 impressions were served by feed-ctr v2 \(imp_model_version\), not v3/);
  assert.doesNotMatch(wrong.stdout, /as served by v3/);
});

test('the summary prints the days the teacher was trained on, from the run metadata', (t) => {
  const work = workDir(tempDir(t), 2);
  const r = node('loop-summary.mjs', [work, 'feed-ctr', '2', '3', 'ready', '8']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /pipeline split: teacher \[0, 1, 2\] \(teacher-20261201T000000Z-tiny\) students \[0, 1, 2, 3, 4, 5, 6\] adapter \[6\] eval \[7, 8\]/);
});

test('a new version measured on the report half of eval users is compared on those users\' impressions only', (t) => {
  const salt = 0x5e1ec701; // pipeline/gemlite/evaluate.py EVAL_SPLIT_SALT
  const reportUsers = Array.from({ length: 10 }, (_, u) => 1000 + u).filter((id) => hashId(id, salt, 3) === 2);
  assert.ok(reportUsers.length > 0 && reportUsers.length < 10, 'the fixture has users on both sides');
  const work = workDir(tempDir(t), 2, { evalSplitSalt: salt });
  const r = node('loop-summary.mjs', [work, 'feed-ctr', '2', '3', 'ready', '8']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`same impressions of the report-half users, as served by v2 .* on ${reportUsers.length * 4} rows`));

  const all = node('loop-summary.mjs', [workDir(tempDir(t), 2), 'feed-ctr', '2', '3', 'ready', '8']);
  assert.match(all.stdout, /same impressions, as served by v2 .* on 40 rows/, 'a version without the split: every impression');
});
