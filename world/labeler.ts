/**
 * The labeler closes the loop: the server logs what it showed (one ImpressionLogRecord per shown
 * candidate, JSON lines), and the labeler samples each impression's outcome from the world's ground
 * truth. Sampling is keyed by (seed, requestId, adId), so a record gets the same outcome whatever
 * the order or batch it is labeled in.
 */
import { kDayMs, kEpochMs, kHourMs, kSurfaces, type Surface } from './config.js';
import { Rng } from './rng.js';
import type { ImpressionColumns } from './shards.js';
import type { World } from './world.js';

export const kArms = ['stable', 'canary', 'pinned', 'shadow'] as const;
export type Arm = (typeof kArms)[number];

/**
 * One shown candidate, labeled independently of the others. The labeler reads JSON lines of either
 * this record or the server's request-level line (RankLogLine, expanded by expandLogLine).
 */
export interface ImpressionLogRecord {
  requestId: string;
  userId: number;
  surface: Surface;
  adId: number;
  /** The model that scored the impression (the ctr model; cvr fields below when separate). */
  modelName: string;
  modelVersion: number;
  arm: Arm;
  /** ms since epoch when the impression was served. */
  ts: number;
  /** Hour of day the request declared (context.hour); defaults to the UTC hour of ts. */
  hour?: number;
  rank?: number;
  pctr?: number;
  pcvr?: number;
  ecpm?: number;
  cvrModelName?: string;
  cvrModelVersion?: number;
  /** The shown ad's advertiser and category as the request carried them (the server logs both). */
  advertiserId?: number;
  category?: number;
}

/** A model reference as the server stamps it: `{name, version, arm}`. */
export interface LoggedModel {
  name: string;
  version: number;
  arm: string;
}

/**
 * The line the server's impression log (src/ranking/impression-log.ts) writes: one per ranked
 * request, with every shown candidate. `expandLogLine` turns it into ImpressionLogRecords.
 */
export interface RankLogLine {
  kind?: string;
  ts: number;
  requestId: string;
  userId: number;
  surface: Surface;
  hour?: number;
  models?: { ctr?: LoggedModel; cvr?: LoggedModel };
  shown: Array<{ adId: number; advertiserId?: number; category?: number; rank?: number; pctr?: number; pcvr?: number; ecpm?: number }>;
}

function armOf(value: string | undefined): Arm {
  return (kArms as readonly string[]).includes(value ?? '') ? (value as Arm) : 'stable';
}

/** One ImpressionLogRecord per shown candidate of a request-level log line. */
export function expandLogLine(line: RankLogLine): ImpressionLogRecord[] {
  const ctr = line.models?.ctr;
  const cvr = line.models?.cvr;
  return line.shown.map((c) => {
    const record: ImpressionLogRecord = {
      requestId: String(line.requestId),
      userId: line.userId,
      surface: line.surface,
      adId: c.adId,
      modelName: ctr?.name ?? '',
      modelVersion: ctr?.version ?? 0,
      arm: armOf(ctr?.arm),
      ts: line.ts,
    };
    if (line.hour !== undefined) record.hour = line.hour;
    if (c.rank !== undefined) record.rank = c.rank;
    if (c.pctr !== undefined) record.pctr = c.pctr;
    if (c.pcvr !== undefined) record.pcvr = c.pcvr;
    if (c.ecpm !== undefined) record.ecpm = c.ecpm;
    if (c.advertiserId !== undefined) record.advertiserId = c.advertiserId;
    if (c.category !== undefined) record.category = c.category;
    if (cvr) {
      record.cvrModelName = cvr.name;
      record.cvrModelVersion = cvr.version;
    }
    return record;
  });
}

/**
 * Parse one log line in either shape (a request-level RankLogLine with `shown`, or one
 * ImpressionLogRecord); null when it is neither.
 */
export function parseLogLine(text: string): ImpressionLogRecord[] | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.userId !== 'number' || typeof v.surface !== 'string') return null;
  if (Array.isArray(v.shown)) {
    if (!v.shown.every((c) => typeof c === 'object' && c !== null && typeof (c as { adId?: unknown }).adId === 'number')) return null;
    return expandLogLine(v as unknown as RankLogLine);
  }
  if (typeof v.adId !== 'number') return null;
  return [v as unknown as ImpressionLogRecord];
}

export interface LabeledImpression {
  record: ImpressionLogRecord;
  userIndex: number;
  adIndex: number;
  surface: number;
  hour: number;
  pClick: number;
  pConv: number;
  click: 0 | 1;
  conv: 0 | 1;
  /**
   * When the impression happened on the simulated clock (world day + logged hour). The server stamps
   * wall-clock time, but histories and every other shard live on the simulated clock; mixing the two
   * made history ages thousands of hours off for the teacher.
   */
  simTs: number;
}

export interface LabelResult {
  labeled: LabeledImpression[];
  /** Records whose user or ad is not in the world, or whose surface is unknown. */
  skipped: number;
}

export interface LabelOptions {
  /** Outcome seed (default: the world's seed). */
  seed?: number;
}

export function hourOf(record: ImpressionLogRecord): number {
  if (Number.isInteger(record.hour) && record.hour! >= 0 && record.hour! < 24) return record.hour!;
  const ts = Number.isFinite(record.ts) ? record.ts : kEpochMs;
  return ((Math.floor(ts / kHourMs) % 24) + 24) % 24;
}

