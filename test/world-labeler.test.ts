import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { kEpochMs, kHourMs } from '../world/config.js';
import { checkWorldMatchesLog, type ImpressionLogRecord, labelImpressions, parseLogLine, toColumns } from '../world/labeler.js';
import { npyValues, parseNpy } from '../world/npy.js';
import { generateRankRequest } from '../world/requests.js';
import { writeShard } from '../world/shards.js';
import { createWorld } from '../world/world.js';

const world = createWorld({ users: 2000, ads: 4000, advertisers: 300, seed: 17 });

function logFor(requests: number, shown: number): ImpressionLogRecord[] {
  const records: ImpressionLogRecord[] = [];
  for (let i = 0; i < requests; i++) {
    const body = generateRankRequest(world, { surface: i % 2 ? 'feed' : 'reels', candidates: shown, seed: i });
    body.candidates.forEach((c, rank) =>
      records.push({
        requestId: body.requestId,
        userId: body.user.id,
        surface: body.surface,
        adId: c.adId,
        modelName: `${body.surface}-ctr`,
        modelVersion: 1 + (rank % 2),
        arm: rank % 2 ? 'canary' : 'stable',
        ts: kEpochMs + body.context.hour * kHourMs + i,
        hour: body.context.hour,
        rank: rank + 1,
      }),
    );
  }
  return records;
}

const records = logFor(1500, 20);

test('labels are deterministic and independent of order and batching', () => {
  const a = labelImpressions(world, records);
  const b = labelImpressions(world, [...records].reverse());
  const byKey = (l: typeof a.labeled) => new Map(l.map((x) => [`${x.record.requestId}/${x.record.adId}`, [x.click, x.conv, x.pClick]]));
  assert.deepEqual(byKey(a.labeled), byKey(b.labeled));
  const half = labelImpressions(world, records.slice(0, 1000));
  assert.deepEqual(half.labeled.map((x) => x.click), a.labeled.slice(0, 1000).map((x) => x.click));
  const other = labelImpressions(world, records, { seed: 99 });
  assert.notDeepEqual(other.labeled.map((x) => x.click), a.labeled.map((x) => x.click));
});

test('sampled outcomes follow the ground truth', () => {
  const { labeled, skipped } = labelImpressions(world, records);
  assert.equal(skipped, 0);
  assert.equal(labeled.length, records.length);
  let clicks = 0;
  let p = 0;
  let variance = 0;
  for (const l of labeled) {
    clicks += l.click;
    p += l.pClick;
    variance += l.pClick * (1 - l.pClick);
    if (l.conv) assert.equal(l.click, 1);
  }
  assert.ok(Math.abs(clicks - p) < 4 * Math.sqrt(variance), `clicks ${clicks} vs expected ${p.toFixed(1)}`);
});

test('unknown users, ads or surfaces are skipped, not fatal', () => {
  const bad: ImpressionLogRecord[] = [
    { ...records[0], userId: 1 },
    { ...records[0], adId: 2 },
    { ...records[0], surface: 'tv' as 'feed' },
  ];
  const { labeled, skipped } = labelImpressions(world, [...bad, records[0]]);
  assert.equal(skipped, 3);
  assert.equal(labeled.length, 1);
});

test('labeled impressions are stamped on the simulated clock of the labeled day, not the server clock', () => {
  // Wall-clock timestamps, as the server writes them.
  const wallClock = records.slice(0, 200).map((r) => ({ ...r, ts: Date.UTC(2026, 10, 23, 12) }));
  const { labeled } = labelImpressions(world, wallClock);
  const cols = toColumns(labeled);
  const dayStart = kEpochMs + world.day * 86_400_000;
  for (let i = 0; i < cols.length; i++) {
    assert.ok(cols.ts[i] >= dayStart && cols.ts[i] < dayStart + 86_400_000, `impression ${i} inside the labeled day`);
    assert.equal(Math.floor((cols.ts[i] - dayStart) / kHourMs), cols.hour[i], 'at the logged hour');
  }
});

