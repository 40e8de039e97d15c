/**
 * One /v1/rank request end to end, minus HTTP: resolve the model versions (holding a reference on
 * each until scoring ends), encode features once per model, score ctr and (when a candidate bids
 * cpa) cvr concurrently in the worker pool, rank by eCPM, then hand shadow scoring and canary
 * statistics to their owners off the critical path.
 */
import { Errors, RankerError, wrapInferenceError } from '../errors.js';
import { encodeCandidates, encodeUserDense, type EncodedRequest } from '../features/encode.js';
import type { RankRequest } from '../features/request.js';
import type { Objective, Surface } from '../models/manifest.js';
import type { InferencePool } from '../models/pool.js';
import { calibrate, countInvalidProbabilities } from '../models/probabilities.js';
import type { Arm, ModelRegistry, ModelVersion, Resolved } from '../models/registry.js';
import type { Metrics } from '../metrics.js';
import { rankCandidates, type RankedItem } from './rank.js';
import type { UserCache } from './user-cache.js';

/** Durations in ms to the microsecond: performance.now() differences printed up to 17 digits. */
const toMicroseconds = (ms: number) => Math.round(ms * 1000) / 1000;

export interface ModelStamp {
  name: string;
  version: number;
  arm: Arm;
}

export interface RankResult {
  requestId: string;
  surface: Surface;
  models: { ctr: ModelStamp; cvr?: ModelStamp };
  ranked: RankedItem[];
  historyTruncated?: number;
  timings: { totalMs: number; featuresMs: number; scoreMs: number };
}

export interface ScoreObservation {
  version: ModelVersion;
  arm: Arm;
  ok: boolean;
  ms: number;
  scores: Float32Array | null;
  request: RankRequest;
}

export interface RankServiceHooks {
  /** Called for every primary scoring (canary monitor). */
  observe?(observation: ScoreObservation): void;
  /** Called after the primary result is ready, with the shadow versions to score (shadow runner). */
  shadow?(request: RankRequest, objective: Objective, primary: { version: ModelVersion; scores: Float32Array }, shadows: ModelVersion[]): void;
  /** The impression log; `candidateIndex[r]` is the request position of `result.ranked[r]`. */
  impressions?(request: RankRequest, result: RankResult, candidateIndex: Uint32Array): void;
}

export interface RankServiceOptions {
  defaultDeadlineMs: number;
}

let requestCounter = 0;

/** The request restricted to its cpa candidates, and their positions in the full request. */
function cpaSubset(request: RankRequest): { request: RankRequest; indices: number[] } {
  const indices: number[] = [];
  request.candidates.forEach((c, i) => c.bidType === 'cpa' && indices.push(i));
  return { request: { ...request, candidates: indices.map((i) => request.candidates[i]) }, indices };
}

export class RankService {
  readonly #registry: ModelRegistry;
  readonly #pool: InferencePool;
  readonly #cache: UserCache;
  readonly #metrics: Metrics;
  readonly #options: RankServiceOptions;
  readonly #hooks: RankServiceHooks;

  /** A canary no worker holds (its reload is being retried) is skipped rather than failing its users. */
  readonly #servable = (version: ModelVersion) => this.#pool.mayServe(version.key);

  constructor(registry: ModelRegistry, pool: InferencePool, cache: UserCache, metrics: Metrics, options: RankServiceOptions, hooks: RankServiceHooks = {}) {
    this.#registry = registry;
    this.#pool = pool;
    this.#cache = cache;
    this.#metrics = metrics;
    this.#options = options;
    this.#hooks = hooks;
  }

