/**
 * One simulated day: every user draws Poisson(impRate) impressions, outcomes come from the live
 * truth, the day's history events become a new history block. Impressions are kept as typed
 * columns (no per-impression objects) ready for the shard writer.
 */
import { kDayMs, kEpochMs } from './config.js';
import { EventLog } from './events.js';
import { advanceDay } from './drift.js';
import { Rng } from './rng.js';
import { simulateUserSpan, type ImpressionSink } from './timeline.js';
import type { TruthView } from './truth.js';
import { refreshAdIndex, type World } from './world.js';

export class Impressions implements ImpressionSink {
  length = 0;
  userRow = new Int32Array(0);
  ad = new Int32Array(0);
  surface = new Int8Array(0);
  hour = new Int8Array(0);
  ts = new Float64Array(0);
  pClick = new Float32Array(0);
  pConv = new Float32Array(0);
  click = new Uint8Array(0);
  conv = new Uint8Array(0);
  /** P(click) under a frozen (day-0) view of the world, when one was given. */
  pFrozen = new Float32Array(0);
  /** Row -> user index, for users with at least one impression. */
  users: number[] = [];
  #row = -1;
  readonly #world: World;
  readonly #frozen: TruthView | null;
  readonly #probs = new Float64Array(2);

  constructor(world: World, frozen: TruthView | null, capacity: number) {
    this.#world = world;
    this.#frozen = frozen;
    this.#allocate(Math.max(1024, capacity));
  }

  startUser(u: number): void {
    this.users.push(u);
    this.#row = this.users.length - 1;
  }

  impression(u: number, j: number, s: number, hour: number, ts: number, pClick: number, pConv: number, click: number, conv: number): void {
    if (this.length === this.ad.length) this.#allocate(this.ad.length * 2);
    const i = this.length++;
    this.userRow[i] = this.#row;
    this.ad[i] = j;
    this.surface[i] = s;
    this.hour[i] = hour;
    this.ts[i] = ts;
    this.pClick[i] = pClick;
    this.pConv[i] = pConv;
    this.click[i] = click;
    this.conv[i] = conv;
    if (this.#frozen) {
      this.#world.truth.probabilities(this.#frozen, u, j, s, hour, this.#probs);
      this.pFrozen[i] = this.#probs[0];
    }
  }

  /** Trim every column to length. */
  finish(): this {
    const n = this.length;
    this.userRow = this.userRow.slice(0, n);
    this.ad = this.ad.slice(0, n);
    this.surface = this.surface.slice(0, n);
    this.hour = this.hour.slice(0, n);
    this.ts = this.ts.slice(0, n);
    this.pClick = this.pClick.slice(0, n);
    this.pConv = this.pConv.slice(0, n);
    this.click = this.click.slice(0, n);
    this.conv = this.conv.slice(0, n);
    this.pFrozen = this.#frozen ? this.pFrozen.slice(0, n) : new Float32Array(0);
    return this;
  }

  #allocate(capacity: number): void {
    const grow = <T extends { set(a: T): void; length: number }>(old: T, make: (n: number) => T): T => {
      const next = make(capacity);
      if (old.length > 0) next.set(old);
      return next;
    };
    this.userRow = grow(this.userRow, (n) => new Int32Array(n));
    this.ad = grow(this.ad, (n) => new Int32Array(n));
    this.surface = grow(this.surface, (n) => new Int8Array(n));
    this.hour = grow(this.hour, (n) => new Int8Array(n));
    this.ts = grow(this.ts, (n) => new Float64Array(n));
    this.pClick = grow(this.pClick, (n) => new Float32Array(n));
    this.pConv = grow(this.pConv, (n) => new Float32Array(n));
    this.click = grow(this.click, (n) => new Uint8Array(n));
    this.conv = grow(this.conv, (n) => new Uint8Array(n));
    this.pFrozen = this.#frozen ? grow(this.pFrozen, (n) => new Float32Array(n)) : this.pFrozen;
  }
}

/**
 * Simulate day `world.day`: returns its impressions and appends its history block. Does not
 * advance drift (drift.advanceDay does).
 */
export function simulateDay(world: World, rng: Rng, frozen: TruthView | null = null, onUser?: (u: number) => void): Impressions {
  const { entities, truth, sampler, config } = world;
  const users = entities.users;
  let expected = 0;
  for (let u = 0; u < users.count; u++) expected += users.impRate[u];
  const out = new Impressions(world, frozen, Math.ceil(expected * 1.05));
  const log = new EventLog(users.count);
  const ctx = { entities, truth, view: truth.liveView, sampler, keepImpression: config.historyImpressionKeep };
  const dayMs = kEpochMs + world.day * kDayMs;
  for (let u = 0; u < users.count; u++) {
    const n = rng.poisson(users.impRate[u]);
    if (n > 0) {
      out.startUser(u);
      simulateUserSpan(ctx, u, n, dayMs, 1, rng, log, out);
    }
    log.endUser(u);
    if (onUser) onUser(u);
  }
  world.history.push(log.finish());
  refreshAdIndex(world);
  return out.finish();
}

/**
 * Bring a fresh world to the start of `day` exactly as `generate` does (same random streams):
 * simulate each earlier day (its events join the histories) and apply drift.
 */
export function advanceWorld(world: World, day: number): World {
  const rng = new Rng(world.config.seed, 'days');
  while (world.day < day) {
    simulateDay(world, rng.fork('day', world.day));
    advanceDay(world, rng.fork('drift', world.day + 1));
  }
  refreshAdIndex(world);
  return world;
}
