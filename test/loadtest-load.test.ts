/**
 * The load generators' accounting (loadtest/lib/load.ts) against tiny fake servers on 127.0.0.1:
 * every request scheduled ends up counted exactly once (a response, a failure or a client drop),
 * timeouts are not counted twice, a response cut off mid-body is a failure that gives its in-flight
 * place back, a server that falls behind delivers less than the rate within the window, and the
 * client's own lateness is measured per request. Each case runs for about a second.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { sustains } from '../loadtest/lib/capacity.js';
import { closedLoop, openLoop, refusedOf, scheduledOf, type RunSummary } from '../loadtest/lib/load.js';

const body = () => Buffer.from('{"x":1}');

/** A fake server whose handler sees each request's number (1-based) once its body has been read. */
async function fakeServer(t: { after: (fn: () => void) => void }, handle: (n: number, res: http.ServerResponse) => void): Promise<string> {
  let n = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => handle(++n, res));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Every request sent is a response (in `status`) or a failure, once. */
function assertAddsUp(s: RunSummary): void {
  const answered = Object.values(s.status).reduce((a, b) => a + b, 0);
  assert.equal(answered, s.completed, JSON.stringify(s));
  assert.equal(s.completed + s.errors, s.sent, JSON.stringify(s));
  assert.ok(s.timeouts <= s.errors, JSON.stringify(s));
}

test('openLoop: sent + dropped is the schedule, lead-in and window together, and a healthy server delivers it within the window', async (t) => {
  const url = await fakeServer(t, (_n, res) => res.end('ok'));
  const { summary, leadIn } = await openLoop({ url, rate: 200, durationS: 0.5, leadInS: 0.25, body });
  assert.ok(leadIn);
  // 200/s for 0.25 + 0.5 s; the last send may fall on either side of the end.
  assert.ok(Math.abs(scheduledOf(summary) - 100) <= 1 && Math.abs(scheduledOf(leadIn.summary) - 50) <= 1, JSON.stringify({ summary, leadIn: leadIn.summary }));
  assertAddsUp(summary);
  assert.equal(summary.ok, summary.sent);
  assert.equal(summary.deliveredInWindow, summary.ok);
  assert.equal(sustains(summary, 200), true, JSON.stringify(summary));
});

test('openLoop: a request that times out is one failure (errors, of which timeouts), not two', async (t) => {
  // Every 10th request is never answered.
  const url = await fakeServer(t, (n, res) => {
    if (n % 10 !== 0) res.end('ok');
  });
  const { summary } = await openLoop({ url, rate: 100, durationS: 0.5, body, timeoutMs: 300 });
  assertAddsUp(summary);
  assert.equal(summary.timeouts, 5, JSON.stringify(summary));
  assert.equal(summary.errors, 5, JSON.stringify(summary));
  assert.equal(refusedOf(summary), 5);
  assert.equal(sustains(summary, 100), false);
});

test('openLoop: a socket error before the response is a failure', async (t) => {
  const url = await fakeServer(t, (n, res) => {
    if (n % 5 === 0) res.socket?.destroy();
    else res.end('ok');
  });
  const { summary } = await openLoop({ url, rate: 100, durationS: 0.5, body });
  assertAddsUp(summary);
  assert.equal(summary.errors, 10, JSON.stringify(summary));
  assert.equal(summary.timeouts, 0);
});

test('openLoop: a response cut off mid-body is a failure and gives its in-flight place back', async (t) => {
  // Every 5th response: headers and part of the body, then the connection is destroyed.
  const url = await fakeServer(t, (n, res) => {
    if (n % 5 !== 0) return void res.end('ok');
    res.writeHead(200, { 'content-length': 100 });
    res.write('partial');
    setTimeout(() => res.socket?.destroy(), 20);
  });
  const started = performance.now();
  const { summary } = await openLoop({ url, rate: 100, durationS: 0.5, body, timeoutMs: 5000 });
  assertAddsUp(summary);
  assert.equal(summary.errors, 10, JSON.stringify(summary));
  assert.equal(summary.status['200'], 40);
  // A lost request would hold the drain until its timeout (5 s) plus 1 s.
  assert.ok(performance.now() - started < 2000, `drained in ${Math.round(performance.now() - started)} ms`);
});

test('openLoop: sends skipped at maxInflight are counted as dropped and refused', async (t) => {
  const url = await fakeServer(t, (_n, res) => setTimeout(() => res.end('ok'), 50));
  const { summary } = await openLoop({ url, rate: 100, durationS: 0.5, body, maxInflight: 3 });
  assertAddsUp(summary);
  assert.ok(summary.clientDropped! > 10, JSON.stringify(summary));
  assert.ok(Math.abs(scheduledOf(summary) - 50) <= 1, JSON.stringify(summary));
  assert.equal(refusedOf(summary), summary.clientDropped);
  assert.equal(sustains(summary, 100), false);
});

test('openLoop: a server that serves 100/s and queues the rest delivers less than 130/s within the window', async (t) => {
  // One request at a time, 10 ms each, an unbounded queue, never a refusal.
  let busyUntil = 0;
  const url = await fakeServer(t, (_n, res) => {
    const now = performance.now();
    busyUntil = Math.max(busyUntil, now) + 10;
    setTimeout(() => res.end('ok'), busyUntil - now);
  });
  const { summary } = await openLoop({ url, rate: 130, durationS: 1, leadInS: 0.3, body });
  assertAddsUp(summary);
  // Every request is answered 2xx in the end (during the drain), so `rps` is the offered rate...
  assert.equal(summary.ok, summary.sent);
  assert.ok(summary.rps > 0.97 * 130, JSON.stringify(summary));
  // ...but within the window (+ grace) the server delivered about 100/s, less the lead-in's backlog.
  assert.ok(summary.deliveredRps! < 115, JSON.stringify(summary));
  assert.equal(sustains(summary, 130), false);
});

test('openLoop: the client lag is how late each request was sent, a 150 ms client stall included', async (t) => {
  const url = await fakeServer(t, (_n, res) => res.end('ok'));
  const stall = setTimeout(() => {
    const until = performance.now() + 150;
    while (performance.now() < until);
  }, 300);
  t.after(() => clearTimeout(stall));
  const { summary } = await openLoop({ url, rate: 100, durationS: 1, body });
  // The ~15 requests scheduled during the stall were sent up to 150 ms late: the p99 of 100 is among them.
  assert.ok(summary.clientLagMaxMs! >= 140, JSON.stringify(summary));
  assert.ok(summary.clientLagP99Ms! >= 100, JSON.stringify(summary));
});

test('closedLoop: autocannon counts a timeout among the errors once', async (t) => {
  const url = await fakeServer(t, () => undefined);
  const { summary } = await closedLoop({ url, connections: 1, durationS: 2, body, timeoutS: 1 });
  assert.ok(summary.timeouts >= 1, JSON.stringify(summary));
  assert.equal(summary.errors, summary.timeouts, JSON.stringify(summary));
  assert.equal(refusedOf(summary), summary.timeouts);
});
