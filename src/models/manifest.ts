/**
 * Model package manifests: types mirror schemas/manifest.schema.json, which is the single source of
 * truth; `readManifest` validates against it once, at load time, plus the cross-field rules a JSON
 * Schema cannot state (folder name/version match, dense widths, history buckets).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv } from 'ajv';
import { Errors } from '../errors.js';
import { schemaPath } from '../paths.js';
import { readFailure, readRepositoryFile, readRepositoryText } from './repository-files.js';

export const kSurfaces = ['feed', 'stories', 'reels', 'marketplace'] as const;
export type Surface = (typeof kSurfaces)[number];
export type Objective = 'ctr' | 'cvr';
export type SymbolicDim = 'R' | 'N' | 'L' | number;

export interface DenseFeatureSpec {
  field: string;
  transform: 'standardize' | 'log1p_standardize' | 'onehot';
  mean?: number;
  std?: number;
  default?: number | string;
  values?: Array<string | number>;
}

export type InputSource =
  | { kind: 'history_id'; field: 'adId' | 'category'; salt: number; buckets: number }
  | { kind: 'history_enum'; field: 'surface' | 'event'; values: string[] }
  | { kind: 'history_length' }
  | { kind: 'candidate_id'; field: 'adId' | 'advertiserId' | 'category'; salt: number; buckets: number }
  | { kind: 'dense'; features: DenseFeatureSpec[] }
  | { kind: 'request_index' };

export interface InputSpec {
  name: string;
  dtype: 'int64' | 'float32';
  shape: SymbolicDim[];
  source: InputSource;
}

export interface Manifest {
  schemaVersion: 1;
  name: string;
  version: number;
  surface: Surface;
  objective: Objective;
  createdAt?: string;
  model: { file: 'model.onnx'; sha256: string; opset: number; bytes?: number };
  hashing: { function: 'fmix32x2-v1' };
  history: { maxLength: number; buckets: number[] };
  inputs: InputSpec[];
  outputs: Array<{ name: string; dtype: 'float32'; shape: SymbolicDim[]; semantics?: 'probability' }>;
  calibration: { method: 'identity' | 'platt'; slope?: number; intercept?: number; observedRate?: number; predictedRate?: number };
  lineage: { distillation: string; teacherVersion?: string | null; metrics?: Record<string, number | string | null>; [key: string]: unknown };
  serving?: { maxCandidatesPerBatch?: number; scoreQuantiles?: Record<string, number> };
}

const ajv = new Ajv({ allErrors: false, strict: false });
const validateSchema = ajv.compile<Manifest>(JSON.parse(readFileSync(schemaPath('manifest.schema.json'), 'utf8')));

/** Validate a parsed manifest; `where` names it in errors. Throws MANIFEST_INVALID. */
export function validateManifest(value: unknown, where: string, expected?: { name: string; version: number }): Manifest {
  if (!validateSchema(value)) {
    const first = validateSchema.errors?.[0];
    throw Errors.MANIFEST_INVALID(where, `${first?.instancePath || '/'} ${first?.message ?? 'does not match the schema'}`);
  }
  const manifest = value;
  const fail = (why: string) => Errors.MANIFEST_INVALID(where, why);
  if (expected && (manifest.name !== expected.name || manifest.version !== expected.version)) {
    throw fail(`says ${manifest.name}@${manifest.version} but lives in ${expected.name}/${expected.version}`);
  }
  const calibration = manifest.calibration;
  if (calibration.method === 'platt') {
    if (calibration.slope === undefined || calibration.intercept === undefined) throw fail('/calibration: method platt needs slope and intercept');
    // A slope of 0 serves one score for every candidate, a negative one the model's order reversed.
    if (!(calibration.slope > 0)) throw fail(`/calibration/slope must be positive, got ${calibration.slope}`);
  }
  const buckets = manifest.history.buckets;
  for (let i = 1; i < buckets.length; i++) if (buckets[i] <= buckets[i - 1]) throw fail('/history/buckets must be strictly increasing');
  if (buckets[buckets.length - 1] !== manifest.history.maxLength) throw fail('/history/buckets must end at /history/maxLength');
  const names = new Set<string>();
  for (const [i, input] of manifest.inputs.entries()) {
    const at = `/inputs/${i}`;
    if (names.has(input.name)) throw fail(`${at}/name "${input.name}" is repeated`);
    names.add(input.name);
    checkInput(input, at, fail);
  }
  return manifest;
}

