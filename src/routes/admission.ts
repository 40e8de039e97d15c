/**
 * Admission control for overload. The main thread (JSON parsing, validation, feature encoding) is the
 * bottleneck on small machines, and once it saturates requests queue in the kernel where no queue
 * bound can see them: latency grows without limit. So the event loop itself is watched: every
 * `intervalMs` the lateness of a timer (event-loop lag) and the loop's utilization are sampled, and
 * a shed probability rises in proportion to how far the smoothed lag is above its target and decays
 * when the loop has slack. New requests are refused in `onRequest`, before their body is parsed, so
 * a refusal costs a small fraction of serving the request. Beside it, a bound on admitted requests
 * in progress, with a short first-come waiting line for bursts (docs/DESIGN-NOTES.md 13), which
 * tightens during sustained overload (docs/DESIGN-NOTES.md 15): a line that keeps overflowing is not
 * a burst, and then the bound and the wait shrink so that the requests still admitted wait less.
 *
 * @fastify/under-pressure was tried first: it averages delay over a sample interval (1 s by default)
 * and then refuses everything or nothing, which at 2x overload still let latency climb to seconds.
 */
import { performance } from 'node:perf_hooks';

export interface AdmissionOptions {
  /** Smoothed event-loop lag (ms) above which requests start being shed. */
  targetLagMs: number;
  /**
   * Admitted requests in progress at once. Shedding a share of arrivals drains a backlog faster, but
   * only a bound on admitted work bounds the wait of the requests that are admitted (Little's law:
   * wait ~ in-flight x main-thread cost per request).
   */
  maxInflight?: number;
  /**
   * Requests that find every place taken may wait this long for one, at most `maxWaiting` of them,
   * first come first served: a burst a little larger than the bound is absorbed instead of refused,
   * while sustained overload is still refused within `maxWaitMs`. 0 = refuse at once.
   */
  maxWaitMs?: number;
  maxWaiting?: number;
  /**
   * Sustained overload: once the waiting line has overflowed (a request refused because the line was
   * full) again and again, with no gap longer than `gapMs`, for `afterMs`, the bound becomes
   * `maxInflight` and the wait `maxWaitMs` until no request at all has been refused for `gapMs`.
   * Only an overflowing line starts it: a burst no larger than the bound plus the line (a closed-loop
   * client with that many connections) cannot, even when its requests time out in the line.
   */
  sustained?: { afterMs: number; gapMs?: number; maxInflight: number; maxWaitMs: number };
  intervalMs?: number;
  /** Injectable for tests. */
  now?: () => number;
  random?: () => number;
}

/** A request waiting for a place: `granted` settles true when one is handed over, false otherwise. */
export interface AdmissionTicket {
  granted: Promise<boolean>;
  /** Give up waiting (the client went away); `granted` settles false. No effect once settled. */
  cancel(): void;
}

interface Waiter {
  resolve: (granted: boolean) => void;
  timer: NodeJS.Timeout;
}

const kRecentRefusalMs = 100;
const kDefaultOverflowGapMs = 50;

/** Why a request was refused: the lag controller's draw, a full bound (no waiting line), a full line, or a wait that ran out. */
export type RefusalReason = 'event_loop' | 'inflight' | 'line_full' | 'wait_timeout';

export class AdmissionController {
  readonly #target: number;
  readonly #interval: number;
  readonly #random: () => number;
  readonly #maxInflight: number;
  readonly #maxWaitMs: number;
  readonly #maxWaiting: number;
  readonly #sustainedAfterMs: number;
  readonly #sustainedGapMs: number;
  readonly #sustainedMaxInflight: number;
  readonly #sustainedMaxWaitMs: number;
  readonly #now: () => number;
  #waiters: Waiter[] = [];
  #refusedAt = -Infinity;
  #overflowStreakSince = -Infinity;
  #overflowAt = -Infinity;
  #sustained = false;
  /** Why the last refusal happened, for the 503's message and the shed metric. */
  lastRefusal: RefusalReason = 'inflight';
  inflight = 0;
  #timer: NodeJS.Timeout | null = null;
  #expected = 0;
  #elu = performance.eventLoopUtilization();
  lagMs = 0;
  utilization = 0;
  shedProbability = 0;

  constructor(options: AdmissionOptions) {
    this.#target = options.targetLagMs;
    this.#interval = options.intervalMs ?? 10;
    this.#random = options.random ?? Math.random;
    this.#maxInflight = options.maxInflight ?? Infinity;
    this.#maxWaitMs = options.maxWaitMs ?? 0;
    this.#maxWaiting = options.maxWaitMs ? (options.maxWaiting ?? 0) : 0;
    const sustained = options.sustained;
    this.#sustainedAfterMs = sustained && sustained.afterMs > 0 && this.#maxWaiting > 0 ? sustained.afterMs : Infinity;
    this.#sustainedGapMs = sustained?.gapMs ?? kDefaultOverflowGapMs;
    this.#sustainedMaxInflight = Math.min(this.#maxInflight, sustained?.maxInflight ?? Infinity);
    this.#sustainedMaxWaitMs = Math.min(this.#maxWaitMs, sustained?.maxWaitMs ?? Infinity);
    this.#now = options.now ?? (() => performance.now());
  }

