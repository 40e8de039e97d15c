/**
 * Shadow scoring: versions flagged as shadow score the same request after the primary response is
 * ready, on a bounded budget, so they cannot delay primary traffic: an in-flight limit, never while
 * the pool has a queue, only on an idle worker (the pool's background lane), and only a run expected
 * to take at most SHADOW_MAX_RUN_MS: a run cannot be interrupted, and a request arriving meanwhile
 * waits for it. Only the score differences are recorded; they are never returned.
 */
import { encodeRequest } from '../features/encode.js';
import type { RankRequest } from '../features/request.js';
import type { Metrics } from '../metrics.js';
import type { InferencePool } from '../models/pool.js';
import { calibrate } from '../models/probabilities.js';
import type { ModelRegistry, ModelVersion } from '../models/registry.js';

export interface ShadowSummary {
  primary: string;
  shadow: string;
  requests: number;
  meanAbsDelta: number;
  maxAbsDelta: number;
}

export class ShadowRunner {
  readonly #pool: InferencePool;
  readonly #registry: ModelRegistry;
  readonly #metrics: Metrics;
  readonly #maxInflight: number;
  readonly #maxRunMs: number;
  #inflight = 0;
  #idle: Array<() => void> = [];
  #summaries = new Map<string, ShadowSummary>();
  dropped = 0;

  constructor(pool: InferencePool, registry: ModelRegistry, metrics: Metrics, limits: { maxInflight: number; maxRunMs: number }) {
    this.#pool = pool;
    this.#registry = registry;
    this.#metrics = metrics;
    this.#maxInflight = limits.maxInflight;
    this.#maxRunMs = limits.maxRunMs;
  }

  #drop(reason: 'busy' | 'too_slow' | 'failed'): void {
    this.dropped++;
    this.#metrics.shadowDropped.inc({ reason });
  }

  schedule(request: RankRequest, primary: { version: ModelVersion; scores: Float32Array }, shadows: ModelVersion[]): void {
    for (const shadow of shadows) {
      if (this.#inflight >= this.#maxInflight || this.#pool.queuedCandidates > 0) {
        this.#drop('busy');
        continue;
      }
      // From the version's recent runs, or its gate's timing (the pool is seeded with it at load).
      if ((this.#pool.expectedRunMs(shadow.key, request.candidates.length) ?? 0) > this.#maxRunMs) {
        this.#drop('too_slow');
        continue;
      }
      this.#inflight++;
      this.#registry.acquire(shadow);
      const scores = Float32Array.from(primary.scores);
      setImmediate(() => {
        this.#run(request, primary.version, scores, shadow).finally(() => {
          this.#registry.release(shadow);
          this.#inflight--;
          if (this.#inflight === 0) for (const done of this.#idle.splice(0)) done();
        });
      });
    }
  }

  async #run(request: RankRequest, primary: ModelVersion, primaryScores: Float32Array, shadow: ModelVersion): Promise<void> {
    try {
      const encoded = encodeRequest(shadow.plan!, request);
      const scores = calibrate(await this.#pool.scoreInBackground(shadow.key, shadow.plan!, encoded, shadow.outputName, performance.now() + 5000), shadow.manifest!.calibration);
      let sum = 0;
      let max = 0;
      for (let i = 0; i < scores.length; i++) {
        const d = Math.abs(scores[i] - primaryScores[i]);
        sum += d;
        if (d > max) max = d;
      }
      const mean = sum / Math.max(1, scores.length);
      this.#metrics.shadowDelta.observe({ model: shadow.name, version: String(shadow.version) }, mean);
      const key = `${primary.key}->${shadow.key}`;
      const s = this.#summaries.get(key) ?? { primary: primary.key, shadow: shadow.key, requests: 0, meanAbsDelta: 0, maxAbsDelta: 0 };
      s.meanAbsDelta = (s.meanAbsDelta * s.requests + mean) / (s.requests + 1);
      s.maxAbsDelta = Math.max(s.maxAbsDelta, max);
      s.requests++;
      this.#summaries.set(key, s);
    } catch {
      this.#drop('failed');
    }
  }

  summaries(): ShadowSummary[] {
    return [...this.#summaries.values()];
  }

  idle(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}
