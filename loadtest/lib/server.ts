/**
 * Starts the ranking server as a child process (`node dist/src/main.js`) on 127.0.0.1 with concrete
 * free ports, waits for /v2/health/ready, and stops it with SIGTERM. Logs go to a file so that a
 * failed start can be diagnosed; RSS is read from /proc/<pid>/status.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { projectRoot } from '../../src/paths.js';
import { kServerNodeFlags } from '../../src/runtime-flags.js';

export interface ServerOptions {
  repo: string;
  /** Extra environment (SKIP_INFERENCE, POOL_SIZE, ...). */
  env?: Record<string, string>;
  adminToken?: string;
  logFile: string;
  readyTimeoutMs?: number;
}

export interface ServerHandle {
  pid: number;
  port: number;
  adminPort: number;
  url: string;
  adminUrl: string;
  env: Record<string, string>;
  rssKb(): number;
  /**
   * CPU time of the server's main thread so far, ms, from /proc; null with HTTP_PROCESSES > 1 (the
   * pid is the cluster's primary, which does no ranking) or where there is no /proc.
   */
  mainThreadCpuMs(): number | null;
  logTail(): string;
  stop(): Promise<number | null>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

export function readRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** RSS of a process and its children (HTTP_PROCESSES > 1: the primary and its server processes). */
export function readTreeRssKb(pid: number): number {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    /* no children file: count the process alone */
  }
  return readRssKb(pid) + children.reduce((sum, child) => sum + readRssKb(child), 0);
}

let clockTicksPerSecond: number | undefined;

/** utime + stime of one thread, ms, from the fields of /proc/<pid>/task/<tid>/stat; null if unreadable. */
export function parseThreadCpuMs(stat: string, ticksPerSecond: number): number | null {
  // The command name (field 2) is in parentheses and may hold spaces: fields count from after it.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? ((utime + stime) * 1000) / ticksPerSecond : null;
}

export function readThreadCpuMs(pid: number, tid: number): number | null {
  if (clockTicksPerSecond === undefined) {
    const getconf = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clockTicksPerSecond = Number(getconf.stdout?.trim()) || 100;
  }
  try {
    return parseThreadCpuMs(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'), clockTicksPerSecond);
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startServer(options: ServerOptions): Promise<ServerHandle> {
  const port = await freePort();
  const adminPort = await freePort();
  const env: Record<string, string> = {
    LOG_LEVEL: 'warn',
    ...options.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    ADMIN_PORT: String(adminPort),
    ADMIN_HOST: '127.0.0.1',
    MODEL_REPO: options.repo,
    ADMIN_TOKEN: options.adminToken ?? '',
  };
  const log = createWriteStream(options.logFile, { flags: 'a' });
  const tail: string[] = [];
  const child: ChildProcess = spawn(process.execPath, [...kServerNodeFlags, path.join(projectRoot, 'dist', 'src', 'main.js')], {
    cwd: projectRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (chunk: Buffer) => {
    log.write(chunk);
    tail.push(chunk.toString());
    if (tail.length > 40) tail.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      resolve(exitCode);
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 90_000);
  for (;;) {
    if (exitCode !== undefined) throw new Error(`server exited with code ${exitCode} before it was ready:\n${tail.join('')}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not ready after ${options.readyTimeoutMs ?? 90_000} ms:\n${tail.join('')}`);
    }
    try {
      const response = await fetch(`${url}/v2/health/ready`);
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      /* not listening yet */
    }
    await sleep(100);
  }
  return {
    pid: child.pid!,
    port,
    adminPort,
    url,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    env,
    rssKb: () => readTreeRssKb(child.pid!),
    mainThreadCpuMs: () => (Number(env.HTTP_PROCESSES || process.env.HTTP_PROCESSES || 1) > 1 ? null : readThreadCpuMs(child.pid!, child.pid!)),
    logTail: () => tail.join(''),
    async stop() {
      if (exitCode === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        const code = await exited;
        clearTimeout(timer);
        log.end();
        return code;
      }
      log.end();
      return exitCode;
    },
  };
}
