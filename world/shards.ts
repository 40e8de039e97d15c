/**
 * Training shard writer (format: docs/CONTRACTS.md, "Training shards"). One directory per
 * simulated day: the users present that day with their history snapshot (jagged: values +
 * offsets) and the day's impressions with sampled outcomes and ground-truth probabilities.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { kSurfaces } from './config.js';
import type { EventLog } from './events.js';
import { auc, logLoss, select } from './metrics.js';
import { NpyWriter, writeNpy, writeNpyInt64 } from './npy.js';
import type { World } from './world.js';

/** What the shard writer needs from a set of impressions (simulate.ts's Impressions, the labeler's). */
export interface ImpressionColumns {
  readonly length: number;
  /** Row -> user index. */
  readonly users: readonly number[];
  readonly userRow: Int32Array;
  readonly ad: Int32Array;
  readonly surface: Int8Array;
  readonly hour: Int8Array;
  readonly ts: Float64Array;
  readonly pClick: Float32Array;
  readonly pConv: Float32Array;
  readonly click: Uint8Array;
  readonly conv: Uint8Array;
}

export interface OracleMetrics {
  clickAuc: number;
  clickLogLoss: number;
  convAuc: number;
  convLogLoss: number;
}

export interface SurfaceSummary {
  impressions: number;
  clickRate: number;
  convRate: number;
  /** Mean ground-truth P(click): what the configured base rate is calibrated against. */
  meanPClick: number;
  oracle: OracleMetrics;
}

export interface ShardSummary {
  day: number;
  dir: string;
  impressions: number;
  users: number;
  historyEvents: number;
  clickRate: number;
  /** Conversions per click. */
  convRate: number;
  perSurface: Record<string, SurfaceSummary>;
  oracle: OracleMetrics;
}

/** Oracle metrics over a subset (mask null = all): click AUC/log-loss, and conv AUC/log-loss on clicks. */
export function oracleMetrics(imps: ImpressionColumns, mask: Uint8Array | null): OracleMetrics {
  const pClick = mask ? select(imps.pClick, mask) : imps.pClick;
  const click = mask ? select(imps.click, mask) : imps.click;
  const clicked = new Uint8Array(imps.length);
  for (let i = 0; i < imps.length; i++) clicked[i] = imps.click[i] && (!mask || mask[i]) ? 1 : 0;
  const pConv = select(imps.pConv, clicked);
  const conv = select(imps.conv, clicked);
  return { clickAuc: auc(pClick, click), clickLogLoss: logLoss(pClick, click), convAuc: auc(pConv, conv), convLogLoss: logLoss(pConv, conv) };
}

export function summarize(imps: ImpressionColumns, day: number, dir: string, historyEvents: number): ShardSummary {
  const perSurface: Record<string, SurfaceSummary> = {};
  let clicks = 0;
  let convs = 0;
  for (let i = 0; i < imps.length; i++) {
    clicks += imps.click[i];
    convs += imps.conv[i];
  }
  for (let s = 0; s < kSurfaces.length; s++) {
    const mask = new Uint8Array(imps.length);
    let n = 0;
    let c = 0;
    let v = 0;
    let p = 0;
    for (let i = 0; i < imps.length; i++) {
      if (imps.surface[i] === s) {
        mask[i] = 1;
        n++;
        c += imps.click[i];
        v += imps.conv[i];
        p += imps.pClick[i];
      }
    }
    if (n === 0) continue;
    perSurface[kSurfaces[s]] = {
      impressions: n,
      clickRate: c / n,
      convRate: c > 0 ? v / c : 0,
      meanPClick: p / n,
      oracle: oracleMetrics(imps, mask),
    };
  }
  return {
    day,
    dir,
    impressions: imps.length,
    users: imps.users.length,
    historyEvents,
    clickRate: imps.length > 0 ? clicks / imps.length : 0,
    convRate: clicks > 0 ? convs / clicks : 0,
    perSurface,
    oracle: oracleMetrics(imps, null),
  };
}

/**
 * Write one shard directory. `historyBlocks` are the event logs that make up the snapshot (for
 * day d: world.history.slice(0, d + 1)). Returns the shard's summary for index.json.
 */
