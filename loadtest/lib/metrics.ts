/**
 * Scrapes the server's Prometheus /metrics around a run and summarizes the difference: why requests
 * were shed, scoring outcomes, micro-batch sizes and how busy the inference workers were. This is
 * the evidence for "where did the time go" next to the client-side numbers.
 */
export type Scrape = Map<string, number>;

export async function scrape(url: string): Promise<Scrape> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const values: Scrape = new Map();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const value = Number(line.slice(space + 1));
    if (Number.isFinite(value)) values.set(line.slice(0, space), value);
  }
  return values;
}

function delta(before: Scrape, after: Scrape, prefix: string): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const [key, value] of after) {
    if (!key.startsWith(prefix) || (key.length > prefix.length && key[prefix.length] !== '{')) continue;
    const labels: Record<string, string> = {};
    for (const m of key.slice(prefix.length).matchAll(/(\w+)="([^"]*)"/g)) labels[m[1]] = m[2];
    const d = value - (before.get(key) ?? 0);
    if (d !== 0) out.push({ labels, value: d });
  }
  return out;
}

const sum = (rows: Array<{ value: number }>) => rows.reduce((a, r) => a + r.value, 0);

export interface ServerSide {
  /** rank_shed_total by reason (event-loop pressure, deadline); queue-full sheds are in outcomes. */
  shedByReason: Record<string, number>;
  /** model_requests_total by outcome (ok, SERVER_OVERLOADED = pool queue full, DEADLINE_EXCEEDED...). */
  scoringOutcomes: Record<string, number>;
  responsesByCode: Record<string, number>;
  batches: number;
  meanBatchCandidates: number;
  meanBatchRequests: number;
  /** session.run time summed over workers / (wall time x workers). */
  workerBusyShare: number;
  meanRunMs: number;
  /** The server's own request latency (arrival to response) mean, ms. */
  serverMeanMs: number;
  /**
   * Upper bound of the histogram bucket that holds the server's own p99 (arrival to response), ms;
   * null when the p99 is past the last finite bucket or no request was timed.
   */
  serverP99AtMostMs: number | null;
  /**
   * The server's CPU time (every thread: HTTP, inference workers, libuv) per request it answered,
   * any status, ms; from process_cpu_seconds_total. Unlike requests/s it barely moves with the
   * host's speed between runs, so two runs minutes apart compare by it (null: nothing answered).
   */
  cpuMsPerAnswer: number | null;
  /** The same for the main thread alone (the HTTP/JSON thread); null where it was not measured. */
  mainThreadCpuMsPerAnswer: number | null;
  /** Cores the server kept busy over the run: CPU time / wall time. */
  coresBusy: number;
}

/**
 * The upper bound of the bucket in which quantile `q` of a histogram's observations over the run
 * falls (summed over its other labels). A bound, not an interpolation: the buckets are coarse.
 */
export function histogramQuantileBound(before: Scrape, after: Scrape, name: string, q: number): number | null {
  const byBound = new Map<number, number>();
  for (const r of delta(before, after, `${name}_bucket`)) {
    const bound = r.labels.le === '+Inf' ? Infinity : Number(r.labels.le);
    byBound.set(bound, (byBound.get(bound) ?? 0) + r.value);
  }
  const bounds = [...byBound.keys()].sort((a, b) => a - b);
  const total = byBound.get(Infinity) ?? 0;
  if (total <= 0) return null;
  // Buckets are cumulative: one whose count did not move over the run is absent from the delta, and
  // then no smaller bucket moved either, so no quantile can fall in it.
  for (const bound of bounds) if (byBound.get(bound)! >= q * total) return Number.isFinite(bound) ? bound : null;
  return null;
}

/**
 * The server side of one run. `mainThreadCpuMs` is the main thread's CPU time over the run where the
 * caller could read it (server.ts, one process on Linux), else null.
 */
export function serverSide(before: Scrape, after: Scrape, wallS: number, workers: number, mainThreadCpuMs: number | null = null): ServerSide {
  const group = (prefix: string, label: string) => {
    const out: Record<string, number> = {};
    for (const r of delta(before, after, prefix)) out[r.labels[label] ?? ''] = (out[r.labels[label] ?? ''] ?? 0) + r.value;
    return out;
  };
  const batches = sum(delta(before, after, 'inference_batch_candidates_count'));
  const runMs = sum(delta(before, after, 'inference_run_duration_ms_sum'));
  const runs = sum(delta(before, after, 'inference_run_duration_ms_count'));
  const reqMs = sum(delta(before, after, 'rank_request_duration_ms_sum'));
  const reqs = sum(delta(before, after, 'rank_request_duration_ms_count'));
  const r = (x: number, d = 3) => (Number.isFinite(x) ? +x.toFixed(d) : 0);
  const answers = sum(delta(before, after, 'rank_requests_total'));
  const cpuMs = sum(delta(before, after, 'process_cpu_seconds_total')) * 1000;
  const perAnswer = (ms: number | null) => (ms === null || answers <= 0 ? null : r(ms / answers));
  return {
    shedByReason: group('rank_shed_total', 'reason'),
    scoringOutcomes: group('model_requests_total', 'outcome'),
    responsesByCode: group('rank_requests_total', 'code'),
    batches,
    meanBatchCandidates: r(sum(delta(before, after, 'inference_batch_candidates_sum')) / batches, 1),
    meanBatchRequests: r(sum(delta(before, after, 'inference_batch_requests_sum')) / sum(delta(before, after, 'inference_batch_requests_count')), 2),
    workerBusyShare: r(runMs / (wallS * 1000 * workers)),
    meanRunMs: r(runMs / runs),
    serverMeanMs: r(reqMs / reqs),
    serverP99AtMostMs: histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.99),
    cpuMsPerAnswer: perAnswer(cpuMs),
    mainThreadCpuMsPerAnswer: perAnswer(mainThreadCpuMs),
    coresBusy: r(cpuMs / (wallS * 1000), 2),
  };
}
