/** The canary monitor's automatic rollback is counted only once it is applied. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { CanaryMonitor, type CanaryRollback } from '../src/ranking/canary-monitor.js';
import { createMetrics } from '../src/metrics.js';
import type { ModelRegistry } from '../src/models/registry.js';
import type { ScoreObservation } from '../src/ranking/rank-service.js';

const kLimits = { minRequests: 5, maxErrorRate: 0.02, maxP99Ratio: 3, maxMeanScoreShift: 0.5, windowMs: 60_000 };

/** A registry routing feed-ctr to stable 1 with version 2 on canary: all the monitor reads. */
const registry = { routing: { models: new Map([['feed-ctr', { stable: { version: 1 }, canary: { version: { version: 2 }, percent: 20 } }]]) } } as unknown as ModelRegistry;

function observation(arm: 'stable' | 'canary', score: number): ScoreObservation {
  return { version: { name: 'feed-ctr', version: arm === 'stable' ? 1 : 2 }, arm, ok: true, ms: 3, scores: Float32Array.of(score, score), request: {} } as unknown as ScoreObservation;
}

async function driftingCanary(rollback: CanaryRollback) {
  const metrics = createMetrics();
  const monitor = new CanaryMonitor(kLimits, registry, pino({ level: 'silent' }), metrics, rollback);
  // Stable scores ~0.02, the canary's ~0.9: a logit shift far past 0.5.
  for (let i = 0; i < kLimits.minRequests; i++) {
    monitor.observe(observation('stable', 0.02));
    monitor.observe(observation('canary', 0.9));
  }
  await new Promise((resolve) => setImmediate(resolve));
  const counted = (await metrics.registry.getSingleMetric('canary_rollbacks_total')!.get()).values.find((v) => v.labels.model === 'feed-ctr')?.value ?? 0;
  return { monitor, counted };
}

test('a rollback that is applied is counted; one whose flag write fails is not, and its verdict says why', async () => {
  const calls: Array<[string, number]> = [];
  const applied = await driftingCanary(async (model, version) => {
    calls.push([model, version]);
    return { written: true };
  });
  assert.deepEqual(calls, [['feed-ctr', 2]], 'the judged canary version is the one rolled back');
  assert.equal(applied.counted, 1);
  assert.equal(applied.monitor.verdicts[0].rolledBack, true);
  assert.equal(applied.monitor.verdicts[0].rollbackError, undefined);

  const failed = await driftingCanary(async () => {
    throw new Error('rollout.json: disk full');
  });
  assert.equal(failed.counted, 0);
  assert.equal(failed.monitor.verdicts[0].rolledBack, true);
  assert.equal(failed.monitor.verdicts[0].rollbackError, 'rollout.json: disk full');
});

test('a rollback with nothing left to write (another process did it, or the canary was replaced) is not counted', async () => {
  const elsewhere = await driftingCanary(async () => ({ written: false }));
  assert.equal(elsewhere.counted, 0);
  assert.equal(elsewhere.monitor.verdicts[0].rolledBack, true);
  assert.equal(elsewhere.monitor.verdicts[0].rollbackWritten, false);
});
