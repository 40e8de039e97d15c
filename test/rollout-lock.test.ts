/**
 * The rollout lock (src/models/rollout-lock.ts, docs/CONTRACTS.md): flag edits by another process held
 * across this server's edit are merged into rather than overwritten; stale locks are removed, live
 * ones are waited for and then refused with ROLLOUT_LOCKED; the Python publisher's side of the
 * protocol (pipeline/gemlite/rollout_lock.py) and this one exclude each other.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { kAdminAuth, startAppWithRepo } from './helpers/app.js';
import { kTwoVersionsEach } from './helpers/fixture-repo.js';
import { kRolloutLockFile, withRolloutLock, type LockOwner } from '../src/models/rollout-lock.js';
import type { Rollout } from '../src/models/rollout.js';

const kProjectRoot = fileURLToPath(new URL('../../', import.meta.url));
const kLockModule = new URL('../src/models/rollout-lock.js', import.meta.url).href;

const onDisk = (repo: string) => JSON.parse(readFileSync(path.join(repo, 'rollout.json'), 'utf8')) as Rollout;
const lockPath = (repo: string) => path.join(repo, kRolloutLockFile);

function tempDir(t: import('node:test').TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rollout-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeLock(repo: string, owner: Partial<LockOwner> | string): void {
  writeFileSync(lockPath(repo), typeof owner === 'string' ? owner : JSON.stringify(owner));
}

/** This process's boot and PID namespace, as a lock owner records them. */
const kHereSpace = {
  bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
  pidNamespace: readlinkSync('/proc/self/ns/pid'),
};

