/**
 * Request JSON -> per-request typed arrays (encode*) -> one batch of ONNX feeds (assembleBatch).
 * Encoding happens once per request and model; assembling concatenates the encoded parts of every
 * request in a micro-batch, so cross-request batching costs copies, not re-encoding.
 */
import { Errors, pointerToken } from '../errors.js';
import { fmix32, hashId } from './id-hash.js';
import { bucketFor, type DenseInputPlan, type FeaturePlan } from './plan.js';
import { fitsFloat32, type Candidate, type FeatureMap, type HistoryEvent, type RankRequest } from './request.js';

export interface EncodedHistory {
  /** Events kept (newest `maxHistory`, chronological). */
  length: number;
  /** Events dropped because the history was longer than the model's maxLength. */
  truncated: number;
  /** One array per plan.history entry, `length` values each. */
  columns: Int32Array[];
}

export interface EncodedUser {
  history: EncodedHistory;
  dense: Float32Array[];
}

export interface EncodedCandidates {
  count: number;
  ids: Int32Array[];
  dense: Float32Array[];
}

export interface EncodedRequest {
  user: EncodedUser;
  candidates: EncodedCandidates;
}

export type FeedTensor =
  | { type: 'int64'; dims: number[]; data: BigInt64Array }
  | { type: 'float32'; dims: number[]; data: Float32Array };

export type Feeds = Record<string, FeedTensor>;

export function encodeHistory(plan: FeaturePlan, history: HistoryEvent[] | undefined): EncodedHistory {
  const events = history ?? [];
  const length = Math.min(events.length, plan.maxHistory);
  const start = events.length - length;
  const columns: Int32Array[] = [];
  for (const input of plan.history) {
    const column = new Int32Array(length);
    if (input.kind === 'id') {
      const field = input.field as 'adId' | 'category';
      for (let i = 0; i < length; i++) {
        const id = events[start + i][field];
        column[i] = id === undefined ? 0 : hashId(id, input.salt, input.buckets);
      }
    } else {
      const field = input.field as 'surface' | 'event';
      const index = input.enumIndex!;
      for (let i = 0; i < length; i++) column[i] = index.get(events[start + i][field]) ?? 0;
    }
    columns.push(column);
  }
  return { length, truncated: events.length - length, columns };
}

/** Where a dense column reads from, as a JSON pointer; built only for an error message. */
function featurePointer(column: DenseInputPlan['columns'][number], candidateIndex: number): string {
  const key = pointerToken(column.key);
  if (column.origin === 'user') return `/user/features/${key}`;
  if (column.origin === 'context') return `/context/${key}`;
  if (column.origin === 'bid') return `/candidates/${candidateIndex}/bid`;
  return `/candidates/${candidateIndex}/features/${key}`;
}

/**
 * Fill one row of a dense input. `candidateIndex` locates `candidate` in the request for error
 * messages only: pointers are not built per value, because on 500 candidates that string building
 * was most of this function's allocation.
 */
function fillDense(
  target: Float32Array,
  base: number,
  plan: DenseInputPlan,
  userFeatures: FeatureMap | undefined,
  context: FeatureMap | undefined,
  candidate: Candidate | null,
  candidateIndex: number,
): void {
  for (const column of plan.columns) {
    const map = column.origin === 'user' ? userFeatures : column.origin === 'context' ? context : candidate?.features;
    // The bid is a field of the candidate, not of its feature map (a onehot read features.bid once).
    const value = column.origin === 'bid' ? candidate!.bid : map?.[column.key];
    if (column.onehot) {
      if (value !== undefined) {
        const hit = column.onehot.get(value);
        if (hit !== undefined) target[base + column.offset + hit] = 1;
        else if (column.onehotType !== null && typeof value !== column.onehotType) {
          throw Errors.BAD_REQUEST(featurePointer(column, candidateIndex), `must be a ${column.onehotType} for this model, got a ${typeof value}`);
        }
      }
      continue;
    }
    let raw: number;
    if (value === undefined) raw = column.fallback;
    else if (typeof value === 'number') raw = value;
    else throw Errors.BAD_REQUEST(featurePointer(column, candidateIndex), `must be a number for this model, got a ${typeof value}`);
    const x = column.transform === 'log1p_standardize' ? Math.log1p(Math.max(raw, 0)) : raw;
    const standardized = (x - column.mean) / column.std;
    // A value that does not fit float32 once standardized becomes Infinity in the tensor and NaN in
    // the scores, which would fail the request as the model's fault (and count against a canary).
    if (!fitsFloat32(standardized)) {
      throw Errors.BAD_REQUEST(featurePointer(column, candidateIndex), `${raw} is out of range for this model (standardized it does not fit float32)`);
    }
    target[base + column.offset] = standardized;
  }
}

export function encodeUserDense(plan: FeaturePlan, request: RankRequest): Float32Array[] {
  return plan.userDense.map((input) => {
    const row = new Float32Array(input.width);
    fillDense(row, 0, input, request.user.features, request.context, null, -1);
    return row;
  });
}

/**
 * `positions[i]` is where candidate i sits in the client's request, when `request` is a subset of it
 * (the cvr model scores the cpa candidates only), so that an error points at the client's candidate.
 */
export function encodeCandidates(plan: FeaturePlan, request: RankRequest, positions?: readonly number[]): EncodedCandidates {
  const candidates = request.candidates;
  const count = candidates.length;
  const ids = plan.candidateIds.map((input) => {
    const column = new Int32Array(count);
    const field = input.field;
    for (let i = 0; i < count; i++) column[i] = hashId(candidates[i][field], input.salt, input.buckets);
    return column;
  });
  const dense = plan.candidateDense.map((input) => {
    const block = new Float32Array(count * input.width);
    for (let i = 0; i < count; i++) fillDense(block, i * input.width, input, undefined, undefined, candidates[i], positions ? positions[i] : i);
    return block;
  });
  return { count, ids, dense };
}

