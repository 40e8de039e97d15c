/** Process entry: read config, build the app, listen, and shut down gracefully on SIGTERM/SIGINT. */
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const app = await buildApp(config);
  const log = app.ranker.log;
  // A burst of new connections under overload overflows Node's default accept queue (511); dropped
  // SYNs come back after 1, 3, 7 s of TCP retransmits, which then dominate tail latency.
  await app.listen({ port: config.port, host: config.host, backlog: config.listenBacklog });
  if (config.adminToken) {
    await app.ranker.admin.listen({ port: config.adminPort, host: config.adminHost });
  } else {
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

void main();
