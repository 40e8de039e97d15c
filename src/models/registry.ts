/**
 * The model registry: every version the loader has seen, its state, and the routing table that
 * requests read. The routing table is an immutable object replaced in one assignment, so a swap is
 * atomic: a request resolves its versions once, holds a reference on each, and finishes on them.
 * A version leaves memory only after its in-flight references drain.
 */
import { EventEmitter } from 'node:events';
import { Errors } from '../errors.js';
import type { FeaturePlan } from '../features/plan.js';
import type { Manifest, Objective, Surface } from './manifest.js';
import type { LoadInfo } from './pool.js';
import { inCanary, type Rollout } from './rollout.js';

export type VersionState = 'discovered' | 'loading' | 'validating' | 'ready' | 'failed' | 'draining' | 'unloaded';
export type Arm = 'stable' | 'canary' | 'pinned' | 'shadow';

export interface GateReport {
  passed: boolean;
  checks: Array<{ name: string; passed: boolean; detail: string }>;
  msPerCandidate?: number;
  scoreMean?: number;
  scoreQuantiles?: Record<string, number>;
}

export interface ModelVersion {
  name: string;
  version: number;
  key: string;
  dir: string;
  state: VersionState;
  reason: string | null;
  manifest: Manifest | null;
  plan: FeaturePlan | null;
  outputName: string;
  load: LoadInfo | null;
  gate: GateReport | null;
  refs: number;
  changedAt: number;
  /** Resolved when refs drop to 0 while draining. */
  drained: (() => void) | null;
}

export interface ModelRoute {
  stable: ModelVersion;
  canary: { version: ModelVersion; percent: number } | null;
  shadow: ModelVersion[];
}

export interface RoutingTable {
  salt: string;
  surfaces: Map<Surface, { ctr: string; cvr: string }>;
  models: Map<string, ModelRoute>;
  /** Why a flag could not take effect (a flagged version not ready, a route without a model). */
  warnings: string[];
}

export interface Resolved {
  version: ModelVersion;
  arm: Arm;
  shadows: ModelVersion[];
}

/**
 * Whether a routed version may score: the table is built from ready versions, and one that left ready
 * since (reloading, validating) must not serve what its gate has not passed. Draining still serves:
 * its sessions stay loaded until its requests are done.
 */
const serves = (version: ModelVersion) => version.state === 'ready' || version.state === 'draining';

export class ModelRegistry extends EventEmitter {
  #versions = new Map<string, Map<number, ModelVersion>>();
  #table: RoutingTable = { salt: '', surfaces: new Map(), models: new Map(), warnings: [] };
  #rollout: Rollout | null = null;

  get routing(): RoutingTable {
    return this.#table;
  }

  get rollout(): Rollout | null {
    return this.#rollout;
  }

