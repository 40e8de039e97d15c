/** Prometheus metrics: one registry per app, counter/histogram updates only on the hot path. */
import client from 'prom-client';

/** What the gauges read at collection time, so that every process of a cluster reports its own. */
export interface MetricSources {
  queuedCandidates(): number;
  admission(): { inflight: number; waiting: number; sustainedOverload: boolean };
  versions(): Iterable<{ name: string; state: string }>;
}

export function createMetrics() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const sources: MetricSources = { queuedCandidates: () => 0, admission: () => ({ inflight: 0, waiting: 0, sustainedOverload: false }), versions: () => [] };
  const ms = [0.5, 1, 2, 3, 5, 8, 12, 20, 35, 50, 100, 250, 1000];
  return {
    registry,
    requests: new client.Counter({ name: 'rank_requests_total', help: 'Rank requests by surface and status code', labelNames: ['surface', 'code'], registers: [registry] }),
    requestMs: new client.Histogram({ name: 'rank_request_duration_ms', help: 'Rank request latency (ms), arrival (before admission and body parsing) to response', labelNames: ['surface'], buckets: ms, registers: [registry] }),
    candidates: new client.Counter({ name: 'rank_candidates_total', help: 'Candidates scored', labelNames: ['surface'], registers: [registry] }),
    modelRequests: new client.Counter({ name: 'model_requests_total', help: 'Scoring calls per model version and arm', labelNames: ['model', 'version', 'arm', 'outcome'], registers: [registry] }),
    modelMs: new client.Histogram({ name: 'model_score_duration_ms', help: 'Scoring latency per model version (queue + run)', labelNames: ['model', 'version', 'arm'], buckets: ms, registers: [registry] }),
    batchSize: new client.Histogram({ name: 'inference_batch_candidates', help: 'Candidates per session.run (cross-request batches)', labelNames: ['model'], buckets: [16, 64, 128, 256, 500, 1000, 2000, 4000, 8000], registers: [registry] }),
    batchRequests: new client.Histogram({ name: 'inference_batch_requests', help: 'Requests merged into one session.run', buckets: [1, 2, 3, 4, 6, 8, 12, 16], registers: [registry] }),
    runMs: new client.Histogram({ name: 'inference_run_duration_ms', help: 'session.run time inside the worker', labelNames: ['model'], buckets: ms, registers: [registry] }),
    queuedCandidates: new client.Gauge({
      name: 'inference_queued_candidates',
      help: 'Candidates waiting for a worker',
      registers: [registry],
      collect() {
        this.set(sources.queuedCandidates());
      },
    }),
    shed: new client.Counter({ name: 'rank_shed_total', help: 'Requests shed before scoring', labelNames: ['reason'], registers: [registry] }),
    abandoned: new client.Counter({
      name: 'rank_admission_abandoned_total',
      help: 'Requests whose client went away while they waited for a place (not shed: no answer was sent)',
      registers: [registry],
    }),
    bodyTimeouts: new client.Counter({
      name: 'rank_request_body_timeouts_total',
      help: 'Admitted scoring requests whose body did not arrive within REQUEST_BODY_TIMEOUT_MS (their connection is closed)',
      registers: [registry],
    }),
    admission: new client.Gauge({
      name: 'rank_admission_requests',
      help: 'Admitted scoring requests (/v1/rank, OIP infer) in progress (in_flight) and requests waiting for a place (waiting)',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const { inflight, waiting } = sources.admission();
        this.set({ state: 'in_flight' }, inflight);
        this.set({ state: 'waiting' }, waiting);
      },
    }),
    sustainedOverload: new client.Gauge({
      name: 'rank_admission_sustained_overload',
      help: '1 while admission control is in sustained overload (the waiting line kept overflowing): OVERLOAD_MAX_INFLIGHT and OVERLOAD_WAIT_MS apply',
      registers: [registry],
      aggregator: 'max',
      collect() {
        this.set(sources.admission().sustainedOverload ? 1 : 0);
      },
    }),
    parseTurnsYielded: new client.Counter({
      name: 'rank_parse_turns_yielded_total',
      help: 'Event-loop turns that stopped parsing request bodies at PARSE_TURN_BUDGET_MS with bodies still queued (during a connection flood)',
      registers: [registry],
    }),
    workerExits: new client.Counter({ name: 'inference_worker_exits_total', help: 'Inference workers that exited unexpectedly', registers: [registry] }),
    // 'max' across cluster processes: each process holds the same versions, and 1 must stay 1.
    // Unloaded versions (every version ever published whose folder is still on disk) are only
    // counted in model_versions, so that the per-version series stay bounded by what is live.
    versionState: new client.Gauge({ name: 'model_version_state', help: '1 for the state each model version that is not unloaded is in', labelNames: ['model', 'version', 'state'], registers: [registry], aggregator: 'max' }),
    versionCount: new client.Gauge({
      name: 'model_versions',
      help: 'Model versions known to the registry, by model and state',
      labelNames: ['model', 'state'],
      registers: [registry],
      aggregator: 'max',
      collect() {
        this.reset();
        for (const version of sources.versions()) this.inc({ model: version.name, state: version.state });
      },
    }),
    provider: new client.Gauge({ name: 'model_execution_provider', help: '1 for the execution provider each loaded version runs on', labelNames: ['model', 'version', 'provider'], registers: [registry], aggregator: 'max' }),
    loadFailures: new client.Counter({ name: 'model_load_failures_total', help: 'Model versions that failed loading or the validation gate', labelNames: ['model'], registers: [registry] }),
    rolloutRejected: new client.Counter({ name: 'rollout_rejected_total', help: 'Rollout flag files rejected (the last good flags stay)', registers: [registry] }),
    rollbacks: new client.Counter({ name: 'canary_rollbacks_total', help: 'Automatic canary rollbacks', labelNames: ['model'], registers: [registry] }),
    shadowDelta: new client.Histogram({ name: 'shadow_score_abs_delta', help: 'Mean |shadow - primary| score per request', labelNames: ['model', 'version'], buckets: [0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3], registers: [registry] }),
    shadowDropped: new client.Counter({ name: 'shadow_dropped_total', help: 'Shadow scorings not done: busy (in-flight limit or a queue), too_slow (expected run over SHADOW_MAX_RUN_MS), failed (an error, or no idle worker within 5 s)', labelNames: ['reason'], registers: [registry] }),
    userCache: new client.Counter({ name: 'user_cache_lookups_total', help: 'User-side tensor cache lookups', labelNames: ['result'], registers: [registry] }),
    truncated: new client.Counter({ name: 'rank_history_truncated_total', help: 'Requests whose history was longer than the model uses', registers: [registry] }),
    retiredSeries: new client.Counter({ name: 'metrics_version_series_retired_total', help: 'Per-version counter and histogram series removed after their version was unloaded', registers: [registry] }),
    /** Connect the gauges that are read at collection time to what they describe. */
    sample(from: Partial<MetricSources>): void {
      Object.assign(sources, from);
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The counters and histograms labelled by model version: one set of series per version ever served. */
function perVersionMetrics(metrics: Metrics) {
  return [metrics.modelRequests, metrics.modelMs, metrics.shadowDelta] as const;
}

/**
 * Removes every series of `model`@`version` from the per-version counters and histograms; returns how
 * many label sets were removed. prom-client removes only exact label sets, so they are read back
 * from the metric (a histogram's _sum/_count entries carry its label sets without `le`).
 */
export async function removeVersionSeries(metrics: Metrics, model: string, version: number): Promise<number> {
  const wanted = String(version);
  let removed = 0;
  for (const metric of perVersionMetrics(metrics)) {
    const seen = new Set<string>();
    for (const value of (await metric.get()).values) {
      const labels = value.labels as Record<string, string | number | undefined>;
      if (labels.model !== model || labels.version !== wanted || labels.le !== undefined) continue;
      const key = JSON.stringify(labels);
      if (seen.has(key)) continue;
      seen.add(key);
      (metric as client.Counter<string>).remove(labels as client.LabelValues<string>);
      removed++;
    }
  }
  if (removed > 0) metrics.retiredSeries.inc(removed);
  return removed;
}

/**
 * Retires an unloaded version's per-version series after a grace period. With a continuous
 * retrain -> redeploy loop every published version would otherwise keep its series for the life of
 * the process: ~17 exposition lines (1.4 KB) per version, 600 versions made /metrics 870 KB and a
 * scrape 20-40 ms of main-thread work (measured). The grace leaves the final counts to at least one
 * scrape; a version loaded again within it keeps its series.
 */
export class VersionSeriesRetirement {
  readonly #timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly metrics: Metrics,
    private readonly graceMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  unloaded(model: string, version: number): void {
    const key = `${model}@${version}`;
    this.cancel(model, version);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      removeVersionSeries(this.metrics, model, version).catch(this.onError);
    }, this.graceMs);
    timer.unref();
    this.#timers.set(key, timer);
  }

  cancel(model: string, version: number): void {
    const key = `${model}@${version}`;
    clearTimeout(this.#timers.get(key));
    this.#timers.delete(key);
  }

  close(): void {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }
}
