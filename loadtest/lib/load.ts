/**
 * Two load generators over HTTP/1.1 keep-alive on 127.0.0.1:
 *  - closedLoop: autocannon with N connections, each sending the next body as soon as its previous
 *    response arrives (the concurrency sweep and capacity probes);
 *  - openLoop: requests sent on a fixed schedule (rate per second) whatever the server does, latency
 *    measured from the scheduled send time, so queueing and shedding are visible and there is no
 *    coordinated omission (the fixed-rate, overload, deadline and swap scenarios).
 * Both record every response (completion time, latency, status) for exact percentiles per status.
 */
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import autocannon, { type AutocannonRequest } from 'autocannon';
import { summarize, type LatencySummary } from './stats.js';

export interface Sample {
  /** Completion time, ms since the run's start. */
  at: number;
  latency: number;
  status: number;
}

export interface RunSummary {
  mode: 'closed' | 'open';
  connections?: number;
  targetRate?: number;
  durationS: number;
  sent: number;
  completed: number;
  ok: number;
  /** 2xx responses per second. */
  rps: number;
  /** Completed responses (any status) per second. */
  totalRps: number;
  latency: LatencySummary;
  latencyOk: LatencySummary;
  status: Record<string, number>;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Open loop only: sends skipped because the client already had maxInflight requests open. */
  clientDropped?: number;
  /**
   * Open loop only: p99 of the load generator's own event-loop delay while it sent, ms. The client
   * shares the host's cores; its delays are in its latencies (they count from the scheduled send).
   */
  clientLoopDelayP99Ms?: number;
}

function summarizeSamples(samples: Sample[], durationS: number, extra: Partial<RunSummary> & Pick<RunSummary, 'mode' | 'sent' | 'errors' | 'timeouts'>): RunSummary {
  const status: Record<string, number> = {};
  const all: number[] = [];
  const ok: number[] = [];
  for (const s of samples) {
    status[s.status] = (status[s.status] ?? 0) + 1;
    all.push(s.latency);
    if (s.status >= 200 && s.status < 300) ok.push(s.latency);
  }
  return {
    durationS,
    completed: samples.length,
    ok: ok.length,
    rps: +(ok.length / durationS).toFixed(2),
    totalRps: +(samples.length / durationS).toFixed(2),
    latency: summarize(all),
    latencyOk: summarize(ok),
    status,
    non2xx: samples.length - ok.length,
    ...extra,
  };
}

export type BodySource = (index: number) => Buffer;

export interface ClosedLoopOptions {
  url: string;
  path?: string;
  connections: number;
  durationS: number;
  body: BodySource;
  timeoutS?: number;
  overallRate?: number;
  onBody?: (status: number, body: string) => void;
}

export function closedLoop(options: ClosedLoopOptions): Promise<{ summary: RunSummary; samples: Sample[] }> {
  const samples: Sample[] = [];
  let next = 0;
  const request: AutocannonRequest = {
    method: 'POST',
    path: options.path ?? '/v1/rank',
    headers: { 'content-type': 'application/json' },
    setupRequest: (req) => ({ ...req, body: options.body(next++) }),
  };
  if (options.onBody) request.onResponse = (status, body) => options.onBody!(status, body);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationS,
        timeout: options.timeoutS ?? 10,
        overallRate: options.overallRate,
        requests: [request],
      },
      (error, result) => {
        if (error) return reject(error);
        const durationS = (performance.now() - started) / 1000;
        resolve({
          samples,
          summary: summarizeSamples(samples, durationS, {
            mode: 'closed',
            connections: options.connections,
            targetRate: options.overallRate,
            sent: result.requests.sent,
            errors: result.errors,
            timeouts: result.timeouts,
          }),
        });
      },
    );
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      samples.push({ at: performance.now() - started, latency: responseTime, status: statusCode });
    });
  });
}

export interface OpenLoopOptions {
  url: string;
  path?: string;
  /** Requests per second, evenly spaced. */
  rate: number;
  durationS: number;
  body: BodySource;
  maxInflight?: number;
  timeoutMs?: number;
  /** Called with the response body (collected only when this is given). */
  onBody?: (status: number, body: string, sample: Sample, index: number) => void;
  /** Stop early when this resolves (runs that last "until the scenario is done"). */
  until?: Promise<unknown>;
  /** Shared clock origin (performance.now()) so that callers can window samples. */
  origin?: number;
  /**
   * Run the same schedule for this long first, on the same connections, and leave it out of
   * `summary`/`samples` (it is reported as `leadIn`): the onset, while the client opens its
   * connections and the server's admission control and heap settle, is not the steady state that a
   * fixed rate measures (wrk2 calibrates the same way). `durationS` is the measured part.
   */
  leadInS?: number;
}

