#!/usr/bin/env node
/**
 * Build a combined world directory for the pipeline: the base world's days (symlinked) plus shards
 * written by `world label` (one labeled dir per day, each with its own index.json), with one merged
 * index.json. The pipeline (pipeline/gemlite/data.py World) reads: shards[].dir, shards[].day, seed,
 * surfaces, events, bidTypes, userDense, adDense. The header comes from the base world; each
 * labeled index must agree on seed / users / ads / userDense / adDense or we stop.
 * Re-merging into an existing --out is normal: every day link is replaced (atomically: a new link
 * renamed over the old one) and day links of an earlier merge that this one lacks are removed.
 *
 *   node scripts/merge-world.mjs --base out/world-small --out DIR [--upto-day 7] LABELED_DIR...
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const argv = process.argv.slice(2);
const take = (name) => {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
};
const base = resolve(take('base') ?? 'out/world-small');
const out = resolve(take('out') ?? '');
const uptoDay = Number(take('upto-day') ?? 'Infinity');
const labeledDirs = argv.map((d) => resolve(d));
if (!out || labeledDirs.length === 0) {
  console.error('usage: merge-world.mjs --base DIR --out DIR [--upto-day N] LABELED_DIR...');
  process.exit(2);
}
const read = (dir) => JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
const baseIndex = read(base);
mkdirSync(out, { recursive: true });

const dirName = (day) => `day-${String(day).padStart(3, '0')}`;
const shards = [];
const isLink = (path) => {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
};
const linked = new Set();
// A stale link kept from an earlier merge would feed the pipeline the old day, so each link is
// replaced: rename(2) of a fresh link over the old one, so no reader ever sees the day missing.
const link = (target, name) => {
  const dst = join(out, name);
  if (isLink(dst) === false) throw new Error(`${dst} exists and is not a symlink: refusing to replace it (remove it or pick another --out)`);
  const tmp = join(out, `.${name}.tmp-${process.pid}`);
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp, 'dir');
  renameSync(tmp, dst);
  linked.add(name);
};
for (const s of baseIndex.shards) {
  if (s.day > uptoDay) continue;
  link(join(base, s.dir), dirName(s.day));
  shards.push({ ...s, dir: dirName(s.day), source: 'generate' });
}
// 'ads' grows with inventory turnover (4%/day), so a later day's world has more: not compared.
const must = ['seed', 'users', 'advertisers', 'categories'];
const labeler = [];
for (const dir of labeledDirs) {
  const idx = read(dir);
  for (const k of must) {
    if (JSON.stringify(idx[k]) !== JSON.stringify(baseIndex[k])) throw new Error(`${dir}: index.json ${k} = ${JSON.stringify(idx[k])}, base has ${JSON.stringify(baseIndex[k])}`);
  }
  for (const k of ['userDense', 'adDense', 'surfaces', 'events', 'bidTypes']) {
    if (JSON.stringify(idx[k]) !== JSON.stringify(baseIndex[k])) throw new Error(`${dir}: index.json ${k} differs from the base world`);
  }
  for (const s of idx.shards) {
    if (shards.some((x) => x.day === s.day)) throw new Error(`day ${s.day} is in the base world and in ${dir}`);
    link(join(dir, s.dir), dirName(s.day));
    shards.push({ ...s, dir: dirName(s.day), source: 'label' });
  }
  labeler.push({ dir, ...idx.labeler });
}
// Day links of an earlier merge into this --out that this merge does not have.
for (const name of readdirSync(out)) {
  if (/^day-\d+$/.test(name) && !linked.has(name) && isLink(join(out, name))) unlinkSync(join(out, name));
}
shards.sort((a, b) => a.day - b.day);
const merged = { ...baseIndex, days: shards.length, shards, labeler, mergedFrom: { base, labeled: labeledDirs } };
writeFileSync(join(out, 'index.json'), `${JSON.stringify(merged, null, 1)}\n`);
console.log(JSON.stringify({ out, days: shards.map((s) => `${s.day}:${s.source}:${s.impressions}`) }));
