/**
 * A lock file beside rollout.json that every writer of the flags takes around its read-modify-write:
 * the server's processes (HTTP_PROCESSES > 1) and the Python publisher (pipeline/gemlite/rollout_lock.py,
 * the same protocol; docs/CONTRACTS.md). Each writer's rename is atomic on its own, but two writers
 * that read the same flags and each write back their own edit lose one of the edits.
 *
 * The lock is `<repo>/.rollout.lock`, holding its owner as JSON (`pid`, `host`, `bootId`, `pidNamespace`,
 * `token`, `acquiredAt`). It is written whole to a private temp file first and then hard-linked into
 * place, so it never exists empty or half-written (link fails with EEXIST while another holds it). A
 * holder keeps it for one read, validation and write (milliseconds). A lock is stale when its owner is a
 * process that no longer runs in this same kernel boot and PID namespace (a pid means nothing across
 * namespaces: containers of one pod share a hostname), or when it is older than `staleMs` (a crashed
 * writer elsewhere, a holder that hung). Stale locks are removed by one waiter at a time, under
 * `<repo>/.rollout.lock.break`, which re-judges the lock it finds before removing it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { link, open, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Errors } from '../errors.js';

export const kRolloutLockFile = '.rollout.lock';
/** Longer than any holder needs by orders of magnitude; shared with the Python side. */
export const kRolloutLockStaleMs = 30_000;
/** The break lock is held for one inspection and one unlink; older than this, its holder died. */
const kBreakStaleMs = 10_000;
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
  /** This kernel boot (/proc/sys/kernel/random/boot_id); null where unknown. */
  bootId: string | null;
  /** The PID namespace the pid belongs to (/proc/self/ns/pid); null where unknown. */
  pidNamespace: string | null;
  token: string;
  acquiredAt: string;
}

interface HeldLock {
  owner: LockOwner | null;
  ageMs: number;
}

function readOr(read: () => string): string | null {
  try {
    return read().trim();
  } catch {
    return null;
  }
}

/** Where a pid of this process means the same process: same boot, same PID namespace. */
const kHere = {
  host: hostname(),
  bootId: readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')),
  pidNamespace: readOr(() => readlinkSync('/proc/self/ns/pid')),
};

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
  const token = randomBytes(8).toString('hex');
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const owner: LockOwner = { pid: process.pid, ...kHere, token, acquiredAt: new Date().toISOString() };
    if (await tryCreate(file, owner)) return token;
    const held = await inspect(file);
    if (held === null) continue; // released between our attempt and the look
    if (isStale(held, staleMs)) {
      const removed = await breakStale(file, staleMs);
      if (removed) {
        options.onStale?.(removed.owner, removed.ageMs);
        continue;
      }
      // Another waiter is breaking it, or one died doing so: wait as for a live holder. Looping at
      // once spun a core, past the timeout, until that break lock aged out (10 s).
    }
    if (Date.now() >= giveUpAt) throw Errors.ROLLOUT_LOCKED(file, describe(held), timeoutMs);
    await sleep(kPollMs + Math.random() * kPollMs);
  }
}

/** Write the owner to a private file, then link it into place: the lock appears whole or not at all. */
async function tryCreate(file: string, owner: LockOwner): Promise<boolean> {
  const temp = `${file}.${owner.token}`;
  try {
    await writeFile(temp, JSON.stringify(owner) + '\n', { flag: 'wx' });
    await link(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

async function inspect(file: string): Promise<HeldLock | null> {
  try {
    const [raw, info] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    return { owner: parseOwner(raw), ageMs: Date.now() - info.mtimeMs };
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
    return null; // not this protocol's file (an older writer's, or damaged): only its age counts
  }
}

function isStale(held: HeldLock, staleMs: number): boolean {
  if (held.ageMs > staleMs) return true;
  const owner = held.owner;
  if (owner === null || owner.pid === process.pid) return false;
  const sameSpace = owner.host === kHere.host && kHere.bootId !== null && owner.bootId === kHere.bootId && kHere.pidNamespace !== null && owner.pidNamespace === kHere.pidNamespace;
  return sameSpace && !processRuns(owner.pid);
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
 * Remove a stale lock, one breaker at a time: two waiters that both judged the same lock stale must not
 * both unlink, or the second removes the fresh lock the first one's writer has just taken. Under the
 * break lock the lock is inspected again and removed only if what is there now is stale. Resolves with
 * what was removed, or null (someone else is breaking it, or it is no longer stale).
 */
async function breakStale(file: string, staleMs: number): Promise<HeldLock | null> {
  const breakFile = `${file}.break`;
  try {
    await (await open(breakFile, 'wx')).close();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // A breaker that died holding it would block every recovery: an old break lock is removed.
    const age = await stat(breakFile).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (age > kBreakStaleMs) await unlink(breakFile).catch(() => undefined);
    return null;
  }
  try {
    const held = await inspect(file);
    if (held === null || !isStale(held, staleMs)) return null;
    await unlink(file).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    return held;
  } finally {
    await unlink(breakFile).catch(() => undefined);
  }
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
