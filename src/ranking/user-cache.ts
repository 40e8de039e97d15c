/**
 * User-side tensor cache: the encoded history of a user for one model version, keyed by
 * (model version, user id, history digest). Bounded by entries and TTL; hit rate goes to metrics.
 */
import { LRUCache } from 'lru-cache';
import { encodeHistory, historyDigest, type EncodedHistory } from '../features/encode.js';
import type { FeaturePlan } from '../features/plan.js';
import type { HistoryEvent, RankRequest } from '../features/request.js';

export class UserCache {
  readonly #cache: LRUCache<string, EncodedHistory> | null;
  readonly #onLookup: (hit: boolean) => void;
  // One request's history is looked up once per model it meets (ctr, cvr, shadows): digest it once.
  readonly #digests = new WeakMap<HistoryEvent[], string>();
  hits = 0;
  misses = 0;

  constructor(entries: number, ttlMs: number, onLookup: (hit: boolean) => void = () => undefined) {
    this.#cache = entries > 0 ? new LRUCache({ max: entries, ttl: ttlMs }) : null;
    this.#onLookup = onLookup;
  }

  history(plan: FeaturePlan, request: RankRequest): EncodedHistory {
    const history = request.user.history;
    // Short histories are cheaper to encode than to digest and look up.
    if (!this.#cache || !plan.usesHistory || !history || history.length < 16) return encodeHistory(plan, history);
    let digest = this.#digests.get(history);
    if (digest === undefined) {
      digest = historyDigest(history);
      this.#digests.set(history, digest);
    }
    const key = `${plan.modelKey}|${request.user.id}|${digest}`;
    const cached = this.#cache.get(key);
    this.#onLookup(cached !== undefined);
    if (cached) {
      this.hits++;
      return cached;
    }
    this.misses++;
    const encoded = encodeHistory(plan, history);
    this.#cache.set(key, encoded);
    return encoded;
  }

  /** Drop every entry of a model version that left memory (its entries could never hit again). */
  purge(modelKey: string): number {
    if (!this.#cache) return 0;
    const prefix = `${modelKey}|`;
    let dropped = 0;
    for (const key of [...this.#cache.keys()]) {
      if (key.startsWith(prefix)) {
        this.#cache.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  get size(): number {
    return this.#cache?.size ?? 0;
  }
}
