import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kEpochMs, kSurfaces } from '../world/config.js';
import { Rng } from '../world/rng.js';
import { sampleHour } from '../world/selection.js';
import { kEventClick, kEventImpression } from '../world/timeline.js';
import { createWorld } from '../world/world.js';

const world = createWorld({ users: 5000, ads: 5000, advertisers: 500, seed: 13 });
const pre = world.history[0];
const users = world.entities.users;
const lengths = Array.from({ length: users.count }, (_, u) => pre.count(u)).sort((a, b) => a - b);

test('history lengths are heavy-tailed: tens for most users, thousands for a few', () => {
  const median = lengths[Math.floor(lengths.length / 2)];
  const p99 = lengths[Math.floor(lengths.length * 0.99)];
  const max = lengths[lengths.length - 1];
  assert.ok(median >= 10 && median < 100, `median ${median}`);
  assert.ok(p99 >= 500, `p99 ${p99}`);
  assert.ok(max >= 2000, `max ${max}`);
  assert.ok(max <= world.config.historyCap * 1.2, `max ${max} near the cap`);
});

test('histories are chronological, before day 0, with every event kind and surface', () => {
  const kinds = new Set<number>();
  const surfaces = new Set<number>();
  for (let u = 0; u < users.count; u++) {
    for (let e = pre.offsets[u]; e < pre.offsets[u + 1]; e++) {
      if (e > pre.offsets[u]) assert.ok(pre.ts[e] >= pre.ts[e - 1], `user ${u} event ${e} out of order`);
      assert.ok(pre.ts[e] < kEpochMs);
      kinds.add(pre.event[e]);
      surfaces.add(pre.surface[e]);
    }
  }
  assert.equal(kinds.size, 3);
  assert.equal(surfaces.size, kSurfaces.length);
});

test('dormant interests show up in old events, hardly in recent ones', () => {
  const d = world.config.dormantPerUser;
  let oldHits = 0;
  let oldTotal = 0;
  let newHits = 0;
  let newTotal = 0;
  for (let u = 0; u < users.count; u++) {
    const from = pre.offsets[u];
    const n = pre.offsets[u + 1] - from;
    if (n < 20) continue;
    const dormant = new Set(Array.from(users.dormant.subarray(u * d, u * d + d)));
    for (let i = 0; i < n; i++) {
      const hit = dormant.has(world.entities.ads.category[pre.ad[from + i]]) ? 1 : 0;
      if (i < n * 0.4) {
        oldHits += hit;
        oldTotal++;
      } else if (i >= n * 0.7) {
        newHits += hit;
        newTotal++;
      }
    }
  }
  const oldShare = oldHits / oldTotal;
  const newShare = newHits / newTotal;
  assert.ok(oldShare > 0.3, `old share ${oldShare}`);
  assert.ok(newShare < 0.1 && oldShare > 5 * newShare, `old ${oldShare} vs recent ${newShare}`);
});

test('cross-surface: stories behaviour in history predicts feed click probability', () => {
  const rng = new Rng(1, 'cross');
  const view = world.truth.liveView;
  const probs = new Float64Array(2);
  const xs: number[] = [];
  const ys: number[] = [];
  for (let u = 0; u < users.count; u++) {
    let imps = 0;
    let clicks = 0;
    for (let e = pre.offsets[u]; e < pre.offsets[u + 1]; e++) {
      if (pre.surface[e] !== 1) continue;
      if (pre.event[e] === kEventImpression) imps++;
      if (pre.event[e] === kEventClick) clicks++;
    }
    if (imps < 30) continue;
    let feed = 0;
    for (let i = 0; i < 20; i++) {
      world.truth.probabilities(view, u, world.sampler.sample(u, 0, rng), 0, sampleHour(world.entities, u, rng), probs);
      feed += probs[0];
    }
    xs.push(clicks / imps);
    ys.push(feed / 20);
  }
  assert.ok(xs.length > 200, `users with stories history: ${xs.length}`);
  assert.ok(pearson(xs, ys) > 0.2, `correlation ${pearson(xs, ys)}`);
});

function pearson(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}
