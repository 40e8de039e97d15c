/** Closing the app: requests in flight finish, their connections end, later requests get a clear 503. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { listenWithRepo, sampleRequest } from './helpers/app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A raw keep-alive HTTP/1.1 connection (the default of load balancers and pooled clients). */
function rawConnection(socket: Socket) {
  let received = '';
  socket.on('data', (chunk) => (received += chunk.toString()));
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => received, ended };
}

function rankHead(body: string): string {
  return `POST /v1/rank HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
}

async function until(predicate: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) if (predicate()) return true;
  return predicate();
}

// Its answer carried no "Connection: close", so the socket stayed open, idle, for Fastify's 72 s
// keep-alive: close() (and with it the pool's and the impression log's onClose) waited for it, and
// main.ts gave up at SHUTDOWN_GRACE_MS and exited 1.
test('a keep-alive request in flight when closing begins is answered, its connection ends, and close completes', { timeout: 30_000 }, async (t) => {
  const { app, open } = await listenWithRepo(t);
  const body = JSON.stringify(sampleRequest(20, 10, 1));
  const client = rawConnection(open());
  client.socket.write(rankHead(body) + body.slice(0, 100));
  await sleep(200);
  let closed = false;
  const closing = app.close().then(() => (closed = true));
  await sleep(100);
  client.socket.write(body.slice(100));
  assert.ok(await until(() => /\r\n\r\n\{/.test(client.received()), 5000), 'the in-flight request is answered');
  assert.match(client.received(), /^HTTP\/1.1 200 OK/);
  assert.match(client.received(), /\r\nconnection: close\r\n/i);
  await Promise.race([client.ended, sleep(5000)]);
  assert.ok(client.socket.destroyed || client.socket.readableEnded, 'the server ended the connection');
  assert.ok(await until(() => closed, 5000), 'close() completed without waiting for the client');
  await closing;
});

// Fastify's own 503 while closing skipped hooks: no Retry-After, and {"error":"Service Unavailable"}
// instead of the API's error shape.
test('a request that arrives while closing gets 503 SERVER_SHUTTING_DOWN with Retry-After', { timeout: 30_000 }, async (t) => {
  const { app, open } = await listenWithRepo(t);
  // A request whose headers had begun to arrive before closing began (so its connection was not idle)
  // and that arrives whole after it.
  const body = JSON.stringify(sampleRequest(5, 3, 2));
  const head = rankHead(body);
  const late = rawConnection(open());
  late.socket.write(head.slice(0, 20));
  await sleep(200);
  const closing = app.close();
  await sleep(100);
  late.socket.write(head.slice(20) + body);
  assert.ok(await until(() => /\r\n\r\n\{/.test(late.received()), 5000), late.received());
  const [headers, answer] = late.received().split('\r\n\r\n');
  assert.match(headers, /^HTTP\/1.1 503/);
  assert.match(headers, /\r\nretry-after: 1\r\n/i);
  assert.match(headers, /\r\nconnection: close\r\n/i);
  assert.equal(JSON.parse(answer).error.code, 'SERVER_SHUTTING_DOWN');
  await closing;
});
