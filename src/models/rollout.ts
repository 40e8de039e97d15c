/**
 * Version flags (models/rollout.json): parsing, deterministic arm bucketing and atomic persistence.
 * Bucketing hashes (user id, model name, salt), so every replica sends a user to the same arm.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { withRolloutLock, type RolloutLockOptions } from './rollout-lock.js';
import { readFailure, readRepositoryText } from './repository-files.js';
import { SerialQueue } from './serial-queue.js';
import { Ajv } from 'ajv';
import { Errors } from '../errors.js';
import { hashId, hashString } from '../features/id-hash.js';
import { schemaPath } from '../paths.js';
import type { Surface } from './manifest.js';

export interface ModelFlags {
  stable: number;
  canary?: { version: number; percent: number };
  shadow?: number[];
}

export interface Rollout {
  salt: string;
  routes: Partial<Record<Surface, { ctr: string; cvr: string }>>;
  models: Record<string, ModelFlags>;
}

export const kRolloutFile = 'rollout.json';
const ajv = new Ajv({ allErrors: false, strict: false });
const validateSchema = ajv.compile<Rollout>(JSON.parse(readFileSync(schemaPath('rollout.schema.json'), 'utf8')));

/**
 * One model's flags, own entries only: the flags are parsed JSON, and a model named like an Object
 * prototype member (`constructor` is a plain name) found the prototype's function instead.
 */
export function flagsOf(rollout: Rollout | null | undefined, name: string): ModelFlags | undefined {
  return rollout && Object.hasOwn(rollout.models, name) ? rollout.models[name] : undefined;
}

/** Validate parsed flags; cross-field rules: every routed model has flags, canary differs from stable. */
export function validateRollout(value: unknown): Rollout {
  if (!validateSchema(value)) {
    const first = validateSchema.errors?.[0];
    throw Errors.ROLLOUT_INVALID(`${first?.instancePath || '/'} ${first?.message ?? 'does not match the schema'}`);
  }
  for (const [surface, route] of Object.entries(value.routes)) {
    for (const objective of ['ctr', 'cvr'] as const) {
      const name = route![objective];
      if (!flagsOf(value, name)) throw Errors.ROLLOUT_INVALID(`/routes/${surface}/${objective} names "${name}", which has no entry in /models`);
    }
  }
  for (const [name, flags] of Object.entries(value.models)) {
    if (flags.canary && flags.canary.version === flags.stable) throw Errors.ROLLOUT_INVALID(`/models/${name}/canary/version equals stable`);
  }
  return value;
}

export async function readRollout(repo: string): Promise<Rollout> {
  const file = path.join(repo, kRolloutFile);
  let raw: string;
  try {
    raw = await readRepositoryText(file);
  } catch (error) {
    throw Errors.ROLLOUT_INVALID(`${file} cannot be read (${readFailure(error)})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    throw Errors.ROLLOUT_INVALID(`${file} is not JSON (${(error as Error).message})`);
  }
  return validateRollout(parsed);
}

let tempCounter = 0;
/** Writes from this process queue up (one repository in production; tests' repositories share it). */
const writes = new SerialQueue();

/**
 * Write flags atomically: temp file in the same directory, fsync, rename, fsync the directory.
 * Writes from this process run one at a time in call order, so the last call's flags are what stays
 * on disk. The temp name is unique (pid, counter, random) and created exclusively: a name from the
 * clock alone was shared by two writes in the same millisecond, and the second one then truncated and
 * renamed the first one's file (ENOENT on its own rename, or a longer first write's tail left as
 * invalid JSON).
 */
export function writeRollout(repo: string, rollout: Rollout): Promise<void> {
  return writes.run(() => writeNow(repo, path.join(repo, kRolloutFile), rollout));
}

/** What an `editRollout` edit returns to write nothing (null is a value a client may send). */
export const kNoChange: unique symbol = Symbol('no change');

/**
 * Read-modify-write of the flags under the repository's rollout lock, so that an edit made meanwhile by
 * another server process or the publisher is merged into, not overwritten. `edit` runs inside the lock:
 * it reads the current flags and returns the flags to write (validated here), or `kNoChange`. Resolves
 * with what was written, or null when nothing was.
 */
export function editRollout(repo: string, edit: () => Promise<unknown>, lock: RolloutLockOptions = {}): Promise<Rollout | null> {
  return withRolloutLock(
    repo,
    async () => {
      const candidate = await edit();
      if (candidate === kNoChange) return null;
      const rollout = validateRollout(candidate);
      await writeRollout(repo, rollout);
      return rollout;
    },
    lock,
  );
}

async function writeNow(repo: string, target: string, rollout: Rollout): Promise<void> {
  const temp = path.join(repo, `.tmp-rollout-${process.pid}-${++tempCounter}-${randomBytes(6).toString('hex')}.json`);
  const handle = await open(temp, 'wx');
  try {
    try {
      await handle.writeFile(JSON.stringify(rollout, null, 2) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  const dir = await open(repo, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Bucket 0..9999 of a user for a model; stable across replicas and restarts for the same salt. */
export function userBucket(userId: number, modelName: string, salt: string): number {
  return hashId(userId, hashString(`${modelName}\u0000${salt}`), 10001) - 1;
}

export function inCanary(userId: number, modelName: string, salt: string, percent: number): boolean {
  return userBucket(userId, modelName, salt) < percent * 100;
}
