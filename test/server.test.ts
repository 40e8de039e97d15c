/** The real process over real sockets: listening, limits on the wire, graceful SIGTERM. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../src/paths.js';
import { kServerNodeFlags } from '../src/runtime-flags.js';
import { makeRepo } from './helpers/fixture-repo.js';
import { sampleRequest } from './helpers/app.js';

/** A real server on free ports; the lag controller off as in test/helpers/app.ts (a starved CI host sheds at random). */
function startServer(repo: string, env: Record<string, string> = {}, nodeFlags: readonly string[] = kServerNodeFlags) {
  const child = spawn(process.execPath, [...nodeFlags, path.join(projectRoot, 'dist', 'src', 'main.js')], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', MODEL_REPO: repo, ADMIN_PORT: '0', ADMIN_TOKEN: 'server-test-token-123', LOG_LEVEL: 'info', POOL_SIZE: '1', GATE_MAX_MS_PER_CANDIDATE: '1000', MAX_EVENT_LOOP_DELAY_MS: '60000', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const ports = new Promise<number[]>((resolve, reject) => {
    const found: number[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) {
        found.push(Number(m[1]));
        if (found.length === 2) resolve(found);
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited early with ${code}: ${lines.join('\n')}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, ports, exited, lines };
}

test('real server: scores over HTTP, enforces the body limit on the wire, and drains on SIGTERM', async (t) => {
  const repo = makeRepo([
    { name: 'feed-ctr', version: 1, variant: 'slow' },
    { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
  ]);
  const server = startServer(repo.dir);
  t.after(() => {
    server.child.kill('SIGKILL');
    repo.cleanup();
  });
  const [port, adminPort] = await server.ports;
  const base = `http://127.0.0.1:${port}`;
  const ok = await fetch(`${base}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sampleRequest(10, 10, 1)) });
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).ranked.length, 10);

  const tooBig = await fetch(`${base}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(1024 * 1024 + 10) });
  assert.equal(tooBig.status, 413);

  const admin = await fetch(`http://127.0.0.1:${adminPort}/admin/models`, { headers: { authorization: 'Bearer server-test-token-123' } });
  assert.equal(admin.status, 200);

  // A slow in-flight request (the slow fixture, ~100 ms) must finish although SIGTERM arrives meanwhile.
  const body = sampleRequest(1500, 50, 2);
  body.candidates.forEach((c) => (c.bidType = 'cpc'));
  const inflight = fetch(`${base}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(body) });
  await new Promise((resolve) => setTimeout(resolve, 30));
  server.child.kill('SIGTERM');
  const res = await inflight;
  assert.equal(res.status, 200, 'in-flight request completed');
  assert.equal((await res.json()).ranked.length, 1500);
  assert.equal(await server.exited, 0, 'clean exit');
  assert.ok(server.lines.some((l) => l.includes('shutting down')));
  assert.ok(!server.lines.some((l) => l.includes('V8 heap flags')), 'started with the flags: no warning');
  await assert.rejects(fetch(`${base}/v2/health/live`), 'no longer accepting connections');
});

test('a server started without the V8 heap flags says which ones it lacks', async (t) => {
  const repo = makeRepo([{ name: 'feed-ctr', version: 1 }]);
  // Node given only some of the flags; NODE_OPTIONS from npm must not supply the other one either.
  const server = startServer(repo.dir, { NODE_OPTIONS: '' }, ['--max-semi-space-size=32']);
  t.after(() => {
    server.child.kill('SIGKILL');
    repo.cleanup();
  });
  await server.ports;
  const warning = server.lines.map((l) => JSON.parse(l) as { msg: string; missing?: string[] }).find((l) => l.msg.includes('V8 heap flags'));
  assert.ok(warning, 'a warning line');
  assert.deepEqual(warning.missing, ['--initial-old-space-size=128']);
});

test('a bad configuration value stops start-up naming the variable', async () => {
  const child = spawn(process.execPath, [path.join(projectRoot, 'dist', 'src', 'main.js')], { env: { ...process.env, PORT: 'http' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 2);
  assert.match(stderr, /invalid configuration PORT: expected an integer/);
});
