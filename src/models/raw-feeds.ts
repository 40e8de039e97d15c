/**
 * Raw tensors from an OIP v2 infer body, checked against the version's manifest before they reach
 * ONNX Runtime. The runtime reports a wrong dimension or an index outside an embedding table as a
 * failed run, which the route would answer 500 (and log at error level) although the caller sent
 * it; a float beyond float32's range becomes Infinity and comes back as NaN scores. Every such
 * input is a 400 here, with the JSON path of the offending part. The checks follow the manifest
 * contract (docs/CONTRACTS.md): hashed ids in [0, buckets) with 0 the padding, enum indices in
 * [0, values] with 0 the padding, history lengths in [0, L], request indices in [0, R).
 */
import { Errors } from '../errors.js';
import type { Feeds } from '../features/encode.js';
import { fitsFloat32 } from '../features/request.js';
import type { InputSpec, Manifest } from './manifest.js';

export interface RawInput {
  name: string;
  datatype: 'INT64' | 'FP32';
  shape: number[];
  data: number[];
}

export const kOipTypes: Record<InputSpec['dtype'], 'INT64' | 'FP32'> = { int64: 'INT64', float32: 'FP32' };

/** The inclusive range of an int64 input's values, from its source; null where any int is allowed. */
function valueRange(spec: InputSpec, sizes: Map<string, { size: number; at: string }>): [number, number] | null {
  const source = spec.source;
  switch (source.kind) {
    case 'history_id':
    case 'candidate_id':
      return [0, source.buckets - 1];
    case 'history_enum':
      return [0, source.values.length];
    case 'history_length':
      return [0, sizes.get('L')?.size ?? 0];
    case 'request_index':
      return [0, (sizes.get('R')?.size ?? 0) - 1];
    default:
      return null;
  }
}

/**
 * Largest symbolic dimensions a raw call may ask for: the ranking API's own limits. A raw call runs as
 * one batch outside the queue's bounds, so N = 20,000 candidates held a worker for a run ten times
 * /v1/rank's largest, and L beyond the longest history the model was built for is not a model input.
 */
export interface RawLimits {
  maxCandidates: number;
}

export function feedsFromRawInputs(manifest: Manifest, inputs: RawInput[], limits: RawLimits): Feeds {
  const maxSize: Record<string, [number, string]> = {
    N: [limits.maxCandidates, `MAX_CANDIDATES (${limits.maxCandidates})`],
    R: [limits.maxCandidates, `MAX_CANDIDATES (${limits.maxCandidates})`],
    L: [manifest.history.maxLength, `the model's longest history (${manifest.history.maxLength})`],
  };
  const specs = new Map(manifest.inputs.map((spec) => [spec.name, spec]));
  const seen = new Map<string, number>();
  // Symbolic dimensions (R users, N candidates, L history slots) must agree across inputs: each
  // one's size, and the shape entry that set it.
  const sizes = new Map<string, { size: number; at: string }>();
  for (const [i, input] of inputs.entries()) {
    const spec = specs.get(input.name);
    if (!spec) throw Errors.BAD_REQUEST(`/inputs/${i}/name`, `model has no input "${input.name}"`);
    if (seen.has(input.name)) throw Errors.BAD_REQUEST(`/inputs/${i}/name`, `input "${input.name}" is also /inputs/${seen.get(input.name)}`);
    seen.set(input.name, i);
    if (kOipTypes[spec.dtype] !== input.datatype) throw Errors.BAD_REQUEST(`/inputs/${i}/datatype`, `must be ${kOipTypes[spec.dtype]}`);
    if (input.shape.length !== spec.shape.length) throw Errors.BAD_REQUEST(`/inputs/${i}/shape`, `must have ${spec.shape.length} dimensions, [${spec.shape}]`);
    for (const [d, want] of spec.shape.entries()) {
      const got = input.shape[d];
      if (typeof want === 'number') {
        if (got !== want) throw Errors.BAD_REQUEST(`/inputs/${i}/shape/${d}`, `must be ${want}, got ${got}`);
        continue;
      }
      if (got < 1) throw Errors.BAD_REQUEST(`/inputs/${i}/shape/${d}`, `${want} must be at least 1`);
      const most = maxSize[want];
      if (most && got > most[0]) throw Errors.BAD_REQUEST(`/inputs/${i}/shape/${d}`, `${want} is ${got}, above ${most[1]}`);
      const bound = sizes.get(want);
      if (bound === undefined) sizes.set(want, { size: got, at: `/inputs/${i}/shape/${d}` });
      else if (bound.size !== got) throw Errors.BAD_REQUEST(`/inputs/${i}/shape/${d}`, `${want} is ${got} here but ${bound.size} at ${bound.at}`);
    }
    const size = input.shape.reduce((a, b) => a * b, 1);
    if (size !== input.data.length) throw Errors.BAD_REQUEST(`/inputs/${i}/data`, `has ${input.data.length} values for shape [${input.shape}]`);
  }
  for (const name of specs.keys()) if (!seen.has(name)) throw Errors.BAD_REQUEST('/inputs', `input "${name}" is missing`);

  const feeds: Feeds = {};
  for (const [i, input] of inputs.entries()) {
    const spec = specs.get(input.name)!;
    if (spec.dtype === 'int64') {
      const range = valueRange(spec, sizes);
      const data = new BigInt64Array(input.data.length);
      for (let k = 0; k < input.data.length; k++) {
        const v = input.data[k];
        if (!Number.isSafeInteger(v)) throw Errors.BAD_REQUEST(`/inputs/${i}/data/${k}`, 'INT64 data must be integers');
        if (range && (v < range[0] || v > range[1])) {
          throw Errors.BAD_REQUEST(`/inputs/${i}/data/${k}`, `${v} is outside [${range[0]}, ${range[1]}] for ${spec.source.kind} input "${spec.name}"`);
        }
        data[k] = BigInt(v);
      }
      feeds[input.name] = { type: 'int64', dims: input.shape, data };
    } else {
      const data = new Float32Array(input.data.length);
      for (let k = 0; k < input.data.length; k++) {
        const v = input.data[k];
        if (!fitsFloat32(v)) throw Errors.BAD_REQUEST(`/inputs/${i}/data/${k}`, `${v} does not fit float32`);
        data[k] = v;
      }
      feeds[input.name] = { type: 'float32', dims: input.shape, data };
    }
  }
  return feeds;
}

/**
 * Fails when an output holds NaN or Infinity. The inputs are finite float32 by then, so such a value
 * is the model's, and JSON would print it as null in an answer that promises numbers.
 */
export function requireFiniteOutputs(key: string, outputs: Record<string, Float32Array>): void {
  for (const [name, data] of Object.entries(outputs)) {
    const bad = data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw Errors.INFERENCE_FAILED(key, `output ${name}[${bad}] is ${data[bad]}`);
  }
}
