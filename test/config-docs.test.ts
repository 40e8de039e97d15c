/**
 * README's configuration table and src/config.ts must not drift apart: every variable the config
 * reads is documented, every documented variable is read, and every literal default in the table
 * is the real default.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../src/paths.js';
import { loadConfig } from '../src/config.js';

function documented(): Array<{ name: string; fallback: string }> {
  const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('## Configuration'));
  const rows: Array<{ name: string; fallback: string }> = [];
  for (const line of table.split('\n')) {
    if (line.startsWith('## ') && !line.startsWith('## Configuration')) break;
    const cells = line.split('|').map((c) => c.trim());
    if (!cells[1]?.startsWith('`')) continue;
    const names = cells[1].split(' / ').map((n) => n.replace(/`/g, ''));
    const fallbacks = cells[2].split(' / ');
    names.forEach((name, i) => rows.push({ name, fallback: fallbacks.length === names.length ? fallbacks[i] : cells[2] }));
  }
  return rows;
}

function readByConfig(): string[] {
  const source = readFileSync(path.join(projectRoot, 'src', 'config.ts'), 'utf8');
  return [...source.matchAll(/\(env, '([A-Z0-9_]+)'/g)].map((m) => m[1]).concat(source.includes('env.ADMIN_TOKEN') ? ['ADMIN_TOKEN'] : [], source.includes('env.IMPRESSION_LOG') ? ['IMPRESSION_LOG'] : []);
}

test('every variable src/config.ts reads is in README, and every README variable is read', () => {
  const docs = new Set(documented().map((r) => r.name));
  const read = new Set(readByConfig());
  assert.ok(read.size > 30, `found ${read.size} variables in src/config.ts`);
  assert.deepEqual([...read].filter((n) => !docs.has(n)), [], 'read but not documented');
  assert.deepEqual([...docs].filter((n) => !read.has(n)), [], 'documented but not read');
});

test("README's literal defaults are the real defaults", () => {
  const defaults = loadConfig({});
  let checked = 0;
  for (const { name, fallback } of documented()) {
    // Expressions ("4 x cores / processes"), references to other variables and "unset" are prose.
    if (!/^[\w.\/-]+$/.test(fallback) || fallback === 'unset') continue;
    assert.deepEqual(loadConfig({ [name]: fallback }), defaults, `${name}: README says ${fallback}`);
    checked++;
  }
  assert.ok(checked >= 30, `checked ${checked} defaults`);
});
