/**
 * HTTP_PROCESSES=2 over real sockets: both processes serve, /metrics sums over them, a flag change
 * made through one process reaches the other at once (no watcher, no periodic rescan here), a killed
 * process is replaced, SIGTERM stops all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../src/paths.js';
import { perProcessPath } from '../src/cluster.js';
import { makeRepo, writeVersion } from './helpers/fixture-repo.js';
import { sampleRequest } from './helpers/app.js';

const kToken = 'cluster-test-token-1234';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function startCluster(repo: string) {
  const child = spawn(process.execPath, [path.join(projectRoot, 'dist', 'src', 'main.js')], {
    env: {
      ...process.env,
      HTTP_PROCESSES: '2',
      POOL_SIZE: '1',
      PORT: '0',
      HOST: '127.0.0.1',
      ADMIN_PORT: '0',
      ADMIN_TOKEN: kToken,
      MODEL_REPO: repo,
      LOG_LEVEL: 'info',
      // No watcher and no periodic rescan: flag changes must reach the other process through the primary.
      RESCAN_INTERVAL_MS: '600000',
      WATCH_REPO: 'false',
      GATE_MAX_MS_PER_CANDIDATE: '1000',
      // A starved CI host makes the event-loop lag controller shed at random (test/helpers/app.ts).
      MAX_EVENT_LOOP_DELAY_MS: '60000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let port = 0;
  let adminPort = 0;
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const listening = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (listening) {
        if (line.includes('"api":"admin"')) adminPort = Number(listening[1]);
        else port = Number(listening[1]);
      }
      if (line.includes('all HTTP processes are listening')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`cluster exited early with ${code}: ${lines.join('\n')}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, ready, exited, lines, ports: () => ({ port, adminPort }) };
}

/** GET over a fresh connection each time, so that the primary hands it to either process. */
async function adminModels(adminPort: number) {
  const response = await fetch(`http://127.0.0.1:${adminPort}/admin/models`, { headers: { authorization: `Bearer ${kToken}`, connection: 'close' } });
  assert.equal(response.status, 200);
  return (await response.json()) as { process: { pid: number; index: number; of: number }; models: Record<string, { serving: { stable: number | null } }> };
}

async function untilBothProcesses<T>(adminPort: number, pick: (body: Awaited<ReturnType<typeof adminModels>>) => T, want: (values: Map<number, T>) => boolean, timeoutMs = 10_000) {
  const seen = new Map<number, T>();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const body = await adminModels(adminPort);
      seen.set(body.process.pid, pick(body));
      if (want(seen)) return seen;
    } catch (error) {
      // A connection handed to a process as it dies is reset; the next one goes to a live process.
      if (!(error instanceof TypeError)) throw error;
    }
    await sleep(20);
  }
  throw new Error(`condition not met across processes: ${JSON.stringify([...seen])}`);
}

test('HTTP_PROCESSES=2: both processes serve, metrics are summed, flags converge, a dead process is replaced, SIGTERM stops all', async (t) => {
  const repo = makeRepo();
  const cluster = startCluster(repo.dir);
  t.after(() => {
    cluster.child.kill('SIGKILL');
    repo.cleanup();
  });
  await cluster.ready;
  // The admin instance of the last process may log its port a moment after the primary's line.
  while (cluster.ports().adminPort === 0) await sleep(10);
  const { port, adminPort } = cluster.ports();
  const base = `http://127.0.0.1:${port}`;
  assert.equal((await fetch(`${base}/v2/health/ready`)).status, 200);

  const rank = async (seed: number) => {
    const response = await fetch(`${base}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(sampleRequest(20, 10, seed)) });
    return { status: response.status, body: (await response.json()) as { ranked: unknown[] } };
  };
  for (let i = 0; i < 12; i++) {
    const { status, body } = await rank(i + 1);
    assert.equal(status, 200);
    assert.equal(body.ranked.length, 20);
  }

  // Both processes answer, and each knows it is one of two.
  const pids = await untilBothProcesses(adminPort, (b) => b.process, (seen) => seen.size === 2);
  for (const info of pids.values()) assert.equal(info.of, 2);
  assert.deepEqual(new Set([...pids.values()].map((p) => p.index)), new Set([0, 1]));

  // One scrape reaches one process and reports the sum over both; per-version gauges stay at 1.
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^rank_requests_total\{surface="feed",code="200"\} 12$/m);
  assert.match(metrics, /^model_version_state\{model="feed-ctr",version="1",state="ready"\} 1$/m);

  // A flag change through whichever process answers reaches the other through rollout.json.
  writeVersion(repo.dir, { name: 'feed-ctr', version: 2, variant: 'v2' });
  await untilBothProcesses(adminPort, (b) => b.process.pid, (seen) => seen.size === 2); // both processes up
  const deadline = Date.now() + 10_000;
  for (;;) {
    const response = await fetch(`http://127.0.0.1:${adminPort}/admin/models/feed-ctr/flags`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${kToken}`, 'content-type': 'application/json', connection: 'close' },
      body: JSON.stringify({ stable: 2 }),
    });
    await response.arrayBuffer();
    if (response.status === 200) break;
    // 409/503 until the answering process has loaded and gated version 2.
    assert.ok(Date.now() < deadline, `PATCH never succeeded: ${response.status}`);
    await sleep(100);
  }
  await untilBothProcesses(adminPort, (b) => b.models['feed-ctr'].serving.stable, (seen) => seen.size === 2 && [...seen.values()].every((v) => v === 2));

  // A process killed outright is replaced; traffic keeps being served.
  const victim = [...pids.keys()][0];
  process.kill(victim, 'SIGKILL');
  await untilBothProcesses(adminPort, (b) => b.process.pid, (seen) => seen.size === 2 && !seen.has(victim), 20_000);
  assert.ok(cluster.lines.some((l) => l.includes('HTTP process exited; restarting it')));
  assert.equal((await rank(99)).status, 200);

  cluster.child.kill('SIGTERM');
  assert.equal(await cluster.exited, 0, 'the primary exits cleanly once every process has stopped');
  assert.ok(cluster.lines.some((l) => l.includes('all HTTP processes stopped')));
  await assert.rejects(fetch(`${base}/v2/health/live`), 'no process accepts connections any more');
});

test('per-process file names keep the extension', () => {
  assert.equal(perProcessPath('logs/impressions.jsonl', 1), 'logs/impressions-p1.jsonl');
  assert.equal(perProcessPath('impressions', 0), 'impressions-p0');
});