test('each labeled impression keeps the pCTR it was served with, NaN where the log had none', () => {
  // A stand-in score that depends on the impression only (so a user seeing an ad twice agrees);
  // every third ad id logs none.
  const scoreOf = (userId: number, adId: number) => (adId % 3 === 0 ? undefined : (((userId * 31 + adId) % 997) + 0.5) / 1000);
  const logged = records.slice(0, 300).map((r) => ({ ...r, pctr: scoreOf(r.userId, r.adId) }));
  const cols = toColumns(labelImpressions(world, logged).labeled);
  const { users, ads } = world.entities;
  let missing = 0;
  for (let i = 0; i < cols.length; i++) {
    const expected = scoreOf(Number(users.id[cols.users[cols.userRow[i]]]), Number(ads.id[cols.ad[i]]));
    if (expected === undefined) {
      assert.ok(Number.isNaN(cols.servedPctr[i]), `impression ${i}: no pctr logged`);
      missing++;
    } else assert.equal(cols.servedPctr[i], Math.fround(expected), `impression ${i}`);
  }
  assert.equal(cols.length, 300);
  assert.equal(missing, logged.filter((r) => r.pctr === undefined).length);
  assert.ok(missing > 0 && missing < 300);
});

test('labeled impressions become a shard in the training format', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'world-label-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { labeled } = labelImpressions(world, records.slice(0, 400));
  const cols = toColumns(labeled);
  assert.deepEqual(cols.models.sort(), ['feed-ctr', 'reels-ctr']);
  const summary = writeShard(dir, 'day-000', 0, world, cols, world.history);
  assert.equal(summary.impressions, 400);
  const read = (name: string) => npyValues(parseNpy(readFileSync(join(dir, 'day-000', `${name}.npy`))));
  const rows = read('imp_user_row') as Int32Array;
  const userIds = read('user_id') as BigInt64Array;
  const offsets = read('hist_offsets') as BigInt64Array;
  const adIds = read('imp_ad_id') as BigInt64Array;
  assert.equal(offsets.length, userIds.length + 1);
  assert.equal(Number(offsets[offsets.length - 1]), (read('hist_ts') as Float64Array).length);
  for (let i = 0; i < rows.length; i++) {
    if (i > 0) assert.ok(rows[i] >= rows[i - 1], 'grouped by user');
    const l = labeled.find((x) => x.record.adId === Number(adIds[i]) && x.record.userId === Number(userIds[rows[i]]));
    assert.ok(l, 'each row maps back to a logged impression');
  }
});

test('the server log line (one per request, with `shown`) expands to one record per shown ad', () => {
  const body = generateRankRequest(world, { surface: 'stories', candidates: 5, seed: 77 });
  const line = {
    level: 30,
    kind: 'impression',
    ts: Date.UTC(2026, 10, 23, 12),
    requestId: body.requestId,
    userId: body.user.id,
    surface: body.surface,
    hour: body.context.hour,
    models: { ctr: { name: 'stories-ctr', version: 4, arm: 'canary' }, cvr: { name: 'feed-cvr', version: 2, arm: 'stable' } },
    shown: body.candidates.map((c, i) => ({ adId: c.adId, advertiserId: c.advertiserId, rank: i + 1, pctr: 0.01, ecpm: 1 })),
  };
  const records = parseLogLine(JSON.stringify(line));
  assert.ok(records);
  assert.equal(records.length, 5);
  assert.deepEqual(
    { ...records[0], adId: 0 },
    { requestId: body.requestId, userId: body.user.id, surface: 'stories', adId: 0, modelName: 'stories-ctr', modelVersion: 4, arm: 'canary', ts: line.ts, hour: body.context.hour, rank: 1, pctr: 0.01, ecpm: 1, advertiserId: body.candidates[0].advertiserId, cvrModelName: 'feed-cvr', cvrModelVersion: 2 },
  );
  const { labeled } = labelImpressions(world, records);
  assert.equal(labeled.length, 5);
  assert.equal(parseLogLine('{"oops": 1}'), null);
  assert.equal(parseLogLine('not json'), null);
  assert.deepEqual(parseLogLine(JSON.stringify(records[1])), [records[1]]);
});

test('checkWorldMatchesLog compares the logged advertiser and category of each shown ad with the world', () => {
  const withAttrs = records.slice(0, 200).map((r) => {
    const j = world.adIndex.get(r.adId)!;
    const { ads, advertisers, categories } = world.entities;
    return { ...r, advertiserId: advertisers.id[ads.advertiser[j]], category: categories.id[ads.category[j]] };
  });
  assert.deepEqual(checkWorldMatchesLog(world, withAttrs), { compared: 200, mismatched: 0, examples: [] });
  const other = createWorld({ users: 2000, ads: 4000, advertisers: 300, seed: 18 });
  const check = checkWorldMatchesLog(other, withAttrs);
  assert.equal(check.compared, 200);
  assert.ok(check.mismatched > 190, `${check.mismatched} of 200 differ in a world of another seed`);
  assert.equal(check.examples.length, 3);
  assert.deepEqual(checkWorldMatchesLog(world, records.slice(0, 50)), { compared: 0, mismatched: 0, examples: [] }, 'records without the fields are not compared');
});