  /** `positions`: where each candidate of `request` sits in the client's request, for a subset. */
  encode(version: ModelVersion, request: RankRequest, positions?: readonly number[]): EncodedRequest {
    const plan = version.plan!;
    return {
      user: { history: this.#cache.history(plan, request), dense: encodeUserDense(plan, request) },
      candidates: encodeCandidates(plan, request, positions),
    };
  }

  async rank(request: RankRequest, startedAt: number = performance.now()): Promise<RankResult> {
    const surface = request.surface as Surface;
    const deadlineMs = request.deadlineMs ?? this.#options.defaultDeadlineMs;
    const deadlineAt = startedAt + deadlineMs;
    // Only cpa bids use pCVR: the cvr model is resolved and scores that subset only when there is one.
    const cpaPart = cpaSubset(request);
    const held: Resolved[] = [];
    // Each model call still running when the request ends (the other one failed first) keeps its
    // version referenced until it settles: released earlier, an unload's drain ended under it.
    const running = new Map<Resolved, Promise<unknown>>();
    try {
      const ctr = this.#registry.resolve(surface, 'ctr', request.user.id, request.pin, this.#servable);
      held.push(ctr);
      const cvr = cpaPart.indices.length > 0 ? this.#registry.resolve(surface, 'cvr', request.user.id, request.pin, this.#servable) : null;
      if (cvr) held.push(cvr);

      // Reject early when the queue already makes the deadline unreachable, rather than answer late;
      // the estimate needs only candidate counts, so it runs before any encoding.
      const n = request.candidates.length;
      const cpa = cvr ? cpaPart : null;
      // The worker's backlog once: both runs of the request wait behind the same batches.
      const expected = this.#pool.estimateMs(ctr.version.key, n) + (cvr && cpa ? this.#pool.estimateMs(cvr.version.key, cpa.indices.length, false) : 0);
      if (performance.now() + expected > deadlineAt) {
        this.#metrics.shed.inc({ reason: 'deadline' });
        throw Errors.DEADLINE(deadlineMs);
      }

      const featuresStart = performance.now();
      const ctrEncoded = this.encode(ctr.version, request);
      const cvrEncoded = cvr && cpa ? this.encode(cvr.version, cpa.request, cpa.indices) : null;
      const featuresMs = performance.now() - featuresStart;

      const scoreStart = performance.now();
      const ctrScores = this.#score(ctr, ctrEncoded, request, deadlineAt, deadlineMs);
      running.set(ctr, ctrScores);
      const cvrScores = cvr && cpa ? this.#score(cvr, cvrEncoded!, cpa.request, deadlineAt, deadlineMs) : Promise.resolve(null);
      if (cvr && cpa) running.set(cvr, cvrScores);
      const [pctr, cpaScores] = await Promise.all([ctrScores, cvrScores]).catch((error: unknown) => {
        // Once per request, not per model: the ctr and cvr calls of one request are often shed together.
        const code = (error as { code?: string }).code;
        if (code === Errors.OVERLOADED.code) this.#metrics.shed.inc({ reason: 'queue' });
        else if (code === Errors.DEADLINE.code) this.#metrics.shed.inc({ reason: 'deadline' });
        throw error;
      });
      const scoreMs = performance.now() - scoreStart;
      let pcvr: Float32Array | null = null;
      if (cpa && cpaScores) {
        pcvr = new Float32Array(n);
        cpa.indices.forEach((candidate, i) => (pcvr![candidate] = cpaScores[i]));
      }

      const { items: ranked, candidateIndex } = rankCandidates(request.candidates, pctr, pcvr, request.topK);
      // The models may keep different history lengths: say what the one that kept the fewest dropped.
      const truncated = Math.max(ctrEncoded.user.history.truncated, cvrEncoded?.user.history.truncated ?? 0);
      if (truncated > 0) this.#metrics.truncated.inc();
      const result: RankResult = {
        requestId: request.requestId ?? `r-${process.pid}-${++requestCounter}`,
        surface,
        models: {
          ctr: { name: ctr.version.name, version: ctr.version.version, arm: ctr.arm },
          ...(cvr ? { cvr: { name: cvr.version.name, version: cvr.version.version, arm: cvr.arm } } : {}),
        },
        ranked,
        ...(truncated > 0 ? { historyTruncated: truncated } : {}),
        timings: { totalMs: toMicroseconds(performance.now() - startedAt), featuresMs: toMicroseconds(featuresMs), scoreMs: toMicroseconds(scoreMs) },
      };
      this.#metrics.candidates.inc({ surface }, n);
      if (this.#hooks.shadow) {
        if (ctr.shadows.length > 0) this.#hooks.shadow(request, 'ctr', { version: ctr.version, scores: pctr }, ctr.shadows);
        if (cvr && cpa && cpaScores && cvr.shadows.length > 0) this.#hooks.shadow(cpa.request, 'cvr', { version: cvr.version, scores: cpaScores }, cvr.shadows);
      }
      this.#hooks.impressions?.(request, result, candidateIndex);
      return result;
    } finally {
      for (const r of held) {
        const release = () => this.#registry.release(r.version);
        const call = running.get(r);
        if (call) void call.then(release, release);
        else release();
      }
    }
  }

  async #score(resolved: Resolved, encoded: EncodedRequest, request: RankRequest, deadlineAt: number, deadlineMs: number): Promise<Float32Array> {
    const { version, arm } = resolved;
    const started = performance.now();
    const labels = { model: version.name, version: String(version.version), arm };
    try {
      const scores = await this.#pool.score(version.key, version.plan!, encoded, version.outputName, deadlineAt, deadlineMs);
      // The gate checked this version's outputs on a reference batch; inputs it never saw can still
      // give NaN. Such a response fails as a model error (counted against a canary) rather than rank
      // on NaN or send it as null.
      const invalid = countInvalidProbabilities(scores);
      if (invalid > 0) throw Errors.INFERENCE_FAILED(version.key, `${invalid} of ${scores.length} scores are NaN, infinite or outside [0, 1]`);
      calibrate(scores, version.manifest!.calibration);
      const ms = performance.now() - started;
      this.#metrics.modelMs.observe(labels, ms);
      this.#metrics.modelRequests.inc({ ...labels, outcome: 'ok' });
      this.#hooks.observe?.({ version, arm, ok: true, ms, scores, request });
      return scores;
    } catch (error) {
      const wrapped = wrapInferenceError(version.key, error);
      const ms = performance.now() - started;
      this.#metrics.modelRequests.inc({ ...labels, outcome: wrapped.code });
      // Shedding and deadlines say nothing about the model; only real failures count against it.
      if (!(wrapped instanceof RankerError && (wrapped.statusCode === 503 || wrapped.statusCode === 504))) {
        this.#hooks.observe?.({ version, arm, ok: false, ms, scores: null, request });
      }
      throw wrapped;
    }
  }
}
