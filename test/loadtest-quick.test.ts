/**
 * Smoke test of the load-test scripts: `bench` and `swap` in --quick --fixtures mode (tiny durations,
 * a fixture model repository, results in a temp folder, no plot). Checks that they run end to end
 * against a real child-process server and write results with the expected shape; the numbers
 * themselves are not asserted (the machine is shared). Short phases keep both at ~33 s together on an
 * idle 2-core host; the timers only bound a hang, with room for a host whose CPU other guests take
 * (at ~30% stolen the two took 43 s and the old 40 s limit failed the test).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { projectRoot } from '../src/paths.js';
import { round } from '../loadtest/lib/stats.js';

function run(script: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(projectRoot, 'dist', 'loadtest', script), ...args], { cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

test('bench and swap run end to end in --quick --fixtures mode', { timeout: 300_000 }, async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'loadtest-quick-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const common = ['--quick', '--fixtures', '--no-plot'];
  // "No failed request during a swap" is the point of the swap scenario, so the two run one after the
  // other, and the swap server's admission control is relaxed: the event-loop lag target, which sheds
  // a few requests whenever a busy shared machine stalls the loop, and the in-flight bound (8 on two
  // cores, with a 25 ms line), which refused 6 of 1,323 requests in one CI run after a 0.7 s capacity
  // probe. A non-2xx left is the swap's. `npm run bench:swap` keeps the defaults (0 non-2xx there).
  const swap = await run('swap.js', [...common, '--out', path.join(out, 'swap'), '--cycles', '4', '--probe-seconds', '0.7', '--steady-seconds', '1', '--canary-seconds', '1.5', '--window-seconds', '0.7'], {
    MAX_EVENT_LOOP_DELAY_MS: '2000',
    MAX_INFLIGHT_REQUESTS: '1000',
  });
  const bench = await run('bench.js', [...common, '--out', path.join(out, 'bench'), '--duration', '0.6', '--fixed-duration', '0.8', '--warmup', '0.2', '--ceiling-seconds', '0.2']);
  assert.equal(bench.code, 0, bench.output);
  const b = JSON.parse(readFileSync(path.join(out, 'bench', 'bench-latest.json'), 'utf8'));
  assert.equal(b.kind, 'bench');
  assert.deepEqual(b.table.map((r: { concurrency: number }) => r.concurrency), [1, 4]);
  for (const row of b.table) assert.ok(row.rps > 0 && row.floorRps > 0, JSON.stringify(row));
  // CPU per request (the comparison that moves least with the host's speed), and the main thread's
  // part of it, which can be no more than the whole (5% for /proc's 10 ms clock ticks).
  for (const row of b.table) assert.ok(row.cpuMsPerAnswer > 0 && row.floorCpuMsPerAnswer > 0, JSON.stringify(row));
  for (const point of b.sweep.normal) {
    const { cpuMsPerAnswer, mainThreadCpuMsPerAnswer, coresBusy } = point.server;
    assert.ok(mainThreadCpuMsPerAnswer > 0 && mainThreadCpuMsPerAnswer <= cpuMsPerAnswer * 1.05 && coresBusy > 0, JSON.stringify(point.server));
  }
  // Only 200 or an admission-control 503 (the machine may be busy); never a 4xx or another 5xx.
  // A point's errors count each failed request once (a timeout is one of the errors), and its
  // responses and failures are what it sent, less at most one request per connection still open
  // when the point ended.
  const total = (status: Record<string, number>) => Object.values(status).reduce((a, n) => a + n, 0);
  for (const point of [...b.sweep.normal, ...b.sweep.floor]) {
    assert.deepEqual(Object.keys(point.run.status).filter((code) => code !== '200' && code !== '503'), [], JSON.stringify(point.run.status));
    assert.equal(point.errors, point.run.non2xx + point.run.errors, JSON.stringify(point.run));
    const answered = total(point.run.status) + point.run.errors;
    assert.ok(answered <= point.run.sent && answered >= point.run.sent - point.concurrency, JSON.stringify(point.run));
    assert.ok(point.p99Ok === null || point.p99Ok > 0, JSON.stringify(point));
  }
  // The peak the fixed-rate rows follow refused at most 0.5%, unless no point did (and it says so).
  const peak = b.maxSustainable;
  const clean = b.sweep.normal.filter((p: { refusedShare: number }) => p.refusedShare <= 0.005);
  assert.equal(peak.qualified, clean.length > 0, JSON.stringify(peak));
  assert.equal(peak.rps, Math.max(...(peak.qualified ? clean : b.sweep.normal).map((p: { rps: number }) => p.rps)), JSON.stringify(peak));
  assert.equal(peak.highest.rps, Math.max(...b.sweep.normal.map((p: { rps: number }) => p.rps)));
  assert.equal(b.ceiling.models.length, 2);
  assert.ok(b.ceiling.serverCeilingCandPerS > 0);
  assert.ok(b.deadline.rejected504 > 0, `an unmeetable deadline is answered 504: ${JSON.stringify(b.deadline.status)}`);
  const benchMarkdown = readFileSync(path.join(out, 'bench', 'bench-latest.md'), 'utf8');
  assert.ok(benchMarkdown.includes('Concurrency sweep'));
  // Hypervisor steal over the run: a share on Linux, said in the report either way.
  assert.ok(b.host.stolenShare === null || (b.host.stolenShare >= 0 && b.host.stolenShare <= 1), JSON.stringify(b.host));
  assert.match(benchMarkdown, /CPU time stolen by the hypervisor/);
  // The 70% row says how much of its tail is the client's and bounds the server's own p99.
  const at70 = b.fixedRate.at70.run;
  assert.ok(at70.clientLagP99Ms > 0 && at70.clientLagMaxMs >= at70.clientLagP99Ms, JSON.stringify(at70));
  // Open-loop rows: every request scheduled in the row was sent or dropped, and every one sent was
  // answered (in the statuses) or failed, once.
  for (const row of [b.fixedRate.at70, b.fixedRate.at70floor, b.overload]) {
    const run = row.run;
    assert.ok(Math.abs(run.sent + run.clientDropped - row.targetRate * b.options.fixedS) <= 1, JSON.stringify(run));
    assert.equal(total(run.status) + run.errors, run.sent, JSON.stringify(run));
  }
  // The overload shares are over every request scheduled, failures and drops refused too.
  const o = b.overload;
  assert.equal(o.scheduled, o.run.sent + o.run.clientDropped);
  assert.ok(Math.abs(o.rejectedShare - (o.run.non2xx + o.run.errors + o.run.clientDropped) / o.scheduled) <= 5e-5, JSON.stringify(o.run));
  assert.ok(b.fixedRate.at70.server.serverP99AtMostMs === null || b.fixedRate.at70.server.serverP99AtMostMs > 0);
  // The floor is run at the same 70% rate, so that row's tail can be read against HTTP + JSON alone.
  assert.equal(b.fixedRate.at70floor.targetRate, b.fixedRate.at70.targetRate);
  assert.ok(b.fixedRate.at70floor.run.ok > 0 && b.fixedRate.at70floor.server.batches === 0, JSON.stringify(b.fixedRate.at70floor.server));
  // The open-loop capacity search probed downward from the peak; when it found a rate, the server and
  // the floor were both run at 70% of it.
  const capacity = b.openLoopCapacity;
  assert.ok(capacity.probes.length >= 1 && capacity.probes[0].rate === Math.max(1, Math.round(b.maxSustainable.rps * 10) / 10), JSON.stringify(capacity));
  if (capacity.rps !== null) {
    assert.ok(capacity.probes.some((p: { rate: number; sustained: boolean }) => p.sustained && p.rate === capacity.rps), JSON.stringify(capacity));
    // The bench's own rounding (toFixed): Math.round differs at .x5 (179.5 x 0.7 = 125.6 there, 125.7 here).
    assert.equal(b.fixedRate.at70ofOpenLoopCapacity.targetRate, Math.max(1, round(capacity.rps * 0.7, 1)));
    assert.equal(b.fixedRate.at70ofOpenLoopCapacityFloor.targetRate, b.fixedRate.at70ofOpenLoopCapacity.targetRate);
    assert.ok(b.fixedRate.at70ofOpenLoopCapacityFloor.server.batches === 0 && b.fixedRate.at70ofOpenLoopCapacity.run.ok > 0);
    assert.match(benchMarkdown, /70% of open-loop capacity/);
  } else {
    assert.equal(b.fixedRate.at70ofOpenLoopCapacity, null);
  }

  assert.ok(swap.code === 0 || swap.code === 3, swap.output);
  const s = JSON.parse(readFileSync(path.join(out, 'swap', 'swap-latest.json'), 'utf8'));
  assert.equal(s.kind, 'swap');
  assert.ok(s.host.stolenShare === null || (s.host.stolenShare >= 0 && s.host.stolenShare <= 1), JSON.stringify(s.host));
  assert.equal(s.phase1.non2xx, 0, `no failed request during the swap: ${JSON.stringify(s.phase1.status)}`);
  assert.equal(s.pass.promoteAndRollbackApplied, true, JSON.stringify({ afterPromote: s.phase1.canary.afterPromote, afterRollback: s.phase1.canary.afterRollback }));
  assert.ok(s.phase1.canary.afterPromote.responses > 0 && s.phase1.canary.afterRollback.responses > 0, 'both windows hold responses');
  assert.ok(s.phase1.canary.canaryResponses > 0, 'the canary served some requests');
  assert.equal(s.cycles.run, 4);
  assert.ok(s.cycles.rss.length >= 2);
});
