/**
 * Runs queued jobs one per event-loop turn. Parsing a 97 KB body takes about a millisecond; when a
 * burst of bodies completes in one poll phase, parsing them all in that phase makes the turn tens of
 * milliseconds long. libuv (since 1.45, Node 20) accepts one new connection per turn, so long turns
 * starve accept(): under a flood of new connections they waited seconds in the kernel's queue while
 * the process worked through bodies it had already read. One parse per turn lets accept(), socket
 * reads and the shedding of new requests run between parses.
 */
export class TurnQueue {
  #jobs: Array<() => void> = [];
  #head = 0;
  #scheduled = false;
  readonly #onError: (error: unknown) => void;

  /** `onError` gets what a job throws; the queue goes on with the next job. */
  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  get length(): number {
    return this.#jobs.length - this.#head;
  }

  push(job: () => void): void {
    this.#jobs.push(job);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#runOne);
    }
  }

  readonly #runOne = (): void => {
    const job = this.#jobs[this.#head++];
    if (this.#head === this.#jobs.length) {
      this.#jobs = [];
      this.#head = 0;
    }
    try {
      job();
    } catch (error) {
      this.#onError(error);
    } finally {
      if (this.length > 0) setImmediate(this.#runOne);
      else this.#scheduled = false;
    }
  };
}