  start(): void {
    if (this.#timer) return;
    this.#expected = performance.now() + this.#interval;
    this.#timer = setInterval(() => this.sample(performance.now()), this.#interval);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** One control step; `now` is when the sampling timer actually ran. */
  sample(now: number): void {
    const lag = Math.max(0, now - this.#expected);
    this.#expected = now + this.#interval;
    const current = performance.eventLoopUtilization();
    this.utilization = performance.eventLoopUtilization(current, this.#elu).utilization;
    this.#elu = current;
    this.observe(lag, this.utilization);
  }

  /** The control law, separate from the clock so that it can be tested. */
  observe(lagMs: number, utilization: number): void {
    this.lagMs = this.lagMs * 0.6 + lagMs * 0.4;
    // Lag alone also rises when one loop turn parses a burst of bodies on a loop with slack; only a
    // loop that is both late and busy is overloaded.
    if (this.lagMs > this.#target && utilization > 0.9) {
      this.shedProbability = Math.min(0.98, this.shedProbability + 0.05 * (this.lagMs / this.#target));
    } else if (utilization < 0.9 || this.lagMs < this.#target / 2) {
      this.shedProbability = Math.max(0, this.shedProbability - 0.02);
    }
  }

  /**
   * Shedding now: the lag controller is refusing a share of arrivals, or a request was refused in
   * the last 100 ms. A full bound alone is not overload: with a waiting line it is the normal state
   * of a busy server (and bounding parse turns then cost a quarter of the peak).
   */
  get overloaded(): boolean {
    return this.shedProbability > 0 || this.#now() - this.#refusedAt < kRecentRefusalMs;
  }

  /**
   * In sustained overload now (the tighter bound and wait apply). Entered after `afterMs` of a line
   * overflowing with no gap over `gapMs`; left once `gapMs` pass without any refusal.
   */
  get sustainedOverload(): boolean {
    const now = this.#now();
    if (this.#sustained) {
      if (now - this.#refusedAt > this.#sustainedGapMs) {
        this.#sustained = false;
        this.#overflowStreakSince = -Infinity;
      }
    } else if (now - this.#overflowAt <= this.#sustainedGapMs && this.#overflowAt - this.#overflowStreakSince >= this.#sustainedAfterMs) {
      this.#sustained = true;
    }
    return this.#sustained;
  }

  /** The bound on admitted requests in progress now. */
  get maxInflight(): number {
    return this.sustainedOverload ? this.#sustainedMaxInflight : this.#maxInflight;
  }

  /** Requests waiting for a place now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Admit one request (the caller must call `done()` exactly once when it ends), or refuse it. */
  admit(): boolean {
    this.#grantWaiters();
    if (this.inflight >= this.maxInflight) {
      // Refused for now: wait() decides whether it waits or is refused for good.
      this.lastRefusal = 'inflight';
      return false;
    }
    if (this.shedProbability > 0 && this.#random() < this.shedProbability) {
      this.#refuse('event_loop');
      return false;
    }
    this.inflight++;
    return true;
  }

  /**
   * After admit() refused because every place is taken: wait for one, or null when waiting is off
   * or the waiting line is full (refuse at once). A granted ticket holds a place like admit().
   */
  wait(): AdmissionTicket | null {
    if (this.inflight < this.maxInflight) return null;
    if (this.#waiters.length >= this.#maxWaiting) {
      this.#refuse(this.#maxWaiting > 0 ? 'line_full' : 'inflight');
      return null;
    }
    let waiter!: Waiter;
    const granted = new Promise<boolean>((resolve) => {
      const timedOut = () => {
        this.#refuse('wait_timeout');
        this.#leave(waiter, false);
      };
      waiter = { resolve, timer: setTimeout(timedOut, this.sustainedOverload ? this.#sustainedMaxWaitMs : this.#maxWaitMs) };
    });
    this.#waiters.push(waiter);
    return { granted, cancel: () => this.#leave(waiter, false) };
  }

  /** One admitted request ended: its place goes to the oldest waiter, if any and if the bound (which may have shrunk) allows. */
  done(): void {
    this.inflight--;
    this.#grantWaiters();
  }

  /** Hand free places to waiters, oldest first (also after the bound grew back). */
  #grantWaiters(): void {
    if (this.#waiters.length === 0) return;
    const bound = this.maxInflight;
    while (this.inflight < bound && this.#waiters.length > 0) {
      const next = this.#waiters.shift()!;
      clearTimeout(next.timer);
      this.inflight++;
      next.resolve(true);
    }
  }

  #refuse(reason: RefusalReason): void {
    const now = this.#now();
    this.lastRefusal = reason;
    this.#refusedAt = now;
    if (reason === 'line_full') {
      if (now - this.#overflowAt > this.#sustainedGapMs) this.#overflowStreakSince = now;
      this.#overflowAt = now;
    }
  }

  #leave(waiter: Waiter, granted: boolean): void {
    const at = this.#waiters.indexOf(waiter);
    if (at < 0) return;
    this.#waiters.splice(at, 1);
    clearTimeout(waiter.timer);
    waiter.resolve(granted);
  }
}
