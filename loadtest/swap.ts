/**
 * `npm run bench:swap`: hot swap under steady traffic, against a private copy of a model repository.
 *
 * Phase 1 (one open-loop stream at a steady rate, every response inspected):
 *   steady state -> publish a new version of the ctr model atomically (.tmp-* + fsync + rename) and
 *   wait until the admin API shows it ready -> canary at 20% (share measured from responses) ->
 *   promote to stable -> roll back to the old version. Each step's window p99 is compared with the
 *   steady-state p99; every response must be 2xx.
 * Phase 2: N publish / wait-ready / set-stable cycles under lighter traffic, the loader unloading
 *   old versions, with the server's RSS sampled before, every K cycles and after (growth trend).
 *
 * Flags: --repo DIR (default ./models) | --fixtures, --model NAME (default: the surface's ctr model),
 * --surface feed, --cycles 100, --rss-every 10, --load-share 0.6, --cycle-load-share 0.3,
 * --canary-percent 20, --steady-seconds, --window-seconds, --canary-seconds, --probe-seconds,
 * --bodies, --candidates, --history, --pool-size, --max-seconds, --out DIR, --no-plot, --quick.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { flagChoice, flagNumber, flagText, parseFlags } from './lib/args.js';
import { makeBodies, userIdTemplates } from './lib/bodies.js';
import { closedLoop, openLoop, windowOf, type Sample } from './lib/load.js';
import { copyRepo, openRepo, publishVersion, readRolloutFile, versionsOnDisk } from './lib/repo.js';
import { hostInfo, readCpuTimes, stolenShare, stolenText, table, timestamp, writeResults } from './lib/report.js';
import { startServer, type ServerHandle } from './lib/server.js';
import { scrape, serverSide } from './lib/metrics.js';
import { linearFit, round, summarize } from './lib/stats.js';
import { projectRoot } from '../src/paths.js';
import { kSurfaces } from '../world/index.js';

const log = (message: string) => process.stderr.write(`[swap ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const kToken = 'loadtest-admin-token-0123456789';
const kUserBase = 50_000_000;

interface AdminVersion {
  version: number;
  state: string;
  reason: string | null;
}

class Admin {
  constructor(readonly url: string) {}

  async call<T>(method: string, route: string, body?: unknown): Promise<T> {
    return (await this.#send<T>(method, route, body, false))!;
  }

  /** One version's entry, or null while the server has not discovered it (404). */
  version(model: string, version: number): Promise<AdminVersion | null> {
    return this.#send<AdminVersion>('GET', `/admin/models/${model}/versions/${version}`, undefined, true);
  }

  async #send<T>(method: string, route: string, body: unknown, nullOn404: boolean): Promise<T | null> {
    const response = await fetch(`${this.url}${route}`, {
      method,
      headers: { authorization: `Bearer ${kToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (nullOn404 && response.status === 404) return null;
    if (!response.ok) throw new Error(`${method} ${route} answered ${response.status}: ${text.slice(0, 400)}`);
    return JSON.parse(text) as T;
  }

  async versions(model: string): Promise<AdminVersion[]> {
    const listing = await this.call<{ models: Record<string, { versions: AdminVersion[] }> }>('GET', '/admin/models');
    return listing.models[model]?.versions ?? [];
  }

  /**
   * Poll the version's own admin entry until it is ready (a rescan is requested if the watcher is
   * slow). Not the whole listing: that grows with every version kept on disk, and polling it every
   * 50 ms cost the server ~1 MB of JSON and 8-15 ms of main-thread work per poll with 600 versions kept.
   */
  async waitReady(model: string, version: number, timeoutMs = 60_000): Promise<{ ms: number; rescanned: boolean }> {
    const started = performance.now();
    let rescanned = false;
    for (;;) {
      const entry = await this.version(model, version);
      if (entry?.state === 'ready') return { ms: performance.now() - started, rescanned };
      if (entry?.state === 'failed') throw new Error(`${model}@${version} failed to load: ${entry.reason}`);
      const waited = performance.now() - started;
      if (waited > timeoutMs) throw new Error(`${model}@${version} not ready after ${timeoutMs} ms (state ${entry?.state ?? 'not discovered'})`);
      if (!rescanned && waited > 3000 && !entry) {
        rescanned = true;
        void this.call('POST', '/admin/rescan').catch(() => undefined);
      }
      await sleep(50);
    }
  }

  flags(model: string, change: Record<string, unknown>): Promise<{ warnings: string[] }> {
    return this.call('PATCH', `/admin/models/${model}/flags`, change);
  }
}

interface Stamp {
  /** When the request was scheduled to be sent (it was sent then or later), same origin as `at`. */
  sentAt: number;
  /** When its response completed. */
  at: number;
  version: number;
  arm: string;
  user: number;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), ['quick', 'fixtures', 'no-plot', 'prune']);
  const quick = flags.has('quick');
  const options = {
    quick,
    repo: flagText(flags, 'repo', './models'),
    fixtures: flags.has('fixtures'),
    surface: flagChoice(flags, 'surface', kSurfaces, 'feed'),
    model: flags.has('model') ? flagText(flags, 'model', '') : null,
    cycles: flagNumber(flags, 'cycles', quick ? 6 : 100),
    rssEvery: Math.max(1, flagNumber(flags, 'rss-every', quick ? 2 : 10)),
    loadShare: flagNumber(flags, 'load-share', 0.6),
    cycleLoadShare: flagNumber(flags, 'cycle-load-share', 0.3),
    canaryPercent: flagNumber(flags, 'canary-percent', 20),
    probeS: flagNumber(flags, 'probe-seconds', quick ? 1 : 5),
    steadyS: flagNumber(flags, 'steady-seconds', quick ? 1.5 : 15),
    windowS: flagNumber(flags, 'window-seconds', quick ? 1 : 5),
    canaryS: flagNumber(flags, 'canary-seconds', quick ? 2 : 20),
    bodies: flagNumber(flags, 'bodies', quick ? 12 : 100),
    users: flagNumber(flags, 'users', 2000),
    candidates: flagNumber(flags, 'candidates', 500),
    history: flagNumber(flags, 'history', 256),
    seed: flagNumber(flags, 'seed', 11),
    poolSize: flags.has('pool-size') ? flagNumber(flags, 'pool-size', 1) : Number(process.env.POOL_SIZE || Math.max(1, (os.availableParallelism?.() ?? os.cpus().length) - 1)),
    /** Delete version folders older than stable - 2 after each cycle (a retention policy). */
    prune: flags.has('prune'),
    maxSeconds: flagNumber(flags, 'max-seconds', quick ? 35 : 330),
    out: path.resolve(flagText(flags, 'out', path.join(projectRoot, 'loadtest', 'results'))),
    plot: !flags.has('no-plot'),
  };
  const began = performance.now();
  const stamp = timestamp();
  const startedAt = new Date().toISOString();
  const cpuAtStart = readCpuTimes();
  const source = openRepo(options.repo, options.fixtures);
  const repo = copyRepo(source.dir);
  source.cleanup();
  let server: ServerHandle | null = null;
  const cleanup = async () => {
    await server?.stop().catch(() => undefined);
    repo.cleanup();
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const rollout = readRolloutFile(repo.dir);
    const model = options.model ?? rollout.routes[options.surface]?.ctr;
    if (!model || rollout.routes[options.surface]?.ctr !== model) throw new Error(`the ${options.surface} surface's ctr route is ${rollout.routes[options.surface]?.ctr}, not ${model}; pass --surface/--model that match`);
    const oldVersion = rollout.models[model].stable;
    const fromDir = path.join(repo.dir, model, String(oldVersion));
    let nextVersion = Math.max(...versionsOnDisk(repo.dir, model)) + 1;
    log(`repo copy ${repo.dir} (from ${source.source === 'fixtures' ? 'fixtures' : source.dir}); ${model} stable ${oldVersion}, publishing from ${nextVersion}`);

    const bodies = makeBodies({ count: options.bodies, candidates: options.candidates, history: options.history, surface: options.surface, seed: options.seed });
    const templates = userIdTemplates(bodies.requests);
    const userOf = (i: number) => kUserBase + (i % options.users);
    const body = (i: number) => {
      const [head, tail] = templates[i % templates.length];
      return Buffer.concat([head, Buffer.from(String(userOf(i))), tail]);
    };
    const logDir = path.join(options.out, 'logs');
    mkdirSync(logDir, { recursive: true });
    server = await startServer({
      repo: repo.dir,
      adminToken: kToken,
      env: { POOL_SIZE: String(options.poolSize), LOG_LEVEL: 'info' },
      logFile: path.join(logDir, `swap-${stamp}-server.log`),
    });
    const admin = new Admin(server.adminUrl);
    log(`server pid ${server.pid} on ${server.url}, admin ${server.adminUrl}`);

    // capacity probe (closed loop) -> steady rate
    await closedLoop({ url: server.url, connections: 4, durationS: Math.min(1, options.probeS), body });
    const probe = (await closedLoop({ url: server.url, connections: 16, durationS: options.probeS, body })).summary;
    const rate = Math.max(1, round(probe.rps * options.loadShare, 1));
    log(`capacity probe: ${probe.rps} rps (p99 ${probe.latency.p99} ms); steady rate ${rate}/s`);

    // ----- phase 1 -----
    const metrics1 = await scrape(server.url);
    const phase1Started = performance.now();
    const origin = performance.now();
    const now = () => performance.now() - origin;
    const stamps: Stamp[] = [];
    let unparsed = 0;
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const traffic = openLoop({
      url: server.url,
      rate,
      durationS: 3600,
      body,
      origin,
      until: done,
      onBody(status, text, sample, index) {
        if (status !== 200) return;
        const match = /"ctr":(\{[^}]*\})/.exec(text.slice(0, 1000));
        if (!match) {
          unparsed++;
          return;
        }
        const ref = JSON.parse(match[1]) as { version: number; arm: string };
        stamps.push({ sentAt: sample.at - sample.latency, at: sample.at, version: ref.version, arm: ref.arm, user: userOf(index) });
      },
    });
    const windows: Array<{ name: string; from: number; to: number; note?: string }> = [];
    const steadyFrom = Math.min(1000, options.steadyS * 300);
    await sleep(options.steadyS * 1000);
    windows.push({ name: 'steady', from: steadyFrom, to: now() });

    const newVersion = nextVersion++;
    let t = now();
    publishVersion(repo.dir, model, fromDir, newVersion);
    const ready = await admin.waitReady(model, newVersion);
    await sleep(Math.max(0, options.windowS * 1000 - (now() - t)));
    windows.push({ name: 'publish -> ready', from: t, to: now(), note: `${model}@${newVersion} ready after ${Math.round(ready.ms)} ms${ready.rescanned ? ' (rescan requested)' : ''}` });
    log(`published ${model}@${newVersion}: ready after ${Math.round(ready.ms)} ms`);

    t = now();
    await admin.flags(model, { canary: { version: newVersion, percent: options.canaryPercent } });
    const canaryFrom = now();
    await sleep(options.canaryS * 1000);
    windows.push({ name: `canary ${options.canaryPercent}%`, from: t, to: now() });
    const canaryTo = now();
    // The server's own canary monitor may roll a canary back by itself (p99 / error / score thresholds).
    const monitor = await admin.call<{ verdicts: Array<{ model: string; rolledBack: boolean; reasons: string[] }> }>('GET', '/admin/canary');

    t = now();
    await admin.flags(model, { stable: newVersion, canary: null });
    const promotedAt = now();
    await sleep(options.windowS * 1000);
    windows.push({ name: 'promote to stable', from: t, to: now() });

    t = now();
    const rollbackFrom = t;
    await admin.flags(model, { stable: oldVersion });
    const rolledBackAt = now();
    await sleep(options.windowS * 1000);
    windows.push({ name: 'rollback', from: t, to: now() });
    finish();
    const phase1 = await traffic;
    const phase1Server = serverSide(metrics1, await scrape(server.url), (performance.now() - phase1Started) / 1000, options.poolSize);
    const samples = phase1.samples;
    const steadyP99 = summarize(windowOf(samples, windows[0].from, windows[0].to).map((s) => s.latency)).p99;
    const windowRows = windows.map((w) => {
      const inside = windowOf(samples, w.from, w.to);
      const lat = summarize(inside.map((s) => s.latency));
      return { ...w, from: Math.round(w.from), to: Math.round(w.to), requests: inside.length, non2xx: inside.filter((s) => s.status < 200 || s.status >= 300).length, p50: lat.p50, p99: lat.p99, max: lat.max, p99Ratio: round(lat.p99 / steadyP99, 3) };
    });
    // Each window holds the 2xx responses to requests sent (by schedule) 200 ms or more after its flag
    // change returned and answered before the next change was requested. Completion time alone let a
    // request sent before a change, and answered late, count as after it (a flaky CI run).
    const inWindow = (s: Stamp, from: number, to: number) => s.sentAt >= from + 200 && s.at < to;
    const inCanary = stamps.filter((s) => inWindow(s, canaryFrom, canaryTo));
    const canaryHits = inCanary.filter((s) => s.arm === 'canary');
    const users = new Map<number, string>();
    for (const s of inCanary) users.set(s.user, s.arm);
    const canaryUsers = [...users.values()].filter((a) => a === 'canary').length;
    const afterPromote = stamps.filter((s) => inWindow(s, promotedAt, rollbackFrom));
    const afterRollback = stamps.filter((s) => inWindow(s, rolledBackAt, Infinity));
    const canary = {
      percentSet: options.canaryPercent,
      responses: inCanary.length,
      canaryResponses: canaryHits.length,
      shareMeasured: round(canaryHits.length / Math.max(1, inCanary.length), 4),
      canaryVersionOk: canaryHits.every((s) => s.version === newVersion),
      distinctUsers: users.size,
      userShare: round(canaryUsers / Math.max(1, users.size), 4),
      // Bucketing is by user: the share over N users has a binomial spread.
      userShareSd: round(Math.sqrt((options.canaryPercent / 100) * (1 - options.canaryPercent / 100) / Math.max(1, users.size)), 4),
      afterPromote: { responses: afterPromote.length, onNewStable: afterPromote.filter((s) => s.version === newVersion && s.arm === 'stable').length },
      afterRollback: { responses: afterRollback.length, onOldStable: afterRollback.filter((s) => s.version === oldVersion && s.arm === 'stable').length },
      monitorVerdicts: monitor.verdicts,
      autoRolledBack: monitor.verdicts.some((v) => v.model === model && v.rolledBack),
    };
    if (canary.autoRolledBack) log(`note: the server's canary monitor rolled the canary back by itself: ${JSON.stringify(monitor.verdicts)}`);
    log(`phase 1: ${phase1.summary.completed} responses, non-2xx ${phase1.summary.non2xx} ${JSON.stringify(phase1.summary.status)}, errors ${phase1.summary.errors}; canary share ${(canary.shareMeasured * 100).toFixed(1)}% of responses, ${(canary.userShare * 100).toFixed(1)}% of ${users.size} users (set ${options.canaryPercent}%)`);
    for (const w of windowRows) log(`  ${w.name}: ${w.requests} req, p50 ${w.p50} p99 ${w.p99} ms (x${w.p99Ratio} steady), non-2xx ${w.non2xx}`);

    // ----- phase 2: publish / swap cycles, RSS sampled -----
    const cycleRate = Math.max(1, round(probe.rps * options.cycleLoadShare, 1));
    let stopCycles!: () => void;
    const cyclesDone = new Promise<void>((resolve) => (stopCycles = resolve));
    const cycleTraffic = openLoop({ url: server.url, rate: cycleRate, durationS: 3600, body, until: cyclesDone });
    const rss: Array<{ cycle: number; rssMiB: number; heapUsedMiB: number; externalMiB: number; readyVersions: number; knownVersions: number; at: number }> = [];
    const sampleRss = async (cycle: number) => {
      const versions = await admin.versions(model);
      // JS heap vs native (external = ArrayBuffers; the rest of RSS is ONNX Runtime, code, stacks).
      const metrics = await scrape(server!.url);
      const mib = (key: string) => round((metrics.get(key) ?? NaN) / 2 ** 20, 1);
      rss.push({
        cycle,
        rssMiB: round(server!.rssKb() / 1024, 1),
        heapUsedMiB: mib('nodejs_heap_size_used_bytes'),
        externalMiB: mib('nodejs_external_memory_bytes'),
        readyVersions: versions.filter((v) => v.state === 'ready').length,
        knownVersions: versions.length,
        at: Math.round(performance.now() - began),
      });
    };
    await sleep(500);
    const metrics2 = await scrape(server.url);
    const phase2Started = performance.now();
    await sampleRss(0);
    const perCycle: Array<{ cycle: number; rssMiB: number }> = [{ cycle: 0, rssMiB: rss[0].rssMiB }];
    const cycleMs: number[] = [];
    const readyMs: number[] = [];
    let cyclesRun = 0;
    let stoppedEarly: string | null = null;
    for (let cycle = 1; cycle <= options.cycles; cycle++) {
      if ((performance.now() - began) / 1000 > options.maxSeconds) {
        stoppedEarly = `time budget of ${options.maxSeconds} s reached after ${cyclesRun} cycles`;
        break;
      }
      const started = performance.now();
      const version = nextVersion++;
      publishVersion(repo.dir, model, fromDir, version);
      readyMs.push((await admin.waitReady(model, version)).ms);
      await admin.flags(model, { stable: version });
      cycleMs.push(performance.now() - started);
      const old = path.join(repo.dir, model, String(version - 3));
      if (options.prune && version - 3 > oldVersion && existsSync(old)) rmSync(old, { recursive: true, force: true });
      cyclesRun = cycle;
      perCycle.push({ cycle, rssMiB: round(server.rssKb() / 1024, 1) });
      if (cycle % options.rssEvery === 0) {
        await sampleRss(cycle);
        log(`cycle ${cycle}: rss ${rss[rss.length - 1].rssMiB} MiB (heap ${rss[rss.length - 1].heapUsedMiB}, external ${rss[rss.length - 1].externalMiB}), ${rss[rss.length - 1].readyVersions} ready / ${rss[rss.length - 1].knownVersions} known versions, cycle ${Math.round(cycleMs[cycleMs.length - 1])} ms`);
      }
    }
    await sleep(1000);
    if (rss[rss.length - 1].cycle !== cyclesRun) await sampleRss(cyclesRun);
    stopCycles();
    const phase2 = (await cycleTraffic).summary;
    const phase2Server = serverSide(metrics2, await scrape(server.url), (performance.now() - phase2Started) / 1000, options.poolSize);
    const fit = linearFit(rss.map((s) => s.cycle), rss.map((s) => s.rssMiB));
    const half = perCycle.filter((s) => s.cycle >= cyclesRun / 2);
    const lateFit = linearFit(half.map((s) => s.cycle), half.map((s) => s.rssMiB));
    // RSS swings with garbage collection; the lowest value of each block of cycles (the retained
    // floor) shows a leak more reliably than single samples. The first block is allocator warm-up.
    const block = Math.max(1, options.rssEvery);
    const floors: Array<{ cycle: number; rssMiB: number }> = [];
    for (let from = 1; from <= cyclesRun; from += block) {
      const inBlock = perCycle.filter((s) => s.cycle >= from && s.cycle < from + block);
      if (inBlock.length > 0) floors.push({ cycle: from + (inBlock.length - 1) / 2, rssMiB: Math.min(...inBlock.map((s) => s.rssMiB)) });
    }
    const floorFit = linearFit(floors.slice(1).map((s) => s.cycle), floors.slice(1).map((s) => s.rssMiB));
    const cycles = {
      requested: options.cycles,
      run: cyclesRun,
      stoppedEarly,
      trafficRate: cycleRate,
      traffic: { completed: phase2.completed, non2xx: phase2.non2xx, status: phase2.status, errors: phase2.errors, p50: phase2.latency.p50, p99: phase2.latency.p99 },
      server: phase2Server,
      cycleMs: summarize(cycleMs),
      publishToReadyMs: summarize(readyMs),
      rss,
      rssBeforeMiB: rss[0].rssMiB,
      rssAfterMiB: rss[rss.length - 1].rssMiB,
      afterOverBefore: round(rss[rss.length - 1].rssMiB / rss[0].rssMiB, 3),
      fit: { slope: round(fit.slope, 4), intercept: round(fit.intercept, 2) },
      secondHalfSlope: round(lateFit.slope, 4),
      perCycle,
      blockMinima: floors,
      blockMinimaSlope: round(floorFit.slope, 4),
    };
    log(`cycles: ${cyclesRun} in ${Math.round(cycleMs.reduce((a, b) => a + b, 0) / 1000)} s; rss ${cycles.rssBeforeMiB} -> ${cycles.rssAfterMiB} MiB (x${cycles.afterOverBefore}), slope ${cycles.fit.slope} MiB/cycle (second half ${cycles.secondHalfSlope}, block minima ${cycles.blockMinimaSlope}); traffic non-2xx ${phase2.non2xx}`);
    await server.stop();
    server = null;

    const result = {
      kind: 'swap',
      startedAt,
      finishedAt: new Date().toISOString(),
      quick,
      host: { ...hostInfo(), stolenShare: stolenShare(cpuAtStart, readCpuTimes()) },
      options,
      repo: { source: source.source, from: source.source === 'fixtures' ? '(fixtures)' : source.dir, model, oldVersion, newVersion },
      bodies: bodies.stats,
      serverEnv: Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(POOL_SIZE|USER_CACHE_|KEEP_VERSIONS|BATCH_|MAX_|INTRA_OP|WORKER_QUEUE|RESCAN|WATCH_REPO|CANARY_|GATE_)/.test(k))),
      probe: { rps: probe.rps, p99: probe.latency.p99, status: probe.status },
      phase1: {
        rate,
        completed: phase1.summary.completed,
        non2xx: phase1.summary.non2xx,
        errors: phase1.summary.errors,
        status: phase1.summary.status,
        unparsed,
        steadyP99,
        server: phase1Server,
        windows: windowRows,
        canary,
      },
      cycles,
      pass: {
        phase1No5xx: phase1.summary.non2xx === 0 && phase1.summary.errors === 0,
        cyclesNo5xx: phase2.non2xx === 0 && phase2.errors === 0,
        canaryWithin3Sd: Math.abs(canary.userShare - options.canaryPercent / 100) <= 3 * canary.userShareSd,
        promoteAndRollbackApplied: canary.afterPromote.onNewStable === canary.afterPromote.responses && canary.afterRollback.onOldStable === canary.afterRollback.responses,
      },
    };
    const windowText = table(
      ['window', 'requests', 'non-2xx', 'p50 ms', 'p99 ms', 'max ms', 'p99 / steady'],
      windowRows.map((w) => [w.name, w.requests, w.non2xx, w.p50, w.p99, w.max, w.p99Ratio]),
    );
    const rssText = table(['cycle', 'RSS MiB', 'JS heap used MiB', 'external MiB', 'ready versions', 'known versions'], rss.map((s) => [s.cycle, s.rssMiB, s.heapUsedMiB, s.externalMiB, s.readyVersions, s.knownVersions]));
    const markdown = [
      `# Hot-swap benchmark ${startedAt}${quick ? ' (quick mode: smoke test only)' : ''}`,
      '',
      `Host: ${result.host.cpus} CPUs, node ${result.host.node}, load average at end ${result.host.loadavg.join(' ')}. ${stolenText(result.host.stolenShare)} Model swapped: ${model} (${oldVersion} -> ${newVersion} -> rollback). ` +
        `Bodies: ${bodies.stats.count} ${options.surface} requests x ${options.candidates} candidates, history ${options.history}, user ids over ${options.users} users.`,
      '',
      `## Phase 1: steady ${rate} req/s (${options.loadShare * 100}% of a ${probe.rps} rps capacity probe), open loop`,
      '',
      windowText,
      '',
      `Responses: ${phase1.summary.completed}, non-2xx **${phase1.summary.non2xx}**, client errors ${phase1.summary.errors} (${JSON.stringify(phase1.summary.status)}). ` +
        `Server side: shed ${JSON.stringify(phase1Server.shedByReason)} (event_loop = admission control), scoring outcomes ${JSON.stringify(phase1Server.scoringOutcomes)} (SERVER_OVERLOADED = pool queue full), workers busy ${(phase1Server.workerBusyShare * 100).toFixed(1)}%.`,
      `Canary ${options.canaryPercent}%: ${(canary.shareMeasured * 100).toFixed(1)}% of ${canary.responses} responses, ${(canary.userShare * 100).toFixed(1)}% of ${canary.distinctUsers} distinct users (binomial sd ${(canary.userShareSd * 100).toFixed(1)} points); canary responses all on version ${newVersion}: ${canary.canaryVersionOk}.` +
        (canary.autoRolledBack ? ` The server's canary monitor rolled it back during the window: ${JSON.stringify(canary.monitorVerdicts)}.` : ` Canary monitor verdicts: ${canary.monitorVerdicts.length === 0 ? 'none yet (too few requests per arm)' : JSON.stringify(canary.monitorVerdicts.map((v) => ({ rolledBack: v.rolledBack, reasons: v.reasons })))}.`),
      `After promote: ${canary.afterPromote.onNewStable}/${canary.afterPromote.responses} responses on ${model}@${newVersion} stable; after rollback: ${canary.afterRollback.onOldStable}/${canary.afterRollback.responses} on @${oldVersion}.`,
      '',
      `## Phase 2: ${cyclesRun} publish / ready / set-stable cycles under ${cycleRate} req/s${stoppedEarly ? ` (${stoppedEarly})` : ''}`,
      '',
      rssText,
      '',
      `RSS after / before: **${cycles.afterOverBefore}** (${cycles.rssBeforeMiB} -> ${cycles.rssAfterMiB} MiB); slope ${cycles.fit.slope} MiB per cycle over the samples above, ${cycles.secondHalfSlope} over every cycle of the second half, ${cycles.blockMinimaSlope} over the minimum of each block of ${block} cycles after the first (the retained floor; GC makes single samples swing). ` +
        `Cycle time p50 ${cycles.cycleMs.p50} ms, publish -> ready p50 ${cycles.publishToReadyMs.p50} ms (p99 ${cycles.publishToReadyMs.p99}). Traffic during cycles: ${phase2.completed} responses, non-2xx **${phase2.non2xx}** (${JSON.stringify(phase2.status)}; server: shed ${JSON.stringify(phase2Server.shedByReason)}, scoring ${JSON.stringify(phase2Server.scoringOutcomes)}), p99 ${phase2.latency.p99} ms.` +
        (options.prune ? ' Old version folders were pruned (stable - 3 and older) after each cycle.' : ' Old version folders stay on disk (the registry keeps an `unloaded` entry for each).'),
      '',
      `Checks: ${Object.entries(result.pass).map(([k, v]) => `${k} ${v ? 'PASS' : 'FAIL'}`).join(', ')}.`,
      '',
    ].join('\n');
    const written = writeResults(options.out, 'swap', stamp, result, markdown + (options.plot ? '![rss](swap-latest.png)\n' : ''), options.plot);
    process.stdout.write(`\n${windowText}\n\n${rssText}\n\n${markdown.split('\n').filter((l) => l.startsWith('Checks') || l.startsWith('Canary') || l.startsWith('RSS')).join('\n')}\n`);
    log(stolenText(result.host.stolenShare));
    log(`wrote ${written.json}, ${written.markdown}${written.png ? `, ${written.png}` : ''}${written.plotError ? ` (plot failed: ${written.plotError})` : ''}`);
    if (!Object.values(result.pass).every(Boolean)) process.exitCode = 3;
  } finally {
    await cleanup();
  }
}

main().catch((error) => {
  process.stderr.write(`swap failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
