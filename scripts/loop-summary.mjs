#!/usr/bin/env node
/**
 * Print the numbers of one closed-loop run (scripts/closed-loop.sh) from its work dir.
 *   node scripts/loop-summary.mjs WORK TASK OLD_VERSION NEW_VERSION STATE DAY...
 * Served-model AUC per labeled day comes from the labeled shard alone: the labeler keeps each
 * impression's served pctr (imp_served_pctr.npy) next to its sampled click. A join of the log to the
 * shard on (user, ad, ts) matched nothing once the labeler stamped the simulated clock.
 * OLD_VERSION must be the version that served the labeled days (closed-loop.sh reads rollout.json's
 * stable): it is checked against the shards' imp_model_version, and a mismatch fails the summary
 * (exit 1) rather than print a comparison with a version that served nothing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [work, task, oldV, newV, state, ...days] = process.argv.slice(2);
const { parseNpy, npyValues } = await import(new URL('../dist/world/npy.js', import.meta.url));
const { hashId } = await import(new URL('../dist/src/features/id-hash.js', import.meta.url));
const json = (...p) => {
  const f = join(work, ...p);
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : null;
};
const text = (...p) => {
  const f = join(work, ...p);
  return existsSync(f) ? readFileSync(f, 'utf8').trim() : null;
};
const f4 = (x) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : Number(x).toFixed(4));
const pct = (x) => `${(100 * x).toFixed(1)}%`;
const npy = (dir, name) => Array.from(npyValues(parseNpy(readFileSync(join(dir, `${name}.npy`)))), Number);

function auc(scores, labels) {
  const idx = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let pos = 0, neg = 0, rankSum = 0;
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1]] === scores[idx[i]]) j++;
    const avg = (i + j + 2) / 2; // average 1-based rank of ties
    for (let k = i; k <= j; k++) if (labels[idx[k]]) { pos++; rankSum += avg; } else neg++;
    i = j + 1;
  }
  return pos && neg ? (rankSum - (pos * (pos + 1)) / 2) / (pos * neg) : NaN;
}

/** The versions of `task` that scored a labeled shard's impressions (null: the shard does not say). */
function servedVersions(dir, models) {
  try {
    const model = npy(dir, 'imp_model'), version = npy(dir, 'imp_model_version');
    return [...new Set(version.filter((_, i) => models[model[i]] === task))].sort((a, b) => a - b);
  } catch {
    return null;
  }
}

/** The user of every impression of a labeled shard (null: the shard lacks user_id / imp_user_row). */
function impressionUsers(dir) {
  try {
    const userId = npy(dir, 'user_id'), row = npy(dir, 'imp_user_row');
    return row.map((r) => userId[r]);
  } catch {
    return null;
  }
}

/**
 * The pipeline measures a new version's lineage.metrics on the report half of the eval users only
 * (pipeline/gemlite/evaluate.py report_half: hashId(user, evalSplitSalt, 3) == 2); the other half chose
 * the variant. The served version is compared on the same users' impressions.
 */
const inReportHalf = (salt) => (userId) => hashId(userId, salt, 3) === 2;

