/**
 * A lock file beside rollout.json that every writer of the flags takes around its read-modify-write:
 * the server's processes (HTTP_PROCESSES > 1) and the Python publisher (pipeline/gemlite/rollout_lock.py,
 * the same protocol; docs/CONTRACTS.md). Each writer's rename is atomic on its own, but two writers
 * that read the same flags and each write back their own edit lose one of the edits.
 *
 * The lock is `<repo>/.rollout.lock`, created exclusively (O_EXCL) and holding its owner as JSON
 * (`pid`, `host`, `token`, `acquiredAt`). A holder keeps it for one read, validation and write
 * (milliseconds). A lock is stale, and is removed by the next writer, when its owner is a process of
 * this host that no longer runs, or when it is older than `staleMs` (a crashed writer on another
 * host, a holder that hung, or a file left empty by a crash between create and write).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { open, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Errors } from '../errors.js';

export const kRolloutLockFile = '.rollout.lock';
/** Longer than any holder needs by orders of magnitude; shared with the Python side. */
export const kRolloutLockStaleMs = 30_000;
const kDefaultTimeoutMs = 5_000;
const kPollMs = 10;

export interface RolloutLockOptions {
  /** How long to wait for a live holder before failing with ROLLOUT_LOCKED. */
  timeoutMs?: number;
  staleMs?: number;
  /** Told when a stale lock is removed (the loader logs it). */
  onStale?(owner: LockOwner | null, ageMs: number): void;
}

export interface LockOwner {
  pid: number;
  host: string;
  token: string;
  acquiredAt: string;
}

interface HeldLock {
  raw: string;
  owner: LockOwner | null;
  ageMs: number;
}

/** Run `task` while holding the repository's rollout lock; the lock is released however it ends. */
export async function withRolloutLock<T>(repo: string, task: () => Promise<T>, options: RolloutLockOptions = {}): Promise<T> {
  const file = path.join(repo, kRolloutLockFile);
  const token = await acquire(file, options);
  try {
    return await task();
  } finally {
    await release(file, token);
  }
}

async function acquire(file: string, options: RolloutLockOptions): Promise<string> {
  const timeoutMs = options.timeoutMs ?? kDefaultTimeoutMs;
  const staleMs = options.staleMs ?? kRolloutLockStaleMs;
  const owner: LockOwner = { pid: process.pid, host: hostname(), token: randomBytes(8).toString('hex'), acquiredAt: '' };
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    owner.acquiredAt = new Date().toISOString();
    if (await tryCreate(file, owner)) return owner.token;
    const held = await inspect(file);
    if (held === null) continue; // released between our attempt and the look
    if (isStale(held, staleMs)) {
      if (await removeIfUnchanged(file, held.raw)) options.onStale?.(held.owner, held.ageMs);
      continue;
    }
    if (Date.now() >= giveUpAt) throw Errors.ROLLOUT_LOCKED(file, describe(held), timeoutMs);
    await sleep(kPollMs + Math.random() * kPollMs);
  }
}

async function tryCreate(file: string, owner: LockOwner): Promise<boolean> {
  let handle;
  try {
    handle = await open(file, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(JSON.stringify(owner) + '\n');
  } finally {
    await handle.close();
  }
  return true;
}

async function inspect(file: string): Promise<HeldLock | null> {
  try {
    const [raw, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    return { raw, owner: parseOwner(raw), ageMs: Date.now() - info.mtimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

function parseOwner(raw: string): LockOwner | null {
  try {
    const value = JSON.parse(raw) as Partial<LockOwner>;
    return Number.isInteger(value.pid) && typeof value.host === 'string' && typeof value.token === 'string' ? (value as LockOwner) : null;
  } catch {
    return null; // empty or cut short: its writer is still writing it, or crashed doing so
  }
}

function isStale(held: HeldLock, staleMs: number): boolean {
  if (held.ageMs > staleMs) return true;
  const owner = held.owner;
  return owner !== null && owner.host === hostname() && owner.pid !== process.pid && !processRuns(owner.pid);
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}

/**
 * Remove a stale lock only if it is still the one judged stale. Between the look and the unlink another
 * writer could have removed it and taken a fresh one; the re-read narrows that window to a system call.
 */
async function removeIfUnchanged(file: string, raw: string): Promise<boolean> {
  const now = await readFile(file, 'utf8').catch(() => null);
  if (now !== raw) return false;
  await unlink(file).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  return true;
}

/** Unlink the lock if it is still ours; a holder that took longer than `staleMs` may have lost it. */
async function release(file: string, token: string): Promise<void> {
  const raw = await readFile(file, 'utf8').catch(() => null);
  if (raw === null || parseOwner(raw)?.token !== token) return;
  await unlink(file).catch(() => undefined);
}

function describe(held: HeldLock): string {
  const owner = held.owner;
  const age = `${Math.round(held.ageMs)} ms old`;
  return owner ? `pid ${owner.pid} on ${owner.host}, ${age}` : `unreadable owner, ${age}`;
}
