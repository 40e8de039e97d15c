/**
 * The columnar form of a /v1/rank body: `candidates` and `user.history` may each be an object of
 * equal-length arrays (one per field, and one per feature name under `features`) instead of an array
 * of objects. Same information, a third of the bytes for 500 candidates, and JSON.parse builds a few
 * arrays instead of ~1,300 small objects: the largest single cost of a request on the main thread.
 * The schema checks each column's values; this module checks that the columns line up and turns
 * them into the row form that the rest of the server reads.
 */
import { Errors, pointerToken } from '../errors.js';
import type { Candidate, FeatureMap, FeatureValue, HistoryEvent, RankRequest } from './request.js';

/** A feature column: one value per row; null where that row does not have the feature. */
export type FeatureColumns = Record<string, Array<FeatureValue | null>>;

export interface CandidateColumns {
  adId: number[];
  advertiserId: number[];
  category: number[];
  bid: number[];
  bidType: Array<Candidate['bidType']>;
  features?: FeatureColumns;
}

export interface HistoryColumns {
  adId: number[];
  category?: Array<number | null>;
  surface: string[];
  event: string[];
  ts: number[];
}

/** A request as it arrives: either form for candidates and for history. */
export interface RankRequestBody extends Omit<RankRequest, 'candidates' | 'user'> {
  user: Omit<RankRequest['user'], 'history'> & { history?: HistoryEvent[] | HistoryColumns };
  candidates: Candidate[] | CandidateColumns;
}

function checkLength(column: unknown[] | undefined, expected: number, path: string, reference: string): void {
  if (column !== undefined && column.length !== expected) {
    throw Errors.BAD_REQUEST(path, `has ${column.length} entries but ${reference} has ${expected}`);
  }
}

function rowFeatures(columns: FeatureColumns, names: string[], row: number): FeatureMap | undefined {
  let features: FeatureMap | undefined;
  for (const name of names) {
    const value = columns[name][row];
    if (value !== null) (features ??= {})[name] = value;
  }
  return features;
}

function candidateRows(columns: CandidateColumns): Candidate[] {
  const n = columns.adId.length;
  if (n === 0) throw Errors.BAD_REQUEST('/candidates/adId', 'must have at least 1 entry');
  for (const field of ['advertiserId', 'category', 'bid', 'bidType'] as const) checkLength(columns[field], n, `/candidates/${field}`, '/candidates/adId');
  const featureNames = columns.features ? Object.keys(columns.features) : [];
  for (const name of featureNames) checkLength(columns.features![name], n, `/candidates/features/${pointerToken(name)}`, '/candidates/adId');
  const rows: Candidate[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const row: Candidate = { adId: columns.adId[i], advertiserId: columns.advertiserId[i], category: columns.category[i], bid: columns.bid[i], bidType: columns.bidType[i] };
    const features = featureNames.length > 0 ? rowFeatures(columns.features!, featureNames, i) : undefined;
    if (features) row.features = features;
    rows[i] = row;
  }
  return rows;
}

function historyRows(columns: HistoryColumns): HistoryEvent[] {
  const n = columns.adId.length;
  for (const field of ['surface', 'event', 'ts', 'category'] as const) checkLength(columns[field], n, `/user/history/${field}`, '/user/history/adId');
  const rows: HistoryEvent[] = new Array(n);
  const category = columns.category;
  for (let i = 0; i < n; i++) {
    const row: HistoryEvent = { adId: columns.adId[i], surface: columns.surface[i], event: columns.event[i], ts: columns.ts[i] };
    if (category && category[i] !== null) row.category = category[i]!;
    rows[i] = row;
  }
  return rows;
}

/** The row form of a validated body; a body already in row form is returned as it is. */
export function toRowForm(body: RankRequestBody): RankRequest {
  const history = body.user.history;
  const columnarHistory = history !== undefined && !Array.isArray(history);
  const columnarCandidates = !Array.isArray(body.candidates);
  if (!columnarHistory && !columnarCandidates) return body as RankRequest;
  return {
    ...body,
    user: columnarHistory ? { ...body.user, history: historyRows(history as HistoryColumns) } : (body.user as RankRequest['user']),
    candidates: columnarCandidates ? candidateRows(body.candidates as CandidateColumns) : (body.candidates as Candidate[]),
  };
}

/**
 * Where a value found through the row form (`/candidates/3/features/quality`, as feature encoding
 * reports it) sits in `body`: `/candidates/features/quality/3` when the candidates came as columns,
 * likewise for history events; other paths, and paths into row-form parts, are returned unchanged.
 */
export function pathInBody(path: string, body: RankRequestBody): string {
  const candidate = /^\/candidates\/(\d+)\/(.+)$/.exec(path);
  if (candidate && !Array.isArray(body.candidates)) {
    const [, index, field] = candidate;
    return `/candidates/${field}/${index}`;
  }
  const event = /^\/user\/history\/(\d+)\/(.+)$/.exec(path);
  if (event && body.user.history !== undefined && !Array.isArray(body.user.history)) return `/user/history/${event[2]}/${event[1]}`;
  return path;
}

/** The columnar form of a row-form request (clients, tests and the benchmark build bodies with it). */
export function toColumnarForm(request: RankRequest): RankRequestBody {
  const candidates = request.candidates;
  const featureNames = [...new Set(candidates.flatMap((c) => Object.keys(c.features ?? {})))];
  const candidateColumns: CandidateColumns = {
    adId: candidates.map((c) => c.adId),
    advertiserId: candidates.map((c) => c.advertiserId),
    category: candidates.map((c) => c.category),
    bid: candidates.map((c) => c.bid),
    bidType: candidates.map((c) => c.bidType),
  };
  if (featureNames.length > 0) {
    candidateColumns.features = Object.fromEntries(featureNames.map((name) => [name, candidates.map((c) => c.features?.[name] ?? null)]));
  }
  const body: RankRequestBody = { ...request, candidates: candidateColumns };
  const history = request.user.history;
  if (history !== undefined) {
    const columns: HistoryColumns = { adId: history.map((e) => e.adId), surface: history.map((e) => e.surface), event: history.map((e) => e.event), ts: history.map((e) => e.ts) };
    if (history.some((e) => e.category !== undefined)) columns.category = history.map((e) => e.category ?? null);
    body.user = { ...request.user, history: columns };
  }
  return body;
}
