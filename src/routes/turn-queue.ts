/**
 * Runs queued jobs in event-loop turns of bounded length. Parsing a 97 KB body takes about a
 * millisecond; when a burst of bodies completes in one poll phase, parsing them all in that phase
 * makes the turn tens of milliseconds long. libuv (since 1.45, Node 20) accepts one new connection
 * per turn, so long turns starve accept(): under a flood of new connections they waited seconds in
 * the kernel's queue while the process worked through bodies it had already read. Each turn runs
 * jobs until `budgetMs` is spent (at least one job), then yields, so that accept(), socket reads and
 * the shedding of new requests run between bursts of parsing. The budget is asked for at every turn:
 * bursts are also what cross-request batching feeds on, so the caller keeps them whole except
 * during a connection flood (`connectionFlood`, used by src/routes/rank.ts through src/app.ts).
 */

/**
 * When to bound parse turns: during a connection flood, that is while requests are being refused
 * (`refusing`) and the server accepted a new connection within `windowMs`. Keep-alive clients that
 * are refused (a closed loop above the in-flight bound) open no new connections, and bounding their
 * turns would only cost throughput.
 */
export function connectionFlood(server: { on(event: 'connection', listener: () => void): unknown }, refusing: () => boolean, windowMs = 100, now: () => number = () => performance.now()): () => boolean {
  let connectedAt = -Infinity;
  server.on('connection', () => (connectedAt = now()));
  return () => refusing() && now() - connectedAt < windowMs;
}

export class TurnQueue {
  #jobs: Array<() => void> = [];
  #head = 0;
  #scheduled = false;
  readonly #budgetMs: () => number;
  readonly #onError: (error: unknown) => void;
  readonly #onYield: () => void;

  /**
   * `onError` gets what a job throws; the queue goes on with the next job. `onYield` is called for
   * each turn that ends at its budget with jobs still queued.
   */
  constructor(budgetMs: () => number, onError: (error: unknown) => void, onYield: () => void = () => undefined) {
    this.#budgetMs = budgetMs;
    this.#onError = onError;
    this.#onYield = onYield;
  }

  get length(): number {
    return this.#jobs.length - this.#head;
  }

  push(job: () => void): void {
    this.#jobs.push(job);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#runTurn);
    }
  }

  readonly #runTurn = (): void => {
    const started = performance.now();
    const budget = this.#budgetMs();
    do {
      const job = this.#jobs[this.#head++];
      if (this.#head === this.#jobs.length) {
        this.#jobs = [];
        this.#head = 0;
      }
      try {
        job();
      } catch (error) {
        this.#onError(error);
      }
    } while (this.length > 0 && performance.now() - started < budget);
    if (this.length > 0) {
      this.#onYield();
      setImmediate(this.#runTurn);
    } else this.#scheduled = false;
  };
}
