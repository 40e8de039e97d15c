/**
 * The inference pool facade (main thread): spawns workers, loads every model version into every
 * worker, and schedules scoring. Requests for the same model version that wait while workers are busy
 * are micro-batched into one session.run (cross-request batching): the batch grows with the load, so
 * at low load a request runs alone with no added delay. The queue is bounded in candidates, and each
 * item's deadline is checked before it is dispatched and, while it waits, by one timer for the earliest
 * deadline in the queue. Each worker's versions are tracked, so that a batch only goes to a worker that
 * holds its session (a replacement worker may come up without a version it failed to reload).
 */
import { Worker } from 'node:worker_threads';
import type { Config, ExecutionProvider } from '../config.js';
import { Errors, type RankerError } from '../errors.js';
import { assembleBatch, type EncodedRequest, type Feeds } from '../features/encode.js';
import type { FeaturePlan } from '../features/plan.js';
import type { FromWorker, ModelSource, TensorInfo, ToWorker } from './protocol.js';

export interface LoadInfo {
  provider: ExecutionProvider;
  fallbacks: Array<{ provider: ExecutionProvider; error: string }>;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  loadMs: number;
}

export interface RawResult {
  outputs: Record<string, Float32Array>;
  runMs: number;
}

export interface PoolObserver {
  batch?(key: string, requests: number, candidates: number, runMs: number, queueMs: number): void;
  workerExit?(workerId: number, code: number): void;
  fallback?(key: string, info: LoadInfo): void;
  /**
   * A replacement worker could not recreate `key`'s session; it serves without it and tries again
   * later (`attempt` of kReloadAttempts). `heldBy`: workers that hold it now.
   */
  reloadFailed?(key: string, workerId: number, error: Error, heldBy: number, attempt: number): void;
  /** A worker exited before it was ready; the next one starts in `retryInMs`. */
  startFailed?(workerId: number, code: number, attempt: number, retryInMs: number): void;
}

type PoolOptions = Pick<Config, 'skipInference' | 'poolSize' | 'intraOpThreads' | 'executionProviders' | 'workerQueueDepth' | 'batchMaxDelayMs' | 'batchMaxCandidates' | 'maxQueuedCandidates'>;

interface PendingItem {
  key: string;
  plan: FeaturePlan;
  encoded: EncodedRequest;
  candidates: number;
  outputName: string;
  enqueuedAt: number;
  deadlineAt: number;
  /** The deadline the caller asked for, for the 504's message: deadlineAt may count from an earlier start. */
  deadlineMs: number;
  resolve(scores: Float32Array): void;
  reject(error: RankerError): void;
}

interface Batch {
  id: number;
  key: string;
  items: PendingItem[] | null;
  raw: { resolve(result: RawResult): void; reject(error: RankerError): void } | null;
  candidates: number;
  dispatchedAt: number;
}

interface Slot {
  id: number;
  worker: Worker;
  ready: boolean;
  exited: boolean;
  loading: number;
  /** Versions with a session in this worker, as its replies say (in the order it handled them). */
  keys: Set<string>;
  inflight: Map<number, Batch>;
  waiters: Map<string, { resolve(message: FromWorker): void; reject(error: Error): void }>;
}

const kWorkerUrl = new URL('./worker.js', import.meta.url);
const kStartRetryBaseMs = 100;
const kStartRetryMaxMs = 5000;
/** A version a replacement worker failed to reload is tried this many times in all, 0.5 s, 1 s, 2 s ... apart. */
const kReloadAttempts = 6;
const kReloadRetryBaseMs = 500;
const kReloadRetryMaxMs = 8000;
/** The smallest batch whose run time updates a version's cost per candidate (see #finishBatch). */
const kEstimateMinCandidates = 64;
const noop = () => undefined;

/**
 * Fail and drop, in place, the queued items `reasonFor` returns an error for; the others keep their
 * order. Returns the candidates dropped.
 */
function rejectWhere(queue: PendingItem[], reasonFor: (item: PendingItem) => RankerError | null): number {
  let kept = 0;
  let dropped = 0;
  for (const item of queue) {
    const error = reasonFor(item);
    if (error) {
      dropped += item.candidates;
      item.reject(error);
    } else {
      queue[kept++] = item;
    }
  }
  queue.length = kept;
  return dropped;
}

