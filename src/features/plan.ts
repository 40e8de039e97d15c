/**
 * Compiles a manifest's feature spec into a FeaturePlan once, when a model version loads: enum maps,
 * dense column layouts and hash parameters are resolved here so that encoding a request is a few
 * tight loops with no lookups by name.
 */
import type { DenseFeatureSpec, Manifest } from '../models/manifest.js';

export type DenseOrigin = 'user' | 'context' | 'candidate' | 'bid';

export interface DenseColumn {
  origin: DenseOrigin;
  key: string;
  transform: 'standardize' | 'log1p_standardize' | 'onehot';
  offset: number;
  mean: number;
  std: number;
  fallback: number;
  /** onehot: value -> column offset relative to `offset`. */
  onehot: Map<string | number, number> | null;
  /**
   * onehot: the one JS type of its values ('string' or 'number'), or null when they mix both. A value
   * of the other type is a client error (a 400), where an unlisted value of the right type is an
   * unseen category and encodes as all zeros, as in training.
   */
  onehotType: 'string' | 'number' | null;
  path: string;
}

export interface DenseInputPlan {
  name: string;
  width: number;
  columns: DenseColumn[];
}

export interface HistoryInputPlan {
  name: string;
  kind: 'id' | 'enum';
  field: 'adId' | 'category' | 'surface' | 'event';
  salt: number;
  buckets: number;
  enumIndex: Map<string, number> | null;
}

export interface CandidateIdPlan {
  name: string;
  field: 'adId' | 'advertiserId' | 'category';
  salt: number;
  buckets: number;
}

export interface FeaturePlan {
  modelKey: string;
  maxHistory: number;
  historyBuckets: number[];
  history: HistoryInputPlan[];
  historyLengthInput: string | null;
  userDense: DenseInputPlan[];
  candidateIds: CandidateIdPlan[];
  candidateDense: DenseInputPlan[];
  requestIndexInput: string | null;
  /** Every input name the model expects, in manifest order. */
  inputNames: string[];
  /** Whether the model reads the user's history at all (else none is encoded). */
  usesHistory: boolean;
  /**
   * The manifest's `serving.maxCandidatesPerBatch`: cross-request batches of this version stop there.
   * A single request is never split (MAX_CANDIDATES bounds it). Null: only BATCH_MAX_CANDIDATES.
   */
  maxBatchCandidates: number | null;
}

function denseColumns(features: DenseFeatureSpec[]): { columns: DenseColumn[]; width: number } {
  const columns: DenseColumn[] = [];
  let offset = 0;
  for (const f of features) {
    let origin: DenseOrigin;
    let key: string;
    if (f.field === 'candidate.bid') {
      origin = 'bid';
      key = 'bid';
    } else {
      const [head, second, third] = f.field.split('.');
      if (head === 'context') {
        origin = 'context';
        key = second;
      } else {
        origin = head === 'user' ? 'user' : 'candidate';
        key = third;
      }
    }
    const onehot = f.transform === 'onehot' ? new Map((f.values ?? []).map((v, i) => [v, i] as [string | number, number])) : null;
    const valueTypes = new Set((f.values ?? []).map((v) => typeof v as 'string' | 'number'));
    columns.push({
      origin,
      key,
      transform: f.transform,
      offset,
      mean: f.mean ?? 0,
      std: f.std ?? 1,
      fallback: typeof f.default === 'number' ? f.default : f.mean ?? 0,
      onehot,
      onehotType: valueTypes.size === 1 ? [...valueTypes][0] : null,
      path: f.field,
    });
    offset += onehot ? onehot.size : 1;
  }
  return { columns, width: offset };
}

export function compileFeaturePlan(manifest: Manifest): FeaturePlan {
  const plan: FeaturePlan = {
    modelKey: `${manifest.name}@${manifest.version}`,
    maxHistory: manifest.history.maxLength,
    historyBuckets: [...manifest.history.buckets],
    history: [],
    historyLengthInput: null,
    userDense: [],
    candidateIds: [],
    candidateDense: [],
    requestIndexInput: null,
    inputNames: manifest.inputs.map((i) => i.name),
    usesHistory: false,
    maxBatchCandidates: manifest.serving?.maxCandidatesPerBatch ?? null,
  };
  for (const input of manifest.inputs) {
    const src = input.source;
    switch (src.kind) {
      case 'history_id':
        plan.history.push({ name: input.name, kind: 'id', field: src.field, salt: src.salt, buckets: src.buckets, enumIndex: null });
        break;
      case 'history_enum':
        plan.history.push({
          name: input.name,
          kind: 'enum',
          field: src.field,
          salt: 0,
          buckets: 0,
          enumIndex: new Map(src.values.map((v, i) => [v, i + 1])),
        });
        break;
      case 'history_length':
        plan.historyLengthInput = input.name;
        break;
      case 'candidate_id':
        plan.candidateIds.push({ name: input.name, field: src.field, salt: src.salt, buckets: src.buckets });
        break;
      case 'request_index':
        plan.requestIndexInput = input.name;
        break;
      case 'dense': {
        const { columns, width } = denseColumns(src.features);
        (input.shape[0] === 'R' ? plan.userDense : plan.candidateDense).push({ name: input.name, width, columns });
        break;
      }
    }
  }
  plan.usesHistory = plan.history.length > 0 || plan.historyLengthInput !== null;
  return plan;
}

/** The smallest bucket that holds `length` events (lengths are already capped at maxHistory). */
export function bucketFor(plan: FeaturePlan, length: number): number {
  for (const b of plan.historyBuckets) if (b >= length) return b;
  return plan.maxHistory;
}
