import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kBidTypes, kEvents, kMaxRequestHistory, kSurfaces } from '../world/config.js';
import { generateRankRequest, scoreRequest } from '../world/requests.js';
import { createWorld } from '../world/world.js';

// The size of the server's reference world (src/models/reference.ts). Its build time was once
// asserted here (< 3 s); timing belongs to the benchmarks, not to unit tests on a shared host.
const world = createWorld({ users: 2000, ads: 5000, advertisers: 400, seed: 5 });

const isId = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

test('generateRankRequest returns the exact /v1/rank body', () => {
  for (const surface of kSurfaces) {
    const body = generateRankRequest(world, { surface, candidates: 120, seed: 1 });
    assert.deepEqual(Object.keys(body).sort(), ['candidates', 'context', 'requestId', 'surface', 'user']);
    assert.equal(body.surface, surface);
    assert.equal(typeof body.requestId, 'string');
    assert.ok(isId(body.user.id));
    assert.deepEqual(Object.keys(body.user).sort(), ['features', 'history', 'id']);
    const f = body.user.features;
    assert.ok(Number.isInteger(f.age_bucket) && f.age_bucket >= 0 && f.age_bucket <= 6);
    assert.ok(f.activity >= 0 && f.activity <= 1);
    assert.ok(f.tenure_days >= 0);
    assert.ok(['ios', 'android', 'web'].includes(f.device));
    assert.ok(Number.isInteger(body.context.hour) && body.context.hour >= 0 && body.context.hour < 24);
    assert.deepEqual(Object.keys(body.context), ['hour']);
    assert.equal(body.candidates.length, 120);
    assert.equal(new Set(body.candidates.map((c) => c.adId)).size, 120, 'distinct candidates');
    for (const c of body.candidates) {
      assert.deepEqual(Object.keys(c).sort(), ['adId', 'advertiserId', 'bid', 'bidType', 'category', 'features']);
      assert.ok(isId(c.adId) && isId(c.advertiserId) && isId(c.category));
      assert.ok(Number.isFinite(c.bid) && c.bid >= 0);
      assert.ok((kBidTypes as readonly string[]).includes(c.bidType));
      assert.ok(c.features.quality >= 0 && c.features.quality <= 1);
      assert.ok(['image', 'video', 'carousel'].includes(c.features.creative));
      assert.ok(Number.isInteger(c.features.price_tier) && c.features.price_tier >= 0 && c.features.price_tier <= 4);
    }
    const history = body.user.history;
    assert.ok(history.length <= kMaxRequestHistory);
    for (let i = 0; i < history.length; i++) {
      const e = history[i];
      assert.deepEqual(Object.keys(e), ['adId', 'category', 'surface', 'event', 'ts']);
      assert.ok(isId(e.adId) && isId(e.category) && Number.isSafeInteger(e.ts));
      assert.ok((kSurfaces as readonly string[]).includes(e.surface) && (kEvents as readonly string[]).includes(e.event));
      if (i > 0) assert.ok(e.ts >= history[i - 1].ts, 'oldest first');
    }
    // The body survives JSON round trip unchanged (no NaN, no undefined).
    assert.deepEqual(JSON.parse(JSON.stringify(body)), body);
  }
});

test('historyLength: a user with that many events, newest kept, capped at 4096', () => {
  const body = generateRankRequest(world, { surface: 'feed', candidates: 10, historyLength: 300, seed: 9 });
  assert.equal(body.user.history.length, 300);
  const full = generateRankRequest(world, { surface: 'feed', candidates: 10, seed: 9, userIndex: world.userIndex.get(body.user.id)! });
  assert.deepEqual(body.user.history, full.user.history.slice(-300), 'the newest 300 events');
  const long = generateRankRequest(world, { surface: 'feed', candidates: 10, historyLength: 100_000, seed: 2 });
  assert.ok(long.user.history.length > 500 && long.user.history.length <= kMaxRequestHistory, `longest-1% user: ${long.user.history.length}`);
});

test('request ids name the world day, so they never repeat across days', async () => {
  const { advanceWorld } = await import('../world/simulate.js');
  const w = createWorld({ users: 500, ads: 800, advertisers: 80, seed: 3 });
  const day0 = generateRankRequest(w, { surface: 'feed', candidates: 3, seed: 1 }).requestId;
  advanceWorld(w, 1);
  const day1 = generateRankRequest(w, { surface: 'feed', candidates: 3, seed: 1 }).requestId;
  assert.notEqual(day0, day1);
  assert.match(day1, /-d1-1$/);
});

test('requests of two days draw different users and hours: the stream is keyed on the day', async () => {
  const { advanceWorld } = await import('../world/simulate.js');
  const draw = (day: number) => {
    const w = advanceWorld(createWorld({ users: 500, ads: 800, advertisers: 80, seed: 3 }), day);
    return Array.from({ length: 60 }, (_, i) => generateRankRequest(w, { surface: 'feed', candidates: 3, seed: i }));
  };
  const [d1, d2] = [draw(1), draw(2)];
  const sameUser = d1.filter((b, i) => b.user.id === d2[i].user.id).length;
  const sameHour = d1.filter((b, i) => b.context.hour === d2[i].context.hour).length;
  assert.ok(sameUser < 10, `${sameUser} of 60 requests drew the same user on days 1 and 2`);
  assert.ok(sameHour < 15, `${sameHour} of 60 requests drew the same hour on days 1 and 2`);
});

test('day-0 requests keep the stream the benchmark bodies and the gate reference batch were built with', () => {
  const w = createWorld({ users: 500, ads: 800, advertisers: 80, seed: 3 });
  const got = [0, 1, 2, 3, 4].map((i) => {
    const b = generateRankRequest(w, { surface: 'feed', candidates: 3, seed: i });
    return [b.user.id, b.context.hour, b.candidates.map((c) => c.adId)];
  });
  // Recorded before the day was keyed in (2026-12-03).
  assert.deepEqual(got, [
    [10000000139, 7, [1000312, 1000590, 1000777]],
    [10000000208, 16, [1000737, 1000459, 1000117]],
    [10000000132, 11, [1000665, 1000239, 1000063]],
    [10000000333, 12, [1000123, 1000152, 1000501]],
    [10000000264, 11, [1000045, 1000269, 1000674]],
  ]);
});

test('requests are deterministic in the seed, different across seeds', () => {
  const a = generateRankRequest(world, { surface: 'stories', candidates: 30, seed: 4 });
  const b = generateRankRequest(world, { surface: 'stories', candidates: 30, seed: 4 });
  const c = generateRankRequest(world, { surface: 'stories', candidates: 30, seed: 5 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notEqual(a.requestId, c.requestId);
});

test('scoreRequest gives the ground truth per candidate; candidates > inventory are capped', () => {
  const body = generateRankRequest(world, { surface: 'marketplace', candidates: 200, seed: 3 });
  const truth = scoreRequest(world, body);
  assert.equal(truth.length, 200);
  for (const t of truth) assert.ok(t.pClick > 0 && t.pClick < 1 && t.pConv > 0 && t.pConv < 1);
  const tiny = createWorld({ users: 50, ads: 40, advertisers: 10, seed: 1 });
  assert.equal(generateRankRequest(tiny, { surface: 'feed', candidates: 500, seed: 1 }).candidates.length, 40);
  assert.throws(() => generateRankRequest(world, { surface: 'nope' as 'feed', candidates: 1, seed: 1 }), /unknown surface/);
});
