/**
 * The one id-hashing function shared by the server, the world simulator and the pipeline
 * (pipeline/gemlite/hashing.py is its twin; test/id-hash.test.ts and the pipeline's tests check
 * both against the same vectors in schemas/hash-vectors.json).
 *
 * Ids are non-negative integers <= 2^53-1, so they fit a double exactly. They are split into
 * 32-bit halves and mixed with murmur3's fmix32, which needs only 32-bit integer arithmetic
 * (Math.imul here, uint32 in numpy): no BigInt on the hot path. Index 0 is reserved for
 * padding / missing values, so real ids land in 1..buckets-1.
 */
export const kHashFunctionName = 'fmix32x2-v1';

const kTwo32 = 4294967296;

/** murmur3's 32-bit finalizer; also the world simulator's seed mixer. */
export function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hash one id into 1..buckets-1 (buckets >= 2). */
export function hashId(id: number, salt: number, buckets: number): number {
  const low = id % kTwo32;
  const high = (id - low) / kTwo32;
  let h = fmix32((low ^ salt) >>> 0);
  h = fmix32((h ^ Math.imul((high ^ 0x9e3779b9) >>> 0, 0x85ebca6b)) >>> 0);
  return 1 + (h % (buckets - 1));
}

/** Deterministic 32-bit hash of a string (FNV-1a then fmix32); used for string-valued features and bucketing salts. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}
