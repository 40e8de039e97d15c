/**
 * `generate`: build the world, simulate `days` days with drift between them, write one shard per
 * day plus index.json (shapes, dtypes, vocab sizes, per-shard oracle metrics, drift figures).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kBidTypes, kCreatives, kDevices, kEpochMs, kEvents, kSurfaces, resolveConfig, type WorldConfig } from './config.js';
import { advanceDay } from './drift.js';
import { kAdIdBase, kAdvertiserIdBase, kCategoryIdBase, kUserIdBase } from './entities.js';
import { auc } from './metrics.js';
import { ProgressBar } from './progress.js';
import { Rng } from './rng.js';
import { type ShardSummary, writeShard } from './shards.js';
import { simulateDay } from './simulate.js';
import { createWorld, type World } from './world.js';

export interface DriftDay {
  day: number;
  /** AUC of the live ground truth on the day's clicks. */
  oracleClickAuc: number;
  /** AUC of the truth frozen at day 0 (day-0 interests, trends, inventory) on the same clicks. */
  frozenDay0ClickAuc: number;
  aucDrop: number;
}

export interface GenerateResult {
  index: Record<string, unknown>;
  shards: ShardSummary[];
  drift: DriftDay[];
  seconds: number;
}

export interface GenerateOptions {
  out: string;
  config: Partial<WorldConfig>;
  progress?: boolean;
}

export function shardFiles(): Record<string, { dtype: string; shape: string[] }> {
  return {
    'user_id.npy': { dtype: 'int64', shape: ['U'] },
    'user_dense.npy': { dtype: 'float32', shape: ['U', '4'] },
    'hist_offsets.npy': { dtype: 'int64', shape: ['U+1'] },
    'hist_ad_id.npy': { dtype: 'int64', shape: ['T'] },
    'hist_category.npy': { dtype: 'int64', shape: ['T'] },
    'hist_surface.npy': { dtype: 'int8', shape: ['T'] },
    'hist_event.npy': { dtype: 'int8', shape: ['T'] },
    'hist_ts.npy': { dtype: 'float64', shape: ['T'] },
    'imp_user_row.npy': { dtype: 'int32', shape: ['M'] },
    'imp_surface.npy': { dtype: 'int8', shape: ['M'] },
    'imp_hour.npy': { dtype: 'int8', shape: ['M'] },
    'imp_ts.npy': { dtype: 'float64', shape: ['M'] },
    'imp_ad_id.npy': { dtype: 'int64', shape: ['M'] },
    'imp_advertiser_id.npy': { dtype: 'int64', shape: ['M'] },
    'imp_category.npy': { dtype: 'int64', shape: ['M'] },
    'imp_ad_dense.npy': { dtype: 'float32', shape: ['M', '3'] },
    'imp_bid.npy': { dtype: 'float32', shape: ['M'] },
    'imp_bid_type.npy': { dtype: 'int8', shape: ['M'] },
    'imp_click.npy': { dtype: 'uint8', shape: ['M'] },
    'imp_conv.npy': { dtype: 'uint8', shape: ['M'] },
    'imp_p_click.npy': { dtype: 'float32', shape: ['M'] },
    'imp_p_conv.npy': { dtype: 'float32', shape: ['M'] },
  };
}

