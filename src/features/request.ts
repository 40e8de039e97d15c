/** The shape of a /v1/rank request after schema validation (src/routes/rank-schema.ts is its schema). */
export type FeatureValue = number | string;
export type FeatureMap = Record<string, FeatureValue>;

/**
 * The largest finite float32. Model inputs, and the pipeline's logged bids (float32 in
 * docs/CONTRACTS.md), cannot hold more: beyond it a value becomes Infinity.
 */
export const kFloat32Max = 3.4028234663852886e38;

/** Whether `x` stays finite as a float32; false for NaN too (every comparison with NaN is false). */
export const fitsFloat32 = (x: number): boolean => x <= kFloat32Max && x >= -kFloat32Max;

export interface HistoryEvent {
  adId: number;
  category?: number;
  surface: string;
  event: string;
  ts: number;
}

export interface Candidate {
  adId: number;
  advertiserId: number;
  category: number;
  bid: number;
  bidType: 'cpc' | 'cpa' | 'cpm';
  features?: FeatureMap;
}

export interface RankRequest {
  surface: string;
  requestId?: string;
  user: { id: number; features?: FeatureMap; history?: HistoryEvent[] };
  context?: FeatureMap;
  candidates: Candidate[];
  topK?: number;
  deadlineMs?: number;
  pin?: Record<string, number>;
}
