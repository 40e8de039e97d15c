/**
 * Shadow scoring: versions flagged as shadow score the same request after the primary response is
 * ready, on a bounded budget (in-flight limit, and never while the pool has a queue), so they cannot
 * delay primary traffic. Only the score differences are recorded; they are never returned.
 */
import { encodeRequest } from '../features/encode.js';
import type { RankRequest } from '../features/request.js';
import type { Metrics } from '../metrics.js';
import type { InferencePool } from '../models/pool.js';
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
  #inflight = 0;
  #idle: Array<() => void> = [];
  #summaries = new Map<string, ShadowSummary>();
  dropped = 0;

  constructor(pool: InferencePool, registry: ModelRegistry, metrics: Metrics, maxInflight: number) {
    this.#pool = pool;
    this.#registry = registry;
    this.#metrics = metrics;
    this.#maxInflight = maxInflight;
  }

  schedule(request: RankRequest, primary: { version: ModelVersion; scores: Float32Array }, shadows: ModelVersion[]): void {
    for (const shadow of shadows) {
      if (this.#inflight >= this.#maxInflight || this.#pool.queuedCandidates > 0) {
        this.dropped++;
        this.#metrics.shadowDropped.inc();
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
      const scores = await this.#pool.score(shadow.key, shadow.plan!, encoded, shadow.outputName, performance.now() + 5000);
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
      this.dropped++;
      this.#metrics.shadowDropped.inc();
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
