/**
 * `npm run bench`: throughput and latency of POST /v1/rank, end to end over HTTP on 127.0.0.1.
 *
 *  1. the model ceiling: raw session.run of the routed ctr and cvr models in this process;
 *  2. a concurrency sweep (closed loop, autocannon) against the server (a) as configured and
 *     (b) with SKIP_INFERENCE=true (the HTTP + JSON + features floor), both up, in pairs per point
 *     (server first at every other point, floor first at the rest);
 *  3. fixed-rate tests at 70% and 200% of the best sweep rate that refused at most 0.5% (open loop),
 *     shedding at overload;
 *     the open-loop capacity (the highest paced rate served without refusals) and 70% of it;
 *  4. requests with a deadline that cannot be met, under load: they must be rejected early (504).
 *
 * Flags: --repo DIR (default ./models) | --fixtures, --duration S, --concurrency 1,4,16,64,
 * --bodies N, --candidates N, --history N, --surface NAME, --pool-size N, --lead-in S, --probe-duration S, --out DIR, --no-plot, --quick.
 */
import os from 'node:os';
import path from 'node:path';
import { flagChoice, flagList, flagNumber, flagText, parseFlags } from './lib/args.js';
import { makeBodies, withFields } from './lib/bodies.js';
import { measureCeiling, type ModelCeiling } from './lib/ceiling.js';
import { kMaxRefusedShare, kMinDeliveredShare, pickPeak, searchCapacity, type CapacitySearch } from './lib/capacity.js';
import { closedLoop, kDeliveryGraceMs, openLoop, refusedOf, refusedShareOf, scheduledOf, type RunSummary } from './lib/load.js';
import { scrape, serverSide, type ServerSide } from './lib/metrics.js';
import { openRepo, routedModels } from './lib/repo.js';
import { hostInfo, readCpuTimes, stolenShare, stolenText, table, timestamp, writeResults } from './lib/report.js';
import { startServer, type ServerHandle } from './lib/server.js';
import { round, summarize } from './lib/stats.js';
import { projectRoot } from '../src/paths.js';
import type { RankRequest } from '../src/features/request.js';
import { kSurfaces } from '../world/index.js';

