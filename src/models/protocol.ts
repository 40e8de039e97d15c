/** Typed messages between the inference pool (main thread) and its workers. */
import type { ExecutionProvider } from '../config.js';
import type { Feeds } from '../features/encode.js';

export interface TensorInfo {
  name: string;
  type: string;
  shape: Array<string | number>;
}

/**
 * What a session is created from: the bytes the loader verified (what serving uses), or a path
 * (tests and tools that load a fixture directly).
 */
export type ModelSource = Uint8Array | string;

export type ToWorker =
  | { type: 'load'; key: string; model: ModelSource; providers: ExecutionProvider[]; intraOpThreads: number }
  | { type: 'run'; id: number; key: string; feeds: Feeds }
  | { type: 'unload'; key: string }
  /** Exit at this point of the message stream: terminate() during session.run aborts the process. */
  | { type: 'exit'; code: number };

export type FromWorker =
  | { type: 'ready' }
  | {
      type: 'loaded';
      key: string;
      provider: ExecutionProvider;
      fallbacks: Array<{ provider: ExecutionProvider; error: string }>;
      inputs: TensorInfo[];
      outputs: TensorInfo[];
      loadMs: number;
    }
  | { type: 'load-failed'; key: string; error: string }
  | { type: 'result'; id: number; outputs: Record<string, Float32Array>; runMs: number }
  | { type: 'run-failed'; id: number; error: string }
  | { type: 'unloaded'; key: string };
