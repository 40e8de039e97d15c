/** The bench's reading of the server's /metrics (histogram quantile bound, CPU per answer) and of /proc. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { histogramQuantileBound, serverSide, type Scrape } from '../loadtest/lib/metrics.js';
import { parseThreadCpuMs, readThreadCpuMs } from '../loadtest/lib/server.js';

const kBounds = ['0.5', '1', '2', '3', '5', '8', '12', '20', '35', '+Inf'];

/** A scrape of rank_request_duration_ms with the given cumulative counts per surface. */
function scrapeOf(counts: Record<string, number[]>): Scrape {
  const values: Scrape = new Map();
  for (const [surface, cumulative] of Object.entries(counts)) {
    kBounds.forEach((le, i) => values.set(`rank_request_duration_ms_bucket{le="${le}",surface="${surface}"}`, cumulative[i]));
  }
  return values;
}

test('the quantile bound is the first bucket whose count over the run reaches the quantile, summed over surfaces', () => {
  const before = scrapeOf({ feed: [0, 0, 10, 20, 30, 30, 30, 30, 30, 30] });
  // Over the run: 100 feed requests, 40 within 3 ms, 98 within 5 ms, 99 within 12 ms, 100 within 35 ms.
  const after = scrapeOf({ feed: [0, 0, 10, 60, 128, 128, 129, 129, 130, 130] });
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.4), 3);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.5), 5);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.98), 5);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 0.99), 12);
  assert.equal(histogramQuantileBound(before, after, 'rank_request_duration_ms', 1), 35);
  // A second surface's requests count too (50 more, all slow: 20-35 ms).
  const both = scrapeOf({ feed: [0, 0, 10, 60, 128, 128, 129, 129, 130, 130], reels: [0, 0, 0, 0, 0, 0, 0, 0, 50, 50] });
  assert.equal(histogramQuantileBound(scrapeOf({ feed: [0, 0, 10, 20, 30, 30, 30, 30, 30, 30], reels: Array(10).fill(0) }), both, 'rank_request_duration_ms', 0.99), 35);
});

test('no bound when nothing was timed, or when the quantile lies past the last finite bucket', () => {
  const quiet = scrapeOf({ feed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 9] });
  assert.equal(histogramQuantileBound(quiet, quiet, 'rank_request_duration_ms', 0.99), null);
  assert.equal(histogramQuantileBound(new Map(), new Map(), 'rank_request_duration_ms', 0.99), null);
  const slow = scrapeOf({ feed: [0, 0, 0, 0, 0, 0, 0, 0, 90, 100] });
  assert.equal(histogramQuantileBound(new Map(), slow, 'rank_request_duration_ms', 0.9), 35);
  assert.equal(histogramQuantileBound(new Map(), slow, 'rank_request_duration_ms', 0.99), null);
});

test('CPU per answered request comes from process_cpu_seconds_total over every status; main thread where measured', () => {
  const before: Scrape = new Map([
    ['process_cpu_seconds_total', 10],
    ['rank_requests_total{surface="feed",code="200"}', 100],
    ['rank_requests_total{surface="feed",code="503"}', 5],
  ]);
  // Over the run: 3 s of CPU for 300 answers (290 more 200s, 10 more 503s) in 2 s of wall time.
  const after: Scrape = new Map([
    ['process_cpu_seconds_total', 13],
    ['rank_requests_total{surface="feed",code="200"}', 390],
    ['rank_requests_total{surface="feed",code="503"}', 15],
  ]);
  const side = serverSide(before, after, 2, 1, 1800);
  assert.equal(side.cpuMsPerAnswer, 10);
  assert.equal(side.mainThreadCpuMsPerAnswer, 6);
  assert.equal(side.coresBusy, 1.5);
  const unmeasured = serverSide(before, after, 2, 1);
  assert.equal(unmeasured.mainThreadCpuMsPerAnswer, null);
  assert.equal(unmeasured.cpuMsPerAnswer, 10);
  // Nothing answered: no per-answer figure rather than Infinity or 0.
  const idle = serverSide(after, new Map([...after, ['process_cpu_seconds_total', 13.2]]), 1, 1, 50);
  assert.equal(idle.cpuMsPerAnswer, null);
  assert.equal(idle.mainThreadCpuMsPerAnswer, null);
  assert.equal(idle.coresBusy, 0.2);
});

test('a thread\'s CPU time is read from its /proc stat line, whatever its name holds', () => {
  // Fields after "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
  const stat = '4242 (node (main) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 11 0 0';
  assert.equal(parseThreadCpuMs(stat, 100), 3000);
  assert.equal(parseThreadCpuMs(stat, 250), 1200);
  assert.equal(parseThreadCpuMs('garbage', 100), null);
});

test('the main thread\'s CPU time of a live process is readable and grows with work', { skip: process.platform !== 'linux' }, () => {
  const start = readThreadCpuMs(process.pid, process.pid);
  assert.ok(start !== null && start >= 0);
  const until = performance.now() + 120;
  while (performance.now() < until) Math.sqrt(Math.random());
  const end = readThreadCpuMs(process.pid, process.pid)!;
  // Clock ticks are 10 ms: 120 ms of spinning shows as at least 50.
  assert.ok(end - start >= 50, `${start} -> ${end}`);
  assert.equal(readThreadCpuMs(process.pid, 1 << 30), null);
});