const log = (message: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

interface SweepPoint {
  concurrency: number;
  rps: number;
  candPerS: number;
  /** Latency of the 2xx responses: a point that sheds answers its 503s in a few ms. */
  p50Ok: number;
  p90Ok: number;
  p99Ok: number;
  /** Latency of all responses, 503s included (the JSON keeps it; the table and plot show p..Ok). */
  p50: number;
  p90: number;
  p99: number;
  /** Non-2xx + failed requests (timeouts are among the failed ones, counted once). */
  errors: number;
  /** errors over all requests sent. */
  refusedShare: number;
  /** server cand/s divided by the raw model ceiling (all pool workers busy on session.run). */
  ratioToCeiling: number;
  run: RunSummary;
  server: ServerSide;
}

/** Run `body` between two /metrics scrapes and attach the server-side difference. */
async function observed<T extends { summary: RunSummary }>(server: ServerHandle, workers: number, body: () => Promise<T>): Promise<T & { server: ServerSide }> {
  const before = await scrape(server.url);
  const mainBefore = server.mainThreadCpuMs();
  const started = performance.now();
  const result = await body();
  const mainAfter = server.mainThreadCpuMs();
  const after = await scrape(server.url);
  const mainMs = mainBefore === null || mainAfter === null ? null : mainAfter - mainBefore;
  return { ...result, server: serverSide(before, after, (performance.now() - started) / 1000, workers, mainMs) };
}

const describeServer = (s: ServerSide) =>
  `server: ${s.batches} batches, ${s.meanBatchCandidates} cand / ${s.meanBatchRequests} req per batch, workers busy ${(s.workerBusyShare * 100).toFixed(1)}%, ` +
  `shed ${JSON.stringify(s.shedByReason)}, scoring ${JSON.stringify(s.scoringOutcomes)}, ` +
  `CPU ${s.cpuMsPerAnswer ?? '-'} ms/answer (main thread ${s.mainThreadCpuMsPerAnswer ?? '-'}), ${s.coresBusy} cores busy`;

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), ['quick', 'fixtures', 'no-plot']);
  const quick = flags.has('quick');
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  const processes = flagNumber(flags, 'processes', Number(process.env.HTTP_PROCESSES || 1));
  const options = {
    quick,
    repo: flagText(flags, 'repo', './models'),
    fixtures: flags.has('fixtures'),
    durationS: flagNumber(flags, 'duration', quick ? 1 : 10),
    warmupS: flagNumber(flags, 'warmup', quick ? 0.5 : 3),
    concurrency: flagList(flags, 'concurrency', quick ? [1, 4] : [1, 4, 16, 64]),
    bodies: flagNumber(flags, 'bodies', quick ? 12 : 200),
    candidates: flagNumber(flags, 'candidates', 500),
    history: flagNumber(flags, 'history', 256),
    surface: flagChoice(flags, 'surface', kSurfaces, 'feed'),
    format: flagChoice(flags, 'format', ['rows', 'columns'] as const, 'rows'),
    seed: flagNumber(flags, 'seed', 7),
    ceilingS: flagNumber(flags, 'ceiling-seconds', quick ? 0.3 : 3),
    fixedS: flagNumber(flags, 'fixed-duration', quick ? 1.5 : 10),
    // Closed-loop capacity re-checks just before the 70% row and after the overload row.
    recheckS: flagNumber(flags, 'recheck-duration', quick ? 0.5 : 5),
    // Fixed-rate runs first run their schedule this long unmeasured, on the same connections (load.ts).
    leadInS: flagNumber(flags, 'lead-in', quick ? 0.5 : 2),
    // Each step of the open-loop capacity search (lib/capacity.ts), after a 1 s lead-in.
    probeS: flagNumber(flags, 'probe-duration', quick ? 0.5 : 4),
    deadlineMs: flagNumber(flags, 'deadline-ms', 0.5),
    processes,
    // The server's own default (src/config.ts): one core per process's main thread, the rest inference threads.
    poolSize: flags.has('pool-size') ? flagNumber(flags, 'pool-size', 1) : Number(process.env.POOL_SIZE || Math.max(1, Math.floor((cores - processes) / processes))),
    out: path.resolve(flagText(flags, 'out', path.join(projectRoot, 'loadtest', 'results'))),
    plot: !flags.has('no-plot'),
  };
  const stamp = timestamp();
  const startedAt = new Date().toISOString();
  const cpuAtStart = readCpuTimes();
  const repo = openRepo(options.repo, options.fixtures);
  const servers: ServerHandle[] = [];
  const cleanup = async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    repo.cleanup();
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const models = routedModels(repo.dir, options.surface);
    log(`repo ${repo.dir} (${repo.source}); ${options.surface} routes ${models.map((m) => `${m.objective}=${m.name}@${m.version}`).join(', ')}`);
    const bodies = makeBodies({ count: options.bodies, candidates: options.candidates, history: options.history, surface: options.surface, seed: options.seed, format: options.format });
    log(`bodies: ${bodies.stats.count} x ${options.candidates} candidates, history ${options.history}, ${bodies.stats.distinctUsers} users, ${bodies.stats.meanBytes} bytes each, bid types ${JSON.stringify(bodies.stats.bidTypes)}`);
    const next = (i: number) => bodies.buffers[i % bodies.buffers.length];

    // 1. ceiling
    // The server scores ctr on every candidate and cvr on the cpa-bid subset only (rank-service), so
    // the cvr ceiling is measured on the same cpa subsets and weighted by the cpa share of candidates.
    const ceilings: ModelCeiling[] = [];
    const cpaOnly = (r: RankRequest): RankRequest => ({ ...r, candidates: r.candidates.filter((c) => c.bidType === 'cpa') });
    for (const model of models) {
      const source = (bodies.requests as unknown as RankRequest[]).map((r) => (model.objective === 'cvr' ? cpaOnly(r) : r)).filter((r) => r.candidates.length > 0);
      const c = await measureCeiling(model, source, quick ? [1] : [1, 4], options.ceilingS);
      ceilings.push(c);
      log(`ceiling ${model.name}@${model.version}: ${c.points.map((p) => `${p.candidatesPerBatch}/batch ${p.candPerS} cand/s (run p50 ${p.runMsP50} ms)`).join(', ')}; features ${c.encode.msPerRequest} ms/request`);
    }
    const totalCandidates = Object.values(bodies.stats.bidTypes).reduce((a, b) => a + b, 0);
    const cpaShare = (bodies.stats.bidTypes.cpa ?? 0) / Math.max(1, totalCandidates);
    const perCandidateS = (objective: string, pick: (c: ModelCeiling) => number) =>
      ceilings.filter((c) => c.objective === objective).reduce((a, c) => a + 1 / pick(c), 0);
    const combined = (pick: (c: ModelCeiling) => number) => 1 / (perCandidateS('ctr', pick) + cpaShare * perCandidateS('cvr', pick));
    const ceilingSingle = Math.round(combined((c) => c.points[0].candPerS));
    const ceilingBest = Math.round(combined((c) => Math.max(...c.points.map((p) => p.candPerS))));
    const workers = options.poolSize * options.processes;
    const ceilingServer = ceilingBest * workers;
    log(`ceiling ctr+cvr: ${ceilingSingle} cand/s per core (single-request batches), ${ceilingBest} best batch; x ${workers} worker(s) = ${ceilingServer} cand/s`);

    const serverEnv = (skip: boolean): Record<string, string> => ({
      HTTP_PROCESSES: String(options.processes),
      POOL_SIZE: String(options.poolSize),
      ...(skip ? { SKIP_INFERENCE: 'true' } : {}),
    });
    const measurePoint = async (server: ServerHandle, label: string, c: number): Promise<SweepPoint> => {
      const { summary, server: side } = await observed(server, workers, () => closedLoop({ url: server.url, connections: c, durationS: options.durationS, body: next }));
      const candPerS = Math.round(summary.rps * options.candidates);
      const point: SweepPoint = {
        concurrency: c,
        rps: summary.rps,
        candPerS,
        p50Ok: summary.latencyOk.p50,
        p90Ok: summary.latencyOk.p90,
        p99Ok: summary.latencyOk.p99,
        p50: summary.latency.p50,
        p90: summary.latency.p90,
        p99: summary.latency.p99,
        errors: refusedOf(summary),
        refusedShare: round(refusedShareOf(summary), 4),
        ratioToCeiling: round(candPerS / ceilingServer, 3),
        run: summary,
        server: side,
      };
      log(`${label} c=${c}: ${point.rps} rps, ${candPerS} cand/s, 2xx p50 ${point.p50Ok} p90 ${point.p90Ok} p99 ${point.p99Ok} ms (all responses p99 ${point.p99}), errors ${point.errors} ${JSON.stringify(summary.status)}`);
      log(`  ${describeServer(side)}`);
      return point;
    };
    const warm = (server: ServerHandle) => closedLoop({ url: server.url, connections: Math.min(4, Math.max(...options.concurrency)), durationS: options.warmupS, body: next });

    // 2. the server as configured and its floor, both up, each concurrency measured on one and then
    // the other: this VM's speed drifts by tens of percent within minutes, and two sweeps run minutes
    // apart put that drift into the ratio (0.72-0.81 at c=4 that way, 0.80-1.03 in pairs;
    // docs/DESIGN-NOTES.md 16). The idle one of the two costs no measurable CPU. The order alternates
    // per point (server, floor; floor, server; ...): a host speeding up or slowing down through the
    // sweep would otherwise always favour the one measured first.
    const logDir = path.join(options.out, 'logs');
    (await import('node:fs')).mkdirSync(logDir, { recursive: true });
    const server = await startServer({ repo: repo.dir, env: serverEnv(false), logFile: path.join(logDir, `bench-${stamp}-server.log`) });
    servers.push(server);
    log(`server pid ${server.pid} on ${server.url} (rss ${Math.round(server.rssKb() / 1024)} MiB)`);
    const floorServer = await startServer({ repo: repo.dir, env: serverEnv(true), logFile: path.join(logDir, `bench-${stamp}-floor.log`) });
    servers.push(floorServer);
    log(`floor (SKIP_INFERENCE=true) pid ${floorServer.pid} on ${floorServer.url}`);
    await warm(server);
    await warm(floorServer);
    const normal: SweepPoint[] = [];
    const floor: SweepPoint[] = [];
    for (const [i, c] of options.concurrency.entries()) {
      const measureServer = async () => void normal.push(await measurePoint(server, 'server', c));
      const measureFloor = async () => void floor.push(await measurePoint(floorServer, 'floor', c));
      for (const measure of i % 2 === 0 ? [measureServer, measureFloor] : [measureFloor, measureServer]) await measure();
    }
    // The peak that the fixed-rate rows, the capacity search and the re-checks follow: the highest
    // point that refused at most kMaxRefusedShare (lib/capacity.ts pickPeak), beside the highest of all.
    const { peak: best, highest, qualified: peakQualified } = pickPeak(normal);
    const maxRps = best.rps;
    const peakText =
      `max sustainable = ${maxRps} rps at concurrency ${best.concurrency}` +
      (peakQualified
        ? ` (the highest sweep point with at most ${kMaxRefusedShare * 100}% refused; the highest of all: ${highest.rps} rps at c=${highest.concurrency}, ${round(highest.refusedShare * 100, 1)}% refused)`
        : ` (**no sweep point refused at most ${kMaxRefusedShare * 100}%: this is the highest of all, with ${round(best.refusedShare * 100, 1)}% refused**)`);
    log(peakText);

    // 3. fixed rate: 70% (open loop; plus autocannon overallRate for comparison) and 200% (overload).
    // Both rates follow the sweep's peak, as the targets define them. This VM's speed drifts by tens
    // of percent within a minute, so the capacity is measured again at the sweep's best concurrency
    // just before the 70% row and after the overload row, and reported beside them: a fixed-rate row
    // run while the host was slower is then visible as such instead of read as the server's tail.
    const recheck = async (when: string) => {
      const s = (await closedLoop({ url: server.url, connections: best.concurrency, durationS: options.recheckS, body: next })).summary;
      const point = { when, rps: s.rps, ofPeak: round(s.rps / maxRps, 3), p99: s.latency.p99, p99Ok: s.latencyOk.p99, errors: refusedOf(s) };
      log(`capacity ${when}: ${point.rps} rps at c=${best.concurrency} (${point.ofPeak} of the sweep's peak), p99 ${point.p99} ms`);
      return point;
    };
    const recheckBefore = await recheck('before the 70% row');
    const rate70 = Math.max(1, round(maxRps * 0.7, 1));
    const at70run = await observed(server, workers, () => openLoop({ url: server.url, rate: rate70, durationS: options.fixedS, leadInS: options.leadInS, body: next }));
    const at70 = at70run.summary;
    const leadInOf = (run: { leadIn?: { summary: RunSummary } }) => {
      const s = run.leadIn?.summary;
      return s ? { seconds: options.leadInS, p50: s.latency.p50, p99: s.latency.p99, p99Accepted: s.latencyOk.p99, status: s.status } : null;
    };
    const at70leadIn = leadInOf(at70run);
    log(`fixed 70% (${rate70}/s, open loop): ${at70.rps} rps ok, p50 ${at70.latency.p50} p99 ${at70.latency.p99} ms, ${JSON.stringify(at70.status)}; lead-in p99 ${at70leadIn?.p99 ?? '-'} ms`);
    log(`  ${describeServer(at70run.server)}`);
    const at70cannon = (await closedLoop({ url: server.url, connections: 16, overallRate: Math.max(1, Math.round(rate70)), durationS: options.fixedS, body: next })).summary;
    log(`fixed 70% (${Math.round(rate70)}/s, autocannon overallRate, 16 conns): p50 ${at70cannon.latency.p50} p99 ${at70cannon.latency.p99} ms`);
    // The floor at the same offered rate: the tail that HTTP + JSON alone have on this host at that
    // rate, which the server's 70% row cannot beat. On a slow host the floor missed the 15 ms target
    // there too (p99 27-44 ms at 205/s, docs/DESIGN-NOTES.md 22).
    const at70floorRun = await observed(floorServer, workers, () => openLoop({ url: floorServer.url, rate: rate70, durationS: options.fixedS, leadInS: options.leadInS, body: next }));
    const at70floor = at70floorRun.summary;
    log(`fixed 70% (${rate70}/s, open loop) against the floor: p50 ${at70floor.latency.p50} p99 ${at70floor.latency.p99} ms, ${JSON.stringify(at70floor.status)}`);
    log(`  ${describeServer(at70floorRun.server)}`);
    // The paced capacity and 70% of it, on the server and then on the floor at that same rate: the
    // closed-loop peak overstates what the host serves when requests arrive on a schedule
    // (docs/DESIGN-NOTES.md 23 and 24).
    const capacity: CapacitySearch = await searchCapacity(maxRps, async (rate) => {
      const { summary } = await openLoop({ url: server.url, rate, durationS: options.probeS, leadInS: Math.min(1, options.leadInS), body: next });
      log(`capacity probe ${rate}/s (open loop): ${summary.deliveredRps} 2xx/s delivered within the window (${summary.rps} ok rps with the drain), non-2xx ${summary.non2xx}, errors ${summary.errors}, dropped ${summary.clientDropped}, p99 ${summary.latency.p99} ms`);
      return summary;
    });
    log(`open-loop capacity: ${capacity.rps ?? 'none found'}${capacity.ofPeak === null ? '' : ` req/s (${capacity.ofPeak} of the closed-loop peak)`}`);
    const rate70paced = capacity.rps === null ? null : Math.max(1, round(capacity.rps * 0.7, 1));
    const pacedRow = async (target: ServerHandle, label: string) => {
      if (rate70paced === null) return null;
      const run = await observed(target, workers, () => openLoop({ url: target.url, rate: rate70paced, durationS: options.fixedS, leadInS: options.leadInS, body: next }));
      log(`fixed 70% of the open-loop capacity (${rate70paced}/s) against the ${label}: p50 ${run.summary.latency.p50} p99 ${run.summary.latency.p99} ms, ${JSON.stringify(run.summary.status)}`);
      log(`  ${describeServer(run.server)}`);
      return run;
    };
    const at70pacedRun = await pacedRow(server, 'server');
    const at70pacedFloorRun = await pacedRow(floorServer, 'floor');
    await floorServer.stop();
    const rate200 = Math.max(2, round(maxRps * 2, 1));
    const at200run = await observed(server, workers, () => openLoop({ url: server.url, rate: rate200, durationS: options.fixedS, leadInS: options.leadInS, body: next, maxInflight: 2048, timeoutMs: 10_000 }));
    const at200 = at200run.summary;
    const count = (s: RunSummary, code: number) => s.status[code] ?? 0;
    const overload = {
      targetRate: rate200,
      run: at200,
      shed503: count(at200, 503),
      shed429: count(at200, 429),
      deadline504: count(at200, 504),
      // Over every request scheduled: one that failed or that the client dropped was not served either.
      scheduled: scheduledOf(at200),
      errors: at200.errors,
      timeouts: at200.timeouts,
      clientDropped: at200.clientDropped ?? 0,
      shedShare: round((count(at200, 503) + count(at200, 429)) / Math.max(1, scheduledOf(at200)), 4),
      rejectedShare: round(refusedShareOf(at200), 4),
      goodputRps: at200.rps,
      p99Accepted: at200.latencyOk.p99,
      p50Accepted: at200.latencyOk.p50,
      // The lead-in is the transient while a cold client floods the server with new connections and
      // admission control ramps up to sustained overload; the run above is the steady state after it.
      leadIn: leadInOf(at200run),
      server: at200run.server,
    };
    log(`overload 200% (${rate200}/s): goodput ${at200.rps} rps, shed ${(overload.shedShare * 100).toFixed(1)}% (503 ${overload.shed503}, 429 ${overload.shed429}), 504 ${overload.deadline504}, errors ${overload.errors} (timeouts ${overload.timeouts}), dropped ${overload.clientDropped}, p99 accepted ${overload.p99Accepted} ms (lead-in: ${overload.leadIn?.p99Accepted ?? '-'} ms)`);
    log(`  ${describeServer(at200run.server)}`);
    const recheckAfter = await recheck('after the overload row');
    const rechecks = [recheckBefore, recheckAfter];
    const drifted = rechecks.some((r) => r.ofPeak < 0.85 || r.ofPeak > 1.15);

    // 4. unmeetable deadline under load: a closed-loop background plus an open-loop stream of deadline
    // requests. The background (4 connections: the peak on 2 cores) stays inside admission control's
    // in-flight bound, so deadline requests are admitted and meet the deadline check, not the 503 shed.
    const deadlineBodies = bodies.buffers.map((b) => withFields(b, { deadlineMs: options.deadlineMs }));
    const deadlineRate = Math.max(2, round(Math.min(50, maxRps * 0.25), 1));
    const deadlineRun = await observed(server, workers, async () => {
      const background = closedLoop({ url: server.url, connections: Math.min(4, Math.max(...options.concurrency)), durationS: options.fixedS, body: next });
      const stream = openLoop({ url: server.url, rate: deadlineRate, durationS: Math.max(0.5, options.fixedS - 0.5), body: (i) => deadlineBodies[i % deadlineBodies.length] });
      const [bg, dl] = await Promise.all([background, stream]);
      return { summary: dl.summary, bg, dl };
    });
    const { bg, dl, server: deadlineSide } = deadlineRun;
    const late = dl.samples.filter((s) => s.status === 504).map((s) => s.latency);
    const deadline = {
      deadlineMs: options.deadlineMs,
      rate: deadlineRate,
      sent: dl.summary.sent,
      status: dl.summary.status,
      rejected504: late.length,
      latency504: summarize(late),
      backgroundConcurrency: bg.summary.connections,
      background: { rps: bg.summary.rps, p50: bg.summary.latency.p50, p99: bg.summary.latency.p99, status: bg.summary.status },
      server: deadlineSide,
    };
    log(`deadline ${options.deadlineMs} ms: ${late.length}/${dl.summary.completed} answered 504, their p50 ${deadline.latency504.p50} p99 ${deadline.latency504.p99} ms (background p99 ${bg.summary.latency.p99} ms)`);
    const rssKb = server.rssKb();
    await server.stop();

    const rows = normal.map((p, i) => ({
      concurrency: p.concurrency,
      rps: p.rps,
      candPerS: p.candPerS,
      p50Ok: p.p50Ok,
      p90Ok: p.p90Ok,
      p99Ok: p.p99Ok,
      errors: p.errors,
      ratioToCeiling: p.ratioToCeiling,
      floorRps: floor[i].rps,
      floorP99Ok: floor[i].p99Ok,
      serverOverFloorRps: round(p.rps / floor[i].rps, 3),
      cpuMsPerAnswer: p.server.cpuMsPerAnswer,
      floorCpuMsPerAnswer: floor[i].server.cpuMsPerAnswer,
    }));
    const result = {
      kind: 'bench',
      startedAt,
      finishedAt: new Date().toISOString(),
      quick,
      host: { ...hostInfo(), stolenShare: stolenShare(cpuAtStart, readCpuTimes()) },
      options,
      repo: { dir: repo.source === 'fixtures' ? '(fixtures)' : path.relative(process.cwd(), repo.dir) || '.', source: repo.source, models: models.map(({ objective, name, version }) => ({ objective, name, version })) },
      server: { processes: options.processes, poolSize: options.poolSize, rssMiBAfterLoad: Math.round(rssKb / 1024) },
      bodies: bodies.stats,
      ceiling: { models: ceilings, cpaShare, combinedCandPerSPerCore: ceilingSingle, combinedBestBatchCandPerS: ceilingBest, serverCeilingCandPerS: ceilingServer },
      sweep: { normal, floor },
      table: rows,
      maxSustainable: {
        rps: maxRps,
        concurrency: best.concurrency,
        refusedShare: best.refusedShare,
        // false: no sweep point refused at most kMaxRefusedShare, and this is the highest of all.
        qualified: peakQualified,
        highest: { rps: highest.rps, concurrency: highest.concurrency, refusedShare: highest.refusedShare },
        rechecks,
        drifted,
      },
      fixedRate: {
        at70: { targetRate: rate70, run: at70, server: at70run.server },
        at70autocannon: { targetRate: Math.round(rate70), run: at70cannon },
        at70floor: { targetRate: rate70, run: at70floor, server: at70floorRun.server },
        at70ofOpenLoopCapacity: at70pacedRun && { targetRate: rate70paced, run: at70pacedRun.summary, server: at70pacedRun.server },
        at70ofOpenLoopCapacityFloor: at70pacedFloorRun && { targetRate: rate70paced, run: at70pacedFloorRun.summary, server: at70pacedFloorRun.server },
      },
      openLoopCapacity: capacity,
      overload,
      deadline,
    };

    const header = ['conc', 'rps', 'cand/s', 'p50 2xx ms', 'p90 2xx ms', 'p99 2xx ms', 'errors', 'x ceiling', 'floor rps', 'floor p99 2xx ms', 'x floor', 'CPU ms/answer', 'floor CPU ms/answer'];
    const text = table(
      header,
      rows.map((r) => [r.concurrency, r.rps, r.candPerS, r.p50Ok, r.p90Ok, r.p99Ok, r.errors, r.ratioToCeiling, r.floorRps, r.floorP99Ok, r.serverOverFloorRps, r.cpuMsPerAnswer ?? '-', r.floorCpuMsPerAnswer ?? '-']),
    );
    const ceilingText = table(
      ['model', 'cand/batch', 'cand/s (1 thread)', 'run p50 ms', 'run p99 ms', 'features ms/req'],
      ceilings.flatMap((c) => c.points.map((p) => [`${c.objective} ${c.name}@${c.version}`, p.candidatesPerBatch, p.candPerS, p.runMsP50, p.runMsP99, c.encode.msPerRequest])),
    );
    const clientLag = (s: RunSummary) => (s.clientLagP99Ms === undefined ? '-' : `${s.clientLagP99Ms} / ${s.clientLagMaxMs}`);
    // One open-loop run as a row of the scenario table; the lead-in's statuses only where the onset matters.
    const openLoopRow = (name: string, rate: number, run: { summary: RunSummary; server: ServerSide; leadIn?: { summary: RunSummary } }, leadInStatuses: boolean) => {
      const s = run.summary;
      const leadIn = leadInOf(run);
      return [name, rate, s.rps, s.latency.p50, s.latency.p99, s.latencyOk.p99, run.server.serverP99AtMostMs ?? '-', clientLag(s), s.non2xx, s.errors, s.timeouts, s.clientDropped ?? 0, JSON.stringify(s.status), leadIn?.p99Accepted ?? '-', leadInStatuses && leadIn ? JSON.stringify(leadIn.status) : '-'];
    };
    const scenarioText = table(
      ['scenario', 'offered /s', 'ok rps', 'p50 ms', 'p99 ms', 'p99 ok ms', 'server p99 <= ms', 'client lag p99 / max ms', 'non-2xx', 'errors', 'of which timeouts', 'client-dropped', 'statuses', 'lead-in p99 ok ms', 'lead-in statuses'],
      [
        openLoopRow('70% open loop', rate70, at70run, true),
        openLoopRow('70% open loop, floor', rate70, at70floorRun, false),
        ['70% autocannon overallRate', Math.round(rate70), at70cannon.rps, at70cannon.latency.p50, at70cannon.latency.p99, at70cannon.latencyOk.p99, '-', '-', at70cannon.non2xx, at70cannon.errors, at70cannon.timeouts, '-', JSON.stringify(at70cannon.status), '-', '-'],
        ...(at70pacedRun ? [openLoopRow('70% of open-loop capacity', rate70paced!, at70pacedRun, false)] : []),
        ...(at70pacedFloorRun ? [openLoopRow('same rate, floor', rate70paced!, at70pacedFloorRun, false)] : []),
        openLoopRow('200% open loop', rate200, at200run, true),
        [`deadline ${options.deadlineMs} ms (+bg c=${bg.summary.connections})`, deadlineRate, dl.summary.rps, dl.summary.latency.p50, dl.summary.latency.p99, dl.summary.latencyOk.p99, '-', clientLag(dl.summary), dl.summary.non2xx, dl.summary.errors, dl.summary.timeouts, dl.summary.clientDropped ?? 0, JSON.stringify(dl.summary.status), '-', '-'],
      ],
    );
    const sideRows: Array<[string, ServerSide]> = [
      ...normal.map((p) => [`server c=${p.concurrency}`, p.server] as [string, ServerSide]),
      ...floor.map((p) => [`floor c=${p.concurrency}`, p.server] as [string, ServerSide]),
      ['70% open loop', at70run.server],
      ['70% open loop, floor', at70floorRun.server],
      ...(at70pacedRun ? [['70% of open-loop capacity', at70pacedRun.server] as [string, ServerSide]] : []),
      ...(at70pacedFloorRun ? [['same rate, floor', at70pacedFloorRun.server] as [string, ServerSide]] : []),
      ['200% open loop', at200run.server],
      ['deadline + background', deadlineSide],
    ];
    const sideText = table(
      ['run', 'server mean ms', 'server p99 <= ms', 'batches', 'cand/batch', 'req/batch', 'workers busy', 'CPU ms/answer', 'main thread ms/answer', 'cores busy', 'responses by code', 'shed (reason)', 'scoring outcomes'],
      sideRows.map(([name, x]) => [name, x.serverMeanMs, x.serverP99AtMostMs ?? '-', x.batches, x.meanBatchCandidates, x.meanBatchRequests, x.workerBusyShare, x.cpuMsPerAnswer ?? '-', x.mainThreadCpuMsPerAnswer ?? '-', x.coresBusy, JSON.stringify(x.responsesByCode), JSON.stringify(x.shedByReason), JSON.stringify(x.scoringOutcomes)]),
    );
    const markdown = [
      `# Benchmark ${startedAt}${quick ? ' (quick mode: numbers are a smoke test only)' : ''}`,
      '',
      `Host: ${result.host.cpus} CPUs (${result.host.cpuModel}), node ${result.host.node}, load average at end ${result.host.loadavg.join(' ')}. ${stolenText(result.host.stolenShare)} ` +
        `Server: ${options.processes} HTTP process(es) x ${options.poolSize} inference worker(s). Repo: ${result.repo.dir} (${models.map((m) => `${m.objective}=${m.name}@${m.version}`).join(', ')}).`,
      `Bodies: ${bodies.stats.count} distinct ${options.surface} requests in ${options.format} form, ${options.candidates} candidates, history ${options.history}, ${bodies.stats.distinctUsers} users, ${bodies.stats.meanBytes} bytes; bid types ${JSON.stringify(bodies.stats.bidTypes)} (cvr scores the cpa subset: ${(cpaShare * 100).toFixed(0)}% of candidates).`,
      '',
      '## Concurrency sweep (closed loop, autocannon, ' + options.durationS + ' s per point)',
      '',
      text,
      '',
      `rps = 2xx responses/s; cand/s = rps x ${options.candidates}; p50/p90/p99 over the 2xx responses only (the JSON also has them over all responses, whose fast 503s pull them down); errors = non-2xx + failed requests; x ceiling = cand/s / ${ceilingServer} ` +
        `(raw session.run ctr+cvr, ${workers} worker(s)); floor = the same server with SKIP_INFERENCE=true; x floor = rps / floor rps; ` +
        `CPU ms/answer = the server's CPU time (all threads) per request answered with any status (the 503s of an overloaded point cost little), from process_cpu_seconds_total: it moves far less with the host's speed than rps does.`,
      '',
      '## Model ceiling (raw onnxruntime-node session.run, intraOpNumThreads 1)',
      '',
      ceilingText,
      '',
      `Combined ctr + cvr: ${ceilingSingle} cand/s per core with single-request batches, ${ceilingBest} with the best batch size.`,
      '',
      `## Fixed rate, overload and deadline (${peakText})`,
      '',
      scenarioText,
      '',
      `Overload (200%), over all ${overload.scheduled} requests scheduled: ${(overload.shedShare * 100).toFixed(1)}% shed with 503/429, ${(overload.rejectedShare * 100).toFixed(1)}% not served 2xx in all (504: ${overload.deadline504}; failed ${overload.errors}, of which timeouts ${overload.timeouts}; dropped by the client ${overload.clientDropped}); p99 of accepted requests ${overload.p99Accepted} ms (p50 ${overload.p50Accepted}).`,
      `The open-loop rows measure ${options.fixedS} s after a ${options.leadInS} s lead-in at the same rate on the same connections (the onset: a cold client opening its connections, admission control reaching sustained overload); the lead-in columns are that onset, left out of the row. Server-side rows below include the lead-in. ` +
        `server p99 <= ms: the server's own p99 (arrival to response, admission wait and body parsing included; parse to response before 2026-12-03) from its histogram, an upper bound, 2xx only; client lag: how late the load generator sent each request against its schedule (p99 / max; it shares the cores), which its latencies include; errors: requests with no complete response (socket errors, cut-off bodies, timeouts); client-dropped: sends skipped with the client's in-flight limit reached.`,
      `Open-loop capacity (the highest paced rate with at most ${kMaxRefusedShare * 100}% refused (non-2xx, failed or dropped) and at least ${kMinDeliveredShare * 100}% of the rate answered 2xx within the probe's window plus ${kDeliveryGraceMs} ms; ${options.probeS} s probes down from the closed-loop peak in steps of 10%, then one halfway back): ` +
        (capacity.rps === null ? 'none of the probes was sustained.' : `${capacity.rps} req/s, ${capacity.ofPeak} of the closed-loop peak. `) +
        `Probes: ${capacity.probes.map((p) => `${p.rate}/s ${p.sustained ? 'kept up' : 'did not'} (${p.deliveredRps} 2xx/s within the window, ${p.non2xx} non-2xx, ${p.errors} failed, ${p.clientDropped} dropped)`).join('; ')}.`,
      `Deadline ${options.deadlineMs} ms: ${deadline.rejected504} of ${dl.summary.completed} answered 504; 504 latency p50 ${deadline.latency504.p50} ms, p99 ${deadline.latency504.p99} ms.`,
      `Capacity re-checked (closed loop, ${options.recheckS} s at c=${best.concurrency}): ${rechecks.map((r) => `${r.when} ${r.rps} rps (${r.ofPeak} of the sweep's peak)`).join('; ')}.` +
        (drifted ? ' **The host ran more than 15% away from the sweep\'s speed during the fixed-rate rows: read them against these re-checks.**' : ''),
      '',
      '## Server side (from /metrics, difference over each run)',
      '',
      sideText,
      '',
      'server mean ms = rank_request_duration_ms (arrival to response: admission wait and parsing included since 2026-12-03; excludes time in socket buffers; 2xx responses only); server p99 <= ms = upper bound of the histogram bucket holding its p99 (the buckets are coarse; - past the last finite bucket); workers busy = session.run time / (wall x workers); CPU ms/answer = server CPU time (all threads) per answered request, any status; main thread ms/answer = the same for the HTTP thread alone (/proc, one process only); cores busy = CPU time / wall time; ' +
        'shed (reason) = rank_shed_total (before body parsing: inflight = bound full with no waiting line, line_full = waiting line full, wait_timeout = no place within the wait, event_loop = lag controller; deadline = early 504); scoring outcomes = model_requests_total (SERVER_OVERLOADED = pool queue full, MAX_QUEUED_CANDIDATES).',
      '',
    ].join('\n');
    const written = writeResults(options.out, 'bench', stamp, result, markdown + (options.plot ? `![bench](bench-latest.png)\n` : ''), options.plot);
    process.stdout.write(`\n${text}\n\n${ceilingText}\n\n${scenarioText}\n\n`);
    log(stolenText(result.host.stolenShare));
    log(`wrote ${written.json}, ${written.markdown}${written.png ? `, ${written.png}` : ''}${written.plotError ? ` (plot failed: ${written.plotError})` : ''}`);
  } finally {
    await cleanup();
  }
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
