/**
 * HTTP_PROCESSES > 1. One process's main thread (body parsing, validation, feature encoding,
 * serialization) is the limit of the server on small machines, and worker threads cannot share a
 * listening socket, so N processes share the ranking port through node:cluster. Each process is a whole server: its own inference pool,
 * loader and registry, all converging on the same model repository and rollout.json, which every
 * loader re-reads on each scan (the admin API and canary rollbacks write that file, and the writer
 * tells the others through the primary to rescan at once).
 *
 * The primary does no ranking. It forks the processes, restarts one that dies, forwards
 * SIGTERM/SIGINT, tells the processes once all of them listen (so /v2/health/ready does not report
 * ready while one process is still loading models and every early connection would stick to the
 * other), and answers /metrics requests with the sum over processes (prom-client's
 * AggregatorRegistry).
 */
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import client from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from './config.js';

const kReady = 'gem:cluster-ready';
const kMetricsRequest = 'gem:metrics-request';
const kMetricsResponse = 'gem:metrics-response';
const kFlagsChanged = 'gem:flags-changed';
const kIndexVariable = 'HTTP_PROCESS_INDEX';

interface MetricsRequest {
  type: typeof kMetricsRequest;
  id: number;
}
interface MetricsResponse {
  type: typeof kMetricsResponse;
  id: number;
  text?: string;
  error?: string;
}

/** What a server process needs to know about the cluster it is part of. */
export interface ClusterLink {
  /** 0-based index of this process (stable across restarts of the same slot). */
  index: number;
  size: number;
  /** True once every process of the cluster has listened on the ranking port. */
  ready(): boolean;
  /** Prometheus text summed over all processes. */
  metrics(): Promise<string>;
  /** Tell the other processes that this one wrote rollout.json, so that they rescan now. */
  announceFlagsChanged(): void;
  /** Called when another process wrote rollout.json. */
  onFlagsChanged(listener: () => void): void;
}

export function isClusterChild(): boolean {
  return cluster.isWorker;
}

/** Per-process file for anything that must not be appended to by several processes at once. */
export function perProcessPath(file: string, index: number): string {
  const ext = path.extname(file);
  return `${file.slice(0, file.length - ext.length)}-p${index}${ext}`;
}

/** Called in a cluster child: answers the primary's metrics requests and receives readiness. */
export function joinCluster(config: Pick<Config, 'httpProcesses'>, registry: client.Registry): ClusterLink {
  if (!cluster.isWorker || !process.send) throw new Error('joinCluster() outside a cluster child');
  // prom-client answers the primary's aggregation requests with these registries.
  client.AggregatorRegistry.setRegistries([registry]);
  new client.AggregatorRegistry();
  let ready = false;
  let nextId = 0;
  const flagListeners: Array<() => void> = [];
  const pending = new Map<number, { resolve(text: string): void; reject(error: Error): void; timer: NodeJS.Timeout }>();
  process.on('message', (message: { type?: string }) => {
    if (message?.type === kReady) ready = true;
    if (message?.type === kFlagsChanged) for (const listener of flagListeners) listener();
    if (message?.type === kMetricsResponse) {
      const response = message as MetricsResponse;
      const request = pending.get(response.id);
      if (!request) return;
      pending.delete(response.id);
      clearTimeout(request.timer);
      if (response.error !== undefined) request.reject(new Error(`metrics aggregation failed: ${response.error}`));
      else request.resolve(response.text ?? '');
    }
  });
  return {
    index: Number(process.env[kIndexVariable] ?? 0),
    size: config.httpProcesses,
    ready: () => ready,
    metrics: () =>
      new Promise<string>((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error('metrics aggregation timed out after 5 s'));
        }, 5000);
        pending.set(id, { resolve, reject, timer });
        process.send!({ type: kMetricsRequest, id } satisfies MetricsRequest);
      }),
    announceFlagsChanged: () => process.send!({ type: kFlagsChanged }),
    onFlagsChanged: (listener) => void flagListeners.push(listener),
  };
}

export interface PrimaryOptions {
  /** First restart delay after a process dies; doubles while processes keep dying young. */
  restartDelayMs?: number;
}