/** `baseMs`, doubled for each failure after the first, at most `maxMs`. */
function backoffMs(failures: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** (failures - 1));
}

/**
 * A version no running worker holds (its reload failed, or it was never loaded): fail, don't wait. A
 * 503, not the model's fault: it does not count against a canary, and a retry may find it reloaded.
 */
/** Two loads of one key from the same path, or from equal bytes (each scan reads the file anew). */
function sameModel(a: ModelSource, b: ModelSource): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  return a === b || Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function unavailable(key: string): RankerError {
  return Errors.VERSION_UNAVAILABLE(key);
}

export class InferencePool {
  readonly #options: PoolOptions;
  readonly #observer: PoolObserver;
  readonly #workerUrl: URL;
  #slots: Slot[] = [];
  #pending: PendingItem[] = [];
  #pendingCandidates = 0;
  /** Work that must not delay traffic (shadow scoring): only run on a worker with nothing else to do. */
  #background: PendingItem[] = [];
  /** Loaded versions and what their sessions were created from: a replacement worker loads the same. */
  #loaded = new Map<string, ModelSource>();
  /** The latest load or unload of each key: concurrent calls share it or queue behind it (see #serialize). */
  #keyOps = new Map<string, { kind: 'load' | 'unload' | 'reload'; model: ModelSource | null; done: Promise<unknown> }>();
  #reloadRetries = new Set<NodeJS.Timeout>();
  #msPerCandidate = new Map<string, number>();
  #nextBatchId = 1;
  #nextWorkerId = 1;
  #timer: NodeJS.Timeout | null = null;
  #deadlineTimer: NodeJS.Timeout | null = null;
  #deadlineTimerAt = Infinity;
  #startFailures = 0;
  #respawns = new Set<NodeJS.Timeout>();
  #closing = false;

  /** `workerUrl` is for tests (a worker that cannot start). */
  constructor(options: PoolOptions, observer: PoolObserver = {}, workerUrl: URL = kWorkerUrl) {
    this.#options = options;
    this.#observer = observer;
    this.#workerUrl = workerUrl;
  }

  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.#options.poolSize }, () => this.#spawn()));
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Workers that take work now (a replacement is not ready until it has reloaded every version). */
  get readyWorkers(): number {
    let n = 0;
    for (const slot of this.#slots) if (slot.ready) n++;
    return n;
  }

  get queuedCandidates(): number {
    return this.#pendingCandidates;
  }

  get inflightBatches(): number {
    let n = 0;
    for (const s of this.#slots) n += s.inflight.size;
    return n;
  }

  #spawn(): Promise<Slot> {
    const id = this.#nextWorkerId++;
    let worker: Worker;
    try {
      worker = new Worker(this.#workerUrl);
    } catch (error) {
      if (!this.#closing) this.#retryStart(id, -1);
      return Promise.reject(error);
    }
    const slot: Slot = { id, worker, ready: false, exited: false, loading: 0, keys: new Set(), inflight: new Map(), waiters: new Map() };
    this.#slots.push(slot);
    return new Promise((resolve, reject) => {
      slot.worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          this.#bringUp(slot).then(() => slot.ready && resolve(slot), reject);
          return;
        }
        this.#onMessage(slot, message);
      });
      slot.worker.on('error', () => {
        /* the exit handler below fails the slot's work; an error always precedes an exit */
      });
      slot.worker.on('exit', (code) => this.#onExit(slot, code, reject));
    });
  }

  /**
   * Recreate every loaded version in a new worker, then let it take work. A version that fails here
   * (out of memory, say) is reported and left out of this worker rather than keep the worker, and
   * with it every other version, out of service: batches of that version go to workers that hold it.
   */
  async #bringUp(slot: Slot): Promise<void> {
    const tried = new Set<string>();
    for (;;) {
      // Read #loaded afresh each time: a version loaded meanwhile must not be missed.
      let next: [string, ModelSource] | null = null;
      for (const entry of this.#loaded) {
        if (!tried.has(entry[0])) {
          next = entry;
          break;
        }
      }
      if (!next) break;
      const [key, model] = next;
      tried.add(key);
      try {
        await this.#loadInto(slot, key, model);
      } catch (error) {
        if (slot.exited) return;
        this.#observer.reloadFailed?.(key, slot.id, error as Error, this.#holders(key), 1);
        this.#retryReload(slot, key, model, 1);
      }
      if (slot.exited) return;
    }
    // In the same turn as the last look at #loaded, so that load() either sees this worker ready or
    // this loop saw its version.
    slot.ready = true;
    this.#startFailures = 0;
    this.#pump();
  }

