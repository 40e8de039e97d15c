/** Builds an app over a fixture repository with test-friendly config (silent logs, no fs.watch). */
import { connect, type Socket } from 'node:net';
import pino from 'pino';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { FeatureMap, RankRequest } from '../../src/features/request.js';
import type { Rollout } from '../../src/models/rollout.js';
import { makeRepo, type VersionSpec } from './fixture-repo.js';

/**
 * The event-loop lag controller is off (a 60 s target) unless a test sets it: on a CI host whose CPU
 * is starved or stolen the loop is late and busy at random, and the controller then sheds requests
 * that a test expects served (seen in a fresh-clone CI run). Its control law is tested on its own
 * (test/admission.test.ts).
 */
export async function startApp(modelRepo: string, overrides: Partial<Config> = {}) {
  const config = loadConfig({}, { modelRepo, logLevel: 'silent', poolSize: 1, watchRepo: false, rescanIntervalMs: 3_600_000, adminToken: 'test-token-0123456789', maxEventLoopDelayMs: 60_000, ...overrides });
  const app = await buildApp(config, { logger: pino({ level: 'silent' }) });
  await app.ready();
  return app;
}

/**
 * Config that lets the slow fixture (~100x a student's cost per candidate) pass the gate: the default
 * latency limit holds it back. The distribution limits are the defaults.
 */
export const kSlowModelsLoad: Partial<Config> = { gate: { maxMeanShift: 1.5, maxQuantileShift: 2.5, maxMsPerCandidate: 1000 } };

/** An app over a fresh fixture repository; both are closed and removed when the test ends. */
export async function startAppWithRepo(t: import('node:test').TestContext, overrides: Partial<Config> = {}, versions?: VersionSpec[], rollout?: Rollout) {
  const repo = makeRepo(versions, rollout);
  const app = await startApp(repo.dir, overrides);
  t.after(async () => {
    await app.close();
    repo.cleanup();
  });
  return { app, repo: repo.dir };
}

/**
 * An app over a fresh fixture repository, listening on 127.0.0.1, and raw sockets to it; when the
 * test ends the sockets are destroyed (a half-sent request would hold close() open), then the app
 * closed (if the test did not) and the repository removed.
 */
export async function listenWithRepo(t: import('node:test').TestContext, overrides: Partial<Config> = {}, versions?: VersionSpec[]) {
  const repo = makeRepo(versions);
  const app = await startApp(repo.dir, overrides);
  const sockets: Socket[] = [];
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await app.close().catch(() => undefined);
    repo.cleanup();
  });
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  const open = (): Socket => {
    const socket = connect(Number(url.port), url.hostname);
    socket.on('error', () => undefined);
    sockets.push(socket);
    return socket;
  };
  return { app, url, open };
}

/** A golden case's inputs as an OIP v2 infer body's `inputs`. */
export function inferInputs(inputs: Record<string, { dtype: string; shape: number[]; data: number[] }>) {
  return Object.entries(inputs).map(([name, x]) => ({ name, datatype: x.dtype === 'int64' ? 'INT64' : 'FP32', shape: x.shape, data: x.data }));
}

export const kAdminAuth = { authorization: 'Bearer test-token-0123456789' };

/** A deterministic request: `n` candidates, `h` history events. */
export function sampleRequest(n = 20, h = 30, seed = 1, surface = 'feed'): RankRequest {
  let s = seed;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 4294967296;
  };
  const creatives = ['image', 'video', 'carousel'];
  const bidTypes = ['cpc', 'cpa', 'cpm'] as const;
  const features = (): FeatureMap => ({ quality: next(), creative: creatives[Math.floor(next() * 3)], price_tier: Math.floor(next() * 5) });
  return {
    surface,
    requestId: `test-${seed}`,
    user: {
      id: 1000 + seed,
      features: { age_bucket: Math.floor(next() * 7), activity: next(), tenure_days: Math.floor(next() * 900), device: 'ios' },
      history: Array.from({ length: h }, (_, i) => ({
        adId: Math.floor(next() * 1e6),
        category: Math.floor(next() * 200),
        surface: ['feed', 'stories', 'reels'][i % 3],
        event: ['impression', 'impression', 'click'][i % 3],
        ts: 1767225600000 + i * 1000,
      })),
    },
    context: { hour: Math.floor(next() * 24) },
    candidates: Array.from({ length: n }, (_, i) => ({
      adId: 5000 + seed * 10000 + i,
      advertiserId: Math.floor(next() * 5000),
      category: Math.floor(next() * 200),
      bid: Math.round(next() * 300) / 100,
      bidType: bidTypes[i % 3],
      features: features(),
    })),
  };
}
