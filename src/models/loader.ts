/**
 * The background loader: watches the model repository (fs.watch plus a periodic rescan as backstop),
 * loads new versions off the request path, runs the validation gate, applies rollout flags, and
 * drains then unloads versions that are no longer wanted. Scans never overlap; a scan requested
 * while one runs is run once more afterwards.
 */
import { watch, type Dirent, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { Errors, RankerError, isRankerError, isServerTrouble } from '../errors.js';
import { compileFeaturePlan } from '../features/plan.js';
import { runGate, type ReferenceSource } from './gate.js';
import { readManifest, readVerifiedModel } from './manifest.js';
import type { InferencePool } from './pool.js';
import type { ModelRegistry, ModelVersion } from './registry.js';
import { kRolloutLockFile } from './rollout-lock.js';
import { editRollout, flagsOf, kNoChange, readRollout, type ModelFlags, type Rollout } from './rollout.js';
import { SerialQueue } from './serial-queue.js';

/** The failure fingerprint of a version whose load the server cut short: never equal to a directory's. */
const kRetry = 'retry';
/** Loads cut short by a worker exit that the next scans retry; after that only new files retry. */
const kWorkerExitRetries = 3;

export const kPlainName = /^[a-z][a-z0-9-]{0,62}$/;
export const kPlainVersion = /^[1-9][0-9]{0,8}$/;

/**
 * A directory entry that is a folder, or a link to one (false if it vanished meanwhile). Anything
 * but a plain file or folder is stat()ed: links, and entries whose type the filesystem does not
 * report in readdir (DT_UNKNOWN, for which every `is*()` of the Dirent is false).
 */
export async function isDirectory(fullPath: string, entry: Dirent): Promise<boolean> {
  if (entry.isDirectory()) return true;
  if (entry.isFile()) return false;
  try {
    return (await stat(fullPath)).isDirectory();
  } catch {
    return false;
  }
}

export interface LoaderEvents {
  loaded?(entry: ModelVersion): void;
  failed?(entry: ModelVersion): void;
  unloaded?(entry: ModelVersion): void;
  rollout?(rollout: Rollout, warnings: string[]): void;
  rolloutRejected?(why: string): void;
  /** This loader wrote new flags to rollout.json (admin API or canary rollback). */
  rolloutWritten?(): void;
}

type LoaderOptions = Pick<Config, 'modelRepo' | 'rescanIntervalMs' | 'watchRepo' | 'rolloutLockTimeoutMs' | 'keepVersions' | 'modelMaxBytes' | 'gate'>;

export class ModelLoader {
  readonly #options: LoaderOptions;
  readonly #registry: ModelRegistry;
  readonly #pool: InferencePool;
  readonly #log: Logger;
  readonly #reference: ReferenceSource;
  readonly #events: LoaderEvents;
  #watcher: FSWatcher | null = null;
  #interval: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #scanning: Promise<void> | null = null;
  #again = false;
  #stopped = false;
  #lastRolloutText: string | null = null;
  #rolloutError: string | null = null;
  /** The error behind `#rolloutError`, rethrown as is by setRollout (its message already has the prefix). */
  #rolloutFailure: unknown = null;
  /** Versions an operator loaded by hand; kept loaded like flagged ones until unloaded by hand. */
  #pinnedLoads = new Set<string>();
  /**
   * Versions an operator unloaded by hand; not reloaded for being among the newest `keepVersions`
   * (the next rescan undid the unload) until loaded by hand or named by the flags again.
   */
  #manualUnloads = new Set<string>();
  /**
   * Flag changes and manual unloads, one at a time: each reads, merges, writes and applies the flags
   * before the next one reads them; two concurrent edits of different models lost one of the two.
   */
  readonly #flagQueue = new SerialQueue();
  /**
   * Loads and unloads by hand, one at a time (an unload then also takes #flagQueue, always in this
   * order). Not #flagQueue itself: a load can take seconds (a scan, the gate), and an automatic
   * canary rollback queued behind it waited that long.
   */
  readonly #manualQueue = new SerialQueue();
  /**
   * Bumped when this loader writes and applies flags itself: a scan that read the flags before such a
   * write must not apply what it read afterwards (it undid a rollback until the next scan).
   */
  #flagsGeneration = 0;
  /** Directory fingerprints of failed versions: a failed version is retried only if its files change. */
  #failedFingerprint = new Map<string, string>();
  /** Loads in a row of each version that a worker exit cut short (see kWorkerExitRetries). */
  #workerExits = new Map<string, number>();
  scans = 0;

  constructor(options: LoaderOptions, registry: ModelRegistry, pool: InferencePool, log: Logger, reference: ReferenceSource, events: LoaderEvents = {}) {
    this.#options = options;
    this.#registry = registry;
    this.#pool = pool;
    this.#log = log;
    this.#reference = reference;
    this.#events = events;
  }

  get rolloutError(): string | null {
    return this.#rolloutError;
  }

  async start(): Promise<void> {
    await this.scan();
    if (this.#options.watchRepo) this.#watch();
    this.#interval = setInterval(() => void this.scan(), this.#options.rescanIntervalMs);
    this.#interval.unref();
  }

  /**
   * Node's recursive watcher on Linux errors (ENOENT) when a directory vanishes while it is being
   * added, e.g. an old version deleted during a publish; it is re-created, and the periodic rescan
   * covers the gap.
   */
  #watch(): void {
    if (this.#stopped) return;
    try {
      // The lock's files come and go around every flag write; the rename of rollout.json itself is what matters.
      const watcher = watch(this.#options.modelRepo, { recursive: true }, (_event, file) => !String(file).startsWith(kRolloutLockFile) && this.#scheduleScan());
      watcher.on('error', (error) => {
        this.#log.debug({ err: error }, 'model repository watcher error; re-creating it');
        watcher.close();
        if (this.#watcher === watcher) this.#watcher = null;
        setTimeout(() => this.#watch(), 200).unref();
        this.#scheduleScan();
      });
      this.#watcher = watcher;
    } catch (error) {
      this.#log.warn({ err: error }, 'cannot watch the model repository; relying on periodic rescans');
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watcher?.close();
    if (this.#interval) clearInterval(this.#interval);
    if (this.#debounce) clearTimeout(this.#debounce);
    await this.#scanning?.catch(() => undefined);
  }

  #scheduleScan(): void {
    if (this.#stopped || this.#debounce) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      void this.scan();
    }, 100);
  }

  /** Run one scan (or join the one running and run once more after it). */
  scan(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#scanning) {
      this.#again = true;
      return this.#scanning;
    }
    this.#scanning = (async () => {
      try {
        do {
          this.#again = false;
          await this.#scanOnce();
        } while (this.#again && !this.#stopped);
      } finally {
        this.#scanning = null;
      }
    })();
    return this.#scanning;
  }

  async #scanOnce(): Promise<void> {
    this.scans++;
    const onDisk = await this.#listRepository();
    for (const entry of this.#registry.all()) {
      if (!onDisk.has(entry.key) && (entry.state === 'discovered' || entry.state === 'failed' || entry.state === 'unloaded')) {
        this.#manualUnloads.delete(entry.key);
        this.#workerExits.delete(entry.key);
        this.#registry.forget(entry);
      }
    }
    for (const [key, dir] of onDisk) {
      const [name, version] = key.split('@');
      this.#registry.discover(name, Number(version), dir);
    }
    const rollout = await this.#readFlags();
    // Flags that name a version unloaded by hand route it again: it is an ordinary version from now on.
    for (const key of flaggedKeys(rollout)) this.#manualUnloads.delete(key);
    const wanted = this.#wanted(rollout, onDisk);
    for (const entry of this.#registry.all()) {
      if (this.#stopped) return;
      if (!wanted.has(entry.key)) continue;
      if (entry.state === 'discovered' || entry.state === 'unloaded' || (entry.state === 'failed' && (await this.#changedSinceFailure(entry)))) {
        await this.loadVersion(entry);
      }
    }
    // The flags as they are now, not as they were before the loads above (which can take seconds):
    // an edit written meanwhile by another process, or by this one (then applied already), counts.
    const generation = this.#flagsGeneration;
    const latest = await this.#readFlags();
    if (latest && generation === this.#flagsGeneration) this.#apply(latest);
    // Recomputed after the swap: the version that was serving until now is no longer referenced.
    await this.#unloadUnwanted(onDisk);
  }

  /**
   * Model and version folders, from one readdir per folder: the types come with the entries, so a
   * scan costs no stat per version (a repository that keeps every published version made that
   * ~0.1 ms per version per scan). Links and untyped entries are stat()ed.
   */
  async #listRepository(): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    let models: Dirent[];
    try {
      models = await readdir(this.#options.modelRepo, { withFileTypes: true });
    } catch (error) {
      this.#log.error({ err: error, repo: this.#options.modelRepo }, 'model repository cannot be read');
      return found;
    }
    for (const model of models) {
      if (!kPlainName.test(model.name)) continue; // hidden, temp and foreign entries
      const modelDir = path.join(this.#options.modelRepo, model.name);
      let versions: Dirent[];
      try {
        if (!(await isDirectory(modelDir, model))) continue;
        versions = await readdir(modelDir, { withFileTypes: true });
      } catch {
        continue;
      }
      for (const version of versions) {
        if (!kPlainVersion.test(version.name)) continue;
        const dir = path.join(modelDir, version.name);
        if (await isDirectory(dir, version)) found.set(`${model.name}@${Number(version.name)}`, dir);
      }
    }
    return found;
  }

  async #readFlags(): Promise<Rollout | null> {
    try {
      const rollout = await readRollout(this.#options.modelRepo);
      const text = JSON.stringify(rollout);
      if (text !== this.#lastRolloutText) {
        this.#lastRolloutText = text;
        this.#log.info({ rollout }, 'rollout flags read');
      }
      this.#rolloutError = null;
      this.#rolloutFailure = null;
      return rollout;
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      this.#rolloutFailure = error;
      if (why !== this.#rolloutError) {
        this.#rolloutError = why;
        const kept = this.#registry.rollout;
        this.#log.error({ reason: why, kept: kept !== null }, kept ? 'rollout flags rejected; keeping the last good flags' : 'rollout flags rejected and none were ever good');
        this.#events.rolloutRejected?.(why);
      }
      return this.#registry.rollout;
    }
  }

  /**
   * Flagged versions, versions loaded by hand, and the newest `keepVersions` versions of each model
   * (a failed one among them is retried only when its files change; it holds no session meanwhile)
   * unless unloaded by hand.
   */
  #wanted(rollout: Rollout | null, onDisk: Map<string, string>): Set<string> {
    const wanted = new Set<string>([...this.#pinnedLoads, ...flaggedKeys(rollout)]);
    for (const name of this.#registry.models()) {
      const versions = this.#registry
        .versions(name)
        .filter((v) => onDisk.has(v.key))
        .slice(-this.#options.keepVersions);
      for (const v of versions) if (!this.#manualUnloads.has(v.key)) wanted.add(v.key);
    }
    for (const key of this.#registry.referenced()) wanted.add(key);
    return wanted;
  }

  async #fingerprint(dir: string): Promise<string> {
    const parts: string[] = [];
    for (const file of ['manifest.json', 'model.onnx', 'golden.json']) {
      try {
        const s = await stat(path.join(dir, file));
        parts.push(`${file}:${s.size}:${s.mtimeMs}`);
      } catch {
        parts.push(`${file}:absent`);
      }
    }
    return parts.join('|');
  }

  async #changedSinceFailure(entry: ModelVersion): Promise<boolean> {
    const before = this.#failedFingerprint.get(entry.key);
    return before !== undefined && before !== (await this.#fingerprint(entry.dir));
  }

  /**
   * Load, validate and make one version ready; on any failure it is marked failed and never served.
   * Resolves with the failure (its code and status, the recorded reason as message), null once ready.
   */
  async loadVersion(entry: ModelVersion): Promise<RankerError | null> {
    const log = this.#log.child({ model: entry.name, version: entry.version });
    const fingerprint = await this.#fingerprint(entry.dir);
    this.#registry.setState(entry, 'loading');
    let inPool = false;
    try {
      const manifest = await readManifest(entry.dir, { name: entry.name, version: entry.version });
      const model = await readVerifiedModel(entry.dir, manifest, this.#options.modelMaxBytes);
      const plan = compileFeaturePlan(manifest);
      entry.manifest = manifest;
      entry.plan = plan;
      entry.outputName = manifest.outputs[0].name;
      const load = await this.#pool.load(entry.key, model);
      inPool = true;
      entry.load = load;
      if (load.fallbacks.length > 0) log.warn({ provider: load.provider, fallbacks: load.fallbacks }, 'execution provider fallback');
      this.#registry.setState(entry, 'validating');
      const serving = this.#registry.routing.models.get(entry.name)?.stable;
      const baseline = serving && serving !== entry && serving.plan && serving.manifest ? { key: serving.key, plan: serving.plan, outputName: serving.outputName, calibration: serving.manifest.calibration } : null;
      const gate = await runGate(this.#pool, { key: entry.key, dir: entry.dir, manifest, plan, outputName: entry.outputName, load }, baseline, this.#reference, this.#options.gate);
      entry.gate = gate;
      if (!gate.passed) {
        const failed = gate.checks.find((c) => !c.passed);
        throw Errors.GATE_FAILED(entry.key, `${failed?.name}: ${failed?.detail}`);
      }
      this.#failedFingerprint.delete(entry.key);
      this.#workerExits.delete(entry.key);
      if (gate.msPerCandidate !== undefined) this.#pool.seedCostPerCandidate(entry.key, gate.msPerCandidate);
      this.#registry.setState(entry, 'ready');
      log.info({ provider: load.provider, loadMs: Math.round(load.loadMs), usPerCandidate: gate.msPerCandidate ? +(gate.msPerCandidate * 1000).toFixed(2) : null }, 'model version ready');
      this.#events.loaded?.(entry);
      return null;
    } catch (error) {
      if (inPool) await this.#pool.unload(entry.key).catch(() => undefined);
      const message = isRankerError(error) ? error.message : `${(error as Error)?.message ?? String(error)}`;
      // The server's trouble, not the model's: no fingerprint matches kRetry, so the next scan retries.
      // A worker exit a few times only: a model that crashes its worker on every load looks the same.
      const serverTrouble = isServerTrouble(error);
      const exits = serverTrouble && isRankerError(error) && error.code === Errors.WORKER_EXITED.code ? (this.#workerExits.get(entry.key) ?? 0) + 1 : 0;
      if (exits > 0) this.#workerExits.set(entry.key, exits);
      const retry = serverTrouble && exits <= kWorkerExitRetries;
      const why = retry
        ? `${message} (the server's trouble, not the model's: retried on the next scan)`
        : serverTrouble
          ? `${message} (${exits} times in a row; retried when its files change)`
          : message;
      this.#failedFingerprint.set(entry.key, retry ? kRetry : fingerprint);
      this.#registry.setState(entry, 'failed', why);
      log.error({ reason: why }, 'model version failed; it will not be served');
      this.#events.failed?.(entry);
      const failure = isRankerError(error) ? error : Errors.LOAD_FAILED(entry.key, message);
      return new RankerError(failure.code, failure.statusCode, why, { cause: error });
    }
  }

  #apply(rollout: Rollout): void {
    const before = this.#registry.routing;
    const table = this.#registry.applyRollout(rollout);
    const changed = (name: string) => {
      const a = before.models.get(name);
      const b = table.models.get(name);
      return a?.stable !== b?.stable || a?.canary?.version !== b?.canary?.version || a?.canary?.percent !== b?.canary?.percent;
    };
    const names = new Set([...before.models.keys(), ...table.models.keys()]);
    if ([...names].some(changed) || before.warnings.join() !== table.warnings.join()) {
      const summary = Object.fromEntries(
        [...table.models].map(([name, r]) => [name, { stable: r.stable.version, canary: r.canary ? `${r.canary.version}:${r.canary.percent}%` : null, shadow: r.shadow.map((s) => s.version) }]),
      );
      this.#log.info({ routing: summary, warnings: table.warnings }, 'routing updated');
      this.#events.rollout?.(rollout, table.warnings);
    }
  }

  /**
   * Unload ready versions nothing wants, each judged just before it is drained: flags this loader
   * writes take effect at once, also while an earlier version of this loop drains, and a snapshot
   * taken before the loop unloaded a version the operator had just made stable (503s until a rescan).
   */
  async #unloadUnwanted(onDisk: Map<string, string>): Promise<void> {
    const unwanted = (entry: ModelVersion) => !this.#wanted(this.#registry.rollout, onDisk).has(entry.key) && !this.#registry.referenced().has(entry.key);
    for (const entry of this.#registry.all()) {
      if (entry.state !== 'ready' || !unwanted(entry)) continue;
      await this.#drainAndUnload(entry, () => unwanted(entry));
    }
  }

  /**
   * Drain a version and unload it, unless `stillUnwanted` says otherwise once it has drained (flags
   * that routed it meanwhile): then it is ready again and the flags are applied.
   */
  async #drainAndUnload(entry: ModelVersion, stillUnwanted: () => boolean): Promise<void> {
    this.#registry.setState(entry, 'draining');
    // Shadow work waiting for an idle worker holds a reference: it would hold the drain for seconds.
    this.#pool.cancelBackground(entry.key);
    await this.#registry.drain(entry);
    if (!stillUnwanted()) {
      this.#registry.setState(entry, 'ready');
      if (this.#registry.rollout) this.#apply(this.#registry.rollout);
      return;
    }
    await this.#pool.unload(entry.key);
    this.#registry.setState(entry, 'unloaded');
    this.#log.info({ model: entry.name, version: entry.version }, 'model version unloaded');
    this.#events.unloaded?.(entry);
  }

  // ----- operations behind the admin API -----

  /**
   * Load a version and keep it loaded across rescans; rejects with the load's or the gate's error.
   * Queued with unloads and flag changes: a load that ran during an unload's drain answered "ready",
   * and the unload then removed the version anyway.
   */
  loadByHand(name: string, version: number): Promise<ModelVersion> {
    return this.#manualQueue.run(async () => {
      await this.scan();
      const entry = this.#registry.require(name, version);
      this.#manualUnloads.delete(entry.key);
      this.#pinnedLoads.add(entry.key);
      const failure = entry.state === 'ready' ? null : await this.loadVersion(entry);
      if (this.#registry.rollout) this.#apply(this.#registry.rollout);
      if (failure) throw failure;
      return entry;
    });
  }

  /**
   * Unload a version and keep it unloaded across rescans. Queued with flag changes, so a version
   * cannot become flagged between the check and the unload.
   */
  unloadByHand(name: string, version: number): Promise<ModelVersion> {
    return this.#manualQueue.run(() =>
      this.#flagQueue.run(async () => {
        const entry = this.#registry.require(name, version);
        if (this.#registry.referenced().has(entry.key)) throw Errors.VERSION_NOT_READY(entry.key, 'referenced by rollout flags; change the flags first');
        this.#pinnedLoads.delete(entry.key);
        this.#manualUnloads.add(entry.key);
        if (entry.state === 'ready') await this.#drainAndUnload(entry, () => !flaggedKeys(this.#registry.rollout).has(entry.key) && !this.#registry.referenced().has(entry.key));
        return entry;
      }),
    );
  }

  /** Merge one model's flags into the current rollout and apply it (admin API). */
  async updateFlags(name: string, change: FlagChange): Promise<string[]> {
    return (await this.#edit(async () => mergeFlags(await this.#readFlags(), name, change))).warnings;
  }

  /**
   * Automatic rollback of the canary the monitor judged: its share goes to 0% (the version stays named
   * for inspection). `written` is false when there was nothing to do: the flags on disk no longer route
   * that version (an operator replaced the canary meanwhile, or another process rolled it back first).
   */
  rollbackCanary(name: string, version: number): Promise<{ written: boolean; warnings: string[] }> {
    return this.#edit(async () => {
      // Decided on the flags as they are once this change holds the lock, not as they were when queued.
      const current = await this.#readFlags();
      const canary = flagsOf(current, name)?.canary;
      if (!canary || canary.version !== version || canary.percent === 0) return kNoChange;
      return mergeFlags(current, name, { canary: { version, percent: 0 } });
    });
  }

  /** Validate, persist atomically, then apply new flags. Bad flags change nothing. */
  async setRollout(candidate: unknown): Promise<string[]> {
    return (await this.#edit(async () => candidate)).warnings;
  }

  /**
   * Read (from disk, not this process's copy), edit and write the flags under the repository's
   * rollout lock, then apply them. The lock covers other server processes (HTTP_PROCESSES > 1) and
   * the publisher; this loader's queue covers its own callers, so they do not poll the lock file.
   */
  async #edit(edit: () => Promise<unknown>): Promise<{ written: boolean; warnings: string[] }> {
    // Queued: the read, write and apply, one edit at a time. Not the scan after it, which may wait
    // behind a scan that is loading and gating a version: a second rollback waited that long.
    const written = await this.#flagQueue.run(async () => {
      const rollout = await editRollout(this.#options.modelRepo, edit, {
        timeoutMs: this.#options.rolloutLockTimeoutMs,
        onStale: (owner, ageMs) => this.#log.warn({ owner, ageMs: Math.round(ageMs) }, 'removed a stale rollout lock'),
      });
      if (rollout === null) return null;
      this.#events.rolloutWritten?.();
      // In effect at once, for the versions that are ready (a rollback, a promotion).
      this.#flagsGeneration++;
      this.#apply(rollout);
      return rollout;
    });
    if (written === null) return { written: false, warnings: this.#registry.routing.warnings };
    await this.scan();
    // Already a ROLLOUT_INVALID ("rollout flags rejected: ..."): wrapping it again doubled the prefix.
    if (this.#rolloutError) throw isRankerError(this.#rolloutFailure) ? this.#rolloutFailure : Errors.ROLLOUT_INVALID(this.#rolloutError);
    return { written: true, warnings: this.#registry.routing.warnings };
  }
}

type FlagChange = { stable?: number; canary?: { version: number; percent: number } | null; shadow?: number[] };

/** `current` with one model's flags changed; unchanged fields keep their values. */
function mergeFlags(current: Rollout | null, name: string, change: FlagChange): Rollout {
  if (!current) throw Errors.ROLLOUT_INVALID('no valid rollout flags are loaded yet; PUT /admin/rollout first');
  const previous = flagsOf(current, name);
  if (!previous && change.stable === undefined) throw Errors.UNKNOWN_MODEL(name);
  const next: ModelFlags = { stable: change.stable ?? previous!.stable };
  const canary = change.canary === undefined ? previous?.canary : change.canary ?? undefined;
  if (canary) next.canary = canary;
  const shadow = change.shadow ?? previous?.shadow;
  if (shadow && shadow.length > 0) next.shadow = shadow;
  return { ...current, models: { ...current.models, [name]: next } };
}

/** Every `name@version` the flags name (stable, canary, shadow). */
function flaggedKeys(rollout: Rollout | null): Set<string> {
  const keys = new Set<string>();
  for (const [name, flags] of Object.entries(rollout?.models ?? {})) {
    keys.add(`${name}@${flags.stable}`);
    if (flags.canary) keys.add(`${name}@${flags.canary.version}`);
    for (const v of flags.shadow ?? []) keys.add(`${name}@${v}`);
  }
  return keys;
}
