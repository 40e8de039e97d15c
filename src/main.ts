/**
 * Process entry: read config, then either supervise HTTP_PROCESSES server processes (the cluster
 * primary, src/cluster.ts) or be one server: build the app, listen, shut down gracefully on
 * SIGTERM/SIGINT.
 */
import pino from 'pino';
import { isClusterChild, joinCluster, perProcessPath, runPrimary } from './cluster.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { missingServerNodeFlags } from './runtime-flags.js';

async function serve(config: Config): Promise<void> {
  // Imported here so that a cluster primary never loads ONNX Runtime.
  const { buildApp } = await import('./app.js');
  const { createMetrics } = await import('./metrics.js');
  let metrics = undefined;
  let link = undefined;
  if (isClusterChild()) {
    metrics = createMetrics();
    link = joinCluster(config, metrics.registry);
    // Several processes appending to one file could interleave lines: one log file per process.
    if (config.impressionLog) config = { ...config, impressionLog: perProcessPath(config.impressionLog, link.index) };
  }
  const app = await buildApp(config, { metrics, cluster: link });
  const log = app.ranker.log;
  const missing = missingServerNodeFlags();
  if (missing.length > 0 && (!link || link.index === 0)) {
    log.warn({ missing }, 'node was started without these V8 heap flags: expect full garbage collections every few hundred ms under load (start with `npm start`, or see README "V8 heap flags")');
  }
  // A burst of new connections under overload overflows Node's default accept queue (511); dropped
  // SYNs come back after 1, 3, 7 s of TCP retransmits, which then dominate tail latency.
  await app.listen({ port: config.port, host: config.host, backlog: config.listenBacklog });
  if (config.adminToken) {
    await app.ranker.admin.listen({ port: config.adminPort, host: config.adminHost });
  } else if (!link || link.index === 0) {
    log.warn('ADMIN_TOKEN is not set: the admin API is disabled');
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: no new connections, finishing in-flight requests');
    const force = setTimeout(() => {
      log.error('graceful shutdown timed out; exiting');
      process.exit(1);
    }, config.shutdownGraceMs);
    force.unref();
    app.close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error) => {
        log.error({ err: error }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function main(): void {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  if (config.httpProcesses > 1 && !isClusterChild()) {
    runPrimary(config, pino({ level: config.logLevel, base: { service: 'gem-lite-ranker', role: 'primary' } }));
  } else {
    void serve(config);
  }
}

main();
