/**
 * Inference worker: owns ONNX Runtime sessions keyed by `model@version`. session.run() works
 * synchronously inside the runtime, so it must never run on the main thread. One message at a time
 * is processed in order; the pool never sends a worker more batches than it may queue.
 */
import { parentPort } from 'node:worker_threads';
import { createRequire } from 'node:module';
import type { ExecutionProvider } from '../config.js';
import type { FromWorker, TensorInfo, ToWorker } from './protocol.js';

type Ort = typeof import('onnxruntime-node');
const ort: Ort = createRequire(import.meta.url)('onnxruntime-node');

if (!parentPort) throw new Error('worker.ts must run inside a worker thread');
const port = parentPort;
const sessions = new Map<string, import('onnxruntime-node').InferenceSession>();

function post(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

function describe(meta: readonly unknown[] | undefined, names: readonly string[]): TensorInfo[] {
  return names.map((name, i) => {
    const m = meta?.[i] as { isTensor?: boolean; type?: string; shape?: Array<string | number> } | undefined;
    return { name, type: m?.type ?? 'unknown', shape: m?.shape ?? [] };
  });
}

async function load(message: Extract<ToWorker, { type: 'load' }>): Promise<void> {
  const started = performance.now();
  const fallbacks: Array<{ provider: ExecutionProvider; error: string }> = [];
  for (const provider of message.providers) {
    try {
      const options: import('onnxruntime-node').InferenceSession.SessionOptions = {
        executionProviders: [provider],
        intraOpNumThreads: message.intraOpThreads,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
      };
      const session = typeof message.model === 'string' ? await ort.InferenceSession.create(message.model, options) : await ort.InferenceSession.create(message.model, options);
      sessions.get(message.key)?.release();
      sessions.set(message.key, session);
      const s = session as unknown as { inputMetadata?: unknown[]; outputMetadata?: unknown[] };
      post({
        type: 'loaded',
        key: message.key,
        provider,
        fallbacks,
        inputs: describe(s.inputMetadata, session.inputNames),
        outputs: describe(s.outputMetadata, session.outputNames),
        loadMs: performance.now() - started,
      });
      return;
    } catch (error) {
      fallbacks.push({ provider, error: error instanceof Error ? error.message : String(error) });
    }
  }
  post({ type: 'load-failed', key: message.key, error: fallbacks.map((f) => `${f.provider}: ${f.error}`).join('; ') });
}

async function run(message: Extract<ToWorker, { type: 'run' }>): Promise<void> {
  const session = sessions.get(message.key);
  if (!session) {
    post({ type: 'run-failed', id: message.id, error: `no session for ${message.key} in this worker` });
    return;
  }
  try {
    const feeds: Record<string, import('onnxruntime-node').Tensor> = {};
    for (const [name, t] of Object.entries(message.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    const started = performance.now();
    const results = await session.run(feeds);
    const runMs = performance.now() - started;
    const outputs: Record<string, Float32Array> = {};
    const transfer: ArrayBuffer[] = [];
    for (const [name, tensor] of Object.entries(results)) {
      // Copy out of the runtime's buffer so that it can be transferred without aliasing.
      const copy = Float32Array.from(tensor.data as Float32Array);
      outputs[name] = copy;
      transfer.push(copy.buffer as ArrayBuffer);
      tensor.dispose?.();
    }
    post({ type: 'result', id: message.id, outputs, runMs }, transfer);
  } catch (error) {
    post({ type: 'run-failed', id: message.id, error: error instanceof Error ? error.message : String(error) });
  }
}

async function unload(message: Extract<ToWorker, { type: 'unload' }>): Promise<void> {
  const session = sessions.get(message.key);
  sessions.delete(message.key);
  await session?.release();
  post({ type: 'unloaded', key: message.key });
}

let chain: Promise<void> = Promise.resolve();
port.on('message', (message: ToWorker) => {
  if (message.type === 'exit') {
    // Between two runs by construction: session.run is synchronous, so no run is in progress when a
    // message is handled. Messages after this one are never processed; the pool fails their batches.
    for (const session of sessions.values()) void session.release();
    process.exit(message.code);
  }
  // Loads are serialized with runs on purpose: a session creation between two batches costs one
  // batch's wait on one worker; the pool routes around a worker that is loading.
  chain = chain.then(() => (message.type === 'load' ? load(message) : message.type === 'run' ? run(message) : message.type === 'unload' ? unload(message) : undefined));
});
post({ type: 'ready' });
