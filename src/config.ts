/**
 * The one place that reads the environment. Every option is resolved and validated once at boot,
 * then frozen; a bad value stops start-up with a message naming the variable.
 */
import os from 'node:os';
import path from 'node:path';

export type ExecutionProvider = 'cuda' | 'tensorrt' | 'webgpu' | 'cpu';
const kProviders: readonly ExecutionProvider[] = ['cuda', 'tensorrt', 'webgpu', 'cpu'];

export interface Config {
  port: number;
  /** Accept queue length of the ranking port (the kernel caps it at net.core.somaxconn). */
  listenBacklog: number;
  host: string;
  modelRepo: string;
  adminPort: number;
  adminHost: string;
  adminToken: string | null;
  logLevel: string;
  /** Server processes sharing the ranking port (src/cluster.ts); 1 = no cluster. */
  httpProcesses: number;
  /** Worker threads that own ONNX Runtime sessions, per process. */
  poolSize: number;
  intraOpThreads: number;
  executionProviders: ExecutionProvider[];
  /** Batches a worker may hold at once (1 running + queued in its port). */
  workerQueueDepth: number;
  /** Cross-request micro-batching: wait at most this long to fill a batch when workers are busy. */
  batchMaxDelayMs: number;
  batchMaxCandidates: number;
  /** Candidates waiting for a worker before new requests are shed with 503. */
  maxQueuedCandidates: number;
  /** Smoothed event-loop lag (ms) above which new requests are shed (src/routes/admission.ts). */
  maxEventLoopDelayMs: number;
  /**
   * When > 0, bodies are parsed from a queue (src/routes/turn-queue.ts) whose event-loop turns are
   * bounded to this many ms during a connection flood. 0 = Fastify parses inline.
   */
  parseTurnBudgetMs: number;
  /** Admitted scoring requests (/v1/rank, OIP infer) in progress at once, per process; beyond it new ones wait or are shed before parsing. */
  maxInflightRequests: number;
  /** A request that finds every in-flight place taken waits up to this long for one (0 = refuse at once)... */
  admissionWaitMs: number;
  requestBodyTimeoutMs: number;
  /** ...with at most this many waiting per process; beyond it new ones are refused at once. */
  admissionWaitQueue: number;
  /** Sustained overload (src/routes/admission.ts): the waiting line overflowed for this long without a 50 ms gap (0 = never)... */
  overloadAfterMs: number;
  /** ...then this bound on admitted requests in progress... */
  overloadMaxInflight: number;
  /** ...and this wait for a place apply, until 50 ms pass without a refusal. */
  overloadWaitMs: number;
  maxCandidates: number;
  maxHistory: number;
  maxFeatureEntries: number;
  bodyLimitBytes: number;
  defaultDeadlineMs: number;
  userCacheEntries: number;
  userCacheTtlMs: number;
  rescanIntervalMs: number;
  watchRepo: boolean;
  /** How long a flag edit waits for models/.rollout.lock held by another writer before ROLLOUT_LOCKED. */
  rolloutLockTimeoutMs: number;
  keepVersions: number;
  modelMaxBytes: number;
  shadowMaxInflight: number;
  shadowMaxRunMs: number;
  gate: {
    maxMeanShift: number;
    maxQuantileShift: number;
    maxMsPerCandidate: number;
  };
  canary: {
    minRequests: number;
    maxErrorRate: number;
    maxP99Ratio: number;
    maxMeanScoreShift: number;
    windowMs: number;
  };
  impressionLog: string | null;
  /** How long an unloaded version's per-version metric series stay (for the last scrape). */
  metricsVersionGraceMs: number;
  shutdownGraceMs: number;
  /** Benchmark floor only: everything but session.run (scores are a constant). */
  skipInference: boolean;
}

export class ConfigError extends Error {
  constructor(variable: string, message: string) {
    super(`invalid configuration ${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function integer(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `expected an integer, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `expected ${min}..${max}, got ${value}`);
  return value;
}

/** Node's timers take at most 2^31-1 ms; a longer delay fires after 1 ms instead (TimeoutOverflowWarning). */
export const kMaxTimerMs = 2 ** 31 - 1;

function decimal(env: Env, name: string, fallback: number, min: number, max = Number.MAX_VALUE): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  // Plain decimal notation only: Number() would also take "0x10" and "0b101".
  if (!/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(raw)) throw new ConfigError(name, `expected a number, got "${raw}"`);
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new ConfigError(name, `expected a number, got "${raw}"`);
  if (value < min || value > max) throw new ConfigError(name, `expected ${min}..${max}, got ${value}`);
  return value;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
  if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(name, `expected true/false, got "${raw}"`);
}

