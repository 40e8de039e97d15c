/**
 * Watches canaries against stable on the same traffic, per model, in tumbling windows: error rate,
 * p99 latency ratio and mean score shift (logit space). A canary past any threshold is rolled back
 * to 0% through the loader (persisted flags), and the verdict with its numbers is logged and kept.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { meanLogit } from '../models/probabilities.js';
import type { ModelRegistry } from '../models/registry.js';
import type { ScoreObservation } from './rank-service.js';

interface ArmWindow {
  count: number;
  errors: number;
  latencies: number[];
  logitSum: number;
  scored: number;
}

interface ModelWindow {
  stableVersion: number;
  canaryVersion: number;
  startedAt: number;
  stable: ArmWindow;
  canary: ArmWindow;
  decided: boolean;
}

export interface CanaryVerdict {
  model: string;
  stableVersion: number;
  canaryVersion: number;
  rolledBack: boolean;
  reasons: string[];
  numbers: { requests: [number, number]; errorRate: [number, number]; p99Ms: [number, number]; meanLogit: [number, number] };
  at: string;
  /** Set when the rollback the verdict asked for could not be applied (the canary kept serving). */
  rollbackError?: string;
  /**
   * Set once the rollback is settled: false when there was nothing to write, because the flags no
   * longer routed this canary (another server process rolled it back first, or an operator replaced it).
   */
  rollbackWritten?: boolean;
}

/** Sets the judged canary of `model` to 0%; `written` false when the flags no longer route it. */
export type CanaryRollback = (model: string, canaryVersion: number) => Promise<{ written: boolean }>;

const kMaxLatencies = 4096;

function emptyArm(): ArmWindow {
  return { count: 0, errors: 0, latencies: [], logitSum: 0, scored: 0 };
}

function p99(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))];
}

export class CanaryMonitor {
  readonly #limits: Config['canary'];
  readonly #registry: ModelRegistry;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #rollback: CanaryRollback;
  #windows = new Map<string, ModelWindow>();
  verdicts: CanaryVerdict[] = [];

  constructor(limits: Config['canary'], registry: ModelRegistry, log: Logger, metrics: Metrics, rollback: CanaryRollback) {
    this.#limits = limits;
    this.#registry = registry;
    this.#log = log;
    this.#metrics = metrics;
    this.#rollback = rollback;
  }

  observe(o: ScoreObservation): void {
    if (o.arm !== 'stable' && o.arm !== 'canary') return;
    const route = this.#registry.routing.models.get(o.version.name);
    if (!route?.canary) return;
    let window = this.#windows.get(o.version.name);
    const now = Date.now();
    if (!window || window.canaryVersion !== route.canary.version.version || window.stableVersion !== route.stable.version || now - window.startedAt > this.#limits.windowMs) {
      window = { stableVersion: route.stable.version, canaryVersion: route.canary.version.version, startedAt: now, stable: emptyArm(), canary: emptyArm(), decided: false };
      this.#windows.set(o.version.name, window);
    }
    if (window.decided) return;
    const expected = o.arm === 'stable' ? window.stableVersion : window.canaryVersion;
    if (o.version.version !== expected) return;
    const arm = o.arm === 'stable' ? window.stable : window.canary;
    arm.count++;
    if (!o.ok) arm.errors++;
    if (arm.latencies.length < kMaxLatencies) arm.latencies.push(o.ms);
    else arm.latencies[arm.count % kMaxLatencies] = o.ms;
    if (o.scores && o.scores.length > 0) {
      arm.logitSum += meanLogit(o.scores);
      arm.scored++;
    }
    if (window.canary.count >= this.#limits.minRequests && window.stable.count >= this.#limits.minRequests) this.#evaluate(o.version.name, window);
  }

  #evaluate(model: string, window: ModelWindow): void {
    const { stable, canary } = window;
    const errorRate: [number, number] = [stable.errors / stable.count, canary.errors / canary.count];
    const p99s: [number, number] = [p99(stable.latencies), p99(canary.latencies)];
    const means: [number, number] = [stable.logitSum / Math.max(1, stable.scored), canary.logitSum / Math.max(1, canary.scored)];
    const reasons: string[] = [];
    if (errorRate[1] > this.#limits.maxErrorRate) reasons.push(`error rate ${errorRate[1].toFixed(4)} > ${this.#limits.maxErrorRate}`);
    // A ratio of tiny latencies is noise; require the canary's p99 to be slower by 2 ms too.
    if (p99s[1] > p99s[0] * this.#limits.maxP99Ratio && p99s[1] - p99s[0] > 2) reasons.push(`p99 ${p99s[1].toFixed(2)} ms > ${this.#limits.maxP99Ratio}x stable ${p99s[0].toFixed(2)} ms`);
    if (Math.abs(means[1] - means[0]) > this.#limits.maxMeanScoreShift) reasons.push(`mean score logit ${means[1].toFixed(3)} vs stable ${means[0].toFixed(3)} (max shift ${this.#limits.maxMeanScoreShift})`);
    const verdict: CanaryVerdict = {
      model,
      stableVersion: window.stableVersion,
      canaryVersion: window.canaryVersion,
      rolledBack: reasons.length > 0,
      reasons,
      numbers: { requests: [stable.count, canary.count], errorRate, p99Ms: p99s, meanLogit: means },
      at: new Date().toISOString(),
    };
    window.decided = true;
    this.verdicts.push(verdict);
    if (this.verdicts.length > 100) this.verdicts.shift();
    if (!verdict.rolledBack) {
      this.#log.info({ verdict }, 'canary window passed');
      // Keep watching: a fresh window starts with the next observation.
      this.#windows.delete(model);
      return;
    }
    // Counted and logged as rolled back only once the flags are written: a failed write leaves the
    // canary serving, and the next window (CANARY_WINDOW_MS) judges it again.
    // The judged version is passed on: a newer canary named meanwhile was never judged and keeps serving.
    // With HTTP_PROCESSES > 1 every process judges its own share; only the one that writes counts it.
    this.#rollback(model, window.canaryVersion).then(
      ({ written }) => {
        verdict.rollbackWritten = written;
        if (!written) {
          this.#log.warn({ verdict }, 'canary failed its checks; the flags no longer route it (rolled back elsewhere or replaced)');
          return;
        }
        this.#metrics.rollbacks.inc({ model });
        this.#log.error({ verdict }, 'canary rolled back automatically');
      },
      (error: unknown) => {
        verdict.rollbackError = error instanceof Error ? error.message : String(error);
        this.#log.error({ err: error, verdict }, 'canary failed its checks but the rollback could not be applied');
      },
    );
  }

  windows(): Record<string, { stableVersion: number; canaryVersion: number; requests: [number, number] }> {
    return Object.fromEntries(
      [...this.#windows].map(([name, w]) => [name, { stableVersion: w.stableVersion, canaryVersion: w.canaryVersion, requests: [w.stable.count, w.canary.count] }]),
    );
  }
}
