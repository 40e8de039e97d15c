/**
 * Admission control for overload. The main thread (JSON parsing, validation, feature encoding) is the
 * bottleneck on small machines, and once it saturates requests queue in the kernel where no queue
 * bound can see them: latency grows without limit. So the event loop itself is watched: every
 * `intervalMs` the lateness of a timer (event-loop lag) and the loop's utilization are sampled, and
 * a shed probability rises in proportion to how far the smoothed lag is above its target and decays
 * when the loop has slack. New requests are refused in `onRequest`, before their body is parsed, so
 * a refusal costs a small fraction of serving the request.
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
  intervalMs?: number;
  /** Injectable for tests. */
  random?: () => number;
}

export class AdmissionController {
  readonly #target: number;
  readonly #interval: number;
  readonly #random: () => number;
  readonly #maxInflight: number;
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

  /** Shedding now: new requests are being refused, or would be. */
  get overloaded(): boolean {
    return this.shedProbability > 0 || this.inflight >= this.#maxInflight;
  }

  /** Admit one request (the caller must call `done()` exactly once when it ends), or refuse it. */
  admit(): boolean {
    if (this.inflight >= this.#maxInflight) return false;
    if (this.shedProbability > 0 && this.#random() < this.shedProbability) return false;
    this.inflight++;
    return true;
  }

  done(): void {
    this.inflight--;
  }
}
