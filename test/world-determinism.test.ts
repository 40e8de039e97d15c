import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { generate } from '../world/generate.js';
import { generateRankRequest } from '../world/requests.js';
import { createWorld } from '../world/world.js';

const kSmall = { users: 600, ads: 1500, advertisers: 150, days: 3 };

function digestTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(root, path), createHash('sha256').update(readFileSync(path)).digest('hex'));
    }
  };
  walk(root);
  return out;
}

test('same seed, same bytes: every shard file and index.json are identical', (t) => {
  const base = mkdtempSync(join(tmpdir(), 'world-det-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  generate({ out: join(base, 'a'), config: { ...kSmall, seed: 7 }, progress: false });
  generate({ out: join(base, 'b'), config: { ...kSmall, seed: 7 }, progress: false });
  generate({ out: join(base, 'c'), config: { ...kSmall, seed: 8 }, progress: false });
  const a = digestTree(join(base, 'a'));
  const b = digestTree(join(base, 'b'));
  const c = digestTree(join(base, 'c'));
  assert.equal(a.size, 1 + kSmall.days * 22, 'index.json + 22 files per day');
  assert.deepEqual([...a.entries()], [...b.entries()]);
  assert.notEqual(a.get('day-000/imp_click.npy'), c.get('day-000/imp_click.npy'), 'another seed gives another world');
});

test('same seed, same requests; createWorld is deterministic', () => {
  const w1 = createWorld({ users: 500, ads: 1200, advertisers: 100, seed: 3 });
  const w2 = createWorld({ users: 500, ads: 1200, advertisers: 100, seed: 3 });
  for (let i = 0; i < 5; i++) {
    const opts = { surface: 'reels' as const, candidates: 50, seed: i };
    assert.deepEqual(generateRankRequest(w1, opts), generateRankRequest(w2, opts));
  }
  assert.deepEqual(Array.from(w1.truth.clickIntercept), Array.from(w2.truth.clickIntercept));
});
