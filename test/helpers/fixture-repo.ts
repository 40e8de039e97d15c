/** Builds throwaway model repositories from the committed ONNX fixtures (test/fixtures/onnx). */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/paths.js';
import type { Manifest, Objective, Surface } from '../../src/models/manifest.js';
import type { Rollout } from '../../src/models/rollout.js';

export const fixtureDir = path.join(projectRoot, 'test', 'fixtures', 'onnx');
export type Variant = 'v1' | 'v2' | 'nan' | 'nan-bucket' | 'shifted' | 'slow' | 'wrong-inputs';

export interface VersionSpec {
  name: string;
  version: number;
  variant?: Variant;
  surface?: Surface;
  objective?: Objective;
}

export function fixtureManifest(name: string, version: number, surface: Surface, objective: Objective, sha256: string): Manifest {
  return {
    schemaVersion: 1,
    name,
    version,
    surface,
    objective,
    model: { file: 'model.onnx', sha256, opset: 17 },
    hashing: { function: 'fmix32x2-v1' },
    history: { maxLength: 256, buckets: [16, 64, 256] },
    inputs: [
      { name: 'hist_ids', dtype: 'int64', shape: ['R', 'L'], source: { kind: 'history_id', field: 'adId', salt: 11, buckets: 5003 } },
      { name: 'hist_category', dtype: 'int64', shape: ['R', 'L'], source: { kind: 'history_id', field: 'category', salt: 12, buckets: 257 } },
      { name: 'hist_surface', dtype: 'int64', shape: ['R', 'L'], source: { kind: 'history_enum', field: 'surface', values: ['feed', 'stories', 'reels', 'marketplace'] } },
      { name: 'hist_event', dtype: 'int64', shape: ['R', 'L'], source: { kind: 'history_enum', field: 'event', values: ['impression', 'click', 'conversion'] } },
      { name: 'hist_len', dtype: 'int64', shape: ['R'], source: { kind: 'history_length' } },
      {
        name: 'user_dense',
        dtype: 'float32',
        shape: ['R', 7],
        source: {
          kind: 'dense',
          features: [
            { field: 'user.features.age_bucket', transform: 'standardize', mean: 3, std: 2, default: 3 },
            { field: 'user.features.activity', transform: 'standardize', mean: 0.5, std: 0.3 },
            { field: 'user.features.tenure_days', transform: 'log1p_standardize', mean: 4, std: 1.5, default: 30 },
            { field: 'user.features.device', transform: 'onehot', values: ['ios', 'android', 'web'] },
            { field: 'context.hour', transform: 'standardize', mean: 12, std: 7, default: 12 },
          ],
        },
      },
      { name: 'ad_id', dtype: 'int64', shape: ['N'], source: { kind: 'candidate_id', field: 'adId', salt: 21, buckets: 5003 } },
      { name: 'advertiser_id', dtype: 'int64', shape: ['N'], source: { kind: 'candidate_id', field: 'advertiserId', salt: 22, buckets: 1009 } },
      { name: 'category', dtype: 'int64', shape: ['N'], source: { kind: 'candidate_id', field: 'category', salt: 23, buckets: 257 } },
      {
        name: 'ad_dense',
        dtype: 'float32',
        shape: ['N', 6],
        source: {
          kind: 'dense',
          features: [
            { field: 'candidate.features.quality', transform: 'standardize', mean: 0.5, std: 0.25 },
            { field: 'candidate.features.creative', transform: 'onehot', values: ['image', 'video', 'carousel'] },
            { field: 'candidate.features.price_tier', transform: 'standardize', mean: 2, std: 1.4 },
            { field: 'candidate.bid', transform: 'log1p_standardize', mean: 0.7, std: 0.5 },
          ],
        },
      },
      { name: 'req_idx', dtype: 'int64', shape: ['N'], source: { kind: 'request_index' } },
    ],
    outputs: [{ name: 'p', dtype: 'float32', shape: ['N'], semantics: 'probability' }],
    calibration: { method: 'identity' },
    lineage: { distillation: 'fixture', teacherVersion: null },
  };
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Write one version directory into `repo` (directly, as an atomic publish would leave it). */
export function writeVersion(repo: string, spec: VersionSpec): string {
  const variant = spec.variant ?? 'v1';
  const dir = path.join(repo, spec.name, String(spec.version));
  mkdirSync(dir, { recursive: true });
  const onnx = path.join(fixtureDir, `${variant}.onnx`);
  copyFileSync(onnx, path.join(dir, 'model.onnx'));
  copyFileSync(path.join(fixtureDir, `${variant}.golden.json`), path.join(dir, 'golden.json'));
  const manifest = fixtureManifest(spec.name, spec.version, spec.surface ?? 'feed', spec.objective ?? 'ctr', sha(onnx));
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return dir;
}

export function defaultRollout(models: Record<string, number> = { 'feed-ctr': 1, 'feed-cvr': 1 }): Rollout {
  return {
    salt: 'test',
    routes: { feed: { ctr: 'feed-ctr', cvr: 'feed-cvr' } },
    models: Object.fromEntries(Object.entries(models).map(([name, stable]) => [name, { stable }])),
  };
}

export function writeRolloutFile(repo: string, rollout: Rollout | string): void {
  writeFileSync(path.join(repo, 'rollout.json'), typeof rollout === 'string' ? rollout : JSON.stringify(rollout, null, 2));
}

export interface FixtureRepo {
  dir: string;
  cleanup(): void;
}

/** A repository with feed-ctr@1 and feed-cvr@1 (the v2 weights) routed for the feed surface. */
/** Versions 1 and 2 of feed-ctr and feed-cvr: enough for stable + canary of both objectives. */
export const kTwoVersionsEach: VersionSpec[] = [
  { name: 'feed-ctr', version: 1, variant: 'v1' },
  { name: 'feed-ctr', version: 2, variant: 'v1' },
  { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  { name: 'feed-cvr', version: 2, variant: 'v2', objective: 'cvr' },
];

export function makeRepo(versions: VersionSpec[] = [
  { name: 'feed-ctr', version: 1, variant: 'v1' },
  { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
], rollout: Rollout = defaultRollout()): FixtureRepo {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ranker-repo-'));
  for (const v of versions) writeVersion(dir, v);
  writeRolloutFile(dir, rollout);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
