/** Admission control in the app: the in-flight bound, its short waiting line, and what a shed request gets. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fixtureDir, makeRepo } from './helpers/fixture-repo.js';
import { inferInputs, kSlowModelsLoad, listenWithRepo, sampleRequest, startApp, startAppWithRepo } from './helpers/app.js';
import type { Config } from '../src/config.js';

async function burst(t: import('node:test').TestContext, overrides: Partial<Config>, count: number, reason = 'inflight') {
  const { app } = await startAppWithRepo(t, overrides);
  const responses = await Promise.all(
    Array.from({ length: count }, (_, i) => app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(40, 20, i + 1) })),
  );
  const shed = (await app.ranker.metrics.shed.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  return { app, responses, codes: responses.map((r) => r.statusCode), shed };
}

test('beyond the in-flight bound, with waiting off, requests are refused at once with 503 and Retry-After', async (t) => {
  const { app, responses, codes, shed } = await burst(t, { maxInflightRequests: 2, admissionWaitMs: 0 }, 6);
  const refused = responses.filter((r) => r.statusCode === 503);
  assert.equal(codes.filter((c) => c === 200).length, 2, JSON.stringify(codes));
  assert.equal(refused.length, 4);
  for (const r of refused) {
    assert.equal(r.headers['retry-after'], '1');
    assert.equal(r.json().error.code, 'SERVER_OVERLOADED');
    assert.match(r.json().error.message, /2 requests in progress/);
  }
  assert.equal(shed, 4);
  // The places were given back: the next request is admitted.
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(10, 5, 99) })).statusCode, 200);
});

test('a burst a little over the bound waits for places instead of being refused', async (t) => {
  const { codes, shed } = await burst(t, { maxInflightRequests: 2, admissionWaitMs: 10_000, admissionWaitQueue: 4 }, 6);
  assert.deepEqual(codes, [200, 200, 200, 200, 200, 200]);
  assert.equal(shed, 0);
});

test('when the waiting line is full, the rest are refused at once', async (t) => {
  const { app, responses, codes, shed } = await burst(t, { maxInflightRequests: 1, admissionWaitMs: 10_000, admissionWaitQueue: 2 }, 5, 'line_full');
  assert.equal(codes.filter((c) => c === 200).length, 3, JSON.stringify(codes));
  assert.equal(codes.filter((c) => c === 503).length, 2);
  for (const r of responses.filter((x) => x.statusCode === 503)) assert.match(r.json().error.message, /1 requests in progress, waiting line full/);
  assert.equal(shed, 2);
  assert.equal((await app.inject({ method: 'POST', url: '/v1/rank', payload: sampleRequest(10, 5, 99) })).statusCode, 200);
});

test('a client that leaves the waiting line or drops an admitted request leaks no place', { timeout: 60_000 }, async (t) => {
  const repo = makeRepo();
  const app = await startApp(repo.dir, { maxInflightRequests: 1, admissionWaitMs: 10_000, admissionWaitQueue: 2 });
  const sockets: Socket[] = [];
  t.after(async () => {
    // A half-sent request would otherwise hold app.close() open when an assertion fails early.
    for (const socket of sockets) socket.destroy();
    await app.close();
    repo.cleanup();
  });
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  const admission = async () => {
    const body = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    const read = (state: string) => Number(body.match(new RegExp(`^rank_admission_requests\\{state="${state}"\\} (\\d+)`, 'm'))?.[1]);
    return { inflight: read('in_flight'), waiting: read('waiting') };
  };
  const until = async (want: { inflight: number; waiting: number }) => {
    for (let i = 0; i < 200; i++) {
      const now = await admission();
      if (now.inflight === want.inflight && now.waiting === want.waiting) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(await admission(), want);
  };
  const body = JSON.stringify(sampleRequest(20, 10, 1));
  const open = (payload: string) => {
    const socket = connect(Number(url.port), url.hostname);
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.write(`POST /v1/rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${payload}`);
    return socket;
  };
  // A: admitted, then stalls half-way through its body, holding the only place.
  const a = open(body.slice(0, 100));
  await until({ inflight: 1, waiting: 0 });
  // B: complete, but waits in line behind A; then its client goes away.
  const b = open(body);
  await until({ inflight: 1, waiting: 1 });
  b.destroy();
  await until({ inflight: 1, waiting: 0 });
  // B was not shed and got no 503: it is counted as abandoned, apart from the server's refusals.
  const metricsText = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metricsText, /^rank_admission_abandoned_total 1$/m);
  assert.doesNotMatch(metricsText, /^rank_shed_total\{/m);
  assert.doesNotMatch(metricsText, /^rank_requests_total\{surface="unparsed"/m);
  // A's client goes away too: its place comes back.
  a.destroy();
  await until({ inflight: 0, waiting: 0 });
  // The bound and the line work as before: three at once, one in flight and two waiting, all served.
  const answers = await Promise.all(
    [1, 2, 3].map(async (seed) => {
      const res = await fetch(`${url.origin}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sampleRequest(20, 10, seed)) });
      return { status: res.status, body: await res.text() };
    }),
  );
  assert.deepEqual(answers.map((a) => a.status), [200, 200, 200], answers.map((a) => a.body.slice(0, 300)).join(' | '));
  await until({ inflight: 0, waiting: 0 });
});

// Pipelined requests' responses wait behind the first one's and are never attached to the socket: when
// the client went away, Node emitted no 'close' on them, and each kept its place for good (one such
// connection took 3 of 4 places; the process then served one request at a time).
test('a pipelined connection dropped mid-way gives back every place its requests took', { timeout: 60_000 }, async (t) => {
  // A slow ctr model keeps the first request scoring for 0.1-0.4 s: the window in which to drop it.
  const { app, url, open } = await listenWithRepo(
    t,
    { maxInflightRequests: 4, admissionWaitMs: 0, poolSize: 1, ...kSlowModelsLoad },
    [
      { name: 'feed-ctr', version: 1, variant: 'slow' },
      { name: 'feed-cvr', version: 1, variant: 'v2', objective: 'cvr' },
    ],
  );
  const inflight = async () => Number((await app.inject({ method: 'GET', url: '/metrics' })).body.match(/^rank_admission_requests\{state="in_flight"\} (\d+)/m)?.[1]);
  const request = (body: string) => `POST /v1/rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  const after: number[] = [];
  for (let trial = 0; trial < 3; trial++) {
    // A long first request, then three short ones whose answers queue behind it, in one write.
    const socket = open();
    socket.write(request(JSON.stringify(sampleRequest(2000, 256, trial + 1))) + request(JSON.stringify(sampleRequest(5, 3, 2))).repeat(3));
    let seen = 0;
    for (let i = 0; i < 500 && seen < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      seen = await inflight();
    }
    assert.ok(seen >= 2, 'the pipelined requests were admitted');
    socket.destroy();
    for (let i = 0; i < 200 && (await inflight()) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    after.push(await inflight());
  }
  // Each place given back exactly once: a release run twice would read -1 here and admit one too many.
  assert.deepEqual(after, [0, 0, 0], 'places held after each connection closed');
  const codes = await Promise.all(
    [1, 2, 3, 4].map(async (seed) => (await fetch(`${url.origin}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sampleRequest(5, 3, seed)) })).status),
  );
  assert.deepEqual(codes, [200, 200, 200, 200]);
});

// The place is taken before the body is read, and nothing bounded the read: two stalled uploads held
// both places for as long as their clients liked, and every other request got 503.
test('an admitted request whose body stalls past REQUEST_BODY_TIMEOUT_MS loses its connection and its place', { timeout: 60_000 }, async (t) => {
  const { app, url, open } = await listenWithRepo(t, { maxInflightRequests: 2, admissionWaitMs: 0, requestBodyTimeoutMs: 300 });
  const body = JSON.stringify(sampleRequest(20, 10, 1));
  const closed = [0, 1].map(() => {
    const socket = open();
    socket.write(`POST /v1/rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 100)}`);
    return new Promise<number>((resolve) => {
      const started = Date.now();
      socket.once('close', () => resolve(Date.now() - started));
    });
  });
  const within = (ms: number) => new Promise<number>((resolve) => setTimeout(() => resolve(-1), ms));
  const [first, second] = await Promise.all(closed.map((c) => Promise.race([c, within(10_000)])));
  assert.ok(first >= 0 && second >= 0, 'the server closed both stalled connections');
  // The server's side of each socket closes a moment after the client sees it close.
  let metricsText = '';
  for (let i = 0; i < 200; i++) {
    metricsText = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    if (/^rank_admission_requests\{state="in_flight"\} 0$/m.test(metricsText)) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.match(metricsText, /^rank_request_body_timeouts_total 2$/m);
  assert.match(metricsText, /^rank_admission_requests\{state="in_flight"\} 0$/m);
  const res = await fetch(`${url.origin}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  assert.equal(res.status, 200);
});

test('the OIP infer routes share the bound: beyond it they are refused before their body is parsed', async (t) => {
  const golden = JSON.parse(readFileSync(path.join(fixtureDir, 'v1.golden.json'), 'utf8'));
  const inputs = inferInputs(golden.cases[0].inputs);
  const { app } = await startAppWithRepo(t, { maxInflightRequests: 1, admissionWaitMs: 0 });
  const urls = ['/v2/models/feed-ctr/infer', '/v2/models/feed-ctr/versions/1/infer', '/v1/rank', '/v2/models/feed-ctr/infer'];
  const responses = await Promise.all(urls.map((url) => app.inject({ method: 'POST', url, payload: url === '/v1/rank' ? sampleRequest(10, 5, 1) : { inputs } })));
  assert.deepEqual(responses.map((r) => r.statusCode), [200, 503, 503, 503]);
  assert.equal(responses[1].json().error.code, 'SERVER_OVERLOADED');
  // Metadata and health are never refused.
  const meta = await Promise.all([app.inject({ method: 'GET', url: '/v2/models/feed-ctr' }), app.inject({ method: 'GET', url: '/v2/health/ready' })]);
  assert.deepEqual(meta.map((r) => r.statusCode), [200, 200]);
  // rank_requests_total counts /v1/rank only.
  assert.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /^rank_requests_total\{surface="unparsed",code="503"\} 1$/m);
});
