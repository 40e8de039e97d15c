import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '../world/cli-flags.js';
import type { ImpressionLogRecord } from '../world/labeler.js';
import { npyValues, parseNpy } from '../world/npy.js';
import type { RankRequest } from '../world/requests.js';

const cli = fileURLToPath(new URL('../world/cli.js', import.meta.url));
const kWorld = ['--users', '400', '--ads', '900', '--seed', '3'];

function run(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

test('flag parsing: --name value and --name=value; errors name the flag', () => {
  assert.deepEqual(parseFlags(['generate', '--days', '3', '--out=x']), { command: 'generate', flags: { days: '3', out: 'x' } });
  assert.throws(() => parseFlags(['generate', '--days']), /--days needs a value/);
  const bad = run(['generate', '--days', 'many', '--out', join(tmpdir(), 'never')]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--days must be a non-negative integer/);
  assert.match(run(['frobnicate']).stderr, /unknown command 'frobnicate'/);
});

test('generate -> requests -> label, end to end through the CLI', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'world-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const gen = run(['generate', '--days', '2', ...kWorld, '--out', join(dir, 'shards')]);
  assert.equal(gen.status, 0, gen.stderr);
  const index = JSON.parse(readFileSync(join(dir, 'shards', 'index.json'), 'utf8'));
  assert.equal(index.shards.length, 2);
  assert.ok(existsSync(join(dir, 'shards', 'day-001', 'imp_p_conv.npy')));
  assert.deepEqual(index.surfaces, ['feed', 'stories', 'reels', 'marketplace']);
  assert.ok(index.shards[0].oracle.clickAuc > 0.6);

  const req = run(['requests', '--count', '30', '--candidates', '25', '--history', '50', ...kWorld, '--out', join(dir, 'req.jsonl')]);
  assert.equal(req.status, 0, req.stderr);
  const bodies = readFileSync(join(dir, 'req.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RankRequest);
  assert.equal(bodies.length, 30);
  assert.ok(bodies.every((b) => b.candidates.length === 25 && b.user.history.length === 50));

  const log: ImpressionLogRecord[] = bodies.flatMap((b) =>
    b.candidates.slice(0, 10).map((c, rank) => ({
      requestId: b.requestId,
      userId: b.user.id,
      surface: b.surface,
      adId: c.adId,
      modelName: `${b.surface}-ctr`,
      modelVersion: 3,
      arm: 'stable' as const,
      ts: Date.UTC(2026, 0, 1, b.context.hour),
      rank: rank + 1,
      pctr: servedPctrOf(b.user.id, c.adId),
    })),
  );
  writeFileSync(join(dir, 'log.jsonl'), `${log.map((r) => JSON.stringify(r)).join('\n')}\nnot json\n`);
  const lab = run(['label', '--log', join(dir, 'log.jsonl'), ...kWorld, '--out', join(dir, 'labeled')]);
  assert.equal(lab.status, 0, lab.stderr);
  const labeled = JSON.parse(readFileSync(join(dir, 'labeled', 'index.json'), 'utf8'));
  assert.equal(labeled.shards[0].impressions, 300);
  assert.equal(labeled.labeler.malformed, 1);
  assert.equal(labeled.labeler.skipped, 0);
  assert.ok(existsSync(join(dir, 'labeled', 'day-000', 'imp_model_version.npy')));

  // The served pCTR comes with each impression: the log's wall-clock ts cannot be joined to the
  // shard's simulated ts (the closed-loop summary tried, and joined nothing).
  const read = (name: string) => npyValues(parseNpy(readFileSync(join(dir, 'labeled', 'day-000', `${name}.npy`))));
  const served = read('imp_served_pctr') as Float32Array;
  const rows = read('imp_user_row') as Int32Array;
  const userIds = read('user_id') as BigInt64Array;
  const adIds = read('imp_ad_id') as BigInt64Array;
  assert.equal(served.length, 300);
  for (let i = 0; i < served.length; i++) assert.equal(served[i], Math.fround(servedPctrOf(Number(userIds[rows[i]]), Number(adIds[i]))), `impression ${i}`);
  assert.ok(new Set(served).size > 100, 'distinct scores, so a shuffled column would not pass');
});

/** A stand-in served pCTR that depends on the impression only, so duplicates in the log agree. */
function servedPctrOf(userId: number, adId: number): number {
  return (((userId * 31 + adId) % 997) + 0.5) / 1000;
}

test('requests --day 1 and --day 2 without --first draw different users and surfaces', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'world-cli-days-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const day = (d: number) => {
    const out = join(dir, `d${d}.jsonl`);
    const r = run(['requests', '--count', '60', '--candidates', '2', '--day', String(d), ...kWorld, '--out', out]);
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RankRequest);
  };
  const [d1, d2] = [day(1), day(2)];
  const sameUser = d1.filter((b, i) => b.user.id === d2[i].user.id).length;
  const sameSurface = d1.filter((b, i) => b.surface === d2[i].surface).length;
  assert.ok(sameUser < 10, `${sameUser} of 60 requests have the same user`);
  assert.ok(sameSurface < 45, `${sameSurface} of 60 requests have the same surface`);
});
