/**
 * Event logs: the history events (impression / click / conversion) of all users, as growable
 * typed-array columns grouped by user (user u's events are [offsets[u], offsets[u+1])), oldest first.
 * The world keeps one block for the seeded pre-day-0 history and one per simulated day; a user's
 * history at the start of day d is the concatenation of blocks 0..d.
 */
export class EventLog {
  ad = new Int32Array(1024);
  ts = new Float64Array(1024);
  surface = new Int8Array(1024);
  event = new Int8Array(1024);
  length = 0;
  readonly offsets: Float64Array;
  #nextUser = 0;

  constructor(users: number) {
    this.offsets = new Float64Array(users + 1);
  }

  push(ad: number, ts: number, surface: number, event: number): void {
    if (this.length === this.ad.length) this.#grow();
    const i = this.length++;
    this.ad[i] = ad;
    this.ts[i] = ts;
    this.surface[i] = surface;
    this.event[i] = event;
  }

  /** Close user u's block (users must be closed in order; skipped users get empty blocks). */
  endUser(u: number): void {
    while (this.#nextUser <= u) this.offsets[++this.#nextUser] = this.length;
  }

  /** Close every remaining user and trim the columns. */
  finish(): this {
    this.endUser(this.offsets.length - 2);
    this.ad = this.ad.slice(0, this.length);
    this.ts = this.ts.slice(0, this.length);
    this.surface = this.surface.slice(0, this.length);
    this.event = this.event.slice(0, this.length);
    return this;
  }

  count(u: number): number {
    return this.offsets[u + 1] - this.offsets[u];
  }

  #grow(): void {
    const n = this.ad.length * 2;
    const ad = new Int32Array(n);
    ad.set(this.ad);
    const ts = new Float64Array(n);
    ts.set(this.ts);
    const surface = new Int8Array(n);
    surface.set(this.surface);
    const event = new Int8Array(n);
    event.set(this.event);
    this.ad = ad;
    this.ts = ts;
    this.surface = surface;
    this.event = event;
  }
}

/** Total history length of user u over blocks [0, upTo). */
export function historyLength(blocks: readonly EventLog[], u: number, upTo = blocks.length): number {
  let n = 0;
  for (let b = 0; b < upTo; b++) n += blocks[b].count(u);
  return n;
}
