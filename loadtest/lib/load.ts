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
  /**
   * Requests sent that got no complete response: socket errors, responses cut off mid-body and
   * timeouts, each counted once (autocannon's convention), so that sum(status) + errors = sent once
   * the run has drained. Not in `status`, `completed` or the latencies.
   */
  errors: number;
  /** Of `errors`, those that timed out (a part of it, not to be added to it). */
  timeouts: number;
  /** Open loop only: sends skipped because the client already had maxInflight requests open. */
  clientDropped?: number;
  /**
   * Open loop only: 2xx responses to the window's requests that completed by the end of the window
   * plus kDeliveryGraceMs, and that count per second of the window. Unlike `rps`, which also counts
   * what arrived while the run drained, this falls short of the rate when the server falls behind.
   */
  deliveredInWindow?: number;
  deliveredRps?: number;
  /**
   * Open loop only: how late the client sent its requests (actual send minus scheduled time), p99
   * and max, ms. The client shares the host's cores; a late send is in the latencies (they count
   * from the scheduled time), so this is the part of a tail that is the client's own.
   */
  clientLagP99Ms?: number;
  clientLagMaxMs?: number;
}

/** What a run was meant to send: open loop, every scheduled request, the ones the client dropped too. */
export const scheduledOf = (run: RunSummary): number => run.sent + (run.clientDropped ?? 0);

/** Requests not answered 2xx: non-2xx responses, failed requests (timeouts included) and client drops. */
export const refusedOf = (run: RunSummary): number => run.non2xx + run.errors + (run.clientDropped ?? 0);

/** refusedOf over every request scheduled (or sent, closed loop). */
export const refusedShareOf = (run: RunSummary): number => refusedOf(run) / Math.max(1, scheduledOf(run));

/**
 * How long after an open-loop window its requests may still complete and count as delivered in it.
 * Long enough for the requests sent in the window's last moments to come back at a healthy latency
 * (tens of ms at up to 90% of capacity), so a server that keeps up loses only the rare answer slower
 * than this; short against a 4 s capacity probe, so that a queue growing by 5% of the rate (the
 * search's resolution) fails the 97% rule: with the 1 s lead-in's backlog, the window delivers
 * (4 + 0.1 - 0.05 x 1) / (1.05 x 4) = 96.4% of what it was offered.
 */
export const kDeliveryGraceMs = 100;

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
    // autocannon counts a timeout in `errors` too (lib/run.js onTimeout), as RunSummary does.
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
  /** Per request sent: actual send minus scheduled time, ms. */
  lags: number[];
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
  const phase = (): Phase => ({ samples: [], sent: 0, errors: 0, timeouts: 0, dropped: 0, lags: [] });
  const leadIn = phase();
  const measured = phase();
  let inflight = 0;
  let stop = false;
  options.until?.then(() => (stop = true), () => (stop = true));

  const fire = (scheduled: number, index: number, into: Phase) => {
    into.lags.push(performance.now() - scheduled);
    const body = options.body(index);
    inflight++;
    into.sent++;
    // Every request ends exactly once, as a sample or as an error, and gives its in-flight place back:
    // a failure can show as a timeout, a request error, or (once headers came) only as the response
    // closing before its end, and some of these follow one another.
    let finished = false;
    let timedOut = false;
    const fail = () => {
      if (finished) return;
      finished = true;
      inflight--;
      into.errors++;
      if (timedOut) into.timeouts++;
    };
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
        res.on('error', fail);
        res.on('close', () => {
          if (!res.complete) fail();
        });
        res.on('end', () => {
          if (finished) return;
          finished = true;
          inflight--;
          const now = performance.now();
          const sample = { at: now - origin, latency: now - scheduled, status: res.statusCode ?? 0 };
          into.samples.push(sample);
          options.onBody?.(sample.status, Buffer.concat(chunks).toString(), sample, index);
        });
      },
    );
    req.on('timeout', () => {
      timedOut = true;
      req.destroy(new Error('timeout'));
    });
    req.on('error', fail);
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
  // Let the requests in flight finish (bounded by their timeout).
  const drainUntil = performance.now() + (options.timeoutMs ?? 10_000) + 1000;
  while (inflight > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 10));
  agent.destroy();
  const summary = (p: Phase, from: number, to: number): RunSummary => {
    const durationS = Math.max(0, to - from) / 1000;
    const deliveredBy = to + kDeliveryGraceMs - origin;
    const deliveredInWindow = p.samples.filter((s) => s.status >= 200 && s.status < 300 && s.at <= deliveredBy).length;
    const lag = summarize(p.lags);
    return {
      ...summarizeSamples(p.samples, durationS, { mode: 'open', targetRate: options.rate, sent: p.sent, errors: p.errors, timeouts: p.timeouts, clientDropped: p.dropped }),
      deliveredInWindow,
      deliveredRps: durationS > 0 ? +(deliveredInWindow / durationS).toFixed(2) : 0,
      ...(lag.count > 0 ? { clientLagP99Ms: +lag.p99.toFixed(2), clientLagMaxMs: +lag.max.toFixed(2) } : {}),
    };
  };
  return {
    samples: measured.samples,
    summary: summary(measured, measuredFrom, sendEndedAt),
    ...(leadInMs > 0 ? { leadIn: { samples: leadIn.samples, summary: summary(leadIn, started, Math.min(measuredFrom, sendEndedAt)) } } : {}),
  };
}

/** Samples completed in [from, to) ms (same origin as the run). */
export function windowOf(samples: Sample[], from: number, to: number): Sample[] {
  return samples.filter((s) => s.at >= from && s.at < to);
}