const lines = [];
const mismatches = [];
const out = (s = '') => lines.push(s);
out(`CLOSED LOOP SUMMARY  (${task}: v${oldV} serving -> v${newV} ${state})`);
out('');
out('served traffic and labels (feed surface, topK shown per request):');
out('  day  requests  ok    503-retries  impressions  labeled  click-rate  oracle-mean-p  served-mean-pctr  served-AUC  oracle-AUC');
let totalImp = 0, totalReq = 0;
const joined = {}; // day -> {sc, lb}
for (const d of days) {
  const t = json('state', `traffic-d${d}.json`) ?? {};
  const idx = json('labeled', `d${d}`, 'index.json');
  const shard = idx?.shards?.[0] ?? {};
  const feed = shard.perSurface?.feed ?? {};
  // mean served pctr from the log; the served pctr and sampled click per impression from the shard
  let pctrSum = 0, pctrN = 0;
  for (const l of (text('logs', `d${d}.jsonl`) ?? '').split('\n')) {
    if (!l) continue;
    for (const s of JSON.parse(l).shown) {
      pctrSum += s.pctr; pctrN++;
    }
  }
  let servedAuc = NaN;
  const versions = shard.dir ? servedVersions(join(work, 'labeled', `d${d}`, shard.dir), idx?.labeler?.models ?? []) : null;
  if (versions && versions.some((v) => String(v) !== String(oldV))) {
    mismatches.push(`day ${d} impressions were served by ${task} v${versions.join('/')} (imp_model_version), not v${oldV}`);
  }
  try {
    const dir = join(work, 'labeled', `d${d}`, shard.dir);
    const served = npy(dir, 'imp_served_pctr'), click = npy(dir, 'imp_click');
    const users = impressionUsers(dir);
    const sc = [], lb = [], uid = [];
    for (let i = 0; i < served.length; i++) if (!Number.isNaN(served[i])) { sc.push(served[i]); lb.push(click[i]); uid.push(users?.[i]); }
    if (sc.length === served.length) { servedAuc = auc(sc, lb); joined[d] = { sc, lb, uid: users ? uid : null }; }
    else out(`  (day ${d}: ${served.length - sc.length} of ${served.length} impressions have no served pctr in the log; served AUC skipped)`);
  } catch (e) {
    out(`  (day ${d}: served AUC not computed: ${e.message})`);
  }
  totalImp += shard.impressions ?? 0;
  totalReq += t.requests ?? 0;
  out(`  ${String(d).padStart(3)}  ${String(t.requests).padStart(8)}  ${String(t.status?.['200'] ?? 0).padStart(4)}  ${String(t.retried503 ?? 0).padStart(11)}  ` +
    `${String(shard.impressions).padStart(11)}  ${String(idx?.labeler?.labeled).padStart(7)}  ${f4(shard.clickRate).padStart(10)}  ` +
    `${f4(feed.meanPClick).padStart(13)}  ${f4(pctrN ? pctrSum / pctrN : NaN).padStart(16)}  ${f4(servedAuc).padStart(10)}  ${f4(shard.oracle?.clickAuc).padStart(10)}`);
}
out(`  total: ${totalReq} requests, ${totalImp} impressions logged and labeled`);
out('  (click-rate = sampled clicks / impressions; oracle-mean-p = mean true P(click) of the shown ads;');
out('   served-* = the serving model\'s pctr on the same impressions; AUCs on sampled clicks)');

const merge = json('state', 'merge.json');
out('');
out(`combined world: ${merge?.days?.length} days (${merge?.days?.join(', ')})`);
const log = text('state', 'pipeline.log') ?? '';
// The run's metadata says which days the teacher was trained on: a reused teacher's own days, not
// this run's split (the log line's "days: teacher" is the split a new teacher would have used).
const meta = json('run', 'results.json')?.meta;
const list = (x) => JSON.stringify(x ?? null).replace(/,/g, ', ');
const dl = log.split('\n').find((l) => l.includes('days: teacher'));
if (meta) out(`pipeline split: teacher ${list(meta.teacherDays)} (${meta.teacherVersion}) students ${list(meta.studentDays)} adapter ${list(meta.adapterDays)} eval ${list(meta.evalDays)}`);
else if (dl) out(`pipeline split: ${dl.replace(/^\[[^\]]*\]\s*/, '')}`);
out(`pipeline wall time: ${text('state', 'pipeline-seconds')} s`);

