/**
 * scripts/merge-world.mjs re-merged into an existing --out must point every day at the shards of
 * this merge: re-merging is normal (a day relabeled, another base), and a stale link would train the
 * pipeline on the old day without a word.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../scripts/merge-world.mjs', import.meta.url));
const header = { seed: 3, users: 10, advertisers: 2, categories: 4, userDense: [], adDense: [], surfaces: ['feed'], events: ['impression'], bidTypes: ['cpc'] };

/** A world dir with one (empty) shard dir per day and its index.json. */
function worldDir(root: string, name: string, days: number[], extra: Record<string, unknown> = {}): string {
  const dir = join(root, name);
  const shards = days.map((day) => {
    const sdir = `day-${String(day).padStart(3, '0')}`;
    mkdirSync(join(dir, sdir), { recursive: true });
    writeFileSync(join(dir, sdir, 'tag'), name);
    return { day, dir: sdir, impressions: 1 };
  });
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ ...header, days: days.length, shards, ...extra }));
  return dir;
}

function merge(args: string[]) {
  return spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });
}

test('re-merging into an existing --out replaces every day link', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'merge-world-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const base = worldDir(root, 'base', [0, 1]);
  const first = worldDir(root, 'first', [2], { labeler: {} });
  const second = worldDir(root, 'second', [2], { labeler: {} });
  const extra = worldDir(root, 'extra', [3], { labeler: {} });
  const out = join(root, 'merged');

  const a = merge(['--base', base, '--out', out, first, extra]);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(readFileSync(join(out, 'day-002', 'tag'), 'utf8'), 'first');

  const b = merge(['--base', base, '--out', out, second]);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(readFileSync(join(out, 'day-002', 'tag'), 'utf8'), 'second', 'day 2 now comes from the second labeled dir');
  assert.equal(realpathSync(join(out, 'day-000')), realpathSync(join(base, 'day-000')));
  assert.ok(!existsSync(join(out, 'day-003')), 'a day of the earlier merge only is unlinked');
  const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
  assert.deepEqual(index.shards.map((s: { day: number }) => s.day), [0, 1, 2]);
  assert.ok(lstatSync(join(out, 'day-002')).isSymbolicLink());
  assert.equal(readlinkSync(join(out, 'day-002')), join(second, 'day-002'));
});

test('a real directory where a day link should go is refused, not merged around', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'merge-world-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const base = worldDir(root, 'base', [0]);
  const labeled = worldDir(root, 'lab', [1], { labeler: {} });
  const out = join(root, 'merged');
  mkdirSync(join(out, 'day-001'), { recursive: true });
  const r = merge(['--base', base, '--out', out, labeled]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /day-001 exists and is not a symlink/);
});
