/**
 * Reads a file of the model repository whole, refusing anything but a regular file within a size
 * limit. A FIFO or a device named model.onnx never reaches end of file: hashing one held the scan,
 * and every later scan and flag edit queued behind it, forever; a huge file would exhaust memory.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** manifest.json, golden.json, rollout.json: far larger than any real one (a golden file is ~100 KB). */
export const kMaxJsonBytes = 64 * 1024 * 1024;

/** A file that exists but is not read: its reason is the whole explanation (no errno). */
export class RefusedFileError extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** What went wrong reading a repository file, for a message such as "cannot read model.onnx (...)". */
export function readFailure(error: unknown): string {
  if (error instanceof RefusedFileError) return error.reason;
  return (error as NodeJS.ErrnoException)?.code ?? String(error);
}

export interface ReadLimit {
  maxBytes: number;
  /** How the limit is named in the refusal, e.g. the environment variable that sets it. */
  limitName: string;
}

/**
 * The file's bytes, in a buffer of their own (a worker message copies a view's whole buffer).
 * Opened non-blocking, so that opening a FIFO returns at once, then checked on the open handle:
 * what is checked is what is read, whatever replaces the path meanwhile.
 */
export async function readRepositoryFile(file: string, limit: ReadLimit): Promise<Uint8Array> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new RefusedFileError('not a regular file');
    if (info.size > limit.maxBytes) throw new RefusedFileError(`${info.size} bytes, over ${limit.limitName} ${limit.maxBytes}`);
    // At most the size seen: a file still being written reads short and fails its checksum or parse.
    const bytes = new Uint8Array(info.size);
    let filled = 0;
    while (filled < bytes.length) {
      const { bytesRead } = await handle.read(bytes, filled, bytes.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled === bytes.length ? bytes : bytes.slice(0, filled);
  } finally {
    await handle.close();
  }
}

/** A repository JSON file as text (bounded by kMaxJsonBytes). */
export async function readRepositoryText(file: string): Promise<string> {
  const bytes = await readRepositoryFile(file, { maxBytes: kMaxJsonBytes, limitName: 'the JSON file limit' });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}
