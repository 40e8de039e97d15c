/**
 * `label`: read the server's impression log (JSON lines: request-level lines with `shown`, as
 * src/ranking/impression-log.ts writes them, or one ImpressionLogRecord per line), sample outcomes
 * from the ground truth, write one shard in the training format plus index.json. Extra columns
 * (not in generated shards): imp_model.npy (int16, index into index.json `labeler.models`),
 * imp_model_version.npy (int32), imp_arm.npy (int8, index into `labeler.arms`), imp_served_pctr.npy
 * (float32, the serving model's pCTR from the log; NaN where the log had none).
 */
import { createReadStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { required } from './cli-flags.js';
import { worldFromFlags } from './cli-world.js';
import { indexHeader, roundJson } from './generate.js';
import { type ImpressionLogRecord, kArms, labelImpressions, parseLogLine, toColumns } from './labeler.js';
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

export async function run(flags: Record<string, string>): Promise<void> {
  const logPath = required(flags, 'log');
  const out = required(flags, 'out');
  const started = Date.now();
  const { records, malformed } = await readLog(logPath);
  const world = worldFromFlags(flags);
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
    labeler: { log: logPath, records: records.length, labeled: labeled.length, skipped, malformed, models: cols.models, arms: kArms },
  };
  writeFileSync(join(out, 'index.json'), `${JSON.stringify(index, roundJson, 1)}\n`);
  process.stderr.write(
    `labeled ${labeled.length} impressions (${skipped} not in the world, ${malformed} malformed lines): ` +
      `click rate ${summary.clickRate.toFixed(4)}, oracle AUC ${summary.oracle.clickAuc.toFixed(4)} -> ${out}/${dirName} in ${((Date.now() - started) / 1000).toFixed(1)}s\n`,
  );
}
