/**
 * The world CLI's subcommands rebuild the world from flags (or from the generated index.json), so a
 * dropped or misspelt flag silently gives another world: each subcommand rejects unknown flags,
 * passes every world knob through, and `label` refuses a log served from another world.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { worldConfigFromFlags } from '../world/cli-world.js';
import { npyValues, parseNpy } from '../world/npy.js';
import type { RankRequest } from '../world/requests.js';

const cli = fileURLToPath(new URL('../world/cli.js', import.meta.url));
const kWorld = ['--users', '300', '--ads', '700', '--seed', '3'];
const kRate = ['--impressions-per-user-day', '4'];

function run(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

function tempDir(t: { after: (f: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'world-cli-flags-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('every subcommand rejects a flag it does not know, naming it and the known ones', (t) => {
  const dir = tempDir(t);
  const gen = run(['generate', '--days', '1', '--users', '50', '--sed', '5', '--out', join(dir, 'g')]);
  assert.equal(gen.status, 1);
  assert.match(gen.stderr, /generate: unknown flag --sed \(known: .*--seed.*\)/);
  assert.ok(!existsSync(join(dir, 'g')), 'nothing generated');
  const req = run(['requests', '--count', '1', ...kWorld, '--dya', '3', '--out', join(dir, 'r.jsonl')]);
  assert.equal(req.status, 1);
  assert.match(req.stderr, /requests: unknown flag --dya \(known: .*--day.*\)/);
  assert.ok(!existsSync(join(dir, 'r.jsonl')));
  const lab = run(['label', '--log', join(dir, 'none.jsonl'), '--out', join(dir, 'l'), '--seeds', '3']);
  assert.equal(lab.status, 1);
  assert.match(lab.stderr, /label: unknown flag --seeds \(known: .*--seed.*\)/);
});

test('worldConfigFromFlags passes --impressions-per-user-day through', () => {
  assert.equal(worldConfigFromFlags({ 'impressions-per-user-day': '4' }).impressionsPerUserDay, 4);
  assert.equal(worldConfigFromFlags({}).impressionsPerUserDay, undefined, 'the default stays the config default');
});

test('requests and label rebuild the world generate made with a non-default rate (flags or --world)', (t) => {
  const dir = tempDir(t);
  const shards = join(dir, 'shards');
  const gen = run(['generate', '--days', '2', ...kWorld, ...kRate, '--out', shards]);
  assert.equal(gen.status, 0, gen.stderr);

  // Day 1 histories include day 0's simulated events, whose number depends on the rate.
  const requests = (name: string, extra: string[]) => {
    const out = join(dir, name);
    const r = run(['requests', '--count', '20', '--candidates', '5', '--day', '1', ...extra, '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(out, 'utf8');
  };
  const withRate = requests('rate.jsonl', [...kWorld, ...kRate]);
  const fromIndex = requests('index.jsonl', ['--world', shards]);
  const defaultRate = requests('default.jsonl', kWorld);
  assert.equal(fromIndex, withRate, '--world reads the config generate wrote');
  assert.notEqual(defaultRate, withRate, 'the rate flag changes the world');

  // A labeled day-1 shard carries the same histories as the generated day-001 shard.
  const bodies = withRate.trim().split('\n').map((l) => JSON.parse(l) as RankRequest);
  const log = bodies.map((b) => JSON.stringify(serverLine(b)));
  writeFileSync(join(dir, 'log.jsonl'), `${log.join('\n')}\n`);
  const histLengths = (shardDir: string) => {
    const read = (name: string) => npyValues(parseNpy(readFileSync(join(shardDir, `${name}.npy`))));
    const ids = read('user_id') as BigInt64Array;
    const offsets = read('hist_offsets') as BigInt64Array;
    return new Map(Array.from(ids, (id, u) => [Number(id), Number(offsets[u + 1] - offsets[u])]));
  };
  const generated = histLengths(join(shards, 'day-001'));
  const label = (name: string, extra: string[]) => {
    const r = run(['label', '--log', join(dir, 'log.jsonl'), '--day', '1', ...extra, '--out', join(dir, name)]);
    assert.equal(r.status, 0, r.stderr);
    // Users without an impression on day 1 are not in the generated shard.
    const common = [...histLengths(join(dir, name, 'day-001'))].filter(([id]) => generated.has(id));
    assert.ok(common.length > 5, `${common.length} users in both shards`);
    return common.every(([id, n]) => generated.get(id) === n);
  };
  assert.equal(label('lab-rate', [...kWorld, ...kRate]), true);
  assert.equal(label('lab-index', ['--world', shards]), true);
  assert.equal(label('lab-default', kWorld), false);
});

test('--world with a world flag that disagrees with its index.json is refused', (t) => {
  const dir = tempDir(t);
  const shards = join(dir, 'shards');
  assert.equal(run(['generate', '--days', '1', ...kWorld, '--out', shards]).status, 0);
  const r = run(['requests', '--count', '1', '--world', shards, '--seed', '4', '--out', join(dir, 'r.jsonl')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--seed 4 disagrees with .*index\.json \(config\.seed 3\)/);
  const same = run(['requests', '--count', '1', '--world', shards, '--seed', '3', '--out', join(dir, 'r.jsonl')]);
  assert.equal(same.status, 0, same.stderr);
});

test('label refuses a log whose shown ads disagree with the world (wrong world flags)', (t) => {
  const dir = tempDir(t);
  const req = run(['requests', '--count', '30', '--candidates', '10', ...kWorld, '--out', join(dir, 'r.jsonl')]);
  assert.equal(req.status, 0, req.stderr);
  const bodies = readFileSync(join(dir, 'r.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RankRequest);
  const lines = bodies.map(serverLine);
  const writeLog = (name: string) => {
    writeFileSync(join(dir, name), `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    return join(dir, name);
  };
  const good = writeLog('good.jsonl');

  const wrong = run(['label', '--log', good, '--users', '300', '--ads', '700', '--seed', '4', '--out', join(dir, 'wrong')]);
  assert.equal(wrong.status, 1);
  assert.match(wrong.stderr, /of 300 shown ads have another advertiserId\/category in this world/);
  assert.match(wrong.stderr, /world flags .* differ from the served world/);
  assert.ok(!existsSync(join(dir, 'wrong', 'index.json')), 'no shard written');

  const right = run(['label', '--log', good, ...kWorld, '--out', join(dir, 'right')]);
  assert.equal(right.status, 0, right.stderr);
  const index = JSON.parse(readFileSync(join(dir, 'right', 'index.json'), 'utf8'));
  assert.deepEqual(index.labeler.worldCheck, { compared: 300, mismatched: 0 });

  // One odd ad in 300 (0.3%) is tolerated and counted.
  lines[0].shown[0].category += 1;
  const one = run(['label', '--log', writeLog('one.jsonl'), ...kWorld, '--out', join(dir, 'one')]);
  assert.equal(one.status, 0, one.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'one', 'index.json'), 'utf8')).labeler.worldCheck, { compared: 300, mismatched: 1 });
});

/** The request-level line src/ranking/impression-log.ts writes for `body` (top 10 shown). */
function serverLine(b: RankRequest) {
  return {
    kind: 'impression',
    ts: Date.UTC(2026, 0, 1, b.context.hour),
    requestId: b.requestId,
    userId: b.user.id,
    surface: b.surface,
    hour: b.context.hour,
    models: { ctr: { name: 'feed-ctr', version: 2, arm: 'stable' } },
    shown: b.candidates.slice(0, 10).map((c, r) => ({ adId: c.adId, advertiserId: c.advertiserId, category: c.category, bid: c.bid, bidType: c.bidType, rank: r + 1, pctr: 0.01 + 0.001 * r })),
  };
}
