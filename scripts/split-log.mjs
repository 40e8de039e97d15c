#!/usr/bin/env node
/**
 * Split one server impression log (JSON lines with requestId) into one file per requestId prefix,
 * optionally moving each line's `ts` onto the simulated world's clock.
 *
 *   node scripts/split-log.mjs impressions.jsonl OUTDIR [--sim-clock EPOCH_MS] d8-=8 d9-=9 d10-=10
 *
 * writes OUTDIR/<prefix without trailing dash>.jsonl and prints counts as JSON.
 *
 * Why --sim-clock: the server stamps `ts` with the wall clock (src/ranking/impression-log.ts), the
 * labeler copies it into the shard's imp_ts (world/labeler.ts), and the pipeline's teacher measures
 * history-event age as imp_ts - hist_ts (pipeline/gemlite/teacher.py, teacher_batch). Histories are
 * on the simulated clock (index.json epochMs + day * 24 h), so wall-clock imp_ts would make every
 * history event look months old. With --sim-clock each line of day D gets
 *   ts = EPOCH_MS + D * 86400000 + hour * 3600000 + (running index of that day-hour, in ms)
 * (hour = the request's context.hour, as logged), keeping order and one distinct ts per request;
 * the original is kept as `wallTs`. Outcomes do not depend on ts (sampling is keyed by
 * (seed, requestId, adId)).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const argv = process.argv.slice(2);
let epochMs = null;
const i = argv.indexOf('--sim-clock');
if (i >= 0) {
  epochMs = Number(argv[i + 1]);
  argv.splice(i, 2);
  if (!Number.isFinite(epochMs)) throw new Error('--sim-clock needs epoch milliseconds');
}
const [log, outDir, ...specs] = argv;
const prefixes = specs.map((s) => {
  const [prefix, day] = s.split('=');
  return { prefix, day: day === undefined ? null : Number(day), lines: [], perHour: new Map() };
});
let other = 0;
let malformed = 0;
for (const line of readFileSync(log, 'utf8').split('\n')) {
  if (line.trim() === '') continue;
  let rec;
  try {
    rec = JSON.parse(line);
  } catch {
    malformed++;
    continue;
  }
  // Longest prefix wins (d1- vs d10-).
  const p = prefixes.filter((x) => String(rec.requestId ?? '').startsWith(x.prefix)).sort((a, b) => b.prefix.length - a.prefix.length)[0];
  if (p === undefined) {
    other++;
    continue;
  }
  if (epochMs !== null && p.day !== null) {
    const hour = Number.isInteger(rec.hour) ? rec.hour : new Date(rec.ts).getUTCHours();
    const n = p.perHour.get(hour) ?? 0;
    p.perHour.set(hour, n + 1);
    if (n >= 3_600_000) throw new Error('more than 3.6M requests in one simulated hour');
    rec = { ...rec, wallTs: rec.ts, ts: epochMs + p.day * 86_400_000 + hour * 3_600_000 + n };
    p.lines.push(JSON.stringify(rec));
  } else {
    p.lines.push(line);
  }
}
const counts = {};
for (const p of prefixes) {
  const name = p.prefix.replace(/-+$/, '');
  writeFileSync(join(outDir, `${name}.jsonl`), p.lines.length ? `${p.lines.join('\n')}\n` : '');
  counts[name] = { requests: p.lines.length, impressions: p.lines.reduce((s, l) => s + (JSON.parse(l).shown?.length ?? 0), 0), simDay: epochMs !== null ? p.day : null };
}
console.log(JSON.stringify({ counts, other, malformed, simClockEpochMs: epochMs }));