/** Sample outcomes for logged impressions from the ground truth of `world` (its current day). */
export function labelImpressions(world: World, records: Iterable<ImpressionLogRecord>, options: LabelOptions = {}): LabelResult {
  const seed = options.seed ?? world.config.seed;
  const view = world.truth.liveView;
  const probs = new Float64Array(2);
  const labeled: LabeledImpression[] = [];
  let skipped = 0;
  for (const record of records) {
    const u = world.userIndex.get(record.userId);
    const j = world.adIndex.get(record.adId);
    const s = kSurfaces.indexOf(record.surface);
    if (u === undefined || j === undefined || s < 0) {
      skipped++;
      continue;
    }
    const hour = hourOf(record);
    world.truth.probabilities(view, u, j, s, hour, probs);
    const rng = new Rng(seed, 'label', String(record.requestId), record.adId);
    const click = rng.next() < probs[0] ? 1 : 0;
    const conv = click && rng.next() < probs[1] ? 1 : 0;
    const simTs = kEpochMs + world.day * kDayMs + hour * kHourMs + Math.floor(rng.next() * kHourMs);
    labeled.push({ record, userIndex: u, adIndex: j, surface: s, hour, pClick: probs[0], pConv: probs[1], click, conv, simTs });
  }
  return { labeled, skipped };
}

export interface WorldCheck {
  /** Records whose ad is in the world and that carry advertiserId or category. */
  compared: number;
  /** Of those, records whose advertiserId or category differs from the world's ad of that id. */
  mismatched: number;
  /** A few mismatching records, for the error message. */
  examples: string[];
}

/**
 * Does the log come from this world? Every world numbers its ads alike (kAdIdBase + index), so a
 * world rebuilt with other flags than the served one still finds every ad id and would label the
 * log without complaint, with another truth. The attributes the server logged for each shown ad
 * (taken from the request body) must be the world's.
 */
export function checkWorldMatchesLog(world: World, records: Iterable<ImpressionLogRecord>): WorldCheck {
  const { ads, advertisers, categories } = world.entities;
  const check: WorldCheck = { compared: 0, mismatched: 0, examples: [] };
  for (const r of records) {
    if (r.advertiserId === undefined && r.category === undefined) continue;
    const j = world.adIndex.get(r.adId);
    if (j === undefined) continue;
    check.compared++;
    const advertiserId = advertisers.id[ads.advertiser[j]];
    const category = categories.id[ads.category[j]];
    if ((r.advertiserId !== undefined && r.advertiserId !== advertiserId) || (r.category !== undefined && r.category !== category)) {
      check.mismatched++;
      if (check.examples.length < 3) {
        check.examples.push(`ad ${r.adId}: logged advertiser ${r.advertiserId} category ${r.category}, world advertiser ${advertiserId} category ${category}`);
      }
    }
  }
  return check;
}

export interface LabeledColumns extends ImpressionColumns {
  /** Index into `models` of each impression's model name. */
  readonly model: Int16Array;
  readonly modelVersion: Int32Array;
  /** Index into kArms. */
  readonly arm: Int8Array;
  /**
   * The pCTR the serving model gave each impression, from the log (NaN where the line had none).
   * It travels with the impression because the log's wall-clock ts cannot be joined to the
   * simulated ts the shard carries.
   */
  readonly servedPctr: Float32Array;
  readonly models: string[];
}

/** Arrange labeled impressions as shard columns: grouped by user (first appearance order), then by ts. */
export function toColumns(labeled: readonly LabeledImpression[]): LabeledColumns {
  const order = labeled.map((_, i) => i);
  const firstSeen = new Map<number, number>();
  for (const l of labeled) if (!firstSeen.has(l.userIndex)) firstSeen.set(l.userIndex, firstSeen.size);
  order.sort((a, b) => firstSeen.get(labeled[a].userIndex)! - firstSeen.get(labeled[b].userIndex)! || labeled[a].simTs - labeled[b].simTs || a - b);
  const m = labeled.length;
  const users = [...firstSeen.keys()];
  const models: string[] = [];
  const modelIndex = new Map<string, number>();
  const cols = {
    length: m,
    users,
    userRow: new Int32Array(m),
    ad: new Int32Array(m),
    surface: new Int8Array(m),
    hour: new Int8Array(m),
    ts: new Float64Array(m),
    pClick: new Float32Array(m),
    pConv: new Float32Array(m),
    click: new Uint8Array(m),
    conv: new Uint8Array(m),
    model: new Int16Array(m),
    modelVersion: new Int32Array(m),
    arm: new Int8Array(m),
    servedPctr: new Float32Array(m),
    models,
  };
  order.forEach((src, i) => {
    const l = labeled[src];
    cols.userRow[i] = firstSeen.get(l.userIndex)!;
    cols.ad[i] = l.adIndex;
    cols.surface[i] = l.surface;
    cols.hour[i] = l.hour;
    cols.ts[i] = l.simTs;
    cols.pClick[i] = l.pClick;
    cols.pConv[i] = l.pConv;
    cols.click[i] = l.click;
    cols.conv[i] = l.conv;
    let mi = modelIndex.get(l.record.modelName);
    if (mi === undefined) {
      mi = models.length;
      models.push(l.record.modelName);
      modelIndex.set(l.record.modelName, mi);
    }
    cols.model[i] = mi;
    cols.modelVersion[i] = l.record.modelVersion;
    cols.arm[i] = Math.max(0, kArms.indexOf(l.record.arm));
    cols.servedPctr[i] = typeof l.record.pctr === 'number' ? l.record.pctr : Number.NaN;
  });
  return cols;
}
