/**
 * The inference pool facade (main thread): spawns workers, loads every model version into every
 * worker, and schedules scoring. Requests for the same model version that wait while workers are busy
 * are micro-batched into one session.run (cross-request batching): the batch grows with the load, so
 * at low load a request runs alone with no added delay. The queue is bounded in candidates, and each
 * item's deadline is checked before it is dispatched.
 */
import { Worker } from 'node:worker_threads';
import type { Config, ExecutionProvider } from '../config.js';
import { Errors, type RankerError } from '../errors.js';
import { assembleBatch, type EncodedRequest, type Feeds } from '../features/encode.js';
import type { FeaturePlan } from '../features/plan.js';
import type { FromWorker, TensorInfo, ToWorker } from './protocol.js';

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
  loading: number;
  inflight: Map<number, Batch>;
  waiters: Map<string, { resolve(message: FromWorker): void; reject(error: Error): void }>;
}

const kWorkerUrl = new URL('./worker.js', import.meta.url);

export class InferencePool {
  readonly #options: PoolOptions;
  readonly #observer: PoolObserver;
  #slots: Slot[] = [];
  #pending: PendingItem[] = [];
  #pendingCandidates = 0;
  #loaded = new Map<string, string>();
  #msPerCandidate = new Map<string, number>();
  #nextBatchId = 1;
  #nextWorkerId = 1;
  #timer: NodeJS.Timeout | null = null;
  #closing = false;

  constructor(options: PoolOptions, observer: PoolObserver = {}) {
    this.#options = options;
    this.#observer = observer;
  }

