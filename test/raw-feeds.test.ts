/** Raw OIP tensors against a manifest, without HTTP; the route's 400s are in rank-api.test.ts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { feedsFromRawInputs, requireFiniteOutputs } from '../src/models/raw-feeds.js';
import { fixtureManifest } from './helpers/fixture-repo.js';

const manifest = fixtureManifest('feed-ctr', 1, 'feed', 'ctr', '0'.repeat(64));

test('outputs with NaN or Infinity fail as INFERENCE_FAILED, naming the output and the index', () => {
  assert.doesNotThrow(() => requireFiniteOutputs('feed-ctr@1', { p: Float32Array.from([0.1, 0.9]) }));
  for (const bad of [NaN, Infinity, -Infinity]) {
    assert.throws(
      () => requireFiniteOutputs('feed-ctr@1', { p: Float32Array.from([0.1, bad, 0.3]) }),
      (error: { code?: string; message?: string }) => error.code === 'INFERENCE_FAILED' && /output p\[1\] is/.test(error.message ?? ''),
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
  const feeds = feedsFromRawInputs(manifest, inputs);
  assert.deepEqual(Object.keys(feeds).sort(), manifest.inputs.map((i) => i.name).sort());
  const adId = feeds['ad_id'];
  assert.equal(adId.type, 'int64');
  assert.deepEqual(adId.dims, [3]);
  assert.ok(adId.data instanceof BigInt64Array && adId.data[0] === 5002n);
  assert.ok(feeds['ad_dense'].data instanceof Float32Array && Number.isFinite(feeds['ad_dense'].data[0]));
  // Missing one input is named.
  assert.throws(() => feedsFromRawInputs(manifest, inputs.slice(1)), new RegExp(`input "${inputs[0].name}" is missing`));
});