function text(env: Env, name: string, fallback: string): string {
  const raw = env[name];
  return raw === undefined || raw === '' ? fallback : raw;
}

function providers(env: Env, name: string): ExecutionProvider[] {
  const raw = text(env, name, 'cpu');
  const list = raw.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean);
  for (const p of list) {
    if (!kProviders.includes(p as ExecutionProvider)) throw new ConfigError(name, `unknown provider "${p}" (known: ${kProviders.join(', ')})`);
  }
  if (!list.includes('cpu')) list.push('cpu');
  return list as ExecutionProvider[];
}

const kLogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Resolve configuration from an environment (process.env by default) plus explicit overrides (tests). */
export function loadConfig(env: Env = process.env, overrides: Partial<Config> = {}): Readonly<Config> {
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  const logLevel = text(env, 'LOG_LEVEL', 'info');
  if (!kLogLevels.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `expected one of ${kLogLevels.join(', ')}, got "${logLevel}"`);
  const adminToken = env.ADMIN_TOKEN && env.ADMIN_TOKEN.length > 0 ? env.ADMIN_TOKEN : null;
  if (adminToken !== null && adminToken.length < 16) throw new ConfigError('ADMIN_TOKEN', 'must be at least 16 characters');
  const httpProcesses = integer(env, 'HTTP_PROCESSES', 1, 1, 64);
  // A budget for the host, split among its processes: the wait of an admitted request grows with
  // the admitted work competing for the same cores (Little's law), not with the process count.
  // 4 per core: on 2 cores, 4 in flight already reach the closed-loop peak, and every admitted
  // request beyond that only waits (at 2x overload, accepted p99 ~60-120 ms at 6-8 vs 230-420 ms
  // at 32; docs/DESIGN-NOTES.md 13).
  const maxInflightRequests = integer(env, 'MAX_INFLIGHT_REQUESTS', Math.max(2, Math.ceil((4 * cores) / httpProcesses)), 1, 100000);
  const maxCandidates = integer(env, 'MAX_CANDIDATES', 2000, 1, 100000);
  const maxQueuedCandidates = integer(env, 'MAX_QUEUED_CANDIDATES', 16000, 1);
  // Smaller than one allowed request, the queue bound would refuse such a request whenever anything
  // else is queued: a limit the client cannot see. Configure one or the other.
  if (maxQueuedCandidates < maxCandidates) {
    throw new ConfigError('MAX_QUEUED_CANDIDATES', `must be at least MAX_CANDIDATES (${maxCandidates}), got ${maxQueuedCandidates}`);
  }
  const config: Config = {
    port: integer(env, 'PORT', 8080, 0, 65535),
    listenBacklog: integer(env, 'LISTEN_BACKLOG', 4096, 1, 65535),
    host: text(env, 'HOST', '0.0.0.0'),
    modelRepo: path.resolve(text(env, 'MODEL_REPO', './models')),
    adminPort: integer(env, 'ADMIN_PORT', 8081, 0, 65535),
    adminHost: text(env, 'ADMIN_HOST', '127.0.0.1'),
    adminToken,
    logLevel,
    httpProcesses,
    // One core per process for its main thread; the rest shared out as inference threads.
    poolSize: integer(env, 'POOL_SIZE', Math.max(1, Math.floor((cores - httpProcesses) / httpProcesses)), 1, 64),
    intraOpThreads: integer(env, 'INTRA_OP_THREADS', 1, 1, 64),
    executionProviders: providers(env, 'EXECUTION_PROVIDERS'),
    workerQueueDepth: integer(env, 'WORKER_QUEUE_DEPTH', 2, 1, 16),
    batchMaxDelayMs: decimal(env, 'BATCH_MAX_DELAY_MS', 0, 0, 100),
    batchMaxCandidates: integer(env, 'BATCH_MAX_CANDIDATES', 4096, 1, 65536),
    maxQueuedCandidates,
    maxEventLoopDelayMs: decimal(env, 'MAX_EVENT_LOOP_DELAY_MS', 30, 1),
    maxInflightRequests,
    admissionWaitQueue: integer(env, 'ADMISSION_WAIT_QUEUE', maxInflightRequests, 0, 100000),
    // A burst up to twice the bound waits instead of being refused: 25 ms is about the time a full
    // line takes to drain on 2 cores (8 x ~2.5 ms of main thread); docs/DESIGN-NOTES.md 13.
    admissionWaitMs: decimal(env, 'ADMISSION_WAIT_MS', 25, 0, 10000),
    // An admitted request holds a place while its body arrives: without a limit, a few stalled uploads
    // held every place for as long as their clients liked. A 1 MB body takes milliseconds on a LAN.
    requestBodyTimeoutMs: integer(env, 'REQUEST_BODY_TIMEOUT_MS', 10000, 1, kMaxTimerMs),
    // A line that keeps overflowing is overload, not a burst: half the bound and a 5 ms wait took the
    // steady 2x accepted p99 from 74-83 to 37-39 ms at the same goodput (docs/DESIGN-NOTES.md 15).
    overloadAfterMs: decimal(env, 'OVERLOAD_AFTER_MS', 200, 0, 60000),
    overloadMaxInflight: integer(env, 'OVERLOAD_MAX_INFLIGHT', Math.max(1, Math.ceil(maxInflightRequests / 2)), 1, 100000),
    overloadWaitMs: decimal(env, 'OVERLOAD_WAIT_MS', 5, 0, 10000),
    parseTurnBudgetMs: decimal(env, 'PARSE_TURN_BUDGET_MS', 4, 0, 1000),
    maxCandidates,
    maxHistory: integer(env, 'MAX_HISTORY', 4096, 0, 100000),
    maxFeatureEntries: integer(env, 'MAX_FEATURE_ENTRIES', 256, 1, 10000),
    bodyLimitBytes: integer(env, 'BODY_LIMIT_BYTES', 1024 * 1024, 1024),
    // The request schema's own bound on deadlineMs.
    defaultDeadlineMs: decimal(env, 'DEFAULT_DEADLINE_MS', 1000, 1, 60000),
    userCacheEntries: integer(env, 'USER_CACHE_ENTRIES', 20000, 0),
    userCacheTtlMs: integer(env, 'USER_CACHE_TTL_MS', 60000, 1),
    rescanIntervalMs: integer(env, 'RESCAN_INTERVAL_MS', 5000, 100, kMaxTimerMs),
    watchRepo: boolean(env, 'WATCH_REPO', true),
    rolloutLockTimeoutMs: integer(env, 'ROLLOUT_LOCK_TIMEOUT_MS', 5000, 0, kMaxTimerMs),
    keepVersions: integer(env, 'KEEP_VERSIONS', 2, 1, 20),
    // The loader holds a loaded version's bytes for replacement workers: students are ~0.5 MB.
    modelMaxBytes: integer(env, 'MODEL_MAX_BYTES', 256 * 1024 * 1024, 1024),
    shadowMaxInflight: integer(env, 'SHADOW_MAX_INFLIGHT', 4, 0, 1000),
    shadowMaxRunMs: decimal(env, 'SHADOW_MAX_RUN_MS', 2, 0, 1000),
    gate: {
      maxMeanShift: decimal(env, 'GATE_MAX_MEAN_SHIFT', 1.5, 0),
      maxQuantileShift: decimal(env, 'GATE_MAX_QUANTILE_SHIFT', 2.5, 0),
      maxMsPerCandidate: decimal(env, 'GATE_MAX_MS_PER_CANDIDATE', 0.05, 0),
    },
    canary: {
      minRequests: integer(env, 'CANARY_MIN_REQUESTS', 200, 1),
      maxErrorRate: decimal(env, 'CANARY_MAX_ERROR_RATE', 0.02, 0, 1),
      maxP99Ratio: decimal(env, 'CANARY_MAX_P99_RATIO', 3, 1),
      maxMeanScoreShift: decimal(env, 'CANARY_MAX_MEAN_SCORE_SHIFT', 0.5, 0),
      windowMs: integer(env, 'CANARY_WINDOW_MS', 60000, 1000),
    },
    impressionLog: env.IMPRESSION_LOG ? path.resolve(env.IMPRESSION_LOG) : null,
    metricsVersionGraceMs: integer(env, 'METRICS_VERSION_GRACE_MS', 600000, 0, kMaxTimerMs),
    shutdownGraceMs: integer(env, 'SHUTDOWN_GRACE_MS', 10000, 0, kMaxTimerMs),
    skipInference: boolean(env, 'SKIP_INFERENCE', false),
    ...overrides,
  };
  return Object.freeze(config);
}
