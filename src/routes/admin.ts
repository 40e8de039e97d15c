/**
 * Admin API, on its own port (loopback by default) behind a bearer token compared in constant time:
 * models, versions (all, or one), states and gate results; flags; load / unload; rescan; canary verdicts; shadow.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Ranker } from '../app.js';
import { Errors } from '../errors.js';
import { kPlainName, kPlainVersion } from '../models/loader.js';
import type { ModelVersion } from '../models/registry.js';
import { flagsOf } from '../models/rollout.js';

export interface AdminRouteOptions {
  ranker: Ranker;
  isReady(): boolean;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export function tokenMatches(header: string | undefined, token: string | null): boolean {
  if (!token || !header || !header.startsWith('Bearer ')) return false;
  // Equal-length digests make the comparison constant-time whatever the lengths.
  return timingSafeEqual(digest(header.slice(7)), digest(token));
}

function plainName(name: string): string {
  if (!kPlainName.test(name)) throw Errors.BAD_IDENTIFIER('model name', name.slice(0, 80));
  return name;
}

function plainVersion(version: string): number {
  if (!kPlainVersion.test(version)) throw Errors.BAD_IDENTIFIER('version', version.slice(0, 80));
  return Number(version);
}

function describe(entry: ModelVersion) {
  return {
    version: entry.version,
    state: entry.state,
    reason: entry.reason,
    changedAt: new Date(entry.changedAt).toISOString(),
    inFlight: entry.refs,
    provider: entry.load?.provider ?? null,
    providerFallbacks: entry.load?.fallbacks ?? [],
    gate: entry.gate,
    distillation: entry.manifest?.lineage.distillation ?? null,
    metrics: entry.manifest?.lineage.metrics ?? null,
  };
}

const flagsBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    stable: { type: 'integer', minimum: 1 },
    canary: {
      anyOf: [
        { type: 'null' },
        { type: 'object', additionalProperties: false, required: ['version', 'percent'], properties: { version: { type: 'integer', minimum: 1 }, percent: { type: 'number', minimum: 0, maximum: 100 } } },
      ],
    },
    shadow: { type: 'array', maxItems: 4, items: { type: 'integer', minimum: 1 } },
  },
};

export async function adminRoutes(app: FastifyInstance, { ranker, isReady }: AdminRouteOptions): Promise<void> {
  const { registry, loader, canary, shadow, config, pool } = ranker;
  /**
   * Routing warnings plus, computed now, routed versions no inference worker holds (a replacement
   * worker failed to reload them and retries): the flags still name them, but a canary's users get
   * stable and a stable one answers 503 meanwhile.
   */
  const warnings = () => {
    const out = [...registry.routing.warnings];
    for (const [name, route] of registry.routing.models) {
      if (!pool.mayServe(route.stable.key)) out.push(`${route.stable.key} (stable) is held by no inference worker; its requests answer 503 until a reload succeeds`);
      if (route.canary && !pool.mayServe(route.canary.version.key)) out.push(`${route.canary.version.key} (canary) is held by no inference worker; its users get ${name}@${route.stable.version} until a reload succeeds`);
    }
    return out;
  };
  app.addHook('onRequest', async (request) => {
    if (!tokenMatches(request.headers.authorization, config.adminToken)) throw Errors.UNAUTHORIZED();
  });

  app.get('/admin/models', async () => ({
    ready: isReady(),
    // With HTTP_PROCESSES > 1 this is one process's view; flag changes reach the others via rollout.json.
    process: { pid: process.pid, index: ranker.cluster?.index ?? 0, of: ranker.cluster?.size ?? 1 },
    rolloutError: loader.rolloutError,
    warnings: warnings(),
    models: Object.fromEntries(
      registry.models().map((name) => {
        const route = registry.routing.models.get(name);
        return [
          name,
          {
            serving: route ? { stable: route.stable.version, canary: route.canary ? { version: route.canary.version.version, percent: route.canary.percent } : null, shadow: route.shadow.map((s) => s.version) } : null,
            flags: flagsOf(registry.rollout, name) ?? null,
            versions: registry.versions(name).map(describe),
          },
        ];
      }),
    ),
  }));

  app.get<{ Params: { name: string } }>('/admin/models/:name', async (request) => {
    const name = plainName(request.params.name);
    const versions = registry.versions(name);
    if (versions.length === 0) throw Errors.UNKNOWN_MODEL(name);
    return { name, flags: flagsOf(registry.rollout, name) ?? null, versions: versions.map(describe) };
  });

  // One version, for a publisher waiting on its new version: the listings above grow with every
  // version kept on disk (~1.6 KB each with its gate report), this answer does not.
  app.get<{ Params: { name: string; version: string } }>('/admin/models/:name/versions/:version', async (request) => {
    const name = plainName(request.params.name);
    return { name, ...describe(registry.require(name, plainVersion(request.params.version))) };
  });

  app.get('/admin/rollout', async () => ({ rollout: registry.rollout, warnings: registry.routing.warnings, rolloutError: loader.rolloutError }));

  app.put('/admin/rollout', async (request) => ({ warnings: await loader.setRollout(request.body) }));

  app.patch<{ Params: { name: string }; Body: { stable?: number; canary?: { version: number; percent: number } | null; shadow?: number[] } }>(
    '/admin/models/:name/flags',
    { schema: { body: flagsBody } },
    async (request) => {
      const name = plainName(request.params.name);
      const warnings = await loader.updateFlags(name, request.body);
      return { flags: flagsOf(registry.rollout, name) ?? null, warnings };
    },
  );

  app.post<{ Params: { name: string; version: string } }>('/admin/models/:name/versions/:version/load', async (request) => {
    const entry = await loader.loadByHand(plainName(request.params.name), plainVersion(request.params.version));
    return describe(entry);
  });

  app.post<{ Params: { name: string; version: string } }>('/admin/models/:name/versions/:version/unload', async (request) => {
    const entry = await loader.unloadByHand(plainName(request.params.name), plainVersion(request.params.version));
    return describe(entry);
  });

  app.post('/admin/rescan', async () => {
    await loader.scan();
    return { scans: loader.scans, ready: isReady(), warnings: registry.routing.warnings };
  });

  app.get('/admin/canary', async () => ({ windows: canary.windows(), verdicts: canary.verdicts }));
  app.get('/admin/shadow', async () => ({ summaries: shadow.summaries(), dropped: shadow.dropped }));
}