function checkInput(input: InputSpec, at: string, fail: (why: string) => Error): void {
  const shape = input.shape.join(',');
  const src = input.source;
  const expectShape = (want: string, dtype: 'int64' | 'float32') => {
    if (shape !== want) throw fail(`${at}/shape must be [${want}] for source ${src.kind}, got [${shape}]`);
    if (input.dtype !== dtype) throw fail(`${at}/dtype must be ${dtype} for source ${src.kind}`);
  };
  switch (src.kind) {
    case 'history_id':
    case 'history_enum':
      return expectShape('R,L', 'int64');
    case 'history_length':
      return expectShape('R', 'int64');
    case 'candidate_id':
    case 'request_index':
      return expectShape('N', 'int64');
    case 'dense': {
      const rows = input.shape[0];
      if ((rows !== 'R' && rows !== 'N') || input.shape.length !== 2 || typeof input.shape[1] !== 'number') {
        throw fail(`${at}/shape must be [R, width] or [N, width] for dense inputs`);
      }
      if (input.dtype !== 'float32') throw fail(`${at}/dtype must be float32 for dense inputs`);
      let width = 0;
      for (const [j, feature] of src.features.entries()) {
        const fat = `${at}/source/features/${j}`;
        const candidateField = feature.field.startsWith('candidate.');
        if (rows === 'R' && candidateField) throw fail(`${fat}/field ${feature.field} cannot feed a per-user [R, ...] tensor`);
        if (rows === 'N' && !candidateField) throw fail(`${fat}/field ${feature.field} cannot feed a per-candidate [N, ...] tensor`);
        if (feature.transform === 'onehot') {
          if (!feature.values) throw fail(`${fat} onehot needs values`);
          width += feature.values.length;
        } else {
          if (feature.mean === undefined || feature.std === undefined) throw fail(`${fat} ${feature.transform} needs mean and std`);
          if (typeof feature.default === 'string') throw fail(`${fat}/default must be a number for ${feature.transform}`);
          width += 1;
        }
      }
      if (width !== input.shape[1]) throw fail(`${at}/shape width ${input.shape[1]} does not match its features (${width} columns)`);
      return;
    }
  }
}

export async function readManifest(versionDir: string, expected?: { name: string; version: number }): Promise<Manifest> {
  const file = path.join(versionDir, 'manifest.json');
  let raw: string;
  try {
    raw = await readRepositoryText(file);
  } catch (error) {
    throw Errors.MANIFEST_INVALID(file, `cannot be read (${readFailure(error)})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    throw Errors.MANIFEST_INVALID(file, `is not JSON (${(error as Error).message})`);
  }
  return validateManifest(parsed, file, expected);
}

/**
 * The model's bytes, read once and only if their sha256 matches the manifest. The workers load these
 * bytes, never the path: a file replaced after the gate (a re-publish, an rsync) cannot reach a
 * worker that is started or reloaded later.
 */
export async function readVerifiedModel(versionDir: string, manifest: Manifest, maxBytes: number): Promise<Uint8Array> {
  const file = path.join(versionDir, manifest.model.file);
  let bytes: Uint8Array;
  try {
    bytes = await readRepositoryFile(file, { maxBytes, limitName: 'MODEL_MAX_BYTES' });
  } catch (error) {
    throw Errors.LOAD_FAILED(`${manifest.name}@${manifest.version}`, `cannot read ${manifest.model.file} (${readFailure(error)})`);
  }
  if (createHash('sha256').update(bytes).digest('hex') !== manifest.model.sha256) throw Errors.CHECKSUM_MISMATCH(file);
  return bytes;
}