/** The parts of index.json that describe the world rather than one shard. */
export function indexHeader(world: World): Record<string, unknown> {
  const { config, entities } = world;
  return {
    format: 'gemlite-world-shards-v1',
    seed: config.seed,
    days: config.days,
    users: entities.users.count,
    ads: entities.ads.count,
    advertisers: entities.advertisers.count,
    categories: entities.categories.count,
    epochMs: kEpochMs,
    surfaces: kSurfaces,
    events: kEvents,
    bidTypes: kBidTypes,
    userDense: [{ name: 'age_bucket' }, { name: 'activity' }, { name: 'tenure_days' }, { name: 'device', values: kDevices }],
    adDense: [{ name: 'quality' }, { name: 'creative', values: kCreatives }, { name: 'price_tier' }],
    /** Ids are raw; the pipeline hashes them (fmix32x2-v1). Ranges tell how many distinct values exist. */
    vocab: {
      user_id: { min: kUserIdBase, max: kUserIdBase + entities.users.count - 1, distinct: entities.users.count },
      ad_id: { min: kAdIdBase, max: kAdIdBase + entities.ads.count - 1, distinct: entities.ads.count },
      advertiser_id: { min: kAdvertiserIdBase, max: kAdvertiserIdBase + entities.advertisers.count - 1, distinct: entities.advertisers.count },
      category: { min: kCategoryIdBase, max: kCategoryIdBase + entities.categories.count - 1, distinct: entities.categories.count },
      surface: kSurfaces.length,
      event: kEvents.length,
      bid_type: kBidTypes.length,
      hour: 24,
    },
    files: shardFiles(),
    config: { ...config },
    truth: {
      clickIntercept: Array.from(world.truth.clickIntercept),
      convIntercept: Array.from(world.truth.convIntercept),
    },
  };
}

export function generate(options: GenerateOptions): GenerateResult {
  const started = Date.now();
  const showProgress = options.progress !== false;
  const preBar = showProgress ? new ProgressBar('seed histories', resolveConfig(options.config).users, ' users') : null;
  const world = createWorld(options.config, { onProgress: preBar ? (done) => preBar.update(done) : undefined });
  preBar?.finish();
  const { config } = world;
  mkdirSync(options.out, { recursive: true });
  const rng = new Rng(config.seed, 'days');
  const frozen = world.truth.snapshotView();
  const shards: ShardSummary[] = [];
  const drift: DriftDay[] = [];
  let expected = 0;
  for (let u = 0; u < world.entities.users.count; u++) expected += world.entities.users.impRate[u];
  const bar = showProgress ? new ProgressBar('simulate days', expected * config.days, ' imps') : null;
  let doneImps = 0;
  const users = world.entities.users.count;
  const step = Math.max(1, Math.floor(users / 100));
  for (let d = 0; d < config.days; d++) {
    if (d > 0) advanceDay(world, rng.fork('drift', d));
    const dayRng = rng.fork('day', d);
    const dayBase = doneImps;
    const imps = simulateDay(world, dayRng, d > 0 ? frozen : null, bar ? (u) => u % step === 0 && bar.update(dayBase + (expected * u) / users) : undefined);
    doneImps += expected;
    const summary = writeShard(options.out, `day-${String(d).padStart(3, '0')}`, d, world, imps, world.history.slice(0, d + 1));
    shards.push(summary);
    const frozenAuc = d > 0 ? auc(imps.pFrozen, imps.click) : summary.oracle.clickAuc;
    drift.push({ day: d, oracleClickAuc: summary.oracle.clickAuc, frozenDay0ClickAuc: frozenAuc, aucDrop: summary.oracle.clickAuc - frozenAuc });
    bar?.update(doneImps);
  }
  bar?.finish();
  const index = {
    ...indexHeader(world),
    ads: world.entities.ads.count,
    shards,
    drift: {
      description: 'AUC of the ground truth frozen at day 0 (interests, category trends, inventory) vs the live truth, on each day',
      interestRho: config.interestRho,
      categoryTrendStep: config.categoryTrendStep,
      adTurnover: config.adTurnover,
      perDay: drift,
    },
  };
  writeFileSync(join(options.out, 'index.json'), `${JSON.stringify(index, roundJson, 1)}\n`);
  return { index, shards, drift, seconds: (Date.now() - started) / 1000 };
}

/** Keep index.json readable: 6 significant digits for non-integers. */
export function roundJson(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isInteger(value) && Number.isFinite(value)) return Number(value.toPrecision(6));
  if (typeof value === 'number' && !Number.isFinite(value)) return null;
  return value;
}
