/** Raw OIP tensors against a manifest, without HTTP; the route's 400s are in rank-api.test.ts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { feedsFromRawInputs, requireFiniteOutputs } from '../src/models/raw-feeds.js';
import { fixtureManifest } from './helpers/fixture-repo.js';

const manifest = fixtureManifest('feed-ctr', 1, 'feed', 'ctr', '0'.repeat(64));
const kLimits = { maxCandidates: 2000 };

test('outputs with NaN or Infinity fail as INFERENCE_FAILED, naming the output and the index', () => {
  assert.doesNotThrow(() => requireFiniteOutputs('feed-ctr@1', { p: Float32Array.from([0.1, 0.9]) }));
  for (const bad of [NaN, Infinity, -Infinity]) {
    assert.throws(
      () => requireFiniteOutputs('feed-ctr@1', { p: Float32Array.from([0.1, bad, 0.3]) }),
      (error: { code?: string; message?: string }) => error.code === 'INFERENCE_FAILED' && /output p\[1\] is/.test(error.message ?? ''),
    );
  }
});

function rawInputs(sizes: Record<string, number>) {
  return manifest.inputs.map((spec) => {
    const shape = spec.shape.map((d) => (typeof d === 'number' ? d : sizes[d]));
    return { name: spec.name, datatype: spec.dtype === 'int64' ? ('INT64' as const) : ('FP32' as const), shape, data: new Array<number>(shape.reduce((a, b) => a * b, 1)).fill(0) };
  });
}

// A raw call is one batch outside the queue's bounds: N = 20,000 held a worker for a run ten times
// /v1/rank's largest, and an L past the model's longest history reached ONNX Runtime.
test('raw calls are held to MAX_CANDIDATES and to the model history length', () => {
  const L = manifest.history.maxLength;
  assert.doesNotThrow(() => feedsFromRawInputs(manifest, rawInputs({ R: 1, N: 2000, L }), kLimits));
  for (const [sizes, dim, why] of [
    [{ R: 1, N: 2001, L }, 'N', /N is 2001, above MAX_CANDIDATES \(2000\)/],
    [{ R: 2001, N: 10, L }, 'R', /R is 2001, above MAX_CANDIDATES/],
    [{ R: 1, N: 10, L: L + 1 }, 'L', new RegExp(`L is ${L + 1}, above the model's longest history \\(${L}\\)`)],
  ] as const) {
    const inputs = rawInputs(sizes);
    const at = inputs.findIndex((input) => manifest.inputs.find((spec) => spec.name === input.name)!.shape.includes(dim));
    assert.throws(
      () => feedsFromRawInputs(manifest, inputs, kLimits),
      (error: { code?: string; message?: string }) => error.code === 'RANK_BAD_REQUEST' && why.test(error.message ?? '') && (error.message ?? '').startsWith(`/inputs/${at}/shape/`),
    );
  }
});

test('valid raw inputs become typed feeds with the given dims; the largest values allowed pass', () => {
  const inputs = manifest.inputs.map((spec) => {
    const shape = spec.shape.map((d) => (d === 'R' ? 1 : d === 'N' ? 3 : d === 'L' ? 4 : d));
    const size = shape.reduce((a, b) => a * b, 1);
    let value = 0;
    if (spec.source.kind === 'history_id' || spec.source.kind === 'candidate_id') value = spec.source.buckets - 1;
    else if (spec.source.kind === 'history_enum') value = spec.source.values.length;
    else if (spec.source.kind === 'history_length') value = 4;
    else if (spec.source.kind === 'dense') value = -3.4028234663852886e38;
    return { name: spec.name, datatype: spec.dtype === 'int64' ? ('INT64' as const) : ('FP32' as const), shape, data: Array.from({ length: size }, () => value) };
  });
  const feeds = feedsFromRawInputs(manifest, inputs, kLimits);
  assert.deepEqual(Object.keys(feeds).sort(), manifest.inputs.map((i) => i.name).sort());
  const adId = feeds['ad_id'];
  assert.equal(adId.type, 'int64');
  assert.deepEqual(adId.dims, [3]);
  assert.ok(adId.data instanceof BigInt64Array && adId.data[0] === 5002n);
  assert.ok(feeds['ad_dense'].data instanceof Float32Array && Number.isFinite(feeds['ad_dense'].data[0]));
  // Missing one input is named.
  assert.throws(() => feedsFromRawInputs(manifest, inputs.slice(1), kLimits), new RegExp(`input "${inputs[0].name}" is missing`));
});
