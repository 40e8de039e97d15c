/**
 * The composition root: buildApp(config) wires the registry, worker pool, loader, rank service,
 * metrics, shadow runner and canary monitor into a Fastify instance (the ranking API) plus a second
 * one for the admin API. Tests drive both with inject(); src/main.ts only listens and handles signals.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import pino, { type Logger } from 'pino';
import type { ClusterLink } from './cluster.js';
import type { Config } from './config.js';
import { Errors } from './errors.js';
import { createMetrics, VersionSeriesRetirement, type Metrics } from './metrics.js';
import { ModelLoader } from './models/loader.js';
import { InferencePool } from './models/pool.js';
import { worldReferenceRequests } from './models/reference.js';
import type { ReferenceSource } from './models/gate.js';
import { ModelRegistry } from './models/registry.js';
import { CanaryMonitor } from './ranking/canary-monitor.js';
import { createImpressionLog, type ImpressionLog } from './ranking/impression-log.js';
import { RankService } from './ranking/rank-service.js';
import { ShadowRunner } from './ranking/shadow.js';
import { UserCache } from './ranking/user-cache.js';
import { adminRoutes } from './routes/admin.js';
import { AdmissionController } from './routes/admission.js';
import { connectionFlood } from './routes/turn-queue.js';
import { handleError } from './routes/errors.js';
import { rankRoutes } from './routes/rank.js';
import { v2Routes } from './routes/v2.js';
import { projectVersion } from './paths.js';

export interface AppOptions {
  logger?: Logger;
  reference?: ReferenceSource;
  /** Metrics created by the caller (a cluster child registers them for aggregation first). */
  metrics?: Metrics;
  /** Set when this process is one of HTTP_PROCESSES (src/cluster.ts). */
  cluster?: ClusterLink;
}

export interface Ranker {
  config: Config;
  registry: ModelRegistry;
  pool: InferencePool;
  loader: ModelLoader;
  metrics: Metrics;
  service: RankService;
  cache: UserCache;
  canary: CanaryMonitor;
  shadow: ShadowRunner;
  impressions: ImpressionLog | null;
  admin: FastifyInstance;
  log: Logger;
  cluster: ClusterLink | null;
}

declare module 'fastify' {
  interface FastifyInstance {
    ranker: Ranker;
  }
}