export function writeShard(outDir: string, dirName: string, day: number, world: World, imps: ImpressionColumns, historyBlocks: readonly EventLog[]): ShardSummary {
  const dir = join(outDir, dirName);
  mkdirSync(dir, { recursive: true });
  const { users, ads } = world.entities;
  const rows = imps.users;
  const r = rows.length;
  const m = imps.length;

  writeNpyInt64(join(dir, 'user_id.npy'), [r], r, (i) => users.id[rows[i]]);
  const dense = new Float32Array(r * 4);
  for (let i = 0; i < r; i++) {
    const u = rows[i];
    dense[4 * i] = users.ageBucket[u];
    dense[4 * i + 1] = users.activity[u];
    dense[4 * i + 2] = users.tenureDays[u];
    dense[4 * i + 3] = users.device[u];
  }
  writeNpy(join(dir, 'user_dense.npy'), '<f4', [r, 4], dense);

  const offsets = new Float64Array(r + 1);
  for (let i = 0; i < r; i++) {
    let n = 0;
    for (const block of historyBlocks) n += block.count(rows[i]);
    offsets[i + 1] = offsets[i] + n;
  }
  const total = offsets[r];
  writeNpyInt64(join(dir, 'hist_offsets.npy'), [r + 1], r + 1, (i) => offsets[i]);
  writeHistory(dir, world, rows, historyBlocks, total);

  writeNpy(join(dir, 'imp_user_row.npy'), '<i4', [m], imps.userRow.subarray(0, m));
  writeNpy(join(dir, 'imp_surface.npy'), '|i1', [m], imps.surface.subarray(0, m));
  writeNpy(join(dir, 'imp_hour.npy'), '|i1', [m], imps.hour.subarray(0, m));
  writeNpy(join(dir, 'imp_ts.npy'), '<f8', [m], imps.ts.subarray(0, m));
  writeNpyInt64(join(dir, 'imp_ad_id.npy'), [m], m, (i) => ads.id[imps.ad[i]]);
  writeNpyInt64(join(dir, 'imp_advertiser_id.npy'), [m], m, (i) => world.entities.advertisers.id[ads.advertiser[imps.ad[i]]]);
  writeNpyInt64(join(dir, 'imp_category.npy'), [m], m, (i) => world.entities.categories.id[ads.category[imps.ad[i]]]);
  const adDense = new Float32Array(m * 3);
  const bid = new Float32Array(m);
  const bidType = new Int8Array(m);
  for (let i = 0; i < m; i++) {
    const j = imps.ad[i];
    adDense[3 * i] = ads.quality[j];
    adDense[3 * i + 1] = ads.creative[j];
    adDense[3 * i + 2] = ads.priceTier[j];
    bid[i] = ads.bid[j];
    bidType[i] = ads.bidType[j];
  }
  writeNpy(join(dir, 'imp_ad_dense.npy'), '<f4', [m, 3], adDense);
  writeNpy(join(dir, 'imp_bid.npy'), '<f4', [m], bid);
  writeNpy(join(dir, 'imp_bid_type.npy'), '|i1', [m], bidType);
  writeNpy(join(dir, 'imp_click.npy'), '|u1', [m], imps.click.subarray(0, m));
  writeNpy(join(dir, 'imp_conv.npy'), '|u1', [m], imps.conv.subarray(0, m));
  writeNpy(join(dir, 'imp_p_click.npy'), '<f4', [m], imps.pClick.subarray(0, m));
  writeNpy(join(dir, 'imp_p_conv.npy'), '<f4', [m], imps.pConv.subarray(0, m));
  return summarize(imps, day, dirName, total);
}

/** Stream the jagged history columns, user by user, block by block (already chronological). */
function writeHistory(dir: string, world: World, rows: readonly number[], blocks: readonly EventLog[], total: number): void {
  const { ads, categories } = world.entities;
  const adId = new NpyWriter(join(dir, 'hist_ad_id.npy'), '<i8', [total]);
  const category = new NpyWriter(join(dir, 'hist_category.npy'), '<i8', [total]);
  const surface = new NpyWriter(join(dir, 'hist_surface.npy'), '|i1', [total]);
  const event = new NpyWriter(join(dir, 'hist_event.npy'), '|i1', [total]);
  const ts = new NpyWriter(join(dir, 'hist_ts.npy'), '<f8', [total]);
  const kBatch = 1 << 16;
  const adBuf = new Int32Array(kBatch);
  const tsBuf = new Float64Array(kBatch);
  const surfBuf = new Int8Array(kBatch);
  const evBuf = new Int8Array(kBatch);
  let fill = 0;
  const flush = (): void => {
    if (fill === 0) return;
    adId.writeInt64(fill, (i) => ads.id[adBuf[i]]);
    category.writeInt64(fill, (i) => categories.id[ads.category[adBuf[i]]]);
    surface.write(surfBuf.subarray(0, fill));
    event.write(evBuf.subarray(0, fill));
    ts.write(tsBuf.subarray(0, fill));
    fill = 0;
  };
  for (const u of rows) {
    for (const block of blocks) {
      for (let e = block.offsets[u], end = block.offsets[u + 1]; e < end; e++) {
        adBuf[fill] = block.ad[e];
        tsBuf[fill] = block.ts[e];
        surfBuf[fill] = block.surface[e];
        evBuf[fill] = block.event[e];
        if (++fill === kBatch) flush();
      }
    }
  }
  flush();
  for (const w of [adId, category, surface, event, ts]) w.close();
}