/** A pid that ran on this host and has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', '']);
  assert.equal(child.status, 0);
  return child.pid!;
}

/** Resolves once the child prints `line`; rejects if it exits first. */
function untilLine(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk) => {
      out += String(chunk);
      if (out.split('\n').includes(line)) resolve();
    });
    child.stderr!.on('data', (chunk) => (err += String(chunk)));
    child.on('exit', (code) => reject(new Error(`child exited (${code}) before printing "${line}": ${err}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
}

/**
 * Another process's flag edit: under the lock, read rollout.json, print "held", wait `holdMs`, add
 * shadow [2] to feed-cvr on what it read, write it back (temp + rename) and release.
 */
const kNodeEditor = `
const [lockModule, repo, holdMs] = process.argv.slice(1);
const { withRolloutLock } = await import(lockModule);
const fs = await import('node:fs');
const file = repo + '/rollout.json';
await withRolloutLock(repo, async () => {
  const flags = JSON.parse(fs.readFileSync(file, 'utf8'));
  console.log('held');
  await new Promise((r) => setTimeout(r, Number(holdMs)));
  flags.models['feed-cvr'].shadow = [2];
  fs.writeFileSync(file + '.editor', JSON.stringify(flags));
  fs.renameSync(file + '.editor', file);
});
`;

const kPythonEditor = `
import json, os, sys, time
from pipeline.gemlite.rollout_lock import rollout_lock
repo, hold_ms = sys.argv[1], int(sys.argv[2])
path = os.path.join(repo, "rollout.json")
with rollout_lock(repo):
    flags = json.load(open(path))
    print("held", flush=True)
    time.sleep(hold_ms / 1000)
    flags["models"]["feed-cvr"]["shadow"] = [2]
    with open(path + ".editor", "w") as f:
        json.dump(flags, f)
    os.replace(path + ".editor", path)
`;

function hasPython(): boolean {
  return spawnSync('/usr/bin/python3', ['-c', 'import json'], { encoding: 'utf8' }).status === 0;
}

async function editAcrossProcesses(t: import('node:test').TestContext, start: (repo: string) => ChildProcess): Promise<void> {
  const { app, repo } = await startAppWithRepo(t, {}, kTwoVersionsEach);
  const editor = start(repo);
  t.after(() => editor.kill());
  await untilLine(editor, 'held');
  // The editor read the flags before this edit and writes after it: without the lock this edit is lost.
  const res = await app.ranker.admin.inject({ method: 'PATCH', url: '/admin/models/feed-ctr/flags', headers: kAdminAuth, payload: { stable: 2 } });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(await exited(editor), 0);
  const expected = { 'feed-ctr': { stable: 2 }, 'feed-cvr': { stable: 1, shadow: [2] } };
  assert.deepEqual(onDisk(repo).models, expected, 'both edits on disk');
  assert.deepEqual(app.ranker.registry.rollout!.models, expected, 'both edits applied');
  assert.equal(existsSync(lockPath(repo)), false, 'lock released');
}

test('a flag edit made while another node process holds the lock waits for it and keeps its edit', async (t) => {
  await editAcrossProcesses(t, (repo) => spawn(process.execPath, ['--input-type=module', '-e', kNodeEditor, kLockModule, repo, '300']));
});

test('the same with the Python publisher\'s lock (pipeline/gemlite/rollout_lock.py) as the other writer', async (t) => {
  if (!hasPython()) return t.skip('no /usr/bin/python3');
  await editAcrossProcesses(t, (repo) => spawn('/usr/bin/python3', ['-c', kPythonEditor, repo, '300'], { cwd: kProjectRoot }));
});

test('the Python side waits for a lock this process holds', async (t) => {
  if (!hasPython()) return t.skip('no /usr/bin/python3');
  const repo = tempDir(t);
  let releasedAt = 0;
  let out = '';
  const script = 'import sys, time\nfrom pipeline.gemlite.rollout_lock import rollout_lock\nprint("trying", flush=True)\nwith rollout_lock(sys.argv[1]):\n    print(time.time() * 1000, flush=True)\n';
  let child: ChildProcess | null = null;
  await withRolloutLock(repo, async () => {
    child = spawn('/usr/bin/python3', ['-c', script, repo], { cwd: kProjectRoot });
    child.stdout!.on('data', (chunk) => (out += String(chunk)));
    await untilLine(child, 'trying');
    await new Promise((r) => setTimeout(r, 300));
    releasedAt = Date.now();
  });
  assert.equal(await exited(child!), 0);
  const acquiredAt = Number(out.trim().split('\n').pop());
  assert.ok(acquiredAt >= releasedAt - 5, `python took the lock at ${acquiredAt}, released at ${releasedAt}`);
  assert.equal(existsSync(lockPath(repo)), false);
});

test('withRolloutLock: holders in one process take turns; the file is gone afterwards', async (t) => {
  const repo = tempDir(t);
  const order: string[] = [];
  const hold = (name: string) =>
    withRolloutLock(repo, async () => {
      order.push(`${name} in`);
      await new Promise((r) => setTimeout(r, 30));
      order.push(`${name} out`);
    });
  await Promise.all([hold('a'), hold('b'), hold('c')]);
  for (let i = 0; i < order.length; i += 2) assert.equal(order[i].split(' ')[0], order[i + 1].split(' ')[0], order.join(', '));
  assert.equal(existsSync(lockPath(repo)), false);
});

test('a lock left by a process of this host that has exited is removed at once', async (t) => {
  const repo = tempDir(t);
  const pid = deadPid();
  writeLock(repo, { pid, host: hostname(), ...kHereSpace, token: 'dead', acquiredAt: new Date().toISOString() });
  const stale: Array<LockOwner | null> = [];
  const started = Date.now();
  const ran = await withRolloutLock(repo, async () => 'ran', { timeoutMs: 2000, onStale: (owner) => stale.push(owner) });
  assert.equal(ran, 'ran');
  assert.ok(Date.now() - started < 1000, 'not waited out');
  assert.equal(stale.length, 1);
  assert.equal(stale[0]!.pid, pid);
});

// A stale lock with a fresh break lock beside it (another waiter breaking it, or one that died doing
// so): the loop retried at once, spinning a core past its timeout until the break lock aged out.
test('a stale lock that another waiter is breaking is waited for like a live one, within the timeout', async (t) => {
  const repo = tempDir(t);
  writeLock(repo, { pid: deadPid(), host: hostname(), ...kHereSpace, token: 'dead', acquiredAt: new Date().toISOString() });
  writeFileSync(`${lockPath(repo)}.break`, '');
  const started = Date.now();
  await assert.rejects(withRolloutLock(repo, async () => 'ran', { timeoutMs: 300 }), (error: Error & { code?: string }) => error.code === 'ROLLOUT_LOCKED');
  assert.ok(Date.now() - started < 5000, `gave up after ${Date.now() - started} ms, not when the break lock aged out (10 s)`);
  assert.ok(existsSync(lockPath(repo)), 'left for the breaker');
});

test('an unreadable lock older than staleMs is removed; a fresh one is waited for and refused with ROLLOUT_LOCKED', async (t) => {
  const repo = tempDir(t);
  writeLock(repo, '');
  await assert.rejects(withRolloutLock(repo, async () => 'ran', { timeoutMs: 100 }), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'ROLLOUT_LOCKED');
    assert.match(error.message, /held by unreadable owner, \d+ ms old; gave up after 100 ms/);
    return true;
  });
  assert.equal(readFileSync(lockPath(repo), 'utf8'), '', 'a live lock is left alone');
  const old = new Date(Date.now() - 60_000);
  utimesSync(lockPath(repo), old, old);
  assert.equal(await withRolloutLock(repo, async () => 'ran', { timeoutMs: 100 }), 'ran');
});

test('a live holder (this process, another token) is not stale; a lock on another host counts only by age', async (t) => {
  const repo = tempDir(t);
  writeLock(repo, { pid: process.pid, host: hostname(), token: 'other', acquiredAt: '' });
  await assert.rejects(withRolloutLock(repo, async () => 'ran', { timeoutMs: 80 }), /held by pid \d+ on/);
  writeLock(repo, { pid: deadPid(), host: `not-${hostname()}`, token: 'remote', acquiredAt: '' });
  await assert.rejects(withRolloutLock(repo, async () => 'ran', { timeoutMs: 80 }), /held by pid \d+ on not-/);
  assert.equal(await withRolloutLock(repo, async () => 'ran', { timeoutMs: 2000, staleMs: 0 }), 'ran');
});

test('release leaves a lock that is no longer ours (taken over while we overran staleMs)', async (t) => {
  const repo = tempDir(t);
  const successor = JSON.stringify({ pid: process.pid, host: hostname(), token: 'successor', acquiredAt: '' });
  await withRolloutLock(repo, async () => writeLock(repo, successor));
  assert.equal(readFileSync(lockPath(repo), 'utf8'), successor);
});

test('PATCH flags while another writer holds the lock past ROLLOUT_LOCK_TIMEOUT_MS: 503 ROLLOUT_LOCKED, nothing changed', async (t) => {
  const { app, repo } = await startAppWithRepo(t, { rolloutLockTimeoutMs: 100 }, kTwoVersionsEach);
  const before = readFileSync(path.join(repo, 'rollout.json'), 'utf8');
  writeLock(repo, { pid: process.pid, host: hostname(), token: 'publisher', acquiredAt: '' });
  const res = await app.ranker.admin.inject({ method: 'PATCH', url: '/admin/models/feed-ctr/flags', headers: kAdminAuth, payload: { stable: 2 } });
  assert.equal(res.statusCode, 503, res.body);
  assert.equal(res.headers['retry-after'], '1');
  assert.equal(res.json().error.code, 'ROLLOUT_LOCKED');
  assert.equal(readFileSync(path.join(repo, 'rollout.json'), 'utf8'), before);
  assert.equal(app.ranker.registry.routing.models.get('feed-ctr')!.stable.version, 1);
});

test('a dead pid of another PID namespace or boot is not judged dead: a container\'s pid means nothing here', async (t) => {
  const repo = tempDir(t);
  const pid = deadPid();
  for (const elsewhere of [{ ...kHereSpace, pidNamespace: 'pid:[1]' }, { ...kHereSpace, bootId: 'another-boot' }, {}]) {
    writeLock(repo, { pid, host: hostname(), ...elsewhere, token: 'sidecar', acquiredAt: '' });
    await assert.rejects(withRolloutLock(repo, async () => 'ran', { timeoutMs: 60 }), /ROLLOUT_LOCKED|held by pid/, JSON.stringify(elsewhere));
  }
});

/** A child that takes the lock at `startAt` (ms since epoch) and logs "enter pid" / "exit pid" around 30 ms inside. */
const kRacer = `
const [lockModule, repo, startAt, log] = process.argv.slice(1);
const { withRolloutLock } = await import(lockModule);
const fs = await import('node:fs');
while (Date.now() < Number(startAt)) {}
await withRolloutLock(repo, async () => {
  fs.appendFileSync(log, 'enter ' + process.pid + '\\n');
  await new Promise((r) => setTimeout(r, 30));
  fs.appendFileSync(log, 'exit ' + process.pid + '\\n');
}, { timeoutMs: 10000 });
`;

test('processes racing to remove one stale lock: one holder at a time, every one gets in', async (t) => {
  const racers = 6;
  // Before the break lock, 10-15% of such trials let two racers in at once (one edit lost).
  for (const [trial, kind] of ['dead', 'old', 'dead', 'old', 'dead', 'old', 'dead', 'old'].entries()) {
    const repo = tempDir(t);
    if (kind === 'dead') writeLock(repo, { pid: deadPid(), host: hostname(), ...kHereSpace, token: 'dead', acquiredAt: '' });
    else {
      writeLock(repo, '');
      const old = new Date(Date.now() - 60_000);
      utimesSync(lockPath(repo), old, old);
    }
    const log = path.join(repo, 'log');
    writeFileSync(log, '');
    const startAt = String(Date.now() + 500);
    const children = Array.from({ length: racers }, () => spawn(process.execPath, ['--input-type=module', '-e', kRacer, kLockModule, repo, startAt, log], { stdio: 'ignore' }));
    assert.deepEqual(await Promise.all(children.map(exited)), Array(racers).fill(0), `trial ${trial}`);
    let inside = 0;
    let most = 0;
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    for (const line of lines) most = Math.max(most, line.startsWith('enter') ? ++inside : inside--);
    assert.equal(most, 1, `trial ${trial} (${kind}): ${lines.join(', ')}`);
    assert.equal(lines.length, 2 * racers, `trial ${trial}: every racer got in`);
    assert.deepEqual(readdirSync(repo).filter((f) => f.startsWith('.rollout.lock')), [], 'no lock, temp or break file left');
  }
});

test('a writer that cannot write its owner record leaves no lock behind (it used to block every edit for 30 s)', async (t) => {
  const repo = tempDir(t);
  const script = `const { withRolloutLock } = await import(process.argv[1]); await withRolloutLock(process.argv[2], async () => {});`;
  // A file size limit of 0 makes every write fail with EFBIG; XFSZ is ignored so the write returns the error.
  const child = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f 0; exec "${process.execPath}" --input-type=module -e "$0" "$1" "$2"`, script, kLockModule, repo], { encoding: 'utf8' });
  assert.notEqual(child.status, 0);
  assert.match(child.stderr, /EFBIG/);
  assert.deepEqual(readdirSync(repo), []);
  assert.equal(await withRolloutLock(repo, async () => 'ran', { timeoutMs: 100 }), 'ran');
});
