/**
 * The cluster primary's own bookkeeping, with stand-in server processes (no models): how it learns
 * that every process has stopped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../src/paths.js';

const moduleUrl = (file: string) => pathToFileURL(path.join(projectRoot, 'dist', 'src', file)).href;

// Node removes a process from cluster.workers only once it has both exited and disconnected, in
// either order. A process whose IPC channel outlives it (here a grandchild holds the channel's fd;
// the same for any child spawned with inherited fds) exits first: the primary counted the process
// as still running, skipped its "all stopped" exit, and lingered until the channel closed.
test('the primary exits when its last process exits, even while that process IPC channel is still open', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cluster-primary-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const child = path.join(dir, 'child.mjs');
  writeFileSync(
    child,
    `import { spawn } from 'node:child_process';
process.on('SIGTERM', () => {
  // cluster.fork() puts the IPC channel on fd 3 (Node removes NODE_CHANNEL_FD from the env).
  const stdio = ['ignore', 'ignore', 'ignore', 3];
  const holder = spawn('sleep', ['5'], { stdio, detached: true });
  holder.unref();
  console.log(JSON.stringify({ holder: holder.pid }));
  process.exit(0);
});
console.log(JSON.stringify({ up: process.pid }));
setInterval(() => {}, 1000);
`,
  );
  const primary = path.join(dir, 'primary.mjs');
  writeFileSync(
    primary,
    `import cluster from 'node:cluster';
import { createRequire } from 'node:module';
const { runPrimary } = await import(${JSON.stringify(moduleUrl('cluster.js'))});
const { loadConfig } = await import(${JSON.stringify(moduleUrl('config.js'))});
const pino = createRequire(${JSON.stringify(path.join(projectRoot, 'package.json'))})('pino');
cluster.setupPrimary({ exec: ${JSON.stringify(child)} });
runPrimary(loadConfig({ HTTP_PROCESSES: '1', SHUTDOWN_GRACE_MS: '20000' }), pino({ level: 'info' }), { restartDelayMs: 60000 });
`,
  );
  const run = spawn(process.execPath, [primary], { stdio: ['ignore', 'pipe', 'pipe'] });
  const holders: number[] = [];
  t.after(() => {
    run.kill('SIGKILL');
    for (const pid of holders) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
  const lines: string[] = [];
  let stderr = '';
  run.stderr.on('data', (chunk) => (stderr += chunk));
  const up = new Promise<void>((resolve) =>
    createInterface({ input: run.stdout }).on('line', (line) => {
      lines.push(line);
      const parsed = JSON.parse(line) as { up?: number; holder?: number };
      if (parsed.holder) holders.push(parsed.holder);
      if (parsed.up) resolve();
    }),
  );
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => run.on('exit', (code) => resolve({ code, at: Date.now() })));
  await up;
  const stoppedAt = Date.now();
  run.kill('SIGTERM');
  const { code, at } = await exited;
  assert.equal(code, 0, stderr);
  assert.ok(holders.length === 1, `the stand-in started a channel holder: ${lines.join('\n')}`);
  assert.ok(lines.some((line) => line.includes('all HTTP processes stopped')), `the primary said so: ${lines.join('\n')}`);
  // The holder keeps the channel open for 5 s; the primary must not wait for it.
  assert.ok(at - stoppedAt < 3000, `exited ${at - stoppedAt} ms after SIGTERM`);
});
