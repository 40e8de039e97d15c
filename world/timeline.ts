/**
 * The shared inner loop of the simulation: one user's impressions over a time window, in
 * chronological order, with outcomes sampled from the truth and history events appended.
 * Used for the seeded history (days before day 0) and for every simulated day.
 */
import { kDayMs, kHourMs, kSurfaces } from './config.js';
import type { Entities } from './entities.js';
import type { EventLog } from './events.js';
import type { Rng } from './rng.js';
import { type AdSampler, sampleHour, sampleSurface } from './selection.js';
import type { Truth, TruthView } from './truth.js';

const S = kSurfaces.length;
export const kEventImpression = 0;
export const kEventClick = 1;
export const kEventConversion = 2;

/** Receives each simulated impression (only the live days record them). */
export interface ImpressionSink {
  impression(u: number, j: number, s: number, hour: number, ts: number, pClick: number, pConv: number, click: number, conv: number): void;
}

export interface TimelineContext {
  readonly entities: Entities;
  readonly truth: Truth;
  readonly view: TruthView;
  readonly sampler: AdSampler;
  readonly keepImpression: number;
}

let scratchTs = new Float64Array(4096);
const probs = new Float64Array(2);

/**
 * Simulate n impressions of user u between firstDayMs and firstDayMs + days * kDayMs.
 * Impressions before `dormantUntil` (a fraction of n) draw ads from the user's dormant categories
 * with probability dormantBias. Returns the number of history events appended.
 */
export function simulateUserSpan(
  ctx: TimelineContext,
  u: number,
  n: number,
  firstDayMs: number,
  days: number,
  rng: Rng,
  log: EventLog,
  sink: ImpressionSink | null,
  dormantBias = 0,
  dormantUntil = 0,
): number {
  if (n === 0) return 0;
  if (scratchTs.length < n) scratchTs = new Float64Array(Math.max(n, scratchTs.length * 2));
  const times = scratchTs.subarray(0, n);
  for (let i = 0; i < n; i++) {
    const day = days === 1 ? 0 : rng.int(days);
    const hour = sampleHour(ctx.entities, u, rng);
    times[i] = Math.floor(firstDayMs + day * kDayMs + hour * kHourMs + rng.next() * kHourMs);
  }
  times.sort();
  const end = firstDayMs + days * kDayMs;
  const before = log.length;
  for (let i = 0; i < n; i++) {
    const ts = times[i];
    const hour = Math.floor((ts - firstDayMs) / kHourMs) % 24;
    const s = sampleSurface(ctx.entities, u, rng, S);
    const j = ctx.sampler.sample(u, s, rng, i < dormantUntil ? dormantBias : 0);
    ctx.truth.probabilities(ctx.view, u, j, s, hour, probs);
    const click = rng.next() < probs[0] ? 1 : 0;
    const conv = click && rng.next() < probs[1] ? 1 : 0;
    if (sink) sink.impression(u, j, s, hour, ts, probs[0], probs[1], click, conv);
    if (click || rng.next() < ctx.keepImpression) {
      log.push(j, ts, s, kEventImpression);
      if (click) {
        const gap = (i + 1 < n ? times[i + 1] : end) - ts;
        log.push(j, ts + Math.floor(gap * 0.3 * rng.next()), s, kEventClick);
        if (conv) log.push(j, ts + Math.floor(gap * (0.4 + 0.5 * rng.next())), s, kEventConversion);
      }
    }
  }
  return log.length - before;
}
