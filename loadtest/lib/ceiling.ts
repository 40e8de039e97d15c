/**
 * The model ceiling: raw onnxruntime-node session.run in this process (one intra-op thread, the
 * server's session options) on feeds built by the server's own feature code from the same bodies.
 * Also times that feature code (encode + assemble), which the server runs on its main thread.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { assembleBatch, encodeRequest, type Feeds } from '../../src/features/encode.js';
import { compileFeaturePlan } from '../../src/features/plan.js';
import type { RankRequest } from '../../src/features/request.js';
import { readManifest } from '../../src/models/manifest.js';
import type { RoutedModel } from './repo.js';
import { summarize } from './stats.js';

type Ort = typeof import('onnxruntime-node');
const ort: Ort = createRequire(import.meta.url)('onnxruntime-node');

export interface CeilingPoint {
  requestsPerBatch: number;
  candidatesPerBatch: number;
  runs: number;
  candPerS: number;
  runMsP50: number;
  runMsP99: number;
}

export interface ModelCeiling {
  objective: string;
  name: string;
  version: number;
  points: CeilingPoint[];
  /** Main-thread feature code: encodeRequest + assembleBatch for one request. */
  encode: { candPerS: number; msPerRequest: number };
}

function toOrt(feeds: Feeds): Record<string, import('onnxruntime-node').Tensor> {
  const out: Record<string, import('onnxruntime-node').Tensor> = {};
  for (const [name, t] of Object.entries(feeds)) out[name] = new ort.Tensor(t.type, t.data, t.dims);
  return out;
}

export async function measureCeiling(model: RoutedModel, bodies: RankRequest[], batchSizes: number[], seconds: number): Promise<ModelCeiling> {
  const manifest = await readManifest(model.dir, { name: model.name, version: model.version });
  const plan = compileFeaturePlan(manifest);
  const session = await ort.InferenceSession.create(path.join(model.dir, manifest.model.file), {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  try {
    // Feature code cost (main thread in the server).
    let encoded = 0;
    const encodeStart = performance.now();
    let candidates = 0;
    while (performance.now() - encodeStart < Math.max(200, seconds * 300)) {
      const body = bodies[encoded % bodies.length];
      assembleBatch(plan, [encodeRequest(plan, body)]);
      candidates += body.candidates.length;
      encoded++;
    }
    const encodeMs = performance.now() - encodeStart;
    const points: CeilingPoint[] = [];
    for (const size of batchSizes) {
      const batches = Array.from({ length: Math.min(16, Math.max(1, Math.floor(bodies.length / size))) }, (_, b) => {
        const group = Array.from({ length: size }, (_, k) => bodies[(b * size + k) % bodies.length]);
        return { feeds: toOrt(assembleBatch(plan, group.map((r) => encodeRequest(plan, r)))), candidates: group.reduce((a, r) => a + r.candidates.length, 0) };
      });
      await session.run(batches[0].feeds); // warm-up
      const times: number[] = [];
      let done = 0;
      const start = performance.now();
      let i = 0;
      while (performance.now() - start < seconds * 1000 || times.length < 3) {
        const batch = batches[i++ % batches.length];
        const t = performance.now();
        const result = await session.run(batch.feeds);
        times.push(performance.now() - t);
        for (const v of Object.values(result)) v.dispose?.();
        done += batch.candidates;
      }
      const elapsed = times.reduce((a, b) => a + b, 0);
      const s = summarize(times);
      points.push({ requestsPerBatch: size, candidatesPerBatch: batches[0].candidates, runs: times.length, candPerS: Math.round((done / elapsed) * 1000), runMsP50: s.p50, runMsP99: s.p99 });
    }
    return {
      objective: model.objective,
      name: model.name,
      version: model.version,
      points,
      encode: { candPerS: Math.round((candidates / encodeMs) * 1000), msPerRequest: +(encodeMs / encoded).toFixed(3) },
    };
  } finally {
    await session.release();
  }
}