export async function buildApp(config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  const cluster = options.cluster ?? null;
  const log = options.logger ?? pino({ level: config.logLevel, base: { service: 'gem-lite-ranker', ...(cluster ? { process: cluster.index } : {}) } });
  const metrics = options.metrics ?? createMetrics();
  const registry = new ModelRegistry();
  const pool = new InferencePool(config, {
    batch(key, requests, candidates, runMs) {
      metrics.batchSize.observe({ model: key.split('@')[0] }, candidates);
      metrics.batchRequests.observe(requests);
      metrics.runMs.observe({ model: key.split('@')[0] }, runMs);
    },
    workerExit(workerId, code) {
      metrics.workerExits.inc();
      log.error({ workerId, code }, 'inference worker exited; replacing it');
    },
    reloadFailed(key, workerId, error, heldBy, attempt) {
      // heldBy 0: no worker has a session for the version until a retry succeeds or an operator loads it
      // again; meanwhile its requests answer 503 MODEL_VERSION_UNAVAILABLE (a canary's users get stable).
      log.error({ key, workerId, heldBy, attempt, err: error }, heldBy > 0 ? 'replacement worker could not reload a version; the other workers serve it' : 'replacement worker could not reload a version; no worker holds it now');
    },
    startFailed(workerId, code, attempt, retryInMs) {
      log.error({ workerId, code, attempt, retryInMs }, 'inference worker exited before it was ready; starting another');
    },
  });
  const cache = new UserCache(config.userCacheEntries, config.userCacheTtlMs, (hit) => metrics.userCache.inc({ result: hit ? 'hit' : 'miss' }));
  const retirement = new VersionSeriesRetirement(metrics, config.metricsVersionGraceMs, (error) => log.error({ err: error }, 'retiring a version\'s metric series failed'));
  let loader: ModelLoader;
  const canary = new CanaryMonitor(config.canary, registry, log, metrics, (name, version) => loader.rollbackCanary(name, version));
  const shadow = new ShadowRunner(pool, registry, metrics, { maxInflight: config.shadowMaxInflight, maxRunMs: config.shadowMaxRunMs });
  const impressions = config.impressionLog ? createImpressionLog(config.impressionLog) : null;
  loader = new ModelLoader(config, registry, pool, log, options.reference ?? worldReferenceRequests, {
    failed: (entry) => metrics.loadFailures.inc({ model: entry.name }),
    rolloutRejected: () => metrics.rolloutRejected.inc(),
    rolloutWritten: () => cluster?.announceFlagsChanged(),
    loaded: (entry) => {
      retirement.cancel(entry.name, entry.version);
      metrics.provider.set({ model: entry.name, version: String(entry.version), provider: entry.load!.provider }, 1);
    },
    unloaded: (entry) => {
      cache.purge(entry.key);
      retirement.unloaded(entry.name, entry.version);
      metrics.provider.remove({ model: entry.name, version: String(entry.version), provider: entry.load?.provider ?? 'cpu' });
    },
  });
  cluster?.onFlagsChanged(() => void loader.scan());
  registry.on('state', (entry, previous) => {
    metrics.versionState.remove({ model: entry.name, version: String(entry.version), state: previous });
    if (entry.state !== 'unloaded') metrics.versionState.set({ model: entry.name, version: String(entry.version), state: entry.state }, 1);
  });
  registry.on('forgotten', (entry) => metrics.versionState.remove({ model: entry.name, version: String(entry.version), state: entry.state }));
  const service = new RankService(registry, pool, cache, metrics, config, {
    observe: (o) => canary.observe(o),
    shadow: (request, objective, primary, versions) => shadow.schedule(request, primary, versions),
    impressions: impressions ? (request, result, candidateIndex) => impressions.write(request, result, candidateIndex) : undefined,
  });

  // Both APIs validate strictly: Fastify's defaults coerce types and drop unknown keys, which turned an
  // admin `{"stable": true}` into version 1 and a mistyped field into a silent no-op.
  const ajv = { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, allowUnionTypes: true } } as const;
  const app: FastifyInstance = Fastify({
    loggerInstance: log as unknown as FastifyBaseLogger,
    // Per-request access lines cost more than scoring at our rates; metrics and error logs cover it.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    ajv,
    // A malformed URL is answered before routing, past setErrorHandler: without this, in Fastify's shape.
    frameworkErrors: handleError,
    // Our own 503 while closing (below): Fastify's skips hooks, so it had no Retry-After and not the
    // API's error shape.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });
  const admin: FastifyInstance = Fastify({
    loggerInstance: log.child({ api: 'admin' }) as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    ajv,
    frameworkErrors: handleError,
  });
  const ranker: Ranker = { config, registry, pool, loader, metrics, service, cache, canary, shadow, impressions, admin, log, cluster };
  app.decorate('ranker', ranker);
  app.setErrorHandler(handleError);
  admin.setErrorHandler(handleError);
  // JSON only: a text body would otherwise reach the schema as a string and read as a 400.
  app.removeContentTypeParser('text/plain');
  const notFound = (request: FastifyRequest, reply: FastifyReply) => reply.code(404).send({ error: { code: 'NOT_FOUND', message: `${request.method} ${request.url} is not a route` } });
  app.setNotFoundHandler(notFound);
  admin.setNotFoundHandler(notFound);

  const modelsReady = () => {
    const rollout = registry.rollout;
    return rollout !== null && Object.keys(rollout.routes).length > 0 && registry.routing.surfaces.size === Object.keys(rollout.routes).length;
  };
  // No ready inference worker (the only one crashed and its replacement is reloading): requests
  // would wait, so a load balancer should send them elsewhere meanwhile.
  const isReady = () => !closing && (cluster === null || cluster.ready()) && pool.readyWorkers > 0 && modelsReady();

  const kWaitingLine = { inflight: '', line_full: ', waiting line full', wait_timeout: ', no place within the wait' } as const;
  const admission = new AdmissionController({
    targetLagMs: config.maxEventLoopDelayMs,
    maxInflight: config.maxInflightRequests,
    maxWaitMs: config.admissionWaitMs,
    maxWaiting: config.admissionWaitQueue,
    sustained: { afterMs: config.overloadAfterMs, maxInflight: config.overloadMaxInflight, maxWaitMs: config.overloadWaitMs },
  });
  /**
   * Keep a place until the response finished or the client went away, whichever is first, once. The
   * socket's 'close' is needed too: a pipelined request's response waits behind the one before it,
   * is never attached to the socket, and gets no 'close' of its own when the client goes away. The
   * body must arrive within REQUEST_BODY_TIMEOUT_MS: a stalled upload would hold its place for good.
   */
  const hold = (request: FastifyRequest, reply: FastifyReply) => {
    const socket = request.raw.socket;
    let bodyTimer: NodeJS.Timeout | null = null;
    const bodyArrived = () => {
      if (bodyTimer) clearTimeout(bodyTimer);
      bodyTimer = null;
    };
    let held = true;
    const release = () => {
      // Guarded, not only unsubscribed: a socket's 'close' runs the listeners it had when it began, and
      // the response's own 'close' (fired from the socket's) may already have released.
      if (!held) return;
      held = false;
      socket.off('close', release);
      reply.raw.off('close', release);
      request.raw.off('end', bodyArrived);
      bodyArrived();
      admission.done();
    };
    reply.raw.once('close', release);
    socket.once('close', release);
    if (!request.raw.complete) {
      request.raw.once('end', bodyArrived);
      bodyTimer = setTimeout(() => {
        metrics.bodyTimeouts.inc();
        socket.destroy();
      }, config.requestBodyTimeoutMs);
    }
  };
  let closing = false;
  // While closing: a clear, retryable answer on the keep-alive connections still open, and each answer
  // ends its connection, or an idle keep-alive socket held the close (and the grace) until its client
  // let go (Node closes idle sockets once, when the close begins).
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    return reply
      .code(503)
      .header('retry-after', '1')
      .header('connection', 'close')
      .send({ error: { code: Errors.SHUTTING_DOWN.code, message: Errors.SHUTTING_DOWN().message } });
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  // Scoring routes share the main thread and the workers, so they share the bound: /v1/rank and
  // the OIP infer routes (raw tensors, which would otherwise queue batches on the workers unbounded).
  const admitted = new Set(['/v1/rank', '/v2/models/:name/infer', '/v2/models/:name/versions/:version/infer']);
  app.addHook('onRequest', async (request, reply) => {
    if (!admitted.has(request.routeOptions.url ?? '')) return;
    if (admission.admit()) {
      hold(request, reply);
      return;
    }
    const ticket = admission.wait();
    if (ticket) {
      // The body is not read while the request waits; a client that goes away leaves the line.
      const socket = request.raw.socket;
      socket.once('close', ticket.cancel);
      const granted = await ticket.granted;
      socket.off('close', ticket.cancel);
      if (granted) {
        if (socket.destroyed) admission.done();
        else hold(request, reply);
        return;
      }
      if (socket.destroyed) {
        // Nobody is left to refuse: not a shed request, and the 503 below only ends Fastify's chain.
        metrics.abandoned.inc();
        return reply.code(503).send();
      }
    }
    const reason = admission.lastRefusal;
    metrics.shed.inc({ reason });
    return reply
      .code(503)
      .header('retry-after', '1')
      .send({
        error: {
          code: Errors.OVERLOADED.code,
          message: reason === 'event_loop' ? `server overloaded: event-loop lag ${admission.lagMs.toFixed(1)} ms` : `server overloaded: ${admission.inflight} requests in progress${kWaitingLine[reason]}`,
        },
      });
  });
  const boundParseTurns = connectionFlood(app.server, () => admission.overloaded);
  await app.register(rankRoutes, { config, service, metrics, boundParseTurns });
  await app.register(v2Routes, { registry, pool, isReady, version: projectVersion, limits: { maxCandidates: config.maxCandidates } });
  metrics.sample({
    queuedCandidates: () => pool.queuedCandidates,
    admission: () => ({ inflight: admission.inflight, waiting: admission.waiting, sustainedOverload: admission.sustainedOverload }),
    versions: () => registry.all(),
  });
  // In a cluster a scrape reaches one process; it answers with the sum over all of them.
  app.get('/metrics', async (_request, reply) =>
    reply.header('content-type', metrics.registry.contentType).send(cluster ? await cluster.metrics() : await metrics.registry.metrics()),
  );
  await admin.register(adminRoutes, { ranker, isReady });

  app.addHook('onReady', async () => {
    await pool.start();
    await loader.start();
    admission.start();
    if (!modelsReady()) log.warn({ warnings: registry.routing.warnings, rolloutError: loader.rolloutError }, 'not every routed surface has a ready model');
  });
  app.addHook('preClose', async () => {
    closing = true;
    admission.stop();
    await loader.stop();
  });
  app.addHook('onClose', async () => {
    retirement.close();
    await shadow.idle();
    await pool.close();
    await impressions?.close();
    await admin.close();
  });
  return app;
}
