/**
 * `label`: read the server's impression log (JSON lines: request-level lines with `shown`, as
 * src/ranking/impression-log.ts writes them, or one ImpressionLogRecord per line), sample outcomes
 * from the ground truth, write one shard in the training format plus index.json. Extra columns
 * (not in generated shards): imp_model.npy (int16, index into index.json `labeler.models`),
 * imp_model_version.npy (int32), imp_arm.npy (int8, index into `labeler.arms`), imp_served_pctr.npy
 * (float32, the serving model's pCTR from the log; NaN where the log had none). A log whose shown
 * ads carry other advertiser/category ids than this world's (> 1%) is refused: wrong world flags.
 */
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { checkFlags, required } from './cli-flags.js';
import { kWorldFlags, worldFromFlags } from './cli-world.js';
import { indexHeader, roundJson } from './generate.js';
import { checkWorldMatchesLog, type ImpressionLogRecord, kArms, labelImpressions, parseLogLine, toColumns, type WorldCheck } from './labeler.js';
import { writeNpy } from './npy.js';
import { writeShard } from './shards.js';

export async function readLog(path: string): Promise<{ records: ImpressionLogRecord[]; malformed: number }> {
  const records: ImpressionLogRecord[] = [];
  let malformed = 0;
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const parsed = parseLogLine(line);
    if (parsed === null) malformed++;
    else for (const r of parsed) records.push(r);
  }
  return { records, malformed };
}

export const kLabelFlags: readonly string[] = ['log', 'out', ...kWorldFlags];

/** Share of compared shown ads allowed to disagree with the world before `label` refuses the log. */
export const kMaxWorldMismatch = 0.01;

/** Throw when too many shown ads of the log disagree with the world: labels would come from another truth. */
export function assertSameWorld(check: WorldCheck, flags: Record<string, string>): void {
  if (check.compared === 0 || check.mismatched <= kMaxWorldMismatch * check.compared) return;
  const named = kWorldFlags.filter((f) => flags[f] !== undefined).map((f) => `--${f} ${flags[f]}`);
  const given = named.join(' ') || 'defaults';
  throw new Error(
    `${check.mismatched} of ${check.compared} shown ads have another advertiserId/category in this world ` +
      `(more than ${100 * kMaxWorldMismatch}%; e.g. ${check.examples.join('; ')}). The world flags (${given}) likely differ from the served world: ` +
      'pass the flags the world was generated with, or --world DIR of the generated world',
  );
}

export async function run(flags: Record<string, string>): Promise<void> {
  checkFlags('label', flags, kLabelFlags);
  const logPath = required(flags, 'log');
  const out = required(flags, 'out');
  const started = Date.now();
  const { records, malformed } = await readLog(logPath);
  const world = worldFromFlags(flags);
  const check = checkWorldMatchesLog(world, records);
  assertSameWorld(check, flags);
  if (check.compared === 0 && records.length > 0) {
    process.stderr.write('label: the log carries no advertiserId/category for shown ads: cannot check it comes from this world\n');
  }
  const { labeled, skipped } = labelImpressions(world, records);
  const cols = toColumns(labeled);
  const dirName = `day-${String(world.day).padStart(3, '0')}`;
  mkdirSync(out, { recursive: true });
  const summary = writeShard(out, dirName, world.day, world, cols, world.history);
  writeNpy(join(out, dirName, 'imp_model.npy'), '<i2', [cols.length], cols.model);
  writeNpy(join(out, dirName, 'imp_model_version.npy'), '<i4', [cols.length], cols.modelVersion);
  writeNpy(join(out, dirName, 'imp_arm.npy'), '|i1', [cols.length], cols.arm);
  writeNpy(join(out, dirName, 'imp_served_pctr.npy'), '<f4', [cols.length], cols.servedPctr);
  const index = {
    ...indexHeader(world),
    days: 1,
    shards: [summary],
    labeler: {
      log: logPath,
      records: records.length,
      labeled: labeled.length,
      skipped,
      malformed,
      worldCheck: { compared: check.compared, mismatched: check.mismatched },
      models: cols.models,
      arms: kArms,
    },
  };
  writeFileSync(join(out, 'index.json'), `${JSON.stringify(index, roundJson, 1)}\n`);
  process.stderr.write(
    `labeled ${labeled.length} impressions (${skipped} not in the world, ${malformed} malformed lines): ` +
      `click rate ${summary.clickRate.toFixed(4)}, oracle AUC ${summary.oracle.clickAuc.toFixed(4)} -> ${out}/${dirName} in ${((Date.now() - started) / 1000).toFixed(1)}s\n`,
  );
}
