import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { hashId, hashString, kHashFunctionName } from '../src/features/id-hash.js';

interface Vectors {
  function: string;
  ids: Array<{ id: number; salt: number; buckets: number; index: number }>;
  strings: Array<{ text: string; hash: number }>;
}

const vectors = JSON.parse(readFileSync(new URL('../../schemas/hash-vectors.json', import.meta.url), 'utf8')) as Vectors;

test('hash vectors name the function the TS code implements', () => {
  assert.equal(vectors.function, kHashFunctionName);
  assert.ok(vectors.ids.length > 0);
});

test('hashId matches every vector in schemas/hash-vectors.json', () => {
  for (const v of vectors.ids) {
    assert.equal(hashId(v.id, v.salt, v.buckets), v.index, `hashId(${v.id}, ${v.salt}, ${v.buckets})`);
  }
});

test('hashString matches every string vector', () => {
  for (const v of vectors.strings) assert.equal(hashString(v.text), v.hash, `hashString(${JSON.stringify(v.text)})`);
});

test('hashId stays in 1..buckets-1 for world-sized ids, padding 0 never produced', () => {
  for (const id of [0, 1, 1_000_000, 10_000_000_000, 10_000_019_999, 2 ** 53 - 1]) {
    for (const buckets of [2, 3, 1000, 1 << 20]) {
      const h = hashId(id, 12345, buckets);
      assert.ok(Number.isInteger(h) && h >= 1 && h <= buckets - 1, `${id} ${buckets} -> ${h}`);
    }
  }
});
