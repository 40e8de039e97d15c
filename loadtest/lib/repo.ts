/**
 * Model repositories for the load tests: the real one (default ./models), a throwaway fixture
 * repository built from test/fixtures/onnx (--fixtures), copies for scenarios that publish into it,
 * and atomic publishing of a new version (write into .tmp-*, fsync, rename), as the pipeline does.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, closeSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeRepo } from '../../test/helpers/fixture-repo.js';

export interface RepoInfo {
  dir: string;
  source: 'fixtures' | 'directory';
  cleanup(): void;
}

export function openRepo(repoFlag: string, fixtures: boolean): RepoInfo {
  if (fixtures) {
    const repo = makeRepo();
    return { dir: repo.dir, source: 'fixtures', cleanup: repo.cleanup };
  }
  const dir = path.resolve(repoFlag);
  if (!existsSync(path.join(dir, 'rollout.json'))) throw new Error(`${dir} has no rollout.json; pass --repo <dir> or --fixtures`);
  return { dir, source: 'directory', cleanup: () => undefined };
}

/** A private copy (the swap scenario publishes into it); hidden and temp entries are skipped. */
export function copyRepo(source: string): RepoInfo {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ranker-swap-'));
  cpSync(source, dir, { recursive: true, filter: (src) => !path.basename(src).startsWith('.') });
  return { dir, source: 'directory', cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

interface RolloutFile {
  routes: Record<string, Record<string, string>>;
  models: Record<string, { stable: number; canary?: { version: number; percent: number } }>;
}

export function readRolloutFile(repo: string): RolloutFile {
  return JSON.parse(readFileSync(path.join(repo, 'rollout.json'), 'utf8')) as RolloutFile;
}

export interface RoutedModel {
  objective: string;
  name: string;
  version: number;
  dir: string;
}

/** The stable version of each objective's model for `surface`, per the repository's rollout.json. */
export function routedModels(repo: string, surface: string): RoutedModel[] {
  const rollout = readRolloutFile(repo);
  const routes = rollout.routes[surface];
  if (!routes) throw new Error(`rollout.json of ${repo} routes no surface "${surface}"`);
  return Object.entries(routes).map(([objective, name]) => {
    const version = rollout.models[name]?.stable;
    if (!version) throw new Error(`rollout.json of ${repo} has no stable version for ${name}`);
    return { objective, name, version, dir: path.join(repo, name, String(version)) };
  });
}

export function versionsOnDisk(repo: string, name: string): number[] {
  return readdirSync(path.join(repo, name))
    .filter((v) => /^[1-9][0-9]*$/.test(v))
    .map(Number)
    .sort((a, b) => a - b);
}

function fsyncPath(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Publish `from` (a version directory) as `<repo>/<name>/<version>` atomically: files written into a
 * hidden sibling, each fsynced, the directory fsynced, renamed, then the parent fsynced. The
 * manifest's version is rewritten; model bytes (and so the sha256) are unchanged.
 */
export function publishVersion(repo: string, name: string, from: string, version: number): string {
  const parent = path.join(repo, name);
  const tmp = path.join(parent, `.tmp-${randomBytes(4).toString('hex')}`);
  mkdirSync(tmp);
  for (const file of readdirSync(from)) {
    const target = path.join(tmp, file);
    if (file === 'manifest.json') {
      const manifest = JSON.parse(readFileSync(path.join(from, file), 'utf8')) as { version: number; createdAt?: string };
      manifest.version = version;
      if (manifest.createdAt) manifest.createdAt = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      writeFileSync(target, JSON.stringify(manifest, null, 2));
    } else {
      cpSync(path.join(from, file), target);
    }
    fsyncPath(target);
  }
  fsyncPath(tmp);
  const final = path.join(parent, String(version));
  renameSync(tmp, final);
  fsyncPath(parent);
  return final;
}
