#!/usr/bin/env node
/**
 * Send /v1/rank bodies (JSON lines from `world requests`) to the ranking server at modest concurrency.
 * Sets topK and prefixes requestId (so one impression log can be split per simulated day).
 * Prints one JSON summary line: status codes, arms per model, latency percentiles.
 *
 *   node scripts/send-traffic.mjs --file reqs.jsonl --url http://127.0.0.1:8080 [--concurrency 4]
 *        [--topk 10] [--prefix d8-] [--limit N] [--retries 5]
 */
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const flag = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const file = flag('file');
const url = flag('url');
if (!file || !url) {
  console.error('usage: send-traffic.mjs --file F --url URL [--concurrency 4] [--topk 10] [--prefix P] [--limit N]');
  process.exit(2);
}
const concurrency = Number(flag('concurrency', '4'));
const topK = Number(flag('topk', '10'));
const prefix = flag('prefix', '');
const limit = Number(flag('limit', 'Infinity'));
const retries = Number(flag('retries', '5'));
let retried = 0;

const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '').slice(0, limit);
const status = {};
const arms = {}; // model name -> { "v<version>:<arm>": count }
const lat = [];
let shown = 0;
let errors = 0;
let next = 0;

async function one(line) {
  const body = JSON.parse(line);
  body.topK = topK;
  body.requestId = `${prefix}${body.requestId ?? next}`;
  const payload = JSON.stringify(body);
  const t0 = performance.now();
  let res;
  let text;
  // A shed request (503 + Retry-After, before the body is parsed) is not logged by the server, so
  // retrying it with the same requestId cannot duplicate an impression. Give up after `retries`.
  for (let attempt = 0; ; attempt++) {
    try {
      res = await fetch(`${url}/v1/rank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload });
    } catch (e) {
      errors++;
      status.network = (status.network ?? 0) + 1;
      return;
    }
    text = await res.text();
    if (res.status !== 503 || attempt >= retries) break;
    retried++;
    await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
  }
  lat.push(performance.now() - t0);
  status[res.status] = (status[res.status] ?? 0) + 1;
  if (res.status !== 200) {
    if (errors++ < 3) console.error(`HTTP ${res.status}: ${text.slice(0, 300)}`);
    return;
  }
  const out = JSON.parse(text);
  shown += out.ranked.length;
  for (const m of Object.values(out.models ?? {})) {
    const key = `v${m.version}:${m.arm}`;
    arms[m.name] ??= {};
    arms[m.name][key] = (arms[m.name][key] ?? 0) + 1;
  }
}

async function worker() {
  while (next < lines.length) {
    const i = next++;
    await one(lines[i]);
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, worker));
const wall = (performance.now() - started) / 1000;
lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? Number(lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(1)) : null);
console.log(JSON.stringify({
  file, prefix, requests: lines.length, status, retried503: retried, shown, arms,
  latencyMs: { p50: q(0.5), p99: q(0.99) }, seconds: Number(wall.toFixed(1)), rps: Number((lines.length / wall).toFixed(1)),
}));