/** Encode one request for one model, without the user cache (gate, shadow scoring, benchmarks). */
export function encodeRequest(plan: FeaturePlan, request: RankRequest): EncodedRequest {
  return {
    user: { history: encodeHistory(plan, request.user.history), dense: encodeUserDense(plan, request) },
    candidates: encodeCandidates(plan, request),
  };
}

function int64(length: number): { data: BigInt64Array; words: Int32Array } {
  const data = new BigInt64Array(length);
  // Every value we write is a non-negative int32, so writing the low word of each little-endian
  // int64 through an Int32Array view avoids a BigInt per element.
  return { data, words: new Int32Array(data.buffer) };
}

/** Concatenate encoded requests into one batch: R = requests.length user rows, N = all candidates. */
export function assembleBatch(plan: FeaturePlan, requests: EncodedRequest[]): Feeds {
  const rows = requests.length;
  let total = 0;
  let longest = 0;
  for (const r of requests) {
    total += r.candidates.count;
    if (r.user.history.length > longest) longest = r.user.history.length;
  }
  const width = plan.usesHistory ? bucketFor(plan, longest) : 0;
  const feeds: Feeds = {};

  plan.history.forEach((input, k) => {
    const { data, words } = int64(rows * width);
    requests.forEach((r, row) => {
      const column = r.user.history.columns[k];
      const base = row * width * 2;
      for (let i = 0; i < column.length; i++) words[base + 2 * i] = column[i];
    });
    feeds[input.name] = { type: 'int64', dims: [rows, width], data };
  });
  if (plan.historyLengthInput) {
    const { data, words } = int64(rows);
    requests.forEach((r, row) => (words[2 * row] = r.user.history.length));
    feeds[plan.historyLengthInput] = { type: 'int64', dims: [rows], data };
  }
  plan.userDense.forEach((input, k) => {
    const data = new Float32Array(rows * input.width);
    requests.forEach((r, row) => data.set(r.user.dense[k], row * input.width));
    feeds[input.name] = { type: 'float32', dims: [rows, input.width], data };
  });
  plan.candidateIds.forEach((input, k) => {
    const { data, words } = int64(total);
    let at = 0;
    for (const r of requests) {
      const column = r.candidates.ids[k];
      for (let i = 0; i < column.length; i++) words[2 * (at + i)] = column[i];
      at += column.length;
    }
    feeds[input.name] = { type: 'int64', dims: [total], data };
  });
  plan.candidateDense.forEach((input, k) => {
    const data = new Float32Array(total * input.width);
    let at = 0;
    for (const r of requests) {
      data.set(r.candidates.dense[k], at * input.width);
      at += r.candidates.count;
    }
    feeds[input.name] = { type: 'float32', dims: [total, input.width], data };
  });
  if (plan.requestIndexInput) {
    const { data, words } = int64(total);
    let at = 0;
    requests.forEach((r, row) => {
      for (let i = 0; i < r.candidates.count; i++) words[2 * (at + i)] = row;
      at += r.candidates.count;
    });
    feeds[plan.requestIndexInput] = { type: 'int64', dims: [total], data };
  }
  return feeds;
}

const kTwo32 = 4294967296;

// The digest's two 32-bit lanes, as module state: historyDigest runs to completion synchronously.
let laneA = 0;
let laneB = 0;

/** One 32-bit word into both lanes (murmur3's block step in one, FNV-1a's in the other). */
function absorb(word: number): void {
  let k = Math.imul(word, 0xcc9e2d51);
  k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
  const h = laneA ^ k;
  laneA = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
  laneB = Math.imul(laneB ^ word, 0x01000193);
}

function absorbId(id: number): void {
  const low = id % kTwo32;
  absorb(low | 0);
  absorb(((id - low) / kTwo32) | 0);
}

// Surface and event names are a handful of short strings repeated in every event; giving each a
// number once costs a map lookup per field instead of hashing its characters (8 vs 18 us on a
// 256-event history). The numbering is never evicted, only capped, so a string is always absorbed
// the same way within one process (the only scope of the cache).
const kMaxInternedNames = 4096;
const internedNames = new Map<string, number>();

function absorbName(text: string): void {
  let id = internedNames.get(text);
  if (id === undefined && internedNames.size < kMaxInternedNames) {
    id = internedNames.size + 1;
    internedNames.set(text, id);
  }
  if (id !== undefined) {
    absorb(id);
    return;
  }
  absorb(0);
  absorb(text.length);
  for (let i = 0; i < text.length; i++) absorb(text.charCodeAt(i));
}

/**
 * The user cache's key for a history: 64 bits over every field the encoder reads (adId, category,
 * surface, event) of every event, plus the count. `ts` is left out because no tensor depends on it.
 * An earlier digest read only the ends and the middle of the history, so two histories differing
 * elsewhere shared an entry and one was scored on the other's tensors (DESIGN-NOTES 27).
 */
export function historyDigest(history: HistoryEvent[] | undefined): string {
  if (!history || history.length === 0) return '0';
  laneA = 0x9747b28c | 0;
  laneB = 0x811c9dc5 | 0;
  absorb(history.length);
  for (let i = 0; i < history.length; i++) {
    const event = history[i];
    absorbId(event.adId);
    if (event.category === undefined) absorb(0);
    else {
      absorb(1);
      absorbId(event.category);
    }
    absorbName(event.surface);
    absorbName(event.event);
  }
  return `${history.length}:${fmix32(laneA).toString(36)}:${fmix32(laneB).toString(36)}`;
}