/** The primary: forks `httpProcesses` servers and supervises them until SIGTERM/SIGINT. */
export function runPrimary(config: Config, log: Logger, options: PrimaryOptions = {}): void {
  const size = config.httpProcesses;
  const baseDelay = options.restartDelayMs ?? 500;
  const aggregator = new client.AggregatorRegistry();
  const slots = new Map<number, number>(); // worker id -> slot index, for every process not yet exited
  const listening = new Set<number>(); // worker ids listening on the ranking port
  const startedAt = new Map<number, number>();
  let restartDelay = baseDelay;
  let clusterReady = false;
  let stopping = false;

  const fork = (slot: number): Worker => {
    const worker = cluster.fork({ [kIndexVariable]: String(slot) });
    slots.set(worker.id, slot);
    startedAt.set(worker.id, Date.now());
    return worker;
  };

  cluster.on('listening', (worker, address) => {
    if (address.port !== config.port && config.port !== 0) return;
    if (config.port === 0 && listening.has(worker.id)) return;
    listening.add(worker.id);
    if (!clusterReady && listening.size >= size) {
      clusterReady = true;
      log.info({ processes: size }, 'all HTTP processes are listening');
    }
    if (clusterReady) for (const id of listening) cluster.workers?.[id]?.send({ type: kReady });
  });

  cluster.on('message', (worker, message: { type?: string }) => {
    // Flags reach the other processes at once, not at their next scan: a rollback that half the
    // processes apply seconds late is half a rollback.
    if (message?.type === kFlagsChanged) {
      for (const other of Object.values(cluster.workers ?? {})) if (other && other !== worker && other.isConnected()) other.send({ type: kFlagsChanged });
      return;
    }
    if (message?.type !== kMetricsRequest) return;
    const { id } = message as MetricsRequest;
    aggregator.clusterMetrics().then(
      (text) => worker.isConnected() && worker.send({ type: kMetricsResponse, id, text } satisfies MetricsResponse),
      (error: Error) => worker.isConnected() && worker.send({ type: kMetricsResponse, id, error: error.message } satisfies MetricsResponse),
    );
  });

  cluster.on('exit', (worker, code, signal) => {
    const slot = slots.get(worker.id)!;
    const lived = Date.now() - (startedAt.get(worker.id) ?? Date.now());
    slots.delete(worker.id);
    startedAt.delete(worker.id);
    listening.delete(worker.id);
    if (stopping) {
      // Not cluster.workers: Node drops a process from it only once it has exited *and*
      // disconnected, and an IPC channel can outlive its process (a child it spawned holds the fd).
      if (slots.size === 0) {
        log.info('all HTTP processes stopped');
        process.exit(0);
      }
      return;
    }
    // A process that dies young again and again (bad config, broken repo) is restarted ever more slowly.
    restartDelay = lived < 10_000 ? Math.min(restartDelay * 2, 30_000) : baseDelay;
    log.error({ slot, pid: worker.process.pid, code, signal, restartInMs: restartDelay }, 'HTTP process exited; restarting it');
    setTimeout(() => !stopping && fork(slot), restartDelay).unref();
  });

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, processes: size }, 'shutting down: stopping every HTTP process');
    const workers = [...slots.keys()].map((id) => cluster.workers?.[id]).filter((w): w is Worker => w !== undefined);
    if (workers.length === 0) process.exit(0);
    for (const worker of workers) worker.process.kill('SIGTERM');
    const force = setTimeout(() => {
      log.error('HTTP processes did not stop in time; killing them');
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
      process.exit(1);
    }, config.shutdownGraceMs + 2000);
    force.unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  // Each process accepts from the shared socket itself, so an idle process picks up new connections
  // first. Node's default on Linux (the primary accepts and hands connections out round-robin)
  // measured worse here: at 2x overload a busy process answers the handoff late and a connection
  // waits in the primary. NODE_CLUSTER_SCHED_POLICY=rr still selects it.
  if (!process.env.NODE_CLUSTER_SCHED_POLICY) cluster.schedulingPolicy = cluster.SCHED_NONE;
  log.info({ processes: size, poolSizePerProcess: config.poolSize, scheduling: cluster.schedulingPolicy === cluster.SCHED_NONE ? 'none' : 'rr' }, 'starting HTTP processes');
  for (let slot = 0; slot < size; slot++) fork(slot);
}