  async start(): Promise<void> {
    await Promise.all(Array.from({ length: this.#options.poolSize }, () => this.#spawn()));
  }

  get size(): number {
    return this.#slots.length;
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
    const slot: Slot = {
      id: this.#nextWorkerId++,
      worker: new Worker(kWorkerUrl),
      ready: false,
      loading: 0,
      inflight: new Map(),
      waiters: new Map(),
    };
    this.#slots.push(slot);
    return new Promise((resolve, reject) => {
      slot.worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          void this.#reloadInto(slot).then(() => {
            slot.ready = true;
            resolve(slot);
            this.#pump();
          }, reject);
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

  async #reloadInto(slot: Slot): Promise<void> {
    for (const [key, file] of this.#loaded) await this.#loadInto(slot, key, file);
  }

  #onExit(slot: Slot, code: number, rejectStart: (e: Error) => void): void {
    this.#slots = this.#slots.filter((s) => s !== slot);
    const error = Errors.WORKER_EXITED(slot.id, code);
    for (const batch of slot.inflight.values()) this.#failBatch(batch, error);
    slot.inflight.clear();
    for (const waiter of slot.waiters.values()) waiter.reject(error);
    slot.waiters.clear();
    rejectStart(error);
    if (this.#closing) return;
    this.#observer.workerExit?.(slot.id, code);
    // Replace the worker; it reloads every loaded model version before it takes work.
    this.#spawn().catch(() => undefined);
  }

  #onMessage(slot: Slot, message: FromWorker): void {
    switch (message.type) {
      case 'loaded':
      case 'load-failed':
      case 'unloaded': {
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
      slot.waiters.set(waiterKey, { resolve, reject });
      slot.worker.postMessage(message);
    });
  }

  async #loadInto(slot: Slot, key: string, file: string): Promise<LoadInfo> {
    slot.loading++;
    try {
      const reply = await this.#request(slot, `load:${key}`, {
        type: 'load',
        key,
        file,
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
   * failure the version is unloaded from the workers that had it.
   */
  async load(key: string, file: string): Promise<LoadInfo> {
    if (this.#closing) throw Errors.SHUTTING_DOWN();
    let info: LoadInfo | null = null;
    const done: Slot[] = [];
    try {
      for (const slot of [...this.#slots]) {
        if (!slot.ready) continue;
        info = await this.#loadInto(slot, key, file);
        done.push(slot);
      }
    } catch (error) {
      await Promise.all(done.map((slot) => this.#request(slot, `unload:${key}`, { type: 'unload', key }).catch(() => undefined)));
      throw error;
    }
    if (!info) throw Errors.LOAD_FAILED(key, 'no inference worker is running');
    this.#loaded.set(key, file);
    if (info.fallbacks.length > 0) this.#observer.fallback?.(key, info);
    return info;
  }

  async unload(key: string): Promise<void> {
    this.#loaded.delete(key);
    await Promise.all(this.#slots.map((slot) => this.#request(slot, `unload:${key}`, { type: 'unload', key }).catch(() => undefined)));
  }

  isLoaded(key: string): boolean {
    return this.#loaded.has(key);
  }

  /** Expected wait before `candidates` more candidates for `key` would finish, from recent batches. */
  estimateMs(key: string, candidates: number): number {
    const perCandidate = this.#msPerCandidate.get(key) ?? 0.002;
    const workers = Math.max(1, this.#slots.length);
    return ((this.#pendingCandidates + candidates) * perCandidate) / workers + candidates * perCandidate;
  }

  /** Score one encoded request; resolves with its slice of the model output `outputName`. */
  score(key: string, plan: FeaturePlan, encoded: EncodedRequest, outputName: string, deadlineAt: number): Promise<Float32Array> {
    if (this.#closing) return Promise.reject(Errors.SHUTTING_DOWN());
    const candidates = encoded.candidates.count;
    if (this.#pendingCandidates + candidates > this.#options.maxQueuedCandidates) {
      return Promise.reject(Errors.OVERLOADED(`${this.#pendingCandidates} candidates queued`));
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ key, plan, encoded, candidates, outputName, enqueuedAt: performance.now(), deadlineAt, resolve, reject });
      this.#pendingCandidates += candidates;
      this.#pump();
    });
  }

  /** Run prebuilt feeds as one batch of their own (validation gate, raw tensor inference, benchmarks). */
  runFeeds(key: string, feeds: Feeds): Promise<RawResult> {
    if (this.#closing) return Promise.reject(Errors.SHUTTING_DOWN());
    return new Promise((resolve, reject) => {
      const slot = this.#freeSlot() ?? this.#leastBusySlot();
      if (!slot) {
        reject(Errors.OVERLOADED('no inference worker is running'));
        return;
      }
      const batch: Batch = { id: this.#nextBatchId++, key, items: null, raw: { resolve, reject }, candidates: 0, dispatchedAt: performance.now() };
      this.#post(slot, batch, feeds);
    });
  }

  #freeSlot(): Slot | null {
    let best: Slot | null = null;
    for (const slot of this.#slots) {
      if (!slot.ready || slot.loading > 0 || slot.inflight.size >= this.#options.workerQueueDepth) continue;
      if (!best || slot.inflight.size < best.inflight.size) best = slot;
    }
    return best;
  }

  #leastBusySlot(): Slot | null {
    let best: Slot | null = null;
    for (const slot of this.#slots) if (slot.ready && (!best || slot.inflight.size < best.inflight.size)) best = slot;
    return best;
  }

  #pump(): void {
    while (this.#pending.length > 0) {
      const slot = this.#freeSlot();
      if (!slot) return;
      const head = this.#pending[0];
      const now = performance.now();
      if (this.#options.batchMaxDelayMs > 0 && now - head.enqueuedAt < this.#options.batchMaxDelayMs && this.#pendingFor(head.key) < this.#options.batchMaxCandidates) {
        if (!this.#timer) {
          this.#timer = setTimeout(() => {
            this.#timer = null;
            this.#pump();
          }, this.#options.batchMaxDelayMs - (now - head.enqueuedAt));
        }
        return;
      }
      const items = this.#take(head.key, now);
      if (items.length > 0) this.#dispatch(slot, head.key, items);
    }
  }

  #pendingFor(key: string): number {
    let n = 0;
    for (const item of this.#pending) if (item.key === key) n += item.candidates;
    return n;
  }

  /** Remove and return the oldest items of `key` that fit one batch; items past their deadline are rejected. */
  #take(key: string, now: number): PendingItem[] {
    const items: PendingItem[] = [];
    const keep: PendingItem[] = [];
    let candidates = 0;
    const perCandidate = this.#msPerCandidate.get(key) ?? 0;
    let full = false;
    for (const item of this.#pending) {
      if (item.key !== key || full) {
        keep.push(item);
        continue;
      }
      if (now + (candidates + item.candidates) * perCandidate > item.deadlineAt) {
        this.#pendingCandidates -= item.candidates;
        item.reject(Errors.DEADLINE(Math.round(item.deadlineAt - item.enqueuedAt)));
        continue;
      }
      if (items.length > 0 && candidates + item.candidates > this.#options.batchMaxCandidates) {
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
    if (batch.candidates > 0) {
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
    for (const item of this.#pending) item.reject(Errors.SHUTTING_DOWN());
    this.#pending = [];
    this.#pendingCandidates = 0;
    await Promise.all(this.#slots.map((slot) => this.#exitWorker(slot, 0, 5000)));
    this.#slots = [];
  }
}
