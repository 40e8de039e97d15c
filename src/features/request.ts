/** The shape of a /v1/rank request after schema validation (src/routes/rank-schema.ts is its schema). */
export type FeatureValue = number | string;
export type FeatureMap = Record<string, FeatureValue>;

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
