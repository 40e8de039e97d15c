import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { WorldConfig } from '../world/config.js';
import { advanceDay } from '../world/drift.js';
import { auc } from '../world/metrics.js';
import { Rng } from '../world/rng.js';
import { simulateDay } from '../world/simulate.js';
import { createWorld } from '../world/world.js';

/** Live-truth AUC minus day-0-frozen-truth AUC on each day's impressions. */
function aucDrops(config: Partial<WorldConfig>, days: number): number[] {
  const world = createWorld({ users: 6000, ads: 5000, advertisers: 500, days, seed: 21, ...config });
  const frozen = world.truth.snapshotView();
  const rng = new Rng(21, 'drift-test');
  const drops: number[] = [];
  for (let d = 0; d < days; d++) {
    if (d > 0) advanceDay(world, rng.fork('drift', d));
    const imps = simulateDay(world, rng.fork('day', d), frozen);
    drops.push(auc(imps.pClick, imps.click) - auc(imps.pFrozen, imps.click));
  }
  return drops;
}

test('drift: an oracle frozen at day 0 scores measurably worse on day N', () => {
  const drops = aucDrops({}, 7);
  assert.equal(drops[0], 0, 'day 0: frozen and live truth agree');
  const late = drops[drops.length - 1];
  assert.ok(late > 0.015, `AUC drop on day 6: ${late}`);
  assert.ok(late > drops[1], `drop grows with time: ${drops.map((d) => d.toFixed(4)).join(' ')}`);
});

test('without drift the frozen oracle stays exact (the drop is caused by drift)', () => {
  const drops = aucDrops({ interestRho: 1, categoryTrendStep: 0, adTurnover: 0 }, 3);
  for (const d of drops) assert.ok(Math.abs(d) < 1e-9, `drop ${d}`);
});