  /**
   * Try a failed reload again with a growing delay, while the version is still loaded with the same
   * model and the worker lives: a transient failure (memory, say) then heals without
   * an operator. A version whose folder went away stops being retried once the loader unloads it.
   */
  #retryReload(slot: Slot, key: string, model: ModelSource, failures: number): void {
    if (failures >= kReloadAttempts) return;
    const stillWanted = () => !this.#closing && !slot.exited && !slot.keys.has(key) && this.#loaded.get(key) === model;
    const timer = setTimeout(() => {
      this.#reloadRetries.delete(timer);
      if (!stillWanted()) return;
      // Serialized with admin loads and unloads of the key: a worker's replies name only the key.
      this.#serialize(key, 'reload', model, async () => {
        // Looked at again in its turn: an unload queued before this retry may have run meanwhile.
        if (stillWanted()) await this.#loadInto(slot, key, model);
      }).then(
        () => this.#pump(),
        (error: unknown) => {
          if (slot.exited || this.#closing) return;
          this.#observer.reloadFailed?.(key, slot.id, error as Error, this.#holders(key), failures + 1);
          this.#retryReload(slot, key, model, failures + 1);
        },
      );
    }, backoffMs(failures, kReloadRetryBaseMs, kReloadRetryMaxMs));
    this.#reloadRetries.add(timer);
  }

  #onExit(slot: Slot, code: number, rejectStart: (e: Error) => void): void {
    slot.exited = true;
    this.#slots = this.#slots.filter((s) => s !== slot);
    const error = Errors.WORKER_EXITED(slot.id, code);
    for (const batch of slot.inflight.values()) this.#failBatch(batch, error);
    slot.inflight.clear();
    for (const waiter of slot.waiters.values()) waiter.reject(error);
    slot.waiters.clear();
    rejectStart(error);
    if (this.#closing) return;
    this.#observer.workerExit?.(slot.id, code);
    // Replace the worker; it reloads every loaded model version before it takes work. One that never
    // got ready is retried with a growing delay, not in a tight loop.
    if (slot.ready) this.#spawn().catch(noop);
    else this.#retryStart(slot.id, code);
    this.#pump();
  }

  #retryStart(workerId: number, code: number): void {
    const attempt = ++this.#startFailures;
    const retryInMs = backoffMs(attempt, kStartRetryBaseMs, kStartRetryMaxMs);
    this.#observer.startFailed?.(workerId, code, attempt, retryInMs);
    const timer = setTimeout(() => {
      this.#respawns.delete(timer);
      if (!this.#closing) this.#spawn().catch(noop);
    }, retryInMs);
    this.#respawns.add(timer);
  }

  #onMessage(slot: Slot, message: FromWorker): void {
    switch (message.type) {
      case 'loaded':
      case 'load-failed':
      case 'unloaded': {
        if (message.type === 'loaded') slot.keys.add(message.key);
        else if (message.type === 'unloaded') slot.keys.delete(message.key);
        const waiterKey = `${message.type === 'unloaded' ? 'unload' : 'load'}:${message.key}`;
        const waiter = slot.waiters.get(waiterKey);
        slot.waiters.delete(waiterKey);
        waiter?.resolve(message);
        return;
      }
      case 'result': {
        const batch = slot.inflight.get(message.id);
        slot.inflight.delete(message.id);
        if (batch) this.#finishBatch(batch, message.outputs, message.runMs);
        this.#pump();
        return;
      }
      case 'run-failed': {
        const batch = slot.inflight.get(message.id);
        slot.inflight.delete(message.id);
        if (batch) this.#failBatch(batch, Errors.INFERENCE_FAILED(batch.key, message.error));
        this.#pump();
        return;
      }
    }
  }

  #request(slot: Slot, waiterKey: string, message: ToWorker): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      // Replies name only the key, so a second request of one kind for one key could not be told
      // apart from the first. #serialize makes that impossible; if it happens anyway, say so.
      if (slot.waiters.has(waiterKey)) {
        reject(new Error(`${waiterKey} is already pending on inference worker ${slot.id}`));
        return;
      }
      slot.waiters.set(waiterKey, { resolve, reject });
      slot.worker.postMessage(message);
    });
  }

  async #loadInto(slot: Slot, key: string, model: ModelSource): Promise<LoadInfo> {
    slot.loading++;
    try {
      const reply = await this.#request(slot, `load:${key}`, {
        type: 'load',
        key,
        model,
        providers: this.#options.executionProviders,
        intraOpThreads: this.#options.intraOpThreads,
      });
      if (reply.type === 'load-failed') throw Errors.LOAD_FAILED(key, reply.error);
      if (reply.type !== 'loaded') throw Errors.LOAD_FAILED(key, `unexpected reply ${reply.type}`);
      return { provider: reply.provider, fallbacks: reply.fallbacks, inputs: reply.inputs, outputs: reply.outputs, loadMs: reply.loadMs };
    } finally {
      slot.loading--;
      this.#pump();
    }
  }

  /**
   * Create the session in every worker, one worker at a time so the others keep serving. On any
   * failure the version is unloaded from the workers that had it. A second load of a key already
   * loading shares the first one's outcome.
   */
  load(key: string, model: ModelSource): Promise<LoadInfo> {
    const current = this.#keyOps.get(key);
    if (current?.kind === 'load' && current.model !== null && sameModel(current.model, model)) return current.done as Promise<LoadInfo>;
    return this.#serialize(key, 'load', model, () => this.#loadEverywhere(key, model));
  }

  async #loadEverywhere(key: string, model: ModelSource): Promise<LoadInfo> {
    if (this.#closing) throw Errors.SHUTTING_DOWN();
    let info: LoadInfo | null = null;
    const done: Slot[] = [];
    try {
      for (;;) {
        // Look again after each worker: a replacement that got ready meanwhile needs the version too.
        const slot = this.#slots.find((s) => s.ready && !done.includes(s));
        if (!slot) break;
        info = await this.#loadInto(slot, key, model);
        done.push(slot);
      }
    } catch (error) {
      await Promise.all(done.map((slot) => this.#request(slot, `unload:${key}`, { type: 'unload', key }).catch(noop)));
      throw error;
    }
    if (!info) throw Errors.OVERLOADED('no inference worker is running');
    this.#loaded.set(key, model);
    if (info.fallbacks.length > 0) this.#observer.fallback?.(key, info);
    return info;
  }

  unload(key: string): Promise<void> {
    if (this.#keyOps.get(key)?.kind === 'unload') return this.#keyOps.get(key)!.done as Promise<void>;
    return this.#serialize(key, 'unload', null, () => this.#unloadEverywhere(key));
  }

  async #unloadEverywhere(key: string): Promise<void> {
    this.#loaded.delete(key);
    await Promise.all(this.#slots.map((slot) => this.#request(slot, `unload:${key}`, { type: 'unload', key }).catch(noop)));
  }

  /**
   * One load or unload per key at a time. A worker's replies name only the key, so two loads of one
   * key on one worker would share a waiter: the first would never settle and its worker would count
   * as loading forever. With no operation pending, `run` starts in this turn (unload's effect on
   * isLoaded is immediate, as callers expect).
   */
  #serialize<T>(key: string, kind: 'load' | 'unload' | 'reload', model: ModelSource | null, run: () => Promise<T>): Promise<T> {
    const previous = this.#keyOps.get(key);
    const done = previous ? previous.done.then(run, run) : run();
    const op = { kind, model, done };
    this.#keyOps.set(key, op);
    const clear = () => {
      if (this.#keyOps.get(key) === op) this.#keyOps.delete(key);
    };
    done.then(clear, clear);
    return done;
  }

  isLoaded(key: string): boolean {
    return this.#loaded.has(key);
  }

  /** Ready workers holding a session for `key`. */
  #holders(key: string): number {
    let n = 0;
    for (const slot of this.#slots) if (slot.ready && slot.keys.has(key)) n++;
    return n;
  }

  /** Whether a worker holds `key`, or one that is starting will reload it: only then may its requests wait. */
  mayServe(key: string): boolean {
    for (const slot of this.#slots) if (slot.ready ? slot.keys.has(key) : this.#loaded.has(key)) return true;
    return this.#respawns.size > 0 && this.#loaded.has(key);
  }

  /**
   * Expected wait before `candidates` more candidates for `key` would finish, from recent batches: the
   * queue, the batches already sent to the least busy worker holding `key` (unless `withBacklog` is
   * false: a caller adding up several runs of one request counts that wait once), and the run itself.
   */
  estimateMs(key: string, candidates: number, withBacklog = true): number {
    const perCandidate = this.#msPerCandidate.get(key) ?? 0.002;
    const workers = Math.max(1, this.#slots.length);
    const backlog = withBacklog ? this.#runningMs(key, performance.now()) : 0;
    return ((this.#pendingCandidates + candidates) * perCandidate) / workers + backlog + candidates * perCandidate;
  }

  /** The least, over the ready workers holding `key`, of what they still have to run. */
  #runningMs(key: string, now: number): number {
    let least = Infinity;
    for (const slot of this.#slots) if (slot.ready && slot.keys.has(key)) least = Math.min(least, this.#backlogMs(slot, now));
    return least === Infinity ? 0 : least;
  }

  /**
   * What a worker still has to run, ms: its batches sent and not answered (the first has been running
   * since it was sent). A batch sent behind a running one (WORKER_QUEUE_DEPTH) starts only after it,
   * and its deadline check must count it. The gate's and raw batches are not counted (no estimate).
   */
  #backlogMs(slot: Slot, now: number): number {
    let ms = 0;
    let first = true;
    for (const batch of slot.inflight.values()) {
      const expected = batch.candidates * (this.#msPerCandidate.get(batch.key) ?? 0);
      ms += first ? Math.max(0, expected - (now - batch.dispatchedAt)) : expected;
      first = false;
    }
    return ms;
  }

  /**
   * Score one encoded request; resolves with its slice of the model output `outputName`. `deadlineMs`
   * is the deadline the caller was given, for the 504's message; without it, `deadlineAt` counts from now.
   */
  score(key: string, plan: FeaturePlan, encoded: EncodedRequest, outputName: string, deadlineAt: number, deadlineMs?: number): Promise<Float32Array> {
    if (this.#closing) return Promise.reject(Errors.SHUTTING_DOWN());
    if (!this.mayServe(key)) return Promise.reject(unavailable(key));
    const candidates = encoded.candidates.count;
    // An empty queue admits any request: one request alone is not an overload (MAX_CANDIDATES bounds it).
    if (this.#pending.length > 0 && this.#pendingCandidates + candidates > this.#options.maxQueuedCandidates) {
      return Promise.reject(Errors.OVERLOADED(`${this.#pendingCandidates} candidates queued`));
    }
    return new Promise((resolve, reject) => {
      const enqueuedAt = performance.now();
      this.#pending.push({ key, plan, encoded, candidates, outputName, enqueuedAt, deadlineAt, deadlineMs: deadlineMs ?? Math.round(deadlineAt - enqueuedAt), resolve, reject });
      this.#pendingCandidates += candidates;
      this.#pump();
      if (this.#pending.length > 0) this.#watchDeadline(deadlineAt);
    });
  }

  /**
   * Score one encoded request behind all traffic: dispatched only while no request waits and to a worker
   * with no batch running or queued, one batch at a time, and not counted in the queue's length (once
   * running, it is in its worker's backlog like any batch). A request that arrives while it runs still
   * waits for that one run, so callers bound its cost (ShadowRunner); it fails at `deadlineAt` if no
   * worker was idle by then.
   */
  scoreInBackground(key: string, plan: FeaturePlan, encoded: EncodedRequest, outputName: string, deadlineAt: number): Promise<Float32Array> {
    if (this.#closing) return Promise.reject(Errors.SHUTTING_DOWN());
    if (!this.mayServe(key)) return Promise.reject(unavailable(key));
    return new Promise((resolve, reject) => {
      const enqueuedAt = performance.now();
      const candidates = encoded.candidates.count;
      this.#background.push({ key, plan, encoded, candidates, outputName, enqueuedAt, deadlineAt, deadlineMs: Math.round(deadlineAt - enqueuedAt), resolve, reject });
      this.#pump();
      if (this.#background.length > 0) this.#watchDeadline(deadlineAt);
    });
  }

  /** Fail the background work waiting for `key` (its version is draining): it would hold the drain. */
  cancelBackground(key: string): void {
    const error = unavailable(key);
    this.#rejectBackground((item) => (item.key === key ? error : null));
  }

  /**
   * A first cost per candidate for `key` (the gate's timing), until its own batches give one: without
   * it, deadline checks counted 0.002 ms per candidate, or nothing, for a version whose batches had
   * not yet been large enough.
   */
  seedCostPerCandidate(key: string, msPerCandidate: number): void {
    if (!this.#msPerCandidate.has(key) && Number.isFinite(msPerCandidate) && msPerCandidate > 0) this.#msPerCandidate.set(key, msPerCandidate);
  }

  /**
   * Expected run time of `candidates` candidates of `key`: from its recent batches, or its gate's
   * timing until there are some (seedCostPerCandidate); null when neither is known.
   */
  expectedRunMs(key: string, candidates: number): number | null {
    const perCandidate = this.#msPerCandidate.get(key);
    return perCandidate === undefined ? null : perCandidate * candidates;
  }

  /**
   * Keep one timer at (or before) the earliest deadline in the queue: the dispatch-time check alone
   * never runs while no worker frees up. Queued items mostly share a deadline length, so a later
   * item rarely moves the timer.
   */
  #watchDeadline(at: number): void {
    if (at >= this.#deadlineTimerAt) return;
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    this.#deadlineTimerAt = at;
    this.#deadlineTimer = setTimeout(() => this.#expire(), Math.max(0, Math.ceil(at - performance.now())));
  }

  #expire(): void {
    this.#deadlineTimer = null;
    this.#deadlineTimerAt = Infinity;
    const now = performance.now();
    this.#rejectPending((item) => (now >= item.deadlineAt ? Errors.DEADLINE(item.deadlineMs) : null));
    this.#rejectBackground((item) => (now >= item.deadlineAt ? Errors.DEADLINE(item.deadlineMs) : null));
    let next = Infinity;
    for (const item of this.#pending) if (item.deadlineAt < next) next = item.deadlineAt;
    for (const item of this.#background) if (item.deadlineAt < next) next = item.deadlineAt;
    if (next < Infinity) this.#watchDeadline(next);
  }

  /** Run prebuilt feeds as one batch of their own (validation gate, raw tensor inference, benchmarks). */
  runFeeds(key: string, feeds: Feeds): Promise<RawResult> {
    if (this.#closing) return Promise.reject(Errors.SHUTTING_DOWN());
    return new Promise((resolve, reject) => {
      const slot = this.#freeSlot(key) ?? this.#leastBusySlot(key);
      if (!slot) {
        reject(this.#slots.some((s) => s.ready) ? unavailable(key) : Errors.OVERLOADED('no inference worker is running'));
        return;
      }
      const batch: Batch = { id: this.#nextBatchId++, key, items: null, raw: { resolve, reject }, candidates: 0, dispatchedAt: performance.now() };
      this.#post(slot, batch, feeds);
    });
  }

  /**
   * The ready worker holding `key` that can take a batch now and will start it soonest (the least
   * backlog; fewer batches on a tie). By batch count alone, a worker running one long batch was picked
   * over one running a short one, and a deadline that the other would meet was refused.
   */
  #freeSlot(key: string): Slot | null {
    let best: Slot | null = null;
    let bestBacklog = Infinity;
    const now = performance.now();
    for (const slot of this.#slots) {
      if (!slot.ready || slot.loading > 0 || slot.inflight.size >= this.#options.workerQueueDepth || !slot.keys.has(key)) continue;
      const backlog = this.#backlogMs(slot, now);
      if (!best || backlog < bestBacklog || (backlog === bestBacklog && slot.inflight.size < best.inflight.size)) {
        best = slot;
        bestBacklog = backlog;
      }
    }
    return best;
  }

  #leastBusySlot(key: string): Slot | null {
    let best: Slot | null = null;
    for (const slot of this.#slots) if (slot.ready && slot.keys.has(key) && (!best || slot.inflight.size < best.inflight.size)) best = slot;
    return best;
  }

  #pump(): void {
    while (this.#pending.length > 0) {
      const head = this.#pending[0];
      const slot = this.#freeSlot(head.key);
      if (!slot) {
        // Wait for a worker holding head's version, unless none holds it or will: then fail them now.
        if (this.mayServe(head.key)) return;
        const error = unavailable(head.key);
        this.#rejectPending((item) => (item.key === head.key ? error : null));
        continue;
      }
      const now = performance.now();
      if (this.#options.batchMaxDelayMs > 0 && now - head.enqueuedAt < this.#options.batchMaxDelayMs && this.#pendingFor(head.key) < this.#batchLimit(head)) {
        if (!this.#timer) {
          this.#timer = setTimeout(() => {
            this.#timer = null;
            this.#pump();
          }, this.#options.batchMaxDelayMs - (now - head.enqueuedAt));
        }
        return;
      }
      const items = this.#take(head.key, now + this.#backlogMs(slot, now));
      if (items.length > 0) this.#dispatch(slot, head.key, items);
    }
    this.#pumpBackground();
  }

  /** Background work, only once no request waits, one item per idle worker. */
  #pumpBackground(): void {
    while (this.#pending.length === 0 && this.#background.length > 0) {
      const head = this.#background[0];
      if (!this.mayServe(head.key)) {
        const error = unavailable(head.key);
        this.#rejectBackground((item) => (item.key === head.key ? error : null));
        continue;
      }
      const slot = this.#idleSlot(head.key);
      if (!slot) return;
      this.#background.shift();
      if (performance.now() >= head.deadlineAt) head.reject(Errors.DEADLINE(head.deadlineMs));
      else this.#dispatch(slot, head.key, [head]);
    }
  }

  #rejectBackground(reasonFor: (item: PendingItem) => RankerError | null): void {
    rejectWhere(this.#background, reasonFor);
  }

  /** A worker that would take `key` now with nothing running or queued on it. */
  #idleSlot(key: string): Slot | null {
    const slot = this.#freeSlot(key);
    return slot && slot.inflight.size === 0 ? slot : null;
  }

  /** Fail and drop the queued items `reasonFor` returns an error for; the others keep their order. */
  #rejectPending(reasonFor: (item: PendingItem) => RankerError | null): void {
    this.#pendingCandidates -= rejectWhere(this.#pending, reasonFor);
  }

  /** Candidates a batch of `item`'s version may hold: BATCH_MAX_CANDIDATES, or less where its manifest says so. */
  #batchLimit(item: PendingItem): number {
    const declared = item.plan.maxBatchCandidates;
    return declared === null ? this.#options.batchMaxCandidates : Math.min(declared, this.#options.batchMaxCandidates);
  }

  #pendingFor(key: string): number {
    let n = 0;
    for (const item of this.#pending) if (item.key === key) n += item.candidates;
    return n;
  }

  /**
   * Remove and return the oldest items of `key` that fit one batch; items that would finish past their
   * deadline are rejected. `startAt`: when the batch would start (now, or after the worker's backlog).
   */
  #take(key: string, startAt: number): PendingItem[] {
    const items: PendingItem[] = [];
    const keep: PendingItem[] = [];
    let candidates = 0;
    const perCandidate = this.#msPerCandidate.get(key) ?? 0;
    let limit = Infinity;
    let full = false;
    for (const item of this.#pending) {
      if (item.key !== key || full) {
        keep.push(item);
        continue;
      }
      if (startAt + (candidates + item.candidates) * perCandidate > item.deadlineAt) {
        this.#pendingCandidates -= item.candidates;
        item.reject(Errors.DEADLINE(item.deadlineMs));
        continue;
      }
      if (items.length === 0) limit = this.#batchLimit(item);
      else if (candidates + item.candidates > limit) {
        full = true;
        keep.push(item);
        continue;
      }
      items.push(item);
      candidates += item.candidates;
      this.#pendingCandidates -= item.candidates;
    }
    this.#pending = keep;
    return items;
  }

  #dispatch(slot: Slot, key: string, items: PendingItem[]): void {
    let feeds: Feeds;
    try {
      feeds = assembleBatch(items[0].plan, items.map((i) => i.encoded));
    } catch (error) {
      for (const item of items) item.reject(Errors.INFERENCE_FAILED(key, (error as Error).message));
      return;
    }
    if (this.#options.skipInference) {
      // The benchmark's floor: batching and tensor assembly happen, session.run does not.
      for (const item of items) item.resolve(new Float32Array(item.candidates).fill(0.01));
      return;
    }
    let candidates = 0;
    for (const item of items) candidates += item.candidates;
    const batch: Batch = { id: this.#nextBatchId++, key, items, raw: null, candidates, dispatchedAt: performance.now() };
    this.#post(slot, batch, feeds);
  }

  #post(slot: Slot, batch: Batch, feeds: Feeds): void {
    slot.inflight.set(batch.id, batch);
    const transfer = Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer);
    slot.worker.postMessage({ type: 'run', id: batch.id, key: batch.key, feeds } satisfies ToWorker, transfer);
  }

  #finishBatch(batch: Batch, outputs: Record<string, Float32Array>, runMs: number): void {
    if (batch.raw) {
      batch.raw.resolve({ outputs, runMs });
      return;
    }
    const items = batch.items!;
    const output = outputs[items[0].outputName];
    if (!output || output.length !== batch.candidates) {
      this.#failBatch(batch, Errors.INFERENCE_FAILED(batch.key, `output ${items[0].outputName} has ${output?.length ?? 0} values for ${batch.candidates} candidates`));
      return;
    }
    // Per candidate, from batches large enough that a run's fixed part (0.1-1 ms) is spread thin: one
    // batch of a single candidate put it all on that candidate and raised every later estimate ~40x
    // (false 504s, and shadows judged too slow for good, since a skipped shadow never runs again).
    if (batch.candidates >= Math.min(kEstimateMinCandidates, this.#batchLimit(items[0]))) {
      const observed = runMs / batch.candidates;
      const previous = this.#msPerCandidate.get(batch.key);
      this.#msPerCandidate.set(batch.key, previous === undefined ? observed : previous * 0.8 + observed * 0.2);
    }
    let at = 0;
    for (const item of items) {
      item.resolve(output.subarray(at, at + item.candidates));
      at += item.candidates;
    }
    this.#observer.batch?.(batch.key, items.length, batch.candidates, runMs, batch.dispatchedAt - items[0].enqueuedAt);
  }

  #failBatch(batch: Batch, error: RankerError): void {
    if (batch.raw) batch.raw.reject(error);
    else for (const item of batch.items!) item.reject(error);
  }

  /**
   * Make one worker exit (operators recycling a worker; tests simulating a crash). It exits at this
   * point of its message stream: batches sent to it afterwards fail with WORKER_EXITED, and a
   * replacement reloads every model before taking work.
   */
  recycleWorker(index = 0, code = 1): Promise<void> {
    const slot = this.#slots[index];
    if (!slot) return Promise.resolve();
    return this.#exitWorker(slot, code, 5000);
  }

  /**
   * Cooperative exit, with terminate() only as a last resort after `graceMs`: terminating a worker
   * while onnxruntime is inside session.run aborts the whole process (Napi::Error in a dying env).
   */
  #exitWorker(slot: Slot, code: number, graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => void slot.worker.terminate(), graceMs);
      timer.unref();
      slot.worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      slot.worker.postMessage({ type: 'exit', code } satisfies ToWorker);
    });
  }

  /** Resolves when every worker is up and has reloaded the loaded models. */
  async whenReady(timeoutMs = 10_000): Promise<void> {
    const started = Date.now();
    while (this.#slots.length < this.#options.poolSize || this.#slots.some((s) => !s.ready)) {
      if (Date.now() - started > timeoutMs) throw Errors.OVERLOADED('inference workers did not become ready');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#deadlineTimer) clearTimeout(this.#deadlineTimer);
    for (const timer of this.#respawns) clearTimeout(timer);
    this.#respawns.clear();
    for (const timer of this.#reloadRetries) clearTimeout(timer);
    this.#reloadRetries.clear();
    for (const item of [...this.#pending, ...this.#background]) item.reject(Errors.SHUTTING_DOWN());
    this.#pending = [];
    this.#background = [];
    this.#pendingCandidates = 0;
    await Promise.all(this.#slots.map((slot) => this.#exitWorker(slot, 0, 5000)));
    this.#slots = [];
  }
}