const man = json('repo', task, newV, 'manifest.json');
const manOld = json('repo', task, oldV, 'manifest.json');
const m = man?.lineage?.metrics ?? {};
out('');
out(`new version ${task} v${newV}: variant ${man?.lineage?.distillation}, training days ${man?.lineage?.trainingWindow?.fromDay}-${man?.lineage?.trainingWindow?.toDay}, teacher ${man?.lineage?.teacherVersion}`);
out(`  offline (eval days ${m.evalDays}, ${m.evalRows} rows): AUC ${f4(m.auc)}  NE ${f4(m.ne)}  logloss ${f4(m.logloss)}  oracle AUC ${f4(m.oracleAuc)}  teacher AUC ${f4(m.teacherAuc)}  calibration (pred/obs) ${f4(m.calibration)}`);
const [e0, e1] = String(m.evalDays ?? '').split('-').map(Number);
const evalJoined = Object.entries(joined).filter(([d]) => Number(d) >= e0 && Number(d) <= e1);
if (mismatches.length) {
  out(`  NO comparison with v${oldV}: ${mismatches.join('; ')}`);
} else if (evalJoined.length && typeof m.evalSplitSalt === 'number' && evalJoined.some(([, x]) => !x.uid)) {
  out(`  NO comparison with v${oldV}: v${newV}'s metrics cover the report half of the eval users, and the labeled shards do not say which user each impression belongs to`);
} else if (evalJoined.length) {
  const keep = typeof m.evalSplitSalt === 'number' ? inReportHalf(m.evalSplitSalt) : () => true;
  const sc = [], lb = [];
  for (const [, x] of evalJoined) x.sc.forEach((s, i) => { if (keep(x.uid?.[i])) { sc.push(s); lb.push(x.lb[i]); } });
  const users = typeof m.evalSplitSalt === 'number' ? ' of the report-half users' : '';
  out(`  same impressions${users}, as served by v${oldV} (pctr in the impression log): AUC ${f4(auc(sc, lb))} on ${sc.length} rows` +
    ` -> offline delta v${newV} - v${oldV}: ${m.auc != null ? (m.auc - auc(sc, lb) >= 0 ? '+' : '') + (m.auc - auc(sc, lb)).toFixed(4) : 'n/a'}`);
}
const mo = manOld?.lineage?.metrics ?? {};
out(`  for reference v${oldV} (bundled; its own eval days ${mo.evalDays} of the original world): AUC ${f4(mo.auc)}  NE ${f4(mo.ne)}  oracle AUC ${f4(mo.oracleAuc)}`);
const pr = log.split('\n').filter((l) => /published version|rollout.json updated/.test(l));
for (const l of pr) out(`  pipeline: ${l.replace(/^\[[^\]]*\]\s*/, '')}`);

const after = json('state', 'model-after.json');
const v = after?.versions?.find((x) => String(x.version) === String(newV));
out('');
out(`hot swap: v${newV} state ${v?.state} ${text('state', 'swap-ms')} ms after the pipeline run ended (it published into the served repo with --rollout keep)${v?.reason ? `; reason: ${v.reason}` : ''}`);
const gate = v?.gate;
if (gate) {
  const checks = gate.checks ?? gate;
  out(`  gate ${gate.passed === false ? 'FAILED' : 'passed'}: ${gate.msPerCandidate !== undefined ? `${(gate.msPerCandidate * 1000).toFixed(2)} us/candidate, ` : ''}score mean logit ${gate.scoreMean?.toFixed?.(3)}`);
  if (Array.isArray(checks)) for (const c of checks) out(`    ${c.passed === false ? 'FAIL' : 'ok  '} ${(c.name ?? '').padEnd(20)} ${c.detail ?? ''}`);
  else for (const [k, c] of Object.entries(checks)) out(`  gate ${k}: ${JSON.stringify(c)}`);
}

const tc = json('state', 'traffic-canary.json');
if (tc) {
  const arms = tc.arms?.[task] ?? {};
  const total = Object.values(arms).reduce((s, x) => s + x, 0);
  const can = Object.entries(arms).filter(([k]) => k.endsWith(':canary')).reduce((s, [, x]) => s + x, 0);
  const patch = json('state', 'patch.json');
  out('');
  out(`canary: PATCH flags -> ${JSON.stringify(patch?.flags)}`);
  out(`  ${tc.requests} requests (status ${JSON.stringify(tc.status)}), ${task} arms ${JSON.stringify(arms)}: canary share ${total ? pct(can / total) : 'n/a'} (target ${JSON.stringify(patch?.flags?.canary?.percent)}%, bucketed by user id)`);
  const verdicts = json('state', 'canary-verdicts.json');
  const end = json('state', 'models-end.json')?.models?.[task];
  out(`  serving at the end: ${JSON.stringify(end?.serving)}; canary verdicts: ${JSON.stringify(verdicts?.verdicts ?? [])}`);
  const win = verdicts?.windows?.[task];
  if (win) out(`  canary monitor window: ${JSON.stringify(win)} (a verdict needs CANARY_MIN_REQUESTS, default 200, on the canary arm)`);
}
out('');
out(`total wall time: ${text('state', 'total-seconds')} s`);
console.log(lines.join('\n'));
if (mismatches.length) {
  console.error(`loop-summary: OLD_VERSION v${oldV} did not serve the labeled days: ${mismatches.join('; ')}. ` +
    'Pass the version rollout.json routed as stable while serving (scripts/stable-version.mjs).');
  process.exitCode = 1;
}
