/**
 * The open-loop capacity: the highest paced rate the server keeps up with.
 *
 * The sweep's peak is a closed loop (a few connections, each sending when the last answer came):
 * the threads never sleep and requests batch, so a request costs less CPU there than when requests
 * arrive on a schedule (docs/DESIGN-NOTES.md 23: 3.30 against 2.57 ms at c=4). A rate that is 70%
 * of the closed-loop peak can then be the whole of what the host serves paced. This search measures
 * the paced capacity directly, so that a "70%" row can also be run at 70% of it.
 */
import { refusedShareOf, type RunSummary } from './load.js';

/**
 * A paced run keeps up when almost every request is answered 2xx and answers arrive at the offered
 * rate: at least kMinDeliveredShare of it in 2xx completed within the window (plus load.ts'
 * kDeliveryGraceMs), so that a server that never refuses but queues ever more does not pass.
 */
export const kMaxRefusedShare = 0.005;
export const kMinDeliveredShare = 0.97;

export interface Probe {
  rate: number;
  ofPeak: number;
  sustained: boolean;
  okRps: number;
  /** 2xx per second completed within the probe's window (what sustains() compares with the rate). */
  deliveredRps: number;
  non2xx: number;
  /** Failed requests (timeouts included) and client drops: refused too. */
  errors: number;
  clientDropped: number;
  p99: number;
}

export interface CapacitySearch {
  /** The highest probed rate that was sustained; null when even the lowest probe was not. */
  rps: number | null;
  ofPeak: number | null;
  probes: Probe[];
}

export function sustains(run: RunSummary, rate: number): boolean {
  // A closed-loop summary has no window of its own; its rps is what completed during the run.
  const delivered = run.deliveredRps ?? run.rps;
  return refusedShareOf(run) <= kMaxRefusedShare && delivered >= kMinDeliveredShare * rate;
}

export interface PeakPoint {
  concurrency: number;
  rps: number;
  /** Non-2xx + failed requests over all sent. */
  refusedShare: number;
}

/**
 * The sweep's "max sustainable" point: the highest rps among the points that refused at most
 * kMaxRefusedShare of what they sent. A point that answers 96% of its requests 503 in a few ms
 * serves no more 2xx than one that queues them, and a rate taken from it overstates what the server
 * sustains. When no point qualifies, the highest of all (`qualified: false`, to be said so).
 */
export function pickPeak<T extends PeakPoint>(points: T[]): { peak: T; highest: T; qualified: boolean } {
  const highestOf = (xs: T[]) => xs.reduce((a, b) => (b.rps > a.rps ? b : a));
  const highest = highestOf(points);
  const clean = points.filter((p) => p.refusedShare <= kMaxRefusedShare);
  return clean.length > 0 ? { peak: highestOf(clean), highest, qualified: true } : { peak: highest, highest, qualified: false };
}

/**
 * Probe downward from the closed-loop peak in steps of `step` of the peak until a rate is sustained,
 * then once halfway back up towards the first rate that was not: a resolution of step / 2 of the
 * peak in at most 1 / step + 1 probes.
 */
export async function searchCapacity(
  peakRps: number,
  probe: (rate: number) => Promise<RunSummary>,
  { step = 0.1, lowest = 0.3 }: { step?: number; lowest?: number } = {},
): Promise<CapacitySearch> {
  const probes: Probe[] = [];
  const run = async (ofPeak: number) => {
    const rate = Math.max(1, Math.round(peakRps * ofPeak * 10) / 10);
    const summary = await probe(rate);
    const p: Probe = { rate, ofPeak: Math.round(ofPeak * 1000) / 1000, sustained: sustains(summary, rate), okRps: summary.rps, deliveredRps: summary.deliveredRps ?? summary.rps, non2xx: summary.non2xx, errors: summary.errors, clientDropped: summary.clientDropped ?? 0, p99: summary.latency.p99 };
    probes.push(p);
    return p;
  };
  let passed: Probe | null = null;
  for (let ofPeak = 1; ofPeak >= lowest - 1e-9; ofPeak -= step) {
    const p = await run(ofPeak);
    if (p.sustained) {
      passed = p;
      break;
    }
  }
  if (passed && passed.ofPeak < 1) {
    const between = await run(passed.ofPeak + step / 2);
    if (between.sustained) passed = between;
  }
  return { rps: passed?.rate ?? null, ofPeak: passed?.ofPeak ?? null, probes };
}
