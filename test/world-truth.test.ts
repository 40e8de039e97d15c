import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kSurfaces } from '../world/config.js';
import { auc, logLoss } from '../world/metrics.js';
import { oracleMetrics, summarize } from '../world/shards.js';
import { Rng } from '../world/rng.js';
import { simulateDay } from '../world/simulate.js';
import { createWorld } from '../world/world.js';

const world = createWorld({ users: 8000, ads: 6000, advertisers: 600, seed: 11 });
const imps = simulateDay(world, new Rng(11, 'test-day'));
const summary = summarize(imps, 0, 'day-000', 0);

test('base rates per surface match the configured ones', () => {
  for (let s = 0; s < kSurfaces.length; s++) {
    const stats = summary.perSurface[kSurfaces[s]];
    const target = world.config.baseCtr[s];
    // Mean ground-truth P(click): what the intercepts are calibrated on (sampling error only).
    assert.ok(Math.abs(stats.meanPClick / target - 1) < 0.08, `${kSurfaces[s]} mean p ${stats.meanPClick} vs ${target}`);
    // Sampled clicks: within 4 binomial standard errors plus the calibration tolerance.
    const se = Math.sqrt((target * (1 - target)) / stats.impressions);
    assert.ok(Math.abs(stats.clickRate - target) < 4 * se + 0.08 * target, `${kSurfaces[s]} click rate ${stats.clickRate} vs ${target}`);
  }
  const cvrTarget = world.config.baseCvr.reduce((a, b) => a + b, 0) / kSurfaces.length;
  assert.ok(summary.convRate > cvrTarget * 0.5 && summary.convRate < cvrTarget * 1.6, `conv per click ${summary.convRate}`);
  assert.ok(summary.clickRate > 0.01 && summary.clickRate < 0.03, 'clicks are sparse: 1-3%');
});

test('oracle AUC and log-loss: the truth separates clicks and beats the base-rate predictor', () => {
  const oracle = summary.oracle;
  assert.ok(oracle.clickAuc > 0.72 && oracle.clickAuc < 0.9, `click AUC ${oracle.clickAuc}`);
  assert.ok(oracle.convAuc > 0.6, `conv AUC ${oracle.convAuc}`);
  const base = new Float32Array(imps.length).fill(summary.clickRate);
  assert.ok(oracle.clickLogLoss < logLoss(base, imps.click) - 0.005, 'oracle log-loss below the constant predictor');
  assert.equal(oracle.clickAuc, auc(imps.pClick, imps.click));
  for (const s of kSurfaces) assert.ok(summary.perSurface[s].oracle.clickAuc > 0.68, `${s} AUC`);
  // Surfaces differ: their base rates and their oracle AUCs are not all the same.
  const aucs = kSurfaces.map((s) => summary.perSurface[s].oracle.clickAuc);
  assert.ok(Math.max(...aucs) - Math.min(...aucs) > 0.01, `per-surface AUCs ${aucs}`);
  assert.deepEqual(oracleMetrics(imps, null), oracle);
});

test('auc() equals the brute-force pair count, ties counted half', () => {
  const rng = new Rng(5, 'auc');
  const n = 400;
  const scores = Float64Array.from({ length: n }, () => Math.round(rng.next() * 20) / 20);
  const labels = Uint8Array.from({ length: n }, (_, i) => (rng.next() < 0.2 + 0.5 * scores[i] ? 1 : 0));
  let acc = 0;
  let pairs = 0;
  for (let i = 0; i < n; i++) {
    if (!labels[i]) continue;
    for (let j = 0; j < n; j++) {
      if (labels[j]) continue;
      pairs++;
      acc += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0;
    }
  }
  assert.ok(Math.abs(auc(scores, labels) - acc / pairs) < 1e-12);
  assert.ok(Number.isNaN(auc([0.1, 0.2], [0, 0])));
});

test('conversions only after clicks; probabilities in (0, 1)', () => {
  for (let i = 0; i < imps.length; i++) {
    if (imps.conv[i]) assert.equal(imps.click[i], 1);
    assert.ok(imps.pClick[i] > 0 && imps.pClick[i] < 1 && imps.pConv[i] > 0 && imps.pConv[i] < 1);
  }
});