  models(): string[] {
    return [...this.#versions.keys()].sort();
  }

  versions(name: string): ModelVersion[] {
    return [...(this.#versions.get(name)?.values() ?? [])].sort((a, b) => a.version - b.version);
  }

  get(name: string, version: number): ModelVersion | undefined {
    return this.#versions.get(name)?.get(version);
  }

  /** The entry of `name`@`version`, or the 404 that says whether the model or only the version is unknown. */
  require(name: string, version: number): ModelVersion {
    const byVersion = this.#versions.get(name);
    const entry = byVersion?.get(version);
    if (entry) return entry;
    throw byVersion ? Errors.UNKNOWN_VERSION(name, version) : Errors.UNKNOWN_MODEL(name);
  }

  all(): ModelVersion[] {
    return this.models().flatMap((name) => this.versions(name));
  }

  /** Record a version directory; returns the existing entry if known. */
  discover(name: string, version: number, dir: string): ModelVersion {
    let byVersion = this.#versions.get(name);
    if (!byVersion) this.#versions.set(name, (byVersion = new Map()));
    let entry = byVersion.get(version);
    if (!entry) {
      entry = {
        name,
        version,
        key: `${name}@${version}`,
        dir,
        state: 'discovered',
        reason: null,
        manifest: null,
        plan: null,
        outputName: 'p',
        load: null,
        gate: null,
        refs: 0,
        changedAt: Date.now(),
        drained: null,
      };
      byVersion.set(version, entry);
    }
    return entry;
  }

  /** Forget a version whose directory disappeared and that holds nothing. */
  forget(entry: ModelVersion): void {
    this.#versions.get(entry.name)?.delete(entry.version);
    if (this.#versions.get(entry.name)?.size === 0) this.#versions.delete(entry.name);
    this.emit('forgotten', entry);
  }

  setState(entry: ModelVersion, state: VersionState, reason: string | null = null): void {
    const previous = entry.state;
    entry.state = state;
    entry.reason = reason;
    entry.changedAt = Date.now();
    this.emit('state', entry, previous);
  }

  /**
   * Recompute the routing table from flags and version states. A flagged version that is not ready
   * does not take effect: the model keeps its previous stable version if that is still ready, else
   * the newest ready version; the reason is kept in `warnings`.
   */
  applyRollout(rollout: Rollout): RoutingTable {
    const previous = this.#table;
    const models = new Map<string, ModelRoute>();
    const warnings: string[] = [];
    for (const [name, flags] of Object.entries(rollout.models)) {
      let stable = this.#ready(name, flags.stable);
      if (!stable) {
        const kept = previous.models.get(name)?.stable;
        const fallback = kept && kept.state === 'ready' ? kept : this.#newestReady(name);
        const state = this.get(name, flags.stable)?.state ?? 'absent';
        if (fallback) warnings.push(`${name}: stable ${flags.stable} is ${state}; serving ${fallback.version}`);
        else warnings.push(`${name}: stable ${flags.stable} is ${state} and no other version is ready`);
        stable = fallback ?? null;
      }
      if (!stable) continue;
      let canary: ModelRoute['canary'] = null;
      if (flags.canary && flags.canary.percent > 0) {
        const version = this.#ready(name, flags.canary.version);
        if (version && version !== stable) canary = { version, percent: flags.canary.percent };
        else if (!version) warnings.push(`${name}: canary ${flags.canary.version} is ${this.get(name, flags.canary.version)?.state ?? 'absent'}; not routed`);
      }
      const shadow: ModelVersion[] = [];
      for (const v of flags.shadow ?? []) {
        const version = this.#ready(name, v);
        if (version && version !== stable) shadow.push(version);
        else if (!version) warnings.push(`${name}: shadow ${v} is ${this.get(name, v)?.state ?? 'absent'}; not scored`);
      }
      models.set(name, { stable, canary, shadow });
    }
    const surfaces = new Map<Surface, { ctr: string; cvr: string }>();
    for (const [surface, route] of Object.entries(rollout.routes) as Array<[Surface, { ctr: string; cvr: string }]>) {
      if (models.has(route.ctr) && models.has(route.cvr)) surfaces.set(surface, route);
      else warnings.push(`surface ${surface}: ${[route.ctr, route.cvr].filter((m) => !models.has(m)).join(' and ')} not servable`);
    }
    this.#rollout = rollout;
    this.#table = { salt: rollout.salt, surfaces, models, warnings };
    this.emit('routing', this.#table);
    return this.#table;
  }

  /** Versions that routing or flags reference; the loader never unloads these. */
  referenced(): Set<string> {
    const keys = new Set<string>();
    for (const route of this.#table.models.values()) {
      keys.add(route.stable.key);
      if (route.canary) keys.add(route.canary.version.key);
      for (const s of route.shadow) keys.add(s.key);
    }
    for (const [name, flags] of Object.entries(this.#rollout?.models ?? {})) {
      keys.add(`${name}@${flags.stable}`);
      if (flags.canary) keys.add(`${name}@${flags.canary.version}`);
      for (const v of flags.shadow ?? []) keys.add(`${name}@${v}`);
    }
    return keys;
  }

  #ready(name: string, version: number): ModelVersion | null {
    const entry = this.get(name, version);
    return entry && entry.state === 'ready' ? entry : null;
  }

  #newestReady(name: string): ModelVersion | null {
    const ready = this.versions(name).filter((v) => v.state === 'ready');
    return ready.length > 0 ? ready[ready.length - 1] : null;
  }

  /**
   * Resolve the version that scores `objective` on `surface` for this user; takes a reference. A canary
   * that `servable` says cannot be served now (no inference worker holds it) sends its users to stable.
   */
  resolve(surface: Surface, objective: Objective, userId: number, pin: Record<string, number> | undefined, servable: (version: ModelVersion) => boolean = () => true): Resolved {
    const table = this.#table;
    const route = table.surfaces.get(surface);
    if (!route) {
      // A routed surface whose models are not ready is unavailable (503), not unknown (404).
      const configured = this.#rollout?.routes[surface];
      if (configured) throw Errors.NO_MODEL(table.models.has(configured.ctr) ? configured.cvr : configured.ctr);
      throw Errors.UNKNOWN_SURFACE(surface, Object.keys(this.#rollout?.routes ?? {}));
    }
    const name = route[objective];
    const modelRoute = table.models.get(name);
    if (!modelRoute) throw Errors.NO_MODEL(name);
    const pinned = pin && Object.hasOwn(pin, name) ? pin[name] : undefined;
    let version: ModelVersion;
    let arm: Arm;
    if (pinned !== undefined) {
      const entry = this.get(name, pinned);
      if (!entry) throw Errors.UNKNOWN_VERSION(name, pinned);
      if (entry.state !== 'ready') throw Errors.VERSION_NOT_READY(entry.key, entry.state);
      version = entry;
      arm = 'pinned';
    } else if (modelRoute.canary && inCanary(userId, name, table.salt, modelRoute.canary.percent) && servable(modelRoute.canary.version) && serves(modelRoute.canary.version)) {
      version = modelRoute.canary.version;
      arm = 'canary';
    } else {
      version = modelRoute.stable;
      arm = 'stable';
    }
    if (!serves(version)) throw Errors.VERSION_UNAVAILABLE(version.key);
    version.refs++;
    return { version, arm, shadows: modelRoute.shadow };
  }

  acquire(version: ModelVersion): void {
    version.refs++;
  }

  release(version: ModelVersion): void {
    version.refs--;
    if (version.refs === 0 && version.drained) {
      const done = version.drained;
      version.drained = null;
      done();
    }
  }

  /** Wait until no request holds `version` (the caller has already removed it from routing). */
  drain(version: ModelVersion): Promise<void> {
    if (version.refs === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = version.drained;
      version.drained = () => {
        previous?.();
        resolve();
      };
    });
  }
}
