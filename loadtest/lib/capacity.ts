/**
 * The open-loop capacity: the highest paced rate the server keeps up with.
 *
 * The sweep's peak is a closed loop (a few connections, each sending when the last answer came):
 * the threads never sleep and requests batch, so a request costs less CPU there than when requests
 * arrive on a schedule (docs/DESIGN-NOTES.md 23: 3.30 against 2.57 ms at c=4). A rate that is 70%
 * of the closed-loop peak can then be the whole of what the host serves paced. This search measures
 * the paced capacity directly, so that a "70%" row can also be run at 70% of it.
 */
import type { RunSummary } from './load.js';

/** A paced run keeps up when almost every request is answered 2xx and answers arrive at the offered rate. */
export const kMaxRefusedShare = 0.005;
export const kMinDeliveredShare = 0.97;

export interface Probe {
  rate: number;
  ofPeak: number;
  sustained: boolean;
  okRps: number;
  non2xx: number;
  p99: number;
}

export interface CapacitySearch {
  /** The highest probed rate that was sustained; null when even the lowest probe was not. */
  rps: number | null;
  ofPeak: number | null;
  probes: Probe[];
}

export function sustains(run: RunSummary, rate: number): boolean {
  const answered = Math.max(1, run.completed + run.errors + run.timeouts + (run.clientDropped ?? 0));
  const refused = run.non2xx + run.errors + run.timeouts + (run.clientDropped ?? 0);
  return refused / answered <= kMaxRefusedShare && run.rps >= kMinDeliveredShare * rate;
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
    const p: Probe = { rate, ofPeak: Math.round(ofPeak * 1000) / 1000, sustained: sustains(summary, rate), okRps: summary.rps, non2xx: summary.non2xx, p99: summary.latency.p99 };
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