interface Phase {
  samples: Sample[];
  sent: number;
  errors: number;
  timeouts: number;
  dropped: number;
}

export async function openLoop(options: OpenLoopOptions): Promise<{ summary: RunSummary; samples: Sample[]; leadIn?: { summary: RunSummary; samples: Sample[] } }> {
  const target = new URL(options.url);
  const maxInflight = options.maxInflight ?? 512;
  const agent = new http.Agent({ keepAlive: true, maxSockets: maxInflight, maxFreeSockets: maxInflight });
  const origin = options.origin ?? performance.now();
  const started = performance.now();
  const leadInMs = Math.max(0, options.leadInS ?? 0) * 1000;
  const measuredFrom = started + leadInMs;
  const interval = 1000 / options.rate;
  const phase = (): Phase => ({ samples: [], sent: 0, errors: 0, timeouts: 0, dropped: 0 });
  const leadIn = phase();
  const measured = phase();
  let inflight = 0;
  let stop = false;
  options.until?.then(() => (stop = true), () => (stop = true));
  const loopDelay = monitorEventLoopDelay({ resolution: 2 });
  loopDelay.enable();
  const leadInEnd = leadInMs > 0 ? setTimeout(() => loopDelay.reset(), leadInMs) : null;

  const fire = (scheduled: number, index: number, into: Phase) => {
    const body = options.body(index);
    inflight++;
    into.sent++;
    const req = http.request(
      {
        host: target.hostname,
        port: target.port,
        path: options.path ?? '/v1/rank',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': body.length },
        timeout: options.timeoutMs ?? 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        if (options.onBody) res.on('data', (c: Buffer) => chunks.push(c));
        else res.resume();
        res.on('end', () => {
          inflight--;
          const now = performance.now();
          const sample = { at: now - origin, latency: now - scheduled, status: res.statusCode ?? 0 };
          into.samples.push(sample);
          options.onBody?.(sample.status, Buffer.concat(chunks).toString(), sample, index);
        });
      },
    );
    req.on('timeout', () => {
      into.timeouts++;
      req.destroy(new Error('timeout'));
    });
    req.on('error', () => {
      inflight--;
      into.errors++;
    });
    req.end(body);
  };

  await new Promise<void>((resolve) => {
    let index = 0;
    const endAt = measuredFrom + options.durationS * 1000;
    const tick = () => {
      const now = performance.now();
      while (!stop && started + index * interval <= now && started + index * interval < endAt) {
        const scheduled = started + index * interval;
        const into = scheduled < measuredFrom ? leadIn : measured;
        if (inflight >= maxInflight) into.dropped++;
        else fire(scheduled, index, into);
        index++;
      }
      if (stop || started + index * interval >= endAt) return resolve();
      setTimeout(tick, Math.max(0, Math.min(5, started + index * interval - performance.now())));
    };
    tick();
  });
  const sendEndedAt = performance.now();
  loopDelay.disable();
  if (leadInEnd) clearTimeout(leadInEnd);
  const clientLoopDelayP99Ms = loopDelay.count > 0 ? +(loopDelay.percentile(99) / 1e6).toFixed(2) : undefined;
  // Let the requests in flight finish (bounded by their timeout).
  const drainUntil = performance.now() + (options.timeoutMs ?? 10_000) + 1000;
  while (inflight > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
  agent.destroy();
  const summary = (p: Phase, durationS: number) => summarizeSamples(p.samples, durationS, { mode: 'open', targetRate: options.rate, sent: p.sent, errors: p.errors, timeouts: p.timeouts, clientDropped: p.dropped });
  const measuredS = Math.max(0, sendEndedAt - measuredFrom) / 1000;
  return {
    samples: measured.samples,
    summary: { ...summary(measured, measuredS), clientLoopDelayP99Ms },
    ...(leadInMs > 0 ? { leadIn: { samples: leadIn.samples, summary: summary(leadIn, Math.min(leadInMs, sendEndedAt - started) / 1000) } } : {}),
  };
}

/** Samples completed in [from, to) ms (same origin as the run). */
export function windowOf(samples: Sample[], from: number, to: number): Sample[] {
  return samples.filter((s) => s.at >= from && s.at < to);
}
